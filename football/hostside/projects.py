"""XFS project IDs, and the project-inherit flag of directories, copied from
one tree to another: rsync copies neither, so a shrink's copy of a volume
mounted with project quotas (`prjquota`) had the project limits restored
(`xfs_quota restore -p`) and no file in any project — every customer's
limit gone unseen.

Read and set through the generic `FS_IOC_FSGETXATTR` / `FS_IOC_FSSETXATTR`
ioctls (struct fsxattr, linux/fs.h: xflags, extsize, nextents, projid,
cowextsize, 8 bytes of padding). A directory with the inherit flag gives its
project to what is created in it later: a copy made after this one (the
shrink's final copy, inside its downtime) needs no walk of its own."""

import errno
import fcntl
import os
import stat
import struct

FSXATTR = struct.Struct("=IIIII8s")
FS_IOC_FSGETXATTR = 0x801C581F
FS_IOC_FSSETXATTR = 0x401C5820
FS_XFLAG_PROJINHERIT = 0x00000200
OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def read_fsxattr(fd):
    """(xflags, projid) of the open file `fd`."""
    buffer = bytearray(FSXATTR.size)
    fcntl.ioctl(fd, FS_IOC_FSGETXATTR, buffer)
    xflags, _, _, projid, _, _ = FSXATTR.unpack(buffer)
    return xflags, projid


def write_project(fd, projid, inherit):
    """Set the project of `fd` (and the inherit flag, for a directory),
    keeping its other flags; whether anything changed."""
    buffer = bytearray(FSXATTR.size)
    fcntl.ioctl(fd, FS_IOC_FSGETXATTR, buffer)
    xflags, extsize, nextents, old, cowextsize, pad = FSXATTR.unpack(buffer)
    flags = (xflags & ~FS_XFLAG_PROJINHERIT) | (FS_XFLAG_PROJINHERIT if inherit else 0)
    if (old, xflags) == (projid, flags):
        return False
    fcntl.ioctl(fd, FS_IOC_FSSETXATTR,
                FSXATTR.pack(flags, extsize, nextents, projid, cowextsize, pad))
    return True


def _opened(path):
    """A descriptor of `path` for the ioctls, or None: a symlink, a device,
    a fifo or a socket (none has a project of its own to copy), or gone."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
        return None
    try:
        return os.open(path, OPEN_FLAGS)
    except OSError as error:
        if error.errno in (errno.ENOENT, errno.ELOOP):
            return None
        raise


def copy_projects(source, copy):
    """Give every directory and regular file of the tree `copy` the project
    (and a directory the inherit flag) of its namesake under `source`, where
    either has one. Returns (entries read, entries changed)."""
    read = changed = 0
    for directory, subdirectories, files in os.walk(source):
        relative = os.path.relpath(directory, source)
        for name in (".", *subdirectories, *files):
            path = os.path.normpath(os.path.join(directory, name))
            fd = _opened(path)
            if fd is None:
                continue
            try:
                xflags, projid = read_fsxattr(fd)
            finally:
                os.close(fd)
            read += 1
            inherit = bool(xflags & FS_XFLAG_PROJINHERIT)
            target = os.path.normpath(os.path.join(copy, relative, name))
            fd = _opened(target)
            if fd is None:
                continue
            try:
                current, current_projid = read_fsxattr(fd)
                if projid or inherit or current_projid or current & FS_XFLAG_PROJINHERIT:
                    changed += write_project(fd, projid, inherit and stat.S_ISDIR(
                        os.fstat(fd).st_mode))
            finally:
                os.close(fd)
    return read, changed

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

import fcntl
import os
import resource
import stat
import struct

FSXATTR = struct.Struct("=IIIII8s")
FS_IOC_FSGETXATTR = 0x801C581F
FS_IOC_FSSETXATTR = 0x401C5820
FS_XFLAG_PROJINHERIT = 0x00000200
# (opened again through an O_PATH descriptor's /proc/self/fd link: no O_NOFOLLOW)
OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


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


def _opened(dirfd, name):
    """(descriptor, mode) of `name` in the directory `dirfd` for the ioctls,
    or None: a symlink, a device, a fifo or a socket (none has a project of
    its own to copy), or gone. Looked at through an O_PATH descriptor and
    opened again through it (the same inode): a name the container's owner
    turned into a fifo or a device meanwhile is never opened (a fifo
    blocks, a device's open acts)."""
    try:
        path_fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirfd)
    except FileNotFoundError:
        return None
    try:
        mode = os.fstat(path_fd).st_mode
        if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
            return None
        return os.open(f"/proc/self/fd/{path_fd}", OPEN_FLAGS), mode
    finally:
        os.close(path_fd)


def _names(fd):
    """The names in the open directory `fd`; none where it went meanwhile."""
    try:
        return os.listdir(fd)
    except FileNotFoundError:
        return []


def copy_projects(source, copy):
    """Give every directory and regular file of the tree `copy` the project
    (and a directory the inherit flag) of its namesake under `source`, where
    either has one. Returns (entries read, entries changed).

    Both trees are the container owner's, and change while this runs as
    root: walked by descriptors, each name opened in its directory's
    descriptor without following a symlink, so that no component of a path
    leads out of the trees (a directory of the source replaced by a symlink
    after it was listed; a symlink the copy holds where the source has a
    directory, from a rsync pass before the owner changed it back), and a
    tree deeper than a path can be long is walked whole. Each directory
    being walked holds its two descriptors: the limit of open files is
    raised to what the process may have."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    read = changed = 0
    top = os.open(source, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        copy_top = os.open(copy, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except BaseException:
        os.close(top)
        raise
    # (source directory, its namesake in the copy or None, the names left)
    walking = [(top, copy_top, iter([os.curdir, *_names(top)]))]
    try:
        while walking:
            directory, namesake, names = walking[-1]
            name = next(names, None)
            if name is None:
                walking.pop()
                for fd in (directory, namesake):
                    if fd is not None:
                        os.close(fd)
                continue
            opened = _opened(directory, name)
            if opened is None:
                continue
            fd, mode = opened
            try:
                xflags, projid = read_fsxattr(fd)
            except BaseException:
                os.close(fd)
                raise
            read += 1
            inherit = bool(xflags & FS_XFLAG_PROJINHERIT)
            target = _opened(namesake, name) if namesake is not None else None
            target_fd = None
            try:
                if target is not None:
                    target_fd, target_mode = target
                    current, current_projid = read_fsxattr(target_fd)
                    if projid or inherit or current_projid or current & FS_XFLAG_PROJINHERIT:
                        changed += write_project(target_fd, projid,
                                                 inherit and stat.S_ISDIR(target_mode))
                if name == os.curdir or not stat.S_ISDIR(mode):
                    continue
                subdirectory = target_fd if target and stat.S_ISDIR(target_mode) else None
                walking.append((fd, subdirectory, iter(_names(fd))))
                fd = None                   # (closed when its walk is done)
                if subdirectory is not None:
                    target_fd = None
            finally:
                for left in (fd, target_fd):
                    if left is not None:
                        os.close(left)
    finally:
        for directory, namesake, _ in walking:
            for fd in (directory, namesake):
                if fd is not None:
                    os.close(fd)
    return read, changed

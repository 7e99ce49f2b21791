"""A shrink's copy passes against a container's owner who plants symlinks,
and a mount below the volume: real rsync between real xfs filesystems, the
passes' argument lists as the shrink makes them (Shrink._rsync_argv), run
as the host's transport runs them. The source side is chrooted into the
volume (football/hostside/confined.py): no host file reaches the copy,
while a normal tree is still copied exactly."""

import hashlib
import os
import stat
import subprocess
import time
from types import SimpleNamespace

import pytest

from football.ops import shrink
from football.transport import LocalTransport
from tests.helpers.dataplane import xfs_volumes

pytestmark = [pytest.mark.root]

SECRET = b"HOST SECRET\n"


@pytest.fixture
def volumes(tmp_path):
    """(source, copy, host): two mounted xfs filesystems (the volume and its
    copy) and a host directory outside both, holding a secret file `f`."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "f").write_bytes(SECRET)
    with xfs_volumes(tmp_path, ("source", "copy")) as (source, copy):
        yield source, copy, host


def pass_argv(source, copy, relink=False, extra=()):
    """A pass's argument list as the shrink makes it (`extra` options added)."""
    run = SimpleNamespace(mountpoint=str(source), tmp_mountpoint=str(copy))
    argv = shrink.Shrink._rsync_argv(run, relink=relink)
    return [argv[0], *extra, *argv[1:]]


def copy_pass(source, copy, relink_names=None):
    """One pass as the shrink runs it (`relink_names`: the relink pass of
    those names); the Result."""
    argv = pass_argv(source, copy, relink=relink_names is not None)
    names = None if relink_names is None else "".join(f"{name}\0" for name in relink_names)
    return LocalTransport("h1").run(argv, input=names, check=False, timeout=120)


def holds_secret(tree):
    for directory, _, files in os.walk(tree):
        for name in files:
            path = os.path.join(directory, name)
            if not os.path.islink(path) and SECRET in open(path, "rb").read():
                return path
    return None


def test_a_relink_name_below_a_symlinked_directory_copies_no_host_file(volumes):
    """The relink pass reads its names through any symlink above them: a
    directory the container's owner replaced by a symlink to a host
    directory gave the copy the host's files."""
    source, copy, host = volumes
    (source / "d").symlink_to(host)
    result = copy_pass(source, copy, relink_names=["d/f"])
    assert result.exit_code in (0, 23), result.stderr
    assert holds_secret(copy) is None, "a host file was copied into the copy"


def test_a_directory_swapped_for_a_symlink_during_a_pass_copies_no_host_file(volumes):
    """The container's owner swaps a directory for a symlink to a host
    directory after rsync listed it, before it opened the files below: an
    rsync that opens by path (before 3.5.0, or 3.5.0 with its legacy open,
    --insecure-links) copied the host's files. The pass is slowed down so
    that the swap comes between the first file and the next."""
    source, copy, host = volumes
    (source / "d").mkdir()
    for index in range(4):
        (source / "d" / f"f{index}").write_bytes(b"c" * (4 << 20))
        (host / f"f{index}").write_bytes(SECRET + b"\0" * (4 << 20))
    process = subprocess.Popen(pass_argv(source, copy, extra=("--bwlimit=4000",
                                                            "--insecure-links")),
                               env=LocalTransport("h1").env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (copy / "d" / "f0").exists():
            assert process.poll() is None and time.monotonic() < deadline, "no pass began"
            time.sleep(0.02)
        os.rename(source / "d", source / "d.moved")
        (source / "d").symlink_to(host)
        out, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode in (0, 23, 24), out
    assert holds_secret(copy) is None, "a host file was copied into the copy"


def test_a_mount_below_the_volume_is_not_copied(volumes, tmp_path):
    """rsync crossed into a filesystem mounted below the volume's mountpoint
    on the host (the shrink's `find` did not: -xdev): its files went into
    the copy. Now its mountpoint is an empty directory, as on the volume."""
    source, copy, _ = volumes
    (source / "below").mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "h1-below", str(source / "below")],
                   check=True)
    try:
        (source / "below" / "not-the-volume").write_text("a host mount's file\n")
        result = copy_pass(source, copy)
        assert result.ok, result.stderr
    finally:
        subprocess.run(["umount", str(source / "below")], check=True)
    assert (copy / "below").is_dir() and not os.listdir(copy / "below")


def snapshot(tree):
    """{relative name (bytes): what a copy must keep of it}, hard links as
    groups of names."""
    tree = os.fsencode(tree)
    entries, inodes = {}, {}
    for directory, dirs, files in os.walk(tree):
        for name in dirs + files:
            path = os.path.join(directory, name)
            info = os.lstat(path)
            relative = os.path.relpath(path, tree)
            xattrs = {key: os.getxattr(path, key, follow_symlinks=False)
                      for key in os.listxattr(path, follow_symlinks=False)}
            entry = [stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode), info.st_uid,
                     info.st_gid, info.st_size, xattrs, info.st_nlink]
            if stat.S_ISLNK(info.st_mode):
                entry.append(os.readlink(path))
            else:
                entry.append(info.st_mtime_ns)
            if stat.S_ISREG(info.st_mode):
                entry.append(hashlib.sha256(open(path, "rb").read()).hexdigest())
                inodes.setdefault(info.st_ino, []).append(relative)
            entries[relative] = entry
    links = sorted(sorted(names) for names in inodes.values() if len(names) > 1)
    return entries, links


def test_a_normal_tree_is_still_copied_exactly(volumes):
    """Hard links, xattrs (user and trusted), ACLs, a sparse file, numeric
    owners, symlinks absolute and relative (verbatim), a fifo, names with a
    newline and with bytes that are no UTF-8: the copy equals the source;
    then the relink pass of its hard-linked names keeps it so."""
    source, copy, _ = volumes
    raw = os.fsencode(source)
    (source / "etc").mkdir()
    (source / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    os.link(source / "etc" / "passwd", source / "etc" / "passwd-linked")
    with open(os.path.join(raw, b"new\nline"), "wb") as handle:
        handle.write(b"a newline in its name\n")
    os.mkdir(os.path.join(raw, b"bad\xff"))
    with open(os.path.join(raw, b"bad\xff", b"x\xfe"), "wb") as handle:
        handle.write(b"no utf-8\n")
    os.link(os.path.join(raw, b"bad\xff", b"x\xfe"), os.path.join(raw, b"new\nlink"))
    with open(source / "sparse", "wb") as handle:
        handle.seek(64 << 20)
        handle.write(b"end\n")
    (source / "abs").symlink_to("/etc/passwd")
    (source / "rel").symlink_to("etc/passwd")
    (source / "dangling").symlink_to("/nowhere/at/all")
    os.mkfifo(source / "fifo")
    os.setxattr(source / "etc" / "passwd", "user.color", b"blue")
    os.setxattr(source / "etc", "trusted.mark", b"\x00\x01")
    subprocess.run(["setfacl", "-m", "u:12345:rwx", str(source / "etc")], check=True)
    os.chown(source / "sparse", 12345, 54321)
    os.lchown(source / "abs", 777, 888)
    for attempt in range(2):        # the first copy, then a pass over an equal copy
        result = copy_pass(source, copy)
        assert result.ok, result.stderr
        assert snapshot(copy) == snapshot(source), attempt
    assert os.stat(copy / "sparse").st_blocks * 512 < (1 << 20), "the sparse file filled"
    result = copy_pass(source, copy, relink_names=["etc/passwd", "etc/passwd-linked",
                                                   "new\nlink"])
    assert result.ok, result.stderr
    assert snapshot(copy) == snapshot(source)


def test_a_volume_path_with_spaces_quotes_and_percent_signs_is_served(tmp_path):
    """The volume's path reaches the daemon through rsync's --rsh split
    (quotes) and the environment (no %VAR% of rsyncd.conf expanded)."""
    with xfs_volumes(tmp_path, ("plain", "copy")) as (plain, copy):
        odd = tmp_path / "it's a %HOME% dir"
        odd.mkdir()
        subprocess.run(["mount", "--bind", str(plain), str(odd)], check=True)
        try:
            (odd / "file").write_text("here\n")
            result = copy_pass(odd, copy)
            assert result.ok, result.stderr
        finally:
            subprocess.run(["umount", str(odd)], check=True)
        assert (copy / "file").read_text() == "here\n"


def test_a_config_that_cannot_be_written_leaves_no_file_and_says_what_failed(tmp_path,
                                                                              monkeypatch):
    """/run full (or read-only): the daemon's configuration is not written;
    no half-written temporary file stays behind, and the error names the
    file and the reason, as `football-host rsync-source` prints it."""
    from football.hostside import confined

    directory = tmp_path / "run" / "football"           # (missing: made)
    monkeypatch.setattr(confined, "CONFIG_DIR", str(directory))
    monkeypatch.setattr(confined, "CONFIG_PATH", str(directory / "rsyncd-source.conf"))

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(confined.os, "fsync", full)
    with pytest.raises(confined.ConfinedError) as refused:
        confined.serve(str(tmp_path))
    assert os.listdir(directory) == []
    assert str(refused.value) == (f"cannot write the rsync daemon's configuration "
                                  f"{directory}/rsyncd-source.conf: No space left on device")
    monkeypatch.undo()
    monkeypatch.setattr(confined, "CONFIG_DIR", str(directory))
    monkeypatch.setattr(confined, "CONFIG_PATH", str(directory / "rsyncd-source.conf"))
    assert confined.write_config() == str(directory / "rsyncd-source.conf")
    assert os.listdir(directory) == ["rsyncd-source.conf"]
    assert (directory / "rsyncd-source.conf").read_text() == confined.CONFIG

"""The shrink's copy of XFS project IDs (`football-host projects`) against
what the container's owner controls: the tree belongs to the customer, the
walk runs as root on the hypervisor. Nothing outside the two trees is
touched (a symlink in any component of a path, in the source or in the
copy: a rsync pass copied one there), deep trees are walked whole. Small
xfs images on loop devices."""

import os
import stat
import subprocess

import pytest

from football.hostside import projects
from tests.helpers.dataplane import xfs_volumes
from tests.root.test_projects import HOST_HELPER, project_of, xfs_io

pytestmark = [pytest.mark.root]


@pytest.fixture
def volumes(tmp_path):
    """(source, copy, host): three mounted xfs filesystems, `host` standing
    for the hypervisor's own files; gone afterwards."""
    with xfs_volumes(tmp_path, ("source", "copy", "host")) as mounted:
        yield mounted


def set_projects_beneath(top, projid):
    """Every directory and regular file under `top` in project `projid`,
    walked by descriptors."""
    for _, directories, files, dirfd in os.fwalk(top):
        for name in (".", *directories, *files):
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dirfd)
            try:
                projects.write_project(fd, projid, False)
            finally:
                os.close(fd)


def run_projects(source, copy):
    return subprocess.run([HOST_HELPER, "projects", str(source), str(copy)],
                          capture_output=True, text=True)


def test_a_symlink_the_copy_holds_where_the_source_has_a_directory_is_not_followed(volumes):
    """A rsync pass copied `etc` while it was a symlink to the host's
    directory; the customer made it a directory again before the walk: the
    host's file of the same name kept its project (the walk set the
    container's project, and inherit flag, on it)."""
    source, copy, host = volumes
    (host / "etc").mkdir()
    (host / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (host / "etc" / "sub").mkdir()
    (source / "etc" / "sub").mkdir(parents=True)
    (source / "etc" / "passwd").write_text("mine\n")
    xfs_io("chproj -R 42", source)
    xfs_io("chattr -R +P", source)
    (copy / "etc").symlink_to(host / "etc")
    result = run_projects(source, copy)
    assert result.returncode == 0, result.stderr
    assert project_of(host / "etc" / "passwd") == 0
    assert project_of(host / "etc" / "sub") == 0
    assert "P" not in xfs_io("lsattr", host / "etc" / "sub").split()[0]
    assert project_of(copy) == 42           # the rest is copied


def test_a_directory_of_the_source_that_becomes_a_symlink_during_the_walk_is_not_followed(
        volumes, monkeypatch):
    """The customer replaces a directory the walk listed by a symlink to a
    host directory before the walk reads what is in it: the host's files are
    not read (their projects not copied into the container's copy)."""
    source, copy, host = volumes
    (host / "secret").write_text("x\n")
    xfs_io("chproj 777", host / "secret")
    (source / "d").mkdir()
    (source / "d" / "secret").write_text("mine\n")
    (copy / "d").mkdir()
    (copy / "d" / "secret").write_text("mine\n")
    swapped = []

    def swap_after(listed):
        if "secret" in listed and not swapped:      # d's listing
            os.rename(source / "d", source / "d.old")
            os.symlink(host, source / "d")
            swapped.append(True)
        return listed

    class Listing:
        def __init__(self, entries):
            self.entries = iter(entries)

        def __iter__(self):
            return self

        def __next__(self):
            return next(self.entries)

        def __enter__(self):
            return self

        def __exit__(self, *_):
            return False

        def close(self):
            pass

    listdir, scandir = os.listdir, os.scandir
    monkeypatch.setattr(os, "listdir", lambda *args: swap_after(listdir(*args)))
    monkeypatch.setattr(os, "scandir", lambda *args: Listing(
        swap_after_entries(list(scandir(*args)))))

    def swap_after_entries(entries):
        swap_after([entry.name for entry in entries])
        return entries

    projects.copy_projects(str(source), str(copy))
    assert swapped
    assert project_of(copy / "d" / "secret") == 0


def test_a_tree_deeper_than_a_path_can_be_long_is_walked_whole(volumes):
    """A path longer than PATH_MAX (the customer's deep tree): its project
    copied too, no failure of the walk."""
    source, copy, _ = volumes
    for top in (source, copy):
        fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for _ in range(30):
                name = "d" * 200
                os.mkdir(name, dir_fd=fd)
                deeper = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
                os.close(fd)
                fd = deeper
            with open(os.open("leaf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as f:
                f.write("x\n")
        finally:
            os.close(fd)
    set_projects_beneath(source, 42)      # (`xfs_io chproj -R` fails on it)
    result = run_projects(source, copy)
    assert result.returncode == 0, result.stderr
    fd = os.open(copy, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(30):
            deeper = os.open("d" * 200, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = deeper
        leaf = os.open("leaf", os.O_RDONLY, dir_fd=fd)
        try:
            assert projects.read_fsxattr(leaf)[1] == 42
        finally:
            os.close(leaf)
    finally:
        os.close(fd)


def test_a_file_that_becomes_a_fifo_while_it_is_looked_at_is_not_opened(volumes, monkeypatch):
    """The customer replaces a regular file by a fifo (or a device node)
    between the walk's look at it and its open: the walk does not open it
    (it opened the fifo, as it would have opened a device, and gave the
    copy the fifo's project), it copies the project of the file it looked
    at."""
    source, copy, _ = volumes
    for top in (source, copy):
        (top / "f").write_text("data\n")
    xfs_io("chproj 42", source / "f")
    swapped = []
    lstat, fstat = os.lstat, os.fstat

    def swap_after(found):
        if stat.S_ISREG(found.st_mode) and found.st_size == 5 and not swapped:
            os.rename(source / "f", source / "f.old")
            os.mkfifo(source / "f")
            swapped.append(True)
        return found

    monkeypatch.setattr(os, "lstat", lambda *args, **kwargs: swap_after(lstat(*args, **kwargs)))
    monkeypatch.setattr(os, "fstat", lambda *args, **kwargs: swap_after(fstat(*args, **kwargs)))
    projects.copy_projects(str(source), str(copy))
    assert swapped
    assert project_of(copy / "f") == 42        # the file it looked at

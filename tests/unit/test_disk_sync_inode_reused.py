"""A replica's failed disk fdatasync is kept for that file
(`mars.follow.fdatasync_path`), told by its device and inode number: a
file-backed disk (football/hostside/filevg.py) removed and made anew at
its path gets the inode number of the one just removed on ext4, and
counted as the failed one (every replay and sync of it refused until
marsd restarted). The inode's generation tells the two apart."""

import errno
import os

import pytest

from mars import follow
from mars.follow import fdatasync_path


@pytest.fixture
def fails_once(monkeypatch):
    real = os.fdatasync
    state = {"armed": False}

    def fdatasync(fd):
        if state["armed"]:
            state["armed"] = False
            raise OSError(errno.EIO, "Input/output error")
        return real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    monkeypatch.setattr(follow, "_disk_sync_failures", {})
    return state


def test_a_disk_file_removed_and_made_anew_with_its_inode_number_is_synced(tmp_path,
                                                                            fails_once):
    disk = tmp_path / "vm1"
    disk.write_bytes(bytes(4096))
    fails_once["armed"] = True
    with pytest.raises(OSError):
        fdatasync_path(str(disk))
    old = os.stat(disk)
    disk.unlink()                       # the LV removed (lv-remove of a file VG)
    disk.write_bytes(bytes(4096))       # and made again, of the same name
    new = os.stat(disk)
    if (new.st_dev, new.st_ino) != (old.st_dev, old.st_ino):
        pytest.skip("this filesystem gave the new file another inode number")
    fdatasync_path(str(disk))


def test_the_file_whose_fdatasync_failed_still_counts_as_failed(tmp_path, fails_once):
    disk = tmp_path / "vm1"
    disk.write_bytes(bytes(4096))
    fails_once["armed"] = True
    with pytest.raises(OSError):
        fdatasync_path(str(disk))
    with pytest.raises(OSError, match="restart marsd") as again:
        fdatasync_path(str(disk))
    assert again.value.errno == errno.EIO

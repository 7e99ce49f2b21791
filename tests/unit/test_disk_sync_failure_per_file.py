"""A replica's failed disk fdatasync is kept (`fdatasync_path`) for the
disk that failed, not for its path: a disk made anew at the same path (the
replica left the resource and joined again on a new LV of the same name)
counted as failed too, and every replay and sync of it was refused until
marsd restarted. Told by its device, inode number and the inode's
generation: a file-backed disk (football/hostside/filevg.py) removed and
made anew at its path gets the inode number of the one just removed on
ext4."""

import errno
import os

import pytest

from mars.follow import fdatasync_path


def test_a_disk_made_anew_at_the_path_of_one_whose_fdatasync_failed_is_synced(
        tmp_path, fails_once):
    disk = tmp_path / "vm1"
    disk.write_bytes(bytes(4096))
    fails_once["armed"] = True
    with pytest.raises(OSError):
        fdatasync_path(str(disk))
    # the replica leaves; the old LV goes (kept aside here, so that the
    # new one cannot reuse its inode number) and a new one of the same
    # name is made; the replica joins again
    old = tmp_path / "vm1.removed"
    disk.rename(old)
    disk.write_bytes(bytes(4096))
    fdatasync_path(str(disk))
    # the disk that failed still counts as failed, wherever it is now
    with pytest.raises(OSError, match="restart marsd") as again:
        fdatasync_path(str(old))
    assert again.value.errno == errno.EIO and str(disk) in str(again.value)


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

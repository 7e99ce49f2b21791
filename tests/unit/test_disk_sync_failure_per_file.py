"""A replica's failed disk fdatasync is kept (`fdatasync_path`) for the
disk that failed, not for its path: a disk made anew at the same path (the
replica left the resource and joined again on a new LV of the same name)
counted as failed too, and every replay and sync of it was refused until
marsd restarted."""

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

"""A failed fdatasync of a replica's disk is kept (as d4e1b56 keeps the
device's): Linux reports a lost write-back once, and the next fdatasync
(of a new fd, as `fdatasync_path` opens one each time) succeeds without
the blocks it lost. The secondary's replay cursor and a sync's progress
were then recorded past writes its disk never got."""

import errno
from types import SimpleNamespace

import pytest
import trio

from mars.follow import LogFollower, fdatasync_path
from mars.keys import replay_name, res_key, syncstatus_name
from mars.replay import Cursor
from mars.syncclient import SyncClient


def test_every_fdatasync_of_a_disk_after_a_failed_one_fails_too(tmp_path, fails_once):
    disk = tmp_path / "disk"
    disk.write_bytes(bytes(4096))
    fdatasync_path(str(disk))
    fails_once["armed"] = True
    with pytest.raises(OSError):
        fdatasync_path(str(disk))
    with pytest.raises(OSError, match="restart marsd") as again:
        fdatasync_path(str(disk))
    assert again.value.errno == errno.EIO
    other = tmp_path / "other"
    other.write_bytes(bytes(4096))
    fdatasync_path(str(other))          # another disk is another matter


def test_a_replay_cursor_is_not_recorded_after_a_failed_disk_sync(tmp_path, fails_once):
    """Replay wrote records up to B, the disk's fdatasync failed (its
    write-back lost them): no cursor. Replay went on to C; the next
    persist's fdatasync succeeded and recorded C, past the lost blocks:
    after a restart, replay began at C and the disk never got them."""
    disk = tmp_path / "disk"
    disk.write_bytes(bytes(4096))
    written = []
    state = SimpleNamespace(disk=lambda res: str(disk))
    worker = SimpleNamespace(res="vm1", host="b", dir=tmp_path, state=lambda: state,
                             write=written.append, report=lambda **facts: None)
    follower = LogFollower(worker)
    key = res_key("vm1", replay_name("b"))

    async def persist(position):
        follower.cursor = Cursor("log-000000001-a", position, 3 * 4096)
        await follower.persist_cursor(force=True)

    trio.run(persist, 4096)
    assert written == [{key: "log-000000001-a,4096,12288"}]
    fails_once["armed"] = True
    with pytest.raises(OSError):
        trio.run(persist, 8192)
    with pytest.raises(OSError, match="restart marsd"):
        trio.run(persist, 12288)
    assert written == [{key: "log-000000001-a,4096,12288"}], "a cursor past lost blocks"


def test_sync_progress_is_not_recorded_after_a_failed_disk_sync(tmp_path, fails_once):
    """The same for `syncstatus`; and a failure of the sync's persist in
    the background (beside the copy) no longer ends the worker's nursery
    (and marsd with it): the next sync step fails with it instead."""
    disk = tmp_path / "disk"
    disk.write_bytes(bytes(4096))
    store = {}
    worker = SimpleNamespace(res="vm1", host="b", write=store.update,
                             store=SimpleNamespace(value=lambda key, default=None:
                                                   store.get(key, default)))
    client = SyncClient(worker)
    key = res_key("vm1", syncstatus_name("b"))
    trio.run(client._persist, str(disk), 1 << 20, 0)
    assert store == {key: 1 << 20}
    fails_once["armed"] = True
    trio.run(client._persist_in_background, str(disk), 2 << 20, 0)
    assert client.persist_failure and store == {key: 1 << 20}
    with pytest.raises(OSError, match="restart marsd"):
        trio.run(client._persist, str(disk), 3 << 20, 0)
    assert store == {key: 1 << 20}, "sync progress recorded past lost blocks"


def test_a_log_writer_without_direct_keeps_a_failed_sync(tmp_path, fails_once):
    """`LogWriter.sync` without `direct` (no daemon path today; tests and
    tools) keeps its failure as the direct one does."""
    from mars.logfile import LogWriter
    writer = LogWriter(str(tmp_path / "log-000000001-a"), 1)
    writer.append(1, 0, b"x" * 4096)
    fails_once["armed"] = True
    with pytest.raises(OSError):
        writer.sync()
    with pytest.raises(OSError):
        writer.sync()
    writer.close()

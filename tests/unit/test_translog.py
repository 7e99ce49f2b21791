"""The primary's write path: whatever was synced survives a crash, even when
the disk's own write-back is lost; logging continues after recovery."""

import hashlib
import os
import shutil

import pytest

from mars.lamport import LamportClock
from mars.logfile import LogScan
from mars.keys import version_name
from mars.primary import unversioned
from mars.translog import TransactionLog, drop_emergency_mark, settle, whole_records_end
from tests.unit.conftest import random_writes

DISK_SIZE = 1 << 20


def writes(seed, count):
    return random_writes(seed, count, DISK_SIZE)


def expected_disk(all_writes):
    disk = bytearray(DISK_SIZE)
    for offset, data in all_writes:
        disk[offset:offset + len(data)] = data
    return hashlib.sha256(disk).hexdigest()


@pytest.fixture
def primary(tmp_path):
    disk = tmp_path / "disk"
    with open(disk, "wb") as handle:
        handle.truncate(DISK_SIZE)
    log = TransactionLog(str(tmp_path / "resource-vm1"), str(disk), "h1", LamportClock())
    yield log, tmp_path
    log.close()


def crash(log, tmp_path, snapshot, keep_log_bytes=None):
    """A machine crash: the disk falls back to its last synced state, the
    logfile loses what was never synced (cut at `keep_log_bytes`)."""
    path = f"{log.resource_dir}/{log.logfile}"
    log.close()
    if snapshot is not None:
        shutil.copy(snapshot, tmp_path / "disk")
    if keep_log_bytes is not None:
        with open(path, "r+b") as handle:
            handle.truncate(keep_log_bytes)


def test_synced_writes_survive_a_crash_that_loses_the_disks_write_back(primary):
    log, tmp = primary
    log.recover(None)
    first, second, unsynced = writes(1, 50), writes(2, 50), writes(3, 20)
    for offset, data in first:
        log.write(offset, data)
    log.drain()                         # else the cursor may stay before some of `first`
    cursor = log.checkpoint()
    shutil.copy(tmp / "disk", tmp / "snapshot")
    for offset, data in second:
        log.write(offset, data)
    log.sync()
    synced_end = log.log_position.position
    for offset, data in unsynced:
        log.write(offset, data)
    crash(log, tmp, tmp / "snapshot", keep_log_bytes=synced_end + 100)   # torn inside a record

    replayed = log.recover(cursor)

    assert replayed == len(second)
    assert hashlib.sha256((tmp / "disk").read_bytes()).hexdigest() == expected_disk(first + second)


def test_logging_continues_after_recovery_with_the_next_sequence_number(primary):
    log, tmp = primary
    log.recover(None)
    for offset, data in writes(4, 10):
        log.write(offset, data)
    log.sync()
    end = log.log_position.position
    log.write(0, b"lost" * 100)
    crash(log, tmp, None, keep_log_bytes=end + 30)
    log.recover(None)
    log.write(8, b"after")
    log.sync()
    assert log.logfile == "log-000000002-h1", "a recovered device logs into a new logfile"
    records = [record for name in ("log-000000001-h1", "log-000000002-h1")
               for record in LogScan(f"{log.resource_dir}/{name}")]
    assert [r.sequence for r in records] == list(range(1, 12))
    assert records[-1].data == b"after"


def test_a_device_that_starts_with_nothing_to_replay_continues_the_sequence(primary):
    """A handover: the new primary has replayed up to the old one's final
    version, so its device's recovery applies nothing, and learns where the
    sequence goes on from the previous logfile's headers."""
    log, tmp = primary
    log.recover(None)
    for offset, data in writes(7, 25):
        log.write(offset, data)
    log.drain()
    cursor = log.checkpoint()
    log.close()

    assert log.recover(cursor) == 0
    log.write(0, b"next")
    log.sync()
    assert log.logfile == "log-000000002-h1"
    assert [r.sequence for r in LogScan(f"{log.resource_dir}/log-000000002-h1")] == [26]


def test_recovery_replays_every_logfile_started_after_the_cursor(primary):
    log, tmp = primary
    log.recover(None)
    before, after_rotation = writes(5, 30), writes(6, 30)
    for offset, data in before[:10]:
        log.write(offset, data)
    cursor = log.checkpoint()
    shutil.copy(tmp / "disk", tmp / "snapshot")
    for offset, data in before[10:]:
        log.write(offset, data)
    closed = log.rotate()
    for offset, data in after_rotation:
        log.write(offset, data)
    log.sync()
    crash(log, tmp, tmp / "snapshot")

    log.recover(cursor)

    assert closed.logfile == "log-000000001-h1"
    assert log.previous.logfile == "log-000000002-h1" and log.logfile == "log-000000003-h1"
    # every logfile it went through, the rotated one too: a crash before
    # marsd heard of the rotation left that one's version unwritten (only
    # `previous` got one), and every secondary stood at its end for good
    assert log.passed == [closed, log.previous]
    ended = [closed.logfile, closed.position]
    assert unversioned([ended, [log.previous.logfile, log.previous.position]], "h1",
                       {version_name(2, "h1"): "x"}) == [tuple(ended)]
    assert unversioned([ended], "h1", {version_name(1, "h1"): "x"}) == []
    # a dead origin's logfile taken over past: the successor's version ends it
    assert unversioned([["log-000000001-h2", 9]], "h1", {}) == [("log-000000001-h2", 9)]
    assert unversioned([["log-000000001-h2", 9]], "h1", {version_name(1, "h2"): "x"}) == []
    assert hashlib.sha256((tmp / "disk").read_bytes()).hexdigest() == expected_disk(
        before + after_rotation)
    first = list(LogScan(f"{log.resource_dir}/log-000000002-h1"))[0]
    assert first.sequence == len(before) + 1


def test_reads_see_every_write_at_once(primary):
    log, _ = primary
    log.recover(None)
    log.write(4096, b"hello")
    assert log.read(4096, 5) == b"hello"


def test_the_log_of_a_dead_device_is_settled_without_beginning_a_new_logfile(primary):
    """A device that died leaves its last logfile without a version; this
    host may be no primary any more (a handover came meanwhile), so no new
    logfile may begin here (two logfiles of one number would be a split
    brain): the log is replayed onto the disk, its torn tail cut, and the
    logfiles it went through named, for their versions."""
    log, tmp = primary
    log.recover(None)
    before, after = writes(11, 20), writes(12, 20)
    for offset, data in before:
        log.write(offset, data)
    cursor = log.checkpoint()
    shutil.copy(tmp / "disk", tmp / "snapshot")
    for offset, data in after:
        log.write(offset, data)
    log.sync()
    crash(log, tmp, tmp / "snapshot")
    with open(f"{log.resource_dir}/log-000000001-h1", "ab") as torn:
        torn.write(b"\x00" * 100)                       # a record cut short by the crash

    replayed, passed, mark = settle(log.resource_dir, str(tmp / "disk"), "h1", cursor)

    assert replayed >= len(after)
    assert [(done.logfile, done.position) for done in passed] == [
        ("log-000000001-h1", os.path.getsize(f"{log.resource_dir}/log-000000001-h1"))]
    assert hashlib.sha256((tmp / "disk").read_bytes()).hexdigest() == expected_disk(
        before + after)
    assert sorted(name for name in os.listdir(log.resource_dir) if name.startswith("log-")) \
        == ["log-000000001-h1"], "no new logfile"
    assert mark is None
    end = passed[0].position
    assert end == list(LogScan(f"{log.resource_dir}/log-000000001-h1"))[-1].end, \
        "the torn tail is cut: the version ends at the last whole record"


def test_an_emergency_mark_of_an_earlier_incarnation_is_not_followed(primary):
    """The mark names a logfile and where it stopped; a resource made anew
    under the same name (delete, create again) has a logfile of that name
    too: its recovery skipped records up to the old mark. The mark names
    the very file (its inode); and once marsd records a cursor past it, it
    is blanked."""
    log, tmp = primary
    log.recover(None)
    for offset, data in writes(21, 5):
        log.write(offset, data)
    log.drain()
    log.mark_emergency()
    mark = log.emergency_mark()
    assert mark is not None and mark.position == log.log_position.position
    log.close()
    logfile = f"{log.resource_dir}/{mark.logfile}"
    os.unlink(logfile)                                   # the resource deleted ...
    again = writes(22, 5)                                # ... and made anew: its first writes
    fresh = TransactionLog(log.resource_dir, str(tmp / "disk"), "h1", LamportClock())
    fresh.recover(None)
    assert fresh.logfile == mark.logfile and fresh.emergency_mark() is None
    for offset, data in again:
        fresh.write(offset, data)
    fresh.sync()
    fresh.close()
    with open(tmp / "disk", "r+b") as disk:
        disk.write(bytes(DISK_SIZE))                     # crashed: nothing written back
    assert fresh.recover(None) == len(again), "recovery replays the new incarnation's records"
    fresh.close()


def test_a_dropped_emergency_mark_leaves_recovery_to_the_cursor(primary):
    log, tmp = primary
    log.recover(None)
    log.write(0, b"x" * 4096)
    log.drain()
    log.mark_emergency()
    drop_emergency_mark(log.resource_dir, "h1")
    assert log.emergency_mark() is None


def test_whole_records_end_leaves_a_torn_tail_out(primary):
    log, _ = primary
    log.recover(None)
    log.write(0, b"x" * 4096)
    log.sync()
    end = log.log_position.position
    log.close()
    with open(f"{log.resource_dir}/log-000000001-h1", "ab") as torn:
        torn.write(b"\x00" * 77)
    assert whole_records_end(f"{log.resource_dir}/log-000000001-h1") == end

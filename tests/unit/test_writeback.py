"""The write-back queue between the log and the disk: reads always see the
newest data whatever the write-back has done, the disk only ever holds a
prefix of the log and the cursor never passes it, memory stays bounded, a
failing disk is reported and loses nothing from the log; and the device
waits for all this without blocking its event loop."""

import errno
import hashlib
import logging
import os
import random
import threading
from types import SimpleNamespace

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mars import writeback as writeback_module
from mars.device import Device
from mars.lamport import LamportClock
from mars.replay import Cursor
from mars.translog import TransactionLog
from mars.writeback import CHUNK_SHIFT, WriteBack, WriteBackFailed

DISK = 4 << CHUNK_SHIFT             # four chunks of the read index: extents span them


@pytest.fixture
def gate(monkeypatch):
    """The write-back thread waits at every pass until `gate.set()`."""
    gate = threading.Event()
    real_write = writeback_module._write_in_order
    monkeypatch.setattr(writeback_module, "_write_in_order",
                        lambda fd, extents: (gate.wait(), real_write(fd, extents)))
    yield gate
    gate.set()


def disk_file(path, size=DISK):
    with open(path, "wb") as handle:
        handle.truncate(size)
    return os.open(path, os.O_RDWR)


def applied(writes, count=None, size=DISK):
    """The disk after the first `count` writes (all by default)."""
    disk = bytearray(size)
    for offset, data in writes[:count]:
        disk[offset:offset + len(data)] = data
    return disk


# Operations of the property tests: a write (offset, length, seed), a read
# (offset, length, extents written back while it reads: before the disk read
# = n % 4, after it = n // 4), or the write-back moving on by some extents.
OPERATIONS = st.lists(st.one_of(
    st.tuples(st.just("write"), st.integers(0, DISK - 1), st.integers(1, 3 << CHUNK_SHIFT >> 1),
              st.integers(0, 2**32)),
    st.tuples(st.just("read"), st.integers(0, DISK - 1), st.integers(1, DISK),
              st.integers(0, 15)),
    st.tuples(st.just("write-back"), st.integers(1, 4), st.just(0), st.just(0)),
), max_size=40)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=OPERATIONS)
def test_reads_equal_the_model_whatever_the_write_back_has_done(tmp_path, operations):
    """Stepped by hand (no thread): writes overlap partially and across
    chunks; a read may race the write-back (extents written back after it
    took the pending ones, before it reads the disk). The read always
    equals the bytearray model; the disk always holds a prefix of the writes
    and `written_through` names exactly that prefix."""
    fd = disk_file(tmp_path / f"disk-{os.urandom(4).hex()}")
    queue = WriteBack(fd, through=0)            # positions: the number of writes logged
    writes = []
    try:
        for kind, first, second, third in operations:
            if kind == "write":
                offset, length = first, min(second, DISK - first)
                data = random.Random(third).randbytes(length)
                writes.append((offset, data))
                queue.add(offset, data, len(writes))
            elif kind == "read":
                offset, length = first, min(second, DISK - first)

                def read_disk(at, size, before=third % 4, after=third // 4):
                    # the races: extents written back after the read took the
                    # pending ones, before and after it reads the disk
                    queue.write_back(1 << 20, most_extents=before) if before else None
                    data = os.pread(fd, size, at)
                    queue.write_back(1 << 20, most_extents=after) if after else None
                    return data
                got = queue.read(offset, length, read_disk)
                assert got == bytes(applied(writes)[offset:offset + length])
            else:
                queue.write_back(1 << 30, most_extents=first)
            through = queue.written_through(len(writes))
            assert os.pread(fd, DISK, 0) == bytes(applied(writes, through)), \
                "the disk holds exactly the writes up to the cursor, in log order"
            assert queue.pending == sum(len(data) for _, data in writes[through:])
        while queue.queue:
            queue.write_back(1 << 20)
        assert os.pread(fd, DISK, 0) == bytes(applied(writes))
        assert queue.chunks == {} and queue.pending == 0
        assert queue.written == sum(len(data) for _, data in writes)
    finally:
        os.close(fd)


def test_reads_racing_the_write_back_thread_always_see_the_newest_data(tmp_path):
    """The real thread, a small limit, and many overlapping writes and reads."""
    fd = disk_file(tmp_path / "disk")
    queue = WriteBack(fd, through=0, limit=256 << 10).start()
    rng = random.Random(3)
    model = bytearray(DISK)
    try:
        for number in range(3000):
            if rng.random() < 0.6:
                offset = rng.randrange(0, DISK, 512)
                data = rng.randbytes(min(rng.choice((512, 4096, 65536, 200000)), DISK - offset))
                queue.wait(lambda size=len(data): queue.has_room(size))
                model[offset:offset + len(data)] = data
                queue.add(offset, data, number)
            else:
                offset = rng.randrange(0, DISK)
                size = rng.randrange(1, DISK - offset + 1)
                assert queue.read(offset, size, lambda at, n: os.pread(fd, n, at)) == \
                    bytes(model[offset:offset + size])
            assert queue.pending <= 256 << 10 or len(queue.queue) == 1
        assert queue.drain(timeout=30)
        assert os.pread(fd, DISK, 0) == bytes(model)
    finally:
        queue.close()
        os.close(fd)


def test_a_read_uses_the_index_not_every_pending_extent(tmp_path):
    """Many pending writes elsewhere cost a read nothing: it looks only at
    the extents in the chunks it covers."""
    fd = disk_file(tmp_path / "disk", size=1 << 30)
    queue = WriteBack(fd, through=0, limit=1 << 40)
    try:
        for index in range(20000):
            queue.add((index + 1) << CHUNK_SHIFT, b"x" * 4096, index)
        queue.add(100, b"here", 20000)
        assert len(queue._overlapping(0, 1 << CHUNK_SHIFT)) == 1
        assert queue.read(96, 12, lambda at, n: os.pread(fd, n, at)) == b"\0" * 4 + b"here" + b"\0" * 4
    finally:
        os.close(fd)


def test_the_checkpoint_cursor_never_passes_what_is_written_back(tmp_path):
    """TransactionLog with the write-back held: the cursor stays where the
    disk is (the start), the disk holds nothing of the writes, reads see all
    of them; a crash then loses nothing, recovery replays every write."""
    disk = tmp_path / "disk"
    os.close(disk_file(disk, 1 << 20))
    resource = str(tmp_path / "resource-vm1")
    log = TransactionLog(resource, str(disk), "h1", LamportClock(), hold_writeback=True)
    log.recover(None)
    start = log.checkpoint()
    writes = [(offset, os.urandom(5000)) for offset in (0, 3000, 700000, 2000)]
    for offset, data in writes:
        log.write(offset, data)
    log.sync()
    cursor = log.checkpoint()
    assert (cursor.logfile, cursor.position) == (start.logfile, start.position)
    assert cursor.length == log.log_position.position, "the length tells others the log grew"
    assert disk.read_bytes() == bytes(1 << 20), "nothing written back"
    assert log.read(0, 1 << 20) == bytes(applied(writes, size=1 << 20))
    log.close()                         # a crash: the pending writes are in the log only

    log = TransactionLog(resource, str(disk), "h1", LamportClock())
    assert log.recover(cursor) == len(writes)
    assert disk.read_bytes() == bytes(applied(writes, size=1 << 20))
    log.write(10, b"after")
    log.drain(timeout=30)
    cursor = log.checkpoint()
    assert (cursor.logfile, cursor.position) == (log.logfile, log.log_position.position)
    log.close()


def test_the_cursor_follows_the_write_back_across_a_rotation(tmp_path, gate):
    disk = tmp_path / "disk"
    os.close(disk_file(disk, 1 << 20))
    log = TransactionLog(str(tmp_path / "resource-vm1"), str(disk), "h1", LamportClock())
    log.recover(None)
    try:
        log.write(0, b"a" * 100)
        closed = log.rotate()
        log.write(0, b"b" * 100)
        cursor = log.written_through()
        assert (cursor.logfile, cursor.position, cursor.length) == (closed.logfile, 0, closed.position)
        gate.set()
        log.drain(timeout=30)
        cursor = log.checkpoint()
        assert (cursor.logfile, cursor.position) == (log.logfile, log.log_position.position)
        assert log.read(0, 100) == b"b" * 100
    finally:
        gate.set()
        log.close()


def test_a_failing_disk_is_reported_once_and_loses_nothing(tmp_path, caplog):
    """/dev/full refuses every write with ENOSPC: the failure is kept and
    logged once, waiters wake, drain raises EIO; reads still see the data;
    the cursor stays where the disk is."""
    fd = os.open("/dev/full", os.O_RDWR)
    calls = []
    queue = WriteBack(fd, through="start", on_progress=lambda: calls.append(queue.failure))
    caplog.set_level(logging.ERROR, logger="mars.writeback")
    try:
        queue.start()
        queue.add(0, b"kept in the log", "first")
        queue.add(4096, b"and this", "second")
        with pytest.raises(WriteBackFailed) as failed:
            queue.drain(timeout=30)
        assert failed.value.errno == errno.EIO
        assert queue.failure.errno == errno.ENOSPC
        assert len(calls) == 1 and calls[0] is queue.failure
        assert [record.getMessage() for record in caplog.records if "failed" in record.getMessage()] \
            and len(caplog.records) == 1, "logged once, with the reason"
        assert "No space left" in caplog.records[0].getMessage()
        assert queue.read(0, 15, lambda at, n: bytes(n)) == b"kept in the log"
        assert queue.written_through("end") == "start"
        assert queue.ready_or_notify(lambda: False), "waiters do not wait for a dead write-back"
    finally:
        queue.close()
        os.close(fd)


def test_the_memory_limit_lets_one_oversized_write_through_alone(tmp_path):
    fd = disk_file(tmp_path / "disk")
    queue = WriteBack(fd, through=0, limit=10000)
    try:
        assert queue.has_room(50000), "alone, any write may go"
        queue.add(0, bytes(6000), 1)
        assert queue.has_room(4000) and not queue.has_room(4001)
        queue.write_back(1 << 20)
        assert queue.has_room(50000)
    finally:
        os.close(fd)


# ------------------------------------------------------------ the device
def device_args(tmp_path, **overrides):
    disk = tmp_path / "disk"
    os.close(disk_file(disk, 1 << 20))
    args = dict(resource_dir=str(tmp_path / "resource-vm1"), disk=str(disk), host="h1",
                mountpoint=str(tmp_path / "fuse"), size=1 << 20, cursor="", digest="crc32c",
                compress=False, rotate_size=256 << 20, emergency_free=0,
                writeback_limit=64 << 10, debug_hold_writeback=False)
    args.update(overrides)
    return SimpleNamespace(**args)


async def started_device(args, nursery):
    device = Device(args)
    device.logging, device.progressed = trio.Event(), trio.Event()
    device.rotation = trio.Lock()
    device.token = trio.lowlevel.current_trio_token()
    device.nursery = nursery
    device.events = []
    device.emit = device.events.append
    device.translog.recover(None)
    return device


def test_a_write_over_the_limit_waits_without_blocking_the_event_loop(tmp_path, gate):

    async def scenario():
        async with trio.open_nursery() as nursery:
            device = await started_device(device_args(tmp_path), nursery)
            first, second = os.urandom(40000), os.urandom(40000)
            assert await device.write(0, first) == 40000     # acknowledged, not on the disk
            done = trio.Event()

            async def second_write():
                await device.write(100000, second)
                done.set()
            nursery.start_soon(second_write)
            ticks = 0
            while ticks < 20:                   # the loop runs while the write waits
                await trio.sleep(0.001)
                ticks += 1
            assert not done.is_set(), "over the limit, the write waits for the write-back"
            assert await device.read(0, 40000) == first
            gate.set()
            with trio.fail_after(30):
                await done.wait()
            reply = await device.answer({"cmd": "stop"})
            assert reply["pending"] == 0 and reply["written"] == 80000
            assert reply["cursor"] == f"{device.translog.logfile},{reply['closed'][1]},{reply['closed'][1]}"
            assert device.events == [{"event": "logging"}]
            device.translog.close()
        with open(tmp_path / "disk", "rb") as disk:
            image = disk.read()
        assert image[:40000] == first and image[100000:140000] == second

    trio.run(scenario)


def test_a_checkpoint_whose_write_back_caught_up_during_its_sync_says_its_cursor_is_behind(
        tmp_path, gate):
    """The cursor is taken before the disk's sync; a write-back that
    finishes during the sync leaves nothing pending. The reply still says
    that the cursor stopped short of the log's end, so that marsd takes the
    next checkpoint at once (it waited for an idle checkpoint, 30 s, once:
    a joining replica meanwhile synced anew from a logfile that was gone)."""

    async def scenario():
        async with trio.open_nursery() as nursery:
            device = await started_device(device_args(tmp_path), nursery)
            await device.write(0, os.urandom(40000))        # held by the gate
            real_sync = device.translog.sync_disk

            def sync_while_the_write_back_catches_up():
                gate.set()
                assert device.writeback.wait(lambda: not device.writeback.queue, timeout=30)
                real_sync()
            device.translog.sync_disk = sync_while_the_write_back_catches_up
            start = device.translog.log_position
            reply = await device.answer({"cmd": "checkpoint"})
            assert reply["pending"] == 0, "the write-back caught up during the sync"
            assert reply["cursor"].split(",")[:2] == [start.logfile, "0"]
            assert reply["behind"], "the cursor is short of what was logged"
            reply = await device.answer({"cmd": "checkpoint"})
            assert not reply["behind"] and \
                reply["cursor"].split(",")[:2] == [reply["logfile"], str(reply["position"])]
            device.translog.close()

    trio.run(scenario)


def test_a_checkpoint_without_sync_tells_the_logs_end_and_neither_syncs_the_disk_nor_moves_the_cursor(
        tmp_path):
    """marsd asks for checkpoints without a sync while the device keeps
    logging (Primary.round): the log's end is the secondaries' news, and no
    cursor may come from a disk that was not synced (a crash of the machine
    could lose what the page cache held; recovery replays from the cursor)."""

    async def scenario():
        async with trio.open_nursery() as nursery:
            device = await started_device(device_args(tmp_path), nursery)
            synced = []
            real_sync = device.translog.sync_disk
            device.translog.sync_disk = lambda: (synced.append(True), real_sync())
            await device.write(0, os.urandom(40000))
            assert await trio.to_thread.run_sync(device.writeback.wait,
                                                 lambda: not device.writeback.queue, 30)
            reply = await device.answer({"cmd": "checkpoint", "sync": False})
            end = device.translog.log_position
            assert reply["cursor"] is None and not synced, "written back, but not synced"
            assert (reply["logfile"], reply["position"]) == (end.logfile, end.position)
            assert end.position > 40000 and not reply["behind"]
            reply = await device.answer({"cmd": "checkpoint"})
            assert synced, "a checkpoint syncs the disk unless told not to"
            assert reply["cursor"] == f"{end.logfile},{end.position},{end.position}"
            device.translog.close()

    trio.run(scenario)


def test_a_stop_without_sync_drains_the_write_back_and_leaves_the_disks_sync_to_marsd(tmp_path):
    """At a handover marsd stops the device without a sync of the disk (the
    new primary waits for the final version, not for this disk): the reply
    has no cursor, and the cursor for once the disk is synced is the log's
    end, everything written back."""

    async def scenario():
        async with trio.open_nursery() as nursery:
            device = await started_device(device_args(tmp_path), nursery)
            synced = []
            device.translog.sync_disk = lambda: synced.append(True)
            data = os.urandom(40000)
            await device.write(0, data)
            reply = await device.answer({"cmd": "stop", "sync": False})
            logfile, end = reply["closed"]
            assert reply["cursor"] is None and not synced
            assert reply["unsynced_cursor"] == f"{logfile},{end},{end}" and end > 40000
            assert reply["pending"] == 0 and reply["written"] == 40000
            device.translog.close()
        with open(tmp_path / "disk", "rb") as disk:
            assert disk.read(40000) == data

    trio.run(scenario)


def test_a_failed_write_back_answers_eio_and_tells_marsd(tmp_path):
    async def scenario():
        async with trio.open_nursery() as nursery:
            device = await started_device(device_args(tmp_path, disk="/dev/full"), nursery)
            await device.write(0, b"x" * 4096)
            with trio.fail_after(30):
                await device.until(lambda: False)       # returns on the failure
            await trio.sleep(0)
            assert device.events[-1]["event"] == "writeback-failed"
            assert "No space left" in device.events[-1]["reason"]
            with pytest.raises(OSError) as refused:
                await device.write(4096, b"y")
            assert refused.value.errno == errno.EIO
            with pytest.raises(OSError):
                await device.sync()
            reply = await device.answer({"cmd": "checkpoint"})
            assert reply["writeback_failed"] and reply["pending"] == 4096
            assert reply["cursor"] is None, "no cursor from a disk that cannot sync"
            assert device.translog.written_through().position == 0, "nor past its failure"
            assert [event["event"] for event in device.events].count("writeback-failed") == 1
            device.translog.close()

    trio.run(scenario)


def test_emergency_mode_drains_the_pending_writes_before_writing_directly(tmp_path, gate):

    async def scenario():
        async with trio.open_nursery() as nursery:
            device = await started_device(device_args(tmp_path), nursery)
            await device.write(0, b"old" * 1000)
            nursery.start_soon(device.enter_emergency, 0)
            while not device.emergency:
                await trio.sleep(0)
            done = trio.Event()

            async def direct():
                await device.write(0, b"new" * 1000)
                done.set()
            nursery.start_soon(direct)
            await trio.sleep(0.05)
            assert device.emergency and not done.is_set(), \
                "the direct write waits for the pending one"
            gate.set()
            with trio.fail_after(30):
                await done.wait()
            assert await device.read(0, 3000) == b"new" * 1000
            assert device.written == 6000
            device.translog.close()
        with open(tmp_path / "disk", "rb") as disk:
            assert disk.read(3000) == b"new" * 1000

    trio.run(scenario)


def test_recovery_after_emergency_mode_replays_nothing_over_the_direct_writes(tmp_path):
    """Emergency mode: writes go straight to the disk, and checkpoints gave
    no cursor, so `replay-<host>` stayed at the last one before it; the
    next device start (marsd restarted, a crash) replayed the logged
    records after that cursor on top of the newer direct writes: a flushed
    write lost. Where logging stopped is recorded in the resource dir
    before the first direct write; recovery replays nothing before it."""
    args = device_args(tmp_path)

    async def scenario():
        async with trio.open_nursery() as nursery:
            device = await started_device(args, nursery)
            await device.write(0, b"A" * 4096)
            cursor = (await device.answer({"cmd": "checkpoint"}))["cursor"]
            await device.write(0, b"B" * 4096)                  # logged, after the cursor
            await device.enter_emergency(0)
            assert device.events[-1]["event"] == "emergency"
            await device.write(0, b"C" * 4096)                  # straight to the disk
            await device.sync()
            reply = await device.answer({"cmd": "checkpoint"})
            assert reply["cursor"] == device.events[-1]["cursor"], \
                "the cursor moves to where logging stopped"
            device.translog.close()                             # crashed: marsd kept `cursor`
            return cursor

    stored = trio.run(scenario)
    again = TransactionLog(args.resource_dir, args.disk, "h1", LamportClock())
    assert again.recover(Cursor.parse(stored)) == 0
    assert again.read(0, 4096) == b"C" * 4096
    again.close()


def test_a_flush_in_emergency_mode_waits_for_what_was_logged_before_it(tmp_path, gate):
    """Writes acknowledged from the log while emergency mode began (the
    write-back behind) were neither on a synced disk nor, after the log's
    sync, covered by a flush: it synced the disk alone. It waits until
    emergency mode is ready (the log synced, written back, the disk
    synced)."""

    async def scenario():
        async with trio.open_nursery() as nursery:
            device = await started_device(device_args(tmp_path), nursery)
            await device.write(8192, b"X" * 4096)               # held by the gate
            nursery.start_soon(device.enter_emergency, 0)
            while not device.emergency:
                await trio.sleep(0)
            flushed = trio.Event()

            async def flush():
                await device.sync()
                flushed.set()
            nursery.start_soon(flush)
            await trio.sleep(0.05)
            assert not flushed.is_set(), "the flush waits for the pending write"
            gate.set()
            with trio.fail_after(30):
                await flushed.wait()
            with open(tmp_path / "disk", "rb") as disk:
                disk.seek(8192)
                assert disk.read(4096) == b"X" * 4096
            device.translog.close()

    trio.run(scenario)


def test_a_checkpoint_syncs_the_log_before_its_cursor_passes_a_record(tmp_path, monkeypatch):
    """The write-back writes a record to the disk once appended, durable in
    the log or not; the checkpoint synced the disk alone and moved the
    cursor past records a power loss could still take from the log: the
    primary's disk kept a write its replicas never got."""
    synced = []
    real = os.fdatasync

    async def scenario():
        async with trio.open_nursery() as nursery:
            device = await started_device(device_args(tmp_path), nursery)
            await device.write(0, os.urandom(4096))             # no flush
            assert await trio.to_thread.run_sync(device.writeback.wait,
                                                 lambda: not device.writeback.queue, 30)
            logfile = os.path.join(device.args.resource_dir, device.translog.logfile)
            monkeypatch.setattr(os, "fdatasync", lambda fd: (synced.append(
                {logfile: "log", device.args.disk: "disk"}.get(os.readlink(f"/proc/self/fd/{fd}"))),
                real(fd)))
            reply = await device.answer({"cmd": "checkpoint"})
            assert reply["cursor"].split(",")[1] == str(device.translog.log_position.position)
            assert synced[:2] == ["log", "disk"], synced
            device.translog.close()

    trio.run(scenario)


def test_overlapping_writes_end_on_the_disk_in_log_order(tmp_path):
    """Contiguous neighbours are merged, nothing is reordered: the last
    write of a block wins on the disk, as in the log."""
    fd = disk_file(tmp_path / "disk")
    queue = WriteBack(fd, through=0)
    writes = [(0, b"a" * 8192), (8192, b"b" * 4096), (4096, b"c" * 8192), (12288, b"d" * 10),
              (0, b"e" * 100)]
    try:
        for number, (offset, data) in enumerate(writes, 1):
            queue.add(offset, data, number)
        queue.write_back(1 << 20)
        assert hashlib.sha256(os.pread(fd, DISK, 0)).digest() == \
            hashlib.sha256(applied(writes)).digest()
    finally:
        os.close(fd)


def test_a_stop_with_the_write_back_held_leaves_the_writes_to_recovery(tmp_path):
    async def scenario():
        async with trio.open_nursery() as nursery:
            device = await started_device(device_args(tmp_path, debug_hold_writeback=True),
                                          nursery)
            await device.write(0, b"held" * 1024)
            with trio.fail_after(30):
                reply = await device.answer({"cmd": "stop"})
            assert reply["pending"] == 4096 and reply["written"] == 0
            assert reply["cursor"].split(",")[:2] == [device.translog.logfile, "0"]
            device.translog.close()

    trio.run(scenario)


def test_a_rotation_at_the_threshold_goes_on_beside_the_writes(tmp_path):
    """Writes go to the next logfile at once; the closed one is reported
    with its end; a flush covers both logfiles; reads see every write."""
    async def scenario():
        async with trio.open_nursery() as nursery:
            device = await started_device(device_args(tmp_path, rotate_size=20000), nursery)
            first = device.translog.logfile
            await device.write(0, os.urandom(30000))
            await device.write(40000, b"next" * 100)
            with trio.fail_after(30):
                while not any(event.get("event") == "rotated" for event in device.events):
                    await trio.sleep(0.01)
            rotated = [event for event in device.events if event.get("event") == "rotated"]
            assert rotated[0]["closed"][0] == first
            assert os.path.getsize(os.path.join(device.args.resource_dir, first)) == \
                rotated[0]["closed"][1]
            assert device.translog.logfile != first
            await device.write(80000, b"after" * 10)
            await device.sync()
            assert await device.read(80000, 50) == b"after" * 10
            reply = await device.answer({"cmd": "stop"})
            assert reply["pending"] == 0
            device.translog.close()

    trio.run(scenario)


def test_writes_past_the_threshold_before_the_rotation_runs_rotate_once(tmp_path):
    """Every write beyond the threshold came before the rotation took its
    lock: one rotation, not one per write (each rotated the fresh, empty
    logfile once more); a log-rotate that came first leaves the threshold's
    task nothing to do."""
    async def scenario():
        async with trio.open_nursery() as nursery:
            device = await started_device(device_args(tmp_path, rotate_size=20000), nursery)
            first = device.translog.logfile
            for index in range(8):          # no checkpoint in between: no task runs
                device.write_now(index * 8192, os.urandom(8192))
            with trio.fail_after(30):
                while not any(event.get("event") == "rotated" for event in device.events):
                    await trio.sleep(0.01)
            await trio.sleep(0.1)           # room for any other rotation to show up
            rotated = [event["closed"][0] for event in device.events
                       if event.get("event") == "rotated"]
            assert rotated == [first]
            names = sorted(name for name in os.listdir(device.args.resource_dir)
                           if name.startswith("log-"))
            assert names == [first, device.translog.logfile]

            async with device.rotation:         # a log-rotate under way meanwhile
                device.write_now(0, os.urandom(30000))      # past the threshold again
                await trio.sleep(0.05)          # the threshold's task waits for the lock
                old, closed = device.translog.switch()
                old.sync()
                old.close()
            await trio.sleep(0.1)
            assert [event["closed"][0] for event in device.events
                    if event.get("event") == "rotated"] == [first]
            assert closed.position > 20000
            assert os.path.getsize(os.path.join(device.args.resource_dir,
                                                device.translog.logfile)) == 0
            await device.answer({"cmd": "stop"})
            device.translog.close()

    trio.run(scenario)


def test_a_read_the_page_cache_cannot_serve_goes_to_a_thread(tmp_path, monkeypatch):
    """Reads are served on the event loop only from the page cache
    (RWF_NOWAIT); one that would wait for the disk is read in a thread."""
    calls = []
    real_preadv = os.preadv

    def uncached(fd, buffers, offset, flags=0):
        calls.append(flags)
        if flags & os.RWF_NOWAIT:
            raise BlockingIOError(errno.EAGAIN, "would block")
        return real_preadv(fd, buffers, offset, flags)

    async def scenario():
        async with trio.open_nursery() as nursery:
            device = await started_device(device_args(tmp_path, debug_hold_writeback=True),
                                          nursery)
            os.pwrite(device.translog.disk_fd, b"on the disk", 100)
            await device.write(103, b"!!")              # pending: laid over the disk
            assert await device.read(100, 11) == b"on !!e disk"
            monkeypatch.setattr(os, "preadv", uncached)
            with pytest.raises(BlockingIOError):
                device.translog.read(100, 11, nowait=True)
            assert await device.read(100, 11) == b"on !!e disk"
            assert calls == [os.RWF_NOWAIT, os.RWF_NOWAIT]
            device.translog.close()

    trio.run(scenario)

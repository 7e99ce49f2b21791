"""Appending a logfile past the page cache (`DirectAppender`): the file
always holds a prefix of what was appended, every block is written one
way only (whole blocks past the page cache, the rest through it), a file
system without O_DIRECT loses nothing, a failed write is kept and raised;
and the primary's write-back never puts a write on the disk before its
record is in the logfile. Whole blocks go with O_DIRECT (not uncached:
`DirectAppender` says why)."""

import errno
import fcntl
import hashlib
import os
import random
import threading

import pytest

from mars import directio, libc
from mars.directio import DIRECT_ALIGN, DirectAppender
from mars.lamport import LamportClock
from mars.logfile import LogScan, LogWriter
from mars.translog import TransactionLog


def pieces(seed, count):
    """Appends of every kind: a few bytes, under a block, many blocks,
    more than a staging buffer, starting anywhere in a block."""
    rng = random.Random(seed)
    sizes = [1, 60, 4095, 4096, 4097, 200_000, 1 << 20, 5 << 20]
    return [rng.randbytes(rng.choice(sizes) + rng.randrange(3)) for _ in range(count)]


@pytest.fixture
def writes(monkeypatch):
    """(past the page cache?, offset, length) of every write the appender
    makes, and ("written out", offset, length) of every wait for the page
    cache."""
    seen = []
    real, real_write_out = directio.pwritev_all, libc.write_out

    def spy(fd, buffers, offset, flags=0):
        direct = bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT or
                      flags & directio.RWF_DONTCACHE)
        seen.append((direct, offset, sum(len(buffer) for buffer in buffers)))
        return real(fd, buffers, offset, flags)

    def write_out(fd, offset, length):
        seen.append(("written out", offset, length))
        return real_write_out(fd, offset, length)

    monkeypatch.setattr(directio, "pwritev_all", spy)
    monkeypatch.setattr(libc, "write_out", write_out)
    return seen


def blocks(offset, length):
    return range(offset // DIRECT_ALIGN, (offset + length - 1) // DIRECT_ALIGN + 1)


def sync_within(appender, seconds=30):
    """appender.sync(), failing (not hanging) when it does not return."""
    failure = []

    def sync():
        try:
            appender.sync()
        except Exception as exc:    # noqa: BLE001 (raised in the test's thread)
            failure.append(exc)

    thread = threading.Thread(target=sync, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"sync did not return within {seconds} s"
    if failure:
        raise failure[0]


def test_the_file_holds_what_was_appended_and_nothing_goes_direct_above_unwritten_cache(
        tmp_path, writes):
    """Whole blocks go direct, never one that went through the page cache
    (a reader may hold the disk's older copy of it, and see zeros); and no
    direct write lands above a block that went through the page cache and
    is not on the disk yet: after a power loss that block would read as
    zeros in the middle of the log."""
    path = tmp_path / "log"
    appender = DirectAppender(str(path), stage_bytes=1 << 20, stages=2)
    appended = b""
    for piece in pieces(1, 40):
        # in parts, as the log writer hands over header and payload
        appender.append([piece[:60], memoryview(piece)[60:]], len(piece))
        appended += piece
    sync_within(appender)
    assert appender.written == len(appended)
    assert path.read_bytes() == appended
    appender.close()

    assert_one_way_and_written_out_below(writes)


def assert_one_way_and_written_out_below(writes):
    """The block model of `writes` (the fixture's record): something went
    direct, something through the page cache; no block both ways; no
    direct write above a block of the page cache not written out."""
    assert any(direct is True for direct, _, _ in writes), "nothing went direct"
    assert any(direct is False for direct, _, _ in writes)
    dirty = set()                       # blocks written through the page cache, not written out
    cached = set()                      # blocks ever written through the page cache
    for direct, offset, length in writes:
        if direct == "written out":
            dirty -= set(blocks(offset, length))
        elif direct:
            assert offset % DIRECT_ALIGN == 0 and length % DIRECT_ALIGN == 0
            below = sorted(block for block in dirty if block < offset // DIRECT_ALIGN)
            assert not below, f"direct write at {offset} above blocks {below} not written out"
            both = sorted(cached & set(blocks(offset, length)))
            assert not both, f"direct write at {offset} over blocks {both} of the page cache"
            dirty -= set(blocks(offset, length))
        else:
            dirty |= set(blocks(offset, length))
            cached |= set(blocks(offset, length))


def test_a_stream_of_large_appends_goes_direct_from_end_to_end(tmp_path, writes, monkeypatch):
    """Each staged buffer's last partial block is carried to the next one,
    which writes it direct with its own bytes: no block of the stream goes
    through the page cache and nothing waits for a write-out, but the last
    block, which the sync writes."""
    monkeypatch.setattr(directio, "CARRY_SECONDS", 60)      # no append comes too late
    path = tmp_path / "log"
    appender = DirectAppender(str(path), stage_bytes=1 << 20, stages=2)
    rng = random.Random(8)
    data = [rng.randbytes(rng.choice([300_001, 1 << 20, 3 << 20]) + rng.randrange(4096))
            for _ in range(12)]
    for piece in data:
        appender.append([piece[:64], memoryview(piece)[64:]], len(piece))
    appended = b"".join(data)
    assert appender.wait_written(len(appended) // DIRECT_ALIGN * DIRECT_ALIGN, timeout=30)
    assert appender.written == len(appended) // DIRECT_ALIGN * DIRECT_ALIGN
    assert path.stat().st_size == appender.written          # the carried block is not in the file
    assert all(direct is True for direct, _, _ in writes), writes
    sync_within(appender)
    assert appender.written == len(appended)
    assert path.read_bytes() == appended
    appender.close()
    assert writes[-1] == (False, len(appended) // DIRECT_ALIGN * DIRECT_ALIGN,
                          len(appended) % DIRECT_ALIGN)
    assert_one_way_and_written_out_below(writes)


def test_a_carried_block_no_append_follows_goes_through_the_page_cache(
        tmp_path, writes, monkeypatch):
    """Alone, a carried block is written through the page cache after
    CARRY_SECONDS (a reader, the write-back, waits no longer); the next
    staged buffer then writes the rest of that block through the page
    cache too, and writes it out before its direct blocks."""
    monkeypatch.setattr(directio, "CARRY_SECONDS", 0.05)
    path = tmp_path / "log"
    appender = DirectAppender(str(path), stage_bytes=1 << 20, stages=2)
    first, second = random.Random(9).randbytes(500_001), random.Random(10).randbytes(700_003)
    appender.append([first], len(first))
    assert appender.wait_written(len(first), timeout=30)
    assert path.read_bytes() == first
    tail_block = len(first) // DIRECT_ALIGN * DIRECT_ALIGN
    assert (False, tail_block, len(first) - tail_block) in writes
    appender.append([second], len(second))
    appender.close()
    assert path.read_bytes() == first + second
    after = writes[writes.index((False, tail_block, len(first) - tail_block)) + 1:]
    assert after[0] == (False, len(first), DIRECT_ALIGN - len(first) % DIRECT_ALIGN)
    assert after[1][0] == "written out" and after[2][0] is True
    assert_one_way_and_written_out_below(writes)


def test_small_appends_after_a_carried_block_keep_the_bytes_and_the_block_rules(
        tmp_path, writes, monkeypatch):
    """An append too small to go direct is staged while a block is carried
    (written at once it would land beyond bytes not yet in the file)."""
    monkeypatch.setattr(directio, "CARRY_SECONDS", 60)
    path = tmp_path / "log"
    appender = DirectAppender(str(path), stage_bytes=1 << 20, stages=2)
    rng = random.Random(11)
    data = [rng.randbytes(size) for size in (300_001, 60, 4097, 100, 5000, 260_000, 7)]
    for piece in data:
        appender.append([piece], len(piece))
    sync_within(appender)
    appender.close()
    assert path.read_bytes() == b"".join(data)
    assert_one_way_and_written_out_below(writes)


@pytest.mark.parametrize("seed", range(3))
def test_appends_syncs_and_pauses_in_any_order_keep_the_bytes_and_the_block_rules(
        tmp_path, writes, monkeypatch, seed):
    """Carried blocks taken by the next buffer, given up after a pause,
    written for a sync from another thread while appends go on: the
    file holds every byte, every block went one way only, and `written`
    never runs backwards nor past what was appended."""
    monkeypatch.setattr(directio, "CARRY_SECONDS", 0.002)
    rng = random.Random(seed)
    path = tmp_path / "log"
    appender = DirectAppender(str(path), stage_bytes=1 << 20, stages=2)
    stop, seen = threading.Event(), []

    def watch_written():
        while not stop.is_set():
            seen.append(appender.written)

    watcher = threading.Thread(target=watch_written)
    watcher.start()
    syncs = []
    try:
        for piece in pieces(seed + 20, 30):
            appender.append([piece[:64], memoryview(piece)[64:]], len(piece))
            action = rng.random()
            if action < 0.15:
                sync_within(appender)
            elif action < 0.25:
                sync = threading.Thread(target=appender.sync)
                sync.start()
                syncs.append(sync)
            elif action < 0.35:
                assert appender.wait_written(appender.end, timeout=30)     # the pause gives it up
        for sync in syncs:
            sync.join(30)
            assert not sync.is_alive(), "a sync did not return within 30 s"
        sync_within(appender)
    finally:
        stop.set()
        watcher.join()
        appender.close()
    assert path.read_bytes() == b"".join(pieces(seed + 20, 30))
    assert seen == sorted(seen) and seen[-1] <= appender.end
    assert_one_way_and_written_out_below(writes)


def test_an_appender_on_a_file_ending_in_a_partial_block_carries_on_from_its_bytes(
        tmp_path, writes):
    path = tmp_path / "log"
    start = random.Random(12).randbytes(10_000)
    path.write_bytes(start)
    appender = DirectAppender(str(path), size=len(start), stage_bytes=1 << 20, stages=2)
    more = random.Random(13).randbytes(600_000)
    appender.append([more], len(more))
    appender.close()
    assert path.read_bytes() == start + more


def test_fetched_bytes_appended_one_way_keep_the_block_rules_and_the_bytes(tmp_path, writes):
    """A secondary appends each fetch reply with `append_one_way`: from a
    page-aligned buffer in which the reply sits at its file offset's place
    in a block, its whole blocks go direct; a reply in an unaligned buffer
    (a compressed one, decoded) goes through the page cache; the block
    rules of the appender hold across replies."""
    path = tmp_path / "log"
    path.write_bytes(b"")
    appended = b""
    for number, piece in enumerate(pieces(2, 30)):
        start = len(appended)
        if number % 7 == 3:
            data = piece                                    # bytes: unaligned
        else:
            skew = start % DIRECT_ALIGN
            buffer = directio.aligned_buffer(len(piece) + skew + DIRECT_ALIGN)
            buffer[skew:skew + len(piece)] = piece
            data = memoryview(buffer)[skew:skew + len(piece)]
        directio.append_one_way(str(path), data, start)
        appended += piece
    assert path.read_bytes() == appended
    assert_one_way_and_written_out_below(writes)


def test_a_reader_always_sees_a_prefix_of_what_was_appended(tmp_path):
    """The fetch of a secondary reads the primary's logfile as it grows: the
    size it sees never runs ahead of the bytes, and there is never a hole."""
    path = tmp_path / "log"
    appender = DirectAppender(str(path), stage_bytes=1 << 20, stages=2)
    appends = pieces(2, 30)
    data = b"".join(appends)
    stop, reading, seen = threading.Event(), threading.Event(), []

    def read_while_appending():
        while not stop.is_set():
            seen.append(path.read_bytes())
            reading.set()

    reader = threading.Thread(target=read_while_appending)
    reader.start()
    try:
        assert reading.wait(30), "the reader never read"
        for piece in appends:
            appender.append([piece], len(piece))
        sync_within(appender)
        reading.clear()                 # and once more after the last append
        assert reading.wait(30), "the reader stopped reading"
    finally:
        stop.set()
        reader.join()
        appender.close()
    assert len(seen) > 1
    for snapshot in seen:
        assert data.startswith(snapshot), f"a read of {len(snapshot)} bytes is no prefix"


def test_a_file_system_without_direct_io_gets_everything_through_the_page_cache(
        tmp_path, no_direct_io):
    path = tmp_path / "log"
    appender = DirectAppender(str(path), stage_bytes=1 << 20, stages=2)
    data = pieces(3, 20)
    for piece in data:
        appender.append([piece], len(piece))
    appender.close()
    assert path.read_bytes() == b"".join(data)


def test_a_failed_write_is_kept_and_every_later_call_raises_it(tmp_path, monkeypatch, caplog):
    path = tmp_path / "log"
    appender = DirectAppender(str(path), stage_bytes=1 << 20, stages=2)
    first = random.Random(4).randbytes(300_000)
    appender.append([first], len(first))
    sync_within(appender)
    real = directio.pwritev_all

    def failing(fd, buffers, offset, flags=0):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(directio, "pwritev_all", failing)
    appender.append([first], len(first))            # staged: the thread fails on it
    with pytest.raises(OSError) as failure:
        sync_within(appender)
    assert failure.value.errno == errno.EIO and str(path) in str(failure.value)
    monkeypatch.setattr(directio, "pwritev_all", real)
    with pytest.raises(OSError):
        appender.append([b"x"], 1)
    with pytest.raises(OSError):
        appender.wait_written(appender.end)
    appender.close()
    assert path.read_bytes() == first                 # what was in the file stays
    assert sum("appending to" in record.message for record in caplog.records) == 1


def test_an_unexpected_error_in_the_thread_is_raised_as_eio_not_left_to_hang(tmp_path, monkeypatch):
    appender = DirectAppender(str(tmp_path / "log"), stage_bytes=1 << 20, stages=2)

    def broken(self, *job):
        raise ValueError("a bug")

    monkeypatch.setattr(DirectAppender, "_write", broken)
    data = bytes(300_000)
    appender.append([data], len(data))              # staged: the thread fails on it
    with pytest.raises(OSError) as failure:
        appender.wait_written(len(data), timeout=30)
    assert failure.value.errno == errno.EIO and "a bug" in str(failure.value)
    appender.close()


def test_the_write_back_puts_nothing_on_the_disk_before_its_record_is_in_the_log(
        tmp_path, monkeypatch):
    """The log is written from a thread: a write may be acknowledged before
    its record is in the logfile. The disk must not get it first, or a
    crash would leave the disk holding a write the log (and with it every
    secondary and the recovery) does not."""
    held, real_write = threading.Event(), DirectAppender._write
    monkeypatch.setattr(DirectAppender, "_write",
                        lambda self, *job: (held.wait(), real_write(self, *job)))
    disk = tmp_path / "disk"
    disk.write_bytes(bytes(4 << 20))
    log = TransactionLog(str(tmp_path / "resource-vm1"), str(disk), "h1", LamportClock())
    log.recover(None)
    try:
        data = random.Random(5).randbytes(1 << 20)
        log.write_many([(0, data), (2 << 20, data)])
        assert log.read(0, len(data)) == data          # reads see it at once
        assert not log.drain(timeout=0.3)              # the write-back waits for the log
        assert disk.read_bytes()[:len(data)] == bytes(len(data))
        held.set()
        assert log.drain(timeout=30)
        assert disk.read_bytes()[:len(data)] == data
        closed = log.rotate()
    finally:
        held.set()
        log.close()
    records = list(LogScan(f"{log.resource_dir}/{closed.logfile}"))
    assert [(record.offset, hashlib.sha256(record.data).digest()) for record in records] == \
        [(0, hashlib.sha256(data).digest()), (2 << 20, hashlib.sha256(data).digest())]
    assert records[-1].end == closed.position


@pytest.mark.parametrize("compress", [False, True])
def test_a_direct_log_writer_writes_the_same_bytes_as_one_through_the_page_cache(
        tmp_path, compress):
    """Staged or written at once, compressed or not, records larger than a
    staging buffer too: the logfile is byte for byte the plain writer's."""
    rng = random.Random(6)
    batches = [[(1000 + index, rng.randrange(1 << 30), piece)
                for index, piece in enumerate(pieces(seed, rng.randrange(1, 6)))]
               for seed in range(7, 19)]
    batches[3].append((99, 0, bytes(1 << 20)))           # compresses, if asked to
    plain = LogWriter(str(tmp_path / "plain"), 5, compress=compress)
    direct = LogWriter(str(tmp_path / "direct"), 5, compress=compress, direct=True)
    for batch in batches:
        assert direct.append_many(batch) == plain.append_many(batch)
    direct.close()
    plain.close()
    assert (tmp_path / "direct").read_bytes() == (tmp_path / "plain").read_bytes()
    scan = LogScan(str(tmp_path / "direct"))
    assert len(list(scan)) == sum(map(len, batches)) and scan.damage is None

"""Page-cache writes and reads of a disk that keep its folios small: the
write-back and the replay write in pieces that each stay inside one aligned
`CACHED_PIECE` (a long write would leave a large folio, and every later
small write into it walks all its blocks), with the same bytes on the disk;
the sync server's and the sync client's reads of a disk go without
readahead (`POSIX_FADV_RANDOM`), which allocates large folios, where the
file system takes no uncached reads (else `test_uncached_reads.py`)."""

import os
from contextlib import contextmanager

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from mars import directio, transfer
from mars.directio import CACHED_PIECE, pwritev_cached, read_in_small_folios
from mars.replay import replay
from mars.writeback import WriteBack
from tests.unit.conftest import write_log

DISK = 4 * CACHED_PIECE


@contextmanager
def recorded_writes():
    """Every pwritev_all of directio as (start, length), in order, while
    the context lasts. (Not monkeypatch: the property test needs a fresh
    list for each example.)"""
    calls = []
    real = directio.pwritev_all

    def recording(fd, buffers, offset, flags=0):
        calls.append((offset, sum(len(buffer) for buffer in buffers)))
        return real(fd, buffers, offset, flags)
    directio.pwritev_all = recording
    try:
        yield calls
    finally:
        directio.pwritev_all = real


@pytest.fixture
def calls():
    with recorded_writes() as calls:
        yield calls


def assert_inside_pieces(calls, start, size):
    """The calls write [start, start + size) in order, each inside one
    aligned CACHED_PIECE, none empty."""
    at = start
    for offset, length in calls:
        assert offset == at and length > 0
        assert offset // CACHED_PIECE == (offset + length - 1) // CACHED_PIECE, (offset, length)
        at += length
    assert at == start + size


def disk_file(path):
    with open(path, "wb") as handle:
        handle.truncate(DISK)
    return os.open(path, os.O_RDWR)


@settings(max_examples=60, deadline=None)
@given(start=st.integers(0, CACHED_PIECE + 5000),
       sizes=st.lists(st.sampled_from([1, 511, 4096, 4097, CACHED_PIECE - 1, CACHED_PIECE,
                                       CACHED_PIECE + 4096, 2 * CACHED_PIECE + 3]),
                      min_size=1, max_size=4))
def test_a_cached_write_lands_whole_in_calls_that_each_stay_inside_one_piece(
        tmp_path_factory, start, sizes):
    path = tmp_path_factory.mktemp("disk") / "disk"
    fd = disk_file(path)
    buffers = [os.urandom(size) for size in sizes]
    try:
        with recorded_writes() as calls:
            pwritev_cached(fd, buffers, start)
    finally:
        os.close(fd)
    data = b"".join(buffers)
    assert_inside_pieces(calls, start, len(data))
    assert path.read_bytes()[start:start + len(data)] == data


def test_the_write_back_writes_a_long_run_in_pieces_with_the_same_bytes(tmp_path, calls):
    fd = disk_file(tmp_path / "disk")
    queue = WriteBack(fd, through=0)
    runs = [(4096 * 3, os.urandom(CACHED_PIECE * 2)), (4096 * 3 + CACHED_PIECE * 2, os.urandom(5000))]
    for position, (offset, data) in enumerate(runs, 1):
        queue.add(offset, data, position)
    assert queue.write_back(1 << 30)
    os.close(fd)
    # neighbours in log order go as one run, in pieces
    assert_inside_pieces(calls, 4096 * 3, CACHED_PIECE * 2 + 5000)
    disk = (tmp_path / "disk").read_bytes()
    assert disk[4096 * 3:4096 * 3 + CACHED_PIECE * 2 + 5000] == runs[0][1] + runs[1][1]


def test_a_replay_through_the_page_cache_writes_each_record_in_pieces(tmp_path, calls):
    writes = [(1000, os.urandom(CACHED_PIECE + 7000)), (CACHED_PIECE * 3, os.urandom(4096))]
    write_log(str(tmp_path / "log"), writes)
    fd = disk_file(tmp_path / "disk")
    try:
        result = replay(str(tmp_path / "log"), fd)
    finally:
        os.close(fd)
    assert result.applied == 2
    assert_inside_pieces(calls[:-1], 1000, CACHED_PIECE + 7000)
    assert calls[-1] == (CACHED_PIECE * 3, 4096)
    disk = (tmp_path / "disk").read_bytes()
    for offset, data in writes:
        assert disk[offset:offset + len(data)] == data


@pytest.fixture
def advice(monkeypatch):
    """The fds advised POSIX_FADV_RANDOM, as (fd, the file's inode)."""
    advised = []
    real = os.posix_fadvise

    def recording(fd, offset, length, what):
        if what == os.POSIX_FADV_RANDOM:
            advised.append(os.fstat(fd).st_ino)
        return real(fd, offset, length, what)
    monkeypatch.setattr(os, "posix_fadvise", recording)
    return advised


def test_where_uncached_reads_are_refused_the_sync_reads_disks_without_readahead(
        tmp_path, advice, monkeypatch):
    disk = tmp_path / "disk"
    monkeypatch.setattr(directio, "_refused_uncached", {os.stat(tmp_path).st_dev})
    disk.write_bytes(os.urandom(DISK))
    kinds, data = transfer.read_chunks(str(disk), 0, CACHED_PIECE, 2, None, DISK)
    assert kinds == "dd" and bytes(data) == disk.read_bytes()[:2 * CACHED_PIECE]
    digests = transfer.local_digests(str(disk), 0, CACHED_PIECE, 2, DISK)
    assert len(digests) == 2
    assert advice == [os.stat(disk).st_ino] * 2


def test_advice_a_file_does_not_take_is_no_error():
    reader, writer = os.pipe()
    try:
        read_in_small_folios(reader)        # a pipe: ESPIPE
    finally:
        os.close(reader)
        os.close(writer)

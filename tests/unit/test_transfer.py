"""The data ports' pure parts (mars/transfer.py): logfile listing, the sync
chunk protocol on temp files (server reads, client applies, fast full sync
by digests), and DataServer's answers, called directly under trio.run."""

import errno
import fcntl
import gc
import hashlib
import os
import random
from functools import partial

import pytest
import trio
import xxhash

from mars import directio, libc, transfer
from mars.logfile import list_logfiles
from mars.transfer import (CHUNK, CHUNKS_PER_REQUEST, DataServer, FileRange, apply_chunks,
                           chunk_digest, local_digests, read_chunks)

SMALL = 4096                            # chunk size of most tests: fast, same code path
SIZE = 4 * SMALL + 1000                 # four full chunks and a partial fifth


def rand(n, seed):
    return random.Random(seed).randbytes(n)


def write_file(path, data):
    path.write_bytes(data)
    return str(path)


@pytest.fixture
def pair(tmp_path):
    """A source disk and a stale target, chunk by chunk:
    0 differs, 1 zero at the source but garbage at the target, 2 equal,
    3 data at the source but zero at the target, 4 (partial) differs."""
    same = rand(SMALL, 2)
    source = [rand(SMALL, 1), bytes(SMALL), same, rand(SMALL, 3), rand(1000, 4)]
    target = [rand(SMALL, 5), rand(SMALL, 6), same, bytes(SMALL), rand(1000, 7)]
    return (write_file(tmp_path / "source", b"".join(source)),
            write_file(tmp_path / "target", b"".join(target)), source)


def read(path):
    with open(path, "rb") as handle:
        return handle.read()


# ------------------------------------------------------------ list_logfiles
def test_list_logfiles_orders_by_number_whatever_the_origin(tmp_path):
    for name, size in [("log-000000010-h1", 5), ("log-000000002-h2", 3),
                       ("log-000000003-web-1", 0), ("log-000000001-h1", 7)]:
        (tmp_path / name).write_bytes(b"x" * size)
    assert list_logfiles(tmp_path) == [("log-000000001-h1", 7), ("log-000000002-h2", 3),
                                       ("log-000000003-web-1", 0), ("log-000000010-h1", 5)]


def test_list_logfiles_ignores_names_that_are_not_logfiles(tmp_path):
    (tmp_path / "log-000000001-h1").write_bytes(b"abc")
    for other in ("log-1-h1", "log-000000002-h1.tmp", "log-000000003-H1", "notes",
                  "log-000000004-", "version-1-h1", "log-0000000005-h1"):
        (tmp_path / other).write_bytes(b"zzzz")
    assert list_logfiles(tmp_path) == [("log-000000001-h1", 3)]


def test_list_logfiles_of_a_missing_directory_is_empty(tmp_path):
    assert list_logfiles(tmp_path / "resource-none") == []


# ------------------------------------------------------------- sync chunks
def test_fast_full_sync_sends_only_differing_chunks_and_makes_the_target_equal(pair):
    source, target, chunks = pair
    digests = local_digests(target, 0, SMALL, 5, SIZE)
    assert len(digests) == 5 and digests[2] == chunk_digest(chunks[2])
    kinds, data = read_chunks(source, 0, SMALL, 5, digests, SIZE)
    assert kinds == "dzsdd"
    assert data == chunks[0] + chunks[3] + chunks[4]
    written = apply_chunks(target, 0, SMALL, kinds, data, SIZE)
    assert written == SMALL + SMALL + SMALL + 1000      # chunk 1 zeroed, chunk 2 untouched
    assert read(target) == read(source)



def test_the_system_librarys_xxh3_gives_python_xxhashs_digests_and_hashes_the_chunks(
        pair, monkeypatch):
    """The chunks are hashed by the system's libxxhash (`make test`
    installs it; it picks the CPU's widest vectors), with python-xxhash's
    digests: a marsd without the library syncs with one that has it."""
    assert transfer._XXH3_128 is not None, "libxxhash0 (Debian) is not installed"
    for length in (1, 15, 240, 241, SMALL, CHUNK + 3):
        data = bytearray(rand(length, length))
        view = memoryview(data)
        assert transfer.view_digest(view) == xxhash.xxh3_128_hexdigest(data)
        assert transfer.view_digest(view[1:]) == xxhash.xxh3_128_hexdigest(data[1:])
    source, target, chunks = pair
    calls = []
    library = transfer._XXH3_128
    monkeypatch.setattr(transfer, "_XXH3_128",
                        lambda address, length: calls.append(length) or library(address, length))
    digests = local_digests(target, 0, SMALL, 5, SIZE)
    assert calls == [SMALL] * 4 + [1000]
    monkeypatch.setattr(transfer, "_XXH3_128", None)
    assert local_digests(target, 0, SMALL, 5, SIZE) == digests
    assert read_chunks(source, 0, SMALL, 5, digests, SIZE)[0] == "dzsdd"


def test_a_digest_names_its_kind_and_an_old_clients_bare_sha1_still_matches(pair):
    """marsd asks with xxh3-128 digests; one that sent bare SHA1 hex digests
    (before) is still answered as it expects; a kind the server does not
    know never matches, so the chunk travels: never skipped by a guess."""
    source, target, chunks = pair
    digests = local_digests(target, 0, SMALL, 5, SIZE)
    assert all(digest.startswith("xxh3-128:") and len(digest) == 9 + 32 for digest in digests)
    assert digests[2] == f"xxh3-128:{xxhash.xxh3_128_hexdigest(chunks[2])}"
    bare_sha1 = [hashlib.sha1(read(target)[i * SMALL:(i + 1) * SMALL]).hexdigest()
                 for i in range(4)]
    assert read_chunks(source, 0, SMALL, 4, bare_sha1, SIZE)[0] == "dzsd"
    assert read_chunks(source, 0, SMALL, 4, [f"sha1:{bare_sha1[2]}"] * 3, SIZE)[0] == "dzsd"
    unknown = [f"md4:{digest.partition(':')[2]}" for digest in digests]
    assert read_chunks(source, 0, SMALL, 5, unknown, SIZE)[0] == "dzddd"
    assert read_chunks(source, 0, SMALL, 5, [None, 7, "", ":", "xxh3-128:"], SIZE)[0] == "dzddd"


@pytest.fixture
def unequal_disks(tmp_path, monkeypatch):
    """A source and a target of four chunks larger than DIGEST_PIECE (not
    whole pages: 0 equal, 1 differs, 2 zero at the source, 3 equal and
    short), and the preadv calls made on them: [(offset, length)]."""
    chunk = 3 * transfer.DIGEST_PIECE + 512
    same = rand(chunk, 1)
    source_chunks = [same, rand(chunk, 2), bytes(chunk), rand(chunk - 100, 3)]
    target_chunks = [same, rand(chunk, 4), rand(chunk, 5), source_chunks[3]]
    source = write_file(tmp_path / "source", b"".join(source_chunks))
    target = write_file(tmp_path / "target", b"".join(target_chunks))
    reads = []
    real_preadv = os.preadv
    monkeypatch.setattr(transfer.os, "preadv", lambda fd, buffers, offset: reads.append(
        (offset, sum(len(buffer) for buffer in buffers))) or real_preadv(fd, buffers, offset))
    return chunk, source, target, source_chunks, target_chunks, reads


def test_digests_hash_chunks_where_they_lie_and_only_a_chunk_that_travels_is_read(
        unequal_disks):
    """Both sides hash their chunks in their map of the disk, reading none
    of them; the server reads into its reply only the chunk that travels,
    and the zero chunk whose digest differed (to tell it is zeros)."""
    chunk, source, target, source_chunks, target_chunks, reads = unequal_disks
    size = 4 * chunk - 100
    digests = local_digests(target, 0, chunk, 4, size)
    assert digests == [chunk_digest(part) for part in target_chunks]
    assert reads == []
    kinds, data = read_chunks(source, 0, chunk, 4, digests, size)
    assert (kinds, bytes(data)) == ("sdzs", source_chunks[1])
    assert reads == [(chunk, chunk), (2 * chunk, chunk)]


@pytest.mark.parametrize("refusal", [errno.EINVAL, errno.EFAULT, errno.EIO])
def test_digests_read_a_chunk_a_piece_at_a_time_where_the_map_cannot_give_it(
        unequal_disks, monkeypatch, refusal):
    """A kernel without MADV_POPULATE_READ (EINVAL), or a page that will
    not come in (EFAULT, EIO): the chunk is read in pieces of DIGEST_PIECE
    (a buffer that stays in the CPU's cache), with the same digests and
    kinds."""
    chunk, source, target, source_chunks, target_chunks, reads = unequal_disks
    size = 4 * chunk - 100

    def refuse(address, length):
        raise OSError(refusal, os.strerror(refusal))

    monkeypatch.setattr(transfer.libc, "populate_read", refuse)
    digests = local_digests(target, 0, chunk, 4, size)
    assert digests == [chunk_digest(part) for part in target_chunks]
    assert reads and max(length for _, length in reads) == transfer.DIGEST_PIECE
    reads.clear()
    kinds, data = read_chunks(source, 0, chunk, 4, digests, size)
    assert (kinds, bytes(data)) == ("sdzs", source_chunks[1])
    assert [read for read in reads if read[1] > transfer.DIGEST_PIECE] == [(chunk, chunk)]


def test_a_file_that_cannot_be_mapped_is_read(tmp_path, monkeypatch):
    """No map of the file (mmap refused, or an offset not on a page): the
    digests come from reading it."""
    chunk = transfer.DIGEST_PIECE
    payload = rand(3 * chunk, 9)
    path = write_file(tmp_path / "disk", payload)
    expected = [chunk_digest(payload[i * chunk:(i + 1) * chunk]) for i in range(3)]
    assert local_digests(path, 512, chunk, 2, 3 * chunk)[0] == chunk_digest(
        payload[512:512 + chunk])

    def no_map(*args, **kwargs):
        raise OSError(errno.ENODEV, "no mmap here")

    monkeypatch.setattr(transfer.mmap, "mmap", no_map)
    assert local_digests(path, 0, chunk, 3, 3 * chunk) == expected


def test_the_chunks_with_data_are_read_ahead_and_holes_are_not(tmp_path, monkeypatch):
    """Before the first chunk is read, the kernel is asked to read every
    chunk that has data (WILLNEED), and no hole (a fresh volume's zeros
    would fill the page cache)."""
    chunk = 1 << 20
    path = sparse_file(tmp_path / "disk", 4 * chunk, data_at=[chunk, 3 * chunk])
    if not holes_supported(path):
        pytest.skip("this file system reports no holes")
    read_ahead = []
    real_fadvise = os.posix_fadvise

    def fadvise(fd, offset, length, advice):
        if advice == os.POSIX_FADV_WILLNEED:
            read_ahead.append((offset, length))
        real_fadvise(fd, offset, length, advice)

    monkeypatch.setattr(directio.os, "posix_fadvise", fadvise)
    local_digests(path, 0, chunk, 4, 4 * chunk)
    assert read_ahead == [(chunk, chunk), (3 * chunk, chunk)]
    read_ahead.clear()
    kinds, _ = read_chunks(path, 0, chunk, 4, None, 4 * chunk)
    assert kinds == "zdzd"
    assert read_ahead == [(chunk, chunk), (3 * chunk, chunk)]


def test_a_chunk_the_client_has_as_zeros_is_read_once_not_hashed(tmp_path, monkeypatch):
    """A new member's fresh volume digests as zeros: the server's chunk
    travels unless it is zero too, which the one read into the reply
    tells; it is not hashed first."""
    chunk = 2 * transfer.DIGEST_PIECE
    payload = rand(chunk, 8)
    source = write_file(tmp_path / "source", payload + bytes(chunk))
    hashed = []
    real_file_digest, real_mapped_digest = transfer.file_digest, transfer.MappedRange.digest
    monkeypatch.setattr(transfer, "file_digest", lambda *args, **kwargs: hashed.append(args[1])
                        or real_file_digest(*args, **kwargs))
    monkeypatch.setattr(transfer.MappedRange, "digest", lambda self, *args: hashed.append(
        args[0]) or real_mapped_digest(self, *args))
    zeros = [transfer.zero_digest(chunk)] * 2
    kinds, data = read_chunks(source, 0, chunk, 2, zeros, 2 * chunk)
    assert (kinds, bytes(data)) == ("dz", payload) and hashed == []
    sha1_zeros = [f"sha1:{hashlib.sha1(bytes(chunk)).hexdigest()}"] * 2
    assert read_chunks(source, 0, chunk, 2, sha1_zeros, 2 * chunk)[0] == "dz" and hashed == []


def test_a_disk_shorter_than_the_resource_hashes_as_zeros_at_the_server_and_travels_from_a_client(
        tmp_path):
    chunk = 2 * transfer.DIGEST_PIECE
    size = 2 * chunk
    data = rand(chunk + transfer.DIGEST_PIECE // 2, 6)          # ends inside the second chunk
    short = write_file(tmp_path / "short", data)
    padded = write_file(tmp_path / "padded", data + bytes(size - len(data)))
    assert read_chunks(short, 0, chunk, 2, local_digests(padded, 0, chunk, 2, size), size)[0] \
        == "ss"
    digests = local_digests(short, 0, chunk, 2, size)
    assert digests[1] == chunk_digest(data[chunk:])
    kinds, sent = read_chunks(padded, 0, chunk, 2, digests, size)
    assert (kinds, bytes(sent)) == ("sd", data[chunk:] + bytes(size - len(data)))


def test_a_connections_buffer_is_reused_and_grows_for_a_larger_request(pair):
    source, _, chunks = pair
    buffer = bytearray()
    kinds, data = read_chunks(source, 0, SMALL, 1, None, SIZE, buffer)
    assert (kinds, bytes(data)) == ("d", chunks[0]) and len(buffer) == SMALL
    del data                            # sent
    kinds, data = read_chunks(source, 0, SMALL, 5, None, SIZE, buffer)
    assert kinds == "dzddd" and bytes(data) == chunks[0] + chunks[2] + chunks[3] + chunks[4]
    assert len(buffer) == SIZE

def test_a_request_larger_than_usual_whose_chunks_travel_gets_a_buffer_of_its_own(tmp_path):
    """A fast sync asks for up to MOST_CHUNKS_PER_REQUEST chunks while they
    are the same; one such request whose chunks then travel is answered from
    a buffer of its own: the connection keeps one of the usual request's size."""
    count = CHUNKS_PER_REQUEST + 4
    source = rand(SMALL * count, 8)
    path = write_file(tmp_path / "source", source)
    buffer = bytearray()
    kinds, data = read_chunks(path, 0, SMALL, CHUNKS_PER_REQUEST, None, len(source), buffer)
    assert kinds == "d" * CHUNKS_PER_REQUEST and len(buffer) == SMALL * CHUNKS_PER_REQUEST
    del data                            # sent
    kinds, data = read_chunks(path, 0, SMALL, count, None, len(source), buffer)
    assert kinds == "d" * count and bytes(data) == source
    assert len(buffer) == SMALL * CHUNKS_PER_REQUEST, "the connection's buffer grew for it"


def test_full_sync_without_digests_sends_every_non_zero_chunk(pair):
    source, target, chunks = pair
    kinds, data = read_chunks(source, 0, SMALL, 5, None, SIZE)
    assert kinds == "dzddd"
    assert data == chunks[0] + chunks[2] + chunks[3] + chunks[4]
    apply_chunks(target, 0, SMALL, kinds, data, SIZE)
    assert read(target) == read(source)


def test_sync_in_requests_from_an_offset_equals_one_request(pair):
    source, target, _ = pair
    for offset, count in ((0, 2), (2 * SMALL, 2), (4 * SMALL, 2)):
        digests = local_digests(target, offset, SMALL, count, SIZE)
        kinds, data = read_chunks(source, offset, SMALL, count, digests, SIZE)
        apply_chunks(target, offset, SMALL, kinds, data, SIZE)
    assert read(target) == read(source)


def test_the_last_partial_chunk_is_read_digested_and_written_at_its_length(pair, tmp_path):
    source, target, chunks = pair
    # a target file longer than the resource: nothing beyond `SIZE` is touched
    with open(target, "ab") as handle:
        handle.write(b"T" * 100)
    digests = local_digests(target, 4 * SMALL, SMALL, 3, SIZE)
    assert digests == [chunk_digest(read(target)[4 * SMALL:SIZE])]
    kinds, data = read_chunks(source, 4 * SMALL, SMALL, 3, digests, SIZE)
    assert (kinds, data) == ("d", chunks[4])
    assert apply_chunks(target, 4 * SMALL, SMALL, kinds, data, SIZE) == 1000
    assert read(target)[4 * SMALL:] == chunks[4] + b"T" * 100


def test_chunks_beyond_the_size_are_neither_read_nor_digested(pair):
    source, target, _ = pair
    assert read_chunks(source, SIZE, SMALL, 4, None, SIZE) == ("", b"")
    assert local_digests(target, SIZE, SMALL, 4, SIZE) == []
    assert apply_chunks(target, SIZE, SMALL, "dddd", b"x" * SMALL, SIZE) == 0


def test_zero_chunks_are_written_only_where_the_target_is_not_zero_already(tmp_path, monkeypatch):
    target = write_file(tmp_path / "target", bytes(SMALL) + rand(SMALL, 1) + bytes(1000))
    writes = []
    real_pwrite = os.pwrite

    def spy(fd, data, offset):
        writes.append((offset, len(data)))
        return real_pwrite(fd, data, offset)

    with monkeypatch.context() as patch:
        patch.setattr(transfer.os, "pwrite", spy)
        written = apply_chunks(target, 0, SMALL, "zzz", b"", 2 * SMALL + 1000)
    assert writes == [(SMALL, SMALL)]
    assert written == SMALL
    assert read(target) == bytes(2 * SMALL + 1000)


def test_a_chunk_equal_to_the_targets_digest_but_all_zero_still_travels_as_zero(tmp_path):
    source = write_file(tmp_path / "source", bytes(SMALL))
    kinds, data = read_chunks(source, 0, SMALL, 1, [chunk_digest(bytes(SMALL))], SMALL)
    assert (kinds, data) == ("z", b"")


def test_real_sized_chunks_zero_same_and_data(tmp_path):
    payload = rand(CHUNK, 9)
    source = write_file(tmp_path / "source", bytes(CHUNK) + payload + payload)
    target = write_file(tmp_path / "target", b"\1" * CHUNK + payload + bytes(CHUNK))
    size = 3 * CHUNK
    digests = local_digests(target, 0, CHUNK, 3, size)
    kinds, data = read_chunks(source, 0, CHUNK, 3, digests, size)
    assert (kinds, data) == ("zsd", payload)
    assert apply_chunks(target, 0, CHUNK, kinds, data, size) == 2 * CHUNK
    assert read(target) == read(source)


def test_a_sparse_target_gets_its_data_runs_allocated_and_its_zero_chunks_stay_holes(
        tmp_path, no_uncached_writes):
    """Without uncached writes, data chunks are allocated in one fallocate
    per run before they are written (a write into a hole allocates page by
    page, 2-4x slower on ext4); zero chunks stay holes, so a sparse replica
    stays sparse."""
    chunk = 1 << 16
    size = 6 * chunk
    payload = rand(2 * chunk, 11) + rand(chunk, 12)
    target = tmp_path / "target"
    with open(target, "wb") as handle:
        handle.truncate(size)
    calls = []
    real = libc._fallocate

    def spy(fd, mode, offset, length):
        calls.append((mode, offset, length))
        return real(fd, mode, offset, length)

    kinds = "ddzzdz"
    libc._fallocate = spy
    try:
        written = apply_chunks(str(target), 0, chunk, kinds, payload, size)
    finally:
        libc._fallocate = real
    assert written == 3 * chunk
    assert calls == [(0, 0, 2 * chunk), (0, 4 * chunk, chunk)]
    assert read(target) == payload[:2 * chunk] + bytes(2 * chunk) + payload[2 * chunk:] + \
        bytes(chunk)
    allocated = os.stat(target).st_blocks * 512
    if allocated:                       # a file system that allocates at all
        assert allocated < size


def sparse_file(path, size, data_at=()):
    """A file of `size` bytes, holes but for 4 KiB of data at each offset
    in `data_at`."""
    with open(path, "wb") as handle:
        handle.truncate(size)
        for offset in data_at:
            handle.seek(offset)
            handle.write(rand(4096, offset))
    return str(path)


def holes_supported(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.lseek(fd, 0, os.SEEK_DATA) > 0
    except OSError:
        return False
    finally:
        os.close(fd)


def test_holes_are_told_from_data_written_or_not_yet_written_back(tmp_path):
    chunk = 1 << 20
    path = sparse_file(tmp_path / "disk", 4 * chunk, data_at=[chunk + 8192])
    if not holes_supported(path):
        pytest.skip("this file system reports no holes")
    fd = os.open(path, os.O_RDWR)
    try:
        assert transfer.is_hole(fd, 0, chunk)
        assert not transfer.is_hole(fd, chunk, chunk)                   # data inside
        assert not transfer.is_hole(fd, 0, chunk + 8192 + 1)            # reaches the data
        assert transfer.is_hole(fd, 2 * chunk, 2 * chunk)               # to the end
        assert transfer.is_hole(fd, 4 * chunk, chunk)                   # beyond the end
        os.pwrite(fd, b"x", 3 * chunk + 5)          # in the page cache only, not synced
        assert not transfer.is_hole(fd, 3 * chunk, chunk)
    finally:
        os.close(fd)
    read_end, write_end = os.pipe()
    try:
        assert transfer.is_hole(read_end, 0, chunk) is False            # no holes to ask
    finally:
        os.close(read_end)
        os.close(write_end)


def test_the_data_of_a_range_is_counted_without_its_holes(tmp_path):
    chunk = 1 << 20
    path = sparse_file(tmp_path / "disk", 4 * chunk, data_at=[chunk + 8192, 3 * chunk])
    if not holes_supported(path):
        pytest.skip("this file system reports no holes")
    fd = os.open(path, os.O_RDWR)
    try:
        assert directio.data_bytes(fd, 0, 4 * chunk) == 2 * 4096
        assert directio.data_bytes(fd, 0, chunk) == 0
        assert directio.data_bytes(fd, chunk + 8192 + 100, 3 * chunk + 10) == 4096 - 100 + 10
        assert directio.data_bytes(fd, 4 * chunk, 5 * chunk) == 0        # beyond the end
        os.pwrite(fd, bytes(range(256)) * 16, 0)    # in the page cache only, not synced
        assert directio.data_bytes(fd, 0, chunk) == 4096
    finally:
        os.close(fd)
    read_end, write_end = os.pipe()
    try:
        assert directio.data_bytes(read_end, 0, chunk) == chunk        # no holes to ask
    finally:
        os.close(read_end)
        os.close(write_end)


def test_holes_of_the_source_travel_as_zero_chunks_unread_and_holes_of_the_target_stay(
        tmp_path, monkeypatch):
    """A fresh volume is mostly holes: neither side reads them (reading
    made page cache of zeros, as costly as data on a fresh VM)."""
    chunk = 1 << 16
    size = 4 * chunk
    source = sparse_file(tmp_path / "source", size, data_at=[2 * chunk])
    target = sparse_file(tmp_path / "target", size, data_at=[3 * chunk + 100])
    if not holes_supported(source):
        pytest.skip("this file system reports no holes")
    reads = []
    real_preadv, real_pread = os.preadv, os.pread
    monkeypatch.setattr(transfer.os, "preadv",
                        lambda fd, buffers, offset: reads.append(offset) or
                        real_preadv(fd, buffers, offset))
    monkeypatch.setattr(transfer.os, "pread",
                        lambda fd, count, offset: reads.append(offset) or
                        real_pread(fd, count, offset))
    kinds, data = read_chunks(source, 0, chunk, 4, None, size)
    assert (kinds, reads) == ("zzdz", [2 * chunk])
    reads.clear()
    assert apply_chunks(target, 0, chunk, kinds, data, size) == 2 * chunk
    assert reads == [3 * chunk]                 # only the target's chunk that holds data
    assert read(target) == read(source)


def test_the_digests_of_holes_are_those_of_zeros_and_holes_are_not_read(tmp_path, monkeypatch):
    chunk = 1 << 16
    size = 3 * chunk + 1000
    target = sparse_file(tmp_path / "target", size, data_at=[chunk])
    if not holes_supported(target):
        pytest.skip("this file system reports no holes")
    expected = [chunk_digest(part) for part in
                (bytes(chunk), read(target)[chunk:2 * chunk], bytes(chunk), bytes(1000))]
    reads = []                  # chunks read, or hashed in the map
    real_preadv, real_mapped_digest = os.preadv, transfer.MappedRange.digest
    monkeypatch.setattr(transfer.os, "preadv", lambda fd, buffers, offset: reads.append(offset) or
                        real_preadv(fd, buffers, offset))
    monkeypatch.setattr(transfer.MappedRange, "digest", lambda self, start, *args: reads.append(
        start) or real_mapped_digest(self, start, *args))
    assert local_digests(target, 0, chunk, 4, size) == expected
    assert reads == [chunk]


def test_a_disk_that_refuses_fallocate_is_written_all_the_same(tmp_path, monkeypatch,
                                                               no_uncached_writes):
    """A block device (ENODEV) or a file system without fallocate
    (EOPNOTSUPP): the chunks are written as before, nothing is emulated."""
    payload = rand(3 * SMALL, 13)
    target = write_file(tmp_path / "target", bytes(3 * SMALL))
    refused = []
    monkeypatch.setattr(libc, "_fallocate", lambda *args: refused.append(args) or -1)
    assert apply_chunks(target, 0, SMALL, "ddd", payload, 3 * SMALL) == 3 * SMALL
    assert len(refused) == 1 and read(target) == payload


def test_data_chunks_go_uncached_into_holes_and_direct_over_blocks_the_disk_has(
        tmp_path, monkeypatch):
    """A fresh replica's holes get their data chunks as uncached writes
    (RWF_DONTCACHE: no unwritten extents to convert, nothing allocated
    ahead); a chunk over blocks the disk has goes direct; zero chunks stay
    holes; the bytes are right either way."""
    chunk = 1 << 16
    size = 6 * chunk
    target = tmp_path / "target"
    sparse_file(target, size, data_at=[chunk + 4096])
    if not holes_supported(str(target)):
        pytest.skip("the file system has no holes")
    payload = rand(3 * chunk, 31)
    writes, allocated = [], []
    real, real_fallocate = transfer.pwritev_all, libc._fallocate

    def spy(fd, buffers, offset, flags=0):
        direct = bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT)
        writes.append(("uncached" if flags & directio.RWF_DONTCACHE else
                       "direct" if direct else "cached", offset))
        return real(fd, buffers, offset, flags)

    monkeypatch.setattr(transfer, "pwritev_all", spy)
    monkeypatch.setattr(directio, "pwritev_all", spy)
    monkeypatch.setattr(libc, "_fallocate", lambda *args: allocated.append(args) or
                        real_fallocate(*args))
    aligned = directio.aligned_buffer(3 * chunk)
    aligned[:] = payload
    assert apply_chunks(str(target), 0, chunk, "ddzzdz", aligned, size) == 3 * chunk
    assert writes == [("uncached", 0), ("direct", chunk), ("uncached", 4 * chunk)]
    assert allocated == []
    assert read(target) == payload[:2 * chunk] + bytes(2 * chunk) + payload[2 * chunk:] + \
        bytes(chunk)
    assert os.stat(target).st_blocks * 512 < size


def test_a_kernel_without_uncached_writes_gets_direct_ones(tmp_path, monkeypatch):
    """EOPNOTSUPP for RWF_DONTCACHE (a kernel before 6.14, a block device):
    the writer writes the same piece with O_DIRECT and asks no more, nor
    does a later one on that file system (a sync's next reply, which then
    allocates its holes ahead again)."""
    target = tmp_path / "target"
    target.write_bytes(bytes(3 * 4096))
    refused = []
    real = directio.pwritev_all

    def refusing(fd, buffers, offset, flags=0):
        if flags & directio.RWF_DONTCACHE:
            refused.append(offset)
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")
        return real(fd, buffers, offset, flags)

    monkeypatch.setattr(directio, "pwritev_all", refusing)
    piece = directio.aligned_buffer(4096)
    with directio.DirectWriter(str(target), uncached=True) as writer:
        for offset in (0, 8192):
            piece[:] = rand(4096, offset)
            assert writer.write(piece, offset)
            assert read(target)[offset:offset + 4096] == bytes(piece)
        assert fcntl.fcntl(writer.fd, fcntl.F_GETFL) & os.O_DIRECT
    assert refused == [0]
    with directio.DirectWriter(str(target), uncached=True) as writer:
        assert not writer.uncached and writer.write(piece, 4096)
    with directio.DiskWriter(str(target)) as writer:
        assert not writer.uncached
    assert refused == [0]


def test_a_file_system_that_refuses_uncached_writes_with_einval_gets_the_page_cache(
        tmp_path, monkeypatch):
    """EINVAL for an uncached write into a hole: that chunk and the rest go
    through the page cache (the writer asks no more), the bytes are right."""
    chunk = 1 << 16
    target = tmp_path / "target"
    sparse_file(target, 3 * chunk)
    real = directio.pwritev_all

    def refusing(fd, buffers, offset, flags=0):
        if flags & directio.RWF_DONTCACHE:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(fd, buffers, offset, flags)

    monkeypatch.setattr(directio, "pwritev_all", refusing)
    monkeypatch.setattr(transfer, "pwritev_all", refusing)
    payload = rand(3 * chunk, 33)
    aligned = directio.aligned_buffer(3 * chunk)
    aligned[:] = payload
    assert apply_chunks(str(target), 0, chunk, "ddd", aligned, 3 * chunk) == 3 * chunk
    assert read(target) == payload


def test_fewer_digests_than_chunks_compare_only_those_given(pair):
    """Regression: a short digest list raised IndexError, which DataServer's
    handler does not catch: one bad request took marsd down."""
    source, target, chunks = pair
    digests = local_digests(target, 0, SMALL, 5, SIZE)[:3]
    assert read_chunks(source, 0, SMALL, 5, digests, SIZE) == \
        ("dzsdd", chunks[0] + chunks[3] + chunks[4])


# -------------------------------------------------------------- DataServer
@pytest.fixture
def server(tmp_path, pair):
    source, _, _ = pair
    directory = tmp_path / "state" / "resource-vm1"
    directory.mkdir(parents=True)
    (directory / "log-000000001-h1").write_bytes(b"0123456789" * 10)
    (directory / "log-000000002-h1").write_bytes(b"abc")
    (directory / "stray.tmp").write_bytes(b"x")
    disks = {"vm1": source}
    return DataServer(str(tmp_path / "state"), lambda res: disks.get(res, ""),
                      lambda res: SIZE)


def fetch(server, header):
    """The reply, its data read (a FileRange goes out with sendfile)."""
    reply, data = trio.run(partial(server.answer_fetch, header))
    return reply, data.read() if isinstance(data, FileRange) else data


def sync(server, header):
    return trio.run(partial(server.answer_sync, header))


def test_fetch_lists_the_logfiles_of_a_resource(server):
    reply, payload = fetch(server, {"type": "logs", "res": "vm1"})
    assert reply == {"type": "logs", "files": [("log-000000001-h1", 100), ("log-000000002-h1", 3)]}
    assert payload == b""


def test_fetch_lists_nothing_for_a_resource_without_logfiles(server):
    assert fetch(server, {"type": "logs", "res": "vm9"}) == ({"type": "logs", "files": []}, b"")


def test_fetch_reads_a_range_and_reports_the_size(server):
    reply, data = fetch(server, {"type": "read", "res": "vm1", "logfile": "log-000000001-h1",
                                 "offset": 95, "max": 10})
    assert (reply, data) == ({"type": "data", "size": 100}, b"56789")
    reply, data = fetch(server, {"type": "read", "res": "vm1", "logfile": "log-000000001-h1",
                                 "offset": 10, "max": 4})
    assert data == b"0123"
    assert server.bytes_served["fetch"] == 9


@pytest.mark.parametrize("offset, most", [(-5, 10), (0, -1)])
def test_fetch_refuses_a_read_before_the_logfile_or_of_less_than_nothing(server, offset, most):
    """A negative `max` ended in struct.error packing the reply."""
    assert fetch(server, {"type": "read", "res": "vm1", "logfile": "log-000000001-h1",
                          "offset": offset, "max": most}) == \
        ({"type": "error", "reason": "read request out of range"}, b"")


def test_fetch_reads_into_the_connections_buffer_one_reply_after_another(server):
    """The serving connection's buffer (kept from one request to the next,
    the reply dropped once sent) holds each reply in turn, grown to the
    largest."""
    buffer = bytearray()
    header = {"type": "read", "res": "vm1", "logfile": "log-000000001-h1"}
    replies = []
    for offset, most in ((95, 10), (0, 12), (20, 3)):
        _, reply = trio.run(server.answer_fetch, dict(header, offset=offset, max=most), buffer)
        data = reply.read(buffer)
        assert memoryview(data).obj is buffer
        replies.append((bytes(data), len(buffer)))
        data = None                     # sent (the serving loop drops it)
        gc.collect()                    # (trio.run leaves the reply in a cycle)
    assert replies == [(b"56789", 5), (b"012345678901", 12), (b"012", 12)]
    # a view of it still alive (a reply not collected yet): a buffer of its own
    kept = memoryview(buffer)
    _, reply = trio.run(server.answer_fetch, dict(header, offset=0, max=20), buffer)
    data = reply.read(buffer)
    assert bytes(data) == b"01234567890123456789" and memoryview(data).obj is not buffer
    kept.release()


def test_fetch_at_or_beyond_the_end_returns_no_data(server):
    for offset in (100, 500):
        assert fetch(server, {"type": "read", "res": "vm1", "logfile": "log-000000001-h1",
                              "offset": offset, "max": 10}) == ({"type": "data", "size": 100}, b"")


def test_fetch_reads_at_most_fetch_max(server, monkeypatch):
    monkeypatch.setattr(transfer, "FETCH_MAX", 7)
    _, data = fetch(server, {"type": "read", "res": "vm1", "logfile": "log-000000001-h1",
                             "offset": 0, "max": 1000})
    assert data == b"0123456"


def test_fetch_of_a_missing_logfile_is_an_error_reply(server):
    assert fetch(server, {"type": "read", "res": "vm1", "logfile": "log-000000003-h1",
                          "offset": 0, "max": 10}) == \
        ({"type": "error", "reason": "no logfile log-000000003-h1"}, b"")


@pytest.mark.parametrize("name", ["../x", "../resource-vm1/log-000000001-h1",
                                  "log-000000001-h1/../log-000000002-h1", "stray.tmp", "", None])
def test_fetch_refuses_names_that_are_not_logfiles(server, name):
    with pytest.raises(ValueError):
        fetch(server, {"type": "read", "res": "vm1", "logfile": name, "offset": 0, "max": 10})
    assert server.bytes_served["fetch"] == 0


@pytest.mark.parametrize("res", ["../x", "..", ".hidden", "vm1/../vm2", None, 7])
def test_fetch_refuses_resource_names_that_leave_the_state_dir(server, res):
    for header in ({"type": "logs", "res": res},
                   {"type": "read", "res": res, "logfile": "log-000000001-h1", "offset": 0,
                    "max": 10}):
        with pytest.raises(ValueError, match="bad resource name"):
            fetch(server, header)


def test_fetch_answers_an_unknown_request_type_with_an_error(server):
    assert fetch(server, {"type": "delete", "res": "vm1"}) == \
        ({"type": "error", "reason": "unknown fetch request 'delete'"}, b"")


def test_sync_answers_chunks_from_the_resources_disk(server, pair):
    _, target, chunks = pair
    digests = local_digests(target, 0, SMALL, 5, SIZE)
    reply, data = sync(server, {"type": "chunks", "res": "vm1", "offset": 0, "chunk": SMALL,
                                "count": 5, "digests": digests})
    assert reply == {"type": "chunks", "kinds": "dzsdd"}
    assert data == chunks[0] + chunks[3] + chunks[4]
    assert server.bytes_served["sync"] == len(data)


def test_sync_answers_an_unknown_request_type_with_an_error(server):
    assert sync(server, {"type": "logs", "res": "vm1"}) == \
        ({"type": "error", "reason": "unknown sync request 'logs'"}, b"")


def test_sync_of_a_resource_without_a_disk_here_is_an_error_reply(server):
    assert sync(server, {"type": "chunks", "res": "../x", "offset": 0, "chunk": SMALL,
                         "count": 1, "digests": None}) == \
        ({"type": "error", "reason": "no disk of ../x here"}, b"")


@pytest.mark.parametrize("offset, chunk, count", [
    (-1, SMALL, 1),                 # before the disk
    (0, 0, 1),                      # empty chunks
    (0, -SMALL, 1),
    (0, SMALL, 0),                  # nothing asked
    (0, SMALL, 65),                 # too many in one request
    (SIZE + SMALL, SMALL, 1),       # wholly beyond the end
    (0, SMALL, 7),                  # reaches more than a chunk beyond the end
    (0, 1 << 40, 1),                # a chunk larger than any client asks (a 1 TiB buffer)
])
def test_sync_refuses_chunk_requests_out_of_range(server, offset, chunk, count):
    reply, data = sync(server, {"type": "chunks", "res": "vm1", "offset": offset,
                                "chunk": chunk, "count": count, "digests": None})
    assert (reply, data) == ({"type": "error", "reason": "chunk request out of range"}, b"")
    assert server.bytes_served["sync"] == 0


def test_sync_accepts_a_request_whose_last_chunk_passes_the_end(server, pair):
    source, _, chunks = pair
    reply, data = sync(server, {"type": "chunks", "res": "vm1", "offset": 4 * SMALL,
                                "chunk": SMALL, "count": 1, "digests": None})
    assert (reply, data) == ({"type": "chunks", "kinds": "d"}, chunks[4])


def test_aligned_data_chunks_are_written_directly_and_the_rest_through_the_page_cache(
        tmp_path, monkeypatch):
    """A reply received into page-aligned memory (the sync client's
    buffers) is written with O_DIRECT, past the page cache; a short last
    chunk, and data in memory that is not aligned, are written as before.
    What the disk holds is the same either way."""
    chunk = 1 << 16
    size = 3 * chunk + 1000
    payload = rand(size, 21)
    target = tmp_path / "target"
    target.write_bytes(b"\1" * size)
    writes = []
    real = transfer.pwritev_all

    def spy(fd, buffers, offset, flags=0):
        writes.append((bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT), offset))
        return real(fd, buffers, offset, flags)

    monkeypatch.setattr(transfer, "pwritev_all", spy)
    monkeypatch.setattr(directio, "pwritev_all", spy)
    aligned = directio.aligned_buffer(4 * chunk)
    aligned[:size] = payload
    assert apply_chunks(str(target), 0, chunk, "dddd", memoryview(aligned)[:size], size) == size
    assert writes == [(True, 0), (True, chunk), (True, 2 * chunk), (False, 3 * chunk)]
    assert read(target) == payload

    writes.clear()
    target.write_bytes(b"\1" * size)
    assert apply_chunks(str(target), 0, chunk, "dddd", payload, size) == size
    assert writes == [(False, 0), (False, chunk), (False, 2 * chunk), (False, 3 * chunk)]
    assert read(target) == payload


def test_a_disk_that_refuses_direct_io_is_written_through_the_page_cache(tmp_path, no_direct_io):
    """A file system without O_DIRECT (EINVAL at open or at the first
    write): every chunk is written the usual way, nothing is lost."""
    chunk = 1 << 16
    payload = rand(2 * chunk, 22)
    target = tmp_path / "target"
    target.write_bytes(bytes(2 * chunk))
    aligned = directio.aligned_buffer(2 * chunk)
    aligned[:] = payload
    assert apply_chunks(str(target), 0, chunk, "dd", aligned, 2 * chunk) == 2 * chunk
    assert read(target) == payload


def test_chunks_are_hashed_outside_the_gil():
    """Two threads hash at once (a fast sync's two streams, on each side):
    the digest releases the GIL while it hashes. With a switch interval
    too long to ever end a turn, a thread that does nothing but hash lets
    the main thread run only inside the hash, if the hash lets go of the
    GIL; else the main thread waits until the hashing thread gives up
    (after 10 s, never on a machine however loaded when the GIL is let go)."""
    import sys
    import threading
    import time
    data = rand(1 << 20, 31) * 8
    started = threading.Event()
    main_ran = False
    digests, ended = [], []

    def hash_until_the_main_thread_ran():
        started.set()               # wakes the main thread, which then waits for the GIL
        deadline = time.monotonic() + 10.0
        while not main_ran and time.monotonic() < deadline:
            digests.append(chunk_digest(data))
        ended.append("after the main thread ran" if main_ran else "gave up")

    interval = sys.getswitchinterval()
    sys.setswitchinterval(100.0)
    try:
        worker = threading.Thread(target=hash_until_the_main_thread_ran)
        worker.start()
        started.wait()
        main_ran = True
        worker.join()
    finally:
        sys.setswitchinterval(interval)
    assert ended == ["after the main thread ran"]
    assert digests and set(digests) == {f"xxh3-128:{xxhash.xxh3_128_hexdigest(data)}"}

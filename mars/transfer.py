"""The two data ports: logfile fetch (7778) and disk sync (7779).

Both use the framed, authenticated protocol of `mars.net`; separate
connections, so that a full sync never starves replication.

Fetch (7778), answered from `<state dir>/resource-<res>/`:

    {"type": "logs", "res": R}                     -> {"files": [[name, size], ...]}
    {"type": "read", "res": R, "logfile": L,
     "offset": o, "max": n}                        -> {"size": s} + up to n bytes from o

A secondary appends what it reads to its own copy of the logfile, so an
interrupted fetch resumes from its local size. Sizes and reads go only as
far as the logfile is durable here (`DataServer.durable_size`).

Sync (7779), answered from the resource's disk:

    {"type": "chunks", "res": R, "offset": o, "chunk": c, "count": k,
     "digests": [hex, ...] | null}                 -> {"kinds": "d|s|z" * k} + data

for the k chunks of c bytes at o: `d` data follows, `s` same as the digest
the client sent (fast full sync: only differing chunks travel), `z` all
zeros (nothing travels). A digest names its kind: `xxh3-128:<hex>` (about
10 GB/s a core against SHA1's 0.85-1.9, so a fast sync of an identical
replica no longer waits for hashing on either side). Not a cryptographic
hash, and it needs not be: both sides are this cluster's own, and a
difference that hashes alike by chance has a chance of 2^-128. A bare hex
digest is SHA1 (what marsd sent before); a kind the server does not know
never matches, so the chunk travels.
"""

import ctypes
import functools
import hashlib
import logging
import mmap
import os
import re
import threading
from dataclasses import dataclass

import trio
import xxhash

from mars import libc, net
from mars.directio import (DiskWriter, data_bytes, drop_cached, is_hole, pwritev_all, read_ahead,
                           read_in_small_folios, read_uncached, takes_uncached)
from mars.keys import resource_dir_name
from mars.logfile import list_logfiles, parse_logfile_name

log = logging.getLogger("marsd.data")

FETCH_MAX = 8 << 20             # bytes per read reply
CHUNK = 1 << 20                 # sync chunk
CHUNKS_PER_REQUEST = 16         # a request's chunks, the size of the buffers replies go into
MOST_CHUNKS_PER_REQUEST = 64    # what a server answers at most (a fast sync's same chunks)
ZERO_CHUNK = bytes(CHUNK)
ZERO_VIEW = memoryview(ZERO_CHUNK)
DATA_RUN = re.compile("d+")


DIGEST = "xxh3-128"              # the kind this marsd asks with
DIGESTS = {"xxh3-128": xxhash.xxh3_128,     # hashers: update() and hexdigest(); xxhash's
           "sha1": hashlib.sha1}            # releases the GIL while it hashes
DIGEST_PIECE = 64 << 10          # bytes a digest of a disk's chunk reads at a time


class _Hash128(ctypes.Structure):
    _fields_ = [("low", ctypes.c_uint64), ("high", ctypes.c_uint64)]


def _dispatching_xxh3():
    """XXH3-128 of the system's libxxhash where it has the one that picks
    the CPU's widest vectors at run time (Debian's libxxhash0, which rsync
    needs, does): python-xxhash's own is built for SSE2 alone. On the
    2-CPU test machine (AVX-512) 2 GiB hashed in a 1 MiB buffer took 0.063
    CPU s against 0.127, and in a page-cache map 0.32 against 0.38 (there
    the memory's pace bounds both; scratch `xx.py`, `xxmap.py`). The same
    function, the same digests. None where there is no such library: the
    python-xxhash one then."""
    try:
        function = ctypes.CDLL("libxxhash.so.0").XXH3_128bits_dispatch
    except (OSError, AttributeError):
        return None
    function.restype = _Hash128
    function.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    return function


_XXH3_128 = _dispatching_xxh3()


def chunk_digest(data, kind=DIGEST):
    """`<kind>:<hex digest>` of a chunk."""
    return f"{kind}:{DIGESTS[kind](data).hexdigest()}"


def view_digest(view, kind=DIGEST):
    """The hex digest of the bytes of the memoryview `view` (as
    `chunk_digest` has it after its kind): where it is writable (a
    buffer's, or a copy-on-write map's) and the kind is XXH3-128, by the
    system library's (`_dispatching_xxh3`), which needs their address."""
    address = libc.buffer_address(view) if kind == "xxh3-128" and _XXH3_128 else None
    if address is None:
        return DIGESTS[kind](view).hexdigest()
    value = _XXH3_128(address, len(view))
    return f"{value.high:016x}{value.low:016x}"


def parse_digest(digest):
    """(kind, hex) of a digest the client sent (see the module docstring),
    or None when it names no kind this marsd knows: its chunk travels."""
    if not isinstance(digest, str):
        return None
    kind, _, value = digest.rpartition(":")
    kind = kind or "sha1"
    return (kind, value) if kind in DIGESTS and value else None


def file_digest(fd, start, length, kind=DIGEST, pad=False):
    """The hex digest of `length` bytes of the file `fd` at `start` (as
    `chunk_digest` has it after its kind), read a piece at a time into this
    thread's small buffer, and whether they are all zeros. Where the file
    ends before: `pad` counts the rest as zeros (the sync server: a disk
    shorter than the resource); else the digest is of what there is (the
    client: so that the chunk travels).

    A piece that stays in the CPU's cache: reading a chunk of 1 MiB at
    once into a buffer of its size, then hashing it, cost 3x as much on
    the 2-CPU test machine (2 GiB: 0.90 s against 0.32-0.35 in pieces of
    64 KiB); the copy out of the page cache into a buffer beyond the
    cache was most of it (0.87 s alone, against 0.22)."""
    hasher = DIGESTS[kind]()
    buffer = _thread_buffer("piece", DIGEST_PIECE)
    view = memoryview(buffer)
    zero = True
    done = 0
    while done < length:
        count = min(len(buffer), length - done)
        got = os.preadv(fd, [view[:count]], start + done)
        if got < count:
            if not pad:
                hasher.update(view[:got])
                return hasher.hexdigest(), False
            view[got:count] = ZERO_VIEW[:count - got]
        # (bytearray.startswith compares with memcmp; a memoryview's == byte by byte)
        zero = zero and buffer.startswith(ZERO_VIEW[:count])
        hasher.update(view[:count])
        done += count
    return hasher.hexdigest(), zero


def read_range(path, offset, count, buffer=None):
    """Up to `count` bytes of the file at `offset`; into `buffer` (a
    bytearray, grown as needed; the result is a memoryview of it) when
    given: a new bytes object of 8 MiB per fetch reply was memory to
    fault in every time."""
    with open(path, "rb", buffering=0) as handle:
        if buffer is None:
            return os.pread(handle.fileno(), count, offset)
        view = memoryview(grown(buffer, count))[:count]
        return view[:os.preadv(handle.fileno(), [view], offset)]


@dataclass(frozen=True)
class FileRange:
    """A fetch reply's data, left in its logfile until it is sent: sent
    with sendfile(2) (`net.Channel.send_file`), or read (`read`) where it
    is to be compressed. The fetch server's pread and send were a third of
    a primary's marsd under a 500 MiB/s writer (`_copy_to_iter` and
    `_copy_from_iter`, perf)."""

    path: str
    offset: int
    count: int

    def __len__(self):
        return self.count

    def read(self, buffer=None):
        return read_range(self.path, self.offset, self.count, buffer)


def grown(buffer, size):
    """`buffer` (a bytearray) grown to at least `size` bytes; a new one
    if it cannot grow because a view of it is still alive somewhere (a
    reply not yet collected)."""
    if len(buffer) < size:
        try:
            buffer.extend(bytes(size - len(buffer)))
        except BufferError:
            return bytearray(size)
    return buffer


def is_zero(data):
    return data == (ZERO_CHUNK if len(data) == CHUNK else bytes(len(data)))


def read_chunks(path, offset, chunk, count, digests, size, buffer=None):
    """The sync server's work for one request, in a worker thread: the kinds
    and the data chunks, read into one buffer (returned as a memoryview of
    it) in the order they travel. A chunk with a digest to compare (not
    that of zeros) is first hashed where it lies (`MappedRange`, else a
    piece at a time, `file_digest`) and read into the buffer only if it
    differs; any other chunk is read into it, and read over by the next if
    it is all zeros. A disk shorter than `size` (cut shorter while it is
    read: `read_disk_chunks` refuses one short before) reads as zeros
    beyond its end. A request whose chunks the page cache does not all hold is read
    past it (`all_cached`; a chunk that travels is not read twice), or
    where it cannot be, what it read in is dropped after (`drop_cached`).

    `buffer`: a bytearray to read into, grown (at the first chunk that
    travels) as needed and kept by the caller for its next request once
    this one's reply is sent (a new one of 16 MiB costs 2.8 ms of zeroing:
    a third of a fast sync's time); grown up to the usual request's size
    (`CHUNKS_PER_REQUEST`) only: a larger request (a fast sync's, where
    the chunks were the same so far) whose chunks travel gets a buffer of
    its own, so that a connection does not keep 64 MiB for the rare one."""
    end = min(offset + chunk * count, size)
    buffer = bytearray() if buffer is None else buffer
    view = memoryview(buffer)
    zeros = ZERO_VIEW if chunk <= CHUNK else memoryview(bytes(chunk))
    kinds, kept = [], 0
    with open(path, "rb", buffering=0) as handle, \
            MappedRange(handle.fileno(), offset, end if digests else offset) as mapped:
        # (a full sync hashes nothing: no map)
        fd = handle.fileno()
        chunks, uncached, cold = chunks_to_read(fd, offset, chunk, count, size)
        for index, (start, length, hole) in enumerate(chunks):
            if hole:
                kinds.append("z")
                continue
            wanted = parse_digest(digests[index]) if digests and index < len(digests) else None
            data = None
            if wanted is not None and wanted[1] != zero_digest(length, wanted[0]).partition(":")[2]:
                # a fast full sync: the chunk is hashed first, and read
                # into the reply only if it differs (a chunk of zeros
                # then, too: the read below tells). Not where the client
                # has zeros (a new member's fresh volume): the zero check
                # below tells all then.
                digest, zero, data = hash_chunk(mapped, start, length, wanted[0], uncached,
                                                pad=True)
                if zero or digest == wanted[1]:
                    kinds.append("z" if zero else "s")
                    continue
            if len(buffer) < end - offset:
                # (not before a chunk travels: a fast sync of an equal
                # replica sends none, and a new 16 MiB buffer for each
                # connection was a tenth of its server's time)
                view.release()          # else it could not grow in place
                buffer = grown(buffer, end - offset) \
                    if end - offset <= chunk * CHUNKS_PER_REQUEST else bytearray(end - offset)
                view = memoryview(buffer)
            piece = view[kept:kept + length]
            if data is not None:
                piece[:] = data             # (read and hashed above: not read twice)
                got = length
            else:
                got = read_uncached(fd, piece, start) if uncached else None
                if got is None:
                    got = os.preadv(fd, [piece], start)
            if got < length:
                piece[got:] = zeros[:length - got]
            if buffer.startswith(zeros[:length], kept):
                kinds.append("z")
            else:
                kinds.append("d")
                kept += length
        mapped.close()                  # (a page still mapped is not dropped)
        drop_cached(fd, cold)
    return "".join(kinds), view[:kept]


class DiskTooSmall(ValueError):
    """The sync server's disk holds less than the resource."""


def read_disk_chunks(path, offset, chunk, count, digests, size, buffer=None):
    """`read_chunks` of the resource's disk at `path` for the sync server;
    DiskTooSmall when the disk holds less than the resource's `size`. The
    resource's size is the truth: what a short disk lacks is not zeros to
    copy (they went as `z`, a replica then held zeros where the primary's
    device had, or will have, its own blocks) but an error to say; the
    sync waits until the disk is grown. (Every member's disk is checked at
    create, join and resize; a disk shrunk since, or a file cut short, is
    what this finds.)"""
    with open(path, "rb", buffering=0) as handle:
        held = handle.seek(0, os.SEEK_END)
    if held < size:
        raise DiskTooSmall(f"the disk {path} holds {held} bytes, {size - held} fewer than the "
                           f"resource's {size}: grow it to at least {size} bytes (lvresize); "
                           "syncs from it wait until then")
    return read_chunks(path, offset, chunk, count, digests, size, buffer)


def chunks_to_read(fd, offset, chunk, count, size):
    """The chunks of a request that the resource has, as (start, length,
    whether a hole), and how they are read: whether past the page cache
    (`all_cached`: `chunk_uncached`, with the kernel's readahead), and
    if not, which of them to drop from the page cache once read
    (`drop_cached`): those it held nothing of, where it does not hold the
    request's data all and cannot read past it (a block device: an LV).
    Read through it, the reads of `fd` leave small folios
    (`read_in_small_folios`) and the chunks with data are read ahead
    (`read_ahead`) before the first is read: a disk not in the page cache,
    read without readahead in pieces of 64 KiB, hashed at 430-460 MiB/s on
    the 2-CPU test machine (2 GiB in 4.5-4.7 s); read ahead so and hashed
    in its map (`MappedRange`) at 1.3-2 GB/s (scratch `digcold.py`)."""
    chunks = []
    for index in range(count):
        start = offset + index * chunk
        if start >= size:
            break
        length = min(chunk, size - start)
        chunks.append((start, length, is_hole(fd, start, length)))
    data = [(start, length) for start, length, hole in chunks if not hole]
    uncached, cold = False, []
    if data and not all_cached(fd, data[0][0], data[-1][0] + data[-1][1]):
        uncached = takes_uncached(fd)
        if not uncached:
            cold = [(start, length) for start, length in data
                    if libc.cached_pages(fd, start, length) == 0]
    if not uncached:
        read_in_small_folios(fd)            # a primary's disk, written to meanwhile
        for start, length in data:
            read_ahead(fd, start, length)
    return chunks, uncached, cold


def all_cached(fd, start, end):
    """Whether the page cache holds all the data of [start, end) of the disk
    `fd` (holes are not cached), or cannot tell (cachestat, Linux 6.5): a
    request's chunks are then hashed where they lie (`MappedRange`: no
    copy) and read through the page cache; else past it (`chunk_uncached`)
    where the file system takes it.

    One answer for the whole request, asked before anything is read: the
    kernel's readahead for one chunk's uncached read brings in the next
    ones, which would then look cached, and hashed in their map they would
    stay in the page cache. (Beyond a request's end it brings in a chunk
    or two of the next, which that request then reads, and drops.)

    Why: a sync reads a whole disk; through the page cache (in small
    folios, `read_in_small_folios`) it left all of it there, in place of
    what the host's containers had cached, where read past it leaves the
    page cache as it was (where it cannot be, on a block device, the
    chunks it held nothing of are dropped once read). And it costs less:
    2 GiB not in the page cache, read and hashed by one reader, took
    0.45-0.58 CPU s so against 0.81-0.87 in small folios (1.4-2.3 s
    against 2.0-2.4, the disk varying; scratch `coldread.py`). A fast full
    sync of an identical 2 GiB replica with both disks out of the page
    cache, read from the lab's one disk, took as long either way (2.3-3.5
    s, that disk's pace); while the test VM's host still had to back the
    page cache's fresh memory, the small folios cost 1.4-3.0 CPU s a side
    there and 3.4-4.6 s (`fs_cold.py`)."""
    cached = libc.cached_pages(fd, start, end - start)
    return cached is None or cached * mmap.PAGESIZE >= data_bytes(fd, start, end)


def hash_chunk(mapped, start, length, kind, uncached, pad=False):
    """`MappedRange.digest_or_read`'s (hex digest, whether all zeros) of a
    chunk of the disk `mapped` maps, and the chunk's bytes where they were
    read past the page cache for it (`chunk_uncached`, if `uncached`), else
    None: a chunk that travels need not be read again."""
    data = chunk_uncached(mapped.fd, start, length, pad) if uncached else None
    if data is None:
        return (*mapped.digest_or_read(start, length, kind, pad=pad), None)
    return view_digest(data, kind), False, data


def chunk_uncached(fd, start, length, pad=False):
    """The chunk [start, start + length) of the file `fd` read past the page
    cache (`read_uncached`) into this thread's chunk buffer: a memoryview
    of what was read, short where the file ends first, or with `pad` filled
    up with zeros. None where the file system refuses: read it as before."""
    view = memoryview(_thread_buffer("chunk", max(length, CHUNK)))[:length]
    got = read_uncached(fd, view, start)
    if got is None:
        return None
    if got < length and pad:
        view[got:] = ZERO_VIEW[:length - got] if length <= CHUNK else bytes(length - got)
        got = length
    return view[:got]


class MappedRange:
    """[start, end) of a disk's file (as far as the file goes) mapped for
    reading, so that a chunk is hashed where it lies in the page cache
    instead of being copied out of it first: 2 GiB of a cached file took
    0.18 s of CPU so, 0.31 s read into a small buffer a piece at a time
    (`file_digest`; the copy was 0.22 of it), on the 2-CPU test machine
    (scratch `digmicro3.py`). A context manager.

    A chunk's pages are faulted in before it is hashed (`libc.populate_read`,
    without the GIL while the disk is read), so that a page the disk cannot
    give is an OSError there, not SIGBUS in the middle of the hash; what
    is left is a page evicted and unreadable in the moment between the two,
    or a disk cut shorter meanwhile, which no resource's disk is. Where the
    map cannot give a chunk (the file has no map, the chunk goes past its
    end, a page will not come in), `digest` is None, and `digest_or_read`
    reads it instead, which raises the error if there is one.

    Mapped copy-on-write (never written): a mapping Python allows writes to
    is one ctypes can give the address of."""

    def __init__(self, fd, start, end):
        self.fd = fd
        self.start = start
        self.map = None
        self.address = None
        try:
            length = min(end, os.lseek(fd, 0, os.SEEK_END)) - start
            if length > 0 and start % mmap.ALLOCATIONGRANULARITY == 0:
                self.map = mmap.mmap(fd, length, access=mmap.ACCESS_COPY, offset=start)
        except (OSError, ValueError) as exc:     # no map of this file: read it
            log.debug("no map of %s bytes at %s: %s", end - start, start, exc)
        if self.map is not None:
            anchor = ctypes.c_char.from_buffer(self.map)
            self.address = ctypes.addressof(anchor)
            del anchor                           # (else the map could not be closed)
        self.end = start + (len(self.map) if self.map is not None else 0)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        if self.map is not None:
            self.map.close()
            self.map = None

    def digest(self, start, length, kind=DIGEST):
        """The hex digest of [start, start + length) of the file (as
        `file_digest` gives it), or None where the map cannot give it."""
        if self.map is None or start < self.start or start + length > self.end:
            return None
        relative = start - self.start
        first = relative - relative % mmap.PAGESIZE
        try:
            libc.populate_read(self.address + first, relative + length - first)
        except OSError as exc:
            log.debug("chunk at %s not faulted in: %s; read instead", start, exc)
            return None
        with memoryview(self.map) as whole, whole[relative:relative + length] as piece:
            return view_digest(piece, kind)

    def digest_or_read(self, start, length, kind=DIGEST, pad=False):
        """`file_digest`'s (hex digest, whether all zeros) of [start, start +
        length): hashed in the map where it gives the chunk (whether zeros is
        then not asked: False), else read a piece at a time, which raises
        the disk's error if there is one."""
        digest = self.digest(start, length, kind)
        if digest is not None:
            return digest, False
        return file_digest(self.fd, start, length, kind, pad=pad)


class DataServer:
    """Answers fetch and sync requests for the resources of one host.
    `disk_of(res)` gives the local disk path of a resource, `size_of(res)`
    its size (both from the metadata)."""

    def __init__(self, state_dir, disk_of, size_of):
        self.state_dir = state_dir
        self.disk_of = disk_of
        self.size_of = size_of
        self.bytes_served = {"fetch": 0, "sync": 0}
        self.durable = {}           # logfile path -> its stat (`_stamp`) before its last fdatasync
        self.sync_failures = {}     # logfile path -> (its file, bytes durable, the OSError)

    def _resource_dir(self, res):
        if not isinstance(res, str) or "/" in res or res.startswith("."):
            raise ValueError(f"bad resource name {res!r}")
        return os.path.join(self.state_dir, resource_dir_name(res))

    async def answer_fetch(self, header, buffer=None):
        kind = header.get("type")
        directory = self._resource_dir(header.get("res"))
        if kind == "logs":
            # (in a thread only where one needs an fdatasync: an idle
            # secondary lists every few seconds, one resource after another)
            files = self._durable_logfiles(directory, sync=False)
            if files is None:
                files = await trio.to_thread.run_sync(self._durable_logfiles, directory)
            reply = {"type": "logs", "files": files}
            held_back = self._held_back(directory, files)
            if held_back:
                reply["held_back"] = held_back
            return reply, b""
        if kind == "read":
            name = str(header.get("logfile"))
            parse_logfile_name(name)
            path = os.path.join(directory, name)
            offset, most = int(header["offset"]), min(int(header["max"]), FETCH_MAX)
            if offset < 0 or most < 0:
                return {"type": "error", "reason": "read request out of range"}, b""
            try:
                stat = os.stat(path)
                size = self._known_durable(path, stat)
                if size < min(stat.st_size, offset + most):
                    size = await trio.to_thread.run_sync(self.durable_size, path)
            except FileNotFoundError:
                return {"type": "error", "reason": f"no logfile {name}"}, b""
            data = FileRange(path, offset, min(most, size - offset)) if offset < size else b""
            self.bytes_served["fetch"] += len(data)
            return {"type": "data", "size": size}, data
        return {"type": "error", "reason": f"unknown fetch request {kind!r}"}, b""

    # Only what is durable here is served. The primary's device acknowledges
    # a write once it is appended to the logfile, and makes the log durable
    # on a flush, a checkpoint or a rotation: a power loss takes what came
    # after. Served before, it was replayed on the secondaries, and after
    # the primary came back with a shorter log (its torn tail cut, its
    # version written at that end), each of them had replayed past the
    # logfile's end: a split brain, every replica to sync anew, although no
    # flushed write was lost. So the listing syncs a logfile that grew since
    # its last sync here (fdatasync of another fd of it makes the file's
    # data durable all the same) and says the size it had before; a read
    # goes no further than such a size.
    def _durable_logfiles(self, directory, sync=True):
        """`list_logfiles` of `directory`, each size as far as it is durable
        (`durable_size`); the records of logfiles gone are dropped. Without
        `sync`: None where one would need an fdatasync."""
        files = []
        for name, _ in list_logfiles(directory):
            try:
                size = self.durable_size(os.path.join(directory, name), sync)
            except FileNotFoundError:
                continue                # deleted meanwhile
            if size is None:
                return None
            files.append((name, size))
        listed = {os.path.join(directory, name) for name, _ in files}
        for path in list(self.durable):         # (other threads list other resources)
            if os.path.dirname(path) == directory and path not in listed:
                self.durable.pop(path, None)
        return files

    def durable_size(self, path, sync=True):
        """The bytes of the logfile at `path` that are durable: its size, once
        an fdatasync after that size was reached succeeded (only when it
        changed since the last one; without `sync`, None then). A failed
        fdatasync is kept: Linux says a lost write-back once, and the next
        one would succeed without it; the logfile is then served no further
        than it was durable before (its writer, the device or fetch, fails
        on it too)."""
        stat = os.stat(path)
        failed = self.sync_failures.get(path)
        if failed is not None and failed[0] == _file_of(stat):
            return min(failed[1], stat.st_size)
        if self.durable.get(path) == _stamp(stat):
            return stat.st_size
        if not sync:
            return None
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fdatasync(fd)
        except OSError as exc:
            durable = self._known_durable(path, stat)
            self.sync_failures[path] = (_file_of(stat), durable, exc)
            log.error("fdatasync of %s failed: %s; it is served no further than byte %d "
                      "(durable before)", path, exc, durable)
            return durable
        finally:
            os.close(fd)
        self.durable[path] = _stamp(stat)
        return stat.st_size

    def _held_back(self, directory, files):
        """{logfile: why} of the listed `files` that are listed shorter than
        they are written because their fdatasync failed (`durable_size`).
        The disk holds blocks of the records past such a size (a write
        reaches the disk after its record is appended, durable or not): a
        sync whose copy ends there has no consistency point that is served
        (`SyncClient._source_log_end`)."""
        held_back = {}
        for name, size in files:
            path = os.path.join(directory, name)
            failed = self.sync_failures.get(path)
            if failed is None:
                continue
            try:
                stat = os.stat(path)
            except FileNotFoundError:
                continue
            if failed[0] == _file_of(stat) and size < stat.st_size:
                held_back[name] = (f"its fdatasync failed ({failed[2]}): served no further "
                                   f"than byte {size} of {stat.st_size}")
        return held_back

    def _known_durable(self, path, stat):
        """The bytes of the logfile at `path` (now: `stat`) known durable
        without a new fdatasync; no more than it holds (a torn record that
        was synced, cut off since by the device's recovery after a crash)."""
        known = self.durable.get(path)
        return min(known[2], stat.st_size) if known is not None and \
            known[:2] == _file_of(stat) else 0

    async def answer_sync(self, header, buffer=None):
        """`buffer`: the connection's own (see `read_chunks`), reused once
        the reply is sent."""
        if header.get("type") != "chunks":
            return {"type": "error", "reason": f"unknown sync request {header.get('type')!r}"}, b""
        res = header.get("res")
        disk = self.disk_of(res)
        if not disk:
            return {"type": "error", "reason": f"no disk of {res} here"}, b""
        size = self.size_of(res)
        offset, chunk, count = int(header["offset"]), int(header["chunk"]), int(header["count"])
        # (a chunk of 2**40 passed: the reply's buffer is chunk * count bytes)
        if offset < 0 or not 0 < chunk <= CHUNK or not 0 < count <= MOST_CHUNKS_PER_REQUEST or \
                offset + chunk * count > size + chunk:
            return {"type": "error", "reason": "chunk request out of range"}, b""
        try:
            kinds, data = await trio.to_thread.run_sync(
                read_disk_chunks, disk, offset, chunk, count, header.get("digests"), size, buffer)
        except DiskTooSmall as exc:
            return {"type": "error", "reason": f"{res}: {exc}"}, b""
        self.bytes_served["sync"] += len(data)
        return {"type": "chunks", "kinds": kinds}, data

    async def serve(self, port, answer, address, key, host, clock, task_status):
        """Serve `answer` on `port`; `key`: the cluster secret, or a callable
        that returns it (read for every connection: it may be replaced)."""
        await trio.serve_tcp(functools.partial(self.serve_connection, answer=answer, port=port,
                                               key=key, host=host, clock=clock,
                                               handshakes=net.Handshakes(port)),
                             port, host=address, task_status=task_status)

    async def serve_connection(self, stream, answer, port, key, host, clock, handshakes=None):
        """One connection of `serve`'s: the handshake, then `answer`'s reply
        to each request, until the peer closes it. `handshakes`: the port's
        (net.Handshakes), which may refuse it at once."""
        if handshakes is not None and not handshakes.admit():
            await stream.aclose()
            return
        channel = net.Channel(stream, clock)
        buffer = bytearray()        # the replies' data, one request after another
        try:
            try:
                with trio.fail_after(net.HANDSHAKE_TIMEOUT):
                    await net.accept_handshake(channel, host, key() if callable(key) else key)
            finally:
                if handshakes is not None:
                    handshakes.done()
            while True:
                header, _ = await channel.receive()
                try:
                    reply, payload = await answer(header, buffer)
                except (ValueError, KeyError, TypeError, OSError) as exc:
                    reply, payload = {"type": "error", "reason": str(exc)}, b""
                compress = header.get("type") == "logs" or (
                    header.get("type") == "read" and header.get("lz4", False))
                if isinstance(payload, FileRange) and not compress:
                    await channel.send_file(reply, payload.path, payload.offset, payload.count)
                else:
                    if isinstance(payload, FileRange):
                        payload = await trio.to_thread.run_sync(payload.read, buffer)
                    await channel.send(reply, payload, compress=compress)
                payload = None      # sent: the buffer may grow for the next one
        except (net.ProtocolError, trio.TooSlowError) as exc:
            net.say_refused(port, stream, exc)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        except Exception:               # noqa: BLE001 (a bug costs this connection, not marsd)
            log.exception("port %d: answering a request failed; that connection is closed",
                          port)
        finally:
            await stream.aclose()


def _file_of(stat):
    """Which file a stat is of (a logfile of the same name made anew is another)."""
    return stat.st_dev, stat.st_ino


def _stamp(stat):
    """A logfile as it stands: its file, size and times (an append or a cut changes them)."""
    return (*_file_of(stat), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def apply_chunks(path, offset, chunk, kinds, data, size):
    """The sync client's write of one reply, in a worker thread. Returns the
    bytes written.

    Data chunks are written with O_DIRECT where the disk takes it and the
    chunk is aligned (the client receives into page-aligned buffers,
    `aligned_buffer`): a full sync no longer goes through the page cache.
    Copying a volume through it cost this process a copy of every byte,
    and far more on a VM whose host backs guest memory only when touched
    (2 GiB into fresh page cache: 3-6 CPU s, against 0.8 direct), and it
    pushed out what the hypervisor's containers had cached. The rest is
    written through the page cache and handed to the disk at once
    (sync_file_range, not waiting).

    A data chunk that lands in a hole of a file (a new member's fresh
    volume in the lab, a test's image) is written uncached where the kernel
    has it (`DiskWriter`): direct writes into new blocks held a full
    sync of 2 GiB into a fresh file at 296-426 MiB/s on the 2-CPU test VM
    (6.4 s; uncached 4.5-4.7 s). Without uncached writes, the blocks of each
    run of data chunks are allocated with one fallocate(2) before they are
    written: a buffered write into a hole allocates page by page (ext4's
    delayed allocation), which held a full sync into a sparse file at
    360-500 MiB/s on that machine, against 1.6-1.8 GB/s into allocated
    blocks. Zero chunks stay holes."""
    written = cached = 0
    position = 0
    zero = None
    view = memoryview(data)         # slices without copies
    with open(path, "r+b", buffering=0) as handle, DiskWriter(path) as writer:
        fd = handle.fileno()
        if not writer.uncached:
            allocate_runs(fd, offset, chunk, kinds, size)
        for index, kind in enumerate(kinds):
            start = offset + index * chunk
            length = min(chunk, size - start)
            if length <= 0:
                break
            if kind == "d":
                piece = view[position:position + chunk]
                position += len(piece)
                piece = piece[:length]
                if not writer.write(piece, start):
                    pwritev_all(fd, [piece], start)
                    cached += length
                written += length
            elif kind == "z" and not is_hole(fd, start, length) \
                    and not is_zero(os.pread(fd, length, start)):
                if zero is None or len(zero) != length:
                    zero = bytes(length)
                os.pwrite(fd, zero, start)
                written += length
                cached += length
        if cached:
            libc.start_writeback(fd, offset, min(len(kinds) * chunk, size - offset))
    return written


def allocate_runs(fd, offset, chunk, kinds, size):
    """Allocate the blocks of each run of `d` chunks in `kinds` (chunks of
    `chunk` bytes from `offset`, none beyond `size`) in the file `fd`, with
    fallocate(2) itself. Where it is refused (a block device, a file system
    without it), nothing is done and the chunks are simply written: glibc's
    posix_fallocate would emulate it by writing a byte into every block."""
    for match in DATA_RUN.finditer(kinds):
        start = offset + match.start() * chunk
        length = min(match.end() * chunk, size - offset) - match.start() * chunk
        if length <= 0:
            break
        if not libc.fallocate(fd, start, length):
            return      # EOPNOTSUPP, ENODEV (a block device), ENOSPC (the write tells)


def local_digests(path, offset, chunk, count, size):
    """The fast full sync client's digests of its own chunks, hashed where
    they lie (`MappedRange`, else read a piece at a time). A hole is not
    read: its digest is that of zeros (reading a fresh volume's holes
    filled the page cache with zeros, a gigabyte per replica). Chunks the
    page cache does not all hold are read past it (`all_cached`)."""
    digests = []
    end = min(offset + chunk * count, size)
    with open(path, "rb", buffering=0) as handle, \
            MappedRange(handle.fileno(), offset, end) as mapped:
        chunks, uncached, cold = chunks_to_read(handle.fileno(), offset, chunk, count, size)
        for start, length, hole in chunks:
            if hole:
                digests.append(zero_digest(length))
                continue
            # (a disk shorter than `size` digests what it has: the chunk travels)
            digest, _, _ = hash_chunk(mapped, start, length, DIGEST, uncached)
            digests.append(f"{DIGEST}:{digest}")
        mapped.close()                  # (a page still mapped is not dropped)
        drop_cached(handle.fileno(), cold)
    return digests


_buffers = threading.local()


def _thread_buffer(name, size):
    """This thread's buffer `name`, of at least `size` bytes, kept for its
    next use: `piece` (`DIGEST_PIECE`) for `file_digest`, `chunk` (a
    chunk) for `chunk_uncached`."""
    buffer = getattr(_buffers, name, None)
    if buffer is None or len(buffer) < size:
        buffer = bytearray(size)
        setattr(_buffers, name, buffer)
    return buffer


@functools.lru_cache(maxsize=8)
def zero_digest(length, kind=DIGEST):
    return chunk_digest(bytes(length), kind)

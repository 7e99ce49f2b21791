"""Writing past the page cache: O_DIRECT or uncached pieces, and a
logfile appender.

Why: on a hypervisor, data that is written once and not read back soon
(a full sync's copy, the primary's transaction log) should neither cost a
copy into the page cache nor push out what the containers have cached.
On the 2-CPU test VM the copy is dearer still: page cache taken fresh is
memory the host backs only when it is touched (free pages are reported to
it, idle page cache paged out), and the copy runs at about 0.5 GB/s. The
primary's log appends were 37 % of all CPU samples of a sequential fio run
on /dev/mars (`copy_folio_from_iter_atomic`, perf).

O_DIRECT wants the file offset, the length and the buffer's address
aligned (`DIRECT_ALIGN`); a file system without it refuses at open or at
the first write (EINVAL), and the page cache is used from then on.
"""

import ctypes
import errno
import logging
import mmap
import os
import threading
import time
from collections import deque

from mars import libc

log = logging.getLogger("mars.directio")

DIRECT_ALIGN = 4096             # offsets, lengths and addresses of direct writes
STAGE_BYTES = 4 << 20           # one staging buffer of an appender
STAGES = 3                      # staging buffers at most (allocated as needed)
DIRECT_MIN = 128 << 10          # whole blocks an append needs to go direct (see `append`)
RWF_DONTCACHE = 0x80            # preadv2/pwritev2: through the page cache, then dropped (linux/fs.h)
PROBE_SPAN = 4 << 20            # what a one-byte read's readahead may bring in (takes_uncached)
CACHED_PIECE = 256 << 10        # page-cache writes go in aligned pieces at most this long (`pwritev_cached`)
CARRY_SECONDS = 0.005           # how long a staged append's last partial block waits for the next

_refused_uncached = set()       # st_dev of file systems that answered EOPNOTSUPP to RWF_DONTCACHE
_taken_uncached = set()         # st_dev of file systems that took an uncached read


def aligned_buffer(size):
    """A writable buffer of `size` bytes aligned to a page (anonymous
    memory), for data that is written with O_DIRECT."""
    return mmap.mmap(-1, size)


def pwritev_all(fd, buffers, offset, flags=0):
    """pwritev until every byte is written (a short write continues)."""
    total = sum(len(buffer) for buffer in buffers)
    while True:
        done = os.pwritev(fd, buffers, offset, flags)
        if done == total:
            return
        if done == 0:
            raise OSError(errno.EIO, f"pwritev wrote nothing at byte {offset}")
        rest, skip = [], done
        for buffer in buffers:
            if skip >= len(buffer):
                skip -= len(buffer)
                continue
            rest.append(memoryview(buffer)[skip:])
            skip = 0
        buffers, total, offset = rest, total - done, offset + done


def pwritev_cached(fd, buffers, offset):
    """pwritev through the page cache in pieces that each stay inside one
    aligned `CACHED_PIECE` of the file.

    Why: the kernel sizes the page-cache folio it allocates for a write by
    the write's length, up to 2 MiB (ext4 files since Linux 6.16, and block
    devices such as an LV), and every later small write into a large folio
    walks all of its blocks (`ext4_block_write_begin`, `block_write_begin`).
    On the 2-CPU test VM, a 4 KiB pwrite into an ext4 file written in 8 MiB
    pieces cost 11-12 us of system time, into one written in 64 KiB pieces
    2.2-3.4 us, while writing the 64 KiB pieces cost no more per MiB (0.20-
    0.23 ms, scratch `folio3.py`); on a loop block device 21-24 us against
    3.8 (`folio_bdev.py`). After a sequential run on /dev/mars, the
    write-back of random 4 KiB writes spent 15 % of the whole machine's perf
    samples in `ext4_block_write_begin`; in 256 KiB pieces 5 %, in 64 KiB
    ones 2 %. 256 KiB: more calls cost the sequential writes (the write-back
    thread takes the GIL back after each): in 64 KiB pieces /dev/mars wrote
    293-317 MiB/s with b in two `make bench-data` runs, in 256 KiB pieces
    367-402, as before (371-450); random 4 KiB writes gained 22 % in 256 KiB
    pieces, 30 % in 64 KiB ones (alternating pairs, scratch `seqrand.py`).
    """
    end = offset + sum(len(buffer) for buffer in buffers)
    limit = offset - offset % CACHED_PIECE + CACHED_PIECE
    if end <= limit:
        pwritev_all(fd, buffers, offset)
        return
    piece, start = [], offset
    for buffer in buffers:
        view = memoryview(buffer)
        while view:
            take = min(len(view), limit - offset)
            piece.append(view[:take])
            view = view[take:]
            offset += take
            if offset == limit:
                pwritev_all(fd, piece, start)
                piece, start, limit = [], offset, limit + CACHED_PIECE
    if piece:
        pwritev_all(fd, piece, start)


def read_in_small_folios(fd):
    """Have reads of a disk through `fd` leave small folios in the page
    cache (`POSIX_FADV_RANDOM`: no readahead, which allocates large ones),
    for the device's small writes that may follow there (`pwritev_cached`
    says why): for the sync's bulk reads of a disk where the file system
    refuses uncached reads (`read_uncached`), not for the container's. A
    4 KiB pwrite cost 14-15 us of system time into a file read with
    readahead, 2.4 into one read so (scratch `folio_read.py`); reading
    uncached data in 1 MiB pieces then ran at 881 MiB/s instead of 1,489,
    cached data as fast as before; a full sync of 1 GiB from a disk not in
    the page cache 381-414 MiB/s against 396-437 (`coldsync.py`).

    Not for the device's own reads: without readahead, 128 KiB reads one at
    a time of a cold disk through /dev/mars went at 212-346 MiB/s instead
    of 922-1,180, and reading ahead in small folios ourselves
    (POSIX_FADV_WILLNEED) did not bring it back: a folio of one page costs
    that much CPU to read (771-823 MiB/s from a plain file, against 2,466
    with readahead; `ra_micro.py`). Advice only: a file that takes none is
    read as before."""
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
    except OSError:
        pass


def read_ahead(fd, start, length):
    """Have the kernel read [start, start + length) of `fd` into the page
    cache, not waiting for it (POSIX_FADV_WILLNEED, which reads in small
    folios whatever `read_in_small_folios` said): for a reader that knows
    what it reads next, as the sync does, where without readahead every
    read waited for its own I/O. Advice only: errors are ignored."""
    try:
        os.posix_fadvise(fd, start, length, os.POSIX_FADV_WILLNEED)
    except OSError:
        pass


def drop_cached(fd, pieces):
    """Drop what the page cache holds of `pieces` [(start, length)] of the
    file `fd` (POSIX_FADV_DONTNEED: clean pages not mapped; advice only),
    for a reader that cannot read past it (`read_uncached`) and would
    leave the page cache as it found it."""
    for start, length in pieces:
        try:
            os.posix_fadvise(fd, start, length, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass


def takes_uncached(fd):
    """Whether the file system of `fd` (open for reading) takes uncached
    reads and writes (RWF_DONTCACHE): asked once per file system and
    process, by reading its first byte so (a block device refuses on
    Linux 6.18), so that a reader knows before it reads. The pages that
    read brought in (its folio is dropped, the readahead around it stayed:
    three pages at the start of a fresh volume) are dropped again where the
    page cache held none of them before."""
    device = os.fstat(fd).st_dev
    if device in _refused_uncached:
        return False
    if device not in _taken_uncached:
        held = libc.cached_pages(fd, 0, PROBE_SPAN)
        try:
            os.preadv(fd, [bytearray(1)], 0, RWF_DONTCACHE)
        except OSError as exc:
            if exc.errno == errno.EOPNOTSUPP:
                _refused_uncached.add(device)
            return False
        finally:
            if held == 0:
                drop_cached(fd, [(0, PROBE_SPAN)])
        _taken_uncached.add(device)
    return True


def read_uncached(fd, view, start):
    """Read into `view` (a writable bytes-like object) from `start` of the
    file `fd` as os.preadv does, leaving the page cache as it was: what it
    holds is read from it and stays, the rest comes from the disk with
    readahead (large folios) and is dropped once read (preadv2
    RWF_DONTCACHE, Linux 6.14). The bytes read; None where the file system
    refuses (EOPNOTSUPP, also a kernel without it; remembered, see
    `takes_uncached`). A block device (an LV) refuses it too on Linux 6.18
    (a loop device here): the sync reads it through the page cache and
    drops what it read in (`drop_cached`).

    For the sync's bulk reads of a disk not in the page cache: 2 GiB read
    in 1 MiB pieces (and hashed) took 1.3-2.3 s and 0.41-0.58 CPU s so,
    and left nothing cached; in small folios (`read_in_small_folios`, with
    `read_ahead`) 1.9-2.4 s and 0.81-0.98 CPU s, and left 2 GiB cached;
    with plain readahead 3.6-5.2 s and 3.3-5.0 CPU s (the test VM's host
    backing the large folios' fresh memory; the uncached read reuses the
    folios it dropped) (scratch `coldread.py`, four runs, 2-CPU test VM,
    ext4). A folio is dropped once a read has copied from it, also in
    part: read in aligned pieces of 1 MiB (a folio lies within its own
    size's alignment, so no large one straddles two), not in the small
    pieces of `file_digest`."""
    try:
        return os.preadv(fd, [view], start, RWF_DONTCACHE)
    except OSError as exc:
        if exc.errno != errno.EOPNOTSUPP:
            raise
        _refused_uncached.add(os.fstat(fd).st_dev)
        return None


def append_one_way(path, data, start):
    """Write `data` (bytes-like) at `start`, the end of the file at `path`,
    each block one way only (`write_one_way`): its whole blocks past the
    page cache (a `DirectWriter`, O_DIRECT: see `DirectAppender`) when
    `data`'s address sits at `start`'s place in a block, all through the
    page cache when not. Everything the page cache holds of the file goes
    to the disk before direct blocks."""
    view = memoryview(data).cast("B")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with DirectWriter(path) as direct:
            write_one_way(fd, direct, view, start, written_out=0)
    finally:
        os.close(fd)


def write_one_way(fd, direct, view, start, written_out):
    """Write `view` at `start` of the file `fd`: the bytes up to the first
    block boundary and after the last through the page cache, the whole
    blocks between with `direct` (a DirectWriter on the file) if it takes
    them, else through the page cache too. So every block of a file that is
    only appended to is written one way only (see `DirectAppender`). What
    went through the page cache from `written_out` on is written out before
    the direct blocks; the new `written_out`."""
    head = min(len(view), -start % DIRECT_ALIGN)
    whole = (len(view) - head) // DIRECT_ALIGN * DIRECT_ALIGN
    if head:
        pwritev_all(fd, [view[:head]], start)
    if whole:
        piece = view[head:head + whole]
        # What went through the page cache before these blocks must be on
        # the disk first: a direct write that extends the file commits its
        # new size at once, and after a power loss a block not yet written
        # back (ext4's delayed allocation) would read as zeros in the middle
        # of the log, corruption where there should be at most a torn tail.
        if direct.fd is not None and _address(piece) % DIRECT_ALIGN == 0 and \
                written_out < start + head:
            libc.write_out(fd, written_out, start + head - written_out)
        if direct.write(piece, start + head):
            written_out = start + head + whole
        else:
            pwritev_all(fd, [piece], start + head)
    if head + whole < len(view):
        pwritev_all(fd, [view[head + whole:]], start + head + whole)
    return written_out


class DirectWriter:
    """Writes aligned pieces to a file past the page cache. `write` returns
    whether it wrote: False for a piece that is not aligned, and for every
    piece once the file system refused.

    With O_DIRECT; or, with `uncached`, as buffered writes that the kernel
    writes back at once and then drops from the page cache (pwritev2
    RWF_DONTCACHE, Linux 6.14), where the file takes them (a block device
    does not: O_DIRECT then). For blocks a file does not have yet (a
    logfile's appends, a fresh replica's sync): a direct write into them
    allocates unwritten extents and converts them when it completes. On
    the 2-CPU test VM's ext4, 2 GiB of direct writes into a fresh file
    reached the disk at 282-429 MiB/s, uncached ones (delayed allocation,
    nothing to convert) at 464-641, for 1 CPU second more; later, with a
    faster disk under the VM, 1,727-1,847 against 2,046-2,131 MiB/s, for
    0.08-0.09 against 0.82-0.92 CPU s of the writer alone (4 MiB pieces,
    scratch `fresh.py`): uncached writes buy a fifth more speed into new
    blocks with ten times the CPU. Over blocks the file has, uncached
    writes were no faster and cost 4-6 CPU seconds more per 2 GiB: those
    stay direct."""

    def __init__(self, path, uncached=False):
        self.path = path
        self.uncached = False
        self.fd = None
        if uncached:
            try:
                self.fd = os.open(path, os.O_WRONLY)
            except OSError:
                pass
            else:
                # a file system that refused them once is not asked again
                # (the sync client opens a writer per reply)
                if os.fstat(self.fd).st_dev not in _refused_uncached:
                    self.uncached = True
                    return
                self.close()
        self._open_direct()

    def _open_direct(self):
        try:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_DIRECT)
        except OSError:
            self.fd = None

    def write(self, piece, start):
        if self.fd is None or start % DIRECT_ALIGN or len(piece) % DIRECT_ALIGN \
                or _address(piece) % DIRECT_ALIGN:
            return False
        try:
            pwritev_all(self.fd, [piece], start, RWF_DONTCACHE if self.uncached else 0)
        except OSError as exc:
            if exc.errno == errno.EOPNOTSUPP and self.uncached:
                # a kernel or file system without uncached writes: nothing
                # was written, O_DIRECT from now on
                _refused_uncached.add(os.fstat(self.fd).st_dev)
                self.close()
                self.uncached = False
                self._open_direct()
                return self.write(piece, start)
            if exc.errno != errno.EINVAL:
                raise
            self.close()
            self.uncached = False
            return False
        return True

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class DiskWriter:
    """Writes aligned pieces onto a disk (a replica's, a file or a block
    device) past the page cache: a piece that lands in a hole uncached,
    where the kernel has uncached writes, one over blocks the disk has
    with O_DIRECT (see `DirectWriter` for why each). `write` returns
    whether it wrote (False: not aligned, or the file system refused);
    `uncached`: whether holes get uncached writes."""

    def __init__(self, path):
        self.direct = DirectWriter(path)
        self.fresh = DirectWriter(path, uncached=True)

    @property
    def uncached(self):
        return self.fresh.uncached

    def write(self, piece, start):
        if self.fresh.uncached and is_hole(self.fresh.fd, start, len(piece)):
            return self.fresh.write(piece, start)
        return self.direct.write(piece, start)

    def close(self):
        self.direct.close()
        self.fresh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def is_hole(fd, start, length):
    """Whether [start, start + length) of the file `fd` is a hole, known to
    read as zeros without reading it (SEEK_DATA finds no data before its
    end). A fresh volume of the lab, or a test's, is mostly holes: reading
    them made page cache of zeros, 1 GiB per replica and side, which on a
    fresh VM cost as much as real data (the demo's first sync of two 1 GiB
    replicas, 12 MiB of data, took 3.7-6.9 s; 1.5 s without reading holes).
    A block device, or a file system without SEEK_DATA, has no holes:
    False."""
    try:
        return os.lseek(fd, start, os.SEEK_DATA) >= start + length
    except OSError as exc:
        return exc.errno == errno.ENXIO        # no data from `start` to the end of the file


def data_bytes(fd, start, end):
    """How many bytes of [start, end) of the file `fd` are not holes
    (SEEK_DATA and SEEK_HOLE, a pair of calls per stretch of data): all of
    them on a block device or a file system without SEEK_DATA."""
    total, position = 0, start
    try:
        while position < end:
            data = os.lseek(fd, position, os.SEEK_DATA)
            if data >= end:
                break
            position = min(os.lseek(fd, data, os.SEEK_HOLE), end)
            total += position - data
    except OSError as exc:
        if exc.errno != errno.ENXIO:            # (no data from `position` to the end)
            return end - start
    return total


def _read_partial_block(path, size):
    """The bytes of the file at `path` from the block boundary below
    `size` to `size`."""
    keep = size % DIRECT_ALIGN
    if not keep:
        return b""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, keep, size - keep)
    finally:
        os.close(fd)


def _address(piece):
    """The address of a writable buffer's first byte; 1 (never aligned)
    for a read-only one."""
    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(piece))
    except TypeError:
        return 1


class DirectAppender:
    """Appends to a file, its whole blocks past the page cache from a
    thread, with O_DIRECT (`DirectWriter`).

    Not uncached (RWF_DONTCACHE), although a logfile's blocks are always
    new ones, where uncached writes are faster alone (`DirectWriter`):
    on the 2-CPU test VM a sequential 1 MiB fio run on /dev/mars with
    its logfile written uncached kept the device process at 9.3-9.5 CPU
    s per 8.3 s and wrote 993-1,115 MiB/s, with O_DIRECT 6.5-8.0 CPU s
    and 1,126-1,438 MiB/s (the primary alone); with the secondary
    replicating on the same machine (its logfile written by
    `append_one_way`, the same way) 649-829 against 811-916 MiB/s, the
    device at 7.7-8.2 against 5.0-5.5 CPU s and the secondary's marsd at
    2.0-2.7 against 1.3-1.8 (scratch `seq.py`, 2 runs each, twice,
    alternating). The copy into the page cache was the largest part of
    the device's time (`copy_folio_from_iter_atomic`, perf); a
    hypervisor's CPUs are its containers'.

    `append` copies the bytes into a page-aligned staging buffer and
    returns; the appender's thread writes the buffers in order, every block
    of the file one way only: direct, or through the page cache. One way
    only, because a block written direct over the page cache's copy of it
    races a reader (the fetch server's sendfile): the reader may cache the
    block as the disk held it before, and the kernel's invalidation after
    the direct write can miss that page, so reads see zeros in the middle
    of the log (3 of 40 runs of the prefix test's appends with a busy loop
    beside them, a4e6f72 to 6be944e).

    A staged buffer starts at the block boundary below its first byte (the
    bytes of that block appended before it are copied in ahead of them),
    and its last partial block is carried: not written, kept in memory
    (`carried`), until the next staged buffer writes it direct with its
    own bytes. So a stream of large appends goes direct from end to end.
    A carried block that no append follows within CARRY_SECONDS, or that a
    sync or close needs, goes through the page cache instead, and the next
    buffer then writes the rest of that block through the page cache and
    writes the page cache out before its direct blocks (a direct write
    that extends the file commits its size at once: after a power loss a
    block the page cache had not written back, ext4's delayed allocation,
    would read as zeros in the middle of the log, corruption where there
    should be at most a torn tail). An append with few whole blocks (small
    random writes), while nothing is in flight or carried, is written at
    once through the page cache: a hand-over to the thread costs more than
    the copy.

    The file's size is always what was written of a prefix of the appends
    (a reader sees a prefix), and the file never has a hole. `written` is
    how much of it is in the file (in the kernel: a killed process loses
    nothing below it; up to a block less than appended while a block is
    carried); `wait_written` waits for a position, `sync` makes all that
    was appended durable. A failed write (EIO, ENOSPC) is kept: every later
    call raises it, and what was staged after it is dropped (it was never
    acknowledged as durable).

    Threads: `append` and `close` from one thread; `wait_written` and
    `sync` from any (a sync covers what was appended before it began)."""

    def __init__(self, path, size=0, stage_bytes=STAGE_BYTES, stages=STAGES,
                 direct_min=DIRECT_MIN):
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        self.direct = DirectWriter(path)
        self.stage_bytes = stage_bytes
        self.stages = stages
        self.direct_min = direct_min
        self.end = size                 # appended
        self.written = size             # in the file
        self.written_out = size         # on the disk up to here, as far as direct writes go
        self.partial = _read_partial_block(path, size)  # appended bytes of the block at `end`
        self.carried = None             # (offset, bytes): the thread's last partial block, unwritten
        self.syncing = 0                # sync() calls waiting: a carried block goes now
        self.lock = threading.Lock()
        self.sync_lock = threading.Lock()     # one fdatasync at a time (`sync`)
        self.closed = False
        self.changed = threading.Condition(self.lock)
        self.jobs = deque()             # (buffer, skew, start, length), the first being written
        self.idle = []                  # staging buffers not in use
        self.allocated = 0
        self.failure = None
        self.closing = False
        self.thread = None

    def append(self, parts, size):
        """Append the bytes-like `parts`, `size` bytes in all."""
        with self.lock:
            self._raise_failure()
            inline = not self.jobs and self.carried is None and (
                self.direct.fd is None or self._whole_blocks(size) < self.direct_min)
        if inline:
            pwritev_all(self.fd, parts, self.end)
            self._note_partial(parts, size)
            self.end += size
            with self.lock:
                self.written = self.end
            return
        start, buffer, filled = self.end, None, 0
        prefix = self.partial
        for part in parts:
            view = memoryview(part).cast("B")
            while view:
                if buffer is None:
                    buffer = self._staging_buffer()
                    skew = filled = start % DIRECT_ALIGN
                    buffer[:skew] = prefix          # the block's bytes appended before
                room = min(len(view), self.stage_bytes + skew - filled)
                buffer[filled:filled + room] = view[:room]
                filled += room
                view = view[room:]
                if filled == self.stage_bytes + skew:
                    prefix = bytes(buffer[self.stage_bytes:filled])
                    self._submit(buffer, skew, start, filled - skew)
                    start, buffer = start + filled - skew, None
        if buffer is not None:
            self._submit(buffer, skew, start, filled - skew)
            self.partial = bytes(buffer[filled - (start + filled - skew) % DIRECT_ALIGN:filled])
        else:
            self.partial = prefix
        self.end += size

    def _note_partial(self, parts, size):
        """`partial` after appending `parts` (`size` bytes) at `end`."""
        keep = (self.end + size) % DIRECT_ALIGN
        if self.end // DIRECT_ALIGN == (self.end + size) // DIRECT_ALIGN:
            self.partial += b"".join(parts)
            return
        tail = []
        for part in reversed(parts):
            if keep <= 0:
                break
            view = memoryview(part).cast("B")
            tail.append(bytes(view[max(0, len(view) - keep):]))
            keep -= len(view)
        self.partial = b"".join(reversed(tail))

    def _whole_blocks(self, size):
        first = -(-self.end // DIRECT_ALIGN)
        return max(0, (self.end + size) // DIRECT_ALIGN - first) * DIRECT_ALIGN

    def _staging_buffer(self):
        with self.lock:
            while not self.idle and self.allocated >= self.stages and self.failure is None:
                self.changed.wait()
            self._raise_failure()
            if self.idle:
                return self.idle.pop()
            self.allocated += 1
        # one block more: a buffer's first byte sits at its file offset's
        # place in a block (`skew`), so that its whole blocks are aligned
        return aligned_buffer(self.stage_bytes + DIRECT_ALIGN)

    def _submit(self, buffer, skew, start, length):
        with self.lock:
            self.jobs.append((buffer, skew, start, length))
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, daemon=True,
                                               name=f"mars-append {os.path.basename(self.path)}")
                self.thread.start()
            self.changed.notify_all()

    def _run(self):
        while True:
            with self.lock:
                job = self._next_job()
                if job is None:
                    return
            try:
                if job == "carried":
                    self._write_carried()
                else:
                    self._write(*job)
            except Exception as exc:    # noqa: BLE001 (kept and raised: the waiters must not hang)
                start = job[2] if job != "carried" else self.carried[0]
                log.error("appending to %s failed at byte %d: %s; the writes after it are "
                          "dropped, every later write and sync answers the error",
                          self.path, start, exc)
                with self.lock:
                    self.failure = exc
                    self.jobs.clear()
                    self.changed.notify_all()
                return
            if job != "carried":
                with self.lock:
                    self.jobs.popleft()
                    self.idle.append(job[0])
                    self.changed.notify_all()

    def _next_job(self):
        """(Under the lock.) The next staged buffer, "carried" when the
        carried block is to go through the page cache now, or None when
        the thread is to end."""
        deadline = None
        while not self.jobs:
            if self.carried is None:
                if self.closing:
                    return None
                self.changed.wait()
                continue
            if self.closing or self.syncing:
                return "carried"
            now = time.monotonic()
            deadline = deadline or now + CARRY_SECONDS
            if now >= deadline:
                return "carried"
            self.changed.wait(deadline - now)
        return self.jobs[0]

    def _write(self, buffer, skew, start, length):
        end = start + length
        with self.lock:
            carried = self.carried is not None
        # From the block boundary when that block is carried (unwritten):
        # the buffer holds its earlier bytes ahead of `skew`.
        first = start - skew if carried else start
        view = memoryview(buffer)[skew - (start - first):skew + length]
        keep = end % DIRECT_ALIGN
        if not keep or self.direct.fd is None or end - keep < first:
            keep = 0        # nothing to carry, or the block is partly in the page cache
        try:
            if len(view) > keep:
                self.written_out = write_one_way(self.fd, self.direct, view[:len(view) - keep],
                                                 first, self.written_out)
            tail = bytes(view[len(view) - keep:]) if keep else None
        finally:
            view.release()
        with self.lock:
            self.carried = (end - keep, tail) if keep else None
            self.written = max(self.written, end - keep)

    def _write_carried(self):
        offset, tail = self.carried
        pwritev_all(self.fd, [tail], offset)
        with self.lock:
            self.carried = None
            self.written = offset + len(tail)
            self.changed.notify_all()

    def wait_written(self, position, timeout=None):
        """Block until the file holds the bytes before `position`; raises
        what the thread failed with. False on a timeout."""
        with self.lock:
            done = self.changed.wait_for(
                lambda: self.written >= position or self.failure is not None, timeout)
            self._raise_failure()
            return done

    def sync(self):
        """Everything appended so far durable."""
        with self.lock:
            self.syncing += 1
            self.changed.notify_all()
        try:
            self.wait_written(self.end)
        finally:
            with self.lock:
                self.syncing -= 1
        # A failed fdatasync is kept: Linux reports a lost write-back once
        # per open file, and the next fdatasync would succeed without those
        # bytes. One at a time, so that a sync beside a failing one does not
        # take the error's consumption for success.
        with self.sync_lock:
            self._raise_failure()
            if self.closed:         # (its closer synced it: no failure of its own)
                raise OSError(errno.EBADF, f"{self.path} is closed")
            try:
                os.fdatasync(self.fd)
            except OSError as exc:
                with self.lock:
                    if self.failure is None:
                        self.failure = exc
                    self.changed.notify_all()
                raise

    def close(self):
        """Stop the thread once what was appended is written, and close.
        (What a failure dropped stays dropped.)"""
        with self.lock:
            self.closing = True
            self.changed.notify_all()
        if self.thread is not None:
            self.thread.join()
        self.direct.close()
        with self.sync_lock:
            os.close(self.fd)
            self.closed = True
        self.idle.clear()

    def _raise_failure(self):
        if self.failure is not None:
            raise OSError(getattr(self.failure, "errno", None) or errno.EIO,
                          f"appending to {self.path} failed: {self.failure}")

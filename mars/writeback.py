"""Write-back of logged writes to the disk: in log order, in a thread.

The device acknowledges a write once its record is in the transaction log
(`TransactionLog.write`); the payload waits here, as a *pending extent*,
until a thread writes it to the disk. Kernel MARS does the same. The rules:

- **Log order.** Extents are written back first in, first out, so the disk
  only ever holds the log applied up to some record: `through` is the log
  position (logfile, end of that record) the disk is written through. Only
  contiguous neighbours in that order are written together; nothing
  is sorted, because a reordered write-back would leave the disk holding
  no prefix of the log at all at a crash, and the replay cursor could not
  say where to start.
- **Reads see the newest data.** A read overlays the pending extents on
  what it reads from the disk, oldest first. The extents are taken *before*
  the disk is read: one written back after that is overlaid once more with
  the same bytes; one written back before it is on the disk already. They
  are found through an index by chunk of the device (`CHUNK_SHIFT`), so a
  read costs the extents near it, not all that are pending.
- **Bounded memory.** At most `limit` bytes are pending; `has_room` tells
  the device when a write has to wait (one larger than the limit waits for
  an empty queue).
- **Checkpoint.** The replay cursor may go no further than `through` (plus
  an fdatasync of the disk afterwards, `TransactionLog.checkpoint`): after
  a crash, recovery replays the log from there, and replay is idempotent.
- **Failure is loud.** A failed pwrite (EIO, ENOSPC) stops the write-back
  for good: `failure` holds the error, it is logged once, the waiters wake
  and see it. Nothing is lost: the extents stay in the log (and are still
  overlaid on reads); the disk is brought up to date by replaying the log
  from the replay cursor once it works again.

Threads: `add` and the waits for progress come from one thread (the
device's event loop); reads may come from any; one thread writes back. One
lock guards the queue, the index and the counters; the disk I/O itself runs
outside it (pwritev and pread release the GIL).
"""

import errno
import itertools
import logging
import threading
from collections import deque
from dataclasses import dataclass

from mars.directio import pwritev_cached
from mars.logfile import IOV_MAX

log = logging.getLogger("mars.writeback")

DEFAULT_LIMIT = 64 << 20        # bytes pending at most (--writeback-limit)
CHUNK_SHIFT = 16                # the read index's granule: 64 KiB of the device
BATCH_BYTES = 8 << 20           # written back per pass (one lock round, one wake-up)
GATHER_BYTES = 2 << 20          # pending at which the thread writes back at once ...
GATHER_SECONDS = 0.005          # ... else after letting a batch gather this long


@dataclass(eq=False, slots=True)
class Extent:
    """One logged write not yet on the disk."""

    sequence: int               # the order of adding (= log order)
    offset: int
    data: bytes
    position: object            # the log position (translog.Position) after its record

    @property
    def end(self):
        return self.offset + len(self.data)


class WriteBackFailed(OSError):
    """The disk refused a write-back; the device answers EIO from now on."""


class WriteBack:
    """The pending extents of one device and the thread writing them back.

    `through`: the log position the disk is written through at the start.
    `hold`: a debugging aid for recovery tests (`--debug-hold-writeback`):
    nothing is ever written back, reads are served from memory, and writes
    wait once `limit` bytes are pending.
    `on_progress()` is called from the write-back thread after a pass that
    somebody asked to hear about (`ready_or_notify`), and after a failure.
    `logged(position)`, when given, blocks until the log holds the record
    ending at `position` (the log is written from a thread of its own):
    nothing is written back before its record is in the log."""

    def __init__(self, disk_fd, through, limit=DEFAULT_LIMIT, hold=False, on_progress=None,
                 logged=None):
        self.disk_fd = disk_fd
        self.logged = logged
        self.limit = limit
        self.hold = hold
        self.on_progress = on_progress
        self.lock = threading.Lock()
        self.work = threading.Condition(self.lock)        # the thread waits for extents
        self.progress = threading.Condition(self.lock)    # blocking waiters for progress
        self.queue = deque()            # Extents in log order
        self.chunks = {}                # chunk number -> deque of the Extents touching it
        self.pending = 0                # payload bytes in `queue`
        self.added = 0                  # extents ever added (their sequence numbers)
        self.written = 0                # payload bytes written back
        self.through = through
        self.failure = None
        self.notify_wanted = False
        self.blocking_waiters = 0
        self.closing = False
        self.thread = threading.Thread(target=self._run, name="mars-writeback", daemon=True)

    def start(self):
        self.thread.start()
        return self

    def release_hold(self):
        """End `hold`: the write-back starts."""
        with self.lock:
            self.hold = False
            self.work.notify()

    def close(self):
        """Stop the thread after the pass under way; what is still pending
        stays in the log (recovery replays it)."""
        with self.lock:
            self.closing = True
            self.work.notify()
        if self.thread.is_alive():
            self.thread.join()

    # ---------------------------------------------------------- the device's side
    def add(self, offset, data, position):
        """Queue a write whose record ends the log at `position`."""
        if not data:
            return
        with self.lock:
            self.added += 1
            extent = Extent(self.added, offset, data, position)
            self.queue.append(extent)
            for chunk in _chunks(offset, extent.end):
                self.chunks.setdefault(chunk, deque()).append(extent)
            self.pending += len(data)
            if len(self.queue) == 1 or self.pending >= GATHER_BYTES:
                self.work.notify()

    def has_room(self, size):
        """Whether a write of `size` bytes may be queued now."""
        return self.pending == 0 or self.pending + size <= self.limit

    def written_through(self, log_end):
        """Where the disk is written through: `through`, or `log_end` (the
        log's current end, from the thread that adds) when nothing is pending."""
        with self.lock:
            return self.through if self.queue else log_end

    def read(self, offset, size, read_disk):
        """`size` bytes at `offset`: `read_disk(offset, size)` with the
        pending extents laid over it, oldest first."""
        with self.lock:
            extents = self._overlapping(offset, offset + size) if self.chunks else ()
        data = read_disk(offset, size)
        if not extents:
            return data
        view = bytearray(data.ljust(size, b"\0"))
        end = offset + size
        for extent in extents:
            start, stop = max(offset, extent.offset), min(end, extent.end)
            view[start - offset:stop - offset] = \
                memoryview(extent.data)[start - extent.offset:stop - extent.offset]
        return bytes(view)

    def ready_or_notify(self, ready):
        """`ready()` under the lock; when it is false, `on_progress` is
        called after the next pass (or failure). For waiters on an event
        loop: check, and if not ready, wait for the call."""
        with self.lock:
            if ready() or self.failure is not None:
                return True
            self.notify_wanted = True
            self.work.notify()          # somebody waits: no gathering
            return False

    def wait(self, ready, timeout=None):
        """Block until `ready()` (under the lock) or a failure; returns
        `ready()`. For threads and tests; an event loop uses `ready_or_notify`."""
        with self.lock:
            self.blocking_waiters += 1
            self.work.notify()
            try:
                self.progress.wait_for(lambda: ready() or self.failure is not None, timeout)
            finally:
                self.blocking_waiters -= 1
            return ready()

    def drained(self):
        return not self.queue

    def drain(self, timeout=None):
        """Block until nothing is pending; raises WriteBackFailed if the
        write-back failed first."""
        if not self.wait(self.drained, timeout) and self.failure is not None:
            raise self.failed()
        return self.drained()

    def failed(self):
        """The WriteBackFailed to answer with, once `failure` is set."""
        return WriteBackFailed(errno.EIO, f"write-back to the disk failed: {self.failure}")

    # ------------------------------------------------------------------ thread
    def _overlapping(self, start, end):
        found = {}
        for chunk in _chunks(start, end):
            for extent in self.chunks.get(chunk, ()):
                if extent.offset < end and extent.end > start:
                    found[id(extent)] = extent
        return sorted(found.values(), key=lambda extent: extent.sequence)

    def _run(self):
        # Lazily, as kernel MARS: a few milliseconds' writes go in one pass
        # (fewer wake-ups, and fewer turns at the GIL taken from the event
        # loop: small random writes cost a pass each otherwise), unless
        # somebody waits for the write-back or much is pending.
        while True:
            with self.lock:
                while (not self.queue or self.hold) and not self.closing:
                    self.work.wait()
                if not self._urgent() and not self.closing:
                    self.work.wait_for(lambda: self._urgent() or self.closing, GATHER_SECONDS)
                if self.closing:
                    return
            if not self.write_back(BATCH_BYTES):
                return

    def _urgent(self):
        return self.pending >= GATHER_BYTES or self.notify_wanted or self.blocking_waiters > 0

    def write_back(self, most_bytes, most_extents=IOV_MAX):
        """One pass: write the oldest pending extents (at least one, at most
        `most_bytes`/`most_extents`) to the disk, then drop them from the
        queue. The write-back thread's step; tests call it directly (on a
        WriteBack not started) to choose the progress. False once failed."""
        with self.lock:
            if self.failure is not None:
                return False
            batch, size = [], 0
            for extent in itertools.islice(self.queue, most_extents):
                if batch and size + len(extent.data) > most_bytes:
                    break
                batch.append(extent)
                size += len(extent.data)
        if not batch:
            return self.failure is None
        try:
            if self.logged is not None:
                ends = {extent.position.logfile: extent.position for extent in batch}
                for position in ends.values():
                    self.logged(position)
            _write_in_order(self.disk_fd, batch)
        except OSError as exc:
            self._fail(exc)
            return False
        with self.lock:
            for extent in batch:
                self._remove_head(extent)
            self.pending -= size
            self.written += size
            self.through = batch[-1].position
            self.progress.notify_all()
            notify, self.notify_wanted = self.notify_wanted, False
        if notify and self.on_progress is not None:
            self.on_progress()
        return True

    def _remove_head(self, extent):
        # Write-back is first in, first out: the extent heads the queue and
        # every chunk list it is in (older extents there went before it).
        assert self.queue[0] is extent
        self.queue.popleft()
        for chunk in _chunks(extent.offset, extent.end):
            extents = self.chunks[chunk]
            extents.popleft()
            if not extents:
                del self.chunks[chunk]

    def _fail(self, exc):
        log.error("write-back to the disk failed: %s; the device answers EIO from now on, "
                  "%d bytes stay in the log only (recovery replays them from the replay "
                  "cursor once the disk works again)", exc, self.pending)
        with self.lock:
            self.failure = exc
            self.progress.notify_all()
            self.notify_wanted = False
        if self.on_progress is not None:
            self.on_progress()


def _chunks(start, end):
    return range(start >> CHUNK_SHIFT, ((end - 1) >> CHUNK_SHIFT) + 1)


def _write_in_order(fd, extents):
    """pwritev the extents in order, neighbours that continue each other
    (the next starts where the previous ended) together, in pieces that
    keep the page cache's folios small (`pwritev_cached`)."""
    group, start, end = [], 0, 0
    for extent in extents:
        if group and extent.offset == end:
            group.append(extent.data)
        else:
            if group:
                pwritev_cached(fd, group, start)
            group, start = [extent.data], extent.offset
        end = extent.end
    if group:
        pwritev_cached(fd, group, start)


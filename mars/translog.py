"""The primary's write path: transaction logger, write-back, recovery.

Every write to the device is appended to the resource's current logfile and
returns; a thread writes it back to the local disk later, in log order
(`mars/writeback.py`), and reads lay what is not written back yet over the
disk. The logfile's whole blocks are written past the page cache by a
thread of the writer's (`mars/directio.py`); the write-back puts nothing on
the disk before its record is in the logfile (`_wait_logged`). A flush or
fsync on the device (`sync`) makes the log durable (fdatasync) before it
returns, so an acknowledged flush survives a crash of marsd or the machine
whether or not its writes reached the disk.

The primary's own replay cursor (`replay-<host>`) says up to where the disk
is known durable: `checkpoint` takes the position the write-back has reached
(`WriteBack.written_through`), then syncs the disk. After a crash, `recover`
replays the log from the cursor onto the disk (replay is idempotent) and
cuts a torn tail, and logging continues where it left off.

Files live in `<state dir>/resource-<res>/` as in kernel MARS.
"""

import errno
import os
from dataclasses import dataclass

from mars.logfile import (KeptSync, LogScan, LogWriter, last_sequence, logfile_name,
                          parse_logfile_name, truncate_torn_tail)
from mars.replay import Cursor, replay
from mars.directio import pwritev_all
from mars.writeback import DEFAULT_LIMIT, WriteBack


@dataclass
class Position:
    """A logfile and a byte position in it."""

    logfile: str
    position: int


EMERGENCY_MARK = "emergency"     # in the resource dir: where logging stopped (`mark_emergency`)
MARK_ROOM = 512                  # bytes of the mark's file, made ahead


class TransactionLog:
    """Logger plus write-back for one resource on its primary."""

    def __init__(self, resource_dir, disk_path, host, clock, digest="crc32c", compress=False,
                 writeback_limit=DEFAULT_LIMIT, hold_writeback=False, on_progress=None):
        self.resource_dir = resource_dir
        self.disk_path = disk_path
        self.host = host
        self.clock = clock
        self.digest = digest
        self.compress = compress
        self.disk_fd = None
        self.writer = None
        self.logfile = None
        self.next_sequence = 1
        self.writeback = None
        self.writeback_options = dict(limit=writeback_limit, hold=hold_writeback,
                                      on_progress=on_progress)
        self.closed_sizes = {}          # logfile -> end, of those closed by `switch`
        self.disk_sync = KeptSync("the disk")    # `sync_disk`
        self.writers = {}               # logfile -> LogWriter, of those not closed yet

    # -------------------------------------------------------------- lifecycle
    def emergency_mark(self):
        """The Cursor where logging stopped in the last emergency mode
        (`mark_emergency`), while that very logfile is here (its first
        record's stamp: a logfile of that name of a later incarnation of the
        resource, made anew, is not it — nor is its inode, which the file
        system gives again at once); else None."""
        try:
            with open(self._path(EMERGENCY_MARK)) as handle:
                words = handle.read().split()
            mark, first = Cursor.parse(words[0]), words[1]
        except (FileNotFoundError, ValueError, IndexError):
            return None         # none, or the placeholder (`reserve_emergency_mark`)
        path = self._path(mark.logfile)
        return mark if os.path.exists(path) and _first_stamp(path) == first else None

    def reserve_emergency_mark(self):
        """The mark's file, made ahead with room for a mark (blank), where
        there is none: emergency mode begins when the state dir is nearly
        full, and the mark then needs no new blocks (`mark_emergency`)."""
        path = self._path(EMERGENCY_MARK)
        if os.path.exists(path):
            return
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.write(fd, b" " * MARK_ROOM)
            os.fsync(fd)
        finally:
            os.close(fd)

    def drop_emergency_mark(self):
        """A cursor past the mark is recorded (marsd's, durably): recovery
        needs the mark no more; blanked in place, the room kept."""
        if self.emergency_mark() is None:
            return
        fd = os.open(self._path(EMERGENCY_MARK), os.O_WRONLY)
        try:
            os.pwrite(fd, b" " * MARK_ROOM, 0)
            os.fsync(fd)
        finally:
            os.close(fd)

    def mark_emergency(self):
        """Emergency mode begins: logging stopped, and everything logged is
        durable in the log and written back (the caller synced the log and
        drained the write-back). The disk is synced, then where the log
        stops (and which file that logfile is) is written durably into the
        mark's file, in place (`reserve_emergency_mark`: no new blocks in a
        nearly full state dir), before the first write goes straight to
        the disk: recovery replays nothing before it (`recover`) — older
        logged data replayed from an earlier cursor landed on top of the
        direct writes. Returns that Cursor."""
        cursor = self.written_through()
        self.sync_disk()
        self.reserve_emergency_mark()
        text = f"{cursor} {_first_stamp(self._path(cursor.logfile))}\n".encode()
        fd = os.open(self._path(EMERGENCY_MARK), os.O_WRONLY)
        try:
            os.pwrite(fd, text.ljust(MARK_ROOM), 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        return cursor

    def recover(self, cursor):
        """Bring the disk up to date from `cursor` (a Cursor, or None for a
        new resource: `replay_log`), then start a new logfile: every time a
        device comes up (first start, restart after a crash, handover)
        logging continues in the next logfile, so the last one is closed at
        a well-defined end. Returns the number of records replayed."""
        replayed, name = self.replay_log(cursor)
        number = parse_logfile_name(name)[0] + 1 if name else 1
        self.logfile = logfile_name(number, self.host)
        self.writer = self._writer(self.next_sequence)
        self.writeback = WriteBack(self.disk_fd, self.log_position, logged=self._wait_logged,
                                   **self.writeback_options).start()
        return replayed

    def replay_log(self, cursor):
        """Replay the log onto the disk from `cursor` (from the emergency
        mark where that is later; from the first logfile where None): the
        cursor's logfile, then any later ones, their torn tails cut; the
        disk opened for the caller. `self.previous` is the last logfile's
        Position (None if there was none); `self.passed` the Positions of
        every logfile it went through, in order, `previous` last (a
        rotation's version is written once marsd hears of it: a crash
        before left it unwritten, and every secondary stood at that
        logfile's end for good). Returns (records replayed, the last
        logfile's name or None)."""
        os.makedirs(self.resource_dir, exist_ok=True)
        self.disk_fd = os.open(self.disk_path, os.O_RDWR)
        replayed = 0
        self.previous, self.passed = None, []
        mark = self.emergency_mark()
        if mark is not None and (cursor is None or mark.order > cursor.order):
            cursor = mark       # the disk holds all before it, and direct writes after
        name, position = (cursor.logfile, cursor.position) if cursor else (self._find_logfile(1), 0)
        # The cursor's logfile, then any later ones started since.
        while name is not None:
            path = self._path(name)
            if os.path.exists(path):
                result = replay(path, self.disk_fd, position)
                replayed += result.applied
                truncate_torn_tail(path, result.damage)
                last = result.last_sequence if result.applied else last_sequence(path)
                self.next_sequence = max(self.next_sequence, last + 1)
                self.previous = Position(name, os.path.getsize(path))
                self.passed.append(self.previous)
            number, _ = parse_logfile_name(name)
            following = self._find_logfile(number + 1)
            if following is None:
                break
            name, position = following, 0
        return replayed, name

    def close(self):
        """Stop the write-back (what is pending stays in the log) and close."""
        if self.writeback is not None:
            self.writeback.close()
            self.writeback = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.disk_fd is not None:
            os.close(self.disk_fd)
            self.disk_fd = None

    # ------------------------------------------------------------- data path
    def write(self, offset, data):
        """Log one write and queue it for the write-back (the caller waits
        for `writeback.has_room` first, if it must bound memory)."""
        self.write_many([(offset, data)])
        return len(data)

    def write_many(self, writes):
        """`write` for each (offset, data), in order, their records appended
        together."""
        clock, logfile = self.clock, self.logfile
        ends = self.writer.append_many([(clock.now(), offset, data) for offset, data in writes])
        for (offset, data), end in zip(writes, ends):
            self.writeback.add(offset, data, Position(logfile, end))

    def write_direct(self, offset, data):
        """Emergency mode: straight to the disk, not logged. Only once
        nothing is pending (`writeback.drained`), or an older write could
        land on top of it."""
        pwritev_all(self.disk_fd, [data], offset)
        return len(data)

    def read(self, offset, size, nowait=False):
        """The device's bytes: the disk with the pending writes over it.
        With `nowait`, only from the page cache: BlockingIOError when the
        disk would have to be read (or the kernel cannot tell)."""
        return self.writeback.read(offset, size,
                                   self._read_cached if nowait else self._read_disk)

    def _read_disk(self, offset, size):
        return os.pread(self.disk_fd, size, offset)

    def _read_cached(self, offset, size):
        buffer = bytearray(size)
        try:
            done = os.preadv(self.disk_fd, [buffer], offset, os.RWF_NOWAIT)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EOPNOTSUPP, errno.EINVAL):
                raise BlockingIOError(errno.EAGAIN, "not in the page cache") from None
            raise
        if done < size:                 # partly cached (or the end of the disk)
            raise BlockingIOError(errno.EAGAIN, "not all in the page cache")
        return bytes(buffer)

    def sync(self):
        """Flush/fsync on the device: everything written so far is durable."""
        self.writer.sync()

    def drain(self, timeout=None):
        """Block until every logged write is on the disk (WriteBackFailed
        if the write-back failed)."""
        return self.writeback.drain(timeout)

    def written_through(self):
        """The Cursor up to which the disk holds the log (not yet synced);
        from the thread that writes, so that the log's end is not moving."""
        through = self.writeback.written_through(self.log_position)
        if through.logfile == self.logfile:
            self.closed_sizes.clear()       # the write-back left them behind
            return Cursor(through.logfile, through.position, self.writer.size)
        return Cursor(through.logfile, through.position,
                      self.closed_sizes.get(through.logfile, through.position))

    def sync_disk(self):
        """fdatasync of the disk, its failure kept (`KeptSync`: else a cursor
        past lost blocks, a flush said durable)."""
        self.disk_sync(self.disk_fd)

    def checkpoint(self):
        """The Cursor up to which the disk is durable, for `replay-<host>`:
        where the write-back has come, taken before the log and the disk are
        synced (the write-back writes what is appended, durable in the log
        or not). (The device does the same in steps, the syncs off its event
        loop.)"""
        cursor = self.written_through()
        self.sync()
        self.sync_disk()
        return cursor

    def rotate(self):
        """Start the next logfile (handover, size threshold, log-rotate).
        Returns the name of the closed logfile and its end position."""
        old, closed = self.switch()
        old.sync()
        old.close()
        return closed

    def switch(self):
        """Log into the next logfile from now on; returns the old writer,
        still open for the caller to sync and close (off its event loop),
        and the closed logfile's Position."""
        old, closed = self.writer, Position(self.logfile, self.writer.size)
        self.closed_sizes[closed.logfile] = closed.position
        number, _ = parse_logfile_name(self.logfile)
        self.logfile = logfile_name(number + 1, self.host)
        self.writer = self._writer(old.next_sequence)
        return old, closed

    @property
    def log_position(self):
        return Position(self.logfile, self.writer.size)

    # --------------------------------------------------------------- helpers
    def _writer(self, next_sequence):
        """The writer of `self.logfile`: records past the page cache, from a
        thread (`LogWriter` with `direct`)."""
        writer = LogWriter(self._path(self.logfile), next_sequence, self.digest, self.compress,
                           direct=True)
        self.writers = {name: old for name, old in self.writers.items() if old.fd is not None}
        self.writers[self.logfile] = writer
        return writer

    def _wait_logged(self, position):
        """The write-back's gate: block until the record ending at
        `position` is in its logfile. The disk must never hold a write
        its log does not: after a crash, recovery and every secondary
        know the disk only by the log."""
        writer = self.writers.get(position.logfile)
        if writer is not None:
            writer.wait_written(position.position)

    def _path(self, name):
        return os.path.join(self.resource_dir, name)

    def _find_logfile(self, number):
        """The local logfile with this number (whatever its origin), or None.
        Two of them would be a split brain: recovery refuses to choose."""
        prefix = logfile_name(number, self.host)[:len("log-000000000-")]   # any origin
        found = sorted(name for name in os.listdir(self.resource_dir)
                       if name.startswith(prefix) and parse_logfile_name(name))
        if len(found) > 1:
            raise ValueError(f"logfiles {', '.join(found)} share number {number}: split brain")
        return found[0] if found else None


def settle(resource_dir, disk_path, host, cursor):
    """The log of a device that died, brought to rest without a device: as
    a device start's recovery, replayed onto the disk from `cursor` (torn
    tails cut) and the disk synced, but no new logfile begun (this host
    may be no primary any more). Returns (the records replayed, the
    Positions of the logfiles it went through, in order:
    `TransactionLog.passed`, the emergency mark or None)."""
    log = TransactionLog(resource_dir, disk_path, host, clock=None)
    try:
        replayed, _ = log.replay_log(cursor)
        log.sync_disk()
        return replayed, log.passed, log.emergency_mark()
    finally:
        log.close()


def drop_emergency_mark(resource_dir, host):
    """`TransactionLog.drop_emergency_mark` of the resource dir's mark."""
    TransactionLog(resource_dir, None, host, clock=None).drop_emergency_mark()


def whole_records_end(path):
    """The end of the last whole record of the logfile at `path` (a torn
    tail, a crash's, not counted)."""
    end = 0
    for record in LogScan(path):
        end = record.end
    return end


def _first_stamp(path):
    """The Lamport stamp of the first record of the logfile at `path` ('-'
    when it has none): which logfile of that name it is."""
    for record in LogScan(path):
        return str(record.stamp)
    return "-"

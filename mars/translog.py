"""The primary's write path: transaction logger, write-back, recovery.

Every write to the device is appended to the resource's current logfile and
then written back to the local disk; the write returns after both. A flush
or fsync on the device (`sync`) makes the log durable (fdatasync) before it
returns, so an acknowledged flush survives a crash of marsd or the machine
even though the disk itself was not synced.

The primary's own replay cursor (`replay-<host>`) says up to where the disk
is known durable. `checkpoint` syncs the disk and moves the cursor; after a
crash, `recover` replays the log from the cursor onto the disk (replay is
idempotent) and cuts a torn tail, and logging continues where it left off.

Files live in `<state dir>/resource-<res>/` as in kernel MARS.
"""

import os
from dataclasses import dataclass

from mars.logfile import LogScan, LogWriter, logfile_name, parse_logfile_name, truncate_torn_tail
from mars.replay import Cursor, replay


@dataclass
class Position:
    """A logfile and a byte position in it."""

    logfile: str
    position: int


class TransactionLog:
    """Logger plus write-back for one resource on its primary."""

    def __init__(self, resource_dir, disk_path, host, clock, digest="crc32c", compress=False):
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

    # -------------------------------------------------------------- lifecycle
    def recover(self, cursor):
        """Bring the disk up to date from `cursor` (a Cursor, or None for a
        new resource), then start a new logfile: every time a device comes up
        (first start, restart after a crash, handover) logging continues in
        the next logfile, so the last one is closed at a well-defined end.
        `self.previous` is that closed logfile's Position (None if there was
        none). Returns the number of records replayed."""
        os.makedirs(self.resource_dir, exist_ok=True)
        self.disk_fd = os.open(self.disk_path, os.O_RDWR)
        replayed = 0
        self.previous = None
        name, position = (cursor.logfile, cursor.position) if cursor else (self._find_logfile(1), 0)
        # The cursor's logfile, then any later ones started since.
        while name is not None:
            path = self._path(name)
            if os.path.exists(path):
                result = replay(path, self.disk_fd, position)
                replayed += result.applied
                truncate_torn_tail(path, result.damage)
                self.next_sequence = max(self.next_sequence, self._last_sequence(path) + 1)
                self.previous = Position(name, os.path.getsize(path))
            number, _ = parse_logfile_name(name)
            following = self._find_logfile(number + 1)
            if following is None:
                break
            name, position = following, 0
        number = parse_logfile_name(name)[0] + 1 if name else 1
        self.logfile = logfile_name(number, self.host)
        self.writer = LogWriter(self._path(self.logfile), self.next_sequence, self.digest,
                                self.compress)
        return replayed

    def close(self):
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.disk_fd is not None:
            os.close(self.disk_fd)
            self.disk_fd = None

    # ------------------------------------------------------------- data path
    def write(self, offset, data):
        """Log one write, then write it back to the disk."""
        self.writer.append(self.clock.now(), offset, data)
        view = memoryview(data)
        done = 0
        while done < len(view):
            done += os.pwrite(self.disk_fd, view[done:], offset + done)
        return len(data)

    def read(self, offset, size):
        return os.pread(self.disk_fd, size, offset)

    def sync(self):
        """Flush/fsync on the device: everything written so far is durable."""
        self.writer.sync()

    def checkpoint(self):
        """Sync the disk; returns the Cursor up to which the disk is durable,
        for `replay-<host>`."""
        end = self.writer.size
        os.fdatasync(self.disk_fd)
        return Cursor(self.logfile, end, end)

    def rotate(self):
        """Start the next logfile (handover, size threshold, log-rotate).
        Returns the name of the closed logfile and its end position."""
        closed, end, sequence = self.logfile, self.writer.size, self.writer.next_sequence
        self.writer.sync()
        self.writer.close()
        number, _ = parse_logfile_name(self.logfile)
        self.logfile = logfile_name(number + 1, self.host)
        self.writer = LogWriter(self._path(self.logfile), sequence, self.digest, self.compress)
        return Position(closed, end)

    @property
    def log_position(self):
        return Position(self.logfile, self.writer.size)

    # --------------------------------------------------------------- helpers
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

    @staticmethod
    def _last_sequence(path):
        last = 0
        for record in LogScan(path):
            last = record.sequence
        return last

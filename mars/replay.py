"""Replay of transaction logfiles onto a disk, and the version chain.

Replay applies the records of a logfile, in order, to the local disk from a
cursor (`replay-<host>` = `log-<nr>-<origin>,<pos>,<len>`). Applying a record
is a pwrite of its payload at its offset, so replaying the same records again
leaves the disk as it was: a crash between writing and recording the cursor
only costs repeating a few records (idempotence).

Version chain: when a logfile is closed (primary) or fully replayed
(secondary), the host records `version-<nr>-<host>` =
`<digest>,log-<nr>-<origin>,<endpos>:<previous version>`. The digest chains
the previous version's digest with the logfile's name, its end position and
the digests of all its records, so two hosts that applied the same history
hold equal versions, and a host whose history forked (split brain) does not.
"""

import hashlib
import os
import threading
from dataclasses import dataclass

from mars.directio import DIRECT_ALIGN, DIRECT_MIN, aligned_buffer, pwritev_cached
from mars.logfile import LogScan, parse_logfile_name, record_heads
from mars.keys import replay_name

_staging = threading.local()    # per replaying thread: an aligned buffer, kept


@dataclass(frozen=True)
class Cursor:
    """Where replay of a resource stands: logfile name, byte position in it,
    and the logfile's length known when the cursor was written."""

    logfile: str
    position: int
    length: int

    def __str__(self):
        return f"{self.logfile},{self.position},{self.length}"

    @property
    def order(self):
        """(logfile number, position): cursors compare by it across logfiles."""
        return parse_logfile_name(self.logfile)[0], self.position

    @classmethod
    def parse(cls, text):
        try:
            logfile, position, length = text.split(",")
            return cls(logfile, int(position), int(length))
        except ValueError:
            raise ValueError(f"malformed replay cursor {text!r}") from None


@dataclass(frozen=True)
class ReplayResult:
    position: int               # the new cursor position in the logfile
    applied: int                # records written to the disk
    bytes: int                  # payload bytes written
    last_sequence: int | None
    damage: object              # LogDamage or None
    digests: tuple = ()         # the applied records' digest fields, in order (the version's)


def replay(logfile_path, disk_fd, position=0, expected_sequence=None, limit=None, sync=True,
           direct=None, held=(), until=None, growing=False):
    """Apply records of a logfile from `position` onto the disk open at
    `disk_fd`. Stops at the end, at damage, after `limit` records, or
    before a record that would end past `until` (where the history says
    the logfile ends: a copy of it fetched further, after a forced
    takeover, must not be applied past it).
    With `sync`, the disk is made durable before the result is returned, so
    the caller may record the new cursor. `direct`: a
    `directio.DiskWriter` on the same disk, for `_write_direct`.
    `growing`: the logfile is a copy still being fetched (`LogScan`)."""
    stage = None if direct is None else _stage_direct
    scanner = LogScan(logfile_path, position, expected_sequence, held, stage, growing)
    applied = written = 0
    last_sequence = None
    end = position
    digests = []
    for record in scanner:
        if until is not None and record.end > until:
            break
        if direct is None or not _write_direct(direct, record):
            pwritev_cached(disk_fd, [record.data], record.offset)
        applied += 1
        written += len(record.data)
        last_sequence = record.sequence
        end = record.end
        digests.append(record.digest)
        if limit is not None and applied >= limit:
            break
    if sync and applied:
        os.fdatasync(disk_fd)
    return ReplayResult(end, applied, written, last_sequence, scanner.damage, tuple(digests))


def _stage_direct(offset, length):
    """For the scanner: a large aligned record's payload goes into this
    thread's aligned buffer (kept), from which `_write_direct` writes it."""
    if length < DIRECT_MIN or length % DIRECT_ALIGN or offset % DIRECT_ALIGN:
        return None
    buffer = getattr(_staging, "buffer", None)
    if buffer is None or len(buffer) < length:
        buffer = _staging.buffer = aligned_buffer(length)
    return memoryview(buffer)[:length]


def _write_direct(direct, record):
    """Write a large aligned record past the page cache; whether it was.
    A secondary's disk is read back only once it becomes primary, and the
    copy into fresh page cache was a quarter of a secondary's marsd
    (`copy_folio_from_iter_atomic`, perf, under a sequential writer); a
    primary on the same two CPUs wrote 445-662 MiB/s with it, 312-542
    without, the secondary's pace the same. Small records (random 4 KiB
    writes) keep the page cache: a direct write of each would wait for
    the disk one by one. Into a hole of the disk (a fresh volume after its
    sync) it goes uncached (`DiskWriter`): b caught up on 1 GiB of 1 MiB
    writes into a fresh 1 GiB volume in 4.4 s so, 5.6-6.8 s direct (test
    VM, ext4). The scanner staged the payload in an aligned buffer
    (`_stage_direct`), or it is not one to write direct."""
    data = record.data
    return isinstance(data, memoryview) and len(data) >= DIRECT_MIN and \
        direct.write(data, record.offset)


def record_digests(logfile_path, end):
    """The digest fields of every record up to `end`, in order, from the
    headers (`logfile.record_heads`): the records were checked when they
    were written or replayed."""
    return [field for _, field in record_heads(logfile_path, end)]


def version_value(previous, logfile, end, digests):
    """The `version-<nr>-<host>` value for a logfile that ends at `end`:
    `<digest>,<logfile>,<end>:<previous digest>,<previous logfile>,<previous end>`.
    `previous` is the previous logfile's version value ('' for the first);
    only its head is repeated, its digest already covers the chain before."""
    head = previous.split(":", 1)[0] if previous else ""
    hasher = hashlib.sha1()
    hasher.update(f"{head}|{logfile}|{end}|".encode())
    for field in digests:
        hasher.update(field)
    return f"{hasher.hexdigest()},{logfile},{end}:{head}"


def parse_version(value):
    """(head, logfile, end) of a version value; `head` =
    `<digest>,<logfile>,<end>` is what two hosts' versions compare by.
    ValueError when malformed."""
    head = value.split(":", 1)[0]
    try:
        _, logfile, end = head.split(",")
        return head, logfile, int(end)
    except ValueError:
        raise ValueError(f"malformed version {value!r}") from None


def versions_agree(mine, theirs):
    """Two hosts' versions of one logfile match when digest, name and end
    position are equal (the chain behind is covered by the digest)."""
    return mine.split(":", 1)[0] == theirs.split(":", 1)[0]


def lowest_needed_logfile(state, res):
    """The lowest logfile number some member still needs (its replay cursor's
    logfile), or None when a member has no cursor yet (it may need anything)."""
    numbers = []
    for host in state.members(res):
        text = state.resource_value(res, replay_name(host))
        if not text:
            return None
        try:
            numbers.append(parse_logfile_name(Cursor.parse(text).logfile)[0])
        except ValueError:
            return None
    return min(numbers) if numbers else None

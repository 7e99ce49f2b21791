"""Transaction logfiles: the record format, a writer and a scanner.

A logfile `log-<9 digits>-<origin host>` is a sequence of records, each one
write to the device, appended before the write is acknowledged. Record layout
(all integers little-endian), HEADER = 60 bytes:

    offset size field
         0    4 magic            b"MRL1"
         4    1 format version   1
         5    1 flags            bit 0: payload stored LZ4-compressed (lz4.block)
         6    1 digest type      0 CRC32C, 1 MD5, 2 SHA1
         7    1 reserved         0
         8    8 sequence number  previous record's + 1 (continues across logfiles)
        16    8 lamport stamp    when the write was logged
        24    8 device offset    where the payload goes on the device
        32    4 payload length   bytes written to the device
        36    4 stored length    bytes that follow the header
        40   20 digest           over header bytes 0..39 and the stored bytes,
                                 zero-padded (CRC32C: 4 bytes, MD5: 16, SHA1: 20)
        60    - stored payload

Durability: `LogWriter.append` writes a whole record with one write(2);
`sync` (fdatasync) makes every appended record durable. Whatever was synced
before a crash scans intact afterwards. A writer with `direct` (the
primary's) stages records in memory and a thread writes them, in order,
past the page cache (`mars.directio.DirectAppender`); `written` says how
far the file holds them, and `sync` waits for that first.

Scanning stops at the first record whose magic, version, lengths, sequence
or digest is wrong, and says where and why (`LogDamage`). A damaged record
that is the last thing in the file is a *torn tail* — normal after a crash,
the writer continues at its start. Damage with more data behind it is
*corruption* — an error the views report.
"""

import bisect
import ctypes
import errno
import hashlib
import os
import re
import struct
from dataclasses import dataclass

import google_crc32c
import lz4.block

from mars.directio import DirectAppender
from mars.libc import buffer_address

MAGIC = b"MRL1"
VERSION = 1
FLAG_LZ4 = 0x01
HEADER = struct.Struct("<4sBBBBQQQII20s")
assert HEADER.size == 60
DIGEST_FIELD = 40                   # header bytes before the digest
MAX_PAYLOAD = 16 << 20              # one device write never exceeds this
IOV_MAX = 1024                      # buffers in one writev (Linux's UIO_MAXIOV); even

DIGEST_CRC32C, DIGEST_MD5, DIGEST_SHA1 = 0, 1, 2
DIGEST_NAMES = {"crc32c": DIGEST_CRC32C, "md5": DIGEST_MD5, "sha1": DIGEST_SHA1}

LOGFILE_RE = re.compile(r"log-(?P<nr>\d{9})-(?P<host>[a-z][-a-z0-9]*)")


def logfile_name(number, origin):
    """`log-000000042-h1`."""
    if not 0 < number < 10**9:
        raise ValueError(f"logfile number {number} out of range 1..999999999")
    return f"log-{number:09d}-{origin}"


def parse_logfile_name(name):
    """(number, origin) of a logfile name, or ValueError."""
    match = LOGFILE_RE.fullmatch(name)
    if not match:
        raise ValueError(f"not a logfile name: {name!r}")
    return int(match.group("nr")), match.group("host")


def _buffer_crc32c():
    """crc32c_extend(crc, address, length) of the crc32c library that
    google_crc32c's extension links (that library's C interface), or None.
    google_crc32c's own `extend` takes bytes only, and replay from fetched
    bytes held in memory would copy every payload into bytes for it."""
    try:
        from google_crc32c import _crc32c
        extend = ctypes.CDLL(_crc32c.__file__).crc32c_extend
    except (ImportError, OSError, AttributeError):
        return None
    extend.restype = ctypes.c_uint32
    extend.argtypes = (ctypes.c_uint32, ctypes.c_void_p, ctypes.c_size_t)
    return extend


_extend_buffer = _buffer_crc32c()


def _crc32c(parts):
    crc = 0
    for part in parts:
        address = buffer_address(part) if _extend_buffer is not None else None
        if address is None:
            crc = google_crc32c.extend(crc, bytes(part))
        else:
            crc = _extend_buffer(crc, address, len(part))
    return crc.to_bytes(4, "big")


def digest(kind, *parts):
    """The 20-byte digest field for `parts` (bytes-like) with digest type `kind`."""
    if kind == DIGEST_CRC32C:
        value = _crc32c(parts)
    elif kind in (DIGEST_MD5, DIGEST_SHA1):
        hasher = hashlib.md5() if kind == DIGEST_MD5 else hashlib.sha1()
        for part in parts:
            hasher.update(part)
        value = hasher.digest()
    else:
        raise ValueError(f"unknown digest type {kind}")
    return value.ljust(20, b"\0")


@dataclass(frozen=True)
class Record:
    """One logged write, as the scanner found it."""

    sequence: int
    stamp: int
    offset: int                 # on the device
    data: bytes
    position: int               # where the record starts in the logfile
    end: int                    # where the next one starts
    digest: bytes               # the record's digest field (feeds the version chain)


@dataclass(frozen=True)
class LogDamage:
    """Where and why scanning stopped before the end of the file."""

    path: str
    position: int
    reason: str
    torn_tail: bool             # True: nothing valid can follow (crash); False: corruption

    def __str__(self):
        kind = "torn tail" if self.torn_tail else "corrupt record"
        return f"{kind} in {self.path} at byte {self.position}: {self.reason}"


def encode_record(sequence, stamp, offset, data, digest_type=DIGEST_CRC32C, compress=False):
    """The bytes of one record. LZ4 is kept only when it makes the record smaller."""
    return b"".join(encode_record_parts(sequence, stamp, offset, data, digest_type, compress))


def encode_record_parts(sequence, stamp, offset, data, digest_type=DIGEST_CRC32C, compress=False):
    """(header, stored payload) of one record, for a vectored write without
    copying the payload."""
    if len(data) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(data)} bytes exceeds {MAX_PAYLOAD}")
    flags, stored = 0, data
    if compress and data:
        packed = lz4.block.compress(data, store_size=False)
        if len(packed) < len(data):
            flags, stored = FLAG_LZ4, packed
    head = HEADER.pack(MAGIC, VERSION, flags, digest_type, 0, sequence, stamp, offset,
                       len(data), len(stored), b"\0" * 20)
    field = digest(digest_type, head[:DIGEST_FIELD], stored)
    return head[:DIGEST_FIELD] + field, stored


class LogWriter:
    """Appends records to one logfile. Not thread-safe: one writer per logfile."""

    def __init__(self, path, next_sequence, digest_type="crc32c", compress=False, direct=False):
        if digest_type not in DIGEST_NAMES:
            raise ValueError(f"unknown digest {digest_type!r}: use one of {', '.join(DIGEST_NAMES)}")
        self.path = path
        self.digest_type = DIGEST_NAMES[digest_type]
        self.compress = compress
        self.next_sequence = next_sequence
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.size = os.fstat(self.fd).st_size
        # direct: past the page cache, from a thread (the primary's log; see
        # mars/directio.py); records are then in the file once `written`
        # has passed them
        self.appender = DirectAppender(path, self.size) if direct else None
        self.file_sync = KeptSync(self.path)     # its fdatasync (without `direct`)

    @property
    def written(self):
        """How much of the logfile is in the file (`size` but with `direct`)."""
        return self.appender.written if self.appender is not None else self.size

    def wait_written(self, position):
        """Block until the file holds the bytes before `position` (with
        `direct`; at once otherwise)."""
        if self.appender is not None:
            self.appender.wait_written(position)

    def append(self, stamp, offset, data):
        """Append one write; returns the Record as it now stands in the file."""
        head, stored = encode_record_parts(self.next_sequence, stamp, offset, data,
                                           self.digest_type, self.compress)
        length = len(head) + len(stored)
        self._write([head, stored], length)
        result = Record(self.next_sequence, stamp, offset, data, self.size,
                        self.size + length, head[DIGEST_FIELD:])
        self.size += length
        self.next_sequence += 1
        return result

    def append_many(self, writes):
        """Append one record per (stamp, offset, data), in order, with as
        few write(2)s as the iovec limit allows; returns where each record
        ends. (A syscall per record was a fifth of the device loop's time
        under random 4 KiB writes.)"""
        ends, parts, size = [], [], self.size
        for stamp, offset, data in writes:
            head, stored = encode_record_parts(self.next_sequence + len(ends), stamp, offset,
                                               data, self.digest_type, self.compress)
            parts += (head, stored)
            size += len(head) + len(stored)
            ends.append(size)
        for start in range(0, len(parts), IOV_MAX):
            chunk = parts[start:start + IOV_MAX]
            length = sum(map(len, chunk))
            self._write(chunk, length)
            self.size += length
            self.next_sequence += len(chunk) // 2
        return ends

    def _write(self, parts, length):
        if self.appender is not None:
            self.appender.append(parts, length)
            return
        written = os.writev(self.fd, parts)         # one write(2), no payload copy
        if written != length:
            raise OSError(f"short write to {self.path}: {written} of {length} bytes")

    def sync(self):
        """Make every appended record durable."""
        if self.fd is None:
            if self.appender is not None:
                self.appender._raise_failure()      # closed after its sync failed
            raise OSError(errno.EBADF, f"{self.path} is closed")
        if self.appender is not None:
            self.appender.sync()
            return
        self.file_sync(self.fd)       # (a failure kept, as the appender's is)

    def close(self):
        """Close, once every appended record is in the file."""
        if self.fd is not None:
            if self.appender is not None:
                self.appender.close()
            os.close(self.fd)
            self.fd = None


class KeptSync:
    """fdatasync of one open file whose failure is kept: Linux reports a
    lost write-back once per open file, and the next fdatasync would
    succeed without those blocks (a flush said durable, a cursor moved past
    them). After a failure every call raises EIO naming `what` and the
    first failure. (A logfile's `LogWriter` without `direct`; the device's
    disk, `TransactionLog.sync_disk`.)"""

    def __init__(self, what):
        self.what = what
        self.failure = None

    def __call__(self, fd):
        if self.failure is not None:
            raise OSError(errno.EIO, f"an fdatasync of {self.what} failed: {self.failure}")
        try:
            os.fdatasync(fd)
        except OSError as exc:
            self.failure = exc
            raise


class LogCorrupt(ValueError):
    """A logfile damaged before its end (not a torn tail): never cut here."""

    def __init__(self, damage):
        super().__init__(f"refusing to truncate {damage}")
        self.damage = damage


def truncate_torn_tail(path, damage):
    """Cut a torn tail off so that appending can continue after a crash.
    Corruption in the middle is never cut: that is for an operator."""
    if damage is None:
        return False
    if not damage.torn_tail:
        raise LogCorrupt(damage)
    os.truncate(path, damage.position)
    return True


def record_heads(path, end=None):
    """(sequence, digest field) of each record of a logfile whose
    records were checked before (written here, or replayed: a torn tail
    cut off), up to `end` (a record that reaches beyond it is not one),
    from the headers alone: each gives the length to seek over. What a
    handover needs of the last logfile, its last sequence number and its
    records' digests (the version), was read by scanning every record,
    payloads and digests: up to the rotation size (256 MiB), on both
    sides, inside the downtime. A header that does not check out (magic,
    version, lengths) ends the walk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        if end is not None:
            size = min(size, end)
        position = 0
        while position + HEADER.size <= size:
            (magic, version, _flags, _digest_type, _reserved, sequence, _stamp, _offset,
             _length, stored_length, field) = HEADER.unpack(os.pread(fd, HEADER.size, position))
            if magic != MAGIC or version != VERSION or stored_length > MAX_PAYLOAD or \
                    position + HEADER.size + stored_length > size:
                return
            position += HEADER.size + stored_length
            yield sequence, field
    finally:
        os.close(fd)


def last_sequence(path):
    """The sequence number of the last record of a logfile (`record_heads`);
    0 for an empty one."""
    last = 0
    for last, _ in record_heads(path):
        pass
    return last


class CutShort(str):
    """Why a scan stopped, where the file ends inside a record whose header
    checks out (a reason, as `LogScan._read_one` gives them)."""


class LogScan:
    """Scan a logfile from `position`: iterate the valid records; afterwards
    `damage` says where and why it stopped (None: clean end of file).
    `growing`: the file is a copy that is still being fetched, so a record
    the end of the file cuts short is one whose rest has not come yet: a
    torn tail without the search for a valid record after it (`_is_tail`,
    which read and searched the partial record's bytes at the end of every
    replay step: 6 % of a replicating secondary's CPU, perf). A record whose
    header is damaged and claims more than comes is damage once the copy is
    complete (the caller scans that without `growing`), or once the bytes
    it claims have come (its digest covers the header)."""

    def __init__(self, path, position=0, expected_sequence=None, held=(), stage=None,
                 growing=False):
        self.path = str(path)
        self.position = position
        self.expected_sequence = expected_sequence
        self.held = held                # [(start, view)]: bytes of the logfile in memory
        self.stage = stage              # stage(offset, length): a buffer for a payload, or None
        self.growing = growing
        self.damage = None

    def __iter__(self):
        with open(self.path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            source = HeldBytes(handle, self.held) if self.held else handle
            while self.position < size:
                record, reason = self._read_one(source, size, self.position,
                                                self.expected_sequence, self.stage)
                if record is None:
                    torn = (self.growing and isinstance(reason, CutShort)) or \
                        self._is_tail(source, size)
                    self.damage = LogDamage(self.path, self.position, reason, torn_tail=torn)
                    return
                self.position = record.end
                self.expected_sequence = record.sequence + 1
                yield record

    def _is_tail(self, handle, size):
        """Damage is a torn tail when no valid record follows it anywhere.
        (A payload may contain the magic by chance, so a candidate counts
        only when its whole record checks out.)"""
        handle.seek(self.position + 1)
        rest = bytes(handle.read(size - self.position - 1))
        found = rest.find(MAGIC)
        while found >= 0:
            record, _ = self._read_one(handle, size, self.position + 1 + found, None)
            if record is not None:
                return False
            found = rest.find(MAGIC, found + 1)
        return True

    @staticmethod
    def _read_one(handle, size, start, expected_sequence, stage=None):
        """The record at `start`, or (None, why not). `stage`: where a
        reader that writes the payload on wants it (replay: an aligned
        buffer, for O_DIRECT); it is copied there first and checked there,
        while the CPU's cache still holds it (checked first, in fetched
        bytes held in memory, it was read from memory twice: the digest
        and the copy were 13 % and 10 % of a catching-up secondary)."""
        handle.seek(start)
        head = handle.read(HEADER.size)
        if len(head) < HEADER.size:
            return None, f"header cut short ({len(head)} of {HEADER.size} bytes)"
        (magic, version, flags, digest_type, _reserved, sequence, stamp, offset, length,
         stored_length, field) = HEADER.unpack(head)
        if magic != MAGIC:
            return None, f"bad magic {magic!r}"
        if version != VERSION:
            return None, f"unknown format version {version}"
        if digest_type not in DIGEST_NAMES.values():
            return None, f"unknown digest type {digest_type}"
        if length > MAX_PAYLOAD or stored_length > MAX_PAYLOAD or (
                not flags & FLAG_LZ4 and stored_length != length):
            return None, f"implausible lengths (payload {length}, stored {stored_length})"
        if start + HEADER.size + stored_length > size:
            return None, CutShort(f"record cut short: needs {HEADER.size + stored_length} "
                                  f"bytes, {size - start} left")
        stored = handle.read(stored_length)
        target = stage(offset, stored_length) if stage and not flags & FLAG_LZ4 else None
        if target is not None and len(stored) == stored_length:
            target[:] = stored
            stored = target
        if digest(digest_type, head[:DIGEST_FIELD], stored) != field:
            return None, "digest mismatch"
        if expected_sequence is not None and sequence != expected_sequence:
            return None, f"sequence {sequence} where {expected_sequence} was expected"
        data = stored
        if flags & FLAG_LZ4:
            try:
                data = lz4.block.decompress(stored, uncompressed_size=length)
            except lz4.block.LZ4BlockError as exc:
                return None, f"undecodable LZ4 payload: {exc}"
        return Record(sequence, stamp, offset, data, start, start + HEADER.size + stored_length,
                      field), None


class HeldBytes:
    """A logfile's bytes, read from `held` pieces of it in memory where
    they are, from the file (`handle`) elsewhere: [(start, view)], in
    order, not overlapping. A read that lies in one piece is a view of it
    (no copy); one over several pieces, or pieces and the file, is
    joined. Only `seek` and `read`, as the scanner uses them."""

    def __init__(self, handle, held):
        self.handle = handle
        self.held = held
        self.starts = [start for start, _ in held]
        self.position = 0

    def seek(self, position):
        self.position = position

    def read(self, count):
        parts = []
        at, end = self.position, self.position + count
        index = max(0, bisect.bisect_right(self.starts, at) - 1)
        while at < end:
            while index < len(self.held) and \
                    self.held[index][0] + len(self.held[index][1]) <= at:
                index += 1
            if index < len(self.held) and self.held[index][0] <= at:
                begin, view = self.held[index]
                part = view[at - begin:end - begin]
            else:
                upto = min(end, self.held[index][0]) if index < len(self.held) else end
                self.handle.seek(at)
                part = self.handle.read(upto - at)
                if len(part) < upto - at:       # the file ends here
                    parts.append(part)
                    break
            parts.append(part)
            at += len(part)
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        self.position += len(data)
        return data


def list_logfiles(resource_dir):
    """[(name, size)] of the logfiles in a resource dir, in number order."""
    try:
        names = os.listdir(resource_dir)
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        try:
            number, _ = parse_logfile_name(name)
        except ValueError:
            continue
        try:
            found.append((number, name, os.path.getsize(os.path.join(resource_dir, name))))
        except FileNotFoundError:
            continue
    return [(name, size) for _, name, size in sorted(found)]

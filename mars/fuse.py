"""The device's FUSE session: the kernel's protocol on /dev/fuse, spoken
directly, for a file system of one directory holding one file.

Why not pyfuse3 (which served it before): its session loop costs a trio
task switch, a lock and an epoll registration per request, around the
request's own work. Measured on the 2-CPU test machine, random 4 KiB direct
writes at iodepth 16 through the loop device: the device process's event
loop at 100 % CPU, ~170 us per request, of which the log append was under a
tenth; 5,300-5,900 IOPS against 43,000-58,000 on a plain loop device. Here
a request that needs no waiting (a write with room in the write-back, a
read from memory or the page cache, an attribute) is read, done and
answered in one pass of a loop without a task switch; only the requests
that wait (flush, fsync, a read from the disk, a write while the write-back
is full) get a task of their own. Writes keep their order: once one has to
wait, those after it queue behind it.

The protocol (linux/fuse.h, protocol 7.31): every request begins with
`fuse_in_header`, every answer with `fuse_out_header` (error as a negative
errno). The layouts used are the constants below, their sizes asserted.
A notification (`invalidate_attributes`) is an answer with unique 0 and the
notification's code in the error field.

The file system: inode 1 the directory, inode 2 the file (`name`), whose
size is the device's (`device.size`), opened with direct I/O (no page cache
in the FUSE layer: the loop device above it has its own)."""

import errno
import logging
import os
import stat
import struct
import time

import trio

from mars import libc

log = logging.getLogger("mars.fuse")

ROOT_INODE = 1
FILE_INODE = 2

# Opcodes (linux/fuse.h, enum fuse_opcode)
LOOKUP, FORGET, GETATTR, SETATTR = 1, 2, 3, 4
OPEN, READ, WRITE, STATFS, RELEASE = 14, 15, 16, 17, 18
FSYNC, FLUSH, INIT, OPENDIR, READDIR, RELEASEDIR, FSYNCDIR = 20, 25, 26, 27, 28, 29, 30
INTERRUPT, DESTROY, BATCH_FORGET = 36, 38, 42
NO_ANSWER = {FORGET, BATCH_FORGET, INTERRUPT}

# INIT flags
ASYNC_READ = 1 << 0
BIG_WRITES = 1 << 5
ASYNC_DIO = 1 << 15                 # the loop device's direct I/O in flight at once, not one by one
MAX_PAGES = 1 << 22
WANTED_FLAGS = ASYNC_READ | BIG_WRITES | ASYNC_DIO | MAX_PAGES
PROTOCOL_MINOR = 31
MAX_WRITE = 1 << 20                 # 256 pages, the kernel's most (FUSE_MAX_MAX_PAGES)
MAX_BACKGROUND = 64                 # the loop device's direct I/O comes as background requests
OPEN_DIRECT_IO = 1 << 0
FATTR_SIZE = 1 << 3
NOTIFY_INVAL_INODE = 2

IN_HEADER = struct.Struct("<IIQQIIIHH")         # len opcode unique nodeid uid gid pid extlen pad
OUT_HEADER = struct.Struct("<IiQ")               # len error unique
INIT_IN = struct.Struct("<IIII")                 # major minor max_readahead flags
INIT_OUT = struct.Struct("<IIIIHHIIHHII24x")     # ... max_write time_gran max_pages
                                                 # map_alignment flags2 max_stack_depth
ATTR = struct.Struct("<QQQQQQIIIIIIIIII")        # ino size blocks a/m/ctime, nsecs, mode
                                                 # nlink uid gid rdev blksize flags
ENTRY_OUT_HEAD = struct.Struct("<QQQQII")        # nodeid generation entry/attr valid (+nsec)
ATTR_OUT_HEAD = struct.Struct("<QII")            # attr_valid attr_valid_nsec dummy
OPEN_OUT = struct.Struct("<QII")                 # fh open_flags backing_id
RW_IN = struct.Struct("<QQIIQII")                # fh offset size flags lock_owner flags pad
WRITE_OUT = struct.Struct("<II")
SETATTR_IN = struct.Struct("<IIQQ")              # valid padding fh size (the rest unused)
STATFS_OUT = struct.Struct("<QQQQQIII28x")       # blocks bfree bavail files ffree bsize
                                                 # namelen frsize
DIRENT_HEAD = struct.Struct("<QQII")             # ino off namelen type
INVAL_INODE = struct.Struct("<Qqq")              # ino off len
assert (IN_HEADER.size, OUT_HEADER.size, INIT_OUT.size, ATTR.size) == (40, 16, 64, 88)
assert (ENTRY_OUT_HEAD.size + ATTR.size, ATTR_OUT_HEAD.size + ATTR.size) == (128, 104)
assert (RW_IN.size, STATFS_OUT.size, INVAL_INODE.size) == (40, 80, 24)

ATTR_VALID = 1                      # seconds the kernel may keep attributes and entries
YIELD_EVERY = 16                    # requests done in a row before the other tasks get a turn
BATCH_WRITES = 16                   # writes logged together at most
MS_NOSUID, MS_NODEV = 2, 4


class Refused(Exception):
    """Answer the request with this errno."""

    def __init__(self, code):
        super().__init__(os.strerror(code))
        self.errno = code


class Session:
    """One mounted FUSE file system serving `device` as the file `name`.

    `device` has `size`, `write_many_now([(offset, data), ...])` (whether
    they were logged; False when they have to wait, nothing done), `async
    write(offset, data)`,
    `read_now(offset, size)` (raises BlockingIOError when it would wait for
    the disk), `async read(offset, size)` and `async sync()`; its errors are
    OSErrors, answered with their errno (EIO without one)."""

    def __init__(self, device, mountpoint, fsname, name):
        self.device = device
        self.mountpoint = str(mountpoint)
        self.fsname = fsname
        self.name = name.encode()
        self.fd = None
        self.opened = 0
        self.buffer = bytearray(MAX_WRITE + 64 * 1024)
        self.waiting_writes = []    # [(unique, offset, data)], in order, behind a write that waits
        self.batch = []             # [(unique, offset, data)] read, not yet logged nor answered
        self.nursery = None

    # ------------------------------------------------------------- mounting
    def mount(self):
        self.fd = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
        options = (f"fd={self.fd},rootmode={stat.S_IFDIR:o},user_id=0,group_id=0,"
                   f"default_permissions")
        code = libc.mount(self.fsname, self.mountpoint, "fuse", MS_NOSUID | MS_NODEV, options)
        if code:
            os.close(self.fd)
            self.fd = None
            raise OSError(code, f"mount of the FUSE file system on {self.mountpoint}: "
                                f"{os.strerror(code)}")

    def close(self, unmount=True):
        """Unmounts (lazily: a process still in the file system must not keep
        the next device from mounting) and closes the session."""
        if unmount:
            code = libc.umount_lazily(self.mountpoint)
            if code not in (0, errno.EINVAL, errno.ENOENT):
                log.warning("umount of %s: %s", self.mountpoint, os.strerror(code))
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def invalidate_attributes(self):
        """The kernel asks for the file's attributes again (its size changed)."""
        payload = INVAL_INODE.pack(FILE_INODE, -1, 0)
        try:
            os.write(self.fd, OUT_HEADER.pack(OUT_HEADER.size + len(payload),
                                              NOTIFY_INVAL_INODE, 0) + payload)
        except OSError as exc:      # not yet initialised, or unmounted: nothing cached
            log.debug("invalidate: %s", exc)

    # -------------------------------------------------------------- serving
    async def serve(self):
        """Answers requests until the file system is unmounted."""
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            done = 0
            view = memoryview(self.buffer)
            while True:
                try:
                    length = os.readv(self.fd, [self.buffer])
                except BlockingIOError:
                    self._log_batch()
                    await trio.lowlevel.wait_readable(self.fd)
                    continue
                except OSError as exc:
                    if exc.errno in (errno.ENOENT, errno.EINTR):     # interrupted meanwhile
                        continue
                    if exc.errno == errno.ENODEV:                   # unmounted
                        break
                    raise
                if not self._dispatch(view[:length]):
                    break
                done += 1
                if done % YIELD_EVERY == 0:
                    self._log_batch()
                    await trio.lowlevel.checkpoint()
            nursery.cancel_scope.cancel()

    def _dispatch(self, request):
        """One request: answered now, or handed to a task. False: the session ends."""
        _, opcode, unique, nodeid, *_ = IN_HEADER.unpack_from(request)
        body = request[IN_HEADER.size:]
        if opcode != WRITE:
            self._log_batch()       # what comes after a write sees it
        try:
            if opcode == WRITE:
                self._write(unique, body)
            elif opcode == READ:
                self._read(unique, body)
            elif opcode in NO_ANSWER:
                pass
            elif opcode in (FLUSH, FSYNC):
                self.nursery.start_soon(self._sync, unique)
            elif opcode == GETATTR:
                self._answer(unique, self._attr_out(nodeid))
            elif opcode == LOOKUP:
                if nodeid != ROOT_INODE or bytes(body).rstrip(b"\0") != self.name:
                    raise Refused(errno.ENOENT)
                self._answer(unique, self._entry_out(FILE_INODE))
            elif opcode == OPEN:
                if nodeid != FILE_INODE:
                    raise Refused(errno.EISDIR)
                self.opened += 1
                self._answer(unique, OPEN_OUT.pack(FILE_INODE, OPEN_DIRECT_IO, 0))
            elif opcode == RELEASE:
                self.opened -= 1
                self._answer(unique)
            elif opcode == SETATTR:
                valid, _, _, size = SETATTR_IN.unpack_from(body)
                if valid & FATTR_SIZE and size != self.device.size:
                    raise Refused(errno.EPERM)      # a resize is `marsadm resize`
                self._answer(unique, self._attr_out(nodeid))
            elif opcode == OPENDIR:
                if nodeid != ROOT_INODE:
                    raise Refused(errno.ENOTDIR)
                self._answer(unique, OPEN_OUT.pack(ROOT_INODE, 0, 0))
            elif opcode == READDIR:
                _, offset, size, *_ = RW_IN.unpack_from(body)
                self._answer(unique, self._entries(offset, size))
            elif opcode in (RELEASEDIR, FSYNCDIR):
                self._answer(unique)
            elif opcode == STATFS:
                self._answer(unique, STATFS_OUT.pack(self.device.size // 4096, 0, 0, 2, 0,
                                                     4096, 255, 4096))
            elif opcode == INIT:
                self._answer(unique, self._init(body))
            elif opcode == DESTROY:
                self._answer(unique)
                return False
            else:
                raise Refused(errno.ENOSYS)
        except Refused as refused:
            self._answer(unique, error=refused.errno)
        return True

    def _answer(self, unique, payload=b"", error=0):
        header = OUT_HEADER.pack(OUT_HEADER.size + len(payload), -error, unique)
        try:
            os.writev(self.fd, [header, payload] if payload else [header])
        except OSError as exc:
            # ENOENT: the request was interrupted meanwhile (the kernel forgot
            # it); otherwise the file system is going away.
            if exc.errno != errno.ENOENT:
                log.debug("answer to request %d: %s", unique, exc)

    def _error_of(self, exc):
        return exc.errno or errno.EIO

    # ---------------------------------------------------------- data path
    def _write(self, unique, body):
        """A write joins the batch that is logged (and answered) together
        once no request is left to read, before any other request, or when
        it is full. Behind a write that waits, it waits too."""
        _, offset, size, *_ = RW_IN.unpack_from(body)
        if offset + size > self.device.size:
            raise Refused(errno.ENOSPC)
        data = bytes(body[RW_IN.size:RW_IN.size + size])
        if self.waiting_writes:
            self.waiting_writes.append((unique, offset, data))
            return
        self.batch.append((unique, offset, data))
        if len(self.batch) >= BATCH_WRITES:
            self._log_batch()

    def _log_batch(self):
        """Log the batched writes with one append and answer them; when they
        have to wait (the write-back is full), they queue in order."""
        if not self.batch:
            return
        batch, self.batch = self.batch, []
        try:
            done = self.device.write_many_now([(offset, data) for _, offset, data in batch])
        except OSError as exc:
            for unique, _, _ in batch:
                self._answer(unique, error=self._error_of(exc))
            return
        if done:
            for unique, _, data in batch:
                self._answer(unique, WRITE_OUT.pack(len(data), 0))
            return
        if not self.waiting_writes:
            self.nursery.start_soon(self._write_waiting)
        self.waiting_writes.extend(batch)

    async def _write_waiting(self):
        """The writes that came while one waits, one after the other, in order."""
        while self.waiting_writes:
            unique, offset, data = self.waiting_writes[0]
            try:
                written = await self.device.write(offset, data)
            except OSError as exc:
                self._answer(unique, error=self._error_of(exc))
            else:
                self._answer(unique, WRITE_OUT.pack(written, 0))
            finally:
                self.waiting_writes.pop(0)

    def _read(self, unique, body):
        _, offset, size, *_ = RW_IN.unpack_from(body)
        size = max(0, min(size, self.device.size - offset))
        if not size:
            self._answer(unique)
            return
        try:
            self._answer(unique, self.device.read_now(offset, size))
        except BlockingIOError:
            self.nursery.start_soon(self._read_waiting, unique, offset, size)
        except OSError as exc:
            raise Refused(self._error_of(exc)) from None

    async def _read_waiting(self, unique, offset, size):
        try:
            data = await self.device.read(offset, size)
        except OSError as exc:
            self._answer(unique, error=self._error_of(exc))
        else:
            self._answer(unique, data)

    async def _sync(self, unique):
        try:
            await self.device.sync()
        except OSError as exc:
            self._answer(unique, error=self._error_of(exc))
        else:
            self._answer(unique)

    # ------------------------------------------------------------ metadata
    def _init(self, body):
        major, minor, max_readahead, flags = INIT_IN.unpack_from(body)
        if major != 7:
            raise Refused(errno.EPROTO)
        return INIT_OUT.pack(7, min(minor, PROTOCOL_MINOR), max_readahead,
                             flags & WANTED_FLAGS, MAX_BACKGROUND, MAX_BACKGROUND * 3 // 4,
                             MAX_WRITE, 1, MAX_WRITE // 4096, 0, 0, 0)

    def _attr(self, inode):
        now = time.time_ns()
        seconds, nanoseconds = divmod(now, 10**9)
        if inode == ROOT_INODE:
            mode, nlink, size = stat.S_IFDIR | 0o700, 2, 0
        elif inode == FILE_INODE:
            mode, nlink, size = stat.S_IFREG | 0o600, 1, self.device.size
        else:
            raise Refused(errno.ENOENT)
        return ATTR.pack(inode, size, (size + 511) // 512, seconds, seconds, seconds,
                         nanoseconds, nanoseconds, nanoseconds, mode, nlink, 0, 0, 0, 4096, 0)

    def _attr_out(self, inode):
        return ATTR_OUT_HEAD.pack(ATTR_VALID, 0, 0) + self._attr(inode)

    def _entry_out(self, inode):
        return ENTRY_OUT_HEAD.pack(inode, 0, ATTR_VALID, ATTR_VALID, 0, 0) + self._attr(inode)

    def _entries(self, offset, room):
        """The directory's listing from `offset` on (`.`, `..` and the file),
        as many entries as fit into `room` bytes."""
        listing = b""
        for index, (inode, name, kind) in enumerate(
                ((ROOT_INODE, b".", stat.S_IFDIR), (ROOT_INODE, b"..", stat.S_IFDIR),
                 (FILE_INODE, self.name, stat.S_IFREG)), start=1):
            if index <= offset:
                continue
            entry = DIRENT_HEAD.pack(inode, index, len(name), kind >> 12) + name
            entry += b"\0" * (-len(entry) % 8)
            if len(listing) + len(entry) > room:
                break
            listing += entry
        return listing

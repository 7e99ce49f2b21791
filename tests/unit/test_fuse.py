"""The device's FUSE session (mars/fuse.py) on a pipe instead of /dev/fuse:
requests as the kernel frames them, answers read back and decoded. The
mounted session is exercised by every root test of the data plane."""

import errno
import os
import select
import struct

import trio

from mars import fuse

SIZE = 1 << 20


class Disk:
    """A device: writes land in a list; `full` makes them wait."""

    def __init__(self):
        self.size = SIZE
        self.full = False
        self.room = trio.Event()
        self.writes = []
        self.appends = 0                # write_many_now calls that logged

    def write_many_now(self, writes):
        if self.full:
            return False
        self.writes.extend(writes)
        self.appends += 1
        return True

    async def write(self, offset, data):
        if self.full:
            await self.room.wait()
        self.writes.append((offset, data))
        return len(data)

    def read_now(self, offset, size):
        return b"r" * size

    async def read(self, offset, size):
        return self.read_now(offset, size)

    async def sync(self):
        pass


class Kernel:
    """Frames requests and reads the session's answers from a pipe."""

    def __init__(self, session):
        self.answers, session.fd = os.pipe()
        self.session = session
        self.unique = 0

    def request(self, opcode, body=b"", nodeid=fuse.FILE_INODE, more=False):
        """Hand the session one request; without `more`, nothing else is
        there to read (the session's loop logs its batch of writes then)."""
        self.unique += 1
        header = fuse.IN_HEADER.pack(fuse.IN_HEADER.size + len(body), opcode, self.unique,
                                     nodeid, 0, 0, 0, 0, 0)
        self.session._dispatch(memoryview(header + body))
        if not more:
            self.session._log_batch()
        return self.unique

    def answered(self):
        return bool(select.select([self.answers], [], [], 0)[0])

    def answer(self):
        assert select.select([self.answers], [], [], 10)[0], "no answer from the session"
        length, error, unique = fuse.OUT_HEADER.unpack(os.read(self.answers,
                                                               fuse.OUT_HEADER.size))
        payload = os.read(self.answers, length - fuse.OUT_HEADER.size) \
            if length > fuse.OUT_HEADER.size else b""
        return unique, -error, payload

    def write(self, offset, data, more=False):
        return self.request(fuse.WRITE, fuse.RW_IN.pack(fuse.FILE_INODE, offset, len(data),
                                                        0, 0, 0, 0) + data, more=more)


def session_and_kernel():
    session = fuse.Session(Disk(), "/nowhere", "mars-test", "device")
    return session, Kernel(session)


def test_init_takes_only_the_flags_the_kernel_offers_and_asks_for_one_mib_writes():
    session, kernel = session_and_kernel()
    offered = fuse.ASYNC_READ | fuse.ASYNC_DIO | (1 << 10)       # no MAX_PAGES, no BIG_WRITES
    kernel.request(fuse.INIT, fuse.INIT_IN.pack(7, 38, 131072, offered) + bytes(44))
    _, error, payload = kernel.answer()
    major, minor, readahead, flags, _, _, max_write, _, max_pages, *_ = \
        fuse.INIT_OUT.unpack(payload)
    assert (error, major, minor, readahead) == (0, 7, fuse.PROTOCOL_MINOR, 131072)
    assert flags == fuse.ASYNC_READ | fuse.ASYNC_DIO
    assert (max_write, max_pages) == (1 << 20, 256)


def test_an_older_protocol_is_answered_in_its_own_minor_and_another_major_refused():
    session, kernel = session_and_kernel()
    kernel.request(fuse.INIT, fuse.INIT_IN.pack(7, 27, 0, 0))
    assert fuse.INIT_OUT.unpack(kernel.answer()[2])[1] == 27
    kernel.request(fuse.INIT, fuse.INIT_IN.pack(8, 0, 0, 0))
    assert kernel.answer()[1] == errno.EPROTO


def test_lookup_finds_the_file_with_the_devices_size_and_nothing_else():
    session, kernel = session_and_kernel()
    kernel.request(fuse.LOOKUP, b"device\0", nodeid=fuse.ROOT_INODE)
    _, error, payload = kernel.answer()
    nodeid = struct.unpack_from("<Q", payload)[0]
    attr = fuse.ATTR.unpack_from(payload, fuse.ENTRY_OUT_HEAD.size)
    assert (error, nodeid, attr[0], attr[1]) == (0, fuse.FILE_INODE, fuse.FILE_INODE, SIZE)
    kernel.request(fuse.LOOKUP, b"other\0", nodeid=fuse.ROOT_INODE)
    assert kernel.answer()[1] == errno.ENOENT


def test_a_write_beyond_the_end_is_refused_and_one_inside_answered_at_once():
    session, kernel = session_and_kernel()
    kernel.write(SIZE - 4096, b"x" * 8192)
    assert kernel.answer()[1] == errno.ENOSPC
    unique = kernel.write(4096, b"y" * 4096)
    assert kernel.answer() == (unique, 0, fuse.WRITE_OUT.pack(4096, 0))
    assert session.device.writes == [(4096, b"y" * 4096)]


def test_writes_read_in_a_row_are_logged_together_before_any_other_request_is_answered():
    """The writes the kernel has queued are logged with one append and
    answered then: when nothing more is to be read, when a request of
    another kind comes (a read after a write sees it), or at BATCH_WRITES."""
    session, kernel = session_and_kernel()
    device = session.device
    writes = [kernel.write(index * 4096, bytes([index]) * 4096, more=True) for index in range(3)]
    assert device.writes == [] and not kernel.answered()        # not logged: not answered
    read = kernel.request(fuse.READ, fuse.RW_IN.pack(fuse.FILE_INODE, 0, 4096, 0, 0, 0, 0),
                          more=True)
    assert [offset for offset, _ in device.writes] == [0, 4096, 8192] and device.appends == 1
    assert [kernel.answer()[0] for _ in range(4)] == [*writes, read]
    for index in range(fuse.BATCH_WRITES + 1):
        kernel.write(index * 512, b"z" * 512, more=True)
    assert device.appends == 2 and len(device.writes) == 3 + fuse.BATCH_WRITES
    session._log_batch()            # the loop found nothing more to read
    assert device.appends == 3 and len(device.writes) == 4 + fuse.BATCH_WRITES
    assert len([kernel.answer() for _ in range(fuse.BATCH_WRITES + 1)]) == fuse.BATCH_WRITES + 1


def test_writes_after_one_that_waits_queue_behind_it_in_their_order():
    session, kernel = session_and_kernel()
    device = session.device

    async def scenario():
        async with trio.open_nursery() as nursery:
            session.nursery = nursery
            device.full = True
            first = kernel.write(0, b"1" * 512)
            device.full = False             # room again: the next must still wait its turn
            second = kernel.write(0, b"2" * 512)
            assert device.writes == []
            device.room.set()
        return first, second

    first, second = trio.run(scenario)
    assert [data[:1] for _, data in device.writes] == [b"1", b"2"]
    assert [kernel.answer()[0] for _ in range(2)] == [first, second]
    unique = kernel.write(0, b"3" * 512)        # the queue is empty: at once again
    assert kernel.answer()[0] == unique


def test_readdir_lists_only_whole_entries_that_fit():
    session, kernel = session_and_kernel()
    kernel.request(fuse.READDIR, fuse.RW_IN.pack(1, 0, 4096, 0, 0, 0, 0), nodeid=fuse.ROOT_INODE)
    listing = kernel.answer()[2]
    names, position = [], 0
    while position < len(listing):
        _, offset, length, _ = fuse.DIRENT_HEAD.unpack_from(listing, position)
        names.append(listing[position + fuse.DIRENT_HEAD.size:
                             position + fuse.DIRENT_HEAD.size + length])
        position += (fuse.DIRENT_HEAD.size + length + 7) // 8 * 8
    assert names == [b".", b"..", b"device"]
    kernel.request(fuse.READDIR, fuse.RW_IN.pack(1, 2, 30, 0, 0, 0, 0), nodeid=fuse.ROOT_INODE)
    assert kernel.answer()[2] == b""        # `device` (32 bytes) does not fit into 30


def test_a_size_change_is_refused_and_unknown_requests_are_not_implemented():
    session, kernel = session_and_kernel()
    kernel.request(fuse.SETATTR, fuse.SETATTR_IN.pack(fuse.FATTR_SIZE, 0, 0, SIZE * 2)
                   + bytes(56))
    assert kernel.answer()[1] == errno.EPERM
    kernel.request(fuse.SETATTR, fuse.SETATTR_IN.pack(fuse.FATTR_SIZE, 0, 0, SIZE) + bytes(56))
    assert kernel.answer()[1] == 0
    kernel.request(39)      # FUSE_IOCTL
    assert kernel.answer()[1] == errno.ENOSYS
    kernel.request(fuse.FORGET, struct.pack("<Q", 1))
    kernel.request(fuse.OPEN, bytes(8))
    assert kernel.answer()[1] == 0 and session.opened == 1     # FORGET had no answer


def test_a_resize_tells_the_kernel_to_forget_the_files_attributes():
    session, kernel = session_and_kernel()
    session.invalidate_attributes()
    _, notification, payload = kernel.answer()
    assert -notification == fuse.NOTIFY_INVAL_INODE
    assert fuse.INVAL_INODE.unpack(payload) == (fuse.FILE_INODE, -1, 0)

"""System calls the os module does not offer, through one handle of the C
library (ctypes): fallocate(2) itself, sync_file_range(2), prctl(2)'s
parent-death signal, mount(2) and umount2(2), madvise(2)'s
MADV_POPULATE_READ, cachestat(2); and a buffer's address for C functions
(`buffer_address`). (ctypes lets go of the GIL while a call runs.)"""

import ctypes
import os

LIBC = ctypes.CDLL(None, use_errno=True)

PR_SET_PDEATHSIG = 1
SYNC_FILE_RANGE_WAIT_BEFORE, SYNC_FILE_RANGE_WRITE, SYNC_FILE_RANGE_WAIT_AFTER = 1, 2, 4
MNT_DETACH = 2
MADV_POPULATE_READ = 22             # linux/mman.h, Linux 5.14
SYS_CACHESTAT = 451                 # asm-generic/unistd.h, Linux 6.5: one number on every architecture

_fallocate = LIBC.fallocate
_fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
_sync_file_range = LIBC.sync_file_range
_sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
_madvise = LIBC.madvise
_madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_syscall = LIBC.syscall
_syscall.restype = ctypes.c_long


class _CachestatRange(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class _Cachestat(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "nr_cache", "nr_dirty", "nr_writeback", "nr_evicted", "nr_recently_evicted")]


def fallocate(fd, offset, length):
    """Allocate the blocks of [offset, offset + length) of the file `fd`
    with fallocate(2) itself. False where it is refused (EOPNOTSUPP,
    ENODEV for a block device, ENOSPC): glibc's posix_fallocate would
    instead emulate it by writing a byte into every block."""
    return _fallocate(fd, 0, offset, length) == 0


def start_writeback(fd, offset, length):
    """Hand the dirty pages of [offset, offset + length) of `fd` to the
    disk, not waiting for them (sync_file_range, SYNC_FILE_RANGE_WRITE)."""
    _sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE)


def write_out(fd, offset, length):
    """Write the dirty pages of [offset, offset + length) of `fd` to the
    disk and wait for them (sync_file_range: WAIT_BEFORE | WRITE |
    WAIT_AFTER; no flush of the disk's cache, no metadata sync); raises
    OSError on failure."""
    if _sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE
                        | SYNC_FILE_RANGE_WAIT_AFTER) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def populate_read(address, length):
    """Fault in the pages of the mapping at [address, address + length)
    for reading (madvise MADV_POPULATE_READ), waiting for what has to come
    from the disk. A page that cannot be read is an OSError here (EFAULT,
    EIO), where touching it would be SIGBUS; so is a kernel before 5.14
    (EINVAL)."""
    if _madvise(address, length, MADV_POPULATE_READ) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def cached_pages(fd, offset, length):
    """How many pages of [offset, offset + length) of the file `fd` the
    page cache holds (cachestat(2): it counts folios, so a large one costs
    what a small one does); None where the kernel cannot tell (before
    Linux 6.5: ENOSYS)."""
    span = _CachestatRange(offset, length)
    counts = _Cachestat()
    if _syscall(ctypes.c_long(SYS_CACHESTAT), ctypes.c_int(fd), ctypes.byref(span),
                ctypes.byref(counts), ctypes.c_uint(0)) != 0:
        return None
    return counts.nr_cache


def die_with_parent(signal_number):
    """This process gets `signal_number` once the thread that started it
    ends (prctl PR_SET_PDEATHSIG)."""
    LIBC.prctl(PR_SET_PDEATHSIG, signal_number)


def mount(source, target, fstype, flags, options):
    """mount(2); 0, or the errno."""
    if LIBC.mount(source.encode(), target.encode(), fstype.encode(), ctypes.c_ulong(flags),
                  options.encode()) != 0:
        return ctypes.get_errno()
    return 0


def umount_lazily(target):
    """umount2(2) with MNT_DETACH; 0, or the errno."""
    if LIBC.umount2(target.encode(), MNT_DETACH) != 0:
        return ctypes.get_errno()
    return 0


def buffer_address(part):
    """The address of a writable, non-empty buffer's first byte (a
    bytearray's, a memoryview of one or of a writable map), for a C
    function that reads it; None for bytes, read-only or empty ones. The
    caller keeps the buffer from growing while the address is in use."""
    if isinstance(part, bytes) or not len(part):
        return None
    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(part))
    except TypeError:
        return None

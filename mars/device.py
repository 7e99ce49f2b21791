"""The device of a resource on its actual primary.

marsd starts one device process per resource it is primary of:

    python -m mars.device --resource-dir D --disk P --host H --mountpoint M
                          --size N [--cursor C] [--digest crc32c] [--compress]
                          [--rotate-size BYTES] [--emergency-free BYTES]

It recovers the disk from the replay cursor (the log since the last
checkpoint is replayed; replay is idempotent), starts a new logfile, and
serves the resource as the FUSE file `M/device`. Every write to that file is
appended to the logfile and written back to the disk before it returns; an
fsync or flush makes the log durable first. marsd attaches a loop device with
direct I/O to the file; `<dev_dir>/<res>` points at the loop device.

Its own process, because pyfuse3 serves one FUSE session per process and the
data path should not share an interpreter lock with replication. It dies
with marsd (PR_SET_PDEATHSIG): a killed marsd is a crashed device, exactly
what recovery is for.

Control, one JSON object per line (stdin: commands, stdout: replies/events):

    <- {"event": "ready", "logfile": L, "previous": [L0, end] | null, "replayed": n}
    <- {"event": "refused", "reason": R, "damage": [path, position]}; exits 2
       (recovery found the log corrupt before its end: retrying cannot help)
    -> {"cmd": "checkpoint"}  <- {"reply": "checkpoint", "cursor": C, "logged": bytes, ...}
    -> {"cmd": "rotate"}      <- {"reply": "rotate", "closed": [L, end]}
    -> {"cmd": "resize", "size": n}  <- {"reply": "resize", "size": n}
    -> {"cmd": "stop"}        <- {"reply": "stop", "closed": [L, end], "cursor": C}; exits 0
    <- {"event": "rotated", "closed": [L, end]}     (size threshold)
    <- {"event": "emergency", "free": bytes}         (logging stopped: see MARS.md)
    <- {"event": "logging"}     (the first write logged since the last checkpoint:
                                 an idle primary's marsd is not asked every round)

The rest of this module is what marsd needs around the device process:
loop devices and the open count.
"""

import argparse
import ctypes
import errno
import json
import logging
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

from mars.lamport import LamportClock
from mars.logfile import LogCorrupt
from mars.replay import Cursor
from mars.translog import TransactionLog

log = logging.getLogger("mars.device")

DEVICE_FILE = "device"
FILE_INODE = 2
PR_SET_PDEATHSIG = 1
EXIT_REFUSED = 2                # the device cannot start from this log (see "refused")


# ------------------------------------------------------------------- FUSE side
def _operations():
    """The pyfuse3 Operations class (imported lazily: marsd itself and the
    unit tests of the loop helpers do not need pyfuse3)."""
    import pyfuse3

    class DeviceOperations(pyfuse3.Operations):
        """One directory with one file, `device`, backed by the transaction log."""

        enable_writeback_cache = False

        def __init__(self, device):
            super().__init__()
            self.device = device
            self.opened = 0

        def _attributes(self, inode):
            attrs = pyfuse3.EntryAttributes()
            now = time.time_ns()
            if inode == pyfuse3.ROOT_INODE:
                attrs.st_mode = stat.S_IFDIR | 0o700
                attrs.st_nlink = 2
            elif inode == FILE_INODE:
                attrs.st_mode = stat.S_IFREG | 0o600
                attrs.st_nlink = 1
                attrs.st_size = self.device.size
                attrs.st_blocks = (self.device.size + 511) // 512
            else:
                raise pyfuse3.FUSEError(errno.ENOENT)
            attrs.st_blksize = 4096
            attrs.st_atime_ns = attrs.st_mtime_ns = attrs.st_ctime_ns = now
            attrs.st_ino = inode
            attrs.attr_timeout = attrs.entry_timeout = 1
            return attrs

        async def getattr(self, inode, ctx=None):
            return self._attributes(inode)

        async def lookup(self, parent_inode, name, ctx=None):
            if parent_inode != pyfuse3.ROOT_INODE or name != DEVICE_FILE.encode():
                raise pyfuse3.FUSEError(errno.ENOENT)
            return self._attributes(FILE_INODE)

        async def opendir(self, inode, ctx):
            if inode != pyfuse3.ROOT_INODE:
                raise pyfuse3.FUSEError(errno.ENOTDIR)
            return inode

        async def readdir(self, fh, start_id, token):
            if start_id == 0:
                pyfuse3.readdir_reply(token, DEVICE_FILE.encode(), self._attributes(FILE_INODE), 1)

        async def open(self, inode, flags, ctx):
            if inode != FILE_INODE:
                raise pyfuse3.FUSEError(errno.EISDIR)
            self.opened += 1
            return pyfuse3.FileInfo(fh=FILE_INODE, direct_io=True, keep_cache=False)

        async def release(self, fh):
            self.opened -= 1

        async def read(self, fh, off, size):
            size = max(0, min(size, self.device.size - off))
            return self.device.translog.read(off, size) if size else b""

        async def write(self, fh, off, buf):
            if off + len(buf) > self.device.size:
                raise pyfuse3.FUSEError(errno.ENOSPC)
            return self.device.write(off, buf)

        async def fsync(self, fh, datasync):
            await self.device.sync()

        async def flush(self, fh):
            await self.device.sync()

        async def setattr(self, inode, attr, fields, fh, ctx):
            if fields.update_size and attr.st_size != self.device.size:
                raise pyfuse3.FUSEError(errno.EPERM)     # resize is `marsadm resize`
            return self._attributes(inode)

        async def statfs(self, ctx):
            data = pyfuse3.StatvfsData()
            data.f_bsize = data.f_frsize = 4096
            data.f_blocks = self.device.size // 4096
            data.f_namemax = 255
            return data

    return DeviceOperations


class Device:
    """The transaction log behind the FUSE file, and the control channel."""

    def __init__(self, args):
        self.args = args
        self.size = args.size
        self.translog = TransactionLog(args.resource_dir, args.disk, args.host,
                                       LamportClock(), args.digest, args.compress)
        self.logged = 0             # payload bytes appended to logfiles
        self.written = 0            # payload bytes written to the device
        self.emergency = False
        self.orphaned = False       # marsd died: leave the mount to its successor
        self.logging = None         # trio.Event set by every logged write (serve makes it)
        self.quiet = True           # nothing logged since the last checkpoint

    def write(self, offset, data):
        if self.emergency:
            view = memoryview(data)
            done = 0
            while done < len(view):
                done += os.pwrite(self.translog.disk_fd, view[done:], offset + done)
        else:
            self.translog.write(offset, data)
            self.logged += len(data)
            self.logging.set()
            if self.quiet:
                self.quiet = False
                self.emit({"event": "logging"})
            if self.translog.writer.size >= self.args.rotate_size:
                self.emit({"event": "rotated", "closed": self._rotate()})
        self.written += len(data)
        return len(data)

    async def sync(self):
        """fdatasync of the log (of the disk in emergency mode), off the
        event loop so that other requests go on meanwhile."""
        import trio
        target = self.translog.disk_fd if self.emergency else self.translog.writer.fd
        await trio.to_thread.run_sync(os.fdatasync, target)

    def _rotate(self):
        closed = self.translog.rotate()
        return [closed.logfile, closed.position]

    def _checkpoint(self):
        self.quiet = True
        cursor = self.translog.checkpoint() if not self.emergency else None
        return {"cursor": str(cursor) if cursor else None, "logged": self.logged,
                "written": self.written, "logfile": self.translog.logfile,
                "position": self.translog.log_position.position, "emergency": self.emergency}

    def emit(self, message):
        os.write(1, (json.dumps(message) + "\n").encode())

    def answer(self, command):
        """One control command -> its reply (or None to quit)."""
        name = command.get("cmd")
        if name == "checkpoint":
            return dict(self._checkpoint(), reply="checkpoint")
        if name == "rotate":
            return {"reply": "rotate", "closed": self._rotate()}
        if name == "resize":
            import pyfuse3
            self.size = int(command["size"])
            pyfuse3.invalidate_inode(FILE_INODE, attr_only=True)
            return {"reply": "resize", "size": self.size}
        if name == "stop":
            reply = dict(self._checkpoint(), reply="stop")
            reply["closed"] = [self.translog.logfile, self.translog.log_position.position]
            self.translog.writer.sync()
            return reply
        return {"reply": "error", "reason": f"unknown command {name!r}"}

    async def watch_space(self):
        """Emergency mode, last resort: stop logging when the state dir is
        nearly full (looked at twice a second while the device logs). The
        container keeps its device; the replicas need `invalidate`
        afterwards."""
        import trio
        while not self.emergency:
            free = free_bytes(self.args.resource_dir)
            if free < self.args.emergency_free:
                self.translog.writer.sync()
                self.emergency = True
                log.error("state dir has %d bytes free (< %d): logging stopped, writing "
                          "straight to the disk; replicas need invalidate", free,
                          self.args.emergency_free)
                self.emit({"event": "emergency", "free": free})
            await trio.sleep(0.5)
            # Only while it logs: an idle device's log cannot fill anything.
            await self.logging.wait()
            self.logging = trio.Event()

    async def control(self, nursery):
        import trio
        stdin = trio.lowlevel.FdStream(os.dup(0))
        buffer = b""
        while True:
            chunk = await stdin.receive_some(65536)
            if not chunk:
                log.warning("control channel closed: marsd is gone; stopping the device")
                self.translog.writer.sync()
                self.orphaned = True
                nursery.cancel_scope.cancel()
                return
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                reply = self.answer(json.loads(line))
                self.emit(reply)
                if reply.get("reply") == "stop":
                    nursery.cancel_scope.cancel()
                    return


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


async def serve(args):
    import pyfuse3
    import trio
    device = Device(args)
    device.logging = trio.Event()
    cursor = Cursor.parse(args.cursor) if args.cursor else None
    try:
        replayed = device.translog.recover(cursor)
    except LogCorrupt as corrupt:
        device.translog.close()
        device.emit({"event": "refused", "reason": str(corrupt.damage),
                     "damage": [corrupt.damage.path, corrupt.damage.position]})
        return EXIT_REFUSED
    previous = device.translog.previous
    os.makedirs(args.mountpoint, exist_ok=True)
    options = set(pyfuse3.default_options) | {f"fsname=mars-{Path(args.resource_dir).name}"}
    pyfuse3.init(_operations()(device), args.mountpoint, options)
    device.emit({"event": "ready", "logfile": device.translog.logfile, "replayed": replayed,
                 "previous": [previous.logfile, previous.position] if previous else None})
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pyfuse3.main)
            nursery.start_soon(device.control, nursery)
            nursery.start_soon(device.watch_space)
    finally:
        # Orphaned, the FUSE mount stays (dead) as after SIGKILL: unmounted
        # now, a loop device still on it would lose its path and leak, as
        # the restarted marsd finds stale loops by their backing file's path.
        pyfuse3.close(unmount=not device.orphaned)
        device.translog.close()


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m mars.device")
    parser.add_argument("--resource-dir", required=True)
    parser.add_argument("--disk", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--mountpoint", required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--cursor", default="")
    parser.add_argument("--digest", default="crc32c")
    parser.add_argument("--compress", action="store_true")
    parser.add_argument("--rotate-size", type=int, default=256 << 20)
    parser.add_argument("--emergency-free", type=int, default=64 << 20)
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s mars-device[%(process)d] %(levelname)s %(message)s")
    logging.getLogger("pyfuse3").setLevel(max(logging.INFO, logging.getLogger().level))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:
        sys.exit("marsd is gone")
    signal.signal(signal.SIGINT, signal.SIG_IGN)      # marsd decides when the device stops
    import trio
    sys.exit(trio.run(serve, args))


# ------------------------------------------------------------- marsd's side
class LoopError(Exception):
    pass


def attach_loop(path):
    """Attach a loop device with direct I/O to `path`; returns '/dev/loopN'."""
    result = subprocess.run(["losetup", "--find", "--show", "--direct-io=on", str(path)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise LoopError(f"losetup {path} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def refresh_loop_size(device):
    result = subprocess.run(["losetup", "--set-capacity", device], capture_output=True, text=True)
    if result.returncode != 0:
        raise LoopError(f"losetup --set-capacity {device} failed: {result.stderr.strip()}")


def detach_loop(device):
    result = subprocess.run(["losetup", "--detach", device], capture_output=True, text=True)
    if result.returncode != 0:
        raise LoopError(f"losetup --detach {device} failed: {result.stderr.strip()}")


def loops_backed_by(prefix):
    """{'/dev/loopN': backing file} for every loop device whose backing
    file lies under `prefix` (a crashed marsd's leftovers)."""
    found = {}
    for entry in Path("/sys/block").glob("loop*"):
        try:
            backing = (entry / "loop" / "backing_file").read_text().strip()
        except OSError:
            continue
        if backing.startswith(str(prefix)):
            found[f"/dev/{entry.name}"] = backing
    return found


def mounts_under(base):
    """(mount point, fs type) below `base`, deepest first."""
    base = str(base).rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            point = fields[4].encode().decode("unicode_escape")
            if point.startswith(base):
                found.append((point, fields[fields.index("-") + 1]))
    return sorted(found, key=lambda item: -len(item[0]))


def disk_size(path):
    """Bytes of a disk: a regular file's size, else a block device's end."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    with open(path, "rb") as handle:
        return handle.seek(0, os.SEEK_END)


def device_numbers(device):
    st = os.stat(device)
    return os.major(st.st_rdev), os.minor(st.st_rdev)


def mounted_devices():
    """{"major:minor": number of mounts} of every mounted block device."""
    counts = {}
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            number = line.split()[2]
            counts[number] = counts.get(number, 0) + 1
    return counts


def device_users(device, mounts=None):
    """How often the block device is in use by the kernel: mounts of it and
    holders (device mapper). Cheap: no look at processes. `mounts`: a
    recent `mounted_devices()`, else it is read now."""
    try:
        major, minor = device_numbers(device)
    except OSError:
        return 0
    count = (mounts if mounts is not None else mounted_devices()).get(f"{major}:{minor}", 0)
    holders = Path("/sys/dev/block") / f"{major}:{minor}" / "holders"
    if holders.exists():
        count += len(list(holders.iterdir()))
    return count


def processes_holding_devices(own_pids=()):
    """{device path: open file descriptors} over every process except
    `own_pids` and this one: one look at every process's fds (costly on a
    host with many processes, so callers share it)."""
    skip = {str(pid) for pid in own_pids} | {str(os.getpid())}
    counts = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or proc.name in skip:
            continue
        try:
            for fd in (proc / "fd").iterdir():
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith("/dev/"):
                    counts[target] = counts.get(target, 0) + 1
        except OSError:
            continue
    return counts


def open_count(device, own_pids=()):
    """How often the block device is in use: mounts and holders, else the
    processes (other than `own_pids`) that hold it open."""
    count = device_users(device)
    if count:
        return count
    return processes_holding_devices(own_pids).get(os.path.realpath(device), 0)


def unmount_stale(mountpoint):
    """Lazily unmount a FUSE mount left by a device process that died."""
    with open("/proc/self/mountinfo") as mountinfo:
        mounted = any(line.split()[4] == str(mountpoint) for line in mountinfo)
    if mounted:
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)
    return mounted


if __name__ == "__main__":
    main()

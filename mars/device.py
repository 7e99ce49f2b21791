"""The device of a resource on its actual primary.

marsd starts one device process per resource it is primary of:

    python -m mars.device --resource-dir D --disk P --host H --mountpoint M
                          --size N [--cursor C] [--digest crc32c] [--compress]
                          [--rotate-size BYTES] [--emergency-free BYTES]
                          [--writeback-limit BYTES] [--debug-hold-writeback]

It recovers the disk from the replay cursor (the log since the last
checkpoint is replayed; replay is idempotent), starts a new logfile, and
serves the resource as the FUSE file `M/device`. A write to that file returns
once it is appended to the logfile; a thread writes it back to the disk in
log order, and reads lay what is not written back yet over the disk
(`mars/writeback.py`). An fsync or flush makes the log durable before it
returns. marsd attaches a loop device with direct I/O to the file;
`<dev_dir>/<res>` points at the loop device.

Its own process, because the data path should not share an interpreter lock
with replication. The FUSE session is `mars/fuse.py`'s. It dies
with marsd (PR_SET_PDEATHSIG): a killed marsd is a crashed device, exactly
what recovery is for.

Control, one JSON object per line (stdin: commands, stdout: replies/events):

    <- {"event": "ready", "logfile": L, "previous": [L0, end] | null, "replayed": n,
        "passed": [[L, end], ...],   (every logfile recovery went through, L0 last)
        "emergency_mark": C | null}  (where logging stopped in an emergency mode before)
    <- {"event": "refused", "reason": R, "damage": [path, position]}; exits 2
       (recovery found the log corrupt before its end: retrying cannot help)
    -> {"cmd": "checkpoint"}  <- {"reply": "checkpoint", "cursor": C, "logged": bytes,
                                  "written": bytes, "pending": bytes, "behind": bool,
                                  "logfile": L, "position": end of the log, ...}
       (C: as far as the write-back has come and the disk is synced; "written":
        bytes written to the disk, "pending": logged, not yet written back;
        "behind": C stopped short of the log's end as it was when C was taken)
    -> {"cmd": "checkpoint", "sync": false}   the same without syncing the
       disk: "cursor" is null, "unsynced_cursor" the cursor for once it is
       synced (marsd's to sync); the log's end is news for the secondaries
    -> {"cmd": "rotate"}      <- {"reply": "rotate", "closed": [L, end]}
    -> {"cmd": "resize", "size": n}  <- {"reply": "resize", "size": n}
    -> {"cmd": "stop"}        <- {"reply": "stop", "closed": [L, end], "cursor": C}; exits 0
       (after the write-back has drained)
    -> {"cmd": "stop", "sync": false}   the same without syncing the disk
       (as the checkpoint without sync)
    <- {"event": "rotated", "closed": [L, end]}     (size threshold)
    <- {"event": "emergency", "free": bytes}         (logging stopped: see MARS.md)
    <- {"event": "logging"}     (the first write logged since the last checkpoint:
                                 an idle primary's marsd is not asked every round)
    <- {"event": "writeback-failed", "reason": R, "pending": bytes}
                                (the disk refused a write-back: writes and fsyncs
                                 answer EIO from now on; the log keeps everything)

It exits 3 when the kernel ended its FUSE session (the connection aborted,
the mount gone), and then, as after any end but marsd's `stop`, leaves its
dead FUSE mount for marsd to clean up with the loop device on it.

MARS_DEVICE_PROFILE=<path> in the environment runs the event loop under
cProfile (stats in <path>.<pid> at exit) and logs the write requests' sizes.

The rest of this module is what marsd needs around the device process:
loop devices and the open count.
"""

import argparse
import errno
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import trio

from mars import libc
from mars.fuse import MAX_WRITE, Session
from mars.lamport import LamportClock
from mars.logfile import LogCorrupt
from mars.replay import Cursor
from mars.translog import TransactionLog
from mars.writeback import DEFAULT_LIMIT

log = logging.getLogger("mars.device")

DEVICE_FILE = "device"
EXIT_REFUSED = 2                # the device cannot start from this log (see "refused")
EXIT_FUSE_LOST = 3              # the kernel ended the FUSE session (see `Device.serve_fuse`)
PROFILE_ENV = "MARS_DEVICE_PROFILE"     # path: cProfile the event loop, count write sizes


class Device:
    """The transaction log behind the FUSE file, and the control channel.

    Runs on one trio event loop; the write-back of logged writes runs in a
    thread of `self.translog.writeback`, whose progress wakes the loop's
    waiters (`until`)."""

    def __init__(self, args):
        self.args = args
        self.size = args.size
        self.translog = TransactionLog(args.resource_dir, args.disk, args.host,
                                       LamportClock(), args.digest, args.compress,
                                       writeback_limit=args.writeback_limit,
                                       hold_writeback=args.debug_hold_writeback,
                                       on_progress=self._progress_from_thread)
        self.logged = 0             # payload bytes appended to logfiles
        self.written_direct = 0     # payload bytes written straight to the disk (emergency)
        self.emergency = False
        self.emergency_ready = None  # trio.Event: set once the disk may take direct writes
        self.emergency_cursor = None  # where logging stopped (`TransactionLog.mark_emergency`)
        self.stopped = False        # by marsd's "stop" (else the dead mount stays, see serve)
        self.fuse_lost = False      # the kernel ended the FUSE session
        self.logging = None         # trio.Event set by every logged write (serve makes it)
        self.quiet = True           # nothing logged since the last checkpoint
        self.token = None           # the event loop's, for the write-back thread (serve sets it)
        self.progressed = None      # trio.Event set (and replaced) when the write-back moved on
        self.rotation = None        # trio.Lock: one rotation at a time (serve makes it)
        self.closing_log = None     # trio.Event while a rotated logfile is being synced
        self.rotation_due = False   # a rotation at the size threshold is on its way
        self.failure_reported = False
        self.write_sizes = None     # {bytes: requests}, kept with MARS_DEVICE_PROFILE
        self.session = None         # the FUSE session (serve makes it)

    @property
    def writeback(self):
        return self.translog.writeback

    @property
    def written(self):
        """Payload bytes written to the disk (written back, or directly)."""
        return self.writeback.written + self.written_direct

    # ------------------------------------------------------------ data path
    async def write(self, offset, data):
        """Log the write and return; the write-back follows in its thread.
        Waits (the event loop goes on) while `--writeback-limit` bytes are
        pending.

        The records are made on the event loop, in the one order of the
        records and the pending extents; small appends are written there
        too (one pwritev into the page cache: 14 us for 4 KiB, against 0.19
        ms for a round trip to a worker thread), large ones are copied into
        a staging buffer that the log's own thread writes past the page
        cache (`mars.directio.DirectAppender`; the write-back waits for it)."""
        while (written := self.write_now(offset, data)) is None:
            if self.emergency:
                return await self._write_direct(offset, data)
            await self.until(lambda: self.writeback.has_room(len(data)))
        return written

    def write_now(self, offset, data):
        """`write` when it need not wait: the size logged, or None (the
        write-back is full, or emergency mode) and nothing done."""
        return len(data) if self.write_many_now([(offset, data)]) else None

    def write_many_now(self, writes):
        """`write_now` for several (offset, data) at once, their records
        appended together: True, or False (and nothing done) when they have
        to wait. Nothing in here awaits: the records and the pending extents
        go in in the same order as every other write's."""
        self._raise_failure()
        size = sum(len(data) for _, data in writes)
        if self.emergency or not self.writeback.has_room(size):
            return False
        if self.write_sizes is not None:
            for _, data in writes:
                self.write_sizes[len(data)] = self.write_sizes.get(len(data), 0) + 1
        self.translog.write_many(writes)
        self._logged(size)
        return True

    def _logged(self, size):
        self.logged += size
        self.logging.set()
        if self.quiet:
            self.quiet = False
            self.emit({"event": "logging"})
        if self.translog.writer.size >= self.args.rotate_size and not self.rotation_due:
            self.rotation_due = True
            self.nursery.start_soon(self._rotate_at_threshold)

    async def _write_direct(self, offset, data):
        """Emergency mode: once the pending writes are on the disk (older
        data must not land on top) and where logging stopped is recorded
        (`enter_emergency`), straight to the disk."""
        await self.until(self.writeback.drained)
        self._raise_failure()
        await self.emergency_ready.wait()
        self._raise_failure()
        await trio.to_thread.run_sync(self.translog.write_direct, offset, data)
        self.written_direct += len(data)
        return len(data)

    async def read(self, offset, size):
        """The disk with the pending writes over it. From the page cache
        at once (RWF_NOWAIT); what would wait for the disk is read in a
        worker thread, as the event loop must not wait (writes and flushes go
        on meanwhile). A thread for every read halved the 4 KiB random reads
        served from the cache (2100 against 4500 IOPS). A write that comes in
        during a read in a thread is concurrent with it: the read returns the
        old data or the new, as any block device's."""
        try:
            return self.read_now(offset, size)
        except BlockingIOError:
            return await trio.to_thread.run_sync(self.translog.read, offset, size)

    def read_now(self, offset, size):
        """`read` from memory and the page cache; BlockingIOError when it
        would wait for the disk."""
        return self.translog.read(offset, size, nowait=True)

    async def sync(self):
        """Flush/fsync: fdatasync of the log (of the disk in emergency mode),
        off the event loop so that other requests go on meanwhile."""
        self._raise_failure()
        if self.emergency:
            # what was logged before is durable once emergency mode is ready
            # (the log synced, written back, the disk synced): a flush while
            # it got ready covers writes acknowledged from the log alone
            await self.emergency_ready.wait()
            self._raise_failure()
            await trio.to_thread.run_sync(self.translog.sync_disk)
        else:
            await self._sync_log()
        self._raise_failure()

    async def _sync_log(self):
        """Every record appended so far durable: the current logfile, and a
        rotated one whose sync is still under way."""
        closing, writer = self.closing_log, self.translog.writer
        try:
            await trio.to_thread.run_sync(writer.sync)
        except OSError as exc:
            # A rotation meanwhile synced and closed that logfile.
            if exc.errno != errno.EBADF or self.translog.writer is writer:
                raise
        if closing is not None:
            await closing.wait()

    # ------------------------------------------------------------ write-back
    def _progress_from_thread(self):
        """The write-back thread moved on (or failed): wake the loop's waiters."""
        try:
            self.token.run_sync_soon(self._progress)
        except trio.RunFinishedError:
            pass

    def _progress(self):
        self.progressed.set()
        self.progressed = trio.Event()
        failure = self.writeback.failure
        if failure is not None and not self.failure_reported:
            self.failure_reported = True
            self.emit({"event": "writeback-failed", "reason": str(failure),
                       "pending": self.writeback.pending})

    async def until(self, ready):
        """Wait, without blocking the event loop, until `ready()` holds or
        the write-back failed."""
        while not self.writeback.ready_or_notify(ready):
            await self.progressed.wait()

    def _raise_failure(self):
        if self.writeback.failure is not None:
            raise self.writeback.failed()

    # --------------------------------------------------------------- control
    async def _rotate_at_threshold(self):
        """One task per crossing of the threshold. (One per write that came
        before the first took the lock rotated once each, mostly empty
        logfiles: 10 of them in a test that wrote 200 MiB.)"""
        try:
            closed = await self._rotate(at_least=self.args.rotate_size)
        finally:
            self.rotation_due = False
        if closed is not None:
            self.emit({"event": "rotated", "closed": closed})

    async def _rotate(self, at_least=0):
        """A new logfile. Writes go there at once; the old one is synced off
        the event loop (on it, or with writes waiting, the sync stalled every
        request for up to 0.6 s per 256 MiB). A flush meanwhile waits for that
        sync too (`_sync_log`), and the closed logfile is reported only once
        it is durable: marsd writes its version then. With `at_least`: only
        a logfile of that size (a log-rotate may have come first); None when not."""
        async with self.rotation:
            if self.translog.writer.size < at_least:
                return None
            old, closed = self.translog.switch()
            self.closing_log = trio.Event()
            try:
                await trio.to_thread.run_sync(old.sync)
            finally:
                old.close()
                self.closing_log.set()
                self.closing_log = None
        return [closed.logfile, closed.position]

    async def _checkpoint(self, sync=True):
        """Cursor = where the write-back has come, taken now; then the log
        and the disk are synced (off the loop), so the cursor never passes
        what is durable on the disk, nor what is durable in the log: the
        write-back writes a record to the disk once it is appended, not once
        it is durable, and a cursor past a log tail a power loss took left
        the primary's disk holding writes its log (and so its replicas)
        never had. The log position is taken at the same moment. Without
        `sync`, no cursor: the same point as `unsynced_cursor`, unless the
        write-back failed (a sync of the disk would fail too)."""
        self.quiet = True
        position = self.translog.log_position
        # in emergency mode: where logging stopped, once the disk holds it
        through = self.translog.written_through() if not self.emergency else \
            self.emergency_cursor
        cursor = through if sync else None
        # Short of the log's end: the next checkpoint is due even if nothing
        # more is logged. (Said from this moment, not from "pending" after the
        # sync: a write-back that catches up during the sync leaves nothing
        # pending and the cursor behind, and an idle primary's checkpoint then
        # waited IDLE_CHECKPOINT_EVERY while a joining replica's full sync
        # started over and over from a logfile that was gone.)
        behind = cursor is not None and \
            (cursor.logfile, cursor.position) != (position.logfile, position.position)
        if cursor is not None:
            try:
                await self._sync_log()
                await trio.to_thread.run_sync(self.translog.sync_disk)
            except OSError as exc:      # no durable point on this disk: no new cursor
                log.error("fdatasync of the disk failed: %s; the replay cursor stays", exc)
                cursor = None
        failure = self.writeback.failure
        reply = {"cursor": str(cursor) if cursor else None, "logged": self.logged,
                 "written": self.written, "pending": self.writeback.pending, "behind": behind,
                 "logfile": position.logfile, "position": position.position,
                 "emergency": self.emergency,
                 "writeback_failed": str(failure) if failure is not None else None}
        if not sync and through is not None and failure is None:
            reply["unsynced_cursor"] = str(through)
        return reply

    def emit(self, message):
        os.write(1, (json.dumps(message) + "\n").encode())

    async def answer(self, command):
        """One control command -> its reply."""
        name = command.get("cmd")
        if name == "checkpoint":
            return dict(await self._checkpoint(command.get("sync", True)), reply="checkpoint")
        if name == "rotate":
            return {"reply": "rotate", "closed": await self._rotate()}
        if name == "resize":
            self.size = int(command["size"])
            self.session.invalidate_attributes()
            return {"reply": "resize", "size": self.size}
        if name == "stop":
            # Everything written back before the last cursor (unless the
            # write-back failed or is held: the cursor stays where the disk is).
            if not self.writeback.hold:
                await self.until(self.writeback.drained)
            reply = dict(await self._checkpoint(command.get("sync", True)), reply="stop")
            reply["closed"] = [self.translog.logfile, self.translog.log_position.position]
            await self._sync_log()
            return reply
        return {"reply": "error", "reason": f"unknown command {name!r}"}

    async def watch_space(self):
        """Emergency mode, last resort: stop logging when the state dir is
        nearly full (looked at twice a second while the device logs). The
        container keeps its device; the replicas need `invalidate`
        afterwards. Writes from then on wait until the pending ones are
        written back, then go straight to the disk (`_write_direct`)."""
        # the mark's room, made off the device's start (an fsync in a handover)
        await trio.to_thread.run_sync(self.translog.reserve_emergency_mark)
        while not self.emergency:
            free = free_bytes(self.args.resource_dir)
            if free < self.args.emergency_free:
                await self.enter_emergency(free)
            await trio.sleep(0.5)
            # Only while it logs: an idle device's log cannot fill anything.
            await self.logging.wait()
            self.logging = trio.Event()

    async def enter_emergency(self, free):
        """Logging stops: writes wait, then go straight to the disk. Before
        the first does, what was logged is made durable in the log and
        written back, the disk synced, and where the log stops recorded in
        the resource dir (`TransactionLog.mark_emergency`): recovery replays
        nothing before it (older logged data replayed from the last cursor
        landed on top of the direct writes, acknowledged flushes lost). The
        `emergency` event names that point: marsd records it
        (`unlogged-<host>`, so that replicas synced before it know they
        missed what came after: they need `invalidate`) and takes it as
        the replay cursor (checkpoints give it from now on)."""
        self.emergency_ready = trio.Event()
        self.emergency = True                       # nothing is logged from now on
        self.writeback.release_hold()               # the disk has to be current now
        await self._sync_log()
        await self.until(self.writeback.drained)
        if self.writeback.failure is not None:      # writes answer EIO: nothing goes direct
            self.emergency_ready.set()
            return
        # no rotation meanwhile: the thread reads the log's end (logfile, then
        # its writer), which a switch on the event loop would tear
        async with self.rotation:
            self.emergency_cursor = await trio.to_thread.run_sync(self.translog.mark_emergency)
        self.emergency_ready.set()
        log.error("state dir has %d bytes free (< %d): logging stopped at %s, writing "
                  "straight to the disk; replicas need invalidate", free,
                  self.args.emergency_free, self.emergency_cursor)
        self.emit({"event": "emergency", "free": free, "cursor": str(self.emergency_cursor)})

    async def control(self, nursery):
        stdin = trio.lowlevel.FdStream(os.dup(0))
        buffer = b""
        while True:
            chunk = await stdin.receive_some(65536)
            if not chunk:
                log.warning("control channel closed: marsd is gone; stopping the device")
                self.translog.writer.sync()
                nursery.cancel_scope.cancel()
                return
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                reply = await self.answer(json.loads(line))
                self.emit(reply)
                if reply.get("reply") == "stop":
                    self.stopped = True
                    nursery.cancel_scope.cancel()
                    return

    async def serve_fuse(self, nursery):
        """The FUSE session, until marsd stops the device (which cancels
        it) or the kernel ends it: its connection aborted (fusectl), its
        mount gone. Then the device ends too, as one that died: marsd says
        so, cleans up and starts a new one (which recovers the log) once
        nothing uses the loop device. Before, the process lived on with no
        file system under its loop device, which answered EIO, and marsd saw
        nothing wrong."""
        await self.session.serve()
        log.error("the FUSE session ended (its connection aborted, or its mount gone): "
                  "the device ends")
        self.translog.writer.sync()
        self.fuse_lost = True
        nursery.cancel_scope.cancel()


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


async def serve(args):
    device = Device(args)
    device.logging = trio.Event()
    device.progressed = trio.Event()
    device.rotation = trio.Lock()
    device.token = trio.lowlevel.current_trio_token()
    if os.environ.get(PROFILE_ENV):
        device.write_sizes = {}
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
    device.session = Session(device, args.mountpoint, f"mars-{Path(args.resource_dir).name}",
                             DEVICE_FILE)
    device.session.mount()
    device.emit({"event": "ready", "logfile": device.translog.logfile, "replayed": replayed,
                 "previous": [previous.logfile, previous.position] if previous else None,
                 "passed": [[done.logfile, done.position] for done in device.translog.passed],
                 "emergency_mark": str(mark) if (mark := device.translog.emergency_mark())
                 else None})
    try:
        async with trio.open_nursery() as nursery:
            device.nursery = nursery
            nursery.start_soon(device.serve_fuse, nursery)
            nursery.start_soon(device.control, nursery)
            nursery.start_soon(device.watch_space)
    finally:
        # Unless marsd stopped it (having detached the loop device first),
        # the FUSE mount stays (dead) as after SIGKILL: unmounted now, a loop
        # device still on it would lose its path (the kernel then shows its
        # backing file as `/device`) and leak, as marsd finds stale loop
        # devices by their backing file's path (`Primary.detach_stale_device`,
        # which unmounts the dead mount after).
        device.session.close(unmount=device.stopped)
        device.translog.close()
        if device.write_sizes is not None:
            log.info("write requests by size: %s", ", ".join(
                f"{size}: {count}" for size, count in sorted(device.write_sizes.items())))
    return EXIT_FUSE_LOST if device.fuse_lost else 0


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
    parser.add_argument("--writeback-limit", type=int, default=DEFAULT_LIMIT,
                        help="bytes logged but not yet written back to the disk at most; "
                             "a write waits beyond")
    parser.add_argument("--debug-hold-writeback", action="store_true",
                        help="debugging (recovery tests): never write back, serve reads "
                             "from memory; every logged write is left for recovery")
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


STANDBY = "--standby"


def _stand_by():
    """A device process started ahead (marsd does, when this host is to
    become primary): the imports done (this module's, trio above all: a
    part of a handover's downtime otherwise), it waits for its arguments,
    one JSON line `{"args": [...]}` on stdin (read a byte at a time: what
    follows on stdin is the control channel's). No line: not needed after
    all."""
    line = b""
    while not line.endswith(b"\n"):
        byte = os.read(0, 1)
        if not byte:
            sys.exit(0)
        line += byte
    return json.loads(line)["args"]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [STANDBY]:     # its other arguments only name it (ps, tests)
        _die_with_marsd()
        argv = _stand_by()
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s mars-device[%(process)d] %(levelname)s %(message)s")
    _die_with_marsd()
    signal.signal(signal.SIGINT, signal.SIG_IGN)      # marsd decides when the device stops
    profile_path = os.environ.get(PROFILE_ENV)
    if not profile_path:
        sys.exit(trio.run(serve, args))
    import cProfile
    profile = cProfile.Profile()
    try:
        code = profile.runcall(trio.run, serve, args)
    finally:
        profile.dump_stats(f"{profile_path}.{os.getpid()}")
    sys.exit(code)


def _die_with_marsd():
    libc.die_with_parent(signal.SIGKILL)
    if os.getppid() == 1:
        sys.exit("marsd is gone")


# ------------------------------------------------------------- marsd's side
class LoopError(Exception):
    pass


def attach_loop(path):
    """Attach a loop device with direct I/O to `path`; returns '/dev/loopN'.

    Its requests are capped at FUSE's largest write: the loop device would
    pass on up to 1280 KiB (max_sectors_kb = max_hw_sectors_kb), which FUSE
    splits into 1 MiB + 256 KiB, two trips through the device process for
    one request (seen with xfs, whose large folios make such requests).
    Smaller than 1 MiB they come when the writer's pages are scattered in
    memory: the loop queue takes at most 128 segments (max_segments, fixed by
    the loop driver, not writable), 512 KiB of 4 KiB pages."""
    result = subprocess.run(["losetup", "--find", "--show", "--direct-io=on", str(path)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise LoopError(f"losetup {path} failed: {result.stderr.strip()}")
    device = result.stdout.strip()
    knob = Path("/sys/block") / Path(device).name / "queue" / "max_sectors_kb"
    try:
        if int(knob.read_text()) > MAX_WRITE >> 10:
            knob.write_text(str(MAX_WRITE >> 10))
    except (OSError, ValueError) as exc:      # a smaller limit than ours, or none to set
        log.debug("%s: max_sectors_kb left as it is: %s", device, exc)
    return device


def grow_loop(device_file, device, size):
    """Make the loop device `device` over the FUSE file `device_file` as big
    as the device process's new `size`.

    The kernel's FUSE inode must hold the new size before the loop device
    does: a read beyond the size the inode holds comes back empty, which the
    loop device answers with EIO (CI: xfs_growfs right after a resize, while
    the container wrote). The device process invalidates the attributes, but
    the getattr that follows is dropped as stale when a write completes
    meanwhile: stat and the loop driver then see the new size in its reply
    while the inode keeps the old one. A truncate sets the inode's size
    whatever else completes (the device process accepts one to its own size
    and refuses any other)."""
    os.truncate(device_file, size)
    result = subprocess.run(["losetup", "--set-capacity", device], capture_output=True, text=True)
    if result.returncode != 0:
        raise LoopError(f"losetup --set-capacity {device} failed: {result.stderr.strip()}")
    grown = disk_size(device)
    if grown != size:
        raise LoopError(f"loop device {device} has {grown} bytes after losetup --set-capacity, "
                        f"not the device's {size}")


def detach_loop(device):
    result = subprocess.run(["losetup", "--detach", device], capture_output=True, text=True)
    if result.returncode != 0:
        raise LoopError(f"losetup --detach {device} failed: {result.stderr.strip()}")


def loop_backing_file(loop):
    """The backing file of loop device `loop` ('/dev/loopN') as the kernel
    shows it; None when it has none (detached)."""
    try:
        return (Path("/sys/block") / Path(loop).name / "loop" / "backing_file").read_text().strip()
    except OSError:
        return None


def loops_backed_by(prefix):
    """{'/dev/loopN': backing file} for every loop device whose backing
    file lies under `prefix` (a crashed marsd's leftovers)."""
    found = {}
    for entry in Path("/sys/block").glob("loop*"):
        backing = loop_backing_file(entry.name)
        if backing is not None and backing.startswith(str(prefix)):
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


def claimed_elsewhere(device):
    """Whether the kernel holds the block device for a filesystem (or another
    exclusive user) that this mount namespace does not show. A container
    starting on this host copies every mount of the host into a namespace of
    its own and keeps them until it pivots into its root: an umount on the
    host meanwhile leaves the filesystem alive there, its dirty data not
    yet written (CI: a container's config file, renamed into place, arrived
    empty on the new primary after a handover while another lab's container
    started). The kernel refuses an exclusive open while anything claims the
    device. Only for a device that should go: the probe would make a mount
    of it fail meanwhile."""
    try:
        probe = os.open(device, os.O_RDONLY | os.O_EXCL | os.O_NONBLOCK)
    except OSError as exc:
        return exc.errno == errno.EBUSY
    os.close(probe)
    return False


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

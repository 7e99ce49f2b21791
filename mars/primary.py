"""The primary's side of a resource worker: the device and its lifecycle.

- **becoming primary**: wait for the old primary to report `is-primary=0`
  (skipped with `primary --force`), fetch and replay up to its final
  version, then start the device.
- **primary** (designated and attached): the device process serves the
  device; every round in which it logged, its log's end is news for the
  secondaries (`actual-<host>/log-end`); its disk is synced and the replay
  cursor (`replay-<host>`) moved on once it went quiet, else every
  `disk_sync_interval`; it is rotated when asked, grown after `resize`,
  and counted for users; every logfile it closes gets its
  `version-<nr>-<host>`. When the designated primary moves
  elsewhere or `down` is asked, wait until the device is no longer open
  (or refuse a planned handover while it is in use), tear it down, close
  the logfile and report `is-primary=0` with the final version.
- the systemd units of the resource follow the device (`follow_units`).

`DeviceProcess` is the client of the device subprocess (`mars.device`)."""

import json
import logging
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import trio

from mars import antientropy, net
from mars import device as devices
from mars.device import STANDBY
from mars.channels import REQUEST_TIMEOUT
from mars.errors import PeerError
from mars.history import SplitBrain, final_version, history_conflict
from mars.hostenv import PORT_META
from mars.keys import (FORCED_NAME, GROWN_FROM_NAME, LOG_END_NAME, NO_PRIMARY, SYSTEMD_WANT_NAME,
                       actual_name, primary_key, replay_name, res_key, syncstatus_name,
                       todo_name, unlogged_name, version_name)
from mars.logfile import list_logfiles, parse_logfile_name
from mars.replay import Cursor, lowest_needed_logfile
from mars.translog import drop_emergency_mark, settle, whole_records_end

log = logging.getLogger("marsd.data")

DEVICE_RETRY_FIRST = 0.5         # seconds before a failed device start is tried again, doubling
DEVICE_RETRY_MAX = 30.0
SYSTEMCTL_TIMEOUT = 120.0        # seconds a systemctl start/stop may take
UNITS_RETRY_FIRST = 1.0          # seconds before a failed systemctl start/stop is run again, doubling
UNITS_RETRY_MAX = 60.0
NOT_LOADED = 5                  # systemctl's exit for a unit systemd does not know ("not loaded")
IN_USE_SAID_AFTER = 2.0          # seconds a device that should go is in use before the log says so
RELEASE_ASK_TIMEOUT = 3.0        # seconds a member has to answer whether it let go (becoming primary)
RELEASE_SILENT_SKIP = 10.0       # seconds one that did not is not asked again (the store says)
# While this host waits for the members to let go, they are asked every data
# tick for RELEASE_ASK_OFTEN_FOR seconds (a planned handover is done by
# then), after that every RELEASE_ASK_EVERY: an old primary whose device
# stays held (a stop unit that fails) was asked 20 times a second meanwhile
RELEASE_ASK_OFTEN_FOR, RELEASE_ASK_EVERY = 2.0, 0.5
IDLE_CHECKPOINT_EVERY = 30.0     # seconds an idle device goes at most without a checkpoint
# Seconds a device that keeps logging goes at most without a sync of its
# disk (marsd --disk-sync-interval). The write-back goes through the page
# cache; each sync writes what it holds dirty. Synced every round, a block
# the container rewrites was written to the disk once a round: fio's 1 MiB
# writes over 1 GiB, b replicating on the same disk, had the disk write
# 2.0-2.5 bytes per byte logged; synced every 5 s 1.4-1.9, and /dev/mars
# wrote 706-790 MiB/s instead of 502-592 (every 2 s: 625-708, 1.9-2.2).
DISK_SYNC_INTERVAL = 5.0


class DeviceGone(OSError):
    """The device process ended while a command was sent to it or its reply
    awaited (killed between the round's look at it and the command)."""


class DeviceRefused(Exception):
    """The device process cannot start from this host's log (corrupt before
    its end): permanent until an operator acts, so it is not retried."""

    def __init__(self, reason, path, position):
        super().__init__(reason)
        self.path, self.position = path, position


class Primary:
    """The device of one `ResourceWorker`'s resource on this host: what
    decides about it (its size, rotations, users, log position) is kept
    here; what the views show is reported through the worker."""

    def __init__(self, worker):
        self.worker = worker
        self.res = worker.res
        self.host = worker.host
        self.fuse_dir = Path(worker.env.state_dir) / "fuse" / self.res
        self.link = Path(worker.env.dev_dir) / self.res
        self.device = None              # DeviceProcess while primary
        self.standby = None             # one started ahead, while this host is to become primary
        self.said = None                # what the log was told once (units, a claimed or dead device)
        self.loop = None                # '/dev/loopN'
        self.refused = None             # why the device cannot start here (DeviceRefused)
        self.device_failures = 0        # device starts failed in a row, for the backoff
        self.device_retry_at = 0.0
        self.units_done = None          # ("start"|"stop", unit) last done by follow_units
        self.units_failed = None        # (action, why, failures in a row, when to try again)
        self.in_use_since = None        # when the device that should go was first found in use
        self.silent = {}                # member -> when it last did not answer a release request
        self.release_wait = None        # (since, last asked, who held) while members hold the device
        self.starting = False           # a device process is being started (`_start_device`)
        self.last_checkpoint = 0.0
        self.last_disk_sync = 0.0       # when a checkpoint last synced the disk (moved the cursor)
        self.checkpoint_due = False     # the device rotated or said something: checkpoint
        self.rotations = "0"            # the log-rotate wish last carried out
        self.device_size = None         # the size the device was brought up with or grown to
        self.open_count = 0             # users of the device, as last counted
        self.stale_in_use = set()       # loops of a crashed device still mounted: no device yet
        self.logged = 0                 # bytes the device process logged, at the last checkpoint
        self.log_position = None        # [logfile, position] at the last checkpoint

    def _key(self, name):
        return res_key(self.res, name)

    # ------------------------------------------------------------ housekeeping
    async def cleanup_stale_device(self):
        """A marsd that was killed leaves a loop device on a dead FUSE
        mount: detached, its log brought to rest (`settle_log`), and this
        host reported as not primary."""
        self.detach_stale_device()
        await self.settle_log()
        self.worker.set_actual(**{"is-primary": 0, "open-count": 0})

    async def settle_log(self):
        """Before this host says it released `res` (`is-primary=0`) after its
        device died, or marsd found it dead at its start: the log replayed
        onto the disk, its torn tail cut (`translog.settle`), and a version
        written for every logfile of its own without one. A new primary
        takes the history from the versions: without the last one's it
        began short of what the dead device had logged, flushed writes
        among it (`final_version` found the logfile before), and this host
        was a split brain once it replayed past that end. Only where this
        host's newest logfile is its own and has no version; a failure is
        said, and the release goes on as before."""
        worker = self.worker
        state = worker.state()
        disk, names = state.disk(self.res), state.resources().get(self.res, {})
        numbered = {parse_logfile_name(name)[0]: name for name, _ in list_logfiles(worker.dir)}
        if not disk or not numbered or not worker.switch(state, "attach"):
            return          # (detached: the disk may be the operator's now)
        number, origin = parse_logfile_name(numbered[max(numbered)])
        if origin != self.host or version_name(number, self.host) in names:
            return
        try:
            replayed, passed, mark = await trio.to_thread.run_sync(
                settle, str(worker.dir), disk, self.host, worker.follower.current_cursor(state))
        except (OSError, ValueError) as exc:
            log.error("%s: the log of the device that died could not be replayed (%s): its "
                      "last logfile has no version, a new primary begins before it", self.res,
                      exc)
            return
        self._record_unlogged(str(mark) if mark else None)
        await self._version_history([[done.logfile, done.position] for done in passed],
                                    upto=len(passed))
        if passed:
            # the disk holds the log to its end now (replayed, synced): the
            # cursor says so (its follower replayed it all again, from itself)
            end = Cursor(passed[-1].logfile, passed[-1].position, passed[-1].position)
            worker.follower.cursor = end
            worker.write({self._key(replay_name(self.host)): str(end)})
            await trio.to_thread.run_sync(drop_emergency_mark, str(worker.dir), self.host)
        log.info("%s: the log of the device that died is settled: %d records replayed, "
                 "%s ends at %d", self.res, replayed, passed[-1].logfile if passed else "-",
                 passed[-1].position if passed else 0)

    def _record_unlogged(self, mark):
        """`unlogged-<host>` = `mark` (where an emergency mode stopped the log,
        as the device's mark file says) where the metadata lacks it: marsd
        hears of the emergency a round later, and one killed in between
        left the replicas synced before it following, UpToDate, without
        the direct writes."""
        key = self._key(unlogged_name(self.host))
        if mark and self.worker.store.value(key) != mark:
            self.worker.write({key: mark})

    async def _version_history(self, passed, upto):
        """Versions, where they lack one, for this host's own logfiles before
        the first that recovery or a settle went through
        (`_version_own_logfiles`), then for those it went through
        (`passed`: [logfile, end], in order) up to `upto` of them."""
        if not passed:
            return
        state = self.worker.state()     # (those it writes are not among `passed`)
        await self._version_own_logfiles(state, below=parse_logfile_name(passed[0][0])[0])
        for logfile, end in unversioned(passed[:upto], self.host,
                                        state.resources().get(self.res, {})):
            await self.worker.history.write_version(logfile, end)

    async def _version_own_logfiles(self, state, below):
        """A version for every logfile of this host's own here, numbered below
        `below`, that has none and that a member may still need (from the
        lowest member cursor's logfile on): a rotation just before a crash
        whose cursor was already in the next logfile left it unversioned,
        and every secondary stood at its end for good. Ends at its last
        whole record. (Below the lowest needed, versions are pruned on
        purpose: one written again could chain differently.)"""
        worker = self.worker
        lowest = lowest_needed_logfile(state, self.res)
        names = state.resources().get(self.res, {})
        for name, _ in list_logfiles(worker.dir):
            number, origin = parse_logfile_name(name)
            if origin != self.host or number >= below or (lowest is not None and number < lowest) \
                    or version_name(number, self.host) in names:
                continue
            end = await trio.to_thread.run_sync(whole_records_end, str(worker.dir / name))
            await worker.history.write_version(name, end)
            log.warning("%s: %s had no version (closed just before a crash): written, ending "
                        "at %d", self.res, name, end)

    def detach_stale_device(self, known_loop=None):
        """Detach the loop devices on a dead FUSE mount of this resource
        (marsd killed, or the device process died) and unmount it; blocking,
        and no store writes: it may run in a thread. `known_loop`: the one
        this marsd attached, also when its backing file lost its path (its
        FUSE mount lazily unmounted: the kernel shows the file as `/device`
        then)."""
        mountpoint = self.fuse_dir
        stale = devices.loops_backed_by(str(mountpoint))
        if known_loop is not None and known_loop not in stale and \
                devices.loop_backing_file(known_loop) == "/" + devices.DEVICE_FILE:
            stale[known_loop] = "/" + devices.DEVICE_FILE
        for loop, backing in stale.items():
            if not self._detach_if_free(loop, backing):
                log.warning("%s: stale %s is still in use (mounted?): unmount it", self.res, loop)
                self.stale_in_use.add(loop)
        # The dead FUSE mount stays while a loop on it is in use: unmounted,
        # the loop's backing file would read `/device`, no longer this
        # resource's (`lab down` and a later marsd could not tell it apart).
        if not self.stale_in_use and devices.unmount_stale(mountpoint):
            log.info("%s: unmounted stale FUSE mount %s", self.res, mountpoint)
        if self.link.is_symlink():
            self.link.unlink()

    def report_down(self):
        """The device is not up here."""
        self.open_count = 0
        self.worker.report(is_primary=False, device=None, open_count=0)

    def drop_standby(self):
        """This host is not to become primary (any more): no device started
        ahead, no wait for the others to let go."""
        self.release_wait = None
        if self.standby is not None:
            self.standby.drop()
            self.standby = None

    def withdraw_refusal(self):
        """The wish to be primary was withdrawn: a new one may try again."""
        if self.refused:
            self.refused = None
            self.device_failures, self.device_retry_at = 0, 0.0
            self.worker.report(device_refused=None)

    async def grown(self, state):
        """After `resize` the primary is complete for the new size: the grown
        tail is what its disk holds. The secondaries sync that tail from it,
        from their syncstatus (the old size) on, as the kernel's do. Whether
        it wrote. Called by a step whose device is down and by the round
        that grew a live device."""
        grown_from = state.resource_value(self.res, GROWN_FROM_NAME)
        synced = state.resource_value(self.res, syncstatus_name(self.host), "0")
        if grown_from and synced == grown_from and int(synced) < state.size(self.res) and \
                state.designated_primary(self.res) == self.host:
            self.worker.write({self._key(syncstatus_name(self.host)): state.size(self.res)})
            return True
        return False

    # ------------------------------------------------------- becoming primary
    async def become(self, state, conflict):
        """One step towards the device being up here. Whether busy."""
        worker = self.worker
        if self.refused:
            worker.waiting_for(self.refused)
            return False
        if time.monotonic() < self.device_retry_at:
            worker.waiting_for(f"the device failed to start {self.device_failures} times; next "
                               f"try in {self.device_retry_at - time.monotonic():.0f} s")
            return False
        if self.standby is None or self.standby.exited():
            # While the old primary tears down and this host replays up to
            # its final version, a device process imports what it needs
            # (marsd keeps one ready ahead).
            self.standby = worker.daemon.take_standby()
            if self.standby is None:
                self.standby = DeviceProcess()
                self.standby.spawn(name=[f"--resource-dir={worker.dir}"])
        force = state.wishes_force(self.res, self.host)
        if not force:
            holding = await self._still_holding(state)
            if holding:
                log.debug("%s: %s not released yet", self.res, ", ".join(holding))
                worker.last_busy = time.monotonic()     # asked again next tick
                worker.wait(f"waiting for {', '.join(holding)} to hand over (the handover has "
                            "not reached it yet, or its device is up)")
                return False
            state = worker.state()                      # with what they wrote last
        others = [h for h in state.members(self.res) if h != self.host and
                  state.is_actual_primary(self.res, h)]
        if others and not force:
            worker.last_busy = time.monotonic()
            worker.wait(f"waiting for {', '.join(others)} to hand over (device still up there)")
            return False
        if not force:
            conflict = history_conflict(state, self.res, state.members(self.res)) or conflict
            if conflict:
                raise SplitBrain(conflict)
            final = final_version(state, self.res)
            if final is not None and not worker.follower.replayed_to(final):
                log.debug("%s: released; replaying up to the final version %s,%d", self.res,
                          final[0], final[1])
                worker.wait(f"replaying up to the final version {final[0]},{final[1]}")
                return await worker.follower.follow(state, source=final[2], until=final)
        # Until it is up (or failed), a member asking whether this host let
        # go is told that its device is up: one that designated itself
        # meanwhile (a handover back) brought its own up beside it, both
        # with a logfile of the same number (a split brain).
        self.starting = True
        try:
            await self._start_device(state, force)
        finally:
            self.starting = False
        return False

    async def _still_holding(self, state):
        """The other members that have not released the resource to this
        host (`_not_released_by`), asked every step for the first
        RELEASE_ASK_OFTEN_FOR seconds of the wait, then every
        RELEASE_ASK_EVERY (in between: who held when last asked)."""
        now = time.monotonic()
        since = now
        if self.release_wait is not None:
            since, asked, holding = self.release_wait
            if now - since >= RELEASE_ASK_OFTEN_FOR and now < asked + RELEASE_ASK_EVERY:
                return holding
        holding = await self._not_released_by(state)
        self.release_wait = (since, now, holding) if holding else None
        return holding

    async def _not_released_by(self, state):
        """The other members that have not released the resource to this
        host, asked live, not as the store says: a member primary a moment
        ago whose `is-primary` and final version have not reached this host
        yet would otherwise be missed, and its logfile number used here
        again (a split brain). Each is first given this host's metadata (the
        designation) and asked whether it took the handover in (its store
        names this host, its device is down); what it wrote last is pulled
        before the device starts here. A member that does not answer counts
        as the store says (`marsadm primary` refuses a planned handover from
        an old primary that is gone). They are asked at once, each within
        RELEASE_ASK_TIMEOUT, and one that did not answer is not asked again
        for RELEASE_SILENT_SKIP: a third replica whose marsd hung (it
        accepts, never answers) held every step of the wait for the
        connection's timeout, 10 s, and a planned handover took 20 s."""
        worker = self.worker
        holding = []
        now = time.monotonic()
        asked = [host for host in state.members(self.res)
                 if host != self.host and state.host_ips().get(host) and
                 now >= self.silent.get(host, -math.inf) + RELEASE_SILENT_SKIP]

        async def ask(host):
            reason = None
            with trio.move_on_after(RELEASE_ASK_TIMEOUT):
                try:
                    channel = await worker.channels.channel(state, host, PORT_META)
                    await antientropy.exchange(channel, worker.store, timeout=REQUEST_TIMEOUT)
                    reply, _ = await net.request(channel, {"type": "release", "res": self.res},
                                                 timeout=REQUEST_TIMEOUT)
                    self.silent.pop(host, None)
                    if reply.get("type") != "release":
                        return          # an older marsd: the store's view, as before
                    if reply.get("device_up") or reply.get("designated") != self.host:
                        holding.append(host)
                    else:
                        await antientropy.pull(channel, worker.store, timeout=REQUEST_TIMEOUT)
                    return
                except PeerError as error:
                    reason = error
            log.debug("%s: %s did not answer the release request: %s", self.res, host,
                      reason or f"no answer within {RELEASE_ASK_TIMEOUT:g}s")
            self.silent[host] = time.monotonic()
            await worker.channels.drop(host, PORT_META)

        async with trio.open_nursery() as nursery:
            for host in asked:
                nursery.start_soon(ask, host)
        return sorted(holding)

    def _stale_still_in_use(self):
        """The loop devices of a crashed device (marsd killed) that are still
        mounted; those let go of since are detached. Blocking."""
        for loop in sorted(self.stale_in_use):
            backing = devices.loop_backing_file(loop)
            if backing is None or not (backing == "/" + devices.DEVICE_FILE
                                       or backing.startswith(str(self.fuse_dir))):
                self.stale_in_use.discard(loop)     # detached by hand (or another's now)
                continue
            if self._detach_if_free(loop, "no longer in use"):
                self.stale_in_use.discard(loop)
                if not self.stale_in_use and devices.unmount_stale(self.fuse_dir):
                    log.info("%s: unmounted stale FUSE mount %s", self.res, self.fuse_dir)
        return sorted(self.stale_in_use)

    def _detach_if_free(self, loop, said):
        """Detach the stale loop device `loop` unless something uses it (a
        mount here or in another namespace); whether it was free. Blocking."""
        if devices.open_count(loop) or devices.claimed_elsewhere(loop):
            return False
        try:
            devices.detach_loop(loop)
            log.info("%s: detached stale %s (%s)", self.res, loop, said)
        except devices.LoopError as exc:
            log.warning("%s: %s", self.res, exc)
        return True

    async def _start_device(self, state, force):
        worker = self.worker
        # A filesystem still mounted from the crashed device's loop takes
        # writes that go nowhere (its FUSE file is dead): a new device beside
        # it would look healthy while the container on the old one loses them.
        stale = await trio.to_thread.run_sync(self._stale_still_in_use)
        if stale and await self._stop_units_over(stale, state):
            stale = await trio.to_thread.run_sync(self._stale_still_in_use)
        if stale:
            reason = (f"{', '.join(stale)} of the device that crashed with marsd is still in use "
                      f"(mounted?): what runs on it writes nowhere (EIO); stop the container "
                      f"and unmount it, then the device starts again (recovery replays the log)")
            self._say_once(("stale", tuple(stale)), logging.ERROR, reason)
            worker.wait(reason)
            return
        size = state.size(self.res)
        cursor = worker.follower.current_cursor(state)
        self.fuse_dir.mkdir(parents=True, exist_ok=True)
        args = worker.daemon.device_options(self.res)
        args = [f"--resource-dir={worker.dir}", f"--disk={state.disk(self.res)}",
                f"--host={self.host}", f"--mountpoint={self.fuse_dir}", f"--size={size}",
                f"--cursor={cursor or ''}", *args]
        worker.wait("starting the device (recovery from the log)")
        worker.report(recovering=True)      # the views' `Recovery`
        worker.save_status()
        device, self.standby = self.standby or DeviceProcess(), None
        log.debug("%s: starting the device (%s process)", self.res,
                  "standby" if device.process is not None else "new")
        try:
            ready = await device.start(args, worker.nursery, worker.news)
        except DeviceRefused as refused:
            self.refused = (f"the device cannot start: {refused}; this host's copy of the log is "
                            f"damaged: `marsadm invalidate {self.res}` makes this replica a copy "
                            f"of the primary again, or cut {refused.path} at byte "
                            f"{refused.position} (the records after it are lost) and try again")
            log.error("%s: %s", self.res, self.refused)
            worker.wait(None)
            worker.report(device_refused=self.refused, recovering=False)
            return
        except (OSError, trio.TooSlowError):
            # (its process ended by `start`: its FUSE mount, if it made one,
            # would make the next try's mountpoint answer ENOTCONN)
            if await trio.to_thread.run_sync(devices.unmount_stale, self.fuse_dir):
                log.info("%s: unmounted the FUSE mount of the device that did not come up",
                         self.res)
            self.device_failures += 1
            self.device_retry_at = time.monotonic() + min(
                DEVICE_RETRY_FIRST * 2 ** (self.device_failures - 1), DEVICE_RETRY_MAX)
            raise
        self.device_failures = 0
        self.device = device
        log.info("%s: device process %d up, logging to %s (%d records recovered)",
                 self.res, device.process.pid, ready["logfile"], ready["replayed"])
        self._record_unlogged(ready.get("emergency_mark"))
        # A logfile this host rotated away from has its version once marsd
        # heard of the rotation: one that died before left it unwritten, and
        # every secondary stood at that logfile's end for good. (The last
        # one's, `previous`, follows.)
        passed = ready.get("passed") or []
        await self._version_history(passed, upto=len(passed) - 1)
        if ready.get("previous"):
            # This host's history ends the previous logfile where recovery
            # stopped, whoever its origin: after `primary --force` that may be
            # short of the end the old primary reaches, which is the split brain.
            previous, end = ready["previous"]
            await worker.history.write_version(previous, end)
        self.loop = await trio.to_thread.run_sync(
            devices.attach_loop, self.fuse_dir / devices.DEVICE_FILE)
        self.link.parent.mkdir(parents=True, exist_ok=True)
        self.link.unlink(missing_ok=True)
        self.link.symlink_to(self.loop)
        checkpoint = await device.command({"cmd": "checkpoint"})
        self.last_disk_sync = time.monotonic()
        changes = {self._key(replay_name(self.host)): checkpoint["cursor"]}
        if force:
            changes[self._key(todo_name(self.host, "force-primary"))] = 0
        # `forced`: this device came up by force, for as long as it is up (the
        # wish above is done): the old primary does not refuse it as a
        # planned handover (`refuse_handover`)
        worker.set_actual(also=changes, **{"is-primary": 1, "emergency": 0,
                                           FORCED_NAME: 1 if force else 0},
                          **self._log_end(checkpoint))
        # a cursor past an emergency mode's mark is recorded: the mark may go
        await trio.to_thread.run_sync(drop_emergency_mark, str(worker.dir), self.host)
        worker.follower.cursor = Cursor.parse(checkpoint["cursor"])
        worker.set_emergency(False)
        # log-rotate wishes from before this device came up are done already
        self.rotations = state.resource_value(self.res, todo_name(self.host, "log-rotate"), "0")
        self.device_size = size
        self.logged = 0                 # a new device process counts from 0
        worker.wait(None)
        worker.report(rotations=self.rotations, is_primary=True, device=str(self.link),
                      loop=self.loop, recovering=False, device_size=size, logged=0, pending=0)
        log.info("%s: primary, device %s -> %s", self.res, self.link, self.loop)

    # ---------------------------------------------------------------- primary
    async def round(self, state, leaving):
        """The device's round: its events, rotation, growth, users and
        checkpoint (`leaving`: the device should go)."""
        worker = self.worker
        device = self.device
        if not leaving:
            self.in_use_since = None    # (a wait for it to be closed ended: withdrawn)
        events = device.take_events()
        for event in events:
            if event.get("event") == "rotated":
                await worker.history.write_version(*event["closed"])
            elif event.get("event") == "emergency":
                worker.set_emergency(True)
                # where logging stopped: the replicas synced before it missed
                # what comes after, and recovery starts there (the disk holds it)
                changes = {self._key(unlogged_name(self.host)): event["cursor"],
                           self._key(replay_name(self.host)): event["cursor"]} \
                    if event.get("cursor") else {}
                if changes:
                    worker.follower.cursor = Cursor.parse(event["cursor"])
                worker.set_actual(also=changes, emergency=1)
            elif event.get("event") == "writeback-failed":
                log.error("%s: the device cannot write to its disk (%s): it answers EIO; "
                          "the log keeps every write (recovery replays them once the disk "
                          "works)", self.res, event.get("reason"))
                worker.report(writeback_failed=event.get("reason"))
        if device.exited():
            await self._after_death(device, leaving)
            return
        try:
            await self._commands(state, device, events, leaving)
        except DeviceGone:
            # killed since the look above (its pipes close a moment before
            # it can be reaped): the death is said and dealt with once
            with trio.move_on_after(1.0):
                while not device.exited():
                    await trio.sleep(0.01)
            if not device.exited():
                raise
            await self._after_death(device, leaving)

    async def _commands(self, state, device, events, leaving):
        """The round's commands to a live device: rotation, growth, checkpoint."""
        worker = self.worker
        wanted_rotation = state.resource_value(self.res, todo_name(self.host, "log-rotate"), "0")
        if wanted_rotation != self.rotations:
            reply = await device.command({"cmd": "rotate"})
            await worker.history.write_version(*reply["closed"])
            self.rotations = wanted_rotation
            worker.report(rotations=wanted_rotation)
            events.append(reply)
        size = state.size(self.res) if state.exists(self.res) else self.device_size
        if size != self.device_size:
            await device.command({"cmd": "resize", "size": size})
            await trio.to_thread.run_sync(devices.grow_loop, self.fuse_dir / devices.DEVICE_FILE,
                                          self.loop, size)
            # before the new size is reported (resize returns on it): with
            # the device up the step never gets to `grown`, and the primary
            # showed the grown tail as its own sync rest until its device
            # went down (a migrate to this host counted it as a sync)
            await self.grown(state)
            self.device_size = size
            worker.report(device_size=size)
            log.info("%s: device grown to %d bytes", self.res, size)
        now = time.monotonic()
        # Processes holding the device open are looked for only while it is
        # not mounted (that reads every process's fds): afresh while it was in
        # use or should go (wait-umount and a handover wait for it), else in
        # the daemon's shared look at most PROCESS_LOOK_INTERVAL old.
        self.open_count = await worker.daemon.device_open_count(
            self.loop, fresh=leaving or bool(self.open_count))
        worker.report(open_count=self.open_count)
        worker.set_actual(**{"open-count": self.open_count})
        self.checkpoint_due = self.checkpoint_due or bool(events)
        still_logging = self._logged_since_checkpoint()
        if now - self.last_checkpoint >= 0.9 * worker.daemon.round_interval and \
                (self.checkpoint_due or still_logging
                 or now - self.last_checkpoint >= IDLE_CHECKPOINT_EVERY):
            # The disk is synced (and the cursor moved on) once the device
            # went quiet, else every disk_sync_interval (DISK_SYNC_INTERVAL
            # says why not every round); the log's end is news every round.
            sync_disk = not still_logging or \
                now - self.last_disk_sync >= worker.daemon.disk_sync_interval
            self.last_checkpoint = now
            self.checkpoint_due = not sync_disk     # a sync follows once it is quiet
            reply = await device.command({"cmd": "checkpoint", "sync": sync_disk})
            if sync_disk:
                self.last_disk_sync = now
            follower = worker.follower
            changes = {}
            if reply.get("cursor") and reply["cursor"] != str(follower.cursor):
                changes[self._key(replay_name(self.host))] = reply["cursor"]
                follower.cursor = Cursor.parse(reply["cursor"])
            worker.set_actual(also=changes, **self._log_end(reply))
            logged = reply["logged"] - self.logged
            worker.rates["log"].add(logged)
            worker.metrics.logged.labels(self.res).inc(logged)
            self.logged = reply["logged"]
            self.log_position = [reply["logfile"], reply["position"]]
            worker.set_emergency(reply["emergency"])
            worker.report(logged=self.logged, log_position=self.log_position,
                          pending=reply.get("pending", 0))
            # The write-back had not caught up with the log: the cursor is
            # due again next round, even if nothing more is logged.
            self.checkpoint_due = self.checkpoint_due or bool(reply.get("behind"))

    @staticmethod
    def _log_end(reply):
        """`actual-<host>/log-end` from a checkpoint's reply: where the log
        ends, the secondaries' news (see LogFollower._listing_due)."""
        return {LOG_END_NAME: f"{reply['logfile']},{reply['position']}"}

    def checkpoint_wanted(self):
        """Whether a checkpoint is due because the device logged or said
        something since the last one."""
        return self.checkpoint_due or self._logged_since_checkpoint()

    def _logged_since_checkpoint(self):
        """Whether the device logged since the last checkpoint: its logfile
        (appended unbuffered) is longer than the checkpoint said. An idle
        device is not asked every round."""
        position = self.log_position
        if position is None:
            return True
        try:
            return os.stat(self.worker.dir / position[0]).st_size != position[1]
        except OSError:
            return True

    async def _dead_device_in_use(self):
        """Whether the dead device is in use, here (its users counted
        afresh, and reported) or in another mount namespace."""
        worker = self.worker
        self.open_count = await worker.daemon.device_open_count(self.loop, fresh=True)
        worker.report(open_count=self.open_count)
        worker.set_actual(**{"open-count": self.open_count})
        return bool(self.open_count) or \
            await trio.to_thread.run_sync(devices.claimed_elsewhere, self.loop)

    async def _stop_units_over_dead(self, state, leaving):
        """`_after_death`'s stop of the stack on the dead device: where the
        device should go, as `follow_units` does; else where this host runs
        the units (`_stop_units_over`). True when the stop unit was stopped now."""
        units = state.systemd_units(self.res)
        if units is None or self.units_done == ("stop", units[1]):
            return False
        if leaving:
            await self.follow_units(state, run=False)
            return self.units_done == ("stop", units[1])
        return await self._stop_units_over([self.loop], state, "of the device process that died")

    async def _stop_units_over(self, stale, state, what="of the device that crashed with marsd"):
        """The cluster manager's part after a crash, where the systemd
        integration runs this resource here (units recorded, this host the
        designated primary and `systemd-want`, if one is set): its stop unit
        is stopped, once, which stops the container writing nowhere and
        unmounts the crashed device's filesystem; the start unit starts
        again once the new device is up (follow_units), as after any
        restart of the container. True when the stop unit was stopped now."""
        units = state.systemd_units(self.res)
        want = state.resource_value(self.res, SYSTEMD_WANT_NAME)
        if units is None or state.designated_primary(self.res) != self.host or \
                (want and want not in (self.host, NO_PRIMARY)) or \
                self.units_done == ("stop", units[1]):
            return False
        log.warning("%s: %s %s is still in use: stopping %s to free it; %s starts again once "
                    "the device is up", self.res, ", ".join(stale), what, units[1], units[0])
        return await self._systemctl(("stop", units[1]))

    async def _systemctl(self, action):
        """`systemctl <action>` (MARS_SYSTEMCTL names the program); True when
        it succeeded (recorded in `units_done`), else False, said in `view`
        and once in the log; after a failure the same action waits for its
        backoff (`units_failed`)."""
        command = [os.environ.get("MARS_SYSTEMCTL", "systemctl"), *action]
        failed = self.units_failed if self.units_failed and self.units_failed[0] == action \
            else None
        if failed and time.monotonic() < failed[3]:
            # A primary that waits steps every data tick: a unit that keeps
            # failing was run 20 times a second. Retried with a backoff
            # (said without a countdown: marsadm says each new reason).
            self.worker.waiting_for(f"{failed[1]}; tried again {units_backoff(failed[2]):g} s "
                                    "after it failed")
            return False
        try:
            with trio.fail_after(SYSTEMCTL_TIMEOUT):
                done = await trio.run_process(command, capture_stdout=True, capture_stderr=True,
                                              check=False)
            failure = done.returncode and \
                f"exited {done.returncode}: {done.stderr.decode(errors='replace').strip()[-300:]}"
            if action[0] == "stop" and done.returncode == NOT_LOADED and \
                    b"not loaded" in done.stderr:
                failure = None      # systemd knows no such unit here: nothing of it runs
        except (OSError, trio.TooSlowError) as exc:
            failure = str(exc) or f"no answer within {SYSTEMCTL_TIMEOUT:g}s"
        if failure:
            reason = f"`{' '.join(command)}` {failure}"
            self.worker.waiting_for(reason)
            self._say_once(("units", action), logging.ERROR, reason)
            count = failed[2] + 1 if failed else 1
            self.units_failed = (action, reason, count, time.monotonic() + units_backoff(count))
            return False
        log.info("%s: %s", self.res, " ".join(command))
        self.units_done, self.units_failed = action, None
        return True

    async def follow_units(self, state, run):
        """The systemd integration (MARS.md): with units recorded by
        set-systemd-unit, the start unit is started on the designated
        primary (and `systemd-want`, when one is set) once the device is up,
        and the stop unit stopped when the device should go, which frees it
        for the handover. Each once per change; a failure is retried with a
        backoff (UNITS_RETRY_FIRST, doubling), said in `view` and once in
        the log; another action is tried at once. A stop unit systemd does
        not know here (a member where the units were never installed) is
        stopped: nothing of it runs. MARS_SYSTEMCTL names the
        program (default `systemctl`)."""
        units = state.systemd_units(self.res)
        if units is None:
            self.units_done = None
            return
        want = state.resource_value(self.res, SYSTEMD_WANT_NAME)
        # as kernel MARS: a want naming another host, or `(none)` (the
        # operator's temporary stop of the stack; the device stays), stops
        # the units here too
        run = run and (not want or want == self.host)
        action = ("start", units[0]) if run else ("stop", units[1])
        if self.units_done != action:
            await self._systemctl(action)

    def forced_takeover(self, state, designated):
        """Whether `designated` takes over, or took over, by force: its wish
        (`todo-<host>/force-primary`), reset once its device is up, and its
        device up by force (`actual-<host>/forced`, while it reports the
        device up: down, a later planned handover to it is refused as any
        is, where the old flag stayed). The flag alone, reset,
        let an old primary cut off meanwhile, its device open, refuse the
        forced one as a planned handover once it heard of it — the two
        designating themselves in turn for ever, both devices up."""
        return state.wishes_force(self.res, designated) or (
            state.is_actual_primary(self.res, designated) and
            state.resource_value(self.res, actual_name(designated, FORCED_NAME), "0") == "1")

    def refuse_handover(self, state, designated):
        """A planned handover to another host while this device is in use
        (counted afresh: a container stopped and unmounted just before the
        handover does not count) is refused: the designated primary goes
        back to this host, so that nothing moves later behind the operator's
        back; `marsadm primary` on the other host sees it and says why.
        `secondary`, `down` and a forced take-over still wait for the device,
        and so does a handover of a resource with systemd units: stopping
        its stop unit frees the device (follow_units)."""
        worker = self.worker
        count = self.open_count
        if not count or designated in (None, self.host) or not worker.switch(state, "attach") or \
                worker.stopping or state.systemd_units(self.res) or \
                self.forced_takeover(state, designated):
            return False
        worker.write({primary_key(self.res): self.host})
        log.warning("%s: refused the handover to %s: device %s in use (open count %d)",
                    self.res, designated, self.link, count)
        return True

    async def _after_death(self, device, leaving):
        """The device process died (killed, crashed): the loop device's file
        is gone, and whatever has it open or mounted gets EIO. Said once, in
        the log and in view; once nothing uses the loop device, it is cleaned
        up and, while this host is still the designated primary, the next
        step starts a device process again, whose recovery replays every
        logged write (as after a crash of marsd and device together). With
        systemd units, the stop unit frees it, as after that crash
        (`_stop_units_over`), or as any device that should go (`leaving`):
        the stack stayed on the dead device for ever (a handover with it)."""
        worker = self.worker
        code = device.process.returncode
        in_use = await self._dead_device_in_use()
        if in_use and await self._stop_units_over_dead(worker.state(), leaving):
            in_use = await self._dead_device_in_use()
        if in_use:
            reason = (f"device process of {self.res} died (exit {code}): {self.link} answers "
                      f"EIO; stop the container and unmount it, then the device starts again "
                      f"(recovery replays the log)")
            self._say_once(("died", device.process.pid), logging.ERROR, reason)
            worker.wait(reason)
            return
        log.warning("%s: device process died (exit %s), nothing uses %s: cleaning it up%s",
                    self.res, code, self.loop,
                    "" if leaving else "; the device starts again (recovery replays the log)")
        loop, self.device, self.loop = self.loop, None, None
        await trio.to_thread.run_sync(self.detach_stale_device, loop)
        await self.settle_log()
        # (on the event loop: a store write wakes marsd's tasks)
        worker.set_actual(**{"is-primary": 0, "open-count": 0})
        self.report_down()
        worker.report(device=None, loop=None)
        worker.wait(None)

    def _say_once(self, key, level, text):
        """Log `text` unless the last thing said once was `key` already."""
        if self.said != key:
            log.log(level, "%s: %s", self.res, text)
            self.said = key

    async def try_teardown(self, state):
        """Tear the device down once nothing uses it: close the logfile,
        write its final version, report `is-primary=0`."""
        worker = self.worker
        if self.open_count:
            reason = (f"device {self.link} still in use (open count {self.open_count}): stop "
                      "the container and unmount")
            # In the log too, once it lasts (a stop unit just stopped is
            # counted a step late): a marsd stopped (SIGTERM), `secondary`,
            # `down` or a forced takeover waits here, and its log said
            # nothing of why.
            now = time.monotonic()
            self.in_use_since = self.in_use_since or now
            if now - self.in_use_since >= IN_USE_SAID_AFTER:
                self._say_once(("in use", self.device.process.pid), logging.WARNING,
                               f"{reason}; the device goes down once it is closed")
            worker.wait(reason)
            return
        self.in_use_since = None
        if await trio.to_thread.run_sync(devices.claimed_elsewhere, self.loop):
            # Unmounted here, but a filesystem on it lives on in another
            # mount namespace (a container starting on this host has copies
            # of every mount until it pivots): what it has not written yet
            # would be lost with the device. Not a refusal: it goes soon.
            reason = (f"device {self.link} still held by the kernel: a filesystem on it is "
                      f"mounted in another mount namespace")
            self._say_once(("claimed", self.loop), logging.WARNING, reason)
            worker.wait(reason)
            return
        log.info("%s: tearing down the device", self.res)
        await trio.to_thread.run_sync(devices.detach_loop, self.loop)
        self.link.unlink(missing_ok=True)
        # At a handover the new primary waits for the final version, not
        # for this host's disk: synced at the stop, what the page cache
        # held since the last sync (up to disk_sync_interval of writes)
        # took 0.46-0.67 s after fio's 1 MiB writes, in the downtime. This
        # host, its secondary now, syncs the disk and writes the cursor
        # when its follower persists it (LogFollower.persist_cursor).
        handover = worker.switch(state, "attach") and not worker.stopping and \
            state.designated_primary(self.res) not in (None, self.host)
        reply = await self.device.command({"cmd": "stop", "sync": not handover})
        # The reply comes once the log is closed and flushed: the handover
        # goes on now, the process's own exit is waited for after the report
        # (it took up to 0.15 s of every handover's downtime).
        device, self.device, self.loop = self.device, None, None
        logfile, end = reply["closed"]
        await worker.history.write_version(logfile, end)
        changes = {}
        if reply.get("cursor"):
            changes[self._key(replay_name(self.host))] = reply["cursor"]
            worker.follower.cursor = Cursor.parse(reply["cursor"])
        elif reply.get("unsynced_cursor"):
            worker.follower.cursor = Cursor.parse(reply["unsynced_cursor"])
        worker.set_actual(also=changes, **{"is-primary": 0}, **self._log_end(reply))
        self.open_count = 0
        worker.wait(None)
        worker.report(is_primary=False, device=None, loop=None, open_count=0)
        log.info("%s: device down, final version %s,%d", self.res, logfile, end)
        await device.wait()


def units_backoff(failures):
    """Seconds before a systemctl action that failed `failures` times in a
    row is run again."""
    return min(UNITS_RETRY_FIRST * 2 ** (failures - 1), UNITS_RETRY_MAX)


def unversioned(passed, host, names):
    """The (logfile, end) of `passed` of which neither its origin nor `host`
    has a version among a resource's key `names`, in order: this host's own
    that it closed without marsd hearing of it (a rotation just before a
    crash), and a dead origin's that it took over past (its successor's
    version ends them for the others, `history.closed_end`)."""
    found = []
    for logfile, end in passed:
        number, origin = parse_logfile_name(logfile)
        if version_name(number, origin) not in names and version_name(number, host) not in names:
            found.append((logfile, end))
    return found


class DeviceProcess:
    """The device process of one resource, and its control channel. Started
    with subprocess from the main thread, so that PR_SET_PDEATHSIG in the
    child follows marsd itself, not a worker thread. It may be spawned
    ahead as a standby (`spawn()`), its arguments sent once it is to start."""

    def __init__(self):
        self.process = None
        self.events = []
        self.replies = None

    def spawn(self, args=None, name=()):
        """Start the process: the device with `args`, or without them a
        standby that imports what a device needs and waits for them
        (`name`: arguments that tell which one it is, in ps)."""
        self.attach(subprocess.Popen(
            [sys.executable, "-m", "mars.device", *([STANDBY, *name] if args is None else args)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE))

    def attach(self, process):
        """`process` (started with pipes for stdin and stdout) as this one's."""
        self.process = process
        self.stdin = trio.lowlevel.FdStream(os.dup(self.process.stdin.fileno()))
        self.stdout = trio.lowlevel.FdStream(os.dup(self.process.stdout.fileno()))
        self.process.stdin.close()
        self.process.stdout.close()
        self.buffer = b""

    async def start(self, args, nursery, on_event):
        """Start the device (a standby gets its arguments) and, once it is
        ready, a task in `nursery` that reads what it says: replies for
        `command`, events kept for `take_events` (`on_event()` is called
        for each)."""
        if self.process is None:
            self.spawn(args)
        else:
            await self.stdin.send_all((json.dumps({"args": args}) + "\n").encode())
        try:
            message = await self._next_line(timeout=600)
            if message.get("event") == "refused":
                await trio.to_thread.run_sync(self.process.wait)
                await self.stdin.aclose()
                await self.stdout.aclose()
                raise DeviceRefused(message.get("reason", "?"),
                                    *message.get("damage") or ("?", 0))
            if message.get("event") != "ready":
                raise OSError(f"device process did not come up: {message}")
        except (OSError, ValueError, trio.TooSlowError, trio.Cancelled):
            # Not up (hung, said something else, marsd stops): ended, with
            # its FUSE mount. The next try started one beside it, on the
            # same mountpoint.
            self.drop()
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self.process.wait)
            raise
        replies, self.replies = trio.open_memory_channel(math.inf)
        nursery.start_soon(self._read, replies, on_event)
        return message

    def drop(self):
        """End a standby (it holds nothing yet: killed; reaped by a later
        subprocess call, the event loop does not wait for it)."""
        for stream in (self.stdin, self.stdout):
            stream.close()
        self.process.kill()

    async def _read(self, replies, on_event):
        with replies:               # closed at the end: a waiting command learns of it
            try:
                while True:
                    message = await self._next_line(math.inf)
                    if "event" in message:
                        self.events.append(message)
                        on_event()
                    else:
                        replies.send_nowait(message)
            except (OSError, trio.ClosedResourceError, trio.BrokenResourceError):
                return

    async def _next_line(self, timeout):
        with trio.fail_after(timeout):
            while b"\n" not in self.buffer:
                chunk = await self.stdout.receive_some(65536)
                if not chunk:
                    code = self.process.wait()
                    raise OSError(f"device process exited with {code}")
                self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    async def command(self, message, timeout=120):
        try:
            await self.stdin.send_all((json.dumps(message) + "\n").encode())
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise DeviceGone(f"device process exited with {self.process.poll()}") from None
        with trio.fail_after(timeout):
            try:
                reply = await self.replies.receive()
            except trio.EndOfChannel:
                raise DeviceGone(f"device process exited with {self.process.poll()}") from None
        if reply.get("reply") == "error":
            raise OSError(f"device process: {reply.get('reason')}")
        return reply

    def take_events(self):
        events, self.events = self.events, []
        return events

    def exited(self):
        return self.process.poll() is not None

    async def wait(self, timeout=30):
        with trio.move_on_after(timeout):
            while self.process.poll() is None:
                await trio.sleep(0.05)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        await self.stdin.aclose()
        await self.stdout.aclose()

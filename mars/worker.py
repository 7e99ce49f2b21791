"""The data plane of one resource on one host, inside marsd.

A `ResourceWorker` runs while this host is a member of the resource. Each
step reads the resource's metadata, decides what this host should be doing,
and does one bounded piece of it, so that a change of wishes (handover,
pause, leave) takes effect within a step:

- **primary** (designated and attached): start the device process, checkpoint
  every round (`replay-<host>`), write `version-<nr>-<host>` for every logfile
  it closes; when the designated primary moves elsewhere or `down` is asked,
  wait until the device is no longer open, tear it down, close the logfile
  and report `is-primary=0` with the final version.
- **becoming primary**: wait for the old primary to report `is-primary=0`
  (skipped with `primary --force`), fetch and replay up to its final
  version, then start the device.
- **secondary**: sync while `syncstatus < size` (resumable; replay starts
  at `syncpos`, the source's log position when the sync started; a
  complete sync moves `syncpos` to where the source's log ended after the
  last chunk, the point from which the copy is consistent), then fetch
  the source's logfiles as they grow and replay them in order; move from
  logfile N to N+1 only when this host's version of N equals the one its
  origin wrote.

What it finds is written to `<state dir>/status/<res>.json` for the views
(rates, rests, damage), and the few facts other hosts need go into the
metadata (`actual-<host>/...`)."""

import json
import logging
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import trio

from mars import device as devices
from mars import antientropy, net
from mars.errors import PeerError
from mars.hostenv import PORT_FETCH, PORT_META, PORT_SYNC
from mars.keys import (NO_PRIMARY, ClusterState, actual_name, global_pause_name, replay_name,
                       res_key, resync_changes, syncpos_name, syncstatus_name, todo_name,
                       version_name)
from mars.logfile import list_logfiles, parse_logfile_name
from mars.replay import (Cursor, ReplayResult, lowest_needed_logfile, parse_version, record_digests,
                         replay, version_value, versions_agree)
from mars.transfer import CHUNK, CHUNKS_PER_REQUEST, FETCH_MAX, apply_chunks, local_digests

log = logging.getLogger("marsd.data")

REPLAY_BATCH = 32 << 20          # payload bytes per replay step
SYNC_BATCH = 128 << 20           # bytes per sync step
PERSIST_EVERY = 0.5              # seconds between replay cursor writes
SYNC_PERSIST_EVERY = 2.0         # seconds between syncstatus writes (each syncs the disk)
SYNC_PIPELINE = 3                # sync requests in flight
REQUEST_TIMEOUT = 20.0           # a fetch or sync request unanswered this long: reconnect
PROCESS_LOOK_INTERVAL = 15.0     # seconds an idle look for processes holding devices is reused
VERSIONS_KEPT = 8                # own versions kept below the newest when no member needs them
STALL_LOGGED_AFTER = 5.0         # seconds replay stands at a logfile's end before the log says why
DEVICE_RETRY_FIRST = 0.5         # seconds before a failed device start is tried again, doubling
DEVICE_RETRY_MAX = 30.0
SYSTEMCTL_TIMEOUT = 120.0        # seconds a systemctl start/stop may take
IDLE_STEP_EVERY = 3.0            # seconds an idle worker goes without news (marsd --idle-step)
IDLE_CHECKPOINT_EVERY = 30.0     # seconds an idle device goes at most without a checkpoint
LISTING_INTERVAL = 10.0          # seconds an idle secondary goes at most without listing the logs
STATUS_REFRESH = 5.0             # seconds between status writes when nothing changed (views: 10)


class Rate:
    """Bytes per second over a sliding window of a few seconds."""

    def __init__(self, window=3.0):
        self.window = window
        self.samples = []
        self.total = 0

    def add(self, count):
        now = time.monotonic()
        self.total += count
        self.samples.append((now, count))
        while self.samples and now - self.samples[0][0] > self.window:
            self.samples.pop(0)

    @property
    def value(self):
        now = time.monotonic()
        while self.samples and now - self.samples[0][0] > self.window:
            self.samples.pop(0)
        if not self.samples:
            return 0.0
        span = max(now - self.samples[0][0], 0.5)
        return sum(count for _, count in self.samples) / span


class SplitBrain(Exception):
    pass


class DeviceRefused(Exception):
    """The device process cannot start from this host's log (corrupt before
    its end): permanent until an operator acts, so it is not retried."""

    def __init__(self, reason, path, position):
        super().__init__(reason)
        self.path, self.position = path, position


def own_key(res, host, name):
    return res_key(res, actual_name(host, name))


def recorded_versions(keys):
    """(host, head, logfile, end) of every well-formed `version-<nr>-<host>`
    among a resource's keys (host names may contain dashes)."""
    for rest, value in keys.items():
        if not rest.startswith("version-"):
            continue
        try:
            head, logfile, end = parse_version(value)
            parse_logfile_name(logfile)
        except ValueError:
            continue
        yield rest.split("-", 2)[-1], head, logfile, end


def history_conflict(state, res, members):
    """A split brain, as the metadata shows it (the same on every host):
    two logfiles with one number, two versions of one logfile that differ,
    or a replay cursor beyond the end its origin closed the logfile at.
    Returns the reason, or None."""
    keys = state.resources().get(res, {})
    names, versions = {}, {}
    for host, head, logfile, end in recorded_versions(keys):
        names.setdefault(parse_logfile_name(logfile)[0], set()).add(logfile)
        versions.setdefault(logfile, {})[host] = (head, end)
    for host in members:
        cursor = keys.get(replay_name(host))
        if cursor:
            try:
                parsed = Cursor.parse(cursor)
                names.setdefault(parse_logfile_name(parsed.logfile)[0], set()).add(parsed.logfile)
            except ValueError:
                continue
            for other, (_, end) in versions.get(parsed.logfile, {}).items():
                if parsed.position > end:
                    return (f"{host} replayed {parsed.logfile} to {parsed.position}, beyond "
                            f"its end {end} as {other} closed it")
    for number, found in names.items():
        if len(found) > 1:
            return f"logfiles {', '.join(sorted(found))} share number {number}"
    for logfile, by_host in versions.items():
        heads = {head for head, _ in by_host.values()}
        if len(heads) > 1:
            return f"hosts {', '.join(sorted(by_host))} hold different versions of {logfile}"
    return None


class ResourceWorker:
    def __init__(self, daemon, res):
        self.daemon = daemon
        self.env = daemon.env
        self.store = daemon.store
        self.host = daemon.env.host
        self.res = res
        self.dir = Path(self.env.state_dir) / f"resource-{res}"
        self.fuse_dir = Path(self.env.state_dir) / "fuse" / res
        self.link = Path(self.env.dev_dir) / res
        self.status_path = Path(self.env.state_dir) / "status" / f"{res}.json"
        self.device = None              # DeviceProcess while primary
        self.loop = None                # '/dev/loopN'
        self.channels = {}              # (host, port) -> Channel
        self.cursor = None              # in-memory replay cursor (Cursor)
        self.cursor_persisted = 0.0
        self.sync_done = None           # in-memory sync progress
        self.sync_was_complete = False  # seen complete: the next sync counts from 0
        self.sync_persisted = 0.0
        self.remote = {}                # logfile -> size at the source
        self.rates = {name: Rate() for name in ("sync", "fetch", "replay", "log")}
        self.status = {}
        self.status_written = None      # what the status file says
        self.leaving = False            # primary, and the device should go (last step)
        self.stopping = False
        self.finished = trio.Event()
        self.last_checkpoint = 0.0
        self.checkpoint_due = False      # the device rotated or said something: checkpoint
        self.units_done = None           # ("start"|"stop", unit) last done by _follow_units
        self.stall = None               # what replay or fetch stands at, for logging it once
        self.refused = None             # why the device cannot start here (DeviceRefused)
        self.device_failures = 0        # device starts failed in a row, for the backoff
        self.device_retry_at = 0.0
        self.last_busy = self.status_saved = 0.0
        self.sync_persisting = False
        self.actual = {}                 # actual-<host>/<name> -> value last reported
        self.sync_generation = 0         # a new sync (join, invalidate) starts a new one
        self.metrics = daemon.metrics
        self.woken = trio.Event()        # set by every wake-up (round, news)
        self.news_arrived = False        # a wake-up that calls for a step at once
        self.last_step = 0.0
        self.resource_values = None      # the resource's keys as last read (None: read again)
        self.list_wanted = False         # a listing of the source's logs asked for (marsadm)
        self.listed = (None, None, -1e9)  # (source, its checkpoint, when): the last listing
        self.fetched_all = False         # the last listing's logfiles are all here

    # ---------------------------------------------------------------- helpers
    def wake(self):
        """A round passed: an idle worker steps if `idle_step` seconds have."""
        self.woken.set()

    def news(self):
        """Something happened that this worker acts on: step at once."""
        self.news_arrived = True
        self.woken.set()

    def keys_changed(self):
        """The store changed for this resource: read it again, and step."""
        self.resource_values = None
        self.news()

    def list_now(self):
        """Ask the source for its logfiles at the next step, which is now
        (for `wait-resource up-to-date`: the answer must count writes made
        before it was asked)."""
        self.list_wanted = True
        self.news()

    def key(self, name):
        return res_key(self.res, name)

    def mine(self, name):
        return self.key(f"{name}-{self.host}")

    def state(self):
        """The resource's keys (read again only after they changed: the
        daemon's watch or this worker's own write says so), the cluster's
        addresses and every host's heartbeat."""
        if self.resource_values is None:
            self.resource_values = self.store.live_values(self.key(""))
        values = dict(self.resource_values)
        values.update(self.store.live_values("ips/"))
        values.update(self.store.live_values("actual-"))
        return ClusterState(values, self.host)

    def write(self, changes):
        """Write this host's keys of the resource, unless the resource was
        deleted meanwhile (a device torn down after delete-resource must
        not bring keys of it back)."""
        if self.store.value(self.key("size")):
            self.resource_values = None
            self.store.write(changes)

    def report(self, **facts):
        self.status.update(facts)

    def waiting_for(self, reason):
        """Add a reason to this step's `waiting` line (reset every step)."""
        current = self.status.get("waiting")
        self.status["waiting"] = f"{current}; {reason}" if current else reason

    def save_status(self, force=True):
        """Write the status file for the views: at once when it changed
        (or `force`), else every STATUS_REFRESH seconds to show marsd lives."""
        self.status["rates"] = {name: round(rate.value) for name, rate in self.rates.items()}
        now = time.time()
        # a shallow copy compares: the facts are replaced, never changed in place
        if not force and self.status == self.status_written and \
                now - self.status.get("updated", 0) < STATUS_REFRESH:
            return
        self.status["updated"] = now
        self.status["marsd"] = os.getpid()      # a restarted marsd's views ignore a dead one's
        self.status_written = dict(self.status)
        self.status_path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.status_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.status))
        os.replace(temporary, self.status_path)

    def switch(self, state, name):
        """A todo switch, with its global pause applied."""
        local = state.resource_value(self.res, todo_name(self.host, name), "1") == "1"
        glob = {"sync": "sync", "connect": "fetch", "allow-replay": "replay"}.get(name)
        paused = glob and state.resource_value(self.res, global_pause_name(glob), "0") == "1"
        return local and not paused

    # -------------------------------------------------------------------- run
    async def run(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        self._cleanup_stale_device()
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                while True:
                    state = self.state()
                    if not state.disk(self.res) and self.device is None:
                        break               # left or deleted
                    if self.stopping and self.device is None:
                        break
                    # what happens from here on calls for a step
                    self.woken, self.news_arrived = trio.Event(), False
                    self.last_step = time.monotonic()
                    try:
                        self.report(waiting=None)   # each step says why it waits, if it does
                        busy = await self.step(state)
                        if self.status.get("error"):
                            log.info("%s: recovered from: %s", self.res, self.status["error"])
                        self.report(error=None)
                    except SplitBrain as exc:
                        self.report(split_brain=str(exc))
                        busy = False
                    except (PeerError, OSError, ValueError, devices.LoopError) as exc:
                        if str(exc) != self.status.get("error"):     # once, not every step
                            log.warning("%s: %s", self.res, exc)
                        self.report(error=str(exc))
                        self.metrics.errors.labels(self.res).inc()
                        busy = False
                    except Exception as exc:    # noqa: BLE001 - one resource must not stop the others
                        self.report(error=f"internal error: {exc!r}")
                        self.metrics.errors.labels(self.res).inc()
                        log.exception("%s: internal error", self.res)
                        busy = False
                    now = time.monotonic()
                    if busy:
                        self.last_busy = now
                    # busy: at most 5 times a second; before a pause always (the
                    # views must not show an older state until the next step)
                    if not busy or now - self.status_saved >= 0.2:
                        self.save_status(force=False)
                        self.status_saved = now
                    await self._pause(busy, now)
                nursery.cancel_scope.cancel()
        finally:
            for channel in self.channels.values():
                with trio.CancelScope(shield=True):
                    await channel.aclose()
            self.status_path.unlink(missing_ok=True)
            if not self.stopping and not self.store.value(self.mine("data")):
                # Left or deleted: the logs of this replica are of no use any more.
                shutil.rmtree(self.dir, ignore_errors=True)
            self.finished.set()

    async def step(self, state):
        """One bounded piece of work. True when there is more to do at once."""
        members = state.members(self.res)
        conflict = history_conflict(state, self.res, members)
        self.report(split_brain=conflict, member=bool(state.disk(self.res)))
        designated = state.designated_primary(self.res)
        attach = self.switch(state, "attach") and bool(state.disk(self.res))
        self._report_disk(state)
        self.leaving = False
        if self.device is not None:
            leaving = self.leaving = designated != self.host or not attach or self.stopping
            await self._primary_round(state, leaving)
            await self._follow_units(state, run=not leaving)
            if leaving and not self._refuse_handover(state, designated):
                await self._try_teardown(state)
            return False
        self.report(is_primary=False, device=None, open_count=0)
        if self.stopping:
            return False
        if not attach:
            self.report(attached=False, waiting="detached (todo attach=0)")
            self._set_actual(**{"is-attached": 0})
            return False
        self.report(attached=True)
        self._set_actual(**{"is-attached": 1})
        if await self._grown(state):
            state = self.state()        # the step goes on with the new syncstatus
        if designated == self.host:
            return await self._become_primary(state, conflict)
        if self.refused:                # the wish was withdrawn: a new one may try again
            self.refused = None
            self.device_failures, self.device_retry_at = 0, 0.0
            self.report(device_refused=None)
        return await self._secondary(state, conflict)

    async def _pause(self, busy, now):
        """Until the next step. Busy: none. A primary whose device serves by
        itself, and a secondary with nothing to do for a while: until news
        (this resource's keys changed: a wish, the source's checkpoint
        showing new log data; the device logs again or said something; the
        mount table changed) or for the daemon's `idle_step` (its rounds
        wake every worker: one timer for all), so that an idle resource
        costs next to nothing and still reacts at once. Else (syncing,
        catching up, a primary waiting for its device to be released) a
        tick."""
        if busy:
            await trio.sleep(0)
            return
        quiet = now - self.last_busy > 2.0
        if self.device is not None:
            quiet = not self.leaving and not self.status.get("waiting")
        if not quiet:
            await trio.sleep(self.daemon.data_tick)
            return
        due = self.last_step + self.daemon.idle_step
        if self.device is not None and (self.checkpoint_due or self._logged_since_checkpoint()):
            # the device logs: its checkpoint is due a round after the last one
            due = min(due, self.last_checkpoint + 0.9 * self.daemon.round_interval)
        while not self.news_arrived and time.monotonic() < due:
            await self.woken.wait()
            self.woken = trio.Event()

    def _set_actual(self, also=None, **facts):
        """Report `actual-<host>/<name>` facts, with the keys in `also` in
        the same transaction. Only this worker writes them, so what it wrote
        last is remembered instead of read back every step (Store.write also
        skips values that are unchanged in the store)."""
        changed = {name: str(value) for name, value in facts.items()
                   if self.actual.get(name) != str(value)}
        changes = dict(also or {})
        changes.update({own_key(self.res, self.host, name): value for name, value in changed.items()})
        if changes:
            self.write(changes)
            self.actual.update(changed)

    def _report_disk(self, state):
        disk = state.disk(self.res)
        try:
            size = devices.disk_size(disk)
        except OSError:
            size = 0
        self.report(disk_size=size)
        self._set_actual(**{"disk-size": size})

    async def _grown(self, state):
        """After `resize` the primary is complete for the new size: the grown
        tail is what its disk holds. The secondaries sync that tail from it,
        from their syncstatus (the old size) on, as the kernel's do. Whether
        it wrote."""
        grown_from = state.resource_value(self.res, "grown-from")
        synced = state.resource_value(self.res, syncstatus_name(self.host), "0")
        if grown_from and synced == grown_from and int(synced) < state.size(self.res) and \
                state.designated_primary(self.res) == self.host:
            self.write({self.mine("syncstatus"): state.size(self.res)})
            return True
        return False

    # ------------------------------------------------------------ connections
    async def channel(self, state, host, port):
        channel = self.channels.get((host, port))
        if channel is None:
            address = state.host_ips().get(host)
            if not address:
                raise PeerError(f"{host} is not in the cluster")
            channel = await net.connect(address, port, self.host, self.daemon.key,
                                        local_address=state.host_ips().get(self.host),
                                        timeout=10.0, clock=self.store.clock)
            self.channels[(host, port)] = channel
        return channel

    async def request(self, state, host, port, header):
        channel = await self.channel(state, host, port)
        try:
            return await net.request(channel, header, timeout=REQUEST_TIMEOUT)
        except PeerError:
            await self._drop_channel(host, port)
            raise

    async def _drop_channel(self, host, port):
        """Close and forget the connection to `host`'s `port` (the next
        request connects again)."""
        channel = self.channels.pop((host, port), None)
        if channel is not None:
            with trio.CancelScope(shield=True):
                await channel.aclose()

    # ---------------------------------------------------------------- primary
    async def _become_primary(self, state, conflict):
        if self.refused:
            self.waiting_for(self.refused)
            return False
        if time.monotonic() < self.device_retry_at:
            self.waiting_for(f"the device failed to start {self.device_failures} times; next try "
                             f"in {self.device_retry_at - time.monotonic():.0f} s")
            return False
        force = state.resource_value(self.res, todo_name(self.host, "force-primary"), "0") == "1"
        if not force:
            holding = await self._not_released_by(state)
            if holding:
                self.last_busy = time.monotonic()       # asked again next tick
                self.report(waiting=f"waiting for {', '.join(holding)} to hand over (the "
                                    "handover has not reached it yet, or its device is up)")
                return False
            state = self.state()                        # with what they wrote last
        others = [h for h in state.members(self.res) if h != self.host and
                  state.is_actual_primary(self.res, h)]
        if others and not force:
            self.last_busy = time.monotonic()
            self.report(waiting=f"waiting for {', '.join(others)} to hand over (device still up there)")
            return False
        if not force:
            conflict = history_conflict(state, self.res, state.members(self.res)) or conflict
            if conflict:
                raise SplitBrain(conflict)
            final = self._final_version(state)
            if final is not None and not self._replayed_to(final):
                self.report(waiting=f"replaying up to the final version {final[0]},{final[1]}")
                return await self._follow(state, source=final[2], until=final)
        await self._start_device(state, force)
        return False

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
        an old primary that is gone)."""
        holding = []
        for host in state.members(self.res):
            if host == self.host or not state.host_ips().get(host):
                continue
            try:
                channel = await self.channel(state, host, PORT_META)
                await antientropy.exchange(channel, self.store, timeout=REQUEST_TIMEOUT)
                reply, _ = await net.request(channel, {"type": "release", "res": self.res},
                                             timeout=REQUEST_TIMEOUT)
                if reply.get("type") != "release":
                    continue            # an older marsd: the store's view, as before
                if reply.get("device_up") or reply.get("designated") != self.host:
                    holding.append(host)
                else:
                    await antientropy.pull(channel, self.store, timeout=REQUEST_TIMEOUT)
            except PeerError as error:
                log.debug("%s: %s did not answer the release request: %s", self.res, host, error)
                await self._drop_channel(host, PORT_META)
        return holding

    def _final_version(self, state):
        """(logfile, end, origin) of the newest logfile closed by its origin."""
        best = None
        for host, _, logfile, end in recorded_versions(state.resources().get(self.res, {})):
            number, origin = parse_logfile_name(logfile)
            if origin == host and (best is None or number > best[0]):
                best = (number, logfile, end, origin)
        return best[1:] if best else None

    def _replayed_to(self, final):
        logfile, end, _ = final
        cursor = self._cursor(self.state())
        if cursor is None:
            return False
        mine, theirs = parse_logfile_name(cursor.logfile)[0], parse_logfile_name(logfile)[0]
        return mine > theirs or (cursor.logfile == logfile and cursor.position >= end)

    async def _start_device(self, state, force):
        size = state.size(self.res)
        cursor = self._cursor(state)
        self.fuse_dir.mkdir(parents=True, exist_ok=True)
        args = self.daemon.device_options(self.res)
        command = [sys.executable, "-m", "mars.device", f"--resource-dir={self.dir}",
                   f"--disk={state.disk(self.res)}", f"--host={self.host}",
                   f"--mountpoint={self.fuse_dir}", f"--size={size}",
                   f"--cursor={cursor or ''}", *args]
        self.report(waiting="starting the device (recovery from the log)")
        self.save_status()
        device = DeviceProcess(command)
        try:
            ready = await device.start(self.nursery, self.news)
        except DeviceRefused as refused:
            self.refused = (f"the device cannot start: {refused}; this host's copy of the log is "
                            f"damaged: `marsadm invalidate {self.res}` makes this replica a copy "
                            f"of the primary again, or cut {refused.path} at byte "
                            f"{refused.position} (the records after it are lost) and try again")
            log.error("%s: %s", self.res, self.refused)
            self.report(device_refused=self.refused, waiting=None)
            return
        except (OSError, trio.TooSlowError):
            self.device_failures += 1
            self.device_retry_at = time.monotonic() + min(
                DEVICE_RETRY_FIRST * 2 ** (self.device_failures - 1), DEVICE_RETRY_MAX)
            raise
        self.device_failures = 0
        self.device = device
        log.info("%s: device process %d up, logging to %s (%d records recovered)",
                 self.res, device.process.pid, ready["logfile"], ready["replayed"])
        if ready.get("previous"):
            # This host's history ends the previous logfile where recovery
            # stopped, whoever its origin: after `primary --force` that may be
            # short of the end the old primary reaches, which is the split brain.
            previous, end = ready["previous"]
            await self._write_version(state, previous, end)
        self.loop = await trio.to_thread.run_sync(
            devices.attach_loop, self.fuse_dir / devices.DEVICE_FILE)
        self.link.parent.mkdir(parents=True, exist_ok=True)
        self.link.unlink(missing_ok=True)
        self.link.symlink_to(self.loop)
        checkpoint = await device.command({"cmd": "checkpoint"})
        changes = {self.mine("replay"): checkpoint["cursor"]}
        if force:
            changes[self.key(todo_name(self.host, "force-primary"))] = 0
        self._set_actual(also=changes, **{"is-primary": 1, "emergency": 0})
        self.cursor = Cursor.parse(checkpoint["cursor"])
        self.report(emergency=False)
        # log-rotate wishes from before this device came up are done already
        self.report(rotations=state.resource_value(self.res, todo_name(self.host, "log-rotate"), "0"))
        self.report(is_primary=True, device=str(self.link), loop=self.loop, waiting=None,
                    device_size=size, logged=0, pending=0)  # a new device process counts from 0
        log.info("%s: primary, device %s -> %s", self.res, self.link, self.loop)

    async def _primary_round(self, state, leaving):
        device = self.device
        events = device.take_events()
        for event in events:
            if event.get("event") == "rotated":
                await self._write_version(state, *event["closed"])
            elif event.get("event") == "emergency":
                self.report(emergency=True)
                self._set_actual(emergency=1)
            elif event.get("event") == "writeback-failed":
                log.error("%s: the device cannot write to its disk (%s): it answers EIO; "
                          "the log keeps every write (recovery replays them once the disk "
                          "works)", self.res, event.get("reason"))
                self.report(writeback_failed=event.get("reason"))
        if device.exited():
            raise OSError(f"device process of {self.res} died (exit {device.process.returncode})")
        wanted_rotation = state.resource_value(self.res, todo_name(self.host, "log-rotate"), "0")
        if wanted_rotation != self.status.get("rotations", "0"):
            reply = await device.command({"cmd": "rotate"})
            await self._write_version(state, *reply["closed"])
            self.report(rotations=wanted_rotation)
            events.append(reply)
        size = state.size(self.res) if state.exists(self.res) else self.status.get("device_size")
        if size != self.status.get("device_size"):
            await device.command({"cmd": "resize", "size": size})
            await trio.to_thread.run_sync(devices.grow_loop, self.fuse_dir / devices.DEVICE_FILE,
                                          self.loop, size)
            self.report(device_size=size)
            log.info("%s: device grown to %d bytes", self.res, size)
        now = time.monotonic()
        # Processes holding the device open are looked for only while it is
        # not mounted (that reads every process's fds): afresh while it was in
        # use or should go (wait-umount and a handover wait for it), else in
        # the daemon's shared look at most PROCESS_LOOK_INTERVAL old.
        open_count = await self.daemon.device_open_count(
            self.loop, fresh=leaving or bool(self.status.get("open_count")))
        self.report(open_count=open_count)
        self._set_actual(**{"open-count": open_count})
        self.checkpoint_due = self.checkpoint_due or bool(events)
        if now - self.last_checkpoint >= 0.9 * self.daemon.round_interval and \
                (self.checkpoint_due or self._logged_since_checkpoint()
                 or now - self.last_checkpoint >= IDLE_CHECKPOINT_EVERY):
            self.last_checkpoint = now
            self.checkpoint_due = False
            reply = await device.command({"cmd": "checkpoint"})
            if reply.get("cursor") and reply["cursor"] != str(self.cursor):
                self.write({self.mine("replay"): reply["cursor"]})
                self.cursor = Cursor.parse(reply["cursor"])
            logged = reply["logged"] - self.status.get("logged", 0)
            self.rates["log"].add(logged)
            self.metrics.logged.labels(self.res).inc(logged)
            self.report(logged=reply["logged"], log_position=[reply["logfile"], reply["position"]],
                        emergency=reply["emergency"], pending=reply.get("pending", 0))
            # The write-back had not caught up with the log: the cursor is
            # due again next round, even if nothing more is logged.
            self.checkpoint_due = self.checkpoint_due or bool(reply.get("pending"))

    def _logged_since_checkpoint(self):
        """Whether the device logged since the last checkpoint: its logfile
        (appended unbuffered) is longer than the checkpoint said. An idle
        device is not asked every round."""
        position = self.status.get("log_position")
        if position is None:
            return True
        try:
            return os.stat(self.dir / position[0]).st_size != position[1]
        except OSError:
            return True

    async def _follow_units(self, state, run):
        """The systemd integration (MARS.md): with units recorded by
        set-systemd-unit, the start unit is started on the designated
        primary (and `systemd-want`, when one is set) once the device is up,
        and the stop unit stopped when the device should go, which frees it
        for the handover. Each once per change; a failure is retried every
        step, said in `view` and once in the log. MARS_SYSTEMCTL names the
        program (default `systemctl`)."""
        units = state.systemd_units(self.res)
        if units is None:
            self.units_done = None
            return
        want = state.resource_value(self.res, "systemd-want")
        if run and want and want not in (self.host, NO_PRIMARY):
            return                          # another host should run it: leave it alone
        action = ("start", units[0]) if run else ("stop", units[1])
        if self.units_done == action:
            return
        command = [os.environ.get("MARS_SYSTEMCTL", "systemctl"), *action]
        try:
            with trio.fail_after(SYSTEMCTL_TIMEOUT):
                done = await trio.run_process(command, capture_stdout=True, capture_stderr=True,
                                              check=False)
            failure = done.returncode and \
                f"exited {done.returncode}: {done.stderr.decode(errors='replace').strip()[-300:]}"
        except (OSError, trio.TooSlowError) as exc:
            failure = str(exc) or f"no answer within {SYSTEMCTL_TIMEOUT:g}s"
        if failure:
            reason = f"`{' '.join(command)}` {failure}"
            self.waiting_for(reason)
            if self.stall != ("units", action):
                log.error("%s: %s", self.res, reason)
                self.stall = ("units", action)
            return
        log.info("%s: %s", self.res, " ".join(command))
        self.units_done = action

    def _refuse_handover(self, state, designated):
        """A planned handover to another host while this device is in use
        (counted afresh: a container stopped and unmounted just before the
        handover does not count) is refused: the designated primary goes
        back to this host, so that nothing moves later behind the operator's
        back; `marsadm primary` on the other host sees it and says why.
        `secondary`, `down` and a forced take-over still wait for the device,
        and so does a handover of a resource with systemd units: stopping
        its stop unit frees the device (_follow_units)."""
        count = self.status.get("open_count")
        if not count or designated in (None, self.host) or not self.switch(state, "attach") or \
                self.stopping or state.systemd_units(self.res) or state.resource_value(
                    self.res, todo_name(designated, "force-primary"), "0") == "1":
            return False
        self.write({self.key("primary"): self.host})
        log.warning("%s: refused the handover to %s: device %s in use (open count %d)",
                    self.res, designated, self.link, count)
        return True

    async def _try_teardown(self, state):
        if self.status.get("open_count"):
            self.report(waiting=f"device {self.link} still in use (open count "
                                f"{self.status['open_count']}): stop the container and unmount")
            return
        log.info("%s: tearing down the device", self.res)
        await trio.to_thread.run_sync(devices.detach_loop, self.loop)
        self.link.unlink(missing_ok=True)
        reply = await self.device.command({"cmd": "stop"})
        await self.device.wait()
        self.device = self.loop = None
        logfile, end = reply["closed"]
        await self._write_version(state, logfile, end)
        changes = {}
        if reply.get("cursor"):
            changes[self.mine("replay")] = reply["cursor"]
            self.cursor = Cursor.parse(reply["cursor"])
        self._set_actual(also=changes, **{"is-primary": 0})
        self.report(is_primary=False, device=None, loop=None, waiting=None, open_count=0)
        log.info("%s: device down, final version %s,%d", self.res, logfile, end)

    async def _write_version(self, state, logfile, end):
        """version-<nr>-<host> for a logfile this host closed or replayed to its end."""
        number, _ = parse_logfile_name(logfile)
        key = self.key(version_name(number, self.host))
        path = self.dir / logfile
        digests = await trio.to_thread.run_sync(record_digests, path, end) if path.exists() else []
        state = self.state()        # the version just written for the logfile before counts
        previous = self._previous_version(state, number)
        value = version_value(previous, logfile, end, digests)
        self.write({key: value})
        self._prune_versions(state, number)
        return value

    def _previous_version(self, state, number):
        keys = state.resources().get(self.res, {})
        mine = keys.get(version_name(number - 1, self.host))
        if mine:
            return mine
        for rest, value in sorted(keys.items()):
            if rest.startswith(version_name(number - 1, "")):
                return value
        return ""

    def _prune_versions(self, state, number):
        """Drop this host's versions that no member needs any more: a member
        replaying logfile N moves on to N+1 only with N's version from its
        origin, and chains its own version of N to N-1's. So versions from
        the lowest member cursor's logfile minus one stay, however far back
        that is (a secondary paused for a day); all stay while a member has
        no cursor yet (syncing: it may start anywhere)."""
        lowest = lowest_needed_logfile(state, self.res)
        if lowest is None:
            return
        keep_from = min(number - VERSIONS_KEPT, lowest - 1)
        stale = [self.key(rest) for rest in state.resources().get(self.res, {})
                 if rest.startswith("version-") and rest.endswith(f"-{self.host}")
                 and int(rest.split("-")[1]) < keep_from]
        if stale:
            self.store.delete(stale)

    # -------------------------------------------------------------- secondary
    def _source(self, state):
        """Where to sync and fetch from: the designated primary, else a host
        whose device is up."""
        designated = state.designated_primary(self.res)
        if designated and designated != self.host:
            return designated
        for host in state.members(self.res):
            if host != self.host and state.is_actual_primary(self.res, host):
                return host
        return None

    async def _secondary(self, state, conflict):
        self._set_actual(**{"is-primary": 0})
        source = self._source(state)
        if source is None:
            self.report(waiting="no primary designated", source=None)
            return False
        self.report(source=source, source_alive=state.is_alive(source, self.daemon.window))
        if conflict:
            raise SplitBrain(conflict)
        free = devices.free_bytes(self.dir)     # statvfs of a local file system: no thread
        if await self._low_on_space(state, source, free):
            return False
        size = state.size(self.res)
        synced = int(state.resource_value(self.res, syncstatus_name(self.host), "0") or 0)
        if synced < size:
            if not self.switch(state, "sync"):
                self.report(waiting="sync paused", syncing=False)
                return False
            return await self._sync(state, source, synced, size)
        self.report(syncing=False, sync_done=size)
        self.sync_was_complete = True
        return await self._follow(state, source, free=free)

    async def _low_on_space(self, state, source, free):
        """Emergency mode, first stage: a secondary whose state dir runs low
        stops fetching and drops its local logs (fetched again later from
        its replay cursor on). And a primary that stopped logging leaves
        its replicas behind for good: they need `invalidate`. `free`: bytes
        free in the state dir now."""
        # Hysteresis: once dropped, logs are fetched again only when there
        # is room for more than the limit again, else it would oscillate.
        limit = self.daemon.fetch_free * (2 if self.status.get("emergency") == "space" else 1)
        if free < limit:
            if not self.status.get("emergency"):
                log.error("%s: state dir has %d bytes free (< %d): fetch stopped, local logs "
                          "dropped", self.res, free, self.daemon.fetch_free)
            await trio.to_thread.run_sync(self._drop_local_logs)
            self.report(emergency="space", waiting=f"state dir low on space ({free} bytes free): "
                        "fetch stopped, local logs dropped")
            return True
        if self.status.get("emergency") == "space":
            log.info("%s: state dir has %d bytes free again: fetching from the replay cursor on",
                     self.res, free)
        if state.resource_value(self.res, actual_name(source, "emergency")) == "1":
            self.report(emergency=True, waiting=f"{source} is in emergency mode (its writes are "
                        "not logged): invalidate this replica once it has space again")
            return True
        self.report(emergency=False)
        return False

    # ------------------------------------------------------------------- sync
    async def _sync(self, state, source, synced, size):
        if self.sync_was_complete:      # a new sync (of a grown tail): counted anew
            self.sync_was_complete = False
            self.report(sync_received=0)
        syncpos = state.resource_value(self.res, syncpos_name(self.host))
        own = state.resource_value(self.res, replay_name(self.host))
        if not syncpos and synced and own:
            # complete up to `synced` without a sync of its own (the member
            # that created the resource, after a resize): only the tail is
            # copied, its replay goes on from where it is
            self.write({self.mine("syncpos"): own})
            self.report(sync_received=0)
            syncpos = own
            log.info("%s: sync of the grown tail from %s starts at %d bytes", self.res, source,
                     synced)
        if not syncpos:
            start = state.resource_value(self.res, replay_name(source))
            if not start:
                self.report(waiting=f"waiting for {source} to report its log position")
                return False
            await trio.to_thread.run_sync(self._drop_local_logs)
            self.write({self.mine("syncpos"): start, self.mine("replay"): start,
                        self.mine("syncstatus"): 0})
            self.cursor = Cursor.parse(start)
            self.report(sync_received=0)
            self.sync_done = synced = 0
            self.sync_generation += 1
            log.info("%s: full sync from %s starts; logs from %s are replayed afterwards",
                     self.res, source, start)
            syncpos = start
        if self.sync_done is None or self.sync_done < synced:
            self.sync_done = synced
        disk = state.disk(self.res)
        fast = self.daemon.fast_sync
        target = min(size, self.sync_done + SYNC_BATCH)
        self.report(syncing=True, sync_size=size, waiting=None, sync_mode="fast" if fast else "full")
        await self._sync_range(state, source, disk, self.sync_done, target, size, fast)
        now = time.monotonic()
        if self.sync_done >= size:
            consistent_from = await self._source_log_end(state, source, syncpos)
            await self._persist_sync(disk, self.sync_done, self.sync_generation, consistent_from)
        elif now - self.sync_persisted >= SYNC_PERSIST_EVERY and not self.sync_persisting:
            # In the background: the copy goes on while the disk is synced.
            self.sync_persisted = now
            self.sync_persisting = True
            self.nursery.start_soon(self._persist_sync, disk, self.sync_done, self.sync_generation)
        if self.sync_done >= size:
            log.info("%s: sync from %s complete (%d bytes)", self.res, source, size)
            self.report(syncing=False)
        return True

    async def _persist_sync(self, disk, done, generation, consistent_from=None):
        """Record `done` bytes as synced once the disk holds them durably,
        unless the sync was restarted meanwhile (invalidate); a complete sync
        also records from where on the copy is consistent (`syncpos`)."""
        try:
            await trio.to_thread.run_sync(_fdatasync_path, disk)
            recorded = self.store.value(self.mine("syncstatus"), "0")
            if generation == self.sync_generation and done > int(recorded or 0):
                changes = {self.mine("syncstatus"): done}
                if consistent_from is not None:
                    changes[self.mine("syncpos")] = consistent_from
                self.write(changes)
        finally:
            self.sync_persisting = False

    async def _source_log_end(self, state, source, start):
        """Where the source's log ends now that it has read the last chunk.
        A write reaches the disk only after it was logged, so everything the
        sync copied is in the log before this position: the copy, a mix of
        older and newer blocks, is consistent once replay has passed it.
        None when the source lists no logfile beyond the sync's start."""
        reply, _ = await self.request(state, source, PORT_FETCH, {"type": "logs", "res": self.res})
        files = [(name, size) for name, size in reply.get("files") or []]
        if not files:
            return None
        name, size = max(files, key=lambda item: parse_logfile_name(item[0])[0])
        end = Cursor(name, size, size)
        return str(end) if end.order > Cursor.parse(start).order else None

    async def _sync_range(self, state, source, disk, start, target, size, fast):
        """Copy [start, target) from the source, pipelined: while the source
        reads (and hashes) one request, this host hashes the next, receives
        the one before and writes the one before that (its own task, so that
        receiving never waits for the disk). Replies come back in order on
        the one connection."""
        requests = []
        offset = start
        while offset < target:
            count = min(CHUNKS_PER_REQUEST, -(-(target - offset) // CHUNK))
            requests.append((offset, count))
            offset += count * CHUNK
        channel = await self.channel(state, source, PORT_SYNC)
        in_flight = trio.Semaphore(SYNC_PIPELINE)

        async def send_all():
            for offset, count in requests:
                await in_flight.acquire()
                digests = await trio.to_thread.run_sync(
                    local_digests, disk, offset, CHUNK, count, size) if fast else None
                await channel.send({"type": "chunks", "res": self.res, "offset": offset,
                                    "chunk": CHUNK, "count": count, "digests": digests})

        received, to_write = trio.open_memory_channel(1)

        async def write_all():
            async with to_write:
                async for offset, count, kinds, data in to_write:
                    await trio.to_thread.run_sync(
                        apply_chunks, disk, offset, CHUNK, kinds, data, size)
                    step = min(count * CHUNK, size - offset)
                    self.sync_done = offset + step
                    self.rates["sync"].add(step)
                    self.metrics.synced.labels(self.res).inc(len(data))
                    self.report(sync_done=self.sync_done, sync_received=self.status.get(
                        "sync_received", 0) + len(data))

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_all)
                nursery.start_soon(write_all)
                async with received:
                    for offset, count in requests:
                        with trio.fail_after(REQUEST_TIMEOUT):
                            reply, data = await channel.receive()
                        if reply.get("type") != "chunks":
                            raise PeerError(f"{source} refused sync: {reply.get('reason', reply)}")
                        in_flight.release()
                        await received.send((offset, count, reply["kinds"], data))
        except BaseExceptionGroup as group:
            failures, rest = group.split((trio.TooSlowError, OSError, trio.BrokenResourceError,
                                          trio.ClosedResourceError, net.ProtocolError, PeerError))
            if rest is not None or failures is None:
                raise
            exc = failures.exceptions[0]
            await self._drop_channel(source, PORT_SYNC)
            raise PeerError(f"sync from {source} interrupted: {exc}") from None

    def _drop_local_logs(self):
        for name, _ in list_logfiles(self.dir):
            (self.dir / name).unlink(missing_ok=True)
        self.remote = {}

    # ------------------------------------------------------- fetch and replay
    def _cursor(self, state):
        if self.cursor is None:
            text = state.resource_value(self.res, replay_name(self.host))
            self.cursor = Cursor.parse(text) if text else None
        return self.cursor

    async def _follow(self, state, source, until=None, free=None):
        """Fetch from `source` and replay, one bounded step (`free`: bytes
        free in the state dir, if this step measured them already)."""
        cursor = self._cursor(state)
        fetching = self.switch(state, "connect")
        busy = False
        unreachable = None
        if fetching and self._listing_due(state, source, until):
            try:
                busy = await self._fetch(state, source, cursor, free)
            except PeerError as exc:
                unreachable = exc       # what is here already is replayed all the same
        elif not fetching:
            self.waiting_for("fetch paused")
            self._remote_from_metadata(state, source)
        if self.switch(state, "allow-replay"):
            busy = await self._replay(state, until) or busy
        else:
            self.waiting_for("replay paused")
        self._report_rest()
        if unreachable is not None:
            raise unreachable
        return busy

    def _listing_due(self, state, source, until):
        """Whether to ask `source` for its logfiles in this step. Not while
        everything it listed last is here and its replay checkpoint (which
        it writes every round in which it logged) is the same as then: an
        idle secondary asks nothing. Always when becoming primary (`until`),
        when asked to (`list_now`), and at least every LISTING_INTERVAL."""
        last_source, last_checkpoint, when = self.listed
        return until is not None or self.list_wanted or not self.fetched_all or \
            (source, state.resource_value(self.res, replay_name(source))) != \
            (last_source, last_checkpoint) or \
            time.monotonic() - when >= LISTING_INTERVAL

    def _remote_from_metadata(self, state, source):
        """While fetch is paused: the source's logfile sizes as far as the
        metadata shows them (its replay cursor, checkpointed every round, and
        the ends of logfiles it closed), so that work-rest still counts them."""
        text = state.resource_value(self.res, replay_name(source))
        try:
            current = Cursor.parse(text) if text else None
        except ValueError:
            current = None
        if current is not None:
            self.remote[current.logfile] = max(self.remote.get(current.logfile, 0), current.length)
        for name in list(self.remote):
            closed = self._closed_end(state, name)
            if closed is not None:
                self.remote[name] = max(self.remote[name], closed[0])

    async def _fetch(self, state, source, cursor, free=None):
        listed = time.time()
        checkpoint = state.resource_value(self.res, replay_name(source))
        self.list_wanted = self.fetched_all = False
        reply, _ = await self.request(state, source, PORT_FETCH, {"type": "logs", "res": self.res})
        self.report(listed=listed)
        self.listed = (source, checkpoint, time.monotonic())
        remote = dict((name, size) for name, size in reply["files"])
        self.remote = remote
        first = parse_logfile_name(cursor.logfile)[0] if cursor else 1
        local = dict(list_logfiles(self.dir))
        for name in remote:
            number = parse_logfile_name(name)[0]
            clash = [other for other in local if other != name
                     and parse_logfile_name(other)[0] == number]
            if clash and number >= first:
                raise SplitBrain(f"{source} has {name}, this host has {clash[0]}")
        if cursor is not None and cursor.logfile not in remote \
                and any(parse_logfile_name(name)[0] > first for name in remote) \
                and not self._complete_here(state, cursor.logfile, local):
            return self._cursor_logfile_gone(state, source, cursor)
        # Never fetch into emergency mode: what would take the state dir below
        # the limit waits until replay has made room (replayed logfiles go).
        if free is None:            # as measured for this step, else now
            free = await trio.to_thread.run_sync(devices.free_bytes, self.dir)
        budget = min(FETCH_MAX * 4, free - self.daemon.fetch_free - FETCH_MAX)
        fetched = 0
        if budget <= 0 and any(size > local.get(name, 0) for name, size in remote.items()):
            self._no_room_to_fetch(cursor, local, remote, free)
        for name, size in sorted(remote.items(), key=lambda item: parse_logfile_name(item[0])[0]):
            if parse_logfile_name(name)[0] < first:
                continue
            have = local.get(name, 0)
            if name not in local:
                # Even an empty logfile: replay moves on only to a logfile it has,
                # and a primary that hands back before any write leaves one empty.
                await trio.to_thread.run_sync(_append_at, self.dir / name, 0, b"")
            while have < size and budget > 0:
                reply, data = await self.request(state, source, PORT_FETCH, {
                    "type": "read", "res": self.res, "logfile": name, "offset": have,
                    "max": min(FETCH_MAX, budget)})
                if not data:
                    break
                await trio.to_thread.run_sync(_append_at, self.dir / name, have, data)
                have += len(data)
                budget -= len(data)
                fetched += len(data)
                self.rates["fetch"].add(len(data))
                self.metrics.fetched.labels(self.res).inc(len(data))
            if budget <= 0:
                return fetched > 0
        self.fetched_all = True
        return False

    def _no_room_to_fetch(self, cursor, local, remote, free):
        """Fetch waits until replay has made room (replayed logfiles are
        deleted). If everything here is replayed, no room will come: the
        logfile is larger than the state dir can hold. Said once in the log."""
        margin = self.daemon.fetch_free + FETCH_MAX
        if cursor is None or cursor.position < local.get(cursor.logfile, 0) or \
                self._next_logfile(cursor.logfile) is not None:
            self.waiting_for(f"fetch waits for room in the state dir ({free} bytes free, it "
                             f"stops {margin} bytes above full): replay makes room")
            return
        reason = (f"fetch cannot go on: {cursor.logfile} ({remote.get(cursor.logfile, 0)} bytes "
                  f"at the source) does not fit into the state dir ({free} bytes free, fetch "
                  f"stops {margin} bytes above full): make room there, or `marsadm invalidate "
                  f"{self.res}` syncs this replica anew")
        self.waiting_for(reason)
        if self.stall != ("room", cursor.logfile):
            log.error("%s: %s", self.res, reason)
            self.stall = ("room", cursor.logfile)

    def _complete_here(self, state, logfile, local):
        """This host holds `logfile` up to the end its origin closed it at."""
        closed = self._closed_end(state, logfile)
        return logfile in local and closed is not None and local[logfile] >= closed[0]

    def _cursor_logfile_gone(self, state, source, cursor):
        """The logfile the replay cursor is in was deleted on the source before
        this host fetched all of it. That happens to a joining host: it starts its
        sync from the source's log position as the metadata showed it, and
        the source may have rotated and deleted that logfile before it learned
        of the new member. While the replica is not consistent yet (replay
        short of `syncpos`) it has nothing to lose and syncs anew (what
        `invalidate` does). A consistent one cannot catch up from the logs
        any more but holds a usable past state: the operator decides."""
        syncpos = state.resource_value(self.res, syncpos_name(self.host))
        if syncpos and cursor.order < Cursor.parse(syncpos).order:
            log.warning("%s: %s deleted %s before this host fetched it, and this replica is "
                        "not consistent yet: full sync again", self.res, source, cursor.logfile)
            keys = [self.key(rest) for rest in state.resources().get(self.res, {})]
            self.write(resync_changes(keys, self.res, self.host))
            self.cursor = None
            self.sync_done = None
            return True
        self.report(waiting=f"{cursor.logfile} is gone on {source} before this host fetched all "
                            f"of it: this replica cannot catch up from the logs (it holds a "
                            f"consistent older state); `marsadm invalidate {self.res}` syncs it "
                            f"anew")
        return False

    async def _replay(self, state, until=None):
        cursor = self._cursor(state)
        if cursor is None:
            local = list_logfiles(self.dir)
            if not local:
                return False
            cursor = self.cursor = Cursor(local[0][0], 0, 0)
        path = self.dir / cursor.logfile
        if not path.exists():
            return False
        disk = state.disk(self.res)
        if cursor.position < os.path.getsize(path):
            result = await trio.to_thread.run_sync(_replay_step, str(path), disk, cursor.position)
        else:                       # nothing new to replay (an idle secondary): no thread
            result = ReplayResult(cursor.position, 0, 0, None, None)
        busy = False
        if result.applied:
            self.cursor = Cursor(cursor.logfile, result.position, os.path.getsize(path))
            self.rates["replay"].add(result.bytes)
            self.metrics.replayed.labels(self.res).inc(result.bytes)
            busy = True
        damage = result.damage
        if damage is not None and not damage.torn_tail:
            self.report(damage=str(damage))
            self._set_actual(**{"replay-code": -5})
            self._persist_cursor(force=True)
            return False
        self.report(damage=None)
        closed = self._closed_end(state, self.cursor.logfile)
        if closed is not None and self.cursor.position >= closed[0]:
            if self.cursor.position > closed[0]:
                raise SplitBrain(f"this host replayed {self.cursor.logfile} to "
                                 f"{self.cursor.position}, beyond its end {closed[0]}")
            mine = await self._write_version(state, self.cursor.logfile, closed[0])
            if not versions_agree(mine, closed[1]):
                raise SplitBrain(f"version of {self.cursor.logfile} differs from its origin's")
            following = self._next_logfile(self.cursor.logfile)
            if following is not None:
                self.cursor = Cursor(following, 0, 0)
                self.stall = None
                self._persist_cursor(force=True)
                return True
        elif damage is not None and closed is not None and os.path.getsize(path) >= closed[0]:
            # A complete copy of a closed logfile that ends in a torn record before
            # its end: damaged. (A shorter copy is only not fetched completely yet.)
            self.report(damage=str(damage))
        elif closed is None and self.cursor.position >= os.path.getsize(path) and \
                self._next_logfile(self.cursor.logfile) is not None:
            self._replay_stalled(self.cursor.logfile)
        self._persist_cursor(force=False)
        return busy

    def _replay_stalled(self, logfile):
        """Replay has reached the end of `logfile` as fetched, the next one is
        here, but the origin's version of `logfile` (the end it closed it
        at) is not: without it replay cannot move on. Usually for a moment
        (the metadata comes a round later than the data); if it lasts, the
        view says why and the log says it once."""
        number, origin = parse_logfile_name(logfile)
        reason = (f"replay stands at the end of {logfile}: version-{number}-{origin} (where "
                  f"{origin} closed it) is not known here; if it does not come, `marsadm "
                  f"invalidate {self.res}` syncs this replica anew")
        self.waiting_for(reason)
        now = time.monotonic()
        if self.stall is None or self.stall[0] != logfile:
            self.stall = (logfile, now)
        elif self.stall[1] is not None and now - self.stall[1] >= STALL_LOGGED_AFTER:
            log.warning("%s: %s", self.res, reason)
            self.stall = (logfile, None)        # said once

    def _closed_end(self, state, logfile):
        """(end, version) if the logfile's origin closed it, else None."""
        number, origin = parse_logfile_name(logfile)
        value = state.resource_value(self.res, version_name(number, origin))
        if not value:
            return None
        _, name, end = parse_version(value)
        return (end, value) if name == logfile else None

    def _next_logfile(self, logfile):
        number = parse_logfile_name(logfile)[0] + 1
        for name, _ in list_logfiles(self.dir):
            if parse_logfile_name(name)[0] == number:
                return name
        return None

    def _persist_cursor(self, force):
        now = time.monotonic()
        current = str(self.cursor) if self.cursor else ""
        if not current or current == self.status.get("cursor_persisted"):
            return
        if force or now - self.cursor_persisted >= PERSIST_EVERY:
            _fdatasync_path(self.state().disk(self.res))
            self.write({self.mine("replay"): current})
            self.cursor_persisted = now
            self.report(cursor_persisted=current)

    def _report_rest(self):
        """Bytes still to fetch and to replay, from the source's listing."""
        cursor = self.cursor
        if cursor is None:
            return
        first = parse_logfile_name(cursor.logfile)[0]
        local = dict(list_logfiles(self.dir))
        fetch_rest = replay_rest = 0
        for name, size in self.remote.items():
            if parse_logfile_name(name)[0] < first:
                continue
            fetch_rest += max(0, size - local.get(name, 0))
        for name, size in local.items():
            if parse_logfile_name(name)[0] < first:
                continue
            replay_rest += size - (cursor.position if name == cursor.logfile else 0)
        self.report(fetch_rest=fetch_rest, replay_rest=max(0, replay_rest),
                    work_rest=fetch_rest + max(0, replay_rest), cursor=str(cursor))
        self.metrics.lag.labels(self.res).set(fetch_rest + max(0, replay_rest))

    # ---------------------------------------------------------- housekeeping
    def _cleanup_stale_device(self):
        """A marsd that was killed leaves a loop device on a dead FUSE mount."""
        mountpoint = self.fuse_dir
        for loop, backing in devices.loops_backed_by(str(mountpoint)).items():
            if devices.open_count(loop) == 0:
                try:
                    devices.detach_loop(loop)
                    log.info("%s: detached stale %s (%s)", self.res, loop, backing)
                except devices.LoopError as exc:
                    log.warning("%s: %s", self.res, exc)
            else:
                log.warning("%s: stale %s is still in use (mounted?): unmount it", self.res, loop)
        if devices.unmount_stale(mountpoint):
            log.info("%s: unmounted stale FUSE mount %s", self.res, mountpoint)
        if self.link.is_symlink():
            self.link.unlink()
        self._set_actual(**{"is-primary": 0, "open-count": 0})

    def delete_logs_before(self, number):
        """Delete local logfiles numbered below `number` (every member's cursor is past them)."""
        deleted = 0
        for name, _ in list_logfiles(self.dir):
            if parse_logfile_name(name)[0] < number:
                (self.dir / name).unlink(missing_ok=True)
                deleted += 1
        return deleted


def _replay_step(path, disk, position):
    """One bounded replay step: at most 256 records (each at most 16 MiB);
    the disk is synced before the cursor is recorded (_persist_cursor)."""
    fd = os.open(disk, os.O_WRONLY)
    try:
        return replay(path, fd, position, limit=256, sync=False)
    finally:
        os.close(fd)


def _fdatasync_path(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


def _append_at(path, offset, data):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


class DeviceProcess:
    """The device process of one resource, and its control channel. Started
    with subprocess from the main thread, so that PR_SET_PDEATHSIG in the
    child follows marsd itself, not a worker thread."""

    def __init__(self, command):
        self.command_line = command
        self.process = None
        self.events = []
        self.replies = None

    async def start(self, nursery, on_event):
        """Start the process and, once it is ready, a task in `nursery` that
        reads what it says: replies for `command`, events kept for
        `take_events` (`on_event()` is called for each)."""
        self.process = subprocess.Popen(self.command_line, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE)
        self.stdin = trio.lowlevel.FdStream(os.dup(self.process.stdin.fileno()))
        self.stdout = trio.lowlevel.FdStream(os.dup(self.process.stdout.fileno()))
        self.process.stdin.close()
        self.process.stdout.close()
        self.buffer = b""
        message = await self._next_line(timeout=600)
        if message.get("event") == "refused":
            await trio.to_thread.run_sync(self.process.wait)
            await self.stdin.aclose()
            await self.stdout.aclose()
            raise DeviceRefused(message.get("reason", "?"), *message.get("damage") or ("?", 0))
        if message.get("event") != "ready":
            raise OSError(f"device process did not come up: {message}")
        replies, self.replies = trio.open_memory_channel(math.inf)
        nursery.start_soon(self._read, replies, on_event)
        return message

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
        await self.stdin.send_all((json.dumps(message) + "\n").encode())
        with trio.fail_after(timeout):
            try:
                reply = await self.replies.receive()
            except trio.EndOfChannel:
                raise OSError(f"device process exited with {self.process.poll()}") from None
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

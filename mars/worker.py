"""The data plane of one resource on one host, inside marsd.

A `ResourceWorker` runs while this host is a member of the resource. Each
step reads the resource's metadata, decides what this host should be doing,
and does one bounded piece of it, so that a change of wishes (handover,
pause, leave) takes effect within a step. The worker dispatches; each role
is a collaborator it owns:

- `Primary` (`mars.primary`): becoming primary, the device process and its
  round, handover and teardown, the systemd units;
- `SyncClient` (`mars.syncclient`): a secondary's full sync while
  `syncstatus < size`;
- `LogFollower` (`mars.follow`): fetch the source's logfiles as they grow
  and replay them in order; emergency mode's first stage;
- `History` (`mars.history`): the version chain and split brain.

What they decide by is kept on them; what they find is reported here and
written to `<state dir>/status/<res>.json` for the views (rates, rests,
damage), and the few facts other hosts need go into the metadata
(`actual-<host>/...`)."""

import json
import logging
import math
import os
import shutil
import time
from pathlib import Path

import trio

from mars import device as devices
from mars.channels import PeerChannels
from mars.errors import PeerError
from mars.follow import LogFollower
from mars.history import (History, SplitBrain, history_conflict, missed_unlogged,
                          passed_unlogged)
from mars.keys import (HEARTBEAT_PREFIX, IP_PREFIX, ClusterState, actual_name,
                       global_pause_name, res_key, resource_dir_name, size_key, syncstatus_name,
                       todo_name, unlogged_name)
from mars.primary import Primary
from mars.syncclient import SyncClient

log = logging.getLogger("marsd.data")

PROCESS_LOOK_INTERVAL = 15.0     # seconds an idle look for processes holding devices is reused
IDLE_STEP_EVERY = 3.0            # seconds an idle worker goes without news (marsd --idle-step)
STATUS_REFRESH = 5.0             # seconds between status writes when nothing changed (views: 10)
BUSY_STATUS_SECONDS = 0.2        # the least time between status writes while busy
# A primary whose device is up and that waits for the same thing this long
# (its device in use while it should go, a unit that fails) steps every
# LONG_WAIT_TICK, not every data tick; news (an unmount) still ends it at once
LONG_WAIT_AFTER, LONG_WAIT_TICK = 2.0, 0.5


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


def own_key(res, host, name):
    return res_key(res, actual_name(host, name))


class ResourceWorker:
    def __init__(self, daemon, res):
        self.daemon = daemon
        self.env = daemon.env
        self.store = daemon.store
        self.host = daemon.env.host
        self.res = res
        self.dir = Path(self.env.state_dir) / resource_dir_name(res)
        self.status_path = Path(self.env.state_dir) / "status" / f"{res}.json"
        self.channels = PeerChannels(self.host, lambda: daemon.key, self.store.clock)
        self.rates = {name: Rate() for name in ("sync", "fetch", "replay", "log")}
        self.status = {}                # what the views read (no step decides by it)
        self.status_written = None      # what the status file says
        self.waiting = None             # why this step waits, if it does (reset every step)
        self.waited = None              # (the reason, since when) a device up waits for it
        self.error = None               # what the last step failed with
        self.emergency = False          # True (no logging here or at the source), "space", False
        self.leaving = False            # primary, and the device should go (last step)
        self.stopping = False
        self.finished = trio.Event()
        self.stall = None               # what replay or fetch stands at (logged once)
        self.last_busy = self.status_saved = 0.0
        self.actual = {}                 # actual-<host>/<name> -> value last reported
        self.metrics = daemon.metrics
        self.woken = trio.Event()        # set by every wake-up (round, news)
        self.news_arrived = False        # a wake-up that calls for a step at once
        self.last_step = 0.0
        self.resource_values = None      # the resource's keys as last read (None: read again)
        self.history = History(self)
        self.follower = LogFollower(self)
        self.sync = SyncClient(self)
        self.primary = Primary(self)

    # -------------------------------------------------------- for the daemon
    @property
    def device(self):
        """The device process while the device is up here, else None."""
        return self.primary.device

    @property
    def loop(self):
        return self.primary.loop

    def delete_logs_before(self, number):
        """Delete local logfiles numbered below `number` (every member's cursor is past them)."""
        return self.follower.delete_logs_before(number)

    def wake(self):
        """A round passed: an idle worker steps if `idle_step` seconds have."""
        self.woken.set()

    def news(self):
        """Something happened that this worker acts on: step at once."""
        self.news_arrived = True
        self.woken.set()

    def keys_changed(self):
        """The store changed for this resource: read it again, and step.
        Where another host than the one this host follows takes over by
        force (`marsadm --force primary`: the old primary is dead) — this
        host, or another while this one is a further secondary —, a wait for
        the old primary's answer ends at once: the takeover waited up to a
        request's timeout (20 s) for a primary that died mid-fetch, and a
        third replica as long before it followed the new primary. (A
        planned handover's catch-up from a live old primary is left be.)"""
        self.resource_values = None
        source = self.follower.source
        if source is not None and source != self.host and self.channels.waits.get(source):
            state = self.state()
            primary = state.designated_primary(self.res)
            if primary and primary != source and state.wishes_force(self.res, primary):
                self.channels.give_up(source, f"{primary} takes over by force")
        self.news()

    def list_now(self):
        """Ask the source for its logfiles at the next step, which is now
        (for `wait-resource up-to-date`: the answer must count writes made
        before it was asked)."""
        self.follower.list_wanted = True
        self.news()

    # ------------------------------------------------------- for the roles
    def key(self, name):
        return res_key(self.res, name)

    def replica_complete(self):
        """Whether this host's replica is complete (its sync done, as the
        store says): it may become the primary."""
        size = self.store.value(size_key(self.res))
        synced = self.store.value(self.key(syncstatus_name(self.host)), "0")
        return bool(size) and int(synced or 0) >= int(size)

    def state(self):
        """The resource's keys (read again only after they changed: the
        daemon's watch or this worker's own write says so), the cluster's
        addresses and every host's heartbeat."""
        if self.resource_values is None:
            self.resource_values = self.store.live_values(self.key(""))
        values = dict(self.resource_values)
        values.update(self.store.live_values(IP_PREFIX))
        values.update(self.store.live_values(HEARTBEAT_PREFIX))
        return ClusterState(values, self.host)

    def write(self, changes):
        """Write this host's keys of the resource, unless the resource was
        deleted meanwhile (a device torn down after delete-resource must
        not bring keys of it back)."""
        if self.store.value(size_key(self.res)):
            self.resource_values = None
            self.store.write(changes)

    def switch(self, state, name):
        """A todo switch, with its global pause applied."""
        local = state.resource_value(self.res, todo_name(self.host, name), "1") == "1"
        glob = {"sync": "sync", "connect": "fetch", "allow-replay": "replay"}.get(name)
        paused = glob and state.resource_value(self.res, global_pause_name(glob), "0") == "1"
        return local and not paused

    def set_actual(self, also=None, **facts):
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

    def set_emergency(self, mode):
        """Emergency mode as this host is in it: True (the device does not
        log, or the source's does not), "space" (this host's state dir runs
        low: fetch stopped), False."""
        self.emergency = mode
        self.report(emergency=mode)

    # ------------------------------------------------------------- reporting
    def report(self, **facts):
        self.status.update(facts)

    def wait(self, reason):
        """This step waits for `reason` (None: it does not wait), whatever it
        said before."""
        self.waiting = reason
        self.report(waiting=reason)

    def waiting_for(self, reason):
        """Add a reason to this step's `waiting` line (reset every step)."""
        self.wait(f"{self.waiting}; {reason}" if self.waiting else reason)

    def save_progress(self):
        """`save_status` while work goes on (between busy steps, and within
        a long one such as a sync's): at most every BUSY_STATUS_SECONDS."""
        now = time.monotonic()
        if now - self.status_saved >= BUSY_STATUS_SECONDS:
            self.save_status(force=False)
            self.status_saved = now

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

    async def _keep_status_fresh(self):
        """The status file says marsd lives also while one step waits long (a
        peer that does not answer: its connect timeout is 10 s): the views
        took it for a dead marsd's and said nothing of what they knew (a
        failover read the rest of the log as unknown)."""
        while True:
            await trio.sleep(STATUS_REFRESH)
            self.save_status(force=False)

    def _report_error(self, error):
        self.error = error
        self.report(error=error)

    # -------------------------------------------------------------------- run
    async def run(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        await self.primary.cleanup_stale_device()
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                nursery.start_soon(self._keep_status_fresh)
                while True:
                    state = self.state()
                    if not state.disk(self.res) and self.device is None:
                        break               # left or deleted
                    if self.stopping and self.device is None:
                        break
                    # what happens from here on calls for a step
                    self.woken, self.news_arrived = trio.Event(), False
                    self.last_step = time.monotonic()
                    self.follower.caught_up = False     # until this step's follow says so
                    self.metrics.steps.labels(self.res).inc()
                    try:
                        self.wait(None)     # each step says why it waits, if it does
                        self.report(recovering=False)   # and whether the device recovers
                        busy = await self.step(state)
                        if self.error:
                            log.info("%s: recovered from: %s", self.res, self.error)
                        self._report_error(None)
                    except SplitBrain as exc:
                        self.report(split_brain=str(exc))
                        busy = False
                    except (PeerError, OSError, ValueError, devices.LoopError) as exc:
                        if str(exc) != self.error:      # once, not every step
                            log.warning("%s: %s", self.res, exc)
                        self._report_error(str(exc))
                        self.metrics.errors.labels(self.res).inc()
                        busy = False
                    except Exception as exc:    # noqa: BLE001 - one resource must not stop the others
                        said = f"internal error: {exc!r}"
                        if said != self.error:          # once, with its traceback
                            log.exception("%s: internal error", self.res)
                        self._report_error(said)
                        self.metrics.errors.labels(self.res).inc()
                        busy = False
                    now = time.monotonic()
                    if busy:
                        self.last_busy = now
                        self.save_progress()
                    else:
                        # before a pause always: the views must not show an
                        # older state until the next step
                        self.save_status(force=False)
                        self.status_saved = now
                    await self._pause(busy, now)
                nursery.cancel_scope.cancel()
        finally:
            self.primary.drop_standby()
            await self.channels.close()
            self.status_path.unlink(missing_ok=True)
            if not self.stopping and not self.store.state().disk(self.res):
                # Left or deleted: the logs of this replica are of no use any more.
                # (Deleted: its own keys, data- among them, may go only after
                # this; the logs stayed then, and a new replica of that name
                # was refused among them.)
                # In a thread: gigabytes of them take seconds to unlink, and the
                # other resources' work waits for nothing of this one's. (This
                # worker stays registered meanwhile: a new one for the same
                # resource starts only after, and its logs are not removed.)
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(shutil.rmtree, self.dir, True)
            self.finished.set()

    async def step(self, state):
        """One bounded piece of work. True when there is more to do at once."""
        members = state.members(self.res)
        conflict = history_conflict(state, self.res, members)
        if state.resource_value(self.res, unlogged_name(self.host)) and \
                passed_unlogged(state, self.res, self.host):
            # its emergency mark: every member synced after it
            self.write({res_key(self.res, unlogged_name(self.host)): None})
        self.report(split_brain=conflict, member=bool(state.disk(self.res)))
        designated = state.designated_primary(self.res)
        attach = self.switch(state, "attach") and bool(state.disk(self.res))
        self._report_disk(state)
        self.leaving = False
        primary = self.primary
        if primary.device is not None:
            leaving = self.leaving = designated != self.host or not attach or self.stopping
            await primary.round(state, leaving)
            if primary.device is None or primary.device.exited():
                return False            # it died: the round said so, and cleans up once unused
            await primary.follow_units(state, run=not leaving)
            if leaving and not primary.refuse_handover(state, designated):
                await primary.try_teardown(state)
            return False
        primary.report_down()
        if self.stopping:
            primary.drop_standby()
            return False
        if not attach:
            self.wait("detached (todo attach=0)")
            self.report(attached=False)
            self.set_actual(**{"is-attached": 0})
            return False
        self.report(attached=True)
        self.set_actual(**{"is-attached": 1})
        if await primary.grown(state):
            state = self.state()        # the step goes on with the new syncstatus
        if designated == self.host:
            return await primary.become(state, conflict)
        primary.withdraw_refusal()      # the wish was withdrawn: a new one may try again
        primary.drop_standby()
        return await self._secondary(state, conflict)

    async def _pause(self, busy, now):
        """Until the next step. Busy: none. A primary whose device serves by
        itself, a secondary with nothing to fetch or replay, and any worker
        with nothing to do for a while: until news
        (this resource's keys changed: a wish, the source's log end
        showing new log data; the device logs again or said something; the
        mount table changed) or for the daemon's `idle_step` (its rounds
        wake every worker: one timer for all; sooner when a checkpoint or
        the replay cursor is due to be written), so that an idle resource
        costs next to nothing and still reacts at once. Else (syncing,
        catching up, a primary waiting for its device to be released) a
        tick."""
        if busy:
            await trio.sleep(0)
            return
        quiet = now - self.last_busy > 2.0
        if self.device is not None:
            quiet = not self.leaving and not self.waiting
        elif self.follower.caught_up:
            # Nothing to fetch or replay: more comes with the source's next
            # log end, which is news. (A tick here was a step 20 times a
            # second on a replica of a primary that writes now and then.)
            quiet = True
        if not quiet:
            if self._waiting_long(now):
                # (20 steps a second, each counting the device's users, for
                # as long as an operator leaves the container running)
                with trio.move_on_after(LONG_WAIT_TICK):
                    await self._until_news(math.inf)
            else:
                await trio.sleep(self.daemon.data_tick)
            return
        due = self.last_step + self.daemon.idle_step
        if self.device is not None and self.primary.checkpoint_wanted():
            # the device logs: its checkpoint is due a round after the last one
            due = min(due, self.primary.last_checkpoint + 0.9 * self.daemon.round_interval)
        persist = self.follower.persist_due() if self.device is None else None
        if persist is not None:
            # A secondary's replay cursor, written by the step after it. (At
            # least a tick from now: a step that did not write it, as after
            # a sync set it, must not be followed by the next at once.)
            due = min(due, max(persist, now + self.daemon.data_tick))
        await self._until_news(due)

    async def _until_news(self, due):
        """Until news arrived or `due` (monotonic) passed; rounds wake it to look."""
        # Always a checkpoint: with a due time already past, the loop below
        # does not wait, and a worker stepping on without one froze its marsd.
        await trio.sleep(0)
        while not self.news_arrived and time.monotonic() < due:
            await self.woken.wait()
            self.woken = trio.Event()

    def _waiting_long(self, now):
        """Whether this worker's device is up and it has waited for the same
        reason for LONG_WAIT_AFTER seconds."""
        if self.device is None or not self.waiting:
            self.waited = None
            return False
        if self.waited is None or self.waited[0] != self.waiting:
            self.waited = (self.waiting, now)
        return now - self.waited[1] >= LONG_WAIT_AFTER

    def _report_disk(self, state):
        disk = state.disk(self.res)
        try:
            size = devices.disk_size(disk)
        except OSError:
            size = 0
        self.report(disk_size=size)
        self.set_actual(**{"disk-size": size})

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
        """sync while `syncstatus < size`, then fetch and replay."""
        self.set_actual(**{"is-primary": 0})
        source = self._source(state)
        if source is None:
            self.wait("no primary designated")
            self.report(source=None)
            return False
        self.report(source=source, source_alive=state.is_alive(source, self.daemon.window))
        if conflict:
            raise SplitBrain(conflict)
        free = devices.free_bytes(self.dir)     # statvfs of a local file system: no thread
        if await self.follower.low_on_space(state, source, free):
            return False
        size = state.size(self.res)
        disk_size = self.status.get("disk_size") or 0       # (this step's `_report_disk`)
        if 0 < disk_size < size:
            # (a resize that raced this member's join: a write past the end
            # of its disk fails, or on a file grows it, unsaid)
            self.wait(f"the disk {state.disk(self.res)} holds {disk_size} bytes, the resource "
                      f"{size}: grow it to at least that (lvresize); nothing is synced or "
                      "replayed onto it until then")
            return False
        synced = int(state.resource_value(self.res, syncstatus_name(self.host), "0") or 0)
        if synced < size:
            if not self.switch(state, "sync"):
                self.wait("sync paused")
                self.report(syncing=False)
                return False
            return await self.sync.sync(state, source, synced, size)
        self.sync.complete(size)
        if self.missed_writes(state):
            return False
        return await self.follower.follow(state, source, free=free)

    def missed_writes(self, state):
        """Whether another member wrote to its disk unlogged (emergency
        mode) after this replica was synced: nothing it can replay has those
        writes; it waits for `invalidate`, said so."""
        missed = missed_unlogged(state, self.res, self.host)
        if missed:
            origin, mark = missed
            self.set_emergency(True)
            self.wait(f"{origin} wrote to its disk without logging (emergency mode, from "
                      f"{mark.logfile},{mark.position} on) after this replica was synced: it "
                      f"missed those writes; `marsadm invalidate {self.res}` syncs it anew")
        return bool(missed)

"""marsd: the per-host MARS daemon.

One marsd per host, bound to the host's address from `ips/ip-<host>`:
- serves the peer protocol on port 7777 (every connection authenticated with
  the cluster secret before anything is accepted);
- every round: reports liveness (`actual-<host>/time`, `alive`), keeps one
  puller task per peer (pull-based anti-entropy, reconnect with backoff),
  drops its own keys of deleted resources, purges old tombstones;
- writes a pid file, shuts down cleanly on SIGTERM/SIGINT, logs to stderr
  (which is the journal under systemd).
marsadm writes the wishes into the store; marsd makes them happen and spreads
them. marsd may start before the host is in a cluster: it waits."""

import argparse
import fcntl
import logging
import math
import os
import select
import shutil
import signal
import socket
import sys
import time

import tenacity
import trio

from mars import antientropy, net
from mars.cluster import apply_split
from mars.device import (device_users, disk_size, mounted_devices, open_count,
                         processes_holding_devices)
from mars.errors import MarsError, PeerError
from mars.hostenv import PORT_FETCH, PORT_META, PORT_SYNC, HostEnv
from mars.keys import (HEARTBEAT_PREFIX, IP_PREFIX, RESOURCE_PREFIX, ClusterState, alive_key,
                       data_key, data_name, ip_key, owner_of, res_key, resource_of, size_key,
                       time_key)
from mars.metrics import Metrics
from mars.primary import DISK_SYNC_INTERVAL, DeviceProcess
from mars.replay import lowest_needed_logfile
from mars.store import Store
from mars.transfer import DataServer
from mars.tree import TreeMirror
from mars.worker import IDLE_STEP_EVERY, PROCESS_LOOK_INTERVAL, ResourceWorker
from mars.writeback import DEFAULT_LIMIT as DEFAULT_WRITEBACK_LIMIT

log = logging.getLogger("marsd")

PURGE_EVERY = 60        # rounds between tombstone purges


class PidFile:
    """`<state dir>/marsd.pid`, held with an exclusive lock for the daemon's
    lifetime: a second marsd for the same host refuses to start, and a pid
    file left by a crashed daemon is simply taken over."""

    def __init__(self, path):
        self.path = path
        self.fd = None

    def acquire(self):
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise MarsError(f"marsd already runs for this host (pid {holder}, {self.path})") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd

    def release(self):
        if self.fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self.fd)
            self.fd = None


STIRRED_GAP = 0.1               # seconds at least between two pulls from one peer on news
HEARTBEAT_EVERY = 1.0           # seconds at least between two heartbeats (or a round)

def changed_resources(keys):
    """The resources whose keys are among `keys`; None when a key of the
    whole cluster (not a heartbeat) is among them: every resource may care."""
    resources = set()
    for key in keys:
        res = resource_of(key)
        if res is not None:
            resources.add(res)
        elif not is_heartbeat(key):
            return None
    return resources


def is_heartbeat(key):
    """A host's liveness, rewritten every round (`actual-<host>/alive|time`)."""
    owner = owner_of(key)
    return owner is not None and key in (alive_key(owner), time_key(owner))


TOMBSTONE_WAIT = 7 * 24 * 3600     # seconds a member not heard from holds tombstones back


class Daemon:
    """The control plane of one host."""

    def __init__(self, env, round_interval=1.0, tombstone_retention=3600.0, window=60.0,
                 data_tick=0.05, fast_sync=True, metrics_port=0, device_args=(),
                 emergency_free=64 << 20, idle_step=IDLE_STEP_EVERY, hold_sync_after=None,
                 disk_sync_interval=DISK_SYNC_INTERVAL, tombstone_wait=None):
        self.env = env
        self.tombstone_wait = TOMBSTONE_WAIT if tombstone_wait is None else tombstone_wait
        self.disk_sync_interval = disk_sync_interval
        self.hold_sync_after = hold_sync_after      # debugging: syncs stop at this many bytes
        self.round_interval = round_interval
        self.tombstone_retention = tombstone_retention
        self.window = window
        self.data_tick = data_tick
        self.idle_step = idle_step
        self.fast_sync = fast_sync
        self.metrics_port = metrics_port
        self.device_args = list(device_args)
        self.fetch_free = 2 * emergency_free     # secondaries give up before the primary
        self.metrics = Metrics()
        self.handshakes = net.Handshakes(PORT_META)     # the metadata port's, before them
        self.store = None
        self.peer_scopes = {}           # host -> (address, CancelScope)
        self.dropped_said = False       # "no member any more" logged (once per drop)
        self.stirred = {}               # host -> trio.Event: pull from it (or tell it) now
        self.to_tell = set()            # peers to tell that this host has news
        self.heard = {}                 # host -> trio.Event: it spoke here, end the backoff
        self.own_stamp = None           # newest stamp of this host's own tuples, as told
        self.heartbeat_due = -math.inf  # trio time of the next heartbeat
        self.workers = {}               # res -> ResourceWorker
        self.stopping = False
        self.warm_device = None         # a device process that has done its imports (`take_standby`)
        self.tombstones_seen = -1       # newest tombstone already acted on; -1: scan at start
        self.poked = trio.Event()       # set when the store may have changed (_watch_store)
        self.tree = None                # TreeMirror, once written
        self._key = self._key_seen = None   # the cluster secret, see `key`
        self.tree_error = None
        self.mounts = None              # mounted devices, until the mount table changes
        self.holders = ({}, -1e9)       # (device -> processes holding it open, when looked)

    @property
    def key(self):
        """The cluster secret, read again when its file was replaced (a
        merge-cluster that gave the cluster the other side's secret over
        SSH): new connections use it, established ones stay."""
        stat = os.stat(self.env.key_path)
        seen = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if seen != self._key_seen:
            if self._key_seen is not None:
                log.info("cluster secret %s replaced: using the new one", self.env.key_path)
            self._key, self._key_seen = self.env.cluster_key(), seen
        return self._key

    def device_options(self, res):
        return self.device_args

    def take_standby(self):
        """A device process that has imported what a device needs, for a
        resource about to start its device here (None: there is none
        ready; the caller spawns its own); the next one starts importing
        at once. A standby spawned only when this host was designated was
        still importing (~0.16 s of CPU: trio) when the old primary had
        torn down and this host had replayed: 50-90 ms of every handover's
        downtime, on the 2-CPU test machine."""
        warm, self.warm_device = self.warm_device, None
        self.keep_standby_ready()
        if warm is not None and warm.exited():
            warm.drop()             # its pipes closed
            warm = None
        return warm

    def keep_standby_ready(self):
        """One device process waits, imported, while this host has a
        complete replica (it may become its primary); a resource takes it.
        One that died (killed) is replaced; a host left without a complete
        replica keeps none.

        Not while every replica here is still syncing: none can become the
        primary before its sync is done (but by `primary --force`, which
        starts its own), and the standby's imports (~0.15 s of CPU) came
        in the middle of a new member's first sync: a fast sync of an
        identical replica of 2 GiB, which takes half a second, shared the
        2-CPU test machine with them. A sync's completion brings it
        (`SyncClient.sync`), else the next round."""
        complete = any(worker.replica_complete() for worker in self.workers.values())
        if self.warm_device is not None and (self.warm_device.exited() or not complete):
            # (kept after the last complete replica left, while others synced)
            self.warm_device.drop()
            self.warm_device = None
        if self.warm_device is None and not self.stopping and complete:
            self.warm_device = DeviceProcess()
            self.warm_device.spawn(name=[f"--state-dir={self.env.state_dir}"])

    # ------------------------------------------------------------ lifecycle
    async def run(self, task_status=trio.TASK_STATUS_IGNORED):
        self.env.ensure_state_dir()
        self.store = Store(self.env.db_path, self.env.host, on_commit=self._store_poked)
        pidfile = PidFile(self.env.pid_path)
        pidfile.acquire()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_signals, nursery)
                task_status.started()
                address = await self._wait_for_membership()
                self.env.cluster_key()          # a missing secret ends marsd here
                await trio.to_thread.run_sync(self._remove_logs_of_resources_not_held)
                await nursery.start(self._serve, address)
                data = DataServer(str(self.env.state_dir), self._local_disk, self._size)
                self.data_server = data
                for port, answer in ((PORT_FETCH, data.answer_fetch), (PORT_SYNC, data.answer_sync)):
                    await nursery.start(data.serve, port, answer, address, lambda: self.key,
                                        self.env.host, self.store.clock)
                if self.metrics_port:
                    self.metrics.serve(self.metrics_port, address)
                log.info("marsd %s serving on %s:%d-%d", self.env.host, address, PORT_META, PORT_SYNC)
                self.worker_nursery = nursery
                await nursery.start(self._receive_pokes)
                nursery.start_soon(self._watch_store)
                nursery.start_soon(self._watch_mounts)
                nursery.start_soon(self._rounds, nursery)
        finally:
            if self.warm_device is not None:
                self.warm_device.drop()
            try:
                self._report_alive("0")
            except Exception as exc:  # noqa: BLE001 - never mask why we are exiting
                log.warning("could not record shutdown in the store: %s", exc)
            self.store.close()
            pidfile.release()
            log.info("marsd %s stopped", self.env.host)

    async def _watch_signals(self, nursery):
        """First signal: tear the devices down (each as soon as it is no
        longer in use) and exit. A second signal exits at once; devices
        still in use then lose their backing (like a crash)."""
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                if self.stopping or not self.workers:
                    log.info("signal %d: shutting down now", signum)
                    nursery.cancel_scope.cancel()
                    return
                log.info("signal %d: shutting down after tearing down the devices", signum)
                self.stopping = True
                for worker in self.workers.values():
                    worker.stopping = True
                self.wake_workers()
                nursery.start_soon(self._finish_when_workers_done, nursery)

    def _store_poked(self):
        self.poked.set()

    async def _receive_pokes(self, task_status=trio.TASK_STATUS_IGNORED):
        """marsadm pokes marsd after it wrote the store (HostEnv.poke_daemon)."""
        with trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as wake:
            try:
                await wake.bind(self.env.wake_address)
            except OSError as exc:
                log.warning("no wake-up socket (%s): marsadm's wishes wait up to a round", exc)
                task_status.started()
                return
            task_status.started()
            while True:
                await wake.recv(64)
                self.poked.set()

    async def _watch_store(self):
        """Wake the resource workers whose keys changed (a wish written by
        marsadm, a tuple pulled from a peer, a worker's own report): a worker
        with nothing to do sleeps until then instead of reading the store
        every tick. Looked at when poked: by a commit here, by marsadm, and
        by every round (a writer that does not poke). Every host's heartbeat
        changes the store every round and wakes nobody; any other key
        outside the resources wakes every worker."""
        seen = self.store.generation()
        stamps = self.store.stamps()
        self._mirror(None)
        while True:
            await self.poked.wait()
            self.poked = trio.Event()
            await trio.sleep(0)         # a burst of commits: one look
            now = self.store.generation()
            if now == seen:
                continue
            external = now[1] != seen[1]        # marsadm (another connection) wrote
            seen = now
            changed = self.store.take_touched()
            if external or changed is None:
                before, stamps = stamps, self.store.stamps()
                changed = {key for key, stamp in stamps.items() if before.get(key) != stamp}
            self.wake_workers(changed_resources(changed))
            self._mirror(changed)
            self._follow_membership(changed)
            self._tell_peers_of_news(changed)

    def _follow_membership(self, changed):
        """A host that joined (or left) the cluster, a replica that joined
        here: pulled from, or worked on, at once rather than at the next round."""
        if any(key.startswith(IP_PREFIX) for key in changed):
            self._track_peers(self.worker_nursery, self.store.live_values(IP_PREFIX))
        mine = f"/{data_name(self.env.host)}"
        if not self.stopping and any(key.endswith(mine) for key in changed):
            self._track_workers(self.worker_nursery)

    def _tell_peers_of_news(self, changed):
        """A change of this host's own (a wish by marsadm, a worker's report),
        not its heartbeat, reaches the peers at once: each is told to pull
        now rather than at its next round, which stays the fallback for a
        lost message."""
        own = self.store.vector().get(self.env.host)
        if own == self.own_stamp:
            return
        self.own_stamp = own
        if changed and all(is_heartbeat(key) for key in changed):
            return
        self._tell_everyone()

    def _tell_everyone(self):
        for host in self.peer_scopes:
            self.to_tell.add(host)
            self._stir(host)

    def _heard_from(self, peer):
        heard = self.heard.pop(peer, None)
        if heard is not None:
            heard.set()

    def _stir(self, host):
        event = self.stirred.get(host)
        if event is not None:
            event.set()

    def _mirror(self, changed):
        """The symlink tree for the tools that read it (TreeMirror); a
        failure (a full state dir) is said once and tried again on the next
        change of everything."""
        try:
            if self.tree is None:
                self.tree = TreeMirror(self.env.state_dir, self.env.host)
                changed = None
            self.tree.update(self.store, changed)
            if self.tree_error:
                log.info("tree mirror: written again")
                self.tree_error = None
        except OSError as exc:
            if str(exc) != self.tree_error:
                log.warning("tree mirror: %s", exc)
                self.tree_error = str(exc)
            self.tree = None

    async def _watch_mounts(self):
        """A mount or unmount anywhere tells the primaries at once (their
        open count): the kernel marks the mount table as changed (POLLPRI),
        waited for in a thread that costs nothing meanwhile."""
        fd = os.open("/proc/self/mountinfo", os.O_RDONLY)
        try:
            poller = select.poll()
            poller.register(fd, select.POLLPRI | select.POLLERR)
            while True:
                os.lseek(fd, 0, os.SEEK_SET)
                while os.read(fd, 1 << 16):     # reading it resets the mark
                    pass
                self.mounts = None              # a change before the reset counts too
                await trio.to_thread.run_sync(poller.poll, None, abandon_on_cancel=True)
                for worker in list(self.workers.values()):
                    if worker.device is not None:
                        worker.news()
        finally:
            os.close(fd)

    def wake_workers(self, resources=None):
        """Tell the workers of `resources` (None: every worker) that their
        keys changed."""
        for res, worker in list(self.workers.items()):
            if resources is None or res in resources:
                worker.keys_changed()

    async def device_open_count(self, device, fresh):
        """How often `device` is in use: mounts and holders, else processes
        (other than marsd's own) holding it open. The looks are shared by
        all resources: the mounts until _watch_mounts sees the table change,
        processes (a look at every process's fds) up to
        PROCESS_LOOK_INTERVAL; `fresh` looks now (a device that should go,
        or was in use a moment ago)."""
        if fresh or self.mounts is None:
            self.mounts = mounted_devices()     # small procfs reads: cheaper than a thread
        count = device_users(device, self.mounts)
        if count:
            return count
        now = trio.current_time()
        holders, looked = self.holders
        if fresh or now - looked >= PROCESS_LOOK_INTERVAL:
            holders = await trio.to_thread.run_sync(processes_holding_devices,
                                                    self._device_pids())
            self.holders = (holders, now)
        return holders.get(os.path.realpath(device), 0)

    def _device_pids(self):
        """marsd's own device processes: they hold the devices' files open."""
        return {worker.device.process.pid for worker in self.workers.values()
                if worker.device is not None}

    async def _finish_when_workers_done(self, nursery):
        for worker in list(self.workers.values()):
            await worker.finished.wait()
        nursery.cancel_scope.cancel()

    def _local_disk(self, res):
        return self.store.value(data_key(res, self.env.host))

    def _size(self, res):
        return int(self.store.value(res_key(res, "size"), "0") or 0)

    async def _wait_for_membership(self):
        announced = False
        while True:
            address = self.store.value(ip_key(self.env.host))
            if address:
                return address
            if not announced:
                others = {key[len(IP_PREFIX):] for key in self.store.live_values(IP_PREFIX)}
                self._say_dropped_once(others)
                if not self.dropped_said:
                    log.info("host %s is not in a cluster yet; waiting for create-cluster or "
                             "join-cluster", self.env.host)
                announced = True
            await trio.sleep(self.round_interval)

    def _report_alive(self, value, durable=True):
        if self.store.value(ip_key(self.env.host)):
            self.store.write({time_key(self.env.host): f"{time.time():.3f}",
                              alive_key(self.env.host): value}, durable=durable)

    # --------------------------------------------------------------- server
    async def _serve(self, address, task_status=trio.TASK_STATUS_IGNORED):
        await trio.serve_tcp(self._handle, PORT_META, host=address, task_status=task_status)

    async def _handle(self, stream):
        try:
            remote = stream.socket.getpeername()
        except OSError:                     # reset before it was answered
            await stream.aclose()
            return
        if not self.handshakes.admit():
            await stream.aclose()
            return
        channel = net.Channel(stream, self.store.clock)
        try:
            try:
                with trio.fail_after(net.HANDSHAKE_TIMEOUT):
                    peer = await net.accept_handshake(channel, self.env.host, self.key)
            finally:
                self.handshakes.done()
            while True:
                header, payload = await channel.receive()
                reply = self._answer(peer, header, payload)
                await channel.send(*reply)
        except (net.ProtocolError, trio.TooSlowError) as exc:
            if not net.say_refused(PORT_META, stream, exc):
                log.debug("connection from %s:%d ended: %s", remote[0], remote[1], exc)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            log.debug("connection from %s ended: %s", remote, exc)
        except Exception:                   # noqa: BLE001 (a bug costs this connection, not marsd)
            log.exception("answering %s:%d failed; that connection is closed", remote[0], remote[1])
        finally:
            await stream.aclose()

    def _answer(self, peer, header, payload):
        self._heard_from(peer)
        reply = antientropy.answer(self.store, peer, header, payload)
        if reply is not None:
            if header.get("type") == "push" and reply[0].get("changed"):
                self._tell_everyone()   # a joiner's (a merge's) tuples: relayed at once
            return reply
        if header.get("type") == "news":
            # the peer changed something of its own: pull from it now
            self._stir(peer)
            return {"type": "ok"}, b""
        if header.get("type") == "open-count":
            # asked by `marsadm primary` on another member before a handover:
            # counted now, not as last reported (a container just stopped)
            worker = self.workers.get(str(header.get("res")))
            loop = worker.loop if worker is not None and worker.device is not None else None
            return {"type": "open-count",
                    "open_count": open_count(loop, self._device_pids()) if loop else 0}, b""
        if header.get("type") == "disk-size":
            # asked by `marsadm resize` on the primary: the size of the disk
            # now, not as last reported (an idle worker reports seconds late,
            # and the LV was grown a moment ago)
            res = str(header.get("res"))
            disk = self._local_disk(res)
            if not disk:
                return {"type": "error", "reason": f"{self.env.host} is not a member of {res}"}, b""
            try:
                size = disk_size(disk)
            except OSError as exc:
                return {"type": "error", "reason": f"the size of {disk} on {self.env.host} "
                        f"cannot be read: {exc.strerror or exc}"}, b""
            return {"type": "disk-size", "disk_size": size}, b""
        if header.get("type") == "release":
            # asked by a member about to become the primary of res (after it
            # gave this host its metadata): has this host taken the handover in?
            res = str(header.get("res"))
            worker = self.workers.get(res)
            return {"type": "release",
                    "device_up": worker is not None and (worker.device is not None or
                                                         worker.primary.starting),
                    "designated": self.store.value(res_key(res, "primary"))}, b""
        if header.get("type") == "list":
            # asked by `marsadm wait-resource up-to-date` on this host
            worker = self.workers.get(str(header.get("res")))
            if worker is not None:
                worker.list_now()
            return {"type": "ok"}, b""
        if header.get("type") == "split":
            try:
                apply_split(self.store, header.get("pieces") or [])
            except (MarsError, KeyError, TypeError) as exc:
                return {"type": "error", "reason": f"bad split plan: {exc}"}, b""
            log.info("cluster split by %s: now %s", peer, ", ".join(self.store.state().cluster_hosts()))
            return {"type": "ok"}, b""
        return {"type": "error", "reason": f"unknown request {header.get('type')!r}"}, b""

    # --------------------------------------------------------------- rounds
    async def _rounds(self, nursery):
        """Every round costs O(changes): only the small `ips/` subtree is
        read; the resource tree is scanned only when a new tombstone arrived,
        and tombstones are purged every PURGE_EVERY rounds."""
        round_number = 0
        while True:
            started = trio.current_time()
            self.poked.set()                # the store is looked at at least every round
            for worker in list(self.workers.values()):
                worker.wake()               # each idle worker steps once a round
            if started >= self.heartbeat_due:
                # Liveness counts in a window of a minute; with rounds of a
                # quarter second, a heartbeat each was a fsync'ed
                # transaction, its apply on every peer and their tree
                # mirrors' updates, four times a second on every host.
                self._report_alive("1", durable=False)
                self.heartbeat_due = started + HEARTBEAT_EVERY - self.round_interval / 2
            self._track_peers(nursery, self.store.live_values(IP_PREFIX))
            if not self.stopping:
                self._track_workers(nursery)
            if round_number % 5 == 0:
                await self._delete_replayed_logs()
            newest = self.store.newest_tombstone()
            if newest != self.tombstones_seen:
                # A deletion arrived: by a pull, a push, or marsadm (update-cluster).
                self.tombstones_seen = newest
                self._drop_keys_of_resources_not_held()
            if round_number % PURGE_EVERY == 0:
                self._purge_tombstones()
            round_number += 1
            await trio.sleep_until(started + self.round_interval)

    def _track_peers(self, nursery, ips):
        wanted = {key[len(IP_PREFIX):]: addr for key, addr in ips.items()}
        if wanted.pop(self.env.host, None) is None:
            self._say_dropped_once(wanted)
            wanted = {}             # no member: it pulls from nobody
        else:
            self.dropped_said = False
        for host, (address, scope) in list(self.peer_scopes.items()):
            if wanted.get(host) != address:
                scope.cancel()
                del self.peer_scopes[host]
                log.info("stopped pulling from %s (%s)", host, "left" if host not in wanted else "moved")
        for host, address in wanted.items():
            if host not in self.peer_scopes:
                scope = trio.CancelScope()
                self.peer_scopes[host] = (address, scope)
                nursery.start_soon(self._pull_from_peer, host, address, scope)

    def _say_dropped_once(self, others):
        item = self.store.get(ip_key(self.env.host))
        if self.dropped_said or not others or item is None or item.origin == self.env.host:
            return          # before a join, or its own leave-cluster (which forgets at once)
        self.dropped_said = True
        by = f" (by {item.origin.partition('@')[2] or item.origin})"
        log.warning("host %s is no member of the cluster of %s any more: it was dropped%s. "
                    "It pulls from nobody; `marsadm leave-cluster` here forgets that cluster, then "
                    "`marsadm join-cluster <peer>` brings it back", self.env.host,
                    ", ".join(sorted(others)), by)

    async def _pull_from_peer(self, host, address, scope):
        """Keep a connection to one peer and pull every round; reconnect with backoff."""
        local = self.store.value(ip_key(self.env.host))
        failures = 0

        def log_failure(retry_state):
            nonlocal failures
            failures += 1
            exc = retry_state.outcome.exception()
            level = logging.WARNING if failures in (1, 10) or failures % 100 == 0 else logging.DEBUG
            log.log(level, "%s (attempt %d)", exc, failures)

        async def backoff(seconds):
            # A peer that speaks to this host is up: it is tried again now.
            # Its news (a replica it just joined) waited out the backoff
            # that grew while it was down, and meanwhile this host, not
            # knowing the new member, deleted a logfile it needed.
            self.heard[host] = heard = trio.Event()
            with trio.move_on_after(seconds):
                await heard.wait()

        # Backoff of a round's half up to ten rounds, but never beyond 10 s:
        # with long rounds (news carries the changes) a peer that was not up
        # yet must not be left alone for minutes.
        retrying = tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception_type(PeerError),
            wait=tenacity.wait_exponential(multiplier=min(self.round_interval, 1.0) / 2,
                                           max=min(10 * self.round_interval, 10.0)),
            sleep=backoff, before_sleep=log_failure)
        with scope:
            async for attempt in retrying:
                with attempt:
                    try:
                        channel = await net.connect(address, PORT_META, self.env.host, self.key,
                                                    local_address=local, timeout=10.0,
                                                    clock=self.store.clock)
                    except PeerError:
                        raise
                    except Exception as exc:    # noqa: BLE001 (a peer's junk costs its connection)
                        raise PeerError(f"peer {host} ({address}): {type(exc).__name__}: "
                                        f"{exc}") from exc
                    if failures:
                        log.info("peer %s (%s) reachable again", host, address)
                        failures = 0
                    try:
                        await self._pulled_rounds(host, address, channel)
                    finally:
                        await channel.aclose()

    async def _pulled_rounds(self, host, address, channel):
        """`_pull_rounds`, where a peer's answer this host cannot read (junk
        that passed the handshake: a peer of another version, a bug there)
        costs that connection, retried with backoff, not marsd (it ended
        `run`). This host's own failures (its store, its disk) are not the
        peer's: they end marsd as before, which its service manager sees."""
        try:
            await self._pull_rounds(host, channel)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise PeerError(f"peer {host} ({address}): its answer is unusable here: "
                            f"{type(exc).__name__}: {exc}") from exc

    async def _pull_rounds(self, host, channel):
        """Pull from `host` every round, and at once when stirred: the peer
        said it has news, or this host has news to tell it (sent first, so
        that the peer pulls from here). Stirred pulls come at most every
        tenth of a round (at most STIRRED_GAP apart): a burst of changes is
        not a pull per change."""
        while True:
            started = trio.current_time()
            self.stirred[host] = trio.Event()
            if host in self.to_tell:
                self.to_tell.discard(host)
                try:
                    await net.request(channel, {"type": "news"}, timeout=10.0)
                except PeerError as exc:             # a marsd that does not know news
                    log.debug("news for %s: %s", host, exc)
            await antientropy.pull(channel, self.store, timeout=60.0)
            with trio.move_on_at(started + self.round_interval):
                await self.stirred[host].wait()
            await trio.sleep_until(started + min(self.round_interval / 10, STIRRED_GAP))

    def _track_workers(self, nursery):
        mine = {resource_of(key) for key in self.store.live_keys(RESOURCE_PREFIX, f"/{data_name(self.env.host)}")}
        for res in sorted(mine - set(self.workers)):
            worker = ResourceWorker(self, res)
            self.workers[res] = worker
            nursery.start_soon(self._run_worker, worker)
        self.keep_standby_ready()

    async def _run_worker(self, worker):
        try:
            await worker.run()
        finally:
            self.workers.pop(worker.res, None)
            # its last reports may have come after the drop that ended it
            self._drop_keys_of_resources_not_held()

    async def _delete_replayed_logs(self):
        """A logfile is deleted once every member's replay cursor is past it.
        In a thread: unlinking a logfile of 2 GiB took 0.45 s with a cold
        cache (0.08 s with its pages still dirty), and on the event loop
        that held up every resource's work and the fetch server."""
        state = self.store.state()
        for res, worker in list(self.workers.items()):
            lowest = lowest_needed_logfile(state, res)
            if lowest is not None:
                deleted = await trio.to_thread.run_sync(worker.delete_logs_before, lowest)
                if deleted:
                    log.info("%s: deleted %d logfiles every member has replayed", res, deleted)

    def _drop_keys_of_resources_not_held(self):
        """delete-resource removes the shared keys; each member removes its
        own. So do the replicas another host dropped (`--host=<this>
        leave-resource --force`, while this host was down): what this host
        reported of such a resource after the drop (its worker's last reports,
        or a stale cursor and version) would otherwise stay, e.g. a version
        of a logfile 1 that a resource created again by that name sees as a
        split brain with its own logfile 1."""
        live = self.store.live_values(RESOURCE_PREFIX)
        existing = {resource_of(key) for key in live if key == size_key(resource_of(key))}
        held = {resource_of(key) for key in live
                if key == data_key(resource_of(key), self.env.host)}
        stale = [key for key in live if owner_of(key) == self.env.host
                 and (resource_of(key) not in existing or resource_of(key) not in held)]
        if stale:
            log.info("resource deleted or left: dropping own keys %s", ", ".join(sorted(stale)))
            self.store.delete(stale)

    def _remove_logs_of_resources_not_held(self):
        """The directories (logs, the tree mirror's links) of resources this
        host holds no replica of, at the start, before a worker or a peer
        can touch one. A worker removes its replica's when it sees it left
        or deleted; one left while marsd was down (marsadm works without
        it), or while it stopped, kept them for ever: the state dir full
        of them, and a join-resource again refused over them. (A join
        writes its data- key only where the directory is gone.) Blocking."""
        for path in sorted(self.env.state_dir.glob(f"{RESOURCE_PREFIX}*")):
            res = path.name[len(RESOURCE_PREFIX):]
            if path.is_dir() and not path.is_symlink() and \
                    not self.store.value(data_key(res, self.env.host)):
                log.info("%s: no replica here: removing %s (left or deleted while marsd was "
                         "not running)", res, path)
                shutil.rmtree(path, ignore_errors=True)

    def _purge_tombstones(self):
        state = ClusterState(self.store.live_values(HEARTBEAT_PREFIX) | self.store.live_values(IP_PREFIX),
                             self.env.host)
        purged = self.store.purge_tombstones(int(self.tombstone_retention * 1e9),
                                             peers_a_purge_waits_for(state, self.tombstone_wait))
        if purged:
            log.debug("purged %d tombstones", purged)


def peers_a_purge_waits_for(state, wait, now=None):
    """The peers that must have seen a tombstone before it is purged: every
    member heard from within `wait` seconds, stopped or cut off or not — not
    only the live ones: a member down or cut off longer than the retention
    never learned of the deletions and kept the deleted keys for ever (a
    replica dropped by `--host=<it> leave-resource --force` while it was
    down still listed itself, `is-primary=1`; after `delete-resource
    --force` it kept the resource). One silent longer than `wait` (gone for
    good and never dropped from the cluster) holds them back no more."""
    now = time.time() if now is None else now
    return [host for host in state.peers()
            if (seen := state.last_seen(host)) is not None and now - seen <= wait]


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="marsd", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", help="host name (default MARS_HOST, else the short hostname)")
    parser.add_argument("--round-interval", type=float,
                        default=float(os.environ.get("MARS_ROUND_INTERVAL", "1.0")),
                        help="seconds between rounds (liveness, pulls); default 1.0")
    parser.add_argument("--tombstone-retention", type=float, default=3600.0,
                        help="seconds a tombstone is kept at least; default 3600")
    parser.add_argument("--tombstone-wait", type=float, default=TOMBSTONE_WAIT,
                        help="seconds a member not heard from holds tombstones back (they "
                             f"wait for it to have seen them); default {TOMBSTONE_WAIT:g}")
    parser.add_argument("--window", type=float, default=60.0,
                        help="a peer reporting within this many seconds is alive; default 60")
    parser.add_argument("--idle-step", type=float, default=IDLE_STEP_EVERY,
                        help="seconds an idle resource goes without news before it looks "
                             f"again; default {IDLE_STEP_EVERY:g}")
    parser.add_argument("--disk-sync-interval", type=float, default=DISK_SYNC_INTERVAL,
                        help="seconds a primary's device goes at most without syncing its disk "
                             "while it keeps logging (the replay cursor moves on at each sync; "
                             "a crash replays the log from there); at once when it goes quiet; "
                             f"default {DISK_SYNC_INTERVAL:g}")
    parser.add_argument("--data-tick", type=float, default=0.05,
                        help="seconds a resource's data plane idles between steps; default 0.05")
    parser.add_argument("--full-sync", action="store_true",
                        help="copy every chunk instead of comparing digests (fast full sync)")
    parser.add_argument("--metrics-port", type=int,
                        default=int(os.environ.get("MARS_METRICS_PORT", "7780")),
                        help="Prometheus metrics on the host's address; 0 disables; default 7780")
    parser.add_argument("--digest", default="crc32c", choices=("crc32c", "md5", "sha1"),
                        help="digest of log records; default crc32c")
    parser.add_argument("--compress", action="store_true", help="LZ4-compress log records")
    parser.add_argument("--rotate-size", type=int, default=256 << 20,
                        help="start a new logfile at this size in bytes; default 256 MiB")
    parser.add_argument("--emergency-free", type=int, default=64 << 20,
                        help="below this many free bytes in the state dir the primary stops "
                             "logging, below twice as many secondaries stop fetching and drop "
                             "their logs (emergency mode); default 64 MiB")
    parser.add_argument("--writeback-limit", type=int, default=DEFAULT_WRITEBACK_LIMIT,
                        help="bytes a device keeps logged but not yet written back to its "
                             "disk at most; writes wait beyond; default 64 MiB")
    parser.add_argument("--debug-hold-writeback", action="store_true",
                        help="debugging (recovery tests): devices never write back to their "
                             "disks; a crash then leaves every write to recovery")
    parser.add_argument("--debug-hold-sync-after", type=int, metavar="BYTES",
                        help="debugging (crash tests): a sync stops once this many bytes are "
                             "synced and recorded, and waits there (a marsd started without "
                             "it goes on)")
    parser.add_argument("--log-level", default=os.environ.get("MARS_LOG_LEVEL", "INFO"))
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s marsd[%(process)d] %(levelname)s %(message)s")
    try:
        env = HostEnv.from_environment(host=args.host)
        device_args = [f"--digest={args.digest}", f"--rotate-size={args.rotate_size}",
                       f"--emergency-free={args.emergency_free}",
                       f"--writeback-limit={args.writeback_limit}",
                       f"--log-level={args.log_level}"] + (["--compress"] if args.compress else []) \
            + (["--debug-hold-writeback"] if args.debug_hold_writeback else [])
        daemon = Daemon(env, args.round_interval, args.tombstone_retention, args.window,
                        data_tick=args.data_tick, fast_sync=not args.full_sync,
                        metrics_port=args.metrics_port, device_args=device_args,
                        emergency_free=args.emergency_free, idle_step=args.idle_step,
                        hold_sync_after=args.debug_hold_sync_after,
                        disk_sync_interval=args.disk_sync_interval,
                        tombstone_wait=args.tombstone_wait)
        trio.run(daemon.run)
    except* MarsError as group:
        for exc in group.exceptions:
            log.error("%s", exc)
        sys.exit(group.exceptions[0].exit_code)
    except* OSError as group:
        for exc in group.exceptions:
            log.error("cannot serve: %s", exc)
        sys.exit(1)


if __name__ == "__main__":
    main()

"""Resource metadata commands: create, join, leave, delete, systemd settings.

Each command checks everything against one snapshot of the store and only
then writes its keys in a single transaction, so a refused command changes
nothing. (The data plane that acts on these keys lives in marsd.)"""

import fcntl
import functools
import os
import re
import stat
import time

from mars.errors import MarsError, MarsTimeout
from mars.keys import (NO_PRIMARY, SYSTEMD_START_UNIT_NAME, SYSTEMD_STOP_UNIT_NAME,
                       SYSTEMD_WANT_NAME, TODO_SWITCHES, data_key, device_name, owner_of,
                       primary_key, res_key, resource_dir_name, size_key, syncstatus_name,
                       todo_key, todo_name)
from mars.names import check_host, check_resource, natural_order, parse_size

UNIT_RE = re.compile(r"[A-Za-z0-9@._:\\-]{1,255}")
SECTOR = 512        # bytes: a resource's size is a whole number of them (a block device's)


def disk_size(path):
    """Size in bytes of a block device or regular file, or MarsError."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise MarsError(f"disk {path} does not exist on this host: create the LV (or file) first") from None
    if not (stat.S_ISBLK(mode) or stat.S_ISREG(mode)):
        raise MarsError(f"disk {path} is neither a block device nor a regular file")
    with open(path, "rb") as handle:
        return handle.seek(0, os.SEEK_END)


LOCK_POLL = 0.05        # seconds between tries of the create/join lock at first ...
LOCK_POLL_MOST = 0.5    # ... growing to this


def one_at_a_time(verb):
    """Run the method of marsadm command `verb` while no other command so
    marked runs on this host: its checks read one snapshot of the store and
    its write is a second transaction, so two creates or joins at once (two
    operators, a retry) would both find the disk unused and both take it.

    The other one is waited for at most the Resources' `timeout` (None:
    as long as it takes), then MarsTimeout (marsadm's exit 3), nothing
    changed. (Waited for without end, a create or join hung on a stuck one
    (a marsadm stopped at a terminal, a slow disk) past every --timeout its
    caller gave, until Football's command timeout killed it without a word
    of why.)"""
    def decorate(command):
        @functools.wraps(command)
        def run(self, *args, **kwargs):
            path = self.env.state_dir / "resources.lock"
            with open(path, "a") as lock:
                if not _taken(lock, self.timeout):
                    raise MarsTimeout(
                        f"another create-resource or join-resource on {self.host} still runs "
                        f"(it holds {path}) after --timeout {self.timeout:g} s: nothing was "
                        f"changed; let it end (or find the marsadm that holds it: fuser "
                        f"{path}), then run {verb} again, or give a longer --timeout")
                return command(self, *args, **kwargs)
        return run
    return decorate


def _taken(lock, timeout):
    """Whether the flock of the open file `lock` was had within `timeout`
    seconds (None: it is waited for as long as it takes). Tried at once, then
    polled: flock itself waits only without end or not at all."""
    if timeout is None:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return True
    deadline = time.monotonic() + timeout
    pause = LOCK_POLL
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(pause, left))
            pause = min(pause * 2, LOCK_POLL_MOST)


class HostCommands:
    """What marsadm's command groups share: the host, its store, --dry-run."""

    def __init__(self, env, store, dry_run=False, echo=print):
        self.env = env
        self.store = store
        self.dry_run = dry_run
        self.echo = echo
        self.host = env.host

    def _write(self, changes, rewrite_unchanged=False, for_others=False):
        """Write `changes` in one transaction. Unchanged values are skipped,
        unless `rewrite_unchanged`: then they get a fresh stamp too, so that
        they win over older writes of other hosts still on their way here.
        `for_others`: keys of other hosts too, written for them (Store.write)."""
        written = self.store.write(changes, dry_run=self.dry_run,
                                   rewrite_unchanged=rewrite_unchanged, for_others=for_others)
        if self.dry_run:
            for item in written:
                self.echo(f"would write {item.key} = {item.value}")
        return written


class Resources(HostCommands):
    """Resource metadata operations of one host. `timeout`: seconds a create
    or join waits for another one on this host (marsadm's --timeout; None
    or negative: as long as it takes)."""

    def __init__(self, env, store, dry_run=False, echo=print, timeout=None):
        super().__init__(env, store, dry_run=dry_run, echo=echo)
        self.timeout = None if timeout is None or timeout < 0 else timeout

    def _state_in_cluster(self):
        state = self.store.state()
        if not state.in_cluster():
            raise MarsError(f"host {self.host} is not a cluster member: create-cluster or join-cluster first")
        return state

    def _check_disk_unused(self, state, disk, res):
        user = state.disk_owner(disk)
        if user is not None and user != res:
            raise MarsError(f"disk {disk} is already the disk of resource {user} on {self.host}")

    def _member_keys(self, res, disk, synced_bytes):
        changes = {data_key(res, self.host): disk,
                   res_key(res, device_name(self.host)): res,
                   res_key(res, syncstatus_name(self.host)): synced_bytes}
        changes.update({todo_key(res, self.host, switch): 1 for switch in TODO_SWITCHES})
        return changes

    @one_at_a_time("create-resource")
    def create(self, res, disk, size_text=None, force=False):
        """Create a resource with this host as its designated primary."""
        check_resource(res)
        state = self._state_in_cluster()
        if state.exists(res):
            raise MarsError(f"resource {res} already exists (members: {', '.join(state.members(res))})")
        leftover_keys = [key for key in self.store.live_values(res_key(res, ""))
                         if owner_of(key) is not None]
        leftovers = sorted({owner_of(key) for key in leftover_keys})
        if leftovers and not force:
            # A deleted resource's members drop their own keys when their marsd
            # sees the deletion; until then they would count as members of the new one.
            raise MarsError(
                f"resource {res} was deleted but {', '.join(leftovers)} still hold keys of it: "
                "wait until their marsd has dropped them (marsadm wait-cluster), "
                "or --force to create it anyway (dropping them)")
        if not force:
            self._check_no_old_logs(res)
        disk = os.path.abspath(disk)
        available = disk_size(disk)
        if available == 0:
            raise MarsError(f"disk {disk} is empty (0 bytes): give {res} a disk with space")
        if size_text:
            size = parse_size(size_text)
            if size % SECTOR:
                raise MarsError(
                    f"size {size_text} ({size} bytes) is no whole number of {SECTOR}-byte "
                    f"sectors: give a multiple of {SECTOR} (e.g. {size - size % SECTOR or SECTOR} "
                    f"or {size - size % SECTOR + SECTOR}); nothing changed")
        else:
            size = available - available % SECTOR      # a tail of less than a sector: unused
            if size == 0:
                raise MarsError(f"disk {disk} has {available} bytes, less than one {SECTOR}-byte "
                                f"sector: give {res} a larger disk; nothing changed")
        if size > available:
            raise MarsError(f"disk {disk} has {available} bytes, smaller than the requested size {size}")
        self._check_disk_unused(state, disk, res)
        # The keys of an earlier incarnation's members go (as their drop by
        # `--host=<it> leave-resource --force`): kept, a member down through
        # the delete counted, once back, as one of the new resource with the
        # old data (its tombstones were superseded by the new keys).
        changes = {key: None for key in leftover_keys}
        changes.update({size_key(res): size, primary_key(res): self.host})
        changes.update(self._member_keys(res, disk, size))
        return self._write(changes, for_others=True)

    @one_at_a_time("join-resource")
    def join(self, res, disk):
        """Become a member (replica) of an existing resource."""
        state = self._state_in_cluster()
        state.require(res)
        disk = os.path.abspath(disk)
        current = state.disk(res)
        if current:
            if current == disk:
                self.echo(f"{self.host} is already a member of {res} with disk {disk}; nothing to do")
                return []
            raise MarsError(f"{self.host} is already a member of {res} with disk {current}, not {disk}")
        self._check_no_old_logs(res)
        size = state.size(res)
        available = disk_size(disk)
        if available < size:
            raise MarsError(
                f"disk {disk} is too small for {res}: it has {available} bytes, the resource "
                f"needs {size}; enlarge the disk (lvresize) first")
        self._check_disk_unused(state, disk, res)
        return self._write(self._member_keys(res, disk, 0))

    def _check_no_old_logs(self, res):
        """A replica that left (or a resource deleted) keeps its logfiles
        until this host's marsd has seen it and removed them; a new replica
        of the same name must not start among them (the logs of another
        incarnation have the same names and would be replayed)."""
        directory = os.path.join(self.env.state_dir, resource_dir_name(res))
        if os.path.isdir(directory):
            raise MarsError(
                f"{directory} still holds logs of an earlier {res} on {self.host}: marsd removes "
                f"them once it has seen that replica leave (marsadm wait-cluster); if marsd is "
                "not running here, start it, or remove that directory")

    def _holders(self, res):
        """Hosts that still hold a part of `res` (kernel marsadm's
        `get_total_peers`: a data-, device- or replay- key), in natural order."""
        holders = {owner_of(key) for key in self.store.live_values(res_key(res, ""))
                   if key[len(res_key(res, "")):].split("-", 1)[0] in ("data", "device", "replay")}
        return sorted(holders - {None}, key=natural_order)

    def _own_keys(self, res):
        prefix = res_key(res, "")
        return [key for key in self.store.live_values(prefix) if owner_of(key) == self.host]

    def leave(self, names, force=False):
        """Stop being a member of each of `names`, all or none. As kernel
        MARS's (`leave_res_phase0`), without `force` the designated primary
        may not leave, and a replica leaves only once it is down (every
        switch off: `marsadm down <res>` first)."""
        state = self._state_in_cluster()
        changes, undesignated = {}, []
        for res in names:
            state.require(res)
            if not state.disk(res):
                raise MarsError(
                    f"{self.host} is not a member of {res} (members: {', '.join(state.members(res))})")
            if state.designated_primary(res) == self.host and not force:
                raise MarsError(
                    f"{self.host} is the designated primary of {res}: hand over first "
                    f"(marsadm primary {res} on another member), or delete-resource")
            on = [switch for switch in TODO_SWITCHES
                  if state.resource_value(res, todo_name(self.host, switch), "1") != "0"]
            if on and not force:
                raise MarsError(f"{res} is not down on {self.host} ({', '.join(on)} on): "
                                f"`marsadm down {res}` first, then leave-resource (or --force); "
                                "nothing changed")
            changes.update({key: None for key in self._own_keys(res)})
            if state.designated_primary(res) == self.host:
                # forced: no member any more, it must not stay designated
                # (replicas would follow it, a handover wait for it)
                changes[primary_key(res)] = NO_PRIMARY
                undesignated.append(res)
        written = self._write(changes)
        for res in [] if self.dry_run else undesignated:
            self.echo(
                f"{self.host} was the designated primary of {res}: none is designated now. "
                f"Make another member the primary, on it: `marsadm primary {res}`, or, should "
                f"that refuse, `marsadm pause-fetch {res}; marsadm primary --force {res}; "
                f"marsadm resume-fetch {res}`")
        return written

    def delete(self, names, force=False):
        """Remove each of `names` everywhere, all or none. Other members drop
        their own keys when their marsd sees the size gone.

        As kernel marsadm (`delete_res_phase1`), a resource that still has
        hosts with a replica, a device or a replay cursor (this host too) is
        not deleted without `force`: they leave-resource first."""
        state = self._state_in_cluster()
        changes = {}
        for res in names:
            state.require(res)
            holders = self._holders(res)
            if holders and not force:
                # the way for a host that is down, too: after the deletion,
                # its keys stay until it is back, and a new `res` is refused
                # (forced, it drops them: see `create`)
                raise MarsError(
                    f"resource '{res}' is not empty: first remove the hosts '{','.join(holders)}' "
                    "via leave-resource (on each of them; for one that is down, here: "
                    f"marsadm --host=<it> leave-resource --force {res}), or --force to delete "
                    "it anyway; nothing changed")
            shared = [key for key in self.store.live_values(res_key(res, "")) if owner_of(key) is None]
            changes.update({key: None for key in shared + self._own_keys(res)})
        return self._write(changes)

    def set_systemd_unit(self, res, start_unit, stop_unit=None):
        """Record the units; as kernel MARS, the want goes to the designated
        primary (it runs them), and an empty start unit removes the units
        and the want (nothing is started or stopped for `res` any more)."""
        state = self._state_in_cluster()
        state.require(res)
        keys = [res_key(res, name) for name in (SYSTEMD_START_UNIT_NAME, SYSTEMD_STOP_UNIT_NAME,
                                                  SYSTEMD_WANT_NAME)]
        if start_unit == "":
            return self._write(dict.fromkeys(keys))
        stop_unit = stop_unit or start_unit
        for unit in (start_unit, stop_unit):
            if not UNIT_RE.fullmatch(unit):
                raise MarsError(f"invalid systemd unit name {unit!r}")
        changes = {keys[0]: start_unit, keys[1]: stop_unit}
        designated = state.designated_primary(res)
        if designated not in (None, NO_PRIMARY):
            changes[keys[2]] = designated
        # Rewritten even when unchanged, as the kernel's set_link does: the
        # fresh stamp makes this the newest wish, over another host's older one.
        return self._write(changes, rewrite_unchanged=True)

    def get_systemd_unit(self, res):
        state = self.store.state()
        state.require(res)
        start = state.resource_value(res, SYSTEMD_START_UNIT_NAME)
        stop = state.resource_value(res, SYSTEMD_STOP_UNIT_NAME)
        return f"{start} {stop}" if start else ""

    def set_systemd_want(self, res, host=None, force=False):
        """Record where `res`'s units should run. As kernel MARS: refused
        while no units are recorded (nothing would follow it), unless
        `force`."""
        state = self._state_in_cluster()
        state.require(res)
        host = host or self.host
        if host not in ("(none)", "none"):
            check_host(host)
            if host not in state.host_ips():
                raise MarsError(f"host {host} is not a cluster member ({', '.join(state.cluster_hosts())})")
        else:
            host = NO_PRIMARY
        if not force and state.systemd_units(res) is None:
            raise MarsError(f"{res} has no systemd units, so nothing would follow a want: record "
                            f"them first (`marsadm set-systemd-unit {res} <start unit> "
                            "[<stop unit>]`), or --force; nothing changed")
        return self._write({res_key(res, SYSTEMD_WANT_NAME): host}, rewrite_unchanged=True)

    def get_systemd_want(self, res):
        """The want, `(none)` for a stopped stack; as kernel MARS, empty
        while no units are recorded (a want is then of no effect)."""
        state = self.store.state()
        state.require(res)
        if state.systemd_units(res) is None:
            return ""
        return state.resource_value(res, SYSTEMD_WANT_NAME) or ""

"""Data-plane commands of marsadm: roles, switches, invalidate, resize, waits,
log housekeeping.

As everywhere in marsadm: check everything against one snapshot first, then
write the wish (the *todo* side) in one transaction, then wait for marsd to
report the *actual* side, or fail after `--timeout` saying what it waits for.
A refused command changes nothing."""

import fcntl
import math
import os
import sys
import time

from mars.dataviews import WAIT_VIEWS, Runtime, is_consistent, sync_done
from mars.errors import MarsError, MarsTimeout
from mars.keys import (GROWN_FROM_NAME, NO_PRIMARY, SYSTEMD_WANT_NAME, actual_name,
                       global_pause_name, primary_key, res_key, resource_dir_name,
                       resync_changes, size_key, todo_key, todo_name)
from mars.logfile import list_logfiles, parse_logfile_name
from mars.names import parse_size
from mars.replay import lowest_needed_logfile
from mars.resources import SECTOR, HostCommands

PAUSABLE = {"sync": "sync", "fetch": "connect", "replay": "allow-replay"}


def daemon_pid(env):
    """The pid of the marsd that holds this host's pid file lock, or None
    when none runs (0 when it runs but its pid is not written yet)."""
    try:
        fd = os.open(env.pid_path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    except BlockingIOError:
        written = os.read(fd, 32).decode(errors="replace").strip()
        return int(written) if written.isdigit() else 0
    finally:
        os.close(fd)


def daemon_running(env):
    """True while a marsd holds this host's pid file lock."""
    return daemon_pid(env) is not None


def _want_moved(res, want, to):
    """{systemd-want key: `to`} where `res`'s want (`want`) is set, also to
    `(none)`; {} where it is not: as kernel MARS's `primary` and
    `secondary`, which move a set want along and leave an unset one."""
    return {} if want is None else {res_key(res, SYSTEMD_WANT_NAME): to}


def device_open(host, res, count, command="primary"):
    """Why a planned handover away from `host` (or `command`: secondary,
    down, detach) cannot go, and what to do."""
    return (f"{host} has the device of {res} open (open count {count}): stop the container "
            f"there and unmount it, then run `marsadm {command} {res}` again")

POLL_FIRST = 0.01                # seconds before a wait's first poll again (see wait_for)
SAY_WAITING_AFTER = 1.0          # seconds into a wait before marsd's reason is said (once)


# the kernel's names for a switch in `wait-resource` (its `wait_cond` tables)
KERNEL_SWITCH_NAMES = {"attached": "attach", "replaying": "replay", "fetching": "fetch",
                       "copy": "fetch", "copying": "fetch", "syncing": "sync", "connect": "fetch"}


def kernel_condition(condition):
    """`reached(state, res, status)` of a `wait-resource` condition in the
    kernel's grammar (`wait_cond`): [is-|has-|todo-]<switch>[-on|-1|-off|-0],
    the actual state with is-/has- (there also `device`), else the admin's
    switch; None when `condition` is not one."""
    text = condition
    actual = text.startswith(("is-", "has-"))
    text = text.split("-", 1)[1] if actual else text.removeprefix("todo-")
    on = not text.endswith(("-off", "-0"))
    text = text.rsplit("-", 1)[0] if text.endswith(("-on", "-1", "-off", "-0")) else text
    text = KERNEL_SWITCH_NAMES.get(text, text)
    if actual and text == "device":
        return lambda state, res, status: device_up(status) == on
    view = WAIT_VIEWS.get(f"wait-{'is' if actual else 'todo'}-{text}-{'on' if on else 'off'}")
    return view[0] if view else None


def device_up(status):
    return bool(status.get("is_primary") and status.get("loop"))


class Roles(HostCommands):
    """Data-plane operations of one host."""

    def __init__(self, env, store, timeout=600.0, window=60.0, dry_run=False, echo=print):
        super().__init__(env, store, dry_run, echo)
        self.timeout = float("inf") if timeout < 0 else timeout
        self.window = window

    # ---------------------------------------------------------------- helpers
    def runtime(self):
        pid = daemon_pid(self.env)
        return Runtime(self.env.state_dir, self.window, pid is not None, daemon_pid=pid)

    def _member_state(self, res):
        state = self.store.state()
        state.require(res)
        if not state.disk(res):
            raise MarsError(f"{self.host} is not a member of {res} "
                            f"(members: {', '.join(state.members(res))}): join-resource first")
        return state

    def wait_for(self, res, condition, what, interval=0.1, failed=None, pending=None):
        """Poll `condition(state, status)` until true; MarsTimeout naming
        `what` and why it is not so (`pending(state)`, else marsd's own
        account of what it waits for). `failed(state, status)` returning a
        reason ends the wait at once with MarsError.
        The polls begin at 10 ms and slow down to `interval`: a handover is
        done in a few tenths of a second, and a fixed 0.1 s poll added 50 ms
        to it on average (inside the container's downtime)."""
        if self.dry_run:
            return
        started = time.monotonic()
        deadline = started + self.timeout
        pause = min(POLL_FIRST, interval)
        said = waiting_said = None
        while True:
            state = self.store.state()
            status = self.runtime().status(res)
            if condition(state, status):
                return
            reason = failed and failed(state, status)
            if reason:
                raise MarsError(f"{what} of {res} failed: {reason}")
            waiting = time.monotonic() - started >= SAY_WAITING_AFTER and \
                ((pending and pending(state)) or status.get("waiting"))
            if waiting and waiting != waiting_said:
                # a wait that does not end by itself says why, not only at its timeout
                waiting_said = waiting
                bound = "no --timeout" if math.isinf(self.timeout) else \
                    f"until --timeout, {self.timeout:g}s"
                print(f"marsadm: {res}: waiting for {what}: {waiting} ({bound})",
                      file=sys.stderr, flush=True)
            split_brain = status.get("split_brain")
            if split_brain and split_brain != said:
                # it does not resolve by itself: said at once, not only at the timeout
                said = split_brain
                print(f"marsadm: {res}: split brain ({split_brain}): waiting for {what} goes on "
                      f"until it is resolved (`marsadm invalidate {res}` on the replica whose "
                      f"writes are to be dropped) or --timeout", file=sys.stderr, flush=True)
            if time.monotonic() >= deadline:
                reason = status.get("waiting") or status.get("error") or \
                    status.get("split_brain")
                if not daemon_running(self.env):
                    reason = f"marsd is not running on {self.host}"
                if pending:
                    reason = "; ".join(filter(None, [pending(state), reason]))
                raise MarsTimeout(f"timed out after {self.timeout:g}s waiting for {what} of {res}"
                                  + (f": {reason}" if reason else ""))
            time.sleep(pause)
            pause = min(pause * 1.5, interval)

    # ------------------------------------------------------------------ roles
    def primary(self, res, force=False, ignore_sync=False):
        """Make this host the primary of `res` (handover, MARS.md)."""
        from mars.history import history_conflict
        state = self._member_state(res)
        if force and state.resource_value(res, todo_name(self.host, "connect"), "1") == "1":
            # as kernel MARS's marsadm (its primary_phase0): a replica that
            # still fetches may go on taking in the old primary's log
            raise MarsError(f"cannot take {res} over by force on {self.host} while it fetches: "
                            f"`marsadm pause-fetch {res}` first (and `marsadm resume-fetch "
                            f"{res}` once it is the primary); nothing changed")
        if state.designated_primary(res) == self.host and not force and \
                state.is_actual_primary(res, self.host) and \
                self.runtime().status(res).get("is_primary"):
            self.echo(f"{self.host} is already the primary of {res}")
            return
        if not force:
            size, done = state.size(res), sync_done(state, res)
            if done < size and not ignore_sync:
                raise MarsError(
                    f"sync of {res} on {self.host} is incomplete ({done} of {size} bytes): wait "
                    f"until view-sync-rest is 0, or --ignore-sync (inconsistent data!)")
            if not is_consistent(state, res) and not ignore_sync:
                raise MarsError(f"{res} on {self.host} is not consistent yet (replay has not passed "
                                "the sync start position): wait, or --ignore-sync")
            conflict = history_conflict(state, res, state.members(res))
            if conflict:
                raise MarsError(f"split brain on {res}: {conflict}; resolve it first "
                                "(invalidate on the losing side), or --force")
            others = [host for host in state.members(res) if host != self.host and (
                state.designated_primary(res) == host or
                state.is_actual_primary(res, host))]
            dead = [host for host in others if not state.is_alive(host, self.window)]
            if dead:
                raise MarsError(
                    f"the old primary {', '.join(dead)} of {res} is unreachable (no liveness report "
                    f"within {self.window:g}s): a planned handover needs it; use --force to take "
                    "over anyway (split brain possible)")
            # With systemd units recorded, the old primary stops its stop unit,
            # which frees the device (the kernel's systemd integration).
            for host in others if not state.systemd_units(res) else ():
                count, silent = self._open_count(state, res, host)
                if count and silent:
                    # a partition: what it said last may be old (stopped and
                    # unmounted since), and it cannot let go while cut off
                    raise MarsError(
                        f"{host} does not answer ({silent}); its last report says the device "
                        f"of {res} is open there (open count {count}): a planned handover "
                        f"needs it closed. Once {host} answers, run `marsadm primary {res}` "
                        "again (or --force to take over without it: split brain possible); "
                        "nothing changed")
                if count:
                    raise MarsError(f"{device_open(host, res, count)}; nothing changed")
        previous = state.designated_primary(res)
        changes = {primary_key(res): self.host,
                   todo_key(res, self.host, "attach"): 1}
        want = state.resource_value(res, SYSTEMD_WANT_NAME, None)
        changes.update(_want_moved(res, want, self.host))
        if force:
            changes[todo_key(res, self.host, "force-primary")] = 1
        elif state.wishes_force(res, self.host):
            # left over from a --force the device did not consume (it was up
            # already): it must not skip the waits of this planned handover
            changes[todo_key(res, self.host, "force-primary")] = 0
        # an operator's wish on shared keys is written also where this host
        # has the value already: a fresh stamp, so that it wins over an older
        # wish of another host still on its way here (after a partition)
        self._write(changes, rewrite_unchanged=True)
        try:
            self.wait_for(res, lambda st, status: status.get("is_primary") and
                          st.is_actual_primary(res, self.host),
                          "the device to come up",
                          failed=lambda st, status: status.get("device_refused") or
                          self._handover_refused(st, res, previous))
        except MarsTimeout as timeout:
            raise MarsTimeout(f"{timeout}; {self._undo_primary(res, previous, want)}") from None
        except MarsError as refused:
            # The device cannot come up here: the wish goes back as it was,
            # --force included, so that nothing is left to act on it later.
            self._write({primary_key(res): previous or NO_PRIMARY,
                         todo_key(res, self.host, "force-primary"): 0,
                         **_want_moved(res, want, want)})
            raise MarsError(f"{refused}; nothing changed: the designated primary of {res} is "
                            f"{previous or NO_PRIMARY} again") from None

    def _handover_refused(self, state, res, previous):
        """The old primary put the wish back: its device was in use."""
        if state.designated_primary(res) == previous and previous not in (None, self.host):
            count = state.resource_value(res, actual_name(previous, "open-count"), "?")
            return f"{device_open(previous, res, count)} (it refused the handover)"
        return None

    def _open_count(self, state, res, host):
        """(how often `host`'s device of `res` is open, why the host did not
        answer or ''). The metadata shows the count as of the host's last
        report; a positive one is asked of the host itself (within
        --timeout, at most 10 s), since a container stopped a moment ago may
        still count there; a host that does not answer leaves the report."""
        if not state.is_actual_primary(res, host):
            return 0, ""
        reported = int(state.resource_value(res, actual_name(host, "open-count"), "0") or 0)
        if not reported:
            return 0, ""
        try:
            reply = self._ask(host, {"type": "open-count", "res": res},
                              timeout=min(10.0, self.timeout))
            return int(reply.get("open_count", reported)), ""
        except MarsError as error:
            return reported, str(error) or type(error).__name__
        except (ValueError, TypeError):
            return reported, ""

    def _ask(self, host, header, timeout=10.0):
        """One request to `host`'s marsd (Cluster.ask): its reply header."""
        from mars.cluster import Cluster       # the network: only when it matters
        return Cluster(self.env, self.store).ask(host, header, timeout=timeout)

    def _undo_primary(self, res, previous, want):
        """After a handover timed out: while the old primary still has its
        device up, the wish goes back to it, the systemd want (`want`) too
        (nothing changed: a want left here would stop the old primary's
        units); else the handover is under way and only the rest of it is
        pending."""
        state = self.store.state()
        if previous not in (None, self.host) and \
                state.is_actual_primary(res, previous) and \
                state.designated_primary(res) == self.host:
            self._write({primary_key(res): previous, **_want_moved(res, want, want)})
            return f"{previous} still has the device up: the primary of {res} is {previous} again"
        return (f"still pending: {self.host} becomes the primary of {res} when that is done; "
                f"to undo, run `marsadm primary {res}` on {previous or 'the host that should be'}")

    def _refuse_while_open(self, state, res, host, command, force):
        """As kernel MARS: `command` (secondary, down, detach), which takes
        the device on `host` down, is refused while it is open there and
        no systemd units are recorded to stop its users first; --force
        records the wish anyway (the device goes down once it is closed)."""
        if force or state.systemd_units(res) is not None or host is None:
            return
        count, silent = self._open_count(state, res, host)
        if count:
            raise MarsError(f"{device_open(host, res, count, command)} (or --force: the wish is "
                            "recorded now and the device goes down once it is closed)"
                            + (f"; {host} does not answer ({silent}), its last report counts"
                               if silent else "") + "; nothing changed")

    def secondary(self, res, force=False):
        state = self._member_state(res)
        self._refuse_while_open(state, res, state.designated_primary(res), "secondary", force)
        self._write({primary_key(res): NO_PRIMARY,
                     **_want_moved(res, state.resource_value(res, SYSTEMD_WANT_NAME, None),
                                   NO_PRIMARY)}, rewrite_unchanged=True)
        self.wait_for(res, lambda st, status: not status.get("is_primary"),
                      "the device to go down (stop the container, unmount)")

    def set_switches(self, res, switches, value, wait_device_down=False, command=None,
                     force=False):
        """`command` (down, detach) with `wait_device_down`: refused while
        the device is open here, unless `force` (_refuse_while_open)."""
        state = self._member_state(res)
        if wait_device_down:
            self._refuse_while_open(state, res, self.host, command, force)
        self._write({todo_key(res, self.host, name): value for name in switches})
        if wait_device_down:
            try:
                self.wait_for(res, lambda st, status: not status.get("is_primary"),
                              "the device to go down (stop the container, unmount)")
            except MarsTimeout as timeout:
                raise MarsTimeout(f"{timeout}; the wish stays recorded: the device goes down "
                                  f"once it is closed (`marsadm up {res}` takes the wish "
                                  "back)") from None

    def pause(self, res, what, value, scope):
        """pause-/resume-{sync,fetch,replay}[-local|-global]."""
        self._member_state(res)
        if scope == "global":
            # (a fresh stamp also where unchanged here: the `primary` wish's reason)
            self._write({res_key(res, global_pause_name(what)): 0 if value else 1},
                        rewrite_unchanged=True)
        else:
            self._write({todo_key(res, self.host, PAUSABLE[what]): value})

    def invalidate(self, res):
        """Throw away this replica's contents and sync it anew from the primary."""
        state = self._member_state(res)
        if state.designated_primary(res) == self.host or \
                state.is_actual_primary(res, self.host):
            raise MarsError(f"{self.host} is the primary of {res}: invalidate a secondary, "
                            "or make another host primary first")
        self._write(resync_changes(self.store.live_values(res_key(res, "")), res, self.host))

    def resize(self, res, size_text=None):
        """Grow `res` to `size_text`, by default to the smallest member's
        disk's whole 512-byte sectors, as the kernel's marsadm does: a size
        of no whole sectors, one beyond the smallest disk and a shrink are
        refused; a size `res` already has is not an error
        (exit 0, saying so). The disk sizes are every member's as they are
        now, asked of its marsd: a resize must not act on a guess."""
        state = self._member_state(res)
        if state.designated_primary(res) != self.host:
            raise MarsError(f"resize {res} on its primary ({state.designated_primary(res) or 'none'})")
        current = state.size(res)
        asked = parse_size(size_text) if size_text else None
        if asked is not None and asked % SECTOR:
            raise MarsError(
                f"size {size_text} ({asked} bytes) is no whole number of {SECTOR}-byte "
                f"sectors: give a multiple of {SECTOR} (e.g. {asked - asked % SECTOR or SECTOR} "
                f"or {asked - asked % SECTOR + SECTOR}); nothing changed")
        if asked is not None and asked < current:
            raise MarsError(f"{res} is {current} bytes; shrinking to {asked} is not supported "
                            "(MARS grows only)")
        sizes = self._disk_sizes_now(state, res)
        smallest = min(sizes.values())
        new = asked
        if asked is None:
            # a disk's tail of less than a sector stays unused (as create-resource's;
            # a size of no whole sectors from before then is kept)
            new = max(smallest - smallest % SECTOR, min(smallest, current))
        if new < current:
            raise MarsError(f"the disk of {self._hosts_with(sizes, smallest)} ({smallest} bytes) "
                            f"is smaller than {res} ({current} bytes): lvresize it to at least "
                            f"{current} bytes first")
        small = {host: size for host, size in sizes.items() if size < new}
        if small:
            raise MarsError(f"disks too small for {new} bytes on " +
                            ", ".join(f"{h} ({s})" for h, s in sorted(small.items())) +
                            ": lvresize them first")
        if new == current:
            if asked is None:
                whole = f", whole {SECTOR}-byte sectors only" if smallest % SECTOR else ""
                self.echo(f"{res} already has {current} bytes, as much as the smallest disk "
                          f"allows ({self._hosts_with(sizes, smallest)}: {smallest} bytes"
                          f"{whole}): grow the disks of all members first")
            else:
                self.echo(f"{res} already has {current} bytes")
            return
        self._write({size_key(res): new, res_key(res, GROWN_FROM_NAME): current})
        if state.is_actual_primary(res, self.host):
            self.wait_for(res, lambda st, status: status.get("device_size") == new,
                          "the device to grow")

    def _disk_sizes_now(self, state, res):
        """{member: size of its disk of `res` now}, asked of each member's
        marsd. What marsd reports (`actual-<host>/disk-size`) comes a step of
        its worker late, and an idle worker steps every few seconds: right
        after lvresize it still shows the old size."""
        sizes = {}
        for host in state.members(res):
            try:
                reply = self._ask(host, {"type": "disk-size", "res": res})
            except MarsError as exc:
                raise MarsError(f"cannot ask {host} for the size of its disk of {res} ({exc}): "
                                f"marsd on {host} must run to resize; nothing changed") from None
            size = reply.get("disk_size")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise MarsError(f"{host} answered no size of its disk of {res} ({reply!r}); "
                                "nothing changed")
            sizes[host] = size
        return sizes

    @staticmethod
    def _hosts_with(sizes, size):
        return ", ".join(sorted(host for host, each in sizes.items() if each == size))

    # ------------------------------------------------------------------ waits
    def wait_umount(self, res):
        self._member_state(res)
        # no status (marsd down): the open count is unknown, a stale mount may hold the device
        self.wait_for(res, lambda st, status: bool(status) and not status.get("open_count"),
                      "the device to be closed (unmounted)")

    def wait_want_followed(self, res):
        """As kernel MARS's set-systemd-want, its second phase: wait until
        the unit stack followed the want. `(none)`: no member has the
        device open any more (its stop unit ran); a host: the device is
        open there (its start unit ran). A host whose device is not up has
        nothing to start yet (its marsd starts the units once it is), and a
        member that does not answer is not waited for (the kernel's
        "livelock avoidance"): each said, not waited for."""
        state = self.store.state()
        want = state.resource_value(res, SYSTEMD_WANT_NAME, None)
        if want is None or state.systemd_units(res) is None:
            return
        said = set()

        def answers(st, host):
            if st.is_alive(host, self.window):
                return True
            if host not in said:
                said.add(host)
                print(f"marsadm: {res}: {host} does not answer (no liveness report within "
                      f"{self.window:g}s): not waited for", file=sys.stderr, flush=True)
            return False

        def open_on(st, hosts):
            counts = {host: st.resource_value(res, actual_name(host, "open-count"), "0")
                      for host in hosts if st.is_actual_primary(res, host)}
            return {host: count for host, count in counts.items()
                    if count not in ("", "0") and answers(st, host)}

        if want == NO_PRIMARY:
            self.wait_for(res, lambda st, status: not open_on(st, st.members(res)),
                          "its units to stop on every member",
                          pending=lambda st: "the device is open on " + ", ".join(
                              f"{host} (open count {count})"
                              for host, count in open_on(st, st.members(res)).items()))
            return
        if not state.is_actual_primary(res, want):
            print(f"marsadm: {res}: the device is not up on {want}: its units start there "
                  "once it is; not waited for", file=sys.stderr, flush=True)
            return
        self.wait_for(res, lambda st, status: open_on(st, [want]) or not answers(st, want),
                      f"its units to start on {want}",
                      pending=lambda st: f"the device is not open on {want} yet")

    WAIT_CONDITIONS = {
        "up-to-date": lambda st, status, res: bool(status) and not status.get("work_rest") and
        is_consistent(st, res) and not status.get("syncing"),
        "attach": lambda st, status, res: bool(status.get("attached")),
        "primary": lambda st, status, res: bool(status.get("is_primary")),
        "device": lambda st, status, res: device_up(status),
        "consistent": lambda st, status, res: is_consistent(st, res),
    }

    def wait_resource(self, res, condition="up-to-date"):
        """Wait until `condition` holds: ours ([not-]up-to-date, attach,
        primary, device, consistent) or the kernel's grammar (`wait_cond`):
        [is-|has-|todo-]<switch>[-on|-off], e.g. is-device-on, attach-off."""
        negate = condition.startswith("not-")
        name = condition[4:] if negate else condition
        check = self.WAIT_CONDITIONS.get(name)
        if check is None:
            reached = kernel_condition(condition)
            if reached is None:
                raise MarsError(
                    f"unknown condition {condition!r}: one of "
                    + ", ".join(f"[not-]{c}" for c in self.WAIT_CONDITIONS)
                    + ", or the kernel's [is-|todo-]{attach,sync,fetch,replay,primary,"
                    "secondary}[-on|-off] and is-device[-on|-off]")
            check, negate = (lambda st, status, res: reached(st, res, status)), False
        self._member_state(res)
        started = time.time()
        # up-to-date counts only against a listing of the source's logs made
        # after this command started, so that writes just made are included.
        fresh = (lambda status: status.get("listed", 0) > started or status.get("is_primary")) \
            if name == "up-to-date" else (lambda status: True)
        if name == "up-to-date" and not self.dry_run:
            self._ask_to_list(res)
        self.wait_for(res, lambda st, status: fresh(status) and check(st, status, res) != negate,
                      condition)

    def _ask_to_list(self, res):
        """An idle secondary asks its source for new logfiles only when the
        source's log end shows news (a round late); this host's marsd is
        asked to list now. If it cannot be asked, the wait goes on all the
        same: marsd lists at least every LISTING_INTERVAL."""
        try:
            self._ask(self.host, {"type": "list", "res": res}, timeout=min(self.timeout, 5.0))
        except MarsError:
            pass

    # ------------------------------------------------------------------- logs
    def log_rotate(self, res):
        state = self._member_state(res)
        if state.designated_primary(res) != self.host:
            raise MarsError(f"log-rotate {res} on its primary ({state.designated_primary(res) or 'none'})")
        current = state.resource_value(res, todo_name(self.host, "log-rotate"), "0")
        self._write({todo_key(res, self.host, "log-rotate"): int(current or 0) + 1})

    def log_delete_all(self, res):
        """Delete this host's logfiles that every member has replayed."""
        state = self._member_state(res)
        lowest = lowest_needed_logfile(state, res)
        directory = self.env.state_dir / resource_dir_name(res)
        doomed = [name for name, _ in list_logfiles(directory)
                  if lowest is not None and parse_logfile_name(name)[0] < lowest]
        for name in doomed:
            if self.dry_run:
                self.echo(f"would delete {directory / name}")
            else:
                (directory / name).unlink(missing_ok=True)
        return doomed

    def cron(self, resources):
        for res in resources:
            state = self.store.state()
            if state.designated_primary(res) == self.host:
                self.log_rotate(res)
            self.log_delete_all(res)

"""Locks on hosts and intents with leases (FOOTBALL.md, "Safety machinery").

A lock item lives on each involved host (`football-host lock`, an exclusive
file create). Hosts are locked in sorted order, so two runs never wait on
each other crosswise; taking is all-or-nothing: when one host refuses, the
ones taken are released and the whole set is retried with backoff until
`lock_retry_timeout`. Locks older than `lock_break_timeout` are broken.

An intent is the same kind of record in another directory, kept for
`lease_time`: a planned sync (shrink) that counts against `limit_syncs`
(`limit_shrinks`) on its host before it shows there.

On the controller, one operation on a resource at a time
(`one_run_at_a_time`): the host locks cannot tell two runs of one operation
apart, since a resumed run owns its predecessor's locks (`run_owner`), and
two operations take them only for their own steps (a migrate waiting at its
gate holds none). Among controllers (two operators' machines, screeners on
a shared job database), the same: a run holds its resource's lock item
`run-<res>` on the hosts it acts on for as long as it runs
(`ResourceRun`), renewed so that it goes stale only once its run died,
and once the run acted only towards the same command."""

import fcntl
import json
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from tenacity import (Retrying, retry_if_exception, retry_if_exception_type, stop_after_delay,
                      wait_exponential)

from football.errors import Illegal
from football.hostside.locks import create_exclusively
from football.transport import CommandFailed, json_of

LOCK_DIR = "/var/lock/football"
# the item every operation locks on the hosts it acts on (an operator's
# `football lock football <hosts>` pauses them all)
RUN_LOCK = "football"
INTENT_DIR = "/var/lib/football/intents"
EXIT_LOCK_HELD = 6


def run_owner(operation, res=None):
    """Who holds a run's locks and intents: the operation (and resource) on
    this controller; stable across re-runs, so that a resumed run owns its
    earlier locks and intents."""
    return f"{operation}{'-' + res if res else ''}@{socket.gethostname()}"


class Locked(Illegal):
    """Another run holds a lock this one needs (nothing was changed)."""


def _helper(host, directory, *args):
    return host.run(["football-host", "lock", host.path(directory), *args], check=False)


def take(host, item, owner, stale_after, directory=LOCK_DIR, permanent=False, what="",
         command="", run="", rescue=False, lease=None):
    """Take `item` on `host` for `owner` (again: renew it); `what` it is for
    is told to those it refuses; `command`, `run`, `rescue`, `lease`: a
    run's lock (see the host helper's take). Returns `taken`, `again` or `broken`.
    `Locked` carries the holder's `record`, and whether it is `final`: the
    permanent lock of a run that is over (it kept it, or acted and was not
    renewed for `stale_after`) that this taker may not break; no wait ends
    it, only that run's own controller or an operator's unlock."""
    result = _helper(host, directory, "take", item, "--owner", owner,
                     "--stale-after", str(stale_after), *(["--permanent"] if permanent else []),
                     *(["--what", what] if what else []),
                     *(["--command", command] if command else []),
                     *(["--run", run] if run else []), *(["--rescue"] if rescue else []),
                     *(["--lease", str(lease)] if lease else []))
    if result.exit_code == EXIT_LOCK_HELD:
        locked = Locked(f"{host.name}: {result.stderr.strip()}; wait for that run or, if it "
                        f"is dead, football unlock {item} {host.name}")
        # for whom words it otherwise: "lock <item> is held by <owner> (<what>) since ...",
        # and the holder's record
        locked.host, locked.holder = host.name, result.stderr.strip()
        try:
            answer = json_of(result)
            locked.record, stale = answer.get("held") or {}, bool(answer.get("stale"))
        except (ValueError, AttributeError, TypeError):
            locked.record, stale = {}, False
        record = locked.record
        breaks_it_later = rescue or bool(command and record.get("command") == command)
        locked.final = (outlives_its_run(record) and (stale or record.get("run") == "kept")
                        and not breaks_it_later)
        raise locked
    if not result.ok:
        raise Illegal(f"{host.name}: cannot take lock {item}: {result.stderr.strip()}")
    return json_of(result)["outcome"]


def outlives_its_run(record):
    """Whether a lock's `record` is a run's that stays after its run: it
    acted, or it ended with its operation unfinished (permanent)."""
    return bool(record.get("permanent") and record.get("run") in ("acting", "kept"))


def release(host, item, owner="", directory=LOCK_DIR):
    result = _helper(host, directory, "release", item, "--owner", owner)
    return result.ok and json_of(result)["released"]


def held(host, directory=LOCK_DIR, check=False):
    """{item: holder record} on `host`; {} when the helper fails, unless `check`."""
    result = _helper(host, directory, "list")
    if check and not result.ok:
        raise CommandFailed(result)
    return json.loads(result.stdout) if result.ok else {}


class LockSet:
    """The locks one run holds; released on every exit path (`with`)."""

    def __init__(self, owner, config, echo=lambda text: None, permanent=False, on_wait=None,
                 what="", stale_after=None, command="", run="", rescue=False, dead=None):
        self.owner, self.config, self.echo, self.what = owner, config, echo, what
        # a run's lock (see the host helper's take)
        self.command, self.run, self.rescue = command, run, rescue
        # another owner's lock is broken once this old (default: lock_break_timeout)
        self.stale_after = config.lock_break_timeout if stale_after is None else stale_after
        self.permanent = permanent      # locks that never go stale (an operator's)
        self.on_wait = on_wait          # (reason) once when a lock is held elsewhere, (None) once taken
        self.dead = dead                # (Locked): whether its holder is known dead (broken at once)
        self.taken = []

    @contextmanager
    def holding(self, hosts, item):
        self.acquire(hosts, item)
        try:
            yield
        finally:
            self.release_all()

    def acquire(self, hosts, item, word=str):
        """All of `hosts`' locks `item`, retried with backoff for
        `lock_retry_timeout` while another run holds one; `on_wait` hears
        once that it waits (and why: `word` of the refusal) and once that it
        goes on."""
        ordered = sorted({host.name: host for host in hosts}.items())
        waited = False
        for attempt in Retrying(retry=retry_if_exception(_may_end), reraise=True,
                                stop=stop_after_delay(self.config.lock_retry_timeout),
                                wait=wait_exponential(multiplier=0.2, max=10)):
            with attempt:
                try:
                    self._all_or_nothing([host for _, host in ordered], item)
                except Locked as locked:
                    if not waited and self.on_wait is not None and _may_end(locked):
                        self.on_wait(word(locked))
                    waited = True
                    raise
        if waited and self.on_wait is not None:
            self.on_wait(None)

    def _all_or_nothing(self, hosts, item):
        mine = []
        try:
            for host in hosts:
                try:
                    outcome = self._take(host, item)
                except Locked as locked:
                    if self.dead is None or not self.dead(locked):
                        raise
                    release(host, item, locked.record.get("owner") or "?")
                    self.echo(f"{host.name}: broke lock {item} of a dead run: {locked.holder}")
                    outcome = self._take(host, item)
                if outcome == "broken":
                    self.echo(f"{host.name}: broke a stale lock {item}")
                mine.append(host)
        except BaseException:         # refused, unreachable or Ctrl-C: keep none of them
            for host in reversed(mine):
                # (one that cannot be released stops neither the others'
                # release nor the refusal, which a wait may end)
                self._release(host, item)
            raise
        self.taken.extend((host, item) for host in mine)

    def _take(self, host, item):
        return take(host, item, self.owner, self.stale_after, permanent=self.permanent,
                    what=self.what, command=self.command, run=self.run, rescue=self.rescue,
                    lease=self.stale_after if self.run else None)

    def release_all(self):
        while self.taken:
            self._release(*self.taken.pop())

    def _release(self, host, item):
        try:
            release(host, item, self.owner)
        except Exception as error:     # releasing never hides the original error
            self.echo(f"{host.name}: could not release lock {item}: {error}")


def _may_end(error):
    """Whether waiting may end the refusal `error` (a Locked that is not
    final: see take)."""
    return isinstance(error, Locked) and not getattr(error, "final", False)


def register_intent(host, res, owner, config, kind="sync"):
    """Note on `host` that a `kind` (sync, shrink) of `res` is planned
    (lease: `lease_time`)."""
    take(host, f"{kind}-{res}", owner, config.lease_time, directory=INTENT_DIR)


def drop_intent(host, res, owner="", kind="sync"):
    release(host, f"{kind}-{res}", owner, directory=INTENT_DIR)


def live_intents(host, config, except_res=None, kind="sync"):
    """The resources with a `kind` intent on `host` within its lease, but
    `except_res`; a host whose intents cannot be listed raises (it is not
    taken for free)."""
    now = time.time()
    prefix = f"{kind}-"
    return {item[len(prefix):] for item, record in held(host, INTENT_DIR, check=True).items()
            if record and now - record.get("time", 0) <= config.lease_time
            and item.startswith(prefix) and item != f"{prefix}{except_res}"}


def turn_holder(state_dir, res):
    """`<pid> <operation>` of the run that holds `res`'s turn on this
    controller (see one_run_at_a_time), or None when none runs."""
    path = Path(state_dir) / "journal" / f"{res}.run"
    try:
        handle = open(path)
    except FileNotFoundError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return handle.read().strip() or "?"
        return None


# the turns this process's threads hold: {(path, thread)}; a combined
# operation runs its stages (migrate, shrink, a handover) inside its own turn
_TURNS = set()


@contextmanager
def one_run_at_a_time(state_dir, operation, res, config, on_wait=lambda text: None):
    """Hold `<state_dir>/journal/<res>.run` (an flock, which the kernel
    releases when the process ends, also by kill -9) while the run lasts:
    one operation on a resource at a time on this controller. Another run
    (a second terminal, a screener job restarted while the first one's
    process still runs, or another operation: a shrink while a migrate waits
    at its gate would shrink the replicas it synced, or copy from a source
    it is handing over) is waited for, said once through `on_wait` (and
    `on_wait(None)` once it ended), for `lock_retry_timeout`; then `Locked`
    (nothing changed). Same-owner host locks would let both go on at once:
    two stops, two starts, one journal replaced under the other. The
    operations this one runs inside itself share its turn: it yields
    whether this is the outermost run (False inside another)."""
    path = Path(state_dir) / "journal" / f"{res}.run"
    turn = (path, threading.get_ident())
    if turn in _TURNS:
        yield False
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")
    try:
        waited = False
        for attempt in Retrying(retry=retry_if_exception_type(Locked), reraise=True,
                                stop=stop_after_delay(config.lock_retry_timeout),
                                wait=wait_exponential(multiplier=0.1, max=2)):
            with attempt:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    handle.seek(0)
                    pid, _, other = handle.read().strip().partition(" ")
                    other = f"{other or 'an operation'} of {res} (pid {pid or '?'})"
                    locked = Locked(f"{other} runs on this controller; nothing changed: wait "
                                    f"for it to end (`football status {res}`) or stop it (kill "
                                    f"{pid or '<pid>'}), then run {operation} {res} again")
                    if not waited:
                        on_wait(f"{other} goes on: waiting for it to end")
                    waited = True
                    raise locked from None
        if waited:
            on_wait(None)               # the wait is over
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()} {operation}\n")
        handle.flush()
        _TURNS.add(turn)
        try:
            yield True
        finally:
            _TURNS.discard(turn)
    finally:
        handle.close()          # closing the last descriptor releases the flock


def controller_owner(state_dir, create=True):
    """Who holds a resource's run lock on the hosts (`ResourceRun`): this
    controller, by its host name, its state dir and an id that state dir
    keeps (two machines set up alike still differ). Every run of this
    controller is the same owner: its runs take turns by one_run_at_a_time,
    and a re-run after a crash (kill -9 releases nothing) takes it over.
    Not `create`: None where the state dir has no id (this controller never
    held a run lock; a read-only command writes nothing)."""
    path = Path(state_dir) / "controller-id"
    if not path.exists():
        if not create:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            create_exclusively(path, f"{uuid.uuid4().hex[:12]}\n")
        except FileExistsError:
            pass                            # the first of two runs at once wins
    return f"football@{socket.gethostname()}:{Path(state_dir).resolve()}#{path.read_text().strip()}"


RENEWAL_JOIN = 30.0     # seconds a run's end waits for a renewal under way


def _read_names(path):
    try:
        return path.read_text().split()
    except FileNotFoundError:
        return []


class ResourceRun:
    """A run's hold on its resource against other controllers' runs: the
    lock item `run-<res>` on the hosts it acts on, taken all or nothing per
    `hold` (more hosts as the run learns them), waited for while another
    controller's run holds it (`on_wait`, as LockSet's), then `Locked`.
    While held, renewed every third of `run_lock_lease` (a run may wait for
    days at a gate). Until the run acts it is a lease: one not renewed for
    `run_lock_lease` (its controller died, or lost the host) is broken by
    the next controller's run. From when it acts (`acting`: its journal is
    written) it is permanent: a run killed then (-9, or its machine gone)
    leaves an unfinished operation whose journal only its controller has,
    and another controller's run of something else would act from a plan
    of its own; only the same `command` (as the operator typed it, which
    goes on from the hosts' state) and a repair (`rescue`, the way out)
    take it over elsewhere, once it was not renewed for `run_lock_lease` (a
    screener job that another machine's worker resumes); others are refused
    at once where no wait can end it. A renewal that fails is said once per
    host (`warn`).
    `release` ends it. A run killed with -9 leaves it: this controller's
    next run takes it over at once (`controller_owner`)."""

    def __init__(self, res, owner, config, what, echo, warn, on_wait, command="", rescue=False):
        self.res, self.item, self.warn = res, f"run-{res}", warn
        self.lease = config.run_lock_lease
        self.locks = LockSet(owner, config, echo, on_wait=on_wait, what=what,
                             stale_after=self.lease, command=command, run="running",
                             rescue=rescue)
        self.stopping = threading.Event()
        self.renewing = None
        self.failing = set()        # the hosts whose last renewal failed (said once)
        # another controller's run holds it now (taken over once this one
        # was not renewed for a lease: a partition): (host, its holder)
        self.lost = None
        self.kept = None            # what `keep` kept it for: {what, command}

    def hold(self, hosts):
        have = {host.name for host, _ in self.locks.taken}
        more = [host for host in hosts if host.name not in have]
        if more:
            try:
                self.locks.acquire(more, self.item, lambda locked: self._refusal(locked, hosts))
            except Locked as locked:
                raise Locked(self._refusal(locked, hosts)) from None
        if self.renewing is None and self.locks.taken:
            self.renewing = threading.Thread(target=self._renew, daemon=True,
                                             name=f"football-{self.item}")
            self.renewing.start()

    def holds(self, name):
        """Whether this run holds its lock on host `name`."""
        return any(host.name == name for host, _ in self.locks.taken)

    def _refusal(self, locked, hosts):
        """What to do about another controller's run: a dead run's lock is on
        each of its hosts (name them all); an acting run's is permanent, but
        its own command goes on from anywhere once it is a lease old, and a
        repair may begin then."""
        names = " ".join(sorted({host.name for host in hosts}))
        record = getattr(locked, "record", {})
        unlock = f"football unlock {self.item} {names}"
        if not outlives_its_run(record):
            return f"{locked.host}: {locked.holder}; wait for that run or, if it is dead, {unlock}"
        if record.get("run") == "kept":
            state = "that run ended with it unfinished"
        elif getattr(locked, "final", False):
            lease = max(self.lease, record.get("lease") or 0)       # as the host judged it
            state = (f"that run acted, and stopped renewing it run_lock_lease ({lease:g} s) "
                     "ago: it died")
        else:
            state = "wait for that run; if it ends unfinished or dies"
        command = record.get("command")
        same = (f"`football {command}` goes on from where it stopped (on that controller at "
                "once, on another once the lock is run_lock_lease old), a repair-vm or "
                "repair-mars may begin then; " if command else
                "on that controller its operation goes on when run again, here a repair-vm or "
                "repair-mars may begin once the lock is run_lock_lease old; ")
        return (f"{locked.host}: {locked.holder}; {state}: {same}or, to act on "
                f"{self.res} from here anyway, {unlock}")

    def acting(self):
        """The run acts on its hosts from now on (its journal is about to be
        written): its lock becomes permanent, on the hosts it holds and on
        those it takes later. Idempotent. Not under a lock against the
        renewal (one hanging on a host would hold every journal write): a
        renewal under way that lands after it keeps the lock permanent (the
        host helper keeps its owner's permanent lock so) and the next one
        writes `acting` again."""
        if self.locks.permanent:
            return
        self.locks.permanent, self.locks.run = True, "acting"
        for host, item in list(self.locks.taken):
            try:
                self._take_again(host, item)
            except Exception as error:      # noqa: BLE001 (said; the run goes on)
                self.warn(f"{host.name}: could not make lock {item} outlast this run "
                          f"({error}): were it killed, another controller's run of "
                          f"{self.res} could begin there after {self.lease:g} s")

    def _renew(self):
        while not self.stopping.wait(max(self.lease / 3, 0.05)):
            for host, item in list(self.locks.taken):
                try:
                    outcome = self._take_again(host, item)
                except Locked as locked:
                    self.lost = self.lost or (host.name, locked.holder)
                    self._failing(host, f"{locked.holder}, no longer by this run: it stops "
                                        f"at its next step, another controller's run of "
                                        f"{self.res} goes on")
                    continue
                except Exception as error:      # noqa: BLE001 (said; the run goes on)
                    self._failing(host, f"could not renew lock {item}: {error}; once it is "
                                        f"run_lock_lease {self.lease:g} s old, another "
                                        f"controller's run of {self.res} may begin")
                    continue
                if self.stopping.is_set():      # the run ended meanwhile: as it ended
                    try:
                        if self.kept is None:
                            release(host, item, self.locks.owner)
                        else:
                            self._keep_on(host, item)
                    except Exception as error:  # noqa: BLE001 (a thread: said, not raised)
                        self.warn(f"{host.name}: could not {'keep' if self.kept else 'release'} "
                                  f"lock {item} after its renewal: {error}")
                    return
                if outcome != "again" and host.name not in self.failing:
                    self.warn(f"{host.name}: lock {item} was gone (unlocked by hand?): "
                              "taken again")
                self.failing.discard(host.name)

    def _take_again(self, host, item):
        """Its lock on `host` taken again as it holds it now (renewed; the
        state `acting` gives it)."""
        return take(host, item, self.locks.owner, self.lease, permanent=self.locks.permanent,
                    what=self.locks.what, command=self.locks.command, run=self.locks.run,
                    lease=self.lease)

    def _failing(self, host, why):
        """A renewal on `host` failed: said once, until one there works."""
        if host.name not in self.failing:
            self.failing.add(host.name)
            self.warn(f"{host.name}: {why}")

    def release(self, state_dir=None, host_named=None):
        """End the run and release the lock; with `state_dir`, also on the
        hosts where an earlier run kept it (`keep`) that this one did not
        hold (`host_named`: name -> host; where it cannot, it is said)."""
        self._stop_renewing()
        held = {host.name for host, _ in self.locks.taken}
        self.locks.release_all()
        if state_dir is None:
            return
        path = self._kept_file(state_dir)
        for name in sorted(set(_read_names(path)) - held):
            try:
                release(host_named(name), self.item, self.locks.owner)
            except Exception as error:      # noqa: BLE001 (said: the operator unlocks it)
                self.warn(f"{name}: could not release lock {self.item} kept by an earlier run "
                          f"({error}): football unlock {self.item} {name}")
        path.unlink(missing_ok=True)

    def keep(self, what, state_dir, mine=True):
        """End the run but keep the lock, never stale, saying `what` (an
        unfinished operation): taken again as permanent on every host, the
        hosts noted in `state_dir` for the run that releases it. Not `mine`
        (another operation's, that this run went on over): the same command
        as this run's does not take it over. (A renewal under way that ends
        after this keeps it as well: it would have overwritten it.)"""
        self.kept = {"what": what, "command": self.locks.command if mine else ""}
        self._stop_renewing()
        path = self._kept_file(state_dir)
        names = set(_read_names(path))
        while self.locks.taken:
            host, item = self.locks.taken.pop()
            names.add(host.name)
            try:
                self._keep_on(host, item)
            except Exception as error:      # noqa: BLE001 (said; it goes stale there)
                self.warn(f"{host.name}: could not keep lock {item} for the {what}: {error}")
        path.write_text("".join(f"{name}\n" for name in sorted(names)))

    def _keep_on(self, host, item):
        take(host, item, self.locks.owner, self.lease, permanent=True, what=self.kept["what"],
             command=self.kept["command"], run="kept", lease=self.lease)

    def _kept_file(self, state_dir):
        return Path(state_dir) / "journal" / f"{self.res}.kept"

    def _stop_renewing(self):
        self.stopping.set()
        if self.renewing is not None:
            # one hanging on a host that does not answer does not hold the
            # run's end; it releases what it renews once it sees the end
            self.renewing.join(RENEWAL_JOIN)

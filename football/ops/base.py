"""What every operation shares: the run context, injection points, waiting.

Every operation goes: check its arguments (pure, no host contact) → discover
and decide (reads hosts, changes nothing, raises `Illegal`) → execute its
phases (acts; raises `FootballError` with the exit code of how it failed).
Each step looks at the real state before acting, so a re-run resumes."""

import contextlib
import functools
import importlib
import os
import pkgutil
import queue
import re
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field

import click

from football import facts, joblink
from football.dryrun import Planner
from football.errors import (EXIT_ILLEGAL, EXIT_INTERRUPTED, EXIT_SERIOUS, Critical,
                             FootballError, Illegal, Interrupted, Serious)
from football.inventory import CHANGES_MADE, InventoryError
from football.journal import Journal, JournalUnwritable, damaged_journal
from football.locks import (LockSet, Locked, RUN_LOCK, ResourceRun, controller_owner,
                            drop_intent, one_run_at_a_time, register_intent, run_owner)
from football.ops.stopped import StoppedContainer
from football.transport import TransportError
from mars.errors import MarsError
from mars.names import check_resource


class InjectedFailure(FootballError):
    """`--debug-injection-point N` stopped the run at its N-th point, as a
    crash would: nothing is compensated."""

    exit_code = 1


class RunTakenOver(InjectedFailure):
    """Another controller's run took this run's hold on its resource over
    (`ResourceRun.lost`: this one was cut off from the host for a lease, as
    if dead): it goes on from there; this run stops at its next step as a
    crash would, compensating nothing (a restart of the container on its
    source, inside the downtime window, would fight the other run)."""


class TimedOut(FootballError):
    """A wait ran past its time limit."""


@contextlib.contextmanager
def sigint_deferred():
    """Ctrl-C (or SIGTERM) does not interrupt the block (compensation must
    not be cut short); one pressed meanwhile is told, and the operation ends
    right after it anyway. Only the main thread receives signals: elsewhere
    the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    told = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}
    previous = {signum: signal.signal(signum, lambda number, frame: click.echo(
        f"football: {told[number]}: restarting the container first, then stopping", err=True))
        for signum in told}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def exit_code_of(error):
    """The exit code `football` ends with for `error` (what `football_failed`
    is told): a Football error's own, 191 for a bad inventory, 198 for a
    host that could not be reached, 190 for Ctrl-C, else 1."""
    if isinstance(error, FootballError):
        return error.exit_code
    if isinstance(error, InventoryError):
        return EXIT_ILLEGAL
    if isinstance(error, TransportError):
        return EXIT_SERIOUS
    if isinstance(error, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return 1


@dataclass
class Context:
    inventory: object
    config: object
    hooks: object
    reporter: object
    dry_run: bool = False
    yes: bool = False
    injection_point: int | str = 0      # the N-th point, or the first called so
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    points_passed: int = 0
    planner: Planner = None     # a dry run's record of the commands it would run
    # the holds of the outermost runs on their resources (ResourceRun), by
    # resource: their stages act under them
    resource_runs: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.dry_run and self.planner is None:
            self.planner = Planner(self.reporter)

    def planned(self, host):
        """`host` for a dry run's action code: its changes are recorded, not run."""
        return self.planner.host(host)

    def host(self, name):
        """The inventory's host `name`; `Illegal` (nothing changed) when unknown."""
        try:
            return self.inventory.host(name)
        except InventoryError as error:
            raise Illegal(str(error)) from None

    def inject(self, name):
        """An injection point: numbered in the order the run reaches them.
        Every step passes one: a run whose hold on its resource another
        controller's run took over stops here (`RunTakenOver`)."""
        self.check_hold(name)
        self.points_passed += 1
        self.reporter.event("injection-point", number=self.points_passed, name=name)
        if self.injection_point in (self.points_passed, name):
            raise InjectedFailure(f"stopped at injection point {self.points_passed} ({name}) "
                                  "as asked by --debug-injection-point")

    def check_hold(self, where):
        """`RunTakenOver` when another controller's run took the hold of a
        run here on its resource over; the run stops `where`."""
        for res, run in self.resource_runs.items():
            if run.lost:
                host, holder = run.lost
                raise RunTakenOver(
                    f"{host}: {holder}: another controller took this run's hold on {res} "
                    f"over (it was not renewed for run_lock_lease: this controller was cut "
                    f"off from the host, or stalled) and goes on from the hosts' state; this "
                    f"run stopped at {where}, compensating nothing")


def check_resource_name(res):
    try:
        return check_resource(res)
    except MarsError as error:
        raise Illegal(str(error)) from None     # it says what a name may hold


PARALLEL_MOST = 16      # items `in_parallel` runs at a time
# the longest `in_parallel`'s main thread blocks at once: a Ctrl-C whose
# signal came just before it blocked is acted on within this (see there)
PARALLEL_WAKE = 0.2


# what a refusal says of itself, untrue once the run changed hosts before it
_NOTHING_CHANGED = re.compile(r"[;,.]?\s*[Nn]othing (?:was )?changed(?: anywhere| on any host)?\.?")


def in_parallel(function, items, most=PARALLEL_MOST):
    """`[function(item) for item in items]`, `most` at a time, each
    in a thread; once all have ended, the exception of the first item (in
    the items' order) that raised one is raised. A Ctrl-C meanwhile is
    raised once they have ended (a host command is not left half-watched);
    a second one at once (the threads are daemons: the process does not
    wait for them at its exit).

    Not `concurrent.futures`: a Ctrl-C (also the SIGINT a screener job gets
    when its worker dies) that came while the main thread took a future's
    lock, between the lock's acquire and the `with` block
    (`Condition.__enter__` is Python code), left the lock taken; the pool's
    threads blocked on it setting their results, and the process hung at
    its exit joining them. An orphaned job's `football migrate` in CI hung
    so for 23 minutes, its run cleaned up (py-spy: the main thread in
    `_python_exit`, both pool threads in `Future.set_result`). Here the
    main thread takes no lock the threads take: it waits in a queue's
    `get` (C) for wake-ups and counts the items ended.

    While it waits, a Ctrl-C (or SIGTERM, which is one) is counted by a
    handler of its own instead of raised: CPython runs a signal's handler
    between any two bytecodes, and a KeyboardInterrupt raised outside the
    `try` around the wait (in the loop's test, or as a wait timed out)
    escaped as if it were the second: "interrupted after 0.2 s", its items
    still running (CI, once). The second one raises from the handler, at
    once. Only where the handler is Python's default (a Ctrl-C raises); in
    a block that defers Ctrl-C (the window's compensation) it is left be.
    The `get` has a timeout (PARALLEL_WAKE): a blocking lock acquire is
    interrupted only by a signal that comes while it blocks; one that came
    a moment before waited for the next item to end (a second Ctrl-C held
    the run until its hanging items ended: 60 s in the test, 8 of 20 runs
    under load)."""
    items = list(items)
    work, done = queue.SimpleQueue(), queue.SimpleQueue()
    for entry in enumerate(items):
        work.put(entry)
    results, errors, ended = [None] * len(items), {}, []

    def run():
        while True:
            try:
                index, item = work.get_nowait()
            except queue.Empty:
                return
            try:
                results[index] = function(item)
            except BaseException as error:      # noqa: BLE001 (raised in the caller's thread)
                errors[index] = error
            ended.append(index)
            done.put(index)

    for _ in range(min(most, len(items))):
        threading.Thread(target=run, name="football-parallel", daemon=True).start()
    with _interrupts_counted() as interrupts:
        while len(ended) < len(items):
            # a wake-up per item ended; what counts is `ended`
            try:
                done.get(timeout=PARALLEL_WAKE)
            except queue.Empty:
                pass
    if interrupts:
        raise KeyboardInterrupt
    if errors:
        raise errors[min(errors)]
    return results


@contextlib.contextmanager
def _interrupts_counted():
    """The Ctrl-Cs (and SIGTERMs) that come during the block, counted (the
    list yielded), the first without raising; the second raises at once.
    Only in the main thread and for the signals whose handler is Python's
    default (see in_parallel)."""
    interrupts = []
    if threading.current_thread() is not threading.main_thread():
        yield interrupts
        return

    def count(signum, frame):
        interrupts.append(signum)
        if len(interrupts) > 1:
            raise KeyboardInterrupt             # the second: at once

    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    for signum, handler in previous.items():
        if handler is signal.default_int_handler:
            signal.signal(signum, count)
    try:
        yield interrupts
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def no_designated_primary(res, members, named=None):
    """What to say of `res` whose `members` know it but name no designated
    primary (`marsadm secondary`, or a handover cut short); `named`: the
    host the operator named (`res:host`), else the operator chooses one."""
    where = named or "<host>"
    choose = "" if named else \
        f" (one whose replica is UpToDate: football status {res} shows them)"
    return (f"{res} has no designated primary: its replicas on {', '.join(members)} say "
            "(none) (`marsadm secondary` was run, or a handover did not finish); nothing "
            f"changed. Bring it up where it should run first{choose}: football repair-vm {res} "
            f"{where} (which starts the container), or `marsadm primary {res}` on {where} to "
            "keep the container stopped; then run this again")


FIRST_POLL = 0.1        # seconds before the second poll of a wait at most ...
POLL_GROWTH = 1.5       # ... and each pause this much longer, up to the wait's interval


def poll_pauses(interval, quick_start=True):
    """The pauses between the polls of a wait: short at first, growing to
    `interval` (`poll_interval`). Most waits of an operation end within a
    fraction of a second (a host learning of a resource, a handover's
    device); polled every `interval` from the start, each cost up to that
    long. A wait that lasts polls every `interval` as before; without
    `quick_start`, from the start."""
    pause = min(FIRST_POLL, interval) if quick_start else interval
    while True:
        yield pause
        pause = min(interval, pause * POLL_GROWTH)


def wait_until(condition, timeout, interval, what, quick_start=True):
    """Poll `condition()` until it returns a true value (pauses from
    `poll_pauses`); `TimedOut` after `timeout`. Each poll reads afresh (no
    cached facts)."""
    deadline = time.monotonic() + timeout
    for pause in poll_pauses(interval, quick_start):
        facts.forget()
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimedOut(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(pause)


def wait_knows(host, res, interval):
    """Until `host` knows `res` (it reaches a host through the cluster's
    metadata exchange, a moment after its creation or a merge): marsadm
    refuses to join a resource its host does not know."""
    wait_until(lambda: res in facts.all_resources(host), 60, interval,
               f"{host.name} to know {res}")


def synced_and_consistent(diskstate):
    """Whether a replica's diskstate says its sync is complete and what it
    holds is consistent: UpToDate, or OutDated[F|R|FR], a moment behind the
    primary's newest writes, which are on their way. Under a workload that
    writes on, a replica is OutDated as often as not: a run that asked for
    UpToDate alone found it UpToDate, then OutDated[F] 0.4 s later, and
    refused the handover (a CI run's screener test); one that writes hard
    would never have been UpToDate at the moment of asking. The lag is
    bounded before any downtime (`limit_mars_logfile`)."""
    return diskstate == "UpToDate" or diskstate.startswith("OutDated")


def wait_uptodate(op, hosts, total, what):
    """Poll until every one of `hosts` has synced `op.res` and holds it
    consistent (`synced_and_consistent`), with nothing left to sync: a
    progress bar over `total` bytes, a warning after
    `stall_warn` s without progress, `TimedOut` after `stall_timeout` s
    without progress or `sync_timeout` s in all (the sync goes on: a re-run
    waits again). Returns the seconds waited; `op.sync_seen_unfinished`
    says whether a look found it unfinished (else it had ended before)."""
    config, res = op.config, op.res
    started = last_progress = time.monotonic()
    last_rest, warned = None, False
    op.sync_seen_unfinished = False
    with op.ctx.reporter.progress(what, total) as bar:
        for pause in poll_pauses(config.poll_interval):
            rests = in_parallel(lambda host: int(facts.view(host, "sync-rest", res) or 0), hosts)
            states = in_parallel(lambda host: facts.view(host, "diskstate", res), hosts)
            rest = sum(rests)
            bar.update(max(0, total - rest))
            if rest == 0 and all(synced_and_consistent(state) for state in states):
                return time.monotonic() - started
            op.sync_seen_unfinished = True
            now = time.monotonic()
            seen = dict(zip([host.name for host in hosts], states))
            if now - started > config.sync_timeout:
                raise TimedOut(f"{what} did not complete within sync_timeout "
                               f"{config.sync_timeout:g} s ({rest} bytes left; states {seen}); "
                               "it goes on: re-run to wait for it again")
            if rest != last_rest:
                last_progress, last_rest, warned = now, rest, False
            elif now - last_progress > config.stall_timeout:
                raise TimedOut(f"{what} made no progress for {config.stall_timeout:g} s "
                               f"({rest} bytes left; states {seen}"
                               f"{why_stalled(hosts, states, res)}); check marsd and the "
                               "network, then re-run")
            elif now - last_progress > config.stall_warn and not warned:
                op.ctx.reporter.warning(f"{what} made no progress for "
                                        f"{now - last_progress:.0f} s"
                                        f"{why_stalled(hosts, states, res)}")
                warned = True
            time.sleep(pause)


def why_stalled(hosts, states, res):
    """`views_say` of those of `hosts` not yet synced (by their `states`)."""
    return views_say([host for host, state in zip(hosts, states)
                      if not synced_and_consistent(state)], res)


def views_say(hosts, res):
    """The `waiting:`/`error:` lines of `res`'s view on each of `hosts`
    (facts.parse_view_summary's notes), as "; a1: error: ..."; '' where
    they say nothing (kernel MARS) or cannot be asked."""
    said = []
    for host in hosts:
        try:
            view = facts.parse_view_summary(host.run(["marsadm", "view", res], timeout=30).stdout)
        except (TransportError, FootballError):
            continue
        said += [f"{host.name}: {note}" for note in view.get(res, {}).get("notes", [])]
    return "".join(f"; {text}" for text in said)


def synced_bytes(hosts, res, estimate):
    """(bytes, measured): what the last syncs of `res` on `hosts` received,
    as their marsd counted it (`view-sync-received`); where a host cannot
    tell (kernel MARS has no such view, or marsd restarted meanwhile), the
    `estimate` (bytes per host) stands in and `measured` is False."""
    total, measured = 0, True
    for host in hosts:
        try:
            received = facts.read(host, ["marsadm", "view-sync-received", res]).strip()
        except facts.FactUnavailable:
            received = ""
        if received.isdigit():
            total += int(received)
        else:
            total, measured = total + estimate, False
    return total, measured


def marsd_answers(host, timeout=10):
    """(True, '') when the host's marsd answers, else (False, why). A peer of
    the host that is down does not count against it."""
    try:
        result = host.run(["marsadm", f"--timeout={timeout}", "wait-cluster"], check=False,
                          timeout=timeout + 20)
    except TransportError as error:
        return False, f"host {host.name} is unreachable: {error}"
    silent = facts.parse_not_answering(result.stderr)
    if result.ok or (silent is not None and host.name not in silent):
        return True, ""
    if "not a member of any cluster" in result.stderr:
        return False, (f"host {host.name} ({host.address}) is in no MARS cluster (a new host, or "
                       f"one decommissioned): `marsadm --ip={host.address} create-cluster` there "
                       "makes it a cluster of its own, which the next migrate to it merges")
    return False, (f"host {host.name} ({host.address}) is not ready: `{result.command}` "
                   f"{result.how_it_ended}: {result.stderr.strip()[-300:]}; is marsd running there?")


def answers(host):
    """Whether a command reaches `host` (its marsadm answers, from its state
    dir also without its marsd): a host that does not is off, or cut off."""
    try:
        facts.cluster_hosts(host)
    except facts.HostUnreachable:
        return False
    except facts.FactUnavailable:
        return True
    return True


def silent_hosts(hosts):
    """The hosts of `hosts` that a command does not reach (`answers`),
    asked in parallel."""
    return [host for host, answered in zip(hosts, in_parallel(answers, hosts)) if not answered]


REACH_TIMEOUT = 5.0     # seconds a peer's wait-cluster gives a silent host's marsd to answer
ALIVE_WINDOW = 30.0     # seconds within which a live kernel-MARS host has reported (its
                        # time link: every 5 s, propagated within 5 s; the kernel's
                        # wait-cluster counts a peer dead after window/2 = 30 s)
KERNEL_SOME_DEAD = re.compile(r"peer\(s\) seem to be dead")


def reaching(peers, name, resources=()):
    """The names of `peers` whose marsadm reaches host `name`'s marsd,
    asked in parallel (`marsd_reports`). A host that no command of the
    controller reaches may run on, cut off from the controller alone (its
    SSH, the network between): where a peer reaches it, it is no dead host
    to take over from or drop."""
    return [peer for peer, (_, reached) in marsd_reports(peers, name, resources).items()
            if reached]


def marsd_reports(peers, name, resources=()):
    """{peer name: (its own marsd answers, it reaches host `name`'s marsd)}
    of `peers`, from one `marsadm wait-cluster` each, asked in parallel;
    (False, False) where a peer cannot tell.

    Ours names the marsds that do not answer, the peer's own among them.
    The kernel's marsadm only counts them ("1/2 peer(s) seem to be alive,
    and 1 peer(s) seem to be dead"), which it can only where its own
    answers: then the peer is asked whether `name`, the designated primary
    of one of `resources`, reported within ALIVE_WINDOW (`view-is-alive`,
    as the kernel has it)."""
    def report(peer):
        try:
            member = name in facts.cluster_hosts(peer)
            result = peer.run(["marsadm", f"--timeout={REACH_TIMEOUT:g}", "wait-cluster"],
                              check=False, timeout=REACH_TIMEOUT + 30)
            silent = facts.parse_not_answering(result.stderr)
            if silent is not None:
                return peer.name not in silent, member and name not in silent
            if not KERNEL_SOME_DEAD.search(result.stdout + result.stderr):
                return result.ok, member and result.ok
            return True, member and any(facts.primary(peer, res) == name and peer.run(
                ["marsadm", f"--window={ALIVE_WINDOW:g}", "view-is-alive", res],
                check=False).stdout.strip() == "1" for res in resources)
        except (FootballError, TransportError):
            return False, False            # it cannot tell
    return {peer.name: told for peer, told in zip(peers, in_parallel(report, peers))}


def reachable(host, timeout=10):
    """Raise `Illegal` naming the host when it cannot be reached or its marsd
    does not answer."""
    answers, why = marsd_answers(host, timeout)
    if not answers:
        raise Illegal(why)


def confirm(ctx, question):
    """Ask the operator before a step that cannot be undone; `--yes` answers
    for them. Without a terminal and without `--yes`: `Illegal`."""
    if ctx.yes:
        return
    if not sys.stdin.isatty():
        raise Illegal(f"{question} needs a confirmation: run it again with --yes; "
                      "nothing was changed")
    try:
        confirmed = click.confirm(question, err=True)
    except click.Abort:             # Ctrl-C or Ctrl-D at the question: no answer is no yes
        confirmed = False
    if not confirmed:
        raise Illegal("not confirmed; nothing was changed")


def unfinished_first(res, operation, other):
    """The refusal of `operation` on `res` while `other` (an entry of
    `unfinished_operations`) is unfinished: what it is, how far it came,
    how to finish it and how to give it up."""
    kind, decided = other["operation"], other["decided"]
    started = time.strftime("%Y-%m-%d %H:%M", time.localtime(other["started"])) \
        if other.get("started") else "at an unknown time"
    hosts = [name for name in (decided.get("primary"), decided.get("secondary")) if name] \
        if "+" in kind else other["targets"][:1] if kind == "handover" else other["targets"]
    to = f" to {', '.join(hosts)}" if hosts else ""
    down = ("; it stopped inside its downtime window: the container may be down "
            f"(`football repair-vm {res} <host>` starts it)") if other["in_downtime"] else ""
    again = f"football {kind} {res}" + "".join(f" {name}" for name in hosts) + \
        (f" {decided['asked']}" if decided.get("asked") else "")
    journal = other["journal"]
    if kind == "shrink" and "finish" not in other["steps"] and not other["in_downtime"]:
        give_up = f"`football shrink-cleanup {res}` (its -tmp LVs go; {res} is not touched)"
    else:
        give_up = (f"set its journal aside (mv {journal} {journal}.abandoned) and remove what "
                   f"it made (`football status {res}` shows its replicas; `football lv-cleanup "
                   f"{res}` the LVs no replica uses)")
    size = ", and its size if it was given one" if "+" in kind else ""
    return (f"{res} has an unfinished {kind}{to} (started {started}, steps done: "
            f"{', '.join(other['steps']) or 'none completed, the first may have begun'}"
            f"{down}); a {operation} now would work "
            f"on {res} from a second plan; nothing changed. Finish the {kind} first: the "
            f"command that started it resumes it (`{again}`{size}), then run the "
            f"{operation}. To give it up instead: {give_up}")


class Operation(StoppedContainer):
    """One Football operation on one resource, in a fixed order:

    1. check the arguments — pure, no host contact (`__init__`); `Illegal`;
    2. `discover()` — read the hosts through facts and decide (hosts,
       sizes); changes nothing; `Illegal` when a precondition fails;
    3. the phases (`whole`, or some of them when a phase runs alone) — act;
       each step looks at the real state first, so a re-run resumes.

    `run()` owns what every operation shares: the plugins are told
    `football_start`, then `football_finished` with the summary or
    `football_failed` with the exit code (the original error is raised
    whatever they do); `prepare_hosts` / `finish_hosts` around the phases; a
    `phase` event and the time spent per phase; the journal, done once the
    whole operation ran; a dry run, which only says what it would do."""

    operation = None
    whole = ()                      # the phases that complete the operation
    # whether an unfinished operation of another kind on the resource refuses
    # this one (`_refuse_over_unfinished`); the repairs are how one gets out
    finishes_others_first = False
    # a repair (the way out): it begins over another controller's dead run
    # (ResourceRun), as it goes on over an unfinished operation here
    rescues = False
    stage_kinds = {}                # a combined operation's stages: {stage: operation}

    def __init__(self, ctx, res=None):
        """`res`: the resource (`res` or `res:host`); None for an operation
        on hosts only (lock, merge-cluster, ...): the plugins are told
        `res=None` and the summary names no resource."""
        self.ctx, self.config, self.hooks = ctx, ctx.config, ctx.hooks
        self.say = ctx.reporter.say
        self.res, self.source_hint = split_res(res) if res is not None else (None, None)
        self.journal = None
        self.prepared_hosts = []    # told to prepare_hosts; finish_hosts gets them
        self.slot_taken = ((), ())  # who holds the slots a wait is for (running, planned)
        self.intents_taken = []     # (host, kind) of the intents this run registered
        self.held_locks = False     # this run held a lock to change hosts under (holding)
        self.resource_run = None    # its hold on `res` against other controllers' runs
        self.outermost = True       # not a stage of another operation (set by each run)
        # stable across re-runs, so that a resumed run owns its earlier locks and intents
        self.owner = run_owner(self.operation, self.res)
        self.summary = {"phases": {}} if self.res is None else {"resource": self.res,
                                                                "phases": {}}

    def host(self, name):
        return self.ctx.host(name)

    def named_host(self):
        """The host `res:host` names as the resource's (for when it cannot be
        discovered); `Illegal` when it holds no replica of it, or when the
        resource has no designated primary (nothing can sync from it, and
        starting it there would undo `marsadm secondary` unasked)."""
        host = self.host(self.source_hint)
        if self.res not in facts.my_resources(host):
            raise Illegal(f"{host.name} holds no replica of {self.res} ({self.res}:{host.name} "
                          f"names the host it runs on); name that one, or leave :{host.name} "
                          "off to find it; nothing changed")
        if not facts.primary(host, self.res):
            raise Illegal(no_designated_primary(self.res, facts.members(host, self.res),
                                                host.name))
        return host

    def start_args(self):
        """The arguments `football_start` is told (besides the phases)."""
        return {}

    def open_journal(self, operation=None):
        """The journal of this run (of `operation`: default this one) on this
        controller, kept with its screener job as well (`Journal`)."""
        journal = Journal(self.config.state_dir, operation or self.operation, self.res,
                          shared=None if self.ctx.dry_run else joblink.current(self.config))
        journal.on_unshared = lambda error: self.ctx.reporter.warning(
            f"the journal of the {journal.data['operation']} of {self.res} could not be kept "
            f"with its screener job ({error}); a worker of another controller that takes the "
            "job over goes on without it (every step checks the real state first)")
        for said in journal.clock_disagreements:
            self.ctx.reporter.warning(said)
        if journal.taken_from_the_job:
            run = journal.data.get("run") or {}
            self.say(f"  {journal.data['operation']} of {self.res}: going on from the journal "
                     "its screener job's last run kept (on controller "
                     f"{run.get('host', '?')}; steps done: "
                     f"{', '.join(journal.data['steps']) or 'none'})")
        return journal

    def command_text(self):
        """This operation as an operator types it: the operation, the
        resource, the arguments of `start_args` (a flag for a true one). Its
        run lock says it: the same command goes on from where a dead run
        of it stopped, also on another controller (ResourceRun)."""
        words = [self.operation, self.res]
        for name, value in self.start_args().items():
            if value is True:
                words.append(f"--{name.replace('_', '-')}")
            elif isinstance(value, (list, tuple)):
                words.extend(str(item) for item in value)
            elif value not in (None, False, ""):
                words.append(str(value))
        return " ".join(words)

    # ------------------------------------------------------------------- run
    def run(self, phases=None):
        """Run `phases` (default: the whole operation) between the plugins'
        `football_start` and `football_finished` / `football_failed`; one
        run of it on this resource at a time on this controller (a dry run
        changes nothing and needs no turn)."""
        if self.res is None or self.ctx.dry_run:
            return self._run_told(phases, outermost=self.res is not None)
        with one_run_at_a_time(self.config.state_dir, self.operation, self.res, self.config,
                               on_wait=self._condition("turn")) as outermost:
            return self._run_told(phases, outermost)

    def _condition(self, what, saying=lambda reason: reason):
        """The `on_wait` of a wait for `what` that another run holds (this
        resource's turn, a host's lock): its reason said once (as `saying`
        words it), and a screener job shows `condition` until the wait is
        over (`reason` None)."""
        def told(reason):
            if reason is None:
                self.ctx.reporter.event("wait-end", what=what, resource=self.res)
                return
            self.say(f"  {saying(reason)}")
            self.ctx.reporter.event("wait", state="condition", what=what, resource=self.res,
                                    reasons=[reason])
        return told

    def _run_told(self, phases, outermost=False):
        """`outermost`: not a stage of another operation (which checked
        what is unfinished for it)."""
        facts.forget()      # what an earlier run in this process read is not this run's
        phases = tuple(phases or self.whole)
        self._tell("football_start", args={**self.start_args(), "phases": list(phases)})
        self.outermost = outermost
        try:
            if outermost:
                self._refuse_over_unfinished()
            summary = self._run(phases)
        except BaseException as error:
            if isinstance(error, (Illegal, Interrupted, KeyboardInterrupt)):
                self._forget_a_run_that_changed_nothing()
            down = self._still_down(error)
            self._finish_hosts()
            self._tell("football_failed", error=down or error,
                       exit_code=exit_code_of(down or error))
            if down is not None:
                raise down from None
            raise
        self._finish_hosts()
        self._tell("football_finished", summary=summary)
        return summary

    def _still_down(self, error):
        """`Critical` for a refusal or a timeout of a run that went on with
        a downtime window an earlier run left open (it ended inside it: the
        container runs nowhere since), else None: such a run exited 191
        "nothing changed" (a lock held elsewhere, a target gone) or 198
        (the lag gate) without saying the container was down."""
        if not isinstance(error, (Illegal, TimedOut)) or self.journal is None or \
                self.ctx.dry_run:
            return None
        host = getattr(self, "source", None) or getattr(self, "primary", None)
        if host is None:
            return None
        try:
            since = self._left_down_since(host)     # (None: the crash came before the stop)
        except (FootballError, TransportError):
            return None
        if since is None:
            return None
        return Critical(f"{error}; {self.res} is down since "
                        f"{time.strftime('%H:%M:%S', time.localtime(since))} (an earlier run "
                        f"ended inside its downtime window): run this again once the cause is "
                        f"gone, or start it where its volume is — football repair-vm "
                        f"{self.res} <host> (`football status {self.res}` shows where)")

    def _run(self, phases):
        """discover → (nothing to do | dry run | the phases)."""
        self.discover()
        nothing = self.nothing_to_do()
        if nothing:
            self.say(f"{self.res + ': ' if self.res else ''}{nothing}: nothing to do")
            return self.summary
        self.announce()
        if self.ctx.dry_run:
            return self._dry_run(phases)
        self._prepare_hosts(self.involved())
        self._run_phases(phases)
        if phases == tuple(self.whole) and self.journal is not None:
            self.journal.finish()
        return self.summary

    def _dry_run(self, phases=None):
        """The commands the run would issue (`dry_run`), said and in the
        summary; nothing changes. A phase command's (`phases`, not the
        whole) are its phases' only."""
        if self.journal is not None:
            self.journal.dry = True
        if phases is None or tuple(phases) == tuple(self.whole):
            self.dry_run()
        else:
            self.dry_run(tuple(phases))
        self.summary["would_run"] = [{"host": name, "argv": argv}
                                     for name, argv in self.ctx.planner.commands]
        return self.summary

    def discover(self):
        raise NotImplementedError

    def nothing_to_do(self):
        """Why there is nothing to do (the run ends with exit 0), or None."""
        return None

    def announce(self):
        """Say what the run is going to do (after discovery)."""

    def dry_run(self):
        """Walk the actions of the phases with `self.ctx.planned(host)` for
        each host (football/dryrun.py): the changes are recorded, not made."""
        raise NotImplementedError

    def involved(self):
        """The hosts the run acts on (told to prepare_hosts)."""
        return []

    def locks(self, phase):
        """The hosts whose `football` lock `phase` holds while it runs (the
        runner takes them, all or nothing; none: the phase locks nothing
        for its whole length — a phase that waits takes them per step)."""
        return []

    def _refuse_over_unfinished(self):
        """`Illegal` when an operation of another kind on this resource
        stopped unfinished on this controller (its journal): the
        two would work on one resource from two plans (an unfinished shrink's
        `-tmp` LVs and its way back, `-preshrink`, stay on the hosts a migrate
        leaves; a shrink over an unfinished migrate shrinks the replicas the
        migrate's re-run hands over to). Only an expand goes on over a migrate
        outside its downtime window (a full filesystem will not wait for a
        long sync; the migrate's re-run then goes on with the grown replicas);
        and the repairs, which are the way out, are never refused. (Every
        run first finishes the journals here of screener jobs that another
        controller completed: its own kind's would be resumed.)"""
        operations = [op for op in joblink.unfinished_operations(self.config)
                      if op["resource"] == self.res]
        if not self.finishes_others_first:
            return
        damaged = next((op for op in operations if "damaged" in op), None)
        if damaged is not None:
            # whose steps and plan nobody can read: any kind may be refused by it
            kind, journal = damaged["operation"], damaged["journal"]
            if kind == self.operation:
                raise Illegal(damaged_journal(journal, damaged["damaged"]))
            raise Illegal(f"{self.res} has an unfinished {kind} (a {self.operation} now would "
                          f"work on {self.res} from a second plan) and its " + damaged_journal(
                              journal, damaged["damaged"], then=f"finish or give up the {kind} "
                              f"it records, then run the {self.operation}"))
        mine = next((op for op in operations if op["operation"] == self.operation), None)
        # a journal is written once a run passed its checks, just before it acts
        others = [op for op in operations if op["operation"] != self.operation
                  and not self._my_stage(op, mine)]
        over = [op for op in others if self.operation == "expand" and
                op["operation"] == "migrate" and not op["in_downtime"]]
        refusing = [op for op in others if op not in over]
        if refusing:
            raise Illegal(unfinished_first(self.res, self.operation, refusing[0]))
        if over:
            self._going_on_over(over)

    def _going_on_over(self, unfinished):
        """Told by `_refuse_over_unfinished` the unfinished operations of
        other kinds (journal entries) this run goes on over: an expand's,
        over a migrate outside its downtime window. The operation says so
        where it does go on, after its own checks (Expand: refused over a
        migrate that handed over already), not here."""

    def _my_stage(self, other, mine):
        """Whether `other` is a stage this combined operation's own
        unfinished run (`mine`) started (its journal began after the stage)."""
        if mine is None:
            return False
        for stage, kind in self.stage_kinds.items():
            started = mine["decided"].get(f"{stage}_started")
            if kind == other["operation"] and started and (other["started"] or 0) >= started:
                return True
        return False

    def _refuse_unlike_unfinished(self, unfinished, detail, asked, finish_args, then=""):
        """`Illegal`: this command asks for something else (`asked`) than
        the unfinished run of its journal (`unfinished`, with `detail`); a
        resume went on with the journal's, whatever was asked. Names the
        command that finishes it (`finish_args`) and, in `then`, what else."""
        raise Illegal(f"{self.res} has an unfinished {self.operation} {unfinished} ({detail}), "
                      f"not {asked}; nothing changed. `football {self.operation} {self.res} "
                      f"{' '.join(finish_args)}` finishes it{then}")

    def _refuse_on_plugin_problems(self, hosts, source, more=()):
        """`Illegal` naming every objection of the plugins: `check_host` of
        each host, `resource_check` on `source`, and `more` (an operation's
        own checks); nothing was changed."""
        hosts = {host.name: host for host in hosts}.values()
        problems = [problem for host in hosts
                    for problem in self.hooks.problems("check_host", host=host)]
        problems += self.hooks.problems("resource_check", host=source, res=self.res)
        problems += list(more)
        if problems:
            raise Illegal(f"{self.operation} of {self.res} refused by a plugin: "
                          f"{'; '.join(problems)}; nothing was changed")

    def _left_down_since(self, host):
        """When the downtime window began that an earlier run ended inside (a
        crash, a kill), where `res` has not been up on `host` since; else
        None."""
        since = self.journal.open_window_started()
        return None if since is None or self._is_up(host) else since

    def _downtime_objections(self, link, source, target, again=False):
        """(the operator's gate, the plugins' vetoes of the downtime now, the
        locks and pauses on `source` or `target`): what `_downtime_gate`
        waits for to be empty. `again`: asked once more after the gate was
        passed — the screener job's gate is not (its release is used), the
        plugins are asked with again=True (`want_downtime`)."""
        downtime = not self.kept_stopped
        gate, away = [], []
        if not again:
            try:
                gate = self._job_gate(link, source)     # a killed job ends here, also then
            except joblink.DatabaseAway as error:       # not read before: cannot tell
                gate, away = [], [f"the jobs' database does not answer ({error}): whether "
                                  "the job is killed or released at its gate cannot be read; "
                                  "waiting until it answers"]
        gate = gate if downtime else []
        vetoes = self.hooks.vetoes("want_downtime", res=self.res, source=source,
                                   target=target, again=again) if downtime else []
        holders = {}    # the same lock on both hosts (a pause file) said once
        for host in {source.name: source, target.name: target}.values():
            for lock in self.hooks.call("resource_locked", host=host, res=self.res):
                if lock:
                    holders.setdefault(lock, []).append(host.name)
        locks = [f"{self.res} is locked on {', '.join(hosts)}" +
                 (f" ({lock})" if isinstance(lock, str) else "")
                 for lock, hosts in holders.items()]
        return gate, vetoes, locks + away

    def _gates_closed_meanwhile(self, source, target, waited, more=()):
        """Whether a plugin vetoes the downtime now (business hours ended) or
        the start on `target` (is_startable), a pause came, or one of `more`
        (the operation's own reasons) holds,
        after the run passed the gates and then waited for `waited` (its
        slot, its locks: which may last long) — the downtime would begin
        outside business hours or paused. Said; the run goes back to the
        gates, where an operator's gate waits for a new `continue` (the
        first was used: the downtime it allowed did not begin then)."""
        link = joblink.current(self.config)
        _, vetoes, locks = self._downtime_objections(link, source, target, again=True)
        # (is_startable too: asked before the waits only, a host the CMDB
        # put in maintenance meanwhile got the container)
        unstartable = self.hooks.vetoes("is_startable", host=target, res=self.res)
        reasons = vetoes + locks + unstartable + list(more)
        if not reasons:
            return False
        if link is not None:
            link.close_gate()
        self.say(f"  {self.res}: while it waited for {waited}: {'; '.join(reasons)}; "
                 "back to the gates")
        return True

    def _downtime_gate(self, source, target):
        """Wait until every plugin wants the downtime now (want_downtime), none
        holds `res` locked on the source or the target (resource_locked) and,
        in a screener job, the operator released its gate (state `waiting`
        meanwhile, else `condition`); the time it is locked or at the gate
        does not count: `Illegal` after `downtime_gate_timeout` of other
        objections. The container was not touched. Each new set of reasons
        is said once. A container kept stopped has no downtime: only the
        locks (pauses) hold it."""
        link = joblink.current(self.config)
        downtime = not self.kept_stopped

        def objections():
            return self._downtime_objections(link, source, target)

        gate, vetoes, locks = objections()
        if not gate and not vetoes and not locks:
            return
        self._tell("start_wait", what="downtime")
        started = last = time.monotonic()
        counted, said = 0.0, None
        while gate or vetoes or locks:
            reasons = gate + vetoes + locks
            if reasons != said:
                self.say(f"  waiting before the {'downtime' if downtime else 'window'} of "
                         f"{self.res}: {'; '.join(reasons)}")
                self.ctx.reporter.event("wait", state="waiting" if gate else "condition",
                                        what="downtime", resource=self.res, reasons=reasons)
                said = reasons
            if counted > self.config.downtime_gate_timeout:
                raise Illegal(f"no downtime for {self.res} within downtime_gate_timeout "
                              f"{self.config.downtime_gate_timeout:g} s: {'; '.join(reasons)}; "
                              f"it still runs on {source.name}, nothing was stopped. Re-run "
                              "later: the replicas are kept, it resumes")
            time.sleep(self.config.poll_interval)
            now = time.monotonic()
            if not locks and not gate:      # locked or gated time does not count
                counted += now - last
            last = now
            self._tell("poll_wait", what="downtime", elapsed=round(now - started, 3))
            gate, vetoes, locks = objections()
        self.ctx.reporter.event("wait-end", what="downtime", resource=self.res)

    def _delay_cleanup(self):
        """Wait until `cleanup_delay` seconds after the downtime window before
        the cleanup (what it removes stays meanwhile): state `delayed` in a
        screener job. Counted from the window's end in the journal, so a
        re-run waits only for the rest; a killed job ends here."""
        delay = self.config.cleanup_delay
        ended = self.journal.decided.get("window_ended") if self.journal else None
        if delay <= 0 or ended is None or time.time() >= ended + delay:
            return
        until = ended + delay
        reason = (f"cleanup_delay {delay:g} s after the downtime window: the cleanup begins "
                  f"at {time.strftime('%H:%M:%S', time.localtime(until))}")
        self.say(f"  {self.res}: {reason}")
        self.ctx.reporter.event("wait", state="delayed", what="cleanup", resource=self.res,
                                reasons=[reason])
        link = joblink.current(self.config)
        step = min(max(self.config.poll_interval, 0.1), 5.0)
        while (left := until - time.time()) > 0:
            time.sleep(min(step, left))
            try:
                if link is not None:
                    link.check_killed()
            except joblink.DatabaseAway:
                pass                # a kill is seen once it answers
            except joblink.JobKilled as killed:
                raise Interrupted(f"job {killed} killed before the cleanup of {self.res} (it "
                                  "runs where the window left it); restart it to clean up") \
                    from None
        self.ctx.reporter.event("wait-end", what="cleanup", resource=self.res)

    def _take_job_slots(self, kind, hosts, limit_name):
        """In a screener job: a `kind` slot on each of `hosts` among all the
        screener's jobs (at most the tunable `limit_name` per host), all or
        none, waiting in state `condition` while a host is full. Outside the
        screener nothing: the host-side locks and intents hold the limits."""
        link = joblink.current(self.config)
        if link is None or not hosts:
            return
        try:
            link.wait_for_slots(kind, sorted({host.name for host in hosts}),
                                getattr(self.config, limit_name), limit_name,
                                self.ctx.reporter.event, max(self.config.poll_interval, 0.1))
        except joblink.JobKilled as killed:
            raise Interrupted(f"job {killed} killed while {self.res} waited for a {kind} slot; "
                              "re-run (restart) to resume") from None

    def _release_job_slots(self, kind, hosts):
        """Give back this screener job's `kind` slots on `hosts` (its worker
        gives back what is left when the job ends)."""
        link = joblink.current(self.config)
        if link is not None and hosts:
            link.release_slots(kind, {host.name for host in hosts}, self.ctx.reporter.event)

    def _job_gate(self, link, source):
        """[why the screener job waits at the operator gate], or [] (no job,
        no gate, released); `Interrupted` when the job was killed meanwhile:
        nothing was stopped."""
        if link is None:
            return []
        try:
            gate = link.gate(self.res)
        except joblink.JobKilled as killed:
            raise Interrupted(f"job {killed} killed before the downtime of {self.res}: "
                              f"{self.res} still runs on {source.name}, nothing was "
                              "stopped") from None
        return [gate] if gate else []

    def _check_startable(self, target, source):
        """`Illegal` before anything is stopped when a plugin vetoes starting
        `res` on `target` (is_startable)."""
        reasons = self.hooks.vetoes("is_startable", host=target, res=self.res)
        if reasons:
            raise Illegal(f"{target.name}: {self.res} cannot start there: {'; '.join(reasons)}; "
                          f"nothing was stopped, it still runs on {source.name}")

    @contextlib.contextmanager
    def holding(self, hosts, changes=True):
        """The run's `football` lock on `hosts` (all or nothing, released on
        every exit): what the runner takes around a phase (`locks`), and
        what a phase that waits first (for a slot, for the gates) takes
        around each step once the wait is over. Every change of a host is
        made under it; `changes` False: only an intent is registered."""
        with LockSet(self.owner, self.config, self.ctx.reporter.detail,
                     on_wait=self._lock_wait(),
                     dead=self._a_dead_run_of_the_resource).holding(hosts, RUN_LOCK):
            self.held_locks = self.held_locks or (changes and bool(hosts))
            yield

    def _lock_wait(self):
        """The `on_wait` of this run's lock sets: a wait for locks said as a
        condition of `res`."""
        return self._condition("lock", lambda reason: f"{self.res}: waiting for a lock: {reason}")

    def _a_dead_run_of_the_resource(self, locked):
        """Whether the `football` lock (or intent) that refused this run on a
        host is a dead run's: its owner is another run of `res` (`<operation>-<res>@
        <controller>`), and this run holds `run-<res>` on that host, which a
        live run of `res` (of any controller) would hold there. A run killed
        inside its window left it, and the way out (a repair, the same
        command from another controller) would wait lock_break_timeout."""
        run = self.ctx.resource_runs.get(self.res)
        owner = getattr(locked, "record", {}).get("owner", "")
        return (run is not None and owner != self.owner and run.holds(locked.host)
                and owner.rpartition("@")[0] in {run_owner(operation, self.res).rpartition("@")[0]
                                                 for operation in operation_names() if operation})

    def run_within(self, operation, phases):
        """Run `operation` (a stage, a handover before or after) as a part of
        this run: the locks it held count as this run's."""
        try:
            return operation.run(phases)
        finally:
            self.held_locks = self.held_locks or operation.held_locks

    def _forget_a_run_that_changed_nothing(self):
        """A new run refused or interrupted before it held a lock to change
        anything under (a lock held elsewhere, no slot in time, Ctrl-C in a
        wait) leaves nothing behind: not its journal, which would refuse
        the next command for another target as an unfinished run's, nor the
        intents it registered, which would keep their slots taken for
        lease_time. A resumed run's (an earlier run may have changed
        things) and a run's that held one stay: the same command goes on."""
        journal = self.journal
        if journal is None or journal.resumed or journal.dry or self.held_locks or \
                not self._changed_nothing() or not journal.path.exists():
            return
        for host, kind in self.intents_taken:
            try:
                drop_intent(host, self.res, self.owner, kind=kind)
            except Exception as error:      # noqa: BLE001 (the refusal is what the run says)
                self.ctx.reporter.warning(f"{host.name}: could not drop the {kind} intent of "
                                          f"{self.res} ({error}); it goes after lease_time")
        journal.forget()

    def _take_slot(self, host, kind, free, limit):
        """Wait for a `kind` slot on `host` (`free()`: one is free now, under
        `limit`), then take it — register the intent — after a last look
        under the host's lock: two runs that both saw the last free slot
        must not both take it."""
        while True:
            self._wait_for_slot(host, kind, free, limit)
            with self.holding([host], changes=False):
                if free():
                    self.intents_taken.append((host, kind))
                    self._register_intent(host, kind)
                    return

    def _register_intent(self, host, kind):
        """A `kind` intent of `res` on `host`; one a dead run of `res` left
        (killed between its intent and its sync's end; another controller's,
        whose run lock this run took over) is replaced at once: it would
        refuse this run until lease_time."""
        try:
            register_intent(host, self.res, self.owner, self.config, kind=kind)
        except Locked as locked:
            if not self._a_dead_run_of_the_resource(locked):
                raise
            drop_intent(host, self.res, locked.record.get("owner") or "?", kind=kind)
            self.ctx.reporter.detail(f"{host.name}: replaced the {kind} intent of {self.res} "
                                     f"of a dead run: {locked.holder}")
            register_intent(host, self.res, self.owner, self.config, kind=kind)

    def _slot_free(self, running, planned, limit):
        """Whether a slot is free beside the resources `running` (a sync, a
        shrink's copy) and `planned` (an intent: a run that will, or a run
        that stopped and keeps its slot until it resumes, ends or the lease
        goes); `slot_taken` keeps them for the wait's message."""
        self.slot_taken = (sorted(running), sorted(planned))
        return len(running) + len(planned) < limit

    def _wait_for_slot(self, host, kind, free, limit):
        if not free():
            running, planned = self.slot_taken
            taken = ", ".join([*(f"{res} running" for res in running),
                               *(f"{res} planned" for res in planned)])
            held = f"{limit}{f'; taken: {taken}' if taken else ''}"
            reason = f"a {kind} slot on {host.name} ({held})"
            self.say(f"  {host.name}: waiting for {reason}"
                     + ("; a planned slot stays taken until its run goes on or ends, or "
                        "lease_time passes" if planned else ""))
            self.ctx.reporter.event("wait", state="condition", what=f"{kind} slot",
                                    resource=self.res, host=host.name, reasons=[reason])
            # a slot frees when a sync ends, and each look takes the host's lock
            try:
                wait_until(free, self.config.sync_timeout, max(1.0, self.config.poll_interval),
                           f"a {kind} slot on {host.name}", quick_start=False)
            except TimedOut:
                if not self._changed_nothing():
                    raise
                raise Illegal(f"no {kind} slot on {host.name} came free within sync_timeout "
                              f"{self.config.sync_timeout:g} s ({held}); this run changed "
                              "nothing: run it again once one is free "
                              f"(`football status {host.name}` shows what holds them)") from None
            self.ctx.reporter.event("wait-end", what=f"{kind} slot", resource=self.res)

    def _changed_nothing(self):
        """Whether this operation has done nothing yet, by its journal (no
        step done): a wait that fails now fails before this run changed
        anything."""
        return self.journal is None or not self.journal.data["steps"]

    def _prepare_hosts(self, hosts):
        """Before the phases: `res` held on `hosts` against other controllers,
        and the plugins told."""
        self._hold_the_resource(hosts)
        self.prepared_hosts = list({host.name: host for host in hosts}.values())
        self._tell("prepare_hosts", hosts=self.prepared_hosts)

    def _hold_the_resource(self, hosts):
        """Hold `res` on `hosts` against other controllers' runs
        (ResourceRun) from before the run acts until it ends (an outermost
        run; its stages share it). `Locked` (191, nothing changed) when one
        holds it longer than lock_retry_timeout, or a host does not answer;
        after this run changed hosts (a pre-hand), a failure."""
        if not self.outermost or self.res is None or self.ctx.dry_run:
            return
        if self.resource_run is None:
            self.resource_run = self.ctx.resource_runs[self.res] = ResourceRun(
                self.res, controller_owner(self.config.state_dir), self.config,
                what=f"{self.operation} of {self.res}, pid {os.getpid()}",
                echo=self.ctx.reporter.detail, warn=self.ctx.reporter.warning,
                on_wait=self._condition("run", lambda reason: f"{self.res} runs on another "
                                        f"controller: {reason}"), command=self.command_text(),
                rescue=self.rescues)
            if self.journal is not None and not self.journal.dry:
                # it acts from its journal's first write on (or acted: a resumed run)
                self.journal.on_write = self.resource_run.acting
                if self.journal.path.exists():
                    self.resource_run.acting()
        try:
            self.resource_run.hold(hosts)
        except Locked as locked:
            if not self.held_locks:
                raise
            failed = FootballError(f"{locked}; this {self.operation} stopped after it changed "
                                   f"hosts: the same command goes on once that run ended")
            raise failed from None
        except TransportError as error:
            if self.held_locks:
                raise
            raise Illegal(f"{error}: the {self.operation} of {self.res} acts there and cannot "
                          "begin without it; nothing changed: run it again once the host "
                          f"answers{self._if_gone_for_good()}") from None

    def _if_gone_for_good(self):
        """What to say after "run it again once the host answers" when the
        host may never answer again: what the operation can do without it
        (a migrate: drop an old replica's host gone for good)."""
        return ""

    def _run_phases(self, phases):
        spent = self.summary["phases"]
        steps_before = len(self.journal.data["steps"]) if self.journal else 0
        for phase in phases:
            changes_before = CHANGES_MADE[0]
            started = time.monotonic()
            self.ctx.reporter.event("phase", phase=phase, resource=self.res)
            self._tell("phase", name=phase)
            try:
                with self.holding(self.locks(phase)):
                    getattr(self, phase.replace("-", "_"))()
            except Illegal as refused:
                windowed = self.journal is not None and "critical-section" in \
                    self.journal.data["steps"][steps_before:]
                # (a cleanup after the handover, also one resumed by another
                # run, or the phase command alone, that removed something)
                handed_over = phase == "cleanup" and self.journal is not None and \
                    "finish" in self.journal.data["steps"] and not self.ctx.dry_run and \
                    CHANGES_MADE[0] != changes_before
                if not (windowed or handed_over or
                        (isinstance(refused, Locked) and self.held_locks)):
                    raise
                # after this run changed hosts (its downtime window, or a
                # lock held to change them), or in a cleanup after the
                # handover: not a refusal, whose 191 says "nothing changed" —
                # a migrate that had handed over and removed the old replicas
                # exited 191 at its cleanup's split, also resumed at its
                # cleanup (a gate's refusal before the window stays one: 191)
                failed = FootballError(_NOTHING_CHANGED.sub("", str(refused)))
                self._say_where_it_stopped(failed, phase)
                raise failed from None
            except Exception as error:
                self._say_where_it_stopped(error, phase)
                raise
            spent[phase] = round(spent.get(phase, 0.0) + time.monotonic() - started, 3)

    def _say_where_it_stopped(self, error, phase):
        """A step failed (a command, a host gone, a wait timed out): the
        error's `stopped` tells the operator what stays and how to go on
        (`football` prints it after the error). Not for the errors that say
        so themselves (a refusal, an interruption, the downtime window's
        compensation, a crash on purpose, the journal itself)."""
        if self.journal is None or isinstance(error, (Illegal, Interrupted, Serious, Critical,
                                                      InjectedFailure, JournalUnwritable)):
            return
        steps = ", ".join(self.journal.data["steps"]) or "none"
        error.stopped = (f"the {self.operation} of {self.res} stopped in its {phase} phase "
                         f"(steps done: {steps}); what it did stays, and the same command goes "
                         f"on from there (`football status {self.res}` shows it)")

    def _finish_hosts(self):
        if self.prepared_hosts:
            self._tell("finish_hosts", hosts=self.prepared_hosts)
        self._end_the_hold()

    def _end_the_hold(self):
        """The run's hold on `res` (ResourceRun) ends: released, unless an
        operation of `res` is unfinished on this controller (its journal:
        this run's, failed or a phase run alone, or an earlier one a repair
        went on over; also a journal that cannot be read, which refuses
        every operation of `res` here: what it left is unknown): then kept,
        never stale, saying what is unfinished, so that another controller
        does not act on the resource from a plan of its own; the next run
        here that ends with none unfinished releases it (`football unlock
        run-<res> <hosts>` gives it up by hand)."""
        if self.resource_run is None:
            return
        state_dir = self.config.state_dir
        unfinished = [op for op in joblink.unfinished_operations(self.config)
                      if op["resource"] == self.res]
        if unfinished:
            # this run's own, else the one a repair went on over: the same
            # command elsewhere takes over only this run's (ResourceRun)
            op = next((op for op in unfinished if op["operation"] == self.operation
                       and "damaged" not in op), unfinished[0])
            if "damaged" in op:
                self.resource_run.keep(f"{op['operation']} of {self.res} whose journal "
                                       f"{op['journal']} cannot be read ({op['damaged']}): "
                                       f"move it aside once read (mv {op['journal']} "
                                       f"{op['journal']}.damaged)", state_dir, mine=False)
            else:
                self.resource_run.keep(f"unfinished {op['operation']} of {self.res}, steps "
                                       f"done: {', '.join(op['steps']) or 'none'}", state_dir,
                                       mine=op["operation"] == self.operation)
        else:
            # also where an earlier run kept it and this one does not act
            # (a host the crashed run's cleanup removed the replica from)
            self.resource_run.release(state_dir, self.host)
        self.ctx.resource_runs.pop(self.res, None)
        self.resource_run = None

    def _tell(self, hook, /, **kwargs):
        """Notify the plugins (`operation` and `res` are passed along; a hook
        that does not take them ignores them); a failing plugin is a
        warning, never a failure of the operation."""
        try:
            self.hooks.call(hook, operation=self.operation, res=self.res, **kwargs)
        except Exception as error:
            self.ctx.reporter.warning(f"plugin hook {hook} failed: "
                                      f"{type(error).__name__}: {error}")


@functools.cache
def operation_names():
    """The names of every operation (what run owners begin with), of all
    the modules of football.ops (the command line imports only its own)."""
    import football.ops
    for module in pkgutil.iter_modules(football.ops.__path__):
        importlib.import_module(f"football.ops.{module.name}")
    names, classes = set(), [Operation]
    while classes:
        cls = classes.pop()
        names.add(cls.operation)
        classes.extend(cls.__subclasses__())
    return names


def split_res(argument):
    """`res` or `res:host` (the current host, when it cannot be discovered)."""
    res, _, host = argument.partition(":")
    return check_resource_name(res), host or None

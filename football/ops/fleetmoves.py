"""The planner's plans carried out: `balance --execute`, `balance --auto`,
`evacuate --execute`, `restore` — each a plan (football/planner/) whose
moves run as one screener run (football/screener.py) with its limits.

Balance (`BalanceRun`): a fresh plan, or a saved one by id (refused once
expired); refused while a host drains; resources with a live job are left
alone; each move is checked again on the fleet as it is now (`Move.unmet`,
with the plan's earlier moves applied) and one that cannot run any more is
dropped with the reason; the moves that ran go into the history the
cooldown reads (with the planner's moves done as jobs in the jobs'
database: every controller that shares it holds them). `--auto` (the
football-balance timer) records the score of every run and executes only
when the score stayed above `balance_threshold` for `balance_hold` runs in
a row and the plan gains at least `balance_margin` of the score, and
never while the moves of a planner's run (of any controller sharing the
queue) still run.

Evacuate (`Evacuate`), a converging run:
1. **drain** — plan first (capacity lacking fails here, nothing changed),
   then mark each host draining (recorded on the host: every controller's
   placement leaves it out from now on) and record on it, once per
   resource, where each resource on it had its replicas (for `restore`);
2. **move** — run the plan's moves and wait for them; plan again from the
   fleet as it is now, until nothing is left on the hosts (a move that did
   not end `done` stops the run: the hosts stay draining, a re-run goes on);
3. **evacuated** — mark the hosts evacuated.
`Restore`: evacuated → restoring, move back what the host remembers, →
active; `--skip` only marks it active (also calls off a draining host).
Every phase looks at the real state (the host's mark, what is still on it,
which jobs are live), so a re-run resumes."""

import json
import re
import sys
import time
from dataclasses import replace
from pathlib import Path

from football import facts, joblink, lifecycle
from football.errors import FootballError, Illegal, Interrupted
from football.ops.base import Operation
from football.ops.planning import cooldown_history, find_plan, keep_plan
from football.planner import (CapacityLacking, Move, Moved, Settings, plan_balance,
                              plan_evacuation, plan_restore, record_moved, save_plan)
from football.planner.moves import ordered, waves
from football.planner.observe import read_fleet
from football.report import agreeing
from football.transport import TransportError

MAX_ROUNDS = 5          # plans one move phase makes before it gives up
SCORES_KEPT = 50        # the scores `balance --auto` remembers
BALANCE_TIMEOUT = 24 * 3600     # seconds the timer's run may wait for its moves
BALANCE_SPREAD = 600    # seconds the timer's start is spread by (RandomizedDelaySec)
BALANCE_UNITS = ("football-balance.service", "football-balance.timer")


def balance_units(options=(), schedule="hourly", command=None):
    """{unit name: text}: the service that runs `balance --auto` (with the
    global `options`) and the timer that starts it on `schedule`."""
    from football.screener import systemd_word
    from football.templates import render

    if not re.fullmatch(r"[\w*:,./~ -]+", schedule):
        raise Illegal(f"--schedule {schedule!r} is not a systemd calendar event (OnCalendar), "
                      "e.g. hourly, daily, *-*-* 03:00, Mon..Fri *-*-* 02:00")
    words = [*(command or [sys.executable, "-m", "football"]), *options]
    service, timer = BALANCE_UNITS
    return {service: render("systemd/football-balance.service.j2",
                            command=" ".join(map(systemd_word, words)),
                            timeout=BALANCE_TIMEOUT),
            timer: render("systemd/football-balance.timer.j2",
                          schedule=schedule, spread=BALANCE_SPREAD)}


class PlanRun:
    """A plan's moves as one screener run: queued together on a queue of
    their own (`max_running` at once, `max_per_target` per target primary),
    then waited for until each has ended. A move whose resource has a live
    job is not queued: that job is waited for instead."""

    def __init__(self, store, job_options, name, max_running=None, max_per_target=None,
                 say=print, poll=1.0, alone=False):
        self.store, self.job_options, self.name = store, list(job_options), name
        self.max_running, self.max_per_target = max_running, max_per_target
        self.say, self.poll, self.alone = say, poll, alone

    def run(self, moves, alone=None):
        """{job id: final state} of the jobs that ran (or were running) the
        moves (`alone`: this call's, else the run's)."""
        from football.screener import JobSpec, ResourcesBusy

        alone = self.alone if alone is None else alone
        specs, waited, ids = [], [], []
        for move in moves:
            operation, res, *args = move.command()
            specs.append(JobSpec(res, operation, args, id=f"{self.name}-{res}",
                                 partition=move.target[0] if self.max_per_target else None))
        if specs:
            self.store.register_queue(self.name, self.max_running, self.max_per_target)
        while specs:
            try:
                # the look for live jobs and the queueing are one turn
                ids = self.store.queue(specs, self.job_options, queue=self.name,
                                       run=self.name, alone=alone)
            except ResourcesBusy as busy:
                for res, job_id in sorted(busy.jobs.items()):
                    self.say(f"  {res}: its job {job_id} runs already; waiting for it")
                    waited.append(job_id)
                specs = [spec for spec in specs if spec.resource not in busy.jobs]
                continue
            for spec in specs:
                self.say(f"  queued {spec.id}: football {' '.join(spec.command)}")
            break
        return self.wait([*ids, *waited])

    def wait(self, ids):
        """{id: state} once every job of `ids` has finished (or was archived);
        each job's state is said when it changes."""
        from football.screener import FINISHED

        said, ended, alone = {}, {}, False
        while True:
            workerless = not self.store.live_workers()
            if workerless != alone:
                alone = workerless
                self.say("  no screener worker is running: the moves wait until one does "
                         "(`football worker`)" if alone else "  a screener worker runs again")
            for job_id in ids:
                job = self.store.job(job_id) or {"state": "archived", "message": ""}
                if job["state"] in (*FINISHED, "archived"):
                    ended[job_id] = job["state"]
                if said.get(job_id) != job["state"]:
                    message = job.get("message") or ""
                    self.say(f"  {job_id}: {job['state']}{': ' + message if message else ''}")
                    said[job_id] = job["state"]
            if len(ended) == len(ids):
                return ended
            time.sleep(self.poll)


class PlannedMoves(Operation):
    """What balance, evacuate and restore share: the planner's settings,
    the jobs' database, a screener run per plan."""

    def __init__(self, ctx, job_options=(), max_running=None, max_per_target=None):
        super().__init__(ctx)
        # a plan's moves leave no replica behind: it counts the room they
        # free, and a resource with a replica more is no move of it (with
        # cleanup_old_replicas off, an evacuation's moves ended done with
        # the replica still on the drained host, never evacuated; a
        # balance's left four replicas)
        self.job_options = [*job_options, "--var", "cleanup_old_replicas=yes"]
        self.max_running, self.max_per_target = max_running, max_per_target
        self.settings = Settings.from_config(self.config)
        self.summary.update(plans=[], moves=[], jobs={})

    def store(self):
        """The jobs' database; `Illegal` (nothing changed) when no worker
        is there to run the moves."""
        from football.screener import JobStore

        store = JobStore(self.config)
        if not store.live_workers():
            store.close()
            raise Illegal("no screener worker is running to run the moves; start one with "
                          "`football worker` (in the lab `football lab up` starts one), then "
                          "run this again: it goes on from where it is; nothing was changed")
        return store

    def require_worker(self):
        if not self.ctx.dry_run:
            self.store().close()

    def busy(self, store):
        """{resource: why it is busy} of the resources a screener job is
        queued or running for, or an operation of this controller is
        unfinished (a move would be refused: `Operation._refuse_over_unfinished`),
        or a job of any controller ended leaving one (its run lock refuses
        the move)."""
        from football.screener import FINISHED

        busy = joblink.unfinished_resources(self.config)
        busy.update((res, f"its job {job_id} ended {state} with its "
                          f"{' and '.join(sorted(set(operations)))} unfinished (football "
                          f"screener restart {job_id}, or a repair)")
                    for res, (job_id, state, operations) in store.left_unfinished().items())
        busy.update((job["resource"], "a job runs for it")
                    for job in store.jobs()
                    if job["state"] not in FINISHED)
        return busy

    def run_plan(self, store, plan, what, alone=False):
        """Run `plan`'s moves; `FootballError` naming each job that did not
        end done; `alone`: `PlannerBusy` (nothing queued) while another
        planner's run has moves live. Returns {job id: state}."""
        self.say(f"* {what}: plan {plan.id}, {len(plan.moves)} move(s), score "
                 f"{plan.score_before:.4f} -> {plan.score_after:.4f}")
        self.summary["plans"].append(plan.id)
        self.summary["moves"] += [" ".join(move.command()) for move in plan.moves]
        run = PlanRun(store, self.job_options, f"{plan.id}", self.max_running,
                      self.max_per_target, self.say, self.config.jobs_poll_interval, alone)
        states = {}
        for number, wave in enumerate(waves(plan.moves)):
            # a move needing the space others free on a host runs after them
            done = [move for move in wave if all(
                states.get(f"{plan.id}-{res}", "done") == "done" for res in move.after)]
            for move in wave:
                if move not in done:
                    job_id = f"{plan.id}-{move.resource}"
                    states[job_id] = "skipped"
                    self.say(f"  {job_id}: skipped: it needs the room the moves of "
                             f"{', '.join(move.after)} free, and not all of them ended done")
            if number and done:
                self.say(f"  then, in the room the moves before freed: "
                         f"{', '.join(move.resource for move in done)}")
            if done:
                states.update(run.run(done, alone=alone and not number))
        self.summary["jobs"].update(states)
        for move in plan.moves:
            job_id = f"{plan.id}-{move.resource}"
            if states.get(job_id) == "done":
                # at the time its job finished, as the jobs' database has
                # the move (without its hosts): recorded at the run's start,
                # that later record was "the newest", and the way back
                # (balance_margin) was forgotten at once
                job = store.job(job_id) or {}
                record_moved(self.config.state_dir,
                             Moved(move.resource, job.get("finished") or time.time(),
                                   move.source, move.target))
        self.raise_unless_done(states, what)
        return states

    def raise_unless_done(self, states, what):
        """`FootballError` naming each job (of {job id: state}) that did not
        end done."""
        failed = {job_id: state for job_id, state in states.items() if state != "done"}
        if failed:
            raise FootballError(
                f"{what}: " + ", ".join(f"{job_id} ended {state}"
                                        for job_id, state in sorted(failed.items()))
                + f" (`football screener show <id>`); {self.resume_hint()}")

    def resume_hint(self):
        return "run the command again once the cause is fixed"


# ------------------------------------------------------------------- balance
class BalanceRun(PlannedMoves):
    """`football balance --execute`, `balance execute <plan-id>`,
    `balance --auto`."""

    operation = "balance"
    whole = ("execute",)

    def __init__(self, ctx, plan_id=None, auto=False, **options):
        super().__init__(ctx, **options)
        self.plan_id, self.auto = plan_id, auto
        self.plans_running = []     # the planner's runs with live jobs (any controller's)

    def discover(self):
        """The plan to run, its moves checked again on the fleet as it is."""
        self.fleet = read_fleet(self.ctx)
        draining = sorted(name for name, host in self.fleet.hosts.items()
                          if host.lifecycle == "draining")
        if draining:
            why = (f"while hosts are draining: {', '.join(draining)} (let their evacuation "
                   "finish, or restore them)")
            if self.auto:           # (the timer's: not a failure every hour of an evacuation)
                self.summary["auto"] = why
                return
            raise Illegal(f"no balancing {why}; nothing was changed")
        now = time.time()
        if self.plan_id:
            self.plan = find_plan(self.config, self.plan_id)
            if self.plan.kind != "balance":
                raise Illegal(f"plan {self.plan_id} is an {self.plan.kind} plan, not a balance "
                              f"one; run it with `football {self.plan.kind}`")
            if self.plan.expired(now):
                raise Illegal(f"plan {self.plan_id} expired at "
                              f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(self.plan.expires))}"
                              " (plan_expiry); make a new one with `football balance --plan`; "
                              "nothing was changed")
        else:
            from football.screener import JobStore

            jobs = JobStore(self.config)
            try:
                busy = self.busy(jobs)
                self.plans_running = jobs.live_plan_runs()
            finally:
                jobs.close()
            self.plan = plan_balance(self.fleet, self.settings,
                                     cooldown_history(self.config), now, busy)
            keep_plan(self.config, self.plan)
        self.summary.update(plan=self.plan.id, score_before=self.plan.score_before,
                            score_after=self.plan.score_after)
        if self.auto:
            self.summary["auto"] = self.auto_decision()
        if self.plan.moves and not self.summary.get("auto"):
            self.require_worker()

    def auto_decision(self):
        """Record this run's score; why `--auto` does not act now, or ''."""
        path = Path(self.config.state_dir) / "balance-scores.json"
        try:
            scores = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            scores = []
        scores = [*scores, {"time": self.plan.created, "score": self.plan.score_before}]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(scores[-SCORES_KEPT:]))
        if self.plans_running:
            # one balancer at a time, whichever controller's timer started it
            return (f"the moves of {', '.join(self.plans_running)} still run; balancing "
                    "waits for them")
        settings = self.settings
        recent = [entry["score"] for entry in scores[-settings.balance_hold:]]
        if len(recent) < settings.balance_hold or \
                min(recent) <= settings.balance_threshold:
            return (f"the score ({', '.join(f'{value:.4f}' for value in recent)}) has not "
                    f"stayed above balance_threshold {settings.balance_threshold:g} for "
                    f"balance_hold {settings.balance_hold} runs")
        # a part of the score (config.py), as a move back must gain it
        # (plan_balance): compared with the gain itself, a score that
        # penalties made large was moved for every hour for a sliver of it
        gain = self.plan.score_before - self.plan.score_after
        if gain < settings.balance_margin * self.plan.score_before:
            return (f"the plan gains {gain:.4f} of {self.plan.score_before:.4f}, less than "
                    f"balance_margin {settings.balance_margin:g} of it")
        return ""

    def nothing_to_do(self):
        if self.auto and self.summary["auto"]:
            return f"no balancing now: {self.summary['auto']}"
        if not self.plan.moves:
            return f"plan {self.plan.id} has no moves"
        return None

    def checked_moves(self, busy):
        """The plan's moves that can still run, each checked on the fleet
        with the earlier ones applied; the others said and dropped. Which
        of them waits for room another frees (`ordered`) is worked out on
        the fleet as it is now: the plan's own was the fleet's when it was
        made, and a move into room that had gone since ran beside the move
        that frees it, and failed."""
        fleet, moves = self.fleet, []
        # moved since the plan was made (the cooldown a plan made now keeps)
        moved = {record.resource: record.time for record in cooldown_history(self.config)
                 if record.time > self.plan.created}
        for move in self.plan.moves:
            pattern = self.settings.pinned_by(move.resource)
            why = f"{move.resource}: pinned since the plan was made (balance_pinned " \
                  f"{pattern})" if pattern is not None else \
                f"{move.resource}: {busy[move.resource]}" if move.resource in busy else \
                f"{move.resource}: moved since the plan was made (at " \
                f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(moved[move.resource]))}; " \
                "cooldown)" if move.resource in moved else \
                move.unmet(fleet, self.settings)
            if why:
                self.say(f"  dropped {' '.join(move.command())}: {why}")
                self.summary.setdefault("dropped", []).append(
                    {"command": move.command(), "reason": why})
                continue
            moves.append(move)
            fleet = fleet.after(move.resource, move.target)
        return ordered(self.fleet, moves, self.settings)

    def dry_run(self):
        for move in self.checked_moves(set()):
            self.say(f"would queue: football {' '.join(move.command())}")

    def execute(self):
        from football.screener import PlannerBusy

        store = self.store()
        try:
            moves = self.checked_moves(self.busy(store))
            try:
                self.run_plan(store, replace(self.plan, moves=tuple(moves)), "balancing",
                              alone=True)
            except PlannerBusy as busy:
                # another balancer (or an evacuate) queued since this one
                # decided: its plan was made on the fleet before those moves
                self.summary.update(plans=[], moves=[])
                why = f"{busy}; balancing waits for them"
                if not self.auto:
                    raise Illegal(f"{why} (`football screener list --run {busy.runs[0]}`; a "
                                  f"plan made now would not know where they end); nothing "
                                  f"was queued") from None
                self.summary["auto"] = why
                self.say(f"no balancing now: {why}")
        finally:
            store.close()


# ------------------------------------------------------ evacuate and restore
class HostsRun(PlannedMoves):
    """Evacuate and restore: hosts whose lifecycle state the run changes."""

    def __init__(self, ctx, hosts, **options):
        super().__init__(ctx, **options)
        self.hosts = [self.host(name) for name in hosts]
        self.names = ", ".join(host.name for host in self.hosts)
        self.summary["hosts"] = [host.name for host in self.hosts]

    def start_args(self):
        return {"hosts": [host.name for host in self.hosts]}

    def involved(self):
        return self.hosts

    def states(self):
        return {host.name: lifecycle.read(host)["state"] for host in self.hosts}

    def mark(self, state, expect=(), via=lambda host: host, hosts=None):
        hosts = self.hosts if hosts is None else hosts
        for host in hosts:
            lifecycle.change(via(host), state, self.owner, expect)
        if hosts:
            self.say(f"  {', '.join(host.name for host in hosts)}: {state}")

    def refuse_unfinished(self, plan):
        """`Illegal` where a move's resource has an unfinished operation of
        another kind: its job would be refused; said before the hosts are
        marked and the other moves run."""
        unfinished = joblink.unfinished_operations(self.config)
        for move in plan.moves:
            for other in unfinished:
                if other["resource"] == move.resource and other["operation"] != move.kind:
                    raise Illegal(f"{self.operation} of {self.names}: {move.resource} has an "
                                  f"unfinished {other['operation']} (football status "
                                  f"{move.resource}); finish it first, then run this again; "
                                  "nothing was changed")

    def converge(self, plan_now, what, first=None):
        """Plan (`plan_now()`; `first`: a plan made already, for the first
        round), run the moves, plan again, until a plan has none. The moves
        of an earlier run here that stopped unfinished go on first."""
        store = self.store()
        try:
            self.finish_unfinished(store, what)
            for _ in range(MAX_ROUNDS):
                plan, first = first or plan_now(), None
                if not plan.moves:
                    return
                self.run_plan(store, plan, what)
        finally:
            store.close()
        raise FootballError(f"{what}: moves still planned after {MAX_ROUNDS} rounds; "
                            f"{self.resume_hint()}")

    def unfinished_moves(self):
        """The migrates of these hosts' resources that stopped unfinished, as
        `Move`s (`finish_unfinished`)."""
        names = {host.name for host in self.hosts}
        return [Move(op["resource"], "migrate", tuple(op["origin"]), tuple(op["targets"]))
                for op in joblink.unfinished_operations(self.config)
                if op["operation"] == "migrate" and not op.get("damaged") and op["targets"]
                and names & {*op["targets"], *op["origin"]}]

    def fleet_as_finished(self):
        """The fleet as read, with the unfinished migrates (`unfinished_moves`)
        as they will be once they go on first: a plan made before they did
        saw their replicas doubled (capacity lacking, or too many replicas)."""
        fleet = read_fleet(self.ctx)
        for move in self.unfinished_moves():
            if move.resource in fleet.resources and \
                    set(move.target) <= set(fleet.hosts):
                fleet = fleet.after(move.resource, move.target)
        return fleet

    def finish_unfinished(self, store, what):
        """The migrates of these hosts' resources that stopped unfinished
        (their journal kept: e.g. a cleanup that could not remove the old
        replicas) go on as jobs of their own, the same command: a plan made
        now would see the container moved already, or its replicas doubled
        (capacity lacking), and the hosts would be marked with them open."""
        moves = self.unfinished_moves()
        if not moves:
            return
        name = f"{self.operation}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-unfinished"
        self.say(f"* {what}: {agreeing(sorted(move.resource for move in moves), 'has', 'have')} "
                 "an unfinished migrate; it goes on first")
        run = PlanRun(store, self.job_options, name, self.max_running, self.max_per_target,
                      self.say, self.config.jobs_poll_interval)
        states = run.run(moves)
        self.summary["jobs"].update(states)
        self.raise_unless_done(states, what)


class Evacuate(HostsRun):
    operation = "evacuate"
    whole = ("drain", "move", "evacuated")

    def resume_hint(self):
        return (f"{self.names} stay draining: run `football evacuate` again to go on, or "
                f"`football restore --skip` to call the evacuation off")

    def discover(self):
        self.initial = self.states()
        wrong = {name: state for name, state in self.initial.items() if state == "restoring"}
        if wrong:
            raise Illegal(f"{', '.join(wrong)} is restoring: let `football restore` finish "
                          "first; nothing was changed")
        # lacking capacity fails here, before any host is marked
        self.first_plan = self.plan() if "active" in self.initial.values() else None
        if self.first_plan is not None:
            self.refuse_unfinished(self.first_plan)
        if set(self.initial.values()) != {"evacuated"}:
            self.require_worker()

    def nothing_to_do(self):
        if set(self.initial.values()) == {"evacuated"}:
            return f"{agreeing([host.name for host in self.hosts], 'is', 'are')} evacuated already"
        return None

    def plan(self):
        try:
            plan = plan_evacuation(self.fleet_as_finished(), [host.name for host in self.hosts],
                                   self.settings, time.time())
        except CapacityLacking as error:
            raise Illegal(f"{error}; nothing was changed") from None
        save_plan(self.config.state_dir, plan)
        return plan

    def draining(self):
        """The hosts to mark draining: not those evacuated already (a
        cluster evacuated with one of its hosts evacuated before: marking
        that one failed, the others left draining, every re-run likewise)."""
        return [host for host in self.hosts if self.initial[host.name] != "evacuated"]

    def dry_run(self):
        self.mark("draining", ("active", "draining"), via=self.ctx.planned,
                  hosts=self.draining())
        for move in (self.first_plan or self.plan()).moves:
            self.say(f"would queue: football {' '.join(move.command())}")

    def drain(self):
        self.mark("draining", ("active", "draining"), hosts=self.draining())
        fleet = read_fleet(self.ctx)
        for host in self.hosts:
            for res in sorted(fleet.on([host.name])):
                lifecycle.record_origin(host, res, fleet.resources[res].replicas)

    def move(self):
        self.converge(self.plan_while_draining, f"evacuating {self.names}",
                      first=self.first_plan)

    def plan_while_draining(self):
        """The next round's plan, while the hosts are still draining: one
        marked active meanwhile (`restore --skip`, from any controller)
        calls the evacuation off — the moves queued run to their end, no
        more are planned (it planned on, emptied the host all the same, its
        origins gone, and failed marking it evacuated)."""
        called_off = sorted(name for name, state in self.states().items()
                            if state not in ("draining", "evacuated"))
        if called_off:
            raise Interrupted(f"evacuating {self.names}: called off ({', '.join(called_off)} "
                              f"{'is' if len(called_off) == 1 else 'are'} active again: restore "
                              "--skip); the moves queued before ran to their end, no more "
                              "were planned")
        return self.plan()

    def evacuated(self):
        """Marked once MARS lists no replica on the hosts: what the plans
        read may have missed one (a view that could not be read)."""
        left = {host.name: resources for host in self.hosts
                if (resources := facts.my_resources(host))}
        if left:
            raise FootballError(
                "not marked evacuated: " + "; ".join(
                    f"{name} still holds replicas of {', '.join(sorted(resources))}"
                    for name, resources in sorted(left.items())) +
                "; run `football evacuate` again to go on (it moves them)")
        self.mark("evacuated", ("draining", "evacuated"))


class Restore(HostsRun):
    operation = "restore"
    whole = ("restoring", "move", "active")

    def __init__(self, ctx, host, skip=False, **options):
        if host not in ctx.inventory.hosts:
            raise Illegal(f"unknown host {host!r}; hosts: {', '.join(sorted(ctx.inventory.hosts))}")
        super().__init__(ctx, [host], **options)
        self.skip = skip
        if skip:
            self.whole = ("active",)

    def resume_hint(self):
        return f"{self.names} stays restoring: run `football restore` again to go on"

    def discover(self):
        [self.initial] = self.states().values()
        allowed = ("draining", "evacuated", "restoring", "active") if self.skip else \
            ("evacuated", "restoring", "active")
        if self.initial not in allowed:
            raise Illegal(f"{self.names} is {self.initial}: only an evacuated host is restored "
                          "(`--skip` marks a draining one active); nothing was changed")
        self.first_plan = None
        self.told_held = set()
        self.held = ()                  # the last plan's resources held for another restore
        if not self.skip and self.initial != "active":
            if self.initial == "evacuated":     # refused before it is marked restoring
                self.first_plan = self.plan()
                self.refuse_unfinished(self.first_plan)
            self.require_worker()

    def nothing_to_do(self):
        return f"{self.names} is active already" if self.initial == "active" else None

    def plan(self):
        [host] = self.hosts
        plan = plan_restore(read_fleet(self.ctx), host.name, lifecycle.origins(host),
                            self.settings, time.time())
        save_plan(self.config.state_dir, plan)
        self.held = plan.held
        for res, why in plan.held:
            if res not in self.told_held:      # (a plan each round: said once)
                self.ctx.reporter.warning(f"{res} {why}")
                self.told_held.add(res)
        return plan

    def dry_run(self):
        if not self.skip:
            self.mark("restoring", ("evacuated", "restoring"), via=self.ctx.planned)
            for move in self.plan().moves:
                self.say(f"would queue: football {' '.join(move.command())}")
        self.mark("active", via=self.ctx.planned)

    def restoring(self):
        self.mark("restoring", ("evacuated", "restoring"))

    def move(self):
        self.converge(self.plan, f"restoring {self.names}", first=self.first_plan)

    def active(self):
        """Marked active, which forgets where its resources came from: those
        held for another host's restore (`plan_restore`) are handed to that
        host's record first, so that its restore brings them back (their
        way back was lost: that host, evacuated after they had left it,
        remembered none of them)."""
        [host] = self.hosts
        held = {res for res, _ in self.held}
        if held:
            origins = lifecycle.origins(host)
            for res in sorted(held & set(origins)):
                for name in origins[res]:
                    if name == host.name or name not in self.ctx.inventory.hosts:
                        continue
                    try:
                        if lifecycle.read(self.host(name))["state"] != "active":
                            lifecycle.record_origin(self.host(name), res, origins[res])
                    except (FootballError, TransportError) as error:   # (switched off, say)
                        self.ctx.reporter.warning(
                            f"{res}: its way back could not be handed to {name} ({error}): "
                            f"`football restore {name}` will not bring it back; it goes back "
                            f"by hand: football migrate {res} {' '.join(origins[res])}")
        self.mark("active")

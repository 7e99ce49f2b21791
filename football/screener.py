"""The screener: many Football operations run in the background as jobs,
with limits, states and resume (FOOTBALL.md, "Screener").

A job is a durable workflow of DBOS Transact (`football_job`) with one
step, `run_operation`: it runs the job's `football` command line (migrate,
shrink, expand, handover, migrate+shrink, migrate+shrink+back) as a child
process with `--json --yes`, records each JSON event it prints, and ends
with its exit code. The operation's phases are not DBOS steps (yet): an
operation resumes from its journal and the real state, so a step that ran
again after a worker died (steps are at-least-once) resumes the operation
where it was; splitting phases into steps would only save the discovery.

The database is DBOS's system database: SQLite `<state_dir>/jobs.sqlite`
by default, PostgreSQL when `jobs_database_url` names one (then several
workers on several controllers share the queues). Beside DBOS's tables it
holds ours (football/jobdb.py): `football_jobs` (one row per job: its command, state, phase,
last message, progress, result; a resource has at most one job that is not
archived), `football_job_events` (every event of every job, for `show`)
and `football_workers` (the workers, by heartbeat).

Fail-over: a worker beats every `worker_heartbeat` seconds; one without a
beat for `worker_dead_after` is dead, one that stopped cleanly is stopped,
and a live worker takes it over (a conditional UPDATE of its row: one
taker) and has DBOS put its pending workflows back into their queues,
where any live worker runs them again; the operations resume from their
journals. A worker that finds itself taken over (it stalled) interrupts
its operations and stops; a new run of a job waits for the old run's
process (same controller) or for its host locks (another one).

Limits of a run are DBOS queues: `screener start` puts jobs on the queue `jobs`;
each `screener run` gets a queue of its own whose `global_concurrency` is
`--max` and, with `--max-per COLUMN=N`, partitioned by that column's value
with `partition_concurrency` N (without it, by the host slot each job waits
for first: `slot_host`); a worker runs at most `worker_jobs` jobs at
once over all queues and takes from them only the jobs it has a free place
for (`Places`; DBOS's `worker_concurrency` holds per queue), leaving the
rest to the other workers. A job's
events outlast a database that fails for a while (`JobEvents`): the worker
keeps reading its operation's output. A job and its row are queued in one
transaction (`enqueue_in_transaction`): both or neither. Limits per host
hold across all jobs: a job's operation takes a seat in `football_slots`
(sync per target host, shrink per primary, handover per source) before
the step that needs it, waiting in `condition` while the host is full
(football/joblink.py); the worker gives back what a job still holds when
it ends. A worker keeps its controller's house (football/housekeeping.py):
finished jobs are archived after `jobs_archive_days`, archived ones
forgotten after `history_days`.

States: `queued` (in its queue), `running`, `waiting` (at the operator
gate before its downtime window until `screener continue`), `condition`
(the operation waits for a slot, a lock or business hours), `delayed`
(between its downtime window and its cleanup, `cleanup_delay`) — each from
the operation's `wait` events — then by exit code: 0 done, 191 illegal,
190 interrupted, 198 serious, 199 critical, 195 timeouted, else failed.
A running job without an event for `session_timeout` (by the time of its
last event; not one that waits and said why: `waiting`, `condition`,
`delayed` — a business-hours window or a host's slots held by hours of
syncs last longer) is hung: its worker interrupts the operation as `kill`
does and it ends `timeouted` (195), as the original's screener killed a
silent session; `list` shows it `timeouted` meanwhile (also where its
worker is gone).

Every state a job enters is told to the `notify` hook once (football/hooks.py,
`ScreenerSpec`), after the transaction that recorded it: a state is written
with `state != new` in its condition, so whoever wrote it first tells it,
and a state written again (a phase of a running job) is not told again."""

import contextlib
import copy
import heapq
import inspect
import json
import logging
import math
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from dbos import DBOS, DBOSClient

from football.errors import (EXIT_CRITICAL, EXIT_ILLEGAL, EXIT_INTERRUPTED, EXIT_SERIOUS,
                             Illegal)
from football.hooks import Hooks
from football.jobdb import (EVENTS, FINISHED, JOBS, JOURNALS, LIVE_JOB, METADATA, PAUSES,
                            PLAN_KINDS, PLANNER_TURN, PLANNERS_JOB, PLANS, QUEUES, SLOTS, TURNS,
                            WORKERS, database_error, database_url, new_engine)
from football.joblink import JOB_ENV
from football.templates import render
from mars import libc

APP = "football"
APP_VERSION = "screener-1"      # change when the workflow's steps change
WORKFLOW = "football_job"
START_QUEUE = "jobs"
EXIT_TIMEOUTED = 195
RESTARTABLE = ("failed", "serious", "interrupted", "illegal", "timeouted")
EXIT_STATES = {0: "done", EXIT_ILLEGAL: "illegal", EXIT_INTERRUPTED: "interrupted",
               EXIT_SERIOUS: "serious", EXIT_CRITICAL: "critical", EXIT_TIMEOUTED: "timeouted"}
STOP_WAIT = 600.0               # seconds a stopping worker waits for its operations
KEPT_EVENTS_RETRY = 2.0         # seconds between tries to write a job's kept events
PROGRESS_KEPT_EVERY = 60.0      # seconds between the progress events a job's log keeps
QUEUES_TIDY_EVERY = 60.0        # seconds between a worker's looks for queues of runs that ended
QUEUES_KEPT_AFTER = 60.0        # seconds a run's queue stays after its last job ended
HOUSEKEEPING_FIRST = 60.0       # seconds after a worker's start of its first housekeeping
HOUSEKEEPING_EVERY = 3600.0     # seconds between a worker's housekeeping passes
PLACE_KEPT_FOR = 60.0           # seconds a worker keeps a place for a job it dequeued
# the leading parameters of dbos 3.4's dequeue queries (Worker._dequeue_in_places)
DEQUEUE_PARAMETERS = ["queue", "executor_id", "app_version", "queue_partition_key",
                      "local_running_count"]
DEQUEUE_PARTITIONED_PARAMETERS = ["queue", "executor_id", "app_version", "max_tasks"]
FORGET_BATCH = 500              # jobs forgotten per transaction (SQLite's IN lists stay short)
UNIT_STOP_MARGIN = 120          # seconds more for systemd: DBOS's end, the heartbeat's
WORKER_UNIT = "football-worker.service"

logging.getLogger("dbos").setLevel(logging.WARNING)


def state_of_exit(code):
    """A finished job's state from its operation's exit code."""
    return EXIT_STATES.get(code, "failed")


@dataclass
class JobSpec:
    """A job to queue: `football <global_args> <operation> <resource> <args>`."""
    resource: str
    operation: str
    args: list
    id: str = None
    partition: str = None
    gate: bool = False

    @property
    def command(self):
        return [self.operation, self.resource, *self.args]


SYNCING = ("migrate", "migrate+shrink", "migrate+shrink+back")   # a sync into their first target
# the host slot a job's operation waits for first, by kind, and its limit
SLOT_LIMITS = {"sync": "limit_syncs", "shrink": "limit_shrinks", "handover": "limit_handovers"}
SLOT_PARTITION = {"sync": "sync into {}", "shrink": "shrink on {}", "handover": "handover from {}"}


def slot_host(command, hosts, primaries, clusters=()):
    """(kind, host) of the host slot a job's operation waits for first
    (`SLOT_LIMITS`): a sync into the first target of a migrate where it
    names one of `hosts` (the inventory's) or of `clusters` (then the
    cluster: its host is placed later), a shrink on the resource's
    primary, a handover from it (`primaries`: {resource: designated
    primary}, as the hosts last said); None for the others, and where the
    host is not known."""
    operation, res, *args = command
    if operation in SYNCING:
        target = first_target(command)
        return ("sync", target) if target in hosts or target in clusters else None
    if operation in ("shrink", "handover") and primaries.get(res) in hosts:
        return operation, primaries[res]
    return None


def first_target(command):
    """The first target of a migrate's command line (`SYNCING`) as the
    command parses it (`migrate vm1 --pre-hand a2 cluster2`: cluster2, not
    the option's a2), or None."""
    import click

    from football.cli import cli

    operation, *args = command
    try:
        params = cli.commands[operation].make_context(operation, list(args),
                                                      resilient_parsing=True).params
    except (click.ClickException, KeyError):
        return None
    target = params.get("target") or params.get("tmp_primary") or \
        next(iter(params.get("arguments") or ()), None)
    return target or None


def partition_by_slot(specs, inventory, primaries, limits):
    """Partition the `specs` by the host slot each waits for first
    (`slot_host`), at most that kind's limit (`limits`: {kind: N}, as
    `SLOT_LIMITS` names them; the largest of the kinds in the run: a queue
    has one) of a partition dequeued at once, so that a worker's places
    (`worker_jobs`) do not all go to jobs that would wait in `condition`
    for a slot on one host while jobs for others wait queued behind them.
    The migrates to a cluster take turns over half as many partitions as
    it has hosts (which hosts a job syncs into is placed later; a move to a
    cluster syncs into two of them, its primary and its secondary): the
    cluster's sync slots at most. The other jobs each in a partition of its
    own. The limit, as --max-per's (what, N); None where no job has a slot
    host."""
    slots = [slot_host(spec.command, inventory.hosts, primaries, inventory.clusters)
             for spec in specs]
    kinds = sorted({slot[0] for slot in slots if slot})
    if not kinds:
        return None
    turns = {}
    for spec, slot in zip(specs, slots):
        if slot is None:
            spec.partition = f"resource {spec.resource}"
            continue
        kind, host = slot
        spec.partition = SLOT_PARTITION[kind].format(host)
        partitions = max(1, len(inventory.clusters.get(host, ())) // 2)
        if partitions > 1:
            turn = turns.get(host, 0)
            turns[host] = turn + 1
            spec.partition += f" ({turn % partitions + 1} of {partitions})"
    return (f"host slot ({', '.join(SLOT_LIMITS[kind] for kind in kinds)})",
            max(limits[kind] for kind in kinds))


def purge_before(days, option, now=None):
    """The time (epoch seconds) before which the jobs `purge` takes ended:
    `days` (the value of `option`) ago. `Illegal` naming the option for
    days that are not a number ≥ 0: nan (PostgreSQL orders NaN above every
    number, so `finished <= NaN` archived or deleted every job; SQLite
    reads it as NULL: none), inf, a negative number."""
    if not math.isfinite(days) or days < 0:
        raise Illegal(f"{option} {days:g}: not a number of days (0 or more, finite); "
                      "nothing was archived or deleted")
    return (time.time() if now is None else now) - days * 86400


def _a_time(finished_before, what):
    """`Illegal` for a time to compare jobs' ends with that is no number:
    the databases order NaN differently (`purge_before`)."""
    if not math.isfinite(finished_before):
        raise Illegal(f"jobs that ended before {finished_before}: not a time; "
                      f"nothing was {what} (give --days and --forget a finite number of "
                      "days, 0 or more)")


class JobExists(Illegal):
    """The resource has a job already (not archived)."""

    def __init__(self, taken):
        super().__init__(f"{', '.join(taken) or 'a resource'} has a job already (see "
                         "`football screener list`); nothing was queued")


class ResourcesBusy(Illegal):
    """Resources a planner's run would move have live jobs ({resource: job id})."""

    def __init__(self, jobs):
        self.jobs = jobs
        super().__init__(", ".join(f"{res}: its job {job_id} runs"
                                   for res, job_id in sorted(jobs.items())))


class PlannerBusy(Illegal):
    """Another planner's run (a balance, evacuate or restore of any
    controller sharing the jobs' database) has moves that are not finished."""

    def __init__(self, runs):
        self.runs = runs
        super().__init__(f"the moves of {', '.join(runs)} still run")


def why_not_restarted(job):
    """Why the job (a row) is not queued again by `restart`, or None."""
    if job["state"] in RESTARTABLE:
        return None
    return {"done": "it is done", "critical": "it failed in its downtime window and the "
            "container runs nowhere: repair it first (football repair-vm), then purge the job "
            "or start a new one"}.get(job["state"], f"it is {job['state']}: only a finished "
                                                    "job is restarted")


def why_not_killed(job):
    """Why the job (a row) is not killed by `kill`, or None."""
    return f"it is {job['state']} already" if job["state"] in FINISHED else None


# ----------------------------------------------------------------- the store


class JobStore:
    """Our tables beside DBOS's in the jobs' database, and a DBOS client for
    queueing. The database and its tables are created on first use."""

    def __init__(self, config, notify=None, threads=0):
        self.config = config
        self.notify = notify or (lambda job, state, text: None)
        self.url = database_url(config)
        if self.url.startswith("sqlite"):
            directory = Path(self.url.removeprefix("sqlite:///")).parent
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise Illegal(f"the jobs' database cannot be made in {directory}: "
                              f"{error.strerror}; set state_dir (or jobs_database_url)") \
                    from None
        try:
            DBOS.migrate(self.url)
            self.engine = new_engine(self.url, threads)
            _create_schema(self.engine)
        except sa.exc.SQLAlchemyError as error:
            raise Illegal(f"the jobs' database {self.url} cannot be used: {error}; check "
                          "jobs_database_url (`football config`)") from None
        self._client = None

    @property
    def client(self):
        if self._client is None:
            self._client = DBOSClient(system_database_engine=self.engine, application_name=APP)
        return self._client

    def close(self):
        if self._client is not None:
            self._client.destroy()
            self._client = None
        self.engine.dispose()

    # ---------------------------------------------------------------- jobs
    def register_queue(self, name, max_running=None, max_per=None):
        """The queue `name`: at most `max_running` jobs of it run at once, at
        most `max_per` of one partition (then every job needs one), and one
        worker takes at most `worker_jobs` of them at a time (this
        controller's setting): the others stay for other workers. (A
        worker's own limit over all queues is its places: `Places`.)"""
        if max_running is not None and max_per is not None:
            max_per = min(max_per, max_running)
        if name != START_QUEUE:
            self._keep_limits(name, max_running, max_per, replace=True)
        self.client.register_queue(name, global_concurrency=max_running,
                                   partition_concurrency=max_per,
                                   worker_concurrency=min(self.config.worker_jobs,
                                                          max_running or sys.maxsize),
                                   polling_interval_sec=self.config.jobs_poll_interval)

    def _keep_limits(self, name, max_running, max_per, replace):
        row = dict(max_running=max_running, max_per=max_per, registered=time.time())
        with self.engine.begin() as connection:
            if replace and connection.execute(QUEUES.update().where(QUEUES.c.name == name)
                                              .values(**row)).rowcount:
                return
            if connection.execute(sa.select(QUEUES.c.name).where(
                    QUEUES.c.name == name)).first() is None:
                connection.execute(QUEUES.insert().values(name=name, **row))

    def _limits(self, name):
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(QUEUES).where(QUEUES.c.name == name)).first()
        return (row.max_running, row.max_per) if row else (None, None)

    def tidy_queues(self, kept_after):
        """Drop the DBOS queues of runs whose jobs all ended `kept_after`
        seconds ago or more (and of runs that queued none), and register
        again the queue of a job not ended that DBOS does not know (one
        dropped as a restart queued into it). Every worker's DBOS polls
        every queue it knows every `jobs_poll_interval`, for ever: 400 old
        runs kept an idle worker at a full core. A run's limits stay
        (football_queues) for a restart of its jobs; the start queue stays.
        (the names dropped, the names registered again)"""
        now = time.time()
        with self.engine.connect() as connection:
            live = {row.queue for row in connection.execute(
                sa.select(JOBS.c.queue).where(LIVE_JOB).distinct())}
            last = dict(connection.execute(sa.select(
                JOBS.c.queue, sa.func.max(sa.func.coalesce(JOBS.c.finished, JOBS.c.created)))
                .group_by(JOBS.c.queue)).all())
            registered = dict(connection.execute(sa.select(QUEUES.c.name,
                                                           QUEUES.c.registered)).all())
        known = {queue.name: queue for queue in self.client.list_queues()}
        dropped = []
        for name, queue in known.items():
            # a queue registered again (a restart) counts from then: its job follows
            ended = max(last.get(name, 0.0), registered.get(name, 0.0)) or now
            if name == START_QUEUE or name in live or ended > now - kept_after:
                continue
            # a queue registered by an older football: its limits kept first
            self._keep_limits(name, queue.global_concurrency, queue.partition_concurrency,
                              replace=False)
            self.client.delete_queue(name)
            dropped.append(name)
        again = sorted(name for name in live - set(known) if name != START_QUEUE)
        for name in again:
            self.register_queue(name, *self._limits(name))
        return dropped, again

    def queue(self, specs, global_args, queue=START_QUEUE, run="", alone=False):
        """Queue a job per spec, all or none; the job ids. `JobExists` when a
        job id is taken by a job that is not archived, or a resource has a
        live job (unfinished) under another id (`--id`, a planner's move:
        two would move it at once); nothing queued then. A planner's run
        (`run` of a PLAN_KINDS kind) queues in turns with the others;
        `alone`: only while no other planner's run has live jobs, else
        `PlannerBusy`; a resource with a live job is `ResourcesBusy` there
        (the run waits for that job)."""
        ids = []
        planned = run.startswith(tuple(f"{kind}-" for kind in PLAN_KINDS))
        try:
            with self.engine.begin() as connection:
                if planned:
                    connection.execute(TURNS.update().where(TURNS.c.name == PLANNER_TURN)
                                       .values(taken=time.time()))
                    others = self._live_plan_runs(connection, run) if alone else []
                    if others:
                        raise PlannerBusy(others)
                busy = dict(connection.execute(sa.select(JOBS.c.resource, JOBS.c.id).where(
                    LIVE_JOB, JOBS.c.resource.in_([spec.resource for spec in specs]))).all())
                if not planned:     # (its own id taken: JobExists below, naming it)
                    busy = {res: job_id for res, job_id in busy.items() if not any(
                        spec.resource == res and (spec.id or res) == job_id for spec in specs)}
                if busy:
                    raise ResourcesBusy(busy) if planned else JobExists(sorted(busy))
                for spec in specs:
                    job_id = spec.id or spec.resource
                    self._enqueue(connection, dict(
                        id=job_id, resource=spec.resource, operation=spec.operation,
                        args=json.dumps([*global_args, "--json", "--yes", *spec.command]),
                        run=run, queue=queue, partition=spec.partition, gate=spec.gate))
                    ids.append(job_id)
        except sa.exc.IntegrityError:
            taken = [spec.id or spec.resource for spec in specs
                     if self.live_job(spec.id or spec.resource)]
            raise JobExists(taken) from None
        for job_id in ids:
            self._told(self.live_job(job_id), "queued")
        return ids

    @staticmethod
    def _live_plan_runs(connection, run):
        """The planners' runs but `run` with jobs not finished, by name."""
        return sorted(row.run for row in connection.execute(
            sa.select(JOBS.c.run).distinct().where(LIVE_JOB, PLANNERS_JOB, JOBS.c.run != run)))

    def live_plan_runs(self):
        """The planners' runs (any controller's) whose moves are not all finished."""
        with self.engine.connect() as connection:
            return self._live_plan_runs(connection, "")

    def _enqueue(self, connection, fields):
        """A job's row and its workflow, in the caller's transaction."""
        now = time.time()
        workflow_id = f"{fields['id']}-{int(now * 1000)}"
        number = connection.execute(JOBS.insert().values(
            **fields, workflow_id=workflow_id, state="queued", created=now,
            kill_requested=False, archived=False)).inserted_primary_key[0]
        options = {"workflow_name": WORKFLOW, "queue_name": fields["queue"],
                   "workflow_id": workflow_id, "app_version": APP_VERSION}
        if fields["partition"] is not None:
            options["queue_partition_key"] = fields["partition"]
        self.client.enqueue_in_transaction(connection, options, number)

    def keep_plan(self, plan_json):
        """A plan, for `balance execute <plan-id>` on every controller."""
        with self.engine.begin() as connection:
            connection.execute(PLANS.delete().where(PLANS.c.id == plan_json["id"]))
            connection.execute(PLANS.insert().values(id=plan_json["id"],
                                                     data=json.dumps(plan_json)))

    def pause(self, res, by):
        """`football pause [res]` for every controller of this database."""
        with self.engine.begin() as connection:
            name = res or "*"
            connection.execute(PAUSES.delete().where(PAUSES.c.resource == name))
            connection.execute(PAUSES.insert().values(resource=name, paused=time.time(), by=by))

    def unpause(self, res):
        """Whether there was a pause of `res` (None: of all) to take back."""
        with self.engine.begin() as connection:
            return connection.execute(PAUSES.delete().where(
                PAUSES.c.resource == (res or "*"))).rowcount > 0

    def restart(self, job_id):
        """Queue job `job_id` again (its command, queue and partition: the
        operation resumes from its journal); the finished one is archived."""
        job = self.live_job(job_id)
        if job and job["queue"] != START_QUEUE and not why_not_restarted(job):
            # dropped once its jobs had ended (tidy_queues); with the run's limits
            self.register_queue(job["queue"], *self._limits(job["queue"]))
        with self.engine.begin() as connection:
            job = connection.execute(sa.select(JOBS).where(
                JOBS.c.id == job_id, JOBS.c.archived == sa.false())).mappings().first()
            if job is None:
                raise Illegal(f"no job {job_id!r} to restart (see `football screener list`)")
            why = why_not_restarted(job)
            if why:
                raise Illegal(f"job {job_id} is not restarted: {why}")
            connection.execute(JOBS.update().where(JOBS.c.number == job["number"])
                               .values(archived=True))
            # a gate released before stays released: the job passed it once
            self._enqueue(connection, {key: job[key] for key in (
                "id", "resource", "operation", "args", "run", "queue", "partition", "gate",
                "released")})
        self._told(self.live_job(job_id), "queued")

    def kill(self, job_id):
        """Kill job `job_id`: a queued one is cancelled now (it never runs),
        a running one is asked to stop (its worker interrupts the operation
        as Ctrl-C would: it cleans up, a downtime window is finished or
        compensated). True when it was cancelled."""
        with self.engine.begin() as connection:
            job = connection.execute(sa.select(JOBS).where(
                JOBS.c.id == job_id, JOBS.c.archived == sa.false())).mappings().first()
            if job is None:
                raise Illegal(f"no job {job_id!r} to kill (see `football screener list`)")
            why = why_not_killed(job)
            if why:
                raise Illegal(f"job {job_id} is not killed: {why}")
            cancelled = connection.execute(JOBS.update().where(
                JOBS.c.number == job["number"], JOBS.c.state == "queued").values(
                state="interrupted", finished=time.time(), kill_requested=True,
                message="killed before it started")).rowcount == 1
            if not cancelled:
                connection.execute(JOBS.update().where(JOBS.c.number == job["number"])
                                   .values(kill_requested=True))
        if cancelled:
            self.client.cancel_workflow(job["workflow_id"])
            self.record(job["number"], {"event": "job-end", "state": "interrupted",
                                        "exit_code": None, "killed": True})
            self._told(self.job_by_number(job["number"]), "interrupted")
        return cancelled

    def release(self, job_ids, dry_run=False):
        """Release the jobs `job_ids`, waiting at the operator gate, into their
        downtime window (each sees it at its next poll); all or none:
        `Illegal` naming a job that does not wait there. `dry_run`: only
        check them."""
        with self.engine.begin() as connection:
            jobs = []
            for job_id in job_ids:
                job = connection.execute(sa.select(JOBS).where(
                    JOBS.c.id == job_id, JOBS.c.archived == sa.false())).mappings().first()
                if job is None:
                    raise Illegal(f"no job {job_id!r} to continue (see `football screener "
                                  "list --state waiting`); nothing was released")
                if job["state"] != "waiting":
                    raise Illegal(f"job {job_id} is {job['state']}, not waiting at the gate "
                                  "before its downtime: nothing to continue (see `football "
                                  "screener list --state waiting`); nothing was released")
                jobs.append(job)
            now = time.time()
            for job in [] if dry_run else jobs:
                # the event in the same transaction: a job that sees the
                # release at its next poll tells of going on only after it
                _insert_event(connection, job["number"], now,
                              {"event": "gate-released", "resource": job["resource"]})
                connection.execute(JOBS.update().where(JOBS.c.number == job["number"])
                                   .values(released=now, last_event=now))
        return [job["id"] for job in jobs]

    def oldest_waiting(self, count):
        """The ids of the `count` oldest jobs (by queueing) waiting at the gate."""
        with self.engine.connect() as connection:
            return [row.id for row in connection.execute(
                sa.select(JOBS.c.id).where(JOBS.c.state == "waiting",
                                           JOBS.c.archived == sa.false())
                .order_by(JOBS.c.number).limit(count))]

    def claim(self, number, worker_id):
        """Job `number` is running on `worker_id` from now on, unless it
        finished or was killed meanwhile (False then)."""
        claimable = (JOBS.c.number == number, JOBS.c.state.not_in(FINISHED),
                     JOBS.c.kill_requested == sa.false())
        with self.engine.begin() as connection:
            # running already: a job resumed after its worker died
            entered = connection.execute(JOBS.update().where(
                *claimable, JOBS.c.state != "running").values(state="running")).rowcount == 1
            claimed = connection.execute(JOBS.update().where(*claimable).values(
                state="running", started=time.time(), worker=worker_id,
                child_host=socket.gethostname(), child_pid=None)).rowcount == 1
        if entered:
            self._told(self.job_by_number(number), "running")
        return claimed

    def to_kill(self, worker_id, silent_for):
        """(number, killed) of the jobs of `worker_id` to be interrupted:
        those killed (`killed` True), and those running without an event
        for `silent_for` seconds (False: time-outs, as `shown_state` has them)."""
        silent = sa.and_(JOBS.c.state == "running", sa.func.coalesce(
            JOBS.c.last_event, JOBS.c.started, JOBS.c.created) < time.time() - silent_for)
        with self.engine.connect() as connection:
            return [(row.number, row.kill_requested) for row in connection.execute(
                sa.select(JOBS.c.number, JOBS.c.kill_requested).where(
                    JOBS.c.worker == worker_id, JOBS.c.state.not_in(FINISHED),
                    sa.or_(JOBS.c.kill_requested == sa.true(), silent)))]

    def archive(self, finished_before, unattended=False, dry_run=False):
        """Archive the finished jobs that ended before `finished_before`
        (epoch seconds); their ids. `unattended` (a worker's housekeeping)
        leaves the jobs that wait for an operator: a critical one (its
        container runs nowhere) and one that left its operation unfinished
        (a journal kept: `screener restart` or a repair goes on from it).
        `dry_run`: only their ids. `Illegal` (nothing archived) for a time
        that is no number (`purge_before`)."""
        _a_time(finished_before, "archived")
        with self.engine.begin() as connection:
            query = sa.select(JOBS.c.number, JOBS.c.id).where(
                JOBS.c.archived == sa.false(), JOBS.c.state.in_(FINISHED),
                JOBS.c.finished <= finished_before)
            if unattended:
                query = query.where(JOBS.c.state != "critical",
                                    JOBS.c.id.not_in(sa.select(JOURNALS.c.job)))
            rows = connection.execute(query).all()
            if rows and not dry_run:
                connection.execute(JOBS.update().where(
                    JOBS.c.number.in_([row.number for row in rows])).values(archived=True))
                # a later job of the same id does not go on from these
                connection.execute(JOURNALS.delete().where(
                    JOURNALS.c.job.in_([row.id for row in rows])))
        return [row.id for row in rows]

    def forget(self, finished_before, dry_run=False):
        """Delete the archived jobs that ended before `finished_before`
        (epoch seconds): their rows, their events, DBOS's records of their
        workflows, and the limits of runs none of whose jobs are left; how
        many jobs (`dry_run`: only how many). DBOS's records go first: a
        job left half forgotten is an archived row whose `show` has fewer
        events, never a workflow without its job. `Illegal` (nothing
        deleted) for a time that is no number (`purge_before`)."""
        _a_time(finished_before, "deleted")
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(JOBS.c.number, JOBS.c.workflow_id).where(
                JOBS.c.archived == sa.true(),
                sa.func.coalesce(JOBS.c.finished, JOBS.c.created) <= finished_before)).all()
        if dry_run:
            return len(rows)
        for start in range(0, len(rows), FORGET_BATCH):
            batch = rows[start:start + FORGET_BATCH]
            self.client.delete_workflows([row.workflow_id for row in batch])
            numbers = [row.number for row in batch]
            with self.engine.begin() as connection:
                connection.execute(EVENTS.delete().where(EVENTS.c.job.in_(numbers)))
                connection.execute(JOBS.delete().where(JOBS.c.number.in_(numbers)))
        if rows:
            with self.engine.begin() as connection:
                # a run that registers its queue now queues its jobs next
                connection.execute(QUEUES.delete().where(
                    QUEUES.c.registered <= finished_before,
                    QUEUES.c.name.not_in(sa.select(JOBS.c.queue).distinct())))
        return len(rows)

    def forget_plans(self, expired_before):
        """Delete the kept plans (`keep_plan`) that expired before
        `expired_before` (epoch seconds); how many."""
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(PLANS.c.id, PLANS.c.data)).all()
        old = []
        for row in rows:
            try:
                expires = float(json.loads(row.data)["expires"])
            except (ValueError, KeyError, TypeError):
                expires = 0.0           # unreadable: nobody can execute it
            if expires < expired_before:
                old.append(row.id)
        if old:
            with self.engine.begin() as connection:
                connection.execute(PLANS.delete().where(PLANS.c.id.in_(old)))
        return len(old)

    def running_job_of(self, res):
        """The live job (unfinished, not archived) of resource `res`, under
        any id, or None."""
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(JOBS).where(
                LIVE_JOB, JOBS.c.resource == res)).mappings().first()
        return dict(row) if row else None

    def live_job(self, job_id):
        """The job `job_id` that is not archived, or None."""
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(JOBS).where(
                JOBS.c.id == job_id, JOBS.c.archived == sa.false())).mappings().first()
        return dict(row) if row else None

    def job(self, job_id):
        """The job `job_id`: the one not archived, else the newest archived."""
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(JOBS).where(JOBS.c.id == job_id).order_by(
                JOBS.c.archived, JOBS.c.number.desc())).mappings().first()
        return dict(row) if row else None

    def job_by_number(self, number):
        with self.engine.connect() as connection:
            return dict(connection.execute(
                sa.select(JOBS).where(JOBS.c.number == number)).mappings().one())

    def jobs(self, archived=False):
        with self.engine.connect() as connection:
            query = sa.select(JOBS).order_by(JOBS.c.number)
            if not archived:
                query = query.where(JOBS.c.archived == sa.false())
            return [dict(row) for row in connection.execute(query).mappings()]

    def left_unfinished(self):
        """{resource: (job id, state, [operations])} of the jobs that ended
        without being done and left an operation unfinished (a journal kept
        with the job): it goes on only by `screener restart` or a repair."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(JOBS.c.id, JOBS.c.resource, JOBS.c.state, JOURNALS.c.data)
                .join(JOURNALS, JOURNALS.c.job == JOBS.c.id)
                .where(JOBS.c.archived == sa.false(), JOBS.c.state.in_(RESTARTABLE + ("critical",)))
            ).all()
        left = {}
        for row in rows:
            job_id, state, operations = left.get(row.resource, (row.id, row.state, []))
            operations.append(json.loads(row.data).get("operation", "?"))
            left[row.resource] = (job_id, state, operations)
        return left

    def events(self, number):
        with self.engine.connect() as connection:
            return [json.loads(row.event) for row in connection.execute(
                sa.select(EVENTS.c.event).where(EVENTS.c.job == number).order_by(EVENTS.c.seq))]

    def update(self, number, **fields):
        """Write `fields` to job `number`'s row; a new `state` is told."""
        with self.engine.begin() as connection:
            entered = self._write(connection, number, fields)
        if entered:
            self._told(self.job_by_number(number), entered)

    @staticmethod
    def _write(connection, number, fields):
        """Write `fields` to job `number`'s row in the caller's transaction;
        the state it entered now, else None. The state is written first and
        only where it differs, so that two writers of one state (a worker
        and a kill) cannot both believe they entered it."""
        state = fields.get("state")
        entered = state is not None and connection.execute(JOBS.update().where(
            JOBS.c.number == number, JOBS.c.state != state).values(state=state)).rowcount == 1
        connection.execute(JOBS.update().where(JOBS.c.number == number).values(**fields))
        return state if entered else None

    def _told(self, job, state):
        """Tell the `notify` hook that `job` (a row) entered `state`."""
        self.notify(job=job_view(job), state=state, text=notification_text(job, state))

    def record(self, number, event, kept=True, worker_id=None):
        """Store one event of job `number` (unless not `kept`: a progress
        between those its log keeps); what it tells about the job (phase,
        message, progress, waits, downtime, location) goes to its row —
        its state only while the job is not finished and, where the event
        comes from `worker_id`'s run, while it is that worker's: the late
        events of a worker found dead, kept while the database was away,
        set a job another worker had ended `done` back to `running`."""
        now = time.time()
        fields = {"last_event": now, **facts_of(event)}
        with self.engine.begin() as connection:
            if kept:
                _insert_event(connection, number, now, event)
            if "progress" in fields or "state" in fields:      # (not for a message)
                row = connection.execute(sa.select(JOBS.c.progress, JOBS.c.state,
                                                   JOBS.c.worker)
                                         .where(JOBS.c.number == number)).first()
                if "progress" in fields:
                    fields["progress"] = _with_rate(fields["progress"], row.progress, now)
                if "state" in fields and (row.state in FINISHED or
                                          worker_id not in (None, row.worker)):
                    del fields["state"]
            entered = self._write(connection, number, fields)
        if entered:
            self._told(self.job_by_number(number), entered)

    def end(self, number, worker_id, state, exit_code):
        """Job `number` ended on `worker_id` in `state`: the host slots it
        still holds given back (a `slot` event each), its end written (and
        its `job-end` event), in one transaction — only while the job is
        that worker's. One that another worker took over meanwhile (this one
        was found dead: cut off from the database while its operation went
        on) is that worker's, its slots too: False, nothing changed."""
        with self.engine.begin() as connection:
            if connection.execute(sa.select(JOBS.c.worker).where(
                    JOBS.c.number == number).with_for_update()).scalar() != worker_id:
                return False
            entered = self._end(connection, number, state, exit_code)
        if entered:
            self._told(self.job_by_number(number), entered)
        return True

    def end_killed(self, number):
        """Job `number`, killed while no worker ran it (its worker stopped or
        died; `kill` only asked it to stop), ends `interrupted` (190), its
        slots given back, unless it finished meanwhile: it stayed `running`
        for ever, holding its slots, neither restarted nor purged."""
        with self.engine.begin() as connection:
            state = connection.execute(sa.select(JOBS.c.state).where(
                JOBS.c.number == number).with_for_update()).scalar()
            entered = None if state in FINISHED else self._end(
                connection, number, "interrupted", EXIT_INTERRUPTED,
                message="killed while no worker ran it")
        if entered:
            self._told(self.job_by_number(number), entered)

    def _end(self, connection, number, state, exit_code, **fields):
        """`end`'s work in the caller's transaction: the job's slots given
        back (a `slot` event each), its end written (and its `job-end`
        event); the state it entered, else None."""
        now = time.time()
        for row in connection.execute(sa.select(SLOTS.c.kind, SLOTS.c.host).where(
                SLOTS.c.job == number)).all():
            _insert_event(connection, number, now, {
                "event": "slot", "action": "released", "slot": row.kind,
                "hosts": [row.host], "by": "worker"})
        connection.execute(SLOTS.delete().where(SLOTS.c.job == number))
        entered = self._write(connection, number, dict(
            state=state, exit_code=exit_code, finished=now, last_event=now, **fields))
        _insert_event(connection, number, now, {"event": "job-end", "exit_code": exit_code,
                                                "state": state})
        return entered

    # ------------------------------------------------------------- workers
    def heartbeat(self, worker_id, started, first=False):
        """Worker `worker_id` is alive now; False when another worker has
        taken it over (it was found dead: it must run nothing more). Its
        row is made by its `first` heartbeat only: a row gone later is a
        takeover done."""
        with self.engine.begin() as connection:
            values = dict(host=socket.gethostname(), pid=os.getpid(), started=started,
                          seen=time.time(), stopped=False)
            if connection.execute(WORKERS.update().where(
                    WORKERS.c.id == worker_id, WORKERS.c.taken_by.is_(None))
                    .values(**values)).rowcount == 1:
                return True
            if first and connection.execute(sa.select(WORKERS.c.id).where(
                    WORKERS.c.id == worker_id)).first() is None:
                connection.execute(WORKERS.insert().values(id=worker_id, **values))
                return True
            return False

    def enter(self, worker_id, started):
        """The first heartbeat of a starting worker: while another worker
        takes over this id's jobs (a dead run of it), wait until it has;
        a takeover older than `worker_dead_after` was left half-done by a
        taker that died, and is undone."""
        while not self.heartbeat(worker_id, started, first=True):
            with self.engine.begin() as connection:
                connection.execute(WORKERS.update().where(
                    WORKERS.c.id == worker_id,
                    WORKERS.c.taken < time.time() - self.config.worker_dead_after)
                    .values(taken_by=None, taken=None))
            time.sleep(min(0.5, self.config.worker_heartbeat))

    def retire(self, worker_id):
        """Worker `worker_id` stopped cleanly: its pending jobs are for the
        next worker, of this id or another (unless it was taken over)."""
        with self.engine.begin() as connection:
            connection.execute(WORKERS.update().where(
                WORKERS.c.id == worker_id, WORKERS.c.taken_by.is_(None)).values(stopped=True))

    def forget_worker(self, worker_id, taken_by=None):
        with self.engine.begin() as connection:
            connection.execute(WORKERS.delete().where(
                WORKERS.c.id == worker_id,
                *([WORKERS.c.taken_by == taken_by] if taken_by else [])))

    def live_workers(self):
        with self.engine.connect() as connection:
            return [dict(row) for row in connection.execute(sa.select(WORKERS).where(
                WORKERS.c.seen > time.time() - self.config.worker_dead_after,
                WORKERS.c.stopped.is_not(sa.true()),
                WORKERS.c.taken_by.is_(None))).mappings()]

    def take_over(self, worker_id):
        """The workers `worker_id` takes over now: those stopped and those
        dead (no heartbeat for `worker_dead_after`), not being taken over
        already. Each is claimed by one conditional UPDATE: of two live
        workers that find it dead, one takes it."""
        now = time.time()
        cutoff = now - self.config.worker_dead_after
        takeable = (WORKERS.c.id != worker_id,
                    sa.or_(WORKERS.c.stopped == sa.true(), WORKERS.c.seen < cutoff),
                    sa.or_(WORKERS.c.taken_by.is_(None), WORKERS.c.taken < cutoff))
        with self.engine.connect() as connection:
            candidates = connection.execute(sa.select(WORKERS.c.id, WORKERS.c.stopped)
                                            .where(*takeable)).all()
        taken = []
        for candidate in candidates:
            with self.engine.begin() as connection:
                if connection.execute(WORKERS.update().where(
                        WORKERS.c.id == candidate.id, *takeable).values(
                        taken_by=worker_id, taken=now)).rowcount == 1:
                    taken.append((candidate.id, "stopped" if candidate.stopped else "dead"))
        return taken

    def jobs_of_worker(self, worker_id):
        """The jobs worker `worker_id` ran that have not finished."""
        with self.engine.connect() as connection:
            return [dict(row) for row in connection.execute(sa.select(JOBS).where(
                JOBS.c.worker == worker_id, JOBS.c.archived == sa.false(),
                JOBS.c.state.not_in(FINISHED))).mappings()]


SCHEMA_ATTEMPTS = 5


def _create_schema(engine):
    """Our tables, and the columns an older football's database lacks. Two
    processes that open a new database at once (CI: a worker and a
    `screener start`) both find a table missing and both create it; the
    second fails with "already exists" and looks again, finding it then."""
    for attempt in range(1, SCHEMA_ATTEMPTS + 1):
        try:
            METADATA.create_all(engine)
            _add_new_columns(engine)
            _add_turns(engine)
            return
        except sa.exc.DBAPIError as error:
            text = str(error.orig).lower()
            made_meanwhile = "already exists" in text or "duplicate" in text
            if not made_meanwhile or attempt == SCHEMA_ATTEMPTS:
                raise
            time.sleep(0.1 * attempt)


def _add_turns(engine):
    """The rows of TURNS, once (another process may add them meanwhile)."""
    with engine.connect() as connection:
        if connection.execute(sa.select(TURNS.c.name).where(
                TURNS.c.name == PLANNER_TURN)).first():
            return
    try:
        with engine.begin() as connection:
            connection.execute(TURNS.insert().values(name=PLANNER_TURN, taken=0.0))
    except sa.exc.IntegrityError:
        pass


def _add_new_columns(engine):
    """Columns of our tables that a database made by an older football
    lacks, added (with their defaults)."""
    inspector = sa.inspect(engine)
    for table in METADATA.sorted_tables:
        have = {column["name"] for column in inspector.get_columns(table.name)}
        missing = [column for column in table.columns if column.name not in have]
        with engine.begin() as connection:
            for column in missing:
                definition = sa.schema.CreateColumn(column).compile(dialect=engine.dialect)
                connection.execute(sa.text(f"ALTER TABLE {table.name} ADD COLUMN {definition}"))


def job_view(job):
    """A job's row as JSON-able values (its command line and progress decoded)."""
    view = dict(job)
    view["args"] = json.loads(job["args"])
    view["progress"] = json.loads(job["progress"]) if job["progress"] else None
    return view


def notification_text(job, state):
    """One line for people: `job vm1 done (exit 0): vm1 runs on b1`."""
    head = f"job {job['id']} {state}"
    if state == "queued":
        return f"{head}: {job['operation']} {job['resource']}"
    if state == "running":
        return f"{head} on worker {job['worker']}: {job['operation']} {job['resource']}"
    if state in FINISHED and job["exit_code"] is not None:
        head += f" (exit {job['exit_code']})"
    return f"{head}: {job['message']}" if job["message"] else head


def hook_notifier(hooks, warn):
    """The store's `notify`: the hook through a guard, so that a failing
    notification plugin is a warning (`warn(text)`) and never fails a job."""
    def notify(job, state, text):
        try:
            hooks.call("notify", job=job, state=state, text=text)
        except Exception as error:      # any plugin's failure: the job goes on
            warn(f"notifying that job {job['id']} is {state} failed: {error}")
    return notify


def _insert_event(connection, number, now, event):
    """One event of job `number` into its log (its `time`: `now`, unless it has one)."""
    event.setdefault("time", round(now, 3))
    connection.execute(EVENTS.insert().values(job=number, time=now, event=json.dumps(event)))


def facts_of(event):
    """The columns of a job's row an event changes."""
    kind = event.get("event")
    if kind == "phase":
        return {"phase": event.get("phase"), "state": "running"}
    if kind == "message":
        return {"message": event.get("text", "").strip()[:500]}
    if kind in ("warning", "stderr") and event.get("text", "").strip():
        return {"message": f"{kind}: {event['text'].strip()}"[:500]}
    if kind == "progress":
        return {"progress": json.dumps({key: event.get(key) for key in ("what", "done", "total")})}
    if kind == "wait":
        return {"state": event.get("state", "condition"),
                "message": f"waiting: {'; '.join(event.get('reasons', []))}"[:500]}
    if kind == "wait-end":
        return {"state": "running"}
    if kind == "takeover":
        return {"message": f"taken over by worker {event.get('by')} (worker "
                           f"{event.get('worker')} {event.get('why')})"}
    if kind == "downtime-end":
        return {"location": event.get("host")}
    if kind == "summary" and event.get("downtime_seconds") is not None:
        return {"downtime": event["downtime_seconds"]}
    return {}


def _with_rate(progress, before, now):
    """A progress (JSON) with where its `what` was first seen (`since`: time,
    done), carried over from the `before` one of the same `what`."""
    progress, before = json.loads(progress), json.loads(before) if before else {}
    if before.get("what") == progress["what"] and before.get("since"):
        progress["since"] = before["since"]
    else:
        progress["since"] = [now, progress.get("done") or 0]
    progress["time"] = now
    return json.dumps(progress)


def progress_text(progress):
    """`45% ETA 3m20s` from a job's progress (JSON), `-` when there is none."""
    if not progress:
        return "-"
    progress = json.loads(progress)
    done, total = progress.get("done") or 0, progress.get("total") or 0
    if not total:
        return "-"
    text = f"{done * 100 // total}%"
    since, since_done = progress.get("since") or (None, 0)
    if since is not None and done < total and done > since_done and progress["time"] > since:
        rate = (done - since_done) / (progress["time"] - since)
        left = int((total - done) / rate)
        text += f" ETA {left // 60}m{left % 60:02d}s" if left >= 60 else f" ETA {left}s"
    return text


def shown_state(job, session_timeout, now=None):
    """The state to show: the stored one, `timeouted` for a job that runs
    without an event for `session_timeout` (not one that waits and said
    why: at the operator gate, at a limit, lock or business hours, before
    a delayed cleanup)."""
    now = time.time() if now is None else now
    if job["state"] == "running":
        last = job["last_event"] or job["started"] or job["created"]
        if now - last > session_timeout:
            return "timeouted"
    return "archived" if job["archived"] else job["state"]


def worker_unit(options=(), worker_id=None, command=None):
    """{`football-worker.service`: text}: the systemd unit of a worker that
    runs `command` (default: this installation's football) with the global
    `options` (`--config FILE`, `--var NAME=VALUE`...) and `worker_id`."""
    words = [*(command or [sys.executable, "-m", "football"]), *options]
    return {WORKER_UNIT: render(
        "systemd/football-worker.service.j2", command=" ".join(map(systemd_word, words)),
        worker_id=systemd_word(worker_id) if worker_id else None, stop_wait=f"{STOP_WAIT:g}",
        stop_timeout=int(STOP_WAIT) + UNIT_STOP_MARGIN)}


def systemd_word(word):
    """`word` as one word of a systemd command line: `%` and `$` doubled
    (no specifiers, no variables), quoted when it is not plain."""
    if "\n" in str(word):
        raise Illegal(f"{word!r} cannot go into a systemd unit: it holds a line break")
    word = str(word).replace("%", "%%").replace("$", "$$")
    if re.fullmatch(r"[A-Za-z0-9_.:+@/=,-]+", word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ---------------------------------------------------------------- executing


def without_setting(args, name):
    """`args` without their `--var <name>=...` (either spelling)."""
    return without_option(args, "--var", lambda value: value.partition("=")[0].strip() == name)[0]


def without_option(args, option, which=lambda value: True):
    """(`args` without `option`'s occurrences whose value is `which`, either
    spelling: `--option value`, `--option=value`; those values)."""
    kept, taken, tokens = [], [], iter(args)
    for token in tokens:
        if token == option:
            value = next(tokens, "")
        elif token.startswith(f"{option}="):
            value = token[len(option) + 1:]
        else:
            kept.append(token)
            continue
        if which(value):
            taken.append(value)
        else:
            kept += [option, value]
    return kept, taken


def _interrupted_with_parent():
    """In the child before exec: SIGINT when the worker thread that started
    it dies (the worker was killed), so the operation cleans up as on
    Ctrl-C instead of running on unattended."""
    libc.die_with_parent(signal.SIGINT)


class ChildProcess:
    """Runs a job's football command line as a child process in a session
    of its own (`job_command`, default this installation's football).

    The worker's own global options (`options`: its --config, --inventory,
    --var) come first, the job's (those of the command that queued it)
    after them and win where both set one: the worker's say how this
    controller reaches the fleet, the job's what the operator asked of this
    run. But the state dir is always the worker's (`state_dir`): a job's
    journal, its resume and `football status` live on the controller that
    runs it, also when another controller queued it (a shared PostgreSQL
    queue); and so is the inventory where the worker has one (a path on the
    queuing controller need not exist on this one; the job says so when
    the two differ)."""

    def __init__(self, command=None, env=None, options=(), state_dir=None):
        self.command = command or [sys.executable, "-m", "football"]
        self.env = {**os.environ, **(env or {})}
        self.options = list(options)
        if state_dir is not None:
            self.options += ["--var", f"state_dir={Path(state_dir).absolute()}"]
        self.state_dir = state_dir
        self.running = {}
        self.lock = threading.RLock()

    def argv(self, args):
        """(the command line of a job whose own arguments are `args`, what
        the job is told of it)."""
        told = []
        if self.state_dir is not None:
            args = without_setting(args, "state_dir")
        inventory = without_option(self.options, "--inventory")[1]
        if inventory:
            args, queued = without_option(args, "--inventory")
            told += [f"runs with its worker's inventory {inventory[-1]}, not {path} (of the "
                     "command that queued it)" for path in queued if path != inventory[-1]]
        return [*self.command, *self.options, *args], told

    def run(self, number, args, on_event, on_start):
        argv, told = self.argv(args)
        # the operation finds its job (gate, host slots) by these
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env={**self.env, JOB_ENV: str(number)},
                                   start_new_session=True,
                                   preexec_fn=_interrupted_with_parent)
        with self.lock:
            self.running[number] = process
        try:
            on_start(process.pid)
            for text in told:
                on_event({"event": "message", "text": f"worker: {text}"})
            errors = threading.Thread(target=self._stderr, args=(process, on_event), daemon=True)
            errors.start()
            for line in process.stdout:
                on_event(event_of(line))
            code = process.wait()
            errors.join()
        finally:
            with self.lock:
                self.running.pop(number, None)
        return code if code >= 0 else 128 - code      # killed by signal N: 128 + N, failed

    @staticmethod
    def _stderr(process, on_event):
        for line in process.stderr:
            if line.strip():
                on_event({"event": "stderr", "text": line.rstrip("\n")})

    def interrupt(self):
        """Ctrl-C to every running operation (each cleans up and ends)."""
        with self.lock:
            for number in list(self.running):
                self.interrupt_job(number)

    def interrupt_job(self, number):
        """Ctrl-C to the operation of job `number`, if it runs."""
        with self.lock:
            process = self.running.get(number)
            if process is not None:
                try:
                    os.killpg(process.pid, signal.SIGINT)
                except ProcessLookupError:
                    pass

    def wait(self, timeout):
        deadline = time.monotonic() + timeout
        while self.running and time.monotonic() < deadline:
            time.sleep(0.1)
        return not self.running


def event_of(line):
    """A line the operation printed: its JSON event, else an `output` event."""
    line = line.rstrip("\n")
    if line.startswith("{"):
        try:
            event = json.loads(line)
            if isinstance(event, dict) and "event" in event:
                return event
        except ValueError:
            pass
    return {"event": "output", "text": line}


def _alive(pid):
    """Whether `pid` is still a football run (not a process that got its
    number since)."""
    try:
        return b"football" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


# ------------------------------------------------------------------- worker

_worker = None      # the Worker of this process (the step runs its jobs)


@DBOS.workflow(name=WORKFLOW)
def job_workflow(number):
    return run_operation(number)


@DBOS.step(name="run_operation")
def run_operation(number):
    return _worker.run_job(number)


class Places:
    """The jobs one worker runs at once (`worker_jobs`): a job's operation is
    a football process of ~70 MB that polls the jobs' database while it
    waits for a host slot, so a run of a thousand jobs without --max must
    not start a thousand at once.

    The places gate what the worker takes from its queues (`dequeue`): DBOS
    limits a worker per queue (`worker_concurrency`) and each run has a
    queue of its own, so a worker took `worker_jobs` of every run and kept
    the jobs it had no place for waiting while another worker idled. One
    dequeue at a time over all queues takes at most the free places, and a
    place is kept for each job taken until its step takes it (`take`). A
    job that comes with no place kept (it came after PLACE_KEPT_FOR)
    waits for one; the jobs that wait get a place in the order they were
    queued (by job number), before the queues get one."""

    def __init__(self, count):
        self.count, self.taken, self.waiting = count, 0, []
        self.kept = {}                  # workflow id: until when its place is kept
        self.dequeuing = 0              # places held for the dequeue under way
        self.changed = threading.Condition()
        self._dequeue = threading.Lock()

    def dequeue(self, take_jobs):
        """`take_jobs(free)` takes at most `free` jobs from a queue (their
        workflow ids, returned); called only with a free place, one queue at
        a time; a place is kept for each job it took."""
        with self._dequeue:
            with self.changed:
                free = self._free() - len(self.waiting)
                if free <= 0:
                    return []
                self.dequeuing = free
            ids = []
            try:
                ids = take_jobs(free)
                return ids
            finally:
                with self.changed:
                    self.dequeuing = 0
                    until = time.monotonic() + PLACE_KEPT_FOR
                    self.kept.update((workflow_id, until) for workflow_id in ids)
                    self.changed.notify_all()

    def take(self, number, workflow_id, stopping, on_wait):
        """The place of job `number` (of workflow `workflow_id`): the one kept
        for it, else once one is free: True once it has one, False when
        `stopping` is set first; `on_wait()` once if it must wait."""
        with self.changed:
            if self.kept.pop(workflow_id, None) is not None:
                self.taken += 1
                return True
            heapq.heappush(self.waiting, number)
            free = self._free_for(number)
        try:
            if not free:
                on_wait()
            with self.changed:
                while not self._free_for(number):
                    if stopping.is_set():
                        return False
                    self.changed.wait(0.5)
                self.taken += 1
                return True
        finally:
            with self.changed:
                self.waiting.remove(number)
                heapq.heapify(self.waiting)
                self.changed.notify_all()

    def forget(self, workflow_id):
        """The place kept for `workflow_id` is free again: its job ends
        without running here."""
        with self.changed:
            if self.kept.pop(workflow_id, None) is not None:
                self.changed.notify_all()

    def _free(self):
        now = time.monotonic()
        for workflow_id, until in list(self.kept.items()):
            if until < now:             # its job never came (DBOS ended it first)
                del self.kept[workflow_id]
        return self.count - self.taken - len(self.kept) - self.dequeuing

    def _free_for(self, number):
        return self._free() > 0 and self.waiting[0] == number

    def give_back(self):
        with self.changed:
            self.taken -= 1
            self.changed.notify_all()


def _parameters(method):
    """The names of a (bound) method's parameters, in order; [] if unknown."""
    try:
        return list(inspect.signature(method).parameters)
    except (TypeError, ValueError):
        return []


class JobEvents:
    """A running job's events, written into the jobs' database in their
    order. While the database fails they are kept here and written once it
    answers again (said in the worker's log): the operation goes on, and
    its worker reads its output to the end — a worker that stopped reading
    would leave it blocked on a full pipe, or dead of a closed one."""

    def __init__(self, worker, job):
        self.worker, self.number, self.id = worker, job["number"], job["id"]
        self.kept = []                  # the writes not done yet, oldest first
        self.lock = threading.Lock()    # stdout and stderr record from two threads
        self.failing = False
        self.again_at = 0.0             # while it fails: not before then (a connection
                                        # attempt may hang; the output must be read on)
        self.progress_kept = {}         # what: when its log last kept a progress of it

    def record(self, event):
        kept = self._kept(event)
        self.write(lambda: self.worker.store.record(self.number, event, kept,
                                                    worker_id=self.worker.id))

    def _kept(self, event):
        """Whether the job's log keeps this event: a progress (every second
        while a sync runs: 20,000 of one 4 TiB sync) only the first and last
        of its kind and one per PROGRESS_KEPT_EVERY; the job's row always
        shows the latest (`screener list`, its rate and ETA)."""
        if event.get("event") != "progress" or event.get("done") == event.get("total"):
            return True
        now, what = time.monotonic(), event.get("what")
        if now - self.progress_kept.get(what, -PROGRESS_KEPT_EVERY) < PROGRESS_KEPT_EVERY:
            return False
        self.progress_kept[what] = now
        return True

    def write(self, write):
        with self.lock:
            self.kept.append(write)
            if self.failing and time.monotonic() < self.again_at:
                return
            try:
                self._write_kept()
            except sa.exc.SQLAlchemyError as error:
                self.again_at = time.monotonic() + KEPT_EVENTS_RETRY
                if not self.failing:
                    self.worker.say(f"worker {self.worker.id}: job {self.id}: its events are "
                                    "kept in memory while the jobs' database fails "
                                    f"({database_error(error)}); the operation goes on")
                    self.failing = True

    def _write_kept(self):
        while self.kept:
            self.kept[0]()
            self.kept.pop(0)
        if self.failing:
            self.worker.say(f"worker {self.worker.id}: job {self.id}: the jobs' database "
                            "answers again; its kept events are written")
            self.failing = False

    def flush(self):
        """Every kept event written, waiting for the database as long as it fails."""
        def write_kept():
            with self.lock:
                self._write_kept()
        self.worker._answer(self.id, "recording its events", write_kept)


class WorkerStopped(Exception):
    """The worker stopped while this job ran: the job is left to the next."""


class WorkerRunning(Illegal):
    """Another worker with this id is alive."""


class Worker:
    """The process's DBOS executor that runs jobs from the queues, with a
    heartbeat in `football_workers`; `executor` runs a job's command line
    (a ChildProcess by default); `hooks` get the `notify` calls (default:
    the shipped plugins and those of `plugin_dirs`)."""

    def __init__(self, config, worker_id=None, executor=None, say=None, hooks=None):
        self.config = config
        self.id = worker_id or socket.gethostname()
        self.executor = executor or ChildProcess(shlex.split(config.job_command) or None)
        self.say = say or (lambda text: None)
        self.hooks = hooks
        self.store = None
        self.stopping = threading.Event()
        self._parked = threading.Event()        # set once DBOS is destroyed
        self._in_step = 0                       # threads running run_job
        self._lock = threading.Lock()
        self._beat = threading.Event()
        self._beating = self._housekeeping = None
        self.taken_over = threading.Event()     # found dead by another worker: stop
        self.started = time.time()
        self.places = Places(config.worker_jobs)
        self.timed_out = set()                  # jobs interrupted after session_timeout

    def start(self):
        global _worker
        if self.hooks is None:
            self.hooks = Hooks(config=self.config)      # with the plugins of plugin_dirs
        # a job's stdout and stderr record its events, each from its own thread
        self.store = JobStore(self.config, threads=2 * self.config.worker_jobs,
                              notify=hook_notifier(self.hooks, lambda text: self.say(
                                  f"worker {self.id}: warning: {text}")))
        here = socket.gethostname()
        for other in self.store.live_workers():
            if other["id"] != self.id or (other["host"], other["pid"]) == (here, os.getpid()):
                continue
            if other["host"] != here or _alive(other["pid"]):
                raise WorkerRunning(f"worker {self.id} runs already (pid {other['pid']} on "
                                    f"{other['host']}); give this one another --id")
        _worker = self
        self.store.enter(self.id, self.started)
        if isinstance(getattr(self.executor, "env", None), dict):
            # the jobs' operations read their gate and slots in this database
            self.executor.env["FOOTBALL_JOBS_DATABASE_URL"] = self.store.url
        # the start queue is in the database before DBOS's queue thread first
        # lists the queues: else it sees it only at its next look, 1 s later
        self.store.register_queue(START_QUEUE)
        # DBOS's notification listener sleeps this long between its looks
        # (it looks at nothing of ours), and its stop waits for that sleep
        dbos = DBOS(config={"name": APP, "system_database_url": self.store.url,
                            "executor_id": self.id, "application_version": APP_VERSION,
                            "run_admin_server": False, "log_level": "WARNING",
                            "notification_listener_polling_interval_sec":
                                min(1.0, self.config.jobs_poll_interval)})
        DBOS.launch()     # also recovers the jobs this worker id left running
        # (its queue threads take their first jobs a poll interval after this)
        self._dequeue_in_places(dbos._sys_db)
        DBOS.register_queue(START_QUEUE, polling_interval_sec=self.config.jobs_poll_interval,
                            worker_concurrency=self.config.worker_jobs,
                            on_conflict="always_update")
        self._beating = threading.Thread(target=self._heartbeats, daemon=True,
                                         name="football-worker-heartbeat")
        self._beating.start()
        self._housekeeping = threading.Thread(target=self._housekeep, daemon=True,
                                              name="football-worker-housekeeping")
        self._housekeeping.start()
        self.say(f"worker {self.id}: running jobs from {self.store.url}")

    def _dequeue_in_places(self, system_db):
        """DBOS's dequeue here takes only the jobs this worker has places for
        (`Places`). DBOS 3.4 has no limit per executor over all queues (its
        `worker_concurrency` holds per queue): its two dequeue queries are
        wrapped, with the worker's free places as their limit — internals
        of dbos 3.4 (`SystemDatabase.start_queued_workflows` and
        `start_queued_partitioned_workflows`, `Queue._worker_concurrency`)."""
        claim = system_db.start_queued_workflows
        claim_partitioned = system_db.start_queued_partitioned_workflows
        if _parameters(claim)[:5] != DEQUEUE_PARAMETERS or \
                _parameters(claim_partitioned)[:4] != DEQUEUE_PARTITIONED_PARAMETERS:
            # another dbos than the one this was written against: its own
            # dequeue (a job with no place waits for one, as it says)
            self.say(f"worker {self.id}: warning: this dbos dequeues otherwise than dbos 3.4: "
                     "a worker may take jobs beyond its worker_jobs places, which then wait "
                     "for one (pin dbos 3.4 to avoid it)")
            return False

        def start_queued_workflows(queue, executor_id, app_version, partition,
                                   running=0, *args, **kwargs):
            if queue.name.startswith("_dbos_"):      # DBOS's own: no job of ours
                return claim(queue, executor_id, app_version, partition, running,
                             *args, **kwargs)
            stopped_by = []

            def take_jobs(free):
                limited = copy.copy(queue)
                limited._worker_concurrency = min(
                    sys.maxsize if queue._worker_concurrency is None
                    else queue._worker_concurrency, running + free)
                ids, why = claim(limited, executor_id, app_version, partition, running,
                                 *args, **kwargs)
                stopped_by.append(why)
                return ids

            ids = self.places.dequeue(take_jobs)
            return ids, stopped_by[0] if stopped_by else "worker_concurrency"

        def start_queued_partitioned_workflows(queue, executor_id, app_version,
                                               max_tasks=sys.maxsize, **kwargs):
            if queue.name.startswith("_dbos_"):
                return claim_partitioned(queue, executor_id, app_version, max_tasks, **kwargs)
            return self.places.dequeue(lambda free: claim_partitioned(
                queue, executor_id, app_version, min(max_tasks, free), **kwargs))

        system_db.start_queued_workflows = start_queued_workflows
        system_db.start_queued_partitioned_workflows = start_queued_partitioned_workflows
        return True

    def _heartbeats(self):
        """The heartbeat, and the kills asked for this worker's jobs and
        the time-outs of its running ones (each operation is interrupted
        once: a second Ctrl-C could cut its clean-up short)."""
        heartbeat, timeout = self.config.worker_heartbeat, self.config.session_timeout
        interval = min(heartbeat, self.config.jobs_poll_interval)
        beaten, interrupted, failing = time.monotonic(), set(), None
        tidied = time.monotonic() - QUEUES_TIDY_EVERY / 2
        while not self._beat.wait(interval):
            try:
                if time.monotonic() - beaten >= heartbeat:
                    if not self.store.heartbeat(self.id, self.started):
                        self._fenced()
                        return
                    beaten = time.monotonic()
                    if not self.stopping.is_set():      # DBOS may be going away
                        self._take_over()
                    if time.monotonic() - tidied >= QUEUES_TIDY_EVERY:
                        tidied = time.monotonic()
                        self._tidy_queues()
                for number, killed in self.store.to_kill(self.id, timeout):
                    if number not in interrupted:
                        interrupted.add(number)
                        if killed:
                            self.executor.interrupt_job(number)
                        else:
                            self._time_out(number, timeout)
            except sa.exc.SQLAlchemyError as error:
                if failing is None:         # said once, not at every beat
                    failing = time.monotonic()
                    self.say(f"worker {self.id}: the jobs' database failed "
                             f"({database_error(error)}): no heartbeat until it answers "
                             f"(other workers take this one's jobs over after "
                             f"{self.config.worker_dead_after:g} s)")
                continue
            if failing is not None:
                self.say(f"worker {self.id}: the jobs' database answers again (after "
                         f"{time.monotonic() - failing:.0f} s)")
                failing = None

    def _housekeep(self):
        """The controller's housekeeping (football/housekeeping.py), first
        HOUSEKEEPING_FIRST s after the start (its jobs go first), then every
        HOUSEKEEPING_EVERY s; in a thread of its own: a first pass over years
        of run logs must not hold the heartbeat."""
        from football.housekeeping import housekeep

        wait = HOUSEKEEPING_FIRST
        while not self._beat.wait(wait):
            wait = HOUSEKEEPING_EVERY
            try:
                kept = housekeep(self.config, self.store)
            except Exception as error:      # noqa: BLE001 (a thread: said, tried again)
                self.say(f"worker {self.id}: housekeeping failed ({database_error(error)}); "
                         f"again in {HOUSEKEEPING_EVERY:g} s")
                continue
            if kept:
                self.say(f"worker {self.id}: housekeeping: {kept.said(self.config)}")

    def _time_out(self, number, timeout):
        """Job `number` runs without an event for `timeout` s (hung: a host
        command that never returns): its operation is interrupted as by
        Ctrl-C, and the job ends `timeouted` (195) — as the original's
        screener killed a silent session."""
        self.timed_out.add(number)
        self.executor.interrupt_job(number)
        text = (f"no event for {timeout:g} s (session_timeout): the operation is "
                "interrupted as by Ctrl-C; the job ends timeouted")
        self.say(f"worker {self.id}: job {number}: {text}")
        # (last: a database that fails now is said by the heartbeat's loop)
        self.store.record(number, {"event": "warning", "text": text}, worker_id=self.id)

    def _tidy_queues(self):
        dropped, again = self.store.tidy_queues(QUEUES_KEPT_AFTER)
        if again:
            self.say(f"worker {self.id}: the queue of jobs not ended registered again: "
                     f"{', '.join(again)}")

    def _fenced(self):
        """Another worker found this one dead (its heartbeat stalled) and
        took its jobs over: its operations are interrupted as by Ctrl-C
        (the taker's runs wait for them) and it stops (`taken_over`)."""
        self.say(f"worker {self.id}: taken over by another worker (no heartbeat for "
                 f"{self.config.worker_dead_after:g} s): stopping its operations")
        self.stopping.set()
        getattr(self.executor, "interrupt", lambda: None)()
        self.taken_over.set()

    def _take_over(self):
        """Resume the jobs of the workers found dead or stopped: DBOS puts
        their pending workflows back into their queues, where this or any
        live worker runs them again (each resumes from its journal)."""
        for other, why in self.store.take_over(self.id):
            jobs = self.store.jobs_of_worker(other)
            for job in jobs:
                self.store.record(job["number"], {"event": "takeover", "worker": other,
                                                  "why": why, "by": self.id})
            # DBOS's own recovery, for another executor's id: what its admin
            # server's recovery endpoint calls (no public method in dbos 3.4)
            recovered = DBOS._recover_pending_workflows([other])
            self.store.forget_worker(other, taken_by=self.id)
            if jobs or recovered:
                self.say(f"worker {self.id}: took over worker {other} ({why}): "
                         f"{len(recovered)} job(s) queued again")

    def stop(self, timeout=STOP_WAIT):
        """Interrupt the running operations (as Ctrl-C: each cleans up, a
        downtime window is finished or compensated), wait up to `timeout`
        for them, stop DBOS. Their jobs stay `running` (nothing of their
        end is recorded): the next worker with this id resumes them."""
        self.stopping.set()
        interrupted = getattr(self.executor, "interrupt", lambda: None)
        interrupted()
        waited = getattr(self.executor, "wait", lambda timeout: True)(timeout)
        if not waited:
            self.say(f"worker {self.id}: operations still running after {timeout:g} s")
        DBOS.destroy(workflow_completion_timeout_sec=0)
        # DBOS can record nothing of the parked jobs now: let their threads
        # end (before anything else happens here), without DBOS's complaints
        dbos_logger = logging.getLogger("dbos")
        level = dbos_logger.level
        dbos_logger.setLevel(logging.CRITICAL)
        self._parked.set()
        deadline = time.monotonic() + 10
        while self._in_step and time.monotonic() < deadline:
            time.sleep(0.01)
        dbos_logger.setLevel(level)
        self._beat.set()
        for thread in (self._beating, self._housekeeping):
            if thread:
                thread.join()
        self.store.retire(self.id)
        self.store.close()
        self.say(f"worker {self.id}: stopped")

    def run_job(self, number):
        """The step: run job `number`'s operation, record its events and
        its end; its exit code. A re-run (the worker died meanwhile) first
        waits for the operation an earlier run of it left behind."""
        with self._lock:
            self._in_step += 1
        try:
            return self._run_job(number)
        finally:
            with self._lock:
                self._in_step -= 1

    def _run_job(self, number):
        job = self._answer(f"number {number}", "reading it",
                            lambda: self.store.job_by_number(number))
        if job["state"] in FINISHED or job["kill_requested"]:
            self.places.forget(job["workflow_id"])
            return job["exit_code"] if job["state"] in FINISHED else self._end_killed(job)
        if not self.places.take(number, job["workflow_id"], self.stopping,
                                lambda: self._waits_for_a_place(number)):
            self._leave(job)
        try:
            return self._run_in_place(job)
        finally:
            self.places.give_back()

    def _run_in_place(self, job):
        number, name = job["number"], job["id"]
        self._wait_for_earlier_run(job)
        if not self._answer(name, "claiming it", lambda: self.store.claim(number, self.id)):
            job = self._answer(name, "reading it", lambda: self.store.job_by_number(number))
            if job["state"] in FINISHED:
                return job["exit_code"]
            return self._end_killed(job)                                # killed meanwhile
        events = JobEvents(self, job)
        events.record({"event": "job-start", "worker": self.id, "argv": json.loads(job["args"])})
        try:
            code = self.executor.run(number, json.loads(job["args"]), events.record,
                                     lambda pid: events.write(
                                         lambda: self.store.update(number, child_pid=pid)))
        except OSError as error:
            events.record({"event": "stderr", "text": f"cannot start the operation: {error}"})
            code = 1
        if self.stopping.is_set():
            self._leave(job)
        events.flush()
        if code == EXIT_INTERRUPTED and number in self.timed_out:
            code = EXIT_TIMEOUTED
        state = state_of_exit(code)
        if not self._answer(name, f"recording its end ({state}, exit {code})",
                            lambda: self.store.end(number, self.id, state, code)):
            self.say(f"worker {self.id}: job {name} ended here (exit {code}) after another "
                     "worker took it over: its end and its host slots are that worker's")
        return code

    def _waits_for_a_place(self, number):
        """What `screener list` shows of a job that came to this worker with
        no place kept for it while all its places were taken (it stays
        queued): one dequeued before `_dequeue_in_places`, or whose place
        was given up after PLACE_KEPT_FOR."""
        with contextlib.suppress(sa.exc.SQLAlchemyError):       # a message, no more
            self.store.record(number, {
                "event": "message", "text": f"waits for a place on worker {self.id}: it runs "
                f"{self.places.count} jobs at once (worker_jobs)"})

    def _leave(self, job):
        """The worker stops: parked until DBOS is gone, then out without a
        word; the job stays pending in the database, and the next worker
        resumes it."""
        self._parked.wait()
        raise WorkerStopped(f"job {job['id']}: left to the next worker")

    def _answer(self, job, what, ask):
        """`ask()`'s result, the jobs' database's answer about `job` (named
        so): while it fails (busy, or away for a while: a PostgreSQL
        restart), asked again every few seconds, said once in the worker's
        log — a job's end must not be lost, nor its operation left running
        without its worker; a worker that stops meanwhile leaves the job to
        the next."""
        said, pause = False, 0.1
        while True:
            try:
                return ask()
            except sa.exc.SQLAlchemyError as error:
                if not said:
                    self.say(f"worker {self.id}: job {job}: {what} failed in the jobs' "
                             f"database ({database_error(error)}); trying again until "
                             "it answers")
                    said = True
            if self.stopping.wait(pause):
                self._leave({"id": job})
            pause = min(2 * pause, 5.0)

    def _end_killed(self, job):
        """Job `job`, killed while no worker ran it, ends `interrupted` here
        once the operation an earlier run of it left behind has ended."""
        self._wait_for_earlier_run(job)
        self._answer(job["id"], "recording its end (interrupted: killed)",
                     lambda: self.store.end_killed(job["number"]))
        self.say(f"worker {self.id}: job {job['id']} was killed while no worker ran it: "
                 "interrupted")
        return EXIT_INTERRUPTED

    def _wait_for_earlier_run(self, job):
        pid = job["child_pid"]
        if not pid or job["child_host"] != socket.gethostname():
            return
        if _alive(pid):
            self.say(f"job {job['id']}: waiting for its earlier run (pid {pid}) to end")
        deadline = time.monotonic() + self.config.lock_break_timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.5)

"""The jobs' database without the job engine: its tables, how to reach it,
and what other parts of Football read in it — a job's operation (its gate,
its host slots, its journal: football/joblink.py), the downtime gate (the
shared pauses), the planner (its shared plans, the moves that ran). A
process that only reads or writes these needs no DBOS (0.35 s of imports
that every job's operation paid); the screener (football/screener.py) and
its worker add the engine."""

import contextlib
import json
import os
from pathlib import Path

import sqlalchemy as sa

STATES = ("queued", "running", "waiting", "condition", "delayed", "done", "failed", "serious",
          "critical", "interrupted", "illegal", "timeouted", "archived")
FINISHED = ("done", "failed", "serious", "critical", "interrupted", "illegal", "timeouted")
PLAN_KINDS = ("balance", "evacuate", "restore")     # a planner's runs: <kind>-<stamp>-<hex>
CONNECT_TIMEOUT = 10            # seconds a connection to PostgreSQL may take to be made

METADATA = sa.MetaData()
JOBS = sa.Table(
    "football_jobs", METADATA,
    sa.Column("number", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(200), nullable=False),
    sa.Column("resource", sa.String(200), nullable=False),
    sa.Column("operation", sa.String(40), nullable=False),
    sa.Column("args", sa.Text, nullable=False),          # JSON: football's command line
    sa.Column("run", sa.String(200), nullable=False, default=""),
    sa.Column("queue", sa.String(200), nullable=False),
    sa.Column("partition", sa.String(200)),
    sa.Column("workflow_id", sa.String(200), nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("phase", sa.String(60)),
    sa.Column("message", sa.Text),
    sa.Column("progress", sa.Text),                      # JSON of the last progress event
    sa.Column("location", sa.String(200)),
    sa.Column("downtime", sa.Float),
    sa.Column("exit_code", sa.Integer),
    sa.Column("worker", sa.String(200)),
    sa.Column("child_host", sa.String(200)),
    sa.Column("child_pid", sa.Integer),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("started", sa.Float),
    sa.Column("finished", sa.Float),
    sa.Column("last_event", sa.Float),
    sa.Column("kill_requested", sa.Boolean, nullable=False, default=False),
    sa.Column("archived", sa.Boolean, nullable=False, default=False),
    # the operator gate before downtime: on for this job (--gate, a run's
    # `gate` column; gate_before_downtime turns it on for every job), and
    # when `screener continue` released it (kept: a resumed job passes)
    sa.Column("gate", sa.Boolean, nullable=False, default=False, server_default=sa.false()),
    sa.Column("released", sa.Float),
    # one job per resource (by id) that is not archived
    sa.Index("football_jobs_live_id", "id", unique=True,
             sqlite_where=sa.text("archived = 0"), postgresql_where=sa.text("NOT archived")),
)
# a job that is neither archived nor ended; a job of a planner's run
LIVE_JOB = sa.and_(JOBS.c.archived == sa.false(), JOBS.c.state.not_in(FINISHED))
PLANNERS_JOB = sa.or_(*(JOBS.c.run.like(f"{kind}-%") for kind in PLAN_KINDS))
EVENTS = sa.Table(
    "football_job_events", METADATA,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job", sa.Integer, nullable=False, index=True),
    sa.Column("time", sa.Float, nullable=False),
    sa.Column("event", sa.Text, nullable=False),          # JSON
)
# host-level limits across all jobs (limit_syncs per target host,
# limit_shrinks per primary, limit_handovers per source): a job's operation
# takes a seat (football/joblink.py) before the step that needs it; the
# primary key makes two jobs that saw the same free seat not both take it
SLOTS = sa.Table(
    "football_slots", METADATA,
    sa.Column("kind", sa.String(20), primary_key=True),      # sync, shrink, handover
    sa.Column("host", sa.String(200), primary_key=True),
    sa.Column("seat", sa.Integer, primary_key=True),
    sa.Column("job", sa.Integer, nullable=False, index=True),
    sa.Column("taken", sa.Float, nullable=False),
)
# `football pause [<res>]` where controllers share the jobs' database
# (jobs_database_url): every controller's runs and jobs hold ('*': all)
PAUSES = sa.Table(
    "football_pauses", METADATA,
    sa.Column("resource", sa.String(200), primary_key=True),
    sa.Column("paused", sa.Float, nullable=False),
    sa.Column("by", sa.String(400), nullable=False),          # the controller that paused it
)
# the planner's plans (football/planner/plan.py) where controllers share the
# jobs' database: `balance execute <plan-id>` on any of them
PLANS = sa.Table(
    "football_plans", METADATA,
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("data", sa.Text, nullable=False),               # Plan.to_json
)
# a job's journals (football/journal.py) as its operation last wrote them,
# so that a worker of another controller that takes the job over goes on
# where the run stopped, as the same controller would; by the job's id (a
# restart keeps it); gone when the journal is finished or the job archived
JOURNALS = sa.Table(
    "football_job_journals", METADATA,
    sa.Column("job", sa.String(200), primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),      # <operation>-<res>
    sa.Column("data", sa.Text, nullable=False),               # the journal's JSON
    sa.Column("writes", sa.Integer, nullable=False),          # how often it was written
)
# the limits of each run's queue (`--max`, `--max-per`), kept after its
# DBOS queue is dropped (its jobs ended: `Worker` tidies) for a restart of them
QUEUES = sa.Table(
    "football_queues", METADATA,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("max_running", sa.Integer),
    sa.Column("max_per", sa.Integer),
    sa.Column("registered", sa.Float, nullable=False),
)
# turns among controllers: a planner's run checks that no other planner's
# moves are live and queues its own in one transaction that first updates
# the row of its turn (a write lock on SQLite, a row lock on PostgreSQL):
# two balancers that decided at once queue one after the other, and the
# second sees the first's moves
TURNS = sa.Table(
    "football_turns", METADATA,
    sa.Column("name", sa.String(40), primary_key=True),
    sa.Column("taken", sa.Float, nullable=False),
)
PLANNER_TURN = "planner"
WORKERS = sa.Table(
    "football_workers", METADATA,
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("host", sa.String(200), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started", sa.Float, nullable=False),
    sa.Column("seen", sa.Float, nullable=False),
    # stopped cleanly (its jobs left pending), or taken over: by whom, when
    sa.Column("stopped", sa.Boolean, default=False),
    sa.Column("taken_by", sa.String(200)),
    sa.Column("taken", sa.Float),
)


def database_url(config):
    """The jobs' database: `jobs_database_url`, else SQLite in the state dir."""
    if config.jobs_database_url:
        return config.jobs_database_url
    return f"sqlite:///{Path(config.state_dir).absolute() / 'jobs.sqlite'}"


@contextlib.contextmanager
def reading(config, strict=False):
    """A connection to the jobs' database of `config` to read from, or None
    when there is none yet (SQLite's file missing: reading creates none) or
    it cannot be reached (what is read then is what this controller knows
    alone; `strict`: its error instead)."""
    url = database_url(config)
    if url.startswith("sqlite:///") and not os.path.exists(url.removeprefix("sqlite:///")):
        yield None
        return
    engine = new_engine(url)
    try:
        try:
            connection = engine.connect()
        except sa.exc.SQLAlchemyError:
            if strict:
                raise
            yield None
            return
        with connection:
            yield connection
    finally:
        engine.dispose()


def planned_moves_done(config):
    """[(resource, finished, whether it failed)] of the screener jobs that
    ran a planner's move (a balance, evacuate or restore plan's run) and
    ended done, or failed (not interrupted: an operator's kill), of every
    controller that shares the jobs' database: the cooldown holds them all."""
    with reading(config) as connection:
        if connection is None:
            return []
        try:
            rows = connection.execute(sa.select(
                JOBS.c.resource, JOBS.c.finished, JOBS.c.state).where(
                JOBS.c.state.in_([state for state in FINISHED if state != "interrupted"]),
                JOBS.c.finished.is_not(None), PLANNERS_JOB)).all()
        except sa.exc.SQLAlchemyError:
            return []
    return [(row.resource, row.finished, row.state != "done") for row in rows]


def shared_plan(config, plan_id):
    """The plan `plan_id` (its JSON) kept in the jobs' database that
    `jobs_database_url` names, or None."""
    if not config.jobs_database_url:
        return None
    with reading(config) as connection:
        if connection is None:
            return None
        try:
            data = connection.execute(sa.select(PLANS.c.data).where(
                PLANS.c.id == plan_id)).scalar()
        except sa.exc.SQLAlchemyError:
            return None
    return None if data is None else json.loads(data)


def shared_pauses(config):
    """{resource or '*': (when, by which controller)} of the pauses in the
    jobs' database that `jobs_database_url` names; {} without one. A
    database that does not answer raises `PausesUnknown`: an operator's
    pause there may hold this run (an incident may be why it is away)."""
    if not config.jobs_database_url:
        return {}
    try:
        with reading(config, strict=True) as connection:
            rows = [] if connection is None else connection.execute(sa.select(PAUSES)).all()
    except sa.exc.SQLAlchemyError as error:
        said = database_error(error)
        if "football_pauses" in said and ("no such table" in said or "does not exist" in said):
            return {}                   # no pause was ever made there
        raise PausesUnknown(said) from None
    return {row.resource: (row.paused, row.by) for row in rows}


class PausesUnknown(Exception):
    """The jobs' database that holds the shared pauses does not answer."""


def database_error(error):
    """What a database error says, in one line (SQLAlchemy's carry the
    statement and a link on further lines)."""
    return str(error).splitlines()[0]


def new_engine(url, threads=0):
    """An engine on the jobs' database `url` (psycopg for PostgreSQL; on
    SQLite a writer waits up to 30 s for another's lock) for up to
    `threads` threads at once beyond SQLAlchemy's usual 15 connections
    (opened while they are needed: a worker's jobs record their events).
    A PostgreSQL connection that is not made in CONNECT_TIMEOUT seconds (a
    partition: no refusal comes) is an error, as a refused one is, unless
    the URL sets its own `connect_timeout`."""
    engine_at = engine_url(url)
    if url.startswith("sqlite"):
        connect_args = {"timeout": 30}
    elif "connect_timeout" not in engine_at.query:
        connect_args = {"connect_timeout": CONNECT_TIMEOUT}
    else:
        connect_args = {}
    return sa.create_engine(engine_at, max_overflow=10 + threads, connect_args=connect_args)


def engine_url(url):
    """`url` with the driver DBOS uses: psycopg (3) for PostgreSQL, which
    SQLAlchemy would otherwise take to mean psycopg2."""
    url = sa.make_url(url)
    if url.get_backend_name() == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    return url

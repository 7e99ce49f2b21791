"""The screener job an operation runs as, seen from the operation.

A screener worker runs a job's `football` command line with `FOOTBALL_JOB`
(the job's number) and `FOOTBALL_JOBS_DATABASE_URL` (its database) in the
environment. The operation then reads its job's row there, at every poll:

- the operator gate before the downtime window: on for the job (`--gate`,
  a run's `gate` column) or for all (`gate_before_downtime`, re-read), until
  `football screener continue` records the release in the job's row — so a
  job resumed after its worker died does not wait again;
- whether the job was killed (`screener kill`): a job whose operation runs
  without a signal from its worker (in-process) ends at its next poll;
- the host slots of all jobs (`football_slots`): per target host a sync
  (`limit_syncs`), per primary a shrink (`limit_shrinks`), per source a
  handover (`limit_handovers`); a step that needs one waits for it in state
  `condition`. The host-side locks and intents stay: runs outside the
  screener respect those.

While the jobs' database does not answer (a PostgreSQL restart) the
operation goes on where it can: the job's row is what it last read (a
kill, a gate's release change only through the database), a slot is
waited for (said, with the database's error), and a slot it cannot give
back is its worker's to give back at the job's end.

A run outside the screener has no job: `current()` is None."""

import json
import os
import signal
import threading
import time

JOB_ENV = "FOOTBALL_JOB"


def in_job():
    """Whether this process runs a screener job's operation."""
    return bool(os.environ.get(JOB_ENV))


_links = {}         # (job number, database): its JobLink, one engine per process


def current(config):
    """The job this run is (a JobLink), or None outside the screener."""
    number = os.environ.get(JOB_ENV)
    if not number or not number.isdigit():
        return None
    from football.jobdb import database_url

    key = (int(number), database_url(config))
    if key not in _links:
        _links[key] = JobLink(config, int(number))
    return _links[key]


class JobKilled(Exception):
    """`screener kill` asked the job to end."""


def _end_if_killed(job):
    """`JobKilled` when `screener kill` asked for the end of `job` (a row).
    Its worker's Ctrl-C follows: ignored from here on, so that it cannot
    cut the operation's clean-up or its exit short (only the main thread
    handles signals; an in-process job's thread has none to ignore)."""
    if not job["kill_requested"]:
        return
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise JobKilled(job["id"])


class DatabaseAway(Exception):
    """The jobs' database does not answer (its error, in one line), and
    this run has not read its job's row before."""


class _AllOrNone(Exception):
    """A host was full: the seats taken on the others are rolled back."""


class JobLink:
    """Job `number`'s row in the jobs' database of `config`."""

    def __init__(self, config, number):
        self.config, self.number = config, number
        self._engine = None
        self._job_id = None
        self._last_row = None

    @property
    def engine(self):
        if self._engine is None:
            from football.jobdb import database_url, new_engine

            self._engine = new_engine(database_url(self.config))
        return self._engine

    def row(self):
        """The job's row; while the database does not answer, the row as
        this run last read it (what changes in it changes only through the
        database), else `DatabaseAway`."""
        import sqlalchemy as sa

        from football.jobdb import JOBS, database_error

        try:
            with self.engine.connect() as connection:
                self._last_row = dict(connection.execute(
                    sa.select(JOBS).where(JOBS.c.number == self.number)).mappings().one())
        except sa.exc.OperationalError as error:
            if self._last_row is None:
                raise DatabaseAway(database_error(error)) from None
        return self._last_row

    def check_killed(self):
        """`JobKilled` when `screener kill` asked for the job's end."""
        _end_if_killed(self.row())

    def gate(self, res):
        """Why the job waits at the operator gate now, or None (its gate is
        off or released). `JobKilled` when the job was killed. `football
        continue RES` (the foreground's release) counts too: it is recorded
        in the job, the file used up."""
        import sqlalchemy as sa

        from plugins.waiting import continue_file

        job = self.row()
        _end_if_killed(job)
        if job["released"] is not None:
            return None
        settings = self.config.reloaded()
        if not (job["gate"] or settings.gate_before_downtime):
            return None
        released = continue_file(settings.state_dir, res)
        if released.exists():
            try:
                self._set(released=time.time())
            except sa.exc.OperationalError:
                return None         # released; the file stays for a run that goes on later
            released.unlink(missing_ok=True)
            return None
        return (f"waiting for the operator (gate before the downtime): football screener "
                f"continue {job['id']}")

    def close_gate(self):
        """The release is used without a downtime (the run went back to the
        gates: business hours ended, a pause came, while it waited for its
        slot and its locks): the job waits for a new `football screener
        continue` — it went through its downtime hours later, unasked."""
        import sqlalchemy as sa

        try:
            self._set(released=None)
        except sa.exc.OperationalError:
            pass                    # the database away: the gate stays released

    def take_slots(self, kind, hosts, limit):
        """Take a `kind` slot on each of `hosts` for this job, all or none,
        where fewer than `limit` jobs hold one; slots of finished jobs are
        freed first. {host: [ids of the jobs holding its slots]} of the full
        hosts ({}: taken, or held already)."""
        import sqlalchemy as sa

        from football.jobdb import FINISHED, JOBS, SLOTS

        ended = sa.select(JOBS.c.number).where(sa.or_(JOBS.c.state.in_(FINISHED),
                                                      JOBS.c.archived == sa.true()))
        for _ in range(20):         # a seat taken by another job meanwhile: look again
            full, failed = {}, None
            try:
                with self.engine.begin() as connection:
                    connection.execute(SLOTS.delete().where(SLOTS.c.job.in_(ended)))
                    for host in sorted(hosts):
                        seats = connection.execute(
                            sa.select(SLOTS.c.seat, SLOTS.c.job, JOBS.c.id)
                            .join(JOBS, JOBS.c.number == SLOTS.c.job)
                            .where(SLOTS.c.kind == kind, SLOTS.c.host == host)).all()
                        if any(seat.job == self.number for seat in seats):
                            continue
                        if len(seats) >= limit:
                            full[host] = sorted(seat.id for seat in seats)
                            continue
                        free = min(set(range(len(seats) + 1)) - {seat.seat for seat in seats})
                        connection.execute(SLOTS.insert().values(
                            kind=kind, host=host, seat=free, job=self.number, taken=time.time()))
                    if full:
                        raise _AllOrNone()
                return full
            except _AllOrNone:
                return full
            except sa.exc.IntegrityError:
                time.sleep(0.05)
            except sa.exc.OperationalError as error:    # SQLite's lock; or no database
                failed = error
                time.sleep(0.05)
        if failed is not None:
            raise failed
        return full or {host: [] for host in hosts}

    def wait_for_slots(self, kind, hosts, limit, limit_name, tell, poll):
        """Take a `kind` slot on each of `hosts` (`take_slots`), waiting while
        one is full: a `wait` event (state `condition`, naming each full
        host, the limit and who holds it) through `tell(kind, **fields)`,
        `wait-end`, then a `slot` event (taken). `JobKilled` when the job is
        killed meanwhile."""
        import sqlalchemy as sa

        from football.jobdb import database_error

        said = None
        while True:
            try:
                full = self.take_slots(kind, hosts, limit)
                if not full:
                    break
                _end_if_killed(self.row())
                reasons = [f"a {kind} slot on {host} ({limit_name} {limit} across the "
                           f"screener's jobs; held by {', '.join(holders) or 'another job'})"
                           for host, holders in sorted(full.items())]
            except (sa.exc.OperationalError, DatabaseAway) as error:
                said_error = error if isinstance(error, DatabaseAway) else database_error(error)
                full = dict.fromkeys(hosts)
                reasons = [f"the jobs' database does not answer ({said_error}): a {kind} slot "
                           f"on {', '.join(sorted(hosts))} is taken once it does"]
            if reasons != said:
                tell("wait", state="condition", what=f"{kind} slot", hosts=sorted(full),
                     reasons=reasons)
                said = reasons
            time.sleep(poll)
        if said:
            tell("wait-end", what=f"{kind} slot")
        tell("slot", action="taken", slot=kind, hosts=sorted(hosts), limit=limit)

    def release_slots(self, kind, hosts, tell):
        """Give back this job's `kind` slots on `hosts` (a `slot` event,
        released, when it held any); while the database does not answer,
        its worker gives them back at the job's end (a warning event)."""
        import sqlalchemy as sa

        from football.jobdb import SLOTS, database_error

        try:
            with self.engine.begin() as connection:
                released = connection.execute(SLOTS.delete().where(
                    SLOTS.c.job == self.number, SLOTS.c.kind == kind,
                    SLOTS.c.host.in_(list(hosts)))).rowcount
        except sa.exc.OperationalError as error:
            tell("warning", text=f"the {kind} slots on {', '.join(sorted(hosts))} stay taken "
                 f"until the job's end (its worker gives them back): the jobs' database does "
                 f"not answer ({database_error(error)})")
            return
        if released:
            tell("slot", action="released", slot=kind, hosts=sorted(hosts))

    # --- the job's journals, shared with the workers of other controllers

    def journal(self, name):
        """The job's journal `name` as its last run wrote it, or None."""
        import sqlalchemy as sa

        from football.jobdb import JOURNALS

        with self.engine.connect() as connection:
            data = connection.execute(sa.select(JOURNALS.c.data).where(
                JOURNALS.c.job == self._id(), JOURNALS.c.name == name)).scalar()
        return None if data is None else json.loads(data)

    def share_journal(self, name, data):
        """Keep journal `name` (`data`, as just written) with the job."""
        from football.jobdb import JOURNALS

        row = {"data": json.dumps(data, sort_keys=True), "writes": data.get("writes", 0)}
        with self.engine.begin() as connection:
            mine = (JOURNALS.c.job == self._id()) & (JOURNALS.c.name == name)
            if connection.execute(JOURNALS.update().where(mine).values(**row)).rowcount == 0:
                connection.execute(JOURNALS.insert().values(job=self._id(), name=name, **row))

    def drop_journal(self, name):
        """Journal `name` finished (or forgotten): no longer kept with the job."""
        from football.jobdb import JOURNALS

        with self.engine.begin() as connection:
            connection.execute(JOURNALS.delete().where(JOURNALS.c.job == self._id(),
                                                       JOURNALS.c.name == name))

    def _id(self):
        if self._job_id is None:
            self._job_id = self.row()["id"]
        return self._job_id

    def _set(self, **fields):
        from football.jobdb import JOBS

        with self.engine.begin() as connection:
            connection.execute(JOBS.update().where(JOBS.c.number == self.number)
                               .values(**fields))

    def close(self):
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def unfinished_operations(config):
    """`journal.unfinished_operations` of this controller (`state_dir`), a
    journal of a screener job that a later run completed first finished
    (`completed_jobs`)."""
    from football.journal import unfinished_operations

    return unfinished_operations(config.state_dir, completed_jobs(config))


def unfinished_resources(config):
    """`journal.unfinished_resources` of this controller, as
    `unfinished_operations`."""
    from football.journal import unfinished_resources

    return unfinished_resources(config.state_dir, completed_jobs(config))


def completed_jobs(config):
    """For `journal.unfinished_operations`: a function of screener job
    numbers giving those whose operation a later run completed — the job
    done (its last run on another controller's worker, one shared queue),
    or a restart of it done (the same id and command, queued after it) —
    as {number: {"job", "number", "worker", "finished"} of the run that
    completed it}. {} when the jobs' database cannot be read or does not
    exist (nothing is taken as completed then)."""
    def completed(numbers):
        import sqlalchemy as sa

        from football.jobdb import JOBS, reading

        found = {}
        with reading(config) as connection:
            if connection is None:
                return {}
            try:
                for number in numbers:
                    job = connection.execute(sa.select(JOBS).where(
                        JOBS.c.number == number)).mappings().first()
                    if job is None:
                        continue
                    done = connection.execute(sa.select(JOBS).where(
                        JOBS.c.id == job["id"], JOBS.c.args == job["args"],
                        JOBS.c.number >= number, JOBS.c.state == "done")
                        .order_by(JOBS.c.number)).mappings().first()
                    if done is not None:
                        found[number] = {key: done[key] for key in
                                         ("number", "worker", "finished")} | {"job": done["id"]}
            except sa.exc.SQLAlchemyError:
                return {}
        return found
    return completed

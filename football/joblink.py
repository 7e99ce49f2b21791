"""The screener job an operation runs as, seen from the operation.

A screener worker runs a job's `football` command line with `FOOTBALL_JOB`
(the job's number) and `FOOTBALL_JOBS_DATABASE_URL` (its database) in the
environment. The operation then reads its job's row there, at every poll:

- the operator gate before the downtime window: on for the job (`--gate`,
  a run's `gate` column) or for all (`gate_before_downtime`, re-read), until
  `football screener continue` records the release in the job's row — so a
  job resumed after its worker died does not wait again;
- whether the job was killed (`screener kill`): a job whose operation runs
  without a signal from its worker (in-process) ends at its next poll.

A run outside the screener has no job: `current()` is None."""

import os
import time

JOB_ENV = "FOOTBALL_JOB"


def in_job():
    """Whether this process runs a screener job's operation."""
    return bool(os.environ.get(JOB_ENV))


def current(config):
    """The job this run is (a JobLink), or None outside the screener."""
    number = os.environ.get(JOB_ENV)
    if not number or not number.isdigit():
        return None
    return JobLink(config, int(number))


class JobKilled(Exception):
    """`screener kill` asked the job to end."""


class JobLink:
    """Job `number`'s row in the jobs' database of `config`."""

    def __init__(self, config, number):
        self.config, self.number = config, number
        self._engine = None

    @property
    def engine(self):
        if self._engine is None:
            import sqlalchemy as sa

            from football.screener import database_url

            url = database_url(self.config)
            kwargs = {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {}
            self._engine = sa.create_engine(url, **kwargs)
        return self._engine

    def row(self):
        import sqlalchemy as sa

        from football.screener import JOBS

        with self.engine.connect() as connection:
            return dict(connection.execute(
                sa.select(JOBS).where(JOBS.c.number == self.number)).mappings().one())

    def gate(self, res):
        """Why the job waits at the operator gate now, or None (its gate is
        off or released). `JobKilled` when the job was killed. `football
        continue RES` (the foreground's release) counts too: it is recorded
        in the job, the file used up."""
        from plugins.waiting import continue_file

        job = self.row()
        if job["kill_requested"]:
            raise JobKilled(job["id"])
        if job["released"] is not None:
            return None
        settings = self.config.reloaded()
        if not (job["gate"] or settings.gate_before_downtime):
            return None
        released = continue_file(settings.state_dir, res)
        if released.exists():
            self._set(released=time.time())
            released.unlink(missing_ok=True)
            return None
        return (f"waiting for the operator (gate before the downtime): football screener "
                f"continue {job['id']}")

    def _set(self, **fields):
        from football.screener import JOBS

        with self.engine.begin() as connection:
            connection.execute(JOBS.update().where(JOBS.c.number == self.number)
                               .values(**fields))

    def close(self):
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

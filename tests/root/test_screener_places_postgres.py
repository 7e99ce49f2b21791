"""A worker's places gate what it takes from the queues on PostgreSQL
(`jobs_database_url`, a private server: tests/helpers/postgres.py, root),
where several controllers share the queues: a worker with its one place
taken leaves the job of another run to the other worker (the SQLite case:
tests/unit/test_screener_places.py)."""

import json
import time

import pytest

from tests.helpers.jobs import WorkerProcesses, football, wait_for
from tests.helpers.postgres import postgres_server, postgres_url  # noqa: F401 (fixtures)
from tests.helpers.standin import overlaps, runs, stand_in_command

pytestmark = [pytest.mark.root]

TUNING = ["jobs_poll_interval=0.1", "worker_heartbeat=0.3", "worker_dead_after=3",
          "worker_jobs=1"]


def test_a_worker_with_its_places_taken_leaves_a_job_of_another_run_to_the_other(
        tmp_path, postgres_url):  # noqa: F811 (the fixture)
    state_dir = tmp_path / "controller"
    state_dir.mkdir()
    variables = [*TUNING, f"jobs_database_url={postgres_url}", stand_in_command(tmp_path)]
    options = [item for variable in [f"state_dir={state_dir}", *variables]
               for item in ("--var", variable)]

    def screener(*args):
        code, out, err = football("--json", *options, "screener", *args)
        assert code == 0, err
        return [json.loads(line) for line in out.splitlines()]

    def running_on(worker_id):
        return sorted(job["id"] for job in screener("list")
                      if job["state"] == "running" and job["worker"] == worker_id)

    processes = WorkerProcesses(str(state_dir), variables)
    try:
        processes.start("pg-w1")
        # the second run under a limit of its queue: DBOS's dequeue in a
        # REPEATABLE READ transaction there
        for number, (res, limits) in enumerate([("hold1", []), ("hold2", ["--max", "2"])], 1):
            run = tmp_path / f"run{number}.csv"
            run.write_text(f"resource;operation;host\n{res};handover;a2\n")
            screener("run", str(run), *limits)
            if number == 1:
                wait_for(lambda: running_on("pg-w1") == ["hold1"], "hold1 to run on pg-w1")
        time.sleep(3)       # pg-w1 has looked at the second run's queue (see the SQLite case)
        assert running_on("pg-w1") == ["hold1"]
        processes.start("pg-w2")
        wait_for(lambda: running_on("pg-w2") == ["hold2"], "hold2 to run on pg-w2", timeout=20)
        for res in ("hold1", "hold2"):
            screener("kill", res)
        ended = wait_for(lambda: (lambda now: now if all(
            job["state"] not in ("queued", "running") for job in now.values()) else None)(
            {job["id"]: job for job in screener("list")}), "both jobs to end", timeout=60)
    finally:
        processes.kill_all()
    assert {res: (job["state"], job["worker"]) for res, job in ended.items()} == {
        "hold1": ("interrupted", "pg-w1"), "hold2": ("interrupted", "pg-w2")}
    assert (runs(state_dir, "hold1"), runs(state_dir, "hold2")) == (1, 1)
    assert not overlaps(state_dir), overlaps(state_dir)

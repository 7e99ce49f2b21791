"""The screener on PostgreSQL (`jobs_database_url`): `football worker`
processes sharing one queue in a private PostgreSQL server
(tests/helpers/postgres.py; root: it runs as the `postgres` user). The
jobs run a stand-in for football (tests/helpers/standin.py) that counts
its runs and notices two runs of one job at once."""

import json
import sys
import textwrap

import sqlalchemy as sa

import pytest

from tests.helpers.jobs import WorkerProcesses, football, wait_for
from tests.helpers.postgres import postgres_server, postgres_url  # noqa: F401 (fixtures)
from tests.helpers.standin import overlaps, runs, stand_in_command

pytestmark = [pytest.mark.root]

TUNING = ["jobs_poll_interval=0.1", "worker_heartbeat=0.3", "worker_dead_after=3"]


@pytest.fixture
def shared(tmp_path, postgres_url):  # noqa: F811 (the fixture)
    """(state dir, the settings of this test's workers and commands, its
    worker processes): the jobs' database is the PostgreSQL one."""
    state_dir = tmp_path / "controller"
    state_dir.mkdir()
    variables = [*TUNING, f"jobs_database_url={postgres_url}", stand_in_command(tmp_path)]
    processes = WorkerProcesses(str(state_dir), variables)
    try:
        yield state_dir, variables, processes
    finally:
        processes.kill_all()


def screener(state_dir, variables, *args):
    options = [item for variable in [f"state_dir={state_dir}", *variables]
               for item in ("--var", variable)]
    code, out, err = football("--json", *options, "screener", *args)
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines()]


def jobs_now(state_dir, variables, ids):
    return {job["id"]: job for job in screener(state_dir, variables, "list") if job["id"] in ids}


def all_ended(state_dir, variables, ids):
    return wait_for(lambda: (lambda now: now if len(now) == len(ids) and all(
        job["state"] not in ("queued", "running", "condition") for job in now.values())
        else None)(jobs_now(state_dir, variables, ids)), f"jobs {', '.join(ids)} to end",
        timeout=60, interval=0.2)


def test_two_workers_share_a_queue_of_four_jobs_and_each_job_runs_once(tmp_path, shared):
    state_dir, variables, processes = shared
    first, second = processes.start("pg-w1"), processes.start("pg-w2")
    ids = [f"vm{number}" for number in range(1, 5)]
    moves = tmp_path / "moves.csv"
    moves.write_text("resource;operation;host\n" + "".join(f"{res};handover;a1\n"
                                                           for res in ids))
    assert [event["event"] for event in screener(state_dir, variables, "run", str(moves),
                                                 "--max", "2")] == ["queued"] * 4
    done = all_ended(state_dir, variables, ids)
    assert {job["state"] for job in done.values()} == {"done"}, \
        (done, processes.log(first)[-2000:], processes.log(second)[-2000:])
    assert {res: runs(state_dir, res) for res in ids} == dict.fromkeys(ids, 1)
    assert not overlaps(state_dir)
    assert {job["worker"] for job in done.values()} <= {"pg-w1", "pg-w2"}


def test_a_job_of_a_worker_killed_with_9_is_finished_by_the_other_worker(shared):
    state_dir, variables, processes = shared
    first = processes.start("pg-w3")
    screener(state_dir, variables, "start", "handover", "hold1", "a2")
    wait_for(lambda: runs(state_dir, "hold1") == 1 and jobs_now(
        state_dir, variables, ["hold1"])["hold1"]["worker"] == "pg-w3", "hold1 on pg-w3")
    second = processes.start("pg-w4")
    wait_for(lambda: "running jobs" in processes.log(second), "pg-w4 to be up")
    first.kill()
    first.wait(timeout=30)
    job = all_ended(state_dir, variables, ["hold1"])["hold1"]
    assert (job["state"], job["worker"], runs(state_dir, "hold1")) == ("done", "pg-w4", 2), \
        (job, processes.log(second)[-2000:])
    assert not overlaps(state_dir)
    events = screener(state_dir, variables, "show", "hold1")[1:]
    assert [(event["event"], event.get("worker")) for event in events
            if event["event"] in ("job-start", "takeover", "job-end")] == \
        [("job-start", "pg-w3"), ("takeover", "pg-w3"), ("job-start", "pg-w4"), ("job-end", None)]


def test_what_controllers_share_in_the_database_reads_and_writes_on_postgresql(
        tmp_path, postgres_url):  # noqa: F811 (the fixture)
    """The tables and queries controllers share through one queue — a job's
    journals, pauses, plans, the planner's moves done, jobs that left an
    operation unfinished, jobs completed elsewhere — on PostgreSQL, not
    only on the unit tests' SQLite."""
    from football.config import Config
    from football.joblink import JobLink, completed_jobs
    from football.jobdb import planned_moves_done, shared_pauses, shared_plan
    from football.screener import JobSpec, JobStore

    config = Config(variables=[f"state_dir={tmp_path}", f"jobs_database_url={postgres_url}"],
                    environ={})
    store = JobStore(config)
    try:
        moved, failed = (store.queue([JobSpec(res, "migrate", ["b1"], id=f"{res}-shared")], [],
                                     run=run)[0]
                         for res, run in (("pg1", "balance-20261206-000000-abcdef"),
                                          ("pg2", "")))
        numbers = {job_id: store.job(job_id)["number"] for job_id in (moved, failed)}
        store.update(numbers[moved], state="done", worker="other", finished=1000.0)
        store.update(numbers[failed], state="failed", exit_code=1, finished=1001.0)
        link = JobLink(config, numbers[failed])
        link.share_journal("migrate-pg2", {"operation": "migrate", "steps": ["prepare"],
                                           "decided": {}, "writes": 1})
        link.share_journal("migrate-pg2", {"operation": "migrate", "steps": ["prepare", "wait"],
                                           "decided": {}, "writes": 2})
        assert link.journal("migrate-pg2")["steps"] == ["prepare", "wait"]
        link.close()
        assert ("pg1", 1000.0, False) in planned_moves_done(config)
        assert store.left_unfinished()["pg2"] == (failed, "failed", ["migrate"])
        assert completed_jobs(config)([numbers[moved], numbers[failed]]) == {
            numbers[moved]: {"job": moved, "number": numbers[moved], "worker": "other",
                             "finished": 1000.0}}
        store.pause("pg1", "football@ctl:/state#1")
        store.pause(None, "football@ctl:/state#1")
        assert set(shared_pauses(config)) == {"pg1", "*"}
        assert store.unpause("pg1") and not store.unpause("pg1")
        assert set(shared_pauses(config)) == {"*"}
        store.unpause(None)
        store.keep_plan({"id": "balance-pg", "moves": []})
        store.keep_plan({"id": "balance-pg", "moves": [], "kind": "balance"})
        assert shared_plan(config, "balance-pg") == {"id": "balance-pg", "moves": [],
                                                     "kind": "balance"}
        assert shared_plan(config, "balance-none") is None
        # a run's queue dropped once its jobs ended, its limits kept for a restart
        store.register_queue("run-pg-1", 3, 1)
        [tidied] = store.queue([JobSpec("pg3", "migrate", ["b1"], partition="b1")], [],
                               queue="run-pg-1", run="pg.csv")
        store.update(store.job(tidied)["number"], state="failed", exit_code=1, finished=1.0)
        dropped, again = store.tidy_queues(0)       # (the other tests' runs ended too)
        assert "run-pg-1" in dropped and again == []
        assert "run-pg-1" not in {queue.name for queue in store.client.list_queues()}
        store.restart(tidied)
        [queue] = [queue for queue in store.client.list_queues() if queue.name == "run-pg-1"]
        assert (queue.global_concurrency, queue.partition_concurrency) == (3, 1)
        # housekeeping: archived, then forgotten with DBOS's records and events
        [old] = store.queue([JobSpec("pg4", "migrate", ["b1"], id="pg4-old")], [],
                            queue="run-pg-2", run="old.csv")
        number, workflow = (store.job(old)[key] for key in ("number", "workflow_id"))
        store.record(number, {"event": "phase", "phase": "prepare"})
        store.update(number, state="done", exit_code=0, finished=1.0)
        assert old in store.archive(2.0, unattended=True)
        assert store.forget(2.0) >= 1
        assert store.job(old) is None and store.events(number) == []
        with store.engine.connect() as connection:
            assert connection.execute(sa.text(
                "SELECT count(*) FROM dbos.workflow_status WHERE workflow_uuid = :id"),
                {"id": workflow}).scalar() == 0
        store.keep_plan({"id": "balance-pg-old", "expires": 1.0})
        assert store.forget_plans(2.0) >= 1 and shared_plan(config, "balance-pg-old") is None
    finally:
        store.close()


# a job that says it began, waits for the test's go, then prints far more
# events than a pipe holds (a worker that stopped reading would block it
# there), marks that it got them all out, and ends
EVENTS = 3000
THROUGH_A_RESTART = textwrap.dedent(f"""\
    import json, os, sys, time
    state_dir = next(arg.split("=", 1)[1] for arg in sys.argv if arg.startswith("state_dir="))
    def say(**event):
        print(json.dumps(event), flush=True)
    say(event="phase", phase="prepare")
    while not os.path.exists(os.path.join(state_dir, "go")):
        time.sleep(0.05)
    for done in range({EVENTS}):
        say(event="message", text=f"line {{done}}")
    open(os.path.join(state_dir, "printed"), "w").close()
    say(event="phase", phase="finish")
    """)


def test_a_job_outlasts_a_restart_of_the_database_its_events_kept_and_its_end_written(
        tmp_path, postgres_server):  # noqa: F811 (the fixture)
    """The jobs' database restarted while a job runs: the worker reads the
    operation's output on (it does not block on a full pipe), keeps its
    events, and once the database answers writes them in their order and
    the job's end; it says so in its log, once (also of its heartbeat)."""
    state_dir = tmp_path / "controller"
    state_dir.mkdir()
    script = tmp_path / "football_through_a_restart.py"
    script.write_text(THROUGH_A_RESTART)
    variables = [*TUNING, f"jobs_database_url={postgres_server.url}",
                 f"job_command={sys.executable} {script}"]
    processes = WorkerProcesses(str(state_dir), variables)
    try:
        worker = processes.start("pg-w5")
        screener(state_dir, variables, "start", "handover", "vm7", "a2")
        wait_for(lambda: jobs_now(state_dir, variables, ["vm7"])["vm7"]["phase"] == "prepare",
                 "vm7 to begin", timeout=60)
        postgres_server.pause()
        try:
            (state_dir / "go").touch()
            wait_for(lambda: (state_dir / "printed").exists(), "vm7 to print its events while "
                     "the database is away", timeout=60)
            wait_for(lambda: "its events are kept in memory" in processes.log(worker),
                     "the worker to say it keeps them")
        finally:
            postgres_server.resume()
        job = all_ended(state_dir, variables, ["vm7"])["vm7"]
        log = processes.log(worker)
    finally:
        processes.kill_all()
    assert (job["state"], job["exit_code"], job["phase"]) == ("done", 0, "finish"), (job, log)
    events = screener(state_dir, variables, "show", "vm7")[1:]
    assert [event["text"] for event in events if event["event"] == "message"] == \
        [f"line {done}" for done in range(EVENTS)]
    assert [event["event"] for event in events if event["event"] != "message"] == \
        ["job-start", "phase", "phase", "job-end"]
    assert log.count("its events are kept in memory") == 1, log
    assert log.count("the jobs' database answers again; its kept events") == 1, log
    # the heartbeat's failure, said once, not at every beat
    assert log.count("no heartbeat until it answers") == 1, log
    assert log.count("worker pg-w5: the jobs' database answers again (after") == 1, log


def test_two_planners_runs_queued_at_once_on_postgresql_queue_one(
        tmp_path, postgres_url):  # noqa: F811 (the fixture)
    """The planners' turn on PostgreSQL (a row lock, where SQLite takes its
    write lock): of two balancers queueing at once, one queues, the other
    finds its moves."""
    from football.config import Config
    from tests.unit.test_screener import planners_racing

    config = Config(variables=[f"state_dir={tmp_path}", f"jobs_database_url={postgres_url}"],
                    environ={})
    for outcome in planners_racing(config):
        assert len(outcome) == 2 and sum(text.startswith("the moves of balance-")
                                         for text in outcome) == 1, outcome

"""Fail-over between `football worker` processes sharing one jobs'
database (SQLite here; PostgreSQL in tests/root/test_screener_postgres.py):
a job whose worker died, stopped or stalled is taken over by another live
worker and runs to its end there, and never runs on two workers at once.
The jobs run a stand-in for football (tests/helpers/standin.py) whose
first run of a `hold…` job blocks until it is interrupted, as a long sync
would, and which notices two runs of one job at once. (A stalled worker is
not simulated with SIGSTOP: stopped inside a transaction, it would hold
SQLite's lock; the takeover is written into its row instead.)"""

import json
import os
import signal
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from football.config import Config
from football.screener import WORKERS, JobStore, Worker
from tests.helpers.jobs import (Script, ScriptedExecutor, WorkerProcesses, events_of, football,
                                jobs, wait_for)
from tests.helpers.standin import overlaps, runs, stand_in_command

TUNING = ["jobs_poll_interval=0.1", "worker_heartbeat=0.2", "worker_dead_after=3"]


@pytest.fixture
def state_dir(tmp_path):
    """The workers' state dir: the SQLite jobs' database, the stand-in's counts."""
    (tmp_path / "controller").mkdir()
    return tmp_path / "controller"


@pytest.fixture
def workers(state_dir, tmp_path, request):
    """`football worker` processes running the stand-in; killed at the end."""
    processes = WorkerProcesses(str(state_dir), [*TUNING, stand_in_command(tmp_path)])
    request.addfinalizer(processes.kill_all)
    return processes


def start_job(state_dir, res):
    code, _, err = football("--var", f"state_dir={state_dir}", "--var", TUNING[0], "screener",
                            "start", "handover", res, "a2")
    assert code == 0, err


def held_on(state_dir, res, worker_id):
    """The job once its first run blocks on worker `worker_id`."""
    return wait_for(lambda: runs(state_dir, res) == 1 and (lambda job: job if job["state"] ==
                    "running" and job["phase"] == "prepare" and job["worker"] == worker_id
                    else None)(jobs(state_dir)[res]), f"{res} running on {worker_id}")


def live(state_dir, worker_id):
    store = JobStore(Config(variables=[f"state_dir={state_dir}", *TUNING]))
    try:
        return worker_id in {worker["id"] for worker in store.live_workers()}
    finally:
        store.close()


def done(state_dir, res):
    return wait_for(lambda: (lambda job: job if job["state"] not in ("queued", "running")
                             else None)(jobs(state_dir)[res]), f"{res} to end", timeout=60)


def assert_taken_over(state_dir, res, dead, why, by):
    job = jobs(state_dir)[res]
    assert (job["state"], job["worker"], runs(state_dir, res)) == ("done", by, 2), job
    events = events_of(state_dir, res)
    assert [(event["event"], event.get("worker")) for event in events
            if event["event"] in ("job-start", "takeover", "job-end")] == \
        [("job-start", dead), ("takeover", dead), ("job-start", by), ("job-end", None)]
    takeover = next(event for event in events if event["event"] == "takeover")
    assert (takeover["by"], takeover["why"]) == (by, why)
    assert not overlaps(state_dir), overlaps(state_dir)


def test_a_job_of_a_worker_killed_with_9_is_finished_by_another_live_worker(state_dir,
                                                                             workers):
    first = workers.start("w1")
    start_job(state_dir, "hold1")
    child = held_on(state_dir, "hold1", "w1")["child_pid"]
    workers.start("w2")
    wait_for(lambda: live(state_dir, "w2"), "w2 to be up")
    first.kill()
    first.wait(timeout=30)
    done(state_dir, "hold1")
    assert not os.path.exists(f"/proc/{child}")
    assert_taken_over(state_dir, "hold1", "w1", "dead", "w2")


def test_a_job_of_a_stopped_worker_is_taken_over_at_once_by_another(state_dir, workers):
    first = workers.start("w1")
    start_job(state_dir, "hold2")
    held_on(state_dir, "hold2", "w1")
    second = workers.start("w2")
    wait_for(lambda: live(state_dir, "w2"), "w2 to be up")
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=30) == 0, workers.log(first)
    done(state_dir, "hold2")
    assert_taken_over(state_dir, "hold2", "w1", "stopped", "w2")
    assert "took over worker w1 (stopped)" in workers.log(second)


def test_the_jobs_of_a_run_are_shared_by_the_workers_each_taking_worker_jobs(state_dir,
                                                                            workers, tmp_path):
    """A run's queue lets one worker take at most `worker_jobs` of its jobs
    at a time (the setting of the controller that queued it): the others
    stay in the database for the other workers, instead of waiting on the
    first worker that looked for a place there while another worker idles."""
    workers.start("w1")
    workers.start("w2")
    wait_for(lambda: live(state_dir, "w1") and live(state_dir, "w2"), "w1 and w2 to be up")
    moves = tmp_path / "moves.csv"
    moves.write_text("resource;operation;host\nhold5;handover;a2\nhold6;handover;a2\n")
    settings = ["--var", f"state_dir={state_dir}", "--var", TUNING[0], "--var", "worker_jobs=1"]
    code, _, err = football(*settings, "screener", "run", moves)
    assert code == 0, err
    running = wait_for(lambda: (lambda now: now if {job["state"] for job in now.values()} ==
                                {"running"} else None)(jobs(state_dir)), "both jobs to run")
    assert sorted(job["worker"] for job in running.values()) == ["w1", "w2"], running
    for res in running:
        assert football(*settings, "screener", "kill", res)[0] == 0
        assert done(state_dir, res)["state"] == "interrupted"


def test_a_worker_found_dead_by_another_interrupts_its_operations_and_stops(state_dir):
    executor, gate = ScriptedExecutor(), threading.Event()
    executor.scripts["hold4"] = Script([{"event": "phase", "phase": "prepare"}], gate=gate)
    config = Config(variables=[f"state_dir={state_dir}", *TUNING])
    worker = Worker(config, "w1", executor)
    worker.start()
    try:
        start_job(state_dir, "hold4")
        wait_for(lambda: executor.running == ["hold4"], "hold4 to run")
        # as another worker does that found w1's heartbeat stalled
        store = JobStore(config)
        with store.engine.begin() as connection:
            connection.execute(WORKERS.update().where(WORKERS.c.id == "w1").values(
                taken_by="w2", taken=time.time()))
        store.close()
        wait_for(worker.taken_over.is_set, "w1 to find itself taken over")
        assert gate.is_set()                    # its operation was interrupted
    finally:
        worker.stop(timeout=10)
    job = jobs(state_dir)["hold4"]
    assert job["state"] == "running" and job["exit_code"] is None     # left to the taker


# a job command that writes the settings its run would have (`football
# <its global options> config`) to the file named in its environment
SETTINGS_OF_THE_RUN = textwrap.dedent("""\
    import os, subprocess, sys
    from football.cli import hoist_global_options
    args = hoist_global_options(sys.argv[1:])
    operation = args.index("handover")
    seen = subprocess.run([sys.executable, "-m", "football", *args[:operation], "config"],
                          capture_output=True, text=True)
    with open(os.environ["SETTINGS_SEEN"], "w") as out:
        out.write(seen.stdout + seen.stderr)
    with open(os.environ["SETTINGS_SEEN"] + ".argv", "w") as out:
        out.write(chr(10).join(args[:operation]))
    """)


def test_a_job_runs_with_its_workers_options_its_own_win_but_state_dir_and_inventory_stay(
        tmp_path, state_dir):
    """A worker started with --config, --inventory and --var (as its
    systemd unit is) runs its jobs with them; the options of the command
    that queued a job win over the worker's, except the state dir and the
    inventory: a job queued by another controller (one PostgreSQL queue)
    keeps its journal on the controller that runs it and reaches the fleet
    as that controller does (the queuing one's inventory path need not
    exist there)."""
    (tmp_path / "run_settings.py").write_text(SETTINGS_OF_THE_RUN)
    config_file = tmp_path / "worker.yml"
    config_file.write_text("lock_retry_timeout: 77\nlimit_shrinks: 2\n")
    inventories = {name: tmp_path / f"{name}-fleet.yml" for name in ("worker", "queued")}
    for path in inventories.values():
        path.write_text("hosts: {a1: {address: 127.0.9.1}, a2: {address: 127.0.9.2}}\n")
    seen = tmp_path / "seen.txt"
    workers = WorkerProcesses(
        str(state_dir), [*TUNING, "limit_syncs=7",
                         f"job_command={sys.executable} {tmp_path / 'run_settings.py'}"],
        env={**os.environ, "SETTINGS_SEEN": str(seen)},
        options=["--config", str(config_file), "--inventory", str(inventories["worker"])])
    try:
        workers.start("w1")
        elsewhere = tmp_path / "another-controller"
        code, _, err = football("--var", f"state_dir={elsewhere}", "--var",
                                f"jobs_database_url=sqlite:///{state_dir}/jobs.sqlite",
                                "--inventory", str(inventories["queued"]),
                                "--var", "limit_shrinks=3", "screener", "start", "handover",
                                "vm1", "a2")
        assert code == 0, err
        done(state_dir, "vm1")
    finally:
        workers.kill_all()
    # the inventory is the worker's (how this controller reaches the fleet), said
    argv = Path(f"{seen}.argv").read_text().splitlines()
    assert [argv[at + 1] for at, word in enumerate(argv) if word == "--inventory"] == \
        [str(inventories["worker"])], argv
    assert f"worker: runs with its worker's inventory {inventories['worker']}, not " \
        f"{inventories['queued']} (of the command that queued it)" in \
        [event.get("text") for event in events_of(state_dir, "vm1")]
    # (a job's command line has --json: `config` says a `setting` event each)
    settings = {event["name"]: event["value"] for event in map(json.loads, filter(
        lambda line: line.startswith("{"), seen.read_text().splitlines()))}
    assert (settings["state_dir"], settings["lock_retry_timeout"], settings["limit_syncs"],
            settings["limit_shrinks"]) == (str(state_dir), 77.0, 7, 3), seen.read_text()


def test_a_job_killed_while_no_worker_ran_it_ends_interrupted_when_a_worker_comes(
        state_dir, workers):
    """Its worker stopped (a maintenance restart); the operator killed the
    job meanwhile. The next worker returned at once on `kill_requested`
    without recording an end: the job stayed `running` for ever, holding
    its slots, neither restarted nor purged."""
    first = workers.start("w1")
    start_job(state_dir, "hold7")
    held_on(state_dir, "hold7", "w1")
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=30) == 0, workers.log(first)
    code, out, err = football("--var", f"state_dir={state_dir}", "--json", "screener", "kill",
                              "hold7")
    assert code == 0, err
    assert jobs(state_dir)["hold7"]["state"] == "running"      # asked to stop; none runs it
    second = workers.start("w2")
    job = done(state_dir, "hold7")
    assert (job["state"], job["exit_code"]) == ("interrupted", 190), job
    assert runs(state_dir, "hold7") == 1                        # not run again
    assert "job hold7 was killed while no worker ran it: interrupted" in workers.log(second)

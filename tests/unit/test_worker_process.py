"""`football worker` as a process: it runs a job's football command line
as a child, stops cleanly on SIGTERM, and the jobs it leaves running —
stopped or killed with -9 — resume on the next worker of the same id.
The jobs here run a stand-in for football (`job_command`) that blocks in
its first run until it is interrupted, as a long sync would."""

import json
import os
import signal
import sys
import textwrap

import pytest

from tests.helpers.jobs import WorkerProcesses, events_of, football, jobs, wait_for

POLL = "jobs_poll_interval=0.1"

# A stand-in for `football`: counts its runs per resource in the state dir;
# its first run prints a phase and waits for Ctrl-C (exit 190), later runs
# finish (exit 0).
STAND_IN = textwrap.dedent("""\
    import json, os, signal, sys, time
    args = sys.argv[1:]
    state_dir = next(a.split("=", 1)[1] for a in args if a.startswith("state_dir="))
    res = args[-2]
    runs_file = os.path.join(state_dir, res + ".runs")
    runs = int(open(runs_file).read()) + 1 if os.path.exists(runs_file) else 1
    with open(runs_file + ".tmp", "w") as counted:     # replaced whole: the test reads it
        counted.write(str(runs))
    os.replace(runs_file + ".tmp", runs_file)
    def say(**event):
        print(json.dumps(event), flush=True)
    say(event="phase", phase="prepare", run=runs)
    if runs == 1:
        def interrupted(signum, frame):
            say(event="message", text="interrupted, cleaned up")
            sys.exit(190)
        signal.signal(signal.SIGINT, interrupted)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.05)
        sys.exit(1)
    say(event="summary", resource=res, downtime_seconds=0.5)
    """)


@pytest.fixture
def state_dir(tmp_path):
    path = tmp_path / "controller"
    path.mkdir()
    return path


@pytest.fixture
def workers(state_dir, tmp_path):
    stand_in = tmp_path / "stand_in.py"
    stand_in.write_text(STAND_IN)
    processes = WorkerProcesses(str(state_dir), [POLL, f"job_command={sys.executable} {stand_in}"])
    try:
        yield processes
    finally:
        processes.kill_all()


def screener(state_dir, *args):
    return football("--json", "--var", f"state_dir={state_dir}", "--var", POLL, "screener", *args)


def worker_listed(state_dir):
    import sqlalchemy as sa
    engine = sa.create_engine(f"sqlite:///{state_dir}/jobs.sqlite")
    try:
        with engine.connect() as connection:
            return [row.id for row in connection.execute(sa.text(
                "SELECT id FROM football_workers WHERE stopped IS NOT 1"))]
    except sa.exc.OperationalError:     # not created yet
        return []
    finally:
        engine.dispose()


def runs(state_dir, res):
    path = state_dir / f"{res}.runs"
    return int(path.read_text()) if path.exists() else 0


def job_blocked_in_its_first_run(state_dir, res):
    return wait_for(lambda: runs(state_dir, res) == 1 and jobs(state_dir)[res]["phase"] == "prepare"
                    and jobs(state_dir)[res], f"{res} running its first run")


def test_a_worker_stopped_by_sigterm_leaves_its_job_to_the_next_worker(state_dir, workers):
    first = workers.start("w1")
    assert screener(state_dir, "start", "handover", "vm1", "a2")[0] == 0
    job = job_blocked_in_its_first_run(state_dir, "vm1")
    assert job["state"] == "running" and job["worker"] == "w1"
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=30) == 0, workers.log(first)
    assert "worker w1: stopped" in workers.log(first)
    assert worker_listed(state_dir) == []
    job = jobs(state_dir)["vm1"]
    assert job["state"] == "running" and job["exit_code"] is None   # not finished: resumes
    assert "interrupted, cleaned up" in job["message"]              # it was told as Ctrl-C
    workers.start("w1")
    job = wait_for(lambda: jobs(state_dir)["vm1"]["state"] == "done" and jobs(state_dir)["vm1"],
                   "vm1 done on the second worker")
    assert runs(state_dir, "vm1") == 2 and job["downtime"] == 0.5
    kinds = [event["event"] for event in events_of(state_dir, "vm1")]
    assert kinds.count("job-start") == 2 and kinds.count("job-end") == 1


def test_a_job_of_a_killed_worker_is_interrupted_and_resumes_on_the_next(state_dir, workers):
    first = workers.start("w1")
    assert screener(state_dir, "start", "handover", "vm1", "a2")[0] == 0
    job = job_blocked_in_its_first_run(state_dir, "vm1")
    child = job["child_pid"]
    first.kill()
    first.wait(timeout=30)
    # the orphaned operation was told as by Ctrl-C (it must not run on unattended)
    wait_for(lambda: not os.path.exists(f"/proc/{child}"), f"the first run (pid {child}) to end")
    workers.start("w1")
    job = wait_for(lambda: jobs(state_dir)["vm1"]["state"] == "done" and jobs(state_dir)["vm1"],
                   "vm1 done on the second worker")
    assert runs(state_dir, "vm1") == 2


def test_a_job_runs_the_real_football_command_line_as_a_child(state_dir, tmp_path):
    processes = WorkerProcesses(str(state_dir), [POLL])
    try:
        processes.start("w1")
        wait_for(lambda: worker_listed(state_dir), "the worker to be up")
        code, out, err = football("--var", f"state_dir={state_dir}", "--var", POLL,
                                  "--inventory", tmp_path / "missing.yml",
                                  "screener", "start", "migrate", "vm1", "cluster2")
        assert code == 0 and out.strip() == "vm1" and "no worker" not in err
        job = wait_for(lambda: jobs(state_dir)["vm1"]["state"] == "illegal" and
                       jobs(state_dir)["vm1"], "vm1 to end")
    finally:
        processes.kill_all()
    assert job["exit_code"] == 191 and "missing.yml" in job["message"]
    assert job["args"][:2] == ["--inventory", str(tmp_path / "missing.yml")]
    assert json.dumps(job["args"]).count("--json") == 1


def test_a_killed_job_is_interrupted_in_the_worker_and_resumes_when_restarted(state_dir,
                                                                            workers):
    workers.start("w1")
    assert screener(state_dir, "start", "handover", "vm1", "a2")[0] == 0
    job_blocked_in_its_first_run(state_dir, "vm1")
    code, _, err = screener(state_dir, "kill", "vm1")
    assert code == 0, err
    job = wait_for(lambda: jobs(state_dir)["vm1"]["state"] == "interrupted" and
                   jobs(state_dir)["vm1"], "vm1 interrupted")
    assert job["exit_code"] == 190 and job["message"] == "interrupted, cleaned up"
    assert screener(state_dir, "restart", "vm1")[0] == 0
    wait_for(lambda: jobs(state_dir)["vm1"]["state"] == "done", "vm1 done after its restart")
    assert runs(state_dir, "vm1") == 2

"""A test run that is killed cleans up after itself at once (the guard of
tests/helpers/leftovers.py), not only when the next run starts: a pytest of
its own runs `test_inner_leaves_a_detached_process` (as a lab test leaves
its detached marsd) and is killed with SIGKILL."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.marshosts import wait_until

INNER = "FOOTBALL_HARNESS_INNER"        # set: the inner run's test runs


def test_inner_leaves_a_detached_process(tmp_path):
    """The inner run's test: a process in a session of its own whose
    environment names the test's dir, its pid in $INNER/victim; then it
    waits to be killed (`killed`) or ends (`ends`)."""
    mode = os.environ.get(INNER)
    if not mode:
        pytest.skip("run by test_a_killed_run_... only")
    victim = subprocess.Popen(["sleep", "600"], start_new_session=True,
                              env={"PATH": os.environ["PATH"], "HERE": str(tmp_path / "x")})
    Path(os.environ["FOOTBALL_HARNESS_OUT"], "victim").write_text(str(victim.pid))
    if mode == "killed":
        time.sleep(600)


def inner_run(tmp_path, mode):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "runs").mkdir()
    env = dict(os.environ, **{INNER: mode, "FOOTBALL_HARNESS_OUT": str(out)})
    with open(out / "log", "w") as log:
        run = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-p", "no:xdist",
             f"--basetemp={tmp_path / 'runs' / 'inner'}",
             f"{__file__}::test_inner_leaves_a_detached_process"],
            env=env, stdout=log, stderr=subprocess.STDOUT)
    return run, out / "victim"


def running(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("mode", ["killed", "ends"])
def test_a_killed_runs_processes_go_at_once_and_a_run_that_ended_is_left_alone(tmp_path, mode):
    run, victim_file = inner_run(tmp_path, mode)
    pid = None
    try:
        def started():
            assert run.poll() is None or victim_file.exists(), \
                (tmp_path / "out" / "log").read_text()
            return victim_file.exists() and victim_file.read_text()

        wait_until(started, what="the inner run's test to start its process")
        pid = int(victim_file.read_text())
        if mode == "killed":
            run.kill()
            run.wait()
            wait_until(lambda: not running(pid), what=f"the killed run's process {pid} to go")
        else:
            assert run.wait(timeout=120) == 0
            assert running(pid), "a guard cleaned up after a run that ended"
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        if pid is not None and running(pid):
            os.kill(pid, signal.SIGKILL)

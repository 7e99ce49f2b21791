"""`football lab down` (football/lab.py) gives a process it sent SIGKILL a
bound: one stuck in the kernel (state D: a hung FUSE device or disk) made
it wait for ever. It says what was left, and the lab dir is kept."""

import subprocess

import pytest

from football import lab as labmodule
from football.lab import Lab, LabFailed, process_start


@pytest.fixture
def unkillable(monkeypatch):
    """A process of the test's that `lab` sees running whatever is sent to it."""
    process = subprocess.Popen(["sleep", "600"])
    monkeypatch.setattr(labmodule, "pid_running", lambda pid: True)
    monkeypatch.setattr(labmodule, "MARSD_STOP_TIMEOUT", 0.2)
    monkeypatch.setattr(labmodule, "WORKER_STOP_TIMEOUT", 0.2)
    monkeypatch.setattr(labmodule, "KILLED_WAIT", 0.5)
    yield process
    process.kill()
    process.wait()


def test_a_marsd_that_does_not_end_after_sigkill_is_waited_for_a_while_and_named(
        tmp_path, unkillable):
    said = []
    state = {"marsd": {"a1": {"pid": unkillable.pid, "start": process_start(unkillable.pid)}}}
    stuck = Lab(tmp_path, echo=said.append)._stop_daemons(state)
    state_now = labmodule.process_state(unkillable.pid)
    assert stuck == [f"a1's marsd (pid {unkillable.pid}, state {state_now})"]
    assert f"a1's marsd (pid {unkillable.pid}, state " in said[-1]
    assert said[-1].endswith("did not end within 0.5 s of SIGKILL")


def test_a_worker_that_does_not_end_after_sigkill_is_waited_for_a_while_and_named(
        tmp_path, unkillable):
    said = []
    state = {"worker": {"pid": unkillable.pid, "start": process_start(unkillable.pid)}}
    stuck = Lab(tmp_path, echo=said.append)._stop_worker(state)
    assert len(stuck) == 1 and stuck[0].startswith(f"the screener worker (pid {unkillable.pid}")


def test_lab_down_with_a_process_left_fails_naming_it_and_keeps_the_lab_dir(
        tmp_path, unkillable, monkeypatch):
    monkeypatch.setattr(labmodule, "require_root", lambda what: None)
    monkeypatch.setattr(labmodule, "loops_of", lambda directory: {})
    monkeypatch.setattr(labmodule, "still_attached", lambda directory, loops: {})
    lab_dir = tmp_path / "lab"
    lab_dir.mkdir()
    (lab_dir / "lab.json").write_text(
        '{"marsd": {"a1": {"pid": %d, "start": %d}}}'
        % (unkillable.pid, process_start(unkillable.pid)))
    with pytest.raises(LabFailed, match=rf"could not remove a1's marsd \(pid {unkillable.pid}, "
                                        r"state .*\); .* is kept: run `football lab down` again"):
        Lab(lab_dir, echo=lambda line: None).down()
    assert (lab_dir / "lab.json").exists()

"""A frozen LXC container (`lxc-freeze`: its operator paused it) on the
real LXC: it runs for the container hook (its processes and its volume are
there: it was FROZEN, taken for stopped), and its stop stops it. The hook's
answers on the fake: tests/unit/test_container_states.py."""

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from football.hostside import container
from football.transport import Result
from plugins import lxc
from tests.helpers.jobs import wait_for

pytestmark = [pytest.mark.root]

HOST_HELPER = str(Path(sys.executable).parent / "football-host")


class HereHost:
    name, container = "here", "lxc"

    def __init__(self, lxcpath):
        self.lxcpath = str(lxcpath)

    def path(self, path):
        return path

    def run(self, argv, check=True, timeout=None, input=None):
        argv = [HOST_HELPER, *argv[1:]] if argv[0] == "football-host" else argv
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        return Result(self.name, tuple(argv), done.returncode, done.stdout, done.stderr)


def halt_signal_caught(pid, halt=signal.SIGUSR1):
    """Whether the process `pid` catches the lab container's halt signal
    (`lxc.signal.halt`, the workload's trap): its SigCgt mask."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (halt - 1)))
    return False


@pytest.fixture
def frozen(tmp_path):
    """(lxcpath, name) of a busybox container that runs, frozen; gone
    afterwards."""
    name = f"frz{tmp_path.name[-6:].replace('_', '')}"[:15]
    lxcpath = tmp_path / "lxc"
    lxcpath.mkdir()
    container.create(name, lxcpath)
    try:
        assert container.start(name, lxcpath)
        # frozen before its init set its trap of the halt signal, the init
        # (PID 1 of its namespace) ignored that signal once thawed: the stop
        # waited its whole timeout (seen once in CI, on a busy machine)
        init = container._container(name, lxcpath).init_pid
        wait_for(lambda: halt_signal_caught(init), "the container's init to trap its halt signal")
        assert container._container(name, lxcpath).freeze()
        assert container.state(name, lxcpath) == "FROZEN"
        yield lxcpath, name
    finally:
        ct = container._container(name, lxcpath)
        if ct.state != "STOPPED":
            ct.unfreeze()
            ct.stop()
        ct.destroy()


def test_a_frozen_container_runs_for_the_hook_and_its_stop_stops_it(frozen):
    lxcpath, name = frozen
    assert lxc.container_state(host=HereHost(lxcpath), res=name) == "RUNNING"
    assert container.stop(name, lxcpath)        # (after STOP_TIMEOUT: its init is frozen)
    assert container.state(name, lxcpath) == "STOPPED"

"""A container whose config LXC cannot read (its filesystem died under it
with a crashed device: EIO) runs on, and LXC neither opens nor lists nor
stops it (a CI run's flake: `lab up` then found its mount busy, `lab down`
left it running). football/hostside/container.py finds it by its monitor
and kills its init. Here with real processes standing in for the monitor
and the container's init, and the lxc bindings refusing the container."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from football.hostside import container

# the "monitor": its child, the "init", sleeps; it ends when the init does
MONITOR = "import subprocess; subprocess.call(['sleep', '600'])"


@pytest.fixture
def monitor(monkeypatch, tmp_path):
    """A stand-in monitor of container vm1 under tmp_path (its init a
    child), found as LXC's would be; LXC itself cannot open vm1."""
    process = subprocess.Popen([sys.executable, "-c", MONITOR])
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    deadline = time.monotonic() + 30
    while not children.read_text().split() and time.monotonic() < deadline:
        time.sleep(0.01)
    (init,) = map(int, children.read_text().split())

    def monitor_commands():
        return {process.pid: (str(tmp_path), "vm1")} if process.poll() is None else {}

    def refused(name, lxcpath):
        raise RuntimeError(f"Container_init:lxc.c:542: error during init for container '{name}'.")
    monkeypatch.setattr(container, "monitor_commands", monitor_commands)
    monkeypatch.setattr(container, "_container", refused)
    try:
        yield process
    finally:
        try:        # the init first: it outlives its parent (a pid reused meanwhile is not it)
            if Path(f"/proc/{init}/cmdline").read_bytes() == b"sleep\x00600\x00":
                os.kill(init, signal.SIGKILL)
        except (FileNotFoundError, ProcessLookupError):
            pass
        process.kill()
        process.wait()


def test_a_container_lxc_cannot_open_reads_running_while_its_init_runs(monitor, tmp_path):
    assert container.state("vm1", tmp_path) == "RUNNING"
    assert container.state("vm2", tmp_path) == "UNDEFINED"


def test_it_is_listed_by_its_monitor(monitor, tmp_path, monkeypatch):
    import lxc
    monkeypatch.setattr(lxc, "list_containers", lambda config_path: ())
    assert container.list_states(tmp_path) == {"vm1": "RUNNING"}


def test_stop_kills_its_init_and_waits_for_its_monitor_to_end(monitor, tmp_path):
    init = int(Path(f"/proc/{monitor.pid}/task/{monitor.pid}/children").read_text().split()[0])
    assert container.stop("vm1", tmp_path) is True
    assert monitor.poll() is not None, "its monitor still runs"
    assert not Path(f"/proc/{init}").exists() or \
        Path(f"/proc/{init}/stat").read_text().split()[2] == "Z"
    assert container.state("vm1", tmp_path) == "UNDEFINED"
    assert container.stop("vm1", tmp_path) is False     # nothing runs: nothing to stop


def test_a_start_beside_it_under_another_lxc_path_is_not_refused_by_it(monitor, tmp_path):
    """A start of vm1 elsewhere (another lab host, another test's lab)
    looks at namesakes' monitors: it asked LXC for this one's state and
    ended in LXC's "error during init" traceback (a CI run). Its init runs:
    it is no dying namesake."""
    assert container.dying_namesakes("vm1", tmp_path / "elsewhere") == []


def test_an_lxc_error_of_the_host_helper_is_one_line_and_exit_4_not_a_traceback(
        monkeypatch, tmp_path):
    from click.testing import CliRunner

    from football.hostside.cli import cli

    def refused(name, lxcpath):
        raise RuntimeError(f"Container_init:lxc.c:542: error during init for container '{name}'.")
    monkeypatch.setattr(container, "_container", refused)
    result = CliRunner().invoke(cli, ["ct", str(tmp_path), "start", "vm1"])
    assert result.exit_code == 4 and not isinstance(result.exception, RuntimeError), \
        result.output
    assert "LXC: Container_init:lxc.c:542: error during init for container 'vm1'. (a " \
        "container's config could not be read" in result.output

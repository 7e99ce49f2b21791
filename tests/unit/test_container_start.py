"""`football-host ct start` (football/hostside/container.py) against a
stand-in for the lxc bindings' Container: a start that fails is tried again
while the container stays STOPPED, and a start that keeps failing says what
the container's rootfs held and how its LXC log ended."""

from pathlib import Path

import pytest

from football.hostside import container


class StandIn:
    """An lxc.Container whose first `failures` starts fail (as LXC's do:
    start() true, the container never RUNNING, back to STOPPED)."""

    name = "vm1"
    config = None               # the config file it reads, set by `using`

    def __init__(self, failures, stuck=False):
        self.failures, self.stuck, self.starts = failures, stuck, 0
        self.running, self.state = False, "STOPPED"

    @property
    def defined(self):
        return self.config.exists()

    def get_config_item(self, key):
        """As the bindings: the value without its storage type, '' if unset."""
        for line in self.config.read_text().splitlines():
            found, _, value = line.partition("=")
            if found.strip() == key:
                return value.strip().removeprefix("dir:")
        return ""

    def set_config_item(self, key, value):
        pass

    def start(self):
        self.starts += 1
        if self.starts > self.failures:
            self.running, self.state = True, "RUNNING"
        elif self.stuck:
            self.state = "STARTING"
        return True

    def wait(self, state, timeout):
        return self.state == state


@pytest.fixture
def lxcpath(tmp_path, monkeypatch):
    (tmp_path / "vm1" / "rootfs" / "proc").mkdir(parents=True)
    (tmp_path / "vm1" / "config").write_text("lxc.rootfs.path = dir:/elsewhere/rootfs\n")
    (tmp_path / ".vm1.log").write_text("lxc vm1 ERROR conf - Failed to mount temporary procfs\n")
    monkeypatch.setattr(container.time, "sleep", lambda seconds: None)
    # LXC monitors of a lab test running beside this one are not this test's
    monkeypatch.setattr(container, "monitor_commands", lambda: {})
    return tmp_path


def using(monkeypatch, stand_in):
    def at(name, lxcpath):
        stand_in.config = Path(lxcpath) / name / "config"
        return stand_in

    monkeypatch.setattr(container, "_container", at)
    return stand_in


def test_a_start_that_fails_once_is_tried_again_and_runs(lxcpath, monkeypatch):
    stand_in = using(monkeypatch, StandIn(failures=1))
    assert container.start("vm1", lxcpath) is True
    assert stand_in.starts == 2 and stand_in.state == "RUNNING"
    assert f"dir:{lxcpath / 'vm1' / 'rootfs'}" in (lxcpath / "vm1" / "config").read_text()


def test_a_start_that_keeps_failing_names_the_rootfs_and_the_end_of_the_log(
        lxcpath, monkeypatch):
    stand_in = using(monkeypatch, StandIn(failures=99))
    with pytest.raises(container.ContainerError) as failed:
        container.start("vm1", lxcpath)
    assert stand_in.starts == container.START_ATTEMPTS
    message = str(failed.value)
    attempts = container.START_ATTEMPTS
    assert f"attempt {attempts} of {attempts}, state STOPPED" in message
    assert "rootfs holds: proc;" in message
    assert "Failed to mount temporary procfs" in message


def test_a_container_left_starting_is_not_started_twice(lxcpath, monkeypatch):
    stand_in = using(monkeypatch, StandIn(failures=99, stuck=True))
    with pytest.raises(container.ContainerError, match=f"attempt 1 of {container.START_ATTEMPTS}, state STARTING"):
        container.start("vm1", lxcpath)
    assert stand_in.starts == 1


@pytest.mark.parametrize("config, what", [
    ("", "names no rootfs"),
    ("lxc.uts.name = vm1\nlxc.rootfs.path = dir:/\n", "names rootfs /"),
])
def test_a_config_without_the_containers_own_rootfs_is_never_started(
        lxcpath, monkeypatch, config, what):
    """LXC runs a container whose config names no rootfs on the host's own
    root: refused before LXC is asked, saying which config and what to do."""
    stand_in = using(monkeypatch, StandIn(failures=0))
    monkeypatch.setattr(container, "_point_rootfs_here", lambda directory: None)
    (lxcpath / "vm1" / "config").write_text(config)
    with pytest.raises(container.ContainerError) as refused:
        container.start("vm1", lxcpath)
    assert stand_in.starts == 0
    message = str(refused.value)
    assert f"its config {lxcpath / 'vm1' / 'config'} {what}" in message, message
    assert "host's own root" in message and "Restore the config" in message


def test_an_empty_rootfs_says_so(lxcpath, monkeypatch):
    (lxcpath / "vm1" / "rootfs" / "proc").rmdir()
    using(monkeypatch, StandIn(failures=99))
    with pytest.raises(container.ContainerError, match="rootfs holds: empty;"):
        container.start("vm1", lxcpath)


def test_a_start_waits_until_the_monitor_of_the_last_run_is_gone(lxcpath, monkeypatch):
    """A stopped container's monitor lingers a moment; a start beside it
    fails (CI): every attempt begins once it is gone."""
    lingering = iter([[4242], [4242], [4242]])
    seen = []

    def monitors(name, path):
        seen.append((name, Path(path)))
        return next(lingering, [])

    monkeypatch.setattr(container, "monitors", monitors)
    stand_in = using(monkeypatch, StandIn(failures=0))
    assert container.start("vm1", lxcpath) is True
    assert len(seen) == 4 and stand_in.starts == 1
    assert seen[0] == ("vm1", lxcpath)


def test_the_monitor_of_a_container_is_found_by_its_command_line(tmp_path):
    # this test process is no monitor; a made-up path has none
    assert container.monitors("vm1", tmp_path / "lxc") == []


def test_a_start_waits_for_namesakes_winding_down_elsewhere_not_for_running_ones(monkeypatch):
    """The lab's hosts share one machine: another host's (or another lab's)
    vm1 that is stopping counts like this host's own last run; one that
    runs does not."""
    found = {11: ("/lab/a1/var/lib/lxc", "vm1"), 12: ("/lab/b1/var/lib/lxc", "vm1"),
             13: ("/other/a1/var/lib/lxc", "vm1"), 14: ("/lab/a1/var/lib/lxc", "vm2"),
             15: ("/lab/a2/var/lib/lxc", "vm1")}
    monkeypatch.setattr(container, "monitor_commands", lambda: found)
    states = {"/lab/a1/var/lib/lxc": "STOPPING", "/lab/b1/var/lib/lxc": "RUNNING",
              "/other/a1/var/lib/lxc": "STOPPED"}
    assert container.dying_namesakes("vm1", "/lab/a2/var/lib/lxc", states.get) == [11, 13]
    assert container.monitors("vm1", "/lab/a2/var/lib/lxc") == [15]     # its own


def test_a_monitor_is_read_from_its_command_line(monkeypatch, tmp_path):
    proc = tmp_path / "proc"
    for pid, command in ((7, b"[lxc monitor] /srv/a1/lxc vm1\0"), (8, b"/bin/sh\0-c\0x\0"),
                         (9, b"[lxc monitor] /srv/my lxc/path vm2\0")):
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "cmdline").write_bytes(command)
    real_path = container.Path
    monkeypatch.setattr(container, "Path", lambda *parts: proc if parts == ("/proc",)
                        else real_path(*parts))
    assert container.monitor_commands() == {7: ("/srv/a1/lxc", "vm1"),
                                            9: ("/srv/my lxc/path", "vm2")}


def test_the_lab_workload_interval_comes_from_the_environment_checked(monkeypatch):
    monkeypatch.delenv(container.WORKLOAD_INTERVAL_VARIABLE, raising=False)
    assert container.workload_interval() == "0.1"
    monkeypatch.setenv(container.WORKLOAD_INTERVAL_VARIABLE, "0.25")
    assert container.workload_interval() == "0.25"
    from football.templates import render
    script = render("lab/workload.sh", log="/var/workload.log", interval="0.25")
    assert "\n  sleep 0.25\n" in script and "{{" not in script
    for bad in ("0", "fast", "11"):
        monkeypatch.setenv(container.WORKLOAD_INTERVAL_VARIABLE, bad)
        with pytest.raises(container.ContainerError, match="give seconds from 0.01 to 10"):
            container.workload_interval()

"""`football-host ct start` (football/hostside/container.py) against a
stand-in for the lxc bindings' Container: a start that fails is tried again
while the container stays STOPPED, and a start that keeps failing says what
the container's rootfs held and how its LXC log ended."""

import pytest

from football.hostside import container


class StandIn:
    """An lxc.Container whose first `failures` starts fail (as LXC's do:
    start() true, the container never RUNNING, back to STOPPED)."""

    def __init__(self, failures, stuck=False):
        self.failures, self.stuck, self.starts = failures, stuck, 0
        self.defined, self.running, self.state = True, False, "STOPPED"

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
    return tmp_path


def using(monkeypatch, stand_in):
    monkeypatch.setattr(container, "_container", lambda name, lxcpath: stand_in)
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


def test_an_empty_rootfs_says_so(lxcpath, monkeypatch):
    (lxcpath / "vm1" / "rootfs" / "proc").rmdir()
    using(monkeypatch, StandIn(failures=99))
    with pytest.raises(container.ContainerError, match="rootfs holds: empty;"):
        container.start("vm1", lxcpath)


def test_each_lxc_path_gives_its_container_cgroups_of_their_own(tmp_path):
    """Two labs (or two lab hosts) with a container of the same name must not
    share LXC's cgroups, which LXC names after the container alone."""
    one = container.cgroup_dirs("vm1", tmp_path / "a1/var/lib/lxc")
    other = container.cgroup_dirs("vm1", tmp_path / "b1/var/lib/lxc")
    assert one == container.cgroup_dirs("vm1", tmp_path / "a1/var/lib/lxc/.")
    assert set(one.values()).isdisjoint(other.values())
    assert all(value.startswith(("lxc.payload.vm1-", "lxc.monitor.vm1-"))
               for value in one.values())


def test_a_start_sets_the_cgroups_of_its_own(lxcpath, monkeypatch):
    stand_in = using(monkeypatch, StandIn(failures=0))
    items = {}
    monkeypatch.setattr(stand_in, "set_config_item", lambda key, value: items.update({key: value}))
    container.start("vm1", lxcpath)
    assert {key: items[key] for key in container.cgroup_dirs("vm1", lxcpath)} == \
        container.cgroup_dirs("vm1", lxcpath)

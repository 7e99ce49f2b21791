"""LXC's states besides RUNNING and STOPPED (`FROZEN`, `FREEZING`,
`THAWED`, `STARTING`, `STOPPING`, `ABORTING`, as `lxc-info` names them)
against the container hook's contract (RUNNING, STOPPED or UNDEFINED): every
caller asks `== "RUNNING"`. A frozen container (its operator froze it: its
processes and its mounted volume are there, LXC's `running` says so) was
taken for one its operator stopped: a move kept it stopped at the target;
repair-vm found it nowhere, could not start it (LXC's start of one that
runs does nothing) and started it on another host, or said it was NOT
running. The plugin answers RUNNING for each state but STOPPED (the real
LXC: tests/root/test_shrink_content_lxc_states.py)."""

import pytest

from plugins import lxc
from football.transport import Result

from tests.helpers.fakefleet import football
from tests.helpers.fakefleet import fake_fleet  # noqa: F401 (a fixture)


class StateHost:
    """A host whose `football-host ct state` answers `state`."""
    name, container, lxcpath = "a1", "lxc", "/var/lib/lxc"

    def __init__(self, state):
        self.state = state

    def path(self, path):
        return path

    def run(self, argv, check=True, timeout=None, input=None):
        return Result(self.name, tuple(argv), 0, f'{{"state": "{self.state}"}}\n', "")


@pytest.mark.parametrize("state", ["FROZEN", "FREEZING", "THAWED", "STARTING", "STOPPING",
                                   "ABORTING", "RUNNING"])
def test_a_container_that_is_not_stopped_runs_for_the_hooks(state):
    assert lxc.container_state(host=StateHost(state), res="vm2") == "RUNNING"


@pytest.mark.parametrize("state", ["STOPPED", "UNDEFINED"])
def test_a_stopped_or_undefined_container_is_so(state):
    assert lxc.container_state(host=StateHost(state), res="vm2") == state


def test_a_frozen_container_is_not_kept_stopped_by_a_move(fake_fleet):  # noqa: F811
    """Its processes are there (frozen): the migrate said it "does not run
    (FROZEN) and stays stopped", brought up its volume alone at the target
    and left it down there (exit 0). (The fake's stop leaves a FROZEN
    container as it is, where LXC stops it: no more is looked at here.)"""
    fake_fleet.create_resource("vm2", "a1", ["a2"], size=1 << 30)
    fake_fleet.containers["a1"]["vm2"] = "FROZEN"
    _, events, stderr = football(fake_fleet, "migrate", "vm2", "b1", "b2")
    assert "stays stopped" not in str(events) + stderr
    assert "(FROZEN)" not in str(events) + stderr

"""The stop of a frozen LXC container (`lxc-freeze`: its operator paused
it) thaws it first, so that its init takes the halt signal and ends at
once: frozen, the shutdown waited all of its timeout (10 s, inside a
migrate's downtime window) and LXC then killed it."""

import time

import pytest

from football.hostside import container
from tests.root.test_frozen_container import frozen  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.root]

TIMEOUT = 30


def test_a_frozen_container_is_thawed_and_halts_without_waiting_its_stop_timeout(
        frozen):  # noqa: F811
    lxcpath, name = frozen
    began = time.monotonic()
    assert container.stop(name, lxcpath, timeout=TIMEOUT)
    took = time.monotonic() - began
    assert container.state(name, lxcpath) == "STOPPED"
    # the halt signal ends the lab workload within one record (0.1 s); the
    # old way took all of TIMEOUT before the kill
    assert took < TIMEOUT / 2, f"the stop took {took:.1f} s of its {TIMEOUT} s timeout"

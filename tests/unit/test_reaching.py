"""`ops.base.reaching`: whether a peer's marsadm reaches a host that no
command of the controller reaches — the guard of failover and repair-mars
against taking over from a host that runs on, cut off from the controller
alone. Against recorded outputs of our marsadm and the kernel's."""

import pytest

from football import facts
from football.inventory import Host
from football.ops.base import marsd_reports, reaching
from tests.helpers.fakehost import FakeRunner

IPS = ["marsadm", "lowlevel-ls-host-ips"]
WAIT = ["marsadm", "--timeout=5", "wait-cluster"]
# kernel marsadm (userspace/marsadm, wait_cluster): the silent are counted, not named
KERNEL_SOME_DEAD = ("1/2 peer(s) seem to be alive, and 1 peer(s) seem to be dead / not "
                    "reachable\n")


@pytest.fixture(autouse=True)
def no_cached_facts():
    facts.forget()
    yield
    facts.forget()


def peer(*expected):
    runner = FakeRunner("a2")
    runner.expect(IPS, stdout="a1 10.0.0.1\na2 10.0.0.2\n")
    for argv, kwargs in expected:
        runner.expect(argv, **kwargs)
    return Host(name="a2", address="10.0.0.2", _runner=runner), runner


def test_ours_names_who_did_not_answer():
    silent = "marsadm: warning: marsd not answering on a1 (a1: timed out); they count as " \
        "dead: not waiting for them\n"
    host, _ = peer((WAIT, {"stderr": silent}))
    assert reaching([host], "a1") == []
    host, _ = peer((WAIT, {}))                      # every peer answered
    assert reaching([host], "a1") == ["a2"]


@pytest.mark.parametrize("alive, reached", [("1\n", ["a2"]), ("0\n", [])])
def test_the_kernels_counts_the_silent_so_the_designated_primarys_liveness_decides(
        alive, reached):
    host, runner = peer((WAIT, {"stderr": KERNEL_SOME_DEAD}),
                        (["marsadm", "view-get-primary", "vm2"], {"stdout": "a2\n"}),
                        (["marsadm", "view-get-primary", "vm1"], {"stdout": "a1\n"}),
                        (["marsadm", "--window=30", "view-is-alive", "vm1"], {"stdout": alive}))
    assert reaching([host], "a1", ["vm2", "vm1"]) == reached
    assert ("marsadm", "--window=30", "view-is-alive", "vm2") not in runner.calls


def test_a_peer_that_cannot_tell_does_not_count_as_reaching():
    runner = FakeRunner("a2")
    runner.expect(IPS, stdout="a2 10.0.0.2\n")      # a1 is not in its cluster
    runner.expect(WAIT)
    assert marsd_reports([Host(name="a2", address="10.0.0.2", _runner=runner)], "a1") == {
        "a2": (True, False)}
    host, _ = peer((WAIT, {"stderr": "marsadm: marsd not answering here\n", "exit": 3}))
    assert reaching([host], "a1") == []


def test_a_peer_whose_own_marsd_does_not_answer_says_so_and_reaches_nothing():
    """Ours names the peer's own marsd among the silent (exit 3): failover
    does not take over on such a replica (its `marsadm --force primary`
    would wait out the handover timeout), and it cannot tell whether it
    reaches the host."""
    own = "marsadm: timed out after 5s, marsd not answering on a1, a2 (a1: timed out; a2: " \
        "connection refused); start marsd there or check the network\n"
    host, _ = peer((WAIT, {"stderr": own, "exit": 3}))
    assert marsd_reports([host], "a1") == {"a2": (False, False)}
    host, _ = peer((WAIT, {"stderr": KERNEL_SOME_DEAD}))
    assert marsd_reports([host], "a1") == {"a2": (True, False)}

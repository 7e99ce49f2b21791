"""Shrink's downtime window, a third look (tests/unit/test_shrink.py has
the rest): what the probe promises holds after a wait at the gates."""

import pytest

from tests.helpers.fakefleet import football
from tests.helpers.fakefleet import fake_fleet  # noqa: F401 (a fixture)

GIB = 1 << 30


@pytest.fixture
def fleet(fake_fleet):  # noqa: F811 (the fixture imported above)
    fake_fleet.create_resource("vm2", "a1", ["a2"], size=GIB)
    return fake_fleet


def test_the_probe_times_a_pass_made_after_the_wait_at_the_gates(fleet, monkeypatch):
    """The probe pass ran before the gates: after a wait there (business
    hours: from the afternoon to the night) the final copy, inside the
    window, copied all the container wrote meanwhile, far longer than
    max_rsync_downtime (or out of the copy's room, inside the window)."""
    from football.ops.shrink import Shrink
    answer, clock, waited = fleet.run, [0.0], []
    monkeypatch.setattr("football.ops.shrink.time.monotonic", lambda: clock[0])
    real_gate = Shrink._downtime_gate

    def gate(self, source, target):
        real_gate(self, source, target)
        clock[0] += 6 * 3600            # hours at the gates: the container wrote meanwhile
        waited.append(True)

    def rsync_after_the_wait_is_long(host, argv, input=None):
        if argv[0] == "rsync" and waited and len(waited) == 1:
            waited.append("copied")
            clock[0] += 30.0
        return answer(host, argv, input=input)

    monkeypatch.setattr(Shrink, "_downtime_gate", gate)
    monkeypatch.setattr(fleet, "run", rsync_after_the_wait_is_long)
    code, events, stderr = football(fleet, "--var", "max_rsync_downtime=10", "shrink", "vm2")
    assert code == 191, stderr
    assert "took 30.0 s, more than max_rsync_downtime 10 s" in stderr
    assert fleet.running("vm2") == ["a1"] and fleet.resources["vm2"].size == GIB
    assert not [argv for _, argv in fleet.calls if argv[:2] == ("football-host", "ct")
                and argv[3] == "stop"]


@pytest.mark.parametrize("quota, kind", [("uqnoenforce", "-u"), ("gqnoenforce", "-g"),
                                         ("pqnoenforce", "-p")])
def test_quotas_accounted_but_not_enforced_are_copied_too(fleet, quota, kind):
    """XFS names a quota it accounts and does not enforce `uqnoenforce`
    (`gqnoenforce`, `pqnoenforce`) in its mount options: the copy was
    mounted without quotas, its limits and project IDs not copied, lost on
    the shrunk volume."""
    fleet.quota = quota
    fleet.create_resource("vm3", "a1", ["a2"], size=GIB)
    mountpoint = fleet.hosts["a1"].mountpoint("vm3")
    fleet.quota_limits[("a1", mountpoint)] = "1000 0 20480 0 0 0 0"
    code, _, stderr = football(fleet, "shrink", "vm3")
    assert code == 0, stderr
    restores = [argv for host, argv in fleet.calls
                if argv[:4] == ("xfs_quota", "-x", "-c", f"restore {kind}")]
    assert restores and all(argv[-1] == f"{mountpoint}-tmp" for argv in restores)
    assert fleet.quota_limits[("a1", f"{mountpoint}-tmp")] == "1000 0 20480 0 0 0 0"
    mounts = [argv for host, argv in fleet.calls if argv[0] == "mount"
              and argv[-1] == f"{mountpoint}-tmp"]
    assert mounts and all(quota in argv[argv.index("-o") + 1].split(",") for argv in mounts)
    assert bool(fleet.projects_copied) == (kind == "-p")
    assert not fleet.violations

"""Shrink's passes around a long wait at the downtime gates, on the fake
fleet: without max_rsync_downtime (no probe pass) the copy was last made
before the gates, and all the container wrote during a wait of hours went
into the final copy, inside the downtime window."""

import pytest

from tests.helpers.fakefleet import football
from tests.helpers.fakefleet import fake_fleet  # noqa: F401 (a fixture)

GIB = 1 << 30


@pytest.fixture
def fleet(fake_fleet):  # noqa: F811 (the fixture imported above)
    fake_fleet.create_resource("vm2", "a1", ["a2"], size=GIB)
    return fake_fleet


def passes_and_stop(fleet):
    """The primary's rsync passes and the container's stop, in order."""
    return ["stop" if argv[:2] == ("football-host", "ct") else "rsync"
            for host, argv in fleet.calls if host == "a1" and
            (argv[0] == "rsync" or argv[:2] == ("football-host", "ct") and argv[3] == "stop")]


def a_gate_that_waits(monkeypatch, seconds):
    """The downtime gate takes `seconds` (of a clock the shrink reads)."""
    from football.ops.shrink import Shrink
    clock, real_gate = [1000.0], Shrink._downtime_gate
    monkeypatch.setattr("football.ops.shrink.time.monotonic", lambda: clock[0])

    def gate(self, source, target):
        real_gate(self, source, target)
        clock[0] += seconds

    monkeypatch.setattr(Shrink, "_downtime_gate", gate)


def test_a_long_wait_at_the_gates_is_followed_by_one_more_warm_pass(fleet, monkeypatch):
    a_gate_that_waits(monkeypatch, 6 * 3600)        # business hours: afternoon to night
    code, events, stderr = football(fleet, "shrink", "vm2")
    assert code == 0, stderr
    # first, warm, (the gates), warm again, then the window: stop, final
    assert passes_and_stop(fleet)[:5] == ["rsync", "rsync", "rsync", "stop", "rsync"]
    assert "warm copy (after 21600 s at the gates)" in str(events)
    summary = next(event for event in events if event["event"] == "summary")
    assert summary["copy_passes"] == 4


def test_no_wait_at_the_gates_adds_no_pass(fleet, monkeypatch):
    a_gate_that_waits(monkeypatch, 0.5)
    code, events, stderr = football(fleet, "shrink", "vm2")
    assert code == 0, stderr
    assert passes_and_stop(fleet)[:4] == ["rsync", "rsync", "stop", "rsync"]
    summary = next(event for event in events if event["event"] == "summary")
    assert summary["copy_passes"] == 3


def test_with_a_probe_the_probe_is_the_pass_after_the_wait(fleet, monkeypatch):
    """max_rsync_downtime: the probe pass comes after the gates already;
    no warm pass besides it."""
    a_gate_that_waits(monkeypatch, 6 * 3600)
    code, events, stderr = football(fleet, "--var", "max_rsync_downtime=1000000",
                                    "shrink", "vm2")
    assert code == 0, stderr
    assert passes_and_stop(fleet)[:5] == ["rsync", "rsync", "rsync", "stop", "rsync"]
    assert "warm copy (after" not in str(events)
    assert "probe copy" in str(events)


def test_a_pass_reads_the_volume_through_its_confined_source(fleet):
    """Every pass's source is the daemon chrooted into the volume, its
    filesystem only (-x)."""
    code, _, stderr = football(fleet, "shrink", "vm2")
    assert code == 0, stderr
    mountpoint = fleet.hosts["a1"].mountpoint("vm2")
    rsyncs = {argv for host, argv in fleet.calls if argv[0] == "rsync"}
    assert rsyncs == {("rsync", "-aHAXS", "-x", "--numeric-ids", "--modify-window=-1",
                       "--delete", "--inplace", f"--rsh=football-host rsync-source "
                       f"'{mountpoint}'", "source::volume/", f"{mountpoint}-tmp/")}

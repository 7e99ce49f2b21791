"""Shrink on the fake fleet: the systemd units an operator recorded survive
the deletion and re-creation of the resource (also across a crash between
the two); a long wait for the locks before the downtime is followed by one
more warm pass; create-resource and join-resource carry a --timeout shorter
than the command's own limit."""

import pytest

from tests.helpers.fakefleet import football
from tests.helpers.fakefleet import fake_fleet  # noqa: F401 (a fixture)
from tests.helpers.shrink_units import with_units

GIB = 1 << 30
OPERATORS = ("vm2-start.service", "vm2-stop.service")


@pytest.fixture
def fleet(fake_fleet):  # noqa: F811 (the fixture imported above)
    fake_fleet.create_resource("vm2", "a1", ["a2"], size=GIB)
    return fake_fleet


@pytest.fixture
def units_fleet(fleet):
    """vm2 on hosts of the systemd manager, with its operator's own units."""
    with_units(fleet)
    fleet.run("a1", ["marsadm", "set-systemd-unit", "vm2", *OPERATORS])
    return fleet


def primary_steps(fleet):
    """a1's commands from the deletion on that touch units, the resource or
    the container's start: (verb, arguments)."""
    steps, seen = [], False
    for host, argv in fleet.calls:
        if host != "a1":
            continue
        seen = seen or "delete-resource" in argv
        if not seen:
            continue
        verb = next((arg for arg in argv[1:] if not arg.startswith("--")), None)
        if argv[0] == "marsadm" and verb in ("delete-resource", "create-resource",
                                             "set-systemd-unit", "primary"):
            steps.append(verb)
        elif argv[:2] == ("systemctl", "start"):
            steps.append(f"systemctl start {argv[2]}")
    return steps


def test_an_operators_recorded_units_are_recorded_again_after_the_shrink(units_fleet):
    fleet = units_fleet
    code, _, stderr = football(fleet, "shrink", "vm2")
    assert code == 0, stderr
    assert fleet.units["vm2"] == OPERATORS
    assert fleet.running("vm2") == ["a1"] and not fleet.violations
    assert not [file for _, file in fleet.unit_files], "Football's units were written"
    # read before the deletion; recorded after the creation, before the start
    calls = [argv for host, argv in fleet.calls if host == "a1"]
    deleted = calls.index(next(argv for argv in calls if "delete-resource" in argv))
    assert ("marsadm", "get-systemd-unit", "vm2") in calls[:deleted]
    assert ("marsadm", "set-systemd-unit", "vm2", *OPERATORS) in calls
    assert primary_steps(fleet) == ["delete-resource", "create-resource", "set-systemd-unit",
                                    "primary", "systemctl start vm2-start.service"]


def test_after_a_crash_between_deletion_and_creation_the_rerun_records_the_kept_units(
        units_fleet):
    fleet = units_fleet
    code, _, stderr = football(fleet, "--debug-injection-point", "finish:deleted",
                               "shrink", "vm2")
    assert code == 1, stderr
    assert "vm2" not in fleet.resources and "vm2" not in fleet.units
    code, _, stderr = football(fleet, "shrink", "vm2")
    assert code == 0, stderr
    assert fleet.units["vm2"] == OPERATORS
    assert fleet.running("vm2") == ["a1"] and not fleet.violations
    assert primary_steps(fleet) == ["delete-resource", "create-resource", "set-systemd-unit",
                                    "primary", "systemctl start vm2-start.service"]


def test_after_a_crash_past_the_creation_the_rerun_records_them_before_the_start(units_fleet):
    fleet = units_fleet
    code, _, stderr = football(fleet, "--debug-injection-point", "finish:created",
                               "shrink", "vm2")
    assert code == 1, stderr
    code, _, stderr = football(fleet, "shrink", "vm2")
    assert code == 0, stderr
    assert fleet.units["vm2"] == OPERATORS
    assert primary_steps(fleet).count("set-systemd-unit") == 1
    assert primary_steps(fleet)[-1] == "systemctl start vm2-start.service"


def test_in_the_lab_no_units_are_read_or_recorded(fleet):
    code, _, stderr = football(fleet, "shrink", "vm2")
    assert code == 0, stderr
    assert not [argv for _, argv in fleet.calls if "systemd" in " ".join(argv)]


# ------------------------------------------------------- the wait for the locks
def a_lock_wait(monkeypatch, seconds):
    """The shrink's lock taking after the gates (its last) takes `seconds`
    of a clock the shrink reads."""
    from football.ops.shrink import Shrink
    clock, real_holding, real_gate, gated = [1000.0], Shrink.holding, Shrink._downtime_gate, []
    monkeypatch.setattr("football.ops.shrink.time.monotonic", lambda: clock[0])

    def gate(self, source, target):
        real_gate(self, source, target)
        gated.append(True)

    def holding(self, hosts, changes=True):
        if gated:
            clock[0] += seconds
        return real_holding(self, hosts, changes)

    monkeypatch.setattr(Shrink, "_downtime_gate", gate)
    monkeypatch.setattr(Shrink, "holding", holding)


def passes_and_stop(fleet):
    return ["stop" if argv[:2] == ("football-host", "ct") else "rsync"
            for host, argv in fleet.calls if host == "a1" and
            (argv[0] == "rsync" or argv[:2] == ("football-host", "ct") and argv[3] == "stop")]


def test_a_long_wait_for_the_locks_before_the_downtime_is_followed_by_a_warm_pass(
        fleet, monkeypatch):
    a_lock_wait(monkeypatch, 3 * 3600)
    code, events, stderr = football(fleet, "shrink", "vm2")
    assert code == 0, stderr
    # first, warm, (the gates, the locks), warm again, then the window
    assert passes_and_stop(fleet)[:5] == ["rsync", "rsync", "rsync", "stop", "rsync"]
    assert "warm copy (after 10800 s for the locks)" in str(events)


def test_a_long_wait_for_the_locks_with_max_rsync_downtime_is_followed_by_a_probe(
        fleet, monkeypatch):
    a_lock_wait(monkeypatch, 3 * 3600)
    code, events, stderr = football(fleet, "--var", "max_rsync_downtime=1000000",
                                    "shrink", "vm2")
    assert code == 0, stderr
    # first, warm, probe (after the gates), probe again (after the locks), window
    assert passes_and_stop(fleet)[:6] == ["rsync"] * 4 + ["stop", "rsync"]
    assert str(events).count("probe copy") == 2


def test_a_short_wait_for_the_locks_adds_no_pass(fleet, monkeypatch):
    a_lock_wait(monkeypatch, 0.5)
    code, _, stderr = football(fleet, "shrink", "vm2")
    assert code == 0, stderr
    assert passes_and_stop(fleet)[:4] == ["rsync", "rsync", "stop", "rsync"]


# ------------------------------------------------------ create/join --timeout
@pytest.mark.parametrize("command_timeout, marsadm", [(600, 570), (10, 7), (1, 1), (0.5, 1)])
def test_marsadms_timeout_is_shorter_than_the_commands_own_limit(command_timeout, marsadm):
    from football.ops.repair import marsadm_timeout
    assert marsadm_timeout(command_timeout) == marsadm


def test_create_and_join_carry_a_timeout_shorter_than_the_command_timeout(fleet):
    code, _, stderr = football(fleet, "--var", "command_timeout=300", "shrink", "vm2")
    assert code == 0, stderr
    made = [(host, argv) for host, argv in fleet.calls
            if argv[0] == "marsadm" and argv[1] in ("create-resource", "join-resource")]
    lv = {name: fleet.hosts[name].path(f"/dev/{fleet.hosts[name].vg}/vm2") for name in fleet.hosts}
    assert made == [("a1", ("marsadm", "create-resource", "vm2", lv["a1"], "--timeout=270")),
                    ("a2", ("marsadm", "join-resource", "vm2", lv["a2"], "--timeout=270"))]

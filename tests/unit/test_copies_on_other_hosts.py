"""A container that runs on a host holding no replica of its resource any
more — the old primary, cut off from all while it ran, failed over, and
back (tests/helpers/cutoff_fleet.py) — on the fake fleet: a failover run again
names it, and the repairs never start a second copy beside it."""

from tests.helpers.fakefleet import failing, fake_fleet, football
from tests.helpers.cutoff_fleet import failed_over_while_cut_off

fleet = fake_fleet

EXIT_ILLEGAL, EXIT_SERIOUS = 191, 198


def stopped_on(fleet, name, res="vm1"):
    """The container of `res` on `name` stopped (its volume stays mounted)."""
    fleet.containers[name][res] = "STOPPED"


def test_a_failover_run_again_once_the_cut_off_host_is_back_names_the_copy_it_runs(fleet):
    new = failed_over_while_cut_off(fleet)
    before = len(fleet.changes())
    code, _, stderr = football(fleet, "failover", "a1")
    assert code == EXIT_ILLEGAL, stderr
    assert "a1 answers: a failover is for a host that is gone for good" in stderr, stderr
    assert f"a1 runs vm1, whose primary is {new} now: two copies of vm1 run" in stderr, stderr
    assert f"football repair-vm vm1 {new} stops the one on a1" in stderr, stderr
    assert fleet.changes()[before:] == []


def test_repair_vm_does_not_start_a_second_copy_beside_one_on_a_host_without_a_replica(fleet):
    """vm1 stopped on its new primary a2 (a failed start, an operator):
    repair-vm looked at the members alone (a2) and started it there,
    beside the copy on a1. Unconfirmed it changes nothing and says why."""
    new = failed_over_while_cut_off(fleet)
    stopped_on(fleet, new)
    before = len(fleet.changes())
    code, _, stderr = football(fleet, "repair-vm", "vm1", new, yes=False)
    assert code == EXIT_ILLEGAL, stderr
    assert "vm1 runs on a1, which holds no replica of it" in stderr, stderr
    assert fleet.running("vm1") == ["a1"] and not fleet.violations
    assert fleet.changes()[before:] == []


def test_repair_vm_confirmed_stops_the_copy_on_the_host_without_a_replica_then_starts_it(fleet):
    new = failed_over_while_cut_off(fleet)
    stopped_on(fleet, new)
    code, events, stderr = football(fleet, "--dry-run", "repair-vm", "vm1", new)
    assert code == 0, stderr
    would = [(event["host"], event["argv"]) for event in events
             if event["event"] == "would-run"]
    stop = [index for index, (host, argv) in enumerate(would)
            if host == "a1" and argv[:2] == ["football-host", "ct"] and "stop" in argv]
    start = [index for index, (host, argv) in enumerate(would)
             if host == new and argv[:2] == ["football-host", "ct"] and "start" in argv]
    assert stop and start and stop[0] < start[0], would
    assert fleet.running("vm1") == ["a1"]
    code, events, stderr = football(fleet, "repair-vm", "vm1", new)
    assert code == 0, stderr
    assert fleet.running("vm1") == [new] and not fleet.violations
    assert "vm1" in fleet.lvs("a1"), "the LV of the copy that was stopped stays"
    warnings = " ".join(event["text"] for event in events if event["event"] == "warning")
    assert "vm1 runs on a1, which holds no replica of it" in warnings, warnings


def test_repair_vm_of_a_resource_running_on_its_primary_names_a_second_copy_elsewhere(fleet):
    """It runs on a2, its primary, and on a1: "it runs on a2: nothing to
    do" left the second copy running, unsaid."""
    new = failed_over_while_cut_off(fleet)
    code, events, stderr = football(fleet, "repair-vm", "vm1", new, yes=False)
    assert code == EXIT_ILLEGAL, stderr
    assert f"two copies of vm1 run: on {new} (its primary) and on a1" in stderr, stderr
    assert fleet.running("vm1") == ["a1", new]
    code, events, stderr = football(fleet, "repair-vm", "vm1", new)
    assert code == 0, stderr
    assert fleet.running("vm1") == [new] and not fleet.violations


def test_repair_mars_does_not_start_a_second_copy_beside_one_on_a_host_without_a_replica(fleet):
    """a2 is vm1's only replica (a1's was dropped by the failover), its
    container stopped: repair-mars found it stand-alone and started it."""
    new = failed_over_while_cut_off(fleet)
    stopped_on(fleet, new)
    before = len(fleet.changes())
    code, _, stderr = football(fleet, "repair-mars", "vm1", new, yes=False)
    assert code == EXIT_ILLEGAL, stderr
    assert "vm1 runs on a1, which holds no replica of it" in stderr, stderr
    assert fleet.running("vm1") == ["a1"] and not fleet.violations
    assert fleet.changes()[before:] == []
    code, _, stderr = football(fleet, "repair-mars", "vm1", new)
    assert code == 0, stderr
    assert fleet.running("vm1") == [new] and not fleet.violations


def test_repair_vm_starts_nothing_while_the_copy_on_the_host_without_a_replica_does_not_stop(
        fleet, monkeypatch):
    new = failed_over_while_cut_off(fleet)
    stopped_on(fleet, new)
    failing(fleet, monkeypatch, lambda host, argv: host == "a1" and
            argv[:2] == ("football-host", "ct") and "stop" in argv, 1, "lxc-stop: timed out")
    code, _, stderr = football(fleet, "repair-vm", "vm1", new)
    assert code == EXIT_SERIOUS, stderr
    assert "vm1 still runs on a1, which holds no replica of it (see the warnings above): it " \
        "was not started elsewhere, it would run twice" in stderr, stderr
    assert fleet.running("vm1") == ["a1"] and not fleet.violations

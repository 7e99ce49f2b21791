"""Second look at the emergency repairs on the fake fleet."""

from tests.helpers.fakefleet import fake_fleet, football

fleet = fake_fleet


def test_repair_mars_from_a_replica_of_a_gone_primary_says_what_it_never_received(fleet):
    """a1, vm1's primary, is gone; a2 had not received its last writes.
    Rebuilt from a2's copy, they are lost: the question says how much, as
    failover's does (a1's log as a2 last heard of it)."""
    fleet.stalled["a2"] = "fetch cut off"
    for _ in range(3):
        fleet.run("b1", ["marsadm", "view-get-primary", "vm1"])     # vm1 writes on a1
    fleet.switch_off("a1")
    lost = fleet.run("a2", ["marsadm", "view-fetch-rest", "vm1"]).stdout.strip()
    assert int(lost) > 0
    code, _, stderr = football(fleet, "repair-mars", "vm1", "a2", yes=False)
    assert code == 191, stderr
    assert f"a2 has not received {lost} bytes of a1's log" in stderr, stderr
    assert fleet.resources["vm1"].primary == "a1"

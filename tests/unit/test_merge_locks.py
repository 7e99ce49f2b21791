"""A migrate that merges its target into the source's MARS cluster holds
the `football` lock of every host of both clusters meanwhile (on the fake
fleet, tests/helpers/fakefleet.py): two merges into one cluster at once —
a1 through b2 while a2 comes in through b1 — can lose one of them (the lab
saw b2 never list a1 within a minute)."""

from tests.helpers.fakefleet import fake_fleet, football

fleet = fake_fleet


def test_the_merge_of_a_migrate_holds_the_lock_of_every_host_of_both_clusters(fleet):
    code, _, stderr = football(fleet, "migrate", "vm1", "b1", "b2")
    assert code == 0, stderr
    merge = next(index for index, (_, argv) in enumerate(fleet.calls)
                 if argv[:2] == ("marsadm", "merge-cluster"))
    held = set()
    for name, argv in fleet.calls[:merge]:
        if argv[:2] == ("football-host", "lock") and argv[3] in ("take", "release"):
            (held.add if argv[3] == "take" else held.discard)(name)
    assert held == {"a1", "a2", "b1", "b2"}, fleet.calls[:merge]

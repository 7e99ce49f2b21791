"""A migrate that merges its target into the source's MARS cluster holds
the `football` lock of every host of both clusters meanwhile (on the fake
fleet, tests/helpers/fakefleet.py): two merges into one cluster at once —
a1 through b2 while a2 comes in through b1 — can lose one of them (the lab
saw b2 never list a1 within a minute)."""

import json

from football.ops import cluster
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


def test_a_merge_the_other_cluster_did_not_take_in_is_run_once_more(fleet, monkeypatch):
    """After a third of the membership wait without the source listing the
    target, the migrate runs the merge again (which resends a member that
    does not list the merging host everything: marsadm merge-cluster), and
    goes on once it took."""
    monkeypatch.setattr(cluster, "MEMBERSHIP_TIMEOUT", 1.5)
    fleet.lost_merges = 1
    code, events, stderr = football(fleet, "migrate", "vm1", "b1", "b2")
    assert code == 0, stderr
    merges = [name for name, argv in fleet.calls
              if argv[:2] == ("marsadm", "merge-cluster") and name in ("b1", "b2")]
    assert merges == ["b1", "b1"], fleet.calls
    assert "not merged after 0.5 s: marsadm merge-cluster a1" in json.dumps(events)


def test_a_merge_that_never_takes_fails_the_migrate_after_the_membership_wait(fleet, monkeypatch):
    monkeypatch.setattr(cluster, "MEMBERSHIP_TIMEOUT", 1.5)
    fleet.lost_merges = 2
    code, events, stderr = football(fleet, "migrate", "vm1", "b1", "b2")
    assert code != 0
    assert "timed out after 1 s waiting for a1 to see b1" in json.dumps(events) + stderr

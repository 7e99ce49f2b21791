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


def test_a_host_another_merge_brought_in_while_the_migrate_waited_for_its_locks_is_locked_too(
        fleet, monkeypatch):
    """b2 a MARS cluster of its own: the migrate to b1 reckons the hosts to
    lock ({a1, a2, b1}), and while it waits for them another run merges b2
    into b1's cluster. It merged holding no lock of b2 (read before the
    wait, not again under the locks)."""
    from football.ops.base import Operation

    fleet.cluster_id["b2"] = max(fleet.cluster_id.values()) + 1
    holding, merged = Operation.holding, []

    def another_merge_meanwhile(self, hosts, changes=True):
        if not merged and {host.name for host in hosts} == {"a1", "a2", "b1"}:
            merged.append(fleet.run("b2", ["marsadm", "merge-cluster", "b1",
                                           fleet.hosts["b1"].address]))
        return holding(self, hosts, changes)

    monkeypatch.setattr(Operation, "holding", another_merge_meanwhile)
    code, events, stderr = football(fleet, "migrate", "vm1", "b1")
    assert code == 0, stderr
    assert merged and merged[0].ok
    merge = next(index for index, (name, argv) in enumerate(fleet.calls)
                 if argv[:2] == ("marsadm", "merge-cluster") and name == "b1")
    held = set()
    for name, argv in fleet.calls[:merge]:
        if argv[:2] == ("football-host", "lock") and argv[3] in ("take", "release"):
            (held.add if argv[3] == "take" else held.discard)(name)
    assert held == {"a1", "a2", "b1", "b2"}, fleet.calls[:merge]
    assert "b2 came into the MARS clusters to merge while this run waited for their locks: " \
        "locking them too" in json.dumps(events)

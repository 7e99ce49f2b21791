"""What `football migrate` (and its phases alone) does with the targets an
operator names, on the fake fleet (tests/helpers/fakefleet.py): vm1 is
primary on a1 and replicated to a2 (cluster1), cluster2 is b1 b2.

A target equal to the source is nothing to do (FOOTBALL.md, "Migrate"):
exit 0, nothing changed, no replica removed; a secondary named with a
cluster is refused (191) rather than not heard; a run whose primary stays
says which replicas it adds and which go."""

import pytest

from tests.helpers.fakefleet import assert_clusters_as_inventory, assert_placed, fake_fleet, \
    football, fresh_resource

fleet = fake_fleet

EXIT_ILLEGAL = 191


def messages(events):
    return [event["text"] for event in events if event["event"] in ("message", "warning")]


@pytest.mark.parametrize("args", [
    ("migrate", "vm1", "a1"),
    ("migrate", "vm1", "a1", "--pre-hand", "a2"),
    ("migrate-prepare", "vm1", "a1"),
    ("migrate-finish", "vm1", "a1"),
    ("migrate-cleanup", "vm1", "a1"),
], ids=["migrate", "pre-hand", "prepare", "finish", "cleanup"])
def test_naming_only_the_host_the_resource_is_primary_on_changes_nothing_and_exits_0(
        fleet, args):
    """It said "adding replicas of vm1 (320 MiB) on ; the primary stays on
    a1", warned of one replica left, and removed the replica on a2 (the
    pre-hand first handed over to a2 and back: two downtimes)."""
    for run in ("first", "again"):
        code, events, stderr = football(fleet, *args)
        assert code == 0, f"{run}: {stderr}"
        said = messages(events)
        assert "vm1 is primary on a1 already: nothing to do (its replicas stay: a1, a2)" \
            in said, (run, said)
        assert not [text for text in said if "cleanup" in text or "adding" in text], said
        assert fleet.changes() == [], run
        assert_placed(fleet, "a1", ["a2"])
        assert_clusters_as_inventory(fleet)


@pytest.mark.parametrize("target", ["cluster2", "cluster1"])
def test_a_secondary_named_with_a_cluster_is_refused_with_191_and_changes_nothing(
        fleet, target):
    """Placement chose primary and secondary in the cluster and the host
    named went unheard: `migrate vm1 cluster2 a2` moved vm1 to b1 b2 and
    removed the replica on a2 it named."""
    for command in ("migrate", "migrate-prepare", "migrate+shrink"):
        code, _, stderr = football(fleet, command, "vm1", target, "a2")
        assert code == EXIT_ILLEGAL, f"{command}: exit {code}: {stderr}"
        assert f"{target} is a cluster: placement chooses the primary and the secondary in " \
            f"it; name no secondary with it, or two hosts (not {target} a2); nothing " \
            "changed" in stderr, stderr
    assert fleet.changes() == []
    assert_placed(fleet, "a1", ["a2"])


def test_a_cleanup_before_the_target_joined_is_refused_with_191_and_leaves_no_journal(fleet):
    """`migrate-cleanup vm1 b1` first: b1's view of vm1 failed (exit 198,
    "the same command goes on from there"), and the journal it left sent
    the next `migrate vm1 cluster2` to b1 alone: one replica, a2's gone."""
    for _ in range(2):
        code, _, stderr = football(fleet, "migrate-cleanup", "vm1", "b1")
        assert code == EXIT_ILLEGAL, stderr
        assert "vm1's primary is a1, not b1: the handover is not done; football " \
            "migrate-finish vm1 b1 first (the old replicas stay until then); nothing " \
            "changed" in stderr, stderr
        assert_placed(fleet, "a1", ["a2"])
    code, events, stderr = football(fleet, "migrate", "vm1", "cluster2")
    assert code == 0, stderr
    assert not [text for text in messages(events) if "resuming" in text], messages(events)
    assert_placed(fleet, "b1", ["b2"])


def test_a_run_where_the_primary_stays_says_which_replica_it_adds_and_which_goes(fleet):
    """`migrate vm1 a1 b1` said "adding a replica of vm1 (320 MiB) on b1; the
    primary stays on a1" and removed the replica on a2, unsaid."""
    code, events, stderr = football(fleet, "migrate", "vm1", "a1", "b1")
    assert code == 0, stderr
    assert "* adding a replica of vm1 (320 MiB) on b1; the primary stays on a1; the replica " \
        "on a2 goes with cleanup" in messages(events), messages(events)
    assert_placed(fleet, "a1", ["b1"])


def test_a_run_that_adds_no_replica_does_not_say_it_adds_one(fleet):
    """vm1 on a1, a2 and b1; `migrate vm1 cluster1` (or a1 a2) said
    "adding a replica of vm1 (320 MiB) on a2" (a2 has one), and removed b1's."""
    fleet.run("a1", ["marsadm", "merge-cluster", "b1", fleet.hosts["b1"].address])
    fresh_resource(fleet, "vm1", "a1", ["a2", "b1"], size=320 << 20)
    code, events, stderr = football(fleet, "--dry-run", "migrate", "vm1", "a1", "a2")
    assert code == 0, stderr
    assert "* keeping vm1 (320 MiB) on a1, a2; the primary stays on a1; the replica on b1 " \
        "goes with cleanup" in messages(events), messages(events)
    code, events, stderr = football(fleet, "migrate", "vm1", "cluster1")
    assert code == 0, stderr
    assert "* keeping vm1 (320 MiB) on a1, a2; the primary stays on a1; the replica on b1 " \
        "goes with cleanup" in messages(events), messages(events)
    assert_placed(fleet, "a1", ["a2"])
    assert_clusters_as_inventory(fleet)


def test_migrate_shrink_to_the_host_it_is_primary_on_alone_is_nothing_to_do(fleet):
    """Its migrate stage went "to a1 alone" and removed the replica on a2;
    a shrink that then had nothing to shrink left vm1 with one replica,
    exit 0. As its migrate: nothing to do, and `football shrink` named."""
    for run in ("first", "again"):
        code, events, stderr = football(fleet, "migrate+shrink", "vm1", "a1")
        assert code == 0, f"{run}: {stderr}"
        assert [text for text in messages(events) if "it is on a1, a2 already (football "
                "shrink vm1 shrinks it there)" in text], messages(events)
        assert fleet.changes() == [], run
        assert_placed(fleet, "a1", ["a2"])

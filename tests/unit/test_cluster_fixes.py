"""merge-cluster, split-cluster and decommission where hosts do not answer,
reads fail after a change, or other runs hold locks (on the fake fleet,
tests/helpers/fakefleet.py): a refusal says "nothing was changed" only
where nothing was, and no host is left out of a MARS cluster or in one
that Football was asked to end."""

import json

from football.ops import base, cluster
from tests.helpers.fakefleet import (assert_clusters_as_inventory, fake_fleet, failing,
                                     football, points_of)

fleet = fake_fleet

EXIT_ILLEGAL, EXIT_SERIOUS = 191, 198


def marsadm_changes(fleet):
    """The marsadm commands that changed a host so far."""
    return [(name, argv) for name, argv in fleet.changes() if argv[0] == "marsadm"]


def merged_all(fleet):
    code, _, stderr = football(fleet, "merge-cluster", "a1", "b1")
    assert code == 0, stderr
    assert fleet.cluster_of("a1") == ["a1", "a2", "b1", "b2"]


def take_as(fleet, name, owner):
    """`owner` (another run) holds the item `football` on host `name`."""
    host = fleet.hosts[name]
    assert fleet.run(name, ["football-host", "lock", host.path("/var/lock/football"), "take",
                            "football", "--owner", owner, "--stale-after", "3600"]).ok


# ------------------------------------------------------------ decommission
def test_a_dead_host_whose_inventory_mates_do_not_answer_is_refused_naming_them(fleet):
    """a2 died holding vm1 (with a1); a1 is cut off from the controller: no
    host that answers lists a2, which is no sign that it holds nothing."""
    fleet.switch_off("a2")
    fleet.cut_off("a1")
    before = len(fleet.changes())
    code, events, stderr = football(fleet, "decommission", "a2")
    assert code == EXIT_ILLEGAL, (code, stderr)
    assert "a1 does not answer" in stderr and "nothing was changed" in stderr, stderr
    assert "take it out of the inventory" not in json.dumps(events) + stderr
    assert fleet.changes()[before:] == []


def test_a_host_cut_off_from_the_controller_alone_is_refused_before_any_host_leaves(fleet):
    """cluster2 (b1 dead, b2 cut off but running, its peers reach it) is
    refused before a1 drops b1: else b2's refusal came after b1 had left."""
    merged_all(fleet)
    fleet.switch_off("b1")
    fleet.cut_off("b2")
    before = len(marsadm_changes(fleet))
    code, _, stderr = football(fleet, "decommission", "cluster2")
    assert code == EXIT_ILLEGAL, (code, stderr)
    assert "b2" in stderr and "reach" in stderr and "nothing was changed" in stderr, stderr
    assert marsadm_changes(fleet)[before:] == []
    assert fleet.cluster_of("a1") == ["a1", "a2", "b1", "b2"]


def test_a_refusal_after_one_host_left_is_serious_and_names_what_was_done(fleet, monkeypatch):
    merged_all(fleet)
    fleet.switch_off("b1")
    fleet.switch_off("b2")
    failing(fleet, monkeypatch, lambda host, argv: argv[:2] == ("marsadm", "--host=b2"), 1,
            "marsadm: b2 refused (as the test asked)\n")
    code, _, stderr = football(fleet, "decommission", "cluster2")
    assert code == EXIT_SERIOUS, (code, stderr)
    assert "nothing was changed" not in stderr, stderr
    assert "b1 left its MARS cluster" in stderr and "b2 refused" in stderr, stderr
    assert "football decommission cluster2" in stderr, stderr
    assert "b1" not in fleet.cluster_of("a1") and "b2" in fleet.cluster_of("a1")


# ------------------------------------------------------------ merge-cluster
def test_a_merge_holds_the_lock_of_every_host_of_both_clusters(fleet, monkeypatch):
    """While `merge-cluster b1 a1` merges, `merge-cluster b2 a2` (another
    controller's) must wait: two merges into one cluster at once can lose one."""
    answer, nested = fleet.run, []

    def run(host, argv, input=None):
        if tuple(argv[:2]) == ("marsadm", "merge-cluster") and not nested:
            nested.append(None)
            with monkeypatch.context() as elsewhere:
                elsewhere.setattr(base, "run_owner",
                                  lambda operation, res=None: f"{operation}@elsewhere")
                nested[0] = football(fleet, "--var", "lock_retry_timeout=0",
                                     "merge-cluster", "b2", "a2")
        return answer(host, argv, input=input)
    monkeypatch.setattr(fleet, "run", run)
    code, _, stderr = football(fleet, "merge-cluster", "b1", "a1")
    assert code == 0, stderr
    [(nested_code, _, nested_stderr)] = nested
    assert nested_code == EXIT_ILLEGAL and "merge-cluster@" in nested_stderr, nested_stderr
    assert fleet.cluster_of("a1") == ["a1", "a2", "b1", "b2"]


def test_a_merge_refuses_when_a_host_joined_while_it_took_the_locks(fleet, monkeypatch):
    """b2 is in a MARS cluster of its own when the merge of b1 and a1 plans
    its locks, and joins b1's while they are taken: not held, refused."""
    fleet.cluster_id["b2"] = 9
    answer, joined = fleet.run, []

    def run(host, argv, input=None):
        result = answer(host, argv, input=input)
        if tuple(argv[3:5]) == ("take", "football") and not joined:
            joined.append(host)
            fleet.cluster_id["b2"] = fleet.cluster_id["b1"]
        return result
    monkeypatch.setattr(fleet, "run", run)
    before = len(marsadm_changes(fleet))
    code, _, stderr = football(fleet, "merge-cluster", "b1", "a1")
    assert code == EXIT_ILLEGAL, (code, stderr)
    assert "b2 joined" in stderr and "nothing was changed" in stderr, stderr
    assert marsadm_changes(fleet)[before:] == []
    assert not any(fleet.locks(name) for name in fleet.hosts)


def cluster_read_fails_after(fleet, monkeypatch, verb, host, once=True):
    """`marsadm lowlevel-ls-host-ips` on `host` times out (exit 3) after the
    first `marsadm <verb>` ran, once or for good; the failed reads."""
    changed, failed = [], []

    def after_the_change(name, argv):
        if argv[:2] == ("marsadm", verb):
            changed.append(name)
        if changed and not (once and failed) and name == host and \
                argv[1:] == ("lowlevel-ls-host-ips",):
            failed.append(argv)
            return True
        return False
    failing(fleet, monkeypatch, after_the_change, 3, "marsadm: timed out\n")
    return failed


def test_a_read_that_fails_once_after_the_merge_is_waited_over(fleet, monkeypatch):
    failed = cluster_read_fails_after(fleet, monkeypatch, "merge-cluster", "b1")
    code, _, stderr = football(fleet, "merge-cluster", "b1", "a1")
    assert code == 0, (code, stderr)
    assert failed and fleet.cluster_of("b2") == ["a1", "a2", "b1", "b2"]


def test_a_read_that_never_comes_back_after_the_merge_is_serious(fleet, monkeypatch):
    monkeypatch.setattr(cluster, "MEMBERSHIP_TIMEOUT", 0.3)
    cluster_read_fails_after(fleet, monkeypatch, "merge-cluster", "b1", once=False)
    code, _, stderr = football(fleet, "merge-cluster", "b1", "a1")
    assert code == EXIT_SERIOUS, (code, stderr)
    assert "nothing was changed" not in stderr and "merge-cluster b1" in stderr, stderr


# ------------------------------------------------------------ split-cluster
def test_a_read_that_fails_once_after_the_split_is_waited_over(fleet, monkeypatch):
    merged_all(fleet)
    failed = cluster_read_fails_after(fleet, monkeypatch, "split-cluster", "b2")
    code, _, stderr = football(fleet, "split-cluster", "a1", "b1")
    assert code == 0, (code, stderr)
    assert failed
    assert_clusters_as_inventory(fleet)


def test_split_cluster_of_one_host_completes_after_a_crash_between_split_and_merges(fleet):
    """The re-run names a1 alone, which no longer sees b1 or b2."""
    fleet.create_resource("vm2", "b1")         # b2 holds nothing: alone after a split
    merged_all(fleet)
    code, events, stderr = football(fleet, "--debug-injection-point", "1",
                                    "split-cluster", "a1")
    assert code == 1 and points_of(events) == ["split-cluster:split"], stderr
    assert fleet.cluster_of("b2") == ["b2"] and fleet.cluster_of("a1") == ["a1", "a2"]
    code, _, stderr = football(fleet, "split-cluster", "a1")
    assert code == 0, stderr
    assert_clusters_as_inventory(fleet)
    code, events, stderr = football(fleet, "split-cluster", "a1")
    assert code == 0 and "nothing to do" in json.dumps(events), stderr


def test_a_split_that_waits_for_a_lock_says_so(fleet):
    merged_all(fleet)
    take_as(fleet, "b2", "migrate-vm9@elsewhere")
    code, events, stderr = football(fleet, "--var", "lock_retry_timeout=0.5",
                                    "split-cluster", "a1")
    assert code == EXIT_ILLEGAL, (code, stderr)
    waits = [event for event in events if event["event"] == "wait"]
    assert waits and waits[0]["state"] == "condition", events
    assert "migrate-vm9@elsewhere" in waits[0]["reasons"][0], waits


def test_a_bystander_cut_off_from_the_controller_alone_is_refused_before_the_locks(fleet):
    merged_all(fleet)
    fleet.cut_off("b2")
    before = len(fleet.changes())
    code, _, stderr = football(fleet, "split-cluster", "a1")
    assert code == EXIT_ILLEGAL, (code, stderr)
    assert "b2" in stderr and "nothing was changed" in stderr, stderr
    assert fleet.changes()[before:] == []

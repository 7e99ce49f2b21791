"""What `football migrate` refuses, and what it only says it would do, on
the fake fleet (tests/helpers/fakefleet.py): the real command line,
inventory, plugins and journal; hosts that answer as lab hosts do. Every
case is decided before any host is changed, so none needs the real lab:
bad arguments and settings, a target where the resource already is, a
a target without VG space, a target whose marsd does not answer. And one
thing it must not refuse: a target a moment behind the workload.
Each test then checks that the run changed nothing: no command that
changes a host ran, vm1 is still primary on a1 and replicated to a2, and
the MARS clusters are still the inventory's.

`football()` runs with `--json`: what the command prints as it goes is in
the JSON `message` events on stdout; a refusal is in stderr."""

import json
from pathlib import Path

import pytest

from tests.helpers.fakefleet import (assert_clusters_as_inventory, assert_placed, fake_fleet,
                                     football, points_of)
from tests.helpers.turns import turn_held

fleet = fake_fleet

EXIT_ILLEGAL = 191


def messages(events):
    return [event["text"] for event in events if event["event"] == "message"]


def assert_nothing_changed(fleet, *own):
    """No command that changes a host ran but the test's own `own` ones
    (host, argv); vm1 and the MARS clusters are as the fixture left them."""
    assert fleet.changes() == list(own)
    assert_placed(fleet, "a1", ["a2"])
    assert_clusters_as_inventory(fleet)


@pytest.mark.parametrize("args, message", [
    (("migrate", "vm9", "cluster2"), "unknown resource vm9"),
    (("migrate", "vm1", "nowhere"), "unknown host or cluster 'nowhere'"),
    (("migrate", "vm1;rm -rf /", "cluster2"), "invalid"),
    (("migrate", "$(reboot)", "b1"), "invalid"),
    (("migrate", "vm1", "b1", "b1"), "must differ"),
    (("--var", "limit_syncs=many", "migrate", "vm1", "b1"), "limit_syncs"),
    (("--var", "no_such_setting=1", "migrate", "vm1", "b1"), "unknown setting"),
    (("migrate", "vm1:b1", "b2"), "b1 holds no replica of vm1 (vm1:b1 names the host it runs "
                                  "on); name that one, or leave :b1 off to find it"),
    (("expand", "vm1:b2", "1g"), "b2 holds no replica of vm1"),
    (("shrink", "vm1:b2"), "b2 holds no replica of vm1"),
], ids=["unknown-resource", "unknown-target", "shell-in-resource", "command-substitution",
        "same-primary-and-secondary", "setting-not-a-number", "unknown-setting",
        "wrong-named-host", "wrong-named-host-expand", "wrong-named-host-shrink"])
def test_bad_arguments_and_settings_are_refused_with_exit_191_and_change_nothing(
        fleet, args, message):
    code, events, stderr = football(fleet, *args)
    assert code == EXIT_ILLEGAL, f"{args}: exit {code}: {stderr}"
    assert message in stderr, stderr
    # with --json the refusal is also the last event on stdout
    assert {key: events[-1][key] for key in ("event", "exit_code", "text")} == {
        "event": "failed", "exit_code": EXIT_ILLEGAL, "text": stderr.strip()[len("football: "):]}
    assert_nothing_changed(fleet)


@pytest.mark.parametrize("state", ["draining", "evacuated"])
def test_a_migrate_or_handover_to_a_draining_or_evacuated_host_is_refused_with_191(
        fleet, state):
    steps = ["draining"] if state == "draining" else ["draining", "evacuated"]
    marks = [(host, ("football-host", "lifecycle", fleet.hosts[host].path("/var/lib/football"),
                     "set", step, "--by", "test"))
             for host in ("b2", "a2") for step in steps]
    for host, mark in marks:
        fleet.run(host, mark)
    for args in (("migrate", "vm1", "b1", "b2"), ("handover", "vm1", "a2")):
        code, _, stderr = football(fleet, *args)
        assert code == EXIT_ILLEGAL, f"{args}: exit {code}: {stderr}"
        assert f"is {state}: no resource is placed there" in stderr, stderr
    assert_nothing_changed(fleet, *marks)
    code, _, stderr = football(fleet, "--yes", "migrate", "vm1", "cluster2")
    assert code == 0, stderr
    assert_placed(fleet, "b1", [])                  # placement left b2 out


def test_the_host_named_with_the_resource_is_where_a_migrate_starts(fleet):
    code, _, stderr = football(fleet, "migrate", "vm1:a1", "b1", "b2")
    assert code == 0, stderr
    assert_placed(fleet, "b1", ["b2"])


def test_a_migrate_to_where_the_resource_already_is_has_nothing_to_do_and_exits_0(fleet):
    code, events, stderr = football(fleet, "migrate", "vm1", "a1", "a2")
    assert code == 0, stderr
    assert "vm1 is already on a1, a2: nothing to do" in messages(events)
    assert_nothing_changed(fleet)


def test_a_target_without_vg_space_is_refused_with_exit_191_naming_it_and_its_free_space(fleet):
    # the fake fleet's VGs are 4G (the lab's 1G): leave less than vm1's 320M
    host = fleet.hosts["b1"]
    filler = ("football-host", "vg", host.path("/dev/vg0"), "create", "filler", "3900M")
    fleet.run("b1", filler)
    for pre_hand in ((), ("--pre-hand", "a2")):   # refused before the pre-hand, too
        code, _, stderr = football(fleet, "migrate", "vm1", "b1", *pre_hand)
        assert code == EXIT_ILLEGAL, stderr
        assert "b1: volume group vg0 has" in stderr and "MiB free" in stderr, stderr
        assert_nothing_changed(fleet, ("b1", filler))


def test_a_target_whose_marsd_does_not_answer_is_refused_with_exit_191_naming_it(fleet):
    fleet.down.add("b2")
    code, _, stderr = football(fleet, "migrate", "vm1", "b2")
    fleet.down.clear()
    assert code == EXIT_ILLEGAL and "b2" in stderr, stderr
    assert_nothing_changed(fleet)


def test_a_target_a_moment_behind_the_workload_is_waited_for_and_handed_over_not_refused(fleet):
    """Under a workload that writes on, a synced replica says OutDated[F]
    as often as UpToDate: it is consistent, and the lag is bounded before
    the downtime. Asking for UpToDate alone refused the handover ("not
    UpToDate; run migrate-wait first", a CI run) or would have waited for
    the stall timeout."""
    fleet.behind.update({"b1", "b2"})
    code, events, err = football(fleet, "--var", "stall_timeout=2", "--var", "sync_timeout=5",
                                 "migrate", "vm1", "cluster2")
    assert code == 0, err
    assert_placed(fleet, "b1", ["b2"])
    assert not fleet.sequence_problems("vm1")


def test_while_another_operation_on_the_resource_runs_a_migrate_waits_then_refuses(fleet):
    """A shrink of vm1 ran while a migrate of vm1 waited at its gate; the
    turn is per resource now, and the wait is a `condition` for the screener."""
    with turn_held(fleet.state_dir, "shrink", "vm1") as holder:
        code, events, stderr = football(fleet, "--var", "lock_retry_timeout=0.3", "migrate",
                                        "vm1", "cluster2")
    assert code == EXIT_ILLEGAL, stderr
    assert f"shrink of vm1 (pid {holder.pid}) runs on this controller; nothing changed" in stderr
    [wait] = [event for event in events if event["event"] == "wait"]
    assert (wait["state"], wait["what"], wait["reasons"]) == (
        "condition", "turn", [f"shrink of vm1 (pid {holder.pid}) goes on: waiting for it to end"])
    assert_nothing_changed(fleet)


INTENTS = "/var/lib/football/intents"


def test_a_migrate_refused_at_a_lock_before_it_changed_anything_leaves_nothing_behind(fleet):
    """An operator's `football lock football a1` refused the migrate at
    its first lock (exit 191, "nothing changed"): it left its journal,
    which refused the next migrate to other hosts as an unfinished run's,
    and its sync intent on b1, which kept a slot taken for lease_time."""
    assert football(fleet, "lock", "football", "a1")[0] == 0
    code, _, stderr = football(fleet, "--var", "lock_retry_timeout=0.3", "migrate", "vm1",
                               "cluster2")
    assert code == EXIT_ILLEGAL, stderr
    assert "lock football is held by operator@" in stderr
    assert not list(Path(fleet.state_dir, "journal").glob("migrate-vm1.json*"))
    assert not fleet.locks("b1", INTENTS) and not fleet.locks("b2", INTENTS)
    assert football(fleet, "unlock", "football", "a1")[0] == 0
    assert [argv for _, argv in fleet.changes() if argv[0] != "football-host"] == []
    assert_placed(fleet, "a1", ["a2"])

    code, _, stderr = football(fleet, "migrate", "vm1", "b2", "b1")     # not b1, b2 as placed
    assert code == 0, stderr
    assert_placed(fleet, "b2", ["b1"])


def test_a_lock_refused_after_the_migrate_changed_hosts_is_a_failure_that_says_what_stays(
        fleet, monkeypatch):
    """b1 joined, then b2's lock was held by another run: not 191 (which
    says nothing changed) but a failure naming where the run stopped; its
    journal stays, and the same command goes on from there."""
    run = fleet.run
    joined = []

    def another_run_locks_b2_once_b1_joined(name, argv, input=None):
        joined.extend(["b1"] if name == "b1" and "join-resource" in argv else [])
        if joined == ["b1"] and name == "b2" and "view-sync-rest" in argv:    # b2's slot
            joined.append("b2 locked")
            b2 = fleet.hosts["b2"]
            assert run("b2", ["football-host", "lock", b2.path("/var/lock/football"), "take",
                              "football", "--owner", "other-run", "--stale-after", "3600"]).ok
        return run(name, argv, input)

    monkeypatch.setattr(fleet, "run", another_run_locks_b2_once_b1_joined)
    code, _, stderr = football(fleet, "--var", "lock_retry_timeout=0.3", "migrate", "vm1",
                               "b1", "b2")
    assert code == 198, stderr
    assert "lock football is held by other-run" in stderr
    assert "the migrate of vm1 stopped in its prepare phase" in stderr
    assert "the same command goes on from there" in stderr
    assert "b1" in fleet.members("vm1")
    monkeypatch.setattr(fleet, "run", run)
    assert football(fleet, "unlock", "football", "b2")[0] == 0
    code, _, stderr = football(fleet, "migrate", "vm1", "b1", "b2")
    assert code == 0, stderr
    assert_placed(fleet, "b1", ["b2"])


@pytest.mark.parametrize("args", [("shrink", "vm2"), ("migrate+shrink", "vm2", "b1"),
                                  ("migrate+shrink+back", "vm2", "b1")],
                         ids=["shrink", "migrate+shrink", "migrate+shrink+back"])
def test_an_operation_refused_at_its_first_lock_leaves_no_journal_of_its_own_or_its_stages(
        fleet, args):
    fleet.create_resource("vm2", "a1", ["a2"], size=1 << 30)      # room to shrink
    assert football(fleet, "lock", "football", "a1")[0] == 0
    code, _, stderr = football(fleet, "--var", "lock_retry_timeout=0.3", *args)
    assert code == EXIT_ILLEGAL, stderr
    assert "lock football is held by operator@" in stderr
    assert not list(Path(fleet.state_dir, "journal").glob("*.json"))
    assert not any(fleet.locks(name, INTENTS) for name in fleet.hosts)
    assert football(fleet, "unlock", "football", "a1")[0] == 0
    assert not [argv for _, argv in fleet.changes() if argv[0] != "football-host"]
    assert_placed(fleet, "a1", ["a2"], res="vm2")


def test_migrate_cleanup_before_the_handover_is_refused_changing_nothing(fleet):
    """Run before migrate-finish it removed a1's replica and LV, then
    refused at the primary running on a2: 191 "nothing changed"."""
    code, _, stderr = football(fleet, "migrate-prepare", "vm1", "b1", "b2")
    assert code == 0, stderr
    before = len(fleet.changes())
    code, _, stderr = football(fleet, "migrate-cleanup", "vm1", "b1", "b2")
    assert code == EXIT_ILLEGAL and "vm1's primary is a1, not b1: the handover is not done; " \
        "football migrate-finish vm1 b1 b2 first" in stderr, stderr
    assert unlocked(fleet.changes()[before:]) == []
    assert sorted(fleet.members("vm1")) == ["a1", "a2", "b1", "b2"]


def unlocked(changes):
    """The changes but the run's own lock taken and given back."""
    return [change for change in changes if change[1][:2] != ("football-host", "lock")]


def test_migrate_cleanup_while_a_new_replica_syncs_is_refused_keeping_the_old_ones(fleet):
    """b2 still syncing after the handover to b1: migrate-cleanup removed
    a1 and a2 and exited 0 — one good copy left, unsaid."""
    fleet.stalled["b2"] = "slow link"
    code, _, stderr = football(fleet, "migrate-prepare", "vm1", "b1", "b2")
    assert code == 0, stderr
    while fleet.resources["vm1"].replicas["b1"].sync_rest:
        fleet.run("a1", ["marsadm", "view-my-resources"])          # b1 syncs on
    code, _, stderr = football(fleet, "migrate-finish", "vm1", "b1", "b2")
    assert code == 0, stderr
    assert fleet.resources["vm1"].replicas["b2"].sync_rest > 0
    before = len(fleet.changes())
    code, _, stderr = football(fleet, "migrate-cleanup", "vm1", "b1", "b2")
    assert code == EXIT_ILLEGAL and "b2: its replica of vm1 is not in sync yet" in stderr and \
        "football migrate-wait vm1 b1 b2 first" in stderr, stderr
    assert unlocked(fleet.changes()[before:]) == []
    assert sorted(fleet.members("vm1")) == ["a1", "a2", "b1", "b2"]
    del fleet.stalled["b2"]
    code, _, stderr = football(fleet, "migrate", "vm1", "b1", "b2")
    assert code == 0, stderr
    assert_placed(fleet, "b1", ["b2"])


def test_migrate_cleanup_does_not_take_the_busy_new_primary_for_a_replica_out_of_sync(fleet):
    """Kernel MARS's `view-is-consistent` is 0 on a primary while it has
    writes not yet written back (a busy container, any moment): the
    cleanup asks it of the new secondaries only, and removes the old
    replicas."""
    fleet.writing_back.add("b1")
    code, _, stderr = football(fleet, "migrate", "vm1", "b1", "b2")
    assert code == 0, stderr
    assert_placed(fleet, "b1", ["b2"])


def test_a_migrate_to_the_cluster_it_is_in_already_has_nothing_to_do(fleet):
    """Run again (a screener restart of a done job) after another resource
    came onto b1, placement ranked b2 first and handed vm1 over to it, with
    a downtime."""
    code, _, stderr = football(fleet, "migrate", "vm1", "cluster2")
    assert code == 0, stderr
    primary = fleet.resources["vm1"].primary
    fleet.create_resource("vm2", primary, [])
    before = len(fleet.changes())
    code, events, stderr = football(fleet, "migrate", "vm1", "cluster2")
    assert code == 0, stderr
    assert "nothing to do" in json.dumps(events), events
    assert unlocked(fleet.changes()[before:]) == []
    assert fleet.resources["vm1"].primary == primary


@pytest.fixture
def five(tmp_path, monkeypatch):
    """The fake fleet with a third host in cluster2 (b3); vm1 on a1, a2."""
    from football.inventory import Host, parse
    from tests.helpers.fakefleet import FakeFleet

    names = ["a1", "a2", "b1", "b2", "b3"]
    data = {"clusters": {"cluster1": ["a1", "a2"], "cluster2": ["b1", "b2", "b3"]},
            "hosts": {name: {"address": f"127.0.9.{number}", "root": str(tmp_path / name)}
                      for number, name in enumerate(names, start=11)},
            "defaults": {"transport": "local", "storage": "filevg", "manager": "lab",
                         "container": "lxc", "vg_size": "4G"}}
    path = tmp_path / "fleet.yml"
    path.write_text(json.dumps(data))
    fleet = FakeFleet(parse(data, str(path)))
    fleet.inventory_path, fleet.state_dir = str(path), str(tmp_path / "controller")
    monkeypatch.setattr(Host, "runner", property(lambda host: fleet.runner(host.name)))
    for name in ("FOOTBALL_INVENTORY", "FOOTBALL_STATE_DIR", "FOOTBALL_PLUGIN_DIRS"):
        monkeypatch.delenv(name, raising=False)
    fleet.create_resource("vm1", "a1", ["a2"])
    return fleet


def test_a_post_hand_host_of_the_target_cluster_is_one_the_placement_takes(five):
    """Placement chose b1, b2; the migrate was done, then its hand to b3
    failed (b3 has no replica): 191 "nothing changed", every re-run too."""
    code, _, stderr = football(five, "migrate", "vm1", "cluster2", "--post-hand", "b3")
    assert code == 0, stderr
    assert five.resources["vm1"].primary == "b3" and five.running("vm1") == ["b3"]
    assert "b3" in five.members("vm1") and len(five.members("vm1")) == 2


def test_a_refusal_after_the_downtime_window_is_a_failure_not_191_nothing_changed(five):
    """b3, a bystander in cluster2, does not answer: the cleanup's split
    refused after the handover and the removal of a1's and a2's replicas,
    exit 191 "nothing was changed" (a screener job ended illegal)."""
    five.down.add("b3")
    code, _, stderr = football(five, "migrate", "vm1", "b1", "b2")
    assert code == 198, stderr
    assert "stopped in its cleanup phase" in stderr and "the same command goes on" in stderr, \
        stderr
    assert five.resources["vm1"].primary == "b1" and five.running("vm1") == ["b1"]



def test_a_refusal_after_a_resumed_cleanup_changed_hosts_is_no_nothing_changed(fleet):
    """Resumed at its cleanup, the migrate removed a2's replica and the old
    LVs, then its split was refused (a marsd of the cluster stopped):
    191 'Nothing was changed' — only a refusal after this run's own
    downtime window counted as one after changes."""
    code, events, stderr = football(fleet, "--debug-injection-point", "cleanup:left", "migrate",
                                    "vm1", "b1", "b2")
    assert code == 1 and points_of(events)[-1] == "cleanup:left", stderr
    fleet.marsd_stopped.add("a2")
    code, _, stderr = football(fleet, "migrate", "vm1", "b1", "b2")
    assert "vm1" not in fleet.lvs("a1"), "the re-run changed nothing: the test proves nothing"
    assert code == 198, stderr
    assert "Nothing was changed" not in stderr and "nothing changed" not in stderr

"""A host gone for good (switched off, not to come back with its data), on
the fake fleet (tests/helpers/fakefleet.py): a migrate that would act on
it is refused, naming how to drop its replica from MARS; once that is
done (`marsadm --host=<it> leave-resource --force <res>` on the primary),
the migrate goes on without the host — also one that began while the host
answered — and leaves its LV there, said once. The planner counts its
replicas from its mates' member lists and moves none of them; status
shows them."""

from dataclasses import replace
from pathlib import Path

from click.testing import CliRunner

from football.cli import cli
from tests.helpers.fakefleet import fake_fleet, football, fresh_resource, report_of

fleet = fake_fleet

EXIT_ILLEGAL = 191
DROP = "`marsadm --host=a2 leave-resource --force vm1` on a1"


def drop_replica(fleet, name, res="vm1"):
    """What `marsadm --host=<name> leave-resource --force <res>` on the
    primary does: MARS forgets the replica; the host's LV stays."""
    del fleet.resources[res].replicas[name]


def changes(fleet, since):
    return [change for change in fleet.changes()[since:]
            if change[1][:2] != ("football-host", "lock")]


def test_a_migrate_of_a_resource_with_a_replica_on_a_host_gone_for_good_names_how_to_drop_it(
        fleet):
    fleet.switch_off("a2")
    before = len(fleet.changes())
    code, _, stderr = football(fleet, "migrate", "vm1", "a1", "b2")
    assert code == EXIT_ILLEGAL, stderr
    assert "run it again once the host answers. If a2 is gone for good (switched off, not to " \
        "come back with its data): `football failover a2` takes over from it and drops its " \
        f"replicas from MARS (its LVs stay there) — or, for vm1 alone, {DROP} —, then this " \
        "command again" in stderr, stderr
    assert changes(fleet, before) == []

    drop_replica(fleet, "a2")
    code, events, stderr = football(fleet, "migrate", "vm1", "a1", "b2")
    assert code == 0, stderr
    assert fleet.resources["vm1"].primary == "a1" and fleet.members("vm1") == ["a1", "b2"]
    assert fleet.running("vm1") == ["a1"]
    assert "vm1" in fleet.lvs("a2"), "the LV on the host that is off is left alone"
    assert not fleet.sequence_problems("vm1")


def test_a_migrate_that_began_while_the_host_answered_goes_on_without_it_once_its_replica_is_dropped(
        fleet):
    """Its journal names a2 among the original hosts, whose LVs its
    cleanup removes: a2 is left out, its LV named."""
    assert football(fleet, "migrate-prepare", "vm1", "a1", "b2")[0] == 0
    fleet.switch_off("a2")
    code, _, stderr = football(fleet, "migrate", "vm1", "a1", "b2")
    assert code == EXIT_ILLEGAL and DROP in stderr, stderr

    drop_replica(fleet, "a2")
    code, events, stderr = football(fleet, "migrate", "vm1", "a1", "b2")
    assert code == 0, stderr
    warnings = [event["text"] for event in events if event["event"] == "warning"]
    assert "a2 does not answer and holds no replica of vm1 any more: this migrate goes on " \
        "without it; its LV vg0/vm1 stays there (football lv-cleanup vm1 once it answers)" \
        in warnings, warnings
    assert fleet.members("vm1") == ["a1", "b2"] and fleet.running("vm1") == ["a1"]
    assert not [name for name, argv in fleet.calls if name == "a2" and "remove" in argv]


def test_a_split_after_the_move_that_needs_the_host_gone_for_good_says_how_to_drop_it(
        fleet):
    """vm1 leaves cluster1 for good: the split of the MARS cluster needs
    every member, a2 too; the move itself is done."""
    fleet.switch_off("a2")
    drop_replica(fleet, "a2")
    code, _, stderr = football(fleet, "migrate", "vm1", "b1", "b2")
    assert code != 0
    assert "a split needs them all" in stderr and "`football decommission a2` drops it" \
        in stderr, stderr
    assert fleet.resources["vm1"].primary == "b1" and fleet.running("vm1") == ["b1"]
    assert fleet.members("vm1") == ["b1", "b2"], "the old replica on a1 went before the split"

    code, _, stderr = football(fleet, "decommission", "a2")
    assert code == 0, stderr
    code, _, stderr = football(fleet, "migrate", "vm1", "b1", "b2")
    assert code == 0, stderr
    assert fleet.cluster_of("b1") == ["b1", "b2"] and fleet.cluster_of("a1") == ["a1"]


def test_hosts_that_disagree_on_the_primary_are_named_with_what_each_says_and_the_way_on(
        fleet, monkeypatch):
    """a2's marsd stopped before a1 took over by force: a2's marsadm still
    names a2. The primary named by the operator (vm1:a1) is believed."""
    run = fleet.run

    def stale(host, argv, input=None):
        said = run(host, argv, input)
        if host == "a2" and list(argv[:2]) == ["marsadm", "view-get-primary"]:
            return replace(said, stdout="a2\n")
        return said

    monkeypatch.setattr(fleet, "run", stale)
    code, _, stderr = football(fleet, "migrate", "vm1", "a1", "b2")
    assert code == EXIT_ILLEGAL
    assert "vm1: hosts disagree on the primary (a1 says a1; a2 says a2); a host whose " \
        "marsd does not run sees what was before it stopped" in stderr, stderr
    assert "name the primary: vm1:<host>" in stderr
    assert football(fleet, "migrate", "vm1:a1", "a1", "b2")[0] == 0
    assert fleet.members("vm1") == ["a1", "b2"]


def test_an_unfinished_migrate_to_a_target_gone_for_good_says_how_to_give_it_up(
        fleet):
    """b1 died while vm1 synced to it: the migrate cannot go on to it; set
    aside, a migrate to other hosts goes on (the failover dropped b1's
    replica)."""
    assert football(fleet, "migrate-prepare", "vm1", "b1", "b2")[0] == 0
    fleet.switch_off("b1")
    assert football(fleet, "failover", "b1")[0] == 0
    code, _, stderr = football(fleet, "migrate", "vm1", "b1", "b2")
    assert code == EXIT_ILLEGAL
    journal = f"{fleet.state_dir}/journal/migrate-vm1.json"
    assert "The unfinished migrate of vm1 goes to b1, b2 (its journal); if b1 is gone for good: " \
        f"set it aside (mv {journal} {journal}.abandoned), then `football migrate vm1` to " \
        "other hosts" in stderr, stderr
    Path(journal).rename(journal + ".abandoned")
    code, _, stderr = football(fleet, "migrate", "vm1", "b2", "a2")
    assert code == 0, stderr
    assert fleet.resources["vm1"].primary == "b2" and fleet.members("vm1") == ["a2", "b2"]
    assert not fleet.sequence_problems("vm1")


def test_the_planner_sees_the_replicas_on_a_dead_host_and_moves_none_of_them(fleet):
    """a2 died: its own view of its replicas is gone, and the planner took
    vm1 (a1, a2) for a resource with one replica and vm2 (primary a2) for
    one without a primary — `evacuate a1` planned moves of both that could
    only fail, and status did not show them. Its mates' member lists bring
    them back: status shows them, the evacuation is refused naming the
    failover, balancing holds them naming the host."""
    fresh_resource(fleet, "vm2", "a2", ["a1"], size=320 << 20)
    fleet.switch_off("a2")
    code, _, stderr = football(fleet, "evacuate", "a1", "--plan")
    assert code == EXIT_ILLEGAL
    assert "vm1, vm2 have a replica on a2, which does not answer: no move of them can be " \
        "made. Wait for it, or, if it is gone for good, football failover a2 first; nothing " \
        "planned" in stderr, stderr
    rows = {(row["resource"], row["host"]): row
            for row in report_of(fleet, "status")["resources"]}
    assert rows[("vm1", "a2")]["notes"] == rows[("vm2", "a2")]["notes"] == \
        ["a2 does not answer (its mates list this replica)"]
    shown = CliRunner().invoke(cli, ["--inventory", fleet.inventory_path, "--var",
                                     f"state_dir={fleet.state_dir}", "status"],
                               env={"COLUMNS": "250"}).output
    assert "a2 does not answer and holds a replica of vm1 (its primary runs on without it): " \
        "if it is gone for good, `football failover a2` drops it" in shown, shown
    plan = report_of(fleet, "balance", "--plan")
    assert plan["moves"] == []
    assert plan["held"] == {"vm1": "its replica's host a2 does not answer",
                            "vm2": "its replica's host a2 does not answer"}

    assert football(fleet, "failover", "a2")[0] == 0      # then the evacuation goes
    plan = report_of(fleet, "evacuate", "a1", "--plan")
    assert sorted(move["resource"] for move in plan["moves"]) == ["vm1", "vm2"]

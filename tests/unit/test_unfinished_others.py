"""An operation on a resource with an unfinished operation of another kind
(its journal on this controller) is refused before it changes anything,
naming the unfinished one, how to finish it and how to give it up; an
expand goes on over a migrate outside its downtime window; the repairs and
a combined operation's own stages are not refused (fake fleet)."""

import json
from pathlib import Path

import pytest

from tests.helpers.fakefleet import assert_placed, fake_fleet, football, points_of  # noqa: F401

MIB, GIB = 1 << 20, 1 << 30


@pytest.fixture
def fleet(fake_fleet):  # noqa: F811 (the fixture imported above)
    """The fake fleet with vm2 at 1 GiB (room to shrink), a1 and a2."""
    fake_fleet.create_resource("vm2", "a1", ["a2"], size=GIB)
    return fake_fleet


def crash_at(fleet, name, *command):
    """Run `command` stopped at the injection point `name` (exit 1)."""
    code, events, stderr = football(fleet, "--debug-injection-point", name, *command)
    assert code == 1 and points_of(events)[-1] == name, stderr


def ran(fleet, *commands):
    """Run each of `commands` (tuples): each exits 0."""
    for command in commands:
        code, _, stderr = football(fleet, *command)
        assert code == 0, f"{command}: {stderr}"


def refused_unchanged(fleet, *command):
    """Run `command`: refused (191) with nothing changed on any host; its stderr."""
    before = len(fleet.changes())
    code, _, stderr = football(fleet, *command)
    assert code == 191, stderr
    assert fleet.changes()[before:] == [], "a refused command changed a host"
    return " ".join(stderr.split())


def test_a_migrate_over_an_unfinished_shrink_is_refused_naming_how_to_finish_or_give_it_up(
        fleet):
    crash_at(fleet, "prepare:copied", "shrink", "vm2", "320m")
    assert "vm2-tmp" in fleet.lvs("a1")
    said = refused_unchanged(fleet, "migrate", "vm2", "cluster2")
    assert "vm2 has an unfinished shrink" in said
    assert "steps done: none completed, the first may have begun" in said
    assert "a migrate now would work on vm2 from a second plan; nothing changed" in said
    assert "`football shrink vm2 320m`" in said
    assert "To give it up instead: `football shrink-cleanup vm2` (its -tmp LVs go" in said
    # its dry run says the same
    assert "unfinished shrink" in refused_unchanged(fleet, "--dry-run", "migrate", "vm2", "b1")
    # finished, the migrate goes
    ran(fleet, ("shrink", "vm2", "320m"), ("migrate", "vm2", "b1", "b2"))
    assert_placed(fleet, "b1", ["b2"], "vm2")


def test_a_shrink_over_an_unfinished_migrate_is_refused_and_the_migrate_then_finishes(fleet):
    crash_at(fleet, "wait:synced", "migrate", "vm2", "b1", "b2")
    said = refused_unchanged(fleet, "shrink", "vm2")
    assert "vm2 has an unfinished migrate to b1, b2" in said
    assert "steps done: prepare" in said and "`football migrate vm2 b1 b2`" in said
    journal = Path(fleet.state_dir) / "journal" / "migrate-vm2.json"
    assert f"give it up instead: set its journal aside (mv {journal} {journal}.abandoned)" \
        in said
    ran(fleet, ("migrate", "vm2", "b1", "b2"))
    assert_placed(fleet, "b1", ["b2"], "vm2")
    ran(fleet, ("shrink", "vm2"))       # nothing unfinished now


def test_an_expand_goes_on_over_an_unfinished_migrate_and_grows_its_new_replicas(fleet):
    crash_at(fleet, "wait:synced", "migrate", "vm2", "b1", "b2")
    code, events, stderr = football(fleet, "expand", "vm2", "2g")
    assert code == 0, stderr
    assert "the expand grows its new replicas too" in str(events)
    assert {name: fleet.lvs(name)["vm2"] for name in ("a1", "a2", "b1", "b2")} == \
        dict.fromkeys(("a1", "a2", "b1", "b2"), 2 * GIB)
    ran(fleet, ("migrate", "vm2", "b1", "b2"))
    assert_placed(fleet, "b1", ["b2"], "vm2")
    assert fleet.resources["vm2"].size == 2 * GIB


def test_a_migrate_stopped_before_its_join_joins_a_grown_lv_after_an_expand(fleet):
    """Stopped with b1's LV made, not joined: the expand grew the members'
    LVs, not b1's, and every re-run of the migrate failed (198: MARS
    refuses to join a disk smaller than the resource)."""
    crash_at(fleet, "prepare:lv-created", "migrate", "vm2", "b1", "b2")
    assert fleet.lvs("b1")["vm2"] == GIB and "b1" not in fleet.members("vm2")
    ran(fleet, ("expand", "vm2", "2g"))
    code, events, stderr = football(fleet, "migrate", "vm2", "b1", "b2")
    assert code == 0, stderr
    assert "b1: growing LV vg0/vm2 (1024 MiB) to 2048 MiB, as vm2 grew" in str(events)
    assert_placed(fleet, "b1", ["b2"], "vm2")
    assert {name: fleet.lvs(name)["vm2"] for name in ("b1", "b2")} == {"b1": 2 * GIB,
                                                                       "b2": 2 * GIB}


def test_an_expand_over_a_migrate_stopped_in_its_downtime_window_is_refused_repair_is_not(
        fleet):
    crash_at(fleet, "finish:stopped", "migrate", "vm2", "b1", "b2")
    said = refused_unchanged(fleet, "expand", "vm2", "2g")
    assert "it stopped inside its downtime window: the container may be down" in said
    assert "`football repair-vm vm2 <host>` starts it" in said
    ran(fleet, ("repair-vm", "vm2", "a1"), ("migrate", "vm2", "b1", "b2"))
    assert_placed(fleet, "b1", ["b2"], "vm2")


def test_a_combined_operation_resumes_over_its_own_stages_and_refuses_a_plain_migrate(fleet):
    crash_at(fleet, "prepare:copied", "migrate+shrink", "vm2", "b1", "b2", "320m")
    journals = sorted(path.name for path in (Path(fleet.state_dir) / "journal").glob("*.json"))
    assert journals == ["migrate+shrink-vm2.json", "shrink-vm2.json"]
    said = refused_unchanged(fleet, "migrate", "vm2", "b1", "b2")
    assert "vm2 has an unfinished migrate+shrink to b1, b2" in said
    assert "`football migrate+shrink vm2 b1 b2`, and its size if it was given one" in said
    ran(fleet, ("migrate+shrink", "vm2", "b1", "b2", "320m"))
    assert_placed(fleet, "b1", ["b2"], "vm2")


def test_a_journal_older_than_the_combined_stage_is_not_taken_for_the_stage(fleet):
    """A plain migrate's journal left before a migrate+shrink started is not
    the combined one's stage: the combined one is refused."""
    crash_at(fleet, "prepare:joined", "migrate", "vm2", "b1", "b2")
    journal = Path(fleet.state_dir) / "journal" / "migrate+shrink-vm2.json"
    journal.write_text(json.dumps({"operation": "migrate+shrink", "resource": "vm2",
                                   "steps": [], "started": 4e9,
                                   "decided": {"primary": "b1", "migrate_started": 4e9}}))
    said = refused_unchanged(fleet, "migrate+shrink", "vm2", "b1", "b2")
    assert "vm2 has an unfinished migrate to b1, b2" in said


@pytest.mark.parametrize("command", [("expand", "vm2", "2g"), ("handover", "vm2", "a2")])
def test_an_unfinished_operation_of_another_resource_refuses_nothing(fleet, command):
    fleet.create_resource("vm3", "a1", ["a2"], size=GIB)
    crash_at(fleet, "prepare:copied", "shrink", "vm3", "320m")
    code, _, stderr = football(fleet, *command)
    assert code == 0, stderr


def test_a_shrink_given_up_with_shrink_cleanup_lets_the_migrate_go(fleet):
    crash_at(fleet, "prepare:copied", "shrink", "vm2", "320m")
    said = refused_unchanged(fleet, "migrate", "vm2", "b1", "b2")
    assert "To give it up instead: `football shrink-cleanup vm2`" in said
    ran(fleet, ("shrink-cleanup", "vm2"))
    assert not {"vm2-tmp", "vm2-preshrink"} & (set(fleet.lvs("a1")) | set(fleet.lvs("a2")))
    ran(fleet, ("migrate", "vm2", "b1", "b2"))
    assert_placed(fleet, "b1", ["b2"], "vm2")
    assert fleet.resources["vm2"].size == GIB

"""repair-mars's discovery on the fake fleet: a view that fails on a member
is a clear refusal (nothing changed), and replicas whose histories forked
(split brain, tests/helpers/cutoff_fleet.py) are said as such."""

from tests.helpers.fakefleet import failing, fake_fleet, football, replica_behind
from tests.helpers.cutoff_fleet import split_brain

fleet = fake_fleet

EXIT_ILLEGAL = 191


def view_fails(fleet, monkeypatch, host, macro):
    failing(fleet, monkeypatch,
            lambda name, argv: name == host and argv[:2] == ("marsadm", f"view-{macro}"),
            1, "marsadm: timed out waiting for the answer of marsd")


def test_a_view_that_fails_on_the_chosen_member_is_a_refusal_naming_it(fleet, monkeypatch):
    """`view-is-consistent` failed on a2: the transport's error escaped
    (exit 198, "serious": as if a run had failed and been compensated)."""
    view_fails(fleet, monkeypatch, "a2", "is-consistent")
    before = len(fleet.changes())
    code, _, stderr = football(fleet, "repair-mars", "vm1", "a2")
    assert code == EXIT_ILLEGAL, stderr
    assert "whether a2's copy of vm1 is whole cannot be told" in stderr, stderr
    assert "marsadm view-is-consistent vm1" in stderr and "timed out" in stderr, stderr
    assert "nothing changed" in stderr, stderr
    assert fleet.changes()[before:] == [] and fleet.running("vm1") == ["a1"]


def test_a_view_that_fails_on_another_member_is_a_refusal_naming_it(fleet, monkeypatch):
    """a2's copy is partial; whether a1's (the primary's) is whole could not
    be read: the error escaped instead of the refusal."""
    fleet.resources["vm1"].replicas["a2"].sync_rest = 1 << 20
    fleet.stalled["a2"] = "sync stalled"
    view_fails(fleet, monkeypatch, "a1", "is-consistent")
    view_fails(fleet, monkeypatch, "a1", "is-primary")
    before = len(fleet.changes())
    code, _, stderr = football(fleet, "repair-mars", "vm1", "a2")
    assert code == EXIT_ILLEGAL, stderr
    assert "whether a1's copy of vm1 is whole cannot be told" in stderr, stderr
    assert fleet.changes()[before:] == [] and fleet.running("vm1") == ["a1"]


def test_repair_mars_says_a_split_brain_and_what_the_rebuild_keeps(fleet, monkeypatch):
    """vm1's replicas a2 and b1 forked from a1's history: repair-mars said
    a2 was "behind" a1 (bytes not yet replayed), as if they were still to
    come; in a split brain they never come."""
    replica_behind(fleet)
    split_brain(fleet, monkeypatch)
    code, _, stderr = football(fleet, "repair-mars", "vm1", "a2", yes=False)
    assert code == EXIT_ILLEGAL, stderr
    assert "the histories of vm1's replicas forked (split brain: marsadm " \
        "view-is-split-brain vm1 says so on a1, a2, b1)" in stderr, stderr
    assert "rebuilt from a2's copy, vm1 keeps a2's history: what a1, b1 hold beyond the " \
        "fork is lost" in stderr, stderr
    assert "not yet replayed" not in stderr, stderr
    assert fleet.resources["vm1"].primary == "a1" and fleet.running("vm1") == ["a1"]

    code, _, stderr = football(fleet, "repair-mars", "vm1", "a2")
    assert code == 0, stderr
    assert fleet.members("vm1") == ["a2"] and fleet.running("vm1") == ["a2"]


def test_repair_mars_of_a_gone_primary_in_split_brain_does_not_rank_forked_logs(
        fleet, monkeypatch):
    """a1 is gone; a2 and b1 forked: "b1 has received more of vm1's log"
    compared positions in two histories."""
    replica_behind(fleet)
    split_brain(fleet, monkeypatch, hosts={"a2", "b1"})
    fleet.switch_off("a1")
    code, _, stderr = football(fleet, "repair-mars", "vm1", "a2", yes=False)
    assert code == EXIT_ILLEGAL, stderr
    assert "split brain: marsadm view-is-split-brain vm1 says so on a2, b1" in stderr, stderr
    assert "received more" not in stderr, stderr


def test_a_candidate_whose_lvs_cannot_be_listed_is_skipped_with_why(fleet, monkeypatch):
    """Listing a2's LVs failed while its marsd answered: the storage
    command's error escaped (exit 198) instead of the candidate skipped."""
    failing(fleet, monkeypatch, lambda host, argv: host == "a2" and
            argv[:2] == ("football-host", "vg") and "info" in argv, 1, "vgs: read error")
    before = len(fleet.changes())
    code, events, stderr = football(fleet, "repair-mars", "vm1", "a2")
    assert code == EXIT_ILLEGAL, stderr
    warnings = " ".join(event["text"] for event in events if event["event"] == "warning")
    assert "a2: its LVs cannot be listed (" in warnings and "vgs: read error" in warnings, \
        warnings
    assert "none of a2 answers and holds an LV vm1; nothing changed" in stderr, stderr
    assert fleet.changes()[before:] == [] and fleet.running("vm1") == ["a1"]

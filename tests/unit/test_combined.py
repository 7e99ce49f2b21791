"""`football migrate+shrink` and `migrate+shrink+back` on the fake fleet
(tests/helpers/fakefleet.py): where the resource ends, at which size, what
is left behind; a crash at every injection point of each, then a re-run,
ends the same, shrinks once and loses no record of the workload."""

import pytest

from tests.helpers.fakefleet import (SharedQueue, assert_clusters_as_inventory, assert_placed,
                                     failing, football, fresh_resource, points_of)
from tests.helpers.fakefleet import fake_fleet  # noqa: F401 (a fixture)

MIB, GIB = 1 << 20, 1 << 30


@pytest.fixture
def fleet(fake_fleet):  # noqa: F811 (the fixture imported above)
    fresh_resource(fake_fleet, "vm2")
    return fake_fleet


def assert_shrunk_on(fleet, primary, secondary, size=320 * MIB):
    resource = fleet.resources["vm2"]
    assert resource.size == size
    for name in (primary, secondary):
        lvs = fleet.lvs(name)
        assert lvs["vm2"] == size, (name, lvs)
        assert not {"vm2-tmp", "vm2-preshrink"} & set(lvs), (name, lvs)
    for name in set(fleet.hosts) - {primary, secondary}:        # nothing left elsewhere
        assert not {"vm2", "vm2-tmp", "vm2-preshrink"} & set(fleet.lvs(name)), name
    assert_placed(fleet, primary, [secondary], "vm2")
    assert_clusters_as_inventory(fleet)
    assert fleet.written["vm2"] == resource.records[-1]


def stopped_after(fleet, point):
    """A `migrate+shrink vm2 cluster2` stopped at `point` (after a whole run
    that names the points, vm2 as at the start again): its events."""
    code, events, stderr = football(fleet, "migrate+shrink", "vm2", "cluster2")
    assert code == 0, stderr
    fresh_resource(fleet, "vm2")
    number = points_of(events).index(point) + 1
    code, events, stderr = football(fleet, "--debug-injection-point", str(number),
                                    "migrate+shrink", "vm2", "cluster2")
    assert code == 1, stderr
    return events


def shrinks(fleet):
    return [argv for _, argv in fleet.calls if argv[:2] == ("marsadm", "create-resource")]


def test_migrate_shrink_moves_the_full_volume_once_and_syncs_the_secondary_small(fleet):
    code, events, stderr = football(fleet, "migrate+shrink", "vm2", "cluster2")
    assert code == 0, stderr
    assert_shrunk_on(fleet, "b1", "b2")
    assert len(shrinks(fleet)) == 1
    # b2 got its LV only after the shrink: created at the small size
    creates = [(host, argv[-1]) for host, argv in fleet.calls
               if argv[:2] == ("football-host", "vg") and argv[3] == "create"
               and argv[4] == "vm2"]
    assert creates == [("b1", str(GIB)), ("b2", str(320 * MIB))]
    summary = next(event for event in events if event["event"] == "summary")
    assert set(summary["stages"]) == {"migrate", "shrink", "secondary"}
    # the old replicas' LVs and b1's full-size original went last
    removals = [(host, argv[4]) for host, argv in fleet.calls
                if argv[:2] == ("football-host", "vg") and argv[3] == "remove"]
    assert removals == [("a1", "vm2"), ("a2", "vm2"), ("b1", "vm2-preshrink")]
    assert [host for host, argv in fleet.calls if argv[1:3] == ("join-resource", "vm2")][-1] \
        == "b2"
    last_join = max(index for index, (host, argv) in enumerate(fleet.calls)
                    if argv[1:3] == ("join-resource", "vm2"))
    first_removal = min(index for index, (host, argv) in enumerate(fleet.calls)
                        if argv[:2] == ("football-host", "vg") and argv[3] == "remove")
    assert last_join < first_removal
    assert summary["downtime_seconds"] > 0
    # the run's syncs: the full volume to b1, then the small one to b2
    assert summary["copied_bytes"] == GIB + 320 * MIB
    assert summary["synced_bytes"] == sum(stage["synced_bytes"]
                                          for stage in summary["stages"].values())
    # the last stage adds b2; b1 keeps the primary, is not waited for
    said = [event["text"] for event in events if event["event"] == "message"]
    assert "* adding a replica of vm2 (320 MiB) on b2; the primary stays on b1" in said, said
    assert "* prepare: replicas on b1, b2 (b1 holds one already)" in said, said
    assert "* wait: until b2 is UpToDate" in said, said
    assert not [text for text in said if "from b1 to b1" in text or "b1, b2 are" in text], said
    code, events, stderr = football(fleet, "migrate+shrink", "vm2", "cluster2")
    assert code == 0 and "nothing to do" in str(events), stderr


def test_migrate_shrink_keeps_the_old_copies_until_the_new_secondary_holds_the_shrunk_one(
        fleet):
    """The migrate stage removed the old replicas' LVs and the shrink stage
    b1's full-size original: from the shrink's window until b2 was
    UpToDate, b1's new volume was the one copy of vm2."""
    events = stopped_after(fleet, "combined:shrink")
    assert fleet.resources["vm2"].primary == "b1"
    assert [fleet.lvs(name).get("vm2") for name in ("a1", "a2")] == [GIB, GIB]
    assert fleet.lvs("b1")["vm2-preshrink"] == GIB
    assert "a1: LV vg0/vm2 stays until the migrate+shrink of vm2 is done" in str(events)
    code, _, stderr = football(fleet, "migrate+shrink", "vm2", "cluster2")
    assert code == 0, stderr
    assert_shrunk_on(fleet, "b1", "b2")


def test_migrate_shrink_takes_a_size_and_a_named_secondary(fleet):
    code, events, stderr = football(fleet, "migrate+shrink", "vm2", "b2", "b1", "400m")
    assert code == 0, stderr
    assert_shrunk_on(fleet, "b2", "b1", 400 * MIB)
    assert "then a replica on b1" in str(events)


def test_migrate_shrink_to_a_host_alone_says_that_the_resource_keeps_one_replica(fleet):
    code, events, stderr = football(fleet, "migrate+shrink", "vm2", "b1")
    assert code == 0, stderr
    assert fleet.members("vm2") == ["b1"] and fleet.lvs("b1")["vm2"] == 320 * MIB
    assert "no secondary named: vm2 keeps the one replica" in str(events)
    summary = next(event for event in events if event["event"] == "summary")
    assert set(summary["stages"]) == {"migrate", "shrink"}


def test_migrate_shrink_back_ends_where_it_began_at_the_small_size(fleet):
    code, events, stderr = football(fleet, "migrate+shrink+back", "vm2", "b1")
    assert code == 0, stderr
    assert_shrunk_on(fleet, "a1", "a2")
    assert "vm2" not in fleet.lvs("b1")
    assert len(shrinks(fleet)) == 1
    # the original full-size LVs stayed (as -preshrink) until vm2 was back
    removed = [argv[4] for host, argv in fleet.calls if host in ("a1", "a2")
               and argv[:2] == ("football-host", "vg") and argv[3] == "remove"]
    assert removed == ["vm2-preshrink", "vm2-preshrink"]


def test_migrate_shrink_back_keeps_the_full_size_volumes_until_it_is_back(fleet):
    """Its shrink stage removed the full-size LVs (-preshrink) of a1 and a2
    before the way back (the bash original's bug it lists): a run stopped
    between shrink and back had vm2 on b1 and no original left."""
    code, _, stderr = football(fleet, "--debug-injection-point", "combined:shrink",
                               "migrate+shrink+back", "vm2", "b1")
    assert code == 1, stderr
    assert fleet.resources["vm2"].primary == "b1"
    assert [fleet.lvs(name).get("vm2-preshrink") for name in ("a1", "a2")] == [GIB, GIB]
    code, _, stderr = football(fleet, "migrate+shrink+back", "vm2", "b1")
    assert code == 0, stderr
    assert_shrunk_on(fleet, "a1", "a2")
    assert not [(name, lv) for name in ("a1", "a2", "b1", "b2") for lv in fleet.lvs(name)
                if lv.endswith(("-preshrink", "-tmp"))]


def test_migrate_shrink_back_of_a_resource_with_three_replicas_is_refused_changing_nothing(
        fleet):
    """The way back is a migrate (a primary and one secondary): the third
    replica was dropped, its LV removed, exit 0."""
    fleet.run("a1", ["marsadm", "merge-cluster", "b1", fleet.hosts["b1"].address])
    fresh_resource(fleet, "vm2", "a1", ["a2", "b2"])
    before = len(fleet.changes())
    code, _, stderr = football(fleet, "migrate+shrink+back", "vm2", "b1")
    assert code == 191 and "vm2 has 3 replicas (a1, a2, b2): migrate+shrink+back goes back " \
        "to a primary and one secondary" in stderr, stderr
    assert sorted(fleet.members("vm2")) == ["a1", "a2", "b2"]
    assert fleet.changes()[before:] == []


def test_the_new_secondary_needs_room_only_for_the_shrunk_volume(fleet):
    host = fleet.hosts["b2"]
    fleet.run("b2", ["football-host", "vg", host.path("/dev/vg0"), "create", "filler", "3500M"])
    code, _, stderr = football(fleet, "migrate+shrink", "vm2", "b1", "b2")
    assert code == 0, stderr                       # 596 MiB free: not 1 GiB, but 320 MiB
    assert_shrunk_on(fleet, "b1", "b2")


@pytest.mark.parametrize("args, message", [
    (("migrate+shrink+back", "vm2", "a2"), "a2 holds a replica of vm2 already"),
    (("migrate+shrink", "vm2", "b1", "b2", "b3"), "takes a target"),
    (("migrate+shrink", "vm2", "b1", "50", "60"), "more than one size"),
    (("migrate+shrink", "vm2", "b1", "0"), "fill level 0 % is outside 1..99"),
])
def test_bad_input_is_refused_with_191_and_changes_nothing(fleet, args, message):
    code, _, stderr = football(fleet, *args)
    assert code == 191 and message in stderr, stderr
    assert fleet.changes() == []


def around_the_stages(points):
    """The numbers (1-based) of the points next to the stage boundaries: the
    first and last of each stage, each `combined:` point, and the shrink's
    window (deleted, created): where the combined journal decides. Inside a
    stage the operation resumes as it does alone, and its own sweep
    (test_injection_sweep, test_shrink) passes every point."""
    keep = set()
    for number, name in enumerate(points, start=1):
        if name.startswith("combined:"):
            keep |= {number - 1, number, number + 1}
        if name in ("finish:deleted", "finish:created"):
            keep.add(number)
    return sorted(number for number in keep | {1} if 1 <= number <= len(points))


@pytest.mark.parametrize("command, primary, secondary, sweep", [
    (("migrate+shrink", "vm2", "cluster2"), "b1", "b2", "every point"),
    (("migrate+shrink+back", "vm2", "b1"), "a1", "a2", "around the stages"),
])
def test_a_combined_run_resumes_after_a_crash_at_every_injection_point(
        fleet, command, primary, secondary, sweep):
    """migrate+shrink: at every point (as the issue asks); +back, whose
    stages are the same operations, around its stages."""
    code, events, stderr = football(fleet, *command)
    assert code == 0, stderr
    points = points_of(events)
    assert points.count("finish:created") == 1 and points[-1] == "combined:cleanup"
    numbers = range(1, len(points) + 1) if sweep == "every point" else around_the_stages(points)
    assert len(numbers) >= 8
    for number in numbers:
        name = points[number - 1]
        fresh_resource(fleet, "vm2")
        before = len(shrinks(fleet))
        code, events, stderr = football(fleet, "--debug-injection-point", str(number), *command)
        assert code == 1 and points_of(events)[-1] == name, (number, name, stderr)
        assert not fleet.violations, (number, name, fleet.violations)
        code, _, stderr = football(fleet, *command)
        assert code == 0, f"re-run after point {number} ({name}): {stderr}"
        try:
            assert_shrunk_on(fleet, primary, secondary)
        except AssertionError as error:
            raise AssertionError(f"after point {number} ({name}): {error}") from None
        assert len(shrinks(fleet)) - before == 1, f"after point {number} ({name}): shrunk twice"


def test_migrate_shrink_asked_elsewhere_than_an_unfinished_one_is_refused_naming_both(fleet):
    """A re-run to other hosts went on to the journal's, silently."""
    stopped_after(fleet, "combined:migrate")
    code, _, stderr = football(fleet, "migrate+shrink", "vm2", "a2")
    assert code == 191, stderr
    assert "vm2 has an unfinished migrate+shrink to b1, b2 (stages done: none), not to a2; " \
        "nothing changed. `football migrate+shrink vm2 b1 b2` finishes it" in stderr, stderr
    code, _, stderr = football(fleet, "migrate+shrink", "vm2", "cluster2")
    assert code == 0, stderr
    assert_shrunk_on(fleet, "b1", "b2")


@pytest.mark.parametrize("point", ["combined:migrate", "combined:shrink"])
def test_migrate_shrink_back_asked_another_temporary_host_than_an_unfinished_one_is_refused(
        fleet, point):
    """It announced the new host, shrank on the journal's and left the
    asked one a full-size -preshrink."""
    code, _, stderr = football(fleet, "--debug-injection-point", point,
                               "migrate+shrink+back", "vm2", "b1")
    assert code == 1, stderr
    changes = len(fleet.changes())
    code, _, stderr = football(fleet, "migrate+shrink+back", "vm2", "b2")
    assert code == 191, stderr
    assert "vm2 has an unfinished migrate+shrink+back to b1 (stages done: " in stderr
    assert "not to b2; nothing changed. `football migrate+shrink+back vm2 b1` finishes it" \
        in " ".join(stderr.split())
    assert len(fleet.changes()) == changes
    code, _, stderr = football(fleet, "migrate+shrink+back", "vm2", "b1")
    assert code == 0, stderr
    assert_shrunk_on(fleet, "a1", "a2")
    assert not {"vm2", "vm2-tmp", "vm2-preshrink"} & set(fleet.lvs("b2"))


@pytest.mark.parametrize("command, finish", [
    (("migrate+shrink", "vm2", "b1", "b2"), "football migrate+shrink vm2 b1 b2 400m"),
    (("migrate+shrink+back", "vm2", "b1"), "football migrate+shrink+back vm2 b1 400m"),
])
def test_a_combined_run_asked_another_size_than_an_unfinished_one_names_itself(
        fleet, command, finish):
    """Its shrink stage refused the other size naming `football shrink vm2
    400m` and `shrink-cleanup`, both of which the unfinished combined run
    refused in turn: advice with no way on."""
    code, _, stderr = football(fleet, "--debug-injection-point", "prepare:copied", *command,
                               "400m")
    assert code == 1, stderr
    code, _, stderr = football(fleet, *command, "300m")
    assert code == 191 and f"not 300m; nothing changed. `{finish}` finishes it" in stderr, \
        stderr
    assert "football shrink vm2" not in stderr
    code, _, stderr = football(fleet, *command, "400m")
    assert code == 0, stderr


# --- a job taken over by another controller ----------------------------------------------

@pytest.mark.parametrize("command, primary, secondary", [
    (("migrate+shrink", "vm2", "cluster2"), "b1", "b2"),
    (("migrate+shrink+back", "vm2", "b1"), "a1", "a2"),
], ids=["migrate+shrink", "migrate+shrink+back"])
@pytest.mark.parametrize("after, stop_at", [
    ("combined:migrate", "prepare:mkfs"),         # the shrink stage begun
    ("combined:migrate", "finish:created"),       # inside the shrink's window
    ("combined:shrink", "wait:synced"),           # the last stage
], ids=["shrink-begun", "shrink-window", "last-stage"])
def test_a_combined_job_stopped_on_one_controller_is_finished_by_another_from_the_jobs_journal(
        fleet, tmp_path, monkeypatch, command, primary, secondary, after, stop_at):
    """A screener job's run stops (its worker died) and a worker of another
    controller (its own state dir, one shared queue) takes the job over:
    without the journal, which only the first controller had, a
    migrate+shrink+back no longer knew the hosts to go back to (refused:
    "b1 holds a replica already") and a run stopped in the shrink's window
    was refused (vm2 not mounted). The job keeps its journals: the other
    controller goes on from them, ends the same and shrinks once."""
    code, events, stderr = football(fleet, *command)
    assert code == 0, stderr
    points = points_of(events)
    fresh_resource(fleet, "vm2")
    before = len(shrinks(fleet))
    queue = SharedQueue(tmp_path, monkeypatch)
    code, events, stderr = queue.taken_over(fleet, command,
                                            points.index(stop_at, points.index(after)) + 1)
    queue.close()
    assert code == 0, stderr
    said = [event["text"] for event in events if event["event"] == "message"]
    assert f"  {command[0]} of vm2: going on from the journal its screener job's last run " \
        "kept" in "\n".join(said), said
    assert_shrunk_on(fleet, primary, secondary)
    assert len(shrinks(fleet)) - before == 1, "shrunk twice"


def test_a_migrate_shrink_back_stopped_elsewhere_without_its_journal_says_where_it_goes_on(
        fleet, tmp_path):
    """A foreground run stopped after its migrate stage (its controller's
    journal alone knows the hosts to go back to); the same command on
    another controller must not call b1 a bad temporary host and say that
    nothing changed as if the command were wrong: it says where vm2 is and
    how it goes on."""
    command = ("migrate+shrink+back", "vm2", "b1")
    code, events, stderr = football(fleet, *command)
    assert code == 0, stderr
    fresh_resource(fleet, "vm2")
    point = points_of(events).index("combined:migrate") + 1
    code, _, stderr = football(fleet, "--debug-injection-point", str(point), *command)
    assert code == 1 and fleet.resources["vm2"].primary == "b1", stderr
    fleet.age_locks("run-vm2", 1000)
    mine, fleet.state_dir = fleet.state_dir, str(tmp_path / "other-controller")
    try:
        code, _, stderr = football(fleet, *command)
    finally:
        fleet.state_dir = mine
    assert code == 191, stderr
    assert "vm2's primary is on b1, the temporary host, already (replicas also on a1, a2), " \
        "and this controller has no journal of a migrate+shrink+back of vm2" in stderr, stderr
    assert "go back by hand: football migrate vm2 <primary> [<secondary>]; else the " \
        "temporary primary must be another host than b1. Nothing changed" in stderr, stderr
    assert fleet.resources["vm2"].primary == "b1"
    code, _, stderr = football(fleet, *command)          # where it began: it goes on
    assert code == 0, stderr
    assert_shrunk_on(fleet, "a1", "a2")


def fill(fleet, name, mib):
    host = fleet.hosts[name]
    assert fleet.run(name, ["football-host", "vg", host.path(f"/dev/{host.vg}"), "create",
                            "filler", str(mib * MIB)]).ok


@pytest.mark.parametrize("command, full, said", [
    (("migrate+shrink", "vm2", "b1", "b2"), "b1", "b1: volume group vg0 has 1,196 MiB free, "
     "needs 1,344 MiB"),
    (("migrate+shrink+back", "vm2", "b1"), "a2", "a2: volume group vg0 has 192 MiB free, "
     "needs 320 MiB"),
], ids=["migrate+shrink", "migrate+shrink+back"])
def test_a_combined_run_without_room_for_the_shrinks_copy_is_refused_before_it_moves(
        fleet, command, full, said):
    """The new primary needs room for the volume and the shrink's copy at
    once (+back: the original hosts for the copy too): it migrated first,
    then its shrink stage refused — 191, "nothing changed", with vm2 moved."""
    fill(fleet, full, 2900 if full == "b1" else 2560)       # (a2 holds vm1 too)
    changes = len(fleet.changes())
    code, _, stderr = football(fleet, *command)
    assert code == 191, stderr
    assert said in stderr and "nothing changed" in stderr, stderr
    assert len(fleet.changes()) == changes
    assert_placed(fleet, "a1", ["a2"], "vm2")


def test_a_stage_refused_after_the_stages_before_it_moved_the_resource_is_no_refusal(fleet):
    """191 says the run changed nothing: after its migrate stage it had."""
    stopped_after(fleet, "combined:migrate")
    fill(fleet, "b1", 2900)
    code, _, stderr = football(fleet, "migrate+shrink", "vm2", "cluster2")
    assert code == 198, stderr
    text = " ".join(stderr.split())
    assert "its shrink stage refused: shrink of vm2 to 320 MiB: b1: volume group vg0 has" in text
    assert "the migrate+shrink of vm2 stopped in its shrink phase (steps done: migrate)" in text


def test_an_old_replicas_host_named_as_the_new_secondary_gets_a_volume_of_the_new_size(fleet):
    """Its LV kept by the migrate stage would have been the secondary's
    disk: 1 GiB for a resource of 320 MiB."""
    code, _, stderr = football(fleet, "migrate+shrink", "vm2", "a2", "a1")
    assert code == 0, stderr
    resource = fleet.resources["vm2"]
    assert resource.size == 320 * MIB
    assert_placed(fleet, "a2", ["a1"], "vm2")
    assert [fleet.lvs(name)["vm2"] for name in ("a1", "a2")] == [320 * MIB, 320 * MIB]
    assert fleet.written["vm2"] == resource.records[-1]


def test_a_dry_run_of_a_migrate_shrink_left_at_its_cleanup_lists_the_removals(
        fleet, monkeypatch):
    """It said "stage cleanup: migrate" and listed nothing."""
    undo = failing(fleet, monkeypatch, lambda host, argv: host == "b1" and argv[:2] == (
        "football-host", "vg") and argv[3] == "remove", 5, "lvremove: cannot remove\n")
    code, _, stderr = football(fleet, "migrate+shrink", "vm2", "cluster2")
    assert code == 198, stderr
    undo()
    code, events, stderr = football(fleet, "--dry-run", "migrate+shrink", "vm2", "cluster2")
    assert code == 0, stderr
    planned = [(event["host"], event["argv"][3:]) for event in events
               if event["event"] == "would-run"]
    assert ("b1", ["remove", "vm2-preshrink"]) in planned, planned


@pytest.mark.parametrize("second", ["wait:synced", "finish:stopped"])
def test_a_combined_run_crashed_twice_in_one_stage_resumes_it(fleet, second):
    """Each resume recorded the stage's start anew, later than its own
    migrate's journal began: the third run took that journal for another
    run's and refused (191, 'finish the migrate first'), and the migrate it
    named refused too ('finish the migrate+shrink first'); crashed in the
    window, the container stayed stopped."""
    command = ("migrate+shrink", "vm2", "cluster2")
    fresh_resource(fleet, "vm2")
    for point in ("prepare:lv-created", second):
        code, events, stderr = football(fleet, "--debug-injection-point", point, *command)
        assert code == 1 and points_of(events)[-1] == point, stderr
    code, _, stderr = football(fleet, *command)
    assert code == 0, stderr
    assert_shrunk_on(fleet, "b1", "b2")

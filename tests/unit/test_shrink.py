"""`football shrink` on the fake fleet (tests/helpers/fakefleet.py): the
filesystem is copied into a smaller `-tmp` LV while the container runs,
the downtime window switches MARS over to it, the secondaries re-join;
bad input, a lack of room and a slow copy are refused before anything is
stopped; a crash at every injection point, then a re-run, ends shrunk with
no record of the workload lost; failures inside the window are
compensated. The lab's sample: tests/root/test_shrink.py."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from football.ops import shrink

from tests.helpers.fakefleet import (SharedQueue, assert_placed, football, fresh_resource,
                                     points_of)
from tests.helpers.fakefleet import fake_fleet  # noqa: F401 (a fixture)

MIB, GIB = 1 << 20, 1 << 30
POINTS = ("prepare:lv-created", "prepare:mkfs", "prepare:copied", "finish:stopped",
          "finish:copied", "finish:unmounted", "finish:deleted", "finish:renamed",
          "finish:created", "finish:started", "finish:joined", "wait:synced",
          "cleanup:removed", "cleanup:removed")


@pytest.fixture
def fleet(fake_fleet):  # noqa: F811 (the fixture imported above)
    """The fake fleet with vm2: 1 GiB, 100 MiB used, primary a1, replica a2."""
    fake_fleet.create_resource("vm2", "a1", ["a2"], size=GIB)
    return fake_fleet


def assert_shrunk(fleet, size=320 * MIB, res="vm2"):
    """`res` is `size` bytes in MARS and on each replica's LV, runs on a1,
    replicated to a2, no -tmp or -preshrink left, no record lost."""
    resource = fleet.resources[res]
    assert resource.size == size
    for name in ("a1", "a2"):
        lvs = fleet.lvs(name)
        assert lvs[res] == size, f"{name}: {lvs}"
        assert not {f"{res}-tmp", f"{res}-preshrink"} & set(lvs), f"{name}: {lvs}"
    assert all(replica.sync_rest == 0 for replica in resource.replicas.values())
    assert_placed(fleet, "a1", ["a2"], res)
    assert fleet.written[res] == resource.records[-1]


def summary_of(events):
    return next(event for event in events if event["event"] == "summary")


def test_a_resource_with_the_longest_name_allowed_shrinks_and_migrates(fleet):
    """64 characters: its lock items (`shrink-<res>`, `run-<res>`) and its
    LVs (`<res>-preshrink`) are longer; they were refused as invalid names
    (a shrink failed in its prepare phase, and migrates at their intents)."""
    res = "v" * 64
    fleet.create_resource(res, "a1", ["a2"], size=GIB)
    code, _, stderr = football(fleet, "shrink", res, "400m")
    assert code == 0, stderr
    assert_shrunk(fleet, 400 * MIB, res)
    code, _, stderr = football(fleet, "migrate", res, "b1", "b2")
    assert code == 0, stderr
    assert_placed(fleet, "b1", ["b2"], res)


def test_shrink_copies_into_a_smaller_volume_switches_over_and_rejoins_the_secondary(fleet):
    code, events, stderr = football(fleet, "shrink", "vm2")
    assert code == 0, stderr
    assert_shrunk(fleet)                    # 100 MiB / 85 % = 118 MiB, raised to min_space
    assert tuple(points_of(events)) == POINTS
    summary = summary_of(events)
    assert (summary["old_size"], summary["new_size"]) == (GIB, 320 * MIB)
    assert summary["downtime_seconds"] is not None and summary["copy_passes"] == 3
    assert summary["copied_bytes"] == 320 * MIB             # the new volume, to the one secondary
    assert "until a2 holds the shrunk vm2" in str(events)
    windows = [event["event"] for event in events if event["event"].startswith("downtime-")]
    assert windows == ["downtime-begin", "downtime-end"]
    # the final copy ran with the container stopped, the first while it ran
    order = [(argv[0], argv[3] if argv[0] == "football-host" else "")
             for host, argv in fleet.calls if host == "a1" and
             (argv[0] == "rsync" or argv[:2] == ("football-host", "ct") and argv[3] == "stop")]
    assert order[:4] == [("rsync", ""), ("rsync", ""), ("football-host", "stop"), ("rsync", "")]
    # a second run: nothing to do
    code, events, stderr = football(fleet, "shrink", "vm2")
    assert code == 0 and "not smaller: nothing to do" in str(events), stderr


def test_the_new_filesystem_is_made_for_the_new_size_and_copied_with_all_metadata(fleet):
    code, _, stderr = football(fleet, "shrink", "vm2", "400m")
    assert code == 0, stderr
    assert_shrunk(fleet, 400 * MIB)
    argvs = [argv for host, argv in fleet.calls if host == "a1"]
    mkfs = [argv for argv in argvs if argv[0] == "mkfs.xfs"]
    assert mkfs == [("mkfs.xfs", "-q", "-f", "-s", "size=4096", "-d", "agcount=4",
                     fleet.hosts["a1"].path("/dev/vg0/vm2-tmp"))]
    mountpoint = fleet.hosts["a1"].mountpoint("vm2")
    rsyncs = {argv for argv in argvs if argv[0] == "rsync"}
    assert rsyncs == {("rsync", "-aHAXS", "-x", "--numeric-ids", "--modify-window=-1", "--delete",
                       "--inplace", f"--rsh=football-host rsync-source '{mountpoint}'",
                       "source::volume/", f"{mountpoint}-tmp/")}
    assert ("find", f"{mountpoint}-tmp", "-xdev", "-type", "f", "-links", "+1", "-printf",
            "%P\\0") in argvs                    # its hard links: none in the fake


def rsync_pass(source, copy):
    """One of the shrink's copy passes with the real rsync, between two
    directories."""
    subprocess.run([*shrink.RSYNC, f"{source}/", f"{copy}/"], check=True, capture_output=True)


def final_pass(source, copy):
    """The shrink's final pass: the names the copy holds hard-linked found
    first (before the window), the pass in place, those names once more not
    in place."""
    linked = subprocess.run(["find", str(copy), *shrink.LINKED], check=True,
                            capture_output=True, text=True).stdout
    rsync_pass(source, copy)
    if linked:
        subprocess.run([*shrink.RELINK, f"{source}/", f"{copy}/"], input=linked, text=True,
                       check=True, capture_output=True)


def test_the_final_copy_repairs_a_hard_link_the_container_broke_between_passes(tmp_path):
    """A file saved by rename breaks its hard link in the source; a pass in
    place wrote the new content through the copy's link into the other name
    too. The copy's hard-linked names go once more, not in place: both names
    as in the source."""
    source, copy = tmp_path / "source", tmp_path / "copy"
    source.mkdir()
    (source / "a").write_bytes(b"AAAA original content of a\n")
    os.link(source / "a", source / "b")
    (source / "gone").write_bytes(b"G")
    os.link(source / "gone", source / "gone2")
    rsync_pass(source, copy)                                # the first copy
    (source / "b.new").write_bytes(b"BBBB new content of b, saved by rename\n")
    os.rename(source / "b.new", source / "b")
    os.unlink(source / "gone")                              # (a listed name no longer there)
    os.unlink(source / "gone2")
    final_pass(source, copy)
    assert (copy / "a").read_bytes() == b"AAAA original content of a\n"
    assert (copy / "b").read_bytes() == b"BBBB new content of b, saved by rename\n"
    assert (copy / "a").stat().st_ino != (copy / "b").stat().st_ino
    assert not (copy / "gone").exists()
    (source / "c").write_bytes(b"C")                        # new links: kept
    os.link(source / "c", source / "d")
    final_pass(source, copy)
    assert (copy / "c").stat().st_ino == (copy / "d").stat().st_ino


def test_a_write_that_keeps_the_size_in_the_second_of_the_pass_before_is_copied(tmp_path):
    """rsync compares mtimes to the second unless told: a database page
    written in the second of the last warm pass (same size) was not in the
    final copy."""
    source, copy = tmp_path / "source", tmp_path / "copy"
    source.mkdir()
    page = source / "table"
    page.write_bytes(b"A" * 8192)
    second = (page.stat().st_mtime_ns // 10**9) * 10**9
    os.utime(page, ns=(second, second + 1000))
    rsync_pass(source, copy)
    with open(page, "r+b") as handle:
        handle.write(b"B" * 4096)
    os.utime(page, ns=(second, second + 2000))              # the same second, later
    final_pass(source, copy)
    assert (copy / "table").read_bytes() == b"B" * 4096 + b"A" * 4096


def test_a_fill_level_holds_for_the_space_the_new_filesystem_offers_beside_its_log(fleet):
    fleet.resources["vm2"].used = 600 * MIB
    code, _, stderr = football(fleet, "shrink", "vm2", "85")
    assert code == 0, stderr
    # 600 MiB / 85 % = 705.9 MiB, + the 64 MiB xfs log, up to whole 4 MiB extents
    assert_shrunk(fleet, 772 * MIB)


def test_quota_limits_are_copied_into_the_new_filesystem_when_the_volume_has_quotas(fleet):
    fleet.quota = "usrquota"
    fleet.create_resource("vm3", "a1", ["a2"], size=GIB)
    mountpoint = fleet.hosts["a1"].mountpoint("vm3")
    fleet.quota_limits[("a1", mountpoint)] = "1000 0 20480 0 0 0 0"
    code, _, stderr = football(fleet, "shrink", "vm3")
    assert code == 0, stderr
    assert_shrunk(fleet, res="vm3")
    restores = [argv for host, argv in fleet.calls if argv[:4] == (
        "xfs_quota", "-x", "-c", "restore -u")]
    assert restores and all(argv[-1] == f"{mountpoint}-tmp" for argv in restores)
    assert fleet.quota_limits[("a1", f"{mountpoint}-tmp")] == "1000 0 20480 0 0 0 0"
    assert not fleet.violations         # restored for the copy's device, not the original's


@pytest.mark.parametrize("quota, walks", [("prjquota", True), ("usrquota", False)])
def test_the_project_ids_rsync_leaves_behind_are_copied_before_the_downtime(fleet, quota,
                                                                            walks):
    """With project quotas the limits were restored into the copy, but
    rsync copies no file's project ID: every project was empty on the
    shrunk volume. `football-host projects` gives them, after each copy
    before the window (the final copy's new files inherit theirs)."""
    fleet.quota = quota
    fleet.create_resource("vm3", "a1", ["a2"], size=GIB)
    mountpoint = fleet.hosts["a1"].mountpoint("vm3")
    code, events, stderr = football(fleet, "shrink", "vm3")
    assert code == 0, stderr
    assert_shrunk(fleet, res="vm3")
    copies = [event["text"] for event in events if event["event"] == "message"
              and event["text"].startswith("  a1: ") and " copy (" in event["text"]]
    assert len(copies) >= 3, copies            # first, warm(s), final
    assert fleet.projects_copied == ([("a1", mountpoint, f"{mountpoint}-tmp")] *
                                     (len(copies) - 1) if walks else [])


def test_no_quota_commands_run_for_a_volume_without_quotas(fleet):
    code, _, stderr = football(fleet, "shrink", "vm2")
    assert code == 0, stderr
    assert not [argv for _, argv in fleet.calls if argv[0] == "xfs_quota"]


def test_a_size_not_smaller_than_now_is_nothing_to_do_and_changes_nothing(fleet):
    for args in (("vm1",), ("vm2", "2g"), ("vm2", "1g"), ("vm2", "5")):   # 5 %: 2000 MiB
        code, events, stderr = football(fleet, "shrink", *args)
        assert code == 0 and "nothing to do" in str(events), (args, stderr)
    assert fleet.changes() == []


@pytest.mark.parametrize("args, message", [
    (("vm2", "0"), "fill level 0 % is outside 1..99"),
    (("vm2", "100"), "fill level 100 % is outside 1..99"),
    (("vm2", "small"), "'small' is neither a fill level (1..99, percent) nor a size"),
    (("vm2", "100m"), "vm2 holds 100 MiB: it does not fit into 320 MiB"),
    (("vm9",), "unknown resource vm9"),
])
def test_bad_input_is_refused_with_191_and_changes_nothing(fleet, args, message):
    if args == ("vm2", "100m"):
        fleet.resources["vm2"].used = 310 * MIB
        message = "vm2 holds 310 MiB: it does not fit into 320 MiB"
    code, _, stderr = football(fleet, "shrink", *args)
    assert code == 191 and message in stderr, stderr
    assert fleet.changes() == []
    assert fleet.running("vm2") == ["a1"]


@pytest.mark.parametrize("other, args", [("vm2-tmp", ("shrink", "vm2")),
                                         ("vm2-preshrink", ("shrink", "vm2")),
                                         ("vm2-preshrink", ("shrink-cleanup", "vm2"))])
def test_a_shrink_refuses_where_its_copy_or_its_old_volume_would_take_another_resources_name(
        fleet, other, args):
    """`vm2-tmp` and `vm2-preshrink` are valid resource names: the shrink
    of vm2 took vm2-tmp's LV for its copy (mkfs, then `rsync --delete` into
    the mounted volume: vm2-tmp's mountpoint is its copy's), and
    shrink-cleanup, which a refusal advised, removed vm2-preshrink's."""
    fleet.create_resource(other, "a1", ["a2"], size=GIB)
    before = len(fleet.changes())
    code, _, stderr = football(fleet, *args)
    assert code == 191 and f"{other}: a resource of that name is in this MARS cluster; a " \
        "shrink of vm2 names its copy vm2-tmp" in stderr, stderr
    assert fleet.changes()[before:] == []
    assert fleet.running(other) == ["a1"] and fleet.lvs("a1")[other] == GIB


def test_a_smaller_copy_left_by_an_earlier_shrink_is_not_taken_for_a_larger_one(fleet):
    """A shrink to 400m prepared, its journal lost (which only costs time),
    then a shrink to 600m: the 400 MiB vm2-tmp was taken as it was, the fit
    checked for 600 MiB (a fuller volume's final copy would run out of
    space inside the downtime), and the summary said 600."""
    code, _, stderr = football(fleet, "shrink-prepare", "vm2", "400m")
    assert code == 0, stderr
    journals = Path(fleet.state_dir, "journal")
    for path in journals.glob("shrink-vm2*"):
        path.unlink()
    before = len(fleet.changes())
    code, _, stderr = football(fleet, "shrink", "vm2", "600m")
    assert code == 191 and "an earlier shrink of vm2 left a1: vm2-tmp of 400 MiB, smaller " \
        "than 600 MiB" in stderr and "football shrink-cleanup vm2" in stderr, stderr
    assert fleet.changes()[before:] == []
    code, _, stderr = football(fleet, "shrink-cleanup", "vm2")
    assert code == 0, stderr
    code, events, stderr = football(fleet, "shrink", "vm2", "600m")
    assert code == 0, stderr
    assert_shrunk(fleet, size=600 * MIB)


def test_a_replica_without_room_for_the_copy_refuses_before_anything_is_created(fleet):
    host = fleet.hosts["a2"]
    fleet.run("a2", ["football-host", "vg", host.path("/dev/vg0"), "create", "filler", "2600M"])
    code, _, stderr = football(fleet, "shrink", "vm2")
    assert code == 191, stderr
    assert "a2: volume group vg0 has 152 MiB free, needs 320 MiB" in stderr
    assert [argv[3] for _, argv in fleet.changes()] == ["create"]      # the filler alone


def test_a_copy_slower_than_max_rsync_downtime_fails_before_the_downtime_and_keeps_the_copy(
        fleet, monkeypatch):
    answer, clock = fleet.run, [0.0]
    monkeypatch.setattr("football.ops.shrink.time.monotonic", lambda: clock[0])

    def slow_rsync(host, argv, input=None):
        if argv[0] == "rsync":
            clock[0] += 30.0
        return answer(host, argv, input=input)

    monkeypatch.setattr(fleet, "run", slow_rsync)
    code, _, stderr = football(fleet, "--var", "max_rsync_downtime=10", "shrink", "vm2")
    assert code == 191, stderr
    assert "took 30.0 s, more than max_rsync_downtime 10 s" in stderr
    assert "nothing was stopped" in stderr
    assert fleet.running("vm2") == ["a1"]
    assert not [argv for _, argv in fleet.calls if argv[:2] == ("football-host", "ct")
                and argv[3] == "stop"]
    assert "vm2-tmp" in fleet.lvs("a1")                 # the copy stays for a re-run
    assert fleet.resources["vm2"].size == GIB
    code, _, stderr = football(fleet, "--var", "max_rsync_downtime=100", "shrink", "vm2")
    assert code == 0, stderr
    assert_shrunk(fleet)


def test_a_failing_create_resource_is_compensated_by_a_rebuild_from_the_copy_exit_198(fleet):
    fleet.fail_next["create-resource"] = 1
    code, events, stderr = football(fleet, "shrink", "vm2")
    assert code == 198, stderr
    assert "failed inside the downtime window" in stderr and "runs again on a1" in stderr
    assert "rebuilding vm2 stand-alone" in json.dumps(events)
    assert fleet.running("vm2") == ["a1"] and not fleet.violations
    assert fleet.resources["vm2"].size == 320 * MIB         # the copy holds every record
    code, _, stderr = football(fleet, "shrink", "vm2")
    assert code == 0, stderr
    assert_shrunk(fleet)


def test_a_failure_before_the_deletion_restarts_the_old_resource_exit_198(fleet):
    fleet.fail_next["secondary"] = 1
    code, _, stderr = football(fleet, "shrink", "vm2")
    assert code == 198, stderr
    assert fleet.running("vm2") == ["a1"] and not fleet.violations
    assert fleet.resources["vm2"].size == GIB
    code, _, stderr = football(fleet, "shrink", "vm2")
    assert code == 0, stderr
    assert_shrunk(fleet)


def test_a_shrink_given_up_after_its_window_failed_keeps_the_replicas_that_had_left(fleet):
    """a2 had left vm2 when `marsadm secondary` failed in the window: the
    198 did not say so, `shrink-cleanup` gave the shrink up with exit 0 and
    vm2 kept one replica (a later shrink then had no secondary at all)."""
    fleet.fail_next["secondary"] = 1
    code, events, stderr = football(fleet, "shrink", "vm2")
    assert code == 198, stderr
    warnings = [event["text"] for event in events if event["event"] == "warning"]
    assert "vm2: a2 left it in the window; it has no replica there now: football shrink vm2 " \
        "goes on (they join at the new size), football shrink-cleanup vm2 gives the shrink up " \
        "(they join again at its size)" in warnings, warnings
    assert fleet.members("vm2") == ["a1"]
    code, _, stderr = football(fleet, "shrink-cleanup", "vm2")
    assert code == 0, stderr
    assert sorted(fleet.members("vm2")) == ["a1", "a2"]
    assert fleet.resources["vm2"].size == GIB and fleet.running("vm2") == ["a1"]
    assert not {"vm2-tmp", "vm2-preshrink"} & (set(fleet.lvs("a1")) | set(fleet.lvs("a2")))


def test_a_rerun_after_a_crash_in_the_window_counts_the_downtime_from_its_first_stop(fleet):
    """A run that crashed after the deletion left vm2 down; the re-run
    counted the downtime from its own start (0.06 s after a crash minutes
    before), as if vm2 had been down that long only."""
    from football.journal import Journal
    code, _, stderr = football(fleet, "--debug-injection-point", "finish:deleted",
                               "shrink", "vm2")
    assert code == 1, stderr
    path = Journal(fleet.state_dir, "shrink", "vm2").path
    data = json.loads(path.read_text())
    data["decided"]["window_started"] -= 100        # the crash, 100 s ago
    path.write_text(json.dumps(data))
    code, events, stderr = football(fleet, "shrink", "vm2")
    assert code == 0, stderr
    assert summary_of(events)["downtime_seconds"] >= 100
    assert_shrunk(fleet)


def test_a_container_that_does_not_start_after_a_crash_past_the_creation_is_critical(fleet):
    """After a crash between the creation and the start, the re-run started
    vm2 outside any window: one that did not start exited 198 ("the same
    command goes on") with vm2 down. It is the window's failure: 199."""
    code, _, stderr = football(fleet, "--debug-injection-point", "finish:created",
                               "shrink", "vm2")
    assert code == 1, stderr
    assert fleet.running("vm2") == []
    fleet.broken.add(("a1", "vm2"))
    code, events, stderr = football(fleet, "shrink", "vm2")
    assert code == 199, stderr
    assert fleet.running("vm2") == []
    fleet.broken.discard(("a1", "vm2"))
    code, events, stderr = football(fleet, "shrink", "vm2")
    assert code == 0, stderr
    assert summary_of(events)["downtime_seconds"] is not None
    assert_shrunk(fleet)


@pytest.mark.parametrize("point", ["finish:deleted", "finish:created"])
def test_lv_cleanup_keeps_the_volumes_of_a_shrink_stopped_in_its_window(fleet, point):
    """lv-cleanup kept only the hosts a journal names as `targets` (a
    migrate's): after a shrink stopped past the deletion it removed the
    original LVs (the way back gone for good), after the re-creation a2's
    new one (the re-run then failed joining a disk that did not exist)."""
    code, _, stderr = football(fleet, "--debug-injection-point", point, "shrink", "vm2")
    assert code == 1, stderr
    lvs = {name: dict(fleet.lvs(name)) for name in ("a1", "a2")}
    code, events, stderr = football(fleet, "lv-cleanup", "vm2", "--do-it")
    assert code == 0, stderr
    assert {name: dict(fleet.lvs(name)) for name in ("a1", "a2")} == lvs
    said = " ".join(event.get("text", "") for event in events)
    assert "keeps LV vg0/vm2 (an unfinished shrink of vm2 needs it)" in said, said
    code, _, stderr = football(fleet, "shrink", "vm2")
    assert code == 0, stderr
    assert_shrunk(fleet)


def test_ctrl_c_inside_the_window_restarts_the_container_and_a_rerun_completes(
        fleet, monkeypatch):
    answer, pressed = fleet.run, []

    def ctrl_c_at_the_deletion(host, argv, input=None):
        if tuple(argv[:2]) == ("marsadm", "delete-resource") and not pressed:
            pressed.append(host)
            raise KeyboardInterrupt
        return answer(host, argv, input=input)

    monkeypatch.setattr(fleet, "run", ctrl_c_at_the_deletion)
    code, _, stderr = football(fleet, "shrink", "vm2")
    assert pressed == ["a1"] and code == 190, stderr
    assert "interrupted inside the downtime window; vm2 runs again on a1" in stderr
    assert fleet.running("vm2") == ["a1"] and not fleet.violations
    code, _, stderr = football(fleet, "shrink", "vm2")
    assert code == 0, stderr
    assert_shrunk(fleet)


def test_shrink_resumes_after_a_crash_at_every_injection_point(fleet):
    for number, name in enumerate(POINTS, start=1):
        code, events, stderr = football(fleet, "--debug-injection-point", str(number),
                                        "shrink", "vm2")
        assert code == 1 and points_of(events)[-1] == name, (number, stderr)
        assert not fleet.violations, (number, name, fleet.violations)
        code, _, stderr = football(fleet, "shrink", "vm2")
        assert code == 0, f"re-run after point {number} ({name}): {stderr}"
        try:
            assert_shrunk(fleet)
        except AssertionError as error:
            raise AssertionError(f"after point {number} ({name}): {error}") from None
        fresh_resource(fleet, "vm2")     # grow it again for the next point


def test_a_shrink_job_stopped_at_every_injection_point_is_finished_by_another_controller(
        fleet, tmp_path, monkeypatch):
    """As the sweep above, but the re-run is the job's, taken over by a
    worker of another controller (its own state dir): it goes on from the
    journal kept with the job, shrinks once and leaves nothing behind."""
    queue = SharedQueue(tmp_path, monkeypatch)
    for number, name in enumerate(POINTS, start=1):
        fresh_resource(fleet, "vm2")
        code, _, stderr = queue.taken_over(fleet, ["shrink", "vm2"], number)
        assert code == 0, f"taken over after point {number} ({name}): {stderr}"
        try:
            assert_shrunk(fleet)
        except AssertionError as error:
            raise AssertionError(f"after point {number} ({name}): {error}") from None
        assert queue.unfinished_here(fleet) == [], number
    queue.close()


def test_a_shrink_slot_is_waited_for_while_another_shrink_copies_on_the_primary(fleet):
    host = fleet.hosts["a1"]
    fleet.run("a1", ["football-host", "vg", host.path("/dev/vg0"), "create", "vm7-tmp", "400M"])
    fleet.mounts["a1"][host.mountpoint("vm7") + "-tmp"] = host.path("/dev/vg0/vm7-tmp")
    code, events, stderr = football(fleet, "--var", "sync_timeout=0.2", "shrink", "vm2")
    assert code == 191, stderr       # nothing changed: a bad time, not a failure
    assert "no shrink slot on a1 came free within sync_timeout 0.2 s (limit_shrinks 1; " \
        "taken: vm7 running); this run changed nothing" in stderr, stderr
    assert "  a1: waiting for a shrink slot on a1 (limit_shrinks 1; taken: vm7 running)" in \
        [event.get("text") for event in events], events
    assert fleet.resources["vm2"].size == GIB and fleet.running("vm2") == ["a1"]
    code, _, stderr = football(fleet, "--var", "limit_shrinks=2", "shrink", "vm2")
    assert code == 0, stderr


def test_a_shrink_on_another_primary_whose_copy_is_here_too_takes_no_slot_here(fleet):
    """vm3's shrink (primary a2) has its copy vm3-tmp on a1 too, a1 holding
    a replica: it took a1's shrink slot, and vm2's shrink (primary a1) was
    refused, though a shrink is limited per primary."""
    fleet.create_resource("vm3", "a2", ["a1"], size=GIB)
    code, _, stderr = football(fleet, "shrink-prepare", "vm3")
    assert code == 0, stderr
    assert "vm3-tmp" in fleet.lvs("a1")
    code, _, stderr = football(fleet, "--var", "sync_timeout=0.2", "shrink", "vm2")
    assert code == 0, stderr
    assert football(fleet, "shrink-cleanup", "vm3")[0] == 0       # (given up: its intent goes)
    assert_shrunk(fleet)


def test_shrink_cleanup_gives_up_a_prepared_shrink(fleet):
    code, _, stderr = football(fleet, "shrink-prepare", "vm2")
    assert code == 0, stderr
    assert "vm2-tmp" in fleet.lvs("a1") and "vm2-tmp" in fleet.lvs("a2")
    code, _, stderr = football(fleet, "shrink-cleanup", "vm2")
    assert code == 0, stderr
    for name in ("a1", "a2"):
        assert "vm2-tmp" not in fleet.lvs(name)
    assert fleet.resources["vm2"].size == GIB
    assert_placed(fleet, "a1", ["a2"], "vm2")


@pytest.mark.parametrize("point", ["finish:stopped", "finish:copied", "finish:unmounted"])
def test_shrink_cleanup_gives_up_a_shrink_stopped_in_its_window_and_starts_the_container(
        fleet, point):
    """A run stopped in its window before the resource was deleted: giving
    the shrink up ended with exit 0, the journal closed and the container
    stopped (unmounted) — `status` no longer showed the window."""
    code, _, stderr = football(fleet, "--debug-injection-point", point, "shrink", "vm2")
    assert code == 1 and fleet.running("vm2") == [], stderr
    code, events, stderr = football(fleet, "shrink-cleanup", "vm2")
    assert code == 0, stderr
    assert fleet.running("vm2") == ["a1"] and not fleet.violations
    assert "a1: starting vm2 again (a run before stopped it)" in str(events)
    assert fleet.resources["vm2"].size == GIB
    assert all("vm2-tmp" not in fleet.lvs(name) for name in ("a1", "a2"))
    assert_placed(fleet, "a1", ["a2"], "vm2")
    assert fleet.written["vm2"] == fleet.resources["vm2"].records[-1]


def creations(fleet):
    return [argv for host, argv in fleet.calls if argv[:2] == ("marsadm", "create-resource")]


def test_a_shrunk_volume_larger_than_asked_by_its_extents_is_not_given_up_by_cleanup(
        fleet, monkeypatch):
    """Extents of 8 MiB make 324m a volume of 328 MiB: the resource made
    again was taken for the old one — shrink-cleanup gave the shrink up and
    removed -preshrink while a2 still synced."""
    monkeypatch.setattr("football.hostside.filevg.EXTENT", 8 << 20)
    code, _, stderr = football(fleet, "--debug-injection-point", "finish:joined", "shrink",
                               "vm2", "324m")
    assert code == 1, stderr
    code, events, stderr = football(fleet, "shrink-cleanup", "vm2")
    assert code == 0, stderr
    assert "giving up" not in str(events)
    assert_shrunk(fleet, 328 * MIB)
    assert len(creations(fleet)) == 1


@pytest.mark.parametrize("point", ["finish:created", "finish:started", "finish:joined"])
def test_a_rerun_after_the_creation_with_a_volume_larger_than_asked_shrinks_once(
        fleet, monkeypatch, point):
    """... and a re-run shrank it once more (a second downtime)."""
    monkeypatch.setattr("football.hostside.filevg.EXTENT", 8 << 20)
    code, _, stderr = football(fleet, "--debug-injection-point", point, "shrink", "vm2", "324m")
    assert code == 1, stderr
    code, _, stderr = football(fleet, "shrink", "vm2", "324m")
    assert code == 0, stderr
    assert_shrunk(fleet, 328 * MIB)
    assert len(creations(fleet)) == 1


@pytest.mark.parametrize("point, refused", [("finish:created", 199),      # still down
                                             ("finish:started", 191)])
def test_shrink_cleanup_before_the_secondaries_joined_refuses_and_names_the_way_on(
        fleet, point, refused):
    """It waited sync_timeout for replicas that never came, then 199."""
    code, _, stderr = football(fleet, "--debug-injection-point", point, "shrink", "vm2")
    assert code == 1, stderr
    code, _, stderr = football(fleet, "shrink-cleanup", "vm2")
    assert code == refused, stderr
    assert "a2 has not joined the shrunk vm2 yet" in stderr
    assert "football shrink-finish vm2 goes on from there" in " ".join(stderr.split())
    code, _, stderr = football(fleet, "shrink-finish", "vm2")
    assert code == 0, stderr
    code, _, stderr = football(fleet, "shrink-cleanup", "vm2")
    assert code == 0, stderr
    assert_shrunk(fleet)


def test_a_shrink_past_its_window_whose_journal_is_lost_is_not_nothing_to_do(fleet):
    """Its journal gone (a state dir lost) after the window, before a2
    joined again: a re-run said "not smaller: nothing to do" (exit 0),
    -preshrink stayed everywhere and a2 never was a replica again."""
    code, _, stderr = football(fleet, "--debug-injection-point", "finish:started", "shrink",
                               "vm2")
    assert code == 1, stderr
    for path in Path(fleet.state_dir).rglob("shrink-vm2*"):
        path.unlink()
    code, _, stderr = football(fleet, "shrink", "vm2")
    assert code == 191, stderr
    text = " ".join(stderr.split())
    assert "a2 holds vm2-preshrink, the volume of an earlier shrink of vm2, and is no replica " \
        "of it now" in text
    assert "football migrate vm2 a1 a2 makes a replica there again, then football " \
        "shrink-cleanup vm2 removes vm2-preshrink; nothing changed" in text
    for command in (["migrate", "vm2", "a1", "a2"], ["shrink-cleanup", "vm2"]):
        code, _, stderr = football(fleet, *command)
        assert code == 0, (command, stderr)
    assert_shrunk(fleet)


def test_the_phases_alone_shrink_in_turn(fleet):
    for command in ("shrink-prepare", "shrink-finish", "shrink-cleanup"):
        code, _, stderr = football(fleet, command, "vm2")
        assert code == 0, (command, stderr)
    assert_shrunk(fleet)


def test_a_rerun_after_the_window_reports_the_downtime_of_the_run_that_had_it(fleet):
    code, events, stderr = football(fleet, "--debug-injection-point",
                                    str(POINTS.index("finish:started") + 1), "shrink", "vm2")
    assert code == 1, stderr
    (window,) = [event for event in events if event["event"] == "downtime-end"]
    code, events, stderr = football(fleet, "shrink", "vm2")
    assert code == 0, stderr
    summary = next(event for event in events if event["event"] == "summary")
    assert summary["downtime_seconds"] == window["downtime_seconds"] > 0, summary
    assert_shrunk(fleet)


def test_giving_up_a_prepared_shrink_leaves_a_container_its_operator_stopped_stopped(fleet):
    code, _, stderr = football(fleet, "shrink-prepare", "vm2")
    assert code == 0, stderr
    host = fleet.hosts["a1"]
    assert fleet.run("a1", ["football-host", "ct", host.path("/var/lib/lxc"), "stop", "vm2"]).ok
    code, _, stderr = football(fleet, "shrink-cleanup", "vm2")
    assert code == 0, stderr
    assert fleet.running("vm2") == []


def test_a_shrink_with_nothing_to_do_is_not_failed_by_a_cluster_mate_that_is_down(fleet):
    fleet.run("a1", ["marsadm", "merge-cluster", "b1", fleet.hosts["b1"].address])
    fleet.switch_off("b1")
    code, events, stderr = football(fleet, "shrink", "vm1", "2g")
    assert code == 0 and "nothing to do" in str(events), stderr

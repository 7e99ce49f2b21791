"""`football expand` on the fake fleet (tests/helpers/fakefleet.py): the
LVs of every replica, the MARS resource and the filesystem grow while the
container runs; bad input and a lack of room are refused before anything
changes; a crash at every injection point, then a re-run, ends grown.
The lab's sample: tests/root/test_expand.py."""

import json
from pathlib import Path

import pytest

from tests.helpers.fakefleet import assert_placed, failing, fake_fleet, football, points_of

fleet = fake_fleet

MIB, GIB = 1 << 20, 1 << 30
POINTS = ["grow:lv-grown", "grow:lv-grown", "resize:resized", "growfs:grown", "wait:synced"]


def stopped_anywhere(fleet):
    return [(host, argv) for host, argv in fleet.calls
            if argv[:2] == ("football-host", "ct") and argv[3] == "stop"]


def assert_grown(fleet, size, res="vm1"):
    """`res` is `size` bytes everywhere: LVs, MARS, filesystem; it ran all along."""
    resource = fleet.resources[res]
    assert {name: fleet.lvs(name)[res] for name in resource.replicas} == \
        {name: size for name in resource.replicas}
    assert resource.size == size and resource.fs_size == size
    assert all(replica.sync_rest == 0 for replica in resource.replicas.values())
    assert not stopped_anywhere(fleet), "expand stopped the container"
    assert_placed(fleet, "a1", ["a2"])


def test_expand_to_a_size_grows_every_lv_mars_and_the_filesystem_while_it_runs(fleet):
    code, events, stderr = football(fleet, "expand", "vm1", "1g")
    assert code == 0, stderr
    assert_grown(fleet, GIB)
    assert points_of(events) == POINTS
    summary = next(event for event in events if event["event"] == "summary")
    assert (summary["old_size"], summary["new_size"], summary["grown_bytes"]) == \
        (320 * MIB, GIB, GIB - 320 * MIB)
    assert summary["synced_bytes"] == GIB - 320 * MIB        # the tail, to the one secondary
    assert summary["synced_bytes_measured"] is True
    assert summary["copied_bytes"] == GIB - 320 * MIB
    assert "until a2 holds the grown tail" in str(events)
    # a second run: nothing to do
    code, events, stderr = football(fleet, "expand", "vm1", "1g")
    assert code == 0 and "nothing to do" in str(events), stderr


def test_on_kernel_mars_the_grown_disks_reach_the_primary_before_the_resize_counts(fleet):
    """Kernel MARS's resize grows to the disk sizes the members published
    (their actsize), which each does on a pass of its own: right after
    lvresize the resize ended at the old size, exit 0, and xfs_growfs had
    nothing to grow into — the expand said done. `wait-cluster` first, the
    size looked at after."""
    fleet.kernel_marsadm = True
    code, events, stderr = football(fleet, "expand", "vm1", "1g")
    assert code == 0, stderr
    assert_grown(fleet, GIB)
    verbs = [argv[2] for host, argv in fleet.calls
             if host == "a1" and argv[0] == "marsadm" and argv[2] in ("wait-cluster", "resize")]
    assert verbs[-2:] == ["wait-cluster", "resize"]


def test_a_resize_that_does_not_grow_mars_is_an_error_that_says_so(fleet):
    """Members that never publish their grown disks: the resize is tried
    again until `command_timeout`, then the run stops naming it (not done,
    the filesystem not grown)."""
    fleet.kernel_marsadm = True
    fleet.publishes = False
    code, events, stderr = football(fleet, "--var", "command_timeout=0.2", "expand", "vm1", "1g")
    assert code == 198, stderr
    assert "waiting for MARS to grow vm1 to 1,024 MiB (`marsadm resize` on a1 did not grow " \
        "it that far: the grown disks of its members have not reached it)" in " ".join(
            stderr.split())
    assert "stopped in its resize phase" in " ".join(stderr.split())
    assert "a1: vm1 is still 320 MiB: the grown disks of its members have not reached it yet" \
        in str(events)
    assert fleet.resources["vm1"].size == 320 * MIB
    assert not [argv for host, argv in fleet.calls if argv[0] == "xfs_growfs"]
    fleet.publishes = True              # the same command goes on
    code, _, stderr = football(fleet, "expand", "vm1", "1g")
    assert code == 0, stderr
    assert_grown(fleet, GIB)


def test_a_size_may_have_a_fraction_as_lvcreate_takes_it(fleet):
    code, _, stderr = football(fleet, "expand", "vm1", "1.5g")
    assert code == 0, stderr
    assert_grown(fleet, 1536 * MIB)
    code, _, stderr = football(fleet, "expand", "vm1", "1.501g")     # up to whole extents
    assert code == 0, stderr
    assert_grown(fleet, 1540 * MIB)


def test_a_fill_level_is_the_percent_used_afterwards_rounded_up_to_whole_extents(fleet):
    fleet.resources["vm1"].used = 301 * MIB
    code, _, stderr = football(fleet, "extend", "vm1", "30")       # the alias
    assert code == 0, stderr
    assert_grown(fleet, 1004 * MIB)      # 301 MiB / 30 % = 1003.3 MiB -> 251 extents of 4 MiB


def test_a_size_not_larger_than_now_is_nothing_to_do_and_changes_nothing(fleet):
    for size in ("320m", "100m", "90"):         # 90 %: under min_space, 320 MiB
        code, events, stderr = football(fleet, "expand", "vm1", size)
        assert code == 0 and "nothing to do" in str(events), (size, stderr)
    assert fleet.changes() == []


def test_a_run_stopped_after_its_resize_without_its_journal_still_grows_the_filesystem(
        fleet, tmp_path):
    """MARS grown, the filesystem not, and the journal not on this
    controller (another's run, or set aside): 'nothing to do', exit 0,
    the filesystem left at its old size for good."""
    code, events, _ = football(fleet, "--debug-injection-point", "resize:resized", "expand",
                               "vm1", "1g")
    assert code == 1 and points_of(events)[-1] == "resize:resized"
    assert (fleet.resources["vm1"].size, fleet.resources["vm1"].fs_size) == (GIB, 320 * MIB)
    fleet.state_dir = str(tmp_path / "another-controller")
    fleet.age_locks("run-vm1", 3600)
    code, events, stderr = football(fleet, "expand", "vm1", "1g")
    assert code == 0, stderr
    assert "MARS has 1,024 MiB already, its filesystem 320 MiB: growing the filesystem" in \
        str(events)
    assert_grown(fleet, GIB)


def test_a_smaller_size_asked_where_the_filesystem_was_not_grown_grows_it_to_what_mars_has(
        fleet, tmp_path):
    """Asked for less than MARS has: the run went on with the smaller size
    as its own (a negative growth in its summary, a wait for a 'grown
    tail' that nothing grew)."""
    code, events, _ = football(fleet, "--debug-injection-point", "resize:resized", "expand",
                               "vm1", "1g")
    assert code == 1
    fleet.state_dir = str(tmp_path / "another-controller")
    assert football(fleet, "unlock", "run-vm1", "a1", "a2")[0] == 0     # another command
    code, events, stderr = football(fleet, "expand", "vm1", "500m")
    assert code == 0, stderr
    summary = next(event for event in events if event["event"] == "summary")
    assert (summary["new_size"], summary["grown_bytes"]) == (GIB, 0), summary
    assert_grown(fleet, GIB)


@pytest.mark.parametrize("args, message", [
    (("vm1", "0"), "fill level 0 % is outside 1..99"),
    (("vm1", "100"), "fill level 100 % is outside 1..99"),
    (("vm1", "lots"), "'lots' is neither a fill level (1..99, percent) nor a size"),
    (("vm1", "2.5"), "'2.5' is neither a fill level (1..99, percent) nor a size"),
    (("vm9", "1g"), "vm9"),
    (("vm1;x", "1g"), "invalid"),
])
def test_bad_input_is_refused_with_191_and_changes_nothing(fleet, args, message):
    code, _, stderr = football(fleet, "expand", *args)
    assert code == 191 and message in stderr, stderr
    assert fleet.changes() == []


def test_a_replica_without_room_in_its_vg_refuses_before_anything_grows(fleet):
    host = fleet.hosts["a2"]
    fleet.run("a2", ["football-host", "vg", host.path("/dev/vg0"), "create", "filler", "3600M"])
    code, _, stderr = football(fleet, "expand", "vm1", "1g")
    assert code == 191, stderr
    assert "a2: volume group vg0 has 176 MiB free, needs 704 MiB" in stderr
    assert [argv[3] for _, argv in fleet.changes()] == ["create"]      # the filler alone
    assert fleet.resources["vm1"].size == 320 * MIB


def test_a_member_whose_marsd_does_not_answer_refuses_before_anything_grows(fleet):
    fleet.down.add("a2")
    code, _, stderr = football(fleet, "expand", "vm1", "1g")
    assert code == 191 and "a2" in stderr, stderr
    assert fleet.changes() == []


def test_a_member_not_in_the_inventory_refuses_before_anything_grows_naming_it(fleet):
    """a2 was taken out of the inventory but still holds a replica of vm1:
    expand left it out, grew a1's LV alone, and then `marsadm resize` could
    not grow past a2's old disk (waited command_timeout, exit 198, the same
    on every re-run). Refused in discovery: 191, nothing changed, naming a2
    and the two ways on."""
    path = Path(fleet.inventory_path)
    listed = path.read_text()
    inventory = json.loads(listed)
    del inventory["hosts"]["a2"]
    inventory["clusters"]["cluster1"].remove("a2")
    path.write_text(json.dumps(inventory))
    # (before: a 198 once the resize waited command_timeout)
    code, _, stderr = football(fleet, "--var", "command_timeout=1", "expand", "vm1", "1g")
    assert code == 191, stderr
    said = " ".join(stderr.split())
    assert "a2 holds a replica of vm1 but is not in the inventory" in said
    assert "add it to the inventory" in said
    assert "on a2: `marsadm down vm1`, then `marsadm leave-resource vm1`" in said
    assert "nothing changed" in said
    assert fleet.changes() == []
    assert fleet.lvs("a1")["vm1"] == 320 * MIB and fleet.resources["vm1"].size == 320 * MIB
    code, events, stderr = football(fleet, "expand", "vm1", "320m")     # it has that
    assert code == 0 and "nothing to do" in str(events), stderr
    path.write_text(listed)         # back in the inventory: it grows
    code, _, stderr = football(fleet, "expand", "vm1", "1g")
    assert code == 0, stderr
    assert_grown(fleet, GIB)


def test_expand_resumes_after_a_crash_at_every_injection_point(fleet):
    size = 320 * MIB
    for number, name in enumerate(POINTS, start=1):
        size += 100 * MIB
        code, events, stderr = football(fleet, "--debug-injection-point", str(number),
                                        "expand", "vm1", f"{size >> 20}m")
        assert code == 1 and points_of(events)[-1] == name, (number, stderr)
        assert not stopped_anywhere(fleet) and not fleet.violations
        code, _, stderr = football(fleet, "expand", "vm1", f"{size >> 20}m")
        assert code == 0, f"re-run after point {number} ({name}): {stderr}"
        assert_grown(fleet, size)


def test_a_failed_step_says_what_stays_and_the_same_command_goes_on(fleet, monkeypatch):
    """xfs_growfs refused: the LVs and MARS grew already. The error says the
    run stopped there, what stays and how to go on (it said only the
    command's failure)."""
    undo = failing(fleet, monkeypatch, lambda host, argv: argv[0] == "xfs_growfs", 1,
                   "xfs_growfs: XFS_IOC_FSGROWFSDATA xfsctl failed\n")
    code, events, stderr = football(fleet, "expand", "vm1", "1g")
    assert code == 198, stderr
    assert "`xfs_growfs " in stderr and "exited 1" in stderr
    assert "the expand of vm1 stopped in its growfs phase (steps done: grow, resize); what " \
        "it did stays, and the same command goes on from there (`football status vm1` " \
        "shows it)" in " ".join(stderr.split())
    failed = [event for event in events if event["event"] == "failed"]
    assert "stopped in its growfs phase" in failed[-1]["text"]      # --json says it too
    undo()
    code, _, stderr = football(fleet, "expand", "vm1", "1g")
    assert code == 0, stderr
    assert_grown(fleet, GIB)

"""A dry run lists the host commands the run would issue, and a real run
then issues exactly those: on the fake fleet, each operation runs once with
`--dry-run` (nothing changes) and once for real, and the `would-run`
events equal the changing commands the fleet saw, in order — locks and
intents aside, which the dry run does not list."""

from pathlib import Path

import pytest

from football.dryrun import is_read
from tests.helpers.fakefleet import fake_fleet, football  # noqa: F401

GIB = 1 << 30


@pytest.fixture
def fleet(fake_fleet):  # noqa: F811
    return fake_fleet


def planned(events, waits=False):
    """The `would-run` commands; the waits (`marsadm wait-*`) only when asked:
    the fleet counts them as reads."""
    return [(event["host"], tuple(event["argv"])) for event in events
            if event["event"] == "would-run" and
            (waits or not any(arg.startswith("wait-") for arg in event["argv"]))]


def changes_but_locks(fleet, since=0, locks=False):
    """The changing commands since `since`; the `football-host lock` ones only
    when `locks` (lock and unlock: they are the operation)."""
    return [(host, argv) for host, argv in fleet.changes()[since:]
            if locks or argv[:2] != ("football-host", "lock")]


def assert_dry_run_is_the_real_run(fleet, *args, locks=False, in_parallel=False):
    """`football --dry-run <args>` changes nothing and lists, also in its
    summary (an admin operation's: its result), the commands `football
    <args>` then issues (`in_parallel`: in any order); returns them."""
    before = len(fleet.changes())
    code, events, stderr = football(fleet, "--dry-run", *args)
    assert code == 0, stderr
    assert len(fleet.changes()) == before, "the dry run changed a host"
    assert not list((Path(fleet.state_dir) / "journal").glob("*.json")), \
        "a dry run decided something for the next real run"
    listed = planned(events)
    summary = next(event for event in events if event["event"] in ("summary", "result"))
    assert [(item["host"], tuple(item["argv"])) for item in summary["would_run"]] == \
        planned(events, waits=True)
    code, _, stderr = football(fleet, *args)
    assert code == 0, stderr
    issued = changes_but_locks(fleet, before, locks)
    if in_parallel:
        listed, issued = sorted(listed), sorted(issued)
    assert listed == issued, "\n".join(
        ["listed:", *map(str, listed), "issued:", *map(str, issued)])
    return listed


def test_a_migrates_dry_run_lists_the_commands_the_real_migrate_issues(fleet):
    listed = assert_dry_run_is_the_real_run(fleet, "migrate", "vm1", "cluster2")
    verbs = [next(arg for arg in argv[1:] if not arg.startswith("-")) for _, argv in listed
             if argv[0] == "marsadm"]
    for verb in ("merge-cluster", "join-resource", "primary", "leave-resource",
                 "split-cluster"):
        assert verb in verbs, verbs


def test_a_handovers_dry_run_lists_the_commands_the_real_handover_issues(fleet):
    listed = assert_dry_run_is_the_real_run(fleet, "handover", "vm1", "a2")
    assert ("a1", ("football-host", "ct", fleet.hosts["a1"].path("/var/lib/lxc"), "stop",
                   "vm1")) in listed


def test_an_expands_dry_run_lists_the_commands_the_real_expand_issues(fleet):
    listed = assert_dry_run_is_the_real_run(fleet, "expand", "vm1", "640m")
    assert [host for host, argv in listed if "resize" in argv] == ["a1", "a2", "a1"]


def test_a_shrinks_dry_run_lists_the_commands_the_real_shrink_issues(fleet):
    fleet.create_resource("vm2", "a1", ["a2"], size=GIB)
    listed = assert_dry_run_is_the_real_run(fleet, "shrink", "vm2")
    assert ("a1", ("marsadm", "delete-resource", "--force", "vm2")) in listed


@pytest.mark.parametrize("argv, read", [
    (["marsadm", "view-sync-rest", "vm1"], True),
    (["marsadm", "--timeout=5", "view", "all"], True),
    (["marsadm", "lowlevel-ls-host-ips"], True),
    (["marsadm", "primary", "vm1"], False),
    (["marsadm", "--timeout=5", "wait-resource", "vm1", "is-device-on"], False),
    (["football-host", "vg", "/dev/vg0", "info"], True),
    (["football-host", "vg", "/dev/vg0", "create", "vm1", "1"], False),
    (["football-host", "ct", "/var/lib/lxc", "state", "vm1"], True),
    (["football-host", "ct", "/var/lib/lxc", "start", "vm1"], False),
    (["systemctl", "is-active", "mars-vm1.service"], True),
    (["systemctl", "start", "mars-vm1.service"], False),
    (["xfs_quota", "-x", "-c", "dump -u -f /tmp/q", "/mnt"], True),
    (["xfs_quota", "-x", "-c", "restore -f /tmp/q", "/mnt"], False),
    (["findmnt", "--mountpoint", "/mnt"], True),
    (["umount", "/mnt"], False),
    (["lvcreate", "-n", "vm1", "vg0"], False),
])
def test_only_commands_that_read_run_for_real_in_a_dry_run(argv, read):
    assert is_read(argv) is read


@pytest.mark.parametrize("args", [("migrate+shrink", "vm2", "b1", "b2"),
                                  ("migrate+shrink+back", "vm2", "b1")])
def test_a_combined_dry_run_lists_its_first_stage_as_the_real_run_then_issues_it(fleet, args):
    fleet.create_resource("vm2", "a1", ["a2"], size=GIB)
    before = len(fleet.changes())
    code, events, stderr = football(fleet, "--dry-run", *args)
    assert code == 0, stderr
    assert len(fleet.changes()) == before
    listed = planned(events)
    code, _, stderr = football(fleet, *args)
    assert code == 0, stderr
    issued = changes_but_locks(fleet, before)
    assert listed == issued[:len(listed)], "\n".join(
        ["listed:", *map(str, listed), "issued:", *map(str, issued)])
    # the next command is the shrink's: its copy LV on the new primary
    host, argv = issued[len(listed)]
    assert host == "b1" and argv[3:5] == ("create", "vm2-tmp"), issued[len(listed)]

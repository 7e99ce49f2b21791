"""Shrink in the lab, with the demo workload writing: real xfs on real
files of the lab's volume groups, real rsync, real MARS delete/create, a
real LXC container. One lab for the file (vm1: 640 MiB, primary a1,
replica a2); the tests run in file order on it.

The sweep over every injection point runs on the fake fleet
(tests/unit/test_shrink.py); here: one whole shrink, then a grown vm1
shrunk again while crashing inside the copy, inside the window (after the
deletion) and after the re-creation."""

import json

import pytest

from tests.helpers.dataplane import tree_metadata, write_varied_tree
from tests.helpers.marshosts import wait_until
from tests.helpers.lab import (events, football, module_lab, sequence_problems,
                               wait_for_records)

pytestmark = [pytest.mark.root, pytest.mark.integration]

MIB = 1 << 20

lab = module_lab("shrink", demo_size="640M")


def fb(lab, *args, code=0):
    result = football(lab.env, "--json", *args)
    assert result.returncode == code, \
        f"football {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}"
    return result


def lvs(lab, host):
    return json.loads(lab.exec(host, "football-host", "vg", str(lab.dir / host / "dev/vg0"),
                               "info").stdout)["lvs"]


def data_dir(lab, host="a1"):
    return lab.dir / host / "var/lib/lxc/vm1/rootfs/shrinkdata"


def assert_shrunk_to(lab, size, primary="a1", secondary="a2", state="RUNNING"):
    """vm1 is `size` bytes in MARS and on both LVs (and nowhere else), no
    -tmp/-preshrink left, primary and its container in `state` on
    `primary`, `secondary` UpToDate."""
    for host in ("a1", "a2", "b1", "b2"):
        volumes = lvs(lab, host)
        if host in (primary, secondary):
            assert volumes["vm1"] == size, (host, volumes)
        else:
            assert "vm1" not in volumes, (host, volumes)
        assert not {"vm1-tmp", "vm1-preshrink"} & set(volumes), (host, volumes)
    assert lab.exec(primary, "marsadm", "view-resource-size", "vm1").stdout.strip() == str(size)
    status = lab.status()
    assert status[primary]["resources"]["vm1"]["role"] == "Primary"
    assert status[primary]["containers"]["vm1"] == state
    # the workload writes on: the secondary may be a moment behind (OutDated)
    wait_until(lambda: lab.status()[secondary]["resources"]["vm1"]["diskstate"]
               .startswith("UpToDate"), interval=0.3, what=f"{secondary} UpToDate",
               show=lambda: lab.status()[secondary]["resources"]["vm1"])


@pytest.fixture(scope="module")
def tree(lab):
    """200 entries with owners, hard links, a sparse file, xattrs and ACLs
    in vm1's volume, written while the workload runs."""
    write_varied_tree(data_dir(lab))
    return tree_metadata(data_dir(lab))


def test_shrink_copies_every_file_and_its_metadata_and_the_workload_goes_on(lab, tree):
    records = len(wait_for_records(lab, "a1", 3))
    shrunk = fb(lab, "--yes", "shrink", "vm1")
    summary = events(shrunk, "summary")[0]
    assert (summary["old_size"], summary["new_size"]) == (640 * MIB, 320 * MIB), summary
    print(f"shrink 640 -> 320 MiB: downtime {summary['downtime_seconds']} s, final copy "
          f"{summary['final_copy_seconds']} s, phases {summary['phases']}")
    assert_shrunk_to(lab, 320 * MIB)
    assert tree_metadata(data_dir(lab)) == tree
    after = wait_for_records(lab, "a1", records + 3)
    assert not sequence_problems(after), sequence_problems(after)
    # the new filesystem is the small one
    mountpoint = str(lab.dir / "a1/var/lib/lxc/vm1")
    size = int(lab.exec("a1", "df", "--block-size=1", "--output=size",
                        mountpoint).stdout.split()[-1])
    assert 200 * MIB < size <= 320 * MIB - (64 * MIB), size     # xfs keeps a 64 MiB log


def test_a_shrink_crashed_in_the_copy_in_the_window_and_after_the_creation_resumes(lab, tree):
    fb(lab, "--yes", "expand", "vm1", "640m")
    records = len(wait_for_records(lab, "a1", 3))
    for point in ("prepare:copied", "finish:deleted", "finish:created"):
        crashed = fb(lab, "--yes", "--debug-injection-point", point, "shrink", "vm1", code=1)
        assert f"({point})" in crashed.stderr, crashed.stderr
    fb(lab, "--yes", "shrink", "vm1")
    assert_shrunk_to(lab, 320 * MIB)
    assert tree_metadata(data_dir(lab)) == tree
    after = wait_for_records(lab, "a1", records + 3)
    assert not sequence_problems(after), sequence_problems(after)


@pytest.mark.parametrize("operation", ["migrate+shrink", "migrate+shrink+back"])
def test_the_combined_operations_end_shrunk_where_they_should_with_every_file(
        lab, tree, operation):
    """migrate+shrink to the other cluster; migrate+shrink+back by way of a
    host of the other cluster: every entry identical, the workload's
    records unbroken. (Each grows vm1 first; each works from where vm1 is.)"""
    roles = {host: entry["resources"]["vm1"]["role"] for host, entry in lab.status().items()
             if "vm1" in entry["resources"]}
    now = next(host for host, role in roles.items() if role == "Primary")
    secondary = next(host for host in roles if host != now)
    other = "cluster2" if now.startswith("a") else "cluster1"
    fb(lab, "--yes", "expand", "vm1", "640m")
    records = len(lab.records(now))
    if operation == "migrate+shrink":
        done = fb(lab, "--yes", operation, "vm1", other)
        primary, secondary = {"cluster1": ("a1", "a2"), "cluster2": ("b1", "b2")}[other]
    else:
        done = fb(lab, "--yes", operation, "vm1", {"cluster1": "a1", "cluster2": "b1"}[other])
        primary = now
    summary = events(done, "summary")[0]
    print(f"{operation}: downtime {summary['downtime_seconds']} s in "
          f"{len(summary['stages'])} stages, phases {summary['phases']}")
    assert_shrunk_to(lab, 320 * MIB, primary, secondary)
    assert tree_metadata(data_dir(lab, primary)) == tree
    after = wait_for_records(lab, primary, records + 3)
    assert not sequence_problems(after), sequence_problems(after)


def test_a_stopped_container_is_shrunk_stopped_with_every_file(lab, tree):
    """Its operator stopped vm1: the shrink (no `--yes`: nothing to ask)
    re-creates it on the small volume, mounted, the container still
    stopped, every entry identical and no record written meanwhile;
    `repair-vm` starts it and the workload goes on."""
    roles = {host: entry["resources"]["vm1"]["role"] for host, entry in lab.status().items()
             if "vm1" in entry["resources"]}
    primary = next(host for host, role in roles.items() if role == "Primary")
    secondary = next(host for host in roles if host != primary)
    fb(lab, "--yes", "expand", "vm1", "640m")
    lab.exec(primary, "football-host", "ct", str(lab.dir / primary / "var/lib/lxc"), "stop",
             "vm1")
    records = lab.records(primary)
    shrunk = fb(lab, "shrink", "vm1")
    assert "vm1 does not run on" in shrunk.stdout and "and stays stopped" in shrunk.stdout
    assert events(shrunk, "summary")[0]["kept_stopped"] is True
    assert_shrunk_to(lab, 320 * MIB, primary, secondary, state="STOPPED")
    assert tree_metadata(data_dir(lab, primary)) == tree
    assert lab.records(primary) == records
    fb(lab, "repair-vm", "vm1", primary)
    after = wait_for_records(lab, primary, len(records) + 3)
    assert not sequence_problems(after) and after[:len(records)] == records

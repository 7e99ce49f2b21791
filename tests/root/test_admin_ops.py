"""The operator's commands in one lab (brought up once for the file): status,
lock/unlock pausing a migration, lv-cleanup of a stray LV, merge-cluster and
split-cluster, expand while the workload writes. The tests run in file order on the same lab. (That a migrate
to the other cluster leaves the two MARS clusters apart again is checked by
the migrate over SSH in tests/root/test_migrate.py.)"""

import json

import pytest

from tests.helpers.dataplane import tree_checksums
from tests.helpers.lab import (events, files_dir, football, largest_gap, module_lab,
                               sequence_problems, wait_for_records, written_files)

pytestmark = [pytest.mark.root, pytest.mark.integration]


lab = module_lab("admin")


def fb(lab, *args, code=0):
    result = football(lab.env, *args)
    assert result.returncode == code, \
        f"football {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}"
    return result


def status(lab, *args):
    return json.loads(fb(lab, "--json", "status", *args).stdout)


def mars_cluster(lab, host):
    return sorted(line.split()[0] for line in
                  lab.exec(host, "marsadm", "lowlevel-ls-host-ips").stdout.splitlines())


def lvs(lab, host):
    return json.loads(lab.exec(host, "football-host", "vg", str(lab.dir / host / "dev/vg0"),
                               "info").stdout)["lvs"]


def roles(report):
    return {row["host"]: row["role"] for row in report["resources"] if row["resource"] == "vm1"}


def test_status_shows_hosts_resources_and_containers_filtered_by_resource_host_cluster(lab):
    table = fb(lab, "status").stdout
    for word in ("a1", "b2", "cluster2", "vm1", "Primary", "RUNNING", "UpToDate"):
        assert word in table, table

    by_resource = status(lab, "vm1")
    assert roles(by_resource) == {"a1": "Primary", "a2": "Secondary"}
    assert sorted(by_resource["hosts"]) == ["a1", "a2"]
    running = [row["host"] for row in by_resource["resources"] if row["container"] == "RUNNING"]
    assert running == ["a1"]

    by_host = status(lab, "a2")
    assert list(by_host["hosts"]) == ["a2"]
    assert by_host["hosts"]["a2"]["reachable"] and by_host["hosts"]["a2"]["vg_free"] > 0
    assert sorted(by_host["hosts"]["a2"]["mars_cluster"]) == ["a1", "a2"]

    by_cluster = status(lab, "cluster2")
    assert sorted(by_cluster["hosts"]) == ["b1", "b2"] and by_cluster["resources"] == []

    unknown = fb(lab, "status", "vm9", code=191)
    assert "unknown resource vm9" in unknown.stderr


def test_lv_cleanup_lists_a_stray_lv_removes_it_with_do_it_and_leaves_the_replicas(lab):
    lab.exec("b2", "football-host", "vg", str(lab.dir / "b2/dev/vg0"), "create", "vm1", "64M")

    listed = fb(lab, "lv-cleanup", "vm1")
    assert f"would run on b2: football-host vg {lab.dir / 'b2/dev/vg0'} remove vm1" in \
        listed.stderr, listed.stderr
    assert "a1: keeps" in listed.stderr and "a2: keeps" in listed.stderr
    assert "vm1" in lvs(lab, "b2")

    fb(lab, "lv-cleanup", "vm1", "--do-it")
    assert "vm1" not in lvs(lab, "b2")
    assert "vm1" in lvs(lab, "a1") and "vm1" in lvs(lab, "a2")
    assert roles(status(lab, "vm1")) == {"a1": "Primary", "a2": "Secondary"}


def test_an_operators_lock_makes_migrate_give_up_with_191_until_it_is_unlocked(lab):
    fb(lab, "lock", "football", "a1")
    assert status(lab, "a1")["hosts"]["a1"]["locks"]["football"]["owner"].startswith(
        "operator@")

    refused = fb(lab, "--var", "lock_retry_timeout=2", "migrate", "vm1", "a2", "a1", code=191)
    assert "lock football is held by operator@" in refused.stderr, refused.stderr
    assert roles(status(lab, "vm1")) == {"a1": "Primary", "a2": "Secondary"}

    unlocked = fb(lab, "unlock", "football", "a1", "a2")
    assert "a1: released lock football held by operator@" in unlocked.stderr
    assert "a2: lock football is not held" in unlocked.stderr
    fb(lab, "migrate", "vm1", "a2", "a1")
    assert roles(status(lab, "vm1")) == {"a2": "Primary", "a1": "Secondary"}


def test_merge_cluster_then_split_cluster_gives_the_inventory_clusters_back(lab):
    fb(lab, "merge-cluster", "b1", "a1")
    assert mars_cluster(lab, "a1") == mars_cluster(lab, "b2") == ["a1", "a2", "b1", "b2"]
    assert "nothing to do" in fb(lab, "merge-cluster", "b1", "a1").stderr

    fb(lab, "split-cluster", "a1")
    assert mars_cluster(lab, "a1") == mars_cluster(lab, "a2") == ["a1", "a2"]
    assert mars_cluster(lab, "b1") == mars_cluster(lab, "b2") == ["b1", "b2"]
    assert "shared resources want: nothing to do" in fb(lab, "split-cluster", "a1", "b1").stderr


def test_expand_grows_every_replica_and_the_filesystem_while_the_workload_writes(lab):
    """Online: the records go on without a gap over a second, the files
    written before are unchanged, and the secondary gets the grown tail
    through MARS, not a new full sync."""
    roles_now = roles(status(lab, "vm1"))
    primary = next(host for host, role in roles_now.items() if role == "Primary")
    secondary = next(host for host in roles_now if host != primary)
    before = written_files(lab, primary, "expand", count=8, size=128 * 1024)
    records = len(wait_for_records(lab, primary, 3))
    marsd_log = lab.dir / secondary / "var/log/marsd.log"
    full_syncs = marsd_log.read_text().count("full sync from")
    syncs = marsd_log.read_text().count(f"sync from {primary} complete")
    mountpoint = str(lab.dir / primary / "var/lib/lxc/vm1")
    fs_before = int(lab.exec(primary, "df", "--block-size=1", "--output=size",
                             mountpoint).stdout.split()[-1])

    grown = fb(lab, "--json", "expand", "vm1", "600m")
    summary = events(grown, "summary")[0]
    assert (summary["old_size"], summary["new_size"]) == (320 << 20, 600 << 20), summary
    # the filesystem grew by the volume's growth (xfs keeps its log and headers)
    assert summary["filesystem_size"] - fs_before >= 270 << 20, (fs_before, summary)
    for host in (primary, secondary):
        assert lvs(lab, host)["vm1"] == 600 << 20
        assert lab.exec(host, "marsadm", "view-resource-size", "vm1").stdout.strip() == \
            str(600 << 20)
    df = lab.exec(primary, "df", "--block-size=1", "--output=size", mountpoint).stdout.split()
    assert int(df[-1]) == summary["filesystem_size"], df
    assert roles(status(lab, "vm1"))[secondary] == "Secondary"
    assert marsd_log.read_text().count("full sync from") == full_syncs, \
        "the secondary synced the whole volume again"
    # ... but the grown tail, as the kernel's MARS does
    assert marsd_log.read_text().count(f"sync from {primary} complete") == syncs + 1
    assert tree_checksums(files_dir(lab, primary, "expand")) == before
    after = wait_for_records(lab, primary, records + 3)
    assert not sequence_problems(after)
    assert largest_gap(after[records - 1:]) < 1.0, "the workload paused while expanding"

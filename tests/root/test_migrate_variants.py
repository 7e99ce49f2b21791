"""The variants of `football migrate` in the lab, and its crashes: two-phase
(the new secondary syncs from the new primary after the handover) with
handovers before (`--pre-hand`) and after (`--post-hand`); then a sample of
each kind of its injection points: before the sync, inside the downtime
window, in the cleanup. Every point is swept on the fake fleet
(tests/unit/test_injection_sweep.py); here the real marsd, devices, xfs,
LXC and workload show that a crashed run and its re-run lose nothing."""

import os

import pytest

from tests.helpers.dataplane import tree_checksums
from tests.helpers.lab import (assert_on, events, files_dir, football, migrate,
                               module_lab, placement, roles_and_running, sequence_problems,
                               wait_for_records, written_files)

pytestmark = [pytest.mark.root, pytest.mark.integration]


lab = module_lab("variants")

# Before the sync, inside the downtime window, in the cleanup.
CRASH_SAMPLES = ("prepare:lv-created", "finish:stopped", "cleanup:left")


def test_two_phase_migrate_with_handovers_before_and_after_keeps_every_record(at_home):
    lab = at_home
    before = written_files(lab, "a1", "two-phase", count=8, size=128 * 1024)
    unchanged = placement(lab)
    bad = migrate(lab, "migrate", "vm1", "cluster2", "--pre-hand", "a2", "--post-hand", "a1",
                  check=False)
    assert bad.returncode == 191 and "--post-hand a1 is not one of the new replicas" in \
        bad.stderr, bad.stderr
    assert placement(lab) == unchanged

    moved = migrate(lab, "migrate", "vm1", "b1", "b2", "--two-phase", "--pre-hand", "a2",
                    "--post-hand", "b2")
    assert_on(lab, "b2", "b1")
    windows = events(moved, "downtime-end")
    assert [window["host"] for window in windows] == ["a2", "b1", "b2"], windows
    points = [(event["name"], event["time"]) for event in events(moved, "injection-point")]
    joins = [stamp for name, stamp in points if name == "prepare:joined"]
    assert len(joins) == 2, points
    # phase one synced b1 alone and handed over; only then did b2 join, from b1
    assert joins[0] < windows[1]["time"] < joins[1]
    summary = events(moved, "summary")[-1]
    # measured by the targets' marsd: the data of two 320 MiB replicas, not
    # their zero blocks
    assert summary["synced_bytes_measured"] and 0 < summary["synced_bytes"] <= 2 * (320 << 20)
    assert summary["post_hand_downtime_seconds"] is not None
    assert tree_checksums(files_dir(lab, "b2", "two-phase")) == before
    assert not sequence_problems(wait_for_records(lab, "b2", 3))

    # the same command again: done already (it said "a2 has no replica",
    # exit 191, trying its hand before again)
    again = migrate(lab, "migrate", "vm1", "b1", "b2", "--two-phase", "--pre-hand", "a2",
                    "--post-hand", "b2")
    assert "nothing to do" in again.stdout and not events(again, "downtime-end"), again.stdout
    assert "nothing to do" in migrate(lab, "migrate", "vm1", "b1", "b2",
                                      "--post-hand", "b2").stdout
    assert_on(lab, "b2", "b1")


def test_migrate_resumes_after_crashes_before_the_sync_in_the_downtime_window_and_in_cleanup(
        lab):
    """A sample of the injection points in the real lab, one of each kind,
    in one migration of vm1 to the other cluster (from where it is): a run
    crashes before the sync, its re-run inside the downtime window (the
    container is stopped), the next in the cleanup; the last re-run ends
    there with every file and every record. (Each point alone, crash and
    re-run: the fake fleet's sweep.)"""
    roles, _ = roles_and_running(lab.status())
    primary = next(host for host, role in roles.items() if role == "Primary")
    where, (new_primary, new_secondary) = ("cluster2", ("b1", "b2")) if primary in ("a1", "a2") \
        else ("cluster1", ("a1", "a2"))
    before = written_files(lab, primary, "crashes", count=4, size=128 * 1024)
    for point in CRASH_SAMPLES:
        crashed = migrate(lab, "--debug-injection-point", point, "migrate", "vm1", where,
                          check=False)
        assert crashed.returncode == 1, f"{point}: {crashed.stderr[-2000:]}"
        assert f"({point}) as asked by --debug-injection-point" in crashed.stderr
    _, running = roles_and_running(lab.status())
    assert running == [new_primary], "the last run crashed after the handover"
    migrate(lab, "migrate", "vm1", where)
    assert_on(lab, new_primary, new_secondary)
    assert tree_checksums(files_dir(lab, new_primary, "crashes")) == before
    records = wait_for_records(lab, new_primary, 3)
    assert not sequence_problems(records), sequence_problems(records)


def test_a_stopped_container_moves_stopped_with_its_files_and_repair_vm_starts_it(at_home):
    """Its operator stopped vm1: the migrate (no `--yes`, no terminal:
    nothing to ask) brings its volume up on b1, mounted from its MARS
    device, and leaves the container stopped; every file and record comes
    along. `football repair-vm` starts it there, and the workload goes on."""
    lab = at_home
    before = written_files(lab, "a1", "stopped", count=4, size=128 * 1024)
    lab.exec("a1", "football-host", "ct", str(lab.dir / "a1/var/lib/lxc"), "stop", "vm1")
    records = lab.records("a1")
    moved = football(lab.env, "--json", "migrate", "vm1", "b1", "b2")
    assert moved.returncode == 0, moved.stderr[-3000:]
    assert "vm1 does not run on a1 (STOPPED) and stays stopped" in moved.stdout
    roles, running = roles_and_running(lab.status())
    assert roles == {"b1": "Primary", "b2": "Secondary"} and running == [], (roles, running)
    mounted = lab.exec("b1", "findmnt", "--noheadings", "--output", "SOURCE", "--mountpoint",
                       str(lab.dir / "b1/var/lib/lxc/vm1")).stdout.strip()
    assert mounted == os.path.realpath(lab.dir / "b1/dev/mars/vm1"), mounted
    assert tree_checksums(files_dir(lab, "b1", "stopped")) == before
    assert lab.records("b1") == records

    migrate(lab, "repair-vm", "vm1", "b1")
    assert_on(lab, "b1", "b2")
    after = wait_for_records(lab, "b1", len(records) + 3)
    assert not sequence_problems(after) and after[:len(records)] == records

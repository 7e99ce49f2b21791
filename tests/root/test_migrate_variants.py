"""The variants of `football migrate` in the lab: two-phase (the new
secondary syncs from the new primary after the handover) with handovers
before (`--pre-hand`) and after (`--post-hand`)."""

import os

import pytest

from tests.helpers.dataplane import tree_checksums, write_files
from tests.helpers.lab import lab_up, sequence_problems
from tests.root.test_lab import wait_for_records
from tests.root.test_migrate import assert_on, events, files_dir, migrate, placement

pytestmark = [pytest.mark.root, pytest.mark.integration]


@pytest.fixture
def lab(tmp_path):
    with lab_up(tmp_path) as run:
        yield run


def test_two_phase_migrate_with_handovers_before_and_after_keeps_every_record(lab):
    files_dir(lab, "a1").mkdir()
    write_files(files_dir(lab, "a1"), count=8, size=128 * 1024)
    os.sync()
    before = tree_checksums(files_dir(lab, "a1"))
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
    assert summary["synced_bytes"] == 2 * (320 << 20)
    assert summary["post_hand_downtime_seconds"] is not None
    assert tree_checksums(files_dir(lab, "b2")) == before
    assert not sequence_problems(wait_for_records(lab, "b2", 3))

    again = migrate(lab, "migrate", "vm1", "b1", "b2", "--two-phase", "--pre-hand", "a2",
                    "--post-hand", "b2", check=False)
    assert again.returncode == 191 and "a2 has no replica" in again.stderr, again.stderr
    assert "nothing to do" in migrate(lab, "migrate", "vm1", "b1", "b2",
                                      "--post-hand", "b2").stdout
    assert_on(lab, "b2", "b1")

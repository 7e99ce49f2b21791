"""`football migrate` end to end in the lab: real marsd, FUSE devices, xfs,
LXC and the workload; data checked by the workload's records and by
checksums of files written before the move."""

import json
import os
import signal

import pytest

from tests.helpers.dataplane import tree_checksums, write_files
from tests.helpers.lab import football, lab_up, roles_and_running, sequence_problems
from tests.root.test_lab import wait_for_records

pytestmark = [pytest.mark.root, pytest.mark.integration]


@pytest.fixture
def lab(tmp_path):
    with lab_up(tmp_path) as run:
        yield run


def migrate(lab, *args, check=True):
    result = football(lab.env, "--json", *args)
    if check:
        assert result.returncode == 0, f"football {' '.join(args)}: {result.stderr[-3000:]}"
    return result


def events(result, kind):
    return [event for event in map(json.loads, result.stdout.splitlines())
            if event["event"] == kind]


def placement(lab):
    """{host: role} of vm1, the running container, the LVs and locks of each host."""
    status = lab.status()
    roles, running = roles_and_running(status)
    lvs = {name: json.loads(lab.exec(name, "football-host", "vg",
                                     str(lab.dir / name / "dev/vg0"), "info").stdout)["lvs"]
           for name in status}
    locks = {name: json.loads(lab.exec(name, "football-host", "lock",
                                       str(lab.dir / name / "var/lock/football"), "list").stdout)
             for name in status}
    return roles, running, lvs, locks


def assert_on(lab, primary, secondary):
    roles, running, lvs, locks = placement(lab)
    assert roles == {primary: "Primary", secondary: "Secondary"}
    assert running == [primary]
    assert {name for name, volumes in lvs.items() if "vm1" in volumes} == {primary, secondary}
    assert not any(locks.values()), f"locks left: {locks}"
    diskstate = lab.status()[secondary]["resources"]["vm1"]["diskstate"]
    assert diskstate in ("UpToDate", "Replaying") or diskstate.startswith("UpToDate")


def files_dir(lab, host):
    return lab.dir / host / "var/lib/lxc/vm1/rootfs/data"


def test_migrate_to_cluster2_and_back_keeps_every_record_and_every_file(lab):
    files_dir(lab, "a1").mkdir()
    write_files(files_dir(lab, "a1"), count=20, size=256 * 1024)
    os.sync()
    before = tree_checksums(files_dir(lab, "a1"))

    there = migrate(lab, "migrate", "vm1", "cluster2")
    assert_on(lab, "b1", "b2")
    summary = events(there, "summary")[0]
    assert summary["downtime_seconds"] < 30 and summary["synced_bytes"] == 2 * (320 << 20)
    assert tree_checksums(files_dir(lab, "b1")) == before
    records = wait_for_records(lab, "b1", 30)
    assert not sequence_problems(records)

    migrate(lab, "migrate", "vm1", "cluster1")
    assert_on(lab, "a1", "a2")
    assert tree_checksums(files_dir(lab, "a1")) == before
    assert not sequence_problems(wait_for_records(lab, "a1", len(records) + 5))
    again = migrate(lab, "migrate", "vm1", "cluster1")
    assert "nothing to do" in again.stdout


def test_migrate_resumes_after_a_crash_at_every_injection_point(lab):
    first = migrate(lab, "migrate", "vm1", "cluster2")
    points = [event["name"] for event in events(first, "injection-point")]
    assert len(points) >= 10, points
    home = {"cluster1": ("a1", "a2"), "cluster2": ("b1", "b2")}
    where = "cluster2"
    for number, name in enumerate(points, start=1):
        where = "cluster1" if where == "cluster2" else "cluster2"
        crashed = migrate(lab, "--debug-injection-point", str(number), "migrate", "vm1", where,
                          check=False)
        assert crashed.returncode == 1, f"point {number} ({name}): {crashed.stderr[-2000:]}"
        assert f"injection point {number}" in crashed.stderr
        migrate(lab, "migrate", "vm1", where)
        assert_on(lab, *home[where])
        records = wait_for_records(lab, home[where][0], 3)
        assert not sequence_problems(records), f"point {number} ({name}): " \
            f"{sequence_problems(records)}"


def test_bad_input_is_refused_with_exit_191_and_changes_nothing(lab):
    before = placement(lab)
    cases = {
        ("migrate", "vm9", "cluster2"): "unknown resource vm9",
        ("migrate", "vm1", "nowhere"): "unknown host or cluster 'nowhere'",
        ("migrate", "vm1;rm -rf /", "cluster2"): "invalid",
        ("migrate", "$(reboot)", "b1"): "invalid",
        ("migrate", "vm1", "b1", "b1"): "must differ",
        ("--var", "limit_syncs=many", "migrate", "vm1", "b1"): "limit_syncs",
        ("--var", "no_such_setting=1", "migrate", "vm1", "b1"): "unknown setting",
    }
    for args, message in cases.items():
        result = migrate(lab, *args, check=False)
        assert result.returncode == 191, f"{args}: {result.returncode} {result.stderr}"
        assert message in result.stderr, f"{args}: {result.stderr}"
    # target = source: nothing to do, exit 0
    assert "nothing to do" in migrate(lab, "migrate", "vm1", "a1", "a2").stdout
    # a dry run says every step, the cleanup included, and does none of them
    dry = football(lab.env, "--dry-run", "migrate", "vm1", "cluster2")
    assert dry.returncode == 0, dry.stderr
    for line in ("would merge b1 into the MARS cluster of a1",
                 f"would create LV vg0/vm1 on b2 and run `marsadm join-resource vm1 "
                 f"{lab.dir}/b2/dev/vg0/vm1` there",
                 "would stop vm1 on a1, run `marsadm primary vm1` on b1 and start it there",
                 "would remove the replicas on a1, a2 (`marsadm leave-resource`, then their LVs)",
                 "would split the MARS cluster where a1, a2 share no resource with b1, b2"):
        assert line in dry.stderr, dry.stderr
    assert "summary:" not in dry.stderr
    assert not (lab.dir / "controller" / "journal" / "migrate-vm1.json").exists(), \
        "a dry run decided targets for the next real run"
    # a target without VG space
    lab.exec("b1", "football-host", "vg", str(lab.dir / "b1/dev/vg0"), "create", "filler", "800M")
    full = migrate(lab, "migrate", "vm1", "b1", check=False)
    assert full.returncode == 191 and "free" in full.stderr and "b1" in full.stderr
    lab.exec("b1", "football-host", "vg", str(lab.dir / "b1/dev/vg0"), "remove", "filler")
    # an unreachable target (its marsd is down)
    os.kill(lab.status()["b2"]["marsd_pid"], signal.SIGKILL)
    down = migrate(lab, "migrate", "vm1", "b2", check=False)
    assert down.returncode == 191 and "b2" in down.stderr, down.stderr
    assert placement(lab) == before
    assert "a1" in lab.exec("a1", "marsadm", "lowlevel-ls-host-ips").stdout
    assert "b1" not in lab.exec("a1", "marsadm", "lowlevel-ls-host-ips").stdout

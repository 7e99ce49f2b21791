"""`football repair-vm` and `football repair-mars` in the lab: a container
that runs nowhere is started again, and a resource whose other member is
gone is rebuilt stand-alone from its LV's data — every record and file kept."""

import os
import signal

import pytest

from tests.helpers.dataplane import tree_checksums
from tests.helpers.lab import (events, files_dir, migrate, module_lab, placement,
                               roles_and_running, sequence_problems, wait_for_records,
                               written_files)

pytestmark = [pytest.mark.root, pytest.mark.integration]


lab = module_lab("repair")


def stop_container(lab, host):
    lxcpath = str(lab.dir / host / "var/lib/lxc")
    lab.exec(host, "football-host", "ct", lxcpath, "stop", "vm1")


def members(lab, host):
    return lab.exec(host, "marsadm", "view-resource-members", "vm1").stdout.split()


def test_repair_vm_starts_a_stopped_container_on_the_first_host_where_it_runs(at_home):
    lab = at_home
    before = written_files(lab, "a1", "repair-vm", count=8, size=128 * 1024)
    for args, message in {("repair-vm", "vm9", "a1"): "unknown resource vm9",
                          ("repair-vm", "vm1", "b1"): "none of b1 has a replica",
                          ("repair-vm", "vm1", "x9"): "unknown host 'x9'",
                          ("repair-mars", "vm1", "a2"): "--yes"}.items():
        refused = migrate(lab, *args, check=False)
        assert refused.returncode == 191 and message in refused.stderr, (args, refused.stderr)
    assert migrate(lab, "repair-vm", "vm1", "a1").stdout.count(
        "vm1: it runs on a1: nothing to do") == 1
    unchanged = placement(lab)

    stop_container(lab, "a1")            # as a failed migrate or a crash leaves it
    migrate(lab, "repair-vm", "vm1", "b2", "a2", "a1")
    roles, running, _, locks = placement(lab)
    assert running == ["a2"] and roles == {"a2": "Primary", "a1": "Secondary"}
    assert not any(locks.values())
    assert tree_checksums(files_dir(lab, "a2", "repair-vm")) == before
    assert not sequence_problems(wait_for_records(lab, "a2", 3))
    assert unchanged[2] == placement(lab)[2], "no LV was created or removed"


def test_repair_mars_rebuilds_the_resource_stand_alone_from_the_chosen_replica(lab):
    """From where vm1 is (the repair-vm test left it on a2): its primary
    `chosen` keeps the data, its other replica `gone` stops answering."""
    roles, _ = roles_and_running(lab.status())
    chosen = next(host for host, role in roles.items() if role == "Primary")
    gone = next(host for host, role in roles.items() if role != "Primary")
    before = written_files(lab, chosen, "repair-mars", count=8, size=128 * 1024)
    marsd = lab.status()[gone]["marsd_pid"]
    os.kill(marsd, signal.SIGSTOP)                     # a member that does not answer
    try:
        refused = migrate(lab, "--yes", "repair-mars", "vm1", chosen, check=False)
    finally:
        os.kill(marsd, signal.SIGCONT)
    assert refused.returncode == 191 and \
        f"the marsd of {gone} (members of vm1) does not answer" in refused.stderr
    assert members(lab, chosen) == sorted([chosen, gone])

    dry = migrate(lab, "--dry-run", "repair-mars", "vm1", "b1", chosen)
    assert "b1 has no LV vg0/vm1" in dry.stdout, dry.stdout
    would_run = [(event["host"], event["argv"]) for event in events(dry, "would-run")]
    assert (chosen, ["marsadm", "delete-resource", "--force", "vm1"]) in would_run and \
        (chosen, ["marsadm", "create-resource", "vm1", str(lab.dir / chosen / "dev/vg0/vm1"),
                  "--timeout=570"]) in would_run, would_run
    assert members(lab, chosen) == sorted([chosen, gone])

    migrate(lab, "--yes", "repair-mars", "vm1", "b1", chosen)
    assert members(lab, chosen) == [chosen] and members(lab, gone) == [chosen]
    assert lab.exec(chosen, "marsadm", "view-get-primary", "vm1").stdout.strip() == chosen
    assert [name for name, entry in lab.status().items()
            if entry["containers"].get("vm1") == "RUNNING"] == [chosen]
    assert tree_checksums(files_dir(lab, chosen, "repair-mars")) == before
    assert not sequence_problems(wait_for_records(lab, chosen, 3))
    assert f"vm1: it runs stand-alone on {chosen}: nothing to do" in \
        migrate(lab, "--yes", "repair-mars", "vm1", chosen).stdout

    migrate(lab, "migrate", "vm1", chosen, gone)       # a new replica on the old LV
    assert members(lab, chosen) == sorted([chosen, gone])
    assert tree_checksums(files_dir(lab, chosen, "repair-mars")) == before

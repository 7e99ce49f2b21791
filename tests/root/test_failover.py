"""`football failover` in the lab: a1 dies — its container stops, no
command reaches it (an inventory that names it behind an SSH port where
nothing listens) and, after a refusal while a2 still reaches it, its marsd
freezes. vm1 (primary on a1) is taken over by force on
a2 with every file and record the container wrote; vm2 (primary on a2)
keeps running; a1's replicas of both are dropped; a1, back, learns that it
holds none."""

import os
import signal

import pytest

from tests.helpers.dataplane import tree_checksums
from tests.helpers.lab import (events, files_dir, football, inventory_without, module_lab,
                               sequence_problems, wait_for_records, written_files)
from tests.helpers.marshosts import wait_until

pytestmark = [pytest.mark.root, pytest.mark.integration]


lab = module_lab("failover")


def members(lab, host, res):
    return lab.exec(host, "marsadm", "view-resource-members", res).stdout.split()


def test_failover_of_a_dead_primary_keeps_what_its_container_wrote(lab, tmp_path):
    lab.football("add", "vm2", "a2", "a1", "--size", "320M")
    before = written_files(lab, "a1", "failover", count=8, size=128 * 1024)
    lxcpath = str(lab.dir / "a1" / "var/lib/lxc")
    # a1 dies: its container stops, its mount goes (and in the lab, whose
    # hosts share one kernel, xfs would not mount the same filesystem twice)
    lab.exec("a1", "football-host", "ct", lxcpath, "stop", "vm1")
    written = len(lab.records("a1"))
    lab.exec("a1", "umount", f"{lxcpath}/vm1")
    inventory = inventory_without(lab, "a1", tmp_path / "fleet.yml")
    run = ["--inventory", str(inventory), "--var", f"state_dir={lab.dir / 'controller'}",
           "--json"]
    # no command of the controller reaches a1, but its marsd runs: a2 reaches it
    cut_off = football(lab.env, *run, "--yes", "failover", "a1")
    assert cut_off.returncode == 191 and "a2 reaches a1's marsd" in cut_off.stderr, \
        cut_off.stderr
    assert members(lab, "a2", "vm1") == ["a1", "a2"]
    marsd = lab.status()["a1"]["marsd_pid"]
    os.kill(marsd, signal.SIGSTOP)
    try:
        # a2 asks the frozen a1 for its logs now (marsadm's wait for
        # up-to-date makes it list): the takeover does not wait for the answer
        lab.exec("a2", "marsadm", "--timeout=1", "wait-resource", "vm1", check=False)
        alive = inventory_without(lab, "b2", tmp_path / "a1-alive.yml")
        refused = football(lab.env, "--inventory", str(alive), "--yes", "failover", "a1")
        assert refused.returncode == 191 and "a1 answers" in refused.stderr, refused.stderr

        result = football(lab.env, *run, "--yes", "failover", "a1")
        assert result.returncode == 0, [event["text"] for event in events(result, "warning")]
        (summary,) = events(result, "result")
        assert summary["taken_over"] == {"vm1": "a2"}
        assert summary["unreceived"] == {"vm1": 0}      # a2 had fetched all: nothing lost
        assert "vm1: gave up waiting for a1 to answer logs: a2 takes over by force" in \
            (lab.dir / "a2" / "var/log/marsd.log").read_text()  # (20 s later, before)
        assert summary["dropped"] == ["vm1", "vm2"]
        assert members(lab, "a2", "vm1") == ["a2"] and members(lab, "a2", "vm2") == ["a2"]
        assert tree_checksums(files_dir(lab, "a2", "failover")) == before
        records = wait_for_records(lab, "a2", written + 3)
        assert not sequence_problems(records), sequence_problems(records)
        running = {name: sorted(res for res, state in entry["containers"].items()
                                if state == "RUNNING") for name, entry in lab.status().items()}
        assert running["a2"] == ["vm1", "vm2"] and running["a1"] == []

        again = football(lab.env, *run, "--yes", "failover", "a1")
        assert again.returncode == 0 and "no resource has a replica on a1" in again.stdout

        # then it leaves its MARS cluster: a2 drops it (its frozen marsd
        # accepts a connection and never answers: it counts as gone)
        gone = football(lab.env, *run, "--yes", "decommission", "a1")
        assert gone.returncode == 0, gone.stderr
        assert "a1" not in lab.exec("a2", "marsadm", "lowlevel-ls-host-ips").stdout
    finally:
        os.kill(marsd, signal.SIGCONT)
    # back, a1 learns what was written for it meanwhile: it holds no replica,
    # and it is no member of the cluster any more
    wait_until(lambda: members(lab, "a1", "vm1") == ["a2"] and
               members(lab, "a1", "vm2") == ["a2"],
               what="a1 to learn that its replicas were dropped",
               show=lambda: lab.exec("a1", "marsadm", "view", "all").stdout)
    wait_until(lambda: "a1 is no member of the cluster of a2 any more: it was dropped "
                       "(by a2)" in (lab.dir / "a1" / "var/log/marsd.log").read_text(),
               what="a1's marsd saying that it was dropped",
               show=lambda: (lab.dir / "a1" / "var/log/marsd.log").read_text()[-2000:])

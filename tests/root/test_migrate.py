"""`football migrate` end to end in one lab for the file: real marsd, FUSE
devices, xfs, LXC and the workload; data checked by the workload's records
and by checksums of files written before each move: bad input, and a
migrate over a real sshd. Each test starts from vm1 at home
(primary a1, secondary a2: `at_home`). The variants and the crashes at
injection points: tests/root/test_migrate_variants.py."""

import os
import signal
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers.dataplane import tree_checksums
from tests.helpers.lab import (assert_on, events, files_dir, football, migrate, module_lab,
                               placement, sequence_problems, wait_for_records, written_files)
from tests.helpers.sshd import Sshd

pytestmark = [pytest.mark.root, pytest.mark.integration]

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


lab = module_lab("migrate")


def test_bad_input_is_refused_with_exit_191_and_changes_nothing(at_home):
    lab = at_home
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
    # an unreachable target (its marsd does not answer)
    marsd = lab.status()["b2"]["marsd_pid"]
    os.kill(marsd, signal.SIGSTOP)
    try:
        down = migrate(lab, "migrate", "vm1", "b2", check=False)
    finally:
        os.kill(marsd, signal.SIGCONT)
    assert down.returncode == 191 and "b2" in down.stderr, down.stderr
    assert placement(lab) == before
    assert "a1" in lab.exec("a1", "marsadm", "lowlevel-ls-host-ips").stdout
    assert "b1" not in lab.exec("a1", "marsadm", "lowlevel-ls-host-ips").stdout


@pytest.fixture
def sshd(tmp_path, lab):
    hosts = yaml.safe_load(lab.inventory.read_text())["hosts"]
    server = Sshd(tmp_path / "sshd", [settings["address"] for settings in hosts.values()])
    try:
        yield server.start()
    finally:
        server.stop()


def ssh_inventory(lab, sshd, path):
    """The lab as a fleet reached over SSH: the lab's hosts, addresses
    (MARS's too) and roots, with the environment a lab host's commands need."""
    lab_inventory = yaml.safe_load(lab.inventory.read_text())
    known_hosts = path.parent / "known_hosts"
    known_hosts.write_text(sshd.known_hosts_lines())
    hosts = {name: {"address": settings["address"], "root": str(lab.dir / name),
                    "env": {"MARS_ROOT": str(lab.dir / name), "MARS_HOST": name,
                            "PATH": f"{Path(sys.executable).parent}:{SYSTEM_PATH}"}}
             for name, settings in lab_inventory["hosts"].items()}
    path.write_text(yaml.safe_dump({
        "defaults": {"transport": "ssh", "port": sshd.port, "ssh_key": str(sshd.client_key),
                     "known_hosts": str(known_hosts), "storage": "filevg", "manager": "lab",
                     "vg": "vg0", **lab_inventory["defaults"]},
        "clusters": lab_inventory["clusters"],
        "hosts": hosts}))
    return path


def test_migrate_to_cluster2_over_ssh_keeps_every_record_and_every_file(at_home, sshd, tmp_path):
    """The lab's hosts reached through a real sshd (one, listening on all
    four lab addresses) with an inventory of `transport: ssh` hosts, as a
    real fleet is. (The way back, and back again, is in
    test_migrate_variants.py's crash samples.)"""
    lab = at_home
    inventory = ssh_inventory(lab, sshd, tmp_path / "fleet.yml")
    before = written_files(lab, "a1", "over-ssh", count=20, size=256 * 1024)

    env = {key: value for key, value in lab.env.items() if key != "FOOTBALL_LAB_DIR"}
    there = football(env, "--json", "--inventory", str(inventory),
                     "--var", f"state_dir={tmp_path / 'controller'}", "migrate", "vm1", "cluster2")
    assert there.returncode == 0, there.stderr[-3000:]
    assert_on(lab, "b1", "b2")
    summary = events(there, "summary")[0]
    print(f"\nmigrate over ssh: phases {summary['phases']}, downtime "
          f"{summary['downtime_seconds']} s")
    assert summary["synced_bytes"] == 2 * (320 << 20)
    assert summary["downtime_seconds"] is not None
    assert tree_checksums(files_dir(lab, "b1", "over-ssh")) == before
    records = wait_for_records(lab, "b1", 30)
    assert not sequence_problems(records)
    # every host was driven through sshd, each over one connection
    connections = {address: sshd.connections_to(address) for address in sshd.addresses}
    assert all(count == 1 for count in connections.values()), connections
    assert sshd.log().count("Starting session: command for root") > 20
    again = football(env, "--inventory", str(inventory), "--var",
                     f"state_dir={tmp_path / 'controller'}", "migrate", "vm1", "cluster2")
    assert again.returncode == 0 and "nothing to do" in again.stderr + again.stdout, again.stderr

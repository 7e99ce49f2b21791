"""`football migrate` end to end in one lab for the file: real marsd, FUSE
devices, xfs, LXC and the workload; data checked by the workload's records
and by checksums of files written before each move: a migrate over a real
sshd. Each test starts from vm1 at home (primary a1, secondary a2:
`at_home`). The variants and the crashes at injection points:
tests/root/test_migrate_variants.py. What migrate refuses, and a dry run,
are decided before any host changes: on the fake fleet,
tests/unit/test_migrate_refusals.py."""

import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers.dataplane import tree_checksums
from tests.helpers.lab import (assert_on, events, files_dir, football, module_lab,
                               sequence_problems, wait_for_records, written_files)
from tests.helpers.sshd import Sshd

pytestmark = [pytest.mark.root, pytest.mark.integration]

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


lab = module_lab("migrate")


def mars_cluster(lab, host):
    """The hosts of `host`'s MARS cluster, as its marsd knows them."""
    return sorted(line.split()[0] for line in
                  lab.exec(host, "marsadm", "lowlevel-ls-host-ips").stdout.splitlines())


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
    # measured by the targets' marsd: the data of two 320 MiB replicas, not
    # their zero blocks
    assert summary["synced_bytes_measured"] and 0 < summary["synced_bytes"] <= 2 * (320 << 20)
    assert summary["downtime_seconds"] is not None
    assert tree_checksums(files_dir(lab, "b1", "over-ssh")) == before
    records = wait_for_records(lab, "b1", 30)
    assert not sequence_problems(records)
    # the migrate merged b1, b2 into a1's MARS cluster and split it again:
    # two separate clusters as the inventory has them, each knowing only its own
    assert mars_cluster(lab, "a1") == mars_cluster(lab, "a2") == ["a1", "a2"]
    assert mars_cluster(lab, "b1") == mars_cluster(lab, "b2") == ["b1", "b2"]
    # every host was driven through sshd, each over one connection
    connections = {address: sshd.connections_to(address) for address in sshd.addresses}
    assert all(count == 1 for count in connections.values()), connections
    # a host agent per host carries the commands after the first ones
    sessions = sshd.log().count("Starting session: command for root")
    assert len(sshd.addresses) <= sessions < 40, sessions
    again = football(env, "--inventory", str(inventory), "--var",
                     f"state_dir={tmp_path / 'controller'}", "migrate", "vm1", "cluster2")
    assert again.returncode == 0 and "nothing to do" in again.stderr + again.stdout, again.stderr

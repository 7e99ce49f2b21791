"""The same `football migrate` as tests/root/test_migrate.py, but the lab's
hosts are reached through a real sshd (one, listening on all four lab
addresses) with an inventory of `transport: ssh` hosts, as a real fleet is."""

import os
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers.dataplane import tree_checksums, write_files
from tests.helpers.lab import football, lab_up, sequence_problems
from tests.helpers.sshd import Sshd
from tests.root.test_lab import wait_for_records
from tests.root.test_migrate import assert_on, events, files_dir

pytestmark = [pytest.mark.root, pytest.mark.integration]

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.fixture
def lab(tmp_path):
    with lab_up(tmp_path) as run:
        yield run


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


def test_migrate_over_ssh_moves_vm1_to_cluster2_with_every_record_and_every_file(
        lab, sshd, tmp_path):
    inventory = ssh_inventory(lab, sshd, tmp_path / "fleet.yml")
    files_dir(lab, "a1").mkdir()
    write_files(files_dir(lab, "a1"), count=10, size=256 * 1024)
    os.sync()
    before = tree_checksums(files_dir(lab, "a1"))

    env = {key: value for key, value in lab.env.items() if key != "FOOTBALL_LAB_DIR"}
    moved = football(env, "--json", "--inventory", str(inventory),
                     "--var", f"state_dir={tmp_path / 'controller'}", "migrate", "vm1", "cluster2")
    assert moved.returncode == 0, moved.stderr[-3000:]
    assert events(moved, "summary")

    assert_on(lab, "b1", "b2")
    assert tree_checksums(files_dir(lab, "b1")) == before
    assert not sequence_problems(wait_for_records(lab, "b1", 30))
    # every host was driven through sshd, each over one connection
    connections = {address: sshd.connections_to(address) for address in sshd.addresses}
    assert all(count == 1 for count in connections.values()), connections
    assert sshd.log().count("Starting session: command for root") > 20

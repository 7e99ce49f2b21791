"""What marsd answers `disk-size` (asked by `marsadm resize` on the
primary): the size of its disk of the resource as it is now."""

import pytest

from mars.daemon import Daemon
from mars.hostenv import HostEnv
from mars.store import Store
from tests.unit.conftest import MIB, make_disk


@pytest.fixture
def daemon(tmp_path):
    """h1's marsd, not running: its store, where vm1's disk is `disk1`."""
    env = HostEnv("h1", tmp_path / "h1")
    env.ensure_state_dir()
    marsd = Daemon(env)
    marsd.store = Store(env.db_path, "h1")
    marsd.disk = tmp_path / "disk1"
    marsd.store.write({"resource-vm1/data-h1": str(marsd.disk),
                       "resource-vm1/actual-h1/disk-size": MIB})
    yield marsd
    marsd.store.close()


def ask(daemon, res="vm1"):
    reply, payload = daemon._answer("h2", {"type": "disk-size", "res": res}, b"")
    assert payload == b""
    return reply


def test_disk_size_is_the_size_of_the_disk_now_not_the_reported_one(daemon):
    make_disk(daemon.disk, MIB)
    assert ask(daemon) == {"type": "disk-size", "disk_size": MIB}
    make_disk(daemon.disk, 3 * MIB)             # lvresize a moment ago
    assert ask(daemon) == {"type": "disk-size", "disk_size": 3 * MIB}


def test_disk_size_of_a_resource_this_host_is_no_member_of_is_an_error(daemon):
    assert ask(daemon, "vm2") == {"type": "error", "reason": "h1 is not a member of vm2"}


def test_disk_size_of_a_missing_disk_is_an_error_naming_it(daemon):
    reply = ask(daemon)
    assert reply["type"] == "error"
    assert reply["reason"] == f"the size of {daemon.disk} on h1 cannot be read: No such file or directory"

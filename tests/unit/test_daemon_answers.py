"""What marsd answers `disk-size` (asked by `marsadm resize` on the
primary): the size of its disk of the resource as it is now; and where it
deletes the logfiles every member has replayed."""

import threading

import pytest
import trio

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


def test_replayed_logfiles_are_deleted_off_the_event_loop(daemon):
    """Every member's cursor is past logfile 1: the round deletes it, in a
    thread (a large logfile's unlink blocks for a good part of a second)."""
    calls = []

    class Worker:
        @staticmethod
        def delete_logs_before(number):
            calls.append((number, threading.current_thread() is threading.main_thread()))
            return 1

    daemon.store.write({"resource-vm1/size": MIB, "resource-vm1/replay-h1": "log-000000002-h1,10,10"})
    daemon.store.apply([("resource-vm1/data-h2", "/dev/vg/vm1", 10, "h2"),     # as h2 sent it
                        ("resource-vm1/replay-h2", "log-000000003-h1,0,0", 11, "h2")])
    daemon.workers = {"vm1": Worker()}
    trio.run(daemon._delete_replayed_logs)
    assert calls == [(2, False)]

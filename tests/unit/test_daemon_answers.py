"""What marsd answers `disk-size` (asked by `marsadm resize` on the
primary): the size of its disk of the resource as it is now; where it
deletes the logfiles every member has replayed; and that a peer which
speaks to it is pulled from at once, even while its backoff runs."""

import threading

import pytest
import trio
import trio.testing

from mars import net
from mars.daemon import Daemon
from mars.errors import PeerError
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


def test_a_peer_that_speaks_is_pulled_from_at_once_not_at_the_end_of_its_backoff(daemon, monkeypatch):
    """h2 was down long enough for h1's backoff to reach 10 s; it comes up,
    joins a resource and tells h1 so: h1 connects and pulls now. It waited
    out the backoff before, and meanwhile deleted a logfile the new member
    needed (test_operations' rotation test failed so, 1 run in ~15)."""
    daemon.env.key_path.write_text("ab" * 32)
    daemon.round_interval = 1.0         # backoff 0.5, 1, 2, 4, 8, then 10 s
    up = False
    connects, pulls = [], []

    class Channel:
        async def aclose(self):
            pass

    async def connect(address, port, host, key, **_):
        connects.append(trio.current_time())
        if not up:
            raise PeerError(f"peer {address}:{port} unreachable: Connection refused")
        return Channel()

    async def pull_rounds(host, channel):
        pulls.append((host, trio.current_time()))
        await trio.sleep_forever()

    monkeypatch.setattr(net, "connect", connect)
    monkeypatch.setattr(daemon, "_pull_rounds", pull_rounds)

    async def main():
        nonlocal up
        async with trio.open_nursery() as nursery:
            nursery.start_soon(daemon._pull_from_peer, "h2", "127.0.0.2", trio.CancelScope())
            await trio.sleep(20.0)      # tried at 0, 0.5, 1.5, 3.5, 7.5, 15.5; next at 25.5
            assert len(connects) == 6 and not pulls
            up = True
            assert daemon._answer("h2", {"type": "news"}, b"") == ({"type": "ok"}, b"")
            await trio.testing.wait_all_tasks_blocked()
            assert pulls == [("h2", 20.0)]
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_replica_another_host_dropped_takes_its_own_last_reports_with_it(tmp_path):
    """h1 was frozen while h2 dropped its replica of vm1 (`marsadm
    --host=h1 leave-resource --force`), deleted vm1 and created it again
    from its own LV. Thawed, h1's worker reported once more (newer stamps
    than the drop's tombstones) before it learned: its cursor and its
    version of logfile 1 stayed, and h2 saw a split brain of its own new
    logfile 1 with h1's old one (the lab, `football repair-mars` with a
    member gone). marsd drops its own keys of a resource it holds no
    replica of, as of one that was deleted; those of a replica it holds
    stay."""
    env = HostEnv("h1", tmp_path / "h1")
    env.ensure_state_dir()
    marsd = Daemon(env)
    marsd.store = Store(env.db_path, "h1")
    try:
        marsd.store.apply([("resource-vm1/size", str(MIB), 10, "h2"),
                           ("resource-vm1/data-h2", "/dev/vg/vm1", 11, "h2"),
                           ("resource-vm2/size", str(MIB), 12, "h2")])
        marsd.store.write({"resource-vm1/replay-h1": "log-000000001-h1,4096,4096",
                           "resource-vm1/version-1-h1": "0f,log-000000001-h1,4096:",
                           "resource-vm1/actual-h1/is-primary": "0",
                           "resource-vm2/data-h1": "/dev/vg/vm2",
                           "resource-vm2/replay-h1": "log-000000001-h2,0,0"})
        marsd._drop_keys_of_resources_not_held()
        assert sorted(key for key in marsd.store.live_values("resource-")
                      if key.endswith("h1") or "-h1/" in key) == [
            "resource-vm2/data-h1", "resource-vm2/replay-h1"]
    finally:
        marsd.store.close()

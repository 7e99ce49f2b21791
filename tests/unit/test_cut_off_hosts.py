"""Two hosts cut off from each other, then hearing of each other again (their
stores exchanged as anti-entropy does): a forced takeover (`marsadm primary
--force`) as the old primary sees it, its device in use, and operators'
wishes on shared keys written on either side."""

import types

import pytest

from mars.keys import FORCED_NAME, actual_name, primary_key, todo_name
from mars.primary import Primary
from mars.store import Store
from mars.worker import ResourceWorker

RES = "r"


def exchange(*stores):
    for one in stores:
        for other in stores:
            if one is not other:
                one.apply(other.changes_since(one.vector()))


def device_in_use(store, host):
    """The part of a primary `refuse_handover` reads: this host's worker,
    its device open once."""
    worker = types.SimpleNamespace(res=RES, store=store, stopping=False, resource_values=None,
                                   key=lambda name: f"resource-{RES}/{name}",
                                   switch=lambda state, name: True)
    worker.write = lambda changes: ResourceWorker.write(worker, changes)
    primary = types.SimpleNamespace(worker=worker, open_count=1, res=RES, host=host,
                                    link=f"/dev/mars/{RES}")
    primary.forced_takeover = lambda state, designated: Primary.forced_takeover(
        primary, state, designated)
    return primary


def test_an_old_primary_cut_off_during_a_forced_takeover_does_not_take_the_designation_back(
        tmp_path):
    """a runs r, its device open, and is cut off; b takes over by force and
    its device comes up (the force wish reset). Once a heard of it, a
    refused it as a planned handover and designated itself again, then b
    likewise, for ever, both devices up. a now leaves the designation to b
    (its device waits to be closed, as in any handover)."""
    a, b = Store(tmp_path / "a.db", "a"), Store(tmp_path / "b.db", "b")
    a.write({"ips/ip-a": "127.0.0.1", f"resource-{RES}/size": "100",
             primary_key(RES): "a", f"resource-{RES}/data-a": "/dev/vg/r"})
    b.write({"ips/ip-b": "127.0.0.2", f"resource-{RES}/data-b": "/dev/vg/r"})
    exchange(a, b)
    # cut off; on b: marsadm primary --force r, then its device comes up
    b.write({primary_key(RES): "b", f"resource-{RES}/{todo_name('b', 'force-primary')}": "1"})
    b.write({f"resource-{RES}/{todo_name('b', 'force-primary')}": "0",
             f"resource-{RES}/{actual_name('b', 'is-primary')}": "1",
             f"resource-{RES}/{actual_name('b', FORCED_NAME)}": "1"})
    exchange(a, b)
    old, new = device_in_use(a, "a"), device_in_use(b, "b")
    for _ in range(3):
        for primary, store in ((old, a), (new, b)):
            state = store.state()
            assert not Primary.refuse_handover(primary, state, state.designated_primary(RES))
        exchange(a, b)
    assert a.state().designated_primary(RES) == b.state().designated_primary(RES) == "b"


@pytest.mark.parametrize("reports", [
    {FORCED_NAME: "0"},
    {FORCED_NAME: "1", "is-primary": "0"}], ids=["not-forced", "forced-device-down"])
def test_a_planned_handover_to_a_host_not_up_by_force_now_is_refused(tmp_path, reports):
    """The flag lasts while that device is up by force: a later planned
    handover (its device up without force) is refused as any is. And b's
    device that came up by force, later went down (a planned handover
    away), left its `forced` report: a's open device let b's next planned
    handover through (a test of a split brain resolved saw it now and then)."""
    a, b = Store(tmp_path / "a.db", "a"), Store(tmp_path / "b.db", "b")
    a.write({"ips/ip-a": "127.0.0.1", f"resource-{RES}/size": "100",
             primary_key(RES): "a", f"resource-{RES}/data-a": "/dev/vg/r"})
    b.write({"ips/ip-b": "127.0.0.2", f"resource-{RES}/data-b": "/dev/vg/r",
             **{f"resource-{RES}/{actual_name('b', name)}": value
                for name, value in reports.items()}})
    exchange(a, b)
    b.write({primary_key(RES): "b"})                      # marsadm primary r on b
    exchange(a, b)
    state = a.state()
    assert Primary.refuse_handover(device_in_use(a, "a"), state, "b")
    assert a.state().designated_primary(RES) == "a"


def test_a_later_wish_on_a_shared_key_wins_though_its_host_had_the_value_already(tmp_path):
    """Cut off from each other, a pauses sync globally, then b resumes it;
    b had 0 already, wrote nothing, and once they heard of each other the
    earlier pause had won on both."""
    from mars.roles import Roles

    a, b = Store(tmp_path / "a.db", "a"), Store(tmp_path / "b.db", "b")
    a.write({"ips/ip-a": "127.0.0.1", f"resource-{RES}/size": "100", primary_key(RES): "a",
             f"resource-{RES}/data-a": "/dev/vg/r", f"resource-{RES}/global-pause-sync": "0"})
    b.write({"ips/ip-b": "127.0.0.2", f"resource-{RES}/data-b": "/dev/vg/r"})
    exchange(a, b)
    Roles(types.SimpleNamespace(host="a"), a, echo=lambda text: None).pause(
        RES, "sync", 0, "global")
    Roles(types.SimpleNamespace(host="b"), b, echo=lambda text: None).pause(
        RES, "sync", 1, "global")
    exchange(a, b)
    assert [store.value(f"resource-{RES}/global-pause-sync") for store in (a, b)] == ["0", "0"]


def test_a_member_away_longer_than_the_retention_learns_of_the_deletions_all_the_same(
        tmp_path):
    """Tombstones were purged once every *live* peer had seen them: b,
    stopped (or cut off) for two hours, never learned that c's replica of r
    was dropped, and kept c as a member for ever. A member heard from within
    the tombstone wait (a week) holds them back until it has seen them."""
    from mars.daemon import TOMBSTONE_WAIT, peers_a_purge_waits_for
    from mars.keys import alive_key, time_key

    a, b = Store(tmp_path / "a.db", "a"), Store(tmp_path / "b.db", "b")
    c = Store(tmp_path / "c.db", "c")
    a.write({"ips/ip-a": "127.0.0.1", f"resource-{RES}/size": "100", primary_key(RES): "a",
             f"resource-{RES}/data-a": "/dev/vg/r"})
    now = 1_800_000_000.0
    b.write({"ips/ip-b": "127.0.0.2",
             time_key("b"): str(now - 2 * 3600), alive_key("b"): "0"})     # stopped 2 h ago
    c.write({"ips/ip-c": "127.0.0.3", f"resource-{RES}/data-c": "/dev/vg/r"})
    exchange(a, b, c)
    a.record_peer_vector("b", b.vector())
    c.write({f"resource-{RES}/data-c": None})           # c leaves while b is away
    exchange(a, c)
    waited_for = peers_a_purge_waits_for(a.state(), TOMBSTONE_WAIT, now=now)
    assert "b" in waited_for and "c" not in waited_for      # (c never reported: gone)
    later = 3 * 3600 * 10 ** 9 + a.get(f"resource-{RES}/data-c").stamp
    assert a.purge_tombstones(3600 * 10 ** 9, waited_for, now_ns=later) == 0
    exchange(a, b)                                      # b is back: it learns of it
    a.record_peer_vector("b", b.vector())
    assert f"resource-{RES}/data-c" not in b.live_values(f"resource-{RES}/")
    assert a.purge_tombstones(3600 * 10 ** 9, waited_for, now_ns=later) == 1
    assert peers_a_purge_waits_for(a.state(), TOMBSTONE_WAIT, now=now + 8 * 24 * 3600) == []

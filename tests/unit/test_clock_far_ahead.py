"""A member whose clock runs far ahead: its stamps must not drag every
host's Lamport clock along, and its heartbeat must not keep it alive after
it died."""

import time

from mars import antientropy, net
from mars.keys import alive_key, time_key
from mars.store import MAX_STAMP_AHEAD_NS, Store
from tests.unit.conftest import FakeWall

DAY_NS = 24 * 3600 * 10**9
NOW_NS = 1_700_000_000 * 10**9


def test_a_tuple_stamped_far_ahead_of_this_hosts_clock_is_refused_and_moves_no_clock(tmp_path):
    """h2's clock is ten days ahead. Its tuple was stored and moved h1's
    clock there: h1's later writes lost to it, and h1's tombstones waited
    ten days for their purge. It is refused now (the others of the batch
    are taken), and taken once it is within the bound."""
    wall = FakeWall(NOW_NS)
    with Store(tmp_path / "h1.sqlite", "h1", wall=wall) as h1:
        changed = h1.apply([("resource-vm1/primary", "h2", NOW_NS + 10 * DAY_NS, "h2"),
                            ("ips/ip-h3", "10.0.0.3", NOW_NS - 5, "h3")], from_peer=True)
        assert [item.key for item in changed] == ["ips/ip-h3"]
        assert h1.value("resource-vm1/primary") == ""
        assert "h2" not in h1.vector()          # asked for again at the next pull
        (mine,) = h1.write({"resource-vm1/primary": "h1"})
        assert mine.stamp < NOW_NS + DAY_NS
        wall.now += 10 * DAY_NS - MAX_STAMP_AHEAD_NS // 2
        h1.apply([("resource-vm1/primary", "h2", NOW_NS + 10 * DAY_NS, "h2")], from_peer=True)
        assert h1.value("resource-vm1/primary") == "h2"


def test_a_peers_message_stamped_far_ahead_moves_no_clock(tmp_path):
    """Every message between peers carries a stamp the receiver observes
    (mars/net.py, through the store's clock)."""
    wall = FakeWall(NOW_NS)
    with Store(tmp_path / "h1.sqlite", "h1", wall=wall) as h1:
        h1.observe(NOW_NS + 10 * DAY_NS)
        h1.clock.observe(NOW_NS + 10 * DAY_NS)
        assert h1.clock.now() < NOW_NS + DAY_NS
        h1.observe(NOW_NS + 3600 * 10**9)       # within the bound: a Lamport clock as ever
        assert h1.clock.now() > NOW_NS + 3600 * 10**9


def test_a_store_whose_own_clock_is_ahead_keeps_its_stamps_increasing(tmp_path):
    """A host's own history never goes back in time, whatever the bound:
    its peers pull "everything after the newest stamp of it"."""
    path = tmp_path / "h1.sqlite"
    with Store(path, "h1", wall=FakeWall(NOW_NS + 10 * DAY_NS)) as before:
        (old,) = before.write({"resource-vm1/primary": "h1"})
    with Store(path, "h1", wall=FakeWall(NOW_NS)) as h1:
        (new,) = h1.write({"resource-vm1/primary": "(none)"})
    assert new.stamp > old.stamp


def test_a_dead_host_whose_clock_was_ahead_does_not_look_alive(tmp_path):
    """h2's clock is an hour ahead; it reported (time = its wall clock) and
    died. Its report was taken as it came: h2 counted as alive for an hour
    (`view-is-alive` 1), and a failover refused to take over from it. What a
    host reports of its time counts no later than when it arrived here."""
    now = time.time()
    with Store(tmp_path / "h1.sqlite", "h1") as h1:
        h1.write({"ips/ip-h1": "10.0.0.1"})
        stamp = time.time_ns() + 3600 * 10**9
        h1.apply([("ips/ip-h2", "10.0.0.2", stamp, "h2"),
                  (time_key("h2"), f"{now + 3600:.3f}", stamp, "h2"),
                  (alive_key("h2"), "1", stamp, "h2")], from_peer=True)
        state = h1.state()
        assert state.is_alive("h2", 60, now=time.time())
        assert not state.is_alive("h2", 60, now=time.time() + 120)


def test_a_report_of_a_host_whose_clock_is_right_is_kept_as_it_is(tmp_path):
    with Store(tmp_path / "h1.sqlite", "h1") as h1:
        reported = f"{time.time() - 30:.3f}"
        h1.apply([(time_key("h2"), reported, time.time_ns() - 30 * 10**9, "h2")], from_peer=True)
        assert h1.value(time_key("h2")) == reported


def test_a_push_from_a_peer_stamped_far_ahead_is_refused_and_the_rest_taken(tmp_path):
    """The server side of anti-entropy (a peer's push) goes the same way."""
    wall = FakeWall(NOW_NS)
    with Store(tmp_path / "h1.sqlite", "h1", wall=wall) as h1:
        payload = net.encode_tuples([("resource-vm1/primary", "h2", NOW_NS + 10 * DAY_NS, "h2"),
                                     ("ips/ip-h2", "10.0.0.2", NOW_NS, "h2")])
        reply, _ = antientropy.answer(h1, "h2", {"type": "push"}, payload)
        assert reply == {"type": "ok", "changed": 1}
        assert h1.value("ips/ip-h2") == "10.0.0.2"
        assert h1.clock.now() < NOW_NS + DAY_NS


def test_an_import_is_no_peer_and_keeps_its_stamps(tmp_path):
    """import-tree (and a test's direct apply) takes what it is given."""
    with Store(tmp_path / "h1.sqlite", "h1", wall=FakeWall(NOW_NS)) as h1:
        h1.apply([("resource-vm1/primary", "h2", NOW_NS + 10 * DAY_NS, "h2")])
        assert h1.value("resource-vm1/primary") == "h2"

"""A host's report of its time (`actual-<host>/time`, its liveness) counts
no later than it arrived (a dead host whose clock ran ahead looked alive).
The cap was written into the tuple on arrival, its stamp and origin kept:
a peer relays it so, and a relay whose clock was behind made the report of
a live host whose clock is right say "dead" at every host that had it from
there; the copies of one stamp differed from host to host, for ever. The
tuple is kept as its origin wrote it; the cap is each host's, where the
time is read."""

import time

from mars.keys import alive_key, time_key
from mars.store import Store
from tests.unit.conftest import FakeWall

MINUTE = 60


def heartbeat(now, stamp):
    return [(time_key("h2"), f"{now:.3f}", stamp, "h2"), (alive_key("h2"), "1", stamp, "h2")]


def test_a_live_hosts_report_relayed_by_a_host_whose_clock_is_behind_keeps_it_alive(tmp_path):
    now = time.time()
    stamp = time.time_ns()
    behind = FakeWall(time.time_ns() - 10 * MINUTE * 10**9)
    with Store(tmp_path / "h1.sqlite", "h1", wall=behind) as h1, \
            Store(tmp_path / "h3.sqlite", "h3") as h3:
        h1.apply(heartbeat(now, stamp), from_peer=True)     # h2's clock is right
        assert h1.state().is_alive("h2", 60, now=behind() / 1e9)     # h1's own view
        relayed = h1.changes_since({})
        h3.apply(relayed, from_peer=True)                   # h3 has it from h1
        assert h3.state().is_alive("h2", 60, now=time.time())
        assert h1.tuples() == h3.tuples()                   # one tuple, the same everywhere
        assert h3.value(time_key("h2")) == f"{now:.3f}"


def test_a_dead_hosts_report_from_a_clock_ahead_counts_from_its_arrival_at_each_host(tmp_path):
    now = time.time()
    ahead = time.time_ns() + 3600 * 10**9
    with Store(tmp_path / "h1.sqlite", "h1") as h1, Store(tmp_path / "h3.sqlite", "h3") as h3:
        h1.apply(heartbeat(now + 3600, ahead), from_peer=True)
        h3.apply(h1.changes_since({}), from_peer=True)
        for store in (h1, h3):
            state = store.state()
            assert state.is_alive("h2", 60, now=time.time())
            assert not state.is_alive("h2", 60, now=time.time() + 120)
            assert float(store.live_values("actual-")[time_key("h2")]) <= time.time()
        # its next report, from a clock set right: as it says
        h1.apply(heartbeat(time.time(), ahead + 1), from_peer=True)
        assert h1.live_values()[time_key("h2")] == h1.value(time_key("h2"))


def test_the_cap_is_kept_across_a_reopening_of_the_store(tmp_path):
    """marsadm (`view-is-alive`) reads the store marsd wrote."""
    now = time.time()
    with Store(tmp_path / "h1.sqlite", "h1") as h1:
        h1.apply(heartbeat(now + 3600, time.time_ns() + 3600 * 10**9), from_peer=True)
    with Store(tmp_path / "h1.sqlite", "h1") as again:
        assert not again.state().is_alive("h2", 60, now=time.time() + 120)

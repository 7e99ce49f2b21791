"""Control-plane review: the Lamport clock against a stamp from a bad peer."""

import pytest

from mars.lamport import MAX_STAMP
from mars.store import Store
from tests.unit.conftest import FakeWall


def test_a_stamp_the_clock_does_not_observe_does_not_split_one_hosts_history(tmp_path):
    """A peer's tuple stamped at or past the clock's end (lamport.MAX_STAMP,
    the year 2116) is no stamp: the running clock ignores it. It was stored
    all the same, and went into the persisted clock, so the next process to
    open the store (every marsadm) started from there while marsd went on
    at the wall clock: the peers' vector of this host jumped past every
    stamp marsd wrote after it, and they never pulled marsd's writes again.
    Such a tuple is refused now, like one SQLite cannot hold."""
    wall = FakeWall(10**18)
    h1_db, h2_db = tmp_path / "h1.sqlite", tmp_path / "h2.sqlite"
    with Store(h1_db, "h1", wall=wall) as marsd, Store(h2_db, "h2", wall=wall) as h2:
        h2.apply([("ips/ip-h1", "10.0.0.1", 1, "h1")])
        with pytest.raises(ValueError, match="malformed tuple"):
            marsd.apply([("resource-vm1/size", "4096", MAX_STAMP + 5, "h3")])
        with Store(h1_db, "h1", wall=wall) as marsadm:
            marsadm.write({"resource-vm1/todo-h1/attach": "0"})
        h2.apply(marsd.changes_since(h2.vector()))
        wall.now += 1000
        marsd.write({"resource-vm1/replay-h1": "log-000000001-h1,0,0"})
        h2.apply(marsd.changes_since(h2.vector()))
        assert h2.value("resource-vm1/replay-h1") == "log-000000001-h1,0,0"
        assert h2.value("resource-vm1/todo-h1/attach") == "0"


def test_the_largest_stamp_the_clock_observes_is_still_taken(tmp_path):
    with Store(tmp_path / "h1.sqlite", "h1", wall=FakeWall(10)) as h1:
        (item,) = h1.apply([("resource-vm1/size", "4096", MAX_STAMP - 1, "h3")])
        assert h1.clock.last == MAX_STAMP - 1

"""After a split, a host refuses the other piece's tuples for a while; merge lifts it."""

import pytest

from mars.cluster import apply_split
from mars.store import Store


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "metadata.sqlite", "a1") as opened:
        opened.apply([("ips/ip-a1", "127.0.0.1", 10, "a1"), ("ips/ip-a2", "127.0.0.2", 11, "a2"),
                      ("ips/ip-b1", "127.0.0.3", 12, "b1"),
                      ("resource-r1/size", "4096", 13, "a1"), ("resource-r1/data-a1", "/d", 13, "a1"),
                      ("resource-r2/size", "4096", 14, "b1"), ("resource-r2/data-b1", "/d", 14, "b1")])
        yield opened


PIECES = [{"hosts": ["a1", "a2"], "resources": ["r1"], "uuid": "u-a"},
          {"hosts": ["b1"], "resources": ["r2"], "uuid": "u-b"}]


def test_tuples_of_the_other_piece_relayed_after_a_split_are_refused(store):
    apply_split(store, PIECES)
    relayed = [("ips/ip-b1", "127.0.0.3", 12, "b1"), ("resource-r2/size", "4096", 14, "b1"),
               ("actual-b1/time", "1.0", 20, "b1"), ("resource-r1/primary", "a2", 21, "a2")]
    changed = store.apply(relayed)
    assert [item.key for item in changed] == ["resource-r1/primary"]
    assert store.state().cluster_hosts() == ["a1", "a2"]
    assert store.state().all_resources() == ["r1"]


def test_the_other_pieces_cluster_id_relayed_after_a_split_is_refused(store):
    apply_split(store, PIECES)
    assert store.apply([("uuid", "u-b", 4 * 10**18, "b1")]) == []
    assert store.value("uuid") == "u-a"


def test_a_new_cluster_id_from_a_merge_lifts_the_exclusion(store):
    apply_split(store, PIECES)
    store.apply([("uuid", "u-merged", 4 * 10**18, "a2")])
    assert store.exclusions() == (set(), set(), set())
    store.apply([("ips/ip-b1", "127.0.0.3", 4 * 10**18 + 1, "b1")])
    assert store.state().cluster_hosts() == ["a1", "a2", "b1"]


def test_an_exclusion_expires(store):
    store.exclude({"b1"}, {"r2"}, {"u-b"}, seconds=-1, cluster_id=store.value("uuid"))
    assert store.exclusions() == (set(), set(), set())
    assert store.apply([("actual-b1/time", "2.0", 30, "b1")])


def test_unexclude_admits_the_hosts_and_resources_again(store):
    apply_split(store, PIECES)
    store.unexclude({"b1"}, {"r2"})
    store.apply([("ips/ip-b1", "127.0.0.3", 40, "b1"), ("resource-r2/size", "4096", 41, "b1")])
    assert store.state().cluster_hosts() == ["a1", "a2", "b1"]
    assert store.state().all_resources() == ["r1", "r2"]


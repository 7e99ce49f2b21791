"""Split planning: hosts connected by shared resources stay together."""

import pytest

from mars.cluster import Cluster, apply_split
from mars.hostenv import HostEnv
from mars.store import Store


def cluster_of(tmp_path, tuples, host="h1"):
    """A Cluster of `host` over a store holding `tuples` (key, value, origin)."""
    store = Store(tmp_path / f"{host}.sqlite", host)
    store.apply([(key, value, 1000 + index, origin)
                 for index, (key, value, origin) in enumerate(tuples)])
    return Cluster(HostEnv(host=host, root=tmp_path), store), store


def hosts(*names):
    return [(f"ips/ip-{name}", f"10.0.0.{index + 1}", name) for index, name in enumerate(names)]


def resource(res, *members):
    return [(f"resource-{res}/size", "4096", members[0] if members else "h1")] + [
        (f"resource-{res}/data-{member}", f"/dev/vg/{res}", member) for member in members]


def plan(cluster, store):
    return [(piece["hosts"], piece["resources"]) for piece in cluster.pieces(store.state())]


@pytest.fixture
def three_pieces(tmp_path):
    cluster, store = cluster_of(tmp_path, [("uuid", "old-uuid", "h1")]
                                + hosts("h1", "h2", "h3", "h4", "h5")
                                + resource("vm1", "h1", "h2") + resource("vm2", "h3", "h4")
                                + resource("vm3", "h4"))
    yield cluster, store
    store.close()


def test_pieces_group_hosts_connected_by_shared_resources(three_pieces):
    cluster, store = three_pieces
    assert plan(cluster, store) == [
        (["h1", "h2"], ["vm1"]),
        (["h3", "h4"], ["vm2", "vm3"]),
        (["h5"], []),
    ]


def test_pieces_follow_chains_of_shared_resources(tmp_path):
    cluster, store = cluster_of(tmp_path, hosts("h1", "h2", "h3", "h4")
                                + resource("vm1", "h1", "h2") + resource("vm2", "h2", "h3")
                                + resource("vm3", "h4", "h3"))
    assert plan(cluster, store) == [(["h1", "h2", "h3", "h4"], ["vm1", "vm2", "vm3"])]


def test_the_local_piece_keeps_the_cluster_uuid_and_the_others_get_new_ones(three_pieces):
    cluster, store = three_pieces
    uuids = [piece["uuid"] for piece in cluster.pieces(store.state())]
    assert uuids[0] == "old-uuid"
    assert len(set(uuids)) == 3


def test_a_resource_without_members_stays_with_the_local_host(tmp_path):
    cluster, store = cluster_of(tmp_path, hosts("h1", "h2", "h3")
                                + resource("vm1", "h2", "h3") + resource("orphan"), host="h1")
    assert plan(cluster, store) == [(["h1"], ["orphan"]), (["h2", "h3"], ["vm1"])]


def test_members_that_are_no_longer_cluster_hosts_are_ignored(tmp_path):
    cluster, store = cluster_of(tmp_path, hosts("h1", "h2")
                                + resource("vm1", "h1", "h9") + resource("vm2", "h2"))
    assert plan(cluster, store) == [(["h1"], ["vm1"]), (["h2"], ["vm2"])]


def test_apply_split_forgets_other_pieces_hosts_and_resources(three_pieces):
    cluster, store = three_pieces
    pieces = cluster.pieces(store.state())
    apply_split(store, pieces)
    state = store.state()
    assert state.cluster_hosts() == ["h1", "h2"]
    assert state.all_resources() == ["vm1"]
    assert store.value("uuid") == "old-uuid"
    assert set(store.vector()) <= {"h1", "h2"}
    assert not any(item.key.startswith("resource-vm2/") for item in store.tuples())


def test_apply_split_on_a_host_of_another_piece_takes_that_pieces_uuid(three_pieces, tmp_path):
    cluster, store = three_pieces
    pieces = cluster.pieces(store.state())
    with Store(tmp_path / "h3.sqlite", "h3") as h3_store:
        h3_store.apply(store.changes_since({}))
        apply_split(h3_store, pieces)
        assert h3_store.state().cluster_hosts() == ["h3", "h4"]
        assert h3_store.state().all_resources() == ["vm2", "vm3"]
        assert h3_store.value("uuid") == pieces[1]["uuid"] != "old-uuid"


def test_split_cluster_dry_run_names_the_pieces_and_changes_nothing(h1):
    h1.peer_apply([
        ("ips/ip-h2", "127.0.0.2", "h2"), ("ips/ip-h3", "127.0.0.3", "h3"),
        ("ips/ip-h4", "127.0.0.4", "h4"),
        ("resource-vm1/size", "4096", "h2"), ("resource-vm1/data-h2", "/d", "h2"),
        ("resource-vm1/data-h1", "/d", "h1"),
        ("resource-vm2/size", "4096", "h3"), ("resource-vm2/data-h3", "/d", "h3"),
        ("resource-vm2/data-h4", "/d", "h4")])
    before = h1.tuples()
    assert h1.ok("--dry-run", "split-cluster") == (
        "would form cluster h1 h2\nwould form cluster h3 h4\n")
    assert h1.tuples() == before


def test_split_cluster_of_one_piece_has_nothing_to_do(scenario):
    before = scenario.host.tuples()
    out = scenario.host.ok("split-cluster")
    assert out == "every host shares resources with the others; nothing to split\n"
    assert scenario.host.tuples() == before


# Regression: forget() dropped the vector row of an origin whose shared tuples
# stay, and changes_since() walks the vector, so they were never served again.
def test_after_a_split_a_fresh_peer_pulls_everything_the_piece_kept(tmp_path):
    # h3 created vm1 and set it up, then handed it to h1 and h2 and left it.
    cluster, store = cluster_of(tmp_path, hosts("h1", "h2", "h3") + [
        ("resource-vm1/size", "4096", "h3"), ("resource-vm1/primary", "h1", "h3"),
        ("resource-vm1/data-h1", "/dev/vg/vm1", "h1"),
        ("resource-vm1/data-h2", "/dev/vg/vm1", "h2")])
    apply_split(store, cluster.pieces(store.state()))
    assert store.state().all_resources() == ["vm1"]
    with Store(tmp_path / "h4.sqlite", "h4") as newcomer:
        newcomer.apply(store.changes_since({}))
        assert newcomer.live_values() == store.live_values()
    store.close()


# Regression: the shared tuples of vm1 that h3 wrote kept h3's vector row
# after the split, although h3's own keys were dropped; merging h3 back then
# never sent `ips/ip-h3` (older than that row), and the piece never saw h3
# again (football migrates vm1 away from h3's cluster and back).
def test_after_a_split_a_merge_with_a_host_of_another_piece_sends_all_of_its_keys(tmp_path):
    cluster, store = cluster_of(tmp_path, hosts("h1", "h2", "h3") + [
        ("resource-vm1/size", "4096", "h3"), ("resource-vm1/primary", "h1", "h3"),
        ("resource-vm1/data-h1", "/dev/vg/vm1", "h1"),
        ("resource-vm1/data-h2", "/dev/vg/vm1", "h2")])
    with Store(tmp_path / "h3.sqlite", "h3") as h3_store:
        h3_store.apply(store.changes_since({}))
        pieces = cluster.pieces(store.state())
        apply_split(store, pieces)
        apply_split(h3_store, pieces)

        assert "h3" not in store.vector()
        assert {item.origin for item in store.tuples()} <= {"h1", "h2"}
        assert store.live_values()["resource-vm1/size"] == "4096"
        assert store.live_values()["resource-vm1/primary"] == "h1"
        pushed = {item.key for item in h3_store.changes_since(store.vector())}
        assert "ips/ip-h3" in pushed
    store.close()

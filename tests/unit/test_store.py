"""The metadata store: last writer wins, ownership, tombstones, vectors, clock."""

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mars.errors import MarsError
from mars.keys import DELETED
from mars.store import MetaTuple, NotAMember, Store
from tests.unit.conftest import FakeWall


@pytest.fixture
def wall():
    return FakeWall(1_000_000)


@pytest.fixture
def db(tmp_path):
    return tmp_path / "metadata.sqlite"


@pytest.fixture
def store(db, wall):
    with Store(db, "h1", wall=wall) as opened:
        yield opened


# ------------------------------------------------------------ last writer wins
def test_last_writer_wins_by_stamp_then_origin(store):
    store.apply([("resource-vm1/primary", "h2", 100, "h2")])
    store.apply([("resource-vm1/primary", "h3", 200, "h3")])
    assert store.get("resource-vm1/primary") == MetaTuple("resource-vm1/primary", "h3", 200, "h3")


def test_older_tuple_does_not_overwrite_newer(store):
    store.apply([("resource-vm1/primary", "h3", 200, "h3")])
    changed = store.apply([("resource-vm1/primary", "h2", 100, "h2")])
    assert changed == []
    assert store.value("resource-vm1/primary") == "h3"


@pytest.mark.parametrize("order", [("h2", "h3"), ("h3", "h2")])
def test_equal_stamps_are_broken_by_origin_whatever_the_arrival_order(store, order):
    for origin in order:
        store.apply([("resource-vm1/primary", f"from-{origin}", 500, origin)])
    assert store.get("resource-vm1/primary") == MetaTuple(
        "resource-vm1/primary", "from-h3", 500, "h3")


def test_reapplying_the_same_tuple_changes_nothing(store):
    item = ("uuid", "u-1", 100, "h2")
    assert store.apply([item]) == [MetaTuple(*item)]
    assert store.apply([item]) == []


def test_a_local_write_beats_what_peers_sent_before(store, wall):
    store.apply([("resource-vm1/primary", "h2", 5_000_000, "h2")])
    wall.now = 1                      # even with a wall clock far behind
    (written,) = store.write({"resource-vm1/primary": "h1"})
    assert written.stamp > 5_000_000
    assert store.value("resource-vm1/primary") == "h1"


@settings(max_examples=60, deadline=None)
@given(st.permutations([
    ("resource-vm1/primary", "h1", 10, "h1"),
    ("resource-vm1/primary", "h2", 10, "h2"),
    ("resource-vm1/primary", DELETED, 30, "h3"),
    ("resource-vm1/primary", "h3", 20, "h3"),
    ("resource-vm1/size", "1024", 15, "h2"),
    ("resource-vm1/size", "2048", 12, "h3"),
]))
def test_any_arrival_order_converges_to_the_same_tuples(items):
    with Store(":memory:", "h9") as one_by_one, Store(":memory:", "h9") as batch:
        for item in items:
            one_by_one.apply([item])
        batch.apply(items)
        expected = [MetaTuple("resource-vm1/primary", DELETED, 30, "h3"),
                    MetaTuple("resource-vm1/size", "1024", 15, "h2")]
        assert one_by_one.tuples() == batch.tuples() == expected


# ------------------------------------------------------------------ ownership
def test_write_of_a_key_owned_by_another_host_raises_and_writes_nothing(store):
    with pytest.raises(MarsError, match="belongs to host h2"):
        store.write({"uuid": "u-1", "ips/ip-h2": "10.0.0.2"})
    assert store.tuples() == []
    assert store.vector() == {}


def test_write_of_own_and_shared_keys_is_allowed(store):
    written = store.write({"ips/ip-h1": "10.0.0.1", "resource-vm1/size": "4096"})
    assert {item.key for item in written} == {"ips/ip-h1", "resource-vm1/size"}
    assert {item.origin for item in written} == {"h1"}


def test_apply_rejects_a_tuple_whose_origin_is_not_the_owner_and_applies_none_of_the_batch(store):
    with pytest.raises(ValueError, match="belongs to host h2"):
        store.apply([
            ("uuid", "u-1", 100, "h3"),
            ("ips/ip-h3", "10.0.0.3", 101, "h3"),
            ("resource-vm1/data-h2", "/dev/vg/vm1", 102, "h3"),
        ])
    assert store.tuples() == []
    assert store.vector() == {}


@pytest.mark.parametrize("item", [
    ("", "v", 1, "h2"),
    ("/etc/passwd", "v", 1, "h2"),
    ("resource-vm1/../../x", "v", 1, "h2"),
    ("uuid", "a\nb", 1, "h2"),
    ("uuid", "v" * 5000, 1, "h2"),
    ("uuid", "v", "1", "h2"),
    ("uuid", None, 1, "h2"),
])
def test_apply_rejects_malformed_tuples(store, item):
    with pytest.raises(ValueError):
        store.apply([("ips/ip-h2", "10.0.0.2", 1, "h2"), item])
    assert store.tuples() == []


# ------------------------------------------------------------------ tombstones
def test_delete_writes_a_tombstone_that_live_values_hide_and_changes_since_returns(store):
    store.write({"resource-vm1/size": "4096", "resource-vm1/primary": "h1"})
    (tombstone,) = store.delete(["resource-vm1/size"])
    assert tombstone.value == DELETED
    assert store.get("resource-vm1/size").deleted
    assert store.value("resource-vm1/size") == ""
    assert store.live_values() == {"resource-vm1/primary": "h1"}
    assert "resource-vm1/size" not in store.state().values
    assert tombstone in store.changes_since({})
    assert store.tuples(include_tombstones=False) == [store.get("resource-vm1/primary")]


def test_write_skips_unchanged_values(store):
    first = store.write({"uuid": "u-1", "resource-vm1/size": "4096"})
    again = store.write({"uuid": "u-1", "resource-vm1/size": "8192"})
    assert [item.key for item in again] == ["resource-vm1/size"]
    assert store.get("uuid") == first[0]
    assert store.write({"uuid": "u-1"}) == []


def test_write_skips_deletion_of_absent_and_already_deleted_keys(store):
    assert store.delete(["resource-vm1/size"]) == []
    assert store.tuples() == []
    store.write({"uuid": "u-1"})
    (tombstone,) = store.delete(["uuid"])
    assert store.delete(["uuid"]) == []
    assert store.get("uuid") == tombstone


def test_write_gives_every_tuple_of_one_call_the_same_fresh_stamp(store):
    written = store.write({"uuid": "u-1", "resource-vm1/size": "1", "ips/ip-h1": "10.0.0.1"})
    assert len({item.stamp for item in written}) == 1
    later = store.write({"uuid": "u-2"})
    assert later[0].stamp > written[0].stamp


def test_a_deleted_key_can_be_written_again(store):
    store.write({"uuid": "u-1"})
    store.delete(["uuid"])
    store.write({"uuid": "u-1"})
    assert store.value("uuid") == "u-1"


def test_tombstone_from_a_peer_is_not_resurrected_by_an_older_value_from_another_peer(store):
    store.apply([("resource-vm1/size", "4096", 100, "h2")])
    store.apply([("resource-vm1/size", DELETED, 300, "h2")])
    changed = store.apply([("resource-vm1/size", "4096", 200, "h3")])
    assert changed == []
    assert store.value("resource-vm1/size") == ""
    assert "vm1" not in store.state().resources()


# ----------------------------------------------------------- vectors and pulls
def test_vector_tracks_the_newest_stamp_per_origin(store, wall):
    store.apply([("ips/ip-h2", "10.0.0.2", 100, "h2"), ("ips/ip-h3", "10.0.0.3", 90, "h3")])
    store.apply([("actual-h2/time", "1", 150, "h2")])
    store.apply([("resource-vm1/size", "1", 120, "h2")])   # older than 150: vector stays
    wall.now = 5_000_000
    (mine,) = store.write({"uuid": "u-1"})
    assert store.vector() == {"h1": mine.stamp, "h2": 150, "h3": 90}


def test_changes_since_a_vector_returns_only_newer_tuples_oldest_first(store):
    store.apply([("ips/ip-h2", "a", 100, "h2"), ("actual-h2/time", "b", 200, "h2"),
                 ("ips/ip-h3", "c", 150, "h3"), ("actual-h3/time", "d", 250, "h3")])
    assert [item.stamp for item in store.changes_since({})] == [100, 150, 200, 250]
    newer = store.changes_since({"h2": 100, "h3": 250})
    assert newer == [MetaTuple("actual-h2/time", "b", 200, "h2")]
    assert store.changes_since(store.vector()) == []


def test_a_peer_pulling_with_its_vector_converges(tmp_path, store):
    store.write({"uuid": "u-1", "ips/ip-h1": "10.0.0.1"})
    store.apply([("ips/ip-h2", "10.0.0.2", 100, "h2")])
    with Store(tmp_path / "peer.sqlite", "h3") as peer:
        peer.apply(store.changes_since(peer.vector()))
        store.write({"resource-vm1/size": "4096"})
        store.delete(["uuid"])
        peer.apply(store.changes_since(peer.vector()))
        assert peer.tuples() == store.tuples()
        assert peer.vector() == store.vector()


# ----------------------------------------------------------- tombstone purging
@pytest.fixture
def tombstone(store, wall):
    wall.now = 1_000_000
    store.write({"resource-vm1/size": "4096", "uuid": "u-1"})
    wall.now = 2_000_000
    (item,) = store.delete(["resource-vm1/size"])
    return item


def test_tombstone_is_not_purged_before_the_retention_time(store, tombstone):
    store.record_peer_vector("h2", {"h1": tombstone.stamp})
    assert store.purge_tombstones(1_000, ["h2"], now_ns=tombstone.stamp + 1_000) == 0
    assert store.get("resource-vm1/size") == tombstone


def test_tombstone_is_not_purged_until_every_live_peer_has_seen_it(store, tombstone):
    later = tombstone.stamp + 10**9
    assert store.purge_tombstones(1_000, ["h2", "h3"], now_ns=later) == 0
    store.record_peer_vector("h2", {"h1": tombstone.stamp})
    store.record_peer_vector("h3", {"h1": tombstone.stamp - 1, "h2": 10**15})
    assert store.purge_tombstones(1_000, ["h2", "h3"], now_ns=later) == 0
    assert store.get("resource-vm1/size") == tombstone
    store.record_peer_vector("h3", {"h1": tombstone.stamp})
    assert store.purge_tombstones(1_000, ["h2", "h3"], now_ns=later) == 1
    assert store.get("resource-vm1/size") is None
    assert store.value("uuid") == "u-1"          # live tuples are never purged


def test_peers_not_listed_as_live_do_not_block_purging(store, tombstone):
    store.record_peer_vector("h2", {"h1": tombstone.stamp})
    assert store.purge_tombstones(0, ["h2"], now_ns=tombstone.stamp + 1) == 1


def test_recording_an_older_peer_vector_does_not_lower_what_it_has_seen(store, tombstone):
    store.record_peer_vector("h2", {"h1": tombstone.stamp})
    store.record_peer_vector("h2", {"h1": 5})
    assert store.purge_tombstones(0, ["h2"], now_ns=tombstone.stamp + 1) == 1


def test_a_tombstone_rewritten_with_a_value_is_not_purged(store, tombstone, wall):
    store.record_peer_vector("h2", {"h1": 10**18})
    wall.now = 3_000_000
    store.write({"resource-vm1/size": "8192"})
    assert store.purge_tombstones(0, ["h2"], now_ns=10**18) == 0
    assert store.value("resource-vm1/size") == "8192"


# ---------------------------------------------------------------- the clock
def test_stamps_of_one_origin_strictly_increase_across_two_store_objects_on_one_file(db):
    frozen = FakeWall(42)     # both processes see the same, standing wall clock
    with Store(db, "h1", wall=frozen) as marsd, Store(db, "h1", wall=frozen) as marsadm:
        stamps = []
        for round_ in range(5):
            stamps += [item.stamp for item in marsd.write({"actual-h1/time": str(round_)})]
            stamps += [item.stamp for item in marsadm.write({"uuid": f"u-{round_}"})]
        assert stamps == sorted(set(stamps))
        assert marsd.vector() == {"h1": stamps[-1]}
        assert [item.stamp for item in marsd.changes_since({"h1": stamps[-2]})] == [stamps[-1]]


def test_clock_is_persisted_across_reopen_even_when_the_wall_clock_went_back(db):
    with Store(db, "h1", wall=FakeWall(10**15)) as before:
        (old,) = before.write({"uuid": "u-1"})
    with Store(db, "h1", wall=FakeWall(10)) as after:
        (new,) = after.write({"uuid": "u-2"})
        assert after.value("uuid") == "u-2"
    assert new.stamp > old.stamp


def test_stamps_applied_from_peers_advance_the_persisted_clock(db):
    with Store(db, "h1", wall=FakeWall(10)) as first:
        first.apply([("ips/ip-h2", "10.0.0.2", 10**17, "h2")])
    with Store(db, "h1", wall=FakeWall(10)) as reopened:
        (item,) = reopened.write({"resource-vm1/primary": "h1"})
    assert item.stamp > 10**17


def test_dry_run_write_returns_would_be_tuples_and_changes_nothing(store):
    preview = store.write({"uuid": "u-1", "resource-vm1/size": None}, dry_run=True)
    assert [(item.key, item.value) for item in preview] == [
        ("uuid", "u-1"), ("resource-vm1/size", DELETED)]
    assert store.tuples() == []
    with pytest.raises(MarsError):
        store.write({"ips/ip-h2": "x"}, dry_run=True)


def test_apply_from_a_sender_that_is_not_a_member_is_refused_and_changes_nothing(store):
    store.apply([("ips/ip-h2", "10.0.0.2", 100, "h2")])
    with pytest.raises(NotAMember, match="host h3 is not a member"):
        store.apply([("resource-vm1/size", "1", 200, "h3")], sender="h3")
    store.apply([("ips/ip-h2", DELETED, 150, "h2")])          # h2 left
    with pytest.raises(NotAMember):
        store.apply([("resource-vm1/size", "1", 200, "h2")], sender="h2")
    assert store.value("resource-vm1/size") == ""
    assert store.vector() == {"h2": 150}


def test_apply_from_a_member_sender_relays_other_origins_tuples(store):
    store.apply([("ips/ip-h2", "10.0.0.2", 100, "h2")])
    changed = store.apply([("ips/ip-h3", "10.0.0.3", 120, "h3")], sender="h2")
    assert changed == [MetaTuple("ips/ip-h3", "10.0.0.3", 120, "h3")]


def test_forget_keeps_the_vector_of_an_origin_whose_shared_tuples_stay(store):
    store.apply([("ips/ip-h3", "10.0.0.3", 100, "h3"), ("resource-vm1/size", "1", 110, "h3")])
    store.forget(["ips/ip-h3"], origins=["h3"])
    assert store.vector() == {"h3": 110}
    assert store.changes_since({}) == [MetaTuple("resource-vm1/size", "1", 110, "h3")]


def test_forget_drops_tuples_without_tombstones_and_the_origins_vectors(store):
    store.apply([("ips/ip-h2", "10.0.0.2", 100, "h2"), ("ips/ip-h3", "10.0.0.3", 100, "h3")])
    store.record_peer_vector("h2", {"h3": 100})
    store.forget(["ips/ip-h2"], origins=["h2"])
    assert [item.key for item in store.tuples()] == ["ips/ip-h3"]
    assert store.vector() == {"h3": 100}


# ------------------------------------------------------------ regressions
# A tuple peers refuse must not be written locally either: apply() refuses the
# whole batch, so one such tuple would stop everything from this host replicating.
MALFORMED_LOCAL_WRITES = [
    {"resource-vm1\n/size": "4096"},
    {"resource-vm1/systemd-start-unit": "vm1.service\n"},
    {"resource-vm1/systemd-want": "h" * 5000},
    {"/resource-vm1/size": "1"},
]


@pytest.mark.parametrize("changes", MALFORMED_LOCAL_WRITES)
def test_write_refuses_a_tuple_peers_would_refuse_and_writes_nothing(store, changes):
    with pytest.raises(MarsError, match="malformed"):
        store.write({"uuid": "u-1", **changes})
    assert store.tuples() == []


@pytest.mark.parametrize("changes", MALFORMED_LOCAL_WRITES)
def test_whatever_a_store_accepts_locally_a_peer_can_apply(tmp_path, store, changes):
    store.write({"uuid": "u-1", "ips/ip-h1": "10.0.0.1"})
    try:
        store.write(changes)
    except MarsError:
        pass                                    # refusing it is fine
    with Store(tmp_path / "peer.sqlite", "h2") as peer:
        peer.apply(store.changes_since({}))     # must not raise
        assert peer.value("ips/ip-h1") == "10.0.0.1"


# Regression (race): purge selects, then deletes in a later transaction; a
# tombstone rewritten in between by marsadm is newer than what peers have seen.
def test_purge_never_removes_a_tombstone_newer_than_what_the_peers_have_seen(
        db, store, tombstone, wall, monkeypatch):
    store.record_peer_vector("h2", {"h1": tombstone.stamp})
    other = Store(db, "h1", wall=wall)                  # a concurrent marsadm
    transaction = store._transaction

    @contextlib.contextmanager
    def marsadm_writes_between_select_and_delete():
        wall.now = 3_000_000
        other.write({"resource-vm1/size": "8192"})
        wall.now = 4_000_000
        other.delete(["resource-vm1/size"])
        with transaction():
            yield

    monkeypatch.setattr(store, "_transaction", marsadm_writes_between_select_and_delete)
    try:
        store.purge_tombstones(0, ["h2"], now_ns=10**18)
    finally:
        monkeypatch.undo()
        other.close()
    newest = store.get("resource-vm1/size")
    assert newest is not None and newest.stamp > tombstone.stamp


def test_a_stamp_beyond_what_sqlite_holds_is_refused_as_malformed(store):
    with pytest.raises(ValueError, match="malformed"):
        store.apply([("actual-a2/time", "1.0", 1 << 63, "a2")])


# ------------------------------------------------------ what changed (marsd's wake-ups)
def test_a_commit_that_changed_rows_calls_on_commit_and_counts_a_generation(db):
    commits = []
    with Store(db, "h1", on_commit=lambda: commits.append(1)) as store:
        first = store.generation()
        store.write({"resource-vm1/size": "8192"})
        assert (len(commits), store.generation() != first) == (1, True)
        second = store.generation()
        store.write({"resource-vm1/size": "8192"})        # unchanged: no commit counted
        store.delete(["resource-vm9/size"])               # absent: nothing to delete
        assert (len(commits), store.generation()) == (1, second)


def test_the_keys_a_connection_changed_are_taken_once(store):
    store.write({"resource-vm1/size": "8192", "resource-vm1/primary": "h1"})
    store.apply([("resource-vm2/data-h2", "/dev/x", 10**18, "h2")])
    assert store.take_touched() == {"resource-vm1/size", "resource-vm1/primary",
                                    "resource-vm2/data-h2"}
    assert store.take_touched() == set()
    store.forget(["resource-vm2/data-h2"])
    assert store.take_touched() is None                 # not recorded by key: look at all


def test_another_connections_write_shows_in_the_generation_and_the_stamps(db):
    with Store(db, "h1") as marsd, Store(db, "h1") as marsadm:
        before, stamps = marsd.generation(), marsd.stamps()
        marsadm.write({"resource-vm1/todo-h1/attach": "0"})
        assert marsd.generation()[1] != before[1]
        assert marsd.take_touched() == set()             # not this connection's write
        assert set(marsd.stamps()) - set(stamps) == {"resource-vm1/todo-h1/attach"}


def test_live_keys_are_the_keys_between_prefix_and_suffix_without_tombstones(store):
    store.write({"resource-vm1/data-h1": "/d1", "resource-vm2/data-h1": "/d2",
                 "resource-vm3/size": "1", "resource-vm1/device-h1": "/dev/loop1"})
    store.delete(["resource-vm2/data-h1"])
    assert store.live_keys("resource-", "/data-h1") == ["resource-vm1/data-h1"]


def test_a_write_without_fsync_leaves_later_writes_fsynced_also_when_it_fails(store):
    synchronous = lambda: store.db.execute("PRAGMA synchronous").fetchone()[0]   # noqa: E731
    full = synchronous()
    assert full == 2                                # FULL: every commit fsync'ed
    store.write({"actual-h1/time": "1.0"}, durable=False)
    assert store.value("actual-h1/time") == "1.0" and synchronous() == full
    with pytest.raises(NotAMember):                 # h2 is no member: refused, rolled back
        store.apply([("actual-h2/time", "2.0", (1 << 62) - 1, "h2")], durable=False, sender="h2")
    assert store.value("actual-h2/time") == "" and synchronous() == full


# ------------------------------------------- writing for a host that is gone
def test_what_a_survivor_writes_for_a_dead_host_reaches_it_when_it_comes_back(tmp_path, wall):
    """`marsadm --host=h2 leave-resource --force vm1` on h1 (h2 is dead)
    tombstones h2's keys on h1. Written under h2's own origin, they claimed
    to be h2's newest history: h2, back and writing (its liveness, every
    round) before it pulled, never asked for them (its vector of itself was
    newer) and kept its replica, which h1 had dropped; and h1 never asked h2
    for what h2 wrote, unseen, before the tombstone's stamp."""
    with Store(tmp_path / "h1.sqlite", "h1", wall=wall) as h1, \
            Store(tmp_path / "h2.sqlite", "h2", wall=wall) as h2:
        wall.now = 1_000
        h2.write({"resource-vm1/data-h2": "/dev/vg0/vm1"})
        h1.apply(h2.changes_since(h1.vector()))
        wall.now = 2_000
        h2.write({"resource-vm1/version-1-h2": "digest"})     # h1 does not get it: h2 "dies"
        wall.now = 3_000
        with Store(tmp_path / "h1.sqlite", "h2", wall=wall, writer="h1") as as_h2:
            (tombstone,) = as_h2.delete(["resource-vm1/data-h2"])
        assert tombstone.origin == "h2@h1"
        wall.now = 4_000
        h2.write({"actual-h2/time": "4000"})                  # h2 is back
        h2.apply(h1.changes_since(h2.vector()))
        h1.apply(h2.changes_since(h1.vector()))
        assert h2.get("resource-vm1/data-h2").deleted, "h2 learnt its replica was dropped"
        assert h1.value("resource-vm1/version-1-h2") == "digest", "h1 got what h2 wrote before"
        assert h1.value("actual-h2/time") == "4000"


def test_a_write_for_another_host_is_labelled_and_still_only_of_that_hosts_keys(tmp_path, wall):
    with Store(tmp_path / "h1.sqlite", "h2", wall=wall, writer="h1") as as_h2:
        with pytest.raises(MarsError, match="belongs to host h1"):
            as_h2.write({"resource-vm1/data-h1": "x"})
        (item,) = as_h2.write({"resource-vm1/todo-h2/attach": "0"})
    with Store(tmp_path / "h3.sqlite", "h3", wall=wall) as h3:
        assert h3.apply([item]) == [item]
        with pytest.raises(ValueError, match="not to origin"):
            h3.apply([("resource-vm1/data-h1", "x", 5_000, "h2@h1")])


def test_forgetting_an_origin_forgets_what_others_wrote_for_it(tmp_path, wall):
    """A split drops h2: what h1 wrote for it (`h2@h1`) goes too, vector
    row included."""
    with Store(tmp_path / "h1.sqlite", "h2", wall=wall, writer="h1") as as_h2:
        as_h2.write({"resource-vm1/todo-h2/attach": "0"})
    with Store(tmp_path / "h1.sqlite", "h1", wall=wall) as h1:
        h1.write({"uuid": "u-1"})
        h1.forget(["resource-vm1/todo-h2/attach"], origins=["h2"])
        assert set(h1.vector()) == {"h1"}

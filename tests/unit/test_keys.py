"""Key ownership (who alone may write a key) and the ClusterState read model."""

import pytest

from mars.keys import ClusterState, owner_of, resource_of

OWNED = [
    ("ips/ip-h1", "h1"),
    ("ips/ip-host-a", "host-a"),
    ("actual-h2/time", "h2"),
    ("actual-h2/alive", "h2"),
    ("resource-vm1/data-h3", "h3"),
    ("resource-vm1/device-h3", "h3"),
    ("resource-vm1/replay-h3", "h3"),
    ("resource-vm1/syncstatus-h3", "h3"),
    ("resource-vm1/syncpos-h3", "h3"),
    ("resource-vm1/version-000000001-h4", "h4"),
    ("resource-vm1/version-12-db-2", "db-2"),
    ("resource-vm1/todo-h5/attach", "h5"),
    ("resource-vm1/todo-h5/connect", "h5"),
    ("resource-vm1/todo-h5/sync", "h5"),
    ("resource-vm1/todo-h5/allow-replay", "h5"),
    ("resource-vm1/actual-h6/is-primary", "h6"),
    ("resource-vm1/actual-h6/open-count", "h6"),
    ("resource-my-vm.2/data-h7", "h7"),
    ("resource-data-x/data-h8", "h8"),
]

SHARED = [
    "uuid",
    "resource-vm1/size",
    "resource-vm1/primary",
    "resource-vm1/systemd-want",
    "resource-vm1/systemd-start-unit",
    "resource-vm1/systemd-stop-unit",
    "resource-data-h1/size",
    "resource-actual-h1/primary",
]


@pytest.mark.parametrize("key, owner", OWNED)
def test_owner_of_a_key_that_carries_a_host_name_is_that_host(key, owner):
    assert owner_of(key) == owner


@pytest.mark.parametrize("key", SHARED)
def test_shared_keys_have_no_owner(key):
    assert owner_of(key) is None


@pytest.mark.parametrize("key, res", [
    ("resource-vm1/size", "vm1"),
    ("resource-my-vm.2/todo-h1/attach", "my-vm.2"),
    ("ips/ip-h1", None),
    ("uuid", None),
])
def test_resource_of_a_key(key, res):
    assert resource_of(key) == res


def state(local_host="h1", **extra):
    values = {
        "uuid": "u-1",
        "ips/ip-h1": "10.0.0.1",
        "ips/ip-h2": "10.0.0.2",
        "resource-vm1/size": "4096",
        "resource-vm1/primary": "h2",
        "resource-vm1/data-h1": "/dev/vg/vm1",
        "resource-vm1/data-h2": "/dev/vg/vm1",
        "resource-vm2/size": "8192",
        "resource-vm2/primary": "(none)",
        "resource-vm2/data-h2": "/dev/vg/vm2",
        "resource-ghost/data-h1": "/dev/vg/ghost",   # no size: not a resource
    }
    values.update(extra)
    return ClusterState(values, local_host)


def test_resources_are_those_with_a_size():
    assert state().all_resources() == ["vm1", "vm2"]
    assert not state().exists("ghost")


def test_membership_is_the_data_keys():
    assert state().members("vm1") == ["h1", "h2"]
    assert state().my_resources() == ["vm1"]
    assert state(local_host="h2").my_resources() == ["vm1", "vm2"]
    assert state().members("nonexistent") == []


def test_designated_primary_is_none_for_none_or_unset():
    assert state().designated_primary("vm1") == "h2"
    assert state().designated_primary("vm2") is None
    assert state(**{"resource-vm1/primary": ""}).designated_primary("vm1") is None


def test_disk_owner_names_the_resource_using_a_path_on_this_host():
    assert state().disk_owner("/dev/vg/vm1") == "vm1"
    assert state().disk_owner("/dev/vg/vm2") is None
    assert state().disk_owner("/dev/vg/vm2", host="h2") == "vm2"


def test_is_alive_needs_alive_flag_and_a_recent_time():
    alive = {"actual-h2/alive": "1", "actual-h2/time": "1000.0"}
    assert state(**alive).is_alive("h2", window=60, now=1050.0)
    assert not state(**alive).is_alive("h2", window=60, now=1061.0)
    assert not state(**{**alive, "actual-h2/alive": "0"}).is_alive("h2", window=60, now=1000.0)
    assert not state().is_alive("h2", window=60, now=1000.0)
    assert state().is_alive("h1", window=60, now=10**9)      # this host always is


def test_cluster_hosts_and_peers():
    assert state().cluster_hosts() == ["h1", "h2"]
    assert state().peers() == ["h2"]
    assert state().in_cluster()
    assert not state(local_host="h9").in_cluster()


def test_an_emergency_mark_is_its_hosts_and_stays_through_its_invalidate():
    """`unlogged-<host>` was nobody's key: any host could write it. An
    invalidate of the host that wrote unlogged keeps it: a replica synced
    before it still lacks those writes (dropped, it counted as consistent
    and replayed on without them)."""
    from mars.keys import resync_changes
    assert owner_of("resource-vm1/unlogged-db-a") == "db-a"
    keys = ["resource-vm1/unlogged-a", "resource-vm1/replay-a", "resource-vm1/size"]
    assert resync_changes(keys, "vm1", "a") == {
        "resource-vm1/replay-a": None, "resource-vm1/syncstatus-a": 0}

"""Resource membership across delete, create, leave: a host that was down
through a forced delete and a create again, the designated primary dropped
by force, sizes that are no whole sectors."""

from mars.keys import primary_key
from tests.unit.conftest import make_disk

MIB = 1 << 20


def exchange(*hosts):
    """One anti-entropy round among the hosts' stores (each pulls from each)."""
    stores = [host.store() for host in hosts]
    try:
        for one in stores:
            for other in stores:
                if one is not other:
                    one.apply(other.changes_since(one.vector()))
    finally:
        for store in stores:
            store.close()


def two_members(make_host, tmp_path):
    """h1 (primary) and h2 members of vm1, in one cluster."""
    h1, h2 = make_host("h1"), make_host("h2")
    h1.ok("--ip=127.0.0.1", "create-cluster")
    h2.peer_apply([])
    with h2.store() as store:
        store.write({"ips/ip-h2": "127.0.0.2"})
    exchange(h1, h2)
    h1.ok("create-resource", "vm1", make_disk(tmp_path / "disk1", MIB))
    exchange(h1, h2)
    h2.ok("join-resource", "vm1", make_disk(tmp_path / "disk2", MIB))
    exchange(h1, h2)
    assert h1.ok("view-resource-members", "vm1") == "h1\nh2\n"
    return h1, h2


def test_a_member_down_through_a_forced_delete_and_a_create_again_is_no_member_of_the_new(
        make_host, tmp_path):
    """h2 is down; on h1 vm1 is deleted by force and created again by
    force. h2's keys stayed (only h2 removes its own, once its marsd sees
    the deletion, and it never did: the new size superseded the tombstone),
    so back, h2 counted as a member of the new vm1, its sync complete, with
    the old data. A forced delete drops the replicas of the hosts that
    still hold one, as `--host=<it> leave-resource --force` does."""
    h1, h2 = two_members(make_host, tmp_path)
    h1.ok("--force", "delete-resource", "vm1")
    h1.ok("--force", "create-resource", "vm1", make_disk(tmp_path / "disk3", MIB))
    exchange(h1, h2)                                # h2 is back
    for host in (h1, h2):
        assert host.ok("view-resource-members", "vm1") == "h1\n"
        assert host.ok("view-get-disk", "vm1") == ("" if host is h2 else f"{tmp_path}/disk3\n")
    assert h2.ok("view-my-resources") == ""


def test_a_forced_create_over_keys_left_by_a_deleted_resources_member_drops_them(
        make_host, tmp_path):
    """h3 joined vm1 cut off from h1, after h1 had deleted it: its keys are
    newer than the deletion, left over. A create is refused over them; a
    forced one drops them, else h3 counted as a member of the new vm1."""
    h1, h2 = two_members(make_host, tmp_path)
    h3 = make_host("h3")
    with h3.store() as store:
        store.write({"ips/ip-h3": "127.0.0.3"})
    exchange(h1, h2, h3)
    h1.ok("--force", "delete-resource", "vm1")
    h3.ok("join-resource", "vm1", make_disk(tmp_path / "disk4", MIB))
    exchange(h1, h3)
    refused = h1.run("create-resource", "vm1", make_disk(tmp_path / "disk3", MIB))
    assert refused.exit_code == 1 and "h3 still hold keys" in refused.stderr
    h1.ok("--force", "create-resource", "vm1", f"{tmp_path}/disk3")
    exchange(h1, h2, h3)
    for host in (h1, h2, h3):
        assert host.ok("view-resource-members", "vm1") == "h1\n"


def test_dropping_the_designated_primary_by_force_leaves_no_primary_designated(
        make_host, tmp_path):
    """`marsadm --host=h1 leave-resource --force vm1` on h2 (h1, the
    primary, died): the designation still named h1, no member any more.
    It is cleared, as `secondary` does, and the output says how to go on."""
    h1, h2 = two_members(make_host, tmp_path)
    out = h2.ok("--host=h1", "--force", "leave-resource", "vm1")
    assert "primary --force vm1" in out
    assert h2.ok("view-resource-members", "vm1") == "h2\n"
    assert h2.ok("view-get-primary", "vm1") == ""
    with h2.store() as store:
        assert store.value(primary_key("vm1")) == "(none)"
    exchange(h1, h2)
    assert h1.ok("view-get-primary", "vm1") == ""


def test_a_replica_dropped_by_force_leaves_the_designation_alone(make_host, tmp_path):
    h1, h2 = two_members(make_host, tmp_path)
    h1.ok("--host=h2", "--force", "leave-resource", "vm1")
    assert h1.ok("view-get-primary", "vm1") == "h1\n"


def test_create_resource_refuses_a_size_of_no_whole_sectors(h1, tmp_path):
    disk = make_disk(tmp_path / "disk1", MIB)
    before = h1.tuples()
    result = h1.run("create-resource", "vm1", disk, "1000")
    assert result.exit_code == 1
    assert "512" in result.stderr and "1000" in result.stderr
    assert h1.tuples() == before
    h1.ok("create-resource", "vm1", disk, "1024")
    assert h1.ok("view-resource-size", "vm1") == "1024\n"


def test_create_resource_on_a_disk_of_no_whole_sectors_takes_its_whole_sectors(h1, tmp_path):
    """Without a size, the disk's: a file of 1000 bytes gives 512."""
    h1.ok("create-resource", "vm1", make_disk(tmp_path / "disk1", 1000))
    assert h1.ok("view-resource-size", "vm1") == "512\n"

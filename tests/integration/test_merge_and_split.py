"""merge-cluster and split-cluster between real marsd processes."""

import subprocess
import sys
import time

import pytest

from tests.helpers.marshosts import STATE_WAIT, wait_until
from tests.integration.support import (
    ROUND, SLOW_ROUND, assert_output_everywhere, assert_stays, build_cluster, host_ips,
    join_cluster, next_round_of, outputs, replicated_metadata, restart_with_pullers_mid_round,
    sparse_disk, start_all, wait_for_key, wait_for_membership, wait_for_resources)

pytestmark = pytest.mark.integration

# marsadm whose split-cluster request to one host waits until the test lets it
# go: `python -c SPLIT_HOLDING_ONE_HOST HOST HOLDING RELEASED ARGS...` creates
# the file HOLDING once the hosts asked before HOST have applied the split, and
# sends HOST its request once the file RELEASED exists.
SPLIT_HOLDING_ONE_HOST = """
import sys
from pathlib import Path

import trio

from mars import net
from mars.marsadm import main

held_host, holding, released = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
request = net.request


async def request_held_at_one_host(channel, header, *args, **kwargs):
    if header.get("type") == "split" and channel.peer == held_host:
        holding.touch()
        while not released.exists():
            await trio.sleep(0.01)
    return await request(channel, header, *args, **kwargs)


net.request = request_held_at_one_host
main(sys.argv[4:])
"""


def two_clusters(marsnet, a_names, b_names):
    """Two separate clusters sharing one secret (merging needs the same cluster.key)."""
    a_hosts = [marsnet.add(name) for name in a_names]
    b_hosts = [marsnet.add(name) for name in b_names]
    marsnet.create_cluster(*a_hosts)
    # create-cluster keeps a cluster.key that is already in place.
    marsnet.share_key(a_hosts[0], b_hosts[0])
    marsnet.create_cluster(*b_hosts)
    start_all(*a_hosts, *b_hosts)
    wait_for_membership(a_hosts, a_hosts)
    wait_for_membership(b_hosts, b_hosts)
    return a_hosts, b_hosts


def shared_resource(res, primary, *others):
    """`res` created on `primary` and joined by `others`, seen by the primary."""
    primary.marsadm("create-resource", res, sparse_disk(primary, res))
    for host in others:
        wait_for_key([host], f"resource-{res}/primary", primary.name)
        host.marsadm("join-resource", res, sparse_disk(host, res))
        wait_for_key([primary], f"resource-{res}/data-{host.name}", str(host.root / "disks" / res))


def wait_for_one_cluster_id(hosts):
    wait_until(lambda: len({host.live_values("uuid").get("uuid") for host in hosts}) == 1,
               what=f"{', '.join(h.name for h in hosts)} agreeing on the cluster id",
               show=lambda: {host.name: host.live_values("uuid").get("uuid") for host in hosts})


def test_merge_cluster_makes_every_host_of_both_clusters_see_all_members_and_resources(marsnet):
    (a1, a2), (b1, b2) = two_clusters(marsnet, ["a1", "a2"], ["b1", "b2"])
    a1.marsadm("create-resource", "vm1", sparse_disk(a1))
    shared_resource("vm2", b1, b2)
    wait_for_resources([a2], ["vm1"])
    everyone = [a1, a2, b1, b2]

    a2.marsadm("merge-cluster", b1.name, b1.address)

    delay = wait_for_membership(everyone, everyone)
    wait_for_resources(everyone, ["vm1", "vm2"])
    wait_for_one_cluster_id(everyone)
    print(f"\nmerge-cluster: all 4 hosts list all 4 members after {delay:.2f}s")
    assert_output_everywhere(everyone, ["view-cluster-members"], "a1\na2\nb1\nb2\n")
    assert_output_everywhere(everyone, ["view-all-resources"], "vm1\nvm2\n")
    assert_output_everywhere(everyone, ["view-resource-members", "vm2"], "b1\nb2\n")


def test_merge_cluster_is_refused_when_both_clusters_have_a_resource_of_the_same_name(marsnet):
    (a1, a2), (b1, b2) = two_clusters(marsnet, ["a1", "a2"], ["b1", "b2"])
    a1.marsadm("create-resource", "vm1", sparse_disk(a1))
    b1.marsadm("create-resource", "vm1", sparse_disk(b1))
    b1.marsadm("create-resource", "vm2", sparse_disk(b1, "other"))
    wait_for_resources([a2], ["vm1"])
    wait_for_resources([b2], ["vm1", "vm2"])
    everyone = [a1, a2, b1, b2]
    before = {host.name: replicated_metadata(host) for host in everyone}

    result = a1.marsadm("merge-cluster", b1.name, b1.address, check=False)

    assert result.returncode == 1, result.stderr
    assert "vm1" in result.stderr and "vm2" not in result.stderr, result.stderr
    time.sleep(3 * ROUND)   # give a leak the time to spread
    for host in everyone:
        assert replicated_metadata(host) == before[host.name], host.name
    assert a1.view("cluster-members") == "a1\na2\n"
    assert b1.view("cluster-members") == "b1\nb2\n"


def four_hosts_in_two_groups(marsnet):
    """a1,a2 share r1 and b1,b2 share r2, all four in one cluster. Each resource
    exists before its second member joins the cluster, so the join brings it
    along and no step waits for a pull."""
    hosts = [marsnet.add(name) for name in ("a1", "a2", "b1", "b2")]
    a1, a2, b1, b2 = hosts
    marsnet.create_cluster(a1)
    a1.marsadm("create-resource", "r1", sparse_disk(a1, "r1"))
    join_cluster(marsnet, b1, via=a1)
    b1.marsadm("create-resource", "r2", sparse_disk(b1, "r2"))
    b1.start()
    b1.wait_serving()
    join_cluster(marsnet, a2, via=a1)
    a2.marsadm("join-resource", "r1", sparse_disk(a2, "r1"))
    join_cluster(marsnet, b2, via=b1)
    b2.marsadm("join-resource", "r2", sparse_disk(b2, "r2"))
    start_all(a2, b2)
    wait_for_membership(hosts, hosts)
    wait_for_key(hosts, "resource-r2/data-b2", str(b2.root / "disks" / "r2"))
    wait_for_key(hosts, "resource-r1/data-a2", str(a2.root / "disks" / "r1"))
    return hosts


def separated(a_side, b_side):
    """Each side lists only its own hosts and holds no tuple of the other side's
    resource."""
    def holds(host, prefix):
        return any(key.startswith(prefix) for key in host.live_values("resource-"))

    a_ips = {host.name: host.address for host in a_side}
    b_ips = {host.name: host.address for host in b_side}
    return (all(host_ips(host) == a_ips and not holds(host, "resource-r2/") for host in a_side)
            and all(host_ips(host) == b_ips and not holds(host, "resource-r1/") for host in b_side))


def test_split_cluster_separates_hosts_without_shared_resources_for_good(marsnet):
    """Every host applies the split before split-cluster returns; anti-entropy
    must not bring the other side back afterwards. The risky moment is on the
    initiator: marsadm applies the split in the store, a1's marsd still has
    pullers to b1 and b2 until its next round, and a pull from them in between
    must not be applied. The pullers are put in mid-round and the split is made
    just after a round starts, so that moment comes every time."""
    a1, a2, b1, b2 = four_hosts_in_two_groups(marsnet)
    restart_with_pullers_mid_round(a1, [b1, b2], round_interval=SLOW_ROUND)
    old_uuid = a1.live_values("uuid")["uuid"]
    next_round_of(a1)

    a1.marsadm("split-cluster")

    assert_stays(lambda: separated([a1, a2], [b1, b2]), SLOW_ROUND,
                 "a1,a2 | b1,b2 separated, each with its own resource",
                 show=lambda: {host.name: sorted(host_ips(host)) for host in (a1, a2, b1, b2)})
    assert outputs([a1, a2, b1, b2], "view-cluster-members") == {
        "a1": "a1\na2\n", "a2": "a1\na2\n", "b1": "b1\nb2\n", "b2": "b1\nb2\n"}
    assert outputs([a1, a2, b1, b2], "view-all-resources") == {
        "a1": "r1\n", "a2": "r1\n", "b1": "r2\n", "b2": "r2\n"}
    assert a2.live_values("uuid")["uuid"] == old_uuid
    assert b1.live_values("uuid")["uuid"] == b2.live_values("uuid")["uuid"] != old_uuid


def test_split_cluster_is_not_undone_through_a_host_that_applies_the_split_later(
        marsnet, tmp_path):
    """The hosts apply a split one after the other (a2, b1, b2 when
    split-cluster asks them, the initiator a1 last). Meanwhile a2 pulls from
    a1, a member of its own piece that still holds everything: what a1 relays
    of b1, b2 and r2 must not come back on a2. Normally that window lasts a
    few milliseconds; here split-cluster's request to b2 waits until the test
    lets it go, which holds split-cluster before a1 applies. (Stalling b2's
    marsd instead, by locking its store, also stalls its answer to
    split-cluster's handshake whenever its next round comes first: on a busy
    machine it did.)"""
    a1, a2, b1, b2 = four_hosts_in_two_groups(marsnet)
    holding, released = tmp_path / "split-holding-b2", tmp_path / "split-released"
    split = subprocess.Popen(
        [sys.executable, "-c", SPLIT_HOLDING_ONE_HOST, "b2", str(holding), str(released),
         "split-cluster", f"--timeout={STATE_WAIT:g}"],
        env=a1.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def held():
            assert split.poll() is None, f"split-cluster exited {split.returncode}: " \
                                         f"{split.communicate()}"
            return holding.exists()

        wait_until(held, what="split-cluster holding its request to b2")
        assert (host_ips(a2), host_ips(b1)) == ({"a1": a1.address, "a2": a2.address},
                                                {"b1": b1.address, "b2": b2.address}), \
            "a2 and b1, asked before b2, have applied the split"
        time.sleep(3 * ROUND)   # a2 pulls from a1, which has not applied the split yet
        released.touch()
        _, err = split.communicate(timeout=STATE_WAIT)
    finally:
        if split.poll() is None:
            split.kill()
            split.communicate()
    assert split.returncode == 0, err

    assert_stays(lambda: separated([a1, a2], [b1, b2]), 3 * ROUND,
                 "a1,a2 | b1,b2 separated, each with its own resource",
                 show=lambda: {host.name: sorted(host_ips(host)) for host in (a1, a2, b1, b2)})


def test_merge_cluster_right_after_a_split_reunites_every_host(marsnet):
    a1, a2, b1, b2 = four_hosts_in_two_groups(marsnet)
    a1.marsadm("split-cluster")
    assert_output_everywhere([a2], ["view-cluster-members"], "a1\na2\n")

    a2.marsadm("merge-cluster", b2.name, b2.address)

    everyone = [a1, a2, b1, b2]
    print(f"\nmerge-cluster after split-cluster: all 4 hosts list all 4 members after "
          f"{wait_for_membership(everyone, everyone):.2f}s")
    wait_for_resources(everyone, ["r1", "r2"])
    wait_for_one_cluster_id(everyone)
    assert_output_everywhere(everyone, ["view-resource-members", "r2"], "b1\nb2\n")
    assert_output_everywhere(everyone, ["view-resource-members", "r1"], "a1\na2\n")


def test_merge_cluster_again_repairs_a_member_that_never_took_the_merge_in(marsnet):
    """One side of a merge that the other never took in: a1 lists b1, b1
    does not list a1, and no round ever brings it (only a1 knows both).
    Running the merge again sends b1 everything a1 has, where it used to
    find nothing to do; once b1 lists a1, it is a no-op again, and with b1
    unreachable it says so and changes nothing."""
    (a1,), (b1,) = two_clusters(marsnet, ["a1"], ["b1"])
    with b1.store() as theirs:
        items = theirs.tuples()
    with a1.store() as mine:
        mine.apply(items)               # only a1 took the merge in
    assert "b1" in host_ips(a1)
    assert_stays(lambda: "a1" not in host_ips(b1), 3 * ROUND, "b1 does not list a1")

    repaired = a1.marsadm("merge-cluster", b1.name, b1.address).stdout
    assert "did not list a1: sent it this cluster's metadata again" in repaired
    wait_for_membership([a1, b1], [a1, b1])

    again = a1.marsadm("merge-cluster", b1.name, b1.address).stdout
    assert "already a member of this cluster; nothing to do" in again

    b1.stop()
    with a1.store() as mine:
        before = [item for item in mine.tuples() if not item.key.startswith("actual-")]
    unreachable = a1.marsadm("merge-cluster", b1.name, b1.address).stdout
    assert "not reachable" in unreachable and "nothing to do" in unreachable
    with a1.store() as mine:
        assert [item for item in mine.tuples() if not item.key.startswith("actual-")] == before


def test_split_cluster_is_refused_while_a_host_is_unreachable_and_changes_nothing(marsnet):
    alpha, bravo, charlie = build_cluster(marsnet, "alpha", "bravo", "charlie")
    alpha.marsadm("create-resource", "vm1", sparse_disk(alpha))
    bravo.marsadm("create-resource", "vm2", sparse_disk(bravo))
    wait_for_resources([alpha, bravo, charlie], ["vm1", "vm2"])
    charlie.stop()
    before = {host.name: replicated_metadata(host) for host in (alpha, bravo, charlie)}

    result = alpha.marsadm("split-cluster", "--timeout=3", check=False)

    assert result.returncode == 1, result.stderr
    assert "charlie" in result.stderr and "--force" in result.stderr, result.stderr
    time.sleep(2 * ROUND)   # give a leak the time to spread
    for host in (alpha, bravo, charlie):
        assert replicated_metadata(host) == before[host.name], host.name
    assert bravo.view("cluster-members") == "alpha\nbravo\ncharlie\n"

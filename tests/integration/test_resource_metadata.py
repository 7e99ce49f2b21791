"""Resource metadata spreading through real marsd processes: create, join,
delete, catching up after downtime, and update-cluster's immediate push."""

import time

import pytest

from tests.helpers.marshosts import STATE_WAIT, MarsNet, wait_until
from tests.integration.support import (
    ROUND, assert_output_everywhere, assert_stays, build_cluster, outputs,
    sparse_disk, wait_for_key, wait_for_membership, wait_for_resources)

pytestmark = pytest.mark.integration

SIZE = 16 << 20


def wait_resource_gone(hosts, res):
    return wait_until(lambda: all(not host.live_values(f"resource-{res}/") for host in hosts),
                      what=f"every host's store without live keys of {res}",
                      show=lambda: {host.name: host.live_values(f"resource-{res}/")
                                    for host in hosts})


def test_resource_metadata_is_identical_on_every_host_and_delete_drops_every_hosts_keys(marsnet):
    hosts = build_cluster(marsnet, "alpha", "bravo", "charlie", "delta")
    alpha, bravo, charlie, delta = hosts
    alpha.marsadm("create-resource", "vm1", sparse_disk(alpha, size=SIZE))
    wait_for_resources([bravo, charlie], ["vm1"])
    bravo.marsadm("join-resource", "vm1", sparse_disk(bravo, size=SIZE))
    charlie.marsadm("join-resource", "vm1", sparse_disk(charlie, size=SIZE))

    started = time.monotonic()
    for member in (bravo, charlie):
        wait_for_key(hosts, f"resource-vm1/data-{member.name}",
                     str(member.root / "disks" / "disk"))
    print(f"\njoin-resource seen on all 4 hosts after {time.monotonic() - started:.2f}s")

    assert_output_everywhere(hosts, ["view-resource-members", "vm1"], "alpha\nbravo\ncharlie\n")
    assert_output_everywhere(hosts, ["view-get-primary", "vm1"], "alpha\n")
    assert_output_everywhere(hosts, ["view-all-resources"], "vm1\n")
    assert delta.view("resource-size", "vm1") == f"{SIZE}\n"
    assert delta.view("my-resources") == ""
    assert charlie.view("my-resources") == "vm1\n"

    bravo.marsadm("--force", "delete-resource", "vm1")    # alpha, bravo, charlie are members

    # bravo removes the shared keys and its own; every other member's marsd
    # must drop its own keys (only it may) when it sees the size gone.
    delay = wait_resource_gone(hosts, "vm1")
    print(f"delete-resource: every host's store free of vm1 after {delay:.2f}s")
    for name, tree in outputs(hosts, "view-tree").items():
        assert "/resource-vm1/" not in tree, f"{name} still has keys of vm1:\n{tree}"
    for member in (alpha, charlie):     # dropped by their own marsd, as tombstones
        with member.store() as store:
            assert store.get(f"resource-vm1/data-{member.name}").deleted, member.name


def test_a_stopped_marsd_catches_up_after_restart_in_both_directions(marsnet):
    alpha, bravo, charlie = build_cluster(marsnet, "alpha", "bravo", "charlie")
    charlie.stop()

    alpha.marsadm("create-resource", "vm1", sparse_disk(alpha))
    alpha.marsadm("set-systemd-unit", "vm1", "vm1-start.service", "vm1-stop.service")
    alpha.marsadm("--force", "set-systemd-want", "vm1", "alpha")
    # marsadm records wishes on a host whose marsd is down, too.
    charlie.marsadm("create-resource", "vm2", sparse_disk(charlie))

    wait_for_key([bravo], "resource-vm1/systemd-want", "alpha")
    assert_stays(lambda: "resource-vm1/size" not in charlie.live_values("resource-vm1/"),
                 3 * ROUND, "charlie, whose marsd is down, does not have vm1")
    assert "resource-vm2/size" not in alpha.live_values("resource-vm2/")

    charlie.start()
    started = time.monotonic()
    wait_for_resources([alpha, bravo, charlie], ["vm1", "vm2"])
    wait_for_key([charlie], "resource-vm1/systemd-want", "alpha")
    print(f"\nrestarted charlie and its peers converged {time.monotonic() - started:.2f}s "
          f"after the start")

    assert charlie.marsadm("get-systemd-want", "vm1").stdout == "alpha\n"
    assert charlie.marsadm("get-systemd-unit", "vm1").stdout == \
        "vm1-start.service vm1-stop.service\n"
    assert charlie.view("get-primary", "vm1") == "alpha\n"
    assert_output_everywhere([alpha, bravo, charlie], ["view-all-resources"], "vm1\nvm2\n")
    assert_output_everywhere([alpha, bravo, charlie], ["view-get-primary", "vm2"], "charlie\n")


def test_update_cluster_exchanges_both_ways_at_once_while_the_local_marsd_is_down(marsnet):
    alpha, bravo = build_cluster(marsnet, "alpha", "bravo")
    alpha.marsadm("create-resource", "vm1", sparse_disk(alpha))
    wait_for_resources([bravo], ["vm1"])
    bravo.stop()
    bravo.marsadm("create-resource", "vm2", sparse_disk(bravo))
    alpha.marsadm("--force", "set-systemd-want", "vm1", "bravo")
    time.sleep(2 * ROUND)   # alpha pulls meanwhile; vm2 must not come: bravo's marsd is down
    assert "resource-vm2/size" not in alpha.live_values("resource-vm2/")

    bravo.marsadm("update-cluster", f"--timeout={STATE_WAIT:g}")

    # No waiting: alpha's marsd took the push before update-cluster returned.
    assert alpha.view("all-resources") == "vm1\nvm2\n"
    assert alpha.view("get-primary", "vm2") == "bravo\n"
    # (get-systemd-want prints nothing without units, as kernel MARS's)
    assert bravo.live_values("resource-vm1/")["resource-vm1/systemd-want"] == "bravo"


def test_update_cluster_exits_1_naming_the_peer_it_could_not_reach(marsnet):
    alpha, bravo, charlie = build_cluster(marsnet, "alpha", "bravo", "charlie")
    charlie.stop()
    alpha.marsadm("create-resource", "vm1", sparse_disk(alpha))

    # charlie is down: refused at once; bravo's exchange has to complete.
    result = alpha.marsadm("update-cluster", f"--timeout={STATE_WAIT:g}", check=False)

    assert result.returncode == 1, result.stderr
    assert "charlie" in result.stderr and "bravo" not in result.stderr
    assert "resource-vm1/size" in bravo.live_values("resource-vm1/")


# Rounds this long never come during the test: what arrives was sent as
# news. (Liveness then needs a window longer than a round.)
LONG_ROUND = 600.0
LONG = ("--window=3600",)


def joined_with_long_rounds(net, host, via):
    net.share_key(via, host)
    host.marsadm("join-cluster", via.name, via.address, f"--ip={host.address}")
    host.start(*LONG)
    host.wait_serving()


def test_a_change_reaches_the_peers_at_once_not_at_their_next_round(tmp_path):
    """Wishes written on one host and a host that joins reach the other
    hosts as news (the writer, or the host a joiner pushed itself to, tells
    its peers to pull now): with rounds of ten minutes, within seconds. The
    rounds stay the fallback."""
    net = MarsNet(tmp_path / "hosts", round_interval=LONG_ROUND)
    try:
        alpha, bravo, charlie = net.add("alpha"), net.add("bravo"), net.add("charlie")
        alpha.marsadm("create-cluster", f"--ip={alpha.address}")
        alpha.start(*LONG)
        alpha.wait_serving()
        joined_with_long_rounds(net, bravo, alpha)
        wait_for_membership([alpha, bravo], [alpha, bravo], timeout=LONG_ROUND / 10)
        alpha.marsadm("create-resource", "vm1", sparse_disk(alpha, size=SIZE))
        wait_for_resources([bravo], ["vm1"], timeout=LONG_ROUND / 10)
        bravo.marsadm("join-resource", "vm1", sparse_disk(bravo, size=SIZE))
        wait_for_key([alpha], "resource-vm1/data-bravo", str(bravo.root / "disks" / "disk"),
                     timeout=LONG_ROUND / 10)
        joined_with_long_rounds(net, charlie, alpha)
        wait_for_membership([alpha, bravo, charlie], [alpha, bravo, charlie],
                            timeout=LONG_ROUND / 10)
        bravo.marsadm("--force", "set-systemd-want", "vm1", "bravo")
        wait_for_key([alpha, charlie], "resource-vm1/systemd-want", "bravo",
                     timeout=LONG_ROUND / 10)
    finally:
        net.stop_all()


def test_a_host_whose_replica_was_dropped_while_it_was_down_learns_it_when_it_comes_back(marsnet):
    """The kernel's way to drop a dead host's replica: `marsadm --host=<it>
    leave-resource --force` on a survivor. Back (not split off), the host
    writes (its liveness) before it pulls: it still learns that it holds no
    replica, and the survivor gets what the host wrote that it had not
    heard (a resource created while its marsd was down)."""
    alpha, bravo = build_cluster(marsnet, "alpha", "bravo")
    alpha.marsadm("create-resource", "vm1", sparse_disk(alpha, size=SIZE))
    bravo.wait_knows("vm1")
    bravo.marsadm("join-resource", "vm1", sparse_disk(bravo, size=SIZE))
    both = {"alpha": "alpha\nbravo\n", "bravo": "alpha\nbravo\n"}
    wait_until(lambda: outputs([alpha, bravo], "view-resource-members", "vm1") == both,
               what="both to list both members",
               show=lambda: outputs([alpha, bravo], "view-resource-members", "vm1"))
    bravo.stop()
    bravo.marsadm("create-resource", "vm2", sparse_disk(bravo, "disk2", size=SIZE))
    alpha.marsadm("--host=bravo", "leave-resource", "--force", "vm1")
    assert alpha.view("resource-members", "vm1") == "alpha\n"

    bravo.start()
    wait_until(lambda: bravo.view("resource-members", "vm1") == "alpha\n",
               what="bravo to learn that its replica was dropped",
               show=lambda: bravo.marsadm("view", "vm1").stdout)
    wait_for_resources([alpha], ["vm1", "vm2"])
    one = {"alpha": "alpha\n", "bravo": "alpha\n"}
    assert_stays(lambda: outputs([alpha, bravo], "view-resource-members", "vm1") == one,
                 3 * ROUND, "both keep one member")

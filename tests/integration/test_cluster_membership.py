"""Cluster membership with real marsd processes: create, join, leave, wait,
and joins that must be refused without changing anything."""

import os
import socket
import subprocess
import time

import pytest

from tests.helpers.marshosts import BIN, STATE_WAIT, wait_until
from tests.integration.support import (
    ROUND, SLOW_ROUND, assert_output_everywhere, assert_stays, build_cluster, host_ips,
    next_round_of, restart_with_pullers_mid_round, sparse_disk, start_all, wait_for_key,
    wait_for_membership, wait_for_resources, write_foreign_secret)

pytestmark = pytest.mark.integration


def test_create_join_converge_on_every_host(marsnet):
    hosts = [marsnet.add(name) for name in ("alpha", "bravo", "charlie", "delta", "echo")]
    marsnet.create_cluster(*hosts)
    started = time.monotonic()
    start_all(*hosts)
    serving = time.monotonic() - started
    converged = serving + wait_for_membership(hosts, hosts)
    print(f"\n5 hosts, counted from the last join-cluster: every marsd serving after "
          f"{serving:.2f}s, every store listing all 5 after {converged:.2f}s "
          f"({converged / ROUND:.1f} rounds)")

    expected_members = "".join(f"{host.name}\n" for host in sorted(hosts, key=lambda h: h.name))
    expected_ips = "".join(f"{host.name} {host.address}\n"
                           for host in sorted(hosts, key=lambda h: h.name))
    assert_output_everywhere(hosts, ["view-cluster-members"], expected_members)
    assert_output_everywhere(hosts, ["lowlevel-ls-host-ips"], expected_ips)


def test_join_with_a_different_cluster_secret_is_refused_and_changes_nothing(marsnet):
    alpha, bravo = build_cluster(marsnet, "alpha", "bravo")
    stranger = marsnet.add("stranger")
    write_foreign_secret(stranger)

    # The refusal is alpha's answer; a timeout would be exit 3.
    result = stranger.marsadm("join-cluster", alpha.name, alpha.address,
                              f"--ip={stranger.address}", f"--timeout={STATE_WAIT:g}", check=False)

    assert result.returncode == 1, result.stderr
    assert "refused" in result.stderr and "cluster secret" in result.stderr, result.stderr
    assert stranger.live_values() == {}
    assert stranger.marsadm("view-tree").stdout == ""
    wait_until(lambda: f"refused connection from {stranger.address}" in alpha.current_log(),
               what="alpha logging the refused connection",
               show=lambda: alpha.current_log()[-2000:])
    assert_stays(lambda: "stranger" not in host_ips(alpha) and "stranger" not in host_ips(bravo),
                 3 * ROUND, "the cluster never learns about the stranger")


def test_join_to_an_address_where_nothing_listens_fails_naming_the_address(marsnet):
    newcomer = marsnet.add("newcomer")
    write_foreign_secret(newcomer)      # any secret: nobody will check it
    nowhere = f"{marsnet.subnet}.250"

    started = time.monotonic()
    result = newcomer.marsadm("join-cluster", "alpha", nowhere, f"--ip={newcomer.address}",
                              "--timeout=2", check=False)
    print(f"\njoin-cluster to an address where nothing listens failed after "
          f"{time.monotonic() - started:.2f}s")

    assert result.returncode == 1, result.stderr      # refused at once: not 3, timed out
    message = result.stderr.strip().splitlines()
    assert len(message) == 1, result.stderr
    assert nowhere in message[0]
    assert host_ips(newcomer) == {}
    assert newcomer.marsadm("view-tree").stdout == ""


def test_join_to_a_peer_that_never_answers_gives_up_after_the_timeout(marsnet):
    newcomer = marsnet.add("newcomer")
    write_foreign_secret(newcomer)
    silent = f"{marsnet.subnet}.251"
    # The kernel completes the TCP handshake from the backlog; nobody ever speaks.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind((silent, 7777))
        listener.listen(8)
        started = time.monotonic()
        result = newcomer.marsadm("join-cluster", "alpha", silent, f"--ip={newcomer.address}",
                                  "--timeout=1.5", check=False)
        elapsed = time.monotonic() - started
    finally:
        listener.close()

    assert result.returncode in (1, 3), result.stderr
    message = result.stderr.strip().splitlines()
    assert len(message) == 1, result.stderr
    assert silent in message[0] and "1.5" in message[0], message[0]
    assert elapsed >= 1.5
    print(f"\njoin-cluster --timeout=1.5 to a peer that never answers gave up after {elapsed:.2f}s")
    assert host_ips(newcomer) == {}


def test_wait_cluster_warns_about_a_dead_peer_and_exits_0_but_waits_for_its_own_marsd(marsnet):
    """The kernel's semantics: a dead peer is named on stderr and not waited
    for (one dead host must not stall every operation for --timeout); only
    this host's own marsd not answering is exit 3."""
    alpha, bravo, charlie = build_cluster(marsnet, "alpha", "bravo", "charlie")
    started = time.monotonic()
    result = alpha.marsadm("wait-cluster", f"--timeout={STATE_WAIT:g}")
    print(f"\nwait-cluster with every marsd answering returned after "
          f"{time.monotonic() - started:.2f}s")
    assert "warning" not in result.stderr

    charlie.stop()
    started = time.monotonic()
    result = alpha.marsadm("wait-cluster", f"--timeout={STATE_WAIT:g}")
    elapsed = time.monotonic() - started
    assert "warning: marsd not answering on charlie (" in result.stderr, result.stderr
    assert "bravo" not in result.stderr
    print(f"wait-cluster with charlie down: exit 0 after {elapsed:.2f}s, warning: "
          f"{result.stderr.strip()}")

    alpha.stop()
    result = alpha.marsadm("wait-cluster", "--timeout=2", check=False)
    assert result.returncode == 3, result.stderr
    assert "marsd not answering on alpha" in result.stderr and "timed out" in result.stderr


def test_wait_cluster_with_timeout_minus_one_waits_until_its_own_late_marsd_answers(marsnet):
    alpha, bravo = build_cluster(marsnet, "alpha", "bravo")
    alpha.stop()
    waiting = subprocess.Popen([str(BIN / "marsadm"), "wait-cluster", "--timeout=-1"],
                               env=alpha.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        time.sleep(1.5)     # still waiting after some tries (a busy machine: maybe none yet)
        assert waiting.poll() is None, waiting.stderr.read()
        alpha.start()
        try:
            code = waiting.wait(timeout=STATE_WAIT)
        except subprocess.TimeoutExpired:
            waiting.kill()
            _, err = waiting.communicate()
            raise AssertionError(
                f"wait-cluster still waiting {STATE_WAIT:g} s after alpha's marsd restarted:\n"
                f"{err[-2000:]}\nalpha's marsd log:\n{alpha.current_log()[-3000:]}") from None
        assert code == 0
    finally:
        if waiting.poll() is None:
            waiting.kill()
        waiting.communicate()
    # a peer that came back answers again: no warning
    bravo.stop()
    bravo.start()
    wait_until(lambda: "warning" not in alpha.marsadm("wait-cluster", "--timeout=10").stderr,
               what="wait-cluster without a warning once bravo's marsd answers again")


def test_wait_cluster_for_a_resource_waits_only_for_its_members(marsnet):
    alpha, bravo, charlie = build_cluster(marsnet, "alpha", "bravo", "charlie")
    alpha.marsadm("create-resource", "vm1", sparse_disk(alpha))
    wait_for_resources([bravo], ["vm1"])
    bravo.marsadm("join-resource", "vm1", sparse_disk(bravo))
    wait_for_key([alpha], "resource-vm1/data-bravo", str(bravo.root / "disks" / "disk"))
    charlie.stop()

    started = time.monotonic()
    result = alpha.marsadm("wait-cluster", "vm1", f"--timeout={STATE_WAIT:g}")
    print(f"\nwait-cluster vm1 with charlie down returned after {time.monotonic() - started:.2f}s")
    assert "charlie" not in result.stderr       # not a member of vm1: not even asked

    bravo.stop()
    result = alpha.marsadm("wait-cluster", "vm1", f"--timeout={STATE_WAIT:g}")
    assert "warning: marsd not answering on bravo (" in result.stderr, result.stderr
    assert "charlie" not in result.stderr


def replica_of_vm1_on_charlie(marsnet):
    """alpha, bravo, charlie in one cluster; vm1 on alpha, charlie a member too."""
    alpha, bravo, charlie = build_cluster(marsnet, "alpha", "bravo", "charlie")
    alpha.marsadm("create-resource", "vm1", sparse_disk(alpha))
    wait_for_resources([charlie], ["vm1"])
    charlie.marsadm("join-resource", "vm1", sparse_disk(charlie))
    wait_for_key([alpha, bravo], "resource-vm1/data-charlie", str(charlie.root / "disks" / "disk"))
    return alpha, bravo, charlie


def charlie_is_gone(*observers):
    return all("charlie" not in host_ips(host)
               and "resource-vm1/data-charlie" not in host.live_values("resource-vm1/")
               for host in observers)


def test_leave_cluster_is_refused_while_holding_a_replica_and_afterwards_forgets_the_cluster(
        marsnet):
    alpha, bravo, charlie = replica_of_vm1_on_charlie(marsnet)
    refused = charlie.marsadm("leave-cluster", check=False)
    assert refused.returncode == 1
    assert "vm1" in refused.stderr and "leave-resource" in refused.stderr, refused.stderr
    assert set(host_ips(charlie)) == {"alpha", "bravo", "charlie"}
    assert_stays(lambda: "charlie" in host_ips(alpha), 2 * ROUND, "alpha still lists charlie")

    wait_until(lambda: (charlie.root / "mars" / "resource-vm1").is_dir(),
               what="charlie's marsd keeping a resource dir of vm1")
    charlie.marsadm("down", "vm1")
    charlie.marsadm("leave-resource", "vm1")
    wait_until(lambda: all("resource-vm1/data-charlie" not in host.live_values("resource-vm1/")
                           for host in (alpha, bravo)),
               what="alpha and bravo seeing charlie leave vm1",
               show=lambda: {host.name: sorted(host.live_values("resource-vm1/"))
                             for host in (alpha, bravo)})
    wait_until(lambda: not (charlie.root / "mars" / "resource-vm1").exists(),
               what="charlie's marsd removing its logs of vm1",
               show=lambda: sorted(os.listdir(charlie.root / "mars")))
    charlie.stop()      # leave-cluster under a running marsd: the next test

    charlie.marsadm("leave-cluster")

    print(f"\nleave-cluster reached alpha and bravo after "
          f"{wait_for_membership([alpha, bravo], [alpha, bravo]):.2f}s")
    assert_output_everywhere([alpha, bravo], ["view-cluster-members"], "alpha\nbravo\n")
    assert_output_everywhere([alpha, bravo], ["view-resource-members", "vm1"], "alpha\n")
    assert charlie.live_values() == {}
    assert charlie.marsadm("view-tree").stdout == ""
    assert charlie.marsadm("lowlevel-ls-host-ips").stdout == ""
    # A marsd on a host outside any cluster waits for create-cluster or join-cluster.
    charlie.start()
    wait_until(lambda: "not in a cluster yet" in charlie.current_log(),
               what="charlie's marsd waiting for a cluster",
               show=lambda: charlie.current_log()[-2000:])
    assert_stays(lambda: charlie.live_values() == {} and charlie_is_gone(alpha, bravo),
                 3 * ROUND, "charlie out of the cluster, its store empty",
                 show=lambda: {host.name: sorted(host.live_values())
                               for host in (alpha, bravo, charlie)})


def test_leave_cluster_is_not_undone_by_the_leaving_hosts_running_marsd(marsnet):
    """marsadm forgets the cluster in the store while charlie's marsd still has
    pullers to alpha and bravo until its next round: a pull in between asks with
    an empty vector, and what comes back must not be applied. The pullers are
    put in mid-round and leave-cluster just after a round starts, so the window
    is hit every time (with 0.2 s rounds it is hit about every other time)."""
    alpha, bravo, charlie = build_cluster(marsnet, "alpha", "bravo", "charlie")
    restart_with_pullers_mid_round(charlie, [alpha, bravo], round_interval=SLOW_ROUND)
    next_round_of(charlie)

    charlie.marsadm("leave-cluster")

    wait_for_membership([alpha, bravo], [alpha, bravo])
    assert_stays(lambda: charlie.live_values() == {}, SLOW_ROUND,
                 "charlie's store stays empty after leave-cluster",
                 show=lambda: sorted(charlie.live_values()))


def test_leave_cluster_right_after_leave_resource_retracts_the_replica_everywhere(marsnet):
    """leave-cluster must hand the peers every change of charlie's they lack,
    not only its own last tombstones: after it forgets, nobody else may retract
    charlie's keys. With charlie's marsd down nobody can pull leave-resource
    from it, so leave-cluster alone has to tell (with marsd up it would be a
    race against the peers' next pull)."""
    alpha, bravo, charlie = replica_of_vm1_on_charlie(marsnet)
    charlie.stop()

    charlie.marsadm("down", "vm1")
    charlie.marsadm("leave-resource", "vm1")
    charlie.marsadm("leave-cluster")

    wait_for_membership([alpha, bravo], [alpha, bravo])
    wait_until(lambda: charlie_is_gone(alpha, bravo),
               what="alpha and bravo dropping charlie's replica of vm1",
               show=lambda: {host.name: (sorted(host_ips(host)),
                                         sorted(host.live_values("resource-vm1/")))
                             for host in (alpha, bravo)})
    assert alpha.view("resource-members", "vm1") == "alpha\n"


def test_a_dead_host_is_dropped_by_a_survivor_and_learns_it_when_it_comes_back(marsnet):
    """`marsadm --host=charlie leave-cluster` on alpha, the kernel's way for a
    host gone for good (football decommission runs it): refused while
    charlie's marsd answers; with charlie stopped, alpha drops it and tells
    bravo. charlie, started again, learns that it was dropped (its marsd
    says so, pulls from nobody, and nobody lists it again); leave-cluster
    then forgets what it kept and join-cluster brings it back. Before,
    charlie stayed a member for ever (only `split-cluster --force` dropped
    it, splitting the others apart as well), and a dropped host that came
    back could neither join ("leave-cluster first") nor leave ("not a
    member")."""
    alpha, bravo, charlie = build_cluster(marsnet, "alpha", "bravo", "charlie")
    refused = alpha.marsadm("--host=charlie", "leave-cluster", check=False)
    assert refused.returncode == 1, refused.stderr
    assert "charlie's marsd answers: it is not gone" in refused.stderr, refused.stderr
    assert set(host_ips(alpha)) == {"alpha", "bravo", "charlie"}

    charlie.stop()
    alpha.marsadm("--host=charlie", "leave-cluster")
    assert set(host_ips(alpha)) == set(host_ips(bravo)) == {"alpha", "bravo"}

    charlie.start()
    wait_until(lambda: "charlie is no member of the cluster of alpha, bravo any more: it was "
                       "dropped (by alpha)" in charlie.current_log(),
               what="charlie's marsd saying that it was dropped",
               show=lambda: charlie.current_log()[-2000:])
    assert_stays(lambda: set(host_ips(alpha)) == set(host_ips(bravo)) == {"alpha", "bravo"}
                 and "charlie" not in host_ips(charlie),
                 3 * ROUND, "charlie stays dropped while its marsd runs",
                 show=lambda: {host.name: host_ips(host) for host in (alpha, bravo, charlie)})

    left = charlie.marsadm("leave-cluster")
    assert "another host dropped it" in left.stdout, left.stdout
    assert charlie.live_values() == {}
    charlie.marsadm("join-cluster", alpha.name, alpha.address, f"--ip={charlie.address}")
    wait_for_membership([alpha, bravo, charlie], [alpha, bravo, charlie])

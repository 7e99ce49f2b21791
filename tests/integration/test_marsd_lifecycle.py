"""The marsd process: start, clean shutdown, one instance per host, and what
it does when its cluster secret is wrong."""

import signal
import subprocess

import pytest

from tests.helpers.marshosts import BIN, STATE_WAIT, wait_until
from tests.integration.support import (
    ROUND, assert_stays, build_cluster, host_ips, sparse_disk, wait_for_resources,
    write_foreign_secret)

pytestmark = pytest.mark.integration


def test_sigterm_stops_marsd_with_exit_0_removing_its_pid_file_and_reporting_it_dead(marsnet):
    alpha, bravo = build_cluster(marsnet, "alpha", "bravo")
    pid_file = alpha.root / "mars" / "marsd.pid"
    process = alpha.process
    assert pid_file.read_text().strip() == str(process.pid)
    wait_until(lambda: bravo.live_values("actual-alpha/").get("actual-alpha/alive") == "1",
               what="bravo seeing alpha alive",
               show=lambda: bravo.live_values("actual-alpha/"))

    process.send_signal(signal.SIGTERM)
    try:
        assert process.wait(timeout=STATE_WAIT) == 0
    except subprocess.TimeoutExpired:
        raise AssertionError(f"marsd of alpha still running {STATE_WAIT:g} s after SIGTERM:\n"
                             f"{alpha.current_log()[-2000:]}") from None
    alpha.process = None

    assert not pid_file.exists()
    assert "stopped" in alpha.current_log()
    assert alpha.live_values("actual-alpha/")["actual-alpha/alive"] == "0"


def test_a_second_marsd_for_the_same_host_refuses_to_start(marsnet):
    (alpha,) = build_cluster(marsnet, "alpha")
    pid_file = alpha.root / "mars" / "marsd.pid"

    second = subprocess.run([str(BIN / "marsd"), f"--round-interval={ROUND}"], env=alpha.env,
                            capture_output=True, text=True, timeout=STATE_WAIT)

    assert second.returncode != 0
    assert "already" in second.stderr, second.stderr
    assert str(alpha.process.pid) in second.stderr
    assert alpha.process.poll() is None, "the first marsd must keep running"
    assert pid_file.read_text().strip() == str(alpha.process.pid)
    alpha.marsadm("wait-cluster", f"--timeout={STATE_WAIT:g}")


def test_marsd_started_before_its_host_joins_waits_and_then_serves(marsnet):
    (alpha,) = build_cluster(marsnet, "alpha")
    bravo = marsnet.add("bravo")
    marsnet.share_key(alpha, bravo)
    bravo.start()
    wait_until(lambda: "not in a cluster yet" in bravo.current_log(),
               what="bravo's marsd waiting for membership",
               show=lambda: bravo.current_log()[-2000:])
    assert bravo.process.poll() is None

    bravo.marsadm("join-cluster", alpha.name, alpha.address, f"--ip={bravo.address}")

    bravo.wait_serving()
    alpha.marsadm("wait-cluster", f"--timeout={STATE_WAIT:g}")


def test_marsd_whose_secret_was_replaced_is_shut_out_while_the_others_keep_working(marsnet):
    alpha, bravo, charlie = build_cluster(marsnet, "alpha", "bravo", "charlie")
    charlie.stop()
    write_foreign_secret(charlie)
    charlie.start()
    charlie.wait_serving()

    alpha.marsadm("create-resource", "vm1", sparse_disk(alpha))
    charlie.marsadm("create-resource", "vm9", sparse_disk(charlie))

    for peer in (alpha, bravo):
        wait_until(lambda: f"refused connection from {charlie.address}" in peer.current_log(),
                   what=f"{peer.name} refusing charlie's pulls",
                   show=lambda: peer.current_log()[-2000:])
    wait_until(lambda: "refused us" in charlie.current_log(),
               what="charlie logging that its peers refuse it",
               show=lambda: charlie.current_log()[-2000:])
    wait_for_resources([bravo], ["vm1"])
    assert_stays(lambda: "resource-vm1/size" not in charlie.live_values("resource-vm1/")
                 and "resource-vm9/size" not in alpha.live_values("resource-vm9/")
                 and "resource-vm9/size" not in bravo.live_values("resource-vm9/"),
                 3 * ROUND, "nothing flows between charlie and the others")
    assert host_ips(charlie) == {host.name: host.address for host in (alpha, bravo, charlie)}
    # charlie's refusal is an answer, bravo's exchange has to complete: no timeout here.
    update = alpha.marsadm("update-cluster", f"--timeout={STATE_WAIT:g}", check=False)
    assert update.returncode == 1 and "charlie" in update.stderr, update.stderr
    assert "bravo" not in update.stderr
    assert "resource-vm9/size" not in alpha.live_values("resource-vm9/")
    wait = alpha.marsadm("wait-cluster", "--timeout=1", check=False)
    assert wait.returncode == 3 and "charlie" in wait.stderr, wait.stderr

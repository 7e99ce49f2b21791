"""marsd's roles and their lifecycle on real devices: the systemd units it
follows, a stop while the device is in use, the logs of a replica left."""

import os
import signal
import subprocess
import time

from mars.device import loops_backed_by
from mars.keys import resource_dir_name
from tests.helpers.dataplane import (device_processes, serving_device_pid, stack_under_units,
                                     tree_checksums)
from tests.helpers.marshosts import BIN, wait_until

RES = "vm1"

FAILING_SYSTEMCTL = """#!/bin/sh
echo "$*" >> "$MARS_ROOT/systemctl.log"
case "$1" in
  start) echo "Job for $2 failed because the control process exited with error code." >&2
         exit 1 ;;
esac
"""


def test_a_start_unit_that_fails_is_retried_with_a_backoff_not_every_tick(
        tmp_path, monkeypatch, datanet):
    """A start unit that fails (its container does not start) was run again
    at every step of the primary's worker, and a waiting primary steps every
    data tick: systemctl 20 times a second, for as long as the unit failed.
    It is retried with a backoff (said in view meanwhile), and once it works
    it is done once."""
    systemctl = tmp_path / "systemctl"
    systemctl.write_text(FAILING_SYSTEMCTL)
    systemctl.chmod(0o755)
    monkeypatch.setenv("MARS_SYSTEMCTL", str(systemctl))     # every marsd inherits it
    (a,) = datanet.primary_with_device("a", res=RES)
    a.marsadm("set-systemd-unit", RES, "test-ct.service", "test-mnt.mount")
    units = a.root / "systemctl.log"
    wait_until(lambda: units.exists(), what="a's marsd starting test-ct.service")
    time.sleep(3.0)
    calls = units.read_text().splitlines()
    assert set(calls) == {"start test-ct.service"}
    assert len(calls) <= 5, f"{len(calls)} starts in about 3 s"
    assert "test-ct.service" in a.marsadm("view", RES).stdout


def test_marsd_stopped_while_its_device_is_mounted_says_why_it_waits_then_tears_it_down(
        datanet):
    """SIGTERM to marsd tears the devices down once they are unused: while
    the filesystem stays mounted it waits, and said why only in `view`
    (its log ended at 'shutting down after tearing down the devices', and
    an operator waiting for the stop was not told what holds it). Once
    unmounted, marsd tears the device down and exits: no loop device, no
    link, no device process left."""
    (a,) = datanet.primary_with_device("a", res=RES)
    datanet.mkfs(a, RES)
    datanet.mount(a, RES)
    a.process.send_signal(signal.SIGTERM)
    wait_until(lambda: "still in use" in a.current_log(),
               timeout=10, what="a's marsd saying in its log why it does not stop",
               show=lambda: a.current_log()[-2000:])
    assert a.current_log().count("still in use") == 1, a.current_log()[-2000:]
    assert a.process.poll() is None
    datanet.umount(a)
    a.process.wait(timeout=30)
    a.process = None
    assert not datanet.device(a, RES).is_symlink()
    assert not loops_backed_by(str(a.root))
    assert not device_processes(a)


def test_the_logs_of_a_replica_left_while_marsd_was_down_are_removed_when_it_starts(datanet):
    """marsadm works while marsd is down: a replica left then (down,
    leave-resource) kept its logfiles for ever, since only a running worker
    removes them when it sees its replica gone, and a marsd started later
    has no worker for it. The state dir held them (gigabytes, on the
    filesystem whose room decides emergency mode), and a join-resource
    again was refused 'marsd removes them once it has seen that replica
    leave', which it never did. marsd removes them when it starts."""
    a, b = datanet.primary_with_replicas("a", "b", res=RES)
    logs = b.root / "mars" / resource_dir_name(RES)
    assert list(logs.glob("log-*")), "b fetched a's log"
    b.stop()
    b.marsadm("down", RES)
    b.marsadm("leave-resource", RES)
    b.start()
    b.wait_serving()
    wait_until(lambda: not logs.exists(), timeout=10,
               what="b's marsd removing the logs of the replica it left",
               show=lambda: sorted(path.name for path in logs.iterdir()))
    b.marsadm("join-resource", RES, b.disk)
    datanet.wait(b, RES)


def test_a_planned_handover_does_not_wait_on_a_third_replica_that_does_not_answer(datanet):
    """The new primary asks every other member whether it let go, live, at
    every step of its wait; one that does not answer (its marsd frozen: it
    accepts and never answers, as a hung host) counts as the store says,
    but only after the connection's timeout, 10 s, each time. A planned
    handover from a to b with c's marsd frozen took that long at least
    (twice, when a had not torn down at b's first ask), in the container's
    downtime."""
    a, b, c = datanet.primary_with_replicas("a", "b", "c", res=RES)
    c.process.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        b.marsadm("primary", RES, "--timeout=60")
        took = time.monotonic() - started
    finally:
        c.process.send_signal(signal.SIGCONT)
    assert took < 5, f"the handover took {took:.1f} s:\n{b.current_log()[-3000:]}"
    assert a.view("is-primary", RES) == "0\n"


def test_with_systemd_units_a_device_process_that_died_has_its_stack_restarted_on_a_new_one(
        tmp_path, monkeypatch, datanet):
    """The device process alone killed (the OOM killer, a crash), its
    filesystem mounted: what runs on it gets EIO. After a crash of marsd
    and its device, a marsd started again stops the stop unit itself where
    it runs the units (the mount goes), brings the device up and starts the
    start unit; a device process that died under a running marsd left the
    stack on the dead device for ever, waiting for an operator. It is
    handled the same way now."""
    a, written, units = stack_under_units(datanet, tmp_path, monkeypatch, RES)
    pid = serving_device_pid(a)
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: len(units.read_text().splitlines()) == 3 and os.path.ismount(a.mnt)
               and serving_device_pid(a) != pid, timeout=30,
               what="the stack stopped over the dead device and started on a new one",
               show=lambda: units.read_text() + a.current_log()[-2000:])
    assert units.read_text().splitlines() == ["start test-ct.service", "stop test-mnt.mount",
                                              "start test-ct.service"]
    found = tree_checksums(a.mnt)
    assert {name: found.get(name) for name in written} == written
    datanet.umount(a)


def test_a_handover_back_while_the_new_primarys_device_starts_waits_for_it_no_split_brain(
        datanet):
    """a hands over to b, and back to a while b's device process is still
    starting (its recovery, its FUSE mount: here it is held, stopped). a
    asked b live whether it let go: b's device was not up yet, so it said
    yes, and a brought its device up beside the one b was bringing up —
    both up, each with a logfile of the same number (a split brain, with
    nothing written). a waits until b's device is up and down again."""
    a, b = datanet.primary_with_replicas("a", "b", res=RES)
    (warm,) = [pid for pid, arguments in device_processes(b).items()
               if any(word.startswith("--state-dir=") for word in arguments)]
    os.kill(warm, signal.SIGSTOP)
    try:
        timed_out = b.marsadm("primary", RES, "--timeout=3", check=False)
        assert timed_out.returncode != 0, timed_out.stdout
        assert "starting the device (standby process)" in b.current_log()
        back = subprocess.Popen([str(BIN / "marsadm"), "primary", RES, "--timeout=60"],
                                env=a.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        time.sleep(3)
    finally:
        os.kill(warm, signal.SIGCONT)
    out, err = back.communicate(timeout=90)
    assert back.returncode == 0, out + err
    wait_until(lambda: "vm1: tearing down the device" in b.current_log(), timeout=30,
               what="b's device up and down again", show=lambda: b.current_log()[-3000:])
    datanet.wait(b, RES, "not-primary")
    for host in (a, b):
        wait_until(lambda host=host: "split brain" not in host.marsadm("view", RES).stdout,
                   timeout=3, what=f"{host.name} without a split brain",
                   show=lambda host=host: host.marsadm("view", RES).stdout)
    assert a.view("is-split-brain", RES) == b.view("is-split-brain", RES) == "0\n"

"""MARS under faults, with real marsd processes on small raw devices (no
filesystem needed: what is written is compared byte for byte): a secondary
far behind catches up from the logs it holds; one that cannot go on says
why in `view` and once in its log; `view`'s waiting line follows the
current state; a handover is refused while the old primary's device is
open, changing nothing, and one that times out while the old primary still
has its device up gives the primary role back to it."""

import itertools
import os
import signal
import sqlite3
import subprocess
import threading
import time
from contextlib import contextmanager

import pytest

from mars.device import STANDBY
from mars.logfile import list_logfiles, parse_logfile_name
from tests.helpers.dataplane import (MIB, STATE_WAIT, cursor_at_log_end, device_processes,
                                     serving_device_pid, sha256_file, tree_without_reports,
                                     wait_until)

pytestmark = [pytest.mark.root, pytest.mark.integration]

RES = "vm1"
DISK = 16 * MIB


def cluster_with_replica(net, *names):
    return net.primary_with_replicas(*names, res=RES, disk_size=DISK)


def write_block(net, host, index, size=256 * 1024):
    """Random bytes at block `index` of the device, fsync'ed."""
    with open(net.device(host, RES), "r+b", buffering=0) as device:
        device.seek(index * size)
        device.write(os.urandom(size))
        os.fsync(device.fileno())


def logfile_numbers(host):
    return [parse_logfile_name(name)[0] for name, _ in
            list_logfiles(host.root / "mars" / f"resource-{RES}")]


def rotate(host):
    """`log-rotate` and wait until the primary writes a new logfile."""
    newest = max(logfile_numbers(host))
    host.marsadm("log-rotate", RES)
    wait_until(lambda: max(logfile_numbers(host)) > newest, what=f"{host.name} to rotate its log",
               show=lambda: logfile_numbers(host))
    return newest + 1


def view(host):
    return host.marsadm("view", RES).stdout


def test_a_secondary_twelve_logfiles_behind_catches_up_and_one_that_cannot_says_why(datanet):
    a, b = cluster_with_replica(datanet, "a", "b")
    b.marsadm("pause-replay", RES)
    wait_until(lambda: "waiting: replay paused" in view(b), what="b's view to say replay paused",
               show=lambda: view(b))
    for index in range(12):
        write_block(datanet, a, index)
        rotate(a)
    wait_until(lambda: len(logfile_numbers(b)) >= 13, what="b to fetch the 13 logfiles",
               show=lambda: (logfile_numbers(b), view(b)))
    b.marsadm("resume-replay", RES)
    datanet.wait(b, RES)                # up to date: replay went through all 13
    assert sha256_file(b.disk, DISK) == sha256_file(datanet.device(a, RES), DISK)
    assert "waiting" not in view(b), view(b)

    # The origin's version of a logfile b holds is missing (as an older marsd
    # that pruned by count left it): b stands at that logfile's end and says so.
    b.marsadm("pause-replay", RES)
    write_block(datanet, a, 20)
    stuck = rotate(a)
    write_block(datanet, a, 21)
    rotate(a)
    version = f"resource-{RES}/version-{stuck}-a"
    wait_until(lambda: stuck + 1 in logfile_numbers(b) and b.live_values(version),
               what=f"b to fetch logfile {stuck + 1} and learn {version}",
               show=lambda: (logfile_numbers(b), b.live_values(f"resource-{RES}/version-")))
    a.stop()
    b.stop()
    with sqlite3.connect(b.root / "mars" / "metadata.sqlite") as db:
        gone = db.execute("DELETE FROM tuples WHERE key = ?", (version,)).rowcount
    assert gone == 1
    b.start()
    b.marsadm("resume-replay", RES)
    reason = f"replay stands at the end of log-{stuck:09d}-a: version-{stuck}-a"

    def said_once():
        return b.current_log().count(reason) == 1
    wait_until(said_once, what="b's log to say once why replay stands",
               show=lambda: (view(b), b.current_log()[-2000:]))
    assert reason in view(b) and f"marsadm invalidate {RES}" in view(b), view(b)
    assert "replay paused" not in view(b), view(b)


@contextmanager
def device_open(net):
    """a primary of vm1 replicated to b, an ext4 (a container's filesystem)
    mounted on a's device while the block lasts, once a reports it open;
    (a, b)."""
    a, b = cluster_with_replica(net, "a", "b")
    subprocess.run(["mkfs.ext4", "-q", str(net.device(a, RES))], check=True)
    net.mount(a, RES, fstype="ext4")
    try:
        wait_until(lambda: "open count 1" in view(a), what="a to report its device open",
                   show=lambda: view(a))
        yield a, b
    finally:
        net.umount(a)


def test_down_on_the_primary_with_its_device_open_is_refused_and_with_force_waits_saying_why(
        datanet):
    """As kernel MARS's marsadm: down, detach and secondary refuse while
    the device is open and no systemd units stop its users (nothing
    changed); --force records the wish, which waits for the device."""
    with device_open(datanet) as (a, b):
        # refused by the count a reports in its metadata (the view shows marsd's status file)
        open_count = f"resource-{RES}/actual-a/open-count"
        wait_until(lambda: a.live_values(open_count).get(open_count) == "1",
                   what="a to report its device open", show=lambda: a.live_values(open_count))
        before = tree_without_reports(a)
        for command in ("down", "detach", "secondary"):
            refused = a.marsadm(command, RES, "--timeout=60", check=False)
            assert refused.returncode == 1, (command, refused.stdout, refused.stderr)
            assert f"a has the device of {RES} open (open count 1): stop the container there " \
                f"and unmount it, then run `marsadm {command} {RES}` again" in refused.stderr
            assert "nothing changed" in refused.stderr
        assert tree_without_reports(a) == before
        assert "UpToDate Replicating DCASFR Primary" in view(a)
        # on another member, secondary refuses for the primary's open device as well
        wait_until(lambda: b.live_values(open_count).get(open_count) == "1",
                   what="b to learn that a's device is open", show=lambda: b.live_values(open_count))
        refused = b.marsadm("secondary", RES, "--timeout=60", check=False)
        assert refused.returncode == 1 and "a has the device of vm1 open" in refused.stderr

        down = a.marsadm("--force", "down", RES, "--timeout=3", check=False)
        assert down.returncode == 3, (down.stdout, down.stderr)
        waiting = [line for line in down.stderr.splitlines() if "waiting for the device to go "
                   "down" in line and "still in use (open count 1)" in line]
        assert len(waiting) == 2, down.stderr        # said once while it waited, and at the end
        assert "the wish stays recorded: the device goes down once it is closed (`marsadm up " \
            f"{RES}` takes the wish back)" in down.stderr
        assert "Detached" in view(a) and "open count 1" in view(a)     # the device stays up
        a.marsadm("up", RES)
        wait_until(lambda: "UpToDate Replicating DCASFR Primary" in view(a),
                   what="a attached again", show=lambda: view(a))


def primary_while_stopped(host, stopped):
    """`marsadm primary vm1 --timeout=2` on `host` while `stopped`'s marsd
    is stopped (SIGSTOP: it does not answer); its result."""
    stopped.process.send_signal(signal.SIGSTOP)
    try:
        return host.marsadm("primary", RES, "--timeout=2", check=False)
    finally:
        stopped.process.send_signal(signal.SIGCONT)


def test_a_handover_is_refused_while_the_old_primarys_device_is_open_and_undone_on_a_timeout(
        datanet):
    with device_open(datanet) as (a, b):
        # b refuses before it changes anything only once a's report reached it
        open_count = f"resource-{RES}/actual-a/open-count"
        wait_until(lambda: b.live_values(open_count).get(open_count) == "1",
                   what="b to learn that a's device is open", show=lambda: b.live_values(open_count))
        before = tree_without_reports(b)
        refused = b.marsadm("primary", RES, "--timeout=60", check=False)
        assert refused.returncode == 1, (refused.stdout, refused.stderr)
        assert "a has the device of vm1 open (open count 1)" in refused.stderr
        assert "stop the container" in refused.stderr and "unmount" in refused.stderr
        assert tree_without_reports(b) == before
        assert b.view("get-primary", RES) == "a\n"
        # a does not answer (cut off, or its marsd stopped): its last report
        # may be old, and b says so rather than "stop the container there"
        silent = primary_while_stopped(b, a)
        assert silent.returncode == 1, (silent.stdout, silent.stderr)
        assert "a does not answer (" in silent.stderr, silent.stderr
        assert "its last report says the device of vm1 is open there (open count 1)" in \
            silent.stderr, silent.stderr
        assert tree_without_reports(b) == before

    # The old primary does not answer (its marsd stopped): the handover times
    # out, and the wish goes back to a, which still has its device up.
    wait_until(lambda: b.live_values(f"resource-{RES}/actual-a/").get(
                   f"resource-{RES}/actual-a/open-count") == "0",
               what="b to learn that a's device is closed", show=lambda: view(a))
    timed_out = primary_while_stopped(b, a)
    assert timed_out.returncode == 3, (timed_out.stdout, timed_out.stderr)
    assert "a still has the device up: the primary of vm1 is a again" in timed_out.stderr
    assert b.view("get-primary", RES) == "a\n"
    wait_until(lambda: "open count 0" in view(a) and a.view("is-primary", RES) == "1\n",
               what="a to stay the primary with its device up", show=lambda: view(a))

    b.marsadm("primary", RES, f"--timeout={STATE_WAIT:g}")      # closed: now it goes
    assert b.view("is-primary", RES) == "1\n"


def holds_a_copy_of(process, mountpoint):
    """Whether `process` runs in a mount namespace of its own that has
    `mountpoint` mounted. Its own first: until `unshare` has called
    unshare(2), its mountinfo is this namespace's, which has the mount too
    (the umount then came first on a busy machine, nothing held the
    filesystem, and the handover went through)."""
    if process.poll() is not None:
        return False
    try:
        if os.readlink(f"/proc/{process.pid}/ns/mnt") == os.readlink("/proc/self/ns/mnt"):
            return False
        with open(f"/proc/{process.pid}/mountinfo") as mountinfo:
            return str(mountpoint) in mountinfo.read()
    except OSError:
        return False


def test_a_filesystem_kept_by_another_mount_namespace_holds_the_handover_until_it_is_written(
        datanet):
    """An umount on the host leaves the filesystem alive, its dirty data not
    yet written, while another mount namespace still has it: a container
    starting on the host copies every mount into its own namespace until it
    pivots into its root. CI: a container's config file, renamed into place
    just before, arrived empty on the new primary (LXC then started it with
    no configuration at all). The old primary's device stays up until the
    kernel lets go of it; the new primary gets every byte. On the way, b's
    marsd keeps a device process ready: the one it took for the withdrawn
    wish ends, one killed is replaced, and the device runs in it; a host
    left without resources keeps none."""
    a, b = cluster_with_replica(datanet, "a", "b")
    subprocess.run(["mkfs.ext4", "-q", str(datanet.device(a, RES))], check=True)
    datanet.mount(a, RES, fstype="ext4")
    holder = subprocess.Popen(["unshare", "--mount", "--propagation", "unchanged",
                               "sleep", "600"])
    try:
        wait_until(lambda: holds_a_copy_of(holder, a.mnt),
                   what="a mount namespace of its own with a's filesystem in it")
        content = os.urandom(256 * 1024)
        (a.mnt / "config.tmp").write_bytes(content)         # as a config is replaced: no fsync
        (a.mnt / "config.tmp").replace(a.mnt / "config")
        datanet.umount(a)
        held = b.marsadm("primary", RES, "--timeout=3", check=False)
        assert held.returncode == 3, (held.returncode, held.stdout, held.stderr)
        assert "a still has the device up: the primary of vm1 is a again" in held.stderr
        assert a.view("is-primary", RES) == "1\n"
        wait_until(lambda: "still in use (open count 1)" in view(a) or
                   a.view("get-primary", RES) == "a\n",
                   what="a to keep its device while the other namespace has it",
                   show=lambda: view(a))
        # b, designated meanwhile, had taken a device process started ahead;
        # the wish went back to a, and b let it go: what stays is the one
        # its marsd keeps ready for the next start
        wait_until(lambda: len(device_processes(b)) == 1,
                   what="b to end the device process it had taken",
                   show=lambda: device_processes(b))
    finally:
        holder.kill()
        holder.wait()
    # the ready one, killed, is replaced; the device then runs in the new one
    (killed,) = device_processes(b)
    os.kill(killed, signal.SIGKILL)

    def replaced():     # one look: a killed process is listed for a moment after the kill
        found = device_processes(b)
        return len(found) == 1 and killed not in found
    wait_until(replaced, what="b's marsd to start another device process ahead",
               show=lambda: device_processes(b))
    (ready,) = device_processes(b)
    b.marsadm("primary", RES, f"--timeout={STATE_WAIT:g}")
    serving = serving_device_pid(b)
    assert serving == ready and STANDBY in device_processes(b)[serving], \
        (serving, ready, device_processes(b))
    datanet.mount(b, RES, fstype="ext4")
    try:
        assert (b.mnt / "config").read_bytes() == content, "the renamed file arrived different"
    finally:
        datanet.umount(b)
    # a, secondary now, keeps one ready too, until it has no resource left
    wait_until(lambda: len(device_processes(a)) == 1, what="a to keep a device process ready",
               show=lambda: device_processes(a))
    a.marsadm("down", RES)
    a.marsadm("leave-resource", RES)
    wait_until(lambda: not device_processes(a), what="a, without resources, to keep none",
               show=lambda: device_processes(a))


def test_primary_force_on_a_damaged_copy_of_the_log_fails_at_once_naming_the_damage(datanet):
    a, b = cluster_with_replica(datanet, "a", "b")
    b.marsadm("pause-replay", RES)
    for index in range(4):
        write_block(datanet, a, index)
    logfile = f"log-{max(logfile_numbers(a)):09d}-a"
    size = (a.root / "mars" / f"resource-{RES}" / logfile).stat().st_size
    copy = b.root / "mars" / f"resource-{RES}" / logfile
    wait_until(lambda: copy.exists() and copy.stat().st_size == size,
               what=f"b to fetch all of {logfile}", show=lambda: view(b))
    a.stop()                                    # the primary is lost
    with open(copy, "r+b") as damaged:          # and b's copy damaged in its first record
        damaged.seek(300)
        byte = damaged.read(1)
        damaged.seek(300)
        damaged.write(bytes([byte[0] ^ 0xFF]))

    failed = b.force_primary(RES, f"--timeout={STATE_WAIT:g}", check=False)
    assert failed.returncode == 1, (failed.stdout, failed.stderr)   # refused, not timed out
    assert f"corrupt record in {copy} at byte " in failed.stderr, failed.stderr
    assert "marsadm invalidate vm1" in failed.stderr
    assert "nothing changed: the designated primary of vm1 is a again" in failed.stderr
    assert b.view("get-primary", RES) == "a\n"
    assert not [line for line in b.marsadm("view-tree").stdout.splitlines()
                if "force-primary -> 1" in line]
    assert b.current_log().count("the device cannot start") == 1, b.current_log()[-3000:]


# A stand-in for systemctl (no systemd as PID 1 here): it logs what it is
# asked, and does what the units of a container stack would: stopping the
# mount unit unmounts the volume, starting the container unit mounts it.
FAKE_SYSTEMCTL = """#!/bin/sh
echo "$*" >> "$MARS_ROOT/systemctl.log"
case "$1 $2" in
  "stop test-mnt.mount") umount "$MARS_ROOT/mnt" ;;
  "start test-ct.service") mount -t ext4 "$MARS_ROOT/dev/mars/vm1" "$MARS_ROOT/mnt" ;;
esac
"""


def test_with_systemd_units_a_handover_stops_them_on_the_old_primary_and_starts_them_on_the_new(
        tmp_path, monkeypatch, datanet):
    """The kernel's systemd integration: set-systemd-unit's units follow
    the designated primary. `primary` on b while a's volume is mounted is
    not refused: a's marsd stops the stop unit (the mount), which frees the
    device; b's marsd starts the start unit once its device is up."""
    systemctl = tmp_path / "systemctl"
    systemctl.write_text(FAKE_SYSTEMCTL)
    systemctl.chmod(0o755)
    monkeypatch.setenv("MARS_SYSTEMCTL", str(systemctl))     # every marsd inherits it
    a, b = cluster_with_replica(datanet, "a", "b")
    subprocess.run(["mkfs.ext4", "-q", str(datanet.device(a, RES))], check=True)
    a.marsadm("set-systemd-unit", RES, "test-ct.service", "test-mnt.mount")
    wait_until(lambda: os.path.ismount(a.mnt),
               what="a's marsd starting test-ct.service on the designated primary")
    (a.mnt / "data").write_bytes(os.urandom(1 << 20))
    written = sha256_file(a.mnt / "data")

    b.marsadm("primary", RES, f"--timeout={STATE_WAIT:g}")

    assert (a.root / "systemctl.log").read_text().splitlines() == [
        "start test-ct.service", "stop test-mnt.mount"]
    wait_until(lambda: os.path.ismount(b.mnt), what="b's marsd starting test-ct.service",
               show=lambda: b.marsadm("view", RES).stdout)
    assert (b.root / "systemctl.log").read_text().splitlines() == ["start test-ct.service"]
    assert sha256_file(b.mnt / "data") == written
    # as kernel MARS: set-systemd-unit gave the want to a, `primary` moved it
    # to b; `(none)` is the operator's temporary stop of the stack (the
    # device stays), the want back on b starts it again
    assert a.marsadm("get-systemd-want", RES).stdout == "b\n"
    # and, as the kernel's, set-systemd-want returns once the stack followed
    # (b's report of its open device is what it waits to see go)
    open_count = f"resource-{RES}/actual-b/open-count"
    wait_until(lambda: b.live_values(open_count).get(open_count) == "1",
               what="b to report its device open", show=lambda: b.live_values(open_count))
    b.marsadm("set-systemd-want", RES, "(none)", f"--timeout={STATE_WAIT:g}")
    assert not os.path.ismount(b.mnt)
    assert b.marsadm("view-is-primary", RES).stdout == "1\n"
    b.marsadm("set-systemd-want", RES, "b", f"--timeout={STATE_WAIT:g}")
    assert os.path.ismount(b.mnt)
    assert (b.root / "systemctl.log").read_text().splitlines() == [
        "start test-ct.service", "stop test-mnt.mount", "start test-ct.service"]
    assert sha256_file(b.mnt / "data") == written
    # the /mars tree mirror of both hosts follows the handover
    for host in (a, b):
        link = host.root / "mars" / f"resource-{RES}" / "primary"
        wait_until(lambda link=link: os.readlink(link) == "b",
                   what=f"{host.name}'s mirror naming b the primary")
    datanet.umount(b)


def test_a_primary_that_keeps_writing_tells_its_log_end_every_round_and_syncs_its_disk_when_quiet(
        datanet):
    """The device says once that it logs again; from then on its log's end
    (`actual-a/log-end`, which tells the secondaries there is news) is told
    every round, not at the next idle step (--idle-step=600: an idle step
    never comes here). Its disk is not synced meanwhile (--disk-sync-interval
    =600), so the replay cursor stays where it was; once the writes stop,
    the next round syncs the disk and the cursor reaches the log's end."""
    (a,) = datanet.primary_with_device("a", res=RES, disk_sizes={"a": DISK})
    a.stop()
    a.start("--idle-step=600", "--disk-sync-interval=600")
    datanet.wait(a, RES, "device")
    end_key, cursor_key = f"resource-{RES}/actual-a/log-end", f"resource-{RES}/replay-a"
    ends, cursors, stop = set(), set(), threading.Event()

    def write():
        with open(datanet.device(a, RES), "r+b", buffering=0) as device:
            for block in itertools.count():
                if stop.is_set():
                    return
                device.seek(block % 64 * 4096)
                device.write(os.urandom(4096))
                os.fsync(device.fileno())

    def look():
        values = a.live_values(f"resource-{RES}/")
        ends.add(values.get(end_key))
        cursors.add(values.get(cursor_key))
        return values

    look()
    writer = threading.Thread(target=write)
    writer.start()
    try:
        wait_until(lambda: look() and len(ends) >= 6,
                   what="6 log ends told by a primary that keeps writing", show=lambda: ends)
    finally:
        stop.set()
        writer.join()
    # Only a round in which the writer (fsync per 4 KiB) got nothing logged
    # syncs the disk: on a loaded machine that may happen once or twice.
    assert len(cursors) <= len(ends) // 2, f"the cursor moved with the log's end: {cursors}"

    wait_until(lambda: cursor_at_log_end(a, RES),
               what="the replay cursor at the log's end once a is quiet",
               show=lambda: a.live_values(f"resource-{RES}/"))


def test_a_handover_back_before_the_new_primarys_state_arrived_waits_for_it_no_split_brain(
        datanet):
    """a hands over to b, and at once back to a — before a's marsd (rounds
    of 120 s here) has pulled that b's device came up and wrote its own
    logfile. a must ask b live, wait until b released the device, and replay
    b's final logfile: opening a logfile of the same number would be a split
    brain, and b's writes would be lost."""
    a, b = cluster_with_replica(datanet, "a", "b")
    a.stop()
    a.round_interval = 120         # a pulls nothing in the test: what reaches it is pushed
    a.start()
    a.wait_serving()
    datanet.wait(a, RES, "device")
    started = time.monotonic()
    b.marsadm("primary", RES, "--timeout=120")
    assert time.monotonic() - started < a.round_interval, "b waited for a's round"
    write_block(datanet, b, 3)
    on_b = sha256_file(datanet.device(b, RES), DISK)
    b_log = max(logfile_numbers(b))

    started = time.monotonic()
    a.marsadm("primary", RES, "--timeout=120")
    # the handover reached b at once (pushed, not pulled by b or a at their rounds)
    assert time.monotonic() - started < a.round_interval, "a waited for a round of its own"
    assert a.view("is-split-brain", RES).strip() == "0", view(a)
    assert max(logfile_numbers(a)) > b_log, (logfile_numbers(a), b_log)
    assert sha256_file(datanet.device(a, RES), DISK) == on_b, "b's last write is missing on a"
    # b's device came up and went down again without a pull round of a
    # between: the race this test sets up happened
    assert "vm1: tearing down the device" in b.current_log()
    assert a.current_log().count("vm1: device process") == 2

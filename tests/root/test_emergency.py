"""Emergency mode: when a state dir runs low on space, replication degrades
and the primary keeps serving. State dirs here are small tmpfs mounts."""

import os
import signal
import subprocess
import urllib.request

import pytest

from tests.helpers.dataplane import MIB, tree_checksums, write_files
from tests.helpers.marshosts import wait_until

pytestmark = [pytest.mark.root, pytest.mark.integration]


def small_state_dir(host, size_mib):
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs",
                    str(host.root / "mars")], check=True)


def cluster(net, a, b, a_options=(), b_options=()):
    a.marsadm("create-cluster", f"--ip={a.address}")
    a.start(*a_options)
    a.wait_serving()
    net.share_key(a, b)
    b.marsadm("join-cluster", a.name, a.address, f"--ip={b.address}")
    b.start(*b_options)
    b.wait_serving()


def status(host, res="vm1"):
    import json
    try:
        return json.loads((host.root / "mars" / "status" / f"{res}.json").read_text())
    except (OSError, ValueError):
        return {}


def counter(host, name, res="vm1"):
    """A counter of the host's marsd, from its Prometheus metrics."""
    with urllib.request.urlopen(f"http://{host.address}:7780/metrics", timeout=30) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith(f'{name}{{resource="{res}"}}'):
                return float(line.split()[-1])
    return 0.0


def test_a_secondary_low_on_space_stops_fetching_and_catches_up_once_space_is_back(datanet):
    a, b = datanet.add("a"), datanet.add("b")
    small_state_dir(b, 256)
    cluster(datanet, a, b, b_options=["--emergency-free=40000000"])  # fetch stops below 80 MB free
    a.marsadm("create-resource", "vm1", a.disk)
    datanet.wait(a, "vm1", "device")
    datanet.mkfs(a, "vm1")
    datanet.mount(a, "vm1")
    b.wait_knows("vm1")
    b.marsadm("join-resource", "vm1", b.disk)
    datanet.wait(b, "vm1")
    filler = b.root / "mars" / "filler"
    free = os.statvfs(b.root / "mars").f_bavail * os.statvfs(b.root / "mars").f_frsize
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1M",
                    f"count={(free - 60_000_000) // MIB}"], check=True, capture_output=True)
    written = write_files(a.mnt, 8, 1 * MIB)
    wait_until(lambda: status(b).get("emergency"), what="emergency mode on b",
               show=lambda: status(b))
    assert b.view("diskstate", "vm1") == "EmergencyMode\n"
    assert not list((b.root / "mars" / "resource-vm1").glob("log-*")), "local logs dropped"
    assert a.view("diskstate", "vm1") == "UpToDate\n", "the primary is not affected"
    filler.unlink()
    wait_until(lambda: not status(b).get("emergency"), what="b leaving emergency mode",
               show=lambda: f"{status(b)}\n" + subprocess.run(
                   ["du", "-a", str(b.root / "mars")], capture_output=True, text=True).stdout)
    datanet.umount(a)
    datanet.wait(b, "vm1")
    datanet.wait_same_disks(a, [b])
    assert "full sync from a starts" not in b.current_log().split("sync from a complete")[-1]
    # Fetching again is bounded: what was dropped is fetched once more (from
    # the start of the cursor's logfile: its version needs every record), and
    # nothing is fetched that would be dropped again. (Unbounded, it re-fetched
    # gigabytes for megabytes logged.) Logfile bytes carry 60-byte record headers.
    fetched, logged = counter(b, "mars_fetched_bytes_total"), counter(a, "mars_logged_bytes_total")
    assert 0 < fetched <= 2.1 * logged, (fetched, logged)
    assert b.current_log().count("fetch stopped, local logs dropped") == 1, b.current_log()[-3000:]
    datanet.mount(a, "vm1")
    assert tree_checksums(a.mnt) == written


def test_a_primary_low_on_space_stops_logging_and_keeps_serving(datanet):
    a, b = datanet.add("a"), datanet.add("b")
    small_state_dir(a, 256)
    cluster(datanet, a, b, a_options=["--emergency-free=100000000"])  # logging stops below 100 MB
    a.marsadm("create-resource", "vm1", a.disk)
    datanet.wait(a, "vm1", "device")
    b.wait_knows("vm1")
    b.marsadm("join-resource", "vm1", b.disk)
    datanet.wait(b, "vm1")
    datanet.mkfs(a, "vm1")
    datanet.mount(a, "vm1")
    written = write_files(a.mnt, 50, 2 * MIB)       # more than the log may take
    wait_until(lambda: status(a).get("emergency"), what="emergency mode on a",
               show=lambda: status(a))
    written.update(write_files(a.mnt, 10, 2 * MIB, prefix="after"))
    assert a.view("diskstate", "vm1") == "EmergencyMode\n"
    assert a.view("replstate", "vm1") == "EmergencyMode\n"
    wait_until(lambda: status(b).get("emergency"), what="b noticing", show=lambda: status(b))
    assert "invalidate" in b.marsadm("view", "vm1").stdout
    datanet.umount(a)
    datanet.mount(a, "vm1")
    assert tree_checksums(a.mnt) == written, "every write reached the disk without the log"
    # marsd dies (the device with it) and comes back logging (its limit
    # lowered): recovery replays nothing from before where logging stopped
    # (the old cursor's records landed on top of the direct writes), and b,
    # synced before that point, stays behind until invalidated (it resumed
    # replay once a logged again, UpToDate and consistent without them)
    mark = a.live_values("resource-vm1/unlogged-a")["resource-vm1/unlogged-a"]
    assert a.live_values("resource-vm1/replay-a")["resource-vm1/replay-a"] == mark
    a.stop(signal.SIGKILL)
    if subprocess.run(["umount", str(a.mnt)], capture_output=True).returncode:
        subprocess.run(["umount", "-l", str(a.mnt)], check=True)
    a.start("--emergency-free=0")
    datanet.wait(a, "vm1", "device")
    datanet.mount(a, "vm1")
    assert tree_checksums(a.mnt) == written, "recovery replayed logged writes over direct ones"
    written.update(write_files(a.mnt, 2, MIB, prefix="logged"))
    wait_until(lambda: "missed those writes" in (status(b).get("waiting") or ""),
               what="b refusing to follow", show=lambda: status(b))
    assert b.view("is-consistent", "vm1") == "0\n"
    b.marsadm("invalidate", "vm1")
    datanet.wait(b, "vm1")
    assert b.view("is-consistent", "vm1") == "1\n"
    datanet.umount(a)
    datanet.wait_same_disks(a, [b])

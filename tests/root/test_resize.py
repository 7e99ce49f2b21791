"""`marsadm resize` right after the disks grew, with real marsd processes on
small raw disks (no filesystem: what is written is compared byte for byte).

marsd reports the size of its disk only when its resource worker steps (an
idle one every few seconds), so resize asks every member's marsd for the
size of its disk as it is now, and refuses when one cannot be asked."""

import mmap
import os
import random
import subprocess
import threading

import pytest

from tests.helpers.dataplane import (MIB, STATE_WAIT, sha256_file, tree_without_reports,
                                     wait_until)

pytestmark = [pytest.mark.root, pytest.mark.integration]

RES = "vm1"
DISK = 8 * MIB
GROWTH = 4 * MIB


def cluster_with_replica(net, *names):
    """The hosts `names` as members of RES, and each knows all of them
    (resize asks the members its own store knows)."""
    hosts = net.primary_with_replicas(*names, res=RES, disk_size=DISK)
    members = "".join(f"{name}\n" for name in sorted(names))
    for host in hosts:
        wait_until(lambda host=host: host.view("resource-members", RES) == members,
                   what=f"{host.name} to know every member of {RES}",
                   show=lambda host=host: host.view("resource-members", RES))
    return hosts


def write_device(net, host, offset, data):
    """Write `data` at `offset` of `host`'s MARS device and fsync."""
    with open(net.device(host, RES), "r+b", buffering=0) as device:
        device.seek(offset)
        device.write(data)
        os.fsync(device.fileno())


def device_size(net, host):
    result = subprocess.run(["blockdev", "--getsize64", str(net.device(host, RES))],
                            capture_output=True, text=True, check=True)
    return int(result.stdout)


def resource_size(host):
    return int(host.view("resource-size", RES))


def test_resize_right_after_the_disks_grew_grows_every_time_and_the_replica_follows(datanet):
    a, b = cluster_with_replica(datanet, "a", "b")
    size = DISK
    for _ in range(3):
        old, size = size, size + GROWTH
        for host in (a, b):
            os.truncate(host.disk, size)
        # what a grown LV holds before anyone writes there (LVM does not
        # zero new extents): different on each disk; the tail sync makes b
        # hold a's
        for host in (a, b):
            with open(host.disk, "r+b") as disk:
                disk.seek(old)
                disk.write(os.urandom(GROWTH // 2))

        # at once: no marsd has reported the new disk sizes yet
        a.marsadm("resize", RES, f"--timeout={STATE_WAIT:g}")
        assert resource_size(a) == size
        assert device_size(datanet, a) == size
        # the primary is complete for the new size once resize returned: it
        # syncs nothing (a Football migrate counts a host's replicas with a
        # sync rest as its syncs)
        assert (a.view("sync-rest", RES), a.view("flags", RES)[3]) == ("0\n", "S")

        grown = os.urandom((size - old) // 2)        # half of the tail written anew
        write_device(datanet, a, old + GROWTH // 2, grown)
        wait_until(lambda size=size: b.view("sync-size", RES) == f"{size}\n" and
                   b.view("sync-rest", RES) == "0\n",
                   what=f"b complete for {size} bytes",
                   show=lambda: b.marsadm("view", RES).stdout)
        datanet.wait(b, RES)
        assert b.view("is-consistent", RES) == "1\n"
        # what b's marsd counted it received: the grown tail, not the disk
        assert 0 < int(b.view("sync-received", RES)) <= size - old
        expected = sha256_file(datanet.device(a, RES), size)
        assert sha256_file(b.disk, size) == expected
        assert sha256_file(a.disk, size) == expected
        with open(b.disk, "rb") as disk:
            disk.seek(old + GROWTH // 2)
            assert disk.read(GROWTH // 2) == grown, "the grown area reached b"
    log = b.current_log()
    assert log.count("full sync from") == 1, "b synced the whole disk again"
    assert log.count("sync from a complete") == 4, "b did not sync each grown tail"

    # --dry-run asks the members all the same, says what it would write, and
    # writes nothing
    for host in (a, b):
        os.truncate(host.disk, size + GROWTH)
    tree = tree_without_reports(a)
    dry = a.marsadm("--dry-run", "resize", RES)
    assert dry.stdout == (f"would write resource-{RES}/size = {size + GROWTH}\n"
                          f"would write resource-{RES}/grown-from = {size}\n"), dry.stdout
    assert tree_without_reports(a) == tree
    assert resource_size(a) == size and device_size(datanet, a) == size


def test_the_grown_tail_reads_through_the_device_at_once_while_it_is_written(datanet):
    """The kernel's FUSE inode knows the new size before the loop device
    does. Its attributes are re-read after a resize, but a write that
    completes meanwhile makes the kernel drop that answer: the loop device
    then has the new size while the inode keeps the old one, and a read of
    the grown tail fails with EIO (CI: xfs_growfs during `football expand`,
    the container writing). Direct I/O, as the loop device and xfs do."""
    (a,) = datanet.primary_with_device("a", res=RES, disk_sizes={"a": DISK})
    device = datanet.device(a, RES)
    stop = threading.Event()
    failures = []

    def write_all_the_time():
        block = mmap.mmap(-1, 4096)
        block.write(os.urandom(4096))
        handle = os.open(device, os.O_RDWR | os.O_DIRECT)
        try:
            while not stop.is_set():
                os.pwritev(handle, [block], random.randrange(DISK // 4096) * 4096)
        except OSError as error:
            failures.append(error)
        finally:
            os.close(handle)

    writer = threading.Thread(target=write_all_the_time)
    writer.start()
    size = DISK
    try:
        for _ in range(8):
            size += GROWTH
            os.truncate(a.disk, size)
            tail = os.urandom(4096)
            with open(a.disk, "r+b") as disk:
                disk.seek(size - len(tail))
                disk.write(tail)
            a.marsadm("resize", RES, f"--timeout={STATE_WAIT:g}")
            block = mmap.mmap(-1, 4096)
            handle = os.open(device, os.O_RDONLY | os.O_DIRECT)
            try:
                assert os.preadv(handle, [block], size - 4096) == 4096
            finally:
                os.close(handle)
            assert block[:] == tail, f"the grown tail of {size} bytes read back different"
    finally:
        stop.set()
        writer.join()
    assert not failures, failures


def test_resize_that_cannot_grow_says_why_and_one_beyond_a_disk_or_unasked_is_refused(datanet):
    a, b = cluster_with_replica(datanet, "a", "b")

    # nothing to grow: not an error (as the kernel's marsadm), but said why
    same = a.marsadm("resize", RES)
    assert same.stdout == (f"{RES} already has {DISK} bytes, as much as the smallest disk "
                           f"allows (a, b: {DISK} bytes): grow the disks of all members first\n")
    assert a.marsadm("resize", RES, str(DISK)).stdout == f"{RES} already has {DISK} bytes\n"

    os.truncate(a.disk, DISK + 2 * GROWTH)
    os.truncate(b.disk, DISK + GROWTH)
    before = tree_without_reports(a)
    refused = a.marsadm("resize", RES, str(DISK + 2 * GROWTH), "--timeout=5", check=False)
    assert refused.returncode == 1, (refused.returncode, refused.stdout, refused.stderr)
    assert refused.stderr == (f"marsadm resize: disks too small for {DISK + 2 * GROWTH} bytes "
                              f"on b ({DISK + GROWTH}): lvresize them first\n")
    assert tree_without_reports(a) == before
    assert resource_size(a) == DISK and device_size(datanet, a) == DISK

    # a member whose marsd does not run cannot say how big its disk is now
    b.stop()
    refused = a.marsadm("resize", RES, "--timeout=5", check=False)
    assert refused.returncode == 1, (refused.returncode, refused.stdout, refused.stderr)
    assert refused.stderr.startswith(f"marsadm resize: cannot ask b for the size of its disk "
                                     f"of {RES} "), refused.stderr
    assert "marsd on b must run to resize; nothing changed" in refused.stderr, refused.stderr
    assert tree_without_reports(a) == before
    assert resource_size(a) == DISK and device_size(datanet, a) == DISK


def test_after_a_handover_the_old_primary_gets_only_the_grown_tail_too(datanet):
    """The member that created the resource, a secondary now, is complete
    for the new size as the joined one is: no full sync after a resize."""
    a, b = cluster_with_replica(datanet, "a", "b")
    b.marsadm("primary", RES, "--timeout=120")
    for host in (a, b):
        os.truncate(host.disk, DISK + GROWTH)
    b.marsadm("resize", RES, f"--timeout={STATE_WAIT:g}")
    write_device(datanet, b, DISK, os.urandom(GROWTH))
    datanet.wait(a, RES)
    assert "full sync" not in a.current_log(), "the old primary synced the whole disk again"
    assert "sync of the grown tail from b starts at" in a.current_log()
    assert sha256_file(a.disk, DISK + GROWTH) == sha256_file(datanet.device(b, RES), DISK + GROWTH)

"""Replication end to end: a real xfs on the MARS device, members joining
while the primary writes, handover both ways. Data is checked by checksums
of what was written and by comparing whole disks."""

import threading

import pytest

from mars.logfile import parse_logfile_name
from mars.replay import Cursor
from tests.helpers.dataplane import (MIB, STATE_WAIT, drop_page_cache, leave, tree_checksums,
                                     wait_until, write_files)

pytestmark = [pytest.mark.root, pytest.mark.integration]


def start_primary(net, *names):
    hosts = net.primary_with_device(*names)
    a = hosts[0]
    net.mkfs(a, "vm1")
    net.mount(a, "vm1")
    return hosts


def test_members_joining_during_writes_end_byte_identical(datanet):
    a, b, c = start_primary(datanet, "a", "b", "c")
    before = write_files(a.mnt, 10, 2 * MIB, prefix="before")
    stop = threading.Event()
    during = {}

    def writer():
        index = 0
        while not stop.is_set():
            during.update(write_files(a.mnt, 1, 256 * 1024, prefix=f"during{index:03d}-"))
            index += 1

    for host in (b, c):
        host.wait_knows("vm1")
    thread = threading.Thread(target=writer)
    thread.start()
    try:
        b.marsadm("join-resource", "vm1", b.disk)
        c.marsadm("join-resource", "vm1", c.disk)
        datanet.wait(b, "vm1", "consistent")
        datanet.wait(c, "vm1", "consistent")
    finally:
        stop.set()
        thread.join()
    assert len(during) > 3, "the writer kept writing while B and C synced"
    datanet.umount(a)                   # quiesce: the last writes of xfs reach the log
    for host in (b, c):
        datanet.wait(host, "vm1")
    datanet.wait_same_disks(a, (b, c))
    for host in (b, c):
        assert host.view("diskstate", "vm1") == "UpToDate\n"
        assert host.view("is-consistent", "vm1") == "1\n"
        assert host.view("sync-rest", "vm1") == "0\n"
        assert host.view("work-rest", "vm1") == "0\n"
    assert set(before) <= set(tree_checksums(a.root / "mnt")) | set(before)


def test_a_replica_that_joins_again_with_both_disks_out_of_the_page_cache_ends_identical(
        datanet):
    # The fast sync reads disks the page cache does not hold past it
    # (mars.transfer.all_cached), as after a restart of both hosts, while
    # the primary's device writes into its disk's page cache.
    a, b = start_primary(datanet, "a", "b")
    b.wait_knows("vm1")
    b.marsadm("join-resource", "vm1", b.disk)
    written = write_files(a.mnt, 8, 1 * MIB, prefix="first")
    datanet.wait(b, "vm1", "consistent")
    leave(b, "vm1")
    written.update(write_files(a.mnt, 6, 1 * MIB, prefix="while-b-was-away"))
    for host in (a, b):
        drop_page_cache(host.disk)
    stop = threading.Event()

    def writer():
        index = 0
        while not stop.is_set():
            written.update(write_files(a.mnt, 1, 256 * 1024, prefix=f"during{index:03d}-"))
            index += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        b.marsadm("join-resource", "vm1", b.disk)
        datanet.wait(b, "vm1", "consistent")
    finally:
        stop.set()
        thread.join()
    assert any(name.startswith("during") for name in written)
    datanet.umount(a)
    datanet.wait(b, "vm1")
    datanet.wait_same_disks(a, (b,))
    datanet.mount(a, "vm1")
    assert tree_checksums(a.mnt) == written


def test_handover_there_and_back_keeps_every_file(datanet):
    a, b = start_primary(datanet, "a", "b")
    b.wait_knows("vm1")
    b.marsadm("join-resource", "vm1", b.disk)
    written = write_files(a.mnt, 20, 1 * MIB, prefix="from-a")
    datanet.wait(b, "vm1", "consistent")
    datanet.umount(a)
    datanet.wait(b, "vm1")

    b.marsadm("primary", "vm1", f"--timeout={STATE_WAIT:g}")
    assert b.view("is-primary", "vm1") == "1\n"
    assert b.view("role", "vm1") == "Primary\n"
    assert a.view("role", "vm1") == "Secondary\n"
    assert a.view("get-primary", "vm1") == "b\n"

    def synced_to_its_final_version():
        # The stop left a's disk unsynced (the handover does not wait for
        # it); a, b's secondary now, syncs it and writes its cursor.
        values = a.live_values("resource-vm1/")
        logfile, end = values["resource-vm1/actual-a/log-end"].split(",")
        cursor = Cursor.parse(values["resource-vm1/replay-a"])
        return cursor.order >= (parse_logfile_name(logfile)[0], int(end))
    wait_until(synced_to_its_final_version, what="a's cursor at the end of its last logfile",
               show=lambda: a.live_values("resource-vm1/"))
    datanet.mount(b, "vm1")
    assert tree_checksums(b.mnt) == written
    written.update(write_files(b.mnt, 10, 1 * MIB, prefix="from-b"))
    datanet.umount(b)
    datanet.wait(a, "vm1")

    a.marsadm("primary", "vm1", f"--timeout={STATE_WAIT:g}")
    datanet.mount(a, "vm1")
    assert tree_checksums(a.mnt) == written
    assert a.view("is-split-brain", "vm1") == "0\n"
    assert b.view("is-split-brain", "vm1") == "0\n"


def test_a_handover_back_before_the_new_primary_wrote_anything_completes(datanet):
    # A failed start on the new primary (compensation in Football's downtime
    # window) hands back at once: the new primary's logfile is still empty.
    a, b = start_primary(datanet, "a", "b")
    b.wait_knows("vm1")
    b.marsadm("join-resource", "vm1", b.disk)
    datanet.wait(b, "vm1", "consistent")
    datanet.umount(a)
    datanet.wait(b, "vm1")

    b.marsadm("primary", "vm1", f"--timeout={STATE_WAIT:g}")
    assert b.view("is-primary", "vm1") == "1\n"
    a.marsadm("primary", "vm1", f"--timeout={STATE_WAIT:g}")
    assert a.view("is-primary", "vm1") == "1\n"
    assert a.view("is-split-brain", "vm1") == "0\n"

"""Crashes and partitions on the data path, with real marsd processes, real
xfs on the MARS device, and data checked by checksums: a primary killed with
SIGKILL recovers every fsync'ed write from its log, also those acknowledged
but not yet written back to its disk, also when its disk was not synced
since (a crash of the machine: what the page cache held is lost), and one
killed amid large writes not yet in its logfile leaves no write on its disk
that its log (and so its secondary) lacks; a secondary killed during
sync resumes where it was, one killed during replay catches up, one stopped
for a while fetches what it missed without a new full sync; and a split brain
made with `primary --force` on both sides of a partition is reported on both
hosts and resolved by `invalidate` on the losing side."""

import hashlib
import json
import mmap
import os
import random
import re
import secrets
import signal
import subprocess
import threading

import pytest

from mars.device import DEVICE_FILE, loop_backing_file, loops_backed_by
from mars.logfile import parse_logfile_name
from mars.replay import Cursor
from tests.helpers.dataplane import (MIB, STATE_WAIT, cursor_at_log_end, device_processes,
                                     serving_device_pid, stack_under_units, tree_checksums,
                                     wait_until, write_files)

pytestmark = [pytest.mark.root, pytest.mark.integration]

RES = "vm1"
FULL_SYNC = "full sync from"        # marsd's log line when a full sync starts


# ------------------------------------------------------------------ helpers
def start_primary(net, *names, fill=False):
    """Hosts `names` in one cluster; the first creates vm1 and mounts an xfs
    on its device. With `fill`, the primary's disk is first filled with
    non-zero data, so that a full sync has to transfer all of it."""
    def fill_first(hosts):
        block = os.urandom(MIB)
        with open(hosts[0].disk, "r+b") as disk:
            for index in range(net.disk_size // MIB):
                disk.write(index.to_bytes(8, "little") + block[8:])
    hosts = net.primary_with_device(*names, res=RES, prepare=fill_first if fill else None)
    a = hosts[0]
    net.mkfs(a, RES)
    net.mount(a, RES)
    return hosts


def joined(net, secondary):
    """`secondary` joins and becomes consistent."""
    secondary.wait_knows(RES)
    secondary.marsadm("join-resource", RES, secondary.disk)
    net.wait(secondary, RES, "consistent")


def value(host, name):
    """resource-vm1/<name>-<host> from the host's own store."""
    return host.live_values(f"resource-{RES}/").get(f"resource-{RES}/{name}-{host.name}", "")


def log_end(host):
    """(name, size) of the newest logfile of vm1 on `host` that holds
    anything (a secondary fetches an empty one only once it grows); None
    when none does."""
    directory = host.root / "mars" / f"resource-{RES}"
    newest = max((name for name in os.listdir(directory)
                  if name.startswith("log-") and os.path.getsize(directory / name)), default=None)
    return newest and (newest, os.path.getsize(directory / newest))


def wait_replayed(primary, secondary):
    """Wait until the secondary's replay cursor has passed everything the
    primary has logged so far (`up-to-date` alone may still rest on a
    listing of the primary's logs from before its last writes)."""
    newest = log_end(primary)
    if newest is None:
        # No logfile with anything in it: the primary deletes a logfile only
        # once every member has replayed it (CI: right after a restart).
        return
    logfile, end = newest
    number = parse_logfile_name(logfile)[0]

    def passed():
        text = value(secondary, "replay")
        if not text:
            return False
        cursor = Cursor.parse(text)
        mine = parse_logfile_name(cursor.logfile)[0]
        return mine > number or (cursor.logfile == logfile and cursor.position >= end)
    wait_until(passed, what=f"{secondary.name} to replay {logfile} up to {end}",
               show=lambda: value(secondary, "replay"))


def force_umount(host):
    """Unmount a filesystem whose device died under it (lazily if need be)."""
    if subprocess.run(["umount", str(host.mnt)], capture_output=True).returncode:
        subprocess.run(["umount", "-l", str(host.mnt)], check=True)


class Writer:
    """Writes fsync'ed files into a mounted filesystem until stopped (or
    until the filesystem fails under it); `written` holds the files whose
    fsync returned."""

    def __init__(self, directory, size=256 * 1024, prefix="w"):
        self.directory, self.size, self.prefix = directory, size, prefix
        self.written = {}
        self.error = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        index = 0
        while not self.stop.is_set():
            try:
                self.written.update(write_files(self.directory, 1, self.size,
                                                prefix=f"{self.prefix}{index:05d}-"))
            except OSError as exc:
                self.error = exc
                return
            index += 1

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=STATE_WAIT)   # it stops after the file under way
        assert not self.thread.is_alive(), "the writer hangs"

    def wait_for(self, count):
        target = len(self.written) + count
        wait_until(lambda: len(self.written) >= target or self.error,
                   what=f"{count} more files written",
                   show=lambda: f"{len(self.written)} of {target} files written")
        assert self.error is None, self.error


def quiesce_and_compare(net, primary, *secondaries):
    """Unmount the primary (the last writes reach the log), wait until the
    secondaries have replayed it, and compare byte for byte what the
    primary's device holds with its disk and each secondary's disk (until
    they agree: `DataNet.wait_same_disks`)."""
    net.umount(primary)
    for host in secondaries:
        wait_replayed(primary, host)
        net.wait(host, RES)
    net.wait_same_disks(primary, secondaries, RES)
    for host in secondaries:
        assert host.view("diskstate", RES) == "UpToDate\n"
        assert host.view("is-consistent", RES) == "1\n"


# -------------------------------------------------------------------- tests
def test_primary_killed_recovers_every_fsynced_file(datanet):
    (a,) = start_primary(datanet, "a")
    fuse_dir = a.root / "mars" / "fuse" / RES
    written = write_files(a.mnt, 8, 512 * 1024, prefix="before")
    with Writer(a.mnt) as writer:
        writer.wait_for(5)
        a.stop(signal.SIGKILL)          # the device process dies with it
        wait_until(lambda: writer.error is not None, what="I/O errors on the dead device",
                   show=lambda: f"{len(writer.written)} files written")
    written.update(writer.written)
    assert len(writer.written) >= 5
    force_umount(a)

    a.start()
    datanet.wait(a, RES, "device")
    # The dead device's loop device is found by its backing file and detached
    # (losetup -d of one that udev still probes completes on its last close).
    assert "detached stale" in a.current_log(), a.current_log()[-3000:]
    wait_until(lambda: len(loops_backed_by(str(fuse_dir))) == 1,
               what="the stale loop device to go away",
               show=lambda: loops_backed_by(str(fuse_dir)))
    datanet.mount(a, RES)
    found = tree_checksums(a.mnt)
    missing = sorted(set(written) - set(found))
    assert not missing, f"fsync'ed files lost in the crash: {missing}"
    damaged = sorted(name for name in written if found[name] != written[name])
    assert not damaged, f"fsync'ed files damaged in the crash: {damaged}"
    # The recovered device works as before.
    written.update(write_files(a.mnt, 4, 256 * 1024, prefix="after"))
    datanet.umount(a)
    datanet.mount(a, RES)
    found = tree_checksums(a.mnt)
    assert {name: found.get(name) for name in written} == written


def test_a_marsd_restarted_while_the_crashed_devices_filesystem_is_mounted_waits_for_it(datanet):
    """marsd and its device were killed; the filesystem on the dead loop
    device stays mounted (the container on it gets EIO). marsd started
    again brought a new device up beside it: every view healthy while the
    container wrote nowhere. It waits now, saying why (once in the log),
    until the old mount goes; then the device recovers every fsync'ed file."""
    (a,) = start_primary(datanet, "a")
    written = write_files(a.mnt, 4, 256 * 1024, prefix="before")
    crash(a)
    a.start()
    stale = "of the device that crashed with marsd is still in use"
    wait_until(lambda: stale in a.marsadm("view", RES).stdout, what="view to say why it waits",
               show=lambda: a.marsadm("view", RES).stdout + a.current_log()[-2000:])
    assert "stop the container and unmount it" in a.marsadm("view", RES).stdout
    assert not re.search(DEVICE_UP, a.current_log()), a.current_log()[-2000:]
    assert a.view("is-primary", RES) == "0\n"
    # the dead FUSE mount stays meanwhile: the loop still names its file
    # (unmounted, it read `/device`, and `lab down` left it attached)
    fuse_dir = a.root / "mars" / "fuse" / RES
    (dead,) = loops_backed_by(str(fuse_dir))
    force_umount(a)
    wait_until(lambda: re.search(DEVICE_UP, a.current_log()), what="the device to come up",
               show=lambda: a.current_log()[-2000:])
    # detached, or the new device's now; or, detached, its number serves
    # another test's device (a CI run): anything but a file of this host's
    # other than the new device, or the dead mount's `/device`
    backing = loop_backing_file(dead)
    assert backing is None or backing == str(fuse_dir / DEVICE_FILE) or not (
        backing.startswith(str(a.root)) or backing == "/device"), backing
    assert a.current_log().count(stale) == 1, a.current_log()[-3000:]
    datanet.wait(a, RES, "device")
    datanet.mount(a, RES)
    found = tree_checksums(a.mnt)
    assert {name: found.get(name) for name in written} == written


def test_with_systemd_units_a_marsd_restarted_after_a_crash_restarts_the_stack_on_its_device(
        tmp_path, monkeypatch, datanet):
    """With the systemd integration marsd is the cluster manager's hand: after
    marsd and its device were killed, the filesystem on the dead loop device
    stayed mounted (its container writing nowhere) until someone stopped it.
    marsd started again stops the stop unit (the mount) over the crashed
    device, brings the device up (recovery) and starts the start unit on it:
    the stack runs again, every fsync'ed file there."""
    a, written, units = stack_under_units(datanet, tmp_path, monkeypatch, RES)
    crash(a)
    a.start()
    wait_until(lambda: len(units.read_text().splitlines()) == 3 and os.path.ismount(a.mnt),
               what="the stack stopped over the crashed device and started on the new one",
               show=lambda: units.read_text() + a.current_log()[-2000:])
    assert units.read_text().splitlines() == ["start test-ct.service", "stop test-mnt.mount",
                                              "start test-ct.service"]
    assert re.search(DEVICE_UP, a.current_log()), a.current_log()[-2000:]
    assert "stopping test-mnt.mount to free it" in a.current_log()
    found = tree_checksums(a.mnt)
    assert {name: found.get(name) for name in written} == written
    datanet.umount(a)


def status(host):
    """What the host's marsd last wrote about vm1 (`<state dir>/status/vm1.json`)."""
    try:
        return json.loads((host.root / "mars" / "status" / f"{RES}.json").read_text())
    except (OSError, ValueError):
        return {}


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def replicated_pair(net, *primary_options):
    """a (marsd started with `primary_options`) primary of vm1, b its
    secondary, synced."""
    a, b = net.add("a"), net.add("b")
    a.marsadm("create-cluster", f"--ip={a.address}")
    a.start(*primary_options)
    a.wait_serving()
    net.share_key(a, b)
    b.marsadm("join-cluster", a.name, a.address, f"--ip={b.address}")
    b.start()
    b.wait_serving()
    a.marsadm("create-resource", RES, a.disk)
    net.wait(a, RES, "device")
    joined(net, b)
    net.wait(b, RES)
    return a, b


DEVICE_UP = r"device process \d+ up, logging to \S+ \((\d+) records recovered\)"


def crash(host):
    """kill -9 of the host's marsd and its device processes: the host's
    MARS crashes."""
    pids = device_processes(host)
    assert pids, f"{host.name}'s device process runs"
    host.stop(signal.SIGKILL)           # marsd ...
    for pid in pids:                    # ... and its device (PR_SET_PDEATHSIG, or here)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_until(lambda: not device_processes(host), what=f"{host.name}'s device process to die",
               show=lambda: device_processes(host))


def restart(host):
    """marsd again after a `crash`; returns once its device logged that it
    is up, with the number of records it recovered. (Not `wait-resource
    device`: right after the restart it may still read the killed marsd's
    status, which says the device is up.)"""
    host.start()
    wait_until(lambda: re.search(DEVICE_UP, host.current_log()),
               what=f"{host.name}'s device to come up again",
               show=lambda: host.current_log()[-2000:])
    return int(re.search(DEVICE_UP, host.current_log()).group(1))


def assert_secondary_matches(net, a, b):
    """Once b has replayed all a logged and a's write-back is idle, b's
    disk is byte-identical to a's."""
    wait_replayed(a, b)
    net.wait(b, RES)
    size = int(a.view("sync-size", RES))
    wait_until(lambda: status(a).get("pending", 1) == 0, what="a's write-back to be idle",
               show=lambda: status(a).get("pending"))
    assert net.disk_digest(b, size) == net.disk_digest(a, size), "b differs from a"


def test_primary_killed_with_writes_not_yet_written_back_loses_none(datanet):
    """a's marsd runs with `--debug-hold-writeback`: its device acknowledges
    writes once logged and never writes them back, so at the kill every
    fsync'ed write is certainly in the log only (the status says how many
    bytes are pending; a's disk still holds none of them). kill -9 of marsd
    takes the device with it; the restarted marsd recovers every write from
    the log onto the disk, and the secondary, which replicated them from the
    log meanwhile, ends byte-identical."""
    a, b = replicated_pair(datanet, "--debug-hold-writeback")

    area = 16 * MIB                     # writes overlap: the newest must win, as in the log
    model = bytearray(area)
    rng = random.Random(14)
    count = total = 0
    with open(datanet.device(a, RES), "r+b", buffering=0) as device:
        for count in range(1, 41):
            size = rng.randrange(1, 65) * 8192
            offset = rng.randrange(0, (area - size) // 4096) * 4096
            data = rng.randbytes(size)
            device.seek(offset)
            device.write(data)
            os.fsync(device.fileno())   # acknowledged: in the log, durable
            model[offset:offset + size] = data
            total += size
    expected = sha256_bytes(model)
    wait_until(lambda: status(a).get("pending", 0) >= total,
               what=f"a's device to report {total} bytes pending",
               show=lambda: {key: status(a).get(key) for key in ("pending", "logged")})
    with open(a.disk, "rb") as disk:
        assert disk.read(area) == bytes(area), "the write-back was held: a's disk has nothing"
    wait_replayed(a, b)                 # b holds the writes, from the log

    crash(a)
    restart(a)          # the log replayed: as it is settled at marsd's start, or by the device
    settled = re.search(r"settled: (\d+) records replayed", a.current_log())
    assert int(settled.group(1)) >= count, a.current_log()[-3000:]
    datanet.wait(a, RES, "device")
    with open(datanet.device(a, RES), "rb") as device:
        assert sha256_bytes(device.read(area)) == expected, "a's device lost fsync'ed writes"
    with open(a.disk, "rb") as disk:
        assert sha256_bytes(disk.read(area)) == expected, "recovery did not write them back"
    assert_secondary_matches(datanet, a, b)
    assert b.view("diskstate", RES) == "UpToDate\n"
    assert FULL_SYNC not in b.current_log().split("sync from a complete")[-1]


def test_primary_crashed_before_its_disk_was_synced_recovers_what_the_page_cache_lost(datanet):
    """a's marsd runs with `--disk-sync-interval=600`: while its device
    keeps logging, it writes back through the page cache, the disk is not
    synced and the replay cursor stays where the last sync left it, though
    a's checkpoints tell the log's end every round. A crash of the machine
    may lose any block written back since; here, after kill -9, a's disk is
    set back to what it held at that sync (every such block lost). Recovery
    replays the log from the cursor and brings back every fsync'ed write;
    b ends byte-identical. The writes are O_DIRECT and fsync'ed once at the
    end, with a's marsd stopped (SIGSTOP): a round in which nothing was
    logged would sync the disk (the device went quiet), which only a writer
    stalled for a whole round lets happen."""
    a, b = replicated_pair(datanet, "--disk-sync-interval=600")
    prefix = f"resource-{RES}/"
    cursor_key, end_key = f"{prefix}replay-a", f"{prefix}actual-a/log-end"

    area = 16 * MIB
    rng = random.Random(27)
    buffer = mmap.mmap(-1, 64 * 1024)   # aligned, for O_DIRECT
    for attempt in range(5):
        # a writer stalled for a whole round (this machine loaded) lets a's
        # disk be synced, the cursor moving: then the writes go again from
        # the new sync, a state waited for, not a time
        if attempt:
            a.process.send_signal(signal.SIGCONT)
        wait_until(lambda: cursor_at_log_end(a, RES),
                   what="a's cursor at its log's end (synced once quiet)",
                   show=lambda: a.live_values(prefix))
        synced = a.live_values(prefix)[cursor_key]
        with open(a.disk, "rb") as disk:
            durable = disk.read(area)       # what a's disk holds at the sync
        model = bytearray(durable)
        ends = set()
        fd = os.open(datanet.device(a, RES), os.O_WRONLY | os.O_DIRECT)
        try:
            writes = 0
            while len(ends) < 4:            # three lazy checkpoints at least
                size = rng.randrange(1, 17) * 4096
                offset = rng.randrange(0, (area - size) // 4096) * 4096
                data = rng.randbytes(size)
                buffer[:size] = data
                assert os.pwrite(fd, memoryview(buffer)[:size], offset) == size
                model[offset:offset + size] = data
                writes += 1
                if writes % 16 == 0:
                    ends.add(a.live_values(prefix).get(end_key))
            a.process.send_signal(signal.SIGSTOP)
            os.fsync(fd)                    # every write durable in the log
        finally:
            os.close(fd)
        if a.live_values(prefix)[cursor_key] == synced:
            break
    else:
        raise AssertionError("the cursor moved in every attempt: it moves without a sync, or "
                             "a's writer stalled for a round five times")
    crash(a)
    with open(a.disk, "r+b") as disk:
        assert disk.read(area) != durable, "the page cache held the writes back: a's disk has them"
        disk.seek(0)
        disk.write(durable)             # what a crash of the machine may leave at worst
        os.fsync(disk.fileno())
    restart(a)
    datanet.wait(a, RES, "device")
    expected = sha256_bytes(model)
    with open(datanet.device(a, RES), "rb") as device:
        assert sha256_bytes(device.read(area)) == expected, "a's device lost fsync'ed writes"
    assert_secondary_matches(datanet, a, b)


def test_primary_killed_amid_large_unsynced_writes_leaves_a_disk_its_secondary_matches(datanet):
    """Large writes are acknowledged once staged for the log, before they
    are in the logfile (its whole blocks go there past the page cache,
    from a thread of the device); the write-back must put none of them on
    the disk before its record. a is killed, marsd and device, amid a
    stream of 1 MiB direct writes that are never fsync'ed: restarted, a's
    disk is its log replayed, and b, which replicated that log, ends
    byte-identical to it."""
    a, b = replicated_pair(datanet)

    area = 32 * MIB
    written, failed = [0], []

    def stream():
        buffer = mmap.mmap(-1, MIB)             # aligned, for O_DIRECT
        rng = random.Random(16)
        fd = os.open(datanet.device(a, RES), os.O_RDWR | os.O_DIRECT)
        try:
            while True:
                buffer[:] = rng.randbytes(MIB)
                os.pwrite(fd, buffer, rng.randrange(area // MIB) * MIB)
                written[0] += 1
        except OSError as exc:                  # the device died under it
            failed.append(exc)
        finally:
            os.close(fd)

    writer = threading.Thread(target=stream, daemon=True)
    writer.start()
    wait_until(lambda: written[0] >= 48 or failed, what="48 MiB written to a's device",
               show=lambda: (written[0], failed))
    assert not failed, failed
    crash(a)
    writer.join(timeout=STATE_WAIT)
    assert not writer.is_alive(), "the writer hangs on the dead device"
    restart(a)
    datanet.wait(a, RES, "device")
    wait_until(lambda: status(a).get("pending", 1) == 0, what="a's write-back to be idle",
               show=lambda: status(a).get("pending"))
    wait_replayed(a, b)
    datanet.wait(b, RES)
    size = int(a.view("sync-size", RES))
    assert datanet.disk_digest(b, size) == datanet.disk_digest(a, size), "b differs from a"
    assert b.view("diskstate", RES) == "UpToDate\n"


def test_a_device_process_that_died_is_said_once_and_starts_again_once_nothing_uses_it(datanet):
    """marsd lives on, its device process does not (killed, crashed): the
    loop device answers EIO. While something still has it open, view and
    the log say so (the log once); once it is let go, the loop device is
    cleaned up and a new device process recovers every fsync'ed write."""
    (a,) = datanet.primary_with_device("a", res=RES)
    data = os.urandom(MIB)
    with open(datanet.device(a, RES), "r+b", buffering=0) as device:
        device.write(data)
        os.fsync(device.fileno())
    died = f"device process of {RES} died"
    user = open(datanet.device(a, RES), "rb", buffering=0)     # as a mounted filesystem
    try:
        pids = [serving_device_pid(a)]
        os.kill(pids[0], signal.SIGKILL)
        wait_until(lambda: died in a.marsadm("view", RES).stdout, what="view to say it died",
                   show=lambda: a.marsadm("view", RES).stdout)
        assert "stop the container and unmount it" in a.marsadm("view", RES).stdout
        # Past the page cache: block 0 stays cached from the write above
        # when another opener (marsd looking whether the device is claimed)
        # kept the kernel from dropping it at that close; a read of it then
        # did not fail, once in CI.
        probe = os.open(datanet.device(a, RES), os.O_RDONLY | os.O_DIRECT)
        try:
            with pytest.raises(OSError):
                os.preadv(probe, [mmap.mmap(-1, 4096)], 0)
        finally:
            os.close(probe)
    finally:
        user.close()
    up = r"device process (\d+) up, logging to"
    wait_until(lambda: len(re.findall(up, a.current_log())) == 2,
               what="a new device process", show=lambda: a.current_log()[-2000:])
    assert int(re.findall(up, a.current_log())[1]) != pids[0]
    datanet.wait(a, RES, "device")
    with open(datanet.device(a, RES), "rb", buffering=0) as device:
        assert device.read(MIB) == data, "the restarted device lost an fsync'ed write"
    assert a.current_log().count(died) == 1, a.current_log()[-3000:]
    assert "internal error" not in a.current_log(), a.current_log()[-3000:]


def test_a_device_process_ended_by_an_aborted_fuse_connection_leaves_no_loop_device(
        datanet, tmp_path):
    """The FUSE connection under a's device is aborted (fusectl's `abort`,
    an admin's last resort for a hung FUSE mount): the device process ends,
    marsd cleans up and starts a new one, which recovers every fsync'ed
    write, and the old loop device is detached. (The device process used to
    unmount its FUSE mount as it ended; the loop device on it then showed
    its backing file as `/device`, which marsd's clean-up does not look
    for: one loop device leaked per such end, 2,614 in three minutes of a device
    that failed at every checkpoint.)"""
    (a,) = datanet.primary_with_device("a", res=RES)
    data = os.urandom(MIB)
    with open(datanet.device(a, RES), "r+b", buffering=0) as device:
        device.write(data)
        os.fsync(device.fileno())
    fuse_dir = a.root / "mars" / "fuse" / RES
    old_loop = os.path.realpath(datanet.device(a, RES))
    assert loop_backing_file(old_loop) == str(fuse_dir / DEVICE_FILE)
    pid = serving_device_pid(a)
    fusectl = tmp_path / "fusectl"
    fusectl.mkdir()
    subprocess.run(["mount", "-t", "fusectl", "fusectl", str(fusectl)], check=True)
    try:
        (fusectl / str(os.minor(os.stat(fuse_dir).st_dev)) / "abort").write_text("1")
    finally:
        subprocess.run(["umount", str(fusectl)], check=True)
    up = r"device process (\d+) up, logging to"
    wait_until(lambda: len(re.findall(up, a.current_log())) == 2,
               what="a new device process", show=lambda: a.current_log()[-2000:])
    assert int(re.findall(up, a.current_log())[1]) != pid
    datanet.wait(a, RES, "device")
    # detached, or taken again by the new device (the first free number)
    wait_until(lambda: loop_backing_file(old_loop) in (None, str(fuse_dir / DEVICE_FILE)),
               what=f"the old loop device {old_loop} detached",
               show=lambda: (old_loop, loop_backing_file(old_loop), a.current_log()[-2000:]))
    with open(datanet.device(a, RES), "rb", buffering=0) as device:
        assert device.read(MIB) == data, "the restarted device lost an fsync'ed write"
    assert "internal error" not in a.current_log(), a.current_log()[-3000:]


def test_secondary_killed_during_full_sync_resumes_where_it_was(datanet):
    a, b = start_primary(datanet, "a", "b", fill=True)
    size = int(a.view("sync-size", RES))
    written = write_files(a.mnt, 4, 256 * 1024, prefix="before")
    # b's sync stops a quarter of the way in and waits there (as fast as the
    # sync is, a kill after its first recorded step found it done, once)
    hold = size // 4
    b.stop()
    b.start(f"--debug-hold-sync-after={hold}")
    b.wait_serving()
    b.wait_knows(RES)
    b.marsadm("join-resource", RES, b.disk)
    with Writer(a.mnt) as writer:
        wait_until(lambda: int(value(b, "syncstatus") or 0) >= hold,
                   what="b's sync to stop where it is held", show=lambda: b.current_log()[-2000:])
        # its only replica cannot become the primary while it syncs: b's
        # marsd keeps no device process ready meanwhile
        assert not device_processes(b), device_processes(b)
        b.stop(signal.SIGKILL)
        synced = int(value(b, "syncstatus"))
        syncpos = value(b, "syncpos")
        assert hold <= synced < size, f"b's sync was not under way when killed ({synced} of {size})"
        assert syncpos
        writer.wait_for(3)             # the primary goes on while b is down
        b.start()
        seen = []

        def progress():
            seen.append(int(value(b, "syncstatus") or 0))
            return seen[-1] >= size
        wait_until(progress, interval=0.02, what="b's sync to complete",
                   show=lambda: f"syncstatus {seen[-1]} of {size}")
        assert min(seen) >= synced, f"b's sync restarted from {min(seen)} (was at {synced})"
        # syncpos moves only forward (at completion to the source's log end);
        # that no new sync began, b's log says below
        assert Cursor.parse(value(b, "syncpos")).order >= Cursor.parse(syncpos).order
        writer.wait_for(2)
    written.update(writer.written)
    # b logs the completion just after it recorded the syncstatus the wait
    # above saw: on a loaded machine the test may read its log in between
    wait_until(lambda: "sync from a complete" in b.current_log(),
               what="b's log saying that its sync is complete",
               show=lambda: b.current_log()[-2000:])
    log = b.current_log()
    assert FULL_SYNC not in log, f"the restarted marsd began a new full sync:\n{log[-3000:]}"
    wait_until(lambda: len(device_processes(b)) == 1,
               what="b to keep a device process ready once its replica is complete",
               show=lambda: device_processes(b))
    datanet.wait(b, RES, "consistent")
    quiesce_and_compare(datanet, a, b)
    datanet.mount(a, RES)
    found = tree_checksums(a.mnt)
    assert {name: found.get(name) for name in written} == written


def test_secondary_killed_during_replay_catches_up(datanet):
    a, b = start_primary(datanet, "a", "b")
    joined(datanet, b)
    size = int(a.view("sync-size", RES))
    with Writer(a.mnt) as writer:
        cursors = set()

        def replaying():
            cursors.add(value(b, "replay"))
            return len(cursors) >= 3
        wait_until(replaying, interval=0.02, what="b replaying the primary's writes",
                   show=lambda: sorted(cursors))
        b.stop(signal.SIGKILL)
        cursor_at_kill = value(b, "replay")
        writer.wait_for(8)              # the primary goes on while b is down
        b.start()
        wait_until(lambda: value(b, "replay") != cursor_at_kill,
                   what="b replaying again after the restart",
                   show=lambda: b.current_log()[-2000:])
        writer.wait_for(4)
    assert writer.error is None
    log = b.current_log()
    assert FULL_SYNC not in log, log[-3000:]
    assert value(b, "syncstatus") == str(size)
    quiesce_and_compare(datanet, a, b)


def test_secondary_stopped_for_a_while_catches_up_from_the_logs(datanet):
    a, b = start_primary(datanet, "a", "b")
    joined(datanet, b)
    size = int(a.view("sync-size", RES))
    datanet.wait(b, RES)
    b.stop()                            # SIGTERM: a partition of b from the cluster
    written = write_files(a.mnt, 6, 512 * 1024, prefix="while-b-is-down")
    a.marsadm("log-rotate", RES)        # b has to fetch more than one logfile
    wait_until(lambda: len([name for name in os.listdir(a.root / "mars" / f"resource-{RES}")
                            if name.startswith("log-")]) >= 2, what="the log to rotate on a")
    written.update(write_files(a.mnt, 6, 512 * 1024, prefix="after-rotate"))
    b.start()
    statuses = set()

    def in_the_newest_logfile():
        statuses.add(value(b, "syncstatus"))
        newest = log_end(a)             # None: all replayed by b and deleted
        return newest is None or value(b, "replay").split(",")[0] == newest[0]
    wait_until(in_the_newest_logfile, what="b to replay the logfile a writes now",
               show=lambda: f"b's cursor {value(b, 'replay')}, a's log end {log_end(a)}")
    assert statuses == {str(size)}, f"b's sync status changed: {statuses}"
    log = b.current_log()
    assert FULL_SYNC not in log, log[-3000:]
    quiesce_and_compare(datanet, a, b)
    datanet.mount(a, RES)
    found = tree_checksums(a.mnt)
    assert {name: found.get(name) for name in written} == written


class Partition:
    """Cut the traffic between two hosts' addresses with an nftables table of
    our own (deleted again in any case). New TCP connections are refused
    with a reset and open ones are destroyed (`ss -K`), so that both sides
    notice at once: with packets merely dropped, a request in flight hangs
    until its timeout (60 s) before marsd acts on anything else. Resets
    themselves pass, so that `ss -K` reaches both ends."""

    def __init__(self, first, second):
        self.table = f"marstest_{secrets.token_hex(4)}"
        self.pairs = [(first.address, second.address), (second.address, first.address)]

    def __enter__(self):
        rules = "".join(
            f"        ip saddr {src} ip daddr {dst} tcp flags & rst == 0 reject with tcp reset\n"
            f"        ip saddr {src} ip daddr {dst} meta l4proto != tcp drop\n" for src, dst in self.pairs)
        subprocess.run(["nft", "-f", "-"], text=True, check=True, input=(
            f"table inet {self.table} {{\n    chain output {{\n"
            f"        type filter hook output priority 0; policy accept;\n{rules}    }}\n}}\n"))
        try:
            for src, dst in self.pairs:
                subprocess.run(["ss", "-K", "-t", "src", src, "dst", dst], capture_output=True,
                               check=True)
        except BaseException:
            self.heal()
            raise
        return self

    def heal(self):
        subprocess.run(["nft", "delete", "table", "inet", self.table], capture_output=True)

    def __exit__(self, *exc):
        self.heal()


def mount_nouuid(net, host):
    """Mount the device; `nouuid` because during a split brain the same xfs
    (one UUID) is mounted on two hosts of this machine."""
    subprocess.run(["mount", "-t", "xfs", "-o", "nouuid", str(net.device(host, RES)), str(host.mnt)],
                   check=True)


def split_brain(*hosts):
    return {host.name: host.view("is-split-brain", RES) for host in hosts}


@pytest.mark.parametrize("keep", ["forced", "old"])
def test_split_brain_is_reported_on_both_sides_and_resolved_by_invalidate(datanet, keep):
    """`keep`: whose history survives, the host that took over with
    `primary --force` (b) or the old primary (a)."""
    a, b = start_primary(datanet, "a", "b")
    joined(datanet, b)
    common = write_files(a.mnt, 4, 256 * 1024, prefix="common")
    wait_replayed(a, b)
    with Partition(a, b) as partition:
        b.force_primary(RES, f"--timeout={STATE_WAIT:g}")
        assert b.view("is-primary", RES) == "1\n"
        assert a.view("is-primary", RES) == "1\n"      # a keeps its device and its mount
        mount_nouuid(datanet, b)
        assert tree_checksums(b.mnt) == common
        files = {"b": write_files(b.mnt, 4, 256 * 1024, prefix="on-b")}
        files["a"] = write_files(a.mnt, 4, 256 * 1024, prefix="on-a")
        a.force_primary(RES, f"--timeout={STATE_WAIT:g}")
        assert a.view("is-primary", RES) == "1\n"
        assert split_brain(a, b) == {"a": "0\n", "b": "0\n"}, "neither side can know yet"
        partition.heal()

    wait_until(lambda: split_brain(a, b) == {"a": "1\n", "b": "1\n"}, interval=0.3,
               what="both hosts to report the split brain", show=lambda: split_brain(a, b))
    for host in (a, b):     # marsd's account, written by its next step
        wait_until(lambda host=host: "split brain" in host.marsadm("view", RES).stdout,
                   what=f"{host.name}'s view saying split brain",
                   show=lambda host=host: host.marsadm("view", RES).stdout)
    winner, loser = (b, a) if keep == "forced" else (a, b)
    winner.force_primary(RES, f"--timeout={STATE_WAIT:g}")  # the operator's choice
    wait_until(lambda: a.view("get-primary", RES) == b.view("get-primary", RES) == f"{winner.name}\n",
               what=f"both hosts to designate {winner.name}",
               show=lambda: {host.name: host.view("get-primary", RES) for host in (a, b)})

    datanet.umount(loser)               # the loser's device goes down ...
    datanet.wait(loser, RES, "not-primary")
    assert split_brain(a, b) == {"a": "1\n", "b": "1\n"}, "... which alone resolves nothing"
    loser.marsadm("invalidate", RES)
    wait_until(lambda: split_brain(a, b) == {"a": "0\n", "b": "0\n"}, interval=0.3,
               what="the split brain to disappear on both hosts", show=lambda: split_brain(a, b))
    datanet.wait(loser, RES, "consistent")
    quiesce_and_compare(datanet, winner, loser)
    assert split_brain(a, b) == {"a": "0\n", "b": "0\n"}

    # Back to normal: a planned handover to the former loser, which holds
    # the winner's files; the winner then waits for its device to be
    # released like any planned handover (no forced take-over left over).
    loser.marsadm("primary", RES, f"--timeout={STATE_WAIT:g}")
    mount_nouuid(datanet, loser)
    assert tree_checksums(loser.mnt) == {**common, **files[winner.name]}
    # Refused: the device stays with the loser while its filesystem is mounted,
    # and nothing is left to move it later behind the operator's back.
    refused = winner.marsadm("primary", RES, "--timeout=3", check=False)
    assert refused.returncode == 1, refused.stdout
    assert f"{loser.name} has the device of {RES} open" in refused.stderr
    assert winner.view("is-primary", RES) == "0\n"
    assert loser.view("is-primary", RES) == "1\n"
    # Once the filesystem is unmounted, the handover goes.
    datanet.umount(loser)
    winner.marsadm("primary", RES, f"--timeout={STATE_WAIT:g}")
    assert loser.view("is-primary", RES) == "0\n"


def test_a_third_replica_follows_a_forced_primary_without_waiting_for_the_frozen_old_one(datanet):
    """A primary that dies mid-answer (its marsd frozen: it accepts and
    never answers, as a host that died with the connection open): the host
    that takes over by force gave up on it at once; a third replica waited
    out its request to the old primary (20 s) before it followed the new
    one. It gives up at once too, and replicates the new primary's writes."""
    a, b, c = start_primary(datanet, "a", "b", "c")
    joined(datanet, b)
    joined(datanet, c)
    common = write_files(a.mnt, 4, 128 * 1024, prefix="common")
    datanet.umount(a)
    wait_replayed(a, b)
    wait_replayed(a, c)
    a.process.send_signal(signal.SIGSTOP)
    try:
        # c asks the frozen a for its logs (marsadm's wait for up-to-date
        # makes it list) and waits for the answer
        c.marsadm("--timeout=1", "wait-resource", RES, check=False)
        b.force_primary(RES, f"--timeout={STATE_WAIT:g}")
        wait_until(lambda: "gave up waiting for a to answer logs: b takes over by force" in
                   c.current_log(), what="c to give up waiting for the frozen a",
                   show=lambda: c.current_log()[-2000:])
        datanet.mount(b, RES)
        assert tree_checksums(b.mnt) == common
        write_files(b.mnt, 2, 128 * 1024, prefix="on-b")
        quiesce_and_compare(datanet, b, c)
    finally:
        a.process.send_signal(signal.SIGCONT)

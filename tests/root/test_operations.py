"""MARS operations on real hosts: damaged logfiles, refused commands, pauses,
log rotation and deletion, metrics and the progress view. (Resize:
tests/root/test_resize.py for MARS, the expand tests for a filesystem.)

Most tests write straight to the MARS device (no filesystem): the writes are
fsynced, so the log holds them all and the disks can be compared without
unmounting anything."""

import json
import os
import re
import threading
import time
import urllib.request

import pytest

from mars.logfile import HEADER, LogScan, list_logfiles
from mars.replay import Cursor
from tests.helpers.dataplane import MIB, STATE_WAIT, DataNet, wait_until, write_files

pytestmark = [pytest.mark.root, pytest.mark.integration]

RES = "vm1"


# ------------------------------------------------------------------ helpers
def start_primary(net, *names, disk_sizes=None):
    """A cluster of `names`, the first one primary of vm1 with its device up."""
    return net.primary_with_device(*names, res=RES, disk_sizes=disk_sizes)


def join(net, host, condition="up-to-date"):
    host.wait_knows(RES)
    host.marsadm("join-resource", RES, host.disk)
    net.wait(host, RES, condition)


def log_dir(host):
    return host.root / "mars" / f"resource-{RES}"


def logfiles(host):
    return dict(list_logfiles(log_dir(host)))


def write_device(host, offset, data):
    """Write to the MARS device of `host` and fsync: the log then has it all."""
    fd = os.open(DataNet.device(host, RES), os.O_WRONLY)
    try:
        done = 0
        while done < len(data):
            done += os.pwrite(fd, data[done:], offset + done)
        os.fsync(fd)
    finally:
        os.close(fd)


def disk_bytes(host, offset, size):
    with open(host.disk, "rb") as handle:
        handle.seek(offset)
        return handle.read(size)


def cursor_of(host, store_of=None):
    """`host`'s replay cursor as the store of `store_of` (default: itself) has it."""
    text = (store_of or host).live_values(f"resource-{RES}/").get(f"resource-{RES}/replay-{host.name}")
    return Cursor.parse(text) if text else None


def status_of(host):
    try:
        return json.loads((host.root / "mars" / "status" / f"{RES}.json").read_text())
    except (OSError, ValueError):
        return {}


def view(host, macro):
    return host.view(macro, RES).strip()


def fetched(primary, secondary, logfile=None):
    """True when `secondary` holds `primary`'s logfile(s) completely."""
    theirs, mine = logfiles(primary), logfiles(secondary)
    names = [logfile] if logfile else list(theirs)
    return all(mine.get(name) == theirs.get(name) for name in names)


def metadata(host):
    """The store of `host` without the `actual-` keys marsd rewrites all the time."""
    return {key: value for key, value in host.live_values().items()
            if not key.startswith("actual-") and "/actual-" not in key}


def disks_equal(net, a, b):
    size = int(a.view("sync-size", RES))
    return net.disk_digest(a, size) == net.disk_digest(b, size)


# ------------------------------------------- 1. damaged copies of a logfile
def test_corrupt_record_stops_replay_there_and_torn_tail_is_continued(datanet):
    a, b, c = start_primary(datanet, "a", "b", "c")
    join(datanet, b)
    join(datanet, c)
    for host in (b, c):
        host.marsadm("pause-replay", RES)
    for index in range(24):
        write_device(a, index * MIB, os.urandom(MIB))
    first = sorted(logfiles(a))[-1]
    a.marsadm("log-rotate", RES)            # closes `first`: its end is in version-1-a
    wait_until(lambda: len(logfiles(a)) == 2, what="a new logfile on a",
               show=lambda: logfiles(a))
    write_device(a, 40 * MIB, os.urandom(MIB))
    for host in (b, c):
        wait_until(lambda: fetched(a, host), what=f"{host.name} fetching everything",
                   show=lambda: f"a: {logfiles(a)}, {host.name}: {logfiles(host)}")
        host.stop()
    records = list(LogScan(log_dir(a) / first))
    assert len(records) > 8

    # b: a flipped byte in the payload of a record it has not replayed yet.
    start = cursor_of(b).position
    unreplayed = [record for record in records if record.position >= start]
    damaged = unreplayed[len(unreplayed) // 2]
    with open(log_dir(b) / first, "r+b") as handle:
        handle.seek(damaged.position + HEADER.size + 1000)
        byte = handle.read(1)
        handle.seek(damaged.position + HEADER.size + 1000)
        handle.write(bytes([byte[0] ^ 0xFF]))

    # c: its copy cut in the middle of a record (what an interrupted fetch
    # leaves); fetch paused so that the torn tail stays visible for a while.
    torn = [record for record in records if record.position >= cursor_of(c).position][-3]
    os.truncate(log_dir(c) / first, torn.position + HEADER.size + 5000)
    c.marsadm("pause-fetch", RES)

    for host in (b, c):
        host.start()
        host.marsadm("resume-replay", RES)
    wait_until(lambda: status_of(b).get("damage"), what="b reporting the damage",
               show=lambda: status_of(b))
    state = view(b, "diskstate")
    assert state.startswith("DefectiveLog[") and state.endswith("]"), state
    assert first in state and f"at byte {damaged.position}" in state and "corrupt" in state, state
    assert f"damage: corrupt record in {log_dir(b) / first} at byte {damaged.position}" in \
        b.marsadm("view", RES).stdout
    wait_until(lambda: cursor_of(b, a) == cursor_of(b) and cursor_of(b).position == damaged.position,
               what="b's cursor at the damaged record, also in a's store",
               show=lambda: f"b's cursor {cursor_of(b)}, in a's store {cursor_of(b, a)}")
    assert cursor_of(b).logfile == first
    assert b.live_values(f"resource-{RES}/actual-b/")[f"resource-{RES}/actual-b/replay-code"] == "-5"
    # The records before the damaged one are on b's disk, the damaged one is not.
    before = records[records.index(damaged) - 1]
    assert disk_bytes(b, before.offset, len(before.data)) == before.data
    assert disk_bytes(b, damaged.offset, len(damaged.data)) != damaged.data

    # c replays up to the torn record and waits for the rest: no damage.
    wait_until(lambda: cursor_of(c) is not None and cursor_of(c).position == torn.position,
               what="c replaying up to the torn record", show=lambda: cursor_of(c))
    assert not status_of(c).get("damage"), status_of(c)
    assert not view(c, "diskstate").startswith("DefectiveLog"), view(c, "diskstate")
    assert int(view(c, "work-rest")) > 0
    c.marsadm("resume-fetch", RES)
    datanet.wait(c, RES)
    assert cursor_of(c).logfile == sorted(logfiles(a))[-1]
    assert view(c, "diskstate") == "UpToDate"
    assert disks_equal(datanet, a, c)
    assert view(b, "diskstate").startswith("DefectiveLog["), "the damage stays until repaired"
    assert cursor_of(b).position == damaged.position


# --------------------------------------------------------------- 2. refusals
def test_bad_input_is_refused_with_exit_1_and_changes_nothing(datanet):
    a, b, c = start_primary(datanet, "a", "b", "c", disk_sizes={"c": 64 * MIB})
    b.wait_knows(RES)                       # first: with its marsd stopped, nothing brings vm1
    b.stop()                                # join and pause before marsd can sync anything
    b.marsadm("join-resource", RES, b.disk)
    b.marsadm("pause-sync", RES)
    b.start()
    wait_until(lambda: a.live_values(f"resource-{RES}/").get(f"resource-{RES}/actual-b/disk-size")
               and a.live_values(f"resource-{RES}/").get(f"resource-{RES}/todo-b/sync") == "0",
               what="b's membership and paused sync reaching a")
    c.wait_knows(RES)
    wait_until(lambda: status_of(b).get("waiting") == "sync paused", what="b's marsd pausing the sync")
    # The three stores agree before the refusals: a tuple still on its way
    # (b's membership reaching c, CI) would read as a refusal's doing.
    wait_until(lambda: metadata(a) == metadata(b) == metadata(c), what="the three stores agreeing")
    assert view(b, "replstate") == "PausedSync"
    size = int(a.view("sync-size", RES))

    def refused(host, *args, says):
        before = metadata(host)
        # A refusal comes at once; a command that waited instead would exit 3 (timed out).
        result = host.marsadm(*args, "--timeout=5", check=False)
        assert result.returncode == 1, (args, result.returncode, result.stdout, result.stderr)
        assert result.stderr.startswith(f"marsadm {args[0]}: "), result.stderr
        assert re.search(says, result.stderr), result.stderr
        assert result.stdout == ""
        assert metadata(host) == before, f"{args} changed the store of {host.name}"

    refused(b, "primary", RES, says=r"sync of vm1 on b is incomplete \(0 of \d+ bytes\)")
    refused(c, "join-resource", RES, c.disk, says=rf"too small.*{64 * MIB} bytes.*needs {size}")
    refused(a, "leave-resource", RES, says="a is the designated primary of vm1: hand over first")
    refused(a, "invalidate", RES, says="a is the primary of vm1")
    refused(a, "resize", RES, str(size // 2), says=f"shrinking to {size // 2} is not supported")
    refused(b, "wait-resource", RES, "bogus-condition", says="unknown condition 'bogus-condition'")
    # Nothing happened behind the refusals either.
    assert view(b, "sync-rest") == str(size)
    assert b.view("get-primary", RES) == "a\n" and a.view("is-primary", RES) == "1\n"
    assert c.view("resource-members", RES) == "a\nb\n"
    assert a.view("resource-size", RES) == f"{size}\n"


# ------------------------------------------------------------------ 3. pauses
def test_paused_fetch_and_replay_hold_back_the_secondary_until_resumed(datanet):
    a, b = start_primary(datanet, "a", "b")
    join(datanet, b)
    assert view(b, "replstate") == "Replaying"

    # Fetch paused: nothing new arrives, so nothing reaches the disk.
    b.marsadm("pause-fetch", RES)
    wait_until(lambda: view(b, "replstate") == "PausedFetch", what="PausedFetch",
               show=lambda: view(b, "replstate"))
    assert view(b, "flags")[4] == "-", view(b, "flags")
    sizes = logfiles(b)
    data = os.urandom(4 * MIB)
    write_device(a, 8 * MIB, data)
    wait_until(lambda: int(view(b, "work-rest")) >= len(data),
               what="b's work-rest counting what it has not fetched",
               show=lambda: view(b, "work-rest"))
    assert logfiles(b) == sizes
    assert disk_bytes(b, 8 * MIB, len(data)) != data
    assert view(b, "diskstate").startswith("OutDated[F")
    b.marsadm("resume-fetch", RES)
    datanet.wait(b, RES)
    assert disk_bytes(b, 8 * MIB, len(data)) == data
    assert view(b, "replstate") == "Replaying"

    # Replay paused: logfiles arrive, the disk stays as it was.
    b.marsadm("pause-replay", RES)
    wait_until(lambda: view(b, "replstate") == "PausedReplay", what="PausedReplay",
               show=lambda: view(b, "replstate"))
    assert view(b, "flags")[5] == "-", view(b, "flags")
    position = cursor_of(b)
    data = os.urandom(4 * MIB)
    write_device(a, 20 * MIB, data)
    wait_until(lambda: fetched(a, b), what="b fetching while replay is paused",
               show=lambda: f"a: {logfiles(a)}, b: {logfiles(b)}")
    wait_until(lambda: int(view(b, "work-rest")) >= len(data), what="work-rest of the unreplayed log",
               show=lambda: view(b, "work-rest"))
    assert view(b, "diskstate") == "OutDated[R]"
    assert cursor_of(b) == position
    assert disk_bytes(b, 20 * MIB, len(data)) != data
    b.marsadm("resume-replay", RES)
    datanet.wait(b, RES)
    assert view(b, "flags")[4:] == "FR"
    assert view(b, "work-rest") == "0"
    assert disks_equal(datanet, a, b)


# --------------------------------------------------- 4. rotation and deletion
def test_log_rotate_and_deletion_of_replayed_logfiles(datanet):
    a, b = start_primary(datanet, "a", "b")
    join(datanet, b)
    write_device(a, 0, os.urandom(2 * MIB))
    datanet.wait(b, RES)
    assert sorted(logfiles(a)) == ["log-000000001-a"]
    wait_until(lambda: a.live_values(f"resource-{RES}/replay-b"), what="a knowing b's cursor")

    b.stop()                                # b's cursor stays in logfile 1 meanwhile
    a.marsadm("log-rotate", RES)
    wait_until(lambda: "log-000000002-a" in logfiles(a), what="log-000000002-a on a")
    write_device(a, 4 * MIB, os.urandom(2 * MIB))
    old = (log_dir(a) / "log-000000001-a").read_bytes()
    assert a.marsadm("log-delete-all", RES).stdout == "vm1: deleted 0 logfiles\n"
    time.sleep(1.5)                         # several rounds of a's marsd
    assert "log-000000001-a" in logfiles(a), "b still needs logfile 1"
    assert a.live_values(f"resource-{RES}/version-1-a")

    b.start()
    wait_until(lambda: cursor_of(b, a) and cursor_of(b, a).logfile == "log-000000002-a",
               what="b following into log-000000002-a", show=lambda: cursor_of(b, a))
    datanet.wait(b, RES)
    assert disks_equal(datanet, a, b)
    for host in (a, b):                     # marsd deletes them every few rounds
        wait_until(lambda: sorted(logfiles(host)) == ["log-000000002-a"],
                   what=f"logfile 1 deleted on {host.name}", show=lambda: logfiles(host))

    # log-delete-all does it at once (no marsd here to do it behind our back).
    b.stop()
    (log_dir(b) / "log-000000001-a").write_bytes(old)
    assert b.marsadm("log-delete-all", RES).stdout == "vm1: deleted 1 logfiles\n"
    assert sorted(logfiles(b)) == ["log-000000002-a"]


def test_a_replica_that_starts_replay_at_the_end_of_a_closed_logfile_agrees_with_its_version(
        datanet):
    """A joining host replays from where its source's checkpoint stood when
    the sync started: here the end of logfile 1, which its origin closes
    before the replica fetched more than a part of it (larger than one fetch
    step). The replica's version of it covers every record, so it is
    written once the whole copy is here; written from the first part it
    differed from the origin's, a split brain that was none (CI, in
    test_sync_progress_view_and_metrics: a's checkpoint lagged its rotation)."""
    a, b = start_primary(datanet, "a", "b")
    write_device(a, 0, os.urandom(40 * MIB))        # more than one fetch step (32 MiB)
    end = logfiles(a)["log-000000001-a"]
    wait_until(lambda: cursor_of(a, b) == Cursor("log-000000001-a", end, end),
               what="b seeing a's checkpoint at the end of logfile 1",
               show=lambda: cursor_of(a, b))
    paused_globally(a, b, "fetch")
    b.marsadm("join-resource", RES, b.disk)
    wait_until(lambda: view(b, "sync-rest") == "0", what="b's sync complete",
               show=lambda: b.marsadm("view", RES).stdout)
    assert cursor_of(b) == Cursor("log-000000001-a", end, end)
    a.marsadm("log-rotate", RES)
    version = f"resource-{RES}/version-1-a"
    wait_until(lambda: b.live_values(version).get(version), what="b seeing a's version 1")

    resumed_globally(a, "fetch")
    wait_until(lambda: view(b, "diskstate") == "UpToDate" or status_of(b).get("split_brain"),
               what="b up to date", show=lambda: b.marsadm("view", RES).stdout)
    assert not status_of(b).get("split_brain"), b.marsadm("view", RES).stdout
    assert b.live_values(f"resource-{RES}/version-1-b")[f"resource-{RES}/version-1-b"] == \
        b.live_values(version)[version]
    assert disks_equal(datanet, a, b)


def paused_globally(a, b, *what):
    for name in what:
        a.marsadm(f"pause-{name}-global", RES)
    wait_until(lambda: all(b.live_values(f"resource-{RES}/").get(
        f"resource-{RES}/global-pause-{name}") == "1" for name in what),
        what=f"b seeing the global pause of {', '.join(what)}")


def resumed_globally(a, *what):
    for name in what:
        a.marsadm(f"resume-{name}-global", RES)


def test_a_sync_is_consistent_only_once_replay_passed_the_writes_it_overlapped(datanet):
    """The copy is a mix of blocks read at different times: consistent only
    when replay has passed the source's log end after the last chunk. And
    a joining host whose start logfile the primary deleted before it learned
    of the new member (this hung a replica at `OutDated[R]` once) syncs anew."""
    a, b = start_primary(datanet, "a", "b")
    write_device(a, 0, os.urandom(2 * MIB))
    paused_globally(a, b, "fetch", "replay")
    stop = threading.Event()

    def keep_writing():                     # during the whole sync
        offset = 0
        while not stop.is_set():
            write_device(a, 32 * MIB + offset, os.urandom(256 * 1024))
            offset = (offset + 256 * 1024) % (32 * MIB)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        b.marsadm("join-resource", RES, b.disk)
        wait_until(lambda: view(b, "sync-rest") == "0", what="b's sync",
                   show=lambda: view(b, "sync-rest"))
    finally:
        stop.set()
        writer.join()
    keys = b.live_values(f"resource-{RES}/")
    syncpos = Cursor.parse(keys[f"resource-{RES}/syncpos-b"])
    assert cursor_of(b).order < syncpos.order, (cursor_of(b), syncpos)
    assert view(b, "is-consistent") == "0", "consistent before replaying what the sync overlapped"
    assert cursor_of(b).logfile == "log-000000001-a" and not logfiles(b)

    a.marsadm("log-rotate", RES)
    wait_until(lambda: "log-000000002-a" in logfiles(a), what="log-000000002-a on a")
    data = os.urandom(3 * MIB)
    write_device(a, 16 * MIB, data)
    (log_dir(a) / "log-000000001-a").unlink()      # what a did not knowing b yet
    resumed_globally(a, "fetch", "replay")
    wait_until(lambda: "full sync again" in b.current_log(),
               what="b noticing that log-000000001-a is gone",
               show=lambda: b.current_log()[-2000:])
    datanet.wait(b, RES)
    assert b.current_log().count("full sync again") == 1, \
        "the next sync waits for a's checkpoint past the deleted logfile"
    assert view(b, "is-consistent") == "1"
    assert cursor_of(b).logfile == "log-000000002-a"
    assert disk_bytes(b, 16 * MIB, len(data)) == data
    assert disks_equal(datanet, a, b)

    # A consistent replica that loses a logfile keeps its state and says what to do.
    paused_globally(a, b, "fetch")
    wait_until(lambda: view(b, "replstate") == "PausedFetch", what="PausedFetch",
               show=lambda: view(b, "replstate"))
    write_device(a, 40 * MIB, os.urandom(1 * MIB))
    a.marsadm("log-rotate", RES)
    wait_until(lambda: "log-000000003-a" in logfiles(a), what="log-000000003-a on a")
    (log_dir(a) / "log-000000002-a").unlink()
    position = cursor_of(b)
    resumed_globally(a, "fetch")
    wait_until(lambda: "log-000000002-a is gone on a before this host fetched all of it" in
               b.marsadm("view", RES).stdout, what="b saying that it needs invalidate",
               show=lambda: b.marsadm("view", RES).stdout)
    assert "`marsadm invalidate vm1` syncs it anew" in b.marsadm("view", RES).stdout
    assert view(b, "is-consistent") == "1" and cursor_of(b) == position


# ----------------------------------------- 6./7. progress view and metrics
PROGRESS = re.compile(r"^  sync: (\d+\.\d)% .* of 320\.0 MiB, rate (\d+\.\d) (KiB|MiB|GiB)/s, "
                      r"eta (\d+:\d\d:\d\d)$", re.M)


def metric(host, name):
    """The value of counter `name` for vm1, from the host's metrics endpoint."""
    with urllib.request.urlopen(f"http://{host.address}:7780/metrics",
                                timeout=STATE_WAIT) as reply:
        text = reply.read().decode()
    match = re.search(rf'^{name}(?:_total)?{{resource="{RES}"}} (\S+)$', text, re.M)
    assert match, f"{name} missing on {host.name}:\n{text}"
    return float(match.group(1))


def test_sync_progress_view_and_metrics(datanet):
    a, b = start_primary(datanet, "a", "b")
    datanet.mkfs(a, RES)
    datanet.mount(a, RES)
    # 48 MiB for the sync to carry (it is held by pause-sync if too quick to see)
    write_files(a.mnt, 12, 4 * MIB, prefix="bulk", fsync=False)
    os.sync()
    b.wait_knows(RES)
    b.marsadm("join-resource", RES, b.disk)
    wait_until(lambda: status_of(b).get("sync_done", 0) > 0, interval=0.01, longest=0.01,
               what="b's sync under way", show=lambda: status_of(b))
    summary = b.marsadm("view", RES).stdout
    match = PROGRESS.search(summary)
    if match is None or not status_of(b).get("syncing"):
        b.marsadm("pause-sync", RES)        # it was too quick: hold it and look again
        summary = b.marsadm("view", RES).stdout
        match = PROGRESS.search(summary)
        b.marsadm("resume-sync", RES)
    assert match, summary
    assert summary.startswith("vm1 [2/2] InConsistent "), summary
    assert 0 < float(match.group(1)) < 100 and float(match.group(2)) > 0, summary

    datanet.wait(b, RES)
    write_files(a.mnt, 4, 1 * MIB, prefix="after")
    datanet.wait(b, RES)
    assert metric(a, "mars_logged_bytes") >= 48 * MIB
    assert metric(b, "mars_synced_bytes") >= 48 * MIB
    assert metric(b, "mars_fetched_bytes") >= 4 * MIB
    assert metric(b, "mars_replayed_bytes") >= 4 * MIB

    # A replica with nothing left to fetch or replay waits for news (its
    # source's next checkpoint); it stepped every 0.05 s for 2 s after
    # any data before.
    datanet.umount(a)
    datanet.wait(b, RES)
    wait_until(lambda: cursor_of(b) is not None and cursor_of(b).order == cursor_of(a).order,
               what="b's cursor written, at a's checkpoint",
               show=lambda: (cursor_of(a), cursor_of(b)))
    for _ in range(5):          # a window in which a's checkpoint stayed (no news for b)
        steps, checkpoint = metric(b, "mars_worker_steps"), cursor_of(a)
        time.sleep(1.2)         # the window in which b used to step ~24 times
        if cursor_of(a) == checkpoint:
            break
    steps = metric(b, "mars_worker_steps") - steps
    assert steps <= 6, f"b stepped {steps:g} times with nothing to do"

"""A power loss of the primary made a false split brain: the fetch server
served the bytes of the primary's logfile as they stood, durable or not
(the device appends a write and acknowledges it, and makes the log
durable only on a flush, a checkpoint or a rotation). The secondary
fetched and replayed records the power loss then took; the primary came
back with a shorter logfile (its torn tail cut, its version written at
that end), and the secondary, having replayed past that end, declared a
split brain (every replica to be synced anew), although no flushed write
differed. Only what is durable at the source is served now."""

import os
from functools import partial
from types import SimpleNamespace

import pytest
import trio

from mars.follow import LogFollower
from mars.history import SplitBrain
from mars.keys import version_name
from mars.logfile import LogWriter
from mars.replay import version_value
from mars.transfer import FETCH_MAX, DataServer

LOGFILE = "log-000000001-h1"


@pytest.fixture
def durable(monkeypatch):
    """{inode: bytes durable}: a model of the disk under the primary's
    state dir, which holds of a file what its last fdatasync covered."""
    real = os.fdatasync
    synced = {}

    def fdatasync(fd):
        real(fd)
        stat = os.fstat(fd)
        synced[stat.st_ino] = stat.st_size

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    return synced


def fetch_all(server):
    """A secondary's fetch, as `LogFollower._fetch_logfiles` asks: the
    listing, then reads up to each listed size. {logfile: bytes}."""
    async def fetch():
        reply, _ = await server.answer_fetch({"type": "logs", "res": "vm1"})
        copies = {}
        for name, size in reply["files"]:
            copy = b""
            while len(copy) < size:
                _, data = await server.answer_fetch(
                    {"type": "read", "res": "vm1", "logfile": name, "offset": len(copy),
                     "max": min(FETCH_MAX, size - len(copy))})
                if not len(data):
                    break
                copy += bytes(data.read())
            copies[name] = copy
        return copies
    return trio.run(fetch)


def test_a_power_loss_of_the_primary_after_a_fetch_is_no_split_brain(tmp_path, durable):
    directory = tmp_path / "primary" / "resource-vm1"
    directory.mkdir(parents=True)
    path = directory / LOGFILE
    writer = LogWriter(str(path), 1)
    for number in range(2):
        writer.append(1000 + number, number * 4096, bytes([number + 1]) * 4096)
    writer.sync()                       # a flush
    for number in range(2, 4):          # acknowledged, not flushed
        writer.append(1000 + number, number * 4096, bytes([number + 1]) * 4096)
    server = DataServer(str(tmp_path / "primary"), lambda res: "", lambda res: 0)
    copy = fetch_all(server)[LOGFILE]

    # the secondary replays what it fetched (no end of the logfile known yet)
    secondary = tmp_path / "secondary"
    secondary.mkdir()
    (secondary / LOGFILE).write_bytes(copy)
    disk = secondary / "disk"
    disk.write_bytes(bytes(4 * 4096))
    metadata = {}
    state = SimpleNamespace(resource_value=lambda res, name, default=None:
                            metadata.get(name, default),
                            disk=lambda res: str(disk))

    async def write_version(logfile, end, digests=None):
        return metadata[version_name(1, "h1")]  # (digests agree: not what this is about)

    worker = SimpleNamespace(
        res="vm1", host="h2", dir=secondary, state=lambda: state, report=lambda **facts: None,
        write=lambda values: None, stall=None, waiting_for=lambda why: None,
        history=SimpleNamespace(write_version=write_version),
        rates={"replay": SimpleNamespace(add=lambda count: None)},
        metrics=SimpleNamespace(replayed=SimpleNamespace(
            labels=lambda res: SimpleNamespace(inc=lambda count: None))))
    follower = LogFollower(worker)
    while trio.run(follower._replay, state):
        pass
    assert follower.cursor.position == len(copy)

    # power loss: the primary's logfile holds what was durable; its device
    # comes back, and its version of the logfile says that end
    writer.close()
    os.truncate(path, durable.get(os.stat(path).st_ino, 0))
    kept = path.read_bytes()
    metadata[version_name(1, "h1")] = version_value("", LOGFILE, len(kept), [b"x" * 20])
    try:
        trio.run(follower._replay, state)
    except SplitBrain as exc:
        pytest.fail(f"split brain after the primary's power loss: {exc}")
    assert copy == kept[:len(copy)], "the secondary fetched bytes the primary's log lost"


def test_a_logfile_that_did_not_change_since_its_last_sync_is_not_synced_again(
        tmp_path, monkeypatch):
    directory = tmp_path / "primary" / "resource-vm1"
    directory.mkdir(parents=True)
    (directory / LOGFILE).write_bytes(b"x" * 100)
    server = DataServer(str(tmp_path / "primary"), lambda res: "", lambda res: 0)
    real, synced = os.fdatasync, []
    monkeypatch.setattr(os, "fdatasync", lambda fd: synced.append(fd) or real(fd))
    for _ in range(3):
        reply, _ = trio.run(partial(server.answer_fetch, {"type": "logs", "res": "vm1"}))
        assert reply["files"] == [(LOGFILE, 100)]
    assert len(synced) == 1
    with open(directory / LOGFILE, "ab") as handle:
        handle.write(b"y" * 10)
    reply, _ = trio.run(partial(server.answer_fetch, {"type": "logs", "res": "vm1"}))
    assert reply["files"] == [(LOGFILE, 110)] and len(synced) == 2


def test_a_failed_sync_of_a_logfile_serves_it_no_further_than_it_was_durable(
        tmp_path, fails_once):
    """Linux says a lost write-back once: the next fdatasync succeeds
    without it. The failure is kept."""
    directory = tmp_path / "primary" / "resource-vm1"
    directory.mkdir(parents=True)
    path = directory / LOGFILE
    path.write_bytes(b"x" * 100)
    server = DataServer(str(tmp_path / "primary"), lambda res: "", lambda res: 0)
    assert server.durable_size(str(path)) == 100
    fails_once["armed"] = True
    with open(path, "ab") as handle:
        handle.write(b"y" * 10)
    assert server.durable_size(str(path)) == 100
    with open(path, "ab") as handle:
        handle.write(b"z" * 10)
    assert server.durable_size(str(path)) == 100
    reply, data = trio.run(partial(server.answer_fetch, {"type": "read", "res": "vm1",
                                                         "logfile": LOGFILE, "offset": 90,
                                                         "max": 50}))
    assert reply["size"] == 100 and len(data) == 10


def test_a_logfile_cut_after_its_sync_is_served_no_further_than_it_holds(tmp_path):
    """A device that crashed (marsd did not) cuts the torn record off its
    logfile at its next start, below what the fetch server had synced: a
    read then went past the file's end (sendfile short: the connection
    broken)."""
    directory = tmp_path / "primary" / "resource-vm1"
    directory.mkdir(parents=True)
    path = directory / LOGFILE
    path.write_bytes(b"x" * 100)
    server = DataServer(str(tmp_path / "primary"), lambda res: "", lambda res: 0)
    assert server.durable_size(str(path)) == 100
    os.truncate(path, 60)
    reply, data = trio.run(partial(server.answer_fetch, {"type": "read", "res": "vm1",
                                                         "logfile": LOGFILE, "offset": 50,
                                                         "max": 40}))
    assert reply["size"] == 60 and len(data) == 10

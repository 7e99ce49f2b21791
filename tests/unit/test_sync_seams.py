"""The seams of a sync: the whole sync client (`SyncClient.sync`, step by
step as the worker calls it) against real sync servers (`DataServer`) on
socket pairs, then the replay from where the sync says, and both sides
checksummed: a replica must end byte-identical to its source."""

import hashlib
import os
import random
from functools import partial
from types import SimpleNamespace

import pytest
import trio

from mars import net, syncclient
from mars.errors import PeerError
from mars.keys import replay_name, res_key, syncpos_name, syncstatus_name
from mars.lamport import LamportClock
from mars.replay import Cursor, replay
from mars.syncclient import SyncClient
from mars.transfer import DataServer
from tests.unit.conftest import write_log

SMALL = 4096                    # chunk size of these tests: fast, the same code path
RES = "vm1"


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


class Cluster:
    """The sync client of host `c` and sync servers of other hosts, each
    with its disk and its resource dir (its logfiles); the metadata one
    dict that all see."""

    def __init__(self, tmp_path, size, fast=False):
        self.tmp = tmp_path
        self.size = size
        self.keys = {}                  # resource-level names -> values (the metadata)
        self.servers = {}
        self.worker = SimpleNamespace(
            res=RES, host="c", news_arrived=False,
            daemon=SimpleNamespace(fast_sync=fast, hold_sync_after=None,
                                   keep_standby_ready=lambda: None),
            wait=lambda reason: None, report=lambda **status: None,
            save_progress=lambda: None,
            missed_writes=lambda state: False, write=self._write,
            store=SimpleNamespace(value=self._value, live_values=self._live_values),
            rates={"sync": SimpleNamespace(add=lambda count: None)},
            metrics=SimpleNamespace(synced=SimpleNamespace(labels=lambda res: SimpleNamespace(
                inc=lambda count: None))),
            follower=SimpleNamespace(cursor=None, drop_local_logs=lambda: None,
                                     gone_at_source=lambda logfile: False))
        self.state = SimpleNamespace(
            resource_value=lambda res, name, default=None: self.keys.get(name, default),
            disk=lambda res: str(tmp_path / "disk-c"),
            resources=lambda: {RES: dict(self.keys)})
        self.client = SyncClient(self.worker)

    def _write(self, changes):
        prefix = res_key(RES, "")
        for key, value in changes.items():
            name = key[len(prefix):]
            if value is None:
                self.keys.pop(name, None)
            else:
                self.keys[name] = str(value)

    def _value(self, key, default=""):
        return self.keys.get(key[len(res_key(RES, "")):], default)

    def _live_values(self, prefix=""):
        return {res_key(RES, name): value for name, value in self.keys.items()}

    def add_server(self, host, disk, size=None):
        directory = self.tmp / f"state-{host}"
        (directory / f"resource-{RES}").mkdir(parents=True)
        self.servers[host] = DataServer(str(directory), disk_of=lambda res: str(disk),
                                        size_of=lambda res: size or self.size)
        return directory / f"resource-{RES}"

    async def run(self, steps, monkeypatch):
        """`steps`: (source, how many sync calls at most) while the sync is
        not complete; a call that raises PeerError counts as one."""
        async with trio.open_nursery() as nursery:
            async def channel(state, source, port, stream=0):
                ours, theirs = trio.socket.socketpair()     # (no network in unit tests)

                async def open_tcp_stream(*args, **kwargs):
                    return trio.SocketStream(ours)
                monkeypatch.setattr(net.trio, "open_tcp_stream", open_tcp_stream)
                nursery.start_soon(partial(
                    self.servers[source].serve_connection, trio.SocketStream(theirs),
                    self.servers[source].answer_sync, port=7779, key=b"secret", host=source,
                    clock=LamportClock()))
                return await net.connect("127.0.0.1", 7779, "c", b"secret", clock=LamportClock())

            async def request(state, source, port, header):
                return await self.servers[source].answer_fetch(header)

            async def drop(source, port):
                pass

            self.worker.channels = SimpleNamespace(channel=channel, request=request, drop=drop)
            self.worker.nursery = nursery
            for source, calls in steps:
                for _ in range(calls):
                    synced = int(self.keys.get(syncstatus_name("c"), "0") or 0)
                    if synced >= self.size:
                        break
                    try:
                        await self.client.sync(self.state, source, synced, self.size)
                    except PeerError:
                        pass
            nursery.cancel_scope.cancel()

    def replay_from_cursor(self, logfile):
        """What the follower does once the sync is complete: replay from
        this host's replay cursor (its own copy of the logfile: `logfile`)."""
        cursor = Cursor.parse(self.keys[replay_name("c")])
        fd = os.open(self.tmp / "disk-c", os.O_RDWR)
        try:
            replay(logfile, fd, cursor.position)
        finally:
            os.close(fd)


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(syncclient, "CHUNK", SMALL)
    monkeypatch.setattr(syncclient, "SYNC_STREAMS", 1)
    monkeypatch.setattr(syncclient, "SYNC_PERSIST_EVERY", 1e9)


@pytest.mark.parametrize("restarted", [False, True], ids=["running", "marsd-restarted"])
@pytest.mark.parametrize("fast", [False, True])
def test_a_sync_whose_source_changes_midway_ends_equal_to_the_history_after_replay(
        tmp_path, monkeypatch, small_chunks, fast, restarted):
    """A handover while a third member syncs: the designated primary (the
    sync's source) moves from a to b, which still replays a's log behind
    the position the sync started from (a's checkpoint). The chunks copied
    from b then lack writes that came before that position, and the replay
    from it never brings them: the replica must not go on mixing a's
    chunks with b's on a's start, but sync anew from b's. Also where the
    source changed while marsd was down (`restarted`): the source lived in
    memory only, and the resumed sync went on from the new one on the old
    one's start; it is recorded (`syncsource-<host>`)."""
    size = 4 * SMALL
    base = random.Random(1).randbytes(size)
    newer = random.Random(2).randbytes(SMALL)
    (tmp_path / "disk-a").write_bytes(base[:3 * SMALL] + newer)   # a: the write of block 3 applied
    (tmp_path / "disk-b").write_bytes(base)                      # b: not yet replayed
    (tmp_path / "disk-c").write_bytes(random.Random(3).randbytes(size))     # c: stale
    cluster = Cluster(tmp_path, size, fast)
    for host in ("a", "b"):
        directory = cluster.add_server(host, tmp_path / f"disk-{host}")
        write_log(directory / "log-000000001-a", [(3 * SMALL, newer)])
    end = (directory / "log-000000001-a").stat().st_size
    cluster.keys[replay_name("a")] = f"log-000000001-a,{end},{end}"   # a's disk has it all
    cluster.keys[replay_name("b")] = f"log-000000001-a,0,{end}"        # b's not yet

    cluster.worker.daemon.hold_sync_after = 2 * SMALL   # the first half from a, then the handover

    async def main():
        await cluster.run([("a", 3)], monkeypatch)
        assert cluster.keys[syncstatus_name("c")] == str(2 * SMALL)
        cluster.worker.daemon.hold_sync_after = None
        if restarted:
            cluster.client = SyncClient(cluster.worker)     # marsd restarted
        await cluster.run([("b", 10)], monkeypatch)

    trio.run(main)
    assert cluster.keys[syncstatus_name("c")] == str(size)
    cluster.replay_from_cursor(tmp_path / "state-b" / f"resource-{RES}" / "log-000000001-a")
    assert sha(tmp_path / "disk-c") == sha(tmp_path / "disk-a"), \
        "the replica differs from the history it follows"
    assert Cursor.parse(cluster.keys[syncpos_name("c")]).position == end


@pytest.mark.parametrize("behind", [SMALL, SMALL // 2])
def test_a_sync_from_a_source_that_answers_for_a_smaller_size_counts_nothing_it_did_not_send(
        tmp_path, monkeypatch, small_chunks, behind):
    """A resize races the sync: the source still answers for its former
    size (a chunk, or half of one, less) while this host asks for the new
    one. Its reply lacks the end; the sync must not count that as copied
    (it did, and the replica's end stayed as it was), but wait until the
    source answers for the size it asks for."""
    size = 10 * SMALL
    source = random.Random(1).randbytes(size)
    (tmp_path / "disk-a").write_bytes(source)
    (tmp_path / "disk-c").write_bytes(random.Random(3).randbytes(size))
    cluster = Cluster(tmp_path, size)
    sizes = {"a": size - behind}
    directory = cluster.add_server("a", tmp_path / "disk-a")
    cluster.servers["a"].size_of = lambda res: sizes["a"]
    write_log(directory / "log-000000001-a", [(0, source[:SMALL])])
    end = (directory / "log-000000001-a").stat().st_size
    cluster.keys[replay_name("a")] = f"log-000000001-a,{end},{end}"

    trio.run(cluster.run, [("a", 5)], monkeypatch)
    synced = int(cluster.keys.get(syncstatus_name("c"), "0"))
    assert synced < size, "the sync counted what the source never sent"

    sizes["a"] = size                       # the source learnt of the resize
    trio.run(cluster.run, [("a", 5)], monkeypatch)
    assert cluster.keys[syncstatus_name("c")] == str(size)
    assert sha(tmp_path / "disk-c") == sha(tmp_path / "disk-a")


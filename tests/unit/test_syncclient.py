"""The sync client's pure parts: what syncstatus may claim when the pieces
of a range, copied over several streams, finish out of order; what a step
keeps when it fails."""

import random
from functools import partial
from types import SimpleNamespace

import pytest
import trio

from mars import net
from mars.errors import PeerError
from mars.lamport import LamportClock
from mars.follow import LogFollower
from mars.keys import replay_name, res_key, syncpos_name, syncsource_name
from mars import syncclient
from mars.worker import ResourceWorker
from mars.syncclient import SYNC_STEP_SECONDS, Frontier, SyncClient, step_requests
from mars.transfer import CHUNK, CHUNKS_PER_REQUEST, MOST_CHUNKS_PER_REQUEST, DataServer
from mars.directio import aligned_buffer


def test_the_frontier_stays_at_the_first_gap_until_it_is_filled():
    frontier = Frontier(100)
    assert frontier.written(120, 140) == 100        # a gap at 100..120
    assert frontier.written(140, 160) == 100
    assert frontier.written(100, 120) == 160        # gap filled: all three count
    assert frontier.written(160, 170) == 170


def test_the_frontier_after_pieces_in_any_order_is_where_the_pieces_are_gapless():
    pieces = [(start, start + 16) for start in range(0, 16 * 50, 16)]
    for seed in range(20):
        order = pieces[:]
        random.Random(seed).shuffle(order)
        frontier, done = Frontier(0), set()
        for piece in order:
            done.add(piece)
            complete = frontier.written(*piece)
            expected = 0
            while (expected, expected + 16) in done:
                expected += 16
            assert complete == expected
        assert complete == 16 * 50 and not frontier.ahead


def test_a_sync_step_that_loses_its_source_lets_go_of_the_reply_buffers():
    """The buffers a sync receives into (6 x 16 MiB) are kept from one step
    to the next, but not while the source is gone: a step that fails drops
    them, and the next step that runs makes new ones."""
    client = SyncClient(SimpleNamespace(
        res="vm1", host="b", daemon=SimpleNamespace(fast_sync=False, hold_sync_after=None),
        wait=lambda reason: None, report=lambda **status: None))
    state = SimpleNamespace(
        resource_value=lambda res, name, default=None: {
            syncpos_name("b"): "log-000000001-a,0,0", syncsource_name("b"): "a"}.get(name,
                                                                                 default),
        disk=lambda res: "/nonexistent/disk")

    async def interrupted(*args):
        client.spare_buffers.extend(aligned_buffer(4096) for _ in range(6))
        raise PeerError("sync from a interrupted: connection lost")

    client._sync_range = interrupted
    with pytest.raises(PeerError, match="interrupted"):
        trio.run(client.sync, state, "a", 0, 1 << 20)
    assert client.spare_buffers == []


def test_a_new_sync_waits_while_the_sources_checkpoint_names_a_logfile_it_deleted():
    """A replica whose sync start logfile was gone syncs anew from the
    source's checkpoint; while that still names the deleted logfile (the
    source's listing has a later one and not it), it waits for the next
    checkpoint instead of a sync that finds it gone again (one test saw
    ~300 full syncs in 30 s). From a logfile the source has, it starts."""
    waits, writes = [], []
    follower = SimpleNamespace(remote={"log-000000002-a": 4096}, cursor=None,
                               drop_local_logs=lambda: None)
    follower.gone_at_source = lambda logfile: LogFollower.gone_at_source(follower, logfile)
    client = SyncClient(SimpleNamespace(
        res="vm1", host="b", daemon=SimpleNamespace(fast_sync=False, hold_sync_after=None),
        wait=waits.append, report=lambda **status: None, follower=follower,
        write=writes.append))
    checkpoint = {replay_name("a"): "log-000000001-a,10225716,10225716"}
    state = SimpleNamespace(resource_value=lambda res, name, default=None:
                            checkpoint.get(name, default), disk=lambda res: "/nonexistent/disk",
                            resources=lambda: {})
    assert trio.run(client.sync, state, "a", 0, 1 << 20) is False
    assert waits[-1] == ("waiting for a's log position past log-000000001-a, which it deleted")
    assert writes == [] and follower.cursor is None, "nothing changed while it waits"

    checkpoint[replay_name("a")] = "log-000000002-a,4096,4096"

    async def stop_at_the_copy(*args):
        raise PeerError("stopped here")
    client._sync_range = stop_at_the_copy
    with pytest.raises(PeerError, match="stopped here"):
        trio.run(client.sync, state, "a", 0, 1 << 20)
    assert writes[0][res_key("vm1", syncpos_name("b"))] == "log-000000002-a,4096,4096"


def test_a_sync_step_hands_out_requests_in_order_while_it_may_go_on():
    """A step asks for the chunks from where the sync is towards the end,
    request after request without a gap, the last one short at the end of
    the disk; once it may not go on (its time is up, or news arrived) it
    hands out no more (its first always), and the next step starts where it
    stopped."""
    request = CHUNK * CHUNKS_PER_REQUEST
    target = 5 * request + 3 * CHUNK                # the disk's end inside a request

    assert list(step_requests(0, target, lambda: True)) == [
        (0, 16), (request, 16), (2 * request, 16), (3 * request, 16), (4 * request, 16),
        (5 * request, 3)]

    handed = []
    for offset, count in step_requests(request, target, lambda: len(handed) < 3):
        handed.append((offset, count))
    assert handed == [(request, 16), (2 * request, 16), (3 * request, 16)]

    assert list(step_requests(4 * request, target, lambda: False)) == [(4 * request, 16)], \
        "a step that may not go on still makes progress"
    assert list(step_requests(target, target, lambda: True)) == []


def test_a_sync_step_ends_after_its_time_or_at_news_for_the_worker(monkeypatch):
    """What a sync step asks before each further request: the clock
    against SYNC_STEP_SECONDS from the step's start, and the worker's news
    (a pause or a leave must not wait for the end of the disk)."""
    clock = [100.0]
    monkeypatch.setattr(syncclient.time, "monotonic", lambda: clock[0])
    worker = SimpleNamespace(res="vm1", host="b", news_arrived=False)
    client = SyncClient(worker)
    asked = []

    async def _stream(channel, source, pending, *rest):
        for offset, count in pending:
            asked.append(offset)
            if len(asked) == 2:
                clock[0] += SYNC_STEP_SECONDS       # the step's time is up

    async def channel(state, source, port, stream):
        return None

    worker.channels = SimpleNamespace(channel=channel)
    client._stream = _stream
    request = CHUNK * CHUNKS_PER_REQUEST
    trio.run(client._sync_range, None, "a", "/nonexistent/disk", 0, 64 * request,
             64 * request, False)
    assert asked == [0, request], "no request after the step's time"

    clock[0] = 200.0
    asked.clear()

    async def _stream_news(channel, source, pending, *rest):
        for offset, count in pending:
            asked.append(offset)
            if len(asked) == 3:
                worker.news_arrived = True          # e.g. pause-sync reached the store
    client._stream = _stream_news
    trio.run(client._sync_range, None, "a", "/nonexistent/disk", 0, 64 * request,
             64 * request, False)
    assert asked == [0, request, 2 * request], "no request after news"


def test_a_fast_sync_asks_for_more_chunks_while_they_are_the_same_and_fewer_once_one_travels(
        tmp_path, monkeypatch):
    """A fast sync against a real sync server on the loopback: its requests
    grow to MOST_CHUNKS_PER_REQUEST after a reply whose chunks were all the
    same, and go back to CHUNKS_PER_REQUEST after one in which a chunk
    travelled; the target ends equal to the source, only the differing
    chunks having travelled. (One stream, one request in flight: the order
    of the requests is then fixed; small chunks, the same code path.)"""
    chunk, count = 4096, 200
    monkeypatch.setattr(syncclient, "CHUNK", chunk)
    monkeypatch.setattr(syncclient, "SYNC_STREAMS", 1)
    monkeypatch.setattr(syncclient, "SYNC_PIPELINE", 1)
    source = random.Random(1).randbytes(chunk * count)
    target = bytearray(source)
    target[100 * chunk:104 * chunk] = random.Random(2).randbytes(4 * chunk)   # 4 chunks differ
    (tmp_path / "source").write_bytes(source)
    (tmp_path / "target").write_bytes(target)
    size = len(source)
    server = DataServer(str(tmp_path), disk_of=lambda res: str(tmp_path / "source"),
                        size_of=lambda res: size)
    asked = []

    async def answer(header, buffer=None):
        reply, data = await server.answer_sync(header, buffer)
        asked.append((header["offset"] // chunk, header["count"], reply["kinds"]))
        return reply, data

    received = []
    worker = SimpleNamespace(
        res="vm1", host="b", news_arrived=False, rates={"sync": SimpleNamespace(add=received.append)},
        metrics=SimpleNamespace(synced=SimpleNamespace(labels=lambda res: SimpleNamespace(
            inc=lambda count: None))),
        report=lambda **status: None, save_progress=lambda: None)
    client = SyncClient(worker)
    client.done = 0

    async def main():
        ours, theirs = trio.socket.socketpair()         # (no network in unit tests)

        async def open_tcp_stream(*args, **kwargs):
            return trio.SocketStream(ours)
        monkeypatch.setattr(net.trio, "open_tcp_stream", open_tcp_stream)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(server.serve_connection, trio.SocketStream(theirs), answer,
                                       port=7779, key=b"secret", host="a", clock=LamportClock()))
            channel = await net.connect("127.0.0.1", 7779, "b", b"secret", clock=LamportClock())

            async def connected(*args):
                return channel
            worker.channels = SimpleNamespace(channel=connected)
            while client.done < size:       # (a step may end after its time on a busy machine)
                await client._sync_range(None, "a", str(tmp_path / "target"), client.done, size,
                                         size, True)
            await channel.aclose()
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert (tmp_path / "target").read_bytes() == source
    assert [(start, chunks) for start, chunks, _ in asked] == [
        (0, CHUNKS_PER_REQUEST),                                  # the usual first
        (16, MOST_CHUNKS_PER_REQUEST),                            # after 16 the same
        (80, MOST_CHUNKS_PER_REQUEST),                            # holds 100..103
        (144, CHUNKS_PER_REQUEST),                                # after one travelled
        (160, count - 160)], asked                               # the same again: the rest
    assert asked[2][2] == "s" * 20 + "d" * 4 + "s" * 40
    assert server.bytes_served["sync"] == 4 * chunk, "more than the differing chunks travelled"


def test_a_fast_sync_asks_for_more_chunks_only_after_chunks_found_the_same():
    """Same chunks (`s`, zeros on both sides beside them) make the next
    requests larger; a chunk that travelled, or zeros alone (a new member's
    empty volume, whose data after a run of zeros would need new buffers
    every time), the usual size."""
    client = SyncClient(SimpleNamespace(res="vm1"))
    for kinds, chunks in (("ssss", MOST_CHUNKS_PER_REQUEST), ("zzzz", CHUNKS_PER_REQUEST),
                          ("sszz", MOST_CHUNKS_PER_REQUEST), ("ssds", CHUNKS_PER_REQUEST),
                          ("zzdz", CHUNKS_PER_REQUEST)):
        client._sized("ssss", True)
        client._sized(kinds, True)
        assert client.request_chunks == chunks, kinds


def test_a_new_sync_does_not_start_from_before_another_members_emergency_mark():
    """Its copy would miss what that member wrote unlogged (and be started
    anew at its end, over and over while the source's cursor stood at the
    mark): it waits for the source's log to go on past it."""
    waits, writes = [], []
    follower = SimpleNamespace(remote={"log-000000002-a": 4096}, cursor=None,
                               drop_local_logs=lambda: None, gone_at_source=lambda name: False)
    client = SyncClient(SimpleNamespace(
        res="vm1", host="b", daemon=SimpleNamespace(fast_sync=False, hold_sync_after=None),
        wait=waits.append, report=lambda **status: None, follower=follower,
        write=writes.append))
    keys = {replay_name("a"): "log-000000002-a,4096,4096", "unlogged-a": "log-000000002-a,4096,4096"}
    state = SimpleNamespace(resource_value=lambda res, name, default=None: keys.get(name, default),
                            disk=lambda res: "/nonexistent/disk", resources=lambda: {"vm1": keys})
    assert trio.run(client.sync, state, "a", 0, 1 << 20) is False
    assert "waiting for a's log to go on past where a stopped logging (emergency mode, " \
        "log-000000002-a,4096)" in waits[-1], waits
    assert writes == []


def test_the_creator_does_not_sync_a_grown_tail_after_missing_another_members_unlogged_writes():
    """The member that created the resource has no `syncpos`: every mark of
    another member counts against it. Its sync of a grown tail (after a
    resize) would record its own cursor as `syncpos` — past a mark it
    replayed beyond, and the writes it missed no longer counted: it waits
    for `invalidate` instead, writing nothing."""
    waits, writes, emergency = [], [], []
    worker = SimpleNamespace(
        res="vm1", host="a", daemon=SimpleNamespace(fast_sync=False, hold_sync_after=None),
        wait=waits.append, report=lambda **status: None, write=writes.append,
        set_emergency=emergency.append)
    worker.missed_writes = partial(ResourceWorker.missed_writes, worker)
    keys = {replay_name("a"): "log-000000003-b,8192,8192", "unlogged-b": "log-000000002-b,4096,4096"}
    state = SimpleNamespace(resource_value=lambda res, name, default=None: keys.get(name, default),
                            disk=lambda res: "/nonexistent/disk", resources=lambda: {"vm1": keys})
    client = SyncClient(worker)
    assert trio.run(client.sync, state, "b", 1 << 20, 2 << 20) is False
    assert writes == [] and emergency == [True]
    assert "b wrote to its disk without logging (emergency mode, from log-000000002-b,4096 on)" \
        in waits[-1] and "marsadm invalidate vm1" in waits[-1], waits

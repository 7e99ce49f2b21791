"""The sync client's pure parts: what syncstatus may claim when the pieces
of a range, copied over several streams, finish out of order; what a step
keeps when it fails."""

import random
from types import SimpleNamespace

import pytest
import trio

from mars.errors import PeerError
from mars.follow import LogFollower
from mars.keys import replay_name, res_key, syncpos_name
from mars.syncclient import Frontier, SyncClient
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
            syncpos_name("b"): "log-000000001-a,0,0"}.get(name, default),
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
                            checkpoint.get(name, default), disk=lambda res: "/nonexistent/disk")
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

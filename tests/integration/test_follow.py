"""A secondary's fetch (mars/follow.py) against a real fetch server over
loopback TCP: a range of many replies with requests in flight, a reply that
comes short, and replay going on while the fetch does."""

import os
import random
from types import SimpleNamespace

import pytest
import trio

from mars import follow, net, transfer
from mars.channels import PeerChannels
from mars.errors import PeerError
from mars.history import SplitBrain
from mars.logfile import LogScan
from mars.lamport import LamportClock
from mars.replay import Cursor
from mars.transfer import DataServer

KEY = b"cluster-secret"
LOGFILE = "log-000000001-a"
SMALL_FETCH = 64 * 1024                 # bytes per reply here: many replies, same code path


class Rate:
    def __init__(self):
        self.total = 0

    def add(self, count):
        self.total += count


class ResourceState:
    """The metadata a fetch reads: the hosts' addresses (and no cursors)."""

    @staticmethod
    def host_ips():
        return {"a": "127.0.0.1", "b": "127.0.0.1"}

    @staticmethod
    def resource_value(res, name, default=None):
        return default


def follower_of(directory, channels):
    counter = SimpleNamespace(inc=lambda count: None)
    worker = SimpleNamespace(res="vm1", dir=directory, channels=channels,
                             report=lambda **fields: None, rates={"fetch": Rate()},
                             metrics=SimpleNamespace(fetched=SimpleNamespace(
                                 labels=lambda res: counter)))
    return follow.LogFollower(worker)


@pytest.fixture
def source(tmp_path, monkeypatch):
    """a's state dir with one logfile of 10 replies and a bit; b's resource
    dir, empty."""
    monkeypatch.setattr(transfer, "FETCH_MAX", SMALL_FETCH)
    monkeypatch.setattr(follow, "FETCH_MAX", SMALL_FETCH)
    a_dir = tmp_path / "a" / "resource-vm1"
    a_dir.mkdir(parents=True)
    data = random.Random(5).randbytes(10 * SMALL_FETCH + 1234)
    (a_dir / LOGFILE).write_bytes(data)
    b_dir = tmp_path / "b"
    b_dir.mkdir()
    return SimpleNamespace(data=data, path=a_dir / LOGFILE, b_dir=b_dir,
                           server=DataServer(str(tmp_path / "a"), lambda res: "", lambda res: 0))


async def serving(nursery, server, monkeypatch, answer=None):
    """Serve a's fetch port on a free loopback port; b's channels to it."""
    listeners = await nursery.start(server.serve, 0, answer or server.answer_fetch,
                                    "127.0.0.1", KEY, "a", LamportClock())
    monkeypatch.setattr(follow, "PORT_FETCH", listeners[0].socket.getsockname()[1])
    return PeerChannels("b", lambda: KEY, LamportClock())


def run_with_server(source, monkeypatch, body, answer=None):
    async def main():
        async with trio.open_nursery() as nursery:
            channels = await serving(nursery, source.server, monkeypatch, answer)
            try:
                with trio.fail_after(20):
                    return await body(follower_of(source.b_dir, channels))
            finally:
                await channels.close()
                nursery.cancel_scope.cancel()
    return trio.run(main)


def test_a_range_of_many_replies_is_appended_in_order_byte_for_byte(source, monkeypatch):
    (source.b_dir / LOGFILE).write_bytes(source.data[:1000])     # fetched before

    async def body(follower):
        got = await follower._fetch_range(ResourceState(), "a", LOGFILE, 1000, len(source.data))
        return got, follower.worker.rates["fetch"].total

    got, counted = run_with_server(source, monkeypatch, body)
    assert got == counted == len(source.data) - 1000
    assert (source.b_dir / LOGFILE).read_bytes() == source.data


def test_requests_are_in_flight_while_a_reply_is_appended(source, monkeypatch):
    """The server gets the next request before the reply before it is in
    the file here: the round trip and the append overlap."""
    seen = []

    async def answer(header, buffer=None):
        local = source.b_dir / LOGFILE
        seen.append((header.get("offset"), local.stat().st_size if local.exists() else 0))
        return await source.server.answer_fetch(header, buffer)

    async def body(follower):
        return await follower._fetch_range(ResourceState(), "a", LOGFILE, 0, len(source.data))

    assert run_with_server(source, monkeypatch, body, answer) == len(source.data)
    assert any(local < offset for offset, local in seen[1:])
    assert [offset for offset, _ in seen] == list(range(0, len(source.data), SMALL_FETCH))


def test_a_reply_short_of_the_listing_appends_what_came_and_nothing_after_it(
        source, monkeypatch):
    """The listing said more than the source's logfile holds when read (it
    was cut back): what the replies after the short one bring would leave
    a gap, so it is dropped, and so is the connection they come on; the
    next fetch connects again."""
    cut = 3 * SMALL_FETCH + 500
    source.path.write_bytes(source.data[:cut])

    async def body(follower):
        got = await follower._fetch_range(ResourceState(), "a", LOGFILE, 0, len(source.data))
        dropped = not follower.worker.channels.open
        source.path.write_bytes(source.data)          # the rest comes after all
        rest = await follower._fetch_range(ResourceState(), "a", LOGFILE, got, len(source.data))
        return got, dropped, rest

    got, dropped, rest = run_with_server(source, monkeypatch, body)
    assert (got, dropped) == (cut, True)
    assert rest == len(source.data) - cut
    assert (source.b_dir / LOGFILE).read_bytes() == source.data


def test_a_step_whose_reads_bring_nothing_does_not_ask_for_another_at_once(source, monkeypatch):
    """The listing promised more than the source holds when read: a step
    that got some of it goes on at once (and lists again), one that got
    nothing waits for the next step's pause, not spinning."""
    listed = {LOGFILE: len(source.data) + 1000}

    async def body(follower):
        some = await follower._fetch_logfiles(ResourceState(), "a", listed, {LOGFILE: 1000}, 1,
                                              budget=1 << 30)
        nothing = await follower._fetch_logfiles(ResourceState(), "a", listed,
                                                 {LOGFILE: len(source.data)}, 1, budget=1 << 30)
        return some, nothing, follower.fetched_all

    (source.b_dir / LOGFILE).write_bytes(source.data[:1000])
    assert run_with_server(source, monkeypatch, body) == (True, False, False)
    assert (source.b_dir / LOGFILE).read_bytes() == source.data


def test_a_refused_read_is_a_peer_error_and_what_came_before_it_stays(source, monkeypatch):
    async def answer(header, buffer=None):
        if header.get("offset", 0) >= 2 * SMALL_FETCH:
            return {"type": "error", "reason": "no logfile"}, b""
        return await source.server.answer_fetch(header, buffer)

    async def body(follower):
        with pytest.raises(PeerError, match="refused to read"):
            await follower._fetch_range(ResourceState(), "a", LOGFILE, 0, len(source.data))
        return follower.worker.channels.open

    assert run_with_server(source, monkeypatch, body, answer) == {}
    assert (source.b_dir / LOGFILE).read_bytes() == source.data[:2 * SMALL_FETCH]


def test_replay_does_not_start_before_the_listing_was_checked(source, monkeypatch):
    """A listing that shows a split brain (a logfile of the same number from
    another origin) ends the step before anything is replayed or fetched."""
    (source.b_dir / "log-000000001-b").write_bytes(b"")
    replayed = []

    async def body(follower):
        async def replay(state):
            replayed.append(state)
            return False
        follower._replay = replay
        with pytest.raises(SplitBrain, match="this host has log-000000001-b"):
            await follower._fetch(ResourceState(), "a", Cursor("log-000000001-b", 0, 0),
                                  free=1 << 40, replaying=True)

    run_with_server(source, monkeypatch, body)
    assert replayed == []
    assert not (source.b_dir / LOGFILE).exists()


# ------------------------------------------------- replay beside the fetch
def steps(tmp_path, fetch, replay):
    """`_replaying_while` of a follower whose replay is `replay(follower)`,
    the fetch `fetch(follower)`."""
    follower = follower_of(tmp_path, channels=None)
    follower._replay = lambda state: replay(follower)

    async def main():
        with trio.fail_after(10):
            return await follower._replaying_while(None, fetch(follower))
    return main


def test_replay_goes_on_while_the_fetch_does(tmp_path):
    """The fetch waits for the replay of its first part before it brings
    the second: serially (fetch, then replay) this never ends."""
    replayed_first = trio.Event()
    replayed = []

    async def fetch(follower):
        replayed.append("part 1")
        follower._note_appended()
        await replayed_first.wait()
        replayed.append("part 2")
        follower._note_appended()
        return True

    async def replay(follower):
        await trio.sleep(0)
        if replayed and replayed[-1].startswith("part"):
            replayed.append(f"replayed {replayed[-1]}")
            replayed_first.set()
            return True
        return False

    assert trio.run(steps(tmp_path, fetch, replay)) is True
    assert replayed[:3] == ["part 1", "replayed part 1", "part 2"]


def test_a_failure_of_the_replay_stops_the_fetch_and_is_raised_as_itself(tmp_path):
    async def fetch(follower):
        follower._note_appended()
        await trio.sleep_forever()

    async def replay(follower):
        await trio.sleep(0)
        raise SplitBrain("version of log-000000001-a differs from its origin's")

    with pytest.raises(SplitBrain, match="differs"):
        trio.run(steps(tmp_path, fetch, replay))


def test_a_failure_of_the_fetch_is_raised_as_itself_once_the_replay_stopped(tmp_path):
    calls = []

    async def fetch(follower):
        await trio.sleep(0.01)
        raise PeerError("peer a: connection lost")

    async def replay(follower):
        calls.append(1)
        await trio.sleep(0)
        return False

    with pytest.raises(PeerError, match="connection lost"):
        trio.run(steps(tmp_path, fetch, replay))
    assert calls


# ------------------------------------------ fetched bytes held for replay
def test_fetched_replies_are_held_for_replay_and_the_fetch_waits_for_room(source, monkeypatch):
    """Each reply is kept in memory, as the file has it, for the replay
    alongside; no more than HELD_MAX at once: the fetch waits until replay
    gives some back (it appends nothing meanwhile, so replay finds in
    memory what it finds in the file)."""
    monkeypatch.setattr(follow, "HELD_MAX", 3)
    monkeypatch.setattr(net, "DIRECT_OVER", 4096)     # replies received into buffers, as 8 MiB ones
    counts = []                         # replies held when the next is appended
    seen = set()                        # offsets of the replies replay found held
    real_append = follow.append_one_way

    async def body(follower):
        def append(path, data, offset):
            counts.append(follower._held_count())
            return real_append(path, data, offset)
        monkeypatch.setattr(follow, "append_one_way", append)

        async def replay():
            position = 0
            while True:
                await trio.sleep(0.005)
                pieces = follower.held.get(LOGFILE, [])
                for start, view, _ in pieces:
                    seen.add(start)
                    assert bytes(view) == source.data[start:start + len(view)]
                    assert start + len(view) <= (source.b_dir / LOGFILE).stat().st_size
                if pieces:
                    position = pieces[-1][0] + len(pieces[-1][1])
                    follower._release_held(Cursor(LOGFILE, position, position))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(replay)
            got = await follower._fetch_range(ResourceState(), "a", LOGFILE, 0,
                                              len(source.data), hold=True)
            while follower.held.get(LOGFILE):       # replay takes the last ones too
                await trio.sleep(0.005)
            nursery.cancel_scope.cancel()
        return got

    assert run_with_server(source, monkeypatch, body) == len(source.data)
    assert (source.b_dir / LOGFILE).read_bytes() == source.data
    assert max(counts) == 2, counts     # never a fourth
    # every whole reply was held: the fetch waited for room, not went on without
    assert seen == set(range(0, 10 * SMALL_FETCH, SMALL_FETCH))


def held_follower(tmp_path, pieces):
    """A follower holding `pieces`: {logfile: [(start, length)]}."""
    follower = follower_of(tmp_path, channels=None)
    for logfile, ranges in pieces.items():
        follower.held[logfile] = [(start, memoryview(bytearray(length)), bytearray(length))
                                  for start, length in ranges]
    return follower


def test_replay_gives_back_what_it_passed_and_keeps_what_lies_ahead(tmp_path, monkeypatch):
    given_back = []
    monkeypatch.setattr(follow, "_give_back", given_back.append)
    follower = held_follower(tmp_path, {"log-000000001-a": [(0, 100)],
                                        "log-000000002-a": [(0, 100), (100, 100), (200, 50)],
                                        "log-000000003-a": [(0, 10)]})
    follower._release_held(Cursor("log-000000002-a", 200, 250))
    assert len(given_back) == 3
    assert {logfile: [start for start, _, _ in pieces]
            for logfile, pieces in follower.held.items()} == \
        {"log-000000002-a": [200], "log-000000003-a": [0]}


def test_the_fetch_waits_for_room_only_while_replay_can_give_some_back(tmp_path, monkeypatch):
    """At HELD_MAX, the fetch waits for replay; not when replay itself
    waits for appends (it stands at a logfile's end whose successor is
    held: it would wait forever), then the reply is not held."""
    monkeypatch.setattr(follow, "HELD_MAX", 2)
    follower = held_follower(tmp_path, {"log-000000002-a": [(0, 100), (100, 100)]})
    data = memoryview(bytearray(100))

    async def main():
        follower.replay_idle = True
        with trio.fail_after(5):
            idle = await follower._room_to_hold("log-000000002-a", 200, data)
        follower.replay_idle = False
        with trio.move_on_after(0.2) as waited:
            await follower._room_to_hold("log-000000002-a", 200, data)
        async with trio.open_nursery() as nursery:
            async def release():
                await trio.sleep(0.05)
                follower._release_held(Cursor("log-000000002-a", 100, 200))
            nursery.start_soon(release)
            with trio.fail_after(5):
                room = await follower._room_to_hold("log-000000002-a", 200, data)
        return idle, waited.cancelled_caught, room

    assert trio.run(main) == (False, True, True)


def test_the_version_is_made_from_the_digests_replay_kept_not_read_back(tmp_path, monkeypatch):
    """Replayed in steps from a logfile's start, the digests kept give the
    version its headers give; replay that began mid-logfile (a restart),
    or more digests than DIGESTS_KEPT, leave it to the headers."""
    from mars.replay import record_digests, replay, version_value
    from tests.unit.conftest import make_disk, random_writes, write_log
    path = tmp_path / LOGFILE
    write_log(path, random_writes(3, 40, 1 << 20, lengths=(512, 4096, 7)))
    size = path.stat().st_size
    disk = make_disk(tmp_path / "disk", 1 << 20)

    def replayed(follower, position):
        fd = os.open(disk, os.O_WRONLY)
        try:
            while True:
                result = replay(path, fd, position, limit=7)
                if not result.applied:
                    return
                follower.cursor = Cursor(LOGFILE, position, size)
                follower._note_digests(follower.cursor, result)
                position = result.position
                follower.cursor = Cursor(LOGFILE, position, size)
        finally:
            os.close(fd)

    follower = follower_of(tmp_path, channels=None)
    replayed(follower, 0)
    kept = follower._digests_to(size)
    assert version_value("", LOGFILE, size, kept) == \
        version_value("", LOGFILE, size, record_digests(path, size))
    assert follower._digests_to(size - 1) is None

    restarted = follower_of(tmp_path, channels=None)
    replayed(restarted, next(iter(LogScan(path))).end)
    assert restarted._digests_to(size) is None

    monkeypatch.setattr(follow, "DIGESTS_KEPT", 20 * 10)
    few = follower_of(tmp_path, channels=None)
    replayed(few, 0)
    assert few._digests_to(size) is None


def test_a_failure_in_answering_one_request_costs_its_connection_not_the_server(
        source, monkeypatch, caplog):
    """A bug in answering (here: any exception the server does not expect)
    is logged and closes that connection; the next connection is served.
    It ended the whole daemon, and its devices with it."""
    calls = []

    async def answer(header, buffer=None):
        calls.append(header.get("type"))
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return await source.server.answer_fetch(header, buffer)

    async def body(follower):
        with pytest.raises(PeerError):
            await follower._fetch_range(ResourceState(), "a", LOGFILE, 0, len(source.data))
        await follower.worker.channels.drop("a", follow.PORT_FETCH)
        return await follower._fetch_range(ResourceState(), "a", LOGFILE, 0, len(source.data))

    assert run_with_server(source, monkeypatch, body, answer) == len(source.data)
    assert (source.b_dir / LOGFILE).read_bytes() == source.data
    assert "answering a request failed" in caplog.text and "a bug" in caplog.text

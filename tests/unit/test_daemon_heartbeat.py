"""marsd's heartbeat (`actual-<host>/time`, `/alive`): liveness counts in a
window of a minute, so with rounds shorter than a second it is written
about once a second, not every round, and without a fsync."""

import trio
import trio.testing

from mars.daemon import HEARTBEAT_EVERY, Daemon
from mars.hostenv import HostEnv
from mars.store import Store


def heartbeats_in(tmp_path, round_interval, seconds):
    env = HostEnv("h1", tmp_path / "h1")
    env.ensure_state_dir()
    marsd = Daemon(env, round_interval=round_interval)
    marsd.store = store = Store(env.db_path, "h1")
    store.write({"ips/ip-h1": "127.0.0.1"})
    writes = []
    write = store.write

    def recording(changes, *args, **kwargs):
        if "actual-h1/time" in changes:
            writes.append((trio.current_time(), kwargs.get("durable", True)))
        return write(changes, *args, **kwargs)
    store.write = recording

    async def main():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(marsd._rounds, nursery)
            await trio.sleep(seconds)
            nursery.cancel_scope.cancel()
    try:
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    finally:
        store.close()
    return writes


def test_with_quarter_second_rounds_the_heartbeat_is_written_once_a_second_unsynced(tmp_path):
    writes = heartbeats_in(tmp_path, 0.25, 9.9)
    assert len(writes) == 10, writes                     # not 40
    assert all(not durable for _, durable in writes)
    gaps = [later - earlier for (earlier, _), (later, _) in zip(writes, writes[1:])]
    assert all(abs(gap - HEARTBEAT_EVERY) < 1e-6 for gap in gaps), gaps


def test_with_rounds_of_a_second_or_more_every_round_writes_one(tmp_path):
    assert len(heartbeats_in(tmp_path, 1.0, 9.9)) == 10
    assert len(heartbeats_in(tmp_path / "slow", 3.0, 29.9)) == 10

"""A new primary waiting for the old one to let go (`Primary.become`) asks
the members over the network every data tick only for the first seconds
of the wait: it asked twenty times a second for as long as the old
primary's device stayed held (a stop unit that fails). The worker's real
loop runs in virtual time; the members' answers come from a stand-in for
the network that counts the asks."""

import time
from types import SimpleNamespace

import trio
import trio.testing

from mars import primary as primary_module
from mars import worker as worker_module
from mars.primary import RELEASE_ASK_EVERY, RELEASE_ASK_OFTEN_FOR
from tests.unit.test_worker_run import worker_of

TICK = 0.05


def handover(tmp_path, monkeypatch, released_at, give_up_at=60.0):
    """vm1 designated to h1, h2 (the old primary) lets go at `released_at`
    (virtual seconds): ([times h2 was asked], when h1 started its device)."""
    clock = SimpleNamespace(monotonic=trio.current_time, time=time.time)
    monkeypatch.setattr(worker_module, "time", clock)
    monkeypatch.setattr(primary_module, "time", clock)
    worker = worker_of(tmp_path, **{"resource-vm1/primary": "h1", "ips/ip-h1": "127.0.0.1"})
    store = worker.store
    stamp = max(store.clock.last, max(item.stamp for item in store.tuples())) + 1000
    store.apply([("resource-vm1/data-h2", "/dev/vg/vm1", stamp, "h2"),
                 ("ips/ip-h2", "127.0.0.2", stamp + 1, "h2")])        # (as h2 sent them)
    primary = worker.primary
    primary.standby = SimpleNamespace(exited=lambda: False, drop=lambda: None)
    asks, started = [], []

    async def channel(state, host, port):
        return host

    async def no_exchange(channel, store, timeout):
        pass

    async def request(channel, message, timeout):
        assert (channel, message) == ("h2", {"type": "release", "res": "vm1"})
        asks.append(trio.current_time())
        return {"type": "release", "designated": "h1",
                "device_up": trio.current_time() < released_at}, None

    async def start_device(state, force):
        started.append(trio.current_time())
        worker.stopping = True

    monkeypatch.setattr(worker.channels, "channel", channel)
    monkeypatch.setattr(primary_module.antientropy, "exchange", no_exchange)
    monkeypatch.setattr(primary_module.antientropy, "pull", no_exchange)
    monkeypatch.setattr(primary_module.net, "request", request)
    monkeypatch.setattr(primary, "_start_device", start_device)

    async def main():
        with trio.move_on_after(give_up_at):
            await worker.run()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    worker.store.close()
    assert started, f"the device never started; asked {len(asks)} times"
    return asks, started[0]


def test_a_new_primary_asks_every_tick_at_first_then_twice_a_second(tmp_path, monkeypatch):
    asks, started = handover(tmp_path, monkeypatch, released_at=20.0)
    often = [t for t in asks if t < RELEASE_ASK_OFTEN_FOR]
    later = [t for t in asks if RELEASE_ASK_OFTEN_FOR + TICK <= t < 20.0]
    assert len(often) >= RELEASE_ASK_OFTEN_FOR / TICK / 2          # every tick at first
    # (it was every tick throughout: 20 a second, ~360 asks here)
    assert len(later) <= (20.0 - RELEASE_ASK_OFTEN_FOR) / RELEASE_ASK_EVERY + 2, len(later)
    assert all(b - a >= RELEASE_ASK_EVERY - 1e-9 for a, b in zip(later, later[1:]))
    # let go: noticed at the next ask at the latest
    assert 20.0 <= started <= 20.0 + RELEASE_ASK_EVERY + 2 * TICK


def test_a_planned_handover_is_not_slowed(tmp_path, monkeypatch):
    asks, started = handover(tmp_path, monkeypatch, released_at=0.3)
    assert 0.3 <= started <= 0.3 + 2 * TICK
    assert len(asks) >= 0.3 / TICK / 2

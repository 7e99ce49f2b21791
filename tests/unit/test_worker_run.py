"""The resource worker's loop (`ResourceWorker.run`) around its steps."""

import logging

import trio

from mars.daemon import Daemon
from mars.hostenv import HostEnv
from mars.store import Store
from mars.worker import ResourceWorker
from tests.unit.conftest import MIB, make_disk


def worker_of(tmp_path, size=MIB, **keys):
    """vm1's worker on h1 (its marsd not running): vm1's disk `disk1` of
    1 MiB, the resource of `size` bytes, and `keys` besides."""
    env = HostEnv("h1", tmp_path / "h1")
    env.ensure_state_dir()
    daemon = Daemon(env, data_tick=0.05)
    daemon.store = Store(env.db_path, "h1")
    make_disk(tmp_path / "disk1", MIB)
    daemon.store.write({"resource-vm1/data-h1": str(tmp_path / "disk1"),
                        "resource-vm1/size": str(size), **keys})
    return ResourceWorker(daemon, "vm1")



def test_an_internal_error_of_every_step_is_logged_with_its_traceback_once(tmp_path, caplog):
    """A step failing the same unexpected way again and again (a bug) is
    said once, with its traceback, and stays in the views; it wrote a
    traceback into the log at every step (twenty a second while busy)."""
    worker = worker_of(tmp_path)
    steps = []

    async def failing_step(state):
        steps.append(worker.error)
        if len(steps) == 4:
            worker.stopping = True
        raise KeyError("no such thing")

    async def no_pause(busy, now):
        await trio.sleep(0)

    worker.step, worker._pause = failing_step, no_pause
    with caplog.at_level(logging.INFO):
        trio.run(worker.run)
    worker.store.close()
    said = [record for record in caplog.records if "internal error" in record.getMessage()]
    assert len(steps) == 4
    assert steps[1:] == ["internal error: KeyError('no such thing')"] * 3   # in the views
    assert len(said) == 1 and said[0].exc_info


def test_a_primary_waiting_long_for_the_same_thing_steps_twice_a_second_not_every_tick(
        tmp_path, monkeypatch):
    """Its device up and in use while it should go (an operator's container
    left running after `marsadm secondary`), it stepped every data tick —
    twenty a second, each counting the device's users — for as long as
    that lasted. After LONG_WAIT_AFTER of the same wait it steps every
    LONG_WAIT_TICK; news (an unmount) still ends a pause at once."""
    from types import SimpleNamespace

    import trio.testing

    from mars import worker as module

    # (virtual time: the worker's monotonic clock is trio's)
    monkeypatch.setattr(module, "time", SimpleNamespace(monotonic=trio.current_time))

    worker = worker_of(tmp_path)
    worker.primary.device = SimpleNamespace()       # (up)
    worker.leaving, worker.waiting = True, "device /dev/mars/vm1 still in use"
    pauses = []

    async def main():
        for _ in range(60):
            started = trio.current_time()
            await worker._pause(False, trio.current_time())
            pauses.append(trio.current_time() - started)
        worker.waiting = "another reason"           # a new wait: ticks again
        started = trio.current_time()
        await worker._pause(False, trio.current_time())
        pauses.append(trio.current_time() - started)
        async with trio.open_nursery() as nursery:  # news ends a long wait's pause
            worker.waiting = "another reason"
            worker.waited = ("another reason", trio.current_time() - 10)
            nursery.start_soon(worker._pause, False, trio.current_time())
            await trio.sleep(0.1)
            started = trio.current_time()
            worker.news()
        pauses.append(trio.current_time() - started)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    worker.store.close()
    assert all(pause < 0.2 for pause in pauses[:20])            # the first 2 s: ticks
    assert all(pause >= module.LONG_WAIT_TICK - 0.05 for pause in pauses[45:60])
    assert pauses[60] < 0.2
    assert pauses[61] < 0.2


def test_a_secondary_whose_disk_is_smaller_than_the_resource_waits_and_says_so(tmp_path):
    """A resize that raced this member's join left its disk smaller than
    the resource: the sync wrote past the disk's end (an error at each
    step on an LV; on the lab's file, the file grew), unsaid."""
    worker = worker_of(tmp_path, 2 * MIB, **{"ips/ip-h1": "127.0.0.1",
                                             "resource-vm1/primary": "h2"})
    worker.dir.mkdir(parents=True)

    async def step():
        state = worker.state()
        worker._report_disk(state)
        return await worker._secondary(state, None)

    assert trio.run(step) is False
    worker.store.close()
    assert worker.waiting == (f"the disk {tmp_path / 'disk1'} holds {MIB} bytes, the resource "
                              f"{2 * MIB}: grow it to at least that (lvresize); nothing is "
                              "synced or replayed onto it until then")
    assert (tmp_path / "disk1").stat().st_size == MIB


def test_the_status_stays_fresh_while_one_step_waits_long(tmp_path, monkeypatch):
    """A step waiting 12 s on a peer that does not answer (its connect
    timeout) left the status file unwritten past STATUS_FRESH: the views
    took marsd for dead and said nothing of what they knew (in the lab, a
    failover read the rest of the dead primary's log as unknown)."""
    import json
    from types import SimpleNamespace

    import trio.testing

    from mars import worker as module
    from mars.dataviews import STATUS_FRESH

    monkeypatch.setattr(module, "time", SimpleNamespace(
        monotonic=trio.current_time, time=lambda: 1e9 + trio.current_time()))
    worker = worker_of(tmp_path)
    ages = []

    async def waiting_step(state):
        worker.save_status()
        await trio.sleep(3 * STATUS_FRESH)          # (a peer that does not answer)
        worker.stopping = True
        return False

    async def look():
        for _ in range(5):
            await trio.sleep(STATUS_FRESH / 2)
            written = json.loads(worker.status_path.read_text())["updated"]
            ages.append(1e9 + trio.current_time() - written)

    async def main():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(look)
            await worker.run()

    worker.step = waiting_step
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    worker.store.close()
    assert len(ages) == 5 and max(ages) <= STATUS_FRESH, ages

"""The resource worker's loop (`ResourceWorker.run`) around its steps."""

import logging

import trio

from mars.daemon import Daemon
from mars.hostenv import HostEnv
from mars.store import Store
from mars.worker import ResourceWorker
from tests.unit.conftest import MIB, make_disk


def test_an_internal_error_of_every_step_is_logged_with_its_traceback_once(tmp_path, caplog):
    """A step failing the same unexpected way again and again (a bug) is
    said once, with its traceback, and stays in the views; it wrote a
    traceback into the log at every step (twenty a second while busy)."""
    env = HostEnv("h1", tmp_path / "h1")
    env.ensure_state_dir()
    daemon = Daemon(env)
    daemon.store = Store(env.db_path, "h1")
    make_disk(tmp_path / "disk1", MIB)
    daemon.store.write({"resource-vm1/data-h1": str(tmp_path / "disk1"),
                        "resource-vm1/size": str(MIB)})
    worker = ResourceWorker(daemon, "vm1")
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
    daemon.store.close()
    said = [record for record in caplog.records if "internal error" in record.getMessage()]
    assert len(steps) == 4
    assert steps[1:] == ["internal error: KeyError('no such thing')"] * 3   # in the views
    assert len(said) == 1 and said[0].exc_info

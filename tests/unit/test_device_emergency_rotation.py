"""Second look at the data plane (dp3): emergency mode begins while a
rotation runs."""

import threading
import time

import trio

from mars.lamport import LamportClock
from mars.replay import Cursor
from mars.translog import TransactionLog

from tests.unit.test_writeback import device_args, started_device


def test_a_rotation_while_emergency_mode_marks_where_logging_stopped_leaves_the_mark_whole(
        tmp_path, monkeypatch):
    """Emergency mode records where logging stopped (`mark_emergency`) in
    a worker thread, reading the log's end there (`log_position`: the
    logfile's name, then its writer's size). A rotation on the event loop
    (marsd's log-rotate, a size threshold's) switched logfile and writer
    between those two reads (a thread switch of the interpreter, widened
    here): the mark said the start of the logfile that was just closed,
    and recovery replayed every record of it over the newer direct
    writes, flushed ones included."""
    args = device_args(tmp_path)
    real = TransactionLog.log_position
    main = threading.main_thread()

    def torn_position(log):
        if threading.current_thread() is main or not hasattr(log, "rotate_now"):
            return real.fget(log)
        logfile = log.logfile                   # read, then the thread is preempted
        trio.from_thread.run_sync(log.rotate_now, trio_token=log.token)
        time.sleep(0.3)                         # the event loop rotates meanwhile
        return type(real.fget(log))(logfile, log.writer.size)

    monkeypatch.setattr(TransactionLog, "log_position", property(torn_position))

    async def scenario():
        async with trio.open_nursery() as nursery:
            device = await started_device(args, nursery)
            await device.write(0, b"B" * 4096)                  # logged
            await device.write(8192, b"D" * 4096)
            await device.sync()

            async def rotate():
                await device.answer({"cmd": "rotate"})
            device.translog.token = trio.lowlevel.current_trio_token()
            device.translog.rotate_now = lambda: nursery.start_soon(rotate)
            await device.enter_emergency(0)
            del device.translog.rotate_now
            await device.write(0, b"C" * 4096)                  # straight to the disk
            await device.sync()                                 # flushed
            cursor = device.events[-1]["cursor"]
            await trio.sleep(0.1)
            device.translog.close()                             # crashed
            nursery.cancel_scope.cancel()
            return cursor

    cursor = trio.run(scenario)
    monkeypatch.setattr(TransactionLog, "log_position", real)
    again = TransactionLog(args.resource_dir, args.disk, "h1", LamportClock())
    again.recover(Cursor.parse(cursor))
    assert again.read(0, 4096) == b"C" * 4096, f"the flushed direct write is lost (mark {cursor})"
    again.close()

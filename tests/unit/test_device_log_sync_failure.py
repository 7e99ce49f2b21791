"""Second look at the data plane (dp3): a failed fdatasync of the log is
kept. Linux reports a write-back error of a file once per open file (its
errseq): the next fdatasync of the same fd succeeds, although the pages
it lost never reached the disk."""

import errno
import os

import pytest
import trio

from mars import directio
from mars.logfile import LogWriter

from tests.unit.test_writeback import device_args, started_device


def test_a_flush_after_the_logs_fdatasync_failed_fails_too(tmp_path, fails_once):
    """The first flush answered EIO; the next one, with no new write,
    succeeded: the acknowledged writes the failed sync covered were said
    durable though the log may have lost them (and the replicas with it)."""
    args = device_args(tmp_path)

    async def scenario():
        async with trio.open_nursery() as nursery:
            device = await started_device(args, nursery)
            await device.write(0, os.urandom(4096))
            fails_once["armed"] = True
            with pytest.raises(OSError):
                await device.sync()
            with pytest.raises(OSError) as second:
                await device.sync()
            assert second.value.errno == errno.EIO
            with pytest.raises(OSError):
                await device.write(8192, os.urandom(4096))
            nursery.cancel_scope.cancel()
        device.translog.close()

    trio.run(scenario)


@pytest.mark.parametrize("late", ["appender", "writer"])
def test_a_flush_while_a_rotation_fails_to_sync_the_closed_logfile_fails_too(
        tmp_path, monkeypatch, fails_once, late):
    """A flush that began before a rotation syncs the logfile it found;
    the rotation closes it meanwhile (after its own sync), and the flush's
    EBADF was taken for 'the rotation synced it': when that sync failed,
    the flush still answered success. (`late`: the flush's thread reaches
    the closed logfile's writer, or its appender, once it is closed.)"""
    args = device_args(tmp_path)
    real_sync = directio.DirectAppender.sync
    closed = trio.Event()
    calls = []

    def sync(appender):
        calls.append(appender)
        if len(calls) == 1:             # the flush's: runs after the rotation closed it
            trio.from_thread.run(closed.wait, trio_token=token[0])
            return real_sync(appender)
        if len(calls) == 2:             # the rotation's: its fdatasync fails
            fails_once["armed"] = True
        return real_sync(appender)

    monkeypatch.setattr(directio.DirectAppender, "sync", sync)
    if late == "writer":
        real_writer_sync = LogWriter.sync

        def writer_sync(writer):
            if not calls:               # the flush's: waits until the rotation closed it
                calls.append(None)
                trio.from_thread.run(closed.wait, trio_token=token[0])
            return real_writer_sync(writer)
        monkeypatch.setattr(LogWriter, "sync", writer_sync)
    token = []
    outcome = {}

    async def scenario():
        async with trio.open_nursery() as nursery:
            device = await started_device(args, nursery)
            token.append(trio.lowlevel.current_trio_token())
            await device.write(0, os.urandom(4096))

            async def flush():
                try:
                    await device.sync()
                except OSError as exc:
                    outcome["flush"] = exc
                else:
                    outcome["flush"] = "durable"

            async def rotate():
                try:
                    await device.answer({"cmd": "rotate"})
                except OSError as exc:
                    outcome["rotate"] = exc
                closed.set()

            nursery.start_soon(flush)
            await trio.sleep(0.05)
            nursery.start_soon(rotate)
        device.translog.close()

    trio.run(scenario)
    assert isinstance(outcome.get("rotate"), OSError)
    assert outcome["flush"] != "durable", "a flush answered success after the log's sync failed"


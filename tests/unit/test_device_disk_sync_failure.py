"""Second look at the data plane (dp3): a failed fdatasync of the disk is
kept. Linux reports a lost write-back of a file once per open file: the
next fdatasync of the same fd succeeds, although the blocks it lost never
reached the disk."""

import os

import pytest
import trio

from tests.unit.test_writeback import device_args, started_device


def test_a_checkpoint_after_a_failed_disk_sync_does_not_move_the_cursor(tmp_path,
                                                                        fails_once):
    """The checkpoint whose disk sync failed gave no cursor; the next one's
    sync succeeded and moved the cursor past the written-back records the
    failed one lost: recovery from it skips them, the primary's disk then
    lacking writes its log and replicas have."""
    args = device_args(tmp_path)

    async def scenario():
        async with trio.open_nursery() as nursery:
            device = await started_device(args, nursery)
            fails_once["fd"] = device.translog.disk_fd
            first = (await device.answer({"cmd": "checkpoint"}))["cursor"]
            await device.write(0, os.urandom(4096))
            device.writeback.drain()
            fails_once["armed"] = True
            assert (await device.answer({"cmd": "checkpoint"}))["cursor"] is None
            await device.write(8192, os.urandom(4096))
            device.writeback.drain()
            again = (await device.answer({"cmd": "checkpoint"}))["cursor"]
            assert again in (None, first), "the cursor passed records a failed disk sync lost"
            nursery.cancel_scope.cancel()
        device.translog.close()

    trio.run(scenario)


def test_a_flush_in_emergency_mode_after_a_failed_disk_sync_fails_too(tmp_path,
                                                                      fails_once):
    args = device_args(tmp_path)

    async def scenario():
        async with trio.open_nursery() as nursery:
            device = await started_device(args, nursery)
            fails_once["fd"] = device.translog.disk_fd
            await device.enter_emergency(0)
            await device.write(0, os.urandom(4096))             # straight to the disk
            fails_once["armed"] = True
            with pytest.raises(OSError):
                await device.sync()
            with pytest.raises(OSError):
                await device.sync()
            nursery.cancel_scope.cancel()
        device.translog.close()

    trio.run(scenario)

"""Second look at the data plane (dp3): random writes, reads, flushes,
checkpoints and rotations on one device, checked against a model; then a
crash and recovery from the last checkpoint's cursor."""

import random

import pytest
import trio

from mars.lamport import LamportClock
from mars.replay import Cursor
from mars.translog import TransactionLog

from tests.unit.test_writeback import device_args, started_device

SIZE = 1 << 20


@pytest.mark.parametrize("emergency", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_random_operations_read_the_model_and_recover_it(tmp_path, seed, emergency):
    rng = random.Random(seed)
    args = device_args(tmp_path, rotate_size=rng.choice([20000, 200000]),
                       writeback_limit=rng.choice([8192, 64 << 10, 1 << 20]))
    model = bytearray(SIZE)

    async def scenario():
        cursor = None
        async with trio.open_nursery() as nursery:
            device = await started_device(args, nursery)
            for step in range(600):
                if emergency and step == 300:
                    nursery.start_soon(device.enter_emergency, 0)
                kind = rng.random()
                if kind < 0.55:
                    length = rng.choice([1, 511, 4096, 5000, 65536, 200000, 300001])
                    offset = rng.randrange(0, SIZE - length + 1)
                    if rng.random() < 0.2:
                        offset = SIZE - length
                    data = rng.randbytes(length)
                    if rng.random() < 0.3:
                        writes = [(offset, data)]
                        for _ in range(rng.randrange(1, 5)):
                            more = rng.randbytes(rng.choice([512, 4096, 9000]))
                            at = rng.randrange(0, SIZE - len(more) + 1)
                            writes.append((at, more))
                        if device.write_many_now(writes):
                            for at, more in writes:
                                model[at:at + len(more)] = more
                            continue
                    await device.write(offset, data)
                    model[offset:offset + length] = data
                elif kind < 0.85:
                    length = rng.choice([1, 4096, 70000, 300000])
                    offset = rng.randrange(0, SIZE - length + 1)
                    got = await device.read(offset, length)
                    assert got == bytes(model[offset:offset + length]), (step, offset, length)
                elif kind < 0.9:
                    await device.sync()
                elif kind < 0.95:
                    reply = await device.answer({"cmd": "checkpoint"})
                    cursor = reply["cursor"]
                else:
                    await device.answer({"cmd": "rotate"})
                if rng.random() < 0.1:
                    await trio.sleep(0.002)
            await device.sync()
            device.translog.close()             # crashed: pending writes stay in the log
            nursery.cancel_scope.cancel()
        return cursor

    cursor = trio.run(scenario)
    again = TransactionLog(args.resource_dir, args.disk, "h1", LamportClock())
    again.recover(Cursor.parse(cursor) if cursor else None)
    assert again.read(0, SIZE) == bytes(model)
    again.writeback.close()
    with open(args.disk, "rb") as disk:
        assert disk.read(SIZE) == bytes(model)
    again.close()


@pytest.mark.parametrize("emergency", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_concurrent_tasks_read_their_own_writes_and_recover_them(tmp_path, seed, emergency):
    rng = random.Random(seed)
    args = device_args(tmp_path, rotate_size=30000, writeback_limit=rng.choice([8192, 65536]))
    model = bytearray(SIZE)
    region = SIZE // 4
    last = {}

    async def scenario():
        async with trio.open_nursery() as nursery:
            device = await started_device(args, nursery)

            async def worker(index):
                mine = random.Random(seed * 10 + index)
                base = index * region
                for step in range(250):
                    length = mine.choice([1, 700, 4096, 50000])
                    offset = base + mine.randrange(0, region - length + 1)
                    if mine.random() < 0.6:
                        data = mine.randbytes(length)
                        await device.write(offset, data)
                        model[offset:offset + length] = data
                    elif mine.random() < 0.8:
                        got = await device.read(offset, length)
                        assert got == bytes(model[offset:offset + length]), (index, step)
                    else:
                        await device.sync()
                    if mine.random() < 0.3:
                        await trio.sleep(0.001)

            async def control():
                for step in range(60):
                    await trio.sleep(0.003)
                    if step == 30 and emergency:
                        nursery.start_soon(device.enter_emergency, 0)
                    if rng.random() < 0.5:
                        reply = await device.answer({"cmd": "checkpoint"})
                        if reply["cursor"]:
                            last["cursor"] = reply["cursor"]
                    else:
                        await device.answer({"cmd": "rotate"})

            async with trio.open_nursery() as inner:
                for index in range(3):
                    inner.start_soon(worker, index)
                inner.start_soon(control)
            await device.sync()
            device.translog.close()
            nursery.cancel_scope.cancel()

    trio.run(scenario)
    again = TransactionLog(args.resource_dir, args.disk, "h1", LamportClock())
    cursor = last.get("cursor")
    again.recover(Cursor.parse(cursor) if cursor else None)
    assert again.read(0, SIZE) == bytes(model)
    again.close()

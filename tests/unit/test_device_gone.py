"""A device process killed between the primary's look at it and a command
of its round: the command says `DeviceGone`, and the round deals with the
death as it does with one seen at its start (said once, cleaned up), where
it logged an "internal error" with a BrokenResourceError traceback (CI,
`test_a_device_process_that_died_is_said_once_and_starts_again_once_nothing_uses_it`)."""

import math
import subprocess
import sys
from types import SimpleNamespace

import pytest
import trio

from mars.primary import DeviceGone, DeviceProcess, Primary


def silent_device():
    """A DeviceProcess around a child that reads nothing and says nothing."""
    device = DeviceProcess()
    device.attach(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE))
    return device


def test_a_command_to_a_device_process_that_was_killed_says_device_gone():
    async def main():
        device = silent_device()
        replies, device.replies = trio.open_memory_channel(math.inf)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(device._read, replies, lambda: None)
            device.process.kill()
            device.process.wait()
            with pytest.raises(DeviceGone, match="device process exited with -9"):
                await device.command({"cmd": "checkpoint"}, timeout=10)
            with pytest.raises(DeviceGone):       # and again: never another error
                await device.command({"cmd": "checkpoint"}, timeout=10)
        await device.stdin.aclose()
        await device.stdout.aclose()
    trio.run(main)


class DyingDevice:
    """A device that is alive at the round's look and gone at its command."""

    def __init__(self, reaped=True):
        self.reaped, self.commands = reaped, []

    def take_events(self):
        return []

    def exited(self):
        return bool(self.commands) and self.reaped

    async def command(self, message, timeout=120):
        self.commands.append(message["cmd"])
        raise DeviceGone("device process exited with -9")


def primary_with(device, tmp_path):
    worker = SimpleNamespace(res="vm1", host="a",
                             env=SimpleNamespace(state_dir=tmp_path, dev_dir=tmp_path / "dev"))
    primary = Primary(worker)
    primary.device = device
    deaths = []

    async def after_death(dead, leaving):
        deaths.append((dead, leaving))
    primary._after_death = after_death
    return primary, deaths


# a log-rotate wish: the round's first command is the rotation
STATE = SimpleNamespace(resource_value=lambda res, key, default=None: "1")


def test_a_device_killed_before_a_command_of_the_round_is_dealt_with_as_a_death(tmp_path):
    device = DyingDevice()
    primary, deaths = primary_with(device, tmp_path)
    trio.run(primary.round, STATE, False)
    assert device.commands == ["rotate"]
    assert deaths == [(device, False)]


def test_a_device_whose_pipe_broke_while_it_still_runs_is_an_error_not_a_death(tmp_path):
    device = DyingDevice(reaped=False)
    primary, deaths = primary_with(device, tmp_path)
    with pytest.raises(DeviceGone):
        trio.run(primary.round, STATE, True)
    assert deaths == []


@pytest.mark.parametrize("says", [b'{"event": "listening"}\n', None],
                         ids=["something-else", "nothing-in-time"])
def test_a_device_process_that_does_not_come_up_is_ended(says):
    """One that said something else than `ready`, or nothing within its
    time, ran on (with its FUSE mount) beside the next try's."""
    async def main():
        device = DeviceProcess()
        script = "import sys, time; sys.stdout.write(sys.argv[1]); sys.stdout.flush(); " \
            "time.sleep(60)"
        device.attach(subprocess.Popen([sys.executable, "-c", script,
                                        (says or b"").decode()],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE))
        async with trio.open_nursery() as nursery:
            if says is None:
                with trio.move_on_after(0.5):       # (the start's own limit is 600 s)
                    await device.start(["--x"], nursery, lambda: None)
            else:
                with pytest.raises(OSError, match="did not come up"):
                    await device.start(["--x"], nursery, lambda: None)
        return device.process

    process = trio.run(main)
    assert process.poll() is not None           # ended and reaped

"""The shipped notify plugin (plugins/notify.py) with commands that leave
something behind: what stays after its timeout must not hold the worker."""

import os
import signal
import time

import pytest

from plugins.notify import NotifyFailed
from tests.unit.test_notify import JOB, notifier, script


def test_a_notify_command_whose_detached_child_keeps_its_output_open_does_not_hold_us(
        tmp_path):
    """A mail command that hands the mail to a daemon of its own (in a
    session of its own: the kill of the command's session misses it) whose
    output is still ours: after notify_timeout the notifier waited again,
    without a limit, until that daemon closed it (here 30 s; a daemon:
    never), and the worker's job with it."""
    daemon = tmp_path / "daemon.pid"
    command = script(tmp_path, "tell", f"setsid sh -c 'echo $$ > {daemon}; exec sleep 30' &\n"
                     "sleep 30\n")
    began = time.monotonic()
    try:
        with pytest.raises(NotifyFailed, match=r"did not end within 0.3 s \(notify_timeout\)"):
            notifier(f"notify_command={command}", "notify_timeout=0.3").notify(
                job=JOB, state="done", text="job vm1 done")
        assert time.monotonic() - began < 10
    finally:
        if daemon.exists() and daemon.read_text().strip():
            try:
                os.kill(int(daemon.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass

"""The notify command (plugins/notify.py) is judged by its own exit: one
that exits 0 while a child it left behind (a mailer's daemon) still holds
its stdout and stderr succeeded — it is neither reported killed nor
waited for until notify_timeout, and the child is not killed."""

import os
import signal
import time

from tests.unit.test_notify import JOB, notifier, script


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_notify_command_that_exits_0_leaving_a_child_on_its_pipes_succeeded(tmp_path):
    pid_file = tmp_path / "child.pid"
    # the child leaves the session and keeps the command's stdin, stdout, stderr
    command = script(tmp_path, "tell", f"cat > /dev/null\nsetsid sleep 60 &\n"
                                       f"echo $! > {pid_file}\nexit 0\n")
    began = time.monotonic()
    try:
        assert notifier(f"notify_command={command}", "notify_timeout=20").notify(
            job=JOB, state="done", text="job vm1 done") is None
        assert time.monotonic() - began < 15        # its exit, not the child's end
        child = int(pid_file.read_text())
        assert _alive(child)                        # not killed either
    finally:
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_a_notify_command_that_fails_leaving_a_child_says_its_exit_code_and_stderr(tmp_path):
    pid_file = tmp_path / "child.pid"
    command = script(tmp_path, "tell", f"sleep 60 &\necho $! > {pid_file}\n"
                                       "echo 'smtp: refused' >&2\nexit 4\n")
    try:
        notifier(f"notify_command={command}", "notify_timeout=20").notify(
            job=JOB, state="done", text="job vm1 done")
    except Exception as error:      # noqa: BLE001 (its text is the test)
        assert "failed with exit code 4: smtp: refused" in str(error)
        assert "killed" not in str(error)
    else:
        raise AssertionError("a failing notify command raised nothing")
    finally:
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass

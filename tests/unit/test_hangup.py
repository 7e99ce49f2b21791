"""SIGHUP (the operator's SSH session or terminal gone) with a real
terminal (a pseudo-terminal whose other side is closed): the run is
interrupted as by Ctrl-C, and what it writes afterwards (the
compensation's words) no longer fails on the hung-up terminal (EIO) but
goes to /dev/null. Before, SIGHUP's default ended the process where it
stood (a container stopped in the downtime window stayed down)."""

import os
import pty
import sys
import time

CHILD = r"""
import sys, time
from football.cli import hang_up_as_ctrl_c, terminate_as_ctrl_c
terminate_as_ctrl_c()
hang_up_as_ctrl_c()
try:
    print("ready", flush=True)
    time.sleep(60)
    outcome = "slept"
except KeyboardInterrupt:
    outcome = "interrupted"
try:
    for _ in range(50):
        print("the compensation goes on " * 10, flush=True)
        print("a warning", file=sys.stderr, flush=True)
    wrote = "wrote"
except OSError as error:
    wrote = f"failed: {error}"
with open(sys.argv[1], "w") as result:
    result.write(f"{outcome}, {wrote}")
sys.exit(190)
"""


def test_a_hang_up_interrupts_the_run_and_its_later_words_do_not_fail(tmp_path):
    result = tmp_path / "result"
    pid, terminal = pty.fork()
    if pid == 0:            # the child: its session's terminal is the pty
        try:
            os.execv(sys.executable, [sys.executable, "-c", CHILD, str(result)])
        finally:
            os._exit(127)
    seen = b""
    deadline = time.monotonic() + 60
    while b"ready" not in seen and time.monotonic() < deadline:
        seen += os.read(terminal, 1024)
    assert b"ready" in seen, seen
    os.close(terminal)      # the hang-up: SIGHUP to the session
    status = None
    while status is None and time.monotonic() < deadline:
        done, code = os.waitpid(pid, os.WNOHANG)
        status = code if done else None
        time.sleep(0.01)
    if status is None:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        raise AssertionError("the child did not end after its terminal hung up")
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 190, \
        f"ended by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else status
    assert result.read_text() == "interrupted, wrote"

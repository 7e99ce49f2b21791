"""Another process holding a resource's turn on the controller
(football.locks.one_run_at_a_time), as a run of another terminal does."""

import subprocess
import sys
from contextlib import contextmanager


@contextmanager
def turn_held(state_dir, operation, res):
    """A process holding `res`'s turn for `operation` in `state_dir` until
    the block ends (it is killed then, if the block did not kill it)."""
    process = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, types\n"
         "from football.locks import one_run_at_a_time\n"
         "config = types.SimpleNamespace(lock_retry_timeout=0)\n"
         f"with one_run_at_a_time({str(state_dir)!r}, {operation!r}, {res!r}, config):\n"
         "    print('held', flush=True)\n"
         "    sys.stdin.read()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline() == "held\n"
        yield process
    finally:
        process.kill()
        process.wait()

"""Small programs for the tool server's tests (tests/unit/test_toolserver.py),
served as if they were bundled tools: each is a `main()` reading sys.argv."""

import os
import subprocess
import sys
import time


def upper():
    """Copies stdin to stdout in capitals; `upper N` exits N afterwards."""
    sys.stdout.write(sys.stdin.read().upper())
    sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)


def environment():
    """Prints its pid, its working directory and the variables named in argv."""
    print(os.getpid(), os.getcwd(), *(os.environ.get(name, "-") for name in sys.argv[1:]))


def sleeper():
    """Prints its pid, then sleeps for argv[1] seconds."""
    print(os.getpid(), flush=True)
    time.sleep(float(sys.argv[1]))


def failing():
    """Says something on both streams, then raises."""
    print("to stdout")
    print("to stderr", file=sys.stderr)
    raise RuntimeError("a tool that fails")


def parent():
    """Prints its parent's pid: the server that forked it."""
    print(os.getppid())


def spawner():
    """Starts `sleep argv[2]`, writes its pid to the file argv[1], then
    sleeps as long itself: a command whose time limit must end what it
    started too."""
    child = subprocess.Popen(["sleep", sys.argv[2]])
    with open(sys.argv[1], "w") as pidfile:
        pidfile.write(str(child.pid))
    time.sleep(float(sys.argv[2]))

"""What a killed test run leaves behind, and cleaning it up in the next one.

Daemons a test starts itself die with it (tests/helpers/marshosts.py,
sshd.py: a parent-death signal). What outlives a killed run by design are
the lab's daemons and containers (`football lab up` detaches them) and
whatever a killed process left mounted. So every run marks its base temp
dir as alive by holding a lock on `ALIVE` in it for as long as it runs; the
next run finds the dirs of earlier runs whose lock nobody holds and
removes what lives there: labs through `football lab down` (it works from
what it finds), then any process that still names the dir, mounts below it
and loop devices backed by files in it.

That clean-up also runs at once when a run is killed, not only at the next
run: every pytest process (the controller, each xdist worker) starts a
`guard` that waits on a pipe from it and cleans up its base temp dir when
the pipe ends without the run saying `done` (SIGKILL of pytest or of a
worker, a CI timeout)."""

import ctypes
import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from football.lab import loops_of, still_attached, unmount
from mars.device import LoopError, detach_loop, mounts_under

ALIVE = ".football-run-alive"
PR_SET_PDEATHSIG = 1
FOOTBALL = str(Path(sys.executable).parent / "football")


def die_with_parent():
    """`preexec_fn` of a daemon a test starts: SIGTERM for it when the test
    process dies, however it dies (marsd then tears its devices down). The
    signal comes when the starting *thread* ends: start daemons from the
    test's main thread."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def names(token, path):
    """Whether one argument or environment entry names `path` or a file
    below it: `/tmp/run-4` is not named by `/tmp/run-48/lab`."""
    value = token.split(b"=", 1)[1] if b"=" in token else token
    for candidate in (token, value):
        for part in candidate.split(b" "):
            if part == path or part.startswith(path + b"/"):
                return True
    return False


def ancestors():
    """This process and the processes it was started by."""
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def processes_naming(path):
    """{pid: command line} of the live processes whose command line or
    environment names `path` (a lab's marsd, its containers' monitors)."""
    marker = str(path).rstrip("/").encode()
    found = {}
    ours = ancestors()          # a run given the dead run's --basetemp again names it too
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) in ours:
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        tokens = cmdline.split(b"\0") + environ.split(b"\0")
        if state != "Z" and any(names(token, marker) for token in tokens if marker in token):
            found[int(proc.name)] = cmdline.replace(b"\0", b" ").decode(errors="replace")[:120]
    return found


def mark_alive(base):
    """Hold the lock that says the run of `base` is alive; keep the returned
    file open for the whole run (closing it, or dying, releases it)."""
    handle = open(Path(base) / ALIVE, "a")
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def dead_runs(root):
    """The base temp dirs under `root` whose run marked itself and is gone."""
    dead = []
    for alive in Path(root).glob(f"*/{ALIVE}"):
        if alive.parent.is_symlink():       # pytest-current: one of the others
            continue
        with open(alive, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue            # that run is still going
            dead.append(alive.parent)
    return dead


def clean_up_after(base, say=print):
    """Remove what the dead run of `base` left: labs, processes, mounts, loops.
    Its loop devices are named first: once a device process is killed and
    its FUSE mount unmounted, its loop's backing file reads `/device`, below
    no dir of the run (football/lab.py, `loops_of`)."""
    loops = loops_of(base)
    for lab in lab_dirs(base):
        say(f"cleaning up after a killed test run: football lab down in {lab}")
        subprocess.run([FOOTBALL, "lab", "down"], capture_output=True,
                       env=dict(os.environ, FOOTBALL_LAB_DIR=str(lab)))
    pids = processes_naming(base)
    for pid, command in pids.items():
        say(f"cleaning up after a killed test run: stopping pid {pid} ({command})")
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30         # marsd tears its devices down on SIGTERM
    while processes_naming(base) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in processes_naming(base):
        _signal(pid, signal.SIGKILL)
    for point, _ in mounts_under(base):
        unmount(point)
    for loop in still_attached(base, loops):
        try:
            detach_loop(loop)
        except LoopError as error:
            say(f"cleaning up after a killed test run: {error}")


def lab_dirs(base):
    """The lab dirs below `base` (those holding a lab.json), all found before
    the first is taken down: a lazy glob went on into the dir `lab down` had
    just removed and ended the next run at its start (FileNotFoundError, an
    INTERNALERROR). A dir that cannot be read (a dead FUSE mount: ENOTCONN)
    is passed over, and nothing below a lab is searched (its containers'
    files)."""
    found = []
    for directory, subdirs, files in os.walk(base):     # errors are passed over
        if "lab.json" in files:
            found.append(Path(directory))
            subdirs.clear()
    return found


GUARD_LOG = ".football-guard.log"
# the guard imports nothing until its run is gone (a pytest process each)
GUARD = ("import sys\n"
         "if sys.stdin.buffer.read() != b'done':\n"
         "    from tests.helpers.leftovers import clean_up_after_death\n"
         "    clean_up_after_death(sys.argv[1])\n")


def guard(base):
    """A process that cleans up after this pytest process (`clean_up_after`
    its base temp dir `base`) when it dies without calling `done`. It waits
    on a pipe, not for a parent-death signal: that comes when the starting
    thread ends. A session of its own: the terminal's Ctrl-C, which pytest
    handles, does not end it."""
    with open(Path(base) / GUARD_LOG, "a") as log:
        return subprocess.Popen([sys.executable, "-c", GUARD, str(base)],
                                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True,
                                env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


def done(process):
    """The run of `process` (a `guard`) ended and cleaned up itself."""
    try:
        process.stdin.write(b"done")
        process.stdin.close()
    except BrokenPipeError:
        pass
    process.wait()


def clean_up_after_death(base):
    """In the guard, its run gone: hold the run's ALIVE lock meanwhile (a
    next run's sweep then leaves the dir alone), and clean up."""
    alive = Path(base) / ALIVE
    handle = open(alive, "a") if alive.exists() else None
    if handle is not None:
        fcntl.flock(handle, fcntl.LOCK_EX)
    clean_up_after(base)


def _signal(pid, number):
    try:
        os.kill(pid, number)
    except ProcessLookupError:
        pass

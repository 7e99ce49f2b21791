"""MARS hosts for tests and benchmarks: one state dir and one 127.x.y.z address
each, marsd started as a real process and stopped by its pid.

Addresses are drawn at random per run from 127.64.0.0/10 so that a leftover
from an earlier run (or a lab) cannot collide with this one."""

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from mars.keys import size_key
from tests.helpers import programs
from tests.helpers.leftovers import die_with_parent

BIN = Path(sys.executable).parent

# The bound of every wait for a state that should come true (a marsd serving,
# a change spreading, a sync completing, a marsadm command's own --timeout when
# it is expected to succeed). It only bounds a hang: the wait returns as soon
# as the state holds, so it costs nothing when things work, and it is minutes
# so that a busy machine (CI with other jobs beside it) cannot fail a test.
STATE_WAIT = 180.0


_RESERVED = []                          # sockets that hold this process's subnets
SUBNET_RESERVATION_PORT = 7776          # on 127.A.B.254, which no test host uses


def random_subnet():
    """Three random octets base for a run: 127.A.B.x, one that no other
    test of this run (another xdist worker, or this one) has: a TCP socket
    bound to 127.A.B.254, held until the process ends, reserves it. (A lab's
    marsd once failed in CI with "Address already in use" on its random
    address; two workers drawing the same subnet is one way to get there,
    about one run in twenty with 16k subnets and a few hundred labs.)"""
    while True:
        subnet = f"127.{random.randint(64, 127)}.{random.randint(1, 254)}"
        reservation = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            reservation.bind((f"{subnet}.254", SUBNET_RESERVATION_PORT))
        except OSError:
            reservation.close()
            continue
        _RESERVED.append(reservation)
        return subnet


class MarsHost:
    """One host: a root dir, an address, and (while running) a marsd process."""

    def __init__(self, name, address, root, round_interval=0.2):
        self.name = name
        self.address = address
        self.root = Path(root)
        self.round_interval = round_interval
        self.process = None
        self.log_path = self.root / "marsd.log"
        self._log_offset = 0            # where the running marsd's log lines start
        (self.root / "mars").mkdir(parents=True, exist_ok=True)

    @property
    def env(self):
        env = dict(os.environ, MARS_ROOT=str(self.root), MARS_HOST=self.name)
        # ssh (join/merge-cluster's secret) fails at once without a connection,
        # unless a test gives it a way to its own sshd
        env.setdefault("MARS_SSH_OPTIONS", "-o ProxyCommand=false")
        env.pop("MARS_ROUND_INTERVAL", None)
        return env

    def marsadm(self, *args, check=True, timeout=STATE_WAIT + 60):
        """Run marsadm as this host. Returns CompletedProcess (text). `timeout`
        only catches a hung marsadm: it is longer than any --timeout a test
        gives marsadm."""
        result = programs.run([BIN / "marsadm", *args], self.env, timeout)
        if check and result.returncode != 0:
            raise AssertionError(
                f"marsadm {' '.join(map(str, args))} on {self.name} exited {result.returncode}:\n"
                f"{result.stdout}{result.stderr}")
        return result

    def view(self, macro, *args):
        return self.marsadm(f"view-{macro}", *args).stdout

    def force_primary(self, res, *options, check=True):
        """`marsadm primary --force` as kernel MARS wants it (and ours, since):
        fetch paused before, resumed after. The takeover's CompletedProcess."""
        self.marsadm("pause-fetch", res)
        try:
            return self.marsadm("primary", "--force", res, *options, check=check)
        finally:
            self.marsadm("resume-fetch", res)

    def start(self, *extra):
        assert self.process is None, f"marsd of {self.name} already started"
        log = open(self.log_path, "a")
        self._log_offset = self.log_path.stat().st_size
        self.process = subprocess.Popen(
            [str(BIN / "marsd"), f"--round-interval={self.round_interval}",
             "--log-level=DEBUG", *extra],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        log.close()
        return self.process

    def stop(self, sig=signal.SIGTERM, timeout=10):
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log(self):
        return self.log_path.read_text() if self.log_path.exists() else ""

    def current_log(self):
        """The log lines of the marsd started last (the log file is appended
        to across restarts)."""
        if not self.log_path.exists():
            return ""
        return self.log_path.read_bytes()[self._log_offset:].decode(errors="replace")

    def wait_serving(self, timeout=STATE_WAIT):
        """Wait until the marsd started last says it serves; returns the seconds.
        Fails at once if that marsd exits."""
        def serving():
            assert self.process.poll() is None, (
                f"marsd on {self.name} exited {self.process.returncode}:\n"
                f"{self.current_log()[-2000:]}")
            return "serving on" in self.current_log()

        return wait_until(serving, timeout=timeout, what=f"marsd on {self.name} serving",
                          show=lambda: self.current_log()[-2000:])

    def live_values(self, prefix=""):
        """{key: value} of the live tuples in this host's store, read directly
        (much cheaper than a marsadm process when polling)."""
        with self.store() as store:
            return store.live_values(prefix)

    def wait_knows(self, res, timeout=STATE_WAIT):
        """Wait until this host's store has `res` (its size); returns the
        seconds. marsadm join-resource refuses a resource its host does not
        know ("unknown resource"), and a creation on another host reaches
        this one by a push, 0.1-0.2 s later (more on a busy machine)."""
        key = size_key(res)
        return wait_until(lambda: key in self.live_values(key), timeout=timeout,
                          what=f"{self.name} knowing {res}")

    def store(self):
        """Open this host's store directly; what is written through it pokes
        marsd as marsadm's writes do."""
        from mars.hostenv import HostEnv
        from mars.store import Store
        env = HostEnv(self.name, self.root)
        return Store(env.db_path, self.name, on_commit=env.poke_daemon)


class MarsNet:
    """A set of MARS hosts sharing one cluster secret."""

    def __init__(self, base_dir, round_interval=0.2):
        self.base_dir = Path(base_dir)
        self.subnet = random_subnet()
        self.round_interval = round_interval
        self.hosts = {}

    def add(self, name):
        host = MarsHost(name, f"{self.subnet}.{len(self.hosts) + 1}", self.base_dir / name,
                        self.round_interval)
        self.hosts[name] = host
        return host

    def __getitem__(self, name):
        return self.hosts[name]

    def share_key(self, source, *targets):
        key = source.root / "mars" / "cluster.key"
        for target in targets:
            shutil.copy(key, target.root / "mars" / "cluster.key")

    def create_cluster(self, first, *others, start=True):
        """create-cluster on `first`, join the others, start every marsd."""
        first.marsadm("create-cluster", f"--ip={first.address}")
        if start:
            first.start()
            first.wait_serving()
        for host in others:
            self.share_key(first, host)
            host.marsadm("join-cluster", first.name, first.address, f"--ip={host.address}")
            if start:
                host.start()
        return first

    def stop_all(self):
        for host in self.hosts.values():
            host.stop()


def _serving(host):
    return "serving on" in host.log()


POLL_GROWTH = 1.3          # each pause of a wait this much longer than the one before ...
POLL_LONGEST = 0.25         # ... up to this many seconds


def poll_pauses(interval, longest=POLL_LONGEST):
    """The pauses between the polls of a wait: `interval` first, growing to
    `longest` (never below `interval`). A condition met soon is seen soon;
    a long wait (a sync, a migration) polls a few times a second, not
    twenty: each poll is a marsadm or football command, and on 2 CPUs the
    polls of one test slow down the daemons of the other. A wait that
    times something polls steadily (`longest=interval`)."""
    pause = interval
    while True:
        yield pause
        pause = max(interval, min(longest, pause * POLL_GROWTH))


def wait_until(predicate, timeout=STATE_WAIT, interval=0.05, what="condition", show=None,
               longest=POLL_LONGEST):
    """Poll `predicate` until true, first after `interval` seconds, then less
    often up to `longest` (`poll_pauses`); returns the seconds it took. On
    timeout an AssertionError names `what` and, if given, what `show()`
    describes of the state at the end (what the wait saw last)."""
    started = time.monotonic()
    for pause in poll_pauses(interval, longest):
        if predicate():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            state = f"; last seen: {show()}" if show else ""
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}{state}")
        time.sleep(pause)

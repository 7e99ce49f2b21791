"""What every operation shares: the run context, injection points, waiting.

Every operation goes: check its arguments (pure, no host contact) → discover
and decide (reads hosts, changes nothing, raises `Illegal`) → execute its
phases (acts; raises `FootballError` with the exit code of how it failed).
Each step looks at the real state before acting, so a re-run resumes."""

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from football.errors import FootballError, Illegal
from football.transport import TransportError
from mars.errors import MarsError
from mars.names import check_resource


class InjectedFailure(FootballError):
    """`--debug-injection-point N` stopped the run at its N-th point, as a
    crash would: nothing is compensated."""

    exit_code = 1


class TimedOut(FootballError):
    """A wait ran past its time limit."""


@dataclass
class Context:
    inventory: object
    config: object
    hooks: object
    reporter: object
    dry_run: bool = False
    yes: bool = False
    injection_point: int = 0
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    points_passed: int = 0

    def inject(self, name):
        """An injection point: numbered in the order the run reaches them."""
        self.points_passed += 1
        self.reporter.event("injection-point", number=self.points_passed, name=name)
        if self.injection_point and self.points_passed == self.injection_point:
            raise InjectedFailure(f"stopped at injection point {self.points_passed} ({name}) "
                                  "as asked by --debug-injection-point")


def check_resource_name(res):
    try:
        return check_resource(res)
    except MarsError as error:
        raise Illegal(f"{error}; resource names are letters, digits, '_', '-' and '.'") from None


def in_parallel(function, items):
    items = list(items)
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(items))) as pool:
        return list(pool.map(function, items))


def wait_until(condition, timeout, interval, what):
    """Poll `condition()` until it returns a true value; `TimedOut` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimedOut(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def reachable(host, timeout=10):
    """Raise `Illegal` naming the host when it cannot be reached or its marsd
    does not answer."""
    try:
        result = host.run(["marsadm", f"--timeout={timeout}", "wait-cluster"], check=False,
                          timeout=timeout + 20)
    except TransportError as error:
        raise Illegal(f"host {host.name} is unreachable: {error}") from None
    if not result.ok:
        raise Illegal(f"host {host.name} ({host.address}) is not ready: "
                      f"`{result.command}` exited {result.exit_code}: "
                      f"{result.stderr.strip()[-300:]}; is marsd running there?")

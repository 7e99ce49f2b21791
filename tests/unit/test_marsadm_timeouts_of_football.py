"""Football's `marsadm join-resource` (migrate) and `create-resource`
(repair-mars) carry a --timeout shorter than the time limit `run` gives
them (command_timeout): marsadm waits for another create or join on its
host at most --timeout, by default 600 s, as long as command_timeout, so
the transport killed it while it still waited, with a timeout that said
nothing of the lock, instead of marsadm's refusal (exit 3) that does.
Kernel MARS's marsadm takes --timeout=<digits> anywhere on the line too
(userspace/marsadm: every argument is matched against
`--timeout\\s*=\\s*([0-9]+)`), so it is passed to either."""

import fcntl
import re

import pytest

from football.ops.repair import create_argv, marsadm_timeout
from mars.errors import EXIT_TIMEOUT
from tests.helpers import fakefleet
from tests.helpers.fakefleet import fake_fleet, football  # noqa: F401
from tests.unit.conftest import MIB, make_disk

MONTH = 30 * 86400.0
KERNEL_TIMEOUT = re.compile(r"--timeout=[0-9]+")   # kernel marsadm reads digits only


@pytest.fixture
def fleet(fake_fleet, monkeypatch):  # noqa: F811
    """The fake fleet, recording each command's time limit too:
    `fleet.limits` is a list of (host, argv, timeout)."""
    fake_fleet.limits = []
    real = fakefleet.FakeHostRunner.run

    def run(self, argv, *, check=True, timeout=None, input=None):
        fake_fleet.limits.append((self.host, tuple(str(arg) for arg in argv), timeout))
        return real(self, argv, check=check, timeout=timeout, input=input)

    monkeypatch.setattr(fakefleet.FakeHostRunner, "run", run)
    return fake_fleet


def creates_and_joins(fleet):
    return [(host, argv, limit) for host, argv, limit in fleet.limits
            if argv[0] == "marsadm" and argv[1] in ("create-resource", "join-resource")]


def timeout_of(argv):
    return float(next(arg for arg in argv if arg.startswith("--timeout="))
                 .split("=", 1)[1])


@pytest.mark.parametrize("command_timeout, timeout", [(None, "570"), ("20", "15")])
def test_a_migrates_join_resource_waits_less_than_its_time_limit(fleet, command_timeout,
                                                                 timeout):
    settings = ["--var", f"command_timeout={command_timeout}"] if command_timeout else []
    code, _, stderr = football(fleet, *settings, "migrate", "vm1", "cluster2")
    assert code == 0, stderr
    joins = creates_and_joins(fleet)
    assert [(host, argv) for host, argv, _ in joins] == [
        (name, ("marsadm", "join-resource", "vm1", fleet.hosts[name].path("/dev/vg0/vm1"),
                f"--timeout={timeout}")) for name in ("b1", "b2")]
    assert all(timeout_of(argv) < limit for _, argv, limit in joins), joins
    assert fleet.members("vm1") == ["b1", "b2"] and not fleet.violations


def test_a_migrates_dry_run_lists_the_join_with_its_timeout(fleet):
    code, events, stderr = football(fleet, "--dry-run", "migrate", "vm1", "cluster2")
    assert code == 0, stderr
    assert ("b1", ["marsadm", "join-resource", "vm1", fleet.hosts["b1"].path("/dev/vg0/vm1"),
                   "--timeout=570"]) in \
        [(event["host"], event["argv"]) for event in events if event["event"] == "would-run"]


def test_repair_mars_creates_the_resource_waiting_less_than_its_time_limit(fleet):
    code, _, stderr = football(fleet, "repair-mars", "vm1", "a1")
    assert code == 0, stderr
    creates = creates_and_joins(fleet)
    assert [(host, argv) for host, argv, _ in creates] == [
        ("a1", ("marsadm", "create-resource", "vm1", fleet.hosts["a1"].path("/dev/vg0/vm1"),
                "--timeout=570"))]
    assert all(timeout_of(argv) < limit for _, argv, limit in creates), creates
    assert fleet.members("vm1") == ["a1"] and not fleet.violations


@pytest.mark.parametrize("limit", [2, 20, 600, MONTH, 10 * 365 * 86400.0])
def test_the_timeout_is_below_the_limit_and_written_as_kernel_marsadm_reads_it(limit):
    """(`:g` wrote 1e+06 from a million seconds, and rounded to six digits:
    up, too, past the limit; kernel marsadm reads digits: of 0.3, 0.)"""
    word = create_argv("vm1", "/dev/vg0/vm1", "join-resource", marsadm_timeout(limit))[-1]
    assert KERNEL_TIMEOUT.fullmatch(word), word
    assert 1 <= timeout_of([word]) < limit


@pytest.mark.parametrize("verb", ["create-resource", "join-resource"])
def test_the_exact_command_makes_our_marsadm_give_up_on_a_held_lock_with_exit_3(
        h1, tmp_path, verb):
    """The argv Football sends, run by the bundled marsadm while another
    create or join holds the host's lock: exit 3 within its --timeout."""
    argv = create_argv("vm1", make_disk(tmp_path / "disk", MIB), verb, marsadm_timeout(1.5))
    assert argv[-1] == "--timeout=1"
    with open(h1.state_dir / "resources.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = h1.run(*argv[1:])
    assert result.exit_code == EXIT_TIMEOUT, (result.stdout, result.stderr)
    assert f"marsadm {verb}: another create-resource or join-resource on h1 still runs" \
        in result.stderr
    assert "after --timeout 1 s: nothing was changed" in result.stderr

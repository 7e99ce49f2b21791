"""marsadm create-resource and join-resource wait for another create or
join on the host (its lock, `<state dir>/resources.lock`) at most
--timeout: then exit 3, timed out, saying who holds it and what to do,
nothing changed. Before, the wait had no end whatever --timeout said."""

import fcntl
import os
import subprocess
import sys

import pytest

from mars.errors import EXIT_TIMEOUT


@pytest.fixture
def host(tmp_path):
    (tmp_path / "mars").mkdir()
    return tmp_path


def marsadm(host, *argv):
    return subprocess.Popen(
        [sys.executable, "-m", "mars.marsadm", *argv],
        env=dict(os.environ, MARS_ROOT=str(host), MARS_HOST="h1"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def ended(process, within=60):
    try:
        _, stderr = process.communicate(timeout=within)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail(f"marsadm still waited after {within} s")
    return process.returncode, stderr


@pytest.mark.parametrize("command", [["create-resource", "vm1", "/nonexistent/disk"],
                                     ["join-resource", "vm1", "/nonexistent/disk"]])
def test_a_create_or_join_waits_for_the_hosts_lock_at_most_timeout_then_exits_3(host,
                                                                                command):
    with open(host / "mars" / "resources.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        code, stderr = ended(marsadm(host, *command, "--timeout=0.3"), within=20)
    assert code == EXIT_TIMEOUT, stderr
    assert f"marsadm {command[0]}: another create-resource or join-resource on h1 still " \
           f"runs (it holds {host / 'mars' / 'resources.lock'}) after --timeout 0.3 s: " \
           "nothing was changed" in stderr
    assert "give a longer --timeout" in stderr


def test_a_create_goes_on_once_the_lock_is_free(host):
    lock = host / "mars" / "resources.lock"
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        process = marsadm(host, "create-resource", "vm1", "/nonexistent/disk", "--timeout=60")
        # (it waits for the lock: the held flock is given up below, whenever
        # marsadm has come that far; its refusal after it shows it went on)
    code, stderr = ended(process)
    assert code == 1, stderr        # past the lock: refused, this host is in no cluster
    assert "not a cluster member" in stderr


def test_without_a_lock_held_timeout_0_does_not_refuse(host):
    code, stderr = ended(marsadm(host, "create-resource", "vm1", "/nonexistent/disk",
                                 "--timeout=0"))
    assert code == 1 and "not a cluster member" in stderr, stderr

"""The SSH transport (football/ssh.py) against a real sshd, a second look:
output that is not ASCII or is large, time limits of 0 and less, and
commands of several threads when the connection has to be opened again."""

import threading
import time

import pytest

from football import ssh
from football.transport import CommandTimedOut
from tests.helpers.marshosts import STATE_WAIT, wait_until
from tests.integration.test_ssh_transport import tool_env

pytestmark = [pytest.mark.root, pytest.mark.integration]


def with_agent(transport):
    transport.run(["marsadm", "--version"])
    wait_until(lambda: transport._agent, what="the host agent to be ready")
    return transport


# --- output ------------------------------------------------------------------------------

def test_output_that_is_not_ascii_arrives_whole_however_it_was_read(connect):
    """invoke decodes each read of 1000 bytes on its own: a character split
    between two reads became two U+FFFD (a file name with an umlaut in a
    `find -print0` list, a description in JSON)."""
    transport = connect()
    text = "a" + "\u00e9" * 50000           # (the odd byte puts characters across reads)
    result = transport.run(["python3", "-c", f"import sys; sys.stdout.write({text!r})"])
    assert result.stdout.count("\ufffd") == 0
    assert result.stdout == text


@pytest.mark.parametrize("through", ["session", "agent"])
def test_megabytes_of_output_come_back_in_time_proportional_to_their_size(
        connect, tmp_path, through):
    """invoke joined all output read so far at each read of 1000 bytes, and
    paramiko's readline scans and copies the whole line read so far at each
    8 KiB: 16 MiB of stdout took 27 s over a session, 48 MB 55 s through the
    agent (a `find` of a big tree, a long listing)."""
    transport = connect(env=tool_env(tmp_path))
    if through == "agent":
        with_agent(transport)
    size = (48 if through == "agent" else 16) << 20
    started = time.monotonic()
    result = transport.run(["sh", "-c", f"head -c {size} /dev/zero | tr '\\0' x"],
                           timeout=STATE_WAIT)
    elapsed = time.monotonic() - started
    print(f"\n{size >> 20} MiB of stdout through a {through}: {elapsed:.2f}s")
    assert result.stdout == "x" * size
    assert elapsed < 10, f"{size >> 20} MiB took {elapsed:.1f} s"


# --- time limits -------------------------------------------------------------------------

@pytest.mark.parametrize("limit", [0, -1])
def test_a_time_limit_of_zero_or_less_leaves_no_command_running(connect, tmp_path, limit):
    """`timeout 0` is no limit at all for coreutils: the command was said
    "killed" at once (invoke's timer) and ran on, unbounded, on the host;
    `timeout -1` failed as exit 125 "invalid option" (or timed out: a race)."""
    transport = connect()
    ran = tmp_path / "ran"
    with pytest.raises(CommandTimedOut, match=f"did not finish within {limit} s"):
        transport.run(["sh", "-c", f"sleep 1; touch {ran}"], timeout=limit)
    time.sleep(2)
    assert not ran.exists(), "the command ran on past its time limit"
    assert transport.run(["echo", "on"]).stdout == "on\n"


# --- several threads ---------------------------------------------------------------------

def test_a_command_that_opens_the_connection_again_ends_no_command_of_another_thread(
        connect, tmp_path, monkeypatch):
    """Two threads' commands found the connection dead (no channel): the
    first opened a new one and ran its command on it; the second then
    "reconnected" too, closing the new connection with the first command
    on it (ConnectionLost: "may or may not have run", on a host that was
    fine)."""
    transport = connect()
    transport.run(["true"])
    running = tmp_path / "running"
    starts, b_started = {}, threading.Event()
    start = ssh._Remote.start

    def start_on_a_dead_connection_first(runner, command, shell, env, timeout=None):
        name = "A" if "echo A" in command else "B"
        starts[name] = starts.get(name, 0) + 1
        if starts[name] == 1:
            if name == "B":         # B fails only after A runs on the new connection
                b_started.set()
                wait_until(running.exists, what="A's command to run")
            else:
                b_started.wait(STATE_WAIT)
            raise ssh._CommandNotStarted(EOFError("no channel"))
        return start(runner, command, shell, env, timeout)

    monkeypatch.setattr(ssh._Remote, "start", start_on_a_dead_connection_first)
    outcomes = {}

    def run(name, argv):
        try:
            outcomes[name] = transport.run(argv, timeout=STATE_WAIT).stdout
        except Exception as error:          # noqa: BLE001 (the test looks at it)
            outcomes[name] = error

    threads = [threading.Thread(target=run, args=("B", ["echo", "B"])),
               threading.Thread(target=run, args=(
                   "A", ["sh", "-c", f"touch {running}; sleep 2; echo A"]))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(STATE_WAIT)
    assert outcomes == {"A": "A\n", "B": "B\n"}

"""A host command killed by a signal is told the same way by every
transport: `exit_code` -N for signal N (as Python's subprocess tells it),
and the failure says "was killed by SIGTERM", not "exited -15". Over SSH,
where paramiko keeps no signal (a command killed there ends without an exit
status, -1), the exit code is None and the failure says the host did not
say which signal."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from football import transport
from football.ssh import SSHTransport
from football.toolserver import ToolServer
from football.transport import CommandFailed, LocalTransport, Result

ME = "tests.unit.test_killed_by_signal"
TOOLS = {"terminated": (ME, "terminated"), "gated": (ME, "gated")}


def terminated():
    """A tool that says something, then is killed by SIGTERM."""
    print("about to go", flush=True)
    os.kill(os.getpid(), signal.SIGTERM)


def gated():
    """A tool that writes its pid to the file argv[1], waits for the file
    argv[2] to be there (two minutes at most), then is killed by SIGTERM."""
    with open(sys.argv[1], "w") as pidfile:
        pidfile.write(str(os.getpid()))
    deadline = time.monotonic() + 120
    while not os.path.exists(sys.argv[2]) and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(os.getpid(), signal.SIGTERM)


@pytest.fixture
def server():
    started = ToolServer(TOOLS)
    yield started
    started.close()


@pytest.fixture
def served(server, monkeypatch):
    """The local transport sending every command to the test's tool server."""
    monkeypatch.setattr(server, "serves", lambda argv, env: True)
    monkeypatch.setattr(transport, "_tool_server", server)
    return server


# ------------------------------------------------------------------ local


def test_a_local_program_killed_by_sigterm_gives_minus_15_and_says_killed_by_sigterm():
    result = LocalTransport("h1").run(["sh", "-c", "kill -TERM $$"], check=False)
    assert (result.exit_code, result.ok, result.killed_by) == (-15, False, signal.SIGTERM)
    with pytest.raises(CommandFailed) as caught:
        LocalTransport("h1").run(["sh", "-c", "echo bye >&2; kill -TERM $$"])
    assert str(caught.value) == "h1: `sh -c 'echo bye >&2; kill -TERM $$'` was killed by " \
        "SIGTERM:\nbye"


def test_an_exit_code_is_still_said_as_exited():
    with pytest.raises(CommandFailed, match=r"^h1: `sh -c 'exit 3'` exited 3:"):
        LocalTransport("h1").run(["sh", "-c", "exit 3"])


def test_the_ending_of_a_result_is_said_for_exit_codes_signals_and_none():
    def ending(code):
        return Result("h1", ("x",), code, "", "").how_it_ended

    assert [ending(0), ending(2), ending(-9), ending(-15), ending(-1)] == \
        ["exited 0", "exited 2", "was killed by SIGKILL", "was killed by SIGTERM",
         "was killed by SIGHUP"]
    assert ending(-200) == "was killed by signal 200"
    assert ending(None) == "was killed by a signal (the host did not say which)"
    assert [Result("h1", ("x",), code, "", "").killed_by for code in (0, 3, -9, None)] == \
        [None, None, signal.SIGKILL, None]


# ------------------------------------------------------------ tool server


def test_a_tool_killed_by_sigterm_in_the_tool_server_gives_minus_15_not_minus_9(server):
    code, stdout, _ = server.run(["terminated"], dict(os.environ), 60)
    assert (code, stdout) == (-signal.SIGTERM, "about to go\n")


def test_a_tool_killed_by_sigterm_through_the_local_transport_says_killed_by_sigterm(served):
    with pytest.raises(CommandFailed) as caught:
        LocalTransport("h1").run(["terminated"])
    assert caught.value.result.exit_code == -15
    assert str(caught.value) == "h1: `terminated` was killed by SIGTERM:\nabout to go"


def test_a_tool_forked_while_another_runs_does_not_hold_up_the_others_answer(server,
                                                                                  tmp_path):
    """The server keeps each running child's reply socket to tell how it
    ended: a child forked meanwhile must not hold it too, or the first
    command's answer waits for the second command's end."""
    answers = {}

    def run(name):
        answers[name] = server.run(["gated", str(tmp_path / f"{name}.pid"),
                                    str(tmp_path / f"{name}.go")], dict(os.environ), 120)

    first = threading.Thread(target=run, args=("first",))
    first.start()
    assert wait_for(lambda: (tmp_path / "first.pid").exists())
    second = threading.Thread(target=run, args=("second",))
    second.start()
    assert wait_for(lambda: (tmp_path / "second.pid").exists())
    try:
        (tmp_path / "first.go").touch()
        first.join(60)
        assert answers.get("first", (None,))[0] == -signal.SIGTERM, \
            "the first command's answer waited for the second command"
    finally:
        (tmp_path / "second.go").touch()
        first.join(120), second.join(120)
    assert answers["second"][0] == -signal.SIGTERM


def wait_for(condition, within=60):
    deadline = time.monotonic() + within
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


# -------------------------------------------------------- the SSH host agent


def ask_agent(requests):
    """The answers of `serve_stdio` (the SSH transport's host agent) to
    `requests`, one at a time, in a process of its own serving the test's
    tools (its stdin closed only at the end: that kills what it runs)."""
    agent = subprocess.Popen(
        [sys.executable, "-c", "import json, sys; from football.toolserver import "
         f"serve_stdio; serve_stdio(tools=json.loads({json.dumps(TOOLS)!r}))"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        answers = [json.loads(agent.stdout.readline())]
        for request in requests:
            agent.stdin.write(json.dumps(request).encode() + b"\n")
            agent.stdin.flush()
            answers.append(json.loads(agent.stdout.readline()))
    finally:
        agent.stdin.close()
        agent.wait(timeout=60)
    return answers[1:]


def test_the_host_agent_tells_a_tool_and_a_program_killed_by_sigterm_as_minus_15():
    tool, program = ask_agent([{"argv": ["terminated"], "timeout": 60},
                               {"argv": ["sh", "-c", "kill -TERM $$"], "timeout": 60}])
    assert (tool["exit"], tool["stdout"]) == (-15, "about to go\n")
    assert program["exit"] == -15


# ------------------------------------------------------------------- SSH


class _NoExitStatus:
    """What invoke gives for a command killed by a signal over SSH: no exit
    status (paramiko's -1: it keeps no `exit-signal`), the connection up."""
    exited, stdout, stderr = -1, "", "dying\n"

    class connection:
        is_connected = True


def test_an_ssh_command_without_exit_status_is_killed_by_a_signal_the_host_did_not_name(
        monkeypatch):
    ssh = SSHTransport("h1", "10.0.0.1")
    monkeypatch.setattr(ssh, "_connect", lambda reconnect=False: None)
    monkeypatch.setattr(ssh, "_run", lambda *args: _NoExitStatus())
    result = ssh.run(["true"], check=False, timeout=600)
    assert (result.exit_code, result.ok, result.killed_by) == (None, False, None)
    with pytest.raises(CommandFailed) as caught:
        ssh.run(["true"], timeout=600)
    assert str(caught.value) == \
        "h1: `true` was killed by a signal (the host did not say which):\ndying"

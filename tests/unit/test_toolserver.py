"""The tool server (football/toolserver.py): a command it serves is a
process of its own with the result a started program would give — exit
code, stdout, stderr, stdin, environment, working directory, the kill at
its time limit — and the local transport falls back to programs when the
server is gone."""

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from football import transport
from football.toolserver import SOCKET_VARIABLE, ServerGone, ToolServer
from football.transport import CommandTimedOut, LocalTransport

MORE_TOOLS = {name: ("tests.helpers.tools", name)
              for name in ("upper", "environment", "sleeper", "failing", "parent", "spawner")}


@pytest.fixture
def server():
    started = ToolServer(MORE_TOOLS)
    yield started
    started.close()


def env(**more):
    return dict(os.environ, **more)


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:          # a zombie is not alive either
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_stdin_reaches_the_command_and_its_exit_code_and_output_come_back(server):
    assert server.run(["upper"], env(), 30, input="abc\n") == (0, "ABC\n", "")
    assert server.run(["upper", "7"], env(), 30, input="x" * 300_000)[0] == 7
    assert server.run(["upper"], env(), 30, input="x" * 300_000)[1] == "X" * 300_000
    assert server.run(["upper"], env(), 30) == (0, "", "")     # no input: stdin is empty


def test_each_command_is_a_process_of_its_own_with_the_given_environment_and_directory(
        server, tmp_path, monkeypatch):
    server.run(["upper"], env(), 30)        # started here: it imports tests.helpers from here
    monkeypatch.chdir(tmp_path)
    first = server.run(["environment", "MARS_HOST", "UNSET"], env(MARS_HOST="a1"), 30)
    second = server.run(["environment", "MARS_HOST"], env(MARS_HOST="b2"), 30)
    pid, cwd, host, unset = first[1].split()
    assert (cwd, host, unset) == (str(tmp_path), "a1", "-")
    assert second[1].split()[2] == "b2" and second[1].split()[0] != pid
    assert pid not in (str(os.getpid()), str(server.process.pid))


def test_an_exception_in_the_tool_exits_1_with_its_traceback_on_stderr(server):
    code, stdout, stderr = server.run(["failing"], env(), 30)
    assert (code, stdout) == (1, "to stdout\n")
    assert "to stderr" in stderr and "RuntimeError: a tool that fails" in stderr


def test_a_command_over_its_time_limit_is_killed(server):
    server.run(["upper"], env(), 30)
    with pytest.raises(subprocess.TimeoutExpired):
        server.run(["sleeper", "60"], env(), 1)
    # the server's only child was the sleeper: it goes (killed, and reaped by the server)
    children = f"/proc/{server.process.pid}/task/{server.process.pid}/children"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and [pid for pid in open(children).read().split()
                                          if alive(int(pid))]:
        time.sleep(0.05)
    assert not [pid for pid in open(children).read().split() if alive(int(pid))]


def gone(pidfile):
    """Whether the process whose pid `pidfile` holds has ended (waited for)."""
    deadline = time.monotonic() + 30        # (its sleep lasts 120 s)
    while time.monotonic() < deadline and alive(int(pidfile.read_text())):
        time.sleep(0.05)
    return not alive(int(pidfile.read_text()))


def test_a_command_over_its_time_limit_is_killed_with_what_it_started(server, tmp_path):
    """A timed-out command's own children (an rsync's, a tool's) do not run on."""
    pidfile = tmp_path / "pid"
    with pytest.raises(subprocess.TimeoutExpired):
        server.run(["spawner", str(pidfile), "120"], env(), 2)
    assert gone(pidfile), "the tool's child runs on"


def test_a_program_over_its_time_limit_is_killed_with_what_it_started(tmp_path):
    pidfile = tmp_path / "pid"
    with pytest.raises(CommandTimedOut):
        LocalTransport("h1").run(["sh", "-c", f"sleep 120 & echo $! > {pidfile}; wait"],
                                 timeout=2)
    assert gone(pidfile), "the program's child runs on"


def test_output_that_is_no_utf8_comes_back_with_replacements_not_an_error():
    done = LocalTransport("h1").run(["printf", "ok \\377 bytes"])
    assert done.stdout == "ok \ufffd bytes"


def test_commands_from_several_threads_run_side_by_side(server):
    results = {}

    def one(number):
        results[number] = server.run(["upper"], env(), 60, input=f"run {number}")

    threads = [threading.Thread(target=one, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {number: (0, f"RUN {number}", "") for number in range(8)}


def test_the_server_ends_when_the_controller_closes_its_end(server):
    server.run(["upper"], env(), 30)
    process = server.process
    server.close()
    assert process.poll() is not None


def test_a_dead_server_is_started_again_on_the_next_command(server):
    server.run(["upper"], env(), 30)
    first = server.process
    first.kill()
    first.wait()
    assert server.run(["upper"], env(), 30, input="again") == (0, "AGAIN", "")
    assert server.process.pid != first.pid


def test_the_bundled_tools_answer_through_the_server_as_their_programs_do(tmp_path):
    host = LocalTransport("h1", {"MARS_HOST": "h1", "MARS_ROOT": str(tmp_path)})
    commands = [["marsadm", "--version"], ["marsadm", "no-such-command"],
                ["marsadm", "view-my-resources"], ["football-host", "--help"],
                ["football-host", "vg", str(tmp_path / "vg0"), "info"]]
    served = [host.run(argv, check=False) for argv in [commands[0], *commands]][1:]
    assert transport.tool_server().process is not None, "no server was started"
    os.environ["FOOTBALL_TOOL_SERVER"] = "0"
    try:
        programs = [host.run(argv, check=False) for argv in commands]
    finally:
        del os.environ["FOOTBALL_TOOL_SERVER"]
    assert served == programs
    assert [result.exit_code for result in served] == [0, 2, 0, 0, programs[4].exit_code]


def test_the_local_transport_runs_a_tool_as_a_program_when_the_server_is_gone(monkeypatch):
    def gone(*args, **kwargs):
        raise ServerGone("test: no server")

    server = transport.tool_server()
    monkeypatch.setattr(server, "run", gone)
    monkeypatch.setattr(server, "process", object())       # as if it had been started
    result = LocalTransport("h1").run(["marsadm", "--version"])
    assert result.stdout.startswith("marsadm, version")


def test_a_timeout_through_the_transport_is_command_timed_out(monkeypatch):
    server = ToolServer(MORE_TOOLS)
    monkeypatch.setattr(server, "serves", lambda argv, env: True)
    monkeypatch.setattr(transport, "_tool_server", server)
    try:
        with pytest.raises(CommandTimedOut):
            LocalTransport("h1").run(["sleeper", "60"], timeout=1)
    finally:
        server.close()


class Agent:
    """`serve_stdio` (the host agent of the SSH transport) in a process of
    its own, serving the test tools, spoken to through its stdin/stdout."""

    def __init__(self):
        tools = json.dumps(MORE_TOOLS)
        self.process = subprocess.Popen(
            [sys.executable, "-c", "import json, sys; from football.toolserver import "
             f"serve_stdio; serve_stdio(tools=json.loads({tools!r}))"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.ready = self.read()

    def read(self):
        return json.loads(self.process.stdout.readline())

    def ask(self, argv, timeout=60, input=None):
        request = {"argv": argv, "timeout": timeout, "input": input}
        self.process.stdin.write(json.dumps(request).encode() + b"\n")
        self.process.stdin.flush()
        return self.read()

    def close(self):
        self.process.stdin.close()
        return self.process.wait(timeout=60)


@pytest.fixture
def agent():
    started = Agent()
    yield started
    if started.process.poll() is None:
        started.close()


def test_the_host_agent_answers_each_request_with_the_commands_result(agent):
    assert agent.ready == {"ready": True, "tools": sorted(MORE_TOOLS)}
    assert agent.ask(["upper", "3"], input="abc") == {"exit": 3, "stdout": "ABC", "stderr": ""}
    failed = agent.ask(["failing"])
    assert failed["exit"] == 1 and "RuntimeError: a tool that fails" in failed["stderr"]
    # not a tool: run as a program there; a missing one is exit 127
    assert agent.ask(["sh", "-c", "echo hi; echo no >&2; exit 4"]) == \
        {"exit": 4, "stdout": "hi\n", "stderr": "no\n"}
    assert agent.ask(["no-such-program-here"])["exit"] == 127
    assert agent.close() == 0          # the channel closed: the agent ends


def test_the_host_agent_kills_a_command_at_its_time_limit_and_goes_on(agent):
    assert agent.ask(["sleeper", "60"], timeout=1) == {"timed_out": True}
    assert agent.ask(["sleep", "60"], timeout=1) == {"timed_out": True}
    assert agent.ask(["upper"], input="next") == {"exit": 0, "stdout": "NEXT", "stderr": ""}
    children = f"/proc/{agent.process.pid}/task/{agent.process.pid}/children"
    assert open(children).read().split() == [], "a killed command was left behind"


def test_the_host_agent_kills_what_a_timed_out_command_started_and_reads_any_bytes(
        agent, tmp_path):
    pidfile = tmp_path / "tool"
    assert agent.ask(["spawner", str(pidfile), "120"], timeout=2) == {"timed_out": True}
    assert gone(pidfile), "the tool's child runs on"
    pidfile = tmp_path / "program"
    assert agent.ask(["sh", "-c", f"sleep 120 & echo $! > {pidfile}; wait"], timeout=2) == \
        {"timed_out": True}
    assert gone(pidfile), "the program's child runs on"
    # output in another encoding: replaced, and the agent goes on
    assert agent.ask(["printf", "ok \\377"]) == {"exit": 0, "stdout": "ok \ufffd", "stderr": ""}
    assert agent.ask(["upper"], input="on") == {"exit": 0, "stdout": "ON", "stderr": ""}


@pytest.fixture
def shared():
    started = ToolServer(MORE_TOOLS, share=True)
    yield started
    started.close()


def test_a_child_process_sends_its_commands_to_a_shared_server_even_the_first(
        shared, monkeypatch):
    """A `football` run forked by a screener worker or a test harness: its
    environment names the shared server, so it starts none of its own."""
    variables = shared.environment()
    assert list(variables) == [SOCKET_VARIABLE]
    monkeypatch.setenv(SOCKET_VARIABLE, variables[SOCKET_VARIABLE])
    child = ToolServer(MORE_TOOLS)
    child.served[("parent", None)] = True           # a bundled tool, as served_here finds them
    assert child.serves(["parent"], {}) is True
    code, stdout, _ = child.run(["parent"], env(), 30)
    assert (code, int(stdout)) == (0, shared.process.pid)
    assert child.process is None                    # no server of its own
    assert child.run(["upper", "3"], env(), 30, input="x") == (3, "X", "")


def test_without_a_shared_server_a_process_starts_its_own(shared, monkeypatch):
    monkeypatch.setenv(SOCKET_VARIABLE, "@football-tools-nobody-listens-here")
    child = ToolServer(MORE_TOOLS)
    child.served[("parent", None)] = True
    try:
        assert child.serves(["parent"], {}) is False    # the first runs as a program
        assert child.process is not None
        assert int(child.run(["parent"], env(), 30)[1]) == child.process.pid
    finally:
        child.close()


@pytest.mark.root
def test_a_shared_server_refuses_another_users_connection(shared):
    """Its socket is abstract, without file permissions: only processes of
    its own user may have commands run."""
    address = shared.environment()[SOCKET_VARIABLE]
    probe = ("import socket, sys\n"
             "s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n"
             "s.connect(chr(0) + sys.argv[1][1:])\n"
             "s.settimeout(30)\n"
             "print(repr(s.recv(1)))\n")
    nobody = subprocess.run(["/usr/bin/python3", "-c", probe, address], capture_output=True,
                            text=True, timeout=60, user=65534)
    assert nobody.stdout.strip() == "b''", nobody.stderr      # closed at once
    assert shared.run(["upper"], env(), 30, input="ok") == (0, "OK", "")


def test_a_command_without_a_time_limit_runs_to_its_end(server):
    """`timeout=None`, as `football lab exec` gives it: no limit, as with
    subprocess.run."""
    server.run(["upper"], env(), 30)
    assert server.run(["upper", "2"], env(), None, input="abc") == (2, "ABC", "")


def test_the_host_agent_takes_no_time_limit_as_none_and_zero_as_zero(agent, monkeypatch):
    """A request without a limit was killed after 600 s by the agent (the
    controller, waiting for ever, then failed formatting the limit None);
    one of 0 s ran 600 s there."""
    assert agent.ask(["sleep", "30"], timeout=0) == {"timed_out": True}
    from football import toolserver
    limits = []
    monkeypatch.setattr(toolserver, "_run_here", lambda tools, argv, input, timeout, started:
                        limits.append(timeout) or {"exit": 0, "stdout": "", "stderr": ""})
    requests = b"".join(json.dumps({"argv": ["true"], "timeout": timeout}).encode() + b"\n"
                        for timeout in (None, 0, 5))
    interrupt = signal.getsignal(signal.SIGINT)
    try:
        toolserver.serve_stdio(io.BytesIO(requests), io.BytesIO(), tools={})
    finally:
        signal.signal(signal.SIGINT, interrupt)
    assert limits == [None, 0.0, 5.0]
    assert str(CommandTimedOut("h1", ["sleep", "1"], None)) == \
        "h1: `sleep 1` did not finish in time and was killed"


def test_a_command_that_does_not_die_when_killed_is_left_and_its_time_limit_still_ends_it(
        tmp_path, monkeypatch):
    """One stuck in the kernel (D state: a hung FUSE device) ignores even
    SIGKILL: the agent waited for it for good, every later command of the
    host behind it. Played by a kill that does nothing."""
    from football import toolserver
    monkeypatch.setattr(toolserver, "KILL_WAIT", 0.5)
    monkeypatch.setattr(toolserver.os, "killpg", lambda pid, sig: None)
    pidfile = tmp_path / "pid"
    started = time.monotonic()
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            toolserver.run_program(["sh", "-c", f"echo $$ > {pidfile}; exec sleep 60"],
                                   timeout=0.5)
        assert time.monotonic() - started < 30
    finally:
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), signal.SIGKILL)


def test_a_tool_that_does_not_die_when_killed_is_left_and_its_time_limit_still_ends_it(
        monkeypatch):
    """As above, for a bundled tool the agent forked (it waited for it)."""
    from football import toolserver
    monkeypatch.setattr(toolserver, "KILL_WAIT", 0.5)
    monkeypatch.setattr(toolserver, "_kill", lambda reply_so_far: None)
    children = f"/proc/{os.getpid()}/task/{os.getpid()}/children"
    before = set(open(children).read().split())
    started = time.monotonic()
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            toolserver._run_here(MORE_TOOLS, ["sleeper", "60"], None, 0.5)
        assert time.monotonic() - started < 30
    finally:
        for pid in set(open(children).read().split()) - before:
            os.kill(int(pid), signal.SIGKILL)
            os.waitpid(int(pid), 0)


def written(pidfile):
    """Wait until the command wrote its pid file (it runs)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (pidfile.exists() and pidfile.read_text()):
        time.sleep(0.02)
    return pidfile.exists()


@pytest.mark.parametrize("argv", [["spawner", "{pidfile}", "120"],
                                  ["sh", "-c", "sleep 120 & echo $! > {pidfile}; wait"]],
                         ids=["tool", "program"])
def test_the_host_agent_kills_the_command_it_runs_when_its_channel_closes(agent, tmp_path,
                                                                           argv):
    """The controller interrupted (Ctrl-C) or gone: the command and what it
    started ran on until its time limit (a shrink's rsync for copy_timeout,
    beside the re-run's), and the agent with it."""
    pidfile = tmp_path / "pid"
    request = {"argv": [arg.format(pidfile=pidfile) for arg in argv], "timeout": 600,
               "input": None}
    agent.process.stdin.write(json.dumps(request).encode() + b"\n")
    agent.process.stdin.flush()
    assert written(pidfile)
    agent.process.stdin.close()                 # the SSH channel closed
    assert gone(pidfile), "the command runs on after the agent's channel closed"
    assert agent.process.wait(timeout=30) == 0


def test_a_tool_command_interrupted_in_the_controller_is_killed_with_what_it_started(
        server, tmp_path):
    """Ctrl-C while the local transport waits for a served tool: the tool
    (in a process group of its own, which the terminal's Ctrl-C does not
    reach) ran on, as a program's command does not (run_program)."""
    pidfile = tmp_path / "pid"

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    threading.Thread(target=lambda: written(pidfile) and os.kill(os.getpid(), signal.SIGALRM),
                     daemon=True).start()
    try:
        with pytest.raises(KeyboardInterrupt):
            server.run(["spawner", str(pidfile), "120"], env(), 600)
    finally:
        signal.signal(signal.SIGALRM, previous)
    assert gone(pidfile), "the tool's child runs on after the interrupt"


def test_the_host_agent_answers_a_command_it_cannot_run_and_goes_on(agent):
    """An argument with a NUL (or a fork that fails) raised in the agent:
    it died, the controller saw its connection lost ("may or may not have
    run") and went on without an agent a while."""
    failed = agent.ask(["sh", "-c", "echo a\0b"])
    assert failed["exit"] == 126 and "cannot run it: ValueError" in failed["stderr"], failed
    assert agent.ask(["upper"], input="next") == {"exit": 0, "stdout": "NEXT", "stderr": ""}

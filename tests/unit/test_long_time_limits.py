"""A second look at the local transport, the tool server and the host agent
(football/transport.py, football/toolserver.py): time limits longer than
epoll can wait in one go, and a command that cannot be executed."""

import os


from football import toolserver
from football.toolserver import ToolServer, run_program
from football.transport import LocalTransport
from tests.unit.test_toolserver import MORE_TOOLS, agent  # noqa: F401 (a fixture)

MONTH = 30 * 86400.0        # config allows up to ten years (copy_timeout, command_timeout)


def test_a_time_limit_of_a_month_runs_the_command_locally(monkeypatch):
    """epoll waits at most 24.8 days in one go: subprocess's communicate
    raised OverflowError after starting the command (and killed it)."""
    monkeypatch.setenv("FOOTBALL_TOOL_SERVER", "0")
    done = LocalTransport("h1").run(["cat"], input="in", timeout=MONTH)
    assert (done.exit_code, done.stdout) == (0, "in")
    assert LocalTransport("h1").run(["echo", "out"], timeout=MONTH).stdout == "out\n"


def test_a_time_limit_of_a_month_runs_the_command_through_the_tool_server():
    server = ToolServer(MORE_TOOLS)
    try:
        assert server.run(["upper"], dict(os.environ), 30, input="a") == (0, "A", "")
        assert server.run(["upper", "2"], dict(os.environ), MONTH, input="abc") == (2, "ABC", "")
    finally:
        server.close()


def test_the_host_agent_runs_a_command_with_a_time_limit_of_a_month_and_goes_on(
        agent):  # noqa: F811 (the fixture imported above)
    """It died of the OverflowError: every command through it was
    "connection lost, may or may not have run" (a shrink's rsync, whose
    copy_timeout was a month, killed at once)."""
    assert agent.ask(["sh", "-c", "echo ran"], timeout=MONTH) == \
        {"exit": 0, "stdout": "ran\n", "stderr": ""}
    assert agent.ask(["upper"], timeout=MONTH, input="tool") == \
        {"exit": 0, "stdout": "TOOL", "stderr": ""}
    assert agent.ask(["upper"], input="on") == {"exit": 0, "stdout": "ON", "stderr": ""}


def test_a_command_that_cannot_be_executed_exits_126_as_in_a_shell(tmp_path, monkeypatch,
                                                                    agent):  # noqa: F811
    """Not executable, a directory: a shell says so and exits 126. The
    local transport raised PermissionError; the host agent died of it (the
    command "may or may not have run", and no agent for a while)."""
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\necho ran\n")
    monkeypatch.setenv("FOOTBALL_TOOL_SERVER", "0")
    for argv in ([str(script)], [str(tmp_path)]):
        done = LocalTransport("h1").run(argv, check=False)
        assert done.exit_code == 126 and done.stderr.startswith(f"{argv[0]}: "), done
        answer = agent.ask(argv)
        assert answer and answer["exit"] == 126, answer
    assert agent.ask(["upper"], input="on") == {"exit": 0, "stdout": "ON", "stderr": ""}


MIB = 1 << 20


def test_input_not_yet_read_at_the_end_of_one_long_wait_still_reaches_the_command(
        monkeypatch):
    """A communicate after a timeout sends no more input: the command never
    got the rest, nor its end, and waited out its limit."""
    monkeypatch.setattr(toolserver, "LONGEST_WAIT", 0.2)
    text = "x" * MIB        # more than a pipe holds: written as the command reads
    done = run_program(["sh", "-c", "sleep 0.6; wc -c"], env=dict(os.environ), timeout=10,
                       input=text)
    assert (done.returncode, done.stdout.strip()) == (0, str(MIB)), done

"""A command killed by a signal on a host reached over SSH (a real sshd,
tests/integration/conftest.py's fixtures): paramiko keeps no `exit-signal`,
so the command has no exit code (None, not -1: that would read as SIGHUP)
and its failure says it was killed by a signal the host did not name."""

import pytest

from football.transport import CommandFailed
from tests.integration.conftest import connect, known_hosts, sshd  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.root, pytest.mark.integration]


@pytest.fixture
def over_sessions(monkeypatch):
    """Every command over a session of its own (no host agent)."""
    monkeypatch.setenv("FOOTBALL_TOOL_SERVER", "0")


def test_a_command_killed_by_sigterm_over_ssh_says_killed_by_a_signal(
        connect, over_sessions):  # noqa: F811 (the fixture)
    transport = connect()
    result = transport.run(["sh", "-c", "echo going >&2; kill -TERM $$"], check=False)
    assert (result.exit_code, result.ok, result.stderr) == (None, False, "going\n")
    with pytest.raises(CommandFailed) as caught:
        transport.run(["sh", "-c", "echo going >&2; kill -TERM $$"])
    assert str(caught.value) == ("h1: `sh -c 'echo going >&2; kill -TERM $$'` was killed by "
                                 "a signal (the host did not say which):\ngoing")
    # the connection lives on: a killed command is no lost connection
    assert transport.run(["echo", "next"]).stdout == "next\n"


def test_a_command_that_exits_over_ssh_still_gives_its_exit_code(
        connect, over_sessions):  # noqa: F811 (the fixture)
    result = connect().run(["sh", "-c", "exit 143"], check=False)
    assert result.exit_code == 143

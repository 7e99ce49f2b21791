"""The SSH transport's host agent and time limits without a network
(football/ssh.py, football/toolserver.py): an agent that does not start
leaves no session open and is said once; a time limit reaches `timeout`
and the operator written out exactly; a channel the host did not open in
time on a connection that lives ends no other command. Against a real
sshd: tests/root/test_h5_ssh_channel_timeout.py."""

import json
import subprocess
import sys

import paramiko
import pytest

from football import ssh
from football.ssh import SSHTransport, remote_command
from football.transport import CommandTimedOut, LocalTransport, Result, Unreachable, seconds


class FakeChannel:
    """What `_Agent` uses of a paramiko channel: it says `said`, then closes."""

    def __init__(self, said=b"", exec_fails=False):
        self.said, self.exec_fails, self.closed = said, exec_fails, False

    def settimeout(self, timeout):
        pass

    def exec_command(self, command):
        if self.exec_fails:
            raise paramiko.SSHException("Channel closed.")

    def recv(self, size):
        piece, self.said = self.said[:size], self.said[size:]
        return piece

    def close(self):
        self.closed = True


def connection_with(channel):
    transport = type("Transport", (), {"open_session": lambda self: channel})()
    client = type("Client", (), {"get_transport": lambda self: transport})()
    return type("Connection", (), {"client": client})()


@pytest.mark.parametrize("said", [b"[1, 2]\n", b'"ready"\n', b"42\n", b"null\n", b"true\n",
                                  b'{"ready": false}\n', b"no json\n", b""])
def test_an_agent_whose_ready_line_is_not_a_ready_object_is_gone_and_its_channel_closed(said):
    """A ready line that is JSON but no object (a login banner's `42`, a
    wrong program's `[...]`) raised AttributeError past the clean-up: the
    session stayed open on the connection (one of sshd's MaxSessions)."""
    channel = FakeChannel(said)
    with pytest.raises(ssh._AgentGone):
        ssh._Agent(connection_with(channel), "football-host serve-tools")
    assert channel.closed


def test_an_agent_whose_exec_request_fails_closes_its_channel():
    channel = FakeChannel(exec_fails=True)
    with pytest.raises(ssh._AgentGone, match="Channel closed"):
        ssh._Agent(connection_with(channel), "football-host serve-tools")
    assert channel.closed


def test_a_ready_agent_keeps_its_channel():
    channel = FakeChannel(json.dumps({"ready": True, "tools": ["marsadm"]}).encode() + b"\n")
    agent = ssh._Agent(connection_with(channel), "football-host serve-tools")
    assert not channel.closed
    agent.close()
    assert channel.closed


def test_an_agent_that_does_not_start_is_a_warning_once_per_connection_with_its_reason(
        monkeypatch, caplog):
    """Its AGENT_STARTS starts on a connection were three warnings; one says
    it (with the reason), the starts tried again are debug messages. A new
    connection (the host rebooted) may say it once more."""
    now = [1000.0]
    monkeypatch.setattr(ssh.time, "monotonic", lambda: now[0])

    def no_agent(connection, command):
        raise ssh._AgentGone("no ready line within 30s", sent=False)

    monkeypatch.setattr(ssh, "_Agent", no_agent)
    transport = SSHTransport("h1", "127.0.0.1")
    monkeypatch.setattr(transport, "_connect", lambda reconnect=False: None)
    with caplog.at_level("DEBUG", logger=ssh.log.name):
        for _ in range(ssh.AGENT_STARTS):
            transport._agent_starts += 1
            transport._start_agent()
            now[0] += ssh.AGENT_RETRY_AFTER
        said = [(record.levelname, record.getMessage()) for record in caplog.records
                if "host agent did not start" in record.getMessage()]
        assert [level for level, _ in said] == ["WARNING", "DEBUG", "DEBUG"], said
        assert "h1 (root@127.0.0.1:22): the host agent did not start (no ready line " \
            "within 30s)" in said[0][1]
        caplog.clear()
        transport._agent_warned = False         # as `_connect` sets it for a new connection
        transport._start_agent()
        assert [record.levelname for record in caplog.records
                if "host agent did not start" in record.getMessage()] == ["WARNING"]


def test_a_new_connection_may_say_again_that_the_agent_did_not_start(monkeypatch):
    from tests.unit.test_transport import FakeConnection
    monkeypatch.setattr(ssh.fabric, "Connection", FakeConnection)
    transport = SSHTransport("h1", "127.0.0.1", host_key_check="off")
    transport._connect()
    transport._agent_warned = True
    transport._connection.is_connected = False          # the host rebooted
    transport._connect()
    assert transport._agent_warned is False


# --- time limits written out exactly ------------------------------------------------------

@pytest.mark.parametrize("limit, written", [
    (1e6, "1000000"), (1234567, "1234567"), (1234567.5, "1234567.5"), (1e16, "10000000000000000"),
    (600, "600"), (2.5, "2.5"), (0.1, "0.1"), (315360000.25, "315360000.25"), (1e-7, "0.0000001")])
def test_a_time_limit_is_written_out_exactly_not_rounded_to_six_digits(limit, written):
    """format(limit, "g"): `timeout 1e+06`, and 1234567 s became
    `timeout 1.23457e+06` (1234570 s)."""
    assert seconds(limit) == written
    assert remote_command(["sleep", "1"], None, timeout=limit) == \
        f"timeout --signal=KILL {written} sleep 1"
    assert f"within {written} s" in str(CommandTimedOut("h1", ["sleep", "1"], limit))


def test_coreutils_timeout_takes_a_long_limit_as_written():
    line = remote_command([sys.executable, "-c", "print('ran')"], None, timeout=1234567.5)
    assert LocalTransport("h1").run(["sh", "-c", line], timeout=60).stdout == "ran\n"


# --- a channel the host did not open in time on a connection that lives --------------

class LiveConnection:
    is_connected = True


def not_started_by(error):
    failure = ssh._CommandNotStarted(error)
    failure.__cause__ = error
    return failure


@pytest.fixture
def on_a_live_connection(monkeypatch):
    """An SSHTransport whose connection lives; `connects` records every
    `_connect` (a reconnect closed the connection: the commands on it ended)."""
    transport = SSHTransport("h1", "127.0.0.1", connect_timeout=5)
    live, connects = LiveConnection(), []

    def connect(reconnect=None):
        connects.append(reconnect)
        return live

    monkeypatch.setattr(transport, "_connect", connect)
    monkeypatch.setenv("FOOTBALL_TOOL_SERVER", "0")
    return transport, connects


def test_a_channel_the_host_opened_late_on_a_live_connection_is_tried_again_on_it(
        monkeypatch, on_a_live_connection):
    """paramiko's "Timeout opening channel." on a connection that lives was
    taken for a dead connection: the reconnect that followed closed it, and
    every other thread's command on it was lost."""
    transport, connects = on_a_live_connection
    tries = []

    def run(connection, command, timeout, input):
        tries.append(connection)
        if len(tries) == 1:
            raise not_started_by(paramiko.SSHException("Timeout opening channel."))
        return type("Done", (), {"exited": 0, "stdout": "fine\n", "stderr": "",
                                 "connection": connection})()

    monkeypatch.setattr(transport, "_run", run)
    monkeypatch.setattr(transport, "_answers", lambda connection=None: True)
    result = transport.run(["echo", "fine"])
    assert result == Result("h1", ("echo", "fine"), 0, "fine\n", "")
    assert connects == [None] and tries == [tries[0], tries[0]]    # no reconnect


@pytest.mark.parametrize("answers", [True, False])
def test_a_channel_the_host_does_not_open_on_a_live_connection_fails_that_command_alone(
        monkeypatch, on_a_live_connection, answers):
    transport, connects = on_a_live_connection
    tries = []

    def run(connection, command, timeout, input):
        tries.append(connection)
        raise not_started_by(paramiko.SSHException("Timeout opening channel."))

    monkeypatch.setattr(transport, "_run", run)
    monkeypatch.setattr(transport, "_answers", lambda connection=None: answers)
    with pytest.raises(Unreachable, match="opened no session for the command within 5 s .* "
                                          "the command did not run"):
        transport.run(["echo", "fine"])
    assert connects == [None] and len(tries) == (2 if answers else 1)


def test_a_channel_refused_on_a_dead_connection_still_opens_the_connection_again(
        monkeypatch, on_a_live_connection):
    transport, connects = on_a_live_connection
    tries = []

    def run(connection, command, timeout, input):
        tries.append(connection)
        if len(tries) == 1:
            connection.is_connected = False
            raise not_started_by(paramiko.SSHException("Timeout opening channel."))
        return type("Done", (), {"exited": 0, "stdout": "", "stderr": "",
                                 "connection": connection})()

    monkeypatch.setattr(transport, "_run", run)
    assert transport.run(["true"]).ok
    assert len(connects) == 2 and connects[1] is not None      # the dead one replaced


# --- the host agent: the running command's group ------------------------------------------

ORDER = """
import json, sys
from football import toolserver
running = toolserver._Running()
reaped_with = []
real_reap = toolserver._reap
def reap(pid, within):
    reaped_with.append(running.group)
    real_reap(pid, within)
toolserver._reap = reap
tools = {"upper": ("tests.helpers.tools", "upper")}
answer = toolserver._run_here(tools, ["upper"], "abc", 60, started=running.started)
print(json.dumps([answer["stdout"], reaped_with]))
"""


def test_the_host_agent_forgets_a_tools_process_group_before_it_reaps_it():
    """Forgotten after the reaping, the group a closing channel kills could
    be the freed pid taken by another process meanwhile."""
    done = subprocess.run([sys.executable, "-c", ORDER], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["ABC", [None]]


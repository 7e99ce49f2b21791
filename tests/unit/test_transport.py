"""The local transport (football/transport.py): results as values, failures
that name host, command, exit code and the tail of stderr, timeouts, and
arguments that reach the program literally because no shell is involved.
The SSH transport's pure parts: the remote command line (quoted for the
remote shell) and the host key policies. Against a real sshd:
tests/integration/test_ssh_transport.py."""

import shlex
import sys
import threading
import time
from pathlib import Path

import paramiko
import pytest

from football.ssh import (SSHTransport, UnknownHostKey, check_host_key_policy, known_hosts_name,
                          remote_command)
from football.transport import (CommandFailed, CommandTimedOut, ConnectionLost, LocalTransport,
                                Result, tail, tool_path)


@pytest.fixture
def transport():
    return LocalTransport("h1", {"MARS_HOST": "h1"})


# --- results ---------------------------------------------------------------------------

def test_a_successful_command_gives_a_result_with_its_output(transport):
    result = transport.run(["sh", "-c", "echo out; echo err >&2"])
    assert result == Result("h1", ("sh", "-c", "echo out; echo err >&2"), 0, "out\n", "err\n")
    assert result.ok


def test_the_results_command_is_the_argv_quoted_for_a_shell(transport):
    result = transport.run(["echo", "a b", "it's"])
    assert result.command == "echo 'a b' 'it'\"'\"'s'"
    assert shlex.split(result.command) == ["echo", "a b", "it's"]


def test_arguments_that_are_not_strings_are_passed_as_their_text(transport):
    result = transport.run(["echo", 42, Path("/x")])
    assert result.argv == ("echo", "42", "/x")
    assert result.stdout == "42 /x\n"


def test_without_check_a_failing_command_returns_its_result(transport):
    result = transport.run(["sh", "-c", "echo why >&2; exit 3"], check=False)
    assert (result.exit_code, result.stderr, result.ok) == (3, "why\n", False)


# --- failures --------------------------------------------------------------------------

def test_a_failing_command_raises_naming_host_command_exit_code_and_stderr(transport):
    argv = ["sh", "-c", "echo 'no space left' >&2; exit 3"]
    with pytest.raises(CommandFailed) as caught:
        transport.run(argv)
    assert str(caught.value) == f"h1: `{shlex.join(argv)}` exited 3:\nno space left"
    assert caught.value.result.exit_code == 3
    assert caught.value.result.host == "h1"


def test_a_failure_shows_only_the_first_and_last_lines_of_a_long_stderr(transport):
    script = "for i in $(seq 1 30); do echo line$i >&2; done; exit 1"
    with pytest.raises(CommandFailed) as caught:
        transport.run(["sh", "-c", script])
    message = str(caught.value)
    assert "line1\n...\nline23\n" in message
    assert message.endswith("line30")
    assert "line22" not in message


def test_a_failure_without_stderr_shows_stdout_and_without_output_says_so(transport):
    with pytest.raises(CommandFailed, match="exited 1:\nonly stdout$"):
        transport.run(["sh", "-c", "echo only stdout; exit 1"])
    with pytest.raises(CommandFailed, match=r"exited 1:\n\(no output\)$"):
        transport.run(["false"])


def test_a_command_over_its_time_limit_is_killed_and_raises_timed_out(transport):
    started = time.monotonic()
    with pytest.raises(CommandTimedOut) as caught:
        transport.run(["sleep", "30"], timeout=0.3)
    assert time.monotonic() - started < 20          # killed, not waited for
    assert (caught.value.host, caught.value.argv, caught.value.timeout) == (
        "h1", ("sleep", "30"), 0.3)
    assert str(caught.value) == "h1: `sleep 30` did not finish within 0.3 s and was killed"


def test_a_command_that_does_not_exist_exits_127(transport):
    result = transport.run(["no-such-command-for-football"], check=False)
    assert result.exit_code == 127
    assert result.stderr == "no-such-command-for-football: command not found\n"


def test_a_command_that_does_not_exist_raises_command_failed_with_check(transport):
    with pytest.raises(CommandFailed, match="`no-such-command-for-football` exited 127:\n"
                                            "no-such-command-for-football: command not found"):
        transport.run(["no-such-command-for-football"])


# --- environment, arguments, stdin ----------------------------------------------------

def test_the_hosts_environment_is_visible_to_the_command(transport):
    assert transport.run(["sh", "-c", "echo $MARS_HOST"]).stdout == "h1\n"


def test_this_installations_scripts_come_first_on_the_path(transport):
    found = transport.run(["sh", "-c", "command -v football-host"]).stdout.strip()
    assert found == str(Path(sys.executable).parent / "football-host")
    assert tool_path().split(":")[0] == str(Path(sys.executable).parent)


def test_system_tools_stay_on_the_path_when_the_scripts_are_first_already(monkeypatch):
    scripts = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", f"{scripts}:/usr/bin:/bin")
    assert tool_path() == f"{scripts}:/usr/bin:/bin"
    assert LocalTransport("h1").run(["sh", "-c", "command -v mkdir"]).ok


@pytest.mark.parametrize("argument", [
    "a b", "it's", '"quoted"', "x; touch pwned", "$(touch pwned)", "`touch pwned`", "$HOME",
    "*", "a\nb", "", "-n"])
def test_an_argument_reaches_the_program_literally(transport, tmp_path, argument):
    result = transport.run([sys.executable, "-c", "import sys; print(repr(sys.argv[1]))",
                            argument])
    assert result.stdout == f"{argument!r}\n"
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_input_is_passed_on_stdin(transport):
    assert transport.run(["cat"], input="hello\nworld\n").stdout == "hello\nworld\n"


def test_without_input_stdin_is_empty_so_a_reader_does_not_wait(transport):
    assert transport.run(["cat"], timeout=10).stdout == ""


# --- tail ------------------------------------------------------------------------------

def test_tail_keeps_a_short_text_whole():
    text = "\n".join(f"line{n}" for n in range(1, 10))
    assert tail(text) == text


def test_tail_keeps_the_first_line_and_the_last_lines_of_a_long_text():
    text = "\n".join(f"line{n}" for n in range(1, 21)) + "\n\n"
    assert tail(text) == "\n".join(["line1", "..."] + [f"line{n}" for n in range(13, 21)])


def test_tail_keeps_as_many_last_lines_as_asked():
    text = "\n".join(f"line{n}" for n in range(1, 21))
    assert tail(text, lines=2) == "line1\n...\nline19\nline20"


def test_tail_of_nothing_is_empty():
    assert tail("") == ""
    assert tail("\n\n") == ""


# --- SSH: the remote command line and host key policies (no network) ------------------

@pytest.mark.parametrize("argument", [
    "a b", "it's", '"quoted"', "x; touch pwned", "$(touch pwned)", "`touch pwned`", "$HOME",
    "*", "a\nb", "", "-n", "back\\slash"])
def test_a_remote_command_line_gives_the_remote_shell_every_argument_literally(tmp_path,
                                                                               argument):
    # sshd hands the line to the login shell as `$SHELL -c LINE`
    line = remote_command([sys.executable, "-c", "import sys, os; print(repr(sys.argv[1:]), "
                           "os.environ['V'])", argument], {"V": "it's $HOME"}, timeout=30)
    result = LocalTransport("h1").run(["sh", "-c", line], timeout=30)
    assert result.stdout == f"{[argument]!r} it's $HOME\n"
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_a_remote_command_line_is_the_quoted_argv_behind_timeout_and_env():
    assert remote_command(["marsadm", "view", "all"]) == "marsadm view all"
    assert remote_command(["echo", "a b"], {"MARS_ROOT": "/lab/a 1", "MARS_HOST": "a1"}) == (
        "env 'MARS_ROOT=/lab/a 1' MARS_HOST=a1 echo 'a b'")
    assert remote_command(["sleep", 5], None, timeout=2.5) == (
        "timeout --signal=KILL 2.5 sleep 5")
    assert shlex.split(remote_command(["true"], {"A": "1"}, timeout=600)) == [
        "timeout", "--signal=KILL", "600", "env", "A=1", "true"]


def test_known_hosts_names_a_host_off_port_22_with_its_port():
    assert known_hosts_name("10.0.0.1", 22) == "10.0.0.1"
    assert known_hosts_name("127.0.0.5", 2222) == "[127.0.0.5]:2222"


@pytest.mark.parametrize("policy", ["strict", "accept-new", "off"])
def test_the_host_key_policies_are_strict_accept_new_and_off(policy):
    assert check_host_key_policy(policy) == policy
    assert SSHTransport("h1", "10.0.0.1", host_key_check=policy).host_key_check == policy


@pytest.mark.parametrize("policy", ["yes", "no", "", None, "accept_new"])
def test_another_host_key_policy_is_refused_naming_the_three(policy):
    with pytest.raises(ValueError, match="is not one of strict, accept-new, off"):
        SSHTransport("h1", "10.0.0.1", host_key_check=policy)


def test_an_ssh_transport_defaults_to_strict_root_port_22_and_the_users_known_hosts():
    transport = SSHTransport("h1", "10.0.0.1")
    assert (transport.user, transport.port, transport.host_key_check) == ("root", 22, "strict")
    assert transport.known_hosts == Path.home() / ".ssh" / "known_hosts"
    assert transport.where == "h1 (root@10.0.0.1:22)"


def test_accept_new_appends_a_new_hosts_key_to_known_hosts_as_ssh_writes_it(tmp_path):
    known_hosts = tmp_path / "ssh" / "known_hosts"
    key = paramiko.ECDSAKey.generate()
    client = paramiko.SSHClient()
    SSHTransport("h1", "127.0.0.5", port=2222, known_hosts=known_hosts,
                 host_key_check="accept-new")._trust(client)
    client._policy.missing_host_key(client, "[127.0.0.5]:2222", key)
    assert known_hosts.read_text() == f"[127.0.0.5]:2222 {key.get_name()} {key.get_base64()}\n"
    assert paramiko.HostKeys(str(known_hosts)).lookup("[127.0.0.5]:2222")[key.get_name()] == key
    assert client.get_host_keys().lookup("[127.0.0.5]:2222")[key.get_name()] == key


def test_strict_refuses_an_unknown_host_key(tmp_path):
    client = paramiko.SSHClient()
    SSHTransport("h1", "127.0.0.5", known_hosts=tmp_path / "known_hosts")._trust(client)
    with pytest.raises(UnknownHostKey):
        client._policy.missing_host_key(client, "127.0.0.5", paramiko.ECDSAKey.generate())
    assert not (tmp_path / "known_hosts").exists()


class _ClosedByOurTimer:
    """What invoke returns when its timer closed the channel but the command
    returned before the timer's thread ended: no exit status (-1), the
    connection still up, and no CommandTimedOut from invoke."""
    exited, stdout, stderr = -1, "", ""

    class connection:
        is_connected = True


@pytest.mark.parametrize("exited", [-1, 137])
def test_an_ssh_command_cut_off_at_its_time_limit_raises_timed_out(monkeypatch, exited):
    transport = SSHTransport("h1", "10.0.0.1")
    done = _ClosedByOurTimer()
    done.exited = exited

    def run_past_the_limit(connection, command, timeout, input):
        time.sleep(timeout)
        return done
    monkeypatch.setattr(transport, "_connect", lambda reconnect=False: None)
    monkeypatch.setattr(transport, "_run", run_past_the_limit)
    with pytest.raises(CommandTimedOut, match="did not finish within 0.05 s"):
        transport.run(["sleep", "600"], timeout=0.05)


def test_an_ssh_command_without_exit_status_before_its_time_limit_is_a_failure(monkeypatch):
    transport = SSHTransport("h1", "10.0.0.1")
    monkeypatch.setattr(transport, "_connect", lambda reconnect=False: None)
    monkeypatch.setattr(transport, "_run", lambda *args: _ClosedByOurTimer())
    with pytest.raises(CommandFailed, match=r"killed by a signal \(the host did not say which\)"):
        transport.run(["true"], timeout=600)



def test_the_agent_of_a_host_nothing_reaches_is_no_warning_its_commands_say_it(
        monkeypatch, caplog):
    """A dead host (failover, decommission): its commands fail naming it
    unreachable; the agent's start failing for the same reason is no
    warning of its own."""
    from football import ssh
    from football.transport import Unreachable

    transport = SSHTransport("h1", "127.0.0.1", port=2)

    def refused(reconnect=False):
        raise Unreachable("h1 (root@127.0.0.1:2): connection refused or no route")

    monkeypatch.setattr(transport, "_connect", refused)
    with caplog.at_level("DEBUG", logger=ssh.log.name):
        transport._start_agent()
    assert transport._agent_failed_at is not None
    assert [record.levelname for record in caplog.records
            if "host agent did not start" in record.getMessage()] == ["DEBUG"]


def test_a_host_agent_that_did_not_start_is_started_again_later_at_most_three_times(
        monkeypatch, caplog):
    """A host agent that failed to start (a host under load answering too
    late) is not given up for the whole run: after AGENT_RETRY_AFTER seconds
    a bundled tool's command starts it again, up to AGENT_STARTS times;
    meanwhile commands run as sessions of their own (None), and the failure
    is a warning naming the host and the reason."""
    from football import ssh

    now = [1000.0]
    monkeypatch.setattr(ssh.time, "monotonic", lambda: now[0])
    failed = []

    def no_agent(connection, command):
        failed.append(command)
        raise ssh._AgentGone("no ready line within 30s", sent=False)

    monkeypatch.setattr(ssh, "_Agent", no_agent)
    transport = SSHTransport("h1", "127.0.0.1")
    monkeypatch.setattr(transport, "_connect", lambda reconnect=False: None)

    def start_fails(starts):
        assert transport._agent_for("marsadm") is None     # a session of its own meanwhile
        deadline = time.time() + 30
        while transport._agent_failed_at is None and time.time() < deadline:
            time.sleep(0.01)
        assert transport._agent_failed_at is not None and transport._agent_starts == starts

    with caplog.at_level("WARNING", logger=ssh.log.name):
        start_fails(1)
    assert "h1 (root@127.0.0.1:22): the host agent did not start (no ready line" in caplog.text
    now[0] += ssh.AGENT_RETRY_AFTER - 1
    assert transport._agent_for("marsadm") is None and len(failed) == 1     # not yet
    for starts in (2, 3):
        now[0] += ssh.AGENT_RETRY_AFTER
        start_fails(starts)
    now[0] += ssh.AGENT_RETRY_AFTER
    assert transport._agent_for("marsadm") is None and len(failed) == 3     # given up


def test_a_command_without_a_time_limit_goes_through_the_host_agent_without_one():
    """`timeout=None` (as `lab exec` passes) waits for the agent's answer
    as long as it takes (it raised TypeError)."""
    asked = []

    class Agent:
        def ask(self, request, timeout):
            asked.append((request["timeout"], timeout))
            return {"exit": 0, "stdout": "out\n", "stderr": ""}

    transport = SSHTransport("h1", "127.0.0.1")
    result = transport._through(Agent(), ["true"], True, None, None)
    assert result.ok and result.stdout == "out\n" and asked == [(None, None)]


class FakeAgent:
    """A host agent as `_start_agent` makes it; `ask` fails as one gone."""

    made = []

    def __init__(self, connection=None, command=None):
        self.connection, self.closed = connection, False
        self.lock = threading.Lock()
        FakeAgent.made.append(self)

    def ask(self, request, timeout):
        from football import ssh
        raise ssh._AgentGone("no answer", sent=True)

    def close(self):
        self.closed = True


@pytest.mark.parametrize("meanwhile", ["closed", "reconnected"])
def test_an_agent_started_while_the_transport_closed_or_reconnected_is_not_installed(
        monkeypatch, meanwhile):
    """A start that ends after `close()` installed its agent (and channel) on
    the closed transport; one made on a connection another thread had
    replaced meanwhile was a dead agent."""
    from football import ssh
    transport = SSHTransport("h1", "127.0.0.1")
    old, new = object(), object()
    transport._connection = old
    monkeypatch.setattr(transport, "_connect", lambda reconnect=False: old)
    monkeypatch.setattr(ssh, "_Agent", FakeAgent)
    transport._agent = False                # its start under way, as `_agent_for` has it
    if meanwhile == "closed":
        monkeypatch.setattr(transport, "_connection", None)
        transport.close()
        transport._agent = False
    else:
        transport._connection = new
    FakeAgent.made.clear()
    transport._start_agent(closed=0)
    assert transport._agent is (False if meanwhile == "closed" else None)
    assert [agent.closed for agent in FakeAgent.made] == [True]
    transport._closed, transport._agent, transport._connection = 0, False, old  # as asked
    transport._start_agent(closed=0)
    assert transport._agent is FakeAgent.made[-1] and not transport._agent.closed


def test_an_agent_gone_does_not_drop_the_one_another_thread_started_since():
    transport = SSHTransport("h1", "127.0.0.1")
    gone, fresh = FakeAgent(), FakeAgent()
    transport._agent = fresh
    with pytest.raises(ConnectionLost):
        transport._through(gone, ["marsadm", "view", "vm1"], True, 10, None)
    assert transport._agent is fresh and gone.closed and not fresh.closed


class FakeConnection:
    """What `_connect` uses of a fabric Connection."""

    def __init__(self, *args, **kwargs):
        self.is_connected, self.transport = True, type("Transport", (), {})()
        self.client = type("Client", (), {"close": lambda self: None,
                                          "set_missing_host_key_policy": lambda self, p: None,
                                          "load_system_host_keys": lambda self, p: None})()

    def open(self):
        pass


def test_a_new_connection_gives_the_host_agent_its_starts_again(monkeypatch):
    """AGENT_STARTS counted over the transport's life: a worker whose host
    rebooted three times ran every later command as a session of its own."""
    from football import ssh
    monkeypatch.setattr(ssh.fabric, "Connection", FakeConnection)
    transport = SSHTransport("h1", "127.0.0.1", host_key_check="off")
    transport._connect()
    transport._agent_starts = ssh.AGENT_STARTS          # used up on this connection
    transport._connection.is_connected = False          # the host rebooted
    transport._connect()
    assert transport._agent_starts == 0


def test_a_command_interrupted_while_the_host_agent_runs_it_drops_the_agent():
    """A Ctrl-C while the agent ran a command left the agent installed and
    busy: the transport's next request (the compensation's first command)
    got that command's answer, and every later one the answer before its
    own. Dropped now, its channel closed (the agent then kills the command,
    test_toolserver); the next tool command starts another."""

    class Agent:
        closed = False

        def ask(self, request, timeout):
            raise KeyboardInterrupt

        def close(self):
            self.closed = True

    transport = SSHTransport("h1", "127.0.0.1")
    agent = transport._agent = Agent()
    with pytest.raises(KeyboardInterrupt):
        transport._through(agent, ["rsync", "-a", "/a/", "/b/"], True, 600, None)
    assert agent.closed and transport._agent is None
    assert transport._agent_failed_at is None       # not a failure: started again at once

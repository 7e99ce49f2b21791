"""The SSH transport (football/ssh.py) against a real sshd that the
test starts on a 127.x.y.z address with generated keys: results, quoting,
stdin, failures, timeouts that kill the remote command, the host's
environment, one connection for many commands, and host key checking."""

import socket
import sys
import threading
import time
import uuid
from pathlib import Path

import paramiko
import pytest

from football.inventory import parse
from football.ssh import SSHTransport
from football.transport import CommandFailed, CommandTimedOut, ConnectionLost, Unreachable
from tests.helpers.marshosts import STATE_WAIT, random_subnet, wait_until
from tests.helpers.sshd import Sshd, free_port, keygen, pgrep

pytestmark = [pytest.mark.root, pytest.mark.integration]


@pytest.fixture
def transport(connect):
    return connect()


# --- results, arguments, stdin, environment ---------------------------------------------

def test_a_command_gives_its_stdout_stderr_and_exit_code(transport):
    result = transport.run(["sh", "-c", "echo out; echo err >&2; exit 3"], check=False)
    assert (result.host, result.argv) == ("h1", ("sh", "-c", "echo out; echo err >&2; exit 3"))
    assert (result.exit_code, result.stdout, result.stderr, result.ok) == (3, "out\n", "err\n",
                                                                           False)
    assert transport.run(["echo", "fine"]).stdout == "fine\n"


def test_arguments_with_spaces_quotes_semicolons_and_substitutions_arrive_verbatim(
        transport, tmp_path):
    arguments = ["a b", "it's", '"quoted"', "x; touch pwned", f"$(touch {tmp_path}/pwned)",
                 f"`touch {tmp_path}/pwned`", "$HOME", "*", "", "-n", "a\\b", "tab\there"]
    result = transport.run(["printf", "%s\\n", *arguments])
    assert result.stdout.split("\n")[:-1] == arguments
    assert not (tmp_path / "pwned").exists()


def test_input_reaches_the_commands_stdin_and_without_input_stdin_is_empty(transport):
    assert transport.run(["cat"], input="hello\nworld\n").stdout == "hello\nworld\n"
    assert transport.run(["cat"], timeout=STATE_WAIT).stdout == ""   # not waiting for input
    # in pieces, not a byte per 10 ms as invoke reads a stream that is no terminal
    # (64 KiB took 11 minutes: xfs_quota's limits, a systemd unit took seconds)
    assert transport.run(["wc", "-c"], input="x" * (64 << 10), timeout=STATE_WAIT).stdout \
        .strip() == str(64 << 10)


def test_a_command_that_ends_without_reading_its_input_gives_its_own_result(transport):
    """(`install -D /dev/stdin <unit>` that fails at its path): its exit code
    and stderr — not a broken connection with invoke's thread dump."""
    done = transport.run(["sh", "-c", "echo cannot write there >&2; exit 3"],
                         input="x" * (64 << 10), check=False)
    assert (done.exit_code, done.stderr) == (3, "cannot write there\n")


def test_the_hosts_environment_reaches_the_command(connect):
    transport = connect(env={"MARS_HOST": "a 1", "MARS_ROOT": "/lab/it's"})
    result = transport.run(["sh", "-c", 'echo "$MARS_HOST|$MARS_ROOT"'])
    assert result.stdout == "a 1|/lab/it's\n"


def test_a_host_from_the_inventory_runs_its_commands_over_ssh(sshd, known_hosts):
    inventory = parse({"hosts": {"h1": {
        "address": sshd.addresses[0], "port": sshd.port, "ssh_key": str(sshd.client_key),
        "known_hosts": str(known_hosts), "env": {"MARS_HOST": "h1"}}}})
    host = inventory.host("h1")
    try:
        assert host.run(["sh", "-c", "echo $MARS_HOST; echo $SSH_CONNECTION"]).stdout.split(
            "\n")[0] == "h1"
        assert f" {sshd.addresses[0]} {sshd.port}" in host.run(["sh", "-c",
                                                                 "echo $SSH_CONNECTION"]).stdout
    finally:
        host.runner.close()


# --- failures and timeouts ---------------------------------------------------------------

def test_a_failing_command_raises_naming_host_command_exit_code_and_stderr_tail(transport):
    script = "for i in $(seq 1 30); do echo line$i >&2; done; exit 4"
    with pytest.raises(CommandFailed) as caught:
        transport.run(["sh", "-c", script])
    message = str(caught.value)
    assert message.startswith(f"h1: `sh -c '{script}'` exited 4:\nline1\n...\nline23\n")
    assert message.endswith("line30")
    assert caught.value.result.exit_code == 4


def test_a_command_over_its_time_limit_raises_timed_out_and_is_killed_on_the_host(transport):
    marker = f"football-test-{uuid.uuid4()}"
    started = time.monotonic()
    with pytest.raises(CommandTimedOut) as caught:
        transport.run(["sh", "-c", f"sleep 600; : {marker}"], timeout=1)
    elapsed = time.monotonic() - started
    assert elapsed < 600, "waited for the command to end instead of killing it"
    print(f"\na command with a time limit of 1 s timed out after {elapsed:.2f}s")
    assert str(caught.value) == (f"h1: `sh -c 'sleep 600; : {marker}'` did not finish within "
                                 "1 s and was killed")
    wait_until(lambda: not pgrep(marker), what=f"the remote sleep ({marker}) gone",
               show=lambda: f"pids {pgrep(marker)}")
    assert transport.run(["echo", "still usable"]).stdout == "still usable\n"


def test_a_command_whose_host_went_silent_is_connection_lost_not_killed(connect, sshd,
                                                                       tmp_path):
    """The host stops answering while the command runs (here the command
    finishes there): its time limit passes without an answer, and no
    keepalive is answered either. "Killed" would be a lie; it may have run."""
    transport = connect(connect_timeout=2)
    done = tmp_path / "done"
    transport.run(["true"])
    outcome = []
    running = threading.Thread(target=lambda: outcome.append(_raised(
        transport.run, ["sh", "-c", f"sleep 1; touch {done}"], timeout=4)), daemon=True)
    running.start()
    wait_until(lambda: sshd.log().count("Starting session: command") == 2,
               what="the command started")
    frozen = sshd.freeze_connections()
    try:
        wait_until(done.exists, what="the command to finish on the host")
        running.join(STATE_WAIT)
    finally:
        sshd.thaw(frozen)
    assert outcome and isinstance(outcome[0], ConnectionLost), outcome
    assert "no answer within its time limit of 4 s, nor to a keepalive since" in str(outcome[0])


# --- one connection ----------------------------------------------------------------------

def test_commands_in_a_row_share_one_connection(transport, sshd):
    first = transport.run(["sh", "-c", "echo $SSH_CONNECTION"]).stdout.split()
    second = transport.run(["sh", "-c", "echo $SSH_CONNECTION"]).stdout.split()
    assert first == second      # the same client port: the same TCP connection
    assert first[2:] == [sshd.addresses[0], str(sshd.port)]
    assert (sshd.logins(), sshd.connections_to(sshd.addresses[0])) == (1, 1)


def test_after_close_the_next_command_connects_again(transport, sshd):
    before = transport.run(["sh", "-c", "echo $SSH_CONNECTION"]).stdout
    transport.close()
    transport.close()       # closing twice is harmless
    after = transport.run(["sh", "-c", "echo $SSH_CONNECTION"]).stdout
    assert before != after and sshd.logins() == 2


def test_a_connection_the_host_dropped_is_opened_again_for_the_next_command(transport, sshd):
    transport.run(["true"])
    sshd.drop_connections()
    wait_until(lambda: not transport._connection.is_connected,
               what="the client seeing the connection dropped")
    assert transport.run(["echo", "back"]).stdout == "back\n"
    assert sshd.logins() == 2


def test_a_command_whose_start_was_not_answered_is_not_run_again(transport, tmp_path,
                                                                 monkeypatch):
    """The exec request reached the host and the connection broke before its
    answer came back: the command may have run (here it did), so it is
    ConnectionLost — not run a second time on a new connection."""
    count = tmp_path / "count"
    sent = paramiko.Channel.exec_command

    def answer_lost(channel, command):
        sent(channel, command)
        raise EOFError()

    transport.run(["true"])
    monkeypatch.setattr(paramiko.Channel, "exec_command", answer_lost)
    with pytest.raises(ConnectionLost, match="it may or may not have run"):
        transport.run(["sh", "-c", f"echo ran >> {count}"])
    monkeypatch.undo()
    wait_until(count.exists, what="the command to have run")
    assert transport.run(["cat", str(count)]).stdout == "ran\n"


def test_a_host_that_does_not_answer_a_commands_start_is_given_up_after_connect_timeout(
        connect, monkeypatch):
    """paramiko waits for the answer to an exec request for ever (and an
    hour to open a channel): a host that stops answering held the run."""
    transport = connect(connect_timeout=2)
    transport.run(["true"])

    def never_answered(channel, command):         # the request goes nowhere
        channel._event_pending()
        channel._wait_for_event()

    monkeypatch.setattr(paramiko.Channel, "exec_command", never_answered)
    outcome = []
    running = threading.Thread(target=lambda: outcome.append(_raised(
        transport.run, ["true"])), daemon=True)
    running.start()
    running.join(STATE_WAIT)
    assert outcome and isinstance(outcome[0], ConnectionLost), outcome or "still waiting"


def test_a_session_the_host_refuses_on_a_busy_connection_waits_and_ends_no_other_command(
        tmp_path, known_hosts):
    """sshd's MaxSessions (2 here) reached by two commands running: the third
    waits for a session on the same connection. A new connection, as for a
    dead one, ended the two running ones (ConnectionLost)."""
    server = Sshd(tmp_path / "busy", [f"{random_subnet()}.5"], max_sessions=2)
    server.start()
    try:
        (tmp_path / "known").write_text(server.known_hosts_lines())
        transport = SSHTransport("h1", server.addresses[0], port=server.port,
                                 ssh_key=str(server.client_key),
                                 known_hosts=str(tmp_path / "known"), connect_timeout=STATE_WAIT)
        go, outcomes = tmp_path / "go", {}
        waiting = ["sh", "-c", f"while [ ! -e {go} ]; do sleep 0.05; done; echo done"]

        def run(name, argv):
            outcomes[name] = _raised(lambda: outcomes.setdefault(
                f"{name}-out", transport.run(argv).stdout))

        running = [threading.Thread(target=run, args=(name, waiting)) for name in "AB"]
        for thread in running:
            thread.start()
        wait_until(lambda: server.log().count("Starting session: command") == 2,
                   what="two commands running")
        third = threading.Thread(target=run, args=("C", ["echo", "C"]))
        third.start()
        wait_until(lambda: "no more sessions" in server.log(), what="the third one refused",
                   show=server.log)
        go.touch()
        for thread in [*running, third]:
            thread.join(STATE_WAIT)
        assert (outcomes["A"], outcomes["B"], outcomes["C"]) == (None, None, None), outcomes
        assert (outcomes["A-out"], outcomes["C-out"]) == ("done\n", "C\n")
        assert server.logins() == 1
        transport.close()
    finally:
        server.stop()


def _raised(call, *args, **kwargs):
    try:
        call(*args, **kwargs)
    except Exception as error:      # noqa: BLE001 (the test looks at it)
        return error
    return None


# --- reaching the host -------------------------------------------------------------------

def test_strict_refuses_a_host_whose_key_is_not_known_and_runs_nothing(connect, sshd,
                                                                      tmp_path):
    unknown = tmp_path / "empty_known_hosts"
    with pytest.raises(Unreachable) as caught:
        connect(known_hosts=str(unknown)).run(["touch", str(tmp_path / "ran")])
    message = str(caught.value)
    address = f"{sshd.addresses[0]}:{sshd.port}"
    assert message.startswith(f"h1 (root@{address}): host key unknown: "
                              f"[{sshd.addresses[0]}]:{sshd.port} is not in {unknown}")
    assert f"ssh-keyscan -p {sshd.port} {sshd.addresses[0]} >> {unknown}" in message
    assert "host_key_check: accept-new" in message
    assert not (tmp_path / "ran").exists() and not unknown.exists()
    assert sshd.logins() == 0


def test_accept_new_trusts_a_new_host_and_records_its_key_but_refuses_a_changed_key(
        connect, sshd, tmp_path):
    recorded = tmp_path / "ssh" / "known_hosts"
    transport = connect(known_hosts=str(recorded), host_key_check="accept-new")
    assert transport.run(["echo", "hello"]).stdout == "hello\n"
    assert recorded.read_text() == sshd.known_hosts_lines()
    assert connect(known_hosts=str(recorded)).run(["true"]).ok   # now known to strict too

    sshd.restart_with_new_host_key()
    for again in (transport, connect(known_hosts=str(recorded), host_key_check="accept-new")):
        with pytest.raises(Unreachable, match=r"HOST KEY CHANGED.*ssh-keygen -f "
                                              rf"{recorded} -R '\[{sshd.addresses[0]}\]"):
            again.run(["touch", str(tmp_path / "ran")])
    assert not (tmp_path / "ran").exists()
    assert recorded.read_text().count("\n") == 1


def test_off_accepts_any_host_key_and_records_none(connect, tmp_path):
    unknown = tmp_path / "none"
    assert connect(known_hosts=str(unknown), host_key_check="off").run(["true"]).ok
    assert not unknown.exists()


def test_a_port_nobody_listens_on_is_unreachable_at_once(connect, sshd):
    port = free_port(sshd.addresses[0])
    started = time.monotonic()
    with pytest.raises(Unreachable, match=rf"h1 \(root@{sshd.addresses[0]}:{port}\): "
                                          "connection refused.*sshd runs there"):
        connect(port=port).run(["true"])
    # At once: not after the connect timeout (then the message would say "no answer").
    print(f"\nconnection refused after {time.monotonic() - started:.2f}s")


def test_a_host_that_accepts_but_never_answers_is_unreachable_after_the_connect_timeout(
        connect, sshd):
    with socket.socket() as silent:
        silent.bind((sshd.addresses[0], 0))
        silent.listen()
        started = time.monotonic()
        with pytest.raises(Unreachable, match="no answer within 1 s"):
            connect(port=silent.getsockname()[1], connect_timeout=1).run(["true"])
        print(f"\nno answer within connect_timeout=1: unreachable after "
              f"{time.monotonic() - started:.2f}s")


def test_a_key_the_host_does_not_authorize_is_unreachable_naming_the_key(connect, tmp_path):
    stranger = keygen(tmp_path / "stranger")
    with pytest.raises(Unreachable, match=f"authentication as root failed with {stranger}"):
        connect(ssh_key=str(stranger)).run(["true"])



# --- the host agent -------------------------------------------------------------------

def tool_env(tmp_path, scripts=True):
    path = "/usr/sbin:/usr/bin:/sbin:/bin"
    return {"PATH": f"{Path(sys.executable).parent}:{path}" if scripts else path,
            "MARS_ROOT": str(tmp_path / "root"), "MARS_HOST": "h1"}


def sessions(sshd):
    return sshd.log().count("Starting session: command")


def test_the_bundled_tools_run_through_the_host_agent_as_their_programs_would(
        connect, sshd, tmp_path, monkeypatch):
    """After the first bundled tool's command, every command goes through
    one agent channel (no new session each) with the result it has as a
    program over a session of its own."""
    transport = connect(env=tool_env(tmp_path))
    commands = [["marsadm", "--version"], ["marsadm", "no-such-command"],
                ["marsadm", "view-my-resources"], ["football-host", "--help"],
                ["football-host", "vg", str(tmp_path / "vg0"), "info"],
                ["marsadm", "view-my-resources"]]
    transport.run(commands[0])
    wait_until(lambda: transport._agent, what="the host agent to be ready")
    before = sessions(sshd)
    through = [transport.run(argv, check=False) for argv in commands]
    # other commands too: the agent runs them as programs, in the host's environment
    assert transport.run(["sh", "-c", 'echo "$MARS_HOST"; exit 5'], check=False).stdout == "h1\n"
    assert sessions(sshd) == before, "a command opened a session of its own"
    monkeypatch.setenv("FOOTBALL_TOOL_SERVER", "0")
    programs = [transport.run(argv, check=False) for argv in commands]
    assert sessions(sshd) == before + len(commands)
    assert through == programs
    assert [result.exit_code for result in through][:4] == [0, 2, 0, 0]
    monkeypatch.delenv("FOOTBALL_TOOL_SERVER")
    with pytest.raises(CommandFailed):
        transport.run(["marsadm", "no-such-command"])


def test_without_football_host_on_the_host_every_command_runs_as_a_program(
        connect, sshd, tmp_path):
    transport = connect(env=tool_env(tmp_path, scripts=False))
    assert transport.run(["marsadm", "--version"], check=False).exit_code == 127
    # the command, and the agent's start (a session that ends at once)
    wait_until(lambda: sessions(sshd) >= 2, what="the agent's start to be tried")
    before = sessions(sshd)
    assert transport.run(["marsadm", "--version"], check=False).exit_code == 127
    assert sessions(sshd) == before + 1

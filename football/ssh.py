"""The SSH transport: a command on a remote host over one reused SSH
connection (fabric on paramiko). The argument list is quoted for the login
shell there, and the host's environment is passed as an `env K=V ...`
prefix. Host keys are checked as `host_key_check` says (strict, accept-new,
off). Its own module, so that only runs that reach a host over SSH import
fabric (a tenth of a second at every start of `football`)."""

import codecs
import io
import json
import logging
import os
import shlex
import socket
import threading
import time
from pathlib import Path

import fabric
import invoke
import paramiko
from fabric.runners import Remote

from football.toolserver import TOOLS
from football.transport import (DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, HOST_KEY_CHECKS,
                                CommandTimedOut, ConnectionLost, Result, Transport,
                                Unreachable, checked, seconds)

DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
SYSTEM_KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"
SSH_PORT = 22
KILLED_BY_TIMEOUT = 128 + 9      # `timeout --signal=KILL` exits with 128 + SIGKILL
AGENT_START_TIMEOUT = 30.0      # seconds for the host agent to say it is ready
AGENT_GRACE = 30.0              # beyond a command's time limit, for its answer
AGENT_RETRY_AFTER = 10.0        # seconds after a host agent failed before it is started again
AGENT_STARTS = 3                # host agent starts per connection at most

log = logging.getLogger(__name__)


def remote_command(argv, env=None, timeout=None):
    """The command line for the remote login shell: every argument quoted;
    the host's environment as an `env K=V ...` prefix (sshd passes no
    variables of ours: most servers accept none by AcceptEnv); with a
    `timeout`, coreutils' `timeout` kills the command on the host when its
    time is up. Closing the channel would not: a command without a terminal
    outlives it, and sshd refuses "signal" requests for root sessions."""
    prefix = ["timeout", "--signal=KILL", seconds(timeout)] if timeout is not None else []
    if env:
        prefix += ["env", *(f"{name}={value}" for name, value in env.items())]
    return shlex.join(prefix + [str(arg) for arg in argv])


class _AgentGone(Exception):
    """The host agent's channel broke; `sent`: after the request went out."""

    def __init__(self, why, sent):
        super().__init__(why)
        self.sent = sent


class _Agent:
    """`football-host serve-tools` on the host, over one channel of the
    transport's connection (football/toolserver.py, serve_stdio): the
    bundled tools' commands without an interpreter start each."""

    def __init__(self, connection, command):
        self.channel = connection.client.get_transport().open_session()
        self.rest = b""             # read after the last line
        self.lock = threading.Lock()
        # the channel is closed on every way out but a ready agent's: an
        # open session counts against the host's MaxSessions for as long as
        # the connection lives
        try:
            self.channel.settimeout(AGENT_START_TIMEOUT)
            self.channel.exec_command(command)
            ready = json.loads(self._line() or b"{}")
        except (paramiko.SSHException, EOFError, OSError, ValueError) as error:
            self.close()
            raise _AgentGone(str(error) or type(error).__name__, sent=False) from None
        if not isinstance(ready, dict) or not ready.get("ready"):
            self.close()
            raise _AgentGone("it did not start (no football-host there?)", sent=False)

    def ask(self, request, timeout):
        try:
            self.channel.sendall(json.dumps(request).encode() + b"\n")
        except OSError as error:
            raise _AgentGone(str(error), sent=False) from None
        self.channel.settimeout(timeout)
        try:
            line = self._line()
        except (OSError, socket.timeout) as error:
            raise _AgentGone(f"no answer: {str(error) or type(error).__name__}", sent=True) from None
        if not line.endswith(b"\n"):       # (a reply cut short: the channel closed in it)
            raise _AgentGone("its channel closed", sent=True)
        try:
            return json.loads(line)
        except ValueError as error:
            raise _AgentGone(f"its answer is no JSON: {error}", sent=True) from None

    def _line(self):
        """The next line the agent says (b"" once its channel closed): not
        paramiko's readline, which scans and copies the whole line read so
        far at each 8 KiB (an answer of 48 MB took a minute)."""
        pieces, piece = [], self.rest
        while (end := piece.find(b"\n")) < 0:
            pieces.append(piece)
            piece = self.channel.recv(1 << 16)
            if not piece:
                self.rest = b""
                return b"".join(pieces)
        self.rest = piece[end + 1:]
        return b"".join([*pieces, piece[:end + 1]])

    def close(self):
        _close_quietly(self.channel)


def known_hosts_name(address, port):
    """How known_hosts names a host: `addr`, or `[addr]:port` off port 22."""
    return address if int(port) == SSH_PORT else f"[{address}]:{port}"


def check_host_key_policy(name):
    """`name` if it is a host_key_check value, else ValueError naming them."""
    if name not in HOST_KEY_CHECKS:
        raise ValueError(f"host_key_check {name!r} is not one of {', '.join(HOST_KEY_CHECKS)}")
    return name


class UnknownHostKey(paramiko.SSHException):
    """The host's key is not in known_hosts (policy `strict`)."""


class _RejectUnknown(paramiko.MissingHostKeyPolicy):
    def missing_host_key(self, client, hostname, key):
        raise UnknownHostKey(hostname, key)


class _AcceptNew(paramiko.MissingHostKeyPolicy):
    """Trust a host seen for the first time and append its key to the
    known_hosts file (ssh's StrictHostKeyChecking=accept-new). A key that
    differs from a known one never reaches a policy: paramiko refuses it."""

    def __init__(self, known_hosts):
        self.known_hosts = known_hosts

    def missing_host_key(self, client, hostname, key):
        client.get_host_keys().add(hostname, key.get_name(), key)
        line = paramiko.hostkeys.HostKeyEntry([hostname], key).to_line()
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Appended, not rewritten: the operator's file keeps its comments
        # and entries paramiko cannot parse.
        with open(self.known_hosts, "a") as known:
            known.write(line)


class _Unchecked(paramiko.MissingHostKeyPolicy):
    def missing_host_key(self, client, hostname, key):
        log.warning("host key of %s not verified (host_key_check: off): %s %s", hostname,
                    key.get_name(), key.fingerprint)


class _CommandNotStarted(Exception):
    """No channel could be opened for the command (a dead connection)."""


class _CommandMayHaveStarted(Exception):
    """The exec request went out and its answer did not come back: the
    host may have started the command."""


class _Remote(Remote):
    """fabric's remote runner, telling a command that never started (no
    channel on a dead connection: safe to run again) from one whose exec
    request went out (it may run: never run again). A host that stops
    answering while the exec request waits for its answer is given the
    connection's `channel_timeout` (the transport's connect_timeout, as for
    opening the channel; paramiko's own wait has no end)."""

    def start(self, command, shell, env, timeout=None):
        try:
            super().start(command, shell, env, timeout)
        except _CommandMayHaveStarted:
            raise
        except (paramiko.SSHException, EOFError, OSError) as error:
            raise _CommandNotStarted(error) from error

    def read_proc_output(self, reader):
        """The command's stdout or stderr, decoded as one stream: invoke
        decodes each read of 1000 bytes on its own, and a character split
        between two reads became two U+FFFD."""
        decoder = codecs.getincrementaldecoder(self.encoding)("replace")
        while data := reader(self.read_chunk_size):
            yield decoder.decode(data)
        yield decoder.decode(b"", final=True)

    def respond(self, buffer_):
        """Nothing to answer (Football gives no watchers): invoke joined all
        the output read so far at every read, for them — 16 MiB of stdout
        took 27 s."""
        if self.watchers:
            super().respond(buffer_)

    def read_our_stdin(self, input_):
        """A command's input (a StringIO, never a terminal) in pieces of
        64 KiB: invoke reads such a stream a byte at a time with a nap of 10 ms
        between reads — 100 bytes a second (a systemd unit took seconds)."""
        return input_.read(1 << 16)

    def _write_proc_stdin(self, data):
        """Input for a command that has ended without reading it all (`install
        -D /dev/stdin <path>` that failed at its path) is dropped: its exit
        status and stderr tell what happened, not a broken connection — nor
        a writer blocked for good on a window the host no longer opens."""
        channel = self.channel
        while data:
            if channel.exit_status_ready():
                return
            if not channel.send_ready():
                channel.status_event.wait(0.05)     # (set by the exit status)
                continue
            try:
                data = data[channel.send(data):]
            except OSError:
                if not channel.exit_status_ready():
                    raise
                return

    def close_proc_stdin(self):
        try:
            super().close_proc_stdin()
        except OSError:
            if not self.channel.exit_status_ready():
                raise

    def send_start_message(self, command):
        channel = self.channel
        silent = threading.Timer(self.context.transport.channel_timeout, _close_quietly,
                                 [channel])
        silent.daemon = True
        silent.start()
        try:
            super().send_start_message(command)
        except (paramiko.SSHException, EOFError, OSError) as error:
            raise _CommandMayHaveStarted(error) from error
        finally:
            silent.cancel()


def _open_timed_out(error):
    """Whether `error` is paramiko's "Timeout opening channel." (the host
    did not answer a channel's open within the connection's channel_timeout;
    on a transport that lives, not a dead connection)."""
    return isinstance(error, paramiko.SSHException) and \
        not isinstance(error, paramiko.ChannelException) and \
        str(error).startswith("Timeout opening channel")


def _close_quietly(channel):
    """Close `channel`; a connection that is gone meanwhile has closed it."""
    try:
        channel.close()
    except (paramiko.SSHException, EOFError, OSError):
        pass


def _fabric_config():
    """fabric's defaults only: no ~/.ssh/config, no fabric.yml (the inventory
    says how to reach a host)."""
    return fabric.Config(lazy=True, ssh_config=paramiko.SSHConfig(),
                         overrides={"runners": {"remote": _Remote}})


class SSHTransport(Transport):
    """Commands on a remote host over SSH. The connection is opened on the
    first command and reused by every later one (and by concurrent ones: each
    command is a channel of its own); it is opened again when it broke.

    Host keys (`host_key_check`): `strict` (default) accepts only a key in
    `known_hosts` (or /etc/ssh/ssh_known_hosts); `accept-new` also accepts a
    host seen for the first time and appends its key to `known_hosts`, but
    refuses a changed key; `off` accepts any key (warns)."""

    def __init__(self, host, address, *, port=SSH_PORT, user="root", env=None, ssh_key=None,
                 known_hosts=None, host_key_check="strict",
                 connect_timeout=DEFAULT_CONNECT_TIMEOUT):
        self.host, self.address, self.port, self.user = host, address, int(port), user
        self.env = dict(env or {})
        self.ssh_key = ssh_key
        self.known_hosts = Path(os.path.expanduser(known_hosts or DEFAULT_KNOWN_HOSTS))
        self.host_key_check = check_host_key_policy(host_key_check)
        self.connect_timeout = float(connect_timeout)
        self._connection = None
        self._agent = None          # the host agent; False: none (or not yet ready)
        self._agent_starts = 0
        self._agent_warned = False      # that its start failed, on this connection
        self._agent_failed_at = None    # when the last one failed to start or went away
        self._closed = 0                # how often `close` ran: an agent started before is stale
        self._lock = threading.Lock()

    @property
    def where(self):
        return f"{self.host} ({self.user}@{self.address}:{self.port})"

    def run(self, argv, *, check=True, timeout=DEFAULT_TIMEOUT, input=None):
        argv = [str(arg) for arg in argv]
        if timeout is not None and timeout <= 0:
            # no time to run it (coreutils' `timeout 0` is no limit at all:
            # it ran on, unbounded, after invoke's timer said it timed out)
            raise CommandTimedOut(self.host, argv, timeout)
        if os.environ.get("FOOTBALL_TOOL_SERVER") != "0":
            agent = self._agent_for(argv[0])
            if agent is not None:
                try:
                    return self._through(agent, argv, check, timeout, input)
                finally:
                    agent.lock.release()
        command = remote_command(argv, self.env, timeout)
        started = time.monotonic()
        try:
            done = self._run_started_once(argv, command, timeout, input)
        except _CommandMayHaveStarted as error:
            raise self._lost(argv, error.__cause__ or error) from None
        except invoke.CommandTimedOut:
            if not self._answers():
                # not a command that ran long: the host stopped answering (it
                # may have finished there, or be running, unkillable from here)
                raise self._lost(argv, f"no answer within its time limit of {seconds(timeout)} s, "
                                 "nor to a keepalive since") from None
            raise CommandTimedOut(self.host, argv, timeout) from None
        except invoke.ThreadException as error:
            raise self._lost(argv, error) from None
        if done.exited == -1 and not done.connection.is_connected:
            raise self._lost(argv, "connection closed")
        if timeout is not None and done.exited in (-1, KILLED_BY_TIMEOUT) and \
                time.monotonic() - started >= timeout:
            # The host's `timeout` was quicker than ours (137), or ours closed
            # the channel (-1: no exit status) and the command returned before
            # invoke's timer thread ended, so invoke did not call it timed out.
            raise CommandTimedOut(self.host, argv, timeout)
        # No exit status on a connection that lives: a signal killed the
        # command (sshd sends `exit-signal` then, which paramiko does not
        # keep); -1 would read as SIGHUP (Result: -N is signal N)
        exit_code = None if done.exited == -1 else done.exited
        return checked(Result(self.host, tuple(argv), exit_code, done.stdout, done.stderr), check)

    # ----------------------------------------------------------- the agent
    def _agent_for(self, program):
        """The host agent, locked for one command; None: run it over a
        session of its own (no agent there, or it is busy with another
        command of this run). The first bundled tool's command starts the
        agent and runs over a session itself; from then on every command
        goes through the agent (it runs anything else as a program there)."""
        with self._lock:
            if self._agent is False and self._agent_failed_at is not None and \
                    self._agent_starts < AGENT_STARTS and \
                    time.monotonic() - self._agent_failed_at >= AGENT_RETRY_AFTER:
                # once more: a start on a host under load may just have been slow
                self._agent, self._agent_failed_at = None, None
            if self._agent is False or (self._agent is None and program not in TOOLS):
                return None
            if self._agent is None:
                self._agent = False             # until it said it is ready
                self._agent_starts += 1
                threading.Thread(target=self._start_agent, args=(self._closed,),
                                 daemon=True).start()
                return None
            agent = self._agent
        if not agent.lock.acquire(blocking=False):
            return None
        return agent

    def _start_agent(self, closed=0):
        """Start the host agent. Not installed where the transport was closed
        since it was asked for (`closed`: `_closed` then), or where its
        connection was replaced meanwhile (another thread's command found it
        broken): the next tool command starts one anew there."""
        try:
            connection = self._connect()
            agent = _Agent(connection, remote_command(["football-host", "serve-tools"],
                                                      self.env))
        except Exception as error:          # no agent: every command runs as a program
            # Said once per connection, with the reason: the starts tried again
            # (AGENT_STARTS) are debug messages. A host nothing reaches is no
            # warning at all: its commands say so (a dead host's failover
            # warned that its agent did not start).
            with self._lock:
                self._agent_failed_at = time.monotonic()
                warn = not self._agent_warned and not isinstance(error, Unreachable)
                self._agent_warned = self._agent_warned or warn
            (log.warning if warn else log.debug)(
                "%s: the host agent did not start (%s); commands run as sessions of "
                "their own (slower) until it does", self.where, error)
            return
        with self._lock:
            if self._closed == closed and self._agent is False:
                if self._connection is connection:
                    self._agent = agent
                    return
                self._agent = None
        agent.close()

    def _through(self, agent, argv, check, timeout, input):
        try:
            answer = agent.ask({"argv": argv, "input": input, "timeout": timeout},
                               None if timeout is None else timeout + AGENT_GRACE)
        except _AgentGone as gone:
            self._drop_agent(agent, failed=True)
            if gone.sent:
                raise self._lost(argv, f"the host agent went away: {gone}") from None
            return self.run(argv, check=check, timeout=timeout, input=input)
        except BaseException:
            # interrupted (Ctrl-C) while the host runs the command: the agent
            # would give its answer to this transport's next request. Its
            # channel closed, the agent kills the command; the next tool
            # command starts a new one
            self._drop_agent(agent, failed=False)
            raise
        if answer.get("timed_out"):
            raise CommandTimedOut(self.host, argv, timeout)
        return checked(Result(self.host, tuple(argv), answer["exit"], answer["stdout"],
                              answer["stderr"]), check)

    def _drop_agent(self, agent, failed):
        """Close `agent` and forget it (not one another thread started
        since): `failed`, retried after AGENT_RETRY_AFTER; else the next
        tool command starts another."""
        with self._lock:
            if self._agent is agent:
                self._agent = False if failed else None
                if failed:
                    self._agent_failed_at = time.monotonic()
        agent.close()

    def _run_started_once(self, argv, command, timeout, input):
        """`_run` on the connection; where the command did not start there
        (the connection died since the last command), once more on a new
        connection: it is safe to."""
        connection = self._connect()
        try:
            return self._run_refused_again(connection, command, timeout, input)
        except _CommandNotStarted:
            pass
        try:
            return self._run(self._connect(reconnect=connection), command, timeout, input)
        except _CommandNotStarted as error:
            raise Unreachable(f"{self.where}: cannot start `{shlex.join(argv)}`: "
                              f"{error.__cause__ or error}") from None

    def _run_refused_again(self, connection, command, timeout, input):
        """`_run`, where the host refuses a channel on a connection that
        lives (sshd's MaxSessions: the agent and this run's parallel
        commands) tried again on it for up to connect_timeout: a new
        connection would end the commands running on this one. A channel
        the host did not open within connect_timeout on a connection that
        lives (a host under load) is tried once more on it where the host
        answers a keepalive, else that command alone is `Unreachable`."""
        deadline, pause = time.monotonic() + self.connect_timeout, 0.05
        retried_timeout = False
        while True:
            try:
                return self._run(connection, command, timeout, input)
            except _CommandNotStarted as error:
                if _open_timed_out(error.__cause__) and connection.is_connected:
                    if not retried_timeout and self._answers(connection):
                        retried_timeout = True
                        continue
                    raise Unreachable(
                        f"{self.where}: opened no session for the command within "
                        f"{seconds(self.connect_timeout)} s on a connection that lives (a "
                        "host under load?); the command did not run, and the commands "
                        "running on the connection go on; try again") from None
                if not isinstance(error.__cause__, paramiko.ChannelException) or \
                        not connection.is_connected:
                    raise
                if time.monotonic() + pause > deadline:
                    raise Unreachable(
                        f"{self.where}: refuses one more session on the connection "
                        f"({error.__cause__}) for {seconds(self.connect_timeout)} s: sshd's "
                        "MaxSessions (10 by default) below the commands this run sends "
                        "at once? The command did not run") from None
            time.sleep(pause)
            pause = min(2 * pause, 1.0)

    @staticmethod
    def _run(connection, command, timeout, input):
        return connection.run(command, hide=True, warn=True, pty=False, echo=False,
                              in_stream=io.StringIO(input or ""), timeout=timeout,
                              encoding="utf-8")

    def _answers(self, connection=None):
        """Whether the host answers a keepalive on `connection` (default: the
        transport's) within connect_timeout (paramiko's own wait for it has
        no end: in a thread)."""
        connection = connection or self._connection
        if connection is None or not connection.is_connected:
            return False
        answered = threading.Event()

        def ask():
            try:
                connection.transport.global_request("keepalive@openssh.com", wait=True)
            except Exception:       # noqa: BLE001 (no answer is the answer)
                return
            if connection.transport.is_active():
                answered.set()

        threading.Thread(target=ask, daemon=True).start()
        return answered.wait(self.connect_timeout)

    def _lost(self, argv, why):
        return ConnectionLost(f"{self.where}: the connection broke while `{shlex.join(argv)}` "
                              f"ran ({why}); it may or may not have run: check the host "
                              "before retrying")

    def close(self):
        with self._lock:
            self._closed += 1
            if self._agent:
                self._agent.close()
            self._agent = None
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    # ------------------------------------------------------------ connecting
    def _connect(self, reconnect=None):
        """The connection, opened (again) where there is none or it broke;
        `reconnect`: a connection a command could not start on, replaced
        unless another thread's command replaced it already (closing that
        one ended the commands running on it)."""
        with self._lock:
            if self._connection is not None:
                if self._connection.is_connected and self._connection is not reconnect:
                    return self._connection
                if self._agent:             # (not False: a start under way, or failed)
                    self._agent.close()
                    self._agent = None
                self._connection.client.close()
                self._connection = None
                # AGENT_STARTS per connection: a long-lived transport (a
                # worker's) whose host rebooted thrice had none for good
                self._agent_starts, self._agent_warned = 0, False
            connection = fabric.Connection(
                self.address, user=self.user, port=self.port, config=_fabric_config(),
                connect_kwargs=self._connect_kwargs())
            self._trust(connection.client)
            started = time.monotonic()
            try:
                connection.open()
            except (paramiko.SSHException, OSError, EOFError) as error:
                connection.client.close()
                timed_out = time.monotonic() - started >= self.connect_timeout
                raise Unreachable(self._why_unreachable(error, timed_out)) from None
            # a channel for a command (its open, its exec request) gets no
            # longer than a connection to be made: paramiko's default is an
            # hour, and a host that stops answering held the run that long
            connection.transport.channel_timeout = self.connect_timeout
            self._connection = connection
            return connection

    def _connect_kwargs(self):
        timeouts = {"timeout": self.connect_timeout, "banner_timeout": self.connect_timeout,
                    "auth_timeout": self.connect_timeout}
        if self.ssh_key:
            # Only the configured key: no agent, no ~/.ssh/id_* guessing.
            return dict(timeouts, key_filename=os.path.expanduser(self.ssh_key),
                        allow_agent=False, look_for_keys=False)
        return timeouts

    def _trust(self, client):
        if self.host_key_check == "off":
            client.set_missing_host_key_policy(_Unchecked())
            return
        if os.path.exists(SYSTEM_KNOWN_HOSTS):
            client.load_system_host_keys(SYSTEM_KNOWN_HOSTS)
        if self.known_hosts.exists():
            # as a read-only set: new keys are appended by _AcceptNew, never saved whole
            client.load_system_host_keys(str(self.known_hosts))
        client.set_missing_host_key_policy(
            _AcceptNew(self.known_hosts) if self.host_key_check == "accept-new"
            else _RejectUnknown())

    def _why_unreachable(self, error, timed_out):
        where, name = self.where, known_hosts_name(self.address, self.port)
        if isinstance(error, UnknownHostKey):
            return (f"{where}: host key unknown: {name} is not in {self.known_hosts}; "
                    f"check the key and add it: ssh-keyscan -p {self.port} {self.address} "
                    f">> {self.known_hosts}, or set host_key_check: accept-new")
        if isinstance(error, paramiko.BadHostKeyException):
            return (f"{where}: HOST KEY CHANGED: the host offers "
                    f"{error.key.get_name()} {error.key.fingerprint}, {self.known_hosts} "
                    f"has {error.expected_key.fingerprint}. If the host was reinstalled, "
                    f"remove the old key (ssh-keygen -f {self.known_hosts} -R '{name}') and "
                    "add the new one; otherwise someone may be impersonating it")
        if isinstance(error, paramiko.AuthenticationException):
            key = self.ssh_key or "the ssh agent and ~/.ssh/id_*"
            return (f"{where}: authentication as {self.user} failed with {key}: {error}; "
                    f"check that the key is in {self.user}'s authorized_keys there")
        if timed_out or isinstance(error, (socket.timeout, TimeoutError)):
            return (f"{where}: no answer within {seconds(self.connect_timeout)} s; check that the "
                    "host is up and the address and port are right (connect_timeout)")
        if isinstance(error, paramiko.ssh_exception.NoValidConnectionsError):
            return (f"{where}: connection refused or no route; check that sshd runs there "
                    "and listens on that port")
        if isinstance(error, socket.gaierror):
            return f"{where}: cannot resolve {self.address}: {error.strerror}; check the address"
        return f"{where}: cannot connect: {error or type(error).__name__}"

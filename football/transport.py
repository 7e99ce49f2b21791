"""How Football reaches a host: run one command there and get its result.

Every fact Football reads and every change it makes on a host is a command
run through a transport (ARCHITECTURE.md, "The rule that holds it together").
Commands are argument lists, never strings pasted into a shell.

- `LocalTransport` runs the command as a subprocess on this machine with the
  host's environment: the lab's hosts (`MARS_ROOT`, `MARS_HOST`,
  `FOOTBALL_ROOT`), or the operator's own machine.
- `SSHTransport` (football/ssh.py, imported only where a host is reached
  over SSH: fabric costs a tenth of a second at every start) runs it on a
  remote host over one reused SSH connection (fabric on paramiko).

A result is a value (`Result`); a failed command raises `CommandFailed`
carrying its result, a command over its time limit `CommandTimedOut`, a host
that cannot be reached `Unreachable` (the command did not run: safe to retry),
a connection lost while a command ran `ConnectionLost` (it may have run)."""

import json
import math
import os
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from football.toolserver import ServerGone, ToolServer, run_program


DEFAULT_TIMEOUT = 600.0
TAIL_LINES = 8


@dataclass(frozen=True)
class Result:
    """What one command on one host did. `exit_code`: its exit status; -N
    where signal N killed it (as Python's subprocess tells it, whichever
    transport ran it); None where it ended without an exit status and
    nobody said which signal killed it (over SSH: paramiko keeps no
    `exit-signal`)."""

    host: str
    argv: tuple
    exit_code: int | None
    stdout: str
    stderr: str
    planned: bool = False       # a dry run's: recorded, not run (football/dryrun.py)

    @property
    def ok(self):
        return self.exit_code == 0

    @property
    def command(self):
        return shlex.join(self.argv)

    @property
    def killed_by(self):
        """The signal that killed the command (a `signal.Signals` where this
        machine knows its number, else the number); None: it exited, or
        no signal was named (`exit_code` None)."""
        if self.exit_code is None or self.exit_code >= 0:
            return None
        try:
            return signal.Signals(-self.exit_code)
        except ValueError:
            return -self.exit_code

    @property
    def how_it_ended(self):
        """What follows the command in a message: "exited 3", "was killed by
        SIGTERM", or "was killed by a signal (the host did not say which)"."""
        if self.exit_code is None:
            return "was killed by a signal (the host did not say which)"
        killed_by = self.killed_by
        if killed_by is None:
            return f"exited {self.exit_code}"
        name = killed_by.name if isinstance(killed_by, signal.Signals) else f"signal {killed_by}"
        return f"was killed by {name}"

    @property
    def said(self):
        """What the command said: its stderr, else its stdout (kernel MARS's
        marsadm tells a refusal there), stripped; '' when neither."""
        return self.stderr.strip() or self.stdout.strip()


class PlannedOutput(dict):
    """The parsed output of a command a dry run only recorded: any field is
    a placeholder naming itself."""

    def __missing__(self, key):
        return f"<{key}>"


def json_of(result):
    """The JSON a command printed (plugins parse with this, so that a dry
    run can record their commands: a planned result has no output)."""
    return PlannedOutput() if result.planned else json.loads(result.stdout)


def seconds(value):
    """`value` seconds written out exactly, as coreutils' `timeout` and an
    operator read them: 1000000 and 1234567.5, not format's 1e+06 and
    1.23457e+06 (a rounded limit: 1234570 s)."""
    value = float(value)
    if not math.isfinite(value):
        return repr(value)
    text = format(Decimal(repr(value)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def tail(text, lines=TAIL_LINES):
    """The last `lines` lines, after the first (which often names the problem)."""
    all_lines = text.rstrip().splitlines()
    if len(all_lines) <= lines + 1:
        return "\n".join(all_lines)
    return "\n".join([all_lines[0], "..."] + all_lines[-lines:])


class TransportError(Exception):
    """A command could not be run or did not succeed on a host."""


class CommandFailed(TransportError):
    """The command ran and exited non-zero or was killed by a signal;
    `result` holds its output (`result.killed_by`: the signal)."""

    def __init__(self, result):
        self.result = result
        detail = tail(result.stderr) or tail(result.stdout) or "(no output)"
        super().__init__(f"{result.host}: `{result.command}` {result.how_it_ended}:\n{detail}")


class CommandTimedOut(TransportError):
    """The command did not finish within its time limit and was killed."""

    def __init__(self, host, argv, timeout):
        self.host, self.argv, self.timeout = host, tuple(argv), timeout
        within = f"within {seconds(timeout)} s" if timeout is not None else "in time"
        super().__init__(f"{host}: `{shlex.join(argv)}` did not finish {within} and was killed")


class Unreachable(TransportError):
    """The host cannot be reached (connection refused, no route, bad key);
    the command did not run."""


class ConnectionLost(TransportError):
    """The connection broke while a command ran: it may or may not have run."""


def checked(result, check):
    """`result`; with `check`, `CommandFailed` when the command failed."""
    if check and not result.ok:
        raise CommandFailed(result)
    return result


class Transport:
    """The interface of every transport: `run` one argument list on `host`."""

    host = "?"

    def run(self, argv, *, check=True, timeout=DEFAULT_TIMEOUT, input=None):
        """Run `argv` on the host; return a `Result`. With `check`, a non-zero
        exit raises `CommandFailed`. Raises `CommandTimedOut` after `timeout`
        seconds (the command is killed)."""
        raise NotImplementedError

    def close(self):
        """Release connections; running again reopens them."""


def tool_path():
    """PATH for host commands: this installation's scripts (marsadm, marsd,
    football-host) first, then the system's."""
    scripts = str(Path(sys.executable).parent)
    system = os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    return system if system.startswith(scripts + ":") else f"{scripts}:{system}"


class LocalTransport(Transport):
    """Commands as subprocesses of this machine, with extra environment
    variables (a lab host's identity) on top of ours."""

    def __init__(self, host, env=None):
        self.host = host
        self.env = dict(os.environ, PATH=tool_path(), **(env or {}))

    def run(self, argv, *, check=True, timeout=DEFAULT_TIMEOUT, input=None):
        argv = [str(arg) for arg in argv]
        server = tool_server()
        if server.serves(argv, self.env):
            try:
                code, stdout, stderr = server.run(argv, self.env, timeout, input)
            except subprocess.TimeoutExpired:
                raise CommandTimedOut(self.host, argv, timeout) from None
            except ServerGone:
                pass                    # run it as a program
            else:
                return checked(Result(self.host, tuple(argv), code, stdout, stderr), check)
        try:
            done = run_program(argv, self.env, timeout, input)
        except subprocess.TimeoutExpired:
            raise CommandTimedOut(self.host, argv, timeout) from None
        return checked(Result(self.host, tuple(argv), done.returncode, done.stdout,
                              done.stderr), check)


_tool_server = None


def tool_server():
    """The controller's one tool server (football/toolserver.py), made on first use."""
    global _tool_server
    if _tool_server is None:
        _tool_server = ToolServer()
    return _tool_server


# --------------------------------------------------------------------------- SSH


HOST_KEY_CHECKS = ("strict", "accept-new", "off")
DEFAULT_CONNECT_TIMEOUT = 10.0

"""The bundled tools without an interpreter start per command.

A migrate runs a hundred `marsadm` and `football-host` commands; started as
programs, each costs 0.1–0.25 s of Python start-up and imports (trio alone
0.16 s) before it does anything. The tool server is one process per
controller that has imported the tools once and *forks* a child per
command: the child is a process of its own (its own pid, environment,
working directory, stdin/stdout/stderr pipes, exit code, killable on a time
limit), exactly what a started program is, minus the start-up.

Protocol (one SOCK_SEQPACKET socket pair, the controller keeps one end):
the controller sends one message per command, a JSON object `{argv, env,
cwd}` with four file descriptors attached (SCM_RIGHTS): the command's stdin
(read end), stdout and stderr (write ends) and a reply socket. The server
forks; the child writes `pid N` and, once the tool returned, `exit C` to the
reply socket, then exits with C. The server keeps the reply socket until it
has waited for the child: a child that a signal killed (at its time limit,
by someone else, a crash) cannot say so itself, and the server writes
`signal N` for it (`exit C` for one that exited: also one that ended by
`os._exit` or failed before its tool ran), then closes its end. A reply
that ends without either means the server ended too. The server exits
when the controller's end closes.

Only the bundled tools are served (TOOLS), and only when the command's PATH
resolves them to this installation's scripts; everything else, and every
command when the server cannot be reached, runs as a program
(`FOOTBALL_TOOL_SERVER=0` turns the server off).

A server can be *shared* with the controller's own child processes (a
`football` run started by a screener worker, a test harness running
hundreds of them): `ToolServer(share=True)` also listens on an abstract
unix socket, and a process whose environment names it in
`FOOTBALL_TOOL_SOCKET` sends its commands there instead of starting a
server of its own (0.4 s of imports per run, and its first commands as
programs meanwhile). The shared server still ends with the process that
started it."""

import atexit
import importlib
import io
import json
import os
import queue
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

# name on PATH -> (module, function) of its console script (setup.cfg)
TOOLS = {"marsadm": ("mars.marsadm", "main"),
         "football-host": ("football.hostside.cli", "main")}
MAX_REQUEST = 1 << 20
# seconds a command killed at its time limit is waited for: one stuck in
# the kernel (D state: a disk or FUSE device that hangs) does not die; it is
# left behind, so that the time limit still ends the command (the host
# agent answers "timed out" and serves the next, where it stayed for ever)
KILL_WAIT = 10.0
# seconds of one wait for a command's output at most: epoll waits no more
# than 24.8 days in one go (OverflowError), a time limit may be ten years
LONGEST_WAIT = 86400.0
SOCKET_VARIABLE = "FOOTBALL_TOOL_SOCKET"      # the address of a shared server


class ServerGone(Exception):
    """The tool server cannot take the command (not running, or it died)."""


# ------------------------------------------------------------ a program run


def _feed(pipe, data):
    """Write `data` to `pipe`, then close it (a command that ended or
    was killed before it read it all: the rest goes nowhere)."""
    try:
        pipe.write(data)
    except OSError:
        pass
    finally:
        try:
            pipe.close()
        except OSError:
            pass


def run_program(argv, env=None, timeout=None, input=None, started=None):
    """`subprocess.run(argv, env=env, capture_output=True, text=True,
    timeout=timeout, input=input)`, but in a process group of its own that
    is killed whole at `timeout` (then `subprocess.TimeoutExpired`) or when
    the caller is interrupted: a timed-out rsync or mkfs leaves nothing it
    started running on (subprocess.run kills the direct child alone), and
    the terminal's Ctrl-C, which Football handles, reaches no command
    itself. Output that is no UTF-8 (a file name in another encoding) is
    decoded with replacements, not an error; a program that is not there
    exits 127, one that cannot be executed (no x bit, a directory) 126, as
    in a shell. `started(pid)` is told the process group once the program
    runs."""
    try:
        process = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    except FileNotFoundError:
        return subprocess.CompletedProcess(argv, 127, "", f"{argv[0]}: command not found\n")
    except OSError as error:
        return subprocess.CompletedProcess(argv, 126, "", f"{argv[0]}: {error.strerror}\n")
    try:
        if started is not None:
            started(process.pid)
        data = None if input is None else input.encode()
        deadline = None if timeout is None else time.monotonic() + timeout
        if data and deadline is not None and timeout > LONGEST_WAIT:
            # fed by a thread of its own: a communicate after a timeout
            # sends no more input (the rest never reached the command, nor
            # the end of it: it waited for ever)
            threading.Thread(target=_feed, args=(process.stdin, data), daemon=True).start()
            process.stdin = data = None
        while True:             # (in waits of LONGEST_WAIT at most)
            left = None if deadline is None else deadline - time.monotonic()
            try:
                stdout, stderr = process.communicate(
                    data, timeout=None if left is None else min(left, LONGEST_WAIT))
                break
            except subprocess.TimeoutExpired:
                if left is None or left <= LONGEST_WAIT:
                    raise subprocess.TimeoutExpired(argv, timeout) from None
    except BaseException:
        _kill_group(process.pid)
        try:                # (not communicate: a daemon it started may hold the pipes)
            process.wait(KILL_WAIT)
        except subprocess.TimeoutExpired:
            pass            # left behind (`KILL_WAIT`); subprocess reaps it later
        for pipe in (process.stdin, process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()
        raise
    return subprocess.CompletedProcess(argv, process.returncode,
                                       stdout.decode(errors="replace"),
                                       stderr.decode(errors="replace"))


# ------------------------------------------------------------------ the server


def serve(control, tools, listener=None):
    """The server's loop: one fork per request until the controller closes
    `control`; with a `listener` (a shared server), requests also come over
    the connections of the controller's child processes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)           # Ctrl-C is the commands' and the controller's
    children = _Children()
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ)
    selector.register(children.wakeup, selectors.EVENT_READ)
    if listener is not None:
        selector.register(listener, selectors.EVENT_READ)
    while True:
        try:
            ready = selector.select()
        except InterruptedError:
            continue
        for key, _ in ready:
            if key.fileobj is children.wakeup:
                children.reap()
            elif key.fileobj is listener:
                connection, _ = listener.accept()
                if _same_user(connection):
                    selector.register(connection, selectors.EVENT_READ)
                else:
                    connection.close()
            elif not _take_request(key.fileobj, tools, selector, children):
                if key.fileobj is control:
                    return
                selector.unregister(key.fileobj)
                key.fileobj.close()


def _same_user(connection):
    """Whether the process at the other end runs as this server's user: an
    abstract socket has no file permissions, and a command of another user
    must not run as ours."""
    _, uid, _ = struct.unpack("3i", connection.getsockopt(
        socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return uid == os.getuid()


class _Children:
    """The server's running children, each with its reply socket: a child
    that a signal killed cannot say so, the server writes `signal N` for it
    (`exit C` for one that exited) once it waited for it (SIGCHLD wakes the
    server's loop through `wakeup`), then closes the socket (the command's
    reply ends)."""

    def __init__(self):
        self.wakeup, self._wakeup_w = socket.socketpair()
        for end in (self.wakeup, self._wakeup_w):
            end.setblocking(False)
        self.replies = {}           # pid -> the fd of its reply socket
        # a handler, not SIG_IGN: ignored, children reap themselves unseen
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        signal.set_wakeup_fd(self._wakeup_w.fileno(), warn_on_full_buffer=False)

    def forked(self, pid, reply_fd):
        self.replies[pid] = reply_fd

    def in_child(self):
        """In a forked child: let go of the server's (another command's
        reply held here would not end before this child ends)."""
        signal.set_wakeup_fd(-1)
        self.wakeup.close(), self._wakeup_w.close()
        for fd in self.replies.values():
            os.close(fd)
        self.replies.clear()

    def reap(self):
        """Wait for the children that ended; tell how each one ended (its
        signal, or its exit code: the last `exit` said counts)."""
        try:
            while self.wakeup.recv(4096):
                pass
        except BlockingIOError:
            pass
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            reply_fd = self.replies.pop(pid, None)
            if reply_fd is None:
                continue
            # also how one that exited did: one that ended by os._exit, or
            # failed before its tool ran, said no `exit`
            ended = (f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else
                     f"exit {os.waitstatus_to_exitcode(status)}")
            try:
                os.write(reply_fd, f"\n{ended}\n".encode())
            except OSError:
                pass            # (the controller gave the command up)
            os.close(reply_fd)


def _take_request(connection, tools, selector, children):
    """Fork a child for the request waiting on `connection`; False once the
    other end closed."""
    try:
        message, fds, _, _ = socket.recv_fds(connection, MAX_REQUEST, 4)
    except InterruptedError:
        return True
    except OSError:
        return False
    if not message:
        return False
    if len(fds) != 4:
        for fd in fds:
            os.close(fd)
        return True
    sys.stdout.flush(), sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        for key in list(selector.get_map().values()):
            key.fileobj.close()
        children.in_child()
        _child(tools, json.loads(message), *fds)
    for fd in fds[:3]:
        os.close(fd)
    children.forked(pid, fds[3])
    return True


def _child(tools, request, stdin, stdout, stderr, reply_fd):
    """In the forked child: become the command, run the tool, report."""
    code = 1
    try:
        # a group of its own, killed whole at the time limit (`_kill`), as a
        # program's (run_program)
        os.setpgid(0, 0)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)       # the tool may wait for its own
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
            os.dup2(fd, target)
            os.close(fd)
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=False)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), line_buffering=True)
        os.set_inheritable(reply_fd, False)     # a daemon the tool starts must not hold it
        reply = socket.socket(fileno=reply_fd)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        reply.sendall(f"pid {os.getpid()}\n".encode())
        module, function = tools[Path(request["argv"][0]).name]
        program = shutil.which(request["argv"][0], path=request["env"].get("PATH"))
        sys.argv = [program or request["argv"][0], *request["argv"][1:]]
        try:
            getattr(importlib.import_module(module), function)()
            code = 0
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
            if done.code is not None and not isinstance(done.code, int):
                print(done.code, file=sys.stderr)
        except BaseException as error:              # as an interpreter would end
            import traceback
            traceback.print_exception(error)
            code = 1
        atexit._run_exitfuncs()
        sys.stdout.flush(), sys.stderr.flush()
        reply.sendall(f"exit {code}\n".encode())
    finally:
        os._exit(code)


def main():
    """`main()` in the server process: argv[1] is its end of the socket pair,
    argv[2] (JSON) more tools to serve than the bundled ones (tests),
    argv[3] (optional) a listening socket for the controller's children."""
    control = socket.socket(fileno=int(sys.argv[1]))
    tools = {**TOOLS, **json.loads(sys.argv[2])}
    listener = socket.socket(fileno=int(sys.argv[3])) if len(sys.argv) > 3 else None
    for module, _ in tools.values():
        importlib.import_module(module)
    import trio  # noqa: F401  (marsadm imports it where it talks to marsd)
    serve(control, tools, listener)


# ------------------------------------------------------- the agent over SSH


def served_here(name, path=None):
    """Whether `name` (a program's name or path) is a bundled tool that this
    installation's scripts directory answers for on `path` (default: this
    process's PATH)."""
    if Path(name).name not in TOOLS:
        return False
    found = shutil.which(name, path=path)
    return found is not None and Path(found).parent == Path(sys.executable).parent


def serve_stdio(requests=None, replies=None, tools=None):
    """The host agent at the other end of an SSH channel (`football-host
    serve-tools`): one JSON request per line (`{argv, input, timeout}`), one
    JSON reply per line (`{exit, stdout, stderr}`, or `{timed_out: true}`
    once the command was killed at its time limit), one command at a time,
    in this process's environment (the host's). The bundled tools are
    forked as the tool server does; anything else runs as a program. The
    first line says it is ready and which tools it serves. `tools`: others
    than the bundled ones (tests).

    The channel closing while a command runs (the controller interrupted,
    gone, or giving the command up) kills the command with what it started:
    nobody waits for its answer, and a re-run's command must not run beside
    it (a shrink's rsync writing the copy a re-run copies again)."""
    requests = requests or sys.stdin.buffer
    replies = replies or sys.stdout.buffer
    if tools is None:
        tools = {name: TOOLS[name] for name in TOOLS if served_here(name)}
    for module, _ in tools.values():
        importlib.import_module(module)
    if "marsadm" in tools:
        import trio  # noqa: F401
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    lines, running = queue.SimpleQueue(), _Running()

    def read():
        for line in requests:
            lines.put(line)
        running.close()
        lines.put(None)

    def say(value):
        replies.write(json.dumps(value).encode() + b"\n")
        replies.flush()

    say({"ready": True, "tools": sorted(tools)})
    threading.Thread(target=read, name="football-agent-requests", daemon=True).start()
    while (line := lines.get()) is not None:
        request = json.loads(line)
        try:
            timeout = request.get("timeout")        # None: no limit, as the controller waits
            answer = _run_here(tools, request["argv"], request.get("input"),
                               None if timeout is None else float(timeout),
                               started=running.started)
        except subprocess.TimeoutExpired:
            answer = {"timed_out": True}
        except Exception as error:      # noqa: BLE001 - one command's, not the agent's end
            # (a NUL in an argument, a fork that fails: the agent died, the
            # controller saw the connection lost and ran without it a while)
            answer = {"exit": 126, "stdout": "",
                      "stderr": f"{request['argv'][0] if request.get('argv') else '?'}: cannot "
                                f"run it: {type(error).__name__}: {error}\n"}
        finally:
            running.ended()
        try:
            say(answer)
        except OSError:         # the channel closed: nobody to answer
            return


class _Running:
    """The process group of the command the host agent runs now, killed
    when the agent's channel closes (also one that starts after it closed)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.group, self.closed = None, False

    def started(self, group):
        """`group` runs now; None: it is about to be reaped (no more to kill)."""
        with self.lock:
            self.group = group
            if self.closed and group is not None:
                _kill_group(group)

    def ended(self):
        with self.lock:
            self.group = None

    def close(self):
        with self.lock:
            self.closed = True
            if self.group is not None:
                _kill_group(self.group)


def _run_here(tools, argv, input, timeout, started=None):
    """The answer to one request of the host agent. `started(group)` is told
    the command's process group once it runs, and a forked tool's
    `started(None)` before its child is reaped: its pid, free again, is
    then never the group a closing channel kills. (A program's group is
    forgotten after subprocess reaped it: a window of microseconds.)"""
    if Path(argv[0]).name in tools and argv[0] == Path(argv[0]).name:
        stdin_r, stdin_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        reply, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        sys.stdout.flush(), sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            reply.close()
            for fd in (stdin_w, out_r, err_r):
                os.close(fd)
            _child(tools, {"argv": argv, "env": dict(os.environ), "cwd": os.getcwd()},
                   stdin_r, out_w, err_w, theirs.detach())
        for fd in (stdin_r, out_w, err_w):
            os.close(fd)
        theirs.close()
        try:
            os.setpgid(pid, pid)        # (the child does too: whichever runs first)
        except OSError:
            pass
        if started is not None:
            started(pid)
        within = None
        try:
            code, stdout, stderr = _communicate(argv, stdin_w, out_r, err_r, reply, timeout,
                                                input)
        except subprocess.TimeoutExpired:
            within = KILL_WAIT              # killed: not waited for beyond KILL_WAIT
            raise
        finally:
            if started is not None:
                started(None)
            ended = _reap(pid, within)
        # a child that a signal killed said no `exit`: its wait status tells
        return {"exit": ended if code is None else code, "stdout": stdout, "stderr": stderr}
    done = run_program(argv, timeout=timeout, input=input, started=started)
    return {"exit": done.returncode, "stdout": done.stdout, "stderr": done.stderr}


# -------------------------------------------------------------- the controller


class ToolServer:
    """The controller's side: starts the server process on first use and
    runs one command through it (`run`, like `subprocess.run`)."""

    def __init__(self, more_tools=None, share=False):
        self.more_tools = more_tools or {}
        self.share = share
        self.address = None         # a shared server's socket, `@name` (FOOTBALL_TOOL_SOCKET)
        self.lock = threading.Lock()
        self.process = self.control = None
        self.served = {}            # (program, PATH) -> whether it is a bundled tool of ours

    def serves(self, argv, env):
        """Whether the server runs `argv`: a bundled tool of this installation
        under `env`'s PATH, once the server runs. The first such command
        starts the server and runs as a program (a run of one command gains
        nothing from a server), unless a shared server is there to take it."""
        if os.environ.get("FOOTBALL_TOOL_SERVER") == "0":
            return False
        key = (argv[0], env.get("PATH"))
        if key not in self.served:
            self.served[key] = served_here(argv[0], env.get("PATH"))
        if self.served[key] and self.control is None:
            self._started()
            return self.process is None         # a shared server takes the first one too
        return self.served[key]

    def _started(self):
        with self.lock:
            if self.control is not None and self.process is None:
                return self.control                         # a shared server's
            if self.process is None and os.environ.get(SOCKET_VARIABLE):
                self.control = _connected(os.environ[SOCKET_VARIABLE])
                if self.control is not None:
                    return self.control
            if self.process is None or self.process.poll() is not None:
                mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                # -c, not -m: the tools' usage lines name them, not `python -m ...`
                argv = [sys.executable, "-c", "from football.toolserver import main; main()",
                        str(theirs.fileno()), json.dumps(self.more_tools)]
                fds = [theirs.fileno()]
                listener = None
                if self.share:
                    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                    self.address = f"@football-tools-{os.getpid()}-{id(self):x}"
                    listener.bind(_abstract(self.address))
                    listener.listen(64)
                    argv.append(str(listener.fileno()))
                    fds.append(listener.fileno())
                self.process = subprocess.Popen(argv, pass_fds=fds, stdin=subprocess.DEVNULL,
                                                stdout=subprocess.DEVNULL)
                theirs.close()
                if listener is not None:
                    listener.close()
                self.control = mine
            return self.control

    def run(self, argv, env, timeout, input=None):
        """(exit code, stdout, stderr) of `argv` run by the server; raises
        `subprocess.TimeoutExpired` after `timeout` (the command is
        killed) and `ServerGone` when the server could not take it."""
        stdin_r, stdin_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        reply, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        request = json.dumps({"argv": list(argv), "env": env, "cwd": os.getcwd()}).encode()
        try:
            try:
                socket.send_fds(self._started(), [request],
                                [stdin_r, out_w, err_w, theirs.fileno()])
            except OSError as error:
                if self.process is None:
                    self.control = None         # the shared server is gone: ours next time
                raise ServerGone(str(error)) from None
        finally:
            for fd in (stdin_r, out_w, err_w):
                os.close(fd)
            theirs.close()
        return _communicate(argv, stdin_w, out_r, err_r, reply, timeout, input)

    def environment(self):
        """Variables that let this process's children use this (shared)
        server rather than start their own."""
        self._started()
        return {SOCKET_VARIABLE: self.address} if self.address else {}

    def close(self):
        with self.lock:
            if self.control is not None:
                self.control.close()
                self.control = None
            if self.process is not None:
                self.process.wait(timeout=10)
                self.process = None


def _abstract(address):
    """`@name` (as `ss` shows it; an environment variable cannot hold the
    NUL) -> the abstract unix socket address."""
    return "\0" + address.removeprefix("@")


def _connected(address):
    """A connection to the shared server at `address`, or None when it is gone."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        connection.connect(_abstract(address))
    except OSError:
        connection.close()
        return None
    return connection


def _communicate(argv, stdin_w, out_r, err_r, reply, timeout, input):
    """Feed stdin, collect stdout, stderr and the reply until the command
    ended; kill it at `timeout` (None: none, as for subprocess.run)."""
    data = (input or "").encode()
    reply_fd = reply.fileno()
    buffers = {out_r: bytearray(), err_r: bytearray(), reply_fd: bytearray()}
    selector = selectors.DefaultSelector()
    if data:
        os.set_blocking(stdin_w, False)
        selector.register(stdin_w, selectors.EVENT_WRITE)
    else:
        os.close(stdin_w)
    for fd in buffers:
        selector.register(fd, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout if timeout is not None else None    # None: no limit
    try:
        while selector.get_map():
            left = deadline - time.monotonic() if deadline is not None else None
            if left is not None and left <= 0:
                _kill(buffers[reply_fd])
                raise subprocess.TimeoutExpired(argv, timeout)
            for key, _ in selector.select(LONGEST_WAIT if left is None else
                                          min(left, LONGEST_WAIT)):
                if key.fd == stdin_w:
                    try:
                        data = data[os.write(stdin_w, data[:65536]):]
                    except BrokenPipeError:
                        data = b""
                    if not data:
                        selector.unregister(stdin_w)
                        os.close(stdin_w)
                    continue
                chunk = os.read(key.fd, 65536)
                if chunk:
                    buffers[key.fd] += chunk
                else:
                    selector.unregister(key.fd)
    except BaseException:
        # interrupted (Ctrl-C): the command and what it started end too, as a
        # program's do (run_program); nobody would read what it says
        _kill(buffers[reply_fd])
        raise
    finally:
        selector.close()
        for fd in (out_r, err_r):
            os.close(fd)
        reply.close()
        if data:
            os.close(stdin_w)
    return (_exit_code(buffers[reply_fd]), buffers[out_r].decode(errors="replace"),
            buffers[err_r].decode(errors="replace"))


def _exit_code(reply):
    """The exit code a child's reply tells: `exit C`, -N after `signal N`
    (as subprocess tells a program's), None where neither came (the server
    ended before it could say)."""
    said = dict(line.split(" ", 1) for line in bytes(reply).decode().split("\n") if " " in line)
    if "exit" in said:
        return int(said["exit"])
    if "signal" in said:
        return -int(said["signal"])
    return None


def _reap(pid, within):
    """Wait for the child `pid` to end, at most `within` seconds (None: as
    long as it takes); one still there then is left (`KILL_WAIT`). Its
    exit code (-N: killed by signal N), None where it was left."""
    if within is None:
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    deadline = time.monotonic() + within
    while (done := os.waitpid(pid, os.WNOHANG)) == (0, 0):
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.02)
    return os.waitstatus_to_exitcode(done[1])


def _kill(reply_so_far):
    """The command's process group (the child leads one), what it started too."""
    for line in bytes(reply_so_far).decode().splitlines():
        if line.startswith("pid "):
            _kill_group(int(line[4:]))


def _kill_group(group):
    try:
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:
        pass


if __name__ == "__main__":
    main()

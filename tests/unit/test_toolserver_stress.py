"""The tool server under many commands at once (football/toolserver.py):
it reaps its children itself and tells a killed one's signal; every
command is answered with its own exit code, the server holds no file
descriptor once its commands ended, and a child holds none of the
server's (the wakeup socket, other commands' replies)."""

import os
import signal
import sys
import threading
import time

import pytest

from football.toolserver import ToolServer

ME = "tests.unit.test_toolserver_stress"
TOOLS = {name: (ME, name) for name in ("exits", "killed", "hard_exit", "fds", "waits")}


def exits():
    """Exits argv[1]."""
    sys.exit(int(sys.argv[1]))


def killed():
    """Kills itself with signal argv[1]."""
    os.kill(os.getpid(), int(sys.argv[1]))


def hard_exit():
    """Ends by os._exit(argv[1]), as a tool that forks and ends its parent does."""
    sys.stdout.flush()
    os._exit(int(sys.argv[1]))


def fds():
    """Prints what its descriptors other than 0-2 are."""
    for name in sorted(os.listdir("/proc/self/fd"), key=int):
        if int(name) > 2:
            try:
                print(name, os.readlink(f"/proc/self/fd/{name}"))
            except OSError:
                pass


def waits():
    """Writes its pid to argv[1], then sleeps up to argv[2] seconds."""
    with open(sys.argv[1], "w") as pidfile:
        pidfile.write(str(os.getpid()))
    time.sleep(float(sys.argv[2]))


@pytest.fixture
def server():
    started = ToolServer(TOOLS)
    yield started
    started.close()


def server_fds(server):
    return len(os.listdir(f"/proc/{server.process.pid}/fd"))


def wait_for(condition, within=60):
    deadline = time.monotonic() + within
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


def started_server(server):
    """Start the server (its first command, run through it) and return
    its number of descriptors at rest."""
    server._started()
    assert server.run(["exits", "0"], dict(os.environ), 60)[0] == 0
    # (its answer ends once the server closed its end of the reply)
    return server_fds(server)


def test_fifty_commands_at_once_each_get_their_own_exit_code_and_no_descriptor_stays(
        server, tmp_path):
    at_rest = started_server(server)
    commands = []
    for number in range(50):
        kind = number % 5
        if kind == 0:
            commands.append((["exits", str(number % 7)], number % 7))
        elif kind == 1:
            commands.append((["killed", "15"], -15))
        elif kind == 2:
            commands.append((["killed", "9"], -9))
        elif kind == 3:
            commands.append((["hard_exit", "3"], 3))
        else:       # killed from outside while it runs
            commands.append((["waits", str(tmp_path / f"{number}.pid"), "60"], -10))
    answers = {}

    def run(number, argv):
        answers[number] = server.run(argv, dict(os.environ), 60)[0]

    threads = [threading.Thread(target=run, args=(number, argv))
               for number, (argv, _) in enumerate(commands)]
    for thread in threads:
        thread.start()
    for number, (argv, _) in enumerate(commands):
        if argv[0] == "waits":
            pidfile = tmp_path / f"{number}.pid"
            assert wait_for(lambda: pidfile.exists() and pidfile.read_text())
            os.kill(int(pidfile.read_text()), signal.SIGUSR1)
    for thread in threads:
        thread.join(60)
    assert {number: answers.get(number) for number in range(50)} == \
        {number: code for number, (_, code) in enumerate(commands)}
    assert wait_for(lambda: server_fds(server) == at_rest), \
        f"the server holds {server_fds(server)} descriptors, {at_rest} at rest"
    assert os.waitpid(server.process.pid, os.WNOHANG) == (0, 0)


def test_a_tool_that_ends_by_os_exit_gives_its_exit_code(server):
    """It wrote no `exit C`: the server that waited for it knows its code."""
    code, stdout, stderr = server.run(["hard_exit", "3"], dict(os.environ), 60)
    assert code == 3


def test_a_child_holds_neither_the_wakeup_socket_nor_another_commands_reply(server, tmp_path):
    started_server(server)
    answers = {}

    def run():
        answers["waits"] = server.run(["waits", str(tmp_path / "pid"), "60"],
                                      dict(os.environ), 60)[0]

    waiting = threading.Thread(target=run)
    waiting.start()
    try:
        assert wait_for(lambda: (tmp_path / "pid").exists() and (tmp_path / "pid").read_text())
        code, stdout, _ = server.run(["fds"], dict(os.environ), 60)
    finally:
        os.kill(int((tmp_path / "pid").read_text()), signal.SIGKILL)
        waiting.join(60)
    assert code == 0
    # its own reply socket, closed-on-exec, is the one socket it may hold
    assert [line for line in stdout.splitlines() if "socket:" in line][1:] == [], stdout
    assert answers["waits"] == -9


def test_many_clients_of_a_shared_server_at_once_are_answered_and_leave_nothing_open(
        monkeypatch):
    from football.toolserver import SOCKET_VARIABLE
    shared = ToolServer(TOOLS, share=True)
    try:
        monkeypatch.setenv(SOCKET_VARIABLE, shared.environment()[SOCKET_VARIABLE])
        at_rest = started_server(shared)
        answers = {}

        def client(number):
            mine = ToolServer(TOOLS)
            try:
                answers[number] = [mine.run(argv, dict(os.environ), 60)[0] for argv in
                                   (["exits", str(number % 5)], ["killed", "15"],
                                    ["hard_exit", "4"])]
                assert mine.process is None         # (it used the shared one)
            finally:
                mine.close()

        threads = [threading.Thread(target=client, args=(number,)) for number in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert answers == {number: [number % 5, -15, 4] for number in range(20)}
        assert wait_for(lambda: server_fds(shared) == at_rest), \
            f"the server holds {server_fds(shared)} descriptors, {at_rest} at rest"
    finally:
        shared.close()

"""The SSH transport against a real sshd (tests/integration/conftest.py's
fixtures): a channel the host did not open in time on a connection that
lives ("Timeout opening channel.", paramiko's, made here at the connection's
open_session) ends no command of another thread on that connection."""

import threading

import paramiko
import pytest

from football.transport import Unreachable
from tests.helpers.marshosts import STATE_WAIT, wait_until
from tests.integration.conftest import connect, known_hosts, sshd  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.root, pytest.mark.integration]


def late_channels(connection, times):
    """The next `times` sessions opened on `connection` time out as paramiko's
    do when the host does not answer in time; the later ones open."""
    real, failed = connection.transport.open_session, []

    def open_session(*args, **kwargs):
        if len(failed) < times:
            failed.append(True)
            raise paramiko.SSHException("Timeout opening channel.")
        return real(*args, **kwargs)

    connection.transport.open_session = open_session
    return failed


@pytest.mark.parametrize("late", [1, 2])
def test_a_channel_opened_late_on_a_live_connection_ends_no_other_threads_command(
        connect, sshd, tmp_path, monkeypatch, late):   # noqa: F811 (fixtures)
    """It was taken for a dead connection: the reconnect that followed
    closed the connection, and the command of another thread running on it
    was lost (ConnectionLost). Now it is tried once more on the same
    connection; late again, that command alone is Unreachable (it did not run)."""
    monkeypatch.setenv("FOOTBALL_TOOL_SERVER", "0")      # no host agent's session beside
    transport = connect()
    go, outcome = tmp_path / "go", {}
    waiting = ["sh", "-c", f"while [ ! -e {go} ]; do sleep 0.05; done; echo done"]

    def run():
        try:
            outcome["out"] = transport.run(waiting, timeout=STATE_WAIT * 4).stdout
        except Exception as error:      # noqa: BLE001 (the test looks at it)
            outcome["error"] = error

    running = threading.Thread(target=run)
    running.start()
    wait_until(lambda: sshd.log().count("Starting session: command") == 1,
               what="the other thread's command running", show=sshd.log)
    failed = late_channels(transport._connection, late)
    try:
        if late == 1:
            assert transport.run(["echo", "C"]).stdout == "C\n"
        else:
            with pytest.raises(Unreachable, match="the command did not run"):
                transport.run(["echo", "C"])
        assert len(failed) == late
    finally:
        go.touch()
        running.join(STATE_WAIT)
    assert outcome == {"out": "done\n"}
    assert sshd.logins() == 1

"""marsd's metadata port (7777) against a failure in answering: a bug in
one answer costs that connection, not the daemon (and with it every
device of the host)."""

import logging
from types import SimpleNamespace

import pytest
import trio

from mars import net
from mars.daemon import Daemon
from mars.lamport import LamportClock

KEY = b"cluster-secret"


def test_a_failure_in_answering_closes_that_connection_and_the_port_serves_on(caplog):
    class Bare(Daemon):                 # only what the port's handler uses
        key = KEY

    daemon = Bare.__new__(Bare)
    daemon.store = SimpleNamespace(clock=LamportClock())
    daemon.env = SimpleNamespace(host="a")
    answered = []

    def answer(peer, header, payload):
        answered.append(header["type"])
        if header["type"] == "boom":
            raise RuntimeError("a bug in an answer")
        return {"type": "ok"}, b""
    daemon._answer = answer

    async def main():
        with trio.fail_after(20):
            return await talk()

    async def talk():
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                lambda task_status: trio.serve_tcp(daemon._handle, 0, host="127.0.0.1",
                                                   task_status=task_status))
            port = listeners[0].socket.getsockname()[1]
            first = await net.connect("127.0.0.1", port, "b", KEY, clock=LamportClock())
            await first.send({"type": "boom"})
            with pytest.raises((trio.BrokenResourceError, net.ProtocolError)):
                await first.receive()
            second = await net.connect("127.0.0.1", port, "b", KEY, clock=LamportClock())
            await second.send({"type": "fine"})
            reply, _ = await second.receive()
            await first.aclose()
            await second.aclose()
            nursery.cancel_scope.cancel()
            return reply

    with caplog.at_level(logging.ERROR):
        assert trio.run(main)["type"] == "ok"
    assert answered == ["boom", "fine"]
    assert "a bug in an answer" in caplog.text

"""mars/channels.py: a resource worker's waits for a peer's answer, and
giving up on them (a forced takeover does not wait a request's timeout for
an old primary that died in the middle of answering)."""

import trio
import trio.testing

from mars.channels import PeerChannels
from mars.errors import PeerError

PORT = 7778


class Silent:
    """A peer's connection that takes requests and never answers (its marsd
    froze, or its host died with the connection open)."""

    peer = "a1"
    closed = False

    async def send(self, header, payload=b""):
        pass

    async def receive(self, into=None):
        await trio.sleep_forever()

    async def aclose(self):
        self.closed = True


def asking(channels, host, failures):
    async def ask():
        try:
            await channels.request(None, host, PORT, {"type": "logs", "res": "vm1"})
        except PeerError as error:
            failures.append(str(error))
    return ask


def test_a_wait_given_up_ends_at_once_as_a_peer_error_and_its_connection_is_dropped():
    async def main():
        channels = PeerChannels("a2", lambda: b"key", None)
        silent, other = Silent(), Silent()
        channels.open[("a1", PORT, 0)], channels.open[("b1", PORT, 0)] = silent, other
        failures = []
        with trio.fail_after(10):       # (a request's own timeout is 20 s)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(asking(channels, "a1", failures))
                nursery.start_soon(asking(channels, "b1", failures))
                await trio.testing.wait_all_tasks_blocked()
                channels.give_up("a1", "a2 takes over by force")
                await trio.testing.wait_all_tasks_blocked()
                assert failures == ["gave up waiting for a1 to answer logs: a2 takes over "
                                    "by force"]
                assert silent.closed and ("a1", PORT, 0) not in channels.open
                assert not other.closed and len(channels.waits["b1"]) == 1   # b1's goes on
                nursery.cancel_scope.cancel()
        assert channels.waits == {"a1": {}, "b1": {}}

    trio.run(main)


def test_giving_up_on_a_host_nothing_waits_for_changes_nothing():
    channels = PeerChannels("a2", lambda: b"key", None)
    channels.give_up("a1", "a2 takes over by force")
    assert channels.waits == {} and channels.open == {}

"""A resource worker's connections to its peers' ports.

One authenticated connection per (host, port, stream), opened when first
needed and bound to this host's own address; a request that fails drops it,
so the next one connects again. Streams: a full sync copies over several
connections at once (`mars.syncclient`); everything else uses stream 0."""

import contextlib

import trio

from mars import net
from mars.errors import PeerError

REQUEST_TIMEOUT = 20.0           # a fetch or sync request unanswered this long: reconnect


class PeerChannels:
    def __init__(self, host, cluster_key, clock):
        self.host = host
        self.cluster_key = cluster_key  # () -> the cluster secret, read at each connect
        self.clock = clock
        self.open = {}                  # (host, port, stream) -> Channel
        self.waits = {}                 # host -> {CancelScope: why given up}: answers awaited

    async def channel(self, state, host, port, stream=0):
        channel = self.open.get((host, port, stream))
        if channel is None:
            address = state.host_ips().get(host)
            if not address:
                raise PeerError(f"{host} is not in the cluster")
            channel = await net.connect(address, port, self.host, self.cluster_key(),
                                        local_address=state.host_ips().get(self.host),
                                        timeout=10.0, clock=self.clock)
            self.open[(host, port, stream)] = channel
        return channel

    async def request(self, state, host, port, header, into=None):
        try:
            with self.awaiting(host, header["type"]):
                channel = await self.channel(state, host, port)
                return await net.request(channel, header, timeout=REQUEST_TIMEOUT, into=into)
        except PeerError:
            await self.drop(host, port)
            raise

    @contextlib.contextmanager
    def awaiting(self, host, what):
        """Around awaiting `host`'s answer to `what`: `give_up(host)` ends
        the wait at once, as a PeerError (the caller drops the connection, as
        after any failed request), instead of REQUEST_TIMEOUT later."""
        scope = trio.CancelScope()
        waits = self.waits.setdefault(host, {})
        waits[scope] = None
        try:
            with scope:
                yield
        finally:
            why = waits.pop(scope, None)
        if scope.cancelled_caught and why is not None:
            raise PeerError(f"gave up waiting for {host} to answer {what}: {why}")

    def give_up(self, host, why):
        """End every wait for `host`'s answer (`awaiting`), saying `why`."""
        for scope in list(self.waits.get(host, {})):
            self.waits[host][scope] = why
            scope.cancel()

    async def drop(self, host, port):
        """Close and forget the connections to `host`'s `port`, every stream
        (the next request connects again)."""
        for key in [key for key in self.open if key[:2] == (host, port)]:
            channel = self.open.pop(key)
            with trio.CancelScope(shield=True):
                await channel.aclose()

    async def close(self):
        for channel in self.open.values():
            with trio.CancelScope(shield=True):
                await channel.aclose()

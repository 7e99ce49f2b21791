"""A resource worker's connections to its peers' ports.

One authenticated connection per (host, port), opened when first needed
and bound to this host's own address; a request that fails drops it, so the
next one connects again."""

import trio

from mars import net
from mars.errors import PeerError

REQUEST_TIMEOUT = 20.0           # a fetch or sync request unanswered this long: reconnect


class PeerChannels:
    def __init__(self, host, cluster_key, clock):
        self.host = host
        self.cluster_key = cluster_key  # () -> the cluster secret, read at each connect
        self.clock = clock
        self.open = {}                  # (host, port) -> Channel

    async def channel(self, state, host, port):
        channel = self.open.get((host, port))
        if channel is None:
            address = state.host_ips().get(host)
            if not address:
                raise PeerError(f"{host} is not in the cluster")
            channel = await net.connect(address, port, self.host, self.cluster_key(),
                                        local_address=state.host_ips().get(self.host),
                                        timeout=10.0, clock=self.clock)
            self.open[(host, port)] = channel
        return channel

    async def request(self, state, host, port, header):
        channel = await self.channel(state, host, port)
        try:
            return await net.request(channel, header, timeout=REQUEST_TIMEOUT)
        except PeerError:
            await self.drop(host, port)
            raise

    async def drop(self, host, port):
        """Close and forget the connection to `host`'s `port` (the next
        request connects again)."""
        channel = self.open.pop((host, port), None)
        if channel is not None:
            with trio.CancelScope(shield=True):
                await channel.aclose()

    async def close(self):
        for channel in self.open.values():
            with trio.CancelScope(shield=True):
                await channel.aclose()

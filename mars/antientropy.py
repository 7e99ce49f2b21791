"""Pull-based anti-entropy over the peer protocol.

A pull sends "my vector" (newest stamp I hold per origin) and receives every
tuple the peer holds beyond it, plus the peer's own vector. Applying a pull
reply is atomic, so a store always holds a complete prefix of every origin's
history (minus what newer writes superseded): relaying through a third host
never loses anything. `exchange` also pushes back what the peer lacks, which
makes one call a full two-way round (update-cluster, join, merge)."""

from mars import net
from mars.errors import PeerError
from mars.keys import hosts_and_resources


async def fetch(channel, vector, timeout=60.0):
    """Ask a peer for everything beyond `vector`. Returns (tuples, peer vector)."""
    reply, body = await net.request(channel, {"type": "pull", "vector": vector}, timeout=timeout)
    try:
        items = net.decode_tuples(body)
    except (ValueError, net.ProtocolError) as exc:
        raise PeerError(f"peer {channel.peer} sent an unreadable tuple list: {exc}") from None
    peer_vector = reply.get("vector") or {}
    return items, {str(k): int(v) for k, v in peer_vector.items()}


def apply_from(store, channel, items, member_only=False):
    try:
        return store.apply(items, durable=False, sender=channel.peer if member_only else None,
                           from_peer=True)
    except ValueError as exc:
        raise PeerError(f"peer {channel.peer} sent a tuple this host must refuse: {exc}") from None


async def push(channel, items, timeout=60.0, admit=False):
    """Send tuples to a peer. `admit` (join-cluster, merge-cluster) tells it
    to accept the hosts and resources in them even if it excluded them
    after an earlier split."""
    if items:
        await net.request(channel, {"type": "push", "admit": admit}, net.encode_tuples(items),
                          timeout=timeout)


async def pull(channel, store, timeout=60.0):
    """One pull round of marsd: fetch and apply, as long as the peer is still
    a cluster member here (after a split or a leave, what it holds must not
    come back). Returns the tuples that changed the store."""
    items, _ = await fetch(channel, store.vector(), timeout)
    return apply_from(store, channel, items, member_only=True)


async def exchange(channel, store, timeout=60.0):
    """Pull from the peer, then push what it lacks. Returns tuples changed here."""
    items, peer_vector = await fetch(channel, store.vector(), timeout)
    changed = apply_from(store, channel, items)
    await push(channel, store.changes_since(peer_vector), timeout)
    return changed


def answer(store, peer, header, payload):
    """Server side of pull/push/ping. Returns (reply header, reply payload),
    or None when the request type is not one of these."""
    kind = header.get("type")
    if kind == "pull":
        vector = header.get("vector") or {}
        if not isinstance(vector, dict):
            return {"type": "error", "reason": "pull vector must be an object"}, b""
        vector = {str(k): int(v) for k, v in vector.items()}
        store.record_peer_vector(peer, vector)
        items = store.changes_since(vector)
        return {"type": "tuples", "vector": store.vector()}, net.encode_tuples(items)
    if kind == "push":
        try:
            items = net.decode_tuples(payload)
            if header.get("admit"):
                store.unexclude(*hosts_and_resources(item[0] for item in items))
            changed = store.apply(items, durable=False, from_peer=True)
        except (ValueError, net.ProtocolError) as exc:
            return {"type": "error", "reason": f"refused tuples: {exc}"}, b""
        return {"type": "ok", "changed": len(changed)}, b""
    if kind == "ping":
        return {"type": "pong", "host": store.host}, b""
    return None

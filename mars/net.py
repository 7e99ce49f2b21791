"""The framed, authenticated peer protocol (port 7777: metadata).

Frame:  !II (header length, payload length) | header (UTF-8 JSON) | payload
Every header carries `type` and `stamp` (the sender's Lamport clock); the
receiver advances its clock past it. Payloads over COMPRESS_OVER bytes are
LZ4-compressed (`"enc": "lz4"` in the header).

Handshake, before anything else is accepted (mutual HMAC-SHA256 over the
cluster secret; the kernel original trusts the network, we do not):

    server -> {"type": "challenge", "host": S, "nonce": Ns}
    client -> {"type": "auth", "host": C, "nonce": Nc, "mac": H("client", Ns, Nc, C)}
    server -> {"type": "welcome", "mac": H("server", Nc, Ns, S)}     or
              {"type": "refused", "reason": ...} and the connection is closed

Requests after the handshake are answered in order on the same connection.
"""

import contextlib
import errno
import hashlib
import hmac
import json
import logging
import os
import secrets
import select
import socket
import struct
import time

import lz4.frame
import trio

from mars.errors import PeerError, PeerRefused

log = logging.getLogger("mars.net")

FRAME = struct.Struct("!II")
MAX_HEADER = 1 << 20
MAX_PAYLOAD = 256 << 20
MAX_UNAUTHENTICATED = 4096      # nothing larger is read before the handshake succeeded
COMPRESS_OVER = 4096
DIRECT_OVER = 1 << 20           # payloads sent and received without a copy of their own
HANDSHAKE_TIMEOUT = 10.0
# connections a port holds before their handshake, at once: more are closed
# at once (a storm of silent connections took every file descriptor: logs,
# the store and device pipes failed with EMFILE). Far above what peers open
# at once when a host comes back (a connection per resource worker and
# port, two sync streams each), far below marsd.service's LimitNOFILE
HANDSHAKES_AT_ONCE = 1024
SEND_FILE_TIMEOUT = 60.0        # seconds a sendfile may wait for the peer to read
# TCP keepalive on every connection, both ends: a peer that lost power (or
# a path cut without a reset) sends nothing more, and a connection idle
# between requests waited for it for ever, a task and a file descriptor
# each. Probed after a minute of silence, given up after six unanswered
# probes ten seconds apart: the receive fails, the connection is closed.
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_PROBES = 60, 10, 6


class ProtocolError(Exception):
    """The other side sent something that is not our protocol."""


def mac(key, *parts):
    return hmac.new(key, "|".join(parts).encode(), hashlib.sha256).hexdigest()


def frame_parts(header, payload=b"", compress=True):
    """(frame length fields + header, payload) of one frame."""
    if compress and len(payload) > COMPRESS_OVER:
        payload = lz4.frame.compress(payload)
        header = dict(header, enc="lz4")
    head = json.dumps(header, separators=(",", ":")).encode()
    return FRAME.pack(len(head), len(payload)) + head, payload


def encode_frame(header, payload=b"", compress=True):
    prefix, payload = frame_parts(header, payload, compress)
    return prefix + payload


def decode_payload(header, payload):
    """A received payload as sent. Compressed, it may not grow past
    MAX_PAYLOAD (LZ4 packs up to 255:1: a frame of zeros within the limit
    unpacked to gigabytes, and marsd went out of memory)."""
    if header.get("enc") != "lz4":
        return payload
    unpacker = lz4.frame.LZ4FrameDecompressor()
    data = unpacker.decompress(payload, max_length=MAX_PAYLOAD + 1)
    if len(data) > MAX_PAYLOAD:
        raise ProtocolError(f"payload unpacks to more than {MAX_PAYLOAD} bytes")
    if not unpacker.eof:
        raise ProtocolError("compressed payload ends before its frame")
    return data


def keep_alive(sock):
    """KEEPALIVE_* on a TCP socket (other sockets: nothing)."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_PROBES)


class Channel:
    """A framed message stream over a trio stream."""

    def __init__(self, stream, clock):
        self.stream = stream
        self.clock = clock
        self._buffer = bytearray()
        self.authenticated = False
        if isinstance(getattr(stream, "socket", None), trio.socket.SocketType):
            keep_alive(stream.socket)

    async def send(self, header, payload=b"", compress=True):
        """Send one frame. `compress=False` for payloads LZ4 cannot shrink
        (disk contents), where compressing would only cost CPU. A large
        payload (any bytes-like object) is sent as it is, not copied behind
        its header first."""
        header = dict(header, stamp=self.clock.now())
        prefix, payload = frame_parts(header, payload, compress)
        if len(payload) < DIRECT_OVER:
            await self.stream.send_all(prefix + payload)
        else:
            await self.stream.send_all(prefix)
            await self.stream.send_all(payload)

    async def send_file(self, header, path, offset, count):
        """Send one frame whose payload is `count` bytes of the file `path`
        at `offset`, from the page cache to the socket (sendfile(2): not
        read into this process and copied out again), in a worker thread,
        as it may wait for the disk. A file shorter than that breaks the
        connection: the frame promised `count` bytes."""
        header = dict(header, stamp=self.clock.now())
        head = json.dumps(header, separators=(",", ":")).encode()
        await self.stream.send_all(FRAME.pack(len(head), count) + head)
        await trio.to_thread.run_sync(sendfile_all, self.stream.socket.fileno(), path, offset,
                                      count, SEND_FILE_TIMEOUT)

    async def _read_exactly(self, count, into=None):
        if count >= DIRECT_OVER and hasattr(self.stream, "socket"):
            return await self._receive_into(count, into)
        while len(self._buffer) < count:
            chunk = await self.stream.receive_some(max(65536, count - len(self._buffer)))
            if not chunk:
                raise ProtocolError("connection closed by peer")
            self._buffer += chunk
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data

    async def _receive_into(self, count, into=None):
        """`count` bytes straight from the socket into one buffer: a sync
        reply (16 MiB) was copied four times on its way through
        receive_some, the buffer and the slices (a bytearray, not bytes).
        `into`: a writable buffer to receive into (the result is a
        memoryview of it); a payload that does not fit gets a new one."""
        if into is None or len(into) < count:
            data = bytearray(count)
        else:
            data = memoryview(into)[:count]
        view = memoryview(data)
        have = min(len(self._buffer), count)
        view[:have] = self._buffer[:have]
        del self._buffer[:have]
        while have < count:
            try:
                got = await self.stream.socket.recv_into(view[have:], count - have)
            except OSError as exc:
                raise trio.BrokenResourceError(str(exc)) from exc
            if not got:
                raise ProtocolError("connection closed by peer")
            have += got
        return data

    async def receive(self, into=None):
        """One frame: (header, payload). `into`: a writable buffer a large
        plain payload may be received into (no new buffer to zero and fault
        in for every sync reply); the payload is then a memoryview of it,
        valid until the buffer is reused."""
        header_len, payload_len = FRAME.unpack(await self._read_exactly(FRAME.size))
        if header_len > MAX_HEADER or payload_len > MAX_PAYLOAD or (
                not self.authenticated and header_len + payload_len > MAX_UNAUTHENTICATED):
            raise ProtocolError(f"frame too large ({header_len}+{payload_len} bytes)")
        try:
            header = json.loads(await self._read_exactly(header_len))
        except (ValueError, RecursionError) as exc:       # (deeply nested JSON: RecursionError)
            raise ProtocolError(f"undecodable header: {exc}") from None
        if not isinstance(header, dict) or "type" not in header:
            raise ProtocolError("header without a type")
        plain = header.get("enc") is None
        raw = await self._read_exactly(payload_len, into if plain else None)
        try:
            payload = decode_payload(header, raw)
        except Exception as exc:        # noqa: BLE001 (lz4 says RuntimeError of junk)
            raise ProtocolError(f"undecodable payload: {exc}") from None
        # a stamp only from a peer that proved the secret: before, anything
        # that reached the port could move the clock to its end (every
        # later write then failed, and the stamp spread through the cluster)
        if self.authenticated and isinstance(header.get("stamp"), int):
            self.clock.observe(header["stamp"])
        return header, payload

    async def aclose(self):
        await self.stream.aclose()


def sendfile_all(out_fd, path, offset, count, timeout):
    """sendfile(2) `count` bytes of `path` from `offset` to the non-blocking
    socket `out_fd`, waiting (poll) while its buffer is full, at most
    `timeout` seconds in all."""
    poller = select.poll()
    poller.register(out_fd, select.POLLOUT)
    deadline = time.monotonic() + timeout
    with open(path, "rb", buffering=0) as source:
        while count:
            try:
                sent = os.sendfile(out_fd, source.fileno(), offset, count)
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0 or not poller.poll(left * 1000):
                    raise OSError(errno.ETIMEDOUT, f"sending {path} stalled for {timeout:g}s") \
                        from None
                continue
            if not sent:
                raise OSError(errno.EIO, f"{path} ended before byte {offset + count}")
            offset += sent
            count -= sent


def encode_tuples(items):
    return json.dumps([list(item) for item in items], separators=(",", ":")).encode()


def decode_tuples(payload):
    items = json.loads(payload) if payload else []
    if not isinstance(items, list) or not all(isinstance(i, list) and len(i) == 4 for i in items):
        raise ProtocolError("tuple payload is not a list of 4-element lists")
    return items


class Handshakes:
    """The connections of one port still in their handshake: at most
    HANDSHAKES_AT_ONCE; one more is refused (`admit` False), said once a
    minute."""

    def __init__(self, port):
        self.port, self.open, self.said_at = port, 0, None

    def admit(self):
        if self.open >= HANDSHAKES_AT_ONCE:
            now = time.monotonic()
            if self.said_at is None or now - self.said_at >= 60:
                self.said_at = now
                log.warning("port %d: %d connections wait for their handshake: closing new ones "
                            "at once until some are through (peers retry with backoff)",
                            self.port, self.open)
            return False
        self.open += 1
        return True

    def done(self):
        self.open -= 1


def say_refused(port, stream, exc):
    """Log a connection to `port` that did not prove the cluster secret
    (`accept_handshake`'s refusal, or no handshake within
    HANDSHAKE_TIMEOUT): an operator sees a host with the wrong secret, or a
    scanner, on every port. True when it was such a refusal."""
    if isinstance(exc, trio.TooSlowError):
        reason = f"no handshake within {HANDSHAKE_TIMEOUT:g}s"
    elif isinstance(exc, ProtocolError) and str(exc).startswith("authentication failed"):
        reason = str(exc)
    else:
        return False
    try:
        remote = stream.socket.getpeername()
    except OSError:
        remote = "?"
    if isinstance(remote, tuple):
        remote = f"{remote[0]}:{remote[1]}"
    log.warning("port %d: refused connection from %s: %s", port, remote or "?", reason)
    return True


async def accept_handshake(channel, host, key):
    """Server side. Returns the authenticated peer's host name, or raises."""
    nonce = secrets.token_hex(16)
    await channel.send({"type": "challenge", "host": host, "nonce": nonce})
    header, _ = await channel.receive()
    peer = header.get("host", "?")
    expected = mac(key, "client", nonce, str(header.get("nonce", "")), str(peer))
    if header.get("type") != "auth" or not hmac.compare_digest(str(header.get("mac", "")), expected):
        await channel.send({"type": "refused", "reason": "authentication failed: wrong cluster secret"})
        raise ProtocolError(f"authentication failed for client claiming to be {peer!r}")
    await channel.send({"type": "welcome", "host": host,
                        "mac": mac(key, "server", header["nonce"], nonce, host)})
    channel.authenticated = True
    return peer


async def connect(address, port, host, key, local_address=None, timeout=10.0, clock=None):
    """Open an authenticated channel to a peer. Raises PeerError with the reason."""
    target = f"{address}:{port}"
    try:
        with trio.fail_after(timeout):
            stream = await trio.open_tcp_stream(address, port, local_address=local_address)
            channel = Channel(stream, clock)
            try:
                header, _ = await channel.receive()
                if header.get("type") != "challenge" or not isinstance(header.get("nonce"), str) \
                        or not isinstance(header.get("host", ""), str):
                    raise ProtocolError(f"expected a challenge (a nonce and a host name), got "
                                        f"{str(header)[:200]}")
                nonce = secrets.token_hex(16)
                await channel.send({"type": "auth", "host": host, "nonce": nonce,
                                    "mac": mac(key, "client", header["nonce"], nonce, host)})
                reply, _ = await channel.receive()
                server = header.get("host", "?")
                if reply.get("type") == "refused":
                    raise PeerRefused(
                        f"peer {target} refused us: {reply.get('reason')}; every host needs the "
                        "same cluster.key in its state dir")
                if reply.get("type") != "welcome" or not hmac.compare_digest(
                        str(reply.get("mac", "")), mac(key, "server", nonce, header["nonce"], server)):
                    raise PeerRefused(
                        f"peer {target} failed to prove the cluster secret: it belongs to another "
                        "cluster or is an impostor; not talking to it")
                channel.peer = server
                channel.authenticated = True
                return channel
            except BaseException:
                await stream.aclose()
                raise
    except trio.TooSlowError:
        raise PeerError(f"peer {target} did not answer within {timeout:g}s") from None
    except OSError as exc:
        raise PeerError(f"peer {target} unreachable: {_os_reason(exc)}") from None
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        # reset while greeting: the peer is going down or restarting
        raise PeerError(f"peer {target} dropped the connection: {exc}") from None
    except ProtocolError as exc:
        raise PeerError(f"peer {target}: protocol error: {exc}") from None


def _os_reason(exc):
    """The first concrete reason inside trio's "all attempts failed" error."""
    cause = exc.__cause__
    while isinstance(cause, BaseExceptionGroup):
        cause = cause.exceptions[0]
    if isinstance(cause, OSError):
        exc = cause
    return exc.strerror or str(exc)


@contextlib.contextmanager
def peer_errors(channel, what, timeout):
    """The failures of `channel` inside (and `trio.fail_after(timeout)`
    expiring) as PeerError, naming the peer and `what` it did not answer."""
    try:
        yield
    except trio.TooSlowError:
        raise PeerError(f"peer {getattr(channel, 'peer', '?')} did not answer "
                        f"{what} within {timeout:g}s") from None
    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, ProtocolError) as exc:
        raise PeerError(f"peer {getattr(channel, 'peer', '?')}: connection lost ({exc})") from None


async def request(channel, header, payload=b"", timeout=60.0, into=None):
    """Send one request and return the reply; an `error` reply raises
    PeerError. `into`: a buffer a large reply may be received into (see
    `Channel.receive`)."""
    with peer_errors(channel, header["type"], timeout), trio.fail_after(timeout):
        await channel.send(header, payload)
        reply, body = await channel.receive(into=into)
    if reply.get("type") == "error":
        raise PeerError(f"peer {getattr(channel, 'peer', '?')} refused {header['type']}: "
                        f"{reply.get('reason')}")
    return reply, body

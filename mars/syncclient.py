"""The sync client: a new member copies the disk from its source.

While `syncstatus-<host>` is below the resource's size, a secondary copies
the disk in bounded, resumable steps (fast full sync: only chunks whose
digests differ travel; the server side is `mars.transfer`). Replay starts at
`syncpos-<host>`, the source's log position when the sync started; a
complete sync moves `syncpos` to where the source's log ended after the last
chunk, the point from which the copy is consistent."""

import logging
import time

import trio

from mars import net
from mars.errors import PeerError
from mars.follow import fdatasync_path
from mars.hostenv import PORT_FETCH, PORT_SYNC
from mars.keys import replay_name, res_key, syncpos_name, syncstatus_name
from mars.logfile import parse_logfile_name
from mars.replay import Cursor
from mars.channels import REQUEST_TIMEOUT
from mars.transfer import CHUNK, CHUNKS_PER_REQUEST, apply_chunks, local_digests

log = logging.getLogger("marsd.data")

SYNC_BATCH = 128 << 20           # bytes per sync step
SYNC_PERSIST_EVERY = 2.0         # seconds between syncstatus writes (each syncs the disk)
SYNC_PIPELINE = 3                # sync requests in flight


class SyncClient:
    """The sync of one `ResourceWorker`'s replica from its source."""

    def __init__(self, worker):
        self.worker = worker
        self.res = worker.res
        self.done = None                # in-memory sync progress
        self.was_complete = False       # seen complete: the next sync counts from 0
        self.persisted = 0.0
        self.persisting = False
        self.generation = 0             # a new sync (join, invalidate) starts a new one
        self.received = 0               # bytes received over the network by this sync

    def _key(self, name):
        return res_key(self.res, name)

    def _count_anew(self):
        self.received = 0
        self.worker.report(sync_received=0)

    def complete(self, size):
        """The sync is complete (syncstatus == size)."""
        self.worker.report(syncing=False, sync_done=size)
        self.was_complete = True

    async def sync(self, state, source, synced, size):
        """One bounded sync step from `source` (`synced`: syncstatus). Whether busy."""
        worker = self.worker
        host = worker.host
        if self.was_complete:           # a new sync (of a grown tail): counted anew
            self.was_complete = False
            self._count_anew()
        syncpos = state.resource_value(self.res, syncpos_name(host))
        own = state.resource_value(self.res, replay_name(host))
        if not syncpos and synced and own:
            # complete up to `synced` without a sync of its own (the member
            # that created the resource, after a resize): only the tail is
            # copied, its replay goes on from where it is
            worker.write({self._key(syncpos_name(host)): own})
            self._count_anew()
            syncpos = own
            log.info("%s: sync of the grown tail from %s starts at %d bytes", self.res, source,
                     synced)
        if not syncpos:
            start = state.resource_value(self.res, replay_name(source))
            if not start:
                worker.wait(f"waiting for {source} to report its log position")
                return False
            await trio.to_thread.run_sync(worker.follower.drop_local_logs)
            worker.write({self._key(syncpos_name(host)): start, self._key(replay_name(host)): start,
                          self._key(syncstatus_name(host)): 0})
            worker.follower.cursor = Cursor.parse(start)
            self._count_anew()
            self.done = synced = 0
            self.generation += 1
            log.info("%s: full sync from %s starts; logs from %s are replayed afterwards",
                     self.res, source, start)
            syncpos = start
        if self.done is None or self.done < synced:
            self.done = synced
        disk = state.disk(self.res)
        fast = worker.daemon.fast_sync
        target = min(size, self.done + SYNC_BATCH)
        hold = worker.daemon.hold_sync_after
        if hold is not None and self.done >= hold:
            if not self.persisting and int(worker.store.value(
                    self._key(syncstatus_name(host)), "0") or 0) < self.done:
                self.persisting = True
                await self._persist(disk, self.done, self.generation)
            worker.wait(f"sync held at {self.done} bytes (--debug-hold-sync-after)")
            return False
        if hold is not None:
            target = min(target, max(hold, self.done + 1))
        worker.wait(None)
        worker.report(syncing=True, sync_size=size, sync_mode="fast" if fast else "full")
        await self._sync_range(state, source, disk, self.done, target, size, fast)
        now = time.monotonic()
        if self.done >= size:
            consistent_from = await self._source_log_end(state, source, syncpos)
            await self._persist(disk, self.done, self.generation, consistent_from)
        elif now - self.persisted >= SYNC_PERSIST_EVERY and not self.persisting:
            # In the background: the copy goes on while the disk is synced.
            self.persisted = now
            self.persisting = True
            worker.nursery.start_soon(self._persist, disk, self.done, self.generation)
        if self.done >= size:
            log.info("%s: sync from %s complete (%d bytes)", self.res, source, size)
            worker.report(syncing=False)
        return True

    async def _persist(self, disk, done, generation, consistent_from=None):
        """Record `done` bytes as synced once the disk holds them durably,
        unless the sync was restarted meanwhile (invalidate); a complete sync
        also records from where on the copy is consistent (`syncpos`)."""
        worker = self.worker
        try:
            await trio.to_thread.run_sync(fdatasync_path, disk)
            recorded = worker.store.value(self._key(syncstatus_name(worker.host)), "0")
            if generation == self.generation and done > int(recorded or 0):
                changes = {self._key(syncstatus_name(worker.host)): done}
                if consistent_from is not None:
                    changes[self._key(syncpos_name(worker.host))] = consistent_from
                worker.write(changes)
        finally:
            self.persisting = False

    async def _source_log_end(self, state, source, start):
        """Where the source's log ends now that it has read the last chunk.
        A write reaches the disk only after it was logged, so everything the
        sync copied is in the log before this position: the copy, a mix of
        older and newer blocks, is consistent once replay has passed it.
        None when the source lists no logfile beyond the sync's start."""
        reply, _ = await self.worker.channels.request(state, source, PORT_FETCH,
                                                      {"type": "logs", "res": self.res})
        files = [(name, size) for name, size in reply.get("files") or []]
        if not files:
            return None
        name, size = max(files, key=lambda item: parse_logfile_name(item[0])[0])
        end = Cursor(name, size, size)
        return str(end) if end.order > Cursor.parse(start).order else None

    async def _sync_range(self, state, source, disk, start, target, size, fast):
        """Copy [start, target) from the source, pipelined: while the source
        reads (and hashes) one request, this host hashes the next, receives
        the one before and writes the one before that (its own task, so that
        receiving never waits for the disk). Replies come back in order on
        the one connection."""
        worker = self.worker
        requests = []
        offset = start
        while offset < target:
            count = min(CHUNKS_PER_REQUEST, -(-(target - offset) // CHUNK))
            requests.append((offset, count))
            offset += count * CHUNK
        channel = await worker.channels.channel(state, source, PORT_SYNC)
        in_flight = trio.Semaphore(SYNC_PIPELINE)

        async def send_all():
            for offset, count in requests:
                await in_flight.acquire()
                digests = await trio.to_thread.run_sync(
                    local_digests, disk, offset, CHUNK, count, size) if fast else None
                await channel.send({"type": "chunks", "res": self.res, "offset": offset,
                                    "chunk": CHUNK, "count": count, "digests": digests})

        received, to_write = trio.open_memory_channel(1)

        async def write_all():
            async with to_write:
                async for offset, count, kinds, data in to_write:
                    await trio.to_thread.run_sync(
                        apply_chunks, disk, offset, CHUNK, kinds, data, size)
                    step = min(count * CHUNK, size - offset)
                    self.done = offset + step
                    self.received += len(data)
                    worker.rates["sync"].add(step)
                    worker.metrics.synced.labels(self.res).inc(len(data))
                    worker.report(sync_done=self.done, sync_received=self.received)

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_all)
                nursery.start_soon(write_all)
                async with received:
                    for offset, count in requests:
                        with trio.fail_after(REQUEST_TIMEOUT):
                            reply, data = await channel.receive()
                        if reply.get("type") != "chunks":
                            raise PeerError(f"{source} refused sync: {reply.get('reason', reply)}")
                        in_flight.release()
                        await received.send((offset, count, reply["kinds"], data))
        except BaseExceptionGroup as group:
            failures, rest = group.split((trio.TooSlowError, OSError, trio.BrokenResourceError,
                                          trio.ClosedResourceError, net.ProtocolError, PeerError))
            if rest is not None or failures is None:
                raise
            exc = failures.exceptions[0]
            await worker.channels.drop(source, PORT_SYNC)
            raise PeerError(f"sync from {source} interrupted: {exc}") from None

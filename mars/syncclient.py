"""The sync client: a new member copies the disk from its source.

While `syncstatus-<host>` is below the resource's size, a secondary copies
the disk in bounded, resumable steps (fast full sync: only chunks whose
digests differ travel; the server side is `mars.transfer`). Replay starts at
`syncpos-<host>`, the source's log position when the sync started; a
complete sync moves `syncpos` to where the source's log ended after the last
chunk, the point from which the copy is consistent. All of a sync's chunks
come from one source: one that changes midway starts it anew
(`_source_changed`)."""

import errno
import logging
import math
import time

import trio

from mars import net
from mars.errors import PeerError
from mars.follow import fdatasync_path
from mars.hostenv import PORT_FETCH, PORT_SYNC
from mars.history import missed_unlogged
from mars.keys import (replay_name, res_key, resync_changes, syncpos_name, syncsource_name,
                       syncstatus_name)
from mars.logfile import parse_logfile_name
from mars.replay import Cursor
from mars.channels import REQUEST_TIMEOUT
from mars.directio import aligned_buffer
from mars.transfer import (CHUNK, CHUNKS_PER_REQUEST, MOST_CHUNKS_PER_REQUEST, apply_chunks,
                           local_digests)

log = logging.getLogger("marsd.data")

SYNC_STEP_SECONDS = 1.0          # a sync step asks for more until it has run this long (or news)
SYNC_PERSIST_EVERY = 2.0         # seconds between syncstatus writes (each syncs the disk)
SYNC_PIPELINE = 2                # sync requests in flight per stream
SYNC_STREAMS = 2                 # connections a sync copies over at once (per resource)


class Frontier:
    """Where a range copied in pieces that finish out of order is complete
    without a gap: `written(start, end)` of a piece returns it."""

    def __init__(self, start):
        self.complete = start
        self.ahead = {}                 # start of a piece beyond the gap -> its end

    def written(self, start, end):
        self.ahead[start] = end
        while self.complete in self.ahead:
            self.complete = self.ahead.pop(self.complete)
        return self.complete


def step_requests(start, target, go_on, chunks=lambda: CHUNKS_PER_REQUEST):
    """The requests `(offset, chunk count)` of one sync step, in order from
    `start` up to `target`: the first always, the others while `go_on()`
    (the step has run less than SYNC_STEP_SECONDS, and no news for the
    worker arrived meanwhile); each of `chunks()` chunks (asked as it is
    handed out: `SyncClient.request_chunks`), the last one up to `target`.

    A step is bounded by its time, not by its bytes: between steps the
    worker looks at what changed (a pause, a leave, a new primary), and
    every step's end drains the streams' pipelines. Steps of 128 MiB did
    that 16 times per 2 GiB at loopback speed, which cost the full and the
    fast sync 5-10 % of their time on the 2-CPU test machine while its CPUs
    had room (nothing measurable when they had not), and on a slow link
    (10 MB/s) a 128 MiB step kept the worker from looking for 13 s. Now
    news (its keys changed: `pause-sync`, `leave-resource`, a new primary)
    ends a step at once, after the requests in flight then (at most
    `SYNC_STREAMS` x `SYNC_PIPELINE`)."""
    offset = start
    while offset < target and (offset == start or go_on()):
        count = min(chunks(), -(-(target - offset) // CHUNK))
        yield offset, count
        offset += count * CHUNK


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
        self.source = None              # the host this sync copies from (None: not known yet)
        self.received = 0               # bytes received over the network by this sync
        self.spare_buffers = []         # replies' buffers kept between steps (`_stream`)
        self.request_chunks = CHUNKS_PER_REQUEST    # chunks of the next request (`_sized`)
        self.persist_failure = None     # why a `_persist` in the background failed

    def _key(self, name):
        return res_key(self.res, name)

    def _sized(self, kinds, fast):
        """The next requests' size after a reply of `kinds`: a fast sync
        whose chunks were the same (`s`, or zeros on both sides) asks for
        MOST_CHUNKS_PER_REQUEST at once, until a chunk travels. A fast
        sync of an identical replica of 2 GiB took 0.39-0.42 s so against
        0.45-0.52 s in requests of 16 chunks, on the 2-CPU test machine
        (scratch `fastsync.py`): fewer requests, each a round trip, a map
        and a thread on either side.

        The buffers replies go into hold CHUNKS_PER_REQUEST: a larger reply
        with data gets a new one on both sides (`net.Channel.receive`,
        `transfer.read_chunks`), at most the requests in flight when the
        chunks began to differ. Not after zeros alone: a new member's empty
        volume is all zeros to the source, which answers `z` or `d` and
        never `s`, and its data after a run of zeros would cost new
        buffers every time."""
        if fast:
            self.request_chunks = MOST_CHUNKS_PER_REQUEST \
                if "s" in kinds and "d" not in kinds else CHUNKS_PER_REQUEST

    def _count_anew(self):
        self.received = 0
        self.worker.report(sync_received=0)

    def complete(self, size):
        """The sync is complete (syncstatus == size)."""
        self.worker.report(syncing=False, sync_done=size)
        self.was_complete = True
        self.source = None              # (a later sync, of a grown tail, may copy from another)

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
            # copied, its replay goes on from where it is — unless another
            # member wrote unlogged since (counted from the start for it,
            # which has no `syncpos`: its own cursor as one would hide that)
            if worker.missed_writes(state):
                return False
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
            missed = missed_unlogged(state, self.res, host, since=Cursor.parse(start))
            if missed:
                # a sync from here would be restarted at its end (`_straddled`)
                worker.wait(f"waiting for {source}'s log to go on past where {missed[0]} "
                            f"stopped logging (emergency mode, {missed[1].logfile},"
                            f"{missed[1].position}): a copy from before that misses its writes")
                return False
            start_logfile = Cursor.parse(start).logfile
            if worker.follower.gone_at_source(start_logfile):
                # Its checkpoint still names a logfile it deleted (the sync
                # before this one found it gone): a sync from there would
                # find it gone again. Its next checkpoint is news.
                worker.wait(f"waiting for {source}'s log position past {start_logfile}, "
                            "which it deleted")
                return False
            await trio.to_thread.run_sync(worker.follower.drop_local_logs)
            worker.write({self._key(syncpos_name(host)): start, self._key(replay_name(host)): start,
                          self._key(syncstatus_name(host)): 0,
                          self._key(syncsource_name(host)): source})
            worker.follower.cursor = Cursor.parse(start)
            self._count_anew()
            self.done = synced = 0
            self.generation += 1
            log.info("%s: full sync from %s starts; logs from %s are replayed afterwards",
                     self.res, source, start)
            syncpos = start
            self.source = source
        if self.source is None:
            # resumed after a restart: from the source it recorded (one
            # changed while marsd was down starts anew, as any other)
            self.source = state.resource_value(self.res, syncsource_name(host)) or None
            if self.source is None:     # (a sync begun before the source was recorded)
                self.source = source
                worker.write({self._key(syncsource_name(host)): source})
        if source != self.source:
            return self._source_changed(source)
        if self.done is None or self.done < synced:
            self.done = synced
        disk = state.disk(self.res)
        fast = worker.daemon.fast_sync
        target = size
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
        if self.persist_failure is not None:    # (kept: every later one fails the same way)
            raise OSError(errno.EIO, self.persist_failure)
        worker.wait(None)
        worker.report(syncing=True, sync_size=size, sync_mode="fast" if fast else "full")
        try:
            await self._sync_range(state, source, disk, self.done, target, size, fast)
        except PeerError:
            # the source is gone for now, maybe for long: its buffers
            # (96 MiB) are not held meanwhile
            self.spare_buffers.clear()
            raise
        now = time.monotonic()
        if self.done >= size and self._straddled(state):
            return True
        if self.done >= size:
            consistent_from = await self._source_log_end(state, source, syncpos)
            await self._persist(disk, self.done, self.generation, consistent_from)
        elif now - self.persisted >= SYNC_PERSIST_EVERY and not self.persisting:
            # In the background: the copy goes on while the disk is synced.
            self.persisted = now
            self.persisting = True
            worker.nursery.start_soon(self._persist_in_background, disk, self.done,
                                      self.generation)
        if self.done >= size:
            log.info("%s: sync from %s complete (%d bytes)", self.res, source, size)
            worker.report(syncing=False)
            self.spare_buffers.clear()      # (unmapping 48 MiB is not instant)
            worker.daemon.keep_standby_ready()  # it may become the primary now
        return True

    def _straddled(self, state):
        """Whether another member wrote unlogged (emergency mode) since this
        sync began (`missed_unlogged` against its start, `syncpos` until it
        completes): chunks copied before that missed the direct writes, and
        no log has them. The sync starts anew (as after invalidate); else
        its completion moved `syncpos` past the mark, and the copy counted
        as consistent."""
        missed = missed_unlogged(state, self.res, self.worker.host)
        if missed is None:
            return False
        origin, mark = missed
        log.warning("%s: %s wrote to its disk without logging (emergency mode, from %s,%d on) "
                    "during this sync: it starts anew", self.res, origin, mark.logfile,
                    mark.position)
        self.worker.write(resync_changes(self.worker.store.live_values(self._key("")), self.res,
                                         self.worker.host))
        self.done, self.generation = 0, self.generation + 1
        return True

    def _source_changed(self, source):
        """The sync's source changed before it completed (a handover, a
        failover): it starts anew from the new one (as after invalidate;
        a fast sync copies only the chunks that differ). Not on: the
        chunks copied so far hold the old source's disk, those to come the
        new one's, and replay starts from the old source's log position.
        The new one may still be replaying from before it (the chunks from
        it then miss writes no replay brings), or, after a failover, may
        never have had what the old one wrote last (the chunks from that
        one keep writes its history lost)."""
        log.warning("%s: the sync's source changed from %s to %s before it completed: it starts "
                    "anew from %s", self.res, self.source, source, source)
        self.worker.write(resync_changes(self.worker.store.live_values(self._key("")), self.res,
                                         self.worker.host))
        self.done, self.generation, self.source = 0, self.generation + 1, None
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
                    changes[self._key(syncsource_name(worker.host))] = None
                worker.write(changes)
        finally:
            self.persisting = False

    async def _persist_in_background(self, disk, done, generation):
        """`_persist` beside the copy. Its failure (an fdatasync of the disk,
        kept: `fdatasync_path`) is the next step's error, which the log and
        the view say (raised here, it ended the worker's nursery, and marsd
        with it)."""
        try:
            await self._persist(disk, done, generation)
        except OSError as exc:
            self.persist_failure = exc.strerror or str(exc)

    async def _source_log_end(self, state, source, start):
        """Where the source's log ends now that it has read the last chunk.
        A write reaches the disk only after it was logged, so everything the
        sync copied is in the log before this position: the copy, a mix of
        older and newer blocks, is consistent once replay has passed it.
        None when the source lists no logfile beyond the sync's start.

        The listing says how far each logfile is durable at the source; one
        whose fdatasync failed there is listed shorter than it is written
        (`held_back`), although the disk the copy came from holds blocks of
        its records past that size. The copy is consistent only past them,
        and they are not served: no consistency point is recorded (one at
        the listed size let a replica that had replayed that far count as
        consistent with blocks of later writes and not of earlier ones), the
        sync stays unfinished (PeerError) until the source serves its log."""
        reply, _ = await self.worker.channels.request(state, source, PORT_FETCH,
                                                      {"type": "logs", "res": self.res})
        files = [(name, size) for name, size in reply.get("files") or []]
        if not files:
            return None
        name, size = max(files, key=lambda item: parse_logfile_name(item[0])[0])
        held_back = (reply.get("held_back") or {}).get(name)
        if held_back:
            raise PeerError(f"the sync of {self.res} from {source} copied its disk but cannot "
                            f"complete: {source}'s logfile {name} is not durable there "
                            f"({held_back}), and its disk holds writes logged past that: "
                            f"check the disk of {source}'s state directory and restart its "
                            "marsd; the sync completes once its log is served again")
        end = Cursor(name, size, size)
        return str(end) if end.order > Cursor.parse(start).order else None

    async def _sync_range(self, state, source, disk, start, target, size, fast):
        """Copy from `start` towards `target` from the source over
        `SYNC_STREAMS` connections at once, each pipelined: while the source
        reads (and hashes) one request, this host hashes the next, receives
        the one before and writes the one before that (a task of its own, so
        that receiving never waits for the disk). The streams take the
        requests in order from one sequence (`step_requests`), which stops
        handing out new ones after `SYNC_STEP_SECONDS` or news; `done` (what
        syncstatus records) only ever covers requests written without a gap
        below them.

        One stream was bound by its round trips, not by a CPU: on the
        2-CPU test machine the source's marsd used 0.45 of a CPU and this
        one 0.55 at 560 MiB/s, where `cp` of the image ran at 1.45 GB/s."""
        deadline = time.monotonic() + SYNC_STEP_SECONDS
        pending = step_requests(start, target, lambda: time.monotonic() < deadline
                                and not self.worker.news_arrived,
                                lambda: self.request_chunks if fast else CHUNKS_PER_REQUEST)
        streams = min(SYNC_STREAMS, -(-(target - start) // (CHUNK * CHUNKS_PER_REQUEST)))
        frontier = Frontier(start)

        def finished(offset, count, received):
            step = min(count * CHUNK, size - offset)
            self.done = max(self.done, min(frontier.written(offset, offset + count * CHUNK), size))
            self.received += received
            self.worker.rates["sync"].add(step)
            self.worker.metrics.synced.labels(self.res).inc(received)
            self.worker.report(sync_done=self.done, sync_received=self.received)
            self.worker.save_progress()     # the views follow a step of a second or more

        try:
            async with trio.open_nursery() as nursery:
                for stream in range(streams):
                    channel = await self.worker.channels.channel(state, source, PORT_SYNC, stream)
                    nursery.start_soon(self._stream, channel, source, pending, disk, size, fast,
                                       finished)
        except BaseExceptionGroup as group:
            failures, rest = group.split((trio.TooSlowError, OSError, trio.BrokenResourceError,
                                          trio.ClosedResourceError, net.ProtocolError, PeerError))
            if rest is not None or failures is None:
                raise
            exc = failures.exceptions[0]
            await self.worker.channels.drop(source, PORT_SYNC)
            raise PeerError(f"sync from {source} interrupted: {exc}") from None

    async def _stream(self, channel, source, pending, disk, size, fast, finished):
        """One connection's share of a sync range: requests from `pending`
        (shared with the other streams) until none is left; `finished(offset,
        count, bytes received)` once a request is written."""
        in_flight = trio.Semaphore(SYNC_PIPELINE)
        sent_send, sent = trio.open_memory_channel(math.inf)
        received_send, received = trio.open_memory_channel(1)
        # Replies are received into buffers that go round: one being
        # received, one waiting, one being written (a new 16 MiB buffer per
        # reply was zeroed and faulted in: a tenth of this process's time).
        # They are kept from one step of the sync to the next, and aligned
        # to pages, so that their chunks are written to the disk directly
        # (`transfer.apply_chunks`).
        buffers_back, buffers = trio.open_memory_channel(math.inf)
        for _ in range(3):
            buffers_back.send_nowait(self.spare_buffers.pop() if self.spare_buffers
                                     else aligned_buffer(CHUNK * CHUNKS_PER_REQUEST))

        async def send_all():
            async with sent_send:
                while True:
                    await in_flight.acquire()   # before taking one: none waits here
                    offset, count = next(pending, (None, None))
                    if offset is None:
                        return
                    digests = await trio.to_thread.run_sync(
                        local_digests, disk, offset, CHUNK, count, size) if fast else None
                    await channel.send({"type": "chunks", "res": self.res, "offset": offset,
                                        "chunk": CHUNK, "count": count, "digests": digests})
                    await sent_send.send((offset, count))

        async def write_all():
            async with received:
                async for offset, count, kinds, data, buffer in received:
                    if kinds.strip("s"):        # (chunks all the same: nothing to write)
                        await trio.to_thread.run_sync(
                            apply_chunks, disk, offset, CHUNK, kinds, data, size)
                    finished(offset, count, len(data))
                    data = None             # written: the buffer may be received into
                    buffers_back.send_nowait(buffer)

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_all)
                nursery.start_soon(write_all)
                async with received_send, sent:
                    async for offset, count in sent:
                        buffer = await buffers.receive()
                        with trio.fail_after(REQUEST_TIMEOUT):
                            reply, data = await channel.receive(into=buffer)
                        if reply.get("type") != "chunks":
                            raise PeerError(f"{source} refused sync: "
                                            f"{reply.get('reason', reply)}")
                        if not _answers(reply["kinds"], data, offset, count, size):
                            # (a source that has not learnt of a resize yet ends
                            # the reply at its size: what it left out is no copy)
                            raise PeerError(f"{source} answered for another size than "
                                            f"{size} bytes: the sync waits for it to agree")
                        self._sized(reply["kinds"], fast)     # (before the next request)
                        in_flight.release()
                        await received_send.send((offset, count, reply["kinds"], data, buffer))
        finally:
            buffers_back.close()
            while True:             # those not in use at the end: the next step's
                try:
                    self.spare_buffers.append(buffers.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break


def _answers(kinds, data, offset, count, size):
    """Whether a reply of `kinds` and `data` answers the request of `count`
    chunks at `offset` of a disk of `size` bytes: a kind for each chunk,
    and each data chunk whole as far as the disk goes."""
    if len(kinds) != count:
        return False
    wanted = sum(min(CHUNK, size - (offset + index * CHUNK))
                 for index, kind in enumerate(kinds) if kind == "d")
    return len(data) >= wanted

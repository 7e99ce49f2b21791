"""Fetch and replay: a secondary follows its source's log.

A `LogFollower` fetches the source's logfiles as they grow into
`<state dir>/resource-<res>/` and replays them in order onto the local disk
from this host's replay cursor (`replay-<host>`), which it persists after the
disk is synced. Three things overlap: the source reads the next requests
while this host receives, a thread appends what came, and replay applies
what is appended, reading the logfile only up to its size when it looks.
Fetched bytes go to the logfile past the page cache (whole blocks) and
replay takes them from the reply buffers, which it gives back once past
them; it reads the logfile itself only after a restart, or where the
fetch could not hold a reply. The copy into the page cache and the read
back were 37 % and 4.6 % of a catching-up secondary's CPU (perf).
It moves from logfile N to N+1 only when this host's version of N equals
the one its origin wrote (`mars.history`). It also owns the
local logfiles: emergency mode's first stage drops them, and the daemon
deletes those every member has replayed."""

import errno
import fcntl
import logging
import os
import struct
import time
import weakref
from stat import S_ISREG

import trio

from mars import device as devices
from mars import net
from mars.channels import REQUEST_TIMEOUT
from mars.directio import DIRECT_ALIGN, DiskWriter, aligned_buffer, append_one_way
from mars.errors import PeerError
from mars.history import SplitBrain, closed_end
from mars.hostenv import PORT_FETCH
from mars.keys import (LOG_END_NAME, actual_name, replay_name, res_key, resync_changes,
                       syncpos_name, version_name)
from mars.logfile import list_logfiles, parse_logfile_name
from mars.replay import Cursor, ReplayResult, replay, versions_agree
from mars.transfer import FETCH_MAX

log = logging.getLogger("marsd.data")

PERSIST_EVERY = 0.5              # seconds between replay cursor writes
STALL_LOGGED_AFTER = 5.0         # seconds replay stands at a logfile's end before the log says why
LISTING_INTERVAL = 10.0          # seconds an idle secondary goes at most without listing the logs
FETCH_STEP = 8 * FETCH_MAX       # bytes a step fetches at most (replay goes on meanwhile)
FETCH_PIPELINE = 2               # read requests in flight on the fetch connection


def logfile_after(logfile, names):
    """The logfile of `names` numbered next after `logfile`, or None."""
    number = parse_logfile_name(logfile)[0] + 1
    return next((name for name in names if parse_logfile_name(name)[0] == number), None)


def successor_of(logfile, names):
    """The origin of the first logfile of `names` after `logfile` whose
    origin is another host (who went on after `logfile`'s origin), or None.
    Not merely the next logfile's: the dead origin may have rotated once
    more before it died (its own next logfile, unversioned too)."""
    number, origin = parse_logfile_name(logfile)
    best = None                     # (one pass: it is asked for every name of a listing)
    for name in names:
        later, host = parse_logfile_name(name)
        if later > number and host != origin and (best is None or later < best[0]):
            best = (later, host)
    return best[1] if best else None


class LogFollower:
    """Fetch from a source and replay, for one `ResourceWorker`, in
    bounded steps; the replay cursor (also advanced by the primary's
    checkpoints) lives here."""

    def __init__(self, worker):
        self.worker = worker
        self.res = worker.res
        self.dir = worker.dir
        self.cursor = None              # in-memory replay cursor (Cursor)
        self.cursor_persisted = 0.0
        self.persisted = None           # the cursor as last written to the metadata (str)
        self.remote = {}                # logfile -> size at the source
        self.source = None              # the host a step follows now
        self.list_wanted = False         # a listing of the source's logs asked for (marsadm)
        self.listed = (None, None, -1e9)  # (source, its news, when): the last listing
        self.fetched_all = False         # the last listing's logfiles are all here
        self.rest = None                # bytes to fetch and replay, as the last step counted them
        self.caught_up = False          # the last step had nothing to fetch or replay
        self.appended = trio.Event()     # set (and replaced) when fetch appended to a logfile
        self.held = {}                  # logfile -> [(start, view, buffer)]: fetched, not replayed
        self.room = trio.Event()        # set (and replaced) when replay gave held bytes back
        self.replay_idle = False        # replay waits for appends: it gives nothing back
        self.digests = (None, 0, None)  # (logfile, end, its records' digest fields up to end)
        _followers.add(self)

    def current_cursor(self, state):
        """The replay cursor, read from the metadata once."""
        if self.cursor is None:
            text = state.resource_value(self.res, replay_name(self.worker.host))
            self.cursor = Cursor.parse(text) if text else None
        return self.cursor

    def replayed_to(self, final):
        """Whether replay here has reached `final` (logfile, end, origin)."""
        logfile, end, _ = final
        cursor = self.current_cursor(self.worker.state())
        if cursor is None:
            return False
        mine, theirs = parse_logfile_name(cursor.logfile)[0], parse_logfile_name(logfile)[0]
        return mine > theirs or (cursor.logfile == logfile and cursor.position >= end)

    async def follow(self, state, source, until=None, free=None):
        """Fetch from `source` and replay, one bounded step (`free`: bytes
        free in the state dir, if this step measured them already)."""
        self.source = source
        try:
            return await self._follow(state, source, until, free)
        finally:
            self.source = None

    async def _follow(self, state, source, until, free):
        worker = self.worker
        cursor = self.current_cursor(state)
        fetching = worker.switch(state, "connect")
        replaying = worker.switch(state, "allow-replay")
        busy = False
        unreachable = None
        if fetching and self._listing_due(state, source, until):
            try:
                busy = await self._fetch(state, source, cursor, free, replaying)
            except PeerError as exc:
                unreachable = exc       # what is here already is replayed all the same
                # and what the source logged since its last listing is still
                # to fetch: counted as its metadata tells it (else the rest
                # stayed that of the last listing, all fetched: 0, and a
                # failover took it for a replica that had received all)
                self._remote_from_metadata(state, source)
        elif not fetching:
            worker.waiting_for("fetch paused")
            self._remote_from_metadata(state, source)
        if replaying:
            busy = await self._replay(state, until) or busy
        else:
            worker.waiting_for("replay paused")
        self._report_rest()
        if unreachable is not None:
            raise unreachable
        # The source's news (its log's end, `_news`) is what brings more: until then
        # the worker need not step (see ResourceWorker._pause).
        self.caught_up = not busy and fetching and replaying and self.fetched_all and \
            self.rest == 0
        return busy

    async def low_on_space(self, state, source, free):
        """Emergency mode, first stage: a secondary whose state dir runs low
        stops fetching and drops its local logs (fetched again later from
        its replay cursor on). And a primary that stopped logging leaves
        its replicas behind for good: they need `invalidate`. `free`: bytes
        free in the state dir now."""
        worker = self.worker
        # Hysteresis: once dropped, logs are fetched again only when there
        # is room for more than the limit again, else it would oscillate.
        limit = worker.daemon.fetch_free * (2 if worker.emergency == "space" else 1)
        if free < limit:
            if not worker.emergency:
                log.error("%s: state dir has %d bytes free (< %d): fetch stopped, local logs "
                          "dropped", self.res, free, worker.daemon.fetch_free)
            await trio.to_thread.run_sync(self.drop_local_logs)
            self.held = {}
            worker.set_emergency("space")
            worker.wait(f"state dir low on space ({free} bytes free): fetch stopped, local "
                        "logs dropped")
            return True
        if worker.emergency == "space":
            log.info("%s: state dir has %d bytes free again: fetching from the replay cursor on",
                     self.res, free)
        if state.resource_value(self.res, actual_name(source, "emergency")) == "1":
            worker.set_emergency(True)
            worker.wait(f"{source} is in emergency mode (its writes are not logged): "
                        "invalidate this replica once it has space again")
            return True
        worker.set_emergency(False)
        return False

    # ------------------------------------------------------------------ fetch
    async def _replaying_while(self, state, fetching):
        """Await the coroutine `fetching` (the fetch of logfile data) and
        replay what it appends meanwhile; whether there is more to do at
        once. Before, a step fetched, then replayed: a secondary caught up
        at 210-300 MiB/s with a's logs at 600-800 MiB/s, its threads idle
        two thirds of the time (py-spy; fetch 1.2 s, append 0.9-1.2 s and
        replay 0.4-0.8 s per GB, one after the other)."""
        fetched = False
        replayed = False
        failure = None

        async def replay_alongside():
            nonlocal replayed, failure
            try:
                while not fetched:
                    news = self.appended
                    if await self._replay(state):
                        replayed = True
                    elif not fetched:
                        self.replay_idle = True     # the fetch must not wait for room
                        self._note_room()
                        await news.wait()
                        self.replay_idle = False
            except Exception as exc:    # noqa: BLE001 (raised below, as the step's own)
                failure = exc
                nursery.cancel_scope.cancel()

        busy = False
        async with trio.open_nursery() as nursery:
            nursery.start_soon(replay_alongside)
            try:
                busy = await fetching
            except Exception as exc:    # noqa: BLE001 (raised below: not as a group)
                failure = failure or exc
            finally:
                fetched = True
                self.replay_idle = False
                self._note_appended()
        if failure is not None:
            raise failure
        return busy or replayed

    def _note_appended(self):
        self.appended.set()
        self.appended = trio.Event()

    def _note_room(self):
        self.room.set()
        self.room = trio.Event()

    def _news(self, state, source):
        """What `source` says of its log in the metadata: its replay cursor
        and its log's end (`actual-<host>/log-end`, every round in which it
        logged)."""
        return (state.resource_value(self.res, replay_name(source)),
                state.resource_value(self.res, actual_name(source, LOG_END_NAME)))

    def _listing_due(self, state, source, until):
        """Whether to ask `source` for its logfiles in this step. Not while
        everything it listed last is here and its news (`_news`) is the same
        as then: an idle secondary asks nothing. Always when becoming
        primary (`until`), when asked to (`list_now`), and at least every
        LISTING_INTERVAL."""
        last_source, last_news, when = self.listed
        return until is not None or self.list_wanted or not self.fetched_all or \
            (source, self._news(state, source)) != (last_source, last_news) or \
            time.monotonic() - when >= LISTING_INTERVAL

    def _remote_from_metadata(self, state, source):
        """While fetch is paused or the source cannot be listed: the source's
        logfile sizes as far as the metadata shows them (its replay cursor,
        its log's end, and the ends of logfiles it closed), so that
        work-rest still counts them."""
        cursor, log_end = self._news(state, source)
        ends = []
        try:
            if cursor:
                parsed = Cursor.parse(cursor)
                ends.append((parsed.logfile, parsed.length))
            if log_end:
                logfile, end = log_end.split(",")
                ends.append((logfile, int(end)))
        except ValueError:
            pass                        # malformed: what came before it counts
        for logfile, end in ends:
            self.remote[logfile] = max(self.remote.get(logfile, 0), end)
        for name in list(self.remote):
            closed = self._closed(state, name, self.remote)
            if closed is not None:
                self.remote[name] = max(self.remote[name], closed[0])

    async def _fetch(self, state, source, cursor, free=None, replaying=False):
        """List the source's logfiles, check them against this host's,
        and fetch what is new; with `replaying`, replay meanwhile (see
        `_replaying_while`). Replay starts only after the listing was
        checked, which may raise a split brain or sync anew."""
        worker = self.worker
        listed = time.time()
        news = self._news(state, source)
        self.list_wanted = self.fetched_all = False
        reply, _ = await worker.channels.request(state, source, PORT_FETCH,
                                                 {"type": "logs", "res": self.res})
        worker.report(listed=listed)
        self.listed = (source, news, time.monotonic())
        remote = dict((name, size) for name, size in reply["files"])
        self.remote = remote
        first = parse_logfile_name(cursor.logfile)[0] if cursor else 1
        local = dict(list_logfiles(self.dir))
        for name in remote:
            number = parse_logfile_name(name)[0]
            clash = [other for other in local if other != name
                     and parse_logfile_name(other)[0] == number]
            if clash and number >= first:
                raise SplitBrain(f"{source} has {name}, this host has {clash[0]}")
        if cursor is not None and cursor.logfile not in remote \
                and any(parse_logfile_name(name)[0] > first for name in remote) \
                and not self._complete_here(state, cursor.logfile, local):
            return self._cursor_logfile_gone(state, source, cursor)
        # Never fetch into emergency mode: what would take the state dir below
        # the limit waits until replay has made room (replayed logfiles go).
        if free is None:            # as measured for this step, else now
            free = await trio.to_thread.run_sync(devices.free_bytes, self.dir)
        budget = min(FETCH_STEP, free - worker.daemon.fetch_free - FETCH_MAX)
        if budget <= 0 and any(size > local.get(name, 0) for name, size in remote.items()):
            self._no_room_to_fetch(cursor, local, remote, free)
        fetching = self._fetch_logfiles(state, source, remote, local, first, budget, replaying)
        if not replaying:
            return await fetching
        return await self._replaying_while(state, fetching)

    async def _fetch_logfiles(self, state, source, remote, local, first, budget, hold=False):
        """Fetch what `remote` has beyond `local`, at most `budget` bytes;
        whether there is more to fetch at once (the budget ran out, or a
        reply came short of the listing after bringing something: the next
        step lists again). `hold`: keep what came in memory for the replay
        alongside (`_room_to_hold`)."""
        fetched = 0
        for name, size in sorted(remote.items(), key=lambda item: parse_logfile_name(item[0])[0]):
            if parse_logfile_name(name)[0] < first:
                continue
            have = local.get(name, 0)
            if name not in local:
                # Even an empty logfile: replay moves on only to a logfile it has,
                # and a primary that hands back before any write leaves one empty.
                await trio.to_thread.run_sync(_append_at, self.dir / name, 0, b"")
            if have < size and budget > 0:
                end = min(size, have + budget)
                got = await self._fetch_range(state, source, name, have, end, hold)
                budget -= got
                fetched += got
                if have + got < end:
                    # again at once if it brought something, else after a pause
                    return fetched > 0
            if budget <= 0:
                return fetched > 0
        self.fetched_all = True
        return False

    async def _fetch_range(self, state, source, name, start, end, hold=False):
        """Fetch bytes [start, end) of logfile `name` from `source` and
        append them here; the bytes appended. FETCH_PIPELINE requests are in
        flight on the connection, and a reply is appended (in a thread)
        while the next one arrives. Fewer bytes than asked when a reply
        came short: the source's logfile is not what its listing said."""
        worker = self.worker
        path = self.dir / name
        with worker.channels.awaiting(source, "a connection"):
            channel = await worker.channels.channel(state, source, PORT_FETCH)
        requests = [(offset, min(FETCH_MAX, end - offset)) for offset in range(start, end, FETCH_MAX)]
        in_flight = trio.Semaphore(FETCH_PIPELINE)
        received_send, received = trio.open_memory_channel(1)
        appended = start
        short = False
        failure = None

        async def send_all(task_status=trio.TASK_STATUS_IGNORED):
            with trio.CancelScope() as scope:
                task_status.started(scope)
                for offset, count in requests:
                    await in_flight.acquire()
                    with net.peer_errors(channel, "read", REQUEST_TIMEOUT):
                        await channel.send({"type": "read", "res": self.res, "logfile": name,
                                            "offset": offset, "max": count})

        async def append_all():
            nonlocal appended
            async with received:
                async for offset, data, buffer in received:
                    keep = hold and await self._room_to_hold(name, offset, data)
                    await trio.to_thread.run_sync(append_one_way, path, data, offset)
                    appended = offset + len(data)
                    if keep:
                        self.held.setdefault(name, []).append((offset, data, buffer))
                    else:
                        data = None     # appended: the buffer may be received into
                        _give_back(buffer)
                    worker.rates["fetch"].add(appended - offset)
                    worker.metrics.fetched.labels(self.res).inc(appended - offset)
                    self._note_appended()

        try:
            async with trio.open_nursery() as nursery:
                sending = await nursery.start(send_all)
                nursery.start_soon(append_all)
                async with received_send:
                    for offset, count in requests:
                        buffer = _take_fetch_buffer()
                        skew = offset % DIRECT_ALIGN
                        try:
                            with worker.channels.awaiting(source, "read"), \
                                    net.peer_errors(channel, "read", REQUEST_TIMEOUT), \
                                    trio.fail_after(REQUEST_TIMEOUT):
                                reply, data = await channel.receive(
                                    into=memoryview(buffer)[skew:skew + count])
                            if reply.get("type") != "data":
                                raise PeerError(f"{source} refused to read {name}: "
                                                f"{reply.get('reason', reply)}")
                        except PeerError as exc:
                            # what came before it is appended all the same
                            failure = exc
                            sending.cancel()
                            break
                        in_flight.release()
                        await received_send.send((offset, data, buffer))
                        if len(data) < count:
                            # what was asked after it would leave a gap
                            short = True
                            sending.cancel()
                            break
        except BaseExceptionGroup as group:
            if any(isinstance(exc, PeerError) for exc in group.exceptions):
                await worker.channels.drop(source, PORT_FETCH)
            raise group.exceptions[0] from None
        if failure is not None or short:   # replies to requests after it may be on their way
            await worker.channels.drop(source, PORT_FETCH)
        if failure is not None:
            raise failure
        return appended - start

    def _no_room_to_fetch(self, cursor, local, remote, free):
        """Fetch waits until replay has made room (replayed logfiles are
        deleted). If everything here is replayed, no room will come: the
        logfile is larger than the state dir can hold. Said once in the log."""
        worker = self.worker
        margin = worker.daemon.fetch_free + FETCH_MAX
        if cursor is None or cursor.position < local.get(cursor.logfile, 0) or \
                self._next_logfile(cursor.logfile) is not None:
            worker.waiting_for(f"fetch waits for room in the state dir ({free} bytes free, it "
                               f"stops {margin} bytes above full): replay makes room")
            return
        reason = (f"fetch cannot go on: {cursor.logfile} ({remote.get(cursor.logfile, 0)} bytes "
                  f"at the source) does not fit into the state dir ({free} bytes free, fetch "
                  f"stops {margin} bytes above full): make room there, or `marsadm invalidate "
                  f"{self.res}` syncs this replica anew")
        worker.waiting_for(reason)
        if worker.stall != ("room", cursor.logfile):
            log.error("%s: %s", self.res, reason)
            worker.stall = ("room", cursor.logfile)

    def _complete_here(self, state, logfile, local):
        """This host holds `logfile` up to the end its origin closed it at."""
        closed = self._closed(state, logfile, [*local, *self.remote])
        return logfile in local and closed is not None and local[logfile] >= closed[0]

    def _cursor_logfile_gone(self, state, source, cursor):
        """The logfile the replay cursor is in was deleted on the source before
        this host fetched all of it. That happens to a joining host: it starts its
        sync from the source's log position as the metadata showed it, and
        the source may have rotated and deleted that logfile before it learned
        of the new member. While the replica is not consistent yet (replay
        short of `syncpos`) it has nothing to lose and syncs anew (what
        `invalidate` does). A consistent one cannot catch up from the logs
        any more but holds a usable past state: the operator decides."""
        worker = self.worker
        syncpos = state.resource_value(self.res, syncpos_name(worker.host))
        if syncpos and cursor.order < Cursor.parse(syncpos).order:
            log.warning("%s: %s deleted %s before this host fetched it, and this replica is "
                        "not consistent yet: full sync again", self.res, source, cursor.logfile)
            keys = [res_key(self.res, rest) for rest in state.resources().get(self.res, {})]
            worker.write(resync_changes(keys, self.res, worker.host))
            self.cursor = None
            worker.sync.done = None
            return True
        worker.wait(f"{cursor.logfile} is gone on {source} before this host fetched all of it: "
                    f"this replica cannot catch up from the logs (it holds a consistent older "
                    f"state); `marsadm invalidate {self.res}` syncs it anew")
        return False

    async def _room_to_hold(self, logfile, start, data):
        """Whether to keep a reply of fetched bytes in memory for the
        replay alongside, which then need not read them back from the
        logfile (appended past the page cache); asked before the reply is
        appended, so that replay finds in memory what it finds in the file.
        A resource holds HELD_MAX replies at most: the fetch waits for
        replay to give some back (else it runs ahead, and replay reads what
        could not be held from the disk), unless replay waits for appends
        itself (it stands at a logfile's end). All resources hold
        HELD_TOTAL at most."""
        while self._held_count() >= HELD_MAX and not self.replay_idle:
            await self.room.wait()
        held = self.held.get(logfile)
        return isinstance(data, memoryview) and self._held_count() < HELD_MAX and \
            sum(f._held_count() for f in _followers) < HELD_TOTAL and \
            (not held or held[-1][0] + len(held[-1][1]) == start)

    def _held_count(self):
        return sum(len(pieces) for pieces in self.held.values())

    def _release_held(self, cursor):
        """Give back what replay has passed: pieces of logfiles before the
        cursor's, and those of its logfile that end at or before it. Only
        here, between replay steps: a replay thread reads the pieces it was
        given (their buffers are received into again once given back)."""
        number = parse_logfile_name(cursor.logfile)[0]
        for logfile in list(self.held):
            pieces = self.held[logfile]
            if logfile == cursor.logfile:
                keep = [piece for piece in pieces if piece[0] + len(piece[1]) > cursor.position]
            elif parse_logfile_name(logfile)[0] < number:
                keep = []
            else:
                continue
            for _, _, buffer in pieces[:len(pieces) - len(keep)]:
                _give_back(buffer)
            if keep:
                self.held[logfile] = keep
            else:
                del self.held[logfile]
        self._note_room()

    # ----------------------------------------------------------------- replay
    async def _replay(self, state, until=None):
        worker = self.worker
        cursor = self.current_cursor(state)
        if cursor is None:
            local = list_logfiles(self.dir)
            if not local:
                return False
            cursor = self.cursor = Cursor(local[0][0], 0, 0)
        path = self.dir / cursor.logfile
        if not path.exists():
            return False
        disk = state.disk(self.res)
        # the size before the scan: fetch may append meanwhile, and a torn
        # record at the end of what the scan saw is no damage then
        size = os.path.getsize(path)
        # where the history ends this logfile, where known: a copy fetched
        # further (from a primary that died, past where the new one took
        # over) is not applied past it — applied, it made this replica a
        # split brain where it could follow the new primary
        # (Not this host's own logfile: its disk may hold the write-back of
        # records past that end — the split brain is said, not hidden.)
        own = parse_logfile_name(cursor.logfile)[1] == worker.host
        known = None if own else self._closed(state, cursor.logfile)
        # a copy of another host's logfile that is not complete here yet
        growing = not own and (known is None or size < known[0])
        if cursor.position < size and (known is None or cursor.position < known[0]):
            held = [(start, view) for start, view, _ in self.held.get(cursor.logfile, ())]
            result = await trio.to_thread.run_sync(_replay_step, str(path), disk, cursor.position,
                                                   held, known[0] if known else None, growing)
            self._release_held(Cursor(cursor.logfile, result.position, size))
        else:                       # nothing new to replay (an idle secondary): no thread
            result = ReplayResult(cursor.position, 0, 0, None, None)
        busy = False
        if result.applied:
            self._note_digests(cursor, result)
            self.cursor = Cursor(cursor.logfile, result.position, size)
            worker.rates["replay"].add(result.bytes)
            worker.metrics.replayed.labels(self.res).inc(result.bytes)
            busy = True
        damage = result.damage
        if damage is not None and not damage.torn_tail:
            worker.report(damage=str(damage))
            worker.set_actual(**{"replay-code": -5})
            await self.persist_cursor(force=True)
            return False
        worker.report(damage=None)
        closed = self._closed(state, self.cursor.logfile)
        if closed is not None and self.cursor.position >= closed[0]:
            if self.cursor.position > closed[0]:
                raise SplitBrain(f"this host replayed {self.cursor.logfile} to "
                                 f"{self.cursor.position}, beyond its end {closed[0]}")
            if size < closed[0]:
                # Replay began at the end (a sync that started where its source's
                # checkpoint stood): the version covers every record of the
                # logfile, so it waits for the whole copy. From a part it
                # differed from the origin's, a split brain that was none.
                await self.persist_cursor(force=False)
                return busy
            mine = await worker.history.write_version(self.cursor.logfile, closed[0],
                                                      self._digests_to(closed[0]))
            if not versions_agree(mine, closed[1]):
                raise SplitBrain(f"version of {self.cursor.logfile} differs from its origin's")
            following = self._next_logfile(self.cursor.logfile)
            if following is not None:
                self.cursor = Cursor(following, 0, 0)
                worker.stall = None
                await self.persist_cursor(force=True)
                return True
        elif damage is not None and closed is not None and size >= closed[0]:
            # A complete copy of a closed logfile that ends in a torn record before
            # its end: damaged. (A shorter copy is only not fetched completely yet.)
            worker.report(damage=str(damage))
        elif closed is None and self.cursor.position >= size and \
                self._next_logfile(self.cursor.logfile) is not None:
            self._replay_stalled(self.cursor.logfile)
        await self.persist_cursor(force=False)
        return busy

    def _note_digests(self, cursor, result):
        """Keep the replayed records' digest fields of the cursor's logfile,
        from its start on, joined (what its version is made of; at most
        DIGESTS_KEPT bytes). Read from the headers instead, a logfile
        appended past the page cache (up to 256 MiB) was read from the
        disk, inside the downtime when at a handover."""
        logfile, end, joined = self.digests
        if cursor.position == 0:
            logfile, end, joined = cursor.logfile, 0, bytearray()
        if (logfile, end) != (cursor.logfile, cursor.position) or joined is None or \
                len(joined) + 20 * len(result.digests) > DIGESTS_KEPT:
            self.digests = (None, 0, None)      # not known from the start, or too many
            return
        for field in result.digests:
            joined += field
        self.digests = (logfile, result.position, joined)

    def _digests_to(self, end):
        """The digest fields of the cursor's logfile up to `end` (joined,
        as `version_value` takes them), or None."""
        logfile, known_end, joined = self.digests
        if joined is None or (logfile, known_end) != (self.cursor.logfile, end):
            return None
        return [bytes(joined)]

    def _replay_stalled(self, logfile):
        """Replay has reached the end of `logfile` as fetched, the next one is
        here, but the origin's version of `logfile` (the end it closed it
        at) is not: without it replay cannot move on. Usually for a moment
        (the metadata comes a round later than the data); if it lasts, the
        view says why and the log says it once."""
        worker = self.worker
        number, origin = parse_logfile_name(logfile)
        reason = (f"replay stands at the end of {logfile}: {version_name(number, origin)} "
                  f"(where {origin} closed it) is not known here; if it does not come, "
                  f"`marsadm invalidate {self.res}` syncs this replica anew")
        worker.waiting_for(reason)
        now = time.monotonic()
        if worker.stall is None or worker.stall[0] != logfile:
            worker.stall = (logfile, now)
        elif worker.stall[1] is not None and now - worker.stall[1] >= STALL_LOGGED_AFTER:
            log.warning("%s: %s", self.res, reason)
            worker.stall = (logfile, None)      # said once

    def _closed(self, state, logfile, names=None):
        """`closed_end` of `logfile`, where its origin did not close it
        with the host that went on after it among `names` (default: those
        at the source, as last listed: a replay step lists no directory) as
        the fallback: after a forced take-over, the new primary's end of
        the dead one's logfiles (`successor_of`)."""
        return closed_end(state, self.res, logfile,
                          successor_of(logfile, self.remote if names is None else names))

    def _next_logfile(self, logfile):
        return logfile_after(logfile, (name for name, _ in list_logfiles(self.dir)))

    def gone_at_source(self, logfile):
        """Whether the source's last listing shows `logfile` deleted: not in
        it, a later logfile in it (logfiles go, and do not come back)."""
        number = parse_logfile_name(logfile)[0]
        return logfile not in self.remote and \
            any(parse_logfile_name(name)[0] > number for name in self.remote)

    def persist_due(self):
        """When the replay cursor is due to be written (monotonic time), or
        None when the metadata has it already."""
        if self.cursor is None or str(self.cursor) == self.persisted:
            return None
        return self.cursor_persisted + PERSIST_EVERY

    async def persist_cursor(self, force):
        worker = self.worker
        now = time.monotonic()
        current = str(self.cursor) if self.cursor else ""
        if not current or current == self.persisted:
            return
        if force or now - self.cursor_persisted >= PERSIST_EVERY:
            # off the event loop: the fetch goes on meanwhile
            await trio.to_thread.run_sync(fdatasync_path, worker.state().disk(self.res))
            worker.write({res_key(self.res, replay_name(worker.host)): current})
            self.cursor_persisted = now
            self.persisted = current
            worker.report(cursor_persisted=current)

    def _report_rest(self):
        """Bytes still to fetch and to replay, from the source's listing."""
        cursor = self.cursor
        if cursor is None:
            return
        first = parse_logfile_name(cursor.logfile)[0]
        local = dict(list_logfiles(self.dir))
        fetch_rest = replay_rest = 0
        for name, size in self.remote.items():
            if parse_logfile_name(name)[0] < first:
                continue
            fetch_rest += max(0, size - local.get(name, 0))
        for name, size in local.items():
            if parse_logfile_name(name)[0] < first:
                continue
            replay_rest += size - (cursor.position if name == cursor.logfile else 0)
        self.rest = fetch_rest + max(0, replay_rest)
        self.worker.report(fetch_rest=fetch_rest, replay_rest=max(0, replay_rest),
                           work_rest=self.rest, cursor=str(cursor))
        self.worker.metrics.lag.labels(self.res).set(self.rest)

    # ------------------------------------------------------------ local logs
    def drop_local_logs(self):
        for name, _ in list_logfiles(self.dir):
            (self.dir / name).unlink(missing_ok=True)
        self.remote = {}

    def delete_logs_before(self, number):
        """Delete local logfiles numbered below `number` (every member's cursor is past them)."""
        deleted = 0
        for name, _ in list_logfiles(self.dir):
            if parse_logfile_name(name)[0] < number:
                (self.dir / name).unlink(missing_ok=True)
                deleted += 1
        return deleted


def _replay_step(path, disk, position, held=(), until=None, growing=False):
    """One bounded replay step: at most 256 records (each at most 16 MiB),
    none past `until`; the disk is synced before the cursor is recorded
    (persist_cursor). `growing`: see `LogScan`."""
    fd = os.open(disk, os.O_WRONLY)
    try:
        with DiskWriter(disk) as direct:
            return replay(path, fd, position, limit=256, sync=False, direct=direct, held=held,
                          until=until, growing=growing)
    finally:
        os.close(fd)


_disk_sync_failures = {}         # `_disk_identity` -> (its path then, the OSError of its fdatasync)


FS_IOC_GETVERSION = 0x80087601     # _IOR('v', 1, long): an inode's generation


def _disk_identity(fd):
    """Which file (or device node) the replica's disk open at `fd` is: a
    disk made anew at the same path (the replica left and joined again on
    a new LV of the same name) is another, whose fdatasyncs owe nothing to
    the old one's. A regular file's inode number is given again once it
    was removed (ext4 gives a file-backed LV made anew the number of the
    one just removed): its generation, where its filesystem keeps one,
    tells the two apart. (Asked of regular files alone: on a device node
    the ioctl would go to the device.)"""
    stat = os.fstat(fd)
    generation = None
    if S_ISREG(stat.st_mode):
        try:
            generation = struct.unpack("I", fcntl.ioctl(fd, FS_IOC_GETVERSION, bytes(8))[:4])[0]
        except OSError:
            pass                # (a filesystem that keeps none: device and number alone)
    return stat.st_dev, stat.st_ino, stat.st_rdev, generation


def fdatasync_path(path):
    """fdatasync of the file (a replica's disk) at `path`, before a replay
    cursor or sync progress that counts on it is recorded. A failure is
    kept, for every later call until marsd restarts: Linux reports a lost
    write-back once (to the first fd that asks, or one opened after it
    that has not seen it), and the next fdatasync of a new fd succeeds
    without those blocks, so a cursor went past records replay had
    written and the disk lost. After a restart, replay and the sync go on
    from what was recorded before, and write them again. The failure is
    kept for the file, not its path: a disk re-created at the same path
    (it refused every replay and sync until a restart) starts clean."""
    fd = os.open(path, os.O_RDONLY)
    try:
        identity = _disk_identity(fd)
        failed = _disk_sync_failures.get(identity)
        if failed is None:
            try:
                os.fdatasync(fd)
                return
            except OSError as exc:
                failed = _disk_sync_failures[identity] = (path, exc)
    finally:
        os.close(fd)
    where = path if failed[0] == path else f"{path} (then at {failed[0]})"
    raise OSError(errno.EIO, f"an fdatasync of {where} failed ({failed[1]}): "
                  "blocks written to it may be lost, so no replay cursor or sync progress "
                  "past them is recorded; check the disk, then restart marsd (replay and "
                  "sync go on from where they were durable)")


FETCH_BUFFERS_KEPT = 8          # reply buffers kept for the next fetch step, of any resource
_fetch_buffers = []             # the free ones (the event loop's thread takes and gives back)
DIGESTS_KEPT = 512 << 10        # bytes of record digests a resource keeps for its next version
HELD_MAX = 4                    # replies a resource holds for replay at most
HELD_TOTAL = 16                 # replies all resources hold at most
_followers = weakref.WeakSet()


def _take_fetch_buffer():
    """A buffer for fetch replies, page-aligned with a block to spare (a
    reply is received at its logfile offset's place in a block, so that
    its whole blocks can be written direct): a new bytearray of 8 MiB per
    reply was zeroed and faulted in, a fifth of a secondary's CPU under a
    500 MiB/s sequential writer (memset 10.6 %, page faults 8 %, perf)."""
    return _fetch_buffers.pop() if _fetch_buffers else aligned_buffer(FETCH_MAX + DIRECT_ALIGN)


def _give_back(buffer):
    if len(_fetch_buffers) < FETCH_BUFFERS_KEPT:
        _fetch_buffers.append(buffer)


def _append_at(path, offset, data):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)

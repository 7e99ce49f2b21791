"""The log history of one resource: the version chain and split brain.

After a logfile is closed (primary) or replayed to its end (secondary), a
host records `version-<nr>-<host>`, chained to its version of the logfile
before (the format is in `mars.replay`). Two hosts that applied the same
history hold equal versions; a secondary moves from logfile N to N+1 only
when its version of N equals the one N's origin wrote.

The module functions answer from the metadata alone (the same on every
host, so the views ask them too); `History` writes and prunes this host's
versions for a `ResourceWorker`."""

import trio

from mars.keys import (UNLOGGED_PREFIX, is_version_name, replay_name, res_key, syncpos_name,
                       version_host, version_name, version_number)
from mars.logfile import parse_logfile_name
from mars.replay import (Cursor, lowest_needed_logfile, parse_version, record_digests,
                         version_value)

VERSIONS_KEPT = 8                # own versions kept below the newest when no member needs them


class SplitBrain(Exception):
    pass


def recorded_versions(keys):
    """(host, head, logfile, end) of every well-formed `version-<nr>-<host>`
    among a resource's keys (host names may contain dashes)."""
    for rest, value in keys.items():
        if not is_version_name(rest):
            continue
        try:
            head, logfile, end = parse_version(value)
            parse_logfile_name(logfile)
        except ValueError:
            continue
        yield version_host(rest), head, logfile, end


def history_conflict(state, res, members):
    """A split brain, as the metadata shows it (the same on every host):
    two logfiles with one number, two versions of one logfile that differ,
    or a replay cursor beyond the end its origin closed the logfile at.
    Returns the reason, or None."""
    keys = state.resources().get(res, {})
    names, versions = {}, {}
    for host, head, logfile, end in recorded_versions(keys):
        names.setdefault(parse_logfile_name(logfile)[0], set()).add(logfile)
        versions.setdefault(logfile, {})[host] = (head, end)
    for host in members:
        cursor = keys.get(replay_name(host))
        if cursor:
            try:
                parsed = Cursor.parse(cursor)
                names.setdefault(parse_logfile_name(parsed.logfile)[0], set()).add(parsed.logfile)
            except ValueError:
                continue
            for other, (_, end) in versions.get(parsed.logfile, {}).items():
                if parsed.position > end:
                    return (f"{host} replayed {parsed.logfile} to {parsed.position}, beyond "
                            f"its end {end} as {other} closed it")
    for number, found in names.items():
        if len(found) > 1:
            return f"logfiles {', '.join(sorted(found))} share number {number}"
    for logfile, by_host in versions.items():
        heads = {head for head, _ in by_host.values()}
        if len(heads) > 1:
            return f"hosts {', '.join(sorted(by_host))} hold different versions of {logfile}"
    return None


def missed_unlogged(state, res, host, since=None):
    """(origin, Cursor) where another member of `res` wrote to its disk
    without logging (emergency mode: `unlogged-<origin>`, where its log
    stopped) after `host`'s replica was synced (its `syncpos`; the
    creator's, which has none, at the start; or `since`, a Cursor): what
    came after is in no log `host` can replay, its replica needs
    `invalidate`. None where no such mark comes after its sync."""
    keys = state.resources().get(res, {})
    if since is None:
        syncpos = keys.get(syncpos_name(host))
        try:
            since = Cursor.parse(syncpos) if syncpos else None
        except ValueError:
            since = None
    for origin, mark in unlogged_marks(keys):
        if origin != host and (since is None or mark.order >= since.order):
            return origin, mark
    return None


def unlogged_marks(keys):
    """(origin, Cursor) of every well-formed `unlogged-<origin>` among a
    resource's keys."""
    for name, value in sorted(keys.items()):
        if name.startswith(UNLOGGED_PREFIX):
            try:
                yield name[len(UNLOGGED_PREFIX):], Cursor.parse(value)
            except ValueError:
                continue


def passed_unlogged(state, res, host):
    """Whether every other member of `res` synced after `host`'s own
    `unlogged-<host>` mark (its `syncpos` past it): none missed those
    writes any more, the mark may go. (Kept through an invalidate of
    `host`: a replica synced before it still lacks them.)"""
    keys = state.resources().get(res, {})
    mark = next((mark for origin, mark in unlogged_marks(keys) if origin == host), None)
    if mark is None:
        return False
    for member in state.members(res):
        syncpos = keys.get(syncpos_name(member))
        try:
            if member != host and (not syncpos or Cursor.parse(syncpos).order <= mark.order):
                return False
        except ValueError:
            return False
    return True


def final_version(state, res):
    """(logfile, end, origin) of the newest logfile closed by its origin."""
    best = None
    for host, _, logfile, end in recorded_versions(state.resources().get(res, {})):
        number, origin = parse_logfile_name(logfile)
        if origin == host and (best is None or number > best[0]):
            best = (number, logfile, end, origin)
    return best[1:] if best else None


def closed_end(state, res, logfile, successor=None):
    """(end, version) if the logfile's origin closed it; where the origin
    did not (it died, and another host took over with `primary --force`),
    where `successor` — the origin of the logfile after it — ended it when
    its device came up, which is where the history goes on; else None.
    (Were the origin's version to come later and differ, that is the
    split brain `history_conflict` reports.)"""
    number, origin = parse_logfile_name(logfile)
    value = state.resource_value(res, version_name(number, origin))
    if not value and successor not in (None, origin):
        value = state.resource_value(res, version_name(number, successor))
    if not value:
        return None
    _, name, end = parse_version(value)
    return (end, value) if name == logfile else None


class History:
    """This host's versions of a resource: written for every logfile it
    closes or replays to its end, pruned once no member needs them."""

    def __init__(self, worker):
        self.worker = worker

    async def write_version(self, logfile, end, digests=None):
        """version-<nr>-<host> for a logfile this host closed or replayed to
        its end. `digests`: its records' digest fields up to `end`, when the
        caller has them (else they are read from the headers)."""
        worker = self.worker
        number, _ = parse_logfile_name(logfile)
        key = worker.key(version_name(number, worker.host))
        path = worker.dir / logfile
        if digests is None:
            digests = await trio.to_thread.run_sync(record_digests, path, end) \
                if path.exists() else []
        state = worker.state()      # the version just written for the logfile before counts
        previous = self._previous_version(state, number)
        value = version_value(previous, logfile, end, digests)
        worker.write({key: value})
        self._prune_versions(state, number)
        return value

    def _previous_version(self, state, number):
        keys = state.resources().get(self.worker.res, {})
        mine = keys.get(version_name(number - 1, self.worker.host))
        if mine:
            return mine
        for rest, value in sorted(keys.items()):
            if rest.startswith(version_name(number - 1, "")):
                return value
        return ""

    def _prune_versions(self, state, number):
        """Drop this host's versions that no member needs any more: a member
        replaying logfile N moves on to N+1 only with N's version from its
        origin, and chains its own version of N to N-1's. So versions from
        the lowest member cursor's logfile minus one stay, however far back
        that is (a secondary paused for a day); all stay while a member has
        no cursor yet (syncing: it may start anywhere)."""
        res, host = self.worker.res, self.worker.host
        lowest = lowest_needed_logfile(state, res)
        if lowest is None:
            return
        keep_from = min(number - VERSIONS_KEPT, lowest - 1)
        stale = [res_key(res, rest) for rest in
                 own_versions_below(state.resources().get(res, {}), host, keep_from)]
        if stale:
            self.worker.store.delete(stale)


def own_versions_below(names, host, number):
    """The names of `host`'s own versions of logfiles below `number`, among
    a resource's key names. By the whole host name: `version-3-db-a` is
    not host a's (a suffix match took it, and deleting another host's key
    failed the step)."""
    found = []
    for name in names:
        if is_version_name(name) and version_host(name) == host:
            try:
                if version_number(name) < number:
                    found.append(name)
            except ValueError:
                continue                # not a version name after all: not ours to delete
    return found

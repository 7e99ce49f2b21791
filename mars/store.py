"""The metadata store: tuples (key, value, lamport stamp, origin) in SQLite.

One store per host, at `<state dir>/metadata.sqlite`, in WAL mode so that
marsd and any number of marsadm processes read and write it concurrently.

Rules (MARS.md, "State directory and metadata store"):
- last writer wins per key, ordered by (stamp, origin);
- a key that carries a host name is written only by that host (`keys.owner_of`);
  tuples from peers that break this are rejected;
- deletion writes a tombstone (value `.deleted`); `purge_tombstones` removes it
  once it is old enough and every live peer has reported seeing it;
- `vector` records, per origin, the newest stamp this store has received from
  it. Peers pull "everything after my vector", so a round costs O(changes).
  Stamps of one origin are strictly increasing because every local write takes
  its stamp inside an immediate (writer-exclusive) transaction from the
  persisted clock, so the vector is exact and nothing is skipped;
- what one host writes for another (`marsadm --host=<dead host>
  leave-resource --force` on a survivor: that host's keys) has the origin
  `<host>@<writer>`: under the host's own origin it would claim to be the
  host's newest history, and the host, back, would never pull it (its own
  writes since are newer), nor would its peers pull what it wrote before.
"""

import contextlib
import logging
import sqlite3
import time
from typing import NamedTuple

from mars.errors import MarsError
from mars.keys import (DELETED, HEARTBEAT_PREFIX, ClusterState, ip_key, owner_of, resource_of,
                       time_key)
from mars.lamport import MAX_STAMP, LamportClock

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS tuples (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL,
    stamp  INTEGER NOT NULL,
    origin TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tuples_by_origin ON tuples (origin, stamp);
CREATE INDEX IF NOT EXISTS tombstones ON tuples (stamp) WHERE value = '.deleted';
CREATE TABLE IF NOT EXISTS vector (origin TEXT PRIMARY KEY, stamp INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS exclusions (
    kind TEXT NOT NULL, name TEXT NOT NULL, until INTEGER NOT NULL, uuid TEXT NOT NULL,
    PRIMARY KEY (kind, name)
);
-- when a host's report of its time (actual-<host>/time, of `stamp`) arrived
-- here from a peer: this host's own, never sent (`Store.live_values`)
CREATE TABLE IF NOT EXISTS heard (
    host TEXT PRIMARY KEY, stamp INTEGER NOT NULL, arrival REAL NOT NULL
);
"""

MAX_KEY_LENGTH = 512
MAX_VALUE_LENGTH = 4096

# How far a peer's stamp may run ahead of this host's clock (its wall clock,
# or the newest stamp it holds, if that is later). A member whose clock runs
# further ahead would drag every host's Lamport clock there: later writes of
# hosts with right clocks lost to its tuples, and tombstones waited that long
# for their purge. Its tuples are refused (and asked for again at every
# pull) until they are within the bound; its messages move no clock.
MAX_STAMP_AHEAD_NS = 24 * 3600 * 10**9


class PeerBoundClock(LamportClock):
    """The Lamport clock of a store: a stamp from elsewhere more than
    MAX_STAMP_AHEAD_NS ahead of it is not observed (`observe`); this host's
    own persisted history is, whatever it holds (`observe_own`): its stamps
    must go on increasing."""

    def too_far_ahead(self, stamp):
        return stamp > max(self._wall(), self.last) + MAX_STAMP_AHEAD_NS

    def observe(self, stamp):
        if not self.too_far_ahead(stamp):
            super().observe(stamp)

    def observe_own(self, stamp):
        super().observe(stamp)


class NotAMember(ValueError):
    """Tuples from a host that has left this cluster (split, leave) are refused."""


class MetaTuple(NamedTuple):
    """One metadata tuple. Ordering for last-writer-wins is (stamp, origin)."""

    key: str
    value: str
    stamp: int
    origin: str

    @property
    def deleted(self):
        return self.value == DELETED

    def newer_than(self, other):
        return other is None or (self.stamp, self.origin) > (other.stamp, other.origin)


def origin_host(origin):
    """The host whose keys tuples of `origin` may carry: `h2` of `h2` and of
    `h2@h1` (h1 wrote for h2)."""
    return origin.partition("@")[0]


def proxy_origin(host, writer):
    """The origin of what `writer` writes for `host` (itself: `host`)."""
    return host if writer in (None, host) else f"{host}@{writer}"


def check_tuple_shape(item):
    """Reject tuples that could not have come from a well-behaved host.
    A stamp at or past the clock's end (lamport.MAX_STAMP) is no stamp: the
    clock does not observe it, and stored (the persisted clock with it) it
    would pin its key, and its origin's vector, beyond every later write."""
    key, value, stamp, origin = item
    if not (isinstance(key, str) and isinstance(value, str) and isinstance(origin, str)
            and isinstance(stamp, int) and 0 <= stamp < MAX_STAMP):
        raise ValueError(f"malformed tuple {item!r}")
    if (not key or len(key) > MAX_KEY_LENGTH or len(value) > MAX_VALUE_LENGTH
            or key.startswith("/") or ".." in key.split("/") or "\n" in key + value):
        raise ValueError(f"malformed key or value in tuple for key {key[:80]!r}")
    owner = owner_of(key)
    if owner is not None and owner != origin_host(origin):
        raise ValueError(f"key {key!r} belongs to host {owner}, not to origin {origin}")
    return MetaTuple(key, value, stamp, origin)


class Store:
    """One host's metadata store."""

    def __init__(self, path, host, wall=time.time_ns, busy_timeout=30.0, on_commit=None,
                 writer=None):
        """`on_commit`: called after every transaction this connection
        commits (marsadm pokes marsd with it, marsd wakes its workers).
        `writer`: the host whose store this is, when it writes for `host`
        (see the module: the origin of its writes)."""
        self.path = path
        self.on_commit = on_commit
        self.host = host
        self.origin = proxy_origin(host, writer)
        self.writer = writer or host
        self.db = sqlite3.connect(str(path), timeout=busy_timeout, isolation_level=None,
                                  check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        self.wall = wall
        self.clock = PeerBoundClock(self._persisted_clock(), wall=wall)
        self.ahead_said = set()         # origins whose stamps far ahead were logged
        self.peer_seen = {}             # peer -> {origin: stamp}, see record_peer_vector
        self.commits = 0                # transactions committed through this connection
        self.touched = set()            # keys it changed since take_touched(); None: unknown

    def close(self):
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---------------------------------------------------------------- reading
    def _persisted_clock(self):
        row = self.db.execute("SELECT value FROM meta WHERE name='clock'").fetchone()
        return row[0] if row else 0

    def generation(self):
        """Changes whenever the store changed: through this connection (a
        count of commits) or through any other (SQLite's data_version, e.g.
        marsadm writing a wish). Cheap enough to poll every tick."""
        return self.commits, self.db.execute("PRAGMA data_version").fetchone()[0]

    def stamps(self):
        """{key: stamp} of every tuple, tombstones included: what changed
        between two looks."""
        return dict(self.db.execute("SELECT key, stamp FROM tuples"))

    def take_touched(self):
        """The keys this connection changed since the last call (None: some
        changes were not recorded by key: look at every key)."""
        touched, self.touched = self.touched, set()
        return touched

    def _touch(self, keys):
        if self.touched is not None:
            self.touched.update(keys)

    def get(self, key):
        """The stored tuple for `key` (tombstones included), or None."""
        row = self.db.execute(
            "SELECT key, value, stamp, origin FROM tuples WHERE key=?", (key,)).fetchone()
        return MetaTuple(*row) if row else None

    def value(self, key, default=""):
        item = self.get(key)
        return default if item is None or item.deleted else item.value

    def live_values(self, prefix=""):
        """{key: value} of every tuple that is not a tombstone; a host's
        report of its time no later than it arrived here (`_heard_by`)."""
        rows = self.db.execute(
            "SELECT key, value FROM tuples WHERE value != ? AND key >= ? AND key < ?",
            (DELETED, prefix, prefix + "\U0010ffff"))
        values = dict(rows)
        if HEARTBEAT_PREFIX.startswith(prefix) or prefix.startswith(HEARTBEAT_PREFIX):
            values.update(self._heard_by(prefix))
        return values

    def _heard_by(self, prefix):
        """{time key: value} of the hosts' reports of their time (their
        liveness) under `prefix` that claim a later time than they arrived
        here: the time of their arrival. A host whose clock runs ahead,
        dead, looked alive until its clock's time had come here too
        (`view-is-alive`, a failover refused). Capped here, where they are
        read, not in the store: the tuple a peer relays is the one its
        origin wrote (capped as it arrived at the relay, by a relay whose
        clock was behind, the report of a live host said it dead at every
        host that had it from there, and the copies of one stamp differed
        from host to host)."""
        capped = {}
        for host, reported, arrival in self.db.execute(
                "SELECT heard.host, tuples.value, heard.arrival FROM heard JOIN tuples "
                "ON tuples.key = ? || heard.host || '/time' AND tuples.stamp = heard.stamp",
                (HEARTBEAT_PREFIX,)):
            key = time_key(host)
            if not key.startswith(prefix):
                continue
            try:
                if float(reported) > arrival:
                    capped[key] = f"{arrival:.3f}"
            except ValueError:
                pass
        return capped

    def live_keys(self, prefix, suffix):
        """The keys from `prefix` to `suffix` of every tuple that is not a
        tombstone (matched by SQLite: no values read into Python)."""
        rows = self.db.execute(
            "SELECT key FROM tuples WHERE value != ? AND key >= ? AND key < ? "
            "AND substr(key, -?) = ?",
            (DELETED, prefix, prefix + "\U0010ffff", len(suffix), suffix))
        return [key for (key,) in rows]

    def state(self):
        """A ClusterState snapshot of the live tuples."""
        return ClusterState(self.live_values(), self.host)

    def newest_tombstone(self):
        """Stamp of the newest tombstone (0 if none): cheap, from an index."""
        row = self.db.execute("SELECT max(stamp) FROM tuples WHERE value = ?", (DELETED,)).fetchone()
        return row[0] or 0

    def tuples(self, include_tombstones=True):
        sql = "SELECT key, value, stamp, origin FROM tuples"
        params = ()
        if not include_tombstones:
            sql += " WHERE value != ?"
            params = (DELETED,)
        return [MetaTuple(*row) for row in self.db.execute(sql + " ORDER BY key", params)]

    def vector(self):
        """{origin: newest stamp received from that origin}."""
        return dict(self.db.execute("SELECT origin, stamp FROM vector"))

    def changes_since(self, vector):
        """Every tuple newer than what `vector` says the asker has, oldest first."""
        result = []
        origins = [row[0] for row in self.db.execute("SELECT origin FROM vector")]
        for origin in origins:
            since = vector.get(origin, -1)
            result.extend(MetaTuple(*row) for row in self.db.execute(
                "SELECT key, value, stamp, origin FROM tuples WHERE origin=? AND stamp>?",
                (origin, since)))
        result.sort(key=lambda item: item.stamp)
        return result

    # ---------------------------------------------------------------- writing
    @contextlib.contextmanager
    def _transaction(self):
        """An immediate (writer-exclusive) transaction: commit, or roll back
        on any error. Only one that changed rows counts as a commit."""
        before = self.db.total_changes
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        if self.db.total_changes != before:
            self.commits += 1
            if self.on_commit is not None:
                self.on_commit()

    def _stamp_in_transaction(self):
        self.clock.observe_own(self._persisted_clock())
        stamp = self.clock.now()
        self.db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('clock', ?)", (stamp,))
        return stamp

    def _raise_vector(self, origin, stamp):
        self.db.execute(
            "INSERT INTO vector (origin, stamp) VALUES (?, ?) "
            "ON CONFLICT(origin) DO UPDATE SET stamp=max(stamp, excluded.stamp)",
            (origin, stamp))

    def _origin_of(self, key, for_others):
        """The origin a write of `key` takes: this store's, or, with
        `for_others`, the proxy origin of the key's owner (see the module)."""
        owner = owner_of(key)
        if owner is None or owner == self.host:
            return self.origin
        if not for_others:
            raise MarsError(f"key {key!r} belongs to host {owner}; only {owner} may change it")
        return proxy_origin(owner, self.writer)

    def write(self, changes, dry_run=False, rewrite_unchanged=False, durable=True,
              for_others=False):
        """Write local changes atomically: {key: value}, value None deletes.

        Keys owned by another host are refused (MarsError) before anything is
        written, unless `for_others`: then they are written for their owner
        (its proxy origin, as `marsadm --host=<it>` does; a forced
        create-resource drops an earlier incarnation's leftover keys so).
        Unchanged values (unless `rewrite_unchanged`: a fresh stamp, so that
        the value wins over one written elsewhere before) and deletions of absent
        keys are skipped. `durable=False` skips the fsync (a heartbeat: a
        power cut may lose it, the next one replaces it).
        Returns the tuples written (all with one fresh stamp)."""
        origins = {key: self._origin_of(key, for_others) for key in changes}
        for key, value in changes.items():
            try:  # what peers would refuse must not be written here either
                check_tuple_shape((key, DELETED if value is None else str(value), 0, origins[key]))
            except ValueError as exc:
                raise MarsError(str(exc)) from None
        if dry_run:
            return [MetaTuple(key, DELETED if value is None else str(value), 0, origins[key])
                    for key, value in changes.items()]
        written = []
        with self._synchronous(durable), self._transaction():
            pending = []
            for key, value in changes.items():
                current = self.get(key)
                live = current is not None and not current.deleted
                if value is None and not live:
                    continue
                new_value = DELETED if value is None else str(value)
                if live and current.value == new_value and not rewrite_unchanged:
                    continue
                pending.append((key, new_value))
            if pending:
                stamp = self._stamp_in_transaction()
                for key, new_value in pending:
                    item = MetaTuple(key, new_value, stamp, origins[key])
                    self.db.execute(
                        "INSERT OR REPLACE INTO tuples (key, value, stamp, origin) VALUES (?,?,?,?)",
                        item)
                    written.append(item)
                for origin in {item.origin for item in written}:
                    self._raise_vector(origin, stamp)
                self._touch(key for key, _ in pending)
        return written

    def delete(self, keys, dry_run=False, for_others=False):
        return self.write({key: None for key in keys}, dry_run=dry_run, for_others=for_others)

    def apply(self, items, durable=True, sender=None, from_peer=False):
        """Merge tuples received from peers (or imported): last writer wins.

        Every tuple is validated first; a malformed one rejects the whole
        batch (ValueError) and nothing is written. Returns the tuples that
        changed this store. `durable=False` is for anti-entropy: what peers
        sent can be fetched again, so a power cut may lose the newest such
        transactions (never corrupt the store) and the fsync is skipped.
        With `sender`, the batch is applied only while that host is still a
        cluster member here (checked inside the transaction, so a split or a
        leave by another process cannot slip in between); else NotAMember.
        `from_peer`: what a peer sent over the network (anti-entropy, join,
        merge), not an import: a tuple stamped too far ahead of this host's
        clock is refused (`PeerBoundClock`; asked for again at the next
        pull), and when a host's report of its time arrived is noted: it
        counts no later than that (`_heard_by`)."""
        checked = [check_tuple_shape(tuple(item)) for item in items]
        changed = []
        if not checked:
            return changed
        with self._synchronous(durable), self._transaction():
            if sender is not None and self.value(ip_key(sender)) == "":
                raise NotAMember(f"host {sender} is not a member of this cluster (any more)")
            hosts, resources, cluster_ids = self.exclusions()
            newest, refused_origins = {}, set()
            for item in checked:
                if (owner_of(item.key) in hosts or resource_of(item.key) in resources
                        or (item.key == "uuid" and item.value in cluster_ids)):
                    refused_origins.add(item.origin)
                    continue
                if from_peer:
                    if self.clock.too_far_ahead(item.stamp):
                        self._say_ahead_once(item, sender)
                        refused_origins.add(item.origin)
                        continue
                if item.newer_than(self.get(item.key)):
                    if from_peer:
                        self._note_arrival(item)
                    self.db.execute(
                        "INSERT OR REPLACE INTO tuples (key, value, stamp, origin) VALUES (?,?,?,?)",
                        item)
                    changed.append(item)
                    self._touch((item.key,))
                newest[item.origin] = max(newest.get(item.origin, 0), item.stamp)
            # An origin with refused tuples keeps its vector: they are asked for
            # again, and taken once the exclusion is lifted (merge-cluster).
            for origin, stamp in newest.items():
                if origin not in refused_origins:
                    self._raise_vector(origin, stamp)
            top = max(newest.values(), default=0)
            self.clock.observe_own(top)     # what was taken: within the bound, or an import
            self.db.execute(
                "INSERT INTO meta (name, value) VALUES ('clock', ?) "
                "ON CONFLICT(name) DO UPDATE SET value=max(value, excluded.value)", (top,))
        return changed

    def _say_ahead_once(self, item, sender):
        if item.origin in self.ahead_said:
            return
        self.ahead_said.add(item.origin)
        ahead = (item.stamp - self.wall()) / 1e9
        log.warning(
            "refused tuples of %s%s stamped %.0f s ahead of this host's clock (more than %.0f s): "
            "the clock of %s, or this host's (%s: refusing every peer's tuples so, it is "
            "behind), is wrong; set it right (NTP). Its tuples are taken once they are "
            "within the bound", item.origin, f" (from {sender})" if sender else "", ahead,
            MAX_STAMP_AHEAD_NS / 1e9, origin_host(item.origin), self.host)

    def _note_arrival(self, item):
        """Where `item`, taken from a peer, is a host's report of its time:
        when it arrived here (`_heard_by`). A report of a host whose clock
        is right (behind this host's) needs none."""
        host = origin_host(item.origin)
        if item.deleted or item.key != time_key(host):
            return
        now = self.wall() / 1e9
        try:
            ahead = float(item.value) > now
        except ValueError:
            ahead = False
        if ahead:
            self.db.execute("INSERT OR REPLACE INTO heard (host, stamp, arrival) VALUES (?, ?, ?)",
                            (host, item.stamp, now))
        else:
            self.db.execute("DELETE FROM heard WHERE host = ?", (host,))

    @contextlib.contextmanager
    def _synchronous(self, durable):
        """Commits inside are fsync'ed (`durable`) or not: in WAL mode a
        power cut may then lose the newest of them, never corrupt the store."""
        if durable:
            yield
            return
        self.db.execute("PRAGMA synchronous=NORMAL")
        try:
            yield
        finally:
            self.db.execute("PRAGMA synchronous=FULL")

    def observe(self, stamp):
        """Advance the clock past a stamp carried by a peer's message."""
        self.clock.observe(stamp)

    # ------------------------------------------------------ tombstone purging
    def record_peer_vector(self, peer, vector):
        """Remember what a peer reported having (its pull requests carry its
        vector). Kept in memory: after a restart every live peer reports
        again within a round, and until then nothing is purged."""
        seen = self.peer_seen.setdefault(peer, {})
        for origin, stamp in vector.items():
            seen[origin] = max(seen.get(origin, -1), int(stamp))

    def purge_tombstones(self, retention_ns, live_peers, now_ns=None):
        """Remove tombstones older than `retention_ns` that every peer in
        `live_peers` has reported seeing. Returns the number purged."""
        now_ns = now_ns if now_ns is not None else time.time_ns()
        seen = self.peer_seen
        doomed = []
        for item in self.db.execute(
                "SELECT key, value, stamp, origin FROM tuples WHERE value=? AND stamp<?",
                (DELETED, now_ns - retention_ns)):
            item = MetaTuple(*item)
            if all(seen.get(peer, {}).get(item.origin, -1) >= item.stamp for peer in live_peers):
                doomed.append(item)
        if doomed:
            # Match the stamp too: a tombstone rewritten since (by marsadm) is newer
            # than what the peers have seen and must stay.
            with self._transaction():
                self.db.executemany("DELETE FROM tuples WHERE key=? AND value=? AND stamp=?",
                                    [(item.key, DELETED, item.stamp) for item in doomed])
        return len(doomed)

    # -------------------------------------------------- forgetting (split/leave)
    def exclude(self, hosts, resources, other_ids, seconds, cluster_id):
        """Refuse every incoming tuple owned by one of `hosts`, about one of
        `resources`, or setting the cluster id to one of `other_ids`, for
        `seconds` and while the cluster id stays `cluster_id`.
        After a split the hosts apply it one after another; until all have, a
        host of our own piece may still relay the other piece's tuples, and
        they must not come back. merge-cluster writes a new cluster id, which
        lifts the exclusion on every host."""
        until = time.time_ns() + int(seconds * 1e9)
        with self._transaction():
            self.db.executemany(
                "INSERT OR REPLACE INTO exclusions (kind, name, until, uuid) VALUES (?,?,?,?)",
                [("host", name, until, cluster_id) for name in hosts]
                + [("resource", name, until, cluster_id) for name in resources]
                + [("uuid", name, until, cluster_id) for name in other_ids])

    def unexclude(self, hosts, resources):
        """Accept these hosts and resources again (merge-cluster, join-cluster)."""
        self.db.executemany("DELETE FROM exclusions WHERE kind=? AND name=?",
                            [("host", name) for name in hosts]
                            + [("resource", name) for name in resources])

    def exclusions(self):
        """(hosts, resources, cluster ids) currently excluded."""
        found = {"host": set(), "resource": set(), "uuid": set()}
        for kind, name in self.db.execute(
                "SELECT kind, name FROM exclusions WHERE until > ? AND uuid = ?",
                (time.time_ns(), self.value("uuid"))):
            found[kind].add(name)
        return found["host"], found["resource"], found["uuid"]

    def adopt(self, origins):
        """Rewrite as this host's, with one fresh stamp, every shared tuple
        that one of `origins` wrote and that is still here, then forget those
        origins. After a split, the shared keys that hosts of the other pieces
        wrote (a resource's size, its designated primary) stay with the
        resource; kept under their old origin, they would keep that origin's
        vector row, which claims a complete prefix of its history although
        its own keys (`ips/ip-<host>`) were dropped. A later merge with that
        host would then never send those keys again: the peers would not see
        it. Returns the number of tuples adopted."""
        self.touched = None
        origins = self._with_proxies(origins)
        with self._transaction():
            rows = [(key, value) for origin in origins for key, value in self.db.execute(
                        "SELECT key, value FROM tuples WHERE origin=?", (origin,))
                    if owner_of(key) in (None, self.host)]
            if rows:
                stamp = self._stamp_in_transaction()
                self.db.executemany(
                    "INSERT OR REPLACE INTO tuples (key, value, stamp, origin) VALUES (?,?,?,?)",
                    [(key, value, stamp, self.host) for key, value in rows])
                self._raise_vector(self.host, stamp)
            for origin in origins:
                if not self.db.execute("SELECT 1 FROM tuples WHERE origin=? LIMIT 1",
                                       (origin,)).fetchone():
                    self.db.execute("DELETE FROM vector WHERE origin=?", (origin,))
        return len(rows)

    def _with_proxies(self, origins):
        """`origins` and the origins of what other hosts wrote for them."""
        hosts = set(origins)
        return list(dict.fromkeys([*origins, *(origin for origin in self.vector()
                                               if origin_host(origin) in hosts)]))

    def forget(self, keys, origins=()):
        """Drop tuples outright (no tombstones) and what is known of `origins`.

        Only for leaving a cluster or splitting one, where the dropped hosts
        stop talking to this one, so nothing can resurrect what was dropped.
        An origin's proxies (`<origin>@<writer>`) go with it."""
        self.touched = None
        origins = self._with_proxies(origins)
        with self._transaction():
            self.db.executemany("DELETE FROM tuples WHERE key=?", [(key,) for key in keys])
            for origin in origins:
                # An origin whose tuples partly stay (shared keys it wrote) keeps
                # its vector row: changes_since walks the vector to serve them.
                if not self.db.execute("SELECT 1 FROM tuples WHERE origin=? LIMIT 1",
                                       (origin,)).fetchone():
                    self.db.execute("DELETE FROM vector WHERE origin=?", (origin,))
                self.peer_seen.pop(origin, None)

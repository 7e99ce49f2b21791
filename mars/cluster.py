"""Cluster membership: create, join, merge, split, leave, update, wait.

The membership *is* the set of `ips/ip-<host>` tuples. Commands that talk to
peers do all their network reads and all their checks before they write
anything locally, so a refused or failed command leaves the store unchanged.
"""

import math
import uuid as uuidlib

import trio

from mars import antientropy, net, sshpeer
from mars.errors import MarsError, MarsTimeout, PeerError, PeerRefused
from mars.hostenv import PORT_META, resolve_address
from mars.keys import DELETED, IP_PREFIX, hosts_and_resources, ip_key, owner_of, resource_of
from mars.names import check_host
from mars.store import MetaTuple


# How long a host refuses the other pieces' tuples after a split: longer than
# it takes every host to apply it, short enough not to block a later re-merge
# of a host with the same name (merge-cluster lifts it at once anyway).
SPLIT_EXCLUSION_SECONDS = 600
DEAD_GRACE = 2.0        # seconds wait-cluster tries a peer before it counts as dead


class DryRunDone(Exception):
    """A dry run has said what it would do; nothing more to show."""


class Cluster:
    """Cluster operations of one host, on its store."""

    def __init__(self, env, store, timeout=60.0, dry_run=False, echo=print,
                 ssh_port=sshpeer.SSH_PORT):
        self.env = env
        self.store = store
        self.timeout = math.inf if timeout < 0 else timeout     # marsadm: -1 waits forever
        self.dry_run = dry_run
        self.echo = echo
        self.ssh_port = ssh_port
        self.key = None         # a peer's secret, checking a merge before it is taken

    # ----------------------------------------------------------- helpers
    def _state(self):
        return self.store.state()

    def _my_address(self, state=None, given=None):
        state = state or self._state()
        return state.host_ips().get(self.env.host) or resolve_address(self.env.host, given)

    def _require_member(self, state):
        if not state.in_cluster():
            raise MarsError(
                f"host {self.env.host} is not a member of any cluster: "
                "run create-cluster, or join-cluster <peer>")

    def _run(self, async_fn, *args):
        return trio.run(async_fn, *args)

    async def _connect(self, address, local_address, timeout=None):
        return await net.connect(address, PORT_META, self.env.host,
                                 self.key or self.env.cluster_key(),
                                 local_address=local_address, timeout=timeout or self.timeout,
                                 clock=self.store.clock)

    def ask(self, host, header, timeout=10.0):
        """One request to `host`'s marsd; returns its reply header. Raises
        PeerError when the host cannot be asked."""
        state = self._state()
        address = state.host_ips().get(host)
        if not address:
            raise PeerError(f"{host} is not in the cluster of {self.env.host}")

        async def one():
            channel = await self._connect(address, self._my_address(state), timeout)
            try:
                reply, _ = await net.request(channel, header, timeout=timeout)
            finally:
                await channel.aclose()
            return reply
        return self._run(one)

    def _report(self, items):
        for item in items:
            self.echo(f"would write {item.key} = {item.value}")

    # ------------------------------------------------------------ create
    def create(self, address=None, force=False):
        """Start a new cluster with this host as its only member."""
        state = self._state()
        if state.host_ips() and not force:
            raise MarsError(
                f"host {self.env.host} is already in a cluster with {', '.join(state.cluster_hosts())}: "
                "leave-cluster first (or --force to start over, dropping that membership)")
        address = resolve_address(self.env.host, address)
        changes = {"uuid": f"{uuidlib.uuid4()}", ip_key(self.env.host): address}
        if self.dry_run:
            return self._report(self.store.write(changes, dry_run=True))
        if force and state.host_ips():
            self.store.forget([item.key for item in self.store.tuples()],
                              origins=[h for h in self.store.vector() if h != self.env.host])
        self.env.create_cluster_key(replace=force)
        self.store.write(changes)

    # -------------------------------------------------------------- join
    def join(self, peer, peer_address=None, address=None):
        """Join the cluster of `peer`. Without the cluster secret here, or
        with another one (a host in no cluster has no use for its own), the
        peer's is taken over SSH first (sshpeer), as the kernel's marsadm
        does."""
        check_host(peer)
        state = self._state()
        if state.host_ips():
            raise MarsError(
                f"host {self.env.host} is already in a cluster with {', '.join(state.cluster_hosts())}: "
                "leave-cluster first, or use merge-cluster to join two clusters")
        peer_address = resolve_address(peer, peer_address)
        address = resolve_address(self.env.host, address)
        try:
            if not self.env.key_path.exists():
                self._take_secret_of(peer, peer_address)
            try:
                self._run(self._join, peer, peer_address, address)
            except PeerRefused as refused:
                self._take_secret_of(peer, peer_address, refused=refused)
                self._run(self._join, peer, peer_address, address)
        except DryRunDone:
            return

    def _take_secret_of(self, peer, peer_address, members=None, refused=None, secret=None):
        """The cluster secret of `peer` (over SSH, unless `secret` was taken
        already), written here and on `members` ({host: address}) first.
        Every member is tried (`true`) before any is changed; a failure
        half-way names who has which."""
        if self.dry_run:
            self.echo(f"would take the cluster secret of {peer} over ssh (port {self.ssh_port})"
                      + (f" and give it to {', '.join(sorted(members))}" if members else ""))
            raise DryRunDone()
        members = members or {}
        try:
            if secret is None:
                secret = sshpeer.fetch_secret(peer, peer_address, self.ssh_port, self.timeout)
        except MarsError as exc:
            if refused is None:
                raise
            raise MarsError(f"{refused}; taking its secret over ssh failed too: {exc}; nothing "
                            "changed") from None
        for host, address in sorted(members.items()):
            sshpeer.check_login(host, address, self.ssh_port, self.timeout)
        given = []
        for host, address in sorted(members.items()):
            try:
                sshpeer.install_secret(host, address, secret, self.ssh_port, self.timeout)
            except MarsError as exc:
                raise MarsError(
                    f"{exc}. The cluster secret of {peer} is now on "
                    f"{', '.join(given) or 'no host of this cluster'}; the others of "
                    f"{', '.join(sorted(members))} and {self.env.host} still have the old one: "
                    "run merge-cluster again once ssh works, or copy cluster.key by hand") from None
            given.append(host)
        self.env.write_cluster_key(secret)
        self.echo(f"took the cluster secret of {peer} over ssh"
                  + (f" (also given to {', '.join(given)})" if given else ""))

    async def _join(self, peer, peer_address, address):
        channel = await self._connect(peer_address, address)
        try:
            items, peer_vector = await antientropy.fetch(channel, {}, self.timeout)
            theirs = {item[0]: item[1] for item in items if item[1] != DELETED}
            if not any(key.startswith(IP_PREFIX) for key in theirs):
                raise MarsError(f"peer {peer} ({peer_address}) is not a member of a cluster itself")
            taken = theirs.get(ip_key(self.env.host))
            if taken is not None and taken != address:
                raise MarsError(
                    f"host name {self.env.host} is already used in that cluster by {taken}: "
                    "every host needs its own name")
            for key, value in theirs.items():
                if key.startswith(IP_PREFIX) and value == address and key != ip_key(self.env.host):
                    raise MarsError(f"address {address} is already used by {key[len(IP_PREFIX):]}")
            self.store.clock.observe(max((item[2] for item in items), default=0))
            mine = MetaTuple(ip_key(self.env.host), address, self.store.clock.now(), self.env.host)
            if self.dry_run:
                return self._report([mine])
            # The peer learns about us first: if that fails, nothing was written here.
            await antientropy.push(channel, [mine], self.timeout, admit=True)
            self.store.unexclude(*hosts_and_resources(item[0] for item in items))
            self.store.apply(list(items) + [mine], from_peer=True)
        finally:
            await channel.aclose()

    # ------------------------------------------------------------- merge
    def merge(self, peer, peer_address=None):
        """Merge the cluster of `peer` with ours. With different secrets the
        merged cluster takes the peer's (over SSH: it never crosses the MARS
        ports), given to this side's members too. With a peer that is a
        member here already: see `_make_known_to`."""
        check_host(peer)
        state = self._state()
        self._require_member(state)
        if peer in state.host_ips():
            self._run(self._make_known_to, state, peer, state.host_ips()[peer])
            return
        peer_address = resolve_address(peer, peer_address)
        try:
            self._run(self._merge, state, peer, peer_address)
        except PeerRefused as refused:
            # Another secret: the merged cluster takes the peer's; this
            # side's members get it over SSH before this host does.
            others = {host: address for host, address in state.host_ips().items()
                      if host != self.env.host}
            secret = None if self.dry_run else \
                self._check_merge(state, peer, peer_address, refused)
            try:
                self._take_secret_of(peer, peer_address, others, refused=refused, secret=secret)
            except DryRunDone:
                return
            self._run(self._merge, state, peer, peer_address)

    def _check_merge(self, state, peer, peer_address, refused):
        """Every check of a merge with `peer`, with its secret (over SSH)
        given to no host yet: a clash refuses the merge before this
        cluster's secret is replaced. Returns the secret."""
        try:
            secret = sshpeer.fetch_secret(peer, peer_address, self.ssh_port, self.timeout)
        except MarsError as exc:
            raise MarsError(f"{refused}; taking its secret over ssh failed too: {exc}; nothing "
                            "changed") from None
        self.key = secret.encode()
        try:
            self._run(self._merge, state, peer, peer_address, True)
        finally:
            self.key = None
        return secret

    async def _make_known_to(self, state, peer, peer_address):
        """`peer` is a member here: nothing to do if it lists this host too.
        If it does not (one side of a merge that the other never took in),
        everything this host has is sent to it again, as a merge does, so
        that a re-run of the merge repairs it instead of finding nothing to
        do for ever."""
        me = self.env.host
        try:
            channel = await self._connect(peer_address, self._my_address(state))
        except PeerError as exc:
            self.echo(f"{peer} is already a member of this cluster (not reachable to check "
                      f"that it lists {me}: {exc}); nothing to do")
            return
        try:
            items, _ = await antientropy.fetch(channel, {}, self.timeout)
            if any(item[0] == ip_key(me) and item[1] != DELETED for item in items):
                self.echo(f"{peer} is already a member of this cluster; nothing to do")
                return
            if self.dry_run:
                self.echo(f"would send {peer}, which does not list {me}, this cluster's "
                          "metadata again")
                return
            await antientropy.push(channel, self.store.changes_since({}), self.timeout,
                                   admit=True)
            self.echo(f"{peer} is a member here but did not list {me}: sent it this "
                      "cluster's metadata again")
        finally:
            await channel.aclose()

    async def _merge(self, state, peer, peer_address, check_only=False):
        channel = await self._connect(peer_address, self._my_address(state))
        try:
            items, peer_vector = await antientropy.fetch(channel, {}, self.timeout)
            theirs = {item[0]: item[1] for item in items if item[1] != DELETED}
            their_hosts = {key[len(IP_PREFIX):]: value for key, value in theirs.items()
                           if key.startswith(IP_PREFIX)}
            clashes = sorted(host for host, addr in their_hosts.items()
                             if host in state.host_ips() and state.host_ips()[host] != addr)
            if clashes:
                raise MarsError(
                    f"cannot merge: host names used in both clusters with different addresses: "
                    f"{', '.join(clashes)}")
            their_resources = {resource_of(key) for key in theirs
                               if resource_of(key) and key.endswith("/size")}
            # A resource of ours the peer got from us (a merge whose reply was
            # lost: the peer took our tuples, we wrote nothing) is no clash:
            # it holds one of our tuples of it as we hold it.
            ours = {resource_of(item[0]) for item in items
                    if resource_of(item[0]) and self.store.get(item[0]) == tuple(item)}
            duplicates = sorted((their_resources - ours) & set(state.all_resources()))
            if duplicates:
                raise MarsError(
                    f"cannot merge with {peer}: resources exist in both clusters: "
                    f"{', '.join(duplicates)}; rename or delete one side's first")
            if check_only:
                return
            if self.dry_run:
                self.echo(f"would merge with {peer}: hosts {', '.join(sorted(their_hosts))}")
                return
            await antientropy.push(channel, self.store.changes_since(peer_vector), self.timeout,
                                   admit=True)
            self.store.unexclude(*hosts_and_resources(item[0] for item in items))
            self.store.apply(items, from_peer=True)
            # A new cluster id for the merged cluster; it also lifts, on every
            # host, what an earlier split-cluster still excludes.
            self.store.write({"uuid": f"{uuidlib.uuid4()}"})
        finally:
            await channel.aclose()

    # ---------------------------------------------------- update / wait
    def update(self):
        """One two-way exchange with every peer now. Returns {host: reason} of failures."""
        state = self._state()
        self._require_member(state)
        return self._run(self._update_all, state)

    async def _update_all(self, state):
        failures = {}
        address = self._my_address(state)

        async def one(host, peer_address):
            try:
                channel = await self._connect(peer_address, address)
                try:
                    await antientropy.exchange(channel, self.store, self.timeout)
                finally:
                    await channel.aclose()
            except PeerError as exc:
                failures[host] = str(exc)

        async with trio.open_nursery() as nursery:
            for host in state.peers():
                nursery.start_soon(one, host, state.host_ips()[host])
        return failures

    def wait(self, hosts_of=None, ping_timeout=5.0):
        """Wait until marsd answers on every host in `hosts_of(state)`
        (default: the cluster's), as the kernel's `wait-cluster` does: this
        host's marsd, and a peer that refuses us (another cluster secret:
        alive, misconfigured), are waited for (MarsTimeout after the
        timeout); a peer that does not answer within DEAD_GRACE (or the
        timeout, if shorter) counts as dead and is not waited for. Returns
        {dead peer: why}, for a warning. The hosts come from the snapshot it
        checks them against: taken from an earlier one, a split-cluster in
        between made them "not cluster members" (seen in CI: one screener
        job's readiness check while another job's cleanup split)."""
        state = self._state()
        self._require_member(state)
        hosts = hosts_of(state) if hosts_of else state.cluster_hosts()
        unknown = [host for host in hosts if host not in state.host_ips()]
        if unknown:
            raise MarsError(f"not cluster members: {', '.join(unknown)}")
        return self._run(self._wait, state, hosts, ping_timeout)

    async def _wait(self, state, hosts, ping_timeout):
        address = self._my_address(state)
        missing = {host: "not yet asked" for host in hosts}
        refusing = set()        # alive but shut out (another secret): waited for, never dead
        started = trio.current_time()
        deadline = started + self.timeout
        grace = started + min(self.timeout, DEAD_GRACE)

        async def ping(host):
            peer_address = state.host_ips()[host]
            try:
                channel = await self._connect(peer_address, address,
                                              timeout=min(ping_timeout, self.timeout))
                try:
                    await net.request(channel, {"type": "ping"}, timeout=ping_timeout)
                finally:
                    await channel.aclose()
                missing.pop(host, None)
                refusing.discard(host)
            except PeerRefused as exc:
                missing[host] = str(exc)
                refusing.add(host)
            except PeerError as exc:
                missing[host] = str(exc)
                refusing.discard(host)

        while missing:
            async with trio.open_nursery() as nursery:
                for host in list(missing):
                    nursery.start_soon(ping, host)
            if not missing:
                break
            if self.env.host not in missing and not refusing and trio.current_time() >= grace:
                return dict(missing)
            if trio.current_time() >= deadline:
                details = "; ".join(f"{host}: {reason}" for host, reason in sorted(missing.items()))
                raise MarsTimeout(
                    f"timed out after {self.timeout:g}s, marsd not answering on "
                    f"{', '.join(sorted(missing))} ({details}); start marsd there or check the network")
            await trio.sleep(0.5)
        return {}

    # ------------------------------------------------------------- split
    def pieces(self, state):
        """Partition hosts into groups that share no resource (connected components)."""
        parent = {host: host for host in state.cluster_hosts()}

        def find(host):
            while parent[host] != host:
                parent[host] = parent[parent[host]]
                host = parent[host]
            return host

        for res in state.all_resources():
            members = [m for m in state.members(res) if m in parent]
            for other in members[1:]:
                parent[find(other)] = find(members[0])
        groups = {}
        for host in parent:
            groups.setdefault(find(host), []).append(host)
        pieces = []
        for hosts in groups.values():
            resources = sorted(res for res in state.all_resources()
                               if set(state.members(res)) & set(hosts)
                               or (not state.members(res) and self.env.host in hosts))
            pieces.append({"hosts": sorted(hosts), "resources": resources})
        for piece in pieces:
            piece["uuid"] = (state.get("uuid") if self.env.host in piece["hosts"]
                             else f"{uuidlib.uuid4()}")
        return sorted(pieces, key=lambda piece: piece["hosts"])

    def split(self, force=False):
        """Split the cluster into pieces that share no resources."""
        state = self._state()
        self._require_member(state)
        pieces = self.pieces(state)
        if len(pieces) == 1:
            self.echo("every host shares resources with the others; nothing to split")
            return pieces
        if self.dry_run:
            for piece in pieces:
                self.echo(f"would form cluster {' '.join(piece['hosts'])}")
            return pieces
        failures = self._run(self._send_split, state, pieces, force)
        apply_split(self.store, pieces)
        if failures:
            self.echo("split sent; these hosts did not get it and must be told by hand "
                      "(leave-cluster there): " + "; ".join(f"{h}: {r}" for h, r in failures.items()))
        return pieces

    async def _send_split(self, state, pieces, force):
        address = self._my_address(state)
        channels = {}
        failures = {}
        try:
            for host in state.peers():
                try:
                    channels[host] = await self._connect(state.host_ips()[host], address)
                except PeerError as exc:
                    failures[host] = str(exc)
            if failures and not force:
                raise MarsError(
                    "split-cluster needs every host reachable, not reachable: "
                    + "; ".join(f"{h}: {r}" for h, r in sorted(failures.items()))
                    + " (--force splits anyway; those hosts keep the old view)")
            for host, channel in channels.items():
                try:
                    await net.request(channel, {"type": "split", "pieces": pieces}, timeout=self.timeout)
                except PeerError as exc:
                    failures[host] = str(exc)
        finally:
            for channel in channels.values():
                await channel.aclose()
        return failures

    # ------------------------------------------------------------- leave
    def leave(self):
        """Leave the cluster: tell every peer, then forget the cluster here.
        A host dropped by the others (`drop`) only forgets what it kept."""
        state = self._state()
        if state.host_ips() and not state.in_cluster():
            if self.dry_run:
                self.echo(f"would forget the cluster of {', '.join(state.cluster_hosts())}")
                return
            self._forget_the_cluster()
            self.echo(f"{self.env.host} was no member of the cluster of "
                      f"{', '.join(state.cluster_hosts())} any more (another host dropped it): "
                      "forgot what it kept of it")
            return
        self._require_member(state)
        mine = state.my_resources()
        if mine:
            raise MarsError(
                f"host {self.env.host} still holds replicas of {', '.join(mine)}: "
                "leave-resource (or delete-resource) them first")
        if self.dry_run:
            self.echo(f"would leave the cluster of {', '.join(state.peers()) or 'no other host'}")
            return
        own = [item.key for item in self.store.tuples(include_tombstones=False)
               if owner_of(item.key) == self.env.host]
        self.store.delete(own)
        failures = self._run(self._tell_peers, state, state.peers())
        if failures:
            self.echo("left; these peers were not reachable and learn it when they next pull "
                      "from a peer that has it: " + "; ".join(f"{h}: {r}" for h, r in failures.items()))
        self._forget_the_cluster()

    def _forget_the_cluster(self):
        """Every tuple and every origin's stamp: this host knows no cluster."""
        self.store.forget([item.key for item in self.store.tuples()],
                          origins=[origin for origin in self.store.vector()])

    # -------------------------------------------------------------- drop
    def drop(self, dead, force=False):
        """Drop `dead`, a host gone for good, from this host's cluster, here
        and at every peer that answers: the kernel's `marsadm --host=<dead>
        leave-cluster` on a survivor. `self.store` writes for `dead` (its
        origin labels what it writes so, mars/store.py): should `dead` come
        back, it learns that it was dropped. It must hold no replica, and
        its marsd must not answer (--force drops one that does: it keeps its
        old view of the cluster until it learns otherwise)."""
        here = self.env.host
        state = self._state()
        if here not in state.host_ips():
            raise MarsError(f"host {here} is not a member of any cluster: there is nothing "
                            f"to drop {dead} from")
        if dead not in state.host_ips():
            self.echo(f"{dead} is not in the cluster of {here}: nothing to do")
            return
        holding = [res for res in state.all_resources() if dead in state.members(res)]
        if holding:
            raise MarsError(
                f"{dead} still holds replicas of {', '.join(holding)}: drop each first, on "
                f"its primary (`marsadm --host={dead} leave-resource --force <res>`), or "
                f"take them over first where {dead} is the primary (`marsadm pause-fetch <res>; "
                "marsadm --force primary <res>; marsadm resume-fetch <res>` on a replica)")
        if not force:
            self._refuse_a_host_that_answers(dead)
        if self.dry_run:
            self.echo(f"would drop {dead} from the cluster of {', '.join(state.cluster_hosts())}")
            return
        self.store.delete([item.key for item in self.store.tuples(include_tombstones=False)
                           if owner_of(item.key) == dead])
        peers = [host for host in state.cluster_hosts() if host not in (here, dead)]
        failures = self._run(self._tell_peers, state, peers)
        if failures:
            self.echo(f"dropped {dead}; these peers were not reachable and learn it when they "
                      "next pull from a peer that has it: "
                      + "; ".join(f"{h}: {r}" for h, r in failures.items()))

    def _refuse_a_host_that_answers(self, host):
        try:
            self.ask(host, {"type": "ping"}, timeout=min(DEAD_GRACE, self.timeout))
        except PeerRefused:
            pass                # alive, but shut out (another cluster secret): it answers
        except PeerError:
            return
        raise MarsError(f"{host}'s marsd answers: it is not gone. Run leave-cluster on {host} "
                        f"(--force drops it anyway; it keeps its view of the cluster)")

    async def _tell_peers(self, state, peers):
        address = state.host_ips()[self.env.host]
        failures = {}
        for host in peers:
            try:
                channel = await self._connect(state.host_ips()[host], address)
                try:
                    # Everything the peer lacks, not only the tombstones just written:
                    # e.g. a leave-resource it has not pulled yet; after this host
                    # forgets, nobody else could retract those keys.
                    await antientropy.exchange(channel, self.store, self.timeout)
                finally:
                    await channel.aclose()
            except PeerError as exc:
                failures[host] = str(exc)
        return failures


def apply_split(store, pieces):
    """Forget every host and resource outside this host's piece, and take the
    piece's cluster id. Called on every host of the old cluster."""
    mine = next((piece for piece in pieces if store.host in piece["hosts"]), None)
    if mine is None:
        raise MarsError(f"split plan does not mention host {store.host}")
    keep_hosts = set(mine["hosts"])
    keep_resources = set(mine["resources"])
    others = {host for piece in pieces for host in piece["hosts"]} - keep_hosts
    other_resources = {res for piece in pieces for res in piece["resources"]} - keep_resources
    store.write({"uuid": mine["uuid"]})
    other_ids = {piece["uuid"] for piece in pieces} - {mine["uuid"]}
    store.exclude(others, other_resources, other_ids, SPLIT_EXCLUSION_SECONDS, mine["uuid"])
    doomed = []
    for item in store.tuples():
        owner = owner_of(item.key)
        res = resource_of(item.key)
        if (owner is not None and owner in others) or (res is not None and res not in keep_resources):
            doomed.append(item.key)
    store.forget(doomed, origins=others)
    store.adopt(others)

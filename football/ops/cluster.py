"""MARS cluster membership: `football merge-cluster` and `football split-cluster`.

An inventory cluster is meant to be one MARS cluster. A migration to another
inventory cluster merges the two MARS clusters (a resource can only be
replicated inside one); once the hosts share no resource any more they are
split again, so that each MARS cluster stays as small as the inventory says.

- **merge** `h1 h2`: `marsadm merge-cluster h1 <h1's address>` on h2, under
  the lock of every inventory host of both MARS clusters (two merges into
  one cluster at once can lose one; a host that does not answer merges
  nothing and is left out, said), which are read again under the locks;
  waits until both see all members of both sides (running the merge once
  more after a third of the wait: `merge_until`). Nothing to do when they
  are in one cluster already.
- **split** (`split_unshared`): the *wanted* groups are the hosts joined by
  shared resources or by one inventory cluster. A MARS cluster that spans
  several wanted groups is split (`marsadm split-cluster`: into pieces that
  share no resource, a host without resources alone); then the pieces of one
  wanted group are merged again. It works from what it observes each time,
  and from a record of the hosts it split (`SplitRecords`: the named host
  no longer sees its former mates), so a run interrupted between the split
  and the merges completes on a re-run that names any of them.

Before a change, a read that fails refuses (191, nothing was changed);
after one (inside the merge's wait, after a split), it is "not yet": read
again until the wait's end, then a failure (198) naming what was done.
"""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from football import facts
from football.errors import FootballError, Illegal
from football.journal import replace_durably
from football.locks import LockSet, RUN_LOCK
from football.ops.base import (KERNEL_SOME_DEAD, Operation, TimedOut, in_parallel, reachable,
                               reaching, silent_hosts, wait_until)
from football.report import agreeing
from football.transport import TransportError

MEMBERSHIP_TIMEOUT = 60.0


# ----------------------------------------------------------------- planning (pure)
def connected_groups(hosts, links):
    """Partition `hosts` into the groups that `links` join (each link an
    iterable of hosts; names not in `hosts` are ignored). Sorted lists."""
    group_of = {host: {host} for host in hosts}
    for link in links:
        inside = [host for host in link if host in group_of]
        for other in inside[1:]:
            first, second = group_of[inside[0]], group_of[other]
            if first is not second:
                first |= second
                for host in second:
                    group_of[host] = first
    unique = {id(group): group for group in group_of.values()}
    return sorted(sorted(group) for group in unique.values())


@dataclass
class MarsCluster:
    """One MARS cluster as observed: its members with their addresses and,
    as `seen_from` sees them, the members of each of its resources."""

    hosts: dict
    members: dict
    seen_from: str
    joined: bool = True     # False: a host in no MARS cluster (new, or decommissioned)


def wanted_groups(clusters, inventory_clusters):
    """The hosts that must share a MARS cluster: joined by a shared resource
    or by one inventory cluster."""
    hosts = {host for cluster in clusters for host in cluster.hosts}
    links = [members for cluster in clusters for members in cluster.members.values()]
    links += [list(members) for members in inventory_clusters.values()]
    return connected_groups(hosts, links)


def pieces_after_split(cluster):
    """What `marsadm split-cluster` makes of `cluster` (mars/cluster.py
    `pieces`): hosts sharing resources stay together, the others go alone."""
    return connected_groups(cluster.hosts, cluster.members.values())


def plan(clusters, inventory_clusters, runnable):
    """(clusters to split, merges after the split): the merges are
    (host to run `merge-cluster` on, peer) pairs; both are hosts in
    `runnable` (the inventory's, which Football can reach). A host in no
    MARS cluster stays out: it cannot merge (a decommissioned one is out for
    good; a new one starts a cluster of its own first)."""
    alone = {host for cluster in clusters if not cluster.joined for host in cluster.hosts}
    inventory_clusters = {name: [host for host in members if host not in alone]
                          for name, members in inventory_clusters.items()}
    wanted = wanted_groups(clusters, inventory_clusters)
    group_of = {host: index for index, group in enumerate(wanted) for host in group}
    splits = [cluster for cluster in clusters
              if len({group_of[host] for host in cluster.hosts}) > 1]
    pieces = []
    for cluster in clusters:
        pieces += pieces_after_split(cluster) if cluster in splits else [sorted(cluster.hosts)]
    return splits, remerges(pieces, wanted, runnable)


def remerges(pieces, wanted, runnable):
    """The merges that join the pieces of each wanted group into one cluster:
    every further piece merges with the group's first piece."""
    merges = []
    for group in wanted:
        parts = sorted(piece for piece in pieces if set(piece) & set(group))
        anchor = next((host for host in parts[0] if host in runnable), None) if parts else None
        for part in parts[1:]:
            run_on = next((host for host in part if host in runnable), None)
            if run_on is None or anchor is None:
                raise Illegal(f"cannot merge {', '.join(part)} with {', '.join(parts[0])}: "
                              "no host of one side is in the inventory; merge them by hand "
                              "(marsadm merge-cluster)")
            merges.append((run_on, anchor))
    return merges


# --------------------------------------------------------------------- observing
class Unreadable(Illegal):
    """A host's MARS cluster could not be read (`cause`): before a change,
    a refusal; after one, a wait reads it again (`observed_after_change`)."""

    def __init__(self, cause):
        super().__init__(f"{cause}; nothing was changed")
        self.cause = cause


def _cluster_of(host, named=True):
    """The MARS cluster `host` sees ({} where it is in none: one that others
    dropped still lists them, but not itself); `Unreadable` when it cannot
    be asked, but for a host not `named` that cannot be reached: None."""
    try:
        view = facts.cluster_hosts(host)
        return view if host.name in view else {}
    except facts.HostUnreachable as error:
        if named:
            raise Unreadable(error) from None
        return None
    except facts.FactUnavailable as error:
        raise Unreadable(error) from None


def _cluster_now(host):
    """`_cluster_of(host)` inside a wait: None where it cannot be read (not yet)."""
    try:
        return _cluster_of(host)
    except Unreadable:
        return None


def observed_after_change(ctx, observe_now, done):
    """`observe_now()` once it can be read, after `done` (what this run
    changed, lines): a read that fails is "not yet" until
    MEMBERSHIP_TIMEOUT, then a `FootballError` (198) naming what was done
    — never a refusal saying that nothing was changed."""
    failure = []

    def attempt():
        try:
            return observe_now()
        except (Unreadable, facts.FactUnavailable, TransportError) as error:
            failure[:] = [getattr(error, "cause", error)]
            return None
    try:
        return wait_until(attempt, MEMBERSHIP_TIMEOUT, ctx.config.poll_interval,
                          "the MARS clusters to be read")
    except TimedOut:
        raise FootballError(f"{'; '.join(done)}; then the MARS clusters could not be read "
                            f"for {MEMBERSHIP_TIMEOUT:g} s: {failure[0] if failure else '?'}. "
                            "Re-run the same command once the hosts answer: it goes on from "
                            "what it observes (`marsadm lowlevel-ls-host-ips` on each host "
                            "shows where the membership stands)") from None


def observe(ctx, names, prefer=(), skip=(), also=()):
    """The MARS clusters of `names`, of the hosts of their inventory clusters
    and, transitively, of every inventory host found in those clusters.
    Views that overlap (a merge still propagating) count as one cluster; its
    resources are read on the first host of `prefer` in it (else its first
    inventory host), where a split would run. The hosts `skip` (gone for
    good), and the others found that cannot be reached, are not asked: they
    are where the others' views put them (a split of their cluster refuses:
    every member must answer it). `names` must answer; `also` (looked at as
    well, with their inventory clusters) need not."""
    inv = ctx.inventory
    skip = set(skip)
    seen, todo = {}, (set(names) | set(also)) - skip
    while todo:
        for name in list(todo):
            cluster = inv.host(name).cluster
            todo |= {member for member in inv.clusters.get(cluster, [])
                     if member not in seen and member not in skip}
        asked = sorted(todo)
        views = dict(zip(asked, in_parallel(
            lambda name: _cluster_of(ctx.host(name), named=name in names), asked)))
        silent = [name for name, view in views.items() if view is None]
        for name in silent:
            del views[name]
            skip.add(name)
            ctx.reporter.detail(f"{name} does not answer: its MARS cluster is as the others "
                                "see it")
        seen.update(views)
        todo = {host for view in views.values() for host in view
                if host in inv.hosts and host not in seen and host not in skip}
    addresses = {}
    for name, view in seen.items():
        addresses.update(view or {name: inv.hosts[name].address})
    groups = connected_groups(addresses, [list(view) or [name] for name, view in seen.items()])
    clusters = []
    for group in groups:
        order = [name for name in [*prefer, *group]
                 if name in group and name in inv.hosts and name in seen]
        seen_from = order[0]
        in_cluster = bool(seen[seen_from])
        members = facts.members_of_all(inv.hosts[seen_from]) if in_cluster else {}
        clusters.append(MarsCluster({host: addresses[host] for host in group}, members,
                                    seen_from, joined=in_cluster))
    return clusters


def every_member_answers(host, timeout=10):
    """split-cluster tells every member its piece: refuse before it when one
    does not answer (`Illegal`, nothing changed)."""
    try:
        result = host.run(["marsadm", f"--timeout={timeout}", "wait-cluster"], check=False,
                          timeout=timeout + 30)
    except TransportError as error:
        raise Illegal(f"{host.name} is unreachable: {error}; nothing was changed") from None
    # A dead peer is a warning (exit 0), as with the kernel's marsadm — which
    # only counts them ("1 peer(s) seem to be dead"), on stdout or stderr.
    silent = facts.parse_not_answering(result.stderr)
    if not result.ok or silent or KERNEL_SOME_DEAD.search(result.stdout + result.stderr):
        gone = ", ".join(sorted(silent or ())) or "a host that does not answer"
        way = (f"`football decommission {gone}`" if silent and len(silent) == 1 else
               "`football decommission <host>`")
        raise Illegal(f"{host.name}: not every host of its MARS cluster answers "
                      f"(`{result.command}` {result.how_it_ended}: "
                      f"{result.said[-300:]}); a split needs them all: start marsd "
                      "there or wait for the network, then re-run. Where "
                      f"{gone} is gone for good (evacuated, or failed over: it holds no "
                      f"replica), {way} drops it from the cluster. "
                      "Nothing was changed")


def describe(clusters):
    return "; ".join(" ".join(sorted(cluster.hosts)) for cluster in clusters)


# ------------------------------------------------------------------- dry run
def record_split(ctx, splits, merges, clusters):
    """Dry run: record the split-cluster and merge-cluster commands of a plan."""
    inv = ctx.inventory
    addresses = {host: address for cluster in clusters
                 for host, address in cluster.hosts.items()}
    for cluster in splits:
        ctx.planned(inv.hosts[cluster.seen_from]).run(["marsadm", "split-cluster"])
    for run_on, peer in merges:
        ctx.planned(inv.hosts[run_on]).run(merge_argv(peer, addresses[peer]))
    return [f"split {' '.join(sorted(cluster.hosts))} on {cluster.seen_from}"
            for cluster in splits] + [f"merged {run_on} with {peer}" for run_on, peer in merges]


def plan_split_after_move(ctx, names, res, new_members, skip=()):
    """Dry run of a migrate's split: the MARS clusters of `names` as they
    will be once `res` moved to `new_members` (one cluster: the migrate
    merged them), split as `split_unshared` would split them then (`skip`:
    as there)."""
    clusters = observe(ctx, names, prefer=names, skip=skip)
    joined = [cluster for cluster in clusters if set(cluster.hosts) & set(names)]
    members = {name: hosts for cluster in joined for name, hosts in cluster.members.items()}
    members[res] = list(new_members)
    moved = MarsCluster({host: address for cluster in joined
                         for host, address in cluster.hosts.items()}, members, new_members[0])
    after = [moved, *(cluster for cluster in clusters if cluster not in joined)]
    splits, merges = plan(after, ctx.inventory.clusters, ctx.inventory.hosts)
    return record_split(ctx, splits, merges, after)


# --------------------------------------------------------------------- acting
def merge_argv(peer, address):
    """`marsadm merge-cluster`, run on a host of the other cluster."""
    return ["marsadm", "merge-cluster", peer, address]


def merge(ctx, run_on, peer, address, say):
    """`marsadm merge-cluster <peer> <address>` on `run_on`; waits until both
    list every member of both sides (a read that fails meanwhile: not yet)."""
    both = set(_cluster_of(run_on)) | set(_cluster_of(peer)) | {run_on.name, peer.name}
    say(f"  {run_on.name}: marsadm merge-cluster {peer.name} {address}")
    merge_until(ctx, run_on, merge_argv(peer.name, address),
                lambda: all(both <= set(_cluster_now(host) or ()) for host in (run_on, peer)),
                f"{run_on.name} and {peer.name} to list all of {', '.join(sorted(both))}", say)


def merge_until(ctx, run_on, argv, merged, what, say):
    """Run the merge `argv` on `run_on` and wait (MEMBERSHIP_TIMEOUT) until
    `merged()`. After a third of it, the merge runs once more: a member
    that did not take the first one in never learns of the other side
    from its rounds (only the host that merged knows both), and a merge
    with a host that is a member already sends it everything again where
    it does not list the merging host (`marsadm merge-cluster`). Seen
    once in CI: b2 did not list a1 60 s after a1's merge with it.
    A read of `merged()` that fails (`FactUnavailable`) is "not yet": the
    merge ran, so it is no refusal; at the end, `TimedOut` names it."""
    failure = []

    def merged_now():
        failure.clear()
        try:
            return merged()
        except (facts.FactUnavailable, Unreadable) as error:
            failure.append(getattr(error, "cause", error))
            return False

    def wait(timeout):
        try:
            wait_until(merged_now, timeout, ctx.config.poll_interval, what)
        except TimedOut as timed_out:
            if not failure:
                raise
            raise TimedOut(f"{timed_out} (its last read failed: {failure[0]})") from None

    run_on.run(argv, timeout=ctx.config.command_timeout)
    first = MEMBERSHIP_TIMEOUT / 3
    try:
        wait(first)
    except TimedOut:
        say(f"  {run_on.name}: not merged after {first:g} s: {' '.join(argv)} once more")
        run_on.run(argv, timeout=ctx.config.command_timeout)
        wait(MEMBERSHIP_TIMEOUT - first)


class SplitRecords:
    """The splits begun on this controller whose merges are not done: one
    file each in `<state_dir>/splits`, naming every inventory host of the
    MARS clusters it split. Written under the locks before the first
    `marsadm split-cluster`, removed once the merges are done. After a
    split, the named host no longer sees its former mates: a re-run that
    names any host of a record looks at all of them again (`mates`), else
    they would stay apart. A lost record costs only that: name them all."""

    def __init__(self, ctx):
        self.directory = Path(ctx.config.state_dir) / "splits"
        self.inventory = ctx.inventory

    def _records(self):
        for path in sorted(self.directory.glob("*.json")):
            try:
                hosts = set(json.loads(path.read_text())["hosts"])
            except (OSError, ValueError, KeyError, TypeError):
                continue        # written atomically: one gone meanwhile, or edited by hand
            yield path, hosts

    def mates(self, names):
        """The inventory hosts of the unfinished splits of any of `names`,
        but `names`."""
        found = set()
        for _, hosts in self._records():
            if hosts & set(names):
                found |= hosts
        return sorted(found & set(self.inventory.hosts) - set(names))

    def begin(self, hosts):
        self.directory.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(" ".join(sorted(hosts)).encode()).hexdigest()[:16]
        path = self.directory / f"split-{digest}.json"
        replace_durably(path, json.dumps({"hosts": sorted(hosts)}), path.with_suffix(".tmp"))

    def end(self, names):
        """The splits of any of `names` are done (or nothing is left to do)."""
        for path, hosts in self._records():
            if hosts & set(names):
                path.unlink(missing_ok=True)


def without_the_dead(ctx, clusters, involved):
    """`involved` but its hosts that no command reaches and whose MARS
    peers do not reach either (dead: they split and merge nothing; left
    out of the locks, said), and their names. `Illegal` (nothing changed)
    for one that only this controller cannot reach: it runs on, and its
    lock cannot be taken (Unreachable: a failure after nothing changed)."""
    inv = ctx.inventory
    silent = {host.name for host in silent_hosts(involved)}
    for name in sorted(silent):
        members = next(cluster.hosts for cluster in clusters if name in cluster.hosts)
        peers = [inv.hosts[peer] for peer in sorted(members)
                 if peer in inv.hosts and peer not in silent]
        reach = reaching(peers, name)
        if reach:
            raise Illegal(f"{name} does not answer this controller, but "
                          f"{agreeing(reach, 'reaches', 'reach')} its marsd: it runs, cut off "
                          "from this controller alone (its SSH, or the network between), and "
                          f"the split needs its lock. Restore the way to {name}, then run this "
                          "again; nothing was changed")
        ctx.reporter.detail(f"{name} does not answer, nor its marsd to its MARS cluster: the "
                            "split goes on without its lock")
    return [host for host in involved if host.name not in silent], silent


def split_unshared(ctx, names, owner, on_wait, point="split-cluster:split", observed=None,
                   skip=()):
    """Split the MARS clusters of `names` so that hosts sharing no resource
    are apart, except hosts of one inventory cluster (see the module's
    docstring). Idempotent; returns what it did as a list of lines. The
    split runs on the first of `names` in each cluster, whose view of the
    resource members decides the pieces. Injection point `point` lies
    between the split and the merges. `observed`: `observe(ctx, names,
    prefer=names)` made by the caller already (with the hosts of its
    unfinished splits: `SplitRecords.mates`; they are looked at again
    under the locks). `skip`: hosts gone for good, not asked (`observe`); a
    split of their cluster refuses (every member must answer it).
    `on_wait`: the caller's report of a wait for the locks (`LockSet`)."""
    say = ctx.reporter.say
    inv = ctx.inventory
    records = SplitRecords(ctx)

    def observed_now():
        return observe(ctx, names, prefer=names, skip=skip)

    clusters = observed if observed is not None else \
        observe(ctx, names, prefer=names, skip=skip, also=records.mates(names))
    # after a split, `names` no longer reach the other pieces: look at them all
    names = list(dict.fromkeys([*names, *(host for cluster in clusters
                                          for host in sorted(cluster.hosts)
                                          if host in inv.hosts)]))
    splits, merges = plan(clusters, inv.clusters, inv.hosts)
    if not splits and not merges:
        ctx.reporter.detail(f"MARS clusters {describe(clusters)}: nothing to split")
        if not ctx.dry_run:
            records.end(names)
        return []
    if ctx.dry_run:
        return record_split(ctx, splits, merges, clusters)
    known = {host for cluster in clusters for host in cluster.hosts if host in inv.hosts}
    involved = [inv.hosts[host] for cluster in clusters for host in cluster.hosts
                if host in inv.hosts]
    for cluster in splits:
        every_member_answers(inv.hosts[cluster.seen_from])
    involved, dead = without_the_dead(ctx, clusters, involved)
    names = [name for name in names if name not in dead]
    skip = set(skip) | dead
    wanted = wanted_groups(clusters, inv.clusters)
    say(f"* MARS clusters {describe(clusters)} become {'; '.join(map(' '.join, wanted))} "
        "(shared resources and inventory clusters stay together)")
    done = []
    locks = LockSet(owner, ctx.config, ctx.reporter.detail,
                    on_wait=on_wait)
    with locks.holding(involved, RUN_LOCK):
        # under the locks: nobody merges or joins meanwhile; look again
        clusters = observed_now()
        newcomers = {host for cluster in clusters for host in cluster.hosts
                     if host in inv.hosts} - known
        if newcomers:
            raise Illegal(f"{', '.join(sorted(newcomers))} joined these MARS clusters while "
                          "the locks were taken; nothing was changed, re-run")
        splits, _ = plan(clusters, inv.clusters, inv.hosts)
        if splits:
            records.begin(known)
        try:
            for cluster in splits:
                initiator = inv.hosts[cluster.seen_from]
                say(f"  {initiator.name}: marsadm split-cluster (cluster "
                    f"{' '.join(sorted(cluster.hosts))})")
                try:
                    initiator.run(["marsadm", "split-cluster"],
                                  timeout=ctx.config.command_timeout)
                except TransportError as error:
                    raise FootballError(f"split-cluster failed: {error}\nSome hosts may have "
                                        "split already; re-run the same command to converge "
                                        f"(or football split-cluster {' '.join(names)})") from None
                done.append(f"split {' '.join(sorted(cluster.hosts))} on {initiator.name}")
            if splits:
                ctx.inject(point)
                clusters = observed_after_change(ctx, observed_now, done)
            left, merges = plan(clusters, inv.clusters, inv.hosts)
            if left:
                raise FootballError(f"after split-cluster, the MARS clusters are still "
                                    f"{describe(clusters)}; look at `marsadm view all` there")
            addresses = {host: address for cluster in clusters
                         for host, address in cluster.hosts.items()}
            for run_on, peer in merges:
                merge(ctx, inv.hosts[run_on], inv.hosts[peer], addresses[peer], say)
                done.append(f"merged {run_on} with {peer}")
        except Illegal as refused:
            if not done:
                raise
            # after a change: no refusal, whose 191 says that nothing changed
            raise FootballError(f"{'; '.join(done)}; then: {getattr(refused, 'cause', refused)}"
                                f". Re-run the same command to converge (or football "
                                f"split-cluster {' '.join(names)})") from None
    if done:
        clusters = observed_after_change(ctx, observed_now, done)
    say(f"  MARS clusters now: {describe(clusters)}")
    records.end(names)
    return done


# ----------------------------------------------------------------- operations
class MergeCluster(Operation):
    """`football merge-cluster H1 H2`: one MARS cluster of both hosts' clusters.
    Single step (a re-run sees whether they are one already): no journal."""

    operation = "merge-cluster"
    whole = ("merge",)

    def __init__(self, ctx, first, second):
        super().__init__(ctx)
        if first == second:
            raise Illegal(f"merge-cluster needs two different hosts, not {first} twice")
        self.first, self.second = ctx.host(first), ctx.host(second)
        self.summary["merged"] = False

    def start_args(self):
        return {"hosts": [self.first.name, self.second.name]}

    def discover(self):
        """Reachable, in clusters that do not share a resource name; whether
        there is anything to do; the first host's address as its cluster
        knows it; the hosts whose locks the merge holds. Changes nothing."""
        for host in (self.first, self.second):
            reachable(host)
        self.together = self.first.name in _cluster_of(self.second)
        if self.together:
            return
        clash = set(facts.all_resources(self.first)) & set(facts.all_resources(self.second))
        if clash:
            raise Illegal(f"cannot merge the clusters of {self.first.name} and "
                          f"{self.second.name}: both have resources named "
                          f"{', '.join(sorted(clash))}; rename or delete one side's first")
        self.address = _cluster_of(self.first).get(self.first.name, self.first.address)
        # every inventory host of both clusters, as a migrate's merge holds
        # them (`Migrate._clusters_to_merge`): two merges into one cluster at
        # once (a1 through b2 while a2 comes in through b1) can lose one
        self.planned = self._inventory_hosts_of_both()
        others = [self.host(name) for name in sorted(self.planned)
                  if name not in (self.first.name, self.second.name)]
        silent = silent_hosts(others)
        for host in silent:
            self.ctx.reporter.detail(f"{host.name} does not answer: the merge goes on without "
                                     "its lock")
        self.held = [self.first, self.second, *(host for host in others if host not in silent)]

    def _inventory_hosts_of_both(self):
        names = set(_cluster_of(self.first)) | set(_cluster_of(self.second))
        return {name for name in names if name in self.ctx.inventory.hosts}

    def nothing_to_do(self):
        if self.together:
            return f"{self.first.name} and {self.second.name} are in one MARS cluster already"
        return None

    def announce(self):
        self.say(f"* merging the MARS clusters of {self.first.name} and {self.second.name}")

    def locks(self, phase):
        return self.held

    def dry_run(self):
        self.ctx.planned(self.second).run(merge_argv(self.first.name, self.address))

    def merge(self):
        facts.forget()      # under the locks now: what was read before may have changed
        joined = self._inventory_hosts_of_both() - self.planned
        if joined:
            raise Illegal(f"{', '.join(sorted(joined))} joined the MARS clusters of "
                          f"{self.first.name} and {self.second.name} while the locks were "
                          "taken, and the merge does not hold "
                          f"{'its lock' if len(joined) == 1 else 'their locks'}; nothing was "
                          "changed, re-run")
        if self.first.name not in _cluster_of(self.second):
            try:
                merge(self.ctx, self.second, self.first, self.address, self.say)
            except (TransportError, TimedOut) as error:
                raise FootballError(
                    f"merge failed: {error}\nafter `marsadm merge-cluster {self.first.name} "
                    f"{self.address}` on {self.second.name}: re-run the same command; "
                    "`marsadm lowlevel-ls-host-ips` on both hosts shows where the membership "
                    "stands") from None
        now = _cluster_now(self.second)
        self.say(f"  MARS cluster now: {' '.join(sorted(now))}" if now is not None else
                 f"  MARS cluster now: not readable on {self.second.name} (it merged)")
        self.summary["merged"] = True


class SplitCluster(Operation):
    """`football split-cluster HOST...`: split their MARS clusters where hosts
    share nothing, keeping inventory clusters whole (`split_unshared`, from
    discovery's observation; it locks the hosts found and looks again).
    Single step (a re-run converges from what it observes, and from the
    record of a split whose merges it did not do: `SplitRecords`): no journal."""

    operation = "split-cluster"
    whole = ("split",)

    def __init__(self, ctx, names):
        super().__init__(ctx)
        if not names:
            raise Illegal("split-cluster needs at least one host")
        self.names = list(dict.fromkeys(ctx.host(name).name for name in names))
        self.summary["actions"] = []

    def start_args(self):
        return {"hosts": self.names}

    def discover(self):
        """The MARS clusters of the hosts (and of the hosts of their splits
        whose merges are not done) and the plan: which to split, which
        pieces to merge again. Changes no host."""
        records = SplitRecords(self.ctx)
        self.clusters = observe(self.ctx, self.names, prefer=self.names,
                                also=records.mates(self.names))
        self.splits, self.merges = plan(self.clusters, self.ctx.inventory.clusters,
                                        self.ctx.inventory.hosts)
        if not (self.splits or self.merges or self.ctx.dry_run):
            # converged (by hand, or by a run of another host's): no record to keep
            records.end([host for cluster in self.clusters for host in cluster.hosts])

    def nothing_to_do(self):
        if self.splits or self.merges:
            return None
        return (f"the MARS clusters of {', '.join(self.names)} are as the inventory and the "
                "shared resources want")

    def dry_run(self):
        self.summary["actions"] = record_split(self.ctx, self.splits, self.merges,
                                               self.clusters)

    def split(self):
        self.summary["actions"] = split_unshared(
            self.ctx, self.names, self.owner,
            self._condition("lock", lambda reason: f"waiting for a lock: {reason}"),
            observed=self.clusters)

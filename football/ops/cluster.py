"""MARS cluster membership: `football merge-cluster` and `football split-cluster`.

An inventory cluster is meant to be one MARS cluster. A migration to another
inventory cluster merges the two MARS clusters (a resource can only be
replicated inside one); once the hosts share no resource any more they are
split again, so that each MARS cluster stays as small as the inventory says.

- **merge** `h1 h2`: `marsadm merge-cluster h1 <h1's address>` on h2, under
  the lock of both hosts; waits until both see all members of both sides
  (running the merge once more after a third of the wait: `merge_until`).
  Nothing to do when they are in one cluster already.
- **split** (`split_unshared`): the *wanted* groups are the hosts joined by
  shared resources or by one inventory cluster. A MARS cluster that spans
  several wanted groups is split (`marsadm split-cluster`: into pieces that
  share no resource, a host without resources alone); then the pieces of one
  wanted group are merged again. It works from what it observes each time, so
  a run interrupted between the split and the merges completes on a re-run.
"""

from dataclasses import dataclass

from football import facts
from football.errors import FootballError, Illegal
from football.locks import LockSet, RUN_LOCK
from football.ops.base import (KERNEL_SOME_DEAD, Operation, TimedOut, in_parallel, reachable,
                               wait_until)
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
def _cluster_of(host, named=True):
    """The MARS cluster `host` sees ({} where it is in none: one that others
    dropped still lists them, but not itself); `Illegal` when it cannot be
    asked, but for a host not `named` that cannot be reached: None."""
    try:
        view = facts.cluster_hosts(host)
        return view if host.name in view else {}
    except facts.HostUnreachable as error:
        if named:
            raise Illegal(f"{error}; nothing was changed") from None
        return None
    except facts.FactUnavailable as error:
        raise Illegal(f"{error}; nothing was changed") from None


def observe(ctx, names, prefer=(), skip=()):
    """The MARS clusters of `names`, of the hosts of their inventory clusters
    and, transitively, of every inventory host found in those clusters.
    Views that overlap (a merge still propagating) count as one cluster; its
    resources are read on the first host of `prefer` in it (else its first
    inventory host), where a split would run. The hosts `skip` (gone for
    good), and the others found that cannot be reached, are not asked: they
    are where the others' views put them (a split of their cluster refuses:
    every member must answer it). `names` must answer."""
    inv = ctx.inventory
    skip = set(skip)
    seen, todo = {}, set(names) - skip
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
                      f"(`{result.command}` exited {result.exit_code}: "
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
    list every member of both sides."""
    both = set(_cluster_of(run_on)) | set(_cluster_of(peer)) | {run_on.name, peer.name}
    say(f"  {run_on.name}: marsadm merge-cluster {peer.name} {address}")
    merge_until(ctx, run_on, merge_argv(peer.name, address),
                lambda: all(both <= set(_cluster_of(host)) for host in (run_on, peer)),
                f"{run_on.name} and {peer.name} to list all of {', '.join(sorted(both))}", say)


def merge_until(ctx, run_on, argv, merged, what, say):
    """Run the merge `argv` on `run_on` and wait (MEMBERSHIP_TIMEOUT) until
    `merged()`. After a third of it, the merge runs once more: a member
    that did not take the first one in never learns of the other side
    from its rounds (only the host that merged knows both), and a merge
    with a host that is a member already sends it everything again where
    it does not list the merging host (`marsadm merge-cluster`). Seen
    once in CI: b2 did not list a1 60 s after a1's merge with it."""
    run_on.run(argv, timeout=ctx.config.command_timeout)
    first = MEMBERSHIP_TIMEOUT / 3
    try:
        wait_until(merged, first, ctx.config.poll_interval, what)
    except TimedOut:
        say(f"  {run_on.name}: not merged after {first:g} s: {' '.join(argv)} once more")
        run_on.run(argv, timeout=ctx.config.command_timeout)
        wait_until(merged, MEMBERSHIP_TIMEOUT - first, ctx.config.poll_interval, what)


def split_unshared(ctx, names, owner, point="split-cluster:split", observed=None, skip=()):
    """Split the MARS clusters of `names` so that hosts sharing no resource
    are apart, except hosts of one inventory cluster (see the module's
    docstring). Idempotent; returns what it did as a list of lines. The
    split runs on the first of `names` in each cluster, whose view of the
    resource members decides the pieces. Injection point `point` lies
    between the split and the merges. `observed`: `observe(ctx, names,
    prefer=names)` made by the caller already (they are looked at again
    under the locks). `skip`: hosts gone for good, not asked (`observe`); a
    split of their cluster refuses (every member must answer it)."""
    say = ctx.reporter.say
    inv = ctx.inventory
    def observed_now():
        return observe(ctx, names, prefer=names, skip=skip)

    clusters = observed if observed is not None else observed_now()
    # after a split, `names` no longer reach the other pieces: look at them all
    names = list(dict.fromkeys([*names, *(host for cluster in clusters
                                          for host in sorted(cluster.hosts)
                                          if host in inv.hosts)]))
    splits, merges = plan(clusters, inv.clusters, inv.hosts)
    if not splits and not merges:
        ctx.reporter.detail(f"MARS clusters {describe(clusters)}: nothing to split")
        return []
    if ctx.dry_run:
        return record_split(ctx, splits, merges, clusters)
    involved = [inv.hosts[host] for cluster in clusters for host in cluster.hosts
                if host in inv.hosts]
    for cluster in splits:
        every_member_answers(inv.hosts[cluster.seen_from])
    wanted = wanted_groups(clusters, inv.clusters)
    say(f"* MARS clusters {describe(clusters)} become {'; '.join(map(' '.join, wanted))} "
        "(shared resources and inventory clusters stay together)")
    done = []
    locks = LockSet(owner, ctx.config, ctx.reporter.detail)
    with locks.holding(involved, RUN_LOCK):
        # under the locks: nobody merges or joins meanwhile; look again
        clusters = observed_now()
        newcomers = {host for cluster in clusters for host in cluster.hosts
                     if host in inv.hosts} - {host.name for host in involved}
        if newcomers:
            raise Illegal(f"{', '.join(sorted(newcomers))} joined these MARS clusters while "
                          "the locks were taken; nothing was changed, re-run")
        splits, _ = plan(clusters, inv.clusters, inv.hosts)
        for cluster in splits:
            initiator = inv.hosts[cluster.seen_from]
            say(f"  {initiator.name}: marsadm split-cluster (cluster "
                f"{' '.join(sorted(cluster.hosts))})")
            try:
                initiator.run(["marsadm", "split-cluster"], timeout=ctx.config.command_timeout)
            except TransportError as error:
                raise FootballError(f"split-cluster failed: {error}\nSome hosts may have "
                                    "split already; re-run the same command to converge "
                                    f"(or football split-cluster {' '.join(names)})") from None
            done.append(f"split {' '.join(sorted(cluster.hosts))} on {initiator.name}")
        if splits:
            ctx.inject(point)
            clusters = observed_now()
        left, merges = plan(clusters, inv.clusters, inv.hosts)
        if left:
            raise FootballError(f"after split-cluster, the MARS clusters are still "
                                f"{describe(clusters)}; look at `marsadm view all` there")
        addresses = {host: address for cluster in clusters
                     for host, address in cluster.hosts.items()}
        for run_on, peer in merges:
            merge(ctx, inv.hosts[run_on], inv.hosts[peer], addresses[peer], say)
            done.append(f"merged {run_on} with {peer}")
    say(f"  MARS clusters now: {describe(observed_now())}")
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
        knows it. Changes nothing."""
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

    def nothing_to_do(self):
        if self.together:
            return f"{self.first.name} and {self.second.name} are in one MARS cluster already"
        return None

    def announce(self):
        self.say(f"* merging the MARS clusters of {self.first.name} and {self.second.name}")

    def locks(self, phase):
        return [self.first, self.second]

    def dry_run(self):
        self.ctx.planned(self.second).run(merge_argv(self.first.name, self.address))

    def merge(self):
        if self.first.name not in _cluster_of(self.second):
            try:
                merge(self.ctx, self.second, self.first, self.address, self.say)
            except TransportError as error:
                raise FootballError(f"merge failed: {error}\nRe-run the same command; "
                                    "`marsadm lowlevel-ls-host-ips` on both hosts shows "
                                    "where the membership stands") from None
        self.say(f"  MARS cluster now: {' '.join(sorted(_cluster_of(self.second)))}")
        self.summary["merged"] = True


class SplitCluster(Operation):
    """`football split-cluster HOST...`: split their MARS clusters where hosts
    share nothing, keeping inventory clusters whole (`split_unshared`, from
    discovery's observation; it locks the hosts found and looks again).
    Single step (a re-run converges from what it observes): no journal."""

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
        """The MARS clusters of the hosts and the plan: which to split, which
        pieces to merge again. Changes nothing."""
        self.clusters = observe(self.ctx, self.names, prefer=self.names)
        self.splits, self.merges = plan(self.clusters, self.ctx.inventory.clusters,
                                        self.ctx.inventory.hosts)

    def nothing_to_do(self):
        if self.splits or self.merges:
            return None
        return (f"the MARS clusters of {', '.join(self.names)} are as the inventory and the "
                "shared resources want")

    def dry_run(self):
        self.summary["actions"] = record_split(self.ctx, self.splits, self.merges,
                                               self.clusters)

    def split(self):
        self.summary["actions"] = split_unshared(self.ctx, self.names, self.owner,
                                                 observed=self.clusters)

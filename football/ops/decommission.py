"""`football decommission HOST`: HOST leaves the fleet for good.

It holds no replica any more — it was evacuated (`football evacuate HOST
--execute`), or it died and was failed over (`football failover HOST`) —
and now it leaves its MARS cluster: the hosts there stop asking for it, and
a split of their cluster (the cleanup of a migrate) no longer refuses
because a member does not answer it.
- HOST answers: `marsadm leave-cluster` on HOST (it tells the others and
  forgets the cluster). It must be evacuated: placement leaves it out for
  as long as it stays in the inventory.
- HOST does not answer (or is not in the inventory any more): a host of its
  MARS cluster that answers drops it, the kernel's way
  (`marsadm --host=HOST leave-cluster`); that marsadm refuses when HOST's
  marsd answers after all.
Football does not edit the inventory: the run ends naming what is left to
the operator. HOST's MARS cluster is found from the hosts of its inventory
cluster, else (HOST is out of the inventory, or they no longer list it) by
asking every host of the inventory. Nothing is changed when a check fails;
a re-run finds HOST in no cluster and has nothing to do.

The fleet anchors: decommission = evacuate + cleanup + remove the host."""

from football import facts, lifecycle
from football.errors import Illegal
from football.ops.base import Operation, answers, confirm, in_parallel
from football.ops.cluster import observe
from football.report import agreeing
from football.transport import CommandFailed
from mars.errors import MarsError
from mars.names import check_host


def leave_argv():
    """On HOST itself."""
    return ["marsadm", "leave-cluster"]


def drop_argv(host):
    """On a host of HOST's MARS cluster: drop HOST, which is gone."""
    return ["marsadm", f"--host={host}", "leave-cluster"]


class Decommission(Operation):
    """Single step, looked at afresh each run: no journal."""

    operation = "decommission"
    whole = ("decommission",)

    def __init__(self, ctx, host_name):
        super().__init__(ctx)
        try:
            self.name = check_host(host_name)
        except MarsError as error:
            raise Illegal(f"{error}; nothing was changed") from None
        self.target = ctx.inventory.hosts.get(self.name)    # None: out of the inventory
        self.answering = False
        self.own_cluster = {}           # HOST's own view of its cluster, where it answers
        self.listed_by = []             # the hosts that answer and list HOST in their cluster
        self.mars_cluster = []          # HOST's MARS cluster, as they (or it) see it
        self.summary.update(host=self.name, left=[], still_listed_by=[])

    def start_args(self):
        return {"host": self.name}

    # ------------------------------------------------------------- discovery
    def discover(self):
        """`Illegal` when HOST holds a replica, or answers and is not
        evacuated. Changes nothing."""
        if self.target is not None:
            self.answering = answers(self.target)
        if self.answering:
            self.own_cluster = facts.cluster_hosts(self.target)
            held = facts.my_resources(self.target)
            if held:
                raise Illegal(f"{self.name} still holds replicas of {', '.join(held)}: football "
                              f"evacuate {self.name} --execute moves them away first; nothing "
                              "was changed")
            state = lifecycle.read(self.target)["state"]
            if state != "evacuated":
                raise Illegal(f"{self.name} is {state}: football evacuate {self.name} --execute "
                              "first (it marks it evacuated, so that placement leaves it out); "
                              "nothing was changed")
        listing = self._hosts_listing_it()
        self.listed_by = sorted(listing)
        self.mars_cluster = sorted({host for hosts in [self.own_cluster, *listing.values()]
                                    for host in hosts} | {self.name})
        if self.listed_by:
            self._refuse_while_it_holds_replicas()

    def _hosts_listing_it(self):
        """{host: its MARS cluster} of the hosts that answer and list HOST in
        their MARS cluster: the hosts of its inventory cluster first, else
        every host, and then every inventory host those list."""
        inventory = self.ctx.inventory
        mates = [] if self.target is None else [
            name for name in inventory.clusters.get(self.target.cluster, []) if name != self.name]
        others = [name for name in sorted(inventory.hosts) if name != self.name]
        for names in (mates, others):
            found = self._listing(names)
            if found:
                more = {host for hosts in found.values() for host in hosts
                        if host in inventory.hosts and host != self.name} - set(found)
                return {**found, **self._listing(sorted(more))}
        return {}

    def _listing(self, names):
        return {name: hosts for name, hosts in zip(names, in_parallel(self._cluster_of, names))
                if self.name in hosts}

    def _cluster_of(self, name):
        try:
            return facts.cluster_hosts(self.host(name))
        except (facts.HostUnreachable, facts.FactUnavailable):
            return {}

    def _refuse_while_it_holds_replicas(self):
        held = sorted(res for cluster in observe(self.ctx, self.listed_by[:1], skip={self.name})
                      for res, members in cluster.members.items() if self.name in members)
        if held:
            way = (f"football evacuate {self.name} --execute" if self.answering else
                   f"football failover {self.name} (it is gone for good)")
            raise Illegal(f"{self.name} still holds replicas of {', '.join(held)}, as "
                          f"{self.listed_by[0]} sees it: {way} first; nothing was changed")

    def nothing_to_do(self):
        if self.listed_by or self.own_cluster:
            return None
        return (f"{self.name} is in no MARS cluster, as the hosts of the inventory that answer "
                f"see it{self._inventory_hint()}")

    def _inventory_hint(self):
        if self.target is None:
            return ""
        return f"; take it out of the inventory ({self.ctx.inventory.source})"

    def announce(self):
        self.say(f"* decommission of {self.name}: it leaves the MARS cluster of "
                 f"{' '.join(self.mars_cluster)}")
        if not self.ctx.dry_run:
            confirm(self.ctx, f"{self.name} leaves its MARS cluster for good: it takes part in "
                    "no migrate or split any more. Decommission it?")

    # -------------------------------------------------------------------- run
    def dry_run(self):
        if self.answering:
            self.ctx.planned(self.target).run(leave_argv())
        else:
            self.ctx.planned(self.host(self.listed_by[0])).run(drop_argv(self.name))

    def decommission(self):
        actor = self.target if self.answering else self.host(self.listed_by[0])
        with self.holding([actor]):
            if self.answering:
                self.say(f"  {self.name}: marsadm leave-cluster")
                self._run_marsadm(self.target, leave_argv())
            else:
                self.say(f"  {actor.name}: marsadm --host={self.name} leave-cluster "
                         f"({self.name} does not answer)")
                self._run_marsadm(actor, drop_argv(self.name))
            self.ctx.inject("decommission:left")
        facts.forget()
        still = [name for name in self.listed_by if self.name in self._cluster_of(name)]
        if still:
            self.ctx.reporter.warning(
                f"{agreeing(still, 'lists', 'list')} {self.name} still: "
                f"{'it learns' if len(still) == 1 else 'they learn'} it from the others at "
                "the next pull")
        self.summary["left"] = [host for host in self.mars_cluster if host != self.name]
        self.summary["still_listed_by"] = still
        self.say(f"  {self.name} left the MARS cluster{self._inventory_hint()}")

    def _run_marsadm(self, host, argv):
        try:
            host.run(argv, timeout=self.config.command_timeout)
        except CommandFailed as failed:
            if failed.result.exit_code == 1:    # marsadm refused: nothing changed
                raise Illegal(f"{host.name}: {failed.result.stderr.strip()[-400:]}; nothing "
                              "was changed") from None
            raise

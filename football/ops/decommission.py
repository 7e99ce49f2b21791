"""`football decommission HOST|CLUSTER`: HOST (or every host of CLUSTER)
leaves the fleet for good.

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
asking every host of the inventory. A host that no host that answers
lists, while a host of its inventory cluster does not answer (which may
list it, and share replicas with it), is refused: Football cannot tell
that it holds nothing. Every host is checked before any leaves — where
several leave, also that no host of its MARS cluster reaches the marsd of
one that does not answer (cut off from the controller alone, it runs on,
and its drop would be refused after the others left): nothing is changed
when a check fails; a refusal after a host left is a failure (198) naming
it, and a re-run finds the hosts that left in no cluster and has nothing
to do for them. The hosts that do not answer are dropped first, while the
others (which may be the only ones to list them) are still members.
A host that holds no replica is still in use, and refused, where an
unfinished operation of this controller names it (a migrate's target, the
original hosts a migrate+shrink+back comes back to: it would go on to a
host gone from MARS), or, where it answers, a container runs there (its
volume a plain LV: a stray copy, a container MARS does not replicate).

The fleet anchors: decommission = evacuate + cleanup + remove the host."""

from football import facts, joblink, lifecycle
from football.errors import FootballError, Illegal
from football.ops.base import Operation, answers, confirm, in_parallel, reaching
from football.ops.cluster import observe
from football.report import agreeing
from football.transport import CommandFailed, TransportError
from mars.errors import MarsError
from mars.names import check_host


def leave_argv():
    """On HOST itself."""
    return ["marsadm", "leave-cluster"]


def drop_argv(host):
    """On a host of HOST's MARS cluster: drop HOST, which is gone."""
    return ["marsadm", f"--host={host}", "leave-cluster"]


def hosts_named(operation):
    """The names an unfinished operation's journal (an entry of
    `unfinished_operations`) holds as hosts: its targets, its origin and
    what it decided (a combined run's primary and secondary)."""
    named = set()
    for value in [operation.get("targets"), operation.get("origin"),
                  *operation.get("decided", {}).values()]:
        for name in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(name, str):
                named.add(name)
    return named


def resume_command(operation):
    """The command that resumes an unfinished operation (the one that
    started it, as `unfinished_first` words it)."""
    kind, res, decided = operation["operation"], operation["resource"], operation["decided"]
    hosts = [name for name in (decided.get("primary"), decided.get("secondary")) if name] \
        if "+" in kind else operation["targets"][:1] if kind == "handover" \
        else operation["targets"]
    asked = decided.get("size") if "+" in kind else decided.get("asked")
    return " ".join([f"football {kind} {res}", *hosts, *([str(asked)] if asked else [])])


def refuse_unfinished_naming(operations, names):
    """`Illegal` where unfinished operations (`unfinished_operations`) name
    one of the hosts `names`, or may (a damaged journal): each would go on
    to a host gone from its MARS cluster."""
    naming = [op for op in operations if op.get("damaged") or hosts_named(op) & set(names)]
    if not naming:
        return
    said = []
    for op in naming:
        if op.get("damaged"):
            said.append(f"a damaged journal ({op['journal']}: {op['damaged']}) that may name "
                        f"{'it' if len(names) == 1 else 'them'} (read it, then move it aside: "
                        f"mv {op['journal']} {op['journal']}.damaged)")
            continue
        which = ", ".join(sorted(hosts_named(op) & set(names)))
        said.append(f"an unfinished {op['operation']} of {op['resource']} names {which} "
                    f"(`{resume_command(op)}` finishes it; to give it up, set its journal "
                    f"aside: mv {op['journal']} {op['journal']}.abandoned)")
    hosts = sorted({name for op in naming for name in hosts_named(op)} & set(names)) or names
    raise Illegal(f"{'; '.join(said)}. Decommissioned, {', '.join(hosts)} would be out of MARS "
                  f"while {'that operation plans' if len(naming) == 1 else 'they plan'} to go "
                  "on there or come back there: finish or give up first, then run this again; "
                  "nothing was changed")


class Leaving:
    """One host's part of a decommission: what is known of it, and how it
    leaves."""

    def __init__(self, op, name):
        self.op, self.name = op, name
        self.target = op.ctx.inventory.hosts.get(name)     # None: out of the inventory
        self.answering = False
        self.own_cluster = {}           # its own view of its cluster, where it answers
        self.listed_by = []             # the hosts that answer and list it in their cluster
        self.mars_cluster = []          # its MARS cluster, as they (or it) see it
        self.mates = [] if self.target is None else [     # of its inventory cluster
            mate for mate in op.ctx.inventory.clusters.get(self.target.cluster, [])
            if mate != name]
        self.unanswered = set()         # the hosts asked whose MARS cluster could not be read

    def discover(self):
        """`Illegal` when it holds a replica, or answers and is not
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
            self._refuse_running_containers()
        listing = self._hosts_listing_it()
        self.listed_by = sorted(listing)
        self.mars_cluster = sorted({host for hosts in [self.own_cluster, *listing.values()]
                                    for host in hosts} | {self.name})
        if self.listed_by:
            self._refuse_while_it_holds_replicas()
        elif not self.answering:
            self._refuse_while_its_mates_are_silent()

    def _refuse_running_containers(self):
        """`Illegal` where a container runs on the host, which holds no
        replica: its volume is a plain LV there (a stray copy of a resource
        that runs elsewhere, or a container MARS does not replicate). A
        container's directory is its volume's mountpoint: the host's LVs
        name every container it can run."""
        try:
            running = [name for name in sorted(self.op.hooks.lv_list(host=self.target))
                       if self.op.hooks.container_state(host=self.target, res=name) == "RUNNING"]
        except (TransportError, FootballError) as error:
            raise Illegal(f"{self.name}: whether a container runs there cannot be read "
                          f"({str(error).splitlines()[0]}); run this again once it answers; "
                          "nothing was changed") from None
        if running:
            them = "it" if len(running) == 1 else "them"
            raise Illegal(f"{self.name} runs the container{'s' if len(running) > 1 else ''} "
                          f"{', '.join(running)} outside MARS (no replica there: a stray copy "
                          f"of one that runs elsewhere — `football status {running[0]}` shows "
                          f"where — or one MARS does not replicate); decommissioned, the host "
                          f"would leave the fleet with {them} running. Stop {them} there (a "
                          f"copy), or move {them} away, then run this again; nothing was changed")

    def _hosts_listing_it(self):
        """{host: its MARS cluster} of the hosts that answer and list it in
        their MARS cluster: the hosts of its inventory cluster first, else
        every host, and then every inventory host those list."""
        inventory = self.op.ctx.inventory
        others = [name for name in sorted(inventory.hosts) if name != self.name]
        for names in (self.mates, others):
            found = self._listing(names)
            if found:
                more = {host for hosts in found.values() for host in hosts
                        if host in inventory.hosts and host != self.name} - set(found)
                return {**found, **self._listing(sorted(more))}
        return {}

    def _listing(self, names):
        return {name: hosts for name, hosts in zip(names, in_parallel(self.cluster_of, names))
                if self.name in hosts}

    def cluster_of(self, name):
        """{host: address} of `name`'s MARS cluster; {} where it cannot be
        read (noted in `unanswered`)."""
        try:
            return facts.cluster_hosts(self.op.host(name))
        except (facts.HostUnreachable, facts.FactUnavailable):
            self.unanswered.add(name)
            return {}

    def _refuse_while_its_mates_are_silent(self):
        """Listed by no host that answers, and silent itself: that says it
        holds nothing only where its inventory mates — which share its
        replicas, as a rule — answered. Else `Illegal` naming them: "take it
        out of the inventory" would leave a failover without it."""
        silent = sorted(self.unanswered & set(self.mates))
        if not silent:
            return
        them = "it" if len(silent) == 1 else "them"
        listed = ", ".join(silent)
        raise Illegal(f"{self.name} does not answer and no host that answers lists it in a MARS "
                      f"cluster, but {agreeing(silent, 'does', 'do')} not answer either: of its "
                      f"inventory cluster, {them} may list {self.name} and share replicas with "
                      "it, so Football cannot tell that it holds none. Restore the way to "
                      f"{listed} and run this again (where {self.name} holds replicas: football "
                      f"failover {self.name} first, which needs it in the inventory); only where "
                      f"{agreeing(silent, 'is', 'are')} gone for good as well, take "
                      f"{self.name} and {them} out of the inventory; nothing was changed")

    def _refuse_while_it_holds_replicas(self):
        held = sorted(res for cluster in observe(self.op.ctx, self.listed_by[:1],
                                                 skip={self.name})
                      for res, members in cluster.members.items() if self.name in members)
        if held:
            way = (f"football evacuate {self.name} --execute" if self.answering else
                   f"football failover {self.name} (it is gone for good)")
            raise Illegal(f"{self.name} still holds replicas of {', '.join(held)}, as "
                          f"{self.listed_by[0]} sees it: {way} first; nothing was changed")

    @property
    def in_a_cluster(self):
        return bool(self.listed_by or self.own_cluster)

    def actor(self):
        """The host the command runs on, and the command."""
        if self.answering:
            return self.target, leave_argv()
        return self.op.host(self.listed_by[0]), drop_argv(self.name)


class Decommission(Operation):
    """Single step, looked at afresh each run: no journal."""

    operation = "decommission"
    whole = ("decommission",)

    def __init__(self, ctx, name):
        super().__init__(ctx)
        inventory = ctx.inventory
        names = inventory.clusters[name] if name in inventory.clusters else [name]
        try:
            names = [check_host(host) for host in names]
        except MarsError as error:
            raise Illegal(f"{error}; nothing was changed") from None
        self.name = name
        self.leaving = [Leaving(self, host) for host in sorted(names)]
        self.summary.update(host=name, left={}, still_listed_by={})

    def start_args(self):
        return {"host": self.name}

    def discover(self):
        for leaving in self.leaving:
            leaving.discover()
        refuse_unfinished_naming(joblink.unfinished_operations(self.config),
                                 [leaving.name for leaving in self.leaving])
        # the silent ones first: the others may be the only hosts that list them
        self.leaving.sort(key=lambda leaving: leaving.answering)
        self._refuse_a_host_its_mates_reach()

    def _refuse_a_host_its_mates_reach(self):
        """Where several hosts leave, one that does not answer must be gone
        for its MARS cluster too before the first leaves: a host there that
        reaches its marsd would refuse its drop (as `marsadm --host=HOST
        leave-cluster` does) after others had left. One host alone meets
        that refusal with nothing changed."""
        going = [leaving for leaving in self.leaving if leaving.in_a_cluster]
        if len(going) < 2:
            return
        for silent in (leaving for leaving in going if not leaving.answering):
            reach = reaching([self.host(name) for name in silent.listed_by], silent.name)
            if reach:
                raise Illegal(f"{agreeing(reach, 'reaches', 'reach')} {silent.name}'s marsd: "
                              f"{silent.name} runs, only this controller cannot reach it (its "
                              "SSH, or the network between), and its MARS cluster would "
                              "refuse to drop it after the others had left. Restore the way "
                              f"to it (it then leaves by itself, once evacuated), or switch it "
                              "off for good and run this again; nothing was changed")

    def nothing_to_do(self):
        if any(leaving.in_a_cluster for leaving in self.leaving):
            return None
        names = [leaving.name for leaving in self.leaving]
        return (f"{agreeing(sorted(names), 'is', 'are')} in no MARS cluster, as the hosts of the "
                f"inventory that answer see it{self._inventory_hint()}")

    def _inventory_hint(self):
        kept = sorted(leaving.name for leaving in self.leaving if leaving.target is not None)
        if not kept:
            return ""
        return (f"; take {'it' if len(kept) == 1 else 'them'} out of the inventory "
                f"({self.ctx.inventory.source})")

    def announce(self):
        for leaving in self.leaving:
            if leaving.in_a_cluster:
                self.say(f"* decommission of {leaving.name}: it leaves the MARS cluster of "
                         f"{' '.join(leaving.mars_cluster)}")
        if not self.ctx.dry_run:
            names = [leaving.name for leaving in self.leaving if leaving.in_a_cluster]
            its = "leaves its" if len(names) == 1 else "leave their"
            confirm(self.ctx, f"{', '.join(names)} {its} MARS cluster for good: no migrate or "
                    "split takes part there any more. Decommission?")

    # -------------------------------------------------------------------- run
    def dry_run(self):
        for leaving in self.leaving:
            if leaving.in_a_cluster:
                host, argv = leaving.actor()
                self.ctx.planned(host).run(argv)

    def decommission(self):
        left = []
        for leaving in self.leaving:
            if not leaving.in_a_cluster:
                continue
            try:
                self._leave(leaving)
            except Illegal as refused:
                if not left:
                    raise
                # after a host left: no refusal, whose 191 says nothing changed
                raise FootballError(
                    f"{agreeing(left, 'left its', 'left their')} MARS cluster; then "
                    f"{leaving.name} did not: {getattr(refused, 'reason', refused)}. Once "
                    f"that is resolved, football decommission {self.name} goes on (it has "
                    f"nothing to do for {', '.join(left)})") from None
            left.append(leaving.name)
        self.say(f"  {agreeing([leaving.name for leaving in self.leaving], 'is', 'are')} out "
                 f"of {'its' if len(self.leaving) == 1 else 'their'} MARS cluster"
                 f"{self._inventory_hint()}")

    def _leave(self, leaving):
        host, argv = leaving.actor()
        with self.holding([host]):
            if leaving.answering:
                self.say(f"  {leaving.name}: marsadm leave-cluster")
            else:
                self.say(f"  {host.name}: marsadm --host={leaving.name} leave-cluster "
                         f"({leaving.name} does not answer)")
            self._run_marsadm(host, argv)
            self.ctx.inject("decommission:left")
        facts.forget()
        still = [name for name in leaving.listed_by if name != host.name
                 and leaving.name in leaving.cluster_of(name)]
        if still:
            self.ctx.reporter.warning(
                f"{agreeing(still, 'lists', 'list')} {leaving.name} still: "
                f"{'it learns' if len(still) == 1 else 'they learn'} it from the others at "
                "the next pull")
        self.summary["left"][leaving.name] = [name for name in leaving.mars_cluster
                                              if name != leaving.name]
        self.summary["still_listed_by"][leaving.name] = still

    def _run_marsadm(self, host, argv):
        try:
            host.run(argv, timeout=self.config.command_timeout)
        except CommandFailed as failed:
            # refused, nothing changed: ours exits 1 (2: a command line it did not
            # understand); kernel MARS's marsadm exits with its count of errors, 2
            # for a refusal (its message, and "FAILURE cmd=..." on stdout)
            if failed.result.exit_code in (1, 2):
                raise LeaveRefused(f"{host.name}: {failed.result.said[-400:]}") from None
            raise


class LeaveRefused(Illegal):
    """marsadm refused a leave (`reason`); nothing was changed by it."""

    def __init__(self, reason):
        super().__init__(f"{reason}; nothing was changed")
        self.reason = reason

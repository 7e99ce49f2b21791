"""`football failover HOST`: HOST is gone for good — it died, or was
switched off before it could be evacuated — and every resource with a
replica there goes on without it.

A dead host takes no part in an evacuation (nothing can be moved off it;
the fleet anchors: incus#3873): it needs a failover. For each resource with
a replica on HOST, as the hosts of its cluster that answer see it:
- HOST was its primary: the consistent replica that received most of
  HOST's log takes over by force (`marsadm --force primary`: what HOST
  wrote that the replica had not received is lost — the replication is
  asynchronous) and the container is started there; where that replica's
  marsd does not answer, the resource is named with what to do, not taken
  over on one holding less;
- then HOST's replica is dropped from MARS on the primary, as with the
  kernel's marsadm (`marsadm --host=HOST leave-resource --force`). Its LV
  stays on HOST; should HOST come back, it learns that it holds no replica
  (`football lv-cleanup RES` then removes the LV). Should it come back
  still running the container (it was cut off, not dead), two copies run:
  the failover run again names them, and `football repair-vm RES
  <primary>` stops the one on HOST (asking first).
The takeovers on a host run side by side (`limit_takeovers` at a time,
under one hold of its lock), and its drops only after them: the last of a
dead host's hundred containers does not wait for the 99 before it.
Resources left with one replica are named, with the command that gives
them a second. HOST stays in its MARS cluster until `football
decommission HOST` drops it (a migrate's cleanup that would split that
cluster says so).

The guard: HOST must not answer at all (its marsadm, through the
transport) — a host that answers is evacuated, not failed over —, nor its
marsd to its mates (`ops.base.reaching`: a host cut off from the
controller alone runs on), and the operator confirms (--yes) that it is
switched off for good: Football cannot tell a dead host from one that is
cut off from all, and a container such a host still ran would run twice
(fencing is the operator's). Every resource is
looked at afresh as it comes: a re-run goes on with what is left. One that
cannot be taken over (no consistent replica answers, or it does not start)
is named and the others go on; the run then ends critical (199)."""

from football import facts
from football.errors import Critical, FootballError, Illegal
from football.ops.base import (Operation, answers, confirm, in_parallel, marsd_reports,
                               silent_hosts)
from football.ops.cluster import observe
from football.report import agreeing, counted
from football.transport import TransportError


def amount(size):
    """Bytes as an operator reads a loss: exact below a MiB."""
    return f"{size:,} bytes" if size < 1 << 20 else f"{size / (1 << 20):,.1f} MiB"


def force_primary_argv(res, timeout):
    """The takeover, bound as a handover's `marsadm primary` is
    (handover_timeout): a device that does not come up is named in
    minutes, not after marsadm's default of ten."""
    return ["marsadm", f"--timeout={timeout:g}", "--force", "primary", res]


def take_over(host, res, timeout, warn):
    """`res` taken over by force on `host` as kernel MARS wants it: its
    fetch paused first (a replica that still fetches refuses `--force
    primary`), resumed after — also where the takeover failed; else it
    stays off, a surprise once `host` is a secondary again (the manual's
    "for safety"). A resume that fails is said (`warn`), not raised: the
    takeover's own outcome decides."""
    host.run(["marsadm", "pause-fetch", res])
    try:
        host.run(force_primary_argv(res, timeout), timeout=timeout + 30)
    finally:
        resume = ["marsadm", "resume-fetch", res]
        try:
            resumed = host.run(resume, check=False)
            failure = None if resumed.ok else (resumed.said or resumed.how_it_ended)
        except TransportError as error:
            failure = str(error)
        if failure:
            warn(f"{res}: fetch stays paused on {host.name} ({failure}): "
                 f"run {' '.join(resume)} there")


def drop_argv(dead, res):
    """On a survivor: the dead host's replica of `res` leaves, without it."""
    return ["marsadm", f"--host={dead}", "leave-resource", "--force", res]


class Failover(Operation):
    """Single step (each resource alone, looked at afresh under the lock of
    the hosts it acts on; a re-run finds what is left): no journal."""

    operation = "failover"
    whole = ("failover",)

    def __init__(self, ctx, host_name):
        super().__init__(ctx)
        self.dead = ctx.host(host_name)
        self.affected = {}              # res -> the Host that saw its members
        self.seen_by = []               # the hosts of its cluster that answer
        self.summary.update(host=self.dead.name, taken_over={}, dropped=[], one_replica={},
                            failed={}, unreceived={})

    def start_args(self):
        return {"host": self.dead.name}

    # ------------------------------------------------------------- discovery
    def discover(self):
        """`Illegal` when HOST answers or none of its cluster does; the
        resources with a replica on HOST. Changes nothing."""
        self._refuse_a_host_that_answers()
        cluster = self.ctx.inventory.hosts[self.dead.name].cluster
        mates = [self.host(name) for name in self.ctx.inventory.clusters.get(cluster, [])
                 if name != self.dead.name]
        silent = silent_hosts(mates)
        answering = [host for host in mates if host not in silent]
        if not answering:
            raise Illegal(f"no other host of {self.dead.name}'s cluster ({cluster}) answers: "
                          "nothing can take over from it; nothing changed")
        for mars_cluster in observe(self.ctx, [host.name for host in answering],
                                    skip={self.dead.name}):
            for res, members in mars_cluster.members.items():
                if self.dead.name in members:
                    self.affected[res] = self.host(mars_cluster.seen_from)
        self.seen_by = answering
        if self.affected:
            self._refuse_a_host_its_mates_reach()

    def _refuse_a_host_that_answers(self):
        if answers(self.dead):
            raise Illegal(f"{self.dead.name} answers: a failover is for a host that is gone "
                          f"for good. Empty it with football evacuate {self.dead.name} "
                          "--execute; if only its marsd is down, start it there; if it cannot "
                          "serve its replicas any more (its disks failed), switch it off, then "
                          "run this again" + "".join(
                              f". {said}" for said in self._copies_of_others()))

    def _copies_of_others(self):
        """What HOST, which answers, runs of resources whose primary is
        another host now — one failed over while it was cut off from all and
        ran on (the guard cannot tell that from dead): a second copy on data
        that forked. Each said with what to do; none where nothing can be
        read."""
        host = self.dead
        try:
            resources = facts.all_resources(host)
        except (FootballError, TransportError):
            return []

        def copy(res):
            try:
                if self.hooks.container_state(host=host, res=res) != "RUNNING":
                    return None
                primary = facts.primary(host, res)
                if primary in ("", host.name):
                    # as HOST sees it: the members it lists may know better
                    seen = [self._primary_seen(self.host(name), res)
                            for name in facts.members(host, res)
                            if name != host.name and name in self.ctx.inventory.hosts]
                    primary = next((name for name in seen if name not in ("", None, host.name)),
                                   primary)
                if primary in ("", host.name):
                    return None
                runs = self.hooks.container_state(host=self.host(primary), res=res)
            except (FootballError, TransportError):
                return None
            forked = (f"what the copy on {host.name} wrote since it was cut off is on its LV "
                      f"{res} alone")
            if runs == "RUNNING":
                return (f"{host.name} runs {res}, whose primary is {primary} now: two copies of "
                        f"{res} run ({forked}); football repair-vm {res} {primary} stops the one "
                        f"on {host.name} (asking first)")
            return (f"{host.name} runs {res}, whose primary is {primary} now, where it does "
                    f"not run ({forked}); football repair-vm {res} {primary} stops it on "
                    f"{host.name} and starts it on {primary} (asking first)")

        return [said for said in in_parallel(copy, resources) if said]

    @staticmethod
    def _primary_seen(host, res):
        """The designated primary of `res` as `host` sees it; None where it
        cannot be read."""
        try:
            return facts.primary(host, res)
        except (FootballError, TransportError):
            return None

    def _refuse_a_host_its_mates_reach(self):
        """A host that no command of the controller reaches may still run,
        cut off from the controller alone (its SSH, the network between):
        where a mate or a replica of its resources reaches its marsd
        (`marsd_reports`, which also tells whose own marsd answers: the
        takeover's), it is not taken over from — its containers would run
        twice and their data fork."""
        replicas = {name for res, seen_from in self.affected.items()
                    for name in facts.members(seen_from, res)
                    if name != self.dead.name and name in self.ctx.inventory.hosts}
        asked = self.seen_by + [self.host(name) for name in sorted(replicas)
                                if self.host(name) not in self.seen_by]
        self.marsd = marsd_reports(asked, self.dead.name, sorted(self.affected))
        reach = [name for name, (_, reached) in self.marsd.items() if reached]
        if reach:
            raise Illegal(f"{agreeing(reach, 'reaches', 'reach')} {self.dead.name}'s marsd: "
                          f"{self.dead.name} runs, only this "
                          "controller cannot reach it (its SSH, or the network between). A "
                          "failover now would run its containers twice and fork their data. "
                          f"Restore the way to it (then football evacuate {self.dead.name} "
                          "--execute), or switch it off for good and run this again; nothing "
                          "changed")

    def nothing_to_do(self):
        if self.affected:
            return None
        return (f"no resource has a replica on {self.dead.name}, as "
                f"{agreeing([host.name for host in self.seen_by], 'sees', 'see')} it")

    def announce(self):
        names = ", ".join(sorted(self.affected))
        self.say(f"* failover of {self.dead.name}: "
                 f"{agreeing(sorted(self.affected), 'has', 'have')} a replica there")
        if not self.ctx.dry_run:
            confirm(self.ctx, f"{self.dead.name} must be switched off for good (fenced): a "
                    f"container it still runs would run twice, and what it wrote that its "
                    f"replicas had not received is lost{self._losses()}. Fail over {names}?")

    def _losses(self):
        """What the takeovers lose as the replicas last heard of HOST's log,
        for the operator's question (who may rather wait for HOST's disks):
        ', as they last heard of it: vm1 324,880 bytes' (nothing under
        --yes, which is not asked)."""
        if self.ctx.yes:
            return ""
        lacking = {}
        for res, seen_from in sorted(self.affected.items()):
            try:
                primary, forced = self._decide(res, seen_from)
            except (FootballError, TransportError):
                continue
            unreceived = self._unreceived(primary, res) if forced else None
            if unreceived:
                lacking[res] = amount(unreceived)
        return (": " + ", ".join(f"{res} {size}" for res, size in lacking.items()) +
                ", as they last heard of its log") if lacking else ""

    # ------------------------------------------------------------------- plan
    def _decide(self, res, seen_from, chosen=None):
        """(the Host that is or becomes its primary — where none is designated,
        `seen_from` —, whether it takes over by force) as `seen_from` sees
        `res` now: where HOST was its primary, the consistent replica that
        received most of HOST's log (`_received`; `chosen`, where it is still
        consistent: chosen so a moment before, which a view that fails now
        must not undo — what HOST's replicas hold no longer changes);
        `Critical` when no consistent replica answers. A resource without a designated primary
        (stopped on purpose: `marsadm secondary`) is not started: only
        dropped."""
        primary = facts.primary(seen_from, res)
        if primary != self.dead.name:
            return (self.host(primary) if primary else seen_from), False
        members = [name for name in facts.members(seen_from, res)
                   if name != self.dead.name and name in self.ctx.inventory.hosts]
        consistent, unknown = [], {}
        for name in members:
            host = self.host(name)
            try:
                if facts.view(host, "is-consistent", res) == "1":
                    consistent.append(host)
            except (FootballError, TransportError) as error:
                unknown[name] = error
        if chosen in consistent:
            return chosen, True
        if unknown and consistent:
            raise Critical(self._unknown_replicas(res, unknown, consistent))
        split = [host.name for host in consistent if self._split_brain(host, res)]
        if split:
            # (which history to keep is the operator's: a takeover on one
            # left the others a split brain that never follows it)
            raise Critical(f"its replicas' histories are in split brain (marsadm "
                           f"view-is-split-brain {res} on {', '.join(split)}): which to keep "
                           f"is the operator's: football repair-mars {res} <host> rebuilds it "
                           "from that host's copy; nothing was taken over")
        if len(consistent) > 1:
            # Of several, the one that received most of HOST's log: it loses
            # least, and the others, behind it, follow it (one ahead of the
            # new primary would hold writes its history lacks: a split brain).
            received = {host.name: self._received(host, res) for host in consistent}
            best = max(consistent, key=lambda host: (received[host.name], self._serves(host)))
        elif consistent:
            best = consistent[0]
        if consistent and not self._serves(best):
            raise Critical(self._silent_marsd(res, best, consistent))
        if consistent:
            return best, True
        if not members:
            raise Critical(f"its only replica is on {self.dead.name}: it comes back "
                           f"with {self.dead.name}'s disk, or from a backup")
        raise Critical(f"no replica that answers is consistent ({', '.join(members)}): none "
                       f"can take over from {self.dead.name}; football repair-mars {res} "
                       "<host> rebuilds it from an LV (its data as that LV holds it)")

    def _unknown_replicas(self, res, unknown, consistent):
        """Why no replica takes over while one cannot be asked (its host off
        or cut off, too): it may hold more of HOST's log than those that
        answer — taken over on one of them, it would be ahead of the new
        primary (a split brain once it is back) and what only it holds
        lost. The operator's choice, made by dropping it first."""
        names = ", ".join(sorted(unknown))
        why = "; ".join(f"{name}: {error}" for name, error in sorted(unknown.items()))
        one = len(unknown) == 1
        return (f"{names}, {'a replica' if one else 'replicas'} of {res}, cannot be asked "
                f"({why}): {'it' if one else 'they'} may hold more of {self.dead.name}'s log "
                f"than {', '.join(host.name for host in consistent)}. Bring "
                f"{'it' if one else 'them'} back and run the failover again; to take over "
                f"without, losing what only {names} {'holds' if one else 'hold'}, drop "
                f"{'it' if one else 'each'} first, on {consistent[0].name}: "
                f"{' '.join(drop_argv(sorted(unknown)[0], res))}")

    def _serves(self, host):
        """Whether `host`'s marsd answered the guard's `wait-cluster` (one it
        did not ask: as if it did)."""
        return self.marsd.get(host.name, (True, False))[0]

    def _silent_marsd(self, res, best, consistent):
        """Why `best`, the replica to take over, does not: its marsd does not
        answer — its `marsadm --force primary` would record the wish and
        wait out the handover timeout, and its marsd would take over
        whenever it came up, whatever ran elsewhere by then. Taking over on
        a replica that holds less instead loses what only `best` holds:
        the operator's choice, made by dropping `best`'s replica first."""
        others = [host for host in consistent if host is not best and self._serves(host)]
        who = (f"{best.name}, the replica that received most of {self.dead.name}'s log,"
               if others else f"its only consistent replica, {best.name},")
        instead = (f"; to take over on {others[0].name} instead, losing what only {best.name} "
                   f"holds, drop {best.name}'s replica first, on {others[0].name}: "
                   f"{' '.join(drop_argv(best.name, res))}" if others else "")
        return (f"{who} cannot take over: its marsd does not answer. Start marsd on "
                f"{best.name} and run the failover again{instead}")

    def dry_run(self):
        for res, seen_from in sorted(self.affected.items()):
            try:
                primary, forced = self._decide(res, seen_from)
            except Critical as critical:
                self.ctx.reporter.warning(f"{res}: {critical}")
                continue
            planned = self.ctx.planned(primary)
            if forced:
                unreceived = self._unreceived(primary, res)
                if unreceived:
                    self.ctx.reporter.warning(
                        f"{res}: {primary.name} has not received {amount(unreceived)} of "
                        f"{self.dead.name}'s log (as {self.dead.name} last said it): a "
                        "failover now loses it")
                elif unreceived is None:
                    self._untold(res, primary)
                self.summary["unreceived"][res] = unreceived
                take_over(planned, res, self.config.handover_timeout,
                          self.ctx.reporter.warning)
                self.ctx.planner.attempt(lambda: self.hooks.resource_start(host=planned, res=res))
            planned.run(drop_argv(self.dead.name, res))

    # -------------------------------------------------------------------- run
    def failover(self):
        """Each host that takes over acts on its resources in a thread of
        its own (`_fail_over_on`). One after another, a takeover took 0.25
        s in the lab: the last of a hundred would have stayed down 25 s
        longer than the first. `make bench-failover`: 9 primaries, 2 CPUs:
        the last ran 1.5-1.8 s after the first takeover began instead of
        1.9-2.2."""
        by_primary = {}
        decided = in_parallel(self._decided, sorted(self.affected.items()))
        for res, primary in zip(sorted(self.affected), decided):
            if primary is not None:
                by_primary.setdefault(primary.name, []).append(res)
        in_parallel(self._fail_over_on, sorted(by_primary.items()))
        self.summary["dropped"].sort()
        single = self.summary["one_replica"]
        for res, primary in sorted(single.items()):
            self.say(f"{res} has one replica now, on {primary}: football migrate {res} "
                     f"{primary} <secondary> gives it a second")
        if len(single) > 1:
            self.say("football balance --plan plans second replicas for them all where there "
                     "is room (a resource without one costs the score its no_secondary penalty)")
        self.say(f"{self.dead.name} stays in the MARS cluster of {self.seen_by[0].name} until "
                 f"football decommission {self.dead.name} drops it (once it holds no replica)")
        self.say(self._outcome())
        failed = self.summary["failed"]
        if failed:
            others = "; the others were" if len(failed) < len(self.affected) else ""
            raise Critical(f"failover of {self.dead.name}: {', '.join(sorted(failed))} "
                           f"{'was' if len(failed) == 1 else 'were'} not taken over (see the "
                           f"warnings above){others}. Run it again once that is seen to")

    def _outcome(self):
        """The run's last line: what it took over and dropped, what failed,
        and what was lost as the replicas last heard of HOST's log."""
        summary = self.summary
        lost = {res: size for res, size in summary["unreceived"].items() if size}
        untold = sorted(res for res, size in summary["unreceived"].items() if size is None)
        parts = [f"{counted(len(summary['taken_over']), 'resource')} taken over",
                 f"{counted(len(summary['dropped']), 'replica')} dropped"]
        failed = sorted(summary["failed"])
        if failed:
            parts.append(f"{len(failed)} failed ({', '.join(failed)})")
        if lost:
            each = ", ".join(f"{res} {amount(size)}" for res, size in sorted(lost.items()))
            parts.append(f"{amount(sum(lost.values()))} of its log lost ({each})")
        if untold:
            parts.append(f"what was lost of {', '.join(untold)} cannot be told")
        elif not lost and summary["taken_over"]:
            parts.append("nothing its replicas had heard of lost")
        return f"failover of {self.dead.name}: {', '.join(parts)}"

    def _failed(self, res, error):
        self.ctx.reporter.warning(f"{res}: {error}")
        self.summary["failed"][res] = str(error)

    def _decided(self, entry):
        """The Host that is or becomes `res`'s primary, or None (named as failed)."""
        res, seen_from = entry
        try:
            return self._decide(res, seen_from)[0]
        except (FootballError, TransportError) as error:
            self._failed(res, error)
            return None

    def _fail_over_on(self, entry):
        """`resources`, whose primary is or becomes `host_name`, under its
        lock: first every takeover (`limit_takeovers` at a time), then the
        drops (a container does not wait for another resource's drop)."""
        host_name, resources = entry
        primary = self.host(host_name)
        try:
            with self.holding([primary]):
                facts.forget()  # under the lock: another controller's failover may have acted
                in_parallel(lambda res: self._guarded(self._take_over, res, primary), resources,
                            most=self.config.limit_takeovers)
                in_parallel(lambda res: self._guarded(self._drop, res, primary),
                            [res for res in resources if res not in self.summary["failed"]],
                            most=self.config.limit_takeovers)
        except (FootballError, TransportError) as error:    # the lock was not taken
            for res in resources:
                if res not in self.summary["failed"] and res not in self.summary["dropped"]:
                    self._failed(res, error)

    def _guarded(self, step, res, primary):
        try:
            step(res, primary)
        except (FootballError, TransportError) as error:
            self._failed(res, error)

    def _take_over(self, res, primary):
        """Under `primary`'s lock, decided afresh: where HOST was the
        primary, `primary` takes over and starts the container."""
        now, forced = self._decide(res, self.affected[res], chosen=primary)
        if now != primary:
            raise FootballError(f"its primary is {now.name} now (another run acted "
                                "meanwhile); run the failover again")
        if forced:
            unreceived = self._unreceived(primary, res)
            self.say(f"* {res}: {primary.name} takes over from {self.dead.name} "
                     "(marsadm --force primary)")
            if unreceived:
                self.ctx.reporter.warning(
                    f"{res}: {primary.name} had not received {amount(unreceived)} of "
                    f"{self.dead.name}'s log (as {self.dead.name} last said it): lost with "
                    f"{self.dead.name}, and what it wrote after that")
            elif unreceived is None:
                self._untold(res, primary)
            self.summary["unreceived"][res] = unreceived
            take_over(primary, res, self.config.handover_timeout, self.ctx.reporter.warning)
            self.ctx.inject("failover:taken-over")
            self.hooks.resource_start(host=primary, res=res)
            if self.hooks.container_state(host=primary, res=res) != "RUNNING":
                raise Critical(f"{res} was taken over by {primary.name} but does not run "
                               f"there: football repair-vm {res} {primary.name}")
            self.say(f"  {res} runs on {primary.name}")
            self.summary["taken_over"][res] = primary.name
        elif facts.primary(primary, res) == primary.name and \
                self.hooks.container_state(host=primary, res=res) != "RUNNING":
            self.ctx.reporter.warning(
                f"{res} does not run on its primary {primary.name} (a failover stopped "
                f"before it started it there, or it was stopped): football repair-vm "
                f"{res} {primary.name} starts it")

    @staticmethod
    def _received(host, res):
        """How far `host` received the dead primary's log, the same measure
        on each of its replicas: (the number of the newest logfile it holds,
        `view-fetch-lognr`; the bytes it holds of it, `view-fetch-logsize`,
        or where its marsadm lacks that, the kernel's, `view-fetch-pos`:
        the bytes from its replay position on, which compare the same way
        where the members deleted the same logfiles); (-1, -1) where it
        cannot tell: chosen last. Not `view-fetch-rest`: each replica counts
        that from the primary's log as it last listed it, and one cut off
        from the primary long before it died, which had fetched all it had
        listed, said 0, as if it had received most."""
        def asked(*macros):
            for macro in macros:
                try:
                    value = facts.view_count(host, macro, res)
                except (FootballError, TransportError):
                    continue
                if value is not None:
                    return value
            return -1
        number = asked("fetch-lognr")
        return (number, asked("fetch-logsize", "fetch-pos") if number >= 0 else -1)

    @staticmethod
    def _split_brain(host, res):
        """Whether `host` says the histories of `res`'s replicas forked (a
        view that fails says nothing more than `is-consistent` just did)."""
        try:
            return facts.view(host, "is-split-brain", res) == "1"
        except (FootballError, TransportError):
            return False

    @staticmethod
    def _unreceived(host, res):
        """Bytes of the dead primary's log, as it last listed it or said it
        in the metadata, that `host` never fetched (`view-fetch-rest`, as
        the kernel's marsadm has it); None where it cannot tell."""
        try:
            return facts.view_count(host, "fetch-rest", res)
        except (FootballError, TransportError):
            return None

    def _untold(self, res, primary):
        """Warn that what `primary` lacks of the dead host's log of `res` is
        unknown (its view says nothing: marsd not running, a view that
        failed): the account said "nothing lost"."""
        self.ctx.reporter.warning(
            f"{res}: how much of {self.dead.name}'s log {primary.name} has not received "
            f"cannot be told (marsadm view-fetch-rest {res} there says nothing); what "
            f"{self.dead.name} wrote that {primary.name} lacks is lost with it")

    def _drop(self, res, primary):
        """HOST's replica of `res` leaves, on `primary`."""
        if self.dead.name in facts.members(primary, res):
            self.say(f"  {primary.name}: marsadm --host={self.dead.name} leave-resource "
                     f"--force {res} (its LV stays on {self.dead.name})")
            primary.run(drop_argv(self.dead.name, res), timeout=self.config.command_timeout)
            self.summary["dropped"].append(res)
        self.ctx.inject("failover:dropped")
        if len(facts.members(primary, res)) == 1:
            self.summary["one_replica"][res] = primary.name

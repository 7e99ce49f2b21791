"""Repairs: bring a container back when something went wrong.

- `repair-vm <res> <host...>` — the container runs nowhere (a failed
  migrate, a crashed host). Tries the given hosts in order: stop the stack
  on every other member (release stale mounts), make the host the MARS
  primary, mount, start the container. The first host where it runs wins.
  A planned handover only: when the designated primary is unreachable,
  MARS refuses, and the message points to `repair-mars`.
- `repair-mars <res> <host...>` — the emergency, when MARS itself cannot
  hand over (split brain, a defective log, replication stuck): rebuilds the
  resource stand-alone on the first given host that holds its LV, from that
  LV's data, and starts it there. Every other replica is dropped (their LVs
  stay until `football lv-cleanup`); add replicas again with
  `football migrate <res> <host> <secondary>`. A member whose marsd does
  not answer while the host does must get it back first (it drops its part
  of the resource itself); a member that does not answer at all is gone
  for good — the operator confirms that it is switched off, as with
  `football failover` — and is dropped on the chosen host the kernel's way
  (`marsadm --host=<it> leave-resource --force`) before the rebuild. Where
  the replicas' histories forked (split brain, `view-is-split-brain`), the
  rebuild keeps the chosen host's: the question says so.

Neither starts a second copy: a container that runs on a host holding no
replica of its resource (an old primary that was cut off from all while it
ran, then failed over, and is back) is named, and stopped there only as
the operator confirms it (--yes); its LV stays, with what it wrote.

Both are `Operation`s: discovery reads the members and refuses (nothing
changed), the one phase holds the `football` lock of the members that
answer and looks at the real state before each step, so a re-run
continues. Their dry run lists the commands of a run in which the first
host chosen starts it."""

import math

from football import facts
from football.errors import Critical, FootballError, Illegal
from football.ops.base import (Operation, check_resource_name, confirm, in_parallel,
                               marsd_answers, reaching, silent_hosts, wait_until)
from football.ops.failover import Failover, amount, drop_argv
from football.report import agreeing
from football.transport import CommandFailed, TransportError

ANSWER_TIMEOUT = 5
REBUILD_TIMEOUT = 120


class Repair(Operation):
    """What both repairs share: the candidates (the given hosts, each once,
    in order), the members as MARS knows them, stopping and starting the
    stack."""

    operation = "repair"
    rescues = True

    def __init__(self, ctx, res, host_names):
        super().__init__(ctx, check_resource_name(res))     # no `res:host` here
        self.warn = ctx.reporter.warning
        if not host_names:
            raise Illegal(f"name at least one host to run {self.res} on")
        self.candidates = [self.ctx.host(name) for name in dict.fromkeys(host_names)]
        self.alive = []             # the members whose marsd answers (locked by the phase)
        self.strays = []            # hosts without a replica that run the container
        self.summary["host"] = None

    def start_args(self):
        return {"hosts": [host.name for host in self.candidates]}

    def involved(self):
        return self.alive + [host for host in self.strays if host not in self.alive]

    def locks(self, phase):
        return self.involved()

    def _ask(self, fact, host, *args):
        """A fact of `host`, None when it cannot be read there (not reached,
        or the command failed: `_told` says why)."""
        return self._told(fact, host, *args)[0]

    @staticmethod
    def _told(fact, host, *args):
        """(a fact of `host`, None) or (None, why it cannot be read there)."""
        try:
            return fact(host, *args, timeout=30), None
        except (FootballError, TransportError) as error:
            return None, " ".join(str(error).split())

    def members(self):
        """{member name: Host} of the resource, as the first candidate (then
        any inventory host) that knows it says; `Illegal` when nobody does."""
        hosts = self.candidates + [host for name, host in sorted(self.ctx.inventory.hosts.items())
                                   if host not in self.candidates]
        answers = in_parallel(lambda host: self._ask(facts.members, host, self.res) or [],
                              hosts)
        for names in answers:
            if names:
                return {name: self.ctx.host(name) for name in names
                        if name in self.ctx.inventory.hosts}
        raise Illegal(f"unknown resource {self.res}: no reachable host of the inventory "
                      f"({self.ctx.inventory.source}) has it")

    def running_on(self, hosts):
        def state(host):
            try:
                return self.hooks.container_state(host=host, res=self.res)
            except (FootballError, TransportError):
                return None

        return [host for host, seen in zip(hosts, in_parallel(state, hosts)) if seen == "RUNNING"]

    def could_run(self, known):
        """The hosts besides `known` (names) where the container could run:
        the given hosts and those of the MARS clusters and inventory clusters
        of `known`'s — a replica that a failover or a repair-mars dropped
        stays in its MARS cluster, and its container may run on."""
        inventory = self.ctx.inventory
        names = {host.name for host in self.candidates}
        for name in known:
            if name in inventory.hosts:
                names.update(inventory.clusters.get(inventory.hosts[name].cluster, []))
        seen = in_parallel(lambda name: self._ask(facts.cluster_hosts, self.host(name)) or {},
                           sorted(name for name in known if name in inventory.hosts))
        for cluster in seen:
            names.update(cluster)
        return [self.host(name) for name in sorted(names - set(known))
                if name in inventory.hosts]

    def copies_elsewhere(self, known):
        """The hosts besides `known` (names: the members, ...) whose
        container of the resource runs (`could_run`)."""
        return self.running_on(self.could_run(known))

    def elsewhere(self, running=None):
        """What the copies on `self.strays` are (`running`: the member where
        it runs besides)."""
        where = ", ".join(host.name for host in self.strays)
        one = len(self.strays) == 1
        held = f"{'holds' if one else 'hold'} no replica of it"
        head = (f"{'two' if one else len(self.strays) + 1} copies of {self.res} run: on "
                f"{running.name} (its primary) and on {where}, which {held}" if running else
                f"{self.res} runs on {where}, which {held}")
        return (f"{head} (a replica dropped while its host was cut off — a failover —, or "
                f"one that left): {'a copy' if one else 'copies'} on data that forked from "
                f"{self.res}'s; what {'it' if one else 'each'} wrote since is on {where}'s LV "
                f"{self.res} alone")

    def said_elsewhere(self, running=None):
        """Warn of the copies on `self.strays` (`running`: the member where it
        runs besides); what the operator's confirmation asks of them ('' for
        none): they are stopped only as confirmed."""
        if not self.strays:
            return ""
        said = self.elsewhere(running)
        self.warn(said)
        where = ", ".join(host.name for host in self.strays)
        return (f"{said}. Stop it on {where} (its LV stays there, with what it wrote, until "
                f"football lv-cleanup {self.res})")

    def stop_copies_elsewhere(self):
        """Stop the container on `self.strays` (confirmed); `FootballError`
        where one does not stop: nothing is started beside it."""
        for host in self.strays:
            self.say(f"* {host.name}: stopping the copy of {self.res} there (it holds no "
                     "replica of it)")
            try:
                self.hooks.resource_stop(host=host, res=self.res)
            except (FootballError, TransportError) as error:
                self.warn(f"{host.name}: could not stop {self.res}: {error}")
        # one whose state cannot be read now is not taken for stopped: its
        # stop may have failed the same way
        states = in_parallel(lambda host: self._told(
            lambda host, timeout: self.hooks.container_state(host=host, res=self.res), host),
            self.strays)
        still = [host for host, (state, why) in zip(self.strays, states)
                 if state == "RUNNING" or why]
        if still:
            where = ", ".join(host.name for host in still)
            unknown = "; ".join(f"{host.name}: {why}" for host, (_, why)
                                in zip(self.strays, states) if why)
            runs = f"may still run on {where} (whether it does cannot be read: {unknown})" \
                if unknown else f"still runs on {where}"
            raise FootballError(f"{self.res} {runs}, which holds no replica of it (see the "
                                f"warnings above): it was not started elsewhere, it would run "
                                f"twice. Stop it on {where} by hand, then run this again")

    def reachable(self, hosts):
        """The hosts whose marsd answers."""
        answers = in_parallel(lambda host: marsd_answers(host, ANSWER_TIMEOUT), hosts)
        for host, (_, why) in zip(hosts, answers):
            if why:
                self.ctx.reporter.detail(why)
        return [host for host, (answers, _) in zip(hosts, answers) if answers]

    def others(self, keep):
        """The members that answer, but `keep`: where the stack is stopped."""
        return [host for host in self.alive if host.name != keep.name]

    def stop_elsewhere(self, keep):
        """Stop the stack on the members that answer except `keep`; failures
        are warnings (a host that is down runs nothing)."""
        for host in self.others(keep):
            try:
                self.hooks.resource_stop(host=host, res=self.res)
            except (FootballError, TransportError) as error:
                self.warn(f"{host.name}: could not stop {self.res}: {error}")

    def start_on(self, host):
        """Start the stack on `host`; True when the container runs."""
        try:
            self.hooks.resource_start(host=host, res=self.res)
            return self.hooks.container_state(host=host, res=self.res) == "RUNNING"
        except (FootballError, TransportError) as error:
            self.warn(f"{host.name}: cannot start {self.res}: {error}")
            return False

    # A dry run walks the same hooks with recording hosts; a check of a
    # planned change on the unchanged host (is the unit active now?) is
    # dropped (Planner.attempt).
    def plan_stop(self, hosts):
        for host in hosts:
            self.ctx.planner.attempt(lambda: self.hooks.resource_stop(
                host=self.ctx.planned(host), res=self.res))

    def plan_start(self, host):
        self.ctx.planner.attempt(lambda: self.hooks.resource_start(
            host=self.ctx.planned(host), res=self.res))


class RepairVm(Repair):
    """Single step (start it on the first candidate where it runs; a re-run
    tries again from what it sees): no journal."""

    operation = "repair-vm"
    whole = ("start",)

    def discover(self):
        """The members; where it runs already (then nothing is to do); else
        the candidates with a replica whose marsd answers — `Illegal` when
        there is none; the hosts without a replica that run it
        (`copies_elsewhere`: stopped first, as the operator confirms).
        Changes nothing."""
        members = self.members()
        self.usable = [host for host in self.candidates if host.name in members]
        if not self.usable:
            raise Illegal(f"none of {', '.join(h.name for h in self.candidates)} has a replica "
                          f"of {self.res} (replicas: {', '.join(members)})")
        running = self.running_on(list(members.values()))
        self.strays = self.copies_elsewhere(members)
        self.stale = [host for host in running if not self._device_up(host)]
        self.running = [host for host in running if host not in self.stale]
        self.alive = running            # (where it runs: its locks while a stale copy stops)
        for host in self.stale:
            self.warn(f"{host.name}: {self.res} runs there without its MARS device (one that "
                      "crashed: what it writes goes nowhere); it is stopped" +
                      (f" (it runs on {self.running[0].name})" if self.running
                       else " and started again"))
        if self.running:
            self.summary["host"] = self.running[0].name
            return
        for host in self.candidates:
            if host.name not in members:
                self.warn(f"{host.name} has no replica of {self.res}; skipped")
        self.alive = self.reachable(list(members.values()))
        self.usable = [host for host in self.usable if host in self.alive]
        if not self.usable:
            raise Illegal(f"no given host with a replica of {self.res} answers; bring its "
                          "marsd back or name another host")

    def _device_up(self, host):
        """Whether the MARS device is up where the container runs (else the
        container runs on what is left of one that crashed); where marsadm
        cannot tell, as it looks."""
        try:
            return facts.view(host, "is-primary", self.res).strip() == "1"
        except (FootballError, TransportError):
            return True

    def nothing_to_do(self):
        if not self.running or self.stale or self.strays:
            return None
        where = self.running[0]
        if where in self.candidates:
            return f"it runs on {where.name}"
        wanted = self.candidates[0].name
        return (f"it runs on {where.name}, not on {wanted}; to move it to {wanted}: "
                f"football handover {self.res} {wanted}")

    def announce(self):
        question = self.said_elsewhere(self.running[0] if self.running else None)
        if question and not self.ctx.dry_run:
            then = f"keep it on {self.running[0].name}" if self.running else \
                f"start it on {' or '.join(host.name for host in self.usable)}"
            confirm(self.ctx, f"{question}, then {then}?")

    def dry_run(self):
        """The commands of a run in which the first candidate starts it."""
        self.plan_stop(self.strays)
        if self.running:                # (a stale copy besides)
            self.plan_stop(self.stale)
            return
        first = self.usable[0]
        self.plan_stop(([first] if first in self.stale else []) + self.others(first))
        self.plan_start(first)

    def start(self):
        self.stop_copies_elsewhere()
        if self.running:
            # it runs, and a copy on a crashed device besides: that one stops
            for host in self.stale:
                self.say(f"* {host.name}: stopping the copy of {self.res} on its crashed device")
                try:
                    self.hooks.resource_stop(host=host, res=self.res)
                except (FootballError, TransportError) as error:
                    self.warn(f"{host.name}: could not stop {self.res}: {error}")
            self.say(f"{self.res} runs on {self.running[0].name}")
            return
        for host in self.usable:
            self.say(f"* {host.name}: starting {self.res}")
            if host in self.stale:              # its container first, off the dead device
                try:
                    self.hooks.resource_stop(host=host, res=self.res)
                except (FootballError, TransportError) as error:
                    self.warn(f"{host.name}: could not stop {self.res}: {error}")
            self.stop_elsewhere(host)
            if self.start_on(host):
                self.say(f"{self.res} runs on {host.name}")
                self.summary["host"] = host.name
                return
        primary = self._ask(facts.primary, self.alive[0], self.res) or ""
        raise Critical(f"{self.res} could not be started on "
                       f"{', '.join(h.name for h in self.usable)} and is NOT running "
                       f"(designated primary: {primary.strip() or 'none'}). If MARS cannot "
                       f"hand over (primary unreachable, split brain): "
                       f"football repair-mars {self.res} <host>")


class RepairMars(Repair):
    """Steps, each recorded in the journal (`status` shows where a run
    stopped): `stopped` (the stack everywhere), `rebuilt` (the resource
    deleted and created again stand-alone on the chosen host from its LV),
    `started`. The chosen host (`targets`) and the members before
    (`origin`) are decided in it: between the deletion and the creation
    MARS knows neither, a re-run resumes on the same host, and lv-cleanup
    keeps that host's LV meanwhile."""

    operation = "repair-mars"
    whole = ("repair",)

    def discover(self):
        """The chosen host (a resumed run's, else the first candidate that
        answers and holds the LV), the members that are dropped; `Illegal`
        when one of them does not answer. Changes nothing."""
        self.journal = self.open_journal()
        decided = self.journal.decided
        try:
            members = self.members()
        except Illegal:
            if not self.journal.done("stopped"):
                raise
            members = {}            # deleted, not yet created again: the journal knows
        resumed_on = (decided.get("targets") or [None])[0]
        if resumed_on and not self.journal.done("stopped"):
            # nothing done yet (a stop that failed, the container started
            # again): decided afresh, with the checks of the copy as now
            self.say(f"  an earlier {self.operation} of {self.res} on {resumed_on} did "
                     "nothing yet: decided afresh")
            resumed_on = None
        hosts = {**members, **{host.name: host for host in self.candidates}}
        if resumed_on:
            hosts.setdefault(resumed_on, self.host(resumed_on))
        self.alive = self.reachable(list(hosts.values()))
        if resumed_on:
            self.chosen = self.host(resumed_on)
            self.say(f"* resuming {self.operation} of {self.res} on {self.chosen.name}")
            if self.chosen not in self.alive:
                raise Illegal(f"{self.chosen.name}, where the unfinished {self.operation} "
                              f"rebuilds {self.res} ({self.journal.path}), does not answer; "
                              "nothing changed. Bring its marsd back and repeat")
        else:
            self.chosen = self._choose()
            self._refuse_a_stranger(members)
        self.origin = decided.get("origin") or sorted(members)
        self.strays = self.copies_elsewhere(hosts)
        self.dropped = [name for name in self.origin if name != self.chosen.name]
        others = sorted(set(members) - {self.chosen.name})
        silent = [name for name in others if members[name] not in self.alive]
        # a member that answers drops its part itself once its marsd runs; one
        # that is gone (nothing reaches it) is dropped on the chosen host
        self.gone = [host.name for host in silent_hosts([members[name] for name in silent])]
        stopped = [name for name in silent if name not in self.gone]
        running = [name for name in self.gone if reaching([self.chosen], name, [self.res])]
        if running:
            raise Illegal(f"{self.chosen.name} reaches the marsd of {', '.join(running)} "
                          f"(members of {self.res}): "
                          f"{agreeing(running, 'runs', 'run')}, only this controller cannot "
                          "reach it (its SSH, or the network between); dropping its replica "
                          "would fork the data. Nothing changed. Restore the way to it and "
                          "repeat, or switch it off for good and repeat (it is dropped)")
        if stopped:
            raise Illegal(f"the marsd of {', '.join(stopped)} (members of {self.res}) does not "
                          f"answer; nothing changed. Start it there and repeat; a member that "
                          f"is gone for good: switch it off, then repeat (it is dropped)")
        self.rebuilt = not others and self._primary(self.chosen) == self.chosen.name
        self.running = self.rebuilt and bool(self.running_on([self.chosen]))
        self.lv = self.hooks.lv_path(host=self.chosen, lv=self.res)
        self.rollback = None
        if not resumed_on and not self.rebuilt and self.chosen.name in members:
            self._check_the_copy(members)

    def _refuse_a_stranger(self, members):
        """`Illegal` where the chosen host is no member of the resource while
        members that answer are: its LV is one left from an earlier replica
        (its data as old as when it left). Rebuilt from it, the resource
        stopped where it ran, its creation found the resource there
        ("already exists", taken for done) and its start failed: down, 199."""
        answering = sorted(name for name, host in members.items() if host in self.alive)
        if self.chosen.name in members or not answering:
            return
        raise Illegal(f"{self.chosen.name} is no replica of {self.res}: its LV {self.res} is "
                      f"left from an earlier one (its data as old as when it left). "
                      f"{agreeing(answering, 'holds', 'hold')} a replica and "
                      f"{'answers' if len(answering) == 1 else 'answer'}: name "
                      f"{'it' if len(answering) == 1 else 'one of them'} "
                      f"(football repair-mars {self.res} {answering[0]}); nothing changed")

    def _check_the_copy(self, members):
        """`Illegal` where the chosen member's copy is not consistent (its
        sync incomplete: the container started on partial data — a copy
        that had synced nothing started the workload from its first
        record) while another member's that answers is; where none is (the
        primary died before its replica was consistent), or the container
        runs on another member, the primary, `rollback` says what a rebuild
        from this copy loses (said, and asked with the confirmation)."""
        chosen = self.chosen.name
        if not self._whole(self.chosen):
            rest = self._ask(facts.view, self.chosen, "sync-rest", self.res)
            partial = (f"{chosen}'s copy of {self.res} is not consistent (its sync is not "
                       f"complete{f': {rest} bytes to go' if rest else ''}): rebuilt from it, "
                       f"{self.res} starts on partial data")
            whole = [name for name, host in sorted(members.items()) if name != chosen and
                     host in self.alive and self._whole(host)]
            if whole:
                raise Illegal(f"{partial}; nothing changed. Name a host whose copy is whole "
                              f"first: {', '.join(whole)}")
            # no whole copy answers (the primary died before its replica was
            # consistent): the last resort, as the operator confirms it
            self.rollback = f"{partial} (no member's copy that answers is whole)"
            self.warn(self.rollback)
            return
        if self._forked(members):
            return
        primary = self._primary(self.chosen)
        if primary and primary != chosen and primary in members and \
                members[primary] in self.alive:
            # its primary answers: it holds all (running or stopped)
            behind = self._ask(facts.view, self.chosen, "work-rest", self.res)
            runs = "runs on" if self.running_on([members[primary]]) else "has"
            self.rollback = (f"{self.res} {runs} its primary {primary}: rebuilt from "
                             f"{chosen}'s copy it goes back to what {chosen} holds"
                             + (f" ({behind} bytes of {primary}'s log not yet replayed there "
                                "are lost)" if behind and behind != "0" else
                                f" (what of {primary}'s log is not yet replayed there cannot "
                                "be told: its view-work-rest says nothing; that is lost)"
                                if not behind else "")
                             + f"; to keep {primary}'s data, name {primary} first")
            self.warn(self.rollback)
            return
        if primary == chosen:
            return                          # its primary's copy: all of it
        lost = []
        if primary and primary in self.gone:
            # its primary is gone for good: what it wrote that this copy
            # never received is lost, as a failover says it (in bytes)
            unreceived = Failover._unreceived(self.chosen, self.res)
            if unreceived:
                lost.append(f"{chosen} has not received {amount(unreceived)} of {primary}'s "
                            f"log (as {primary} last said it): rebuilt from {chosen}'s copy, "
                            f"{self.res} loses it")
            elif unreceived is None:
                lost.append(f"how much of {primary}'s log {chosen} has not received cannot "
                            f"be told (marsadm view-fetch-rest {self.res} there says "
                            "nothing): rebuilt from its copy, that is lost")
        mine = Failover._received(self.chosen, self.res)
        ahead = [name for name, host in sorted(members.items()) if name != chosen and
                 host in self.alive and Failover._received(host, self.res) > mine]
        if ahead:
            # another replica received more of the primary's log (its primary
            # gone): what only it holds is lost, unsaid before
            lost.append(f"{agreeing(ahead, 'has', 'have')} received more of {self.res}'s "
                        f"log than {chosen}: rebuilt from {chosen}'s copy, {self.res} "
                        f"loses what only {', '.join(ahead)} "
                        f"{'holds' if len(ahead) == 1 else 'hold'}; to keep it, name "
                        f"{ahead[0]} first")
        if lost:
            self.rollback = "; ".join(lost)
            self.warn(self.rollback)

    def _forked(self, members):
        """Whether the histories of the replicas forked (a member that
        answers says `view-is-split-brain` 1): then the rebuild keeps the
        chosen host's and what the others hold beyond the fork is lost —
        `rollback` says so. Not what a copy "has not received" or "not yet
        replayed": positions in two histories do not compare, and what is
        beyond the fork never comes."""
        chosen = self.chosen.name
        split = [name for name, host in sorted(members.items())
                 if host in self.alive and Failover._split_brain(host, self.res)]
        others = [name for name in sorted(members) if name != chosen]
        if not split or not others:
            return False
        primary = self._primary(self.chosen)
        runs = primary and primary != chosen and primary in members and \
            members[primary] in self.alive and self.running_on([members[primary]])
        one = len(others) == 1
        self.rollback = (f"the histories of {self.res}'s replicas forked (split brain: marsadm "
                         f"view-is-split-brain {self.res} says so on {', '.join(split)}): "
                         f"rebuilt from {chosen}'s copy, {self.res} keeps {chosen}'s history: "
                         f"what {agreeing(others, 'holds', 'hold')} beyond the fork is lost "
                         f"({'its LV stays' if one else 'their LVs stay'} until football "
                         f"lv-cleanup {self.res})"
                         + (f"; it runs on {primary} now and stops there" if runs else "")
                         + ("; to keep that history, name "
                            f"{'it' if one else 'the host that holds it'} first"))
        self.warn(self.rollback)
        return True

    def _whole(self, host):
        """Whether `host`'s copy is whole: consistent, or the primary's own
        (kernel MARS's is-consistent is 0 on a primary while it has writes
        not yet written back: a busy container). `Illegal` where its views
        cannot tell (not "partial": a whole copy would be passed over, or a
        rebuild from a partial one asked for as the last resort)."""
        consistent, why = self._told(facts.view, host, "is-consistent", self.res)
        if consistent == "1":
            return True
        primary, why_not = self._told(facts.view, host, "is-primary", self.res)
        if primary == "1":
            return True
        if why or why_not:
            other = ", or name another host" if host is self.chosen else ""
            raise Illegal(f"whether {host.name}'s copy of {self.res} is whole cannot be told "
                          f"({why or why_not}); nothing changed. Repeat once its marsadm "
                          f"answers{other}")
        return False

    def nothing_to_do(self):
        if self.running and not self.journal.resumed and not self.strays:
            self.summary["host"] = self.chosen.name
            return f"it runs stand-alone on {self.chosen.name}"
        return None

    def plan(self):
        if self.rebuilt:
            return f"start {self.res} on {self.chosen.name}"
        return (f"rebuild {self.res} stand-alone on {self.chosen.name} from {self.lv}"
                + (f", dropping the replicas on {', '.join(self.dropped)}"
                   if self.dropped else "")
                + (f" ({agreeing(self.gone, 'does', 'do')} not answer)" if self.gone else ""))

    def announce(self):
        self.say(f"* {self.plan()}")
        elsewhere = self.said_elsewhere(self.chosen if self.running else None)
        if self.ctx.dry_run:
            return
        if not self.rebuilt:
            fenced = (f" {', '.join(self.gone)} must be switched off for good (fenced): a "
                      "container there that still runs would run twice." if self.gone else "")
            rollback = f" {self.rollback}." if self.rollback else ""
            first = f" {elsewhere} first." if elsewhere else ""
            confirm(self.ctx, f"{self.plan()}?{fenced}{rollback}{first}")
        elif elsewhere:
            confirm(self.ctx, f"{elsewhere}, then {self.plan()}?")

    def _choose(self):
        for host in self.candidates:
            if host not in self.alive:
                self.warn(f"{host.name} does not answer; skipped")
                continue
            lvs, why = self._told(lambda host, timeout: self.hooks.lv_list(host=host), host)
            if why:
                self.warn(f"{host.name}: its LVs cannot be listed ({why}); skipped")
                continue
            if self.res in lvs:
                return host
            self.warn(f"{host.name} has no LV {host.vg}/{self.res}; skipped")
        raise Illegal(f"none of {', '.join(h.name for h in self.candidates)} answers and holds "
                      f"an LV {self.res}; nothing changed")

    def _primary(self, host):
        return self._ask(facts.primary, host, self.res) or ""

    # ------------------------------------------------------------------- run
    def dry_run(self):
        """The commands of the steps still to do: stop, rebuild, start."""
        self.plan_stop(self.strays)
        if not self.rebuilt:
            self.plan_stop([*self.others(self.chosen), self.chosen])
            self._rebuild(self.ctx.planned(self.chosen))
        self.plan_start(self.chosen)

    def repair(self):
        chosen = self.chosen
        self.journal.decide(targets=[chosen.name], origin=self.origin)
        self.stop_copies_elsewhere()
        if not self.rebuilt:
            ran = self.running_on(self.alive)
            self.say(f"* stopping {self.res} everywhere")
            self.stop_elsewhere(chosen)
            self._stop_or_fail(chosen, ran)
            self.journal.record("stopped")
            self._rebuild(chosen, say=self.say)
            self.journal.record("rebuilt")
        self.say(f"* {chosen.name}: starting {self.res}")
        if not self.start_on(chosen):
            raise Critical(f"{self.res} was rebuilt on {chosen.name} but does not start there; "
                           "see the warnings above")
        self.journal.record("started")
        self.summary["host"] = chosen.name
        others = self.dropped
        self.say(f"{self.res} runs stand-alone on {chosen.name}"
                 + (f"; old LVs on {', '.join(others)}: football lv-cleanup {self.res}; "
                    f"new replica: football migrate {self.res} {chosen.name} <secondary>"
                    if others else ""))

    def _stop_or_fail(self, host, ran):
        """Stop the stack on `host`; where that fails, nothing is rebuilt and
        the container starts again where it ran before (`ran`; the stops
        had stopped it: the refusal's 191 said "nothing changed" with the
        container down)."""
        try:
            self.hooks.resource_stop(host=host, res=self.res)
        except (FootballError, TransportError) as error:
            failed = f"{host.name}: cannot stop {self.res} to rebuild it: {error}; nothing " \
                "was rebuilt"
            for where in ran:
                if self.start_on(where):
                    raise FootballError(f"{failed}; it runs on {where.name} again") from None
            if ran:
                raise Critical(f"{failed}; it does NOT run: it ran on "
                               f"{', '.join(where.name for where in ran)} before, and does not "
                               "start there again (see the warnings above): football repair-vm "
                               f"{self.res} {' '.join(where.name for where in ran)}") from None
            raise Illegal(f"{failed} (it ran nowhere)") from None

    def _rebuild(self, host, say=lambda text: None):
        """Delete the resource (when MARS still knows it on `host`) and create
        it again from `host`'s LV; `host` may be a dry run's."""
        members = facts.members(host, self.res) if self.gone else []
        for name in self.gone:
            if name in members:
                # its keys are its own: a survivor writes them for it (labelled
                # so), or the creation below waits for it for ever
                say(f"  {host.name}: marsadm --host={name} leave-resource --force {self.res} "
                    f"({name} does not answer)")
                host.run(drop_argv(name, self.res), timeout=self.config.command_timeout)
        if self.res in facts.my_resources(host):
            # --force: the resource still has its members (this host at least)
            say(f"  {host.name}: marsadm delete-resource --force {self.res}")
            host.run(delete_argv(self.res), timeout=self.config.command_timeout)
        say(f"  {host.name}: marsadm create-resource {self.res} {self.lv} (its data stays)")
        create_when_free(host, self.res, self.lv, self.config, bounded=True)


def delete_argv(res):
    return ["marsadm", "delete-resource", "--force", res]


def leave_argvs(res, timeout):
    """A replica of `res` leaves as kernel MARS wants it: `down` first (its
    leave-resource refuses a replica whose switches are on), waiting at
    most `timeout` s, then `leave-resource`."""
    return [["marsadm", f"--timeout={timeout:g}", "down", res],
            ["marsadm", "leave-resource", res]]


def create_argv(res, lv, verb="create-resource", timeout=None):
    """`marsadm <verb> res lv`; with `timeout` (whole seconds), its
    --timeout (at the end: marsadm, kernel MARS's too, takes its options
    anywhere on the line)."""
    argv = ["marsadm", verb, res, lv]
    return argv if timeout is None else [*argv, f"--timeout={timeout}"]


MARSADM_MARGIN = 30.0   # seconds at most between marsadm's --timeout and `run`'s limit


def marsadm_timeout(limit):
    """The --timeout for a marsadm command that `run` kills after `limit`
    seconds: shorter by a quarter of it, at most MARSADM_MARGIN (marsadm's
    start, its answer's way back), so that marsadm gives up first and says
    what it waited for (a create or join: for another one on its host,
    exit 3). Given its default of 600 s, as long as command_timeout, the
    transport killed it first, with a timeout that said nothing of why.
    Whole seconds, at least 1: kernel MARS's marsadm reads the option's
    digits (`--timeout=<seconds>`, `[0-9]+`: of 0.3 it read 0)."""
    return max(1, math.floor(limit - min(MARSADM_MARGIN, limit / 4)))


EXISTS = ("already exists", "has been already joined")
NOT_YET_GONE = ("still hold", "old remains", "already member of resource")


def create_when_free(host, res, lv, config, verb="create-resource", bounded=False):
    """`marsadm create-resource res lv` (or `join-resource`) on `host`,
    retried while a deleted or left `res` is not yet gone: the other members
    drop their part of it, and this host its logfiles, when their marsd sees
    the deletion. A resource that exists already (a member already) is fine.
    Kernel MARS says the same in its words (`create_res`): an earlier
    resource's logfiles here are "old remains", the other members' links
    "already member of resource" until they are gone; a join made already,
    "has been already joined". `bounded`: with a --timeout within
    command_timeout (`marsadm_timeout`), so that a create or join that
    waits for another one on `host` gives up saying so (exit 3)."""
    timeout = marsadm_timeout(config.command_timeout) if bounded else None
    command = create_argv(res, lv, verb, timeout)

    def done():
        result = host.run(command, check=False, timeout=config.command_timeout)
        if result.ok or any(text in result.stderr for text in EXISTS):
            return True
        if any(text in result.stderr for text in NOT_YET_GONE):
            return False
        raise CommandFailed(result)

    wait_until(done, REBUILD_TIMEOUT, config.poll_interval,
               f"{host.name} and the other members to drop what they held of {res}")

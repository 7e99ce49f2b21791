"""Migrate a resource (container + MARS resource + LV) to new hosts.

Steps (FOOTBALL.md, "Migrate"), each announced as it runs:

1. prepare — for each target without a replica: wait for the sync limit,
   merge the target into the source's MARS cluster, create the LV,
   `marsadm join-resource`.
2. wait — until every target has synced and is consistent (UpToDate, or
   OutDated a moment behind the workload; progress bar, stall watchdog).
3. finish — the downtime window: lag under `limit_mars_logfile`, stop the
   stack on the source, `marsadm primary` on the target, start it there.
   A failure inside the window is compensated: restart where it can run.
   Before the window the plugins may hold it back (`want_downtime`,
   `resource_locked`) or veto it (`is_startable`) while nothing is stopped.
4. cleanup — leave the resource on the old hosts and remove their LVs.

Variants: `two_phase` syncs only the new primary, hands over, then syncs
the new secondary from the new primary; `pre_hand` / `post_hand` hand over
among the old replicas first and among the new ones at the end.

The decided targets are kept in the journal, so a re-run resumes with the
same placement; every step checks the real state first."""

import time

from football import facts, joblink, lifecycle
from football.errors import FootballError, Illegal
from football.locks import drop_intent, live_intents
from football.ops.cluster import merge_until, plan_split_after_move, split_unshared
from football.ops.repair import create_argv, leave_argvs, marsadm_timeout
from football.ops.base import (Operation, TimedOut, answers, reachable, silent_hosts,
                               synced_and_consistent, synced_bytes, views_say, wait_knows,
                               wait_until, wait_uptodate)
from football.ops.window import DowntimeWindow, restart_somewhere
from football.report import agreeing
from football.snapshot import observe, rank_targets

PHASES = ("prepare", "wait", "finish", "cleanup")
MIB = 1 << 20
# times a merge takes the locks of both MARS clusters' hosts, read again
# under them: another run's merge may bring hosts in meanwhile
MERGE_LOCK_TRIES = 5


class Migrate(Operation):
    operation = "migrate"
    finishes_others_first = True
    plan_check = "check_migrate"    # the hook that judges the targets during discovery
    whole = PHASES                  # running these completes the operation: journal done
    warn_alone = True               # a target alone is said (a combined stage means it)
    hands_over_only = False         # a handover: no replicas made, one host asked
    # the old replicas' LVs on these hosts stay once their replica left,
    # until what `keep_until` says (a combined stage: its own cleanup
    # removes them); the others go
    keep_old_lvs_on = ()
    keep_until = ""

    def __init__(self, ctx, res, target, target_secondary=None, two_phase=False,
                 pre_hand=None, post_hand=None):
        super().__init__(ctx, res)
        self.target_name, self.secondary_name = target, target_secondary
        # two-phase: sync only the new primary, hand over, then sync the new
        # secondary from the new primary (over the new hardware's network)
        self.two_phase = two_phase
        # handovers among the old replicas before, among the new ones after
        self.pre_hand, self.post_hand = pre_hand, post_hand
        # the targets whose VG must have room for the whole volume now (a
        # migrate+shrink gives its secondary only the shrunk one, later)
        self.room_checked = None
        self.gone = set()               # original hosts that left and do not answer (discover)
        self.summary.update({"synced_bytes": 0, "copied_bytes": 0, "sync_seconds": 0.0,
                             "downtime_seconds": None})

    def start_args(self):
        return {"target": self.target_name, "target_secondary": self.secondary_name}

    # ------------------------------------------------------------- discovery
    def discover(self):
        """Find the source, decide the targets; changes nothing."""
        inv = self.ctx.inventory
        if self.secondary_name and self.target_name in inv.clusters:
            # (placement chose both in it: the secondary named went unheard,
            # its replica removed if it was one)
            raise Illegal(f"{self.target_name} is a cluster: placement chooses the primary and "
                          f"the secondary in it; name no secondary with it, or two hosts "
                          f"(not {self.target_name} {self.secondary_name}); nothing changed")
        self.journal = self.open_journal()
        if self.source_hint:
            self.source = self.named_host()
        else:
            self.source = self.hooks.get_hyper(res=self.res, inventory=inv)
        store = self.hooks.first("get_store", res=self.res, inventory=inv)
        if store is not None and store.name != self.source.name:
            raise Illegal(f"{self.res}: its storage is on {store.name}, not on its hypervisor "
                          f"{self.source.name}; Football moves only local storage")
        self.members = facts.members(self.source, self.res)
        self.size = int(facts.view(self.source, "sync-size", self.res) or 0)
        decided = self.journal.decided.get("targets")
        if decided and not self._asks_for(decided):
            self._refuse_other_targets(decided)
        if decided:
            self.targets = [self.host(name) for name in decided]
            self.say(f"* resuming {self.operation} of {self.res} to {', '.join(decided)}")
        else:
            self.targets = self._place()
        for target in self.targets:
            self._reachable_target(target, decided)
        if not decided:
            self._refuse_hosts_placement_refuses()
        self.origin = self.journal.decided.get("origin") or [self.source.name] + \
            [name for name in self.members if name != self.source.name]
        self.gone = self._gone_left_hosts()
        for target in self.targets[:self.room_checked]:
            have = self.hooks.lv_list(host=target).get(self.res, 0)
            if have < self.size:
                free = self.hooks.vg_free(host=target)
                if free < self.size - have + self.config.placement_min_free:
                    raise Illegal(f"{target.name}: volume group {target.vg} has {free >> 20} MiB "
                                  f"free, {self.res} needs {self.size >> 20} MiB; choose another "
                                  "target or free space there")
        self._plugin_checks()
        return inv

    def _reachable_target(self, target, decided):
        """`Illegal` when `target`'s marsd does not answer; for a target an
        unfinished run decided, with the way out should it be gone for good."""
        try:
            reachable(target)
        except Illegal as refused:
            if not decided or answers(target):
                raise
            path = self.journal.path
            raise Illegal(f"{refused}. The unfinished {self.operation} of {self.res} goes to "
                          f"{', '.join(decided)} (its journal); if {target.name} is gone for "
                          f"good: set it aside (mv {path} {path}.abandoned), then "
                          f"`football {self.operation} {self.res}` to other hosts") from None

    def _asks_for(self, decided):
        """Whether this command asks for the targets an unfinished run
        decided (`decided`): a cluster's hosts (placement may rank them
        otherwise now), or the same host(s)."""
        clusters = self.ctx.inventory.clusters
        if self.target_name in clusters:
            return set(decided) <= set(clusters[self.target_name])
        return decided == [self.target_name, *([self.secondary_name] if self.secondary_name
                                               else [])]

    def _refuse_other_targets(self, decided):
        path = self.journal.path
        asked = " ".join(name for name in (self.target_name, self.secondary_name) if name)
        self._refuse_unlike_unfinished(
            f"to {', '.join(decided)}",
            f"steps done: {', '.join(self.journal.data['steps']) or 'none'}", f"to {asked}",
            decided[:1] if self.hands_over_only else decided,
            f". To go to {asked} instead, set it aside (mv {path} {path}.abandoned) and run "
            "this again" + ("" if self.hands_over_only else
                            ": its cleanup removes the replicas the unfinished one made"))

    def _new_homes(self):
        """The targets this run places the resource on."""
        return [target for target in self.targets if target.name != self.source.name]

    def _refuse_hosts_placement_refuses(self):
        """`Illegal` when a new home is draining or evacuated."""
        homes = self._new_homes()
        lifecycle.refuse_as_targets([host.name for host in homes],
                                    {host.name: lifecycle.read(host)["state"] for host in homes})

    def _plugin_checks(self):
        """The plugins' objections to this plan (check_host, resource_check,
        check_migrate, check_handover): `Illegal` naming them all."""
        target, hooks = self.targets[0], self.hooks
        problems = []
        if self.plan_check:
            problems += hooks.problems(self.plan_check, res=self.res, source=self.source,
                                       targets=self.targets)
        if target.name != self.source.name:
            problems += hooks.problems("check_handover", res=self.res, source=self.source,
                                       target=target)
        self._refuse_on_plugin_problems([self.source, *self.targets], self.source, problems)

    def _place(self):
        """Targets: a host (+ optional secondary), or a cluster name, where the
        primary and secondary are chosen by placement: enough VG space first,
        then fewest resources, then hosts that already have a replica."""
        inv = self.ctx.inventory
        if self.target_name in inv.clusters:
            names = [self.host(name).name for name in inv.clusters[self.target_name]]
            members = getattr(self, "members", None) or []      # (placement alone: none)
            if self.source.name in names and set(members) <= set(names) and \
                    len(members) == min(2, len(names)):
                # there already (a re-run, a screener restart of a done job):
                # placement, ranking by the resources each host has now,
                # moved it within the cluster, with a downtime
                return [self.source, *(self.host(name) for name in members
                                       if name != self.source.name)]
            ranked = rank_targets(observe(self.ctx, names, detail=False), names, self.res,
                                  self.size, self.source.name, self.config.placement_min_free)
            if not ranked:
                raise Illegal(f"every host of cluster {self.target_name} is draining or "
                              f"evacuated; choose another target")
            chosen = ranked[:2 if len(ranked) > 1 else 1]
            post = getattr(self, "post_hand", None)
            if post in names and post not in chosen:
                # the hand after goes to one of the new replicas: placement
                # left it out, and the migrate, done, then failed handing over
                if post not in ranked:
                    raise Illegal(f"--post-hand {post}: placement in {self.target_name} does "
                                  f"not take {post} (draining, evacuated or no room); nothing "
                                  "changed")
                chosen = [chosen[0], post]
            return [self.host(name) for name in chosen]
        if self.target_name not in inv.hosts:
            raise Illegal(f"unknown host or cluster {self.target_name!r}; hosts: "
                          f"{', '.join(sorted(inv.hosts))}; clusters: "
                          f"{', '.join(sorted(inv.clusters))}")
        targets = [self.host(self.target_name)]
        if self.secondary_name:
            if self.secondary_name == self.target_name:
                raise Illegal("the target secondary must differ from the target primary")
            targets.append(self.host(self.secondary_name))
        return targets

    def _my_stage(self, other, mine):
        """A handover to the `pre_hand` or `post_hand` host is this run's own
        (a re-run goes on with it)."""
        return other["operation"] == Handover.operation and \
            other["targets"][:1] in ([self.pre_hand], [self.post_hand])

    def _changed_nothing(self):
        return super()._changed_nothing() and \
            not (self.journal and self.journal.decided.get("joined"))

    # ------------------------------------------------------------------- run
    def _run(self, phases):
        whole = list(phases) == list(self.whole)
        if whole and (self.pre_hand or self.post_hand):
            self._check_hand_hosts()
        if whole and self.pre_hand and not self.open_journal().data["steps"]:
            self.discover()         # what would refuse the migrate refuses before the hand
            if self.names_only_its_primary() and not self.journal.resumed and \
                    not self.open_journal(Handover.operation).resumed:
                self.say(self._stays())
                return self.summary
            self._keep_stopped_or_ask(self.source, self.pre_hand, self._hosts_involved())
            self._hold_the_resource(self._hosts_involved())    # before the hand changes them
            # a re-run after the migrate (its post-hand crashed) hands nothing before
            arrived = set(self.members) == {target.name for target in self.targets}
            if not arrived and (self.source.name != self.pre_hand or
                                self.open_journal(Handover.operation).resumed):
                self.say(f"* pre-hand: {self.res} to {self.pre_hand}")
                before = self.run_within(Handover(self.ctx, self.res, self.pre_hand),
                                         Handover.whole)
                self.summary["pre_hand_downtime_seconds"] = before["downtime_seconds"]
            self.source_hint = None              # it moved: discover it again
        self.discover()
        wanted = [target.name for target in self.targets]
        if self.source.name in (wanted[0], self.post_hand) and \
                set(self.members) == set(wanted) and not self.journal.resumed:
            self.say(self._already(wanted))
            return self._post_hand() if whole else self.summary
        if self.names_only_its_primary() and not self.pre_hand and not self.journal.resumed:
            self.say(self._stays())
            return self.summary
        self.say(self._heading(wanted))
        self._keep_stopped_or_ask(self.source, wanted[0], self._hosts_involved())
        if self.warn_alone and len(wanted) == 1 and len(self.members) > 1:
            self.ctx.reporter.warning(
                f"no secondary named: {self.res} ends with one replica, on {wanted[0]} (the "
                f"replicas on {', '.join(n for n in self.members if n != wanted[0])} go with "
                f"cleanup); for two: football migrate {self.res} {wanted[0]} <secondary>")
        if self.ctx.dry_run:
            return self._dry_run(phases)
        self.journal.decide(targets=wanted, origin=self.origin)
        self._prepare_hosts(self._hosts_involved())
        if self.two_phase and list(phases) == list(PHASES) and len(self.targets) > 1:
            self._run_phases(("prepare", "wait", "finish", "prepare", "wait", "cleanup"))
        else:
            self._run_phases(phases)
        if whole:
            self.journal.finish()
            return self._post_hand()
        return self.summary

    def _already(self, wanted):
        return f"{self.res} is already on {', '.join(wanted)}: nothing to do"

    def names_only_its_primary(self):
        """Whether the one host named is where `res` is primary now: a target
        equal to the source is nothing to do (FOOTBALL.md), its other
        replicas stay (it went on to remove them, asked for nothing). Not
        a combined stage's (`warn_alone`), which means that host alone."""
        return self.warn_alone and not self.secondary_name and \
            self.target_name == self.source.name

    def _stays(self):
        return (f"{self.res} is primary on {self.source.name} already: nothing to do (its "
                f"replicas stay: {', '.join(self.members)})")

    def _heading(self, wanted):
        """The run's first line: from where to where, or, where the primary
        stays (the last stage of migrate+shrink, a secondary moved), the
        replicas it adds and those that go."""
        size = f"{self.res} ({self.size >> 20} MiB)"
        if self.source.name != wanted[0]:
            return f"* migrating {size} from {self.source.name} to {', '.join(wanted)}"
        # what changes: the targets without a replica get one, the replicas
        # not named go with cleanup (it said "adding ... on a2" of a2's
        # replica, and not that the one on b1 goes)
        added = [name for name in wanted if name not in self.members]
        dropped = [name for name in self.members if name not in wanted]
        heading = (f"* adding {'a replica' if len(added) == 1 else 'replicas'} of {size} on "
                   f"{', '.join(added)}" if added else
                   f"* keeping {size} on {', '.join(wanted)}")
        heading += f"; the primary stays on {self.source.name}"
        if dropped:
            heading += (f"; the {'replica' if len(dropped) == 1 else 'replicas'} on "
                        f"{', '.join(dropped)} {'goes' if len(dropped) == 1 else 'go'} with "
                        "cleanup")
        return heading

    def _post_hand(self):
        if self.post_hand and self.post_hand != self.targets[0].name:
            self.say(f"* post-hand: {self.res} to {self.post_hand}")
            after = self.run_within(Handover(self.ctx, self.res, self.post_hand),
                                    Handover.whole)
            self.summary["post_hand_downtime_seconds"] = after["downtime_seconds"]
        return self.summary

    def _check_hand_hosts(self):
        """Pure checks of --pre-hand/--post-hand, before anything moves."""
        inv = self.ctx.inventory
        if self.pre_hand:
            self.host(self.pre_hand)
        if self.post_hand:
            self.host(self.post_hand)
            new = inv.clusters.get(self.target_name) or [self.target_name, self.secondary_name]
            if self.post_hand not in new:
                raise Illegal(f"--post-hand {self.post_hand} is not one of the new replicas "
                              f"({', '.join(name for name in new if name)}); nothing changed")

    def dry_run(self, phases=PHASES):
        """The commands of prepare, finish and cleanup (of those in
        `phases`), as a run would issue them from the state now."""
        planned, attempt = self.ctx.planned, self.ctx.planner.attempt
        cluster = set(facts.cluster_hosts(self.source))
        for target in self.targets if "prepare" in phases else []:
            if self.res in facts.my_resources(target):
                continue
            if target.name not in cluster:      # its cluster comes along
                planned(target).run(self._merge_argv())
                cluster |= set(facts.cluster_hosts(target))
            have = self.hooks.lv_list(host=target).get(self.res)
            if have is None:
                self.hooks.lv_create(host=planned(target), lv=self.res, size=self.size)
            elif have < self.size:
                self.hooks.lv_resize(host=planned(target), lv=self.res, size=self.size)
            planned(target).run(self._join_argv(target))
        target = self.targets[0]
        if "finish" in phases and facts.primary(self.source, self.res) != target.name:
            for host in self._stopped_in_window(target):
                attempt(lambda: self.hooks.resource_stop(host=planned(host), res=self.res))
            attempt(lambda: self._start_hook()(host=planned(target), res=self.res))
        old = self._old_hosts() if "cleanup" in phases else []
        if self.config.cleanup_old_replicas:
            for host in old:
                for argv in self._leave_argvs():
                    planned(host).run(argv)
                if host.name not in self.keep_old_lvs_on:
                    self.hooks.lv_remove(host=planned(host), lv=self.res)
        if old and self.config.split_clusters_after_migrate:
            names = [*(target.name for target in self.targets), *(host.name for host in old)]
            plan_split_after_move(self.ctx, names, self.res, names[:len(self.targets)],
                                  skip=self.gone)
        return self.summary

    def _merge_argv(self):
        return ["marsadm", "merge-cluster", self.source.name, self.source.address]

    def _join_argv(self, target):
        """Bound within command_timeout (`run`'s limit for it): a join that
        waits for another create or join on `target` gives up saying so."""
        return create_argv(self.res, self.hooks.lv_path(host=target, lv=self.res),
                           "join-resource", marsadm_timeout(self.config.command_timeout))

    def _leave_argvs(self):
        return leave_argvs(self.res, self.config.handover_timeout)

    @property
    def syncing(self):
        """The targets to sync now: all of them, except in a two-phase
        migrate before the handover, when only the new primary."""
        if not self.two_phase or len(self.targets) < 2:
            return self.targets
        return self.targets if self._holds_primary(self.targets[0]) else self.targets[:1]

    def _holds_primary(self, host):
        try:
            return facts.primary(host, self.res) == host.name
        except facts.FactUnavailable:       # it does not know the resource yet
            return False

    # --------------------------------------------------------------- prepare
    def prepare(self):
        targets = self.syncing
        held = [target.name for target in targets if self.res in facts.my_resources(target)]
        self.say(f"* prepare: replicas on {', '.join(target.name for target in targets)}"
                 + (f" ({agreeing(held, 'holds', 'hold')} one already)" if held else ""))
        if joblink.in_job():        # the targets that will sync: a slot on each
            self._take_job_slots("sync", [target for target in targets
                                          if self.res not in facts.my_resources(target)],
                                 "limit_syncs")
        for target in targets:
            if self.res in facts.my_resources(target):
                self.ctx.reporter.detail(f"{target.name}: already a replica of {self.res}")
                continue
            self._take_sync_slot(target)
            for _ in range(MERGE_LOCK_TRIES):
                held = [self.source, target, *self._clusters_to_merge(target)]
                with self.holding(held):
                    if self._clusters_grew(target, held):
                        continue            # (let go: locked again, all of them)
                    self._join(target)
                break
            else:
                raise FootballError(
                    f"the MARS clusters of {self.source.name} and {target.name} kept growing "
                    f"while this run waited for their hosts' locks ({MERGE_LOCK_TRIES} times): "
                    "other runs merge into them; run it again once they are done")
        self.journal.record("prepare")

    def _clusters_grew(self, target, held):
        """Whether hosts came into the MARS clusters of the source or `target`
        while the run waited for the locks of `held` (another run's merge):
        a merge must hold every host of both, read again under the locks."""
        if target.name in facts.cluster_hosts(self.source):
            return False
        facts.forget()
        grown = {host.name for host in self._clusters_to_merge(target)} - \
            {host.name for host in held}
        if grown:
            self.say(f"  {', '.join(sorted(grown))} came into the MARS clusters to merge while "
                     "this run waited for their locks: locking them too")
        return bool(grown)

    def _join(self, target):
        """Merge `target`'s MARS cluster (if it is another), make its LV and
        join it; under the locks of both clusters' hosts."""
        self._merge(target)
        self.ctx.inject("prepare:merged")
        have = self.hooks.lv_list(host=target).get(self.res)
        if have is None:
            self.say(f"  {target.name}: creating LV {target.vg}/{self.res}")
            self.hooks.lv_create(host=target, lv=self.res, size=self.size)
        elif have < self.size:
            # made before an expand grew the resource (an expand goes on
            # over a migrate stopped outside its window): MARS refuses
            # to join a disk smaller than the resource
            self.say(f"  {target.name}: growing LV {target.vg}/{self.res} "
                     f"({have >> 20} MiB) to {self.size >> 20} MiB, as {self.res} grew")
            self.hooks.lv_resize(host=target, lv=self.res, size=self.size)
        self.ctx.inject("prepare:lv-created")
        join = self._join_argv(target)
        self.say(f"  {target.name}: {' '.join(join)}")
        self._tell("tell_action", action="join", hosts=[target])
        # the first join starts the syncs (a run interrupted before
        # it, in a merge, synced nothing: its re-run counts from here)
        self.journal.decide(sync_started=self.journal.decided.get("sync_started")
                            or time.time())
        target.run(join, timeout=self.config.command_timeout)
        joined = self.journal.decided.get("joined", [])
        self.journal.decide(joined=[*joined, target.name], sync_ended=None)
        self.ctx.inject("prepare:joined")

    def _clusters_to_merge(self, target):
        """The inventory hosts of both MARS clusters when `target` must merge
        into the source's: a merge holds them all, since two merges into one
        cluster at once (a1 through b2 while a2 comes in through b1) can lose
        one of them — b2 never lists a1. A host that does not answer (gone
        for good: it merges nothing) is left out, said."""
        if target.name in facts.cluster_hosts(self.source):
            return []
        names = set(facts.cluster_hosts(self.source)) | set(facts.cluster_hosts(target))
        hosts = [self.host(name) for name in sorted(names - {self.source.name, target.name})
                 if name in self.ctx.inventory.hosts]
        silent = silent_hosts(hosts)
        for host in silent:
            self.ctx.reporter.detail(f"{host.name} does not answer: the merge of "
                                     f"{target.name} goes on without its lock")
        return [host for host in hosts if host not in silent]

    def _merge(self, target):
        facts.forget()      # under the locks now: what was read before may have changed
        if target.name not in facts.cluster_hosts(self.source):
            self.say(f"  {target.name}: merge-cluster with {self.source.name}")
            merge_until(self.ctx, target, self._merge_argv(),
                        lambda: target.name in facts.cluster_hosts(self.source),
                        f"{self.source.name} to see {target.name}", self.say)
        # The target learns of the resource through the cluster's metadata
        # exchange: a host that came in with another one's merge (b2 with b1)
        # may not have it yet, and its join-resource would be refused.
        wait_knows(target, self.res, self.config.poll_interval)

    def _take_sync_slot(self, target):
        self._take_slot(target, "sync", lambda: self._sync_slot_free(target),
                        f"limit_syncs {self.config.limit_syncs}")

    def _sync_slot_free(self, target):
        syncing = {res for res, rest in facts.view_all(target, "sync-rest").items()
                   if res != self.res and rest not in ("", "0")}
        planned = live_intents(target, self.config, except_res=self.res)
        return self._slot_free(syncing, planned - syncing, self.config.limit_syncs)

    def _wait_for_sync_slot(self, target):
        self._wait_for_slot(target, "sync", lambda: self._sync_slot_free(target),
                            f"limit_syncs {self.config.limit_syncs}")

    # ------------------------------------------------------------------ wait
    def wait(self):
        targets = self.syncing
        # a target that holds the primary (it stays, as in migrate+shrink's
        # last stage, or took it, in a two-phase migrate's second wait) has
        # nothing to sync: not waited for, not in the bar
        syncs = [target for target in targets if not self._holds_primary(target)] or targets
        self.say(f"* wait: until {agreeing([target.name for target in syncs], 'is', 'are')} "
                 "UpToDate")
        waited = wait_uptodate(self, syncs, self.size * len(syncs), f"sync {self.res}")
        began = self.journal.decided.get("sync_started")
        joined = [self.host(name) for name in self.journal.decided.get("joined", [])]
        self.summary["synced_bytes"], self.summary["synced_bytes_measured"] = \
            synced_bytes(joined, self.res, self.size)
        # what the syncs made equal; synced_bytes is what of it travelled
        # (zero chunks and, in a fast full sync, equal ones do not)
        self.summary["copied_bytes"] = self.size * len(joined)
        # a re-run after the syncs ended (a crash later) says how long they
        # took, not how long since they began; one that did not start them and
        # found them ended (`migrate-wait` after `migrate-prepare`) knows only
        # that they took at most that long
        ended = self.journal.decided.get("sync_ended")
        if not ended:
            ended = time.time()
            self.journal.decide(sync_ended=ended, sync_at_most=self.journal.resumed and
                                not self.sync_seen_unfinished)
        self.summary["sync_seconds"] = round(ended - began if began else waited, 3)
        if self.journal.decided.get("sync_at_most"):
            self.summary["sync_seconds_at_most"] = True
        for target in targets:
            drop_intent(target, self.res)
        self._release_job_slots("sync", targets)
        self.ctx.inject("wait:synced")
        self.journal.record("wait", sync_ended=ended)

    # ---------------------------------------------------------------- finish
    def finish(self):
        target = self.targets[0]
        primary = facts.view(target, "get-primary", self.res)
        if primary == target.name and self._is_up(target):
            self.say(f"* finish: {self.res} already {self._up_as(target)}")
            # an earlier run's window (a screener job resumed after its worker died)
            self.summary["downtime_seconds"] = self.journal.decided.get("downtime")
            if self.journal.decided.get("window_ended") is None:
                # that run died between the start here and the window's end:
                # cleanup_delay counts from now (it was skipped: the old
                # replicas, the way back, went at once)
                self.journal.decide(window_ended=time.time())
            self.journal.record("finish")
            return
        self._follow_a_stop_or_start_meanwhile(self.source, self._hosts_involved())
        self.say(f"* finish: handover of {self.res} to {target.name}")
        down_since = self._down_since()
        while True:
            if down_since is None:
                self._downtime_gate(self.source, target)
            self._wait_for_small_lag(target, down_since)
            if primary != target.name:
                diskstate = facts.view(target, "diskstate", self.res)
                if not synced_and_consistent(diskstate):
                    raise Illegal(f"{target.name}: {self.res} is {diskstate or 'not joined'}, "
                                  "not synced and consistent; run migrate-wait first")
            self._check_startable(target, self.source)
            self._take_job_slots("handover", [self.source], "limit_handovers")
            try:
                with self.holding(self._hosts_involved()):
                    self.ctx.inject("finish:locked")
                    if down_since is None and self._gates_closed_meanwhile(
                            self.source, target, "the handover slot and the locks",
                            self._lag_grown(target)):
                        continue        # (the slot and the locks let go: the gates again)
                    self._downtime_window(target, down_since)
                    break
            finally:
                self._release_job_slots("handover", [self.source])
        self.journal.record("finish", downtime=self.summary["downtime_seconds"])

    def _lag_grown(self, target):
        """[why] where the replication lag on `target` is past
        limit_mars_logfile (again: it was below before the waits for the
        handover slot and the locks), else []."""
        lag = self._lag(target)
        if lag is None:
            return [f"the replication lag on {target.name} cannot be read (marsadm view-work-"
                    f"rest {self.res} says nothing: is marsd running there?)"]
        if lag <= self.config.limit_mars_logfile * MIB:
            return []
        return [f"the replication lag on {target.name} is {lag >> 20} MiB again, over "
                f"limit_mars_logfile {self.config.limit_mars_logfile} MiB"]

    def _hosts_involved(self):
        """Where `res` may come up: the source, the targets, the old hosts;
        and an old host that left already, whose LV the cleanup removes."""
        return [self.source, *self.targets, *self._old_hosts(), *self._left_hosts()]

    def _old_hosts(self):
        wanted = {target.name for target in self.targets}
        return [self.host(name) for name in self.members
                if name not in wanted and name in self.ctx.inventory.hosts]

    def _left_hosts(self, answering=True):
        """The original hosts that are no longer members and not targets: an
        earlier run's cleanup stopped between a host's leave and its LV's
        removal (`_members_now`); or a host gone for good whose replica the
        operator dropped. `answering`: not those that are gone."""
        wanted = {target.name for target in self.targets} | set(self.members)
        return [self.host(name) for name in self.origin
                if name not in wanted and name in self.ctx.inventory.hosts
                and not (answering and name in self.gone)]

    def _gone_left_hosts(self):
        """The names of the original hosts that left `res` and do not answer:
        a host gone for good whose replica the operator dropped from MARS
        (`marsadm --host=<it> leave-resource --force`, on the primary). The
        run goes on without them; their LVs stay, said once. (Asked only of
        hosts that left: normally none.)"""
        gone = silent_hosts(self._left_hosts(answering=False))
        for host in gone:
            self.ctx.reporter.warning(
                f"{host.name} does not answer and holds no replica of {self.res} any more: "
                f"this {self.operation} goes on without it; its LV {host.vg}/{self.res} stays "
                f"there (football lv-cleanup {self.res} once it answers)")
        return {host.name for host in gone}

    def _if_gone_for_good(self):
        """The way on when an old replica's host does not answer: if it is
        gone for good, its replica is dropped from MARS on the primary, as
        with the kernel's marsadm (the LV stays; the run goes on without it)."""
        facts.forget()      # a host that answered earlier in the run may not now
        silent = silent_hosts(self._old_hosts())
        if not silent:
            return ""
        names = ", ".join(host.name for host in silent)
        failovers = "; ".join(f"`football failover {host.name}`" for host in silent)
        drops = "; ".join(f"`marsadm --host={host.name} leave-resource --force {self.res}`"
                          for host in silent)
        return (f". If {names} {'is' if len(silent) == 1 else 'are'} gone for good (switched "
                f"off, not to come back with its data): {failovers} takes over from it and "
                f"drops its replicas from MARS (its LVs stay there) — or, for {self.res} "
                f"alone, {drops} on {self.source.name} —, then this command again")

    def _wait_for_small_lag(self, target, down_since=None):
        limit = self.config.limit_mars_logfile * MIB
        try:
            wait_until(lambda: (lag := self._lag(target)) is not None and lag <= limit,
                       self.config.lag_timeout, self.config.poll_interval,
                       f"the replication lag of {self.res} on {target.name} to fall under "
                       f"{self.config.limit_mars_logfile} MiB")
        except TimedOut as timed_out:       # what its view says of why
            where = (f"{self.res} is down since an earlier run stopped it: run this again, or "
                     f"football repair-vm {self.res} {self.source.name}") if down_since else \
                f"nothing was stopped: {self.res} runs on {self.source.name}"
            said = f"{timed_out}{views_say([target], self.res)}; {where}"
            if not down_since and self._changed_nothing():
                # a limit not met before this run did anything (a handover
                # alone): 191, no journal or run lock left (it exited 198 and
                # kept both, refusing the next operation as an unfinished one)
                raise Illegal(f"{said}; this run changed nothing: run it again once the "
                              "lag is down") from None
            raise TimedOut(said) from None

    def _lag(self, target):
        """Bytes `target` has still to fetch and replay (`view-work-rest`);
        None where its view cannot tell (empty: marsd not running there),
        which is no small lag."""
        return facts.view_count(target, "work-rest", self.res)

    def _stopped_in_window(self, target):
        """Where the window stops the stack: the source and the old hosts."""
        stop = {host.name: host for host in [self.source, *self._old_hosts()]}
        stop.pop(target.name, None)
        return list(stop.values())

    def _down_since(self):
        """Where an earlier run ended inside its window (a crash, a kill)
        and the container has not run on the source since: when that window
        began. The downtime has begun then: no gate holds the container down
        longer (a business-hours window, a pause, the screener's gate), and
        the window counts from there."""
        since = self._left_down_since(self.source)
        if since is None:
            return None
        self.say(f"  {self.res} is down since {time.strftime('%H:%M:%S', time.localtime(since))}"
                 ": an earlier run ended inside its downtime window; going on now, past "
                 "the gates")
        return since

    def _downtime_window(self, target, down_since=None):
        self._tell("tell_action", action="handover", hosts=[self.source, target])
        compensate = lambda error: restart_somewhere(  # noqa: E731
            self, [self.source, target, *self._old_hosts()], error)
        with DowntimeWindow(self, self.source, compensate, down_since) as window:
            for host in self._stopped_in_window(target):
                self.say(f"  {host.name}: stopping {self.res}" if not self.kept_stopped else
                         f"  {host.name}: releasing the volume of {self.res}")
                self.hooks.resource_stop(host=host, res=self.res)
            self.ctx.inject("finish:stopped")
            # the cluster manager's start makes it the MARS primary (handover_timeout)
            self.say(f"  {target.name}: starting {self.res} (marsadm primary first)" if not
                     self.kept_stopped else f"  {target.name}: bringing up the volume of "
                     f"{self.res} (marsadm primary first), not the container")
            self._bring_up(target)
            window.ran_on(target)
        self.summary["downtime_seconds"] = window.seconds
        self.say(f"  {self.res} {self._up_as(target)}; {self._window_words(window.seconds)}"
                 + (f" (this run's part {window.run_seconds:.2f} s)"
                    if window.seconds != window.run_seconds else ""))
        self.ctx.inject("finish:started")

    # --------------------------------------------------------------- cleanup
    def cleanup(self):
        # no lock for the whole phase (as prepare and finish, which wait
        # first and lock per step): its delay may last hours, and would hold
        # every other run on the old hosts; their lock while the replicas go
        # (the split takes the clusters' own)
        self._refuse_cleanup_too_early()
        self._delay_cleanup()
        with self.holding([*self._old_hosts(), *self._left_hosts()]):
            self._remove_old_replicas()

    def _refuse_cleanup_too_early(self):
        """`Illegal`, nothing changed, before the old replicas go while the
        new ones cannot stand alone: the handover to the new primary not
        done (`migrate-cleanup` before `migrate-finish` removed the first
        old replica, then refused at the running primary: 191 "nothing
        changed"), or a new replica not yet in sync (it exited 0 with one
        good copy left, unsaid)."""
        primary = self.targets[0]
        if not self._holds_primary(primary):
            # as the source sees it: a target not joined yet knows no primary
            # (its view failed: 198, and the journal it left sent the next
            # migrate, to its cluster, to that host alone)
            designated = facts.primary(self.source, self.res)
            raise Illegal(f"{self.res}'s primary is {designated or 'none'}, not {primary.name}: "
                          f"the handover is not done; football migrate-finish {self.res} "
                          f"{' '.join(host.name for host in self.targets)} first (the old "
                          "replicas stay until then); nothing changed")
        for host in self.targets:
            rest = facts.view(host, "sync-rest", self.res)
            # (not asked of the primary: kernel MARS's is 0 while it has
            # writes not yet written back, a busy container's every moment)
            if rest != "0" or (host is not primary and
                               facts.view(host, "is-consistent", self.res) != "1"):
                raise Illegal(f"{host.name}: its replica of {self.res} is not in sync yet "
                              f"({rest or 'no'} bytes to sync): football migrate-wait "
                              f"{self.res} {' '.join(target.name for target in self.targets)} "
                              "first (the old replicas stay until then); nothing changed")

    def _remove_old_replicas(self):
        old = [host for host in self._members_now() if host.name not in
               {target.name for target in self.targets}]
        if not self.config.cleanup_old_replicas or not old:
            self._split_clusters()
            self._cleaned_up()
            return
        self.say(f"* cleanup: removing the replicas on {', '.join(host.name for host in old)}")
        for host in old:
            if self.hooks.container_state(host=host, res=self.res) == "RUNNING":
                raise Illegal(f"{host.name}: {self.res} still runs there; stop it first")
            if self.res in facts.my_resources(host):
                self._tell("tell_action", action="leave", hosts=[host])
                for argv in self._leave_argvs():
                    host.run(argv, timeout=self.config.command_timeout)
            self.ctx.inject("cleanup:left")
            if self.res in self.hooks.lv_list(host=host):
                if host.name in self.keep_old_lvs_on:
                    self.say(f"  {host.name}: LV {host.vg}/{self.res} stays until "
                             f"{self.keep_until}")
                else:
                    wait_until(lambda: self._remove_lv(host), 60, 0.5,
                               f"LV {host.vg}/{self.res} on {host.name} to be free")
            self.ctx.inject("cleanup:lv-removed")
        self._split_clusters()
        self._cleaned_up()

    def _cleaned_up(self):
        """The old replicas are gone: once the handover is done, the migrate
        is complete, also when its phases ran as commands of their own (a
        journal left open would be resumed by the next migrate, to these
        targets, whatever it asked for)."""
        self.journal.record("cleanup")
        if self.journal.done("finish"):
            self.journal.finish()

    def _members_now(self):
        primary = self.targets[0]
        names = facts.members(primary, self.res)
        # hosts that left already but still hold the LV (a crash in between)
        names += [name for name in self.origin if name not in names and name not in self.gone]
        return [self.host(name) for name in names if name in self.ctx.inventory.hosts]

    def _remove_lv(self, host):
        try:
            self.hooks.lv_remove(host=host, lv=self.res)
            return True
        except FootballError as error:
            if getattr(error, "kind", "") == "in-use":
                return False
            raise

    def _split_clusters(self):
        """The old hosts share nothing with the new ones any more: separate
        MARS clusters again (inventory clusters stay whole). The new primary's
        view decides the split, so first it must have seen the old hosts leave."""
        if not self.config.split_clusters_after_migrate:
            return
        primary, wanted = self.targets[0], {target.name for target in self.targets}
        old = [self.host(name) for name in self.origin if name not in wanted
               and name in self.ctx.inventory.hosts and name not in self.gone]
        gone = {host.name for host in old if self.res not in facts.my_resources(host)}
        wait_until(lambda: not gone & set(facts.members(primary, self.res)),
                   60, self.config.poll_interval,
                   f"{primary.name} to see {', '.join(sorted(gone))} leave {self.res}")
        split_unshared(self.ctx, [*(target.name for target in self.targets),
                                  *(host.name for host in old)],
                       self.owner, self._lock_wait(), point="cleanup:split", skip=self.gone)


class Handover(Migrate):
    """Move the primary role of a resource to another of its replicas (the
    finish phase of migrate; all replicas stay)."""

    operation = "handover"
    plan_check = None               # check_handover alone judges it
    hands_over_only = True
    whole = ("finish",)

    def __init__(self, ctx, res, host):
        super().__init__(ctx, res, host)

    def _already(self, wanted):
        return f"{self.res}'s primary is on {wanted[0]} already: nothing to do"

    def _heading(self, wanted):
        return (f"* handover of {self.res} from {self.source.name} to {wanted[0]}; its "
                f"replicas stay ({', '.join(sorted(wanted))})")

    def _new_homes(self):
        return [target for target in self.targets[:1] if target.name != self.source.name]

    def _asks_for(self, decided):
        return decided[0] == self.target_name

    def _place(self):
        target = self.host(self.target_name)
        if target.name not in self.members:
            raise Illegal(f"{target.name} has no replica of {self.res} (replicas: "
                          f"{', '.join(self.members)}); use football migrate")
        return [target] + [self.host(name) for name in self.members if name != target.name]

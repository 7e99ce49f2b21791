"""Migrate a resource (container + MARS resource + LV) to new hosts.

Steps (FOOTBALL.md, "Migrate"), each announced as it runs:

1. prepare — for each target without a replica: wait for the sync limit,
   merge the target into the source's MARS cluster, create the LV,
   `marsadm join-resource`.
2. wait — until every target is UpToDate (progress bar, stall watchdog).
3. finish — the downtime window: lag under `limit_mars_logfile`, stop the
   stack on the source, `marsadm primary` on the target, start it there.
   A failure inside the window is compensated: restart where it can run.
4. cleanup — leave the resource on the old hosts and remove their LVs.

The decided targets are kept in the journal, so a re-run resumes with the
same placement; every step checks the real state first."""

import socket
import time

from football import facts
from football.errors import EXIT_CRITICAL, FootballError, Illegal
from football.journal import Journal
from football.locks import LockSet, drop_intent, live_intents, register_intent
from football.ops.base import (InjectedFailure, TimedOut, check_resource_name, in_parallel,
                               reachable, wait_until)
from football.transport import TransportError

PHASES = ("prepare", "wait", "finish", "cleanup")
LOCK_ITEM = "football"
MIB = 1 << 20


class Serious(FootballError):
    """Failed; the container runs again after compensation."""

    exit_code = 198


class Critical(FootballError):
    """Failed inside the downtime window and the container is not running."""

    exit_code = EXIT_CRITICAL


class Migrate:
    operation = "migrate"

    def __init__(self, ctx, res, target, target_secondary=None):
        self.ctx, self.config, self.hooks = ctx, ctx.config, ctx.hooks
        self.say = ctx.reporter.say
        self.res, self.source_hint = self._split_res(res)
        self.target_name, self.secondary_name = target, target_secondary
        self.journal = None
        # stable across re-runs, so that a resumed run owns its earlier locks and intents
        self.owner = f"{self.operation}-{self.res}@{socket.gethostname()}"
        self.summary = {"resource": self.res, "phases": {}, "synced_bytes": 0,
                        "sync_seconds": 0.0, "downtime_seconds": None}

    @staticmethod
    def _split_res(argument):
        res, _, host = argument.partition(":")
        return check_resource_name(res), host or None

    # ------------------------------------------------------------- discovery
    def host(self, name):
        try:
            return self.ctx.inventory.host(name)
        except Exception as error:
            raise Illegal(str(error)) from None

    def discover(self):
        """Find the source, decide the targets; changes nothing."""
        inv = self.ctx.inventory
        self.journal = Journal(self.config.state_dir, self.operation, self.res)
        if self.source_hint:
            self.source = self.host(self.source_hint)
        else:
            self.source = self._find_primary()
        self.members = facts.parse_lines(self.source.run(
            ["marsadm", "view-resource-members", self.res]).stdout)
        self.size = int(facts.view(self.source, "sync-size", self.res) or 0)
        decided = self.journal.decided.get("targets")
        if decided:
            self.targets = [self.host(name) for name in decided]
            self.say(f"* resuming {self.operation} of {self.res} to {', '.join(decided)}")
        else:
            self.targets = self._place()
        for target in self.targets:
            reachable(target)
        self.origin = self.journal.decided.get("origin") or [self.source.name] + \
            [name for name in self.members if name != self.source.name]
        for target in self.targets:
            if self.res not in self.hooks.lv_list(host=target):
                free = self.hooks.vg_free(host=target)
                if free < self.size + self.config.placement_min_free:
                    raise Illegal(f"{target.name}: volume group {target.vg} has {free >> 20} MiB "
                                  f"free, {self.res} needs {self.size >> 20} MiB; choose another "
                                  "target or free space there")
        return inv

    def _find_primary(self):
        def ask(host):
            try:
                result = host.run(["marsadm", "view-get-primary", self.res], check=False,
                                  timeout=30)
            except TransportError:
                return None
            return result.stdout.strip() if result.ok else None

        hosts = list(self.ctx.inventory.hosts.values())
        answers = {answer for answer in in_parallel(ask, hosts) if answer}
        if not answers:
            raise Illegal(f"unknown resource {self.res}: no host of the inventory "
                          f"({self.ctx.inventory.source}) has it; name its host as "
                          f"{self.res}:<host> if it is not discoverable")
        if len(answers) > 1:
            raise Illegal(f"{self.res}: hosts disagree on the primary ({', '.join(answers)}); "
                          "repair MARS first")
        return self.host(answers.pop())

    def _place(self):
        """Targets: a host (+ optional secondary), or a cluster name, where the
        primary and secondary are chosen by placement: enough VG space first,
        then fewest resources, then hosts that already have a replica."""
        inv = self.ctx.inventory
        if self.target_name in inv.clusters:
            candidates = [self.host(name) for name in inv.clusters[self.target_name]]
            ranked = sorted(candidates, key=self._placement_key)
            count = 2 if len(ranked) > 1 else 1
            return ranked[:count]
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

    def _placement_key(self, host):
        try:
            has_replica = self.res in self.hooks.lv_list(host=host)
            free = self.hooks.vg_free(host=host)
            others = len([res for res in facts.my_resources(host) if res != self.res])
        except (FootballError, TransportError):
            return (2, 0, 2, host.name)       # unreachable hosts last
        enough = has_replica or free >= self.size + self.config.placement_min_free
        here = 0 if host.name == self.source.name else 1 if has_replica else 2
        return (0 if enough else 1, others, here, host.name)

    # ------------------------------------------------------------------- run
    def run(self, phases=PHASES):
        self.discover()
        wanted = [target.name for target in self.targets]
        if self.source.name == wanted[0] and set(wanted) <= set(self.members) and \
                not (set(self.members) - set(wanted)) and not self.journal.data["steps"]:
            self.say(f"{self.res} is already on {', '.join(wanted)}: nothing to do")
            return self.summary
        self.journal.decide(targets=wanted, origin=self.origin)
        self.say(f"* migrating {self.res} ({self.size >> 20} MiB) from {self.source.name} "
                 f"to {', '.join(wanted)}")
        if self.ctx.dry_run:
            return self._dry_run()
        for phase in phases:
            started = time.monotonic()
            self.ctx.reporter.event("phase", phase=phase, resource=self.res)
            getattr(self, phase)()
            self.summary["phases"][phase] = round(time.monotonic() - started, 3)
        if list(phases) == list(PHASES):
            self.journal.finish()
        return self.summary

    def _dry_run(self):
        for target in self.targets:
            if self.res not in facts.my_resources(target):
                lv = self.hooks.lv_path(host=target, lv=self.res)
                self.say(f"would create LV {target.vg}/{self.res} on {target.name} and run "
                         f"`marsadm join-resource {self.res} {lv}` there")
        self.say(f"would stop {self.res} on {self.source.name}, run `marsadm primary "
                 f"{self.res}` on {self.targets[0].name} and start it there")
        return self.summary

    # --------------------------------------------------------------- prepare
    def prepare(self):
        self.say("* prepare: replicas on the targets")
        for target in self.targets:
            if self.res in facts.my_resources(target):
                self.ctx.reporter.detail(f"{target.name}: already a replica of {self.res}")
                continue
            self._wait_for_sync_slot(target)
            locks = LockSet(self.owner, self.config, self.ctx.reporter.detail)
            with locks.holding([self.source, target], LOCK_ITEM):
                register_intent(target, self.res, self.owner, self.config)
                self.journal.decide(sync_started=self.journal.decided.get("sync_started")
                                    or time.time())
                self._merge(target)
                self.ctx.inject("prepare:merged")
                if self.res not in self.hooks.lv_list(host=target):
                    self.say(f"  {target.name}: creating LV {target.vg}/{self.res}")
                    self.hooks.lv_create(host=target, lv=self.res, size=self.size)
                self.ctx.inject("prepare:lv-created")
                lv = self.hooks.lv_path(host=target, lv=self.res)
                self.say(f"  {target.name}: marsadm join-resource {self.res} {lv}")
                target.run(["marsadm", "join-resource", self.res, lv],
                           timeout=self.config.command_timeout)
                self.journal.decide(full_syncs=self.journal.decided.get("full_syncs", 0) + 1)
                self.ctx.inject("prepare:joined")
        self.journal.record("prepare")

    def _merge(self, target):
        if target.name in facts.cluster_hosts(self.source):
            return
        self.say(f"  {target.name}: merge-cluster with {self.source.name}")
        target.run(["marsadm", "merge-cluster", self.source.name, self.source.address],
                   timeout=self.config.command_timeout)
        wait_until(lambda: target.name in facts.cluster_hosts(self.source), 60,
                   self.config.poll_interval, f"{self.source.name} to see {target.name}")

    def _wait_for_sync_slot(self, target):
        def free_slot():
            syncing = [res for res, rest in facts.view_all(target, "sync-rest").items()
                       if res != self.res and rest not in ("", "0")]
            planned = live_intents(target, self.config, except_res=self.res)
            busy = len(set(syncing) | {item[len("sync-"):] for item in planned})
            if busy >= self.config.limit_syncs:
                self.ctx.reporter.detail(f"{target.name}: {busy} syncs running or planned "
                                         f"(limit_syncs {self.config.limit_syncs}); waiting")
                return False
            return True

        if not free_slot():
            self.say(f"  {target.name}: waiting for a sync slot (limit_syncs "
                     f"{self.config.limit_syncs})")
            wait_until(free_slot, self.config.sync_timeout, max(1.0, self.config.poll_interval),
                       f"a sync slot on {target.name}")

    # ------------------------------------------------------------------ wait
    def wait(self):
        self.say("* wait: until the targets are UpToDate")
        total = self.size * len(self.targets)
        started = time.monotonic()
        last_progress, last_rest = time.monotonic(), None
        warned = False
        with self.ctx.reporter.progress(f"sync {self.res}", total) as bar:
            while True:
                rests = in_parallel(lambda t: int(facts.view(t, "sync-rest", self.res) or 0),
                                    self.targets)
                states = in_parallel(lambda t: facts.view(t, "diskstate", self.res),
                                     self.targets)
                rest = sum(rests)
                bar.update(total - rest)
                if rest == 0 and all(state == "UpToDate" for state in states):
                    break
                now = time.monotonic()
                if rest != last_rest:
                    last_progress, last_rest, warned = now, rest, False
                elif now - last_progress > self.config.stall_timeout:
                    raise TimedOut(f"sync of {self.res} made no progress for "
                                   f"{self.config.stall_timeout:g} s ({rest} bytes left; "
                                   f"states {dict(zip([t.name for t in self.targets], states))}); "
                                   "check marsd and the network, then re-run")
                elif now - last_progress > self.config.stall_warn and not warned:
                    self.ctx.reporter.warning(f"sync of {self.res} made no progress for "
                                              f"{now - last_progress:.0f} s")
                    warned = True
                time.sleep(self.config.poll_interval)
        began = self.journal.decided.get("sync_started")
        self.summary["synced_bytes"] = self.size * self.journal.decided.get("full_syncs", 0)
        self.summary["sync_seconds"] = round(time.time() - began if began else
                                             time.monotonic() - started, 3)
        for target in self.targets:
            drop_intent(target, self.res)
        self.ctx.inject("wait:synced")
        self.journal.record("wait")

    # ---------------------------------------------------------------- finish
    def finish(self):
        target = self.targets[0]
        primary = facts.view(target, "get-primary", self.res)
        if primary == target.name and \
                self.hooks.container_state(host=target, res=self.res) == "RUNNING":
            self.say(f"* finish: {self.res} already runs on {target.name}")
            self.journal.record("finish")
            return
        self.say(f"* finish: handover of {self.res} to {target.name}")
        self._wait_for_small_lag(target)
        if primary != target.name and \
                facts.view(target, "diskstate", self.res) != "UpToDate":
            raise Illegal(f"{target.name}: {self.res} is not UpToDate; run migrate-wait first")
        locks = LockSet(self.owner, self.config, self.ctx.reporter.detail)
        involved = {host.name: host for host in [self.source, *self.targets,
                                                 *self._old_hosts()]}
        with locks.holding(involved.values(), LOCK_ITEM):
            self.ctx.inject("finish:locked")
            self._downtime_window(target)
        self.journal.record("finish", downtime=self.summary["downtime_seconds"])

    def _old_hosts(self):
        wanted = {target.name for target in self.targets}
        return [self.host(name) for name in self.members
                if name not in wanted and name in self.ctx.inventory.hosts]

    def _wait_for_small_lag(self, target):
        limit = self.config.limit_mars_logfile * MIB
        wait_until(lambda: int(facts.view(target, "work-rest", self.res) or 0) <= limit,
                   self.config.lag_timeout, self.config.poll_interval,
                   f"the replication lag of {self.res} on {target.name} to fall under "
                   f"{self.config.limit_mars_logfile} MiB")

    def _downtime_window(self, target):
        reporter = self.ctx.reporter
        self.journal.record("critical-section")
        began = time.monotonic()
        reporter.event("downtime-begin", resource=self.res, host=self.source.name)
        try:
            stop = {host.name: host for host in [self.source, *self._old_hosts()]}
            stop.pop(target.name, None)
            for host in stop.values():
                self.say(f"  {host.name}: stopping {self.res}")
                self.hooks.resource_stop(host=host, res=self.res)
            self.ctx.inject("finish:stopped")
            self.say(f"  {target.name}: marsadm primary {self.res}")
            target.run(["marsadm", f"--timeout={self.config.handover_timeout:g}", "primary",
                        self.res], timeout=self.config.handover_timeout + 30)
            self.ctx.inject("finish:primary")
            self.say(f"  {target.name}: starting {self.res}")
            self.hooks.resource_start(host=target, res=self.res)
            state = self.hooks.container_state(host=target, res=self.res)
            if state != "RUNNING":
                raise FootballError(f"{target.name}: {self.res} is {state} after the start")
        except InjectedFailure:
            raise
        except (FootballError, TransportError) as error:
            self._compensate(error, target)
        downtime = time.monotonic() - began
        self.summary["downtime_seconds"] = round(downtime, 3)
        reporter.event("downtime-end", resource=self.res, host=target.name,
                       downtime_seconds=round(downtime, 3))
        self.say(f"  {self.res} runs on {target.name}; downtime {downtime:.2f} s")
        self.ctx.inject("finish:started")

    def _compensate(self, error, target):
        """Inside the downtime window: restart where it can run (the source
        first, then any replica); never raises anything but the verdict."""
        self.ctx.reporter.warning(f"handover failed: {error}; restarting {self.res}")
        for host in [self.source, target, *self._old_hosts()]:
            try:
                self.hooks.resource_start(host=host, res=self.res)
                if self.hooks.container_state(host=host, res=self.res) == "RUNNING":
                    raise Serious(f"migrate of {self.res} failed inside the downtime window: "
                                  f"{error}; {self.res} runs again on {host.name}")
            except Serious:
                raise
            except Exception as restart_error:       # keep trying the others
                self.ctx.reporter.warning(f"{host.name}: restart failed: {restart_error}")
        raise Critical(f"migrate of {self.res} failed inside the downtime window: {error}; "
                       f"{self.res} is NOT running anywhere. Run football repair-vm "
                       f"{self.res} {self.source.name} {target.name}")

    # --------------------------------------------------------------- cleanup
    def cleanup(self):
        old = [host for host in self._members_now() if host.name not in
               {target.name for target in self.targets}]
        if not self.config.cleanup_old_replicas or not old:
            self.journal.record("cleanup")
            return
        self.say(f"* cleanup: removing the replicas on {', '.join(host.name for host in old)}")
        for host in old:
            if self.hooks.container_state(host=host, res=self.res) == "RUNNING":
                raise Illegal(f"{host.name}: {self.res} still runs there; stop it first")
            if self.res in facts.my_resources(host):
                host.run(["marsadm", "leave-resource", self.res],
                         timeout=self.config.command_timeout)
            self.ctx.inject("cleanup:left")
            if self.res in self.hooks.lv_list(host=host):
                wait_until(lambda: self._remove_lv(host), 60, 0.5,
                           f"LV {host.vg}/{self.res} on {host.name} to be free")
            self.ctx.inject("cleanup:lv-removed")
        self.journal.record("cleanup")

    def _members_now(self):
        primary = self.targets[0]
        names = facts.parse_lines(primary.run(["marsadm", "view-resource-members",
                                               self.res]).stdout)
        # hosts that left already but still hold the LV (a crash in between)
        names += [name for name in self.origin if name not in names]
        return [self.host(name) for name in names if name in self.ctx.inventory.hosts]

    def _remove_lv(self, host):
        try:
            self.hooks.lv_remove(host=host, lv=self.res)
            return True
        except FootballError as error:
            if getattr(error, "kind", "") == "in-use":
                return False
            raise


class Handover(Migrate):
    """Move the primary role of a resource to another of its replicas (the
    finish phase of migrate; all replicas stay)."""

    operation = "handover"

    def __init__(self, ctx, res, host):
        super().__init__(ctx, res, host)

    def _place(self):
        target = self.host(self.target_name)
        if target.name not in self.members:
            raise Illegal(f"{target.name} has no replica of {self.res} (replicas: "
                          f"{', '.join(self.members)}); use football migrate")
        return [target] + [self.host(name) for name in self.members if name != target.name]

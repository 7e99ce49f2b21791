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
  `football migrate <res> <host> <secondary>`. Every member must answer:
  a member's part of the resource is dropped only by its own marsd. A member
  gone for good is a forced handover (`marsadm --force primary`), not this.

Both take the `football` lock on the members they reach and look at the
real state before each step, so a re-run continues."""


from football import facts
from football.errors import Critical, FootballError, Illegal
from football.locks import LockSet, RUN_LOCK, run_owner
from football.ops.base import (check_resource_name, confirm, in_parallel, marsd_answers,
                               wait_until)
from football.transport import CommandFailed, TransportError

ANSWER_TIMEOUT = 5
REBUILD_TIMEOUT = 120


class Repair:
    operation = "repair"

    def __init__(self, ctx, res, host_names):
        self.ctx, self.config, self.hooks = ctx, ctx.config, ctx.hooks
        self.say, self.warn = ctx.reporter.say, ctx.reporter.warning
        self.res = check_resource_name(res)
        if not host_names:
            raise Illegal(f"name at least one host to run {self.res} on")
        self.candidates = [self.ctx.host(name) for name in dict.fromkeys(host_names)]
        self.owner = run_owner(self.operation, self.res)
        self.summary = {"resource": self.res, "host": None}

    def _ask(self, fact, host, *args):
        """A fact of `host`, None when it cannot be read there."""
        try:
            return fact(host, *args, timeout=30)
        except facts.FactUnavailable:
            return None

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

    def reachable(self, hosts):
        """The hosts whose marsd answers."""
        answers = in_parallel(lambda host: marsd_answers(host, ANSWER_TIMEOUT), hosts)
        for host, (_, why) in zip(hosts, answers):
            if why:
                self.ctx.reporter.detail(why)
        return [host for host, (answers, _) in zip(hosts, answers) if answers]

    def stop_elsewhere(self, keep, hosts):
        """Stop the stack on `hosts` except `keep`; failures are warnings (a
        host that is down runs nothing)."""
        for host in hosts:
            if host.name == keep.name:
                continue
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


class RepairVm(Repair):
    operation = "repair-vm"

    def run(self):
        members = self.members()
        candidates = [host for host in self.candidates if host.name in members]
        if not candidates:
            raise Illegal(f"none of {', '.join(h.name for h in self.candidates)} has a replica "
                          f"of {self.res} (replicas: {', '.join(members)})")
        running = self.running_on(list(members.values()))
        if running:
            where = running[0].name
            self.say(f"{self.res} runs on {where}: nothing to repair"
                     + ("" if running[0] in self.candidates else
                        f" (to move it there use football handover {self.res} <host>)"))
            self.summary["host"] = where
            return self.summary
        for host in self.candidates:
            if host.name not in members:
                self.warn(f"{host.name} has no replica of {self.res}; skipped")
        alive = self.reachable(list(members.values()))
        candidates = [host for host in candidates if host in alive]
        if not candidates:
            raise Illegal(f"no given host with a replica of {self.res} answers; bring its "
                          "marsd back or name another host")
        if self.ctx.dry_run:
            self.say(f"would stop {self.res} on the other members and start it on the first "
                     f"of {', '.join(h.name for h in candidates)} where it runs")
            return self.summary
        locks = LockSet(self.owner, self.config, self.ctx.reporter.detail)
        with locks.holding(alive, RUN_LOCK):
            for host in candidates:
                self.say(f"* {host.name}: starting {self.res}")
                self.stop_elsewhere(host, alive)
                if self.start_on(host):
                    self.say(f"{self.res} runs on {host.name}")
                    self.summary["host"] = host.name
                    return self.summary
        primary = self._ask(facts.primary, alive[0], self.res) or ""
        raise Critical(f"{self.res} could not be started on {', '.join(h.name for h in candidates)}"
                       f" and is NOT running (designated primary: {primary.strip() or 'none'}). "
                       f"If MARS cannot hand over (primary unreachable, split brain): "
                       f"football repair-mars {self.res} <host>")


class RepairMars(Repair):
    operation = "repair-mars"

    def run(self):
        members = self.members()
        alive = self.reachable(list({**members, **{h.name: h for h in self.candidates}}.values()))
        chosen = self._choose(alive)
        others = sorted(set(members) - {chosen.name})
        silent = [name for name in others if members[name] not in alive]
        if silent:
            # a member's keys in MARS are written only by that member: it must
            # answer to drop its part of the resource before it is rebuilt
            raise Illegal(f"{', '.join(silent)} (members of {self.res}) do not answer; nothing "
                          f"changed. Bring their marsd back and repeat; a member that is gone "
                          f"for good: `marsadm --force primary {self.res}` on {chosen.name}, "
                          f"then football repair-vm {self.res} {chosen.name}")
        rebuilt = not others and self._primary(chosen) == chosen.name
        if rebuilt and self.running_on([chosen]):
            self.say(f"{self.res} runs stand-alone on {chosen.name}: nothing to repair")
            self.summary["host"] = chosen.name
            return self.summary
        lv = self.hooks.lv_path(host=chosen, lv=self.res)
        plan = (f"start {self.res} on {chosen.name}" if rebuilt else
                f"rebuild {self.res} stand-alone on {chosen.name} from {lv}"
                + (f", dropping the replicas on {', '.join(others)}" if others else ""))
        if self.ctx.dry_run:
            self.say(f"would {plan}")
            return self.summary
        if not rebuilt:
            confirm(self.ctx, f"{plan}?")
        with LockSet(self.owner, self.config, self.ctx.reporter.detail).holding(alive, RUN_LOCK):
            if not rebuilt:
                self.say(f"* stopping {self.res} everywhere")
                self.stop_elsewhere(chosen, alive)
                self._stop_or_fail(chosen)
                self._rebuild(chosen, lv)
            return self._start(chosen, others)

    def _choose(self, alive):
        for host in self.candidates:
            if host not in alive:
                self.warn(f"{host.name} does not answer; skipped")
                continue
            if self.res in self.hooks.lv_list(host=host):
                return host
            self.warn(f"{host.name} has no LV {host.vg}/{self.res}; skipped")
        raise Illegal(f"none of {', '.join(h.name for h in self.candidates)} answers and holds "
                      f"an LV {self.res}; nothing changed")

    def _primary(self, host):
        return self._ask(facts.primary, host, self.res) or ""

    def _stop_or_fail(self, host):
        try:
            self.hooks.resource_stop(host=host, res=self.res)
        except (FootballError, TransportError) as error:
            raise Illegal(f"{host.name}: cannot stop {self.res} to rebuild it: {error}; "
                          "nothing was rebuilt") from None

    def _rebuild(self, host, lv):
        if self.res in facts.my_resources(host):
            # --force: the resource still has its members (this host at least)
            self.say(f"  {host.name}: marsadm delete-resource --force {self.res}")
            host.run(["marsadm", "delete-resource", "--force", self.res],
                     timeout=self.config.command_timeout)
        self.say(f"  {host.name}: marsadm create-resource {self.res} {lv} (its data stays)")
        create_when_free(host, self.res, lv, self.config)

    def _start(self, host, others):
        self.say(f"* {host.name}: starting {self.res}")
        if not self.start_on(host):
            raise Critical(f"{self.res} was rebuilt on {host.name} but does not start there; "
                           "see the warnings above")
        self.summary["host"] = host.name
        self.say(f"{self.res} runs stand-alone on {host.name}"
                 + (f"; old LVs on {', '.join(others)}: football lv-cleanup {self.res}; "
                    f"new replica: football migrate {self.res} {host.name} <secondary>"
                    if others else ""))
        return self.summary


def create_when_free(host, res, lv, config, verb="create-resource"):
    """`marsadm create-resource res lv` (or `join-resource`) on `host`,
    retried while a deleted or left `res` is not yet gone: the other members
    drop their part of it, and this host its logfiles, when their marsd sees
    the deletion. A resource that exists already (a member already) is fine."""
    command = ["marsadm", verb, res, lv]

    def done():
        result = host.run(command, check=False, timeout=config.command_timeout)
        if result.ok or "already exists" in result.stderr:
            return True
        if "still hold" in result.stderr:
            return False
        raise CommandFailed(result)

    wait_until(done, REBUILD_TIMEOUT, config.poll_interval,
               f"{host.name} and the other members to drop what they held of {res}")

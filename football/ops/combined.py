"""The combined operations (FOOTBALL.md, "Combined"): a migrate and a shrink
in one run, with less traffic than the two one after the other.

- `migrate+shrink <res> <target> [<secondary>] [<size>]`: migrate to the
  new primary alone (the old replicas leave), shrink there (nothing to copy
  to a secondary), then create the new secondary at the small size. The old
  replicas' LVs and the full-size `<res>-preshrink` on the new primary stay
  until the new secondary holds the shrunk copy (`cleanup`): else from the
  shrink's window until then the new primary's volume was the one copy.
- `migrate+shrink+back <res> <tmp_primary> [<size>]`: migrate to a
  temporary host while the original replicas stay, shrink there (the
  originals re-join at the small size; their full-size LVs stay as
  `<res>-preshrink` until the end), then hand back to the original primary
  and let the temporary replica go.

Each stage is a whole operation of its own (Migrate, Shrink, Handover), with
its own journal, locks, downtime window and injection points; this one's
journal remembers the decisions (the targets, the original hosts: after a
crash MARS no longer tells them) and the stages done, so a re-run goes on
with the next stage and never shrinks twice."""

import json
import time

from football import facts
from football.errors import FootballError, Illegal
from football.journal import Journal
from football.locks import drop_intent
from football.ops.base import Operation
from football.ops.migrate import Migrate
from football.ops.shrink import PRESHRINK, TMP, Shrink, shrink_target, shrunk_size
from football.ops.sizing import mib, parse_target


LEFTOVERS = (PRESHRINK, TMP)       # the shrink's LVs (`<res>-preshrink`, `<res>-tmp`)


class MigrateShrink(Operation):
    """migrate+shrink: stages migrate → shrink → secondary."""

    operation = "migrate+shrink"
    finishes_others_first = True
    stage_kinds = {"migrate": "migrate", "shrink": "shrink", "secondary": "migrate"}
    whole = ("migrate", "shrink", "secondary", "cleanup")

    def __init__(self, ctx, res, targets, size=None):
        super().__init__(ctx, res)
        self.res_argument = res
        self.target_names = list(targets)
        if not 1 <= len(self.target_names) <= 2:
            raise Illegal(f"{self.operation} takes a target (a host or a cluster) and "
                          f"optionally a secondary host, not {' '.join(targets) or 'none'}")
        self.size = size
        if size is not None:
            parse_target(size)      # a bad size refused before anything moves
        self.summary.update({"downtime_seconds": None, "stages": {}})

    def start_args(self):
        return {"targets": self.target_names, "size": self.size}

    def discover(self):
        self.journal = self.open_journal()
        decided = self.journal.decided
        if not decided.get("primary"):
            planner = Migrate(self.ctx, self.res_argument, *self.target_names)
            planner.room_checked = 1        # the secondary gets the shrunk size, later
            planner.discover()
            names = [target.name for target in planner.targets]
            self.origin = [planner.source.name] + \
                [name for name in planner.members if name != planner.source.name]
            # (the host it is primary on named alone: as its migrate, nothing
            # to do — its stage dropped the other replicas, and a shrink that
            # then had nothing to shrink left the resource with one)
            self.already = planner.source.name == names[0] and (
                set(planner.members) == set(names) or planner.names_only_its_primary())
            self.members_now = list(planner.members)
            self.primary_name = names[0]
            self.secondary_name = names[1] if len(names) > 1 else None
            if not self.already:
                self._refuse_no_room_for_the_copy(planner.source, planner.size,
                                                  {planner.targets[0].name: planner.size})
        else:
            self.primary_name, self.secondary_name = decided["primary"], decided["secondary"]
            self.origin = decided["origin"]
            self.already = False
            self._refuse_other_targets()
            self._refuse_other_size()
        self.summary.update(primary=self.primary_name, secondary=self.secondary_name)

    def _refuse_no_room_for_the_copy(self, source, size, holding):
        """`Illegal` (nothing changed) before the migrate stage where a host
        the shrink stage makes its copy on (`<res>-tmp` of the new size)
        lacks the room: the new primary beside the volume it gets (`holding`:
        {host name: bytes it gets first}), for +back also the original hosts.
        The shrink stage refused it only after the migrate had moved the
        resource. The new size as the shrink decides it, from what the
        filesystem uses now (not mounted: its stage tells)."""
        mountpoint = source.mountpoint(self.res)
        if not facts.mount_source(source, mountpoint):
            return
        _, used = facts.filesystem_usage(source, mountpoint)
        shrunk = shrunk_size(shrink_target(self.size, self.config), used, self.config)
        if shrunk >= size:
            return                          # nothing to shrink: its stage says so
        lacking = []
        for name in dict.fromkeys([*holding, *self._copies_also_on()]):
            host = self.host(name)
            lvs = self.hooks.lv_list(host=host)
            need = (0 if self.res in lvs else holding.get(name, 0)) + \
                (0 if f"{self.res}{TMP}" in lvs else shrunk)
            free = self.hooks.vg_free(host=host)
            if need and free < need + (self.config.placement_min_free if name in holding else 0):
                lacking.append(f"{host.name}: volume group {host.vg} has {mib(free)} free, "
                               f"needs {mib(need)}")
        if lacking:
            raise Illegal(f"{self.operation} of {self.res} (shrunk to {mib(shrunk)}, "
                          f"{mib(used)} used): {'; '.join(lacking)} (the volume and the "
                          "shrink's copy); free space there or choose another host; nothing "
                          "changed")

    def _copies_also_on(self):
        """The hosts besides the new primary that the shrink stage makes a
        copy on: none (the new primary is alone then)."""
        return []

    def _refuse_other_targets(self):
        """`Illegal` when this command asks for other hosts than the
        unfinished run's (it went on to those, whatever was asked)."""
        decided = [name for name in (self.primary_name, self.secondary_name) if name]
        asked = self.target_names
        cluster = self.ctx.inventory.clusters.get(asked[0])
        if (set(decided) <= set(cluster) and len(asked) == 1) if cluster else decided == asked:
            return
        self._refuse_unlike_unfinished(
            f"to {', '.join(decided)}",
            f"stages done: {', '.join(self.journal.data['steps']) or 'none'}",
            f"to {' '.join(asked)}", [*decided, *([self.size] if self.size else [])])

    def nothing_to_do(self):
        if self.already and not self.journal.data["steps"]:
            return (f"it is on {', '.join(self.members_now)} already (football shrink "
                    f"{self.res} shrinks it there)")
        return None

    def announce(self):
        then = f"then a replica on {self.secondary_name}" if self.secondary_name else \
            f"no secondary named: {self.res} keeps the one replica"
        self.say(f"* {self.operation} of {self.res}: to {self.primary_name} alone, shrink "
                 f"there, {then}")
        self._keep_stopped_or_ask(self.host(self.origin[0]), self.primary_name,
                                  self._hosts_named())

    def dry_run(self):
        """The commands of the next stage to run, from the state now; the
        later stages' depend on what it leaves (a dry run then lists them)."""
        stages = [name for name in self.whole if not self.journal.done(name)
                  and (name != "secondary" or self.secondary_name)]
        if not stages:
            return
        first, *later = stages
        if first == "cleanup":
            self.say("  stage cleanup")
            self._remove_leftovers(self._cleanup_hosts(), self._kept_lvs(),
                                   via=self.ctx.planned)
            return
        operation, phases = self._stage_of(first)
        operation.discover()
        if operation.journal is not None:
            operation.journal.dry = True
        self.say(f"  stage {first}: {operation.operation}")
        operation.dry_run(*([phases] if phases else []))
        if later:
            self.say(f"  then {', '.join(later)}: their commands depend on what {first} "
                     "leaves; a dry run lists them once it is done")

    def involved(self):
        self.journal.decide(primary=self.primary_name, secondary=self.secondary_name,
                            origin=self.origin, size=self.size)
        return self._hosts_named()

    def _refuse_other_size(self):
        """`Illegal` when this command asks for another size than the
        unfinished run's: its shrink stage refused it, naming `football
        shrink` and `shrink-cleanup`, which the unfinished combined run
        refused in turn."""
        decided = self.journal.decided.get("size")
        if self.size is None or decided is None or self.size == decided:
            return
        targets = [*self.target_names[:1], *([self.secondary_name] if
                                             self.operation == "migrate+shrink" and
                                             self.secondary_name else [])]
        self._refuse_unlike_unfinished(
            f"to {decided}", f"stages done: {', '.join(self.journal.data['steps']) or 'none'}",
            self.size, [*targets, decided])

    def _hosts_named(self):
        """The hosts of the inventory this operation names: the new primary
        and secondary, the original hosts."""
        hosts = [self.primary_name, *([self.secondary_name] if self.secondary_name else []),
                 *self.origin]
        return [self.host(name) for name in dict.fromkeys(hosts)
                if name in self.ctx.inventory.hosts]

    def _stage(self, name, operation, phases=None):
        """Run a stage once: done stages are in this journal, and so is the
        start of each, so that a stage that completed just before a crash
        is not run again (a second shrink)."""
        if self.journal.done(name) or self._completed_before(name, operation):
            self.say(f"* {self.operation}: {name} done already")
            self.journal.record(name)
            return
        if not self.journal.decided.get(f"{name}_started"):
            # the first start: a resumed stage's own journal began then (its
            # `started`), by which it is told from another run's (_my_stage)
            self.journal.decide(**{f"{name}_started": time.time()})
        phases = tuple(phases or operation.whole)
        moved = any(self.journal.done(stage) for stage in self.whole)
        try:
            summary = self.run_within(operation, phases)
        except Illegal as refused:
            if not moved:
                raise
            # its "nothing changed" is the stage's: the stages before it moved
            # the resource (191 said the whole run changed nothing)
            raise FootballError(f"its {name} stage refused: {refused}") from None
        if phases != tuple(operation.whole) and operation.journal is not None:
            operation.journal.finish()      # a part that completes this stage
        self.summary["stages"][name] = summary
        downtime = summary.get("downtime_seconds")
        if summary.get("kept_stopped"):
            self.summary["kept_stopped"] = True
        if downtime:
            self.summary["downtime_seconds"] = round(
                (self.summary["downtime_seconds"] or 0.0) + downtime, 3)
        # the run's syncs are its stages' (the summary line said "synced 0 MiB")
        for key in ("synced_bytes", "copied_bytes", "sync_seconds"):
            self.summary[key] = round(self.summary.get(key, 0) + (summary.get(key) or 0), 3)
        self.ctx.inject(f"combined:{name}")
        self.journal.record(name)

    def _completed_before(self, name, operation):
        """The stage's operation finished (its journal is `.done`) after this
        run started the stage."""
        started = self.journal.decided.get(f"{name}_started")
        if not started:
            return False
        path = Journal(self.config.state_dir, operation.operation, self.res).path
        done = path.with_suffix(".done")
        if path.exists() or not done.exists():
            return False
        return json.loads(done.read_text()).get("finished", 0) >= started

    def _stage_of(self, name):
        """(the operation of stage `name`, the phases it runs or None: all)."""
        if name == "migrate":       # the old replicas leave; their LVs stay (`cleanup`)
            stage = _alone(Migrate(self.ctx, self.res, self.primary_name))
            stage.keep_old_lvs_on = self._kept_lvs()    # (not the secondary's: made anew)
            stage.keep_until = f"the {self.operation} of {self.res} is done"
            return stage, None
        if name == "shrink":        # its -preshrink stays (`cleanup`)
            return Shrink(self.ctx, self.res, self.size), ("prepare", "finish", "wait")
        return Migrate(self.ctx, self.res, self.primary_name, self.secondary_name), None

    def migrate(self):
        self._stage("migrate", *self._stage_of("migrate"))

    def shrink(self):
        self._stage("shrink", *self._stage_of("shrink"))

    def secondary(self):
        if self.secondary_name:
            self._stage("secondary", *self._stage_of("secondary"))

    def cleanup(self):
        """Once the copies made of the shrunk volume are where they go (the
        new secondary's; back on the original hosts): the shrink's
        full-size LVs (`-preshrink`) and copies (`-tmp`), and the LVs the
        old replicas left (`_kept_lvs`). The stages kept them (the bash
        original's bug: the full-size originals gone while the resource was
        still away)."""
        if self.journal.done("cleanup"):
            self.say(f"* {self.operation}: cleanup done already")
            return
        hosts = self._cleanup_hosts()
        kept = self._kept_lvs()
        self.say(f"* cleanup: {' and '.join(self.res + suffix for suffix in LEFTOVERS)} on "
                 f"{', '.join(host.name for host in hosts)}" +
                 (f"; {self.res} on {', '.join(kept)}" if kept else ""))
        temporary = self.host(self.primary_name)
        with self.holding(hosts):
            self._remove_leftovers(hosts, kept)
            drop_intent(temporary, self.res, kind="shrink")    # (the shrink's, until here)
        self._release_job_slots("shrink", [temporary])
        self.ctx.inject("combined:cleanup")
        self.journal.record("cleanup")

    def _cleanup_hosts(self):
        """The original hosts, the new primary and secondary (the temporary
        host): where the stages left LVs."""
        names = [*self.origin, self.primary_name, *([self.secondary_name]
                                                    if self.secondary_name else [])]
        return [self.host(name) for name in dict.fromkeys(names)
                if name in self.ctx.inventory.hosts]

    def _remove_leftovers(self, hosts, kept, via=lambda host: host):
        """The shrink's `-preshrink` and `-tmp` (`LEFTOVERS`) on `hosts`, and
        the resource's own LV on the `kept` hosts where it is no replica's
        disk; `via`: a dry run's."""
        for host in hosts:
            lvs = self.hooks.lv_list(host=host)
            mine = [self.res] if host.name in kept and \
                self.res not in facts.my_resources(host) else []
            for lv in (*(f"{self.res}{suffix}" for suffix in LEFTOVERS), *mine):
                if lv in lvs:
                    self.say(f"  {host.name}: removing LV {host.vg}/{lv}")
                    self.hooks.lv_remove(host=via(host), lv=lv)

    def _kept_lvs(self):
        """The hosts whose LV of the resource the migrate stage kept: the
        original ones that are neither its primary nor its secondary now."""
        return [name for name in self.origin
                if name not in (self.primary_name, self.secondary_name)]


class MigrateShrinkBack(MigrateShrink):
    """migrate+shrink+back: stages migrate → shrink → back."""

    operation = "migrate+shrink+back"
    stage_kinds = {"migrate": "migrate", "shrink": "shrink", "back": "migrate"}
    whole = ("migrate", "shrink", "back", "cleanup")

    def __init__(self, ctx, res, tmp_primary, size=None):
        super().__init__(ctx, res, [tmp_primary], size)

    def discover(self):
        self.journal = self.open_journal()
        decided = self.journal.decided
        self.primary_name = self.host(self.target_names[0]).name
        if decided.get("origin"):
            self.origin = decided["origin"]
            if decided.get("primary", self.primary_name) != self.primary_name:
                # it went on to the journal's temporary host (shrank there)
                # and left the one asked for a -preshrink of the full size
                self._refuse_unlike_unfinished(
                    f"to {decided['primary']}",
                    f"stages done: {', '.join(self.journal.data['steps']) or 'none'}",
                    f"to {self.primary_name}",
                    [decided["primary"], *([decided["size"]] if decided.get("size") else [])])
            self._refuse_other_size()
        else:
            source = self.named_host() if self.source_hint else \
                self.hooks.get_hyper(res=self.res, inventory=self.ctx.inventory)
            members = facts.members(source, self.res)
            self.origin = [source.name] + [name for name in members if name != source.name]
            if source.name == self.primary_name:
                # the hosts to go back to are only in the journal of the run
                # that moved it (another controller's, or one set aside)
                others = [name for name in members if name != source.name]
                raise Illegal(
                    f"{self.res}'s primary is on {self.primary_name}, the temporary host, "
                    f"already (replicas also on {', '.join(others) or 'no other host'}), and "
                    f"this controller has no journal of a {self.operation} of {self.res}. If "
                    "one moved it there, the hosts to go back to are in the journal of that "
                    "run (re-run the command on its controller), or go back by hand: football "
                    f"migrate {self.res} <primary> [<secondary>]; else the temporary primary "
                    f"must be another host than {self.primary_name}. Nothing changed")
            if self.primary_name in self.origin:
                raise Illegal(f"{self.primary_name} holds a replica of {self.res} already: "
                              "the temporary primary must be another host; nothing changed")
            if len(self.origin) > 2:
                # the way back is a migrate: a primary and one secondary
                raise Illegal(f"{self.res} has {len(self.origin)} replicas "
                              f"({', '.join(self.origin)}): {self.operation} goes back to a "
                              "primary and one secondary, and would drop the others; let "
                              "those leave first (marsadm leave-resource on their hosts), or "
                              f"shrink it where it is (football shrink {self.res}); nothing "
                              "changed")
            size = int(facts.view(source, "sync-size", self.res) or 0)
            self._refuse_no_room_for_the_copy(source, size, {self.primary_name: size})
        self.secondary_name, self.already = None, False
        self.summary.update(primary=self.origin[0], temporary=self.primary_name,
                            secondaries=self.origin[1:])

    def announce(self):
        self.say(f"* {self.operation} of {self.res}: to {self.primary_name}, shrink there, "
                 f"back to {', '.join(self.origin)}")
        self._keep_stopped_or_ask(self.host(self.origin[0]), self.primary_name,
                                  self._hosts_named())

    def _stage_of(self, name):
        if name == "migrate":       # the original replicas stay: they re-join the shrunk one
            return _alone(Migrate(self.ctx, self.res, self.primary_name)), \
                ("prepare", "wait", "finish")
        if name == "shrink":        # its cleanup once it is back (`cleanup`)
            return Shrink(self.ctx, self.res, self.size), ("prepare", "finish", "wait")
        return Migrate(self.ctx, self.res, *self.origin[:2]), None

    def back(self):
        self._stage("back", *self._stage_of("back"))

    def _kept_lvs(self):
        return []       # the original replicas stay members: their LVs are theirs

    def _copies_also_on(self):
        return self.origin      # they stay members: the shrink copies onto them too


def _alone(stage):
    """A stage that migrates to the new primary alone on purpose (the
    combined operation said so): no warning about one replica."""
    stage.warn_alone = False
    return stage

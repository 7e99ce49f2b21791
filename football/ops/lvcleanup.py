"""`football lv-cleanup RES [--do-it]`: remove the LVs named RES that no MARS
replica uses (leftovers of crashed or interrupted operations).

An LV `RES` on a host is a leftover when all of these hold:
- the host is not a member of the MARS resource RES, neither in its own view
  nor in the view of any other reachable host (`view-resource-members`);
- nothing is mounted at the resource's mountpoint there and its container
  does not run;
- no unfinished operation of this controller plans a replica of RES there
  (its journal names the host as a target); for a shrink's LV
  (`<res>-tmp`, `<res>-preshrink`) no unfinished shrink of `<res>`, alone
  or in a combined operation, names the host: its copy or its way back.
And RES must be, or have been, a MARS resource (for a shrink's LV: `<res>`):
one in the MARS metadata of a host that answers, or one a journal of this
controller names (unfinished or done). An LV of any other name is not
Football's (an operator's `backup`): refused, naming where it is, unless
`force`.
Without `--do-it` the leftovers are only listed: a dry run, which says the
commands that would remove them. With it, their hosts are locked (item
`football`, as migrate's prepare does while it creates and joins an LV),
each checked again under the lock, and the LV removed. A member's disk is
never removed: when in doubt (a host that does not answer), nothing is."""


from dataclasses import replace

from pathlib import Path

from football import facts, joblink
from football.errors import FootballError, Illegal
from football.inventory import InventoryError
from football.journal import OPERATIONS
from football.locks import held
from football.ops.base import Operation, check_resource_name, in_parallel
from football.ops.shrink import PRESHRINK, TMP
from football.transport import TransportError



def journals_name(state_dir, names):
    """Whether a journal of this controller, unfinished or done (or set
    aside: `.json.abandoned`, `.json.damaged`), is one of an operation on
    one of `names` (its file `<operation>-<resource>.json|.done...`)."""
    directory = Path(state_dir) / "journal"
    if not directory.is_dir():
        return False
    stems = {path.name.split(".json")[0].split(".done")[0] for path in directory.iterdir()}
    return any(f"{operation}-{name}" in stems for operation in OPERATIONS for name in names)


def leftovers(candidates, members, planned):
    """The hosts whose LV may go: holding one (`candidates`: {host: reason it
    must stay, or ''}), not a member anywhere and not planned by a journal."""
    return sorted(host for host, reason in candidates.items()
                  if not reason and host not in members and host not in planned)


def shrunk_resource(lv):
    """The resource whose shrink names its LVs `lv` (`<res>-tmp`, the copy;
    `<res>-preshrink`, the old volume), or None."""
    for suffix in (TMP, PRESHRINK):
        if lv.endswith(suffix) and len(lv) > len(suffix):
            return lv[:-len(suffix)]
    return None


def shrink_needs(operation):
    """Why the unfinished shrink (alone, or a combined operation's)
    `operation` needs an LV of its resource's shrink, how to finish it and
    how to give it up."""
    kind, res, decided = operation["operation"], operation["resource"], operation["decided"]
    hosts = [name for name in (decided.get("primary"), decided.get("secondary")) if name] \
        if "+" in kind else []
    asked = decided.get("size") if "+" in kind else decided.get("asked")
    again = " ".join([f"football {kind} {res}", *hosts, *([asked] if asked else [])])
    if "+" in kind:
        after = "its cleanup stage then removes it"
    elif "finish" not in operation["steps"] and not operation.get("in_downtime"):
        after = f"or `football shrink-cleanup {res}` gives it up, removing its -tmp LVs"
    else:
        after = (f"then `football shrink-cleanup {res}` removes it; stopped in its window "
                 "or after it, it is finished, no longer given up")
    return (f"an unfinished {kind} of {res} needs it as its copy or its way back: "
            f"`{again}` finishes it, {after}")


def _hosts_decided(operation, hosts):
    """The inventory `hosts` an unfinished operation's journal names among
    its decisions (lists and single names alike); all of them where its
    journal cannot be read."""
    if operation.get("damaged"):
        return set(hosts)
    named = set()
    for value in [*operation.get("decided", {}).values(), operation.get("targets"),
                  operation.get("origin")]:
        for name in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(name, str) and name in hosts:
                named.add(name)
    return named


class LvCleanup(Operation):
    """Single step (each LV goes alone, checked again under its host's lock;
    a re-run finds what is left): no journal. Without `--do-it` it is a
    dry run: the leftovers and the commands that would remove them."""

    operation = "lv-cleanup"
    whole = ("remove",)

    def __init__(self, ctx, res, do_it=False, force=False):
        """`force`: RES need not be (or have been) a MARS resource."""
        if not do_it:
            ctx = replace(ctx, dry_run=True)     # only list: a dry run
        super().__init__(ctx, check_resource_name(res))     # no `res:host` here
        self.do_it, self.force = do_it, force
        self.summary.update(removed=[], kept={})

    def start_args(self):
        return {"do_it": self.do_it, "force": self.force}

    # ------------------------------------------------------------- discovery
    def _look(self, host):
        """(has the LV, members as the host sees them, why it must stay or '',
        whether the host's MARS cluster has `res` or the resource it is a
        shrink's LV of)."""
        try:
            has_lv = self.res in self.hooks.lv_list(host=host)
            resources = facts.all_resources(host) if facts.cluster_hosts(host) else []
            members = facts.members(host, self.res) if self.res in resources else []
            known = bool({self.res, shrunk_resource(self.res)} & set(resources))
            if not has_lv:
                return False, members, "", known
            if facts.mount_source(host, host.mountpoint(self.res)):
                return True, members, f"mounted at {host.mountpoint(self.res)}", known
            if self.hooks.container_state(host=host, res=self.res) == "RUNNING":
                return True, members, "its container runs", known
            return True, members, self._run_of_the_shrunk(host), known
        except (TransportError, FootballError, InventoryError) as error:
            return None, [], f"cannot check: {str(error).splitlines()[0]}", False

    RUN_HOLDS = "a run of "

    def _run_of_the_shrunk(self, host):
        """Why a shrink's LV (`<res>-tmp`, `<res>-preshrink`) stays on `host`
        where a run of `<res>` holds it (`run-<res>`, ResourceRun): another
        controller's unfinished shrink, whose journal is not here, or a run
        of it under way. This run's own hold is `run-<LV>`, which such a run
        does not take. '' where none does."""
        shrunk = shrunk_resource(self.res)
        if not shrunk:
            return ""
        holder = held(host, check=True).get(f"run-{shrunk}")
        if holder is None:
            return ""
        return (f"{self.RUN_HOLDS}{shrunk} holds {host.name} ({holder.get('what') or '?'}; "
                f"{holder.get('owner') or '?'}): its copy or its way back")

    def discover(self):
        """The hosts holding an LV `res` and why each must keep it ('' = it
        may go); the leftovers among them (`doomed`). Says what stays.
        Changes nothing."""
        inv = self.ctx.inventory
        names = sorted(inv.hosts)
        looks = dict(zip(names, in_parallel(lambda name: self._look(inv.hosts[name]), names)))
        unknown = [name for name, (has_lv, _, _, _) in looks.items() if has_lv is None]
        members = {member for _, seen, _, _ in looks.values() for member in seen}
        shrunk = shrunk_resource(self.res)
        unfinished = [op for op in joblink.unfinished_operations(self.config)
                      if op.get("resource") in (self.res, "?") or
                      (shrunk and op.get("resource") == shrunk and
                       "shrink" in op.get("operation", "").split("+"))]
        # every host an unfinished operation of `res` decided on (a
        # migrate's targets and origin, a shrink's primary and secondaries,
        # a combined run's): only a migrate's targets were kept, and a
        # shrink stopped in its window lost its way back (the old LVs) or
        # the re-created one; a damaged journal may be any resource's. An
        # LV of a shrink (`<res>-tmp`, `<res>-preshrink`) is its copy or its
        # way back: its journal is `<res>`'s, not the LV's
        planned = {name: f"an unfinished {op['operation']} of {self.res} needs it"
                   if op.get("resource") == self.res else
                   f"not sure: a damaged journal ({op['journal']})"
                   if op.get("resource") == "?" else shrink_needs(op)
                   for op in unfinished for name in _hosts_decided(op, inv.hosts)}
        candidates = {name: reason for name, (has_lv, _, reason, _) in looks.items() if has_lv}
        for name in candidates:
            if name in members:
                candidates[name] = "a MARS replica uses it"
            elif name in planned and (not candidates[name] or
                                      candidates[name].startswith(self.RUN_HOLDS)):
                candidates[name] = planned[name]    # (this controller's journal says more)
        if unknown:
            # a member that does not answer could have us misjudge the others
            for name in candidates:
                candidates[name] = candidates[name] or \
                    f"not sure: {', '.join(unknown)} did not answer"
            for name in unknown:
                candidates[name] = looks[name][2]
        self.candidates = candidates
        self.doomed = leftovers(candidates, members, planned)
        if self.doomed and not self.force and \
                not any(known for _, _, _, known in looks.values()) and \
                not journals_name(self.config.state_dir, {self.res, shrunk}):
            self._refuse_a_name_never_mars()
        self.summary["kept"] = {name: reason for name, reason in candidates.items()
                                if name not in self.doomed}
        for name, reason in sorted(self.summary["kept"].items()):
            self.say(f"{name}: keeps LV {inv.hosts[name].vg}/{self.res} ({reason})")

    def _refuse_a_name_never_mars(self):
        """`Illegal`: no host's MARS metadata has `res` (nor the resource
        it is a shrink's LV of) and no journal here names it: its LVs are
        not Football's to judge (an operator's volume of that name)."""
        hosts = self.ctx.inventory.hosts
        found = ", ".join(f"{hosts[name].vg}/{self.res} on {name}"
                          for name in sorted(self.candidates))
        of = f" nor {shrunk_resource(self.res)}" if shrunk_resource(self.res) else ""
        raise Illegal(
            f"{self.res}{of} is no MARS resource on any host of the inventory (all of them "
            f"answered) and no operation of this controller ever ran on it: the LVs named "
            f"{self.res} ({found}) are no leftovers of Football's, maybe a volume of "
            f"someone's own; nothing was changed. If they are leftovers of a resource gone "
            f"everywhere, run `football lv-cleanup {self.res} --force` to list them and "
            f"`football lv-cleanup {self.res} --do-it --force` to remove them (or remove them "
            f"by hand)")

    def nothing_to_do(self):
        if not self.candidates:
            return f"no host of the inventory has an LV named {self.res}"
        if not self.doomed:
            return "no LV of it is a leftover"
        return None

    def locks(self, phase):
        return self.doomed_hosts()

    def involved(self):
        """The hosts whose LV goes: held against another controller's run of
        `res` (its migrate creates the LV it joins there)."""
        return self.doomed_hosts()

    def doomed_hosts(self):
        return [self.ctx.inventory.hosts[name] for name in self.doomed]

    # ------------------------------------------------------------------- run
    def dry_run(self):
        for host in self.doomed_hosts():
            self._remove(self.ctx.planned(host))
        self.summary["would_remove"] = self.doomed
        if not self.do_it:
            self.say(f"run `football lv-cleanup {self.res} --do-it"
                     f"{' --force' if self.force else ''}` to remove "
                     f"{'it' if len(self.doomed) == 1 else 'them'}")

    def remove(self):
        removed, failed = self.summary["removed"], []
        for host in self.doomed_hosts():
            # under the lock no migrate can be between creating and joining
            # it; what discovery saw (cached) may be from before another
            # controller's join, which the lock waited for
            facts.forget()
            has_lv, seen, reason, _ = self._look(host)
            if not has_lv or reason or host.name in seen:
                self.say(f"{host.name}: LV {self.res} changed meanwhile "
                         f"({reason or 'now in use'}); left alone")
                continue
            try:
                self._remove(host)
            except (FootballError, TransportError) as error:
                failed.append(f"{host.name}: {error}")
                continue
            self.say(f"{host.name}: removed LV {host.vg}/{self.res}")
            removed.append(host.name)
        if failed:
            raise FootballError(f"lv-cleanup of {self.res} removed "
                                f"{', '.join(removed) or 'nothing'}; failed on "
                                f"{'; '.join(failed)}. Look there, then re-run")

    def _remove(self, host):
        self.hooks.lv_remove(host=host, lv=self.res)

"""`football lv-cleanup RES [--do-it]`: remove the LVs named RES that no MARS
replica uses (leftovers of crashed or interrupted operations).

An LV `RES` on a host is a leftover when all of these hold:
- the host is not a member of the MARS resource RES, neither in its own view
  nor in the view of any other reachable host (`view-resource-members`);
- nothing is mounted at the resource's mountpoint there and its container
  does not run;
- no unfinished operation of this controller plans a replica of RES there
  (its journal names the host as a target).
Without `--do-it` the leftovers are only listed. With it, each host is
locked (item `football`, as migrate's prepare does while it creates and joins
an LV), checked again under the lock, and the LV removed. A member's disk is
never removed: when in doubt (a host that does not answer), nothing is."""


from football import facts
from football.errors import FootballError
from football.inventory import InventoryError
from football.locks import LockSet, RUN_LOCK, run_owner
from football.ops.base import check_resource_name, in_parallel
from football.ops.status import unfinished_operations
from football.transport import TransportError



def members_seen(host, res):
    """The members of `res` as `host` sees them ([] when its cluster has no
    such resource)."""
    if res not in facts.all_resources(host):
        return []
    return facts.members(host, res)


def leftovers(candidates, members, planned):
    """The hosts whose LV may go: holding one (`candidates`: {host: reason it
    must stay, or ''}), not a member anywhere and not planned by a journal."""
    return sorted(host for host, reason in candidates.items()
                  if not reason and host not in members and host not in planned)


class LvCleanup:
    operation = "lv-cleanup"

    def __init__(self, ctx, res, do_it=False):
        self.ctx, self.hooks = ctx, ctx.hooks
        self.res = check_resource_name(res)
        self.do_it = do_it
        self.owner = run_owner(self.operation, self.res)

    # ------------------------------------------------------------- discovery
    def _look(self, host):
        """(has the LV, members as the host sees them, why it must stay or '')."""
        try:
            has_lv = self.res in self.hooks.lv_list(host=host)
            members = members_seen(host, self.res) if facts.cluster_hosts(host) else []
            if not has_lv:
                return False, members, ""
            if facts.mount_source(host, host.mountpoint(self.res)):
                return True, members, f"mounted at {host.mountpoint(self.res)}"
            if self.hooks.container_state(host=host, res=self.res) == "RUNNING":
                return True, members, "its container runs"
            return True, members, ""
        except (TransportError, FootballError, InventoryError) as error:
            return None, [], f"cannot check: {str(error).splitlines()[0]}"

    def discover(self):
        """{host: why its LV stays ('' = may go)} for the hosts holding an LV
        `res`, and the hosts that must keep it. Changes nothing."""
        inv = self.ctx.inventory
        names = sorted(inv.hosts)
        looks = dict(zip(names, in_parallel(lambda name: self._look(inv.hosts[name]), names)))
        unknown = [name for name, (has_lv, _, _) in looks.items() if has_lv is None]
        members = {member for _, seen, _ in looks.values() for member in seen}
        planned = {target for op in unfinished_operations(self.ctx.config.state_dir)
                   if op.get("resource") == self.res for target in op.get("targets", [])}
        candidates = {name: reason for name, (has_lv, _, reason) in looks.items() if has_lv}
        for name in candidates:
            if name in members:
                candidates[name] = "a MARS replica uses it"
            elif not candidates[name] and name in planned:
                candidates[name] = "an unfinished operation plans a replica here"
        if unknown:
            # a member that does not answer could have us misjudge the others
            for name in candidates:
                candidates[name] = candidates[name] or \
                    f"not sure: {', '.join(unknown)} did not answer"
            for name in unknown:
                candidates[name] = looks[name][2]
        return candidates, members, planned

    # ------------------------------------------------------------------- run
    def run(self):
        say = self.ctx.reporter.say
        candidates, members, planned = self.discover()
        if not candidates:
            say(f"no host of the inventory has an LV named {self.res}: nothing to do")
            return {"removed": [], "kept": {}}
        doomed = leftovers(candidates, members, planned)
        kept = {name: reason for name, reason in candidates.items() if name not in doomed}
        for name, reason in sorted(kept.items()):
            say(f"{name}: keeps LV {self.ctx.inventory.hosts[name].vg}/{self.res} ({reason})")
        if not doomed:
            return {"removed": [], "kept": kept}
        if not self.do_it or self.ctx.dry_run:
            for name in doomed:
                say(f"{name}: would remove LV {self.ctx.inventory.hosts[name].vg}/{self.res}"
                    " (no MARS replica uses it)")
            if not self.do_it:
                say(f"run `football lv-cleanup {self.res} --do-it` to remove "
                    f"{'it' if len(doomed) == 1 else 'them'}")
            return {"removed": [], "would_remove": doomed, "kept": kept}
        removed, failed = [], []
        for name in doomed:
            host = self.ctx.inventory.hosts[name]
            locks = LockSet(self.owner, self.ctx.config, self.ctx.reporter.detail)
            with locks.holding([host], RUN_LOCK):
                # under the lock no migrate can be between creating and joining it
                has_lv, seen, reason = self._look(host)
                if not has_lv or reason or name in seen:
                    say(f"{name}: LV {self.res} changed meanwhile ({reason or 'now in use'});"
                        " left alone")
                    continue
                try:
                    self.hooks.lv_remove(host=host, lv=self.res)
                except (FootballError, TransportError) as error:
                    failed.append(f"{name}: {error}")
                    continue
            say(f"{name}: removed LV {host.vg}/{self.res}")
            removed.append(name)
        if failed:
            raise FootballError(f"lv-cleanup of {self.res} removed "
                                f"{', '.join(removed) or 'nothing'}; failed on "
                                f"{'; '.join(failed)}. Look there, then re-run")
        return {"removed": removed, "kept": kept}

"""Evacuation and restore plans (FOOTBALL.md, "Evacuate").

`plan_evacuation`: the hosts are taken as draining (the score's penalties
16 and 4 make every replica there cost); each resource with a replica on
them, largest first, gets the placement that scores best among those
within one cluster of active hosts with room, its bytes to sync counted at
`gain_per_tib` per TiB (so a replica it keeps on an active host is worth
keeping) — a migrate off the hosts entirely (a handover alone would leave
a replica behind). Capacity is
consumed as the plan goes. A resource that fits nowhere fails the whole
plan (`CapacityLacking`, listing every one): Football never stops a
container in place to make an evacuation "succeed".

`plan_restore`: the resources that came from a host (their `origins`, as
recorded when they left) go back to it, each to the replicas it had where
those hosts accept resources again."""

from football.errors import Illegal
from football.planner.balance import placements
from football.planner.moves import (TIB, Move, kind_of, ordered, refusal, size_text,
                                    sync_bytes)
from football.planner.plan import Plan
from football.planner.score import Evaluator, moved


class CapacityLacking(Illegal):
    """Some resources of a plan fit nowhere; `lacking` is [(resource, why)]."""

    def __init__(self, what, lacking):
        self.lacking = lacking
        super().__init__(f"{what}: capacity lacking for {len(lacking)} resource(s), nothing "
                         "planned: " + "; ".join(f"{res}: {why}" for res, why in lacking)
                         + " (free space or add hosts, then plan again)")


def plan_evacuation(fleet, hosts, settings, now=0.0):
    """The `Plan` that moves every primary and replica off `hosts`; see the
    module. `Illegal` for unknown or unreachable hosts, or all of them,
    and for a resource there without a primary (no move of it can run)."""
    hosts = sorted(set(hosts))
    unknown = [name for name in hosts if name not in fleet.hosts]
    if unknown:
        raise Illegal(f"unknown host(s) {', '.join(unknown)}; hosts: "
                      f"{', '.join(sorted(fleet.hosts))}")
    if not set(fleet.hosts) - set(hosts):
        raise Illegal(f"evacuating {', '.join(hosts)} would evacuate every host of the fleet: "
                      "nowhere is left to move to")
    dead = [name for name in hosts if not fleet.hosts[name].reachable]
    if dead:
        raise Illegal(f"{', '.join(dead)} unreachable: an evacuation needs the host to take "
                      "part; a host that is gone for good: football failover <host>")
    stuck = {res: sorted(name for name in fleet.resources[res].replicas
                         if not fleet.hosts[name].reachable) for res in fleet.on(hosts)}
    stuck = {res: silent for res, silent in stuck.items() if silent}
    if stuck:
        silent = sorted({name for names in stuck.values() for name in names})
        raise Illegal(f"{', '.join(sorted(stuck))} {'has' if len(stuck) == 1 else 'have'} a "
                      f"replica on {', '.join(silent)}, which "
                      f"{'does' if len(silent) == 1 else 'do'} not answer: no move of "
                      f"{'it' if len(stuck) == 1 else 'them'} can be made. "
                      + (f"Wait for it, or, if it is gone for good, football failover "
                         f"{silent[0]} first" if len(silent) == 1 else
                         "Wait for them, or, for one gone for good, football failover <host> "
                         "first") + "; nothing planned")
    primaryless = [res for res in fleet.on(hosts) if not fleet.resources[res].primary]
    if primaryless:
        # a migrate needs the resource primary somewhere: planned all the
        # same, its job failed after the hosts were marked draining
        raise Illegal(f"evacuating {', '.join(hosts)}: " + "; ".join(
            f"{res} has no primary (no host runs it), so no move of it can run: start it on "
            f"one of its replicas first (football repair-vm {res} "
            f"{' '.join(fleet.resources[res].replicas)})" for res in primaryless)
            + "; then evacuate again; nothing planned")
    fleet = fleet.with_lifecycle(hosts, "draining")
    initial = fleet
    evaluator = Evaluator(fleet, settings)
    before, groups = evaluator.total, fleet.groups()
    leaving = sorted(fleet.on(hosts), key=lambda res: (-fleet.resources[res].lv_size, res))
    moves, lacking = [], []
    many = {res: fleet.resources[res].replicas for res in leaving
            if len(fleet.resources[res].replicas) > 2}
    if many:
        # not "capacity lacking" (free space or add hosts): a migrate moves
        # a primary and one secondary, a plan never drops a replica
        raise Illegal(f"evacuating {', '.join(hosts)}: " + "; ".join(
            f"{res} has {len(replicas)} replicas ({', '.join(replicas)})"
            for res, replicas in sorted(many.items())) + ": a move takes a primary and one "
            "secondary; let one replica leave first (marsadm leave-resource on its host), or "
            "move it by hand; nothing planned")
    for res in leaving:
        resource = fleet.resources[res]
        best, best_key, last_refusal = None, None, "no cluster has an active host"
        for group in sorted(groups):
            for target in placements(groups[group]):
                # an evacuation keeps every replica: it does not trade
                # redundancy for a place (the remaining host of a pair)
                why = refusal(fleet, res, target, settings) or (
                    len(target) < len(resource.replicas)
                    and f"{', '.join(target)} cannot hold its {len(resource.replicas)} replicas")
                if why:
                    last_refusal = why
                    continue
                key = (*_placement_cost(evaluator, res, resource, target, settings), target)
                if best_key is None or key < best_key:
                    best, best_key = target, key
        if best is None:
            lacking.append((res, f"{size_text(resource.lv_size)}, no cluster of active hosts "
                                 f"has room (e.g. {last_refusal})"))
            continue
        moves.append(Move(res, kind_of(resource, best), resource.replicas, best,
                          evaluator.total - best_key[1], best_key[2]))
        fleet, evaluator = moved(fleet, evaluator, res, best)
    if lacking:
        raise CapacityLacking(f"evacuating {', '.join(hosts)}", lacking)
    return Plan.new("evacuate", now, ordered(initial, moves, settings), before, evaluator.total,
                    settings, hosts)


def _placement_cost(evaluator, res, resource, target, settings):
    """(the score after `res` moved to `target` with the bytes it syncs
    priced at the rate a balancing migrate pays, the score alone, those
    bytes): lowest first."""
    sync = sync_bytes(resource, target)
    value = evaluator.after(res, target)
    return value + settings.gain_per_tib * sync / TIB, value, sync


def _filled_up(fleet, evaluator, res, target, count, group, settings, restored):
    """`target` with replicas added up to `count`, on the accepting hosts of
    `group` that score best (each checked as `refusal` checks the move to
    `restored`, the host restored); as far as there are such hosts."""
    while len(target) < count:
        candidates = [name for name, view in sorted(fleet.hosts.items())
                      if view.group == group and view.accepts and name not in target
                      and not refusal(fleet, res, (*target, name), settings,
                                      accepting=(restored,))]
        if not candidates:
            break
        # (a host holding a replica already syncs nothing: paid for as a
        # move's bytes are, `gain_per_tib`)
        target = (*target, min(candidates, key=lambda name: (_placement_cost(
            evaluator, res, fleet.resources[res], (*target, name), settings)[0], name)))
    return target


def plan_restore(fleet, host, origins, settings, now=0.0):
    """The `Plan` that brings back to `host` what came from it. `origins`:
    {resource: its replicas before the evacuation, primary first}. Each
    such resource gets back its old replica on `host`, and its other old
    replicas where those hosts accept resources (else it keeps its current
    one in that place, where that shares `host`'s cluster; else it waits,
    held, for that host's own restore: a pair across two clusters would
    merge them), and never fewer replicas than it has now (`_filled_up`);
    a resource already on `host`, or gone, is left alone; one without a
    primary is held, with how it goes back by hand.
    `CapacityLacking` when `host` has no room for all of them; `Illegal`
    when one comes back and `host` does not answer or its MARS view could
    not be read (`_unreadable`: no room would mend that)."""
    if host not in fleet.hosts:
        raise Illegal(f"unknown host {host}; hosts: {', '.join(sorted(fleet.hosts))}")
    unreadable = _unreadable(fleet.hosts[host])
    fleet = fleet.with_lifecycle([host], "restoring")
    initial = fleet
    evaluator = Evaluator(fleet, settings)
    group = fleet.hosts[host].group
    before, moves, lacking, held = evaluator.total, [], [], []
    for res, origin in sorted(origins.items()):
        resource = fleet.resources.get(res)
        if resource is None or host not in origin or host in resource.replicas:
            continue
        current = resource.replicas
        if not resource.primary:
            # a migrate needs the resource primary somewhere: its job failed
            held.append((res, f"has no primary (no host runs it), so no move of it can run: "
                              f"start it on one of its replicas (football repair-vm {res} "
                              f"{' '.join(current)}), then it goes back by hand: football "
                              f"migrate {res} {' '.join(origin)}"))
            continue
        target, waiting = [], None
        for index, was in enumerate(origin):
            there = current[index] if index < len(current) else None
            if was == host or (was in fleet.hosts and fleet.hosts[was].accepts):
                chosen = was
            elif there in fleet.hosts and fleet.hosts[there].group == group:
                chosen = there
            else:
                waiting = was
                break
            if chosen not in target:
                target.append(chosen)
        if waiting is not None:
            state = fleet.hosts[waiting].lifecycle if waiting in fleet.hosts else \
                "not in the inventory"
            held.append((res, f"comes back with its replica on {waiting} ({state}): "
                              f"`football restore {waiting}` brings it back"))
            continue
        if unreadable:
            raise Illegal(f"restoring {host}: {res} would come back to it, but {unreadable}; "
                          "nothing planned")
        target = tuple(target)
        if len(target) < len(current):
            # fewer replicas than it has now (one alone before, given a pair
            # by its evacuation): it keeps as many, the others placed in
            # `host`'s cluster (as balance and evacuation never lower it)
            target = _filled_up(fleet, evaluator, res, target, len(current), group, settings,
                                host)
        why = refusal(fleet, res, target, settings, accepting=(host,))
        if why:
            lacking.append((res, why))
            continue
        moves.append(Move(res, kind_of(resource, target), current, target,
                          evaluator.total - evaluator.after(res, target),
                          sync_bytes(resource, target)))
        fleet, evaluator = moved(fleet, evaluator, res, target)
    if lacking:
        raise CapacityLacking(f"restoring {host}", lacking)
    return Plan.new("restore", now, ordered(initial, moves, settings), before, evaluator.total,
                    settings, (host,), held)


def _unreadable(view):
    """Why nothing can be placed on the host of `view` whatever its room
    (it does not answer, its MARS view could not be read), with what to
    do; else ''."""
    if not view.reachable:
        return f"{view.name} does not answer: restore again once it answers"
    if not view.mars_read:
        return (f"{view.name}'s MARS view could not be read (marsadm view all failed or timed "
                f"out there): see that marsd runs on {view.name} and `marsadm view all` "
                "answers there, then restore again")
    return ""

"""Balancing: hbal's greedy loop with one step of lookahead.

Each round tries the candidate moves of the resources that may move
(`movable`), simulates each on the fleet (`Evaluator.after`), and takes the
one that lowers the score most, provided

- a hard limit allows it (`moves.refusal`),
- a migrate pays for its bytes (`gain_per_tib` per TiB synced),
- the gain is at least `min_gain`, or the score's spread (the score
  without its penalties, which no move may remove) is above
  `min_gain_limit` (hbal: `fin < ini && (ini > min_gain_limit || ini − fin ≥
  min_gain)`, on the whole score);

then applies it to the model and goes on, at most `max_moves` rounds.

Against thrashing: a resource moved within `cooldown` (the history passed
in, and the moves of this plan) does not move, so it never goes back
where it came from within the cooldown; there is no balancing while a host
is draining (its evacuation runs).

Candidates: on a fleet of up to `2 × CANDIDATE_HOSTS` online hosts every
resource against every cluster (exhaustive, as hbal); on larger fleets each
round tries the resources of the `CANDIDATE_HOSTS` most loaded hosts (by
the score's weighted z-scores) and of the penalised resources, against the
clusters of the `CANDIDATE_HOSTS` least loaded hosts and their own — the
moves that can gain most, at a cost that does not grow with the fleet."""

import math
import time

from football.errors import Illegal
from football.planner.moves import (GAIN_EPSILON, Move, kind_of, ordered, pays_for_sync,
                                    refusal, sync_bytes)
from football.planner.plan import Plan
from football.planner.score import METRICS, Evaluator, moved

CANDIDATE_HOSTS = 8
MIN_SCORE = 1e-9            # hbal's --min-score: nothing left to improve


class BalanceRefused(Illegal):
    """Balancing is not allowed now (a host is draining)."""


def placements(hosts):
    """The replica sets (primary first) a group of hosts offers: every
    ordered pair, or the host alone in a group of one."""
    if len(hosts) == 1:
        return [(hosts[0],)]
    return [(primary, secondary) for primary in hosts for secondary in hosts
            if primary != secondary]


def loadedness(evaluator):
    """{online host: Σ weight × z-score of how full it is} (free space and
    memory count negatively): the most loaded hosts first to shed."""
    rank = dict.fromkeys((name for name, host in evaluator.fleet.hosts.items() if host.online),
                         0.0)
    for metric in METRICS:
        count, first, second = evaluator.sums[metric]
        if count < 2:
            continue
        mean = first / count
        deviation = math.sqrt(max(0.0, second / count - mean * mean))
        if deviation == 0:
            continue
        sign = -1 if metric.startswith("free") else 1
        for name, value in evaluator.values[metric].items():
            rank[name] += evaluator.weights[metric] * sign * (value - mean) / deviation
    return rank


def candidate_moves(fleet, evaluator, movable, penalised=frozenset()):
    """(resource, target) pairs worth trying this round (see the module);
    `penalised`: the resources with a penalty (tried on large fleets too)."""
    groups = fleet.groups()
    rank = loadedness(evaluator)
    if len(rank) <= 2 * CANDIDATE_HOSTS:
        resources = sorted(movable)
        target_groups = set(groups)
    else:
        ordered = sorted(rank, key=lambda name: (-rank[name], name))
        sources = ordered[:CANDIDATE_HOSTS]
        targets = [name for name in reversed(ordered) if fleet.hosts[name].accepts]
        target_groups = {fleet.hosts[name].group for name in targets[:CANDIDATE_HOSTS]}
        resources = sorted((set(fleet.on(sources)) | penalised) & movable)
    for res in resources:
        resource = fleet.resources[res]
        for secondary in resource.secondaries:
            yield res, (secondary, *(name for name in resource.replicas if name != secondary))
        own = fleet.hosts[resource.primary].group
        for group in sorted(target_groups | {own}):
            for target in placements(groups.get(group, [])):
                # never fewer replicas: a resource with three was moved to
                # a pair (migrate takes a primary and one secondary), one
                # with two into a group of one host
                if set(target) != set(resource.replicas) and \
                        len(target) >= len(resource.replicas):
                    yield res, target


def best_move(fleet, settings, evaluator, candidates, accepting=(), demand=lambda res, target: 0.0):
    """The candidate that lowers the score most and may be taken (hard
    limits, a migrate's bytes paid for, at least `demand(res, target)`
    gained), as a `Move`; None if there is none."""
    best, best_key = None, None
    for res, target in candidates:
        value = evaluator.after(res, target)
        gain = evaluator.total - value
        if gain <= GAIN_EPSILON or (best is not None and gain < best.gain) or \
                gain < demand(res, target):
            continue
        resource = fleet.resources[res]
        sync = sync_bytes(resource, target)
        key = (-gain, sync, res, target)
        if best_key is not None and key >= best_key:
            continue
        kind = kind_of(resource, target)
        if kind == "migrate" and not pays_for_sync(gain, sync, settings):
            continue
        if refusal(fleet, res, target, settings, accepting):
            continue
        best, best_key = Move(res, kind, resource.replicas, target, gain, sync), key
    return best


def movable_resources(fleet, held):
    """The resources balancing may move: with a primary, not `held`
    (`held_resources`)."""
    return {res for res, resource in fleet.resources.items()
            if resource.primary and res not in held}


def held_resources(fleet, settings, history, now, busy=()):
    """{resource: why balancing may not move it now} of the resources with a
    primary: pinned (`balance_pinned`), moved within `cooldown` (until when),
    busy (`busy`: {resource: why}: a job runs for it, an operation is
    unfinished), a replica on a host that does not answer, or whose MARS
    view or state could not be read (`FleetHost.unsure`: one whose state
    was unknown had its resources moved off it, though it may be draining
    or restoring, and its MARS view may say otherwise)."""
    held = {}
    for record in sorted(history, key=lambda record: record.time):     # the newest says
        if now - record.time < settings.cooldown and record.resource in fleet.resources:
            until = time.strftime("%Y-%m-%d %H:%M",
                                  time.localtime(record.time + settings.cooldown))
            # a failed move held too: planned again at every run, it failed
            # again (a job and a failed timer service an hour)
            held[record.resource] = (f"its planned move failed, held within cooldown (until "
                                     f"{until}; `football screener restart` tries it again)"
                                     if record.failed else
                                     f"moved within cooldown (until {until})")
    for res, resource in fleet.resources.items():
        pattern = settings.pinned_by(res)
        if not resource.primary:
            held.pop(res, None)
        elif pattern is not None:
            held[res] = f"pinned (balance_pinned {pattern})"
        elif res in busy:
            held[res] = busy[res]
        elif not all(fleet.hosts[name].reachable for name in resource.replicas):
            silent = [name for name in resource.replicas if not fleet.hosts[name].reachable]
            held[res] = f"its replica's host {', '.join(silent)} does not answer"
        else:
            unsure = next(((name, why) for name in resource.replicas
                           if (why := fleet.hosts[name].unsure())), None)
            if unsure:
                held[res] = f"its replica's host {unsure[0]}: {unsure[1]}"
    return held


def plan_balance(fleet, settings, history=(), now=0.0, busy=()):
    """The balance `Plan` of `fleet`: greedy moves while they gain enough,
    at most `max_moves`. `history`: `Moved` records (the cooldown);
    `busy`: {resource: why} of the resources a job runs for.
    `BalanceRefused` while a host is draining."""
    draining = sorted(name for name, host in fleet.hosts.items()
                      if host.lifecycle == "draining")
    if draining:
        raise BalanceRefused(f"no balancing while hosts are draining: {', '.join(draining)} "
                             "(let their evacuation finish, or restore them)")
    held = held_resources(fleet, settings, history, now, busy)
    movable = movable_resources(fleet, held)
    # A move back onto the hosts a resource's last move took it from gains
    # `balance_margin` of the score at least: the score estimates each
    # container's memory and load as a share of its host's, and a moved
    # one's share differs, so the way back looked a gain again — a resource
    # moved to and fro once every cooldown, a downtime each time.
    came_from = {}
    # the newest says (one without its hosts: none known); the jobs'
    # database's record of a move this controller recorded has its time:
    # the one with the hosts says
    for record in sorted(history, key=lambda record: (record.time, bool(record.source))):
        if not record.failed:
            came_from[record.resource] = set(record.source)
    evaluator = Evaluator(fleet, settings)
    # a resource's penalties depend on its placement alone, and a moved
    # resource moves no more: the penalised ones are known once
    penalised = frozenset(res for res in movable if evaluator.rules.weighted(
        fleet.resources[res].primary, fleet.resources[res].secondaries))
    before, moves, initial = evaluator.total, [], fleet
    while len(moves) < settings.max_moves and movable and evaluator.total > MIN_SCORE:
        move = best_move(fleet, settings, evaluator,
                         candidate_moves(fleet, evaluator, movable, penalised),
                         demand=lambda res, target: settings.balance_margin * evaluator.total
                         if set(target) == came_from.get(res) else 0.0)
        # hbal's rule, on the spreads: penalties no move removes (every
        # host in one failure domain: 1 a resource) kept the score above
        # min_gain_limit for good, and moves of any gain were taken (a
        # migrate for a 0.00004 of a score of 4, at every run)
        if move is None or not (evaluator.total - evaluator.penalties > settings.min_gain_limit
                                or move.gain >= settings.min_gain):
            break
        moves.append(move)
        movable.discard(move.resource)      # moved now: its cooldown begins
        fleet, evaluator = moved(fleet, evaluator, move.resource, move.target)
    return Plan.new("balance", now, ordered(initial, moves, settings), before, evaluator.total,
                    settings, held=sorted(held.items()))

"""The cluster score, as Ganeti's hbal computes it (fleet-anchors.md §1):
lower is better, 0 is a perfectly balanced fleet without problems.

    score = Σ weight × standard deviation over the online hosts of a
            fraction in [0, 1]: free VG, free memory, containers (count /
            max_containers, or / twice the mean count per host; this one
            may exceed 1), CPU load (15-minute load average / CPUs)
          + Σ penalty × count: primaries on draining or evacuated hosts,
            resources with a replica there, resources whose primary and a
            secondary share a failure domain, resources without a secondary

The standard deviation is the population's (divided by n), over the hosts
for which the fraction is known. Capacity (VG space, max_containers,
memory) is no term: a move that would exceed it is never planned
(football/planner/moves.py).

`Evaluator` answers "what would the score be after this move" from running
sums in time independent of the fleet's size, so the greedy search can try
many moves."""

import math
from dataclasses import dataclass

from football.planner.fleet import changes

METRICS = ("free_vg", "free_memory", "containers", "cpu_load")
TOPS = (1.0, 1.0, math.inf, 1.0)    # each metric's most (containers: see host_fractions)
PENALTIES = ("draining_primary", "draining_replica", "same_failure_domain", "no_secondary")


def _fraction(value):
    return min(1.0, max(0.0, value))


def host_fractions(host, containers, capacity):
    """{metric: fraction in [0, 1] (containers: may exceed 1) or None
    (unknown)} of a host with `containers` primaries of `capacity`."""
    return {
        "free_vg": _fraction(host.vg_free / host.vg_size) if host.vg_size else None,
        "free_memory": _fraction(host.mem_free / host.mem_total)
        if host.mem_total and host.mem_free is not None else None,
        # not cut at 1: a host above the scale (twice the mean, without
        # max_containers) must read fuller than one at it, else piling
        # containers onto one host looked as even as spreading them
        "containers": max(0.0, containers / capacity),
        "cpu_load": _fraction(host.load / host.cpus)
        if host.cpus and host.load is not None else None,
    }


class Penalties:
    """The penalty rules over one fleet's hosts (which are emptying, their
    failure domains), for placements of resources on them."""

    def __init__(self, fleet, settings):
        self.emptying = {name for name, host in fleet.hosts.items() if host.emptying}
        self.domains = {name: host.failure_domain for name, host in fleet.hosts.items()
                        if host.failure_domain}
        self.weights = tuple(getattr(settings, f"penalty_{name}") for name in PENALTIES)

    def counts(self, primary, secondaries):
        """(draining_primary, draining_replica, same_failure_domain,
        no_secondary) of one resource placed on `primary` + `secondaries`."""
        # the emptiness tests first: in a fleet without draining hosts or
        # failure domains (most of the time) they are all there is to do
        emptying, domains = self.emptying, self.domains
        on_emptying = bool(emptying) and primary in emptying
        domain = domains.get(primary) if domains else None
        return (int(on_emptying),
                int(on_emptying or bool(emptying) and any(name in emptying
                                                          for name in secondaries)),
                int(bool(domain) and any(domains.get(name) == domain for name in secondaries)),
                int(not secondaries))

    def weighted(self, primary, secondaries):
        """The weighted penalties of one resource placed so."""
        weights = self.weights
        first, second, third, fourth = self.counts(primary, secondaries)
        return first * weights[0] + second * weights[1] + third * weights[2] + \
            fourth * weights[3]


def spread(values):
    """The population standard deviation of `values` (0 for fewer than two)."""
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(sum((value - mean) ** 2 for value in values) / len(values))


@dataclass(frozen=True)
class Score:
    """A fleet's score: `total`, each weighted term (`terms`: the spreads by
    metric, the penalties by name), and per host its fractions and the
    penalty counts charged to it (a resource's to its primary's host, a
    draining replica's to the draining host)."""

    total: float
    terms: dict
    hosts: dict

    def to_json(self):
        return {"score": self.total, "terms": self.terms, "hosts": self.hosts}


def score(fleet, settings):
    """The `Score` of `fleet` under `settings` (computed from scratch)."""
    weights = settings.weights()
    fractions = {name: host_fractions(host, fleet.containers[name], fleet.capacity(name))
                 for name, host in fleet.hosts.items()}
    terms = {}
    for metric in METRICS:
        values = [fractions[name][metric] for name, host in fleet.hosts.items()
                  if host.online and fractions[name][metric] is not None]
        terms[metric] = weights[metric] * spread(values)
    charged = {name: dict.fromkeys(PENALTIES, 0) for name in fleet.hosts}
    rules = Penalties(fleet, settings)
    for resource in fleet.resources.values():
        counts = rules.counts(resource.primary, resource.secondaries)
        for penalty, count in zip(PENALTIES, counts):
            if not count:
                continue
            where = resource.primary or resource.replicas[0]
            if penalty == "draining_replica":
                where = next(name for name in resource.replicas if fleet.hosts[name].emptying)
            charged[where][penalty] += count
    for penalty in PENALTIES:
        terms[penalty] = getattr(settings, f"penalty_{penalty}") * sum(
            counts[penalty] for counts in charged.values())
    hosts = {name: {"lifecycle": host.lifecycle, "online": host.online,
                    "container_count": fleet.containers[name], **fractions[name],
                    "penalties": {key: count for key, count in charged[name].items() if count}}
             for name, host in sorted(fleet.hosts.items())}
    return Score(sum(terms.values()), terms, hosts)


class Evaluator:
    """The score of a fleet kept as running sums per metric (n, Σx, Σx²
    over the online hosts whose fraction is known) plus the penalties'
    total, so that the score after a move costs a few operations per host
    the move changes. `penalties`: their total when the caller knows it
    (the previous evaluator's after the move), else summed here."""

    def __init__(self, fleet, settings, penalties=None):
        self.fleet, self.settings = fleet, settings
        self.weights = settings.weights()
        self.rules = Penalties(fleet, settings)
        self.values = {metric: {} for metric in METRICS}
        self.raw, self.scale = {}, {}       # online host -> per metric: value, its 100 %
        for name, host in fleet.hosts.items():
            if not host.online:
                continue
            fractions = host_fractions(host, fleet.containers[name], fleet.capacity(name))
            for metric, value in fractions.items():
                if value is not None:
                    self.values[metric][name] = value
            self.raw[name] = (host.vg_free, host.mem_free, fleet.containers[name], host.load)
            self.scale[name] = (host.vg_size, host.mem_total, fleet.capacity(name), host.cpus)
        # per online host its fractions by metric, None where unknown
        self.known = {name: tuple(self.values[metric].get(name) for metric in METRICS)
                      for name in self.raw}
        self._penalty = {}              # resource -> its weighted penalties now
        self.sums = {metric: (len(values), sum(values.values()),
                              sum(value * value for value in values.values()))
                     for metric, values in self.values.items()}
        self.running = [(self.weights[metric], *self.sums[metric]) for metric in METRICS]
        if penalties is None:
            penalties = sum(self.rules.weighted(resource.primary, resource.secondaries)
                            for resource in fleet.resources.values())
        self.penalties = penalties
        self.total = self._spreads({}) + penalties

    def _spreads(self, deltas):
        """Σ weight × spread, the hosts in `deltas` ({host: [change per
        metric]}) changed so (the same fractions as `host_fractions`;
        written for speed: the search calls this for every move it tries)."""
        firsts, seconds = [0.0] * len(METRICS), [0.0] * len(METRICS)
        for name, delta in deltas.items():
            known = self.known.get(name)
            if known is None:          # not online: in no spread
                continue
            raw, scale = self.raw[name], self.scale[name]
            for index, old in enumerate(known):
                change = delta[index]
                if change and old is not None:
                    new = (raw[index] + change) / scale[index]
                    new = 0.0 if new < 0.0 else min(new, TOPS[index])
                    firsts[index] += new - old
                    seconds[index] += new * new - old * old
        total = 0.0
        for (weight, count, first, second), extra_first, extra_second in zip(
                self.running, firsts, seconds):
            if count >= 2:
                mean = (first + extra_first) / count
                total += weight * math.sqrt(max(0.0, (second + extra_second) / count
                                                - mean * mean))
        return total

    def penalty_change(self, res, target):
        """How the penalties change if `res` had the replicas `target`."""
        current = self._penalty.get(res)
        if current is None:
            resource = self.fleet.resources[res]
            current = self._penalty[res] = self.rules.weighted(resource.primary,
                                                               resource.secondaries)
        return self.rules.weighted(target[0], target[1:]) - current

    def after(self, res, target):
        """The score of the fleet if `res` had the replicas `target`."""
        deltas = changes(self.fleet.resources[res], target)
        return self._spreads(deltas) + self.penalties + self.penalty_change(res, target)


def moved(fleet, evaluator, res, target):
    """(fleet, evaluator) once `res` has the replicas `target`: the new
    evaluator takes the penalties' total from the old one (a move changes
    the moved resource's alone) instead of summing them all again."""
    penalties = evaluator.penalties + evaluator.penalty_change(res, target)
    fleet = fleet.after(res, target)
    return fleet, Evaluator(fleet, evaluator.settings, penalties)

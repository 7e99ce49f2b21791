"""The cluster score, as Ganeti's hbal computes it (fleet-anchors.md §1):
lower is better, 0 is a perfectly balanced fleet without problems.

    score = Σ weight × standard deviation over the online hosts of a
            fraction in [0, 1]: free VG, free memory, containers (count /
            max_containers), CPU load (15-minute load average / CPUs)
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

METRICS = ("free_vg", "free_memory", "containers", "cpu_load")
PENALTIES = ("draining_primary", "draining_replica", "same_failure_domain", "no_secondary")


def _fraction(value):
    return min(1.0, max(0.0, value))


def host_fractions(host, containers, capacity):
    """{metric: fraction in [0, 1] or None (unknown)} of a host with
    `containers` primaries of `capacity`."""
    return {
        "free_vg": _fraction(host.vg_free / host.vg_size) if host.vg_size else None,
        "free_memory": _fraction(host.mem_free / host.mem_total)
        if host.mem_total and host.mem_free is not None else None,
        "containers": _fraction(containers / capacity),
        "cpu_load": _fraction(host.load / host.cpus)
        if host.cpus and host.load is not None else None,
    }


def resource_penalties(fleet, primary, secondaries):
    """{penalty: count} of one resource placed on `primary` + `secondaries`."""
    hosts = fleet.hosts
    domain = hosts[primary].failure_domain if primary in hosts else ""
    return {
        "draining_primary": int(primary in hosts and hosts[primary].emptying),
        "draining_replica": int(any(name in hosts and hosts[name].emptying
                                    for name in (primary, *secondaries))),
        "same_failure_domain": int(bool(domain) and any(
            name in hosts and hosts[name].failure_domain == domain for name in secondaries)),
        "no_secondary": int(not secondaries),
    }


def penalty_of(fleet, primary, secondaries, settings):
    """The weighted penalties of one resource placed so."""
    counts = resource_penalties(fleet, primary, secondaries)
    return sum(getattr(settings, f"penalty_{name}") * count for name, count in counts.items())


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
    for resource in fleet.resources.values():
        counts = resource_penalties(fleet, resource.primary, resource.secondaries)
        for penalty, count in counts.items():
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
    the move changes."""

    def __init__(self, fleet, settings):
        self.fleet, self.settings = fleet, settings
        self.weights = settings.weights()
        self.values = {metric: {} for metric in METRICS}
        for name, host in fleet.hosts.items():
            if host.online:
                for metric, value in self._fractions(name, host, 0).items():
                    if value is not None:
                        self.values[metric][name] = value
        self.sums = {metric: (len(values), sum(values.values()),
                              sum(value * value for value in values.values()))
                     for metric, values in self.values.items()}
        self.penalties = sum(penalty_of(fleet, resource.primary, resource.secondaries, settings)
                             for resource in fleet.resources.values())
        self.total = self._spreads({}) + self.penalties

    def _fractions(self, name, host, containers_change):
        return host_fractions(host, self.fleet.containers[name] + containers_change,
                              self.fleet.capacity(name))

    def _spreads(self, changed):
        """Σ weight × spread, with the fractions of the hosts in `changed`
        ({host: {metric: new fraction}}) replaced."""
        total = 0.0
        for metric in METRICS:
            count, first, second = self.sums[metric]
            values = self.values[metric]
            for name, fractions in changed.items():
                if name in values:
                    old, new = values[name], fractions[metric]
                    first += new - old
                    second += new * new - old * old
            if count >= 2:
                mean = first / count
                total += self.weights[metric] * math.sqrt(max(0.0, second / count - mean * mean))
        return total

    def after(self, res, target):
        """The score of the fleet if `res` had the replicas `target`."""
        fleet = self.fleet
        changed = {}
        for name, change in fleet.changes(res, target).items():
            host = fleet.hosts[name]
            if not host.online:
                continue
            moved = FleetHostView(host, change)
            changed[name] = self._fractions(name, moved, change.containers)
        resource = fleet.resources[res]
        penalties = self.penalties \
            - penalty_of(fleet, resource.primary, resource.secondaries, self.settings) \
            + penalty_of(fleet, target[0], tuple(target[1:]), self.settings)
        return self._spreads(changed) + penalties


class FleetHostView:
    """A host's values with a `HostChange` applied, for `host_fractions`
    (cheaper than a new dataclass per tried move)."""

    __slots__ = ("vg_size", "vg_free", "mem_total", "mem_free", "cpus", "load")

    def __init__(self, host, change):
        self.vg_size, self.mem_total, self.cpus = host.vg_size, host.mem_total, host.cpus
        self.vg_free = host.vg_free + change.vg_free
        self.mem_free = None if host.mem_free is None else host.mem_free + change.mem_free
        self.load = None if host.load is None else host.load + change.load

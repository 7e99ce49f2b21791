"""The planner's model of the fleet: hosts with their capacity and load,
resources with their replicas, and what a move does to them.

A `Fleet` is a value: `after(resource, target)` is the fleet once the
resource's replicas are `target` (primary first), the hosts' VG free,
memory, load and container counts changed as the move changes them. Tests
build fleets by hand; `read_fleet` (football/planner/observe.py) builds
them from the hosts."""

import math
from dataclasses import dataclass, field, replace

LIFECYCLES = ("active", "draining", "evacuated", "restoring")     # (or "unknown": unread)
EMPTYING = ("draining", "evacuated")        # hosts being emptied, or empty for good


@dataclass(frozen=True)
class FleetHost:
    """A hypervisor as the planner sees it. Memory and load are None when
    they could not be read; `max_containers` None means no limit."""

    name: str
    cluster: str = ""               # the inventory's: a resource's replicas share one
    failure_domain: str = ""        # "" = unknown: never counted as shared
    lifecycle: str = "active"
    reachable: bool = True
    vg_size: int = 0
    vg_free: int = 0
    mem_total: int | None = None
    mem_free: int | None = None     # available, as /proc/meminfo's MemAvailable
    cpus: int | None = None
    load: float | None = None       # 15-minute load average
    max_containers: int | None = None
    # False: its `marsadm view all` failed or timed out; what it holds is
    # known from its mates' views only, and it looked empty: balancing
    # planned migrates onto it
    mars_read: bool = True

    @property
    def answers(self):
        """Reachable, and its MARS view was read."""
        return self.reachable and self.mars_read

    def unsure(self):
        """Why moving a replica off this host by balancing is not safe now
        (it does not answer, its MARS view or its state could not be read:
        it may be draining), or None."""
        if not self.reachable:
            return "does not answer"
        if not self.mars_read:
            return "its MARS view could not be read"
        if self.lifecycle == "unknown":
            return "its state (active, draining, ...) could not be read"
        return None

    @property
    def online(self):
        """Counted in the score's spreads (hbal: online nodes)."""
        return self.answers and self.lifecycle in ("active", "restoring")

    @property
    def emptying(self):
        return self.lifecycle in EMPTYING

    @property
    def accepts(self):
        """A target for balancing and evacuation: it answers (`answers`) and
        is active."""
        return self.answers and self.lifecycle == "active"

    @property
    def group(self):
        """The hosts a resource's replicas may share: its cluster, or itself."""
        return self.cluster or self.name


@dataclass(frozen=True)
class Resource:
    """A MARS resource and its container: `primary` runs it, `secondaries`
    replicate it; `memory` (bytes) and `load` are what its container
    costs its primary (estimated from the host's when not measured)."""

    name: str
    primary: str
    secondaries: tuple = ()
    lv_size: int = 0
    used: int | None = None         # bytes its filesystem holds, when read
    memory: int = 0
    load: float = 0.0

    @property
    def replicas(self):
        """Every host holding it, primary first."""
        return (self.primary, *self.secondaries) if self.primary else self.secondaries


def changes(resource, target):
    """{host: [VG free, memory free, containers, load] changes} if
    `resource` had the replicas `target` (primary first) instead of its
    own: a new replica takes its LV from the VG, a dropped one gives it
    back; the container (a count, its memory and load) goes to the new
    primary. Plain lists: the search computes this for every move it tries."""
    before, size = resource.replicas, resource.lv_size
    deltas = {}
    for name in target:
        if name not in before:
            deltas[name] = [-size, 0, 0, 0.0]
    for name in before:
        if name not in target:
            deltas[name] = [size, 0, 0, 0.0]
    if target[0] != resource.primary:
        for name, sign in ((resource.primary, 1), (target[0], -1)):
            if name:
                delta = deltas.setdefault(name, [0, 0, 0, 0.0])
                delta[1] += sign * resource.memory
                delta[2] -= sign
                delta[3] -= sign * resource.load
    return deltas


@dataclass(frozen=True)
class Fleet:
    """Hosts (name -> FleetHost) and resources (name -> Resource).
    `container_scale` is the container count that reads as 100 % on a host
    without max_containers: the largest max_containers, else twice the
    hosts' mean number of containers (rounded up). Moves do not change it,
    so that scores compare along a plan and between plans: the most
    containers of any host, as it was, fell when a plan evened them out,
    and the next plan's score rose for the even fleet (two containers on
    b1 -> one each on b1 and a1: 0.43 -> 0.50), which then moved one back."""

    hosts: dict
    resources: dict
    container_scale: int = 0
    containers: dict = field(default=None, compare=False)     # host -> primaries there

    def __post_init__(self):
        if self.containers is None:
            counts = dict.fromkeys(self.hosts, 0)
            for resource in self.resources.values():
                if resource.primary in counts:
                    counts[resource.primary] += 1
            object.__setattr__(self, "containers", counts)
        if not self.container_scale:
            limits = [host.max_containers or 0 for host in self.hosts.values()]
            fair = math.ceil(2 * sum(self.containers.values()) / max(len(self.hosts), 1))
            object.__setattr__(self, "container_scale", max([*limits, fair, 1]))

    def capacity(self, name):
        """The container count that fills host `name` (its fraction 1)."""
        return self.hosts[name].max_containers or self.container_scale

    def groups(self):
        """{group: [host names]} of the hosts that accept resources."""
        groups = {}
        for host in sorted(self.hosts.values(), key=lambda host: host.name):
            if host.accepts:
                groups.setdefault(host.group, []).append(host.name)
        return groups

    def on(self, names):
        """The resources with a replica on one of the hosts `names`, by name."""
        names = set(names)
        return sorted(res for res, resource in self.resources.items()
                      if names & set(resource.replicas))

    def with_lifecycle(self, names, lifecycle):
        """The fleet with hosts `names` in `lifecycle`."""
        hosts = dict(self.hosts)
        for name in names:
            hosts[name] = replace(hosts[name], lifecycle=lifecycle)
        return replace(self, hosts=hosts)

    def after(self, res, target):
        """The fleet once `res` has the replicas `target`, primary first."""
        hosts, containers = dict(self.hosts), dict(self.containers)
        for name, (vg_free, mem_free, count, load) in changes(self.resources[res],
                                                             target).items():
            host = hosts[name]
            hosts[name] = replace(
                host, vg_free=host.vg_free + vg_free,
                mem_free=None if host.mem_free is None else host.mem_free + mem_free,
                load=None if host.load is None else host.load + load)
            containers[name] += count
        resources = dict(self.resources)
        resources[res] = replace(self.resources[res], primary=target[0],
                                 secondaries=tuple(target[1:]))
        return Fleet(hosts, resources, self.container_scale, containers)

"""`read_fleet(ctx)`: the planner's `Fleet` from the hosts.

The MARS view, LVs and VG free come from the fleet snapshot
(football/snapshot.py); beside it each reachable host is asked, in
parallel, for its memory, load and CPUs (`cat /proc/meminfo /proc/loadavg
/proc/stat` — a command on the host, so a remote host reports its own) and
the space its primaries' filesystems use (`df`). A part that cannot be
read is left unknown (None) and the planner does without it.

A container's memory and load are not measured one by one: each primary
on a host is given an equal share of the host's used memory and load."""

import re

from football.ops.base import in_parallel
from football.planner.fleet import LIFECYCLES, Fleet, FleetHost, Resource
from football.snapshot import observe, silent_replicas
from football.transport import TransportError

LOAD_COMMAND = ["cat", "/proc/meminfo", "/proc/loadavg", "/proc/stat"]
MEMINFO = re.compile(r"^(MemTotal|MemAvailable):\s+(\d+) kB", re.MULTILINE)
LOADAVG = re.compile(r"^\d+\.\d+ \d+\.\d+ (\d+\.\d+) \d+/\d+ \d+$", re.MULTILINE)
CPU_LINE = re.compile(r"^cpu\d+ ", re.MULTILINE)
COMMAND_TIMEOUT = 30


def parse_host_load(text):
    """{mem_total, mem_free (bytes), load (15-minute), cpus} from the
    output of LOAD_COMMAND; a value it does not show is None."""
    memory = {key: int(value) * 1024 for key, value in MEMINFO.findall(text)}
    load = LOADAVG.search(text)
    cpus = len(CPU_LINE.findall(text))
    return {"mem_total": memory.get("MemTotal"), "mem_free": memory.get("MemAvailable"),
            "load": float(load.group(1)) if load else None, "cpus": cpus or None}


def parse_df_used(text, mountpoints):
    """{mountpoint: used bytes} from `df --output=used,target` for the
    rows that are the mountpoints asked (df names the enclosing filesystem
    of a directory that is not mounted: not the volume's)."""
    used = {}
    for line in text.splitlines()[1:]:
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[0].isdigit() and parts[1] in mountpoints:
            used[parts[1]] = int(parts[0])
    return used


def host_load(host):
    """The host's memory, load and CPUs (parse_host_load); all None when
    they cannot be read."""
    try:
        result = host.run(LOAD_COMMAND, check=False, timeout=COMMAND_TIMEOUT)
    except TransportError:
        return parse_host_load("")
    return parse_host_load(result.stdout)


def filesystems_used(host, resources):
    """{resource: bytes its filesystem uses} of the `resources` mounted on
    the host, by one `df`; {} when it cannot be read."""
    where = {host.mountpoint(res): res for res in resources}
    if not where:
        return {}
    try:
        result = host.run(["df", "--block-size=1", "--output=used,target", *where],
                          check=False, timeout=COMMAND_TIMEOUT)
    except TransportError:
        return {}
    return {where[path]: used for path, used in parse_df_used(result.stdout, where).items()}


def read_fleet(ctx, names=None):
    """The `Fleet` of the inventory hosts `names` (default: all)."""
    inv = ctx.inventory
    names = sorted(names or inv.hosts)
    snapshot = observe(ctx, names, detail=False)
    members, primaries, sizes = {}, {}, {}
    for replica in snapshot.replicas:
        if not replica.in_mars:
            continue
        members.setdefault(replica.resource, []).append(replica.host)
        if replica.primary:
            primaries[replica.resource] = replica.primary
        sizes[replica.resource] = max(sizes.get(replica.resource, 0), replica.lv_size or 0)
    for res, hosting in silent_replicas(inv, snapshot, names).items():
        members.setdefault(res, []).extend(sorted(hosting))
        sizes.setdefault(res, 0)
    runs_here = {name: sorted(res for res, primary in primaries.items()
                              if primary == name and name in members[res]) for name in names}

    def measure(name):
        if not snapshot.hosts[name].reachable:
            return parse_host_load(""), {}
        host = inv.hosts[name]
        return host_load(host), filesystems_used(host, runs_here[name])

    measured = dict(zip(names, in_parallel(measure, names)))
    hosts = {}
    for name in names:
        view, host = snapshot.hosts[name], inv.hosts[name]
        load, _ = measured[name]
        lifecycle = getattr(view, "lifecycle", "")
        hosts[name] = FleetHost(
            name, cluster=host.cluster, failure_domain=host.failure_domain,
            # unread (the host did not answer, or its football-host could not
            # tell): no target of moves, as a draining one is not — read as
            # "active", a draining host that did not answer for a moment got
            # moves planned onto it
            lifecycle=lifecycle if lifecycle in LIFECYCLES else "unknown",
            reachable=view.reachable, mars_read=getattr(view, "mars_read", True),
            vg_size=(view.vg_free + sum(view.lvs.values())) if view.vg_free is not None else 0,
            vg_free=view.vg_free or 0, max_containers=host.max_containers or None, **load)
    for res, hosting in members.items():
        for name in hosting:        # a member outside the inventory: nothing moves there
            hosts.setdefault(name, FleetHost(name, reachable=False))
    resources = {}
    for res, hosting in sorted(members.items()):
        primary = primaries.get(res, "")
        primary = primary if primary in hosting else ""
        share = len(runs_here.get(primary, ())) or 1
        runner = hosts.get(primary)
        used_memory = runner.mem_total - runner.mem_free \
            if runner and runner.mem_total and runner.mem_free is not None else 0
        resources[res] = Resource(
            res, primary, tuple(sorted(name for name in hosting if name != primary)),
            lv_size=sizes[res], used=measured.get(primary, ({}, {}))[1].get(res),
            memory=used_memory // share,
            load=(runner.load or 0.0) / share if runner else 0.0)
    return Fleet(hosts, resources)

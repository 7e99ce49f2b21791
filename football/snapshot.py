"""The fleet at one moment: `FleetSnapshot`, built from facts, then pure.

`observe(ctx, names)` asks every named host in parallel — whether it
answers, its MARS cluster, its resources with role, disk and replication
state and sync rest, its LVs and VG space, and (`detail`) its containers,
lock items and intents — and never raises: a host that cannot be read is
kept as unreachable with the reason, a part that cannot be read is named in
the host's `error`. Everything after that reads the snapshot, without
hosts: `status` renders it, placement ranks targets on it
(`rank_targets`), the planner will score it."""

import time
from dataclasses import dataclass, field

from football import facts, lifecycle
from football.errors import FootballError
from football.locks import INTENT_DIR, held
from football.ops.base import in_parallel
from football.transport import TransportError

COMMAND_TIMEOUT = 30


@dataclass(frozen=True)
class HostView:
    name: str
    cluster: str                    # the inventory's
    address: str
    reachable: bool = False
    error: str = ""                 # why it is unreachable, or what could not be read
    mars_cluster: dict = field(default_factory=dict)    # host -> address, as it sees them
    vg_free: int | None = None
    lvs: dict = field(default_factory=dict)             # LV name -> size
    locks: dict = field(default_factory=dict)           # item -> holder record
    intents: dict = field(default_factory=dict)
    containers: dict = field(default_factory=dict)      # res -> state (defined ones)
    lifecycle: str = ""             # active, draining, evacuated, restoring ('' unread)
    mars_read: bool = True          # False: its MARS view could not be read (its replicas unknown)

    def entry(self):
        """The host as `status` shows it (JSON)."""
        return {"cluster": self.cluster, "address": self.address, "reachable": self.reachable,
                "error": self.error, "mars_cluster": self.mars_cluster,
                "vg_free": self.vg_free, "locks": self.locks, "intents": self.intents,
                "lifecycle": self.lifecycle}


@dataclass(frozen=True)
class Replica:
    """A resource on a host: MARS's view of it there (empty fields for an LV
    MARS does not use), its LV's size, its container's state."""

    resource: str
    host: str
    role: str = ""
    diskstate: str = ""
    replstate: str = ""
    flags: str = ""
    primary: str = ""
    sync_rest: int | None = None
    lv_size: int | None = None
    container: str = ""
    notes: tuple = ()               # why MARS waits or fails there ("waiting: ...")

    @property
    def in_mars(self):
        return bool(self.role or self.diskstate)

    def row(self):
        return {"resource": self.resource, "host": self.host, "role": self.role,
                "diskstate": self.diskstate, "replstate": self.replstate, "flags": self.flags,
                "primary": self.primary, "sync_rest": self.sync_rest, "lv_size": self.lv_size,
                "container": self.container, "notes": list(self.notes)}


@dataclass(frozen=True)
class FleetSnapshot:
    hosts: dict                     # name -> HostView
    replicas: tuple                 # Replica, sorted by (resource, host)
    taken: float = 0.0

    def members(self, res):
        """The hosts holding a replica of `res` in MARS."""
        return sorted(replica.host for replica in self.replicas
                      if replica.resource == res and replica.in_mars)

    def primary(self, res):
        """The designated primary of `res` as its members see it ('' for none)."""
        return next((replica.primary for replica in self.replicas
                     if replica.resource == res and replica.primary), "")

    def resources_on(self, host):
        """The MARS resources `host` holds a replica of."""
        return sorted(replica.resource for replica in self.replicas
                      if replica.host == host and replica.in_mars)

    def has_lv(self, host, lv):
        return lv in self.hosts[host].lvs


def resource_replicas(host, summary, sync_rest, lvs, containers):
    """One Replica per resource or LV on `host`."""
    replicas = []
    for res in sorted(set(summary) | set(lvs)):
        view = summary.get(res, {})
        rest = sync_rest.get(res, "")
        replicas.append(Replica(res, host, view.get("role", ""), view.get("diskstate", ""),
                                view.get("replstate", ""), view.get("flags", ""),
                                view.get("primary", ""), int(rest) if rest.isdigit() else None,
                                lvs.get(res), containers.get(res, ""),
                                tuple(view.get("notes", ()))))
    return replicas


def observe_host(ctx, host, detail=True):
    """(HostView, [Replica]) of one host; never raises."""
    base = {"name": host.name, "cluster": host.cluster, "address": host.address}
    try:
        cluster = facts.cluster_hosts(host, timeout=COMMAND_TIMEOUT)
    except facts.FactUnavailable as error:
        return HostView(**base, error=str(error)), []
    problems = []

    def ask(what, default, function):
        try:
            return function()
        except (TransportError, FootballError, ValueError) as error:
            problems.append(f"{what}: {str(error).splitlines()[0]}")
            return default

    def view_all():
        text = host.run(["marsadm", f"--timeout={COMMAND_TIMEOUT}", "view", "all"],
                        timeout=COMMAND_TIMEOUT).stdout
        if facts.MARSD_DOWN in text:    # its states are what it last wrote, not now's
            problems.append("marsd is not running: its replicas' states are not current "
                            "(start marsd there)")
        return facts.parse_view_summary(text)

    summary = ask("marsadm view all", None, view_all) if cluster else {}
    mars_read = summary is not None
    summary = summary or {}
    # capital S in the flags: sync done, nothing to ask
    syncing = [res for res, view in summary.items() if view["flags"][3:4] != "S"]
    sync_rest = {res: "0" for res in summary}
    if syncing:
        sync_rest.update(ask("view-sync-rest", {}, lambda: facts.view_all(
            host, "sync-rest", timeout=COMMAND_TIMEOUT)))
    lvs = ask("LVs", {}, lambda: ctx.hooks.lv_list(host=host))
    vg_free = ask("VG free", None, lambda: ctx.hooks.vg_free(host=host))
    state = ask("host state", "", lambda: lifecycle.read(host)["state"])
    locks = intents = containers = {}
    if detail:
        locks = ask("locks", {}, lambda: held(host, check=True))
        intents = ask("intents", {}, lambda: held(host, INTENT_DIR, check=True))
        containers = {}
        for res in sorted(set(summary) | set(lvs)):
            container = ask(f"container {res}", "",
                            lambda: ctx.hooks.container_state(host=host, res=res))
            if container and container != "UNDEFINED":
                containers[res] = container
    view = HostView(**base, reachable=True, error="; ".join(problems), mars_cluster=cluster,
                    vg_free=vg_free, lvs=lvs, locks=locks, intents=intents,
                    containers=containers, lifecycle=state, mars_read=mars_read)
    return view, resource_replicas(host.name, summary, sync_rest, lvs, containers)


def observe(ctx, names, detail=True):
    """The snapshot of the inventory hosts `names`, read in parallel;
    without `detail`, no containers, locks or intents (placement)."""
    inv = ctx.inventory
    observed = in_parallel(lambda name: observe_host(ctx, inv.hosts[name], detail), names)
    return FleetSnapshot({view.name: view for view, _ in observed},
                         tuple(sorted((replica for _, replicas in observed
                                       for replica in replicas),
                                      key=lambda replica: (replica.resource, replica.host))),
                         time.time())


def silent_replicas(inv, snapshot, names):
    """{resource: {host}} of the replicas on the hosts of `names` that do
    not answer, or whose MARS view could not be read (one that timed out
    listed no replica: evacuate marked a host evacuated that still ran its
    primaries), as their answering inventory-cluster mates list the
    resources' members (a host's own view is all the snapshot has of it:
    without this a resource with a replica on a dead host looked like one
    with a replica fewer — and one whose primary died like one without a
    primary: evacuate planned moves of it that could only fail, status
    did not show it). Mates outside the snapshot (`status <host>` reads
    that host alone) are asked too: one that does not answer lists none."""
    silent = {name for name in names
              if not snapshot.hosts[name].reachable or not snapshot.hosts[name].mars_read}
    mates = sorted({mate for name in silent
                    for mate in inv.clusters.get(inv.hosts[name].cluster, ())
                    if mate in inv.hosts
                    and (mate not in snapshot.hosts or snapshot.hosts[mate].reachable)})

    def listing(name):
        try:
            return facts.members_of_all(inv.hosts[name], timeout=COMMAND_TIMEOUT)
        except (FootballError, TransportError):
            return {}

    found = {}
    for seen in in_parallel(listing, mates):
        for res, hosting in seen.items():
            for name in silent.intersection(hosting):
                found.setdefault(res, set()).add(name)
    return found


# ---------------------------------------------------------------- placement
def rank_targets(snapshot, candidates, res, size, source, min_free):
    """`candidates` (host names) best first for a replica of `res` (`size`
    bytes): hosts with room (an LV of `res` already there, or `size` +
    `min_free` VG free) before the others, then the fewest other resources,
    then the source, then hosts with a replica; hosts that could not be
    read (wholly or in part) last. Draining and evacuated hosts are left
    out: nothing is placed there."""
    def key(name):
        view = snapshot.hosts.get(name)
        if view is None or not view.reachable or view.error or view.vg_free is None:
            return (2, 0, 2, name)
        has_replica = res in view.lvs
        enough = has_replica or view.vg_free >= size + min_free
        others = len([other for other in snapshot.resources_on(name) if other != res])
        here = 0 if name == source else 1 if has_replica else 2
        return (0 if enough else 1, others, here, name)

    return sorted((name for name in candidates
                   if name not in snapshot.hosts
                   or snapshot.hosts[name].lifecycle not in lifecycle.REFUSED_AS_TARGET),
                  key=key)

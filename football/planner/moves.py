"""Moves: what the planner proposes, and the hard limits every move keeps.

Two kinds, as FOOTBALL.md names them:

- **handover**: an existing secondary becomes the primary; nothing is
  copied (`football handover <res> <host>`);
- **migrate**: the resource gets new replicas, a primary and (in one
  cluster with it) a secondary, each new one syncing the whole LV; the old
  ones are removed afterwards (`football migrate <res> <primary>
  [<secondary>]`).

A move never makes a host exceed its capacity (`refusal`): VG space
(keeping `placement_min_free`), `max_containers`, memory when known; and
never places anything on a host that does not accept resources (draining,
evacuated, restoring, unreachable, its state or MARS view unread) unless
the plan says so (restore). A saved balance move runs only while it still
gains as a plan made now would take it (`Move.unmet`, `short_of`)."""

from dataclasses import dataclass, replace

from football.planner.fleet import changes
from football.planner.score import Evaluator

TIB = 1 << 40
GAIN_EPSILON = 1e-12        # below this a "gain" is rounding


@dataclass(frozen=True)
class Move:
    """One step of a plan: `resource` from the replicas `source` to the
    replicas `target` (primary first); `gain` is how much it lowers the
    score where the plan takes it, `sync_bytes` what it copies."""

    resource: str
    kind: str                   # handover | migrate
    source: tuple
    target: tuple
    gain: float = 0.0
    sync_bytes: int = 0
    after: tuple = ()           # resources whose moves free the VG space it needs (`ordered`)

    def command(self):
        """The football command line (after `football`) that performs it,
        as an argument list: [operation, resource, hosts...]."""
        if self.kind == "handover":
            return ["handover", self.resource, self.target[0]]
        return ["migrate", self.resource, *self.target]

    def unmet(self, fleet, settings, accepting=(), rescore=True):
        """Why the move cannot run on `fleet` (freshly read, the plan's
        earlier moves applied) any more, or None: the resource is gone or
        was moved meanwhile, a host it needs is unreachable or does not
        accept resources, a new host has no room now, or (`rescore`) it
        no longer gains as a balance plan made now would take it (`short_of`:
        a plan saved yesterday ran a move onto hosts that had filled up
        since, and the score rose), or a host it leaves became unsure
        (`FleetHost.unsure`). `rescore` False: a move not for the score's
        sake (evacuate, restore), checked for the hard limits alone.
        `accepting`: hosts that may receive though not active (the host a
        restore brings back)."""
        resource = fleet.resources.get(self.resource)
        if resource is None:
            return f"{self.resource} is on none of the hosts read"
        if resource.replicas != self.source:
            return (f"{self.resource} is on {', '.join(resource.replicas)} now, not on "
                    f"{', '.join(self.source)} as planned")
        unknown = [name for name in self.target if name not in fleet.hosts]
        if unknown:
            return f"{', '.join(unknown)} not in the inventory"
        why = refusal(fleet, self.resource, self.target, settings, accepting)
        if why or not rescore:
            return why
        for name in self.source:
            unsure = fleet.hosts[name].unsure()
            if unsure:
                return f"{self.resource}: its replica's host {name}: {unsure}"
        evaluator = Evaluator(fleet, settings)
        after = evaluator.after(self.resource, self.target)
        short = short_of(evaluator.total - after, evaluator.total - evaluator.penalties,
                         self.kind, sync_bytes(resource, self.target), settings)
        if short:
            return (f"{self.resource}: no longer gains {short}: the score would go from "
                    f"{evaluator.total:.4f} to {after:.4f} on the fleet as it is now (planned "
                    f"gain {self.gain:.4f}); `football balance --plan` makes a plan of the "
                    "moves that gain now")
        return None

    def to_json(self):
        return {"resource": self.resource, "kind": self.kind, "from": list(self.source),
                "to": list(self.target), "gain": self.gain, "sync_bytes": self.sync_bytes,
                "command": self.command(), "after": list(self.after)}

    @classmethod
    def from_json(cls, data):
        return cls(data["resource"], data["kind"], tuple(data["from"]), tuple(data["to"]),
                   float(data["gain"]), int(data["sync_bytes"]), tuple(data.get("after") or ()))


def ordered(fleet, moves, settings):
    """`moves` (in the plan's order, on `fleet` as read) each with `after`:
    the resources whose moves must have ended first, because the VG space
    it needs on a new host is what they free there (their old replicas go
    at their cleanup). The plan credits freed space at once; its moves run
    side by side, and such a move's migrate found no room yet, failed, and
    the evacuation stopped for a re-run."""
    free = {name: host.vg_free for name, host in fleet.hosts.items()}
    credits = {name: [] for name in fleet.hosts}        # [(resource, bytes)] freed there
    result = []
    for move in moves:
        resource = replace(fleet.resources[move.resource], primary=move.source[0],
                           secondaries=tuple(move.source[1:]))
        after = set()
        for name, (vg_change, *_) in changes(resource, move.target).items():
            if not vg_change:                           # (its container alone moves)
                continue
            if vg_change > 0:                           # an old replica goes
                credits[name].append((move.resource, vg_change))
                continue
            if free[name] + vg_change < settings.placement_min_free and credits[name]:
                after |= {res for res, _ in credits[name]}
                free[name] += sum(freed for _, freed in credits[name])
                credits[name] = []
            free[name] += vg_change
        result.append(replace(move, after=tuple(sorted(after - {move.resource}))))
    return result


def waves(moves):
    """`moves` as waves to run one after the other: a move in the first
    wave after all those of its `after` (those not in `moves` count as
    done)."""
    names = {move.resource for move in moves}
    wave_of, result = {}, []
    for move in moves:      # (a move's `after` are earlier in the plan)
        wave = 1 + max((wave_of[res] for res in move.after if res in names and res in wave_of),
                       default=-1)
        wave_of[move.resource] = wave
        while len(result) <= wave:
            result.append([])
        result[wave].append(move)
    return result


@dataclass(frozen=True)
class Moved:
    """A move that ran: `resource` went from the hosts `source` to `target`
    at `time` (seconds since the epoch), or, `failed`, a planned move of it
    that ended failed then. The planner's history."""

    resource: str
    time: float
    source: tuple = ()
    target: tuple = ()
    failed: bool = False


def kind_of(resource, target):
    """handover when `target` holds the same replicas with another primary,
    else migrate."""
    return "handover" if set(target) == set(resource.replicas) else "migrate"


def sync_bytes(resource, target):
    """What moving `resource` to `target` copies: its LV to each new replica."""
    return resource.lv_size * len(set(target) - set(resource.replicas))


def size_text(size):
    """A size as an operator reads it: MiB below a GiB ("0 GiB" read as
    if it fitted anywhere), else GiB with a decimal."""
    return f"{size / (1 << 30):,.1f} GiB" if size >= 1 << 30 else f"{size >> 20} MiB"


def refusal(fleet, res, target, settings, accepting=()):
    """Why `res` cannot have the replicas `target` in `fleet` (a hard limit),
    or None."""
    resource = fleet.resources[res]
    for name in resource.replicas:
        if not fleet.hosts[name].reachable:
            return f"{res}: its replica's host {name} is unreachable"
    for name in target:
        host = fleet.hosts[name]
        gains_replica = name not in resource.replicas
        gains_container = name == target[0] and name != resource.primary
        if not (gains_replica or gains_container):
            continue
        if not host.reachable:
            return f"{name} is unreachable"
        if not host.mars_read:
            return f"{name}'s MARS view could not be read (marsadm view all failed or timed out)"
        if not host.accepts and name not in accepting:
            return f"{name}'s state (active, draining, ...) could not be read" \
                if host.lifecycle == "unknown" else f"{name} is {host.lifecycle}"
        if gains_replica and host.vg_free - resource.lv_size < settings.placement_min_free:
            return (f"{name}: {size_text(host.vg_free)} VG free, {res} needs "
                    f"{size_text(resource.lv_size)}"
                    + (f" and placement_min_free keeps {size_text(settings.placement_min_free)}"
                       if settings.placement_min_free else ""))
        if gains_container:
            if host.max_containers and fleet.containers[name] + 1 > host.max_containers:
                return f"{name}: {fleet.containers[name]} of max_containers {host.max_containers}"
            if host.mem_free is not None and host.mem_free < resource.memory:
                return (f"{name}: {host.mem_free >> 20} MiB memory free, {res} uses "
                        f"{resource.memory >> 20} MiB")
    return None


def pays_for_sync(gain, sync, settings):
    """A migrate's gain pays for its bytes: at least `gain_per_tib` per TiB."""
    return gain >= settings.gain_per_tib * sync / TIB


def short_of(gain, spread, kind, sync, settings):
    """What a balance move of `gain` lacks that `plan_balance` asks of one
    (on a fleet whose score without its penalties is `spread`), as words
    after "no longer gains", or '' when it gains enough: more than
    rounding; a migrate at least `gain_per_tib` per TiB of its `sync`
    bytes; hbal's rule, at least `min_gain` unless the spread is above
    `min_gain_limit`. (A move of a plan made at most a rounding's worth
    above min_gain is not refused for being recomputed.)"""
    if gain <= GAIN_EPSILON:
        return "anything"
    if kind == "migrate" and not pays_for_sync(gain + GAIN_EPSILON, sync, settings):
        return (f"enough to pay for the {size_text(sync)} it syncs (gain_per_tib "
                f"{settings.gain_per_tib:g})")
    if not (spread > settings.min_gain_limit or gain + GAIN_EPSILON >= settings.min_gain):
        return f"min_gain {settings.min_gain:g}"
    return ""

"""A plan: the moves the planner proposes, in order, as a value that can be
saved, shown, loaded and executed later (until it expires).

Saved as JSON under `<state_dir>/plans/<id>.json` (`save_plan`,
`load_plan`): the execution side loads a plan by id, refuses it once
`expired(now)`, and re-checks each move (`Move.unmet`: the hard limits,
and for a balance plan its gain, scored again) on a fresh fleet before it
starts."""

import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from football.errors import Illegal
from football.housekeeping import append_line
from football.journal import replace_durably
from football.planner.moves import Move, Moved

KINDS = ("balance", "evacuate", "restore")
SAVED_NAMED = 5         # saved plans a refusal names


@dataclass(frozen=True)
class Plan:
    id: str
    kind: str                   # balance | evacuate | restore
    created: float
    expires: float
    moves: tuple
    score_before: float
    score_after: float
    hosts: tuple = ()           # the hosts evacuated or restored
    held: tuple = ()            # (resource, why balancing may not move it now)

    @classmethod
    def new(cls, kind, now, moves, score_before, score_after, settings, hosts=(), held=()):
        """A plan made at `now`, with a fresh id, expiring after `plan_expiry`."""
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
        return cls(f"{kind}-{stamp}-{secrets.token_hex(3)}", kind, now,
                   now + settings.plan_expiry, tuple(moves), score_before, score_after,
                   tuple(hosts), tuple(held))

    def expired(self, now):
        return now >= self.expires

    @property
    def sync_bytes(self):
        return sum(move.sync_bytes for move in self.moves)

    def to_json(self):
        return {"id": self.id, "kind": self.kind, "created": self.created,
                "expires": self.expires, "hosts": list(self.hosts),
                "score_before": self.score_before, "score_after": self.score_after,
                "sync_bytes": self.sync_bytes, "moves": [move.to_json() for move in self.moves],
                "held": {res: why for res, why in self.held}}

    @classmethod
    def from_json(cls, data):
        return cls(data["id"], data["kind"], float(data["created"]), float(data["expires"]),
                   tuple(Move.from_json(move) for move in data["moves"]),
                   float(data["score_before"]), float(data["score_after"]),
                   tuple(data.get("hosts") or ()), tuple((data.get("held") or {}).items()))


def plans_dir(state_dir):
    return Path(state_dir) / "plans"


def save_plan(state_dir, plan):
    """Write `plan` durably to `<state_dir>/plans/<id>.json`; its path."""
    directory = plans_dir(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{plan.id}.json"
    replace_durably(path, json.dumps(plan.to_json(), indent=2, sort_keys=True),
                    path.with_suffix(".tmp"))
    return path


def load_plan(state_dir, plan_id):
    """The plan saved as `plan_id`; `Illegal` naming the saved ones when
    there is none (or it cannot be read)."""
    path = plans_dir(state_dir) / f"{plan_id}.json"
    try:
        return Plan.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        # an hourly balance --auto saves thousands: the newest are named
        saved = sorted(plans_dir(state_dir).glob("*.json"), key=_modified, reverse=True)
        named = ", ".join(path.stem for path in saved[:SAVED_NAMED]) or "none"
        more = f" (the newest {SAVED_NAMED} of {len(saved)})" if len(saved) > SAVED_NAMED else ""
        raise Illegal(f"no plan {plan_id!r} in {plans_dir(state_dir)}; saved plans: "
                      f"{named}{more}") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise Illegal(f"plan {path} cannot be read: {error}") from None


def _modified(path):
    try:
        return path.stat().st_mtime
    except FileNotFoundError:       # removed meanwhile (housekeeping)
        return 0.0


def history_path(state_dir):
    return plans_dir(state_dir) / "moved.jsonl"


def record_moved(state_dir, moved):
    """Append a move that ran (`Moved`) to the history the cooldown reads."""
    append_line(history_path(state_dir), json.dumps({
        "resource": moved.resource, "time": moved.time, "from": list(moved.source),
        "to": list(moved.target)}))


def read_history(state_dir):
    """The moves recorded by `record_moved` ([Moved]); a torn last line
    (a crash while appending) is skipped."""
    try:
        lines = history_path(state_dir).read_text().splitlines()
    except FileNotFoundError:
        return []
    history = []
    for line in lines:
        try:
            data = json.loads(line)
            history.append(Moved(data["resource"], float(data["time"]), tuple(data["from"]),
                                 tuple(data["to"])))
        except (ValueError, KeyError, TypeError):
            continue
    return history

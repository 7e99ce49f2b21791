"""A host's lifecycle state, recorded on the host itself so that every
controller sees it: `active` → `draining` (being evacuated: placement
refuses it) → `evacuated` (empty; placement still refuses it) →
`restoring` (its resources move back) → `active`.

The record is one JSON file, `<dir>/host-state`:
    {"state": "draining", "since": 1764745200.0, "by": "evacuate@admin1",
     "origins": {"vm1": {"replicas": ["a1", "a2"], "time": 1764745260.0}}}
`origins` holds, once per resource, where a resource moved away while the
host drained had its replicas before (primary first; a later move does not
overwrite it), so that `restore` can bring it back; it is forgotten when
the host is active again.
A change is read-modify-write under an exclusive flock of the directory's
lock file, and the file is replaced durably (a crash leaves the old record
or the new one)."""

import fcntl
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path

from football.journal import replace_durably

STATES = ("active", "draining", "evacuated", "restoring")
# where each state may go next; the same state again is always allowed
TRANSITIONS = {"active": {"draining"},
               "draining": {"evacuated", "active"},     # active: an evacuation called off
               "evacuated": {"restoring", "active"},    # active: `restore --skip`
               "restoring": {"active"}}
# states placement refuses as a target
REFUSED_AS_TARGET = ("draining", "evacuated")
FILE = "host-state"


class LifecycleRefused(Exception):
    """A change the host's current state does not allow; nothing changed."""


class LifecycleUnreadable(Exception):
    """The record is no host-state record (damaged, or edited by hand);
    nothing changed."""


def read(directory):
    """The host's record; a host that never had one is active."""
    path = Path(directory) / FILE
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        record = {}
    except ValueError as error:
        raise _unreadable(path, f"not JSON: {error}") from None
    if not isinstance(record, dict) or record.get("state", "active") not in STATES:
        raise _unreadable(path, f"no object with a state of {', '.join(STATES)}")
    return {"state": record.get("state", "active"), "since": record.get("since", 0.0),
            "by": record.get("by", ""), "origins": record.get("origins", {})}


def _unreadable(path, why):
    return LifecycleUnreadable(f"{path} is no host-state record ({why}); nothing changed. "
                               f"Correct it, or remove it (the host is then active, "
                               f"remembering no origins)")


@contextmanager
def _changing(directory):
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / f".{FILE}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        record = read(directory)
        yield record
        replace_durably(directory / FILE, json.dumps(record, sort_keys=True) + "\n",
                        directory / f".{FILE}.{os.getpid()}")


def change(directory, state, by, expect=()):
    """Set the state to `state` (recorded with `by` and the time); refused
    when the transition is not allowed, or when `expect` names states and
    the current one is none of them. Returns the new record."""
    if state not in STATES:
        raise LifecycleRefused(f"unknown host state {state!r}; one of {', '.join(STATES)}")
    with _changing(directory) as record:
        current = record["state"]
        if expect and current not in expect:
            raise LifecycleRefused(f"the host is {current}, not {' or '.join(expect)}")
        if state != current and state not in TRANSITIONS[current]:
            raise LifecycleRefused(f"the host is {current}: it cannot become {state} (from "
                                   f"{current}: {', '.join(sorted(TRANSITIONS[current]))})")
        if state != current:
            record.update(state=state, since=time.time(), by=by)
        if state == "active":
            record["origins"] = {}
    return read(directory)


def record_origin(directory, res, replicas):
    """Remember where `res` had its replicas (primary first) before it
    moved away; the first record of a resource stands. Returns whether this
    one was new."""
    if not replicas:
        raise LifecycleRefused(f"{res}: no replicas to remember")
    with _changing(directory) as record:
        if res in record["origins"]:
            return False
        record["origins"][res] = {"replicas": list(replicas), "time": time.time()}
    return True

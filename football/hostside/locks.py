"""Lock items on a host: one file per item in a lock directory, created
exclusively (O_EXCL), holding who took it, when, and what for. A lock older
than the caller's `stale_after` is broken (its owner crashed long ago); its
owner keeps a long-held one fresh by taking it again."""

import fcntl
import json
import os
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from mars.names import DERIVED_NAME_RE

UNREADABLE = {"owner": "(unreadable)", "time": 0}    # a record that is not JSON
RUN_STATES = ("running", "acting", "kept")              # a run's lock (see take)


class LockHeld(Exception):
    """`holder`: its record; `stale`: older than the refused taker's
    stale_after (a permanent one is kept nonetheless)."""

    def __init__(self, item, holder, stale=False):
        self.holder, self.stale = holder, stale
        what = f" ({holder['what']})" if holder.get("what") else ""
        super().__init__(f"lock {item} is held by {holder.get('owner')}{what} since "
                         f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(holder.get('time', 0)))}")


def _path(directory, item):
    if not DERIVED_NAME_RE.fullmatch(item):
        raise ValueError(f"invalid lock item {item!r}")
    return Path(directory) / f"{item}.lock"


def take(directory, item, owner, stale_after, permanent=False, what="", command="", run="",
         rescue=False, lease=None):
    """Take `item` for `owner` (`what`: for what, said to those it refuses);
    taking it again for the same owner succeeds and renews its time (a run
    that holds it for long keeps it from going stale). Returns what happened:
    `taken`, `again` or `broken` (a stale lock). A `permanent` lock (an
    operator's `football lock`) is never stale: only a release removes it.
    A run's lock says so (`run`: one of RUN_STATES, and its `command` as an
    operator types it); a permanent one of a run (it acted, or ended with its
    operation unfinished) is stale as any other once `stale_after` passed
    without a renewal, but only to the same `command` (which goes on from
    where that run stopped) and to a `rescue` (a repair: the way out). A
    run's `lease` (it renews its lock well within it) is its own: its lock
    is stale to no one before it passed, whatever their `stale_after`."""
    path = _path(directory, item)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"owner": owner, "time": time.time(), "host": socket.gethostname(),
              **({"what": what} if what else {}), **({"command": command} if command else {}),
              **({"run": run} if run else {}), **({"lease": lease} if lease else {})}
    if permanent:
        record["permanent"] = True
    outcome = "taken"
    for _ in range(3):
        try:
            create_exclusively(path, json.dumps(record))
            return outcome
        except FileExistsError:
            pass
        with _guard(path.parent):
            holder = show(directory, item)
            if holder is None:
                continue                            # released meanwhile: create it
            if holder.get("owner") == owner:
                if holder.get("permanent"):         # stays so, also when renewed
                    record["permanent"] = True
                _renew(path, json.dumps(record))
                return "again"
            stale = time.time() - holder.get("time", 0) > max(stale_after,
                                                               _number(holder.get("lease")))
            if holder.get("permanent"):
                stale_to_me = stale and holder.get("run") in RUN_STATES and (
                    rescue or bool(command and holder.get("command") == command))
            else:
                stale_to_me = stale
            if not stale_to_me:
                raise LockHeld(item, holder, stale)
            path.unlink()
            outcome = "broken"
    raise LockHeld(item, show(directory, item) or {})


def _number(value):
    return value if isinstance(value, (int, float)) else 0


@contextmanager
def _guard(directory):
    """Held while a lock file of `directory` is judged and then replaced or
    removed (renewed, broken, released): else two takers that both found it
    stale would both break it, the second the lock the first had just taken
    in its place, and both hold it; or a renewal would overwrite the lock
    another took meanwhile. An flock of the directory's `.guard` (every
    taker of a host's locks runs on that host); a create needs none (it
    takes the name only where there is none)."""
    with open(Path(directory) / ".guard", "a") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        yield


def create_exclusively(path, record):
    """Create `path` holding `record` in one step (FileExistsError if it
    exists): written aside, then hard-linked into place. Created empty and
    written after, a parallel taker could read the empty lock in between,
    take it for a stale one (no time) and break it."""
    aside = _aside(path, record)
    try:
        os.link(aside, path)
    finally:
        aside.unlink()


def _renew(path, record):
    """Replace the owner's own lock `path` by `record` in one step."""
    os.replace(_aside(path, record), path)


def _aside(path, record):
    """`record` written beside `path`, under a name of this process and
    thread (a tool server takes locks for several threads)."""
    aside = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    aside.write_text(record)
    return aside


def release(directory, item, owner):
    """Release `item` if `owner` holds it; returns whether it was released."""
    path = _path(directory, item)
    if not path.exists():
        return False
    with _guard(directory):
        holder = show(directory, item)
        if holder is None or (owner and holder.get("owner") != owner):
            return False
        path.unlink()
        return True


def show(directory, item):
    try:
        return json.loads(_path(directory, item).read_text() or "{}")
    except FileNotFoundError:
        return None
    except ValueError:
        return dict(UNREADABLE)


def list_locks(directory):
    return {path.name[:-5]: show(directory, path.name[:-5])
            for path in sorted(Path(directory).glob("*.lock"))} if Path(directory).is_dir() else {}

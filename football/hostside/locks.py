"""Lock items on a host: one file per item in a lock directory, created
exclusively (O_EXCL), holding who took it and when. A lock older than the
caller's `stale_after` is broken (its owner crashed long ago)."""

import json
import os
import socket
import time
from pathlib import Path

from mars.names import RESOURCE_RE


class LockHeld(Exception):
    def __init__(self, item, holder):
        self.holder = holder
        super().__init__(f"lock {item} is held by {holder.get('owner')} since "
                         f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(holder.get('time', 0)))}")


def _path(directory, item):
    if not RESOURCE_RE.fullmatch(item):
        raise ValueError(f"invalid lock item {item!r}")
    return Path(directory) / f"{item}.lock"


def take(directory, item, owner, stale_after, permanent=False):
    """Take `item` for `owner`; taking it again for the same owner succeeds.
    Returns what happened: `taken`, `again` or `broken` (a stale lock). A
    `permanent` lock (an operator's `football lock`) is never stale: only a
    release removes it."""
    path = _path(directory, item)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = json.dumps({"owner": owner, "time": time.time(), "host": socket.gethostname(),
                         **({"permanent": True} if permanent else {})})
    outcome = "taken"
    for _ in range(2):
        try:
            _create(path, record)
        except FileExistsError:
            holder = show(directory, item) or {}
            if holder.get("owner") == owner:
                return "again"
            if holder.get("permanent") or time.time() - holder.get("time", 0) <= stale_after:
                raise LockHeld(item, holder) from None
            path.unlink(missing_ok=True)
            outcome = "broken"
            continue
        return outcome
    raise LockHeld(item, show(directory, item) or {})


def _create(path, record):
    """Create `path` holding `record` in one step (FileExistsError if it
    exists): written aside, then hard-linked into place. Created empty and
    written after, a parallel taker could read the empty lock in between,
    take it for a stale one (no time) and break it."""
    aside = path.with_name(f".{path.name}.{os.getpid()}")
    aside.write_text(record)
    try:
        os.link(aside, path)
    finally:
        aside.unlink()


def release(directory, item, owner):
    """Release `item` if `owner` holds it; returns whether it was released."""
    holder = show(directory, item)
    if holder is None or (owner and holder.get("owner") != owner):
        return False
    _path(directory, item).unlink(missing_ok=True)
    return True


def show(directory, item):
    try:
        return json.loads(_path(directory, item).read_text() or "{}")
    except FileNotFoundError:
        return None
    except ValueError:
        return {"owner": "(unreadable)", "time": 0}


def list_locks(directory):
    return {path.name[:-5]: show(directory, path.name[:-5])
            for path in sorted(Path(directory).glob("*.lock"))} if Path(directory).is_dir() else {}

"""Data-plane views: what a resource is doing on this host.

They combine the metadata (replicated) with the runtime status marsd keeps
in `<state dir>/status/<res>.json` (local, rewritten while it works). When
marsd is not running there is no status: the views then say so
(`NoAttach`, `NotStarted`) rather than repeat stale figures.

flags: six characters `D C A S F R`, capital = done, lower case = in
progress, `-` = off or paused:
    D disk attached (d: wanted, not yet)      C connected to the source (c: trying)
    A device up on this host (a: coming up)   S sync complete (s: syncing)
    F fetch up to date (f: fetching)          R replay up to date (r: replaying)
"""

import json
import os
import time
from dataclasses import dataclass, field

from mars.logfile import list_logfiles, parse_logfile_name
from mars.history import history_conflict, missed_unlogged
from mars.replay import Cursor
from mars.keys import (PRIMARY_NAME, global_pause_name, replay_name, resource_dir_name,
                       syncpos_name, syncstatus_name,
                       todo_name)

STATUS_FRESH = 10.0             # seconds: an older status file is a dead marsd's


@dataclass
class Runtime:
    """Local facts beyond the metadata: marsd's status files, and the
    liveness window."""

    state_dir: object
    window: float = 60.0
    daemon_running: bool = True
    now: float = field(default_factory=time.time)
    daemon_pid: int = None      # the running marsd's, when known (0: not written yet)

    def status(self, res):
        """What the running marsd last reported of `res`; nothing from a
        marsd that died (a status file written by another pid: right after a
        restart it would say the device is up before the new marsd brought
        it up) or that stopped reporting."""
        if not self.daemon_running:
            return {}
        path = self.state_dir / "status" / f"{res}.json"
        try:
            status = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        if self.now - status.get("updated", 0) > STATUS_FRESH:
            return {}
        if self.daemon_pid is not None and status.get("marsd") != self.daemon_pid:
            return {}
        return status


def _switch(state, res, name):
    return state.resource_value(res, todo_name(state.local_host, name), "1") == "1"


def _global_pause(state, res, name):
    return state.resource_value(res, global_pause_name(name), "0") == "1"


def sync_done(state, res):
    value = state.resource_value(res, syncstatus_name(state.local_host), "0")
    return int(value) if value.isdigit() else 0


def is_actual_primary(state, res):
    return state.is_actual_primary(res, state.local_host)


def is_consistent(state, res):
    """Primary; or sync complete and replay at or past `syncpos`, which a
    completed sync sets to where the source's log ended after its last chunk
    was read (every write the sync copied is logged before it)."""
    if not state.disk(res):
        return False
    if is_actual_primary(state, res):
        return True
    if sync_done(state, res) < state.size(res):
        return False
    if missed_unlogged(state, res, state.local_host):
        return False                # a primary wrote unlogged since its sync: invalidate
    syncpos = state.resource_value(res, syncpos_name(state.local_host))
    if not syncpos:
        return True                 # the creator: consistent from the start
    cursor = state.resource_value(res, replay_name(state.local_host))
    if not cursor:
        return False
    try:
        return Cursor.parse(cursor).order >= Cursor.parse(syncpos).order
    except ValueError:
        return False


def role(state, res, status):
    if not state.disk(res):
        return "None"
    designated = state.designated_primary(res) == state.local_host
    actual = is_actual_primary(state, res) and bool(status)
    if actual:
        return "Primary" if designated else "RemainsPrimary"
    return "NotYetPrimary" if designated else "Secondary"


def diskstate(state, res, status):
    disk = state.disk(res)
    if not disk:
        return "NotJoined"
    if not os.path.exists(disk):
        return "NotPresent"
    if not _switch(state, res, "attach"):
        return "Detached"
    if status.get("damage"):
        return f"DefectiveLog[{status['damage']}]"
    if not status:
        return "NoAttach"
    if status.get("emergency"):
        return "EmergencyMode"
    if status.get("is_primary"):
        return "UpToDate"
    if role(state, res, status) == "NotYetPrimary" and status.get("recovering"):
        return "Recovery"
    if not is_consistent(state, res):
        return "InConsistent"
    fetch, replay = status.get("fetch_rest", 0), status.get("replay_rest", 0)
    if fetch or replay:
        return "OutDated[" + ("F" if fetch else "") + ("R" if replay else "") + "]"
    return "UpToDate"


def replstate(state, res, status):
    if not state.disk(res):
        return "NotJoined"
    current = role(state, res, status)
    if current in ("Primary", "RemainsPrimary"):
        return "EmergencyMode" if status.get("emergency") else "Replicating"
    if not status:
        return "NotStarted"
    if current == "NotYetPrimary":
        return "NotYetPrimary"
    if sync_done(state, res) < state.size(res):
        return "Syncing" if _switch(state, res, "sync") and not _global_pause(state, res, "sync") \
            else "PausedSync"
    if not _switch(state, res, "connect") or _global_pause(state, res, "fetch"):
        return "PausedFetch"
    if not _switch(state, res, "allow-replay") or _global_pause(state, res, "replay"):
        return "PausedReplay"
    source = status.get("source")
    if not source:
        return "NoPrimaryDesignated"
    if not status.get("source_alive", True) or status.get("error"):
        return "PrimaryUnreachable"
    return "Replaying"


def _active(state, res, name):
    """A switch as the worker obeys it: on, and not paused for every member."""
    glob = {"sync": "sync", "connect": "fetch", "allow-replay": "replay"}.get(name)
    return _switch(state, res, name) and not (glob and _global_pause(state, res, glob))


def flags(state, res, status):
    """Six characters as kernel MARS's `flags` macro has them: the device
    (D: /dev/mars up, d: the disk alone), consistency (C; c: not yet), the
    attach (A: attached and wished; a: one of them), sync, fetch, replay
    (capital: reached, lower: on its way, `-`: off or no disk)."""
    disk = state.disk(res)
    if not disk:
        return "------"
    present, primary = os.path.exists(disk), status.get("is_primary")
    device = "-" if not present else ("D" if primary else "d")
    consistent = "C" if is_consistent(state, res) else ("c" if present else "-")
    wished = _switch(state, res, "attach")
    attached = ("A" if wished else "a") if status.get("attached") else ("a" if wished else "-")
    complete = sync_done(state, res) >= state.size(res)
    sync = "S" if complete else ("s" if _active(state, res, "sync") else "-")
    fetch = "-" if not _active(state, res, "connect") else (
        "F" if primary or not status.get("fetch_rest") else "f")
    replay = "-" if not _active(state, res, "allow-replay") else (
        "R" if primary or not status.get("replay_rest") else "r")
    return device + consistent + attached + sync + fetch + replay


def sync_rest(state, res):
    if not state.disk(res):
        return ""
    return str(max(0, state.size(res) - sync_done(state, res)))


def rest(state, res, status, name):
    """A secondary's bytes still to fetch (`fetch_rest`: of the primary's
    log as it last listed it, or said it in the metadata while fetch is
    paused or the listing fails), to replay (`replay_rest`), or both (`work_rest`); 0 on the
    primary. Empty (unknown) without marsd's status: a `0` would read as
    "nothing missing" (failover's account of what is lost, migrate's lag)."""
    if not state.disk(res):
        return ""
    if status.get("is_primary") or (not status and is_actual_primary(state, res)):
        return "0"
    if not status:
        return ""
    return str(status.get(name, 0))


def fetch_position(state, res, runtime):
    """(number, bytes held here) of the newest logfile of `res` this host
    holds, (0, 0) with none; None without a disk. How far it received the
    primary's log, read from its own logfiles (marsd running or not): the
    same measure on every member, where `fetch-rest` is counted from the
    source's log as each last heard of it (a member cut off from the
    primary long ago, its metadata too, which fetched all it had listed,
    says 0)."""
    if not state.disk(res):
        return None
    logfiles = list_logfiles(runtime.state_dir / resource_dir_name(res))
    if not logfiles:
        return 0, 0
    name, size = logfiles[-1]
    return parse_logfile_name(name)[0], size


def _fetch_position_part(index):
    def view(state, res, runtime):
        position = fetch_position(state, res, runtime)
        return "" if position is None else str(position[index])
    return view


def is_split_brain(state, res, status):
    from mars.history import history_conflict
    return "1" if (status.get("split_brain") or
                   history_conflict(state, res, state.members(res))) else "0"


def is_alive(state, res, window):
    """Whether the designated primary of `res` (this host where none is
    designated) reported within `window` seconds (--window), as the
    kernel's marsadm has `is-alive`: on a secondary, whether its primary
    still runs as far as it hears."""
    host = state.designated_primary(res) or state.local_host
    return "1" if state.is_alive(host, window) else "0"


def _bytes(count):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{count} B"
        count /= 1024
    return f"{count} B"


def _eta(rest, rate):
    if rate <= 0:
        return "unknown"
    seconds = int(rest / rate)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def summary(state, res, status):
    """The human `marsadm view <res>`."""
    lines = [f"{res} [{len(state.members(res))}/{len(state.cluster_hosts())}] "
             f"{diskstate(state, res, status)} {replstate(state, res, status)} "
             f"{flags(state, res, status)} {role(state, res, status)} "
             f"{state.designated_primary(res) or '(none)'}"]
    rates = status.get("rates", {})
    if status.get("is_primary"):
        lines.append(f"  device {status.get('device')} -> {status.get('loop')}, "
                     f"open count {status.get('open_count', 0)}, logging {_bytes(rates.get('log', 0))}/s")
    size = state.size(res)
    done = sync_done(state, res)
    if status.get("syncing") or (state.disk(res) and done < size):
        done = max(done, status.get("sync_done", 0))
        rate = rates.get("sync", 0)
        lines.append(f"  sync: {100 * done / size if size else 100:.1f}% {_bytes(done)} of "
                     f"{_bytes(size)}, rate {_bytes(rate)}/s, eta {_eta(size - done, rate)}")
    for name in ("fetch", "replay"):
        # (a new primary's last report as a secondary, before its first as
        # the primary: its rests are 0, as `rest` says)
        rest = 0 if status.get("is_primary") else status.get(f"{name}_rest", 0)
        if rest:
            rate = rates.get(name, 0)
            lines.append(f"  {name}: rest {_bytes(rest)}, rate {_bytes(rate)}/s, eta {_eta(rest, rate)}")
    # as view-is-split-brain: also what the metadata shows, which marsd's
    # status says only a step later, and not at all while marsd is down
    split_brain = status.get("split_brain") or history_conflict(state, res, state.members(res))
    for label, value in (("split brain", split_brain), ("damage", status.get("damage")),
                         ("waiting", status.get("waiting")), ("error", status.get("error"))):
        if value:
            lines.append(f"  {label}: {value}")
    if state.disk(res) and not status:
        lines.append("  marsd is not running on this host: figures unavailable")
    return "\n".join(lines) + "\n"


def is_primary_here(state, res, status):
    """The device is up here: marsd says so in the metadata and is alive."""
    return is_actual_primary(state, res) and bool(status)


DATA_VIEWS = {
    "diskstate": lambda state, res, rt: diskstate(state, res, rt.status(res)),
    "replstate": lambda state, res, rt: replstate(state, res, rt.status(res)),
    "flags": lambda state, res, rt: flags(state, res, rt.status(res)) if state.disk(res) else "",
    "role": lambda state, res, rt: role(state, res, rt.status(res)),
    "is-primary": lambda state, res, rt: "1" if is_primary_here(state, res, rt.status(res)) else "0",
    "sync-rest": lambda state, res, rt: sync_rest(state, res),
    # not in kernel MARS: the bytes this host's last (or current) sync
    # received over the network, as its marsd counted them since the sync
    # began ('' without one, or after a restart of marsd)
    "sync-received": lambda state, res, rt: str(rt.status(res).get("sync_received", "")),
    "work-rest": lambda state, res, rt: rest(state, res, rt.status(res), "work_rest"),
    "fetch-rest": lambda state, res, rt: rest(state, res, rt.status(res), "fetch_rest"),
    "replay-rest": lambda state, res, rt: rest(state, res, rt.status(res), "replay_rest"),
    # the kernel's: the number of the newest logfile held here
    "fetch-lognr": _fetch_position_part(0),
    # not in kernel MARS: the bytes held here of that logfile (`fetch_position`)
    "fetch-logsize": _fetch_position_part(1),
    "is-consistent": lambda state, res, rt: "1" if is_consistent(state, res) else "0",
    "is-split-brain": lambda state, res, rt: is_split_brain(state, res, rt.status(res)),
    "is-alive": lambda state, res, rt: is_alive(state, res, rt.window),
}


# ------------------------------------------------------------ wait macros
# Kernel marsadm's `view-wait-{is,todo}-{attach,sync,fetch,replay,primary,
# secondary}-{on,off} <res>` (userspace/marsadm: the `wait-...` view macros,
# carried out by `wait_cond`): wait until the switch is on or off, at most
# --timeout. `is` asks what marsd reports (the kernel's `check_status` on
# actual-<host>/is-{attached,syncing,copying,replaying,primary}), `todo`
# what the admin wants (`check_todo` on todo-<host>/{attach,sync,connect,
# allow-replay} and on the designated primary). A todo switch this host does
# not have (not a member) counts as reached at once, as in `check_todo`.

def _fetching(state, res, status):
    return bool(status) and not status.get("is_primary") and _active(state, res, "connect") \
        and bool(status.get("source"))


def _replaying(state, res, status):
    return bool(status) and not status.get("is_primary") and \
        _active(state, res, "allow-replay") and sync_done(state, res) >= state.size(res)


ACTUAL_SWITCHES = {
    "attach": lambda state, res, status: bool(status.get("attached")),
    "sync": lambda state, res, status: bool(status.get("syncing")),
    "fetch": _fetching,
    "replay": _replaying,
    "primary": is_primary_here,
    # The kernel maps is-secondary to is-primary but forgets to invert it
    # (`wait_cond` tests $name, which is never "secondary"): here secondary
    # means what it says, the device is not up on this host.
    "secondary": lambda state, res, status: not is_primary_here(state, res, status),
}


def _todo_switch(name):
    """On when wanted here and not paused for every member; None where this
    host has no such switch."""
    def switch(state, res, status):
        if state.resource_value(res, todo_name(state.local_host, name), None) is None:
            return None
        return _active(state, res, name)
    return switch


def _designated(want_self):
    def switch(state, res, status):
        if state.resource_value(res, PRIMARY_NAME, None) is None:
            return None
        designated = state.designated_primary(res)
        return designated == state.local_host if want_self else designated is None
    return switch


WANTED_SWITCHES = {
    "attach": _todo_switch("attach"),
    "sync": _todo_switch("sync"),
    "fetch": _todo_switch("connect"),
    "replay": _todo_switch("allow-replay"),
    "primary": _designated(True),
    "secondary": _designated(False),
}


def _wait_condition(switch, on):
    def reached(state, res, status):
        value = switch(state, res, status)
        return value is None or bool(value) == on
    return reached


WAIT_VIEWS = {
    f"wait-{side}-{name}-{end}": (_wait_condition(switch, end == "on"), f"{side}-{name} to be {end}")
    for side, switches in (("is", ACTUAL_SWITCHES), ("todo", WANTED_SWITCHES))
    for name, switch in switches.items()
    for end in ("on", "off")
}

"""`football status [<res>|<host>|<cluster>]`: where everything runs.

For every inventory host, in parallel: whether it answers, its MARS cluster
(`marsadm lowlevel-ls-host-ips`), its resources with role, disk and
replication state, flags and sync rest (`marsadm view all`,
`view-sync-rest all`), its LVs and VG space, the containers, the lock items
held and the intents registered there. Then the operations this controller
has not finished (the journals under `<state_dir>/journal/`); of one whose
run lives and waits, what it waits for (the last `wait` event of its run
log, `<state_dir>/log/`, that no `wait-end` followed). A container that
runs on a host holding no replica of its resource, or beside another
running copy, is flagged under the resources.

Read-only: it renders a `FleetSnapshot` (football/snapshot.py). A host
that does not answer is shown as unreachable with the reason; it never
stops the others from being shown."""

import json
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from football import facts, joblink
from football.errors import FootballError, Illegal
from football.lifecycle import REFUSED_AS_TARGET
from football.locks import controller_owner
from football.ops.base import check_resource_name, in_parallel
from football.snapshot import Replica, observe, silent_replicas
from football.transport import TransportError


# ----------------------------------------------------------------- scope (pure)
def resolve_scope(inventory, name):
    """(kind, name, host names) that `name` asks for: `all`, a `host`, a
    `cluster` of the inventory, else a `resource` (looked for everywhere).
    A name that cannot be a resource is `Illegal`."""
    if not name:
        return "all", "", sorted(inventory.hosts)
    if name in inventory.hosts:
        return "host", name, [name]
    if name in inventory.clusters:
        return "cluster", name, sorted(inventory.clusters[name])
    try:
        check_resource_name(name)
    except Illegal:
        raise Illegal(f"{name!r} is neither a host, a cluster nor a resource name; hosts: "
                      f"{', '.join(sorted(inventory.hosts))}; clusters: "
                      f"{', '.join(sorted(inventory.clusters))}") from None
    return "resource", name, sorted(inventory.hosts)


def where_known(inventory, res):
    """(the hosts whose MARS cluster knows `res`, the hosts that could not
    be asked), asking every inventory host in parallel."""
    def ask(host):
        try:
            return res in facts.all_resources(host, timeout=30)
        except (FootballError, TransportError):        # unreachable, or no marsd to ask
            return None
    said = in_parallel(ask, inventory.hosts.values())
    return ([name for name, known in zip(inventory.hosts, said) if known],
            [name for name, known in zip(inventory.hosts, said) if known is None])


def involves(operation, hosts):
    """Whether an operation's journal names one of `hosts`."""
    named = set(operation.get("targets", [])) | set(operation.get("origin", []))
    return bool(named & set(hosts))


def select(report, kind, name, hosts):
    """The part of `report` that the scope asks for; `Illegal` when a
    resource is nowhere (no host has it, no journal names it)."""
    if kind == "all":
        return report
    if kind == "resource":
        rows = [row for row in report["resources"] if row["resource"] == name]
        operations = [op for op in report["operations"] if op.get("resource") == name]
        if not rows and not operations:
            unreachable = sorted(host for host, entry in report["hosts"].items()
                                 if not entry["reachable"])
            raise Illegal(f"unknown resource {name}: no host of the inventory has it"
                          + (f" (unreachable: {', '.join(unreachable)})" if unreachable else "")
                          + "; `football status` lists them all")
        where = {row["host"] for row in rows}
        return dict(report, resources=rows, operations=operations,
                    hosts={host: entry for host, entry in report["hosts"].items()
                           if host in where},
                    pauses=[pause for pause in report.get("pauses") or []
                            if pause["resource"] in ("*", name)])
    return dict(report,
                hosts={host: entry for host, entry in report["hosts"].items() if host in hosts},
                outside_inventory={member: listers for member, listers
                                   in report.get("outside_inventory", {}).items()
                                   if set(listers) & set(hosts)},
                resources=[row for row in report["resources"] if row["host"] in hosts],
                operations=[op for op in report["operations"] if involves(op, hosts)])


def mark_running(operations, hosts):
    """An operation is running now when its process is alive (`alive`, from
    its journal). Where that is not known (an older journal, another
    controller's run), when its owner (`<operation>-<resource>@...`) holds
    a lock somewhere, or an intent (a sync's, while it waits). A run's locks
    and intents outlive it (killed, it releases nothing; a refused shrink
    keeps its slot until the lease ends), so a run whose process is gone is
    unfinished whatever it holds: a killed migrate inside its window left
    its container down, and "running" would have told the operator to wait."""
    for operation in operations:
        prefix = f"{operation['operation']}-{operation['resource']}@"

        def held(kind):
            return {name for name, entry in hosts.items() for record in entry[kind].values()
                    if str((record or {}).get("owner", "")).startswith(prefix)}
        locked, intended = held("locks"), held("intents")
        alive = operation.get("alive")
        operation["holding"] = sorted(locked | intended)
        operation["state"] = "running" if alive or (alive is None and (locked or intended)) \
            else "unfinished"
    return operations


def copies_notes(rows, mars_unread=()):
    """{(resource, host): note} of the containers that run where they should
    not: on a host that holds no replica of their resource (from an LV of
    its name there: a copy outside MARS), or on a member that is not its
    primary beside another running copy (the primary's own copy is not
    flagged: the other is). `mars_unread`: hosts whose MARS view could not
    be read (their rows hold no role, replica or not)."""
    running = {}
    for row in rows:
        if row["container"] == "RUNNING":
            running.setdefault(row["resource"], []).append(row["host"])
    roles = {(row["resource"], row["host"]): row for row in rows
             if row["role"] or row["diskstate"]}
    notes = {}
    for res, hosts in running.items():
        members = {host for (name, host) in roles if name == res}
        primary = next((roles[res, host]["primary"] for host in sorted(members)
                        if roles[res, host]["primary"]), "")
        for host in sorted(hosts):
            others = [name for name in sorted(hosts) if name != host]
            if host in members:
                if host == primary or not others:
                    continue
                notes[(res, host)] = (f"its container runs here and on {', '.join(others)} too: "
                                      f"two copies; {res}'s primary is {primary or 'none'}: stop "
                                      "this one")
                continue
            if host in mars_unread:
                continue
            note = (f"its container runs here, but {host} holds no replica of {res} (a copy "
                    "outside MARS, from its LV alone)")
            if set(others) & members:
                note += f"; it runs on {', '.join(others)} too: two copies, stop this one"
            else:
                note += (f"; it runs on no member of {res}: its data is not {res}'s replicated "
                         f"volume (stop it, then start {res} on a member: `football repair-vm "
                         f"{res} <host>`)")
            notes[(res, host)] = note
    return notes


def waits_now(state_dir, operation):
    """What the live run of `operation` (an unfinished one of this
    controller) waits for now: the last `wait` event of its run log that no
    `wait-end` followed ({what, state, reasons, since}), else None. Its run
    log is the newest of its resource (`<stamp>-<command>-<res>.log`) whose
    command is the operation, a phase of it, or a combined one it is a
    stage of."""
    kind, res = operation["operation"], operation["resource"]
    suffix = f"-{res}.log"
    started = operation.get("started") or 0

    def its(path):
        command = path.name[len("YYYYmmdd-HHMMSS-"):-len(suffix)]
        return command == kind or command.startswith(f"{kind}-") or \
            kind in command.split("+") and "+" in command
    try:
        logs = sorted((path for path in (Path(state_dir) / "log").glob(f"*{suffix}")
                       if its(path) and path.stat().st_mtime >= started - 1),
                      key=lambda path: path.name)
    except OSError:
        return None
    if not logs:
        return None
    waiting = None
    try:
        with open(logs[-1]) as handle:
            for line in handle:
                if '"wait' not in line:
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    continue            # a line being written
                if event.get("event") == "wait":
                    waiting = {"what": event.get("what", "?"), "state": event.get("state", ""),
                               "reasons": list(event.get("reasons") or []),
                               "since": event.get("time")}
                elif event.get("event") == "wait-end" and waiting and \
                        event.get("what") == waiting["what"]:
                    waiting = None
    except OSError:
        return None
    return waiting


def other_controllers_runs(hosts, mine, lease):
    """The runs of other controllers (owners but `mine`), by the lock items
    `run-<res>` they hold on `hosts` (status entries): one row each, in the
    shape of an unfinished operation's (`holding` the hosts it holds, its
    `controller`), state `running elsewhere`, or `unfinished elsewhere`
    where its run ended and kept it, or acted and was not renewed for
    `lease` seconds (it died; their journals are there), or `stale
    elsewhere` where it never acted and was not renewed for `lease` (it
    died before it changed anything: the next run breaks its lock)."""
    now = time.time()
    runs = {}
    for name, entry in sorted(hosts.items()):
        for item, record in (entry.get("locks") or {}).items():
            record = record or {}
            owner = record.get("owner", "?")
            if not item.startswith("run-") or owner == mine:
                continue
            if (item, owner) not in runs:
                what = record.get("what", "")
                held_on = []
                runs[(item, owner)] = {
                    "operation": what.partition(" of ")[0].removeprefix("unfinished ") or "?",
                    "resource": item[len("run-"):],
                    "state": "unfinished elsewhere" if _stopped(record, now, lease)
                    # (by the longer of the leases, as the host judges it)
                    else "stale elsewhere" if now - record.get("time", now) >
                    max(lease, record.get("lease") or 0)
                    else "running elsewhere", "controller": owner, "what": what,
                    # when it began is in its journal there; the lock's time
                    # is its last renewal; `origin`: what a scope of hosts
                    # selects by
                    "steps": [], "targets": [], "holding": held_on, "origin": held_on,
                    "started": None}
            runs[(item, owner)]["holding"].append(name)
    return list(runs.values())


def _stopped(record, now, lease):
    """Whether a run lock's run stopped unfinished: kept by its end, or
    permanent (it acted, or an operator's) and not renewed for `lease`."""
    return record.get("run") == "kept" or record.get("what", "").startswith("unfinished ") \
        or bool(record.get("permanent") and now - record.get("time", 0) > lease)


class Status:
    """`football status`: read-only, so it has no phases and takes no locks."""

    operation = "status"

    def __init__(self, ctx, name=None):
        self.ctx = ctx
        self.kind, self.name, self.hosts = resolve_scope(ctx.inventory, name)

    def run(self):
        from plugins.waiting import pauses

        snapshot = observe(self.ctx, self.hosts)
        hosts = {name: snapshot.hosts[name].entry() for name in self.hosts}
        rows = [replica.row() for replica in snapshot.replicas]
        # a host that answers but whose MARS view could not be read has a
        # row of its LV already: the note goes there (not a second row)
        shown = {(row["resource"], row["host"]): row for row in rows}
        unread = {name for name, view in snapshot.hosts.items()
                  if view.reachable and not view.mars_read}
        for where, note in copies_notes(rows, unread).items():
            shown[where]["notes"].append(note)
        for res, silent in sorted(silent_replicas(self.ctx.inventory, snapshot,
                                                  self.hosts).items()):
            for name in sorted(silent):
                note = f"{name} does not answer (its mates list this replica)"
                if (res, name) in shown:
                    shown[res, name]["notes"].append(note)
                else:
                    rows.append(Replica(res, name, notes=(note,)).row())
        state_dir = self.ctx.config.state_dir
        operations = mark_running(joblink.unfinished_operations(self.ctx.config), hosts)
        for operation in operations:
            waiting = waits_now(state_dir, operation) if operation["state"] == "running" \
                else None
            if waiting:
                operation["waiting"] = waiting
        operations += other_controllers_runs(hosts, controller_owner(state_dir, create=False),
                                             self.ctx.config.run_lock_lease)
        report = {"scope": {"kind": self.kind, "name": self.name}, "time": round(time.time()),
                  "hosts": hosts, "resources": rows, "operations": operations,
                  "pauses": pauses(self.ctx.config),
                  "outside_inventory": outside_inventory(hosts, self.ctx.inventory.hosts)}
        return select(report, self.kind, self.name, self.hosts)


def outside_inventory(hosts, inventory_hosts):
    """{host: the inventory hosts whose MARS cluster lists it} of the hosts
    that are in a MARS cluster but not in the inventory (taken out of it,
    but never decommissioned: splits of that cluster refuse while it does
    not answer)."""
    listed = {}
    for name, entry in hosts.items():
        for member in entry.get("mars_cluster") or ():
            if member not in inventory_hosts:
                listed.setdefault(member, []).append(name)
    return {member: sorted(names) for member, names in sorted(listed.items())}


# ------------------------------------------------------------------ rendering
def _mib(value):
    return "-" if value is None else f"{value >> 20} MiB"


def _locks(records):
    """`item (owner)` each, with what it is for where its holder said so (a
    run lock: `run-vm1 (migrate of vm1, pid 4242; football@<controller>)`)."""
    def holder(record):
        record = record or {}
        return "; ".join(filter(None, [record.get("what"), record.get("owner", "?")]))
    return ", ".join(f"{item} ({holder(record)})" for item, record in sorted(records.items())) \
        or "-"


def render(report, console=None):
    """The report as rich tables: hosts, resources, unfinished operations."""
    # piped: wide enough for a row per line (a terminal keeps its width)
    console = console or Console(width=None if Console().is_terminal else 160)
    hosts = Table(title="hosts")
    for column in ("host", "cluster", "state", "reachable", "MARS cluster", "VG free", "locks",
                   "intents"):
        hosts.add_column(column)
    for name, entry in sorted(report["hosts"].items()):
        reach = "yes" if entry["reachable"] else f"[red]no[/]: {entry['error']}"
        if entry["reachable"] and entry["error"]:
            reach = f"[yellow]partly[/]: {entry['error']}"
        state = entry.get("lifecycle") or "?"
        if state in REFUSED_AS_TARGET:
            state = f"[yellow]{state}[/]"
        hosts.add_row(name, entry["cluster"] or "-", state, reach,
                      " ".join(sorted(entry["mars_cluster"])) or "-", _mib(entry["vg_free"]),
                      _locks(entry["locks"]), _locks(entry["intents"]))
    console.print(hosts)
    resources = Table(title="resources")
    for column in ("resource", "host", "role", "diskstate", "replstate", "flags", "sync rest",
                   "LV", "container"):
        resources.add_column(column)
    for row in sorted(report["resources"], key=lambda row: (row["resource"], row["host"])):
        resources.add_row(row["resource"], row["host"], row["role"] or "-",
                          row["diskstate"] or "-", row["replstate"] or "-", row["flags"] or "-",
                          _mib(row["sync_rest"]) if row["sync_rest"] else "-",
                          _mib(row["lv_size"]), row["container"] or "-")
    console.print(resources)
    for row in sorted(report["resources"], key=lambda row: (row["resource"], row["host"])):
        for note in row.get("notes") or []:         # why MARS waits or fails there
            console.print(f"{row['resource']} on {row['host']}: {note}", markup=False,
                          highlight=False)
    for line in _unreachable_primaries(report["hosts"], report["resources"]):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    for member, listers in (report.get("outside_inventory") or {}).items():
        console.print(f"{member} is in the MARS cluster of {', '.join(listers)} but not in the "
                      f"inventory: if it is gone for good, `football decommission {member}` "
                      "drops it (a split of that cluster waits for it until then)",
                      markup=False, highlight=False, soft_wrap=True)
    if report["operations"]:
        operations = Table(title="unfinished operations")
        for column in ("operation", "resource", "state", "steps done", "targets", "started"):
            operations.add_column(column)
        for op in report["operations"]:
            state = op.get("state", "unfinished")
            if op.get("damaged"):
                state = f"[red]damaged journal[/]: {op['damaged']}"
            elif op.get("in_downtime"):
                state += ", [red]inside the downtime window[/]"
            if op.get("controller"):
                state += f" ({op['what'] or '?'}; {op['controller']})"
            if op.get("waiting"):
                waiting = op["waiting"]
                since = time.strftime("%H:%M:%S", time.localtime(waiting["since"])) \
                    if waiting.get("since") else "?"
                state += (f", [magenta]waits for {escape(waiting['what'])}[/] since {since}: "
                          f"{escape('; '.join(waiting['reasons']) or '?')}")
            started = time.strftime("%Y-%m-%d %H:%M", time.localtime(op["started"])) \
                if op.get("started") else "-"
            operations.add_row(op["operation"], op["resource"], state,
                               ", ".join(op["steps"]) or "-",
                               ", ".join(op["targets"] or op.get("holding") or []) or "-",
                               started)
        console.print(operations)
        for line in _unfinished_hints(report["operations"], report["resources"]):
            console.print(line)
    for pause in report.get("pauses") or []:
        if pause.get("unknown"):
            console.print(f"paused?: {pause['where']}: whether runs are paused there cannot "
                          "be read; they wait before their downtime window until it answers",
                          markup=False, highlight=False, soft_wrap=True)
            continue
        whose = "every resource" if pause["resource"] == "*" else pause["resource"]
        since = time.strftime("%Y-%m-%d %H:%M", time.localtime(pause["since"]))
        by = f" by {pause['by']}" if pause["by"] else ""
        unpause = "football unpause" + ("" if pause["resource"] == "*" else
                                        f" {pause['resource']}")
        console.print(f"paused: {whose}, since {since}{by} ({pause['where']}): runs wait "
                      f"before their downtime window until `{unpause}`", markup=False,
                      highlight=False, soft_wrap=True)


def _unreachable_primaries(hosts, rows):
    """What the operator does about a host that does not answer while the
    others name it the primary of resources: wait for it, or, if it is gone
    for good, fail it over."""
    lines = []
    for name, entry in sorted(hosts.items()):
        if entry["reachable"]:
            continue
        primaries = sorted({row["resource"] for row in rows
                            if row["primary"] == name and row["host"] != name})
        if primaries:
            lines.append(f"{name} does not answer and is the primary of "
                         f"{', '.join(primaries)}: if it is gone for good (switched off), "
                         f"`football failover {name}` takes over on their other replicas "
                         f"(`football --dry-run failover {name}` says what each would lose)")
        replicas = sorted({row["resource"] for row in rows if row["host"] == name}
                          - set(primaries))
        if replicas:
            one = len(replicas) == 1
            lines.append(f"{name} does not answer and holds a replica of {', '.join(replicas)} "
                         f"({'its primary runs' if one else 'their primaries run'} on without "
                         f"it): if it is gone for good, `football failover {name}` drops "
                         f"{'it' if one else 'them'}")
    return lines


def _unfinished_hints(operations, rows):
    """What the operator does about runs that are not running: the same
    command resumes them; one stopped inside its window may have left its
    container down until then (the resources' rows say where it runs)."""
    stopped = [op for op in operations if op.get("state") == "unfinished"]
    if not stopped:
        return []
    hints = ["An unfinished operation goes on from where it stopped when its command runs "
             "again (the same arguments)."]
    for op in stopped:
        if not op.get("in_downtime"):
            continue
        res = op["resource"]
        mine = [row for row in rows if row["resource"] == res]
        shown = sorted(row["host"] for row in mine)
        running = sorted(row["host"] for row in mine if row["container"] == "RUNNING")
        said = f"its {op['operation']} stopped inside the downtime window"
        if running:
            hints.append(f"{res} runs on {', '.join(running)}; {said}: run it again to "
                         "finish it.")
        else:
            hints.append((f"[red]{res} runs on none of {', '.join(shown)}[/]: " if shown else "")
                         + f"{said}; run it again now, or start {res} where it was with "
                         f"`football repair-vm {res} <host>`.")
    return hints

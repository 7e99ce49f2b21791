"""`football score`, `football balance --plan`, `football evacuate
<host|cluster> --plan`: the planner's view of the fleet and its plans.

Read-only towards the hosts: each reads the fleet (football/planner/
observe.py) and computes; a plan is saved under `<state_dir>/plans/` by
its id, for the execution side to load. Bad input (an unknown host or
cluster, evacuating every host, balancing while a host drains) is
`Illegal` before anything is saved."""

import time

from rich.console import Console
from rich.table import Table

from football import joblink
from football.errors import Illegal
from football.planner import (Moved, Plan, Settings, load_plan, plan_balance, plan_evacuation,
                              read_history, save_plan, score)
from football.planner.balance import MIN_SCORE
from football.planner.observe import read_fleet
from football.report import counted


def keep_plan(config, plan):
    """Save `plan` in the state dir (its path) and, where controllers share
    a jobs' database, there too: any of them executes it by its id."""
    path = save_plan(config.state_dir, plan)
    if config.jobs_database_url:
        from football.screener import JobStore

        store = JobStore(config)
        try:
            store.keep_plan(plan.to_json())
        finally:
            store.close()
    return path


def find_plan(config, plan_id):
    """The plan `plan_id`: saved here, else kept in the shared jobs'
    database (made on another controller); `Illegal` as `load_plan`."""
    from football.jobdb import shared_plan

    try:
        return load_plan(config.state_dir, plan_id)
    except Illegal:
        data = shared_plan(config, plan_id)
        if data is None:
            raise
        return Plan.from_json(data)


def cooldown_history(config):
    """The moves the cooldown holds: this controller's record (`Moved`,
    with their hosts) and every planner's move done as a screener job in
    the jobs' database — another controller's too, where they share one
    (else two controllers' timers would move back what the other moved)."""
    from football.jobdb import planned_moves_done

    return [*read_history(config.state_dir),
            *(Moved(res, finished, failed=failed)
              for res, finished, failed in planned_moves_done(config))]


class ScoreReport:
    """`football score`: the score, each term, each host's fractions."""

    operation = "score"

    def __init__(self, ctx):
        self.ctx = ctx

    def run(self):
        fleet = read_fleet(self.ctx)
        return score(fleet, Settings.from_config(self.ctx.config)).to_json()


class BalancePlanning:
    """`football balance --plan`: the balance plan of the whole fleet, saved."""

    operation = "balance"

    def __init__(self, ctx):
        self.ctx = ctx

    def run(self):
        config = self.ctx.config
        fleet = read_fleet(self.ctx)
        plan = plan_balance(fleet, Settings.from_config(config), cooldown_history(config),
                            time.time(), joblink.unfinished_resources(config))
        return dict(plan.to_json(), path=str(keep_plan(config, plan)))


def hosts_named(inventory, name):
    """The hosts `name` stands for: a host, or a cluster's; else `Illegal`."""
    if name in inventory.hosts:
        return [name]
    if name in inventory.clusters:
        return sorted(inventory.clusters[name])
    raise Illegal(f"unknown host or cluster {name!r}; hosts: {', '.join(sorted(inventory.hosts))}"
                  f"; clusters: {', '.join(sorted(inventory.clusters)) or 'none'}")


class EvacuationPlanning:
    """`football evacuate <host|cluster> --plan`: where everything on the
    hosts would go, saved; the hosts are not marked (that is --execute's)."""

    operation = "evacuate"

    def __init__(self, ctx, name):
        self.ctx = ctx
        self.hosts = hosts_named(ctx.inventory, name)
        if not set(ctx.inventory.hosts) - set(self.hosts):
            raise Illegal(f"evacuating {name} would evacuate every host of the fleet: nowhere "
                          "is left to move to")

    def run(self):
        config = self.ctx.config
        fleet = read_fleet(self.ctx)
        plan = plan_evacuation(fleet, self.hosts, Settings.from_config(config), time.time())
        return dict(plan.to_json(), path=str(keep_plan(config, plan)))


# ------------------------------------------------------------------ rendering
def _console():
    # piped: wide enough for a row per line (a terminal keeps its width)
    return Console(width=None if Console().is_terminal else 160)


def _percent(value):
    return "-" if value is None else f"{value * 100:.0f} %"


def _gib(size):
    return f"{size / (1 << 30):,.1f} GiB"


def render_score(report, console=None):
    """The score as tables: per host its fractions and penalties, then the terms."""
    console = console or _console()
    hosts = Table(title="hosts")
    for column in ("host", "lifecycle", "free VG", "free memory", "containers", "CPU load",
                   "penalties"):
        hosts.add_column(column)
    for name, entry in sorted(report["hosts"].items()):
        lifecycle = entry["lifecycle"] + ("" if entry["online"] or entry["lifecycle"] != "active"
                                          else " (unreachable)")
        hosts.add_row(name, lifecycle, _percent(entry["free_vg"]),
                      _percent(entry["free_memory"]),
                      f"{entry['container_count']} ({_percent(entry['containers'])})",
                      _percent(entry["cpu_load"]),
                      ", ".join(f"{key} {count}" for key, count in
                                sorted(entry["penalties"].items())) or "-")
    console.print(hosts)
    terms = Table(title="terms")
    terms.add_column("term")
    terms.add_column("value", justify="right")
    for term, value in report["terms"].items():
        terms.add_row(term, f"{value:.4f}")
    console.print(terms)
    console.print(f"score {report['score']:.4f}")


def render_plan(plan, console=None):
    """A plan as a table of its moves in order, then score and where it is saved."""
    console = console or _console()
    if not plan["moves"]:
        console.print(f"{plan['kind']} plan {plan['id']}: nothing to move ({_why_empty(plan)})")
    else:
        console.print(_moves_table(plan))
    if plan.get("held") and (plan["moves"] or plan["kind"] != "balance"):
        console.print("not moved now: " + "; ".join(f"{res} {why}"
                                                      for res, why in plan["held"].items()))
    expires = time.strftime("%Y-%m-%d %H:%M", time.localtime(plan["expires"]))
    console.print(f"score {plan['score_before']:.4f} -> {plan['score_after']:.4f}; "
                  f"{counted(len(plan['moves']), 'move')}, "
                  f"{_gib(plan['sync_bytes'])} to sync; "
                  f"saved as {plan['path']} (expires {expires})")


def _why_empty(plan):
    hosts = ", ".join(plan.get("hosts") or [])
    if plan["kind"] == "evacuate":
        return f"no primary or replica is on {hosts}"
    if plan["kind"] == "restore":
        return f"nothing moved away from {hosts} is left to bring back"
    if plan["score_before"] <= MIN_SCORE:
        return "the fleet is balanced"
    held = "; ".join(f"{res} {why}" for res, why in (plan.get("held") or {}).items())
    return ("no move within the hard limits gains enough: min_gain, min_gain_limit, "
            f"gain_per_tib{f'; not moved now: {held}' if held else ''}")


def _moves_table(plan):
    moves = Table(title=f"{plan['kind']} plan {plan['id']}")
    for column in ("#", "resource", "kind", "from", "to", "gain", "sync"):
        moves.add_column(column, justify="right" if column in ("#", "gain", "sync") else "left")
    for number, move in enumerate(plan["moves"], start=1):
        moves.add_row(str(number), move["resource"], move["kind"], " ".join(move["from"]),
                      " ".join(move["to"]), f"{move['gain']:.4f}", _gib(move["sync_bytes"]))
    return moves

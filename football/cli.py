"""The `football` command line: argument handling only, logic lives in the
operations and the lab.

Exit codes: 0 done; 191 illegal (bad arguments, failed precondition, nothing
changed); 198 failed (see the message; the lab may be half up: `lab up`
again repairs, `lab down` removes it)."""

import json
import sys
import time
from functools import wraps
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from football import __version__
from football.errors import EXIT_ILLEGAL, EXIT_INTERRUPTED, EXIT_SERIOUS, FootballError
from football.inventory import InventoryError
from football.transport import TransportError


def reported(function):
    """Turn Football's errors into a message on stderr and their exit code."""

    @wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except FootballError as error:
            click.echo(f"football: {error}", err=True)
            sys.exit(error.exit_code)
        except InventoryError as error:
            click.echo(f"football: {error}", err=True)
            sys.exit(EXIT_ILLEGAL)
        except TransportError as error:
            click.echo(f"football: {error}", err=True)
            sys.exit(EXIT_SERIOUS)
        except KeyboardInterrupt:
            click.echo("football: interrupted; locks released. Re-run the same command to "
                       "resume.", err=True)
            sys.exit(EXIT_INTERRUPTED)

    return wrapper


class Globals:
    """The global options, and what they resolve to on first use."""

    def __init__(self, inventory_path, config_files, dry_run, yes, as_json, verbose,
                 variables, injection_point):
        self.inventory_path, self.config_files = inventory_path, config_files
        self.dry_run, self.yes, self.as_json, self.verbose = dry_run, yes, as_json, verbose
        self.variables, self.injection_point = variables, injection_point

    def context(self, operation, res):
        from football.config import Config
        from football.hooks import Hooks
        from football.inventory import load
        from football.lab import Lab
        from football.ops.base import Context
        from football.report import Reporter

        config = Config(self.config_files, self.variables)
        if self.inventory_path:
            inv = load(self.inventory_path)
        else:
            the_lab = Lab()
            if not the_lab.exists():
                raise InventoryError("no inventory: pass --inventory FILE (or set "
                                     "FOOTBALL_INVENTORY), or bring the lab up (football lab up)")
            inv = the_lab.fleet()
            config.default("state_dir", the_lab.controller_dir)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        reporter = Reporter(as_json=self.as_json, verbose=self.verbose,
                            log_path=Path(config.state_dir) / "log" / f"{stamp}-{operation}-{res}.log")
        return Context(inventory=inv, config=config, hooks=Hooks(), reporter=reporter,
                       dry_run=self.dry_run, yes=self.yes, injection_point=self.injection_point)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="football")
@click.option("--inventory", "inventory_path", envvar="FOOTBALL_INVENTORY", show_envvar=True,
              type=click.Path(dir_okay=False), help="The fleet's inventory (YAML). "
              "Default: the lab, when one is up.")
@click.option("--config", "config_files", multiple=True, type=click.Path(dir_okay=False),
              help="YAML file of settings (repeatable; later files win).")
@click.option("--dry-run", is_flag=True, help="Check and print what would be done; change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="One JSON event per line on stdout.")
@click.option("--verbose", "-v", is_flag=True, help="Show every step's details.")
@click.option("--var", "variables", multiple=True, metavar="NAME=VALUE",
              help="Set any tunable (see `football config`); wins over files and environment.")
@click.option("--debug-injection-point", "injection_point", type=int, default=0, metavar="N",
              help="Fail at the N-th injection point (restart testing).")
@click.pass_context
def cli(ctx, inventory_path, config_files, dry_run, yes, as_json, verbose, variables,
        injection_point):
    """Move LXC containers between hypervisor hosts whose data lives on local
    storage, replicated by MARS.

    \b
      football migrate vm1 cluster2      move vm1 (and its replica) to cluster2
      football handover vm1 a2           make the replica on a2 the primary
      football lab up                    a local fleet to try it on

    Exit codes: 0 done, 191 illegal (nothing changed), 190 interrupted,
    198 serious (failed, container running again), 199 critical (failed in
    the downtime window, container not running).
    """
    ctx.obj = Globals(inventory_path, config_files, dry_run, yes, as_json, verbose, variables,
                      injection_point)


def _operation(ctx, operation, res, make, phases=None):
    from football.ops.migrate import PHASES

    context = ctx.obj.context(operation, res)
    op = make(context)
    try:
        summary = op.run(phases or PHASES)
        _print_summary(context, summary)
    finally:
        context.reporter.close()


def _print_summary(context, summary):
    reporter = context.reporter
    synced, seconds = summary.get("synced_bytes", 0), summary.get("sync_seconds", 0.0)
    rate = synced / seconds / (1 << 20) if seconds else 0.0
    summary = dict(summary, sync_mib_per_s=round(rate, 1),
                   injection_points=context.points_passed)
    reporter.event("summary", **summary)
    if not reporter.as_json:
        phases = ", ".join(f"{name} {value:.1f} s" for name, value in summary["phases"].items())
        downtime = summary.get("downtime_seconds")
        reporter.say(f"summary: {summary['resource']}: synced {synced >> 20} MiB"
                     f" at {rate:.0f} MiB/s; downtime "
                     f"{f'{downtime:.2f} s' if downtime is not None else '-'}; "
                     f"phases: {phases or '-'}")


@cli.command()
@click.argument("res")
@click.argument("target")
@click.argument("target_secondary", required=False)
@click.pass_context
@reported
def migrate(ctx, res, target, target_secondary):
    """Move RES to TARGET (a host, or a cluster: primary and secondary chosen
    by placement), optionally with TARGET_SECONDARY. RES:HOST names its
    current host when it cannot be discovered."""
    from football.ops.migrate import Migrate

    _operation(ctx, "migrate", res, lambda c: Migrate(c, res, target, target_secondary))


def _phase_command(phase):
    @click.argument("res")
    @click.argument("target")
    @click.argument("target_secondary", required=False)
    @click.pass_context
    @reported
    def command(ctx, res, target, target_secondary):
        from football.ops.migrate import Migrate

        _operation(ctx, "migrate", res, lambda c: Migrate(c, res, target, target_secondary),
                   phases=(phase,))

    command.__doc__ = f"Only the {phase} phase of migrate (same arguments)."
    return cli.command(f"migrate-{phase}")(command)


for _phase in ("prepare", "wait", "finish", "cleanup"):
    _phase_command(_phase)


@cli.command()
@click.argument("res")
@click.argument("host")
@click.pass_context
@reported
def handover(ctx, res, host):
    """Make the replica of RES on HOST the primary (downtime window only)."""
    from football.ops.migrate import Handover

    _operation(ctx, "handover", res, lambda c: Handover(c, res, host), phases=("finish",))


@cli.command("config")
@click.pass_context
@reported
def show_config(ctx):
    """Every tunable with its value, where the value came from, and its meaning."""
    from football.config import TUNABLES, Config

    config = Config(ctx.obj.config_files, ctx.obj.variables)
    for name, value in config.items():
        click.echo(f"{name} = {value!r}  ({config.origin[name]}) — {TUNABLES[name].meaning}")


@cli.group()
@click.option("--lab-dir", envvar="FOOTBALL_LAB_DIR", type=click.Path(file_okay=False),
              default=None, show_envvar=True,
              help="Where the lab keeps its hosts (default /var/tmp/football-lab).")
@click.option("--inventory", "inventory_path", type=click.Path(dir_okay=False, exists=True),
              default=None, help="Lab inventory (default inventory/lab.yml); read at the "
              "first `up` and kept in the lab dir.")
@click.pass_context
def lab(ctx, lab_dir, inventory_path):
    """The embedded local lab: hosts on one machine, each a root directory
    plus a 127.0.0.x address, with marsd, a file-backed VG and LXC.

    \b
      football lab up                    bring it up (idempotent; repairs)
      football lab status [--json]       hosts, daemons, resources, containers
      football lab exec a2 -- marsadm view vm1
      football lab down                  remove everything it created
    """
    from football.lab import Lab

    ctx.obj = Lab(lab_dir, inventory_path, echo=lambda line: click.echo(line, err=True))


@lab.command("up")
@click.option("--no-wait", is_flag=True, help="Do not wait for the demo's replica to be in sync.")
@click.pass_obj
@reported
def lab_up(the_lab, no_wait):
    """Create the hosts, start marsd, create the clusters and VGs, and the demo
    container (vm1 on a1, replicated to a2, running its workload)."""
    the_lab.up(wait_sync=not no_wait)
    _print_status(the_lab.status())


@lab.command("demo")
@click.pass_obj
@reported
def lab_demo(the_lab):
    """Bring the lab up and migrate the demo container to the other cluster
    while its workload writes; print sync throughput, downtime and the data
    verification (what `make demo` runs). Exit 1 if any record was lost."""
    from football.demo import run_demo

    if not run_demo(the_lab, echo=click.echo):
        sys.exit(1)


@lab.command("down")
@click.pass_obj
@reported
def lab_down(the_lab):
    """Stop containers and daemons, unmount, detach loop devices, remove the lab dir."""
    the_lab.down()


@lab.command("status")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of tables.")
@click.pass_obj
@reported
def lab_status(the_lab, as_json):
    """Hosts, their marsd, the resources with their replication state, and
    where each container runs."""
    status = the_lab.status()
    if as_json:
        click.echo(json.dumps(status, indent=2, sort_keys=True))
    elif not status:
        click.echo(f"no lab in {the_lab.dir}; bring one up with `football lab up`")
    else:
        _print_status(status)


@lab.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("host")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_obj
@reported
def lab_exec(the_lab, host, command):
    """Run COMMAND on lab host HOST with the host's environment, as Football
    does (`football lab exec a2 -- marsadm view vm1`). Exits with its code."""
    result = the_lab.exec(host, list(command))
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    sys.exit(result.exit_code)


def _print_status(status):
    console = Console()
    hosts = Table(title="lab hosts")
    for column in ("host", "cluster", "address", "marsd", "VG free", "containers"):
        hosts.add_column(column)
    resources = Table(title="resources")
    for column in ("resource", "host", "role", "diskstate", "replstate", "flags", "container"):
        resources.add_column(column)
    for name, entry in sorted(status.items()):
        marsd = f"pid {entry['marsd_pid']}" if entry["marsd_running"] else "[red]not running[/]"
        free = f"{entry['vg_free'] >> 20} MiB" if entry["vg_free"] is not None else "-"
        containers = ", ".join(f"{ct} {state}" for ct, state in sorted(entry["containers"].items()))
        hosts.add_row(name, entry["cluster"], entry["address"], marsd, free, containers or "-")
        for res, view in sorted(entry["resources"].items()):
            resources.add_row(res, name, view["role"], view["diskstate"], view["replstate"],
                              view["flags"], entry["containers"].get(res, "-"))
    console.print(hosts)
    console.print(resources)


def main():
    cli()

"""The `football` command line: argument handling only, logic lives in the
operations and the lab.

Exit codes (football/errors.py): 0 done; 191 illegal (bad arguments, failed
precondition, nothing changed); 190 interrupted (Ctrl-C, SIGTERM, SIGHUP:
cleaned up); 198 failed (see the message; the lab may be half up: `lab up`
again repairs, `lab down` removes it); 199 critical; `lab exec` its
command's (killed by signal N: 128 + N)."""

import itertools
import json
import os
import re
import signal
import sys
import time
import traceback
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from types import SimpleNamespace

import click
from rich.console import Console
from rich.table import Table

from football import __version__
from football.errors import (EXIT_ILLEGAL, EXIT_INTERRUPTED, EXIT_SERIOUS, FootballError,
                             Illegal, exit_status)
from football.inventory import InventoryError
from football.transport import TransportError
from mars.errors import MarsError
from mars.options import hoist_options


def reported(function):
    """Turn Football's errors into a message on stderr and their exit code
    (with --json, in a command that reports on the fleet, also the last event
    on stdout: `failed`, with the exit code and the message, so that
    automation reading stdout sees why)."""

    @wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except FootballError as error:
            _failed(_said(error), error.exit_code)
        except InventoryError as error:
            _failed(str(error), EXIT_ILLEGAL)
        except (TransportError, MarsError) as error:
            # MarsError: the bundled MARS's code run in-process (the lab)
            _failed(_said(error), EXIT_SERIOUS)
        except KeyboardInterrupt:
            _failed("interrupted; locks released. Re-run the same command to resume.",
                    EXIT_INTERRUPTED)
        except (BrokenPipeError, click.Abort, click.ClickException, click.exceptions.Exit):
            # (the reader went: `main` ends quietly; click's own: a
            # confirmation answered with Ctrl-C or Ctrl-D is no bug)
            raise
        except Exception as error:      # noqa: BLE001 - a plugin's hook, or a bug
            # (a traceback and exit 1 gave --json's reader no `failed` event)
            traceback.print_exc()
            _failed(f"unexpected error: {type(error).__name__}: {error} (the traceback above: "
                    "a plugin's hook or a bug in Football); `football status` shows what "
                    "stays, and the same command goes on from there", EXIT_SERIOUS)

    return wrapper


def _said(error):
    """The error, and where an operation stopped for it (`stopped`: what
    stays and how to go on, set by the operation)."""
    stopped = getattr(error, "stopped", None)
    return f"{error}\n  {stopped}" if stopped else str(error)


def _failed(text, exit_code):
    click.echo(f"football: {text}", err=True)
    context = click.get_current_context(silent=True)
    options = context.find_root().obj if context else None
    if getattr(options, "as_json", False) and getattr(options, "reporting", False):
        click.echo(_event("failed", exit_code=exit_code, text=text))
    sys.exit(exit_code)


def _event(kind, **fields):
    """A JSON event line, as the operations' reporter writes them."""
    return json.dumps({"event": kind, "time": round(time.time(), 3), **fields}, default=str)


def _told(ctx, kind, text, **fields):
    """A command's outcome: with --json its event, else its line."""
    click.echo(_event(kind, **fields) if ctx.find_root().obj.as_json else text)


def eventful(function):
    """A command whose --json output is events (not one document): a refusal
    of its own ends with a `failed` event too (`reported`). Below
    `reported`."""

    @wraps(function)
    def wrapper(*args, **kwargs):
        click.get_current_context().find_root().obj.reporting = True
        return function(*args, **kwargs)

    return wrapper


def _without_dry_run(command):
    """`football --dry-run COMMAND` where COMMAND has no dry run (it would
    act all the same): refused, exit 191, nothing done."""
    if getattr(click.get_current_context().find_root().obj, "dry_run", False):
        raise Illegal(f"`{command}` has no dry run: --dry-run would not keep it from acting; "
                      "nothing was done (leave --dry-run out to run it)")


class Football(click.Group):
    """The command group whose usage mistakes (an unknown command or option,
    a missing argument, a bad value) exit 191, illegal, as every refusal
    that changed nothing does (FOOTBALL.md's exit codes; a screener job with
    a mistyped command line is `illegal`), not click's 2."""

    def make_context(self, info_name, args, *rest, **kwargs):
        # a mistake in the global options: --json among them (before the
        # command; the options' values are among them too)
        leading = list(itertools.takewhile(lambda arg: arg not in self.commands, args))
        with _usage_is_illegal(SimpleNamespace(params={"as_json": "--json" in leading})):
            return super().make_context(info_name, args, *rest, **kwargs)

    def invoke(self, ctx):
        with _usage_is_illegal(ctx):
            return super().invoke(ctx)


@contextmanager
def _usage_is_illegal(ctx=None):
    """Usage mistakes exit 191; with --json (given before the mistake) the
    last line on stdout is a `failed` event, as a refusal's is: automation
    reading stdout sees why (nothing else was printed)."""
    try:
        yield
    except click.UsageError as error:
        error.exit_code = EXIT_ILLEGAL
        if ctx is not None and ctx.params.get("as_json"):
            click.echo(_event("failed", exit_code=EXIT_ILLEGAL, text=error.format_message()))
        raise


class InjectionPoint(click.ParamType):
    """`--debug-injection-point`: a number (the N-th point the run reaches)
    or a point's name (`phase:step`, the first point of that name)."""

    name = "N|NAME"

    def convert(self, value, param, ctx):
        if isinstance(value, int) or str(value).isdigit():
            return int(value)
        if re.fullmatch(r"[a-z-]+:[a-z-]+", str(value)):
            return str(value)
        self.fail(f"{value!r} is neither a number nor a point's name such as finish:stopped "
                  "(--json runs list the names in their injection-point events)", param, ctx)


class Globals:
    """The global options, and what they resolve to on first use."""

    def __init__(self, inventory_path, config_files, dry_run, yes, as_json, verbose,
                 variables, injection_point):
        self.inventory_path, self.config_files = inventory_path, config_files
        self.dry_run, self.yes, self.as_json, self.verbose = dry_run, yes, as_json, verbose
        self.variables, self.injection_point = variables, injection_point
        self.reporting = False

    def settings(self):
        """The tunables; without an inventory, the lab's state dir (when a
        lab is up) is the default one."""
        from football.config import Config
        from football.lab import Lab

        config = Config(self.config_files, self.variables)
        if not self.inventory_path:
            the_lab = Lab()
            if the_lab.exists():
                config.default("state_dir", the_lab.controller_dir, "the lab's")
                # the lab's hosts share one machine: each reads its load and
                # memory, and a container moved among them changes neither,
                # while the score gave each primary an equal share of its
                # host's: every move seemed to make the spread worse
                config.default("weight_cpu_load", 0.0, "the lab's")
                config.default("weight_free_memory", 0.0, "the lab's")
        return config

    def job_options(self, injection=True):
        """The global options a screener job's football command line gets
        from the command that queued it (paths made absolute: the worker
        runs elsewhere); a worker's, without its `--debug-injection-point`
        (`injection`), go to every job it runs."""
        options = []
        if self.inventory_path:
            options += ["--inventory", str(Path(self.inventory_path).absolute())]
        for path in self.config_files:
            options += ["--config", str(Path(path).absolute())]
        for item in self.variables:
            options += ["--var", item]
        if self.injection_point and injection:
            options += ["--debug-injection-point", str(self.injection_point)]
        return options

    def inventory(self):
        """The fleet's inventory: --inventory, else the lab's (when one is up)."""
        from football.inventory import load
        from football.lab import Lab

        if self.inventory_path:
            return load(self.inventory_path)
        the_lab = Lab()
        if not the_lab.exists():
            raise InventoryError("no inventory: pass --inventory FILE (or set "
                                 "FOOTBALL_INVENTORY), or bring the lab up (football lab up)")
        return the_lab.fleet()

    def context(self, operation, res, document=False):
        """The run's context; `document`: the command's --json output is one
        document (status, score, plans), so the events that come up while it
        runs (a warning) go to stderr, not into it."""
        from football.hooks import Hooks
        from football.ops.base import Context
        from football.report import Reporter
        from football.storage import check_storage_kinds

        self.reporting = True           # with --json: events on stdout, a failure's too
        config = self.settings()
        inv = self.inventory()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        hooks = Hooks(config=config)    # with the plugins of plugin_dirs
        check_storage_kinds(inv, hooks)     # a typo (storage: lvmm) before anything runs
        hooks.apply_host_layout(inv)
        try:
            reporter = Reporter(as_json=self.as_json, verbose=self.verbose,
                                stream=sys.stderr if document else None,
                                log_path=Path(config.state_dir) / "log" /
                                f"{stamp}-{operation}-{_file_word(res)}.log",
                                on_warning=lambda text: hooks.football_warning(text=text))
        except OSError as error:        # a state_dir that is no directory, or not ours
            raise Illegal(f"cannot write the run log in {config.state_dir}: "
                          f"{error.strerror or error}; set state_dir (--var state_dir=DIR, or "
                          "in a config file) to a directory this user may write; nothing was "
                          "done") from None
        if not self.dry_run:
            from football.housekeeping import now_and_then

            now_and_then(config, reporter.warning)
        return Context(inventory=inv, config=config, hooks=hooks, reporter=reporter,
                       dry_run=self.dry_run, yes=self.yes, injection_point=self.injection_point)


def _file_word(text):
    """`text` (a resource or host name as typed: not checked yet) as a part
    of a file name: no `/` or other odd character (a run's log of
    `migrate ../../x` was made outside the state dir), at most 80 long."""
    return re.sub(r"[^A-Za-z0-9_.:+@-]", "_", str(text))[:80] or "_"


@click.group(cls=Football, context_settings={"help_option_names": ["-h", "--help"]})
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
@click.option("--debug-injection-point", "injection_point", type=InjectionPoint(), default=0,
              metavar="N|NAME", help="Fail at the N-th injection point, or at the first "
              "one called NAME, e.g. finish:stopped (restart testing).")
@click.pass_context
def cli(ctx, inventory_path, config_files, dry_run, yes, as_json, verbose, variables,
        injection_point):
    """Move LXC containers between hypervisor hosts whose data lives on local
    storage, replicated by MARS.

    \b
      football migrate vm1 cluster2      move vm1 (and its replica) to cluster2
      football handover vm1 a2           make the replica on a2 the primary
      football lab up                    a local fleet to try it on

    Exit codes: 0 done, 191 illegal (bad usage or input, refused: nothing
    changed), 190 interrupted, 198 serious (failed, container running
    again), 199 critical (failed in the downtime window, container not
    running).
    """
    ctx.obj = Globals(inventory_path, config_files, dry_run, yes, as_json, verbose, variables,
                      injection_point)


def _run(ctx, operation, name, make, phases=None, args=None, show=None, document=False):
    """The one runner of every command that acts on or looks at the fleet:
    the context (inventory, settings, plugins, reporter and run log), the
    operation built by `make(context)` — given its `args` (a dict), by
    `make(context, **args)` after the plugins' `rewrite_args` —, run (only
    `phases` when given), its result shown by `show(context, result)` (an
    operation's summary by default; one JSON `document` with --json); the
    run log is closed on every path."""
    context = ctx.obj.context(operation, name, document=document)
    try:
        op = make(context) if args is None else \
            make(context, **_rewritten_args(context, ctx.info_name, args))
        result = op.run(phases) if phases is not None else op.run()
        (show or _show_summary)(context, result)
        if context.dry_run and not document and not context.reporter.as_json:
            from football.report import counted
            context.reporter.say(f"dry run: {counted(len(context.planner.commands), 'command')} "
                                 "would run; nothing was changed")
        return result
    finally:
        context.reporter.close()


def _operation(ctx, operation, res, make, phases=None, args=None):
    """An operation with phases (migrate, shrink, expand, ...) and a summary."""
    _run(ctx, operation, res, make, phases=phases or (), args=args)


def _show_summary(context, summary):
    if context.dry_run:     # the commands were said as they were planned
        context.reporter.event("summary", dry_run=True, **summary)
    else:
        _print_summary(context, summary)


def _rewritten_args(context, command, args):
    """`args` as a plugin's `rewrite_args` replaced them (the same keys),
    else unchanged."""
    new = context.hooks.first("rewrite_args", command=command, args=dict(args))
    if new is None or new == args:
        return args
    if not isinstance(new, dict) or set(new) != set(args):
        raise Illegal(f"a plugin's rewrite_args for {command} returned {new!r}; expected a "
                      f"dict with the keys {', '.join(sorted(args))}. Nothing was changed")
    context.reporter.say(f"arguments rewritten by a plugin: {args} -> {new}")
    return new


def _print_summary(context, summary):
    reporter = context.reporter
    synced, seconds = summary.get("synced_bytes", 0), summary.get("sync_seconds", 0.0)
    rate = synced / seconds / (1 << 20) if seconds else 0.0
    summary = dict(summary, sync_mib_per_s=round(rate, 1),
                   injection_points=context.points_passed)
    reporter.event("summary", **summary)
    if not reporter.as_json:
        from football.report import summary_line
        reporter.say(summary_line(summary))


@cli.command()
@click.argument("res")
@click.argument("target")
@click.argument("target_secondary", required=False)
@click.option("--two-phase", is_flag=True, help="Sync only the new primary, hand over, then "
              "sync the new secondary from it (over the new hardware's network).")
@click.option("--pre-hand", metavar="HOST", help="First hand RES over to HOST, one of its "
              "current replicas (e.g. to move off a failing primary before the sync).")
@click.option("--post-hand", metavar="HOST", help="Finally hand RES over to HOST, one of the "
              "new replicas.")
@click.pass_context
@reported
def migrate(ctx, res, target, target_secondary, two_phase, pre_hand, post_hand):
    """Move RES to TARGET (a host, or a cluster: primary and secondary chosen
    by placement), optionally with TARGET_SECONDARY. RES:HOST names its
    current host when it cannot be discovered.

    \b
      football migrate vm1 cluster2
      football migrate vm1 b1 b2 --two-phase
      football migrate vm1 cluster2 --pre-hand a2 --post-hand b2
    """
    from football.ops.migrate import Migrate

    _operation(ctx, "migrate", res, lambda c, **args: Migrate(c, **args),
               args=dict(res=res, target=target, target_secondary=target_secondary,
                         two_phase=two_phase, pre_hand=pre_hand, post_hand=post_hand))


def _phase_command(phase):
    @click.argument("res")
    @click.argument("target")
    @click.argument("target_secondary", required=False)
    @click.pass_context
    @reported
    def command(ctx, res, target, target_secondary):
        from football.ops.migrate import Migrate

        _operation(ctx, "migrate", res, lambda c, **args: Migrate(c, **args), phases=(phase,),
                   args=dict(res=res, target=target, target_secondary=target_secondary))

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

    _operation(ctx, "handover", res, lambda c, **args: Handover(c, **args), phases=("finish",),
               args=dict(res=res, host=host))


@cli.command()
@click.argument("res")
@click.argument("size")
@click.pass_context
@reported
def expand(ctx, res, size):
    """Grow RES online (the container keeps running) to SIZE: a plain number
    is the fill level in percent the filesystem shall have afterwards, a
    number with a unit (k, m, g, t) the new size. Every replica's LV grows,
    then MARS, then the filesystem (xfs_growfs).

    \b
      football expand vm1 50      (half full afterwards)
      football expand vm1 20g
    """
    from football.ops.expand import Expand

    _operation(ctx, "expand", res, lambda c, **args: Expand(c, **args),
               args=dict(res=res, size=size))


cli.add_command(expand, "extend")


@cli.command()
@click.argument("res")
@click.argument("size", required=False)
@click.pass_context
@reported
def shrink(ctx, res, size):
    """Shrink RES's volume: its filesystem is copied into a smaller one while
    the container runs, then a short downtime for the last copy and the
    switch. SIZE: a plain number is the fill level in percent the new
    filesystem shall have (default: shrink_percent, 85), a number with a
    unit (k, m, g, t) the new size. The old volume stays as RES-preshrink
    until the new replicas are in sync.

    \b
      football shrink vm1          (85 % full afterwards)
      football shrink vm1 20g
    """
    _shrink(ctx, res, size, None)


def _shrink(ctx, res, size, phases):
    from football.ops.shrink import Shrink

    _operation(ctx, "shrink", res, lambda c, **args: Shrink(c, **args), phases=phases,
               args=dict(res=res, size=size))


def _shrink_phase_command(name, phases, doc):
    @click.argument("res")
    @click.argument("size", required=False)
    @click.pass_context
    @reported
    def command(ctx, res, size):
        _shrink(ctx, res, size, phases)

    command.__doc__ = doc
    return cli.command(name)(command)


_shrink_phase_command("shrink-prepare", ("prepare",),
                      "Only the prepare phase of shrink: the RES-tmp LVs and the first copy.")
_shrink_phase_command("shrink-finish", ("finish",),
                      "Only the finish phase of shrink: the downtime, the switch, the re-joins.")
_shrink_phase_command("shrink-cleanup", ("wait", "cleanup"),
                      "Wait until the replicas are in sync, then remove RES-preshrink and "
                      "RES-tmp (also: give up a prepared shrink).")


def _hosts_and_size(arguments):
    """Host and cluster names start with a letter, sizes and fill levels with
    a digit: (names, size or None)."""
    names = [argument for argument in arguments if not argument[:1].isdigit()]
    sizes = [argument for argument in arguments if argument[:1].isdigit()]
    if len(sizes) > 1:
        raise Illegal(f"more than one size: {' '.join(sizes)}")
    return names, (sizes[0] if sizes else None)


@cli.command("migrate+shrink")
@click.argument("res")
@click.argument("arguments", nargs=-1, required=True, metavar="TARGET [SECONDARY] [SIZE]")
@click.pass_context
@reported
def migrate_shrink(ctx, res, arguments):
    """Migrate RES to TARGET's primary alone, shrink it there, then create the
    secondary (SECONDARY, or placement's choice when TARGET is a cluster) at
    the small size: less traffic than migrate, then shrink. SIZE as for
    shrink (default: the fill level shrink_percent).

    \b
      football migrate+shrink vm1 cluster2
      football migrate+shrink vm1 b1 b2 80
    """
    from football.ops.combined import MigrateShrink

    targets, size = _hosts_and_size(arguments)
    _operation(ctx, "migrate+shrink", res, lambda c, **args: MigrateShrink(c, **args),
               args=dict(res=res, targets=targets, size=size))


@cli.command("migrate+shrink+back")
@click.argument("res")
@click.argument("tmp_primary")
@click.argument("size", required=False)
@click.pass_context
@reported
def migrate_shrink_back(ctx, res, tmp_primary, size):
    """Migrate RES to TMP_PRIMARY (its replicas stay), shrink it there, then
    hand it back to its original primary and drop the temporary replica.
    The original full-size LVs stay as RES-preshrink until it is back.

    \b
      football migrate+shrink+back vm1 b1
    """
    from football.ops.combined import MigrateShrinkBack

    _operation(ctx, "migrate+shrink+back", res, lambda c, **args: MigrateShrinkBack(c, **args),
               args=dict(res=res, tmp_primary=tmp_primary, size=size))


@cli.command("repair-vm")
@click.argument("res")
@click.argument("hosts", nargs=-1, required=True)
@click.pass_context
@reported
def repair_vm(ctx, res, hosts):
    """Start RES again on the first of HOSTS where it runs (after a failed
    migrate or a crash): stop its stack on the other members, make the host
    the MARS primary, mount, start. Exit 199 when it runs nowhere."""
    from football.ops.repair import RepairVm

    _admin(ctx, "repair-vm", res, lambda c: RepairVm(c, res, hosts))


@cli.command("repair-mars")
@click.argument("res")
@click.argument("hosts", nargs=-1, required=True)
@click.pass_context
@reported
def repair_mars(ctx, res, hosts):
    """Emergency: rebuild RES stand-alone on the first of HOSTS that holds
    its LV, from that LV's data, and start it there (split brain, a defective
    log). Every member must answer; the other replicas are dropped (their
    LVs stay for lv-cleanup). Asks first (--yes)."""
    from football.ops.repair import RepairMars

    _admin(ctx, "repair-mars", res, lambda c: RepairMars(c, res, hosts))


def _admin(ctx, operation, name, make):
    """An operation without phases (repairs, locks, clusters, lv-cleanup);
    its result ends the `--json` events."""
    return _run(ctx, operation, name, make, show=lambda context, result: context.reporter.event(
        "result", **{"operation": operation, **result}))


@cli.command()
@click.argument("name", required=False, metavar="[RES|HOST|CLUSTER]")
@click.pass_context
@reported
def status(ctx, name):
    """Every host (reachable? MARS cluster, VG free, locks), every resource
    (role, disk and replication state, sync rest, LV, container) and the
    unfinished operations; only those of RES, HOST or CLUSTER when given.
    With --json: one JSON document."""
    from football.ops.status import Status, render

    _report(ctx, "status", name or "all", lambda context: Status(context, name), render)


def _report(ctx, operation, name, make, render):
    """A command that reports (status, score, plans): its result as one
    JSON document with --json, else `render`ed."""
    def show(context, report):
        if ctx.obj.as_json:
            click.echo(json.dumps(report, indent=2, sort_keys=True))
        else:
            render(report)

    _run(ctx, operation, name, make, show=show, document=True)


@cli.command()
@click.pass_context
@reported
def score(ctx):
    """The fleet's score (as Ganeti's hbal: lower is better) and each term:
    the spreads of free VG, free memory, containers and CPU load over the
    online hosts, the penalties (draining hosts, shared failure domains,
    no secondary); per host its fractions. With --json: one JSON document."""
    from football.ops.planning import ScoreReport, render_score

    _report(ctx, "score", "fleet", ScoreReport, render_score)


def _move_limits(function):
    """--max and --max-per-target of a command whose moves run as screener jobs."""
    function = click.option("--max-per-target", "max_per_target", type=click.IntRange(min=1),
                            default=1, show_default=True,
                            help="At most N of its moves to one target host at once.")(function)
    return click.option("--max", "max_running", type=click.IntRange(min=1), default=4,
                        show_default=True, help="At most N of its moves run at once.")(function)


@cli.command()
@click.argument("plan_id", required=False, metavar="[execute PLAN-ID]", nargs=-1)
@click.option("--plan", "plan_only", is_flag=True, help="Print the plan (the default).")
@click.option("--execute", is_flag=True, help="Plan, then run the moves as screener jobs and "
              "wait for them.")
@click.option("--auto", is_flag=True, help="As --execute, but only when the score stayed above "
              "balance_threshold for balance_hold runs and the plan gains balance_margin of the "
              "score (the football-balance timer).")
@click.option("--systemd-unit", is_flag=True, help="Print football-balance.service and "
              "football-balance.timer (which run --auto with this command line's --config, "
              "--inventory, --var) and exit.")
@click.option("--schedule", default="hourly", show_default=True,
              help="With --systemd-unit: the timer's OnCalendar.")
@_move_limits
@click.pass_context
@reported
def balance(ctx, plan_id, plan_only, execute, auto, systemd_unit, schedule, max_running,
            max_per_target):
    """Plan moves that lower the fleet's score (handovers, migrations),
    best first, each with its gain and the bytes it syncs; the plan is
    saved under the state dir by its id. With --json: one JSON document.

    \b
      football balance --plan                  the plan (saved; it expires after plan_expiry)
      football balance execute PLAN-ID         run a saved plan, each move checked again
      football balance --execute               plan and run
      football balance --auto                  run only on a lasting imbalance (the timer)

    The moves run as screener jobs (a worker must run): --max at once, at
    most --max-per-target to one target host. No balancing while a host is
    draining; a resource with a screener job, or moved within `cooldown`,
    stays where it is."""
    from football.ops.fleetmoves import BalanceRun, balance_units
    from football.ops.planning import BalancePlanning, render_plan

    if systemd_unit:
        ctx.obj.settings()          # a unit of settings that do not pass fails at every start
        for name, text in balance_units(ctx.obj.job_options(), schedule).items():
            click.echo(f"# {name}\n{text}")
        return
    if plan_id:
        if len(plan_id) != 2 or plan_id[0] != "execute":
            raise Illegal(f"balance takes `execute PLAN-ID`, not {' '.join(plan_id)!r}; saved "
                          "plans are under the state dir's plans/")
        plan_id = plan_id[1]
    if sum(map(bool, (plan_only, execute, auto, plan_id))) > 1:
        raise Illegal("choose one of --plan, --execute, --auto and `execute PLAN-ID`")
    if not (execute or auto or plan_id):
        _report(ctx, "balance", "fleet", BalancePlanning, render_plan)
        return
    _run(ctx, "balance", "fleet", lambda context: BalanceRun(
        context, plan_id=plan_id or None, auto=auto, job_options=ctx.obj.job_options(),
        max_running=max_running, max_per_target=max_per_target))


@cli.command()
@click.argument("name", metavar="HOST|CLUSTER")
@click.option("--plan", "plan_only", is_flag=True, help="Print the plan: where every primary "
              "and replica on HOST|CLUSTER would go (the default).")
@click.option("--execute", is_flag=True, help="Mark the hosts draining, run the plan's moves "
              "as screener jobs until nothing is left on them, mark them evacuated.")
@_move_limits
@click.pass_context
@reported
def evacuate(ctx, name, plan_only, execute, max_running, max_per_target):
    """Empty HOST (or every host of CLUSTER) for decommissioning: a target
    for every primary and replica there; the whole plan fails, listing
    what does not fit, when capacity lacks (nothing is stopped in place).

    With --execute: the hosts become draining (recorded on them: placement
    everywhere leaves them out), their moves run as screener jobs (a worker
    must run; --max, --max-per-target), then they are evacuated. Run again,
    it goes on from where it is. `football restore HOST` brings back what
    came from a host."""
    from football.ops.planning import EvacuationPlanning, hosts_named, render_plan

    if plan_only and execute:
        raise Illegal("choose one of --plan and --execute")
    if not execute:
        _report(ctx, "evacuate", name, lambda context: EvacuationPlanning(context, name),
                render_plan)
        return
    from football.ops.fleetmoves import Evacuate

    _run(ctx, "evacuate", name, lambda context: Evacuate(
        context, hosts_named(context.inventory, name), job_options=ctx.obj.job_options(),
        max_running=max_running, max_per_target=max_per_target))


@cli.command()
@click.argument("host")
@click.option("--skip", is_flag=True, help="Only mark HOST active: move nothing back (also "
              "calls off an evacuation while it drains).")
@_move_limits
@click.pass_context
@reported
def restore(ctx, host, skip, max_running, max_per_target):
    """Take an evacuated HOST back into use: it becomes restoring, what was
    moved away from it moves back (as screener jobs), then it is active."""
    from football.ops.fleetmoves import Restore

    _run(ctx, "restore", host, lambda context: Restore(
        context, host, skip=skip, job_options=ctx.obj.job_options(), max_running=max_running,
        max_per_target=max_per_target))


@cli.command()
@click.argument("host")
@click.pass_context
@reported
def failover(ctx, host):
    """HOST is gone for good (it died, or was switched off before it was
    evacuated): every resource with a replica there goes on without it. A
    consistent replica takes over where HOST was the primary (marsadm
    --force primary) and starts the container; HOST's replicas are dropped
    from MARS (their LVs stay there). HOST must not answer, and you confirm
    (--yes) that it is switched off: a container it still ran would run
    twice. --dry-run says the commands. Exit 199 when a resource could not
    be taken over (the others are); run it again, it goes on."""
    from football.ops.failover import Failover

    _admin(ctx, "failover", host, lambda c: Failover(c, host))


@cli.command()
@click.argument("name", metavar="HOST|CLUSTER")
@click.pass_context
@reported
def decommission(ctx, name):
    """HOST (or every host of CLUSTER) leaves the fleet for good: it holds
    no replica any more (evacuated, or failed over) and leaves its MARS
    cluster — by itself where it answers (marsadm leave-cluster; it must be
    evacuated), else dropped by a host of its cluster (marsadm --host=HOST
    leave-cluster). HOST may be out of the inventory already; otherwise take
    it out afterwards. --dry-run says the commands."""
    from football.ops.decommission import Decommission

    _admin(ctx, "decommission", name, lambda c: Decommission(c, name))


@cli.command()
@click.argument("item")
@click.argument("hosts", nargs=-1, required=True)
@click.option("--owner", default=None, help="Who holds it (default operator@<this host>).")
@click.pass_context
@reported
def lock(ctx, item, hosts, owner):
    """Take lock ITEM on all HOSTS or on none (waiting up to
    lock_retry_timeout while a run holds it). Operations take the item
    `football`: `football lock football a1` pauses every operation on a1
    (they wait lock_retry_timeout, then exit 191) until `football unlock`."""
    from football.ops.lock import Lock

    _admin(ctx, "lock", item, lambda c: Lock(c, item, hosts, owner))


@cli.command()
@click.argument("item")
@click.argument("hosts", nargs=-1, required=True)
@click.pass_context
@reported
def unlock(ctx, item, hosts):
    """Release lock ITEM on HOSTS, whoever holds it (the locks of dead runs
    too); says whose lock it removed."""
    from football.ops.lock import Unlock

    _admin(ctx, "unlock", item, lambda c: Unlock(c, item, hosts))


@cli.command("lv-cleanup")
@click.argument("res")
@click.option("--do-it", is_flag=True, help="Remove them (default: only list them).")
@click.option("--force", is_flag=True,
              help="Also when RES is no MARS resource and no operation of this controller "
                   "ran on it (it is not Football's: an operator's own volume of that name "
                   "is removed too).")
@click.pass_context
@reported
def lv_cleanup(ctx, res, do_it, force):
    """List the LVs named RES that no MARS replica uses (not a member, not
    mounted, no container running, no unfinished operation plans one there);
    remove them with --do-it."""
    from football.ops.lvcleanup import LvCleanup

    _admin(ctx, "lv-cleanup", res, lambda c: LvCleanup(c, res, do_it, force))


@cli.command("merge-cluster")
@click.argument("host1")
@click.argument("host2")
@click.pass_context
@reported
def merge_cluster(ctx, host1, host2):
    """Merge the MARS clusters of HOST1 and HOST2 (`marsadm merge-cluster`
    on HOST2); nothing to do when they are one already."""
    from football.ops.cluster import MergeCluster

    _admin(ctx, "merge-cluster", host1, lambda c: MergeCluster(c, host1, host2))


@cli.command("split-cluster")
@click.argument("hosts", nargs=-1, required=True)
@click.pass_context
@reported
def split_cluster(ctx, hosts):
    """Split the MARS clusters of HOSTS so that hosts sharing no resource
    are apart, but hosts of one inventory cluster stay together
    (`marsadm split-cluster`, then merge-cluster where needed)."""
    from football.ops.cluster import SplitCluster

    _admin(ctx, "split-cluster", hosts[0], lambda c: SplitCluster(c, hosts))


def _gate_file(ctx, make, res, inventory=False):
    """A gate file of the waiting plugin in this controller's state dir
    (and the inventory, where `inventory`)."""
    from football.ops.base import check_resource_name

    if res:
        check_resource_name(res)
    context = ctx.obj.context("gate", res or "all")
    context.reporter.close()
    path = make(context.config.state_dir, res) if res else make(context.config.state_dir)
    if not context.dry_run:
        path.parent.mkdir(parents=True, exist_ok=True)
    return (path, context.inventory) if inventory else path


@cli.command()
@click.argument("res", required=False)
@click.pass_context
@reported
@eventful
def pause(ctx, res):
    """Hold every operation of RES (or of all resources) before its next
    downtime window until `football unpause`; held time does not count
    toward downtime_gate_timeout. Where controllers share a jobs' database
    (jobs_database_url) it holds every controller's runs and jobs."""
    from football.ops.status import where_known
    from plugins.waiting import Pause, pause_file

    _, inventory = _gate_file(ctx, pause_file, res, inventory=True)
    dry_run = ctx.obj.dry_run
    paused = Pause(ctx.obj.settings(), res)
    before = paused.exists()
    if not dry_run:
        paused.set()            # at once; a typo's is taken back below
    if res:
        known, unasked = where_known(inventory, res)
        if not known and not unasked:
            if not before and not dry_run:
                paused.clear()
            paused.close()
            raise Illegal(f"unknown resource {res}: no host of the inventory has it; nothing "
                          "was paused (`football status` lists the resources; `football "
                          "pause` with no resource pauses them all)")
        if not known:
            click.echo(f"{res} is on none of the hosts that answered; "
                       f"{'would pause it' if dry_run else 'paused'} all the same, "
                       f"it may be on {', '.join(unasked)} (not asked: unreachable)", err=True)
    paused.close()
    what = res or "every resource"
    _told(ctx, "would-pause" if dry_run else "paused",
          f"would pause {what} ({paused.where}); nothing changed (--dry-run)" if dry_run
          else f"paused {what} ({paused.where})",
          resource=res or "*", where=paused.where, was_paused=before)


@cli.command()
@click.argument("res", required=False)
@click.pass_context
@reported
@eventful
def unpause(ctx, res):
    """Let the operations of RES (or of all resources) go on."""
    from plugins.waiting import Pause, pause_file

    _gate_file(ctx, pause_file, res)
    dry_run = ctx.obj.dry_run
    paused = Pause(ctx.obj.settings(), res)
    was_paused = paused.exists() or paused.path.exists()
    what = res or "every resource"
    if was_paused:
        text = f"would unpause {what}; nothing changed (--dry-run)" if dry_run \
            else f"unpaused {what}"
    else:
        text = ((f"{res} was not paused" if res else "there was no pause of all resources")
                + (" (in the jobs' database)" if paused.store else
                   f" ({paused.path} does not exist)"))
    if not dry_run:
        paused.clear()
    paused.close()
    _told(ctx, "would-unpause" if dry_run else "unpaused", text, resource=res or "*",
          was_paused=was_paused)


@cli.command("continue")
@click.argument("resources", nargs=-1, required=True, metavar="RES...")
@click.pass_context
@reported
@eventful
def continue_(ctx, resources):
    """Release RES waiting at the operator's gate before its downtime
    (gate_before_downtime): its next downtime window may begin."""
    from football.locks import turn_holder
    from plugins.waiting import continue_file

    dry_run = ctx.obj.dry_run
    for res in resources:
        path = _gate_file(ctx, continue_file, res)
        if not dry_run:
            path.touch()
        running = bool(turn_holder(path.parent, res))
        later = "" if running else (f" (no run of {res} goes on now: the next one's downtime "
                                    "begins at its gate without waiting" +
                                    ("" if dry_run else f"; `rm {path}` takes it back") + ")")
        _told(ctx, "would-continue" if dry_run else "continued",
              f"{res}: would be let go offline; nothing changed (--dry-run){later}" if dry_run
              else f"{res}: may go offline{later}", resource=res, running=running)


@cli.command("config")
@click.pass_context
@reported
@eventful
def show_config(ctx):
    """Every tunable with its value, where the value came from, and its meaning."""
    from football.config import TUNABLES

    config = ctx.obj.settings()         # as the operations get them (the lab's defaults too)
    for name, value in config.items():
        _told(ctx, "setting", f"{name} = {value!r}  ({config.origin[name]}) — "
              f"{TUNABLES[name].meaning}", name=name, value=value, origin=config.origin[name],
              meaning=TUNABLES[name].meaning)


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
      football lab add vm2 a2 a1         another container like vm1 (on a2, replica on a1)
      football lab status [--json]       hosts, daemons, resources, containers
      football lab exec a2 -- marsadm view vm1
      football lab down                  remove everything it created
    """
    from football.lab import Lab

    started = time.monotonic()

    def echo(line):
        """Each step with the seconds since the command started: the slow ones show."""
        click.echo(f"[{time.monotonic() - started:5.1f} s] {line}", err=True)

    ctx.obj = Lab(lab_dir, inventory_path, echo=echo)


@lab.command("up")
@click.option("--no-wait", is_flag=True, help="Do not wait for the demo's replica to be in sync.")
@click.option("--no-worker", is_flag=True, help="Do not start the lab's screener worker.")
@click.pass_obj
@reported
def lab_up(the_lab, no_wait, no_worker):
    """Create the hosts, start marsd, create the clusters and VGs, the demo
    container (vm1 on a1, replicated to a2, running its workload) and a
    screener worker for the lab's jobs (`football worker --id lab`)."""
    _without_dry_run("football lab up")
    the_lab.up(wait_sync=not no_wait, worker=not no_worker)
    _print_status(the_lab.status(), the_lab.worker())


@lab.command("add")
@click.argument("res")
@click.argument("primary")
@click.argument("secondary", required=False)
@click.option("--size", default="320M", show_default=True,
              help="Size of its volume (xfs needs at least 320M).")
@click.option("--no-wait", is_flag=True, help="Do not wait for the replica to be in sync.")
@click.pass_obj
@reported
def lab_add(the_lab, res, primary, secondary, size, no_wait):
    """Another container like the demo: RES on PRIMARY (busybox, the lab
    workload), replicated to SECONDARY when given, and started. `lab up`
    starts it again; re-running the same `add` completes an interrupted one."""
    _without_dry_run("football lab add")
    the_lab.add(res, primary, secondary, size, wait_sync=not no_wait)


@lab.command("demo")
@click.pass_obj
@reported
def lab_demo(the_lab):
    """Bring the lab up and migrate the demo container to the other cluster
    while its workload writes; print sync throughput, downtime and the data
    verification (what `make demo` runs). Exit 1 if any record was lost."""
    from football.demo import run_demo

    _without_dry_run("football lab demo")
    if not run_demo(the_lab, echo=click.echo):
        sys.exit(1)


@lab.command("down")
@click.pass_obj
@reported
def lab_down(the_lab):
    """Stop containers and daemons, unmount, detach loop devices, remove the lab dir."""
    _without_dry_run("football lab down")
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
        _print_status(status, the_lab.worker())


@lab.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("host")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_obj
@reported
def lab_exec(the_lab, host, command):
    """Run COMMAND on lab host HOST with the host's environment, as Football
    does (`football lab exec a2 -- marsadm view vm1`). Exits with its code
    (killed by signal N: 128 + N, as a shell says)."""
    _without_dry_run("football lab exec")
    result = the_lab.exec(host, list(command))
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    sys.exit(exit_status(result.exit_code))


def _print_status(status, worker=None):
    """The lab's hosts and resources (tables), and its screener worker."""
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
    if worker is not None:
        console.print(f"screener worker: pid {worker['pid']}, "
                      f"{'running' if worker['running'] else '[red]not running[/]'}")


@cli.command()
@click.option("--id", "worker_id", default=None, metavar="NAME",
              help="This worker's name (default: the host name); a restarted worker of the "
              "same name resumes the jobs it left running.")
@click.option("--systemd-unit", is_flag=True, help="Print the football-worker.service unit "
              "that runs this worker (with this command line's --config, --inventory, --var "
              "and --id) instead of running it.")
@click.pass_context
@reported
def worker(ctx, worker_id, systemd_unit):
    """Run the screener's jobs (foreground; in production the
    football-worker systemd unit). Jobs come from the jobs' database
    (jobs_database_url, default SQLite in state_dir): several workers on
    several controllers may share one PostgreSQL database.

    SIGTERM or Ctrl-C stops it: the running operations are interrupted as by
    Ctrl-C (each cleans up; one in its downtime window finishes or
    compensates it) and their jobs resume on another live worker (at once)
    or when this one starts again. A worker without a heartbeat for
    worker_dead_after seconds (killed, its controller down) is taken over
    the same way by a live one.

    Its jobs run with this command line's --config, --inventory and --var
    (the queued command's own win where both set one), always in this
    worker's state_dir and with its inventory, if it has one. It runs at most
    worker_jobs (20) jobs at once; the others wait queued, or go to other
    workers. Hourly it keeps house: finished jobs archived after
    jobs_archive_days (30), archived jobs, run logs, expired plans and
    finished journals deleted after history_days (365).

    \b
      football --config /etc/football.yml worker --systemd-unit \\
          > /etc/systemd/system/football-worker.service"""
    import os
    import shlex
    import signal
    import threading

    from football.screener import ChildProcess, Worker, worker_unit
    from football.toolserver import ToolServer

    if systemd_unit:
        ctx.obj.settings()          # a unit of settings that do not pass fails at every start
        (text,) = worker_unit(ctx.obj.job_options(), worker_id).values()
        click.echo(text, nl=False)
        return
    _without_dry_run("football worker")     # (its jobs would run for real)
    config = ctx.obj.settings()
    tools = ToolServer(share=True)      # the jobs' tool commands share this one
    executor = ChildProcess(shlex.split(config.job_command) or None, env=tools.environment(),
                            options=ctx.obj.job_options(injection=False),
                            state_dir=config.state_dir)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda number, frame: stop.set())
    the_worker = Worker(config, worker_id, executor,
                        say=lambda text: click.echo(f"football: {text}", err=True))
    the_worker.start()
    while not stop.wait(1.0) and not the_worker.taken_over.is_set():
        pass
    the_worker.stop()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)         # not waiting for DBOS's threads: their jobs resume on the next worker


@cli.group()
def screener():
    """Many operations as background jobs, with limits, states and resume;
    a worker (`football worker`) runs them.

    \b
      football screener start migrate vm1 cluster2      one job (its id: vm1)
      football screener run moves.csv --max 4 --max-per target=1 --dst_cluster==c2
      football screener list [--state failed]
      football screener show vm1                        its events and result
      football screener start --gate migrate vm2 b1     waits before its downtime ...
      football screener continue vm2                    ... until released (or: continue 3, the 3 oldest)
      football screener kill vm1                        a queued job never runs, a running one is interrupted
      football screener restart vm1                     a failed job again (resumes)
      football screener purge [--days 30]               archive old finished jobs
      football screener purge --forget 365              ... and delete archived ones that old

    \b
    A worker archives jobs itself jobs_archive_days (30) after they ended (not a
    critical one, nor one that left its operation unfinished) and deletes archived
    jobs, run logs, expired plans and finished journals after history_days (365).

    \b
    States: queued, running, then
      waiting    at the operator gate before its downtime window (--gate, a run's gate
                 column, or gate_before_downtime): the container still runs at its
                 source until `football screener continue`
      condition  at a limit (a sync, shrink or handover slot on a host), a lock, a pause
                 or outside business_hours: goes on by itself
      delayed    between its downtime window and its cleanup (cleanup_delay)
      done failed serious critical interrupted illegal timeouted archived
    """


def _job_store(ctx, notifying=False):
    """The jobs' database; `notifying`: for a command that changes a job's
    state (queues, kills), which it tells the `notify` hook."""
    from football.hooks import Hooks
    from football.screener import JobStore, hook_notifier

    config = ctx.obj.settings()
    if not notifying:
        return JobStore(config)

    def warn(text):
        click.echo(f"football: warning: {text}", err=True)

    return JobStore(config, notify=hook_notifier(Hooks(config=config), warn))


def _job_spec(operation, resource, args, where=""):
    """The job `football <operation> <resource> <args>`, its arguments parsed
    as that command parses them; `Illegal` naming what is wrong."""
    from football.ops.base import check_resource_name
    from football.runfile import ALIASES, PARAMETERS
    from football.screener import JobSpec

    operation = ALIASES.get(operation, operation)
    if operation not in PARAMETERS:
        swapped = ALIASES.get(resource, resource)   # screener.sh's habit: the id first
        hint = f" (the operation comes first: {' '.join([swapped, operation, *args])})" \
            if swapped in PARAMETERS else ""
        raise Illegal(f"{where}unknown operation {operation!r}{hint}; the screener runs "
                      f"{', '.join(PARAMETERS)}; nothing was queued")
    check_resource_name(resource)
    try:
        cli.commands[operation].make_context(operation, [resource, *args])
    except click.ClickException as error:
        raise Illegal(f"{where}{' '.join(['football', operation, resource, *args])}: "
                      f"{error.format_message().rstrip('.')}; nothing was queued") from None
    return JobSpec(resource, operation, list(args))


def _no_worker_said(store):
    if not store.live_workers():
        click.echo("football: no worker is running: queued jobs wait until one does; start "
                   "one with `football worker` (in production the football-worker unit)",
                   err=True)


GATE_HELP = ("The job waits (state `waiting`, the container still running at its "
             "source) before its downtime window until `football screener continue`.")


@screener.command("start", context_settings={"ignore_unknown_options": True})
@click.option("--id", "job_id", default=None, help="The job's id (default: the resource).")
@click.option("--gate", is_flag=True, help=GATE_HELP)
@click.argument("operation")
@click.argument("res")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
@reported
@eventful
def screener_start(ctx, job_id, gate, operation, res, args):
    """Queue one job: `football OPERATION RES ARGS...` (migrate, shrink,
    expand, handover, migrate+shrink, migrate+shrink+back); prints its id.
    A resource has one job at a time: refused (191) while it has one."""
    from football.screener import JobExists

    spec = _job_spec(operation, res, args)
    spec.id, spec.gate = job_id, gate
    store = _job_store(ctx, notifying=True)
    try:
        if ctx.obj.dry_run:
            queued = spec.id or spec.resource
            if store.live_job(queued):
                raise JobExists([queued])
            if store.running_job_of(spec.resource):
                raise JobExists([spec.resource])
            _told(ctx, "would-queue", f"would queue {queued}: {' '.join(spec.command)}; "
                  "nothing changed (--dry-run)", job=queued, command=spec.command)
            return
        [queued] = store.queue([spec], ctx.obj.job_options())
        _no_worker_said(store)
    finally:
        store.close()
    if ctx.obj.as_json:
        click.echo(json.dumps({"event": "queued", "job": queued, "command": spec.command}))
    else:
        click.echo(queued)


class _RunCommand(click.Command):
    """`screener run`: a filter is a filter also where its column is named
    like an option of `run` (`--gate==yes`, `--max==2`): click read it as
    that option with a value ("Option '--gate' does not take a value")."""

    def parse_args(self, ctx, args):
        from football.runfile import FILTER

        filters = tuple(arg for arg in args if FILTER.fullmatch(arg))
        rest = super().parse_args(ctx, [arg for arg in args if not FILTER.fullmatch(arg)])
        ctx.params["filters"] = filters + tuple(ctx.params.get("filters") or ())
        return rest


@screener.command("run", cls=_RunCommand, context_settings={"ignore_unknown_options": True})
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--max", "max_running", type=click.IntRange(min=1), default=None,
              help="At most N jobs of this run run at once.")
@click.option("--max-per", "max_per", multiple=True, metavar="COLUMN=N",
              help="At most N jobs with the same value in COLUMN run at once.")
@click.option("--gate", is_flag=True, help=GATE_HELP.replace("The job waits", "Every job "
              "waits") + " A `gate` column (yes/no) gates single rows.")
@click.argument("filters", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
@reported
@eventful
def screener_run(ctx, file, max_running, max_per, gate, filters):
    """Queue a job for each row of FILE (CSV, `;` or `,`, a header row with
    `resource` and `operation` columns, the arguments in columns named like
    the operation's parameters or in an `args` column) that passes the
    filters --COLUMN==value, --COLUMN!=value, --COLUMN=~regex. Rows whose
    resource has a job already are skipped. With --dry-run: only say what
    would be queued. A problem with the file: one line, exit 191, nothing
    queued.

    \b
      football screener run moves.csv --max 4 --max-per target=1 --customer=~^acme
    """
    from football import runfile

    header, jobs = runfile.read(file)
    selected = runfile.select(header, jobs, runfile.parse_filters(filters))
    limit = runfile.parse_max_per(max_per)
    if limit and limit[0].lower() not in header:
        raise runfile.RunFileError(f"--max-per {limit[0]}: no column {limit[0]!r} in {file} "
                                   f"(columns: {', '.join(header)}); nothing was queued")
    specs = []
    for job in selected:
        spec = _job_spec(job.operation, job.resource, job.args, f"{file} line {job.line}: ")
        if limit:
            spec.partition = job.row[limit[0].lower()]
        spec.gate = gate or runfile.gated(job, file)
        specs.append(spec)
    if not limit:
        limit = _per_slot_host(ctx, specs)
    store = _job_store(ctx, notifying=True)
    try:
        _run_queued(ctx, store, Path(file), specs, max_running, limit)
    finally:
        store.close()


def _per_slot_host(ctx, specs):
    """Without --max-per: the jobs partitioned by the host slot each waits
    for first (`screener.partition_by_slot`); the primaries are asked once,
    of every inventory host, where a shrink or handover is in the run. The
    limit, as --max-per's (what, N); None where no job has a slot host (or
    no inventory loads)."""
    from football.screener import SLOT_LIMITS, partition_by_slot

    try:
        inventory = ctx.obj.inventory()
    except (InventoryError, FootballError):
        return None
    asking = any(spec.operation in ("shrink", "handover") for spec in specs)
    primaries = _designated_primaries(ctx, inventory) if asking else {}
    settings = ctx.obj.settings()
    return partition_by_slot(specs, inventory, primaries,
                             {kind: getattr(settings, name) for kind, name in SLOT_LIMITS.items()})


def _designated_primaries(ctx, inventory):
    """{resource: designated primary} as the inventory's hosts say
    (`marsadm view-get-primary all` on each, in parallel); a resource they
    disagree on, or that no host that answered names, is left out."""
    from football import facts
    from football.hooks import Hooks
    from football.ops.base import in_parallel

    Hooks(config=ctx.obj.settings()).apply_host_layout(inventory)

    def ask(host):
        try:
            return facts.view_all(host, "get-primary", timeout=30)
        except (TransportError, FootballError):
            return {}

    said = {}
    for answer in in_parallel(ask, list(inventory.hosts.values())):
        for res, primary in answer.items():
            if primary:
                said.setdefault(res, set()).add(primary)
    return {res: names.pop() for res, names in said.items() if len(names) == 1}


def _run_queued(ctx, store, path, specs, max_running, limit):
    as_json = ctx.obj.as_json

    def tell(kind, spec, text, **fields):
        if as_json:
            click.echo(json.dumps({"event": kind, "job": spec.resource, **fields}))
        else:
            click.echo(f"{spec.resource}: {text}")

    fresh = []
    for spec in specs:
        existing = store.live_job(spec.resource) or store.running_job_of(spec.resource)
        if existing:
            tell("skipped", spec, f"skipped: it has the job {existing['id']} "
                 f"({existing['state']})", state=existing["state"])
        else:
            fresh.append(spec)
    queue = f"run-{path.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    limits = ", ".join(filter(None, [max_running and f"at most {max_running} at once",
                                     limit and f"at most {limit[1]} per {limit[0]}"]))
    for spec in fresh:
        what, alone = " ".join(spec.command), f"resource {spec.resource}"
        tell("would-queue" if ctx.obj.dry_run else "queued", spec,
             f"{'would queue' if ctx.obj.dry_run else 'queued'}: {what}"
             f"{f' (partition {spec.partition})' if spec.partition not in (None, alone) else ''}",
             command=spec.command, partition=spec.partition, queue=queue)
    if not as_json:
        click.echo(f"{len(fresh)} job(s) {'would be ' if ctx.obj.dry_run else ''}queued"
                   f"{f', {len(specs) - len(fresh)} skipped' if len(fresh) < len(specs) else ''}"
                   f" (queue {queue}{f': {limits}' if limits else ''})")
    if ctx.obj.dry_run or not fresh:
        return
    store.register_queue(queue, max_running, limit[1] if limit else None)
    store.queue(fresh, ctx.obj.job_options(), queue=queue, run=path.name)
    _no_worker_said(store)


@screener.command("continue")
@click.argument("targets", nargs=-1, required=True, metavar="ID...|N")
@click.pass_context
@reported
@eventful
def screener_continue(ctx, targets):
    """Release jobs waiting at the operator gate before their downtime
    window (state `waiting`): the jobs ID..., or the N oldest waiting ones.
    Each goes on at its next poll; a released job does not wait again, also
    when it resumes on another worker. A job that is not waiting: exit 191,
    nothing released."""
    store = _job_store(ctx, notifying=True)
    try:
        if len(targets) == 1 and targets[0].isdigit() and store.live_job(targets[0]) is None:
            job_ids = store.oldest_waiting(int(targets[0]))
            if not job_ids:
                raise Illegal("no job waits at the gate (see `football screener list --state "
                              "waiting`); nothing was released")
        else:
            job_ids = targets
        released = store.release(job_ids, dry_run=ctx.obj.dry_run)
    finally:
        store.close()
    for job_id in released:
        if ctx.obj.dry_run:
            _told(ctx, "would-continue", f"{job_id}: would be released into its downtime "
                  "window; nothing changed (--dry-run)", job=job_id)
        else:
            click.echo(json.dumps({"event": "continued", "job": job_id}) if ctx.obj.as_json
                       else f"{job_id}: released into its downtime window")


def selecting(function):
    """--run and --state: the jobs a command acts on, instead of their IDs."""
    function = click.option("--state", default=None, metavar="STATE",
                            help="The jobs in STATE (as `list` shows it).")(function)
    return click.option("--run", "run", default=None, metavar="RUN",
                        help="The jobs of RUN: a run file's name (moves.csv) or its queue "
                             "(run-moves-..., balance-...).")(function)


def of_run(job, run):
    """Whether `job` is of the run named `run`: its file's name or its queue."""
    return run in (job["run"], job["queue"])


def _selected(store, job_ids, run, state, why_not, verb):
    """The IDs of the jobs a command acts on: `job_ids`, or those of `run`
    and/or in `state` that it may act on (`why_not(job)` is None). Every
    named job is checked before any is acted on: a bad one is one line,
    exit 191, nothing done."""
    from football.jobdb import STATES
    from football.screener import shown_state

    if job_ids and (run or state):
        raise Illegal(f"give job IDs or --run/--state, not both; nothing was {verb}")
    if not job_ids and not (run or state):
        raise Illegal(f"which jobs? give their IDs, --run RUN or --state STATE; nothing was "
                      f"{verb}")
    if state is not None and state not in STATES:
        raise Illegal(f"--state {state!r}: one of {', '.join(STATES)}; nothing was {verb}")
    jobs = store.jobs()
    if job_ids:
        by_id = {job["id"]: job for job in jobs}
        problems = [f"no job {job_id!r}" if job_id not in by_id else
                    f"job {job_id} is not {verb}: {why_not(by_id[job_id])}"
                    for job_id in dict.fromkeys(job_ids)
                    if job_id not in by_id or why_not(by_id[job_id])]
        if problems:
            raise Illegal(f"{'; '.join(problems)}; nothing was {verb} (see `football screener "
                          "list`)")
        return list(dict.fromkeys(job_ids))
    if run is not None and not any(of_run(job, run) for job in jobs):
        runs = sorted({job["run"] for job in jobs if job["run"]})
        raise Illegal(f"no run {run!r} among the jobs (runs: {', '.join(runs) or 'none'}); "
                      f"nothing was {verb}")
    timeout = store.config.session_timeout
    chosen = [job for job in jobs if (run is None or of_run(job, run))
              and (state is None or shown_state(job, timeout) == state) and not why_not(job)]
    # the queued first: killed, none of them begins while the running ones end
    return [job["id"] for job in sorted(chosen, key=lambda job: job["state"] != "queued")]


@screener.command("restart")
@click.argument("job_ids", nargs=-1, metavar="[ID...]")
@selecting
@click.pass_context
@reported
@eventful
def screener_restart(ctx, job_ids, run, state):
    """Queue finished jobs again (failed, serious, interrupted, illegal,
    timeouted; not done or critical): the same command in the same queue,
    so the operation resumes from its journal. The old job is archived
    (`list --state archived`). Which: their IDs, or `--run RUN` and/or
    `--state STATE` (`restart --run moves.csv`: the run's jobs that did not
    end done; `--state failed`: every failed one)."""
    from football.screener import why_not_restarted

    store = _job_store(ctx, notifying=True)
    try:
        selected = _selected(store, job_ids, run, state, why_not_restarted, "restarted")
        if not selected and not ctx.obj.as_json:
            click.echo("no job to restart")
        for job_id in selected:
            if ctx.obj.dry_run:
                _told(ctx, "would-queue", f"{job_id}: would be queued again; nothing changed "
                      "(--dry-run)", job=job_id)
                continue
            store.restart(job_id)
            click.echo(json.dumps({"event": "queued", "job": job_id}) if ctx.obj.as_json
                       else f"{job_id}: queued again")
        if selected and not ctx.obj.dry_run:
            _no_worker_said(store)
    finally:
        store.close()


@screener.command("kill")
@click.argument("job_ids", nargs=-1, metavar="[ID...]")
@selecting
@click.pass_context
@reported
@eventful
def screener_kill(ctx, job_ids, run, state):
    """Kill jobs: a queued one never runs; a running one's operation is
    interrupted as by Ctrl-C (it cleans up; inside its downtime window it
    finishes the window or compensates, never stops half-way) and the job
    ends `interrupted` (`restart` resumes it). Which: their IDs, or `--run
    RUN` and/or `--state STATE` (`kill --run moves.csv`: stop a run; `kill
    --state queued`: nothing more begins)."""
    from football.screener import why_not_killed

    store = _job_store(ctx, notifying=True)
    try:
        selected = _selected(store, job_ids, run, state, why_not_killed, "killed")
        if not selected and not ctx.obj.as_json:
            click.echo("no job to kill")
        for job_id in selected:
            if ctx.obj.dry_run:
                queued = (store.live_job(job_id) or {}).get("state") == "queued"
                _told(ctx, "would-kill", f"{job_id}: would be killed " + (
                      "before it starts" if queued else "(its worker would interrupt the "
                      "operation)") + "; nothing changed (--dry-run)", job=job_id,
                      cancelled=queued)
                continue
            cancelled = store.kill(job_id)
            text = "killed before it started" if cancelled else \
                "its worker interrupts the operation"
            click.echo(json.dumps({"event": "killed", "job": job_id, "cancelled": cancelled})
                       if ctx.obj.as_json else f"{job_id}: {text}")
    finally:
        store.close()


@screener.command("purge")
@click.option("--days", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="Archive the jobs that finished more than this many days ago.")
@click.option("--forget", type=click.FloatRange(min=0), metavar="DAYS",
              help="Also delete the archived jobs that finished more than DAYS ago: their "
                   "events and the engine's records of them (they are gone from `show`).")
@click.pass_context
@reported
@eventful
def screener_purge(ctx, days, forget):
    """Archive old finished jobs: their resources may get new jobs, `list`
    no longer shows them (`list --state archived` does, `show` still
    does). With --forget, delete the old archived ones."""
    from football.screener import purge_before

    now, dry_run = time.time(), ctx.obj.dry_run
    # both ages checked before anything is archived
    archived_before = purge_before(days, "--days", now)
    forgotten_before = None if forget is None else purge_before(forget, "--forget", now)
    store = _job_store(ctx)
    try:
        archived = store.archive(archived_before, dry_run=dry_run)
        forgotten = None if forget is None else store.forget(forgotten_before, dry_run=dry_run)
    finally:
        store.close()
    if ctx.obj.as_json:
        click.echo(json.dumps({"event": "would-archive" if dry_run else "archived",
                               "jobs": archived, **({} if forgotten is None else
                                                    {"forgotten": forgotten})}))
        return
    click.echo(f"{'would archive' if dry_run else 'archived'} {len(archived)} job(s)"
               f"{': ' if archived else ''}{', '.join(archived)}")
    if forgotten is not None:
        click.echo(f"{'would delete' if dry_run else 'deleted'} {forgotten} archived job(s) "
                   f"that finished more than {forget:g} days ago")
    if dry_run:
        click.echo("nothing changed (--dry-run)")


@screener.command("list")
@click.option("--state", default=None, metavar="STATE",
              help="Only the jobs in STATE (queued running waiting condition delayed done "
              "failed serious critical interrupted illegal timeouted archived).")
@click.option("--run", "run", default=None, metavar="RUN",
              help="Only the jobs of RUN: a run file's name (moves.csv) or its queue.")
@click.pass_context
@reported
def screener_list(ctx, state, run):
    """The jobs: id, operation, state, phase, progress, location, started,
    downtime, last message (with --json: one JSON object per line)."""
    from football.jobdb import STATES
    from football.screener import shown_state

    if state is not None and state not in STATES:
        raise Illegal(f"--state {state!r}: one of {', '.join(STATES)}")
    store = _job_store(ctx)
    try:
        config = store.config
        jobs = store.jobs(archived=state == "archived")
        if any(job["state"] in ("queued", "running", "waiting", "condition", "delayed")
               for job in jobs):
            _no_worker_said(store)
    finally:
        store.close()
    for job in jobs:
        job["state"] = shown_state(job, config.session_timeout)
    jobs = [job for job in jobs if (state is None or job["state"] == state) and
            (run is None or of_run(job, run))]
    if ctx.obj.as_json:
        from football.screener import job_view

        for job in jobs:
            click.echo(json.dumps(job_view(job), sort_keys=True))
        return
    _print_jobs(jobs)


STATE_STYLES = {"done": "green", "failed": "red", "serious": "red", "critical": "bold red",
                "illegal": "yellow", "interrupted": "yellow", "timeouted": "red",
                "running": "cyan", "condition": "magenta", "waiting": "bold magenta",
                "delayed": "blue"}


def _print_jobs(jobs):
    from football.screener import progress_text

    table = Table(title=f"screener jobs ({len(jobs)})")
    for column in ("id", "operation", "state", "phase", "progress", "location", "started",
                   "downtime", "last message"):
        table.add_column(column, overflow="fold" if column == "last message" else "ellipsis")
    for job in jobs:
        style = STATE_STYLES.get(job["state"])
        table.add_row(
            job["id"], job["operation"],
            f"[{style}]{job['state']}[/]" if style else job["state"],
            job["phase"] or "-", progress_text(job["progress"]), job["location"] or "-",
            time.strftime("%m-%d %H:%M:%S", time.localtime(job["started"]))
            if job["started"] else "-",
            f"{job['downtime']:.2f} s" if job["downtime"] is not None else "-",
            job["message"] or "-")
    Console(width=None if sys.stdout.isatty() else 200).print(table)


@screener.command("show")
@click.argument("job_id", metavar="ID")
@click.pass_context
@reported
def screener_show(ctx, job_id):
    """Job ID's log, rendered like a run in the foreground, and its result
    (with --json: the job, then its events, one JSON object per line)."""
    from football.screener import shown_state

    store = _job_store(ctx)
    try:
        job = store.job(job_id)
        if job is None:
            raise Illegal(f"no job {job_id!r} (see `football screener list`)")
        events = store.events(job["number"])
        job["state"] = shown_state(job, store.config.session_timeout)
    finally:
        store.close()
    if ctx.obj.as_json:
        from football.screener import job_view

        click.echo(json.dumps({"event": "job", **job_view(job)}, sort_keys=True))
        for event in events:
            click.echo(json.dumps(event, sort_keys=True))
        return
    click.echo(f"job {job['id']}: football {' '.join(json.loads(job['args']))}")
    for event in events:
        line = _event_line(event)
        if line is not None:
            click.echo(line)
    result = f" (exit {job['exit_code']})" if job["exit_code"] is not None else ""
    click.echo(f"result: {job['state']}{result}")


def _event_line(event):
    """An event of a job as the foreground run showed it (None: not shown)."""
    kind, stamp = event.get("event"), time.strftime("%H:%M:%S",
                                                    time.localtime(event.get("time", 0)))
    if kind in ("message", "output", "stderr"):
        return f"{stamp} {event.get('text', '')}"
    if kind == "warning":
        return f"{stamp} warning: {event.get('text', '')}"
    if kind == "phase":
        return f"{stamp} phase {event.get('phase')}"
    if kind == "progress" and event.get("total") and event.get("done") == event.get("total"):
        return f"{stamp} {event.get('what')}: {event['total'] >> 20} MiB done"
    if kind == "summary":
        from football.report import summary_line
        return f"{stamp} {summary_line(event)}"
    if kind == "job-start":
        return f"{stamp} started by worker {event.get('worker')}"
    if kind == "job-end":
        return f"{stamp} ended: {event.get('state')} (exit {event.get('exit_code')})"
    return _wait_line(stamp, kind, event)


def _wait_line(stamp, kind, event):
    """A job's waits (gate, slots, delays) and its host slots, for `show`."""
    if kind == "wait":
        return f"{stamp} {event.get('state', 'condition')}: {'; '.join(event.get('reasons', []))}"
    if kind == "wait-end":
        return f"{stamp} goes on ({event.get('what')})"
    if kind == "gate-released":
        return f"{stamp} released at the gate (football screener continue)"
    if kind == "slot":
        by = " by its worker" if event.get("by") == "worker" else ""
        return (f"{stamp} {event.get('slot')} slot on {', '.join(event.get('hosts', []))} "
                f"{event.get('action')}{by}")
    if kind == "takeover":
        return (f"{stamp} taken over by worker {event.get('by')}: worker "
                f"{event.get('worker')} {event.get('why')}")
    return None


GLOBAL_FLAGS = ("--dry-run", "--yes", "--json", "--verbose", "-v")
GLOBAL_VALUED = ("--inventory", "--config", "--var", "--debug-injection-point")
OWN_OPTIONS = ("lab",)      # a group whose commands have options of these names


LAB_VALUED = ("--inventory", "--lab-dir")


def hoist_global_options(argv):
    """The global options moved from anywhere on the line to the front, as
    marsadm allows; not for the commands of `lab` (its own --inventory,
    --json): the lab's options move to just after `lab` (`football lab up
    --inventory my-lab.yml`, as the lab inventory's comment says)."""
    hoisted = hoist_options(argv, GLOBAL_FLAGS, GLOBAL_VALUED, keep_for=OWN_OPTIONS)
    at = 0
    while at < len(hoisted) and hoisted[at].startswith("-"):     # the global options
        at += 2 if hoisted[at] in GLOBAL_VALUED else 1
    if hoisted[at:at + 1] != ["lab"]:
        return hoisted
    # not from the command `lab exec` runs (`football lab exec a1 marsadm ...`)
    rest = hoisted[at + 1:]
    command = rest.index("exec") if "exec" in rest else len(rest)
    return hoisted[:at + 1] + hoist_options(rest[:command + 1], (), LAB_VALUED) + \
        rest[command + 1:]


def terminate_as_ctrl_c():
    """SIGTERM (`kill PID`, `timeout`, a service stopped) ends a run as
    Ctrl-C does: compensated inside the downtime window, locks released,
    exit 190. Its default ended the process where it stood: a container
    stopped in the window stayed down, the locks held."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def hang_up_as_ctrl_c():
    """SIGHUP (the operator's terminal or SSH session gone) ends a run as
    SIGTERM does (see there); its default, too, ended the process where it
    stood. What was written to the terminal goes to /dev/null from then on
    (writes to a hung-up terminal fail, EIO: the compensation's own words
    would have ended it); the run log keeps everything. The terminals are
    told apart now: once hung up, a terminal no longer says it is one."""
    from football.report import to_devnull

    terminals = [fd for fd in (1, 2) if os.isatty(fd)]

    def hung_up(signum, frame):
        to_devnull(terminals)
        os.kill(os.getpid(), signal.SIGTERM)    # its handler now: raise, count or defer
    signal.signal(signal.SIGHUP, hung_up)


def main():
    terminate_as_ctrl_c()
    hang_up_as_ctrl_c()
    cli.main(args=hoist_global_options(sys.argv[1:]), prog_name="football")

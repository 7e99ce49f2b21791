"""`football-host`: the small helper Football runs on a host through its
transport, for what has no standard command there (the lab's file-backed VG,
LXC through the python bindings). Answers are JSON on stdout; failures are a
message on stderr and a non-zero exit (5 as LVM for storage failures)."""

import json
import sys

import click

from football.hostside import confined, lifecycle, locks, projects
from football.hostside import container as containers
from football.hostside.filevg import FileVG, VGError
from mars.names import DERIVED_NAME_RE, RESOURCE_RE, parse_size

EXIT_CONTAINER = 4
EXIT_LOCK_HELD = 6
EXIT_LIFECYCLE_REFUSED = 7


def _answer(value):
    click.echo(json.dumps(value, sort_keys=True))


def _size(text):
    try:
        return parse_size(text)
    except Exception:
        raise click.BadParameter(f"{text!r} is not a size (bytes, or with k/m/g/t)") from None


def _storage(action):
    try:
        return action()
    except VGError as error:
        click.echo(f"  {error}", err=True)
        sys.exit(error.exit_code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli():
    """Host-side helper of Football (run through a transport)."""


@cli.group()
@click.argument("vg_dir", type=click.Path(file_okay=False))
@click.pass_context
def vg(ctx, vg_dir):
    """The file-backed volume group in directory VG_DIR (`<root>/dev/<vg>`)."""
    ctx.obj = FileVG(vg_dir)


@vg.command("create-vg")
@click.argument("size")
@click.pass_obj
def vg_create_vg(filevg, size):
    """Create the VG with a capacity of SIZE (idempotent)."""
    _storage(lambda: filevg.create_vg(_size(size)))
    _answer(_storage(filevg.info))


@vg.command("info")
@click.pass_obj
def vg_info(filevg):
    """Size, free space, extent size and the LVs with their sizes."""
    _answer(_storage(filevg.info))


@vg.command("create")
@click.argument("lv")
@click.argument("size")
@click.pass_obj
def vg_create(filevg, lv, size):
    """Create LV of SIZE (rounded up to 4 MiB extents)."""
    _answer({"path": _storage(lambda: filevg.create(lv, _size(size)))})


@vg.command("resize")
@click.argument("lv")
@click.argument("size")
@click.pass_obj
def vg_resize(filevg, lv, size):
    """Grow or shrink LV to SIZE."""
    _answer({"size": _storage(lambda: filevg.resize(lv, _size(size)))})


@vg.command("rename")
@click.argument("lv")
@click.argument("new_name")
@click.pass_obj
def vg_rename(filevg, lv, new_name):
    """Rename LV to NEW_NAME."""
    _answer({"path": _storage(lambda: filevg.rename(lv, new_name))})


@vg.command("remove")
@click.argument("lv")
@click.pass_obj
def vg_remove(filevg, lv):
    """Remove LV (refused while it is open)."""
    _storage(lambda: filevg.remove(lv))
    _answer({"removed": lv})


@cli.group()
@click.argument("lxcpath", type=click.Path(file_okay=False))
@click.pass_context
def ct(ctx, lxcpath):
    """LXC containers under LXCPATH."""
    ctx.obj = lxcpath


def _container(action, *args):
    try:
        return action(*args)
    except containers.ContainerError as error:
        click.echo(str(error), err=True)
        sys.exit(EXIT_CONTAINER)
    except RuntimeError as error:       # the lxc bindings' own ("error during init")
        click.echo(f"LXC: {error} (a container's config could not be read: is the "
                   "filesystem it lies on alive?)", err=True)
        sys.exit(EXIT_CONTAINER)


@ct.command("create")
@click.argument("name")
@click.pass_obj
def ct_create(lxcpath, name):
    """Create the busybox container NAME with the lab workload."""
    _answer({"created": _container(containers.create, name, lxcpath)})


@ct.command("start")
@click.argument("name")
@click.pass_obj
def ct_start(lxcpath, name):
    """Start NAME and wait until it runs."""
    _answer({"started": _container(containers.start, name, lxcpath)})


@ct.command("stop")
@click.argument("name")
@click.option("--timeout", default=containers.STOP_TIMEOUT, show_default=True,
              help="Seconds to wait for a clean shutdown before killing.")
@click.pass_obj
def ct_stop(lxcpath, name, timeout):
    """Stop NAME."""
    _answer({"stopped": _container(containers.stop, name, lxcpath, timeout)})


@ct.command("state")
@click.argument("name")
@click.pass_obj
def ct_state(lxcpath, name):
    """RUNNING, STOPPED or UNDEFINED."""
    _answer({"state": containers.state(name, lxcpath)})


@ct.command("list")
@click.pass_obj
def ct_list(lxcpath):
    """The containers under LXCPATH with their states."""
    _answer(containers.list_states(lxcpath))


@cli.group()
@click.argument("lock_dir", type=click.Path(file_okay=False))
@click.pass_context
def lock(ctx, lock_dir):
    """Lock items in LOCK_DIR (`<root>/var/lock/football`)."""
    ctx.obj = lock_dir


def _lock_item(ctx, param, item):
    if not DERIVED_NAME_RE.fullmatch(item):
        raise click.BadParameter(f"{item!r} is not a lock item (letters, digits, '_', '-', '.')")
    return item


@lock.command("take")
@click.argument("item", callback=_lock_item)
@click.option("--owner", required=True, help="Who takes it (operation and run id).")
@click.option("--stale-after", type=float, default=3600.0, show_default=True,
              help="Break another owner's lock older than this many seconds.")
@click.option("--permanent", is_flag=True,
              help="Never stale: kept until released (an operator's lock).")
@click.option("--what", default="", help="What it is taken for (told to those it refuses).")
@click.option("--command", default="",
              help="A run's command: the same one may take a run's permanent lock over once "
                   "it is --stale-after old.")
@click.option("--run", type=click.Choice(locks.RUN_STATES),
              help="A run's lock: running (a lease), acting or kept (permanent).")
@click.option("--rescue", is_flag=True,
              help="A repair: may take a run's permanent lock over once it is --stale-after "
                   "old.")
@click.option("--lease", type=float,
              help="A run's lease: it renews its lock well within it (stale to no one before).")
@click.pass_obj
def lock_take(lock_dir, item, owner, stale_after, permanent, what, command, run, rescue,
              lease):
    """Take ITEM (again: renew it); exit 6 when someone else holds it (its
    holder's record on stdout, and whether it is older than --stale-after)."""
    try:
        outcome = locks.take(lock_dir, item, owner, stale_after, permanent, what, command,
                             run or "", rescue, lease)
        _answer({"lock": item, "outcome": outcome})
    except locks.LockHeld as error:
        _answer({"lock": item, "held": error.holder, "stale": error.stale})
        click.echo(str(error), err=True)
        sys.exit(EXIT_LOCK_HELD)


@lock.command("release")
@click.argument("item", callback=_lock_item)
@click.option("--owner", default="", help="Release only if this owner holds it (default: any).")
@click.pass_obj
def lock_release(lock_dir, item, owner):
    """Release ITEM."""
    _answer({"lock": item, "released": locks.release(lock_dir, item, owner)})


@lock.command("list")
@click.pass_obj
def lock_list(lock_dir):
    """The lock items with their holders."""
    _answer(locks.list_locks(lock_dir))


@cli.group("lifecycle")
@click.argument("state_dir", type=click.Path(file_okay=False))
@click.pass_context
def lifecycle_group(ctx, state_dir):
    """The host's lifecycle state in STATE_DIR (`<root>/var/lib/football`):
    active, draining, evacuated, restoring."""
    ctx.obj = state_dir


def _lifecycle(action):
    try:
        _answer(action())
    except lifecycle.LifecycleRefused as error:
        click.echo(str(error), err=True)
        sys.exit(EXIT_LIFECYCLE_REFUSED)
    except lifecycle.LifecycleUnreadable as error:
        click.echo(str(error), err=True)
        sys.exit(1)


@lifecycle_group.command("get")
@click.pass_obj
def lifecycle_get(state_dir):
    """The host's state, since when, by whom, and the origins it keeps."""
    _lifecycle(lambda: lifecycle.read(state_dir))


@lifecycle_group.command("set")
@click.argument("state", type=click.Choice(lifecycle.STATES))
@click.option("--by", required=True, help="Who changes it (operation and controller).")
@click.option("--expect", multiple=True, type=click.Choice(lifecycle.STATES),
              help="Change only from this state (repeatable); exit 7 otherwise.")
@click.pass_obj
def lifecycle_set(state_dir, state, by, expect):
    """Set the state (exit 7 when the current state does not allow it)."""
    _lifecycle(lambda: lifecycle.change(state_dir, state, by, expect))


def _host_names(ctx, param, names):
    for name in names:
        if not RESOURCE_RE.fullmatch(name):
            raise click.BadParameter(f"{name!r} is not a host name")
    return names


def _resource_name(ctx, param, res):
    if not RESOURCE_RE.fullmatch(res):
        raise click.BadParameter(f"{res!r} is not a resource name (letters, digits, '_', '-', "
                                 "'.')")
    return res


@lifecycle_group.command("origin")
@click.argument("res", callback=_resource_name)
@click.argument("replicas", nargs=-1, required=True, callback=_host_names)
@click.pass_obj
def lifecycle_origin(state_dir, res, replicas):
    """Record once that RES had its REPLICAS (primary first) before it
    moved away."""
    _lifecycle(lambda: {"resource": res,
                        "new": lifecycle.record_origin(state_dir, res, replicas)})


@cli.command("projects")
@click.argument("source", type=click.Path(exists=True, file_okay=False))
@click.argument("copy", type=click.Path(exists=True, file_okay=False))
def projects_copy(source, copy):
    """Give the files and directories of COPY the XFS project IDs (and the
    directories the project-inherit flag) of their namesakes under SOURCE:
    rsync copies neither (a shrink's copy of a volume with project quotas)."""
    try:
        read, changed = projects.copy_projects(source, copy)
    except OSError as error:
        click.echo(f"football-host: projects {source} -> {copy}: {error}", err=True)
        sys.exit(1)
    _answer({"read": read, "changed": changed})


@cli.command("rsync-source", hidden=True,
             context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                               "help_option_names": []})
@click.argument("source")
@click.argument("remote_command", nargs=-1, type=click.UNPROCESSED)
def rsync_source(source, remote_command):
    """rsync's "remote shell" for a shrink's copy pass: serve SOURCE to it
    as a daemon chrooted into SOURCE (football/hostside/confined.py); the
    host and command rsync appends (REMOTE_COMMAND) are not used."""
    try:
        confined.serve(source)
    except (confined.ConfinedError, OSError) as error:
        click.echo(f"football-host rsync-source: {error}", err=True)
        sys.exit(1)


def main():
    cli()


@cli.command("serve-tools", hidden=True)
def serve_tools():
    """The host agent Football's SSH transport talks to over one channel
    (football/toolserver.py, serve_stdio)."""
    from football.toolserver import serve_stdio

    serve_stdio()

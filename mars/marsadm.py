"""marsadm: the MARS admin command line (a compatible subset of kernel MARS's).

Global options may stand anywhere on the line, as with the original:
`marsadm view-get-primary vm1 --timeout=5` equals
`marsadm --timeout=5 view-get-primary vm1`."""

import math
import sys
from functools import wraps

import click

from mars import __version__
from mars.errors import EXIT_ERROR, EXIT_TIMEOUT, MarsError, MarsTimeout
from mars.hostenv import HostEnv
from mars.options import hoist_options
from mars.resources import Resources
from mars.roles import Roles
from mars.store import Store
from mars.tree import read_tree, render_tree
from mars.dataviews import DATA_VIEWS, WAIT_VIEWS, summary
from mars.keys import TODO_SWITCHES
from mars.views import CLUSTER_VIEWS, RESOURCE_VIEWS, expand_resources, render, resource_sections

GLOBAL_FLAGS = ("--force", "--ignore-sync", "--dry-run")
GLOBAL_VALUED = ("--timeout", "--window", "--host", "--ip", "--ssh-port")

EPILOG = """\b
Environment: MARS_ROOT relocates the host's state (default /: /mars, /dev/mars);
MARS_HOST names the host (default: the short hostname).
\b
Exit codes: 0 done; 1 refused (bad input or failed precondition, nothing
changed); 2 command line not understood; 3 timed out (see --timeout)."""


class Context:
    """What every command needs: the host, its store, the global options."""

    def __init__(self, options):
        self.options = options
        self.env = HostEnv.from_environment(host=options["host"])
        self._store = None

    @property
    def here(self):
        """The host this runs on (MARS_HOST, else the hostname), which
        --host may differ from: the kernel's marsadm acts for a dead host
        so (`--host=<it> leave-resource --force`). A hostname that is no
        MARS host name: --host names this host."""
        try:
            return HostEnv.from_environment().host
        except MarsError:
            return self.env.host

    @property
    def store(self):
        if self._store is None:
            self.env.ensure_state_dir()
            # what it writes for another host is labelled so (mars/store.py)
            self._store = Store(self.env.db_path, self.env.host, on_commit=self.env.poke_daemon,
                                writer=self.here)
        return self._store

    def cluster(self, acting=None):
        """The cluster operations of this host; `acting`: the host that talks
        to the peers, where --host names another one (it writes for it)."""
        from mars.cluster import Cluster   # imports trio: only for commands that talk to peers
        env = HostEnv(host=acting, root=self.env.root) if acting else self.env
        return Cluster(env, self.store, timeout=self.options["timeout"],
                       dry_run=self.options["dry_run"], echo=click.echo,
                       ssh_port=self.options["ssh_port"])

    def resources(self):
        # --timeout bounds a create's or join's wait for another one here
        return Resources(self.env, self.store, dry_run=self.options["dry_run"], echo=click.echo,
                         timeout=self.options["timeout"])

    def roles(self):
        return Roles(self.env, self.store, timeout=self.options["timeout"],
                     window=self.options["window"], dry_run=self.options["dry_run"], echo=click.echo)

    def close(self):
        if self._store is not None:
            self._store.close()


def hoist_global_options(argv):
    """Move global options from anywhere on the line to the front."""
    return hoist_options(argv, GLOBAL_FLAGS, GLOBAL_VALUED)


def command(name, **settings):
    """A marsadm subcommand: gets the Context, turns MarsError into a one-line
    message and the documented exit code."""
    def decorate(func):
        @cli.command(name, **settings)
        @click.pass_obj
        @wraps(func)
        def run(ctx, *args, **kwargs):
            try:
                return func(ctx, *args, **kwargs)
            except MarsError as exc:
                click.echo(f"marsadm {name}: {exc}", err=True)
                sys.exit(exc.exit_code)
            finally:
                ctx.close()
        return run
    return decorate


def _a_number(click_ctx, param, value):
    """NaN passes click's float and its ranges (every comparison is false):
    as --timeout it waited forever, as --window every host counted dead."""
    if value is not None and math.isnan(value):
        raise click.BadParameter("not a number of seconds", param=param)
    return value


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
@click.version_option(__version__, prog_name="marsadm")
@click.option("--timeout", type=float, default=600.0, show_default=True, callback=_a_number,
              help="Seconds to wait for peers or conditions (and for another create-resource "
                   "or join-resource on this host); -1 waits forever.")
@click.option("--window", type=click.FloatRange(0, min_open=True), default=60.0,
              show_default=True, callback=_a_number,
              help="A host counts as alive if it reported within this many seconds (> 0).")
@click.option("--host", default=None, help="Act as this host (default MARS_HOST or the hostname).")
@click.option("--ip", default=None, help="This host's address (create-cluster, join-cluster).")
@click.option("--ssh-port", type=click.IntRange(1, 65535), default=22, show_default=True,
              help="SSH port of the peer (join-cluster, merge-cluster take its cluster secret "
                   "over SSH; MARS_SSH_OPTIONS: further ssh options).")
@click.option("--force", is_flag=True, help="Override safety checks where a command allows it.")
@click.option("--ignore-sync", is_flag=True, help="Accept an incomplete sync (primary).")
@click.option("--dry-run", is_flag=True, help="Say what would be written; change nothing.")
@click.pass_context
def cli(click_ctx, **options):
    """Administer userspace MARS: clusters, resources and views."""
    try:
        click_ctx.obj = Context(options)
    except MarsError as exc:
        click.echo(f"marsadm: {exc}", err=True)
        sys.exit(exc.exit_code)


# ------------------------------------------------------------------ cluster
@command("create-cluster")
def create_cluster(ctx):
    """Start a new cluster with this host as its first member."""
    ctx.cluster().create(ctx.options["ip"], force=ctx.options["force"])


@command("join-cluster")
@click.argument("peer")
@click.argument("peer_ip", required=False)
def join_cluster(ctx, peer, peer_ip):
    """Join the cluster PEER belongs to. Without its cluster secret here,
    it is taken from PEER over SSH (root, --ssh-port, MARS_SSH_OPTIONS)."""
    ctx.cluster().join(peer, peer_ip, ctx.options["ip"])


@command("merge-cluster")
@click.argument("peer")
@click.argument("peer_ip", required=False)
def merge_cluster(ctx, peer, peer_ip):
    """Merge the cluster of PEER with this host's cluster. With different
    cluster secrets, the merged cluster takes PEER's, over SSH (root,
    --ssh-port, MARS_SSH_OPTIONS), given to this cluster's members first."""
    ctx.cluster().merge(peer, peer_ip)


@command("split-cluster")
def split_cluster(ctx):
    """Split the cluster into pieces that share no resources."""
    ctx.cluster().split(force=ctx.options["force"])


@command("leave-cluster")
def leave_cluster(ctx):
    """Leave the cluster (this host must hold no replicas) and forget it here.
    With --host=<another host> (the kernel's way for a dead one), on a host
    of its cluster: drop that host from the cluster, here and at every peer
    that answers. It must hold no replica, and its marsd must not answer
    (--force: drop it anyway)."""
    here = ctx.here
    if ctx.env.host == here:
        ctx.cluster().leave()
    else:
        ctx.cluster(acting=here).drop(ctx.env.host, force=ctx.options["force"])


@command("update-cluster")
def update_cluster(ctx):
    """Exchange metadata with every peer now."""
    failures = ctx.cluster().update()
    for host, reason in sorted(failures.items()):
        click.echo(f"marsadm update-cluster: {host}: {reason}", err=True)
    if failures:
        sys.exit(EXIT_ERROR)


@command("wait-cluster")
@click.argument("resource", required=False)
def wait_cluster(ctx, resource):
    """Wait until marsd answers on this host and on every peer that is alive
    (of RESOURCE, if given). A peer that does not answer within a few
    seconds counts as dead: a warning names it, and the exit code is 0 (as
    the kernel's marsadm does). Exit 3 only when this host's marsd does not
    answer within --timeout."""
    def members(state):
        names, _ = expand_resources(state, resource)
        return sorted({host for res in names for host in state.members(res)} | {ctx.env.host})

    dead = ctx.cluster().wait(members if resource else None)
    if dead:
        details = "; ".join(f"{host}: {why}" for host, why in sorted(dead.items()))
        click.echo(f"marsadm: warning: marsd not answering on {', '.join(sorted(dead))} "
                   f"({details}); they count as dead: not waiting for them", err=True)


@command("lowlevel-ls-host-ips")
def lowlevel_ls_host_ips(ctx):
    """Print `<host> <ip>` for every cluster member."""
    for host, address in sorted(ctx.store.state().host_ips().items()):
        click.echo(f"{host} {address}")


@command("view-tree")
@click.option("--stamps", is_flag=True, help="Append [stamp origin] to every line.")
def view_tree(ctx, stamps):
    """Print the metadata as the familiar /mars symlink tree."""
    click.echo(render_tree(ctx.store, str(ctx.env.state_dir), stamps), nl=False)


@command("import-tree")
@click.argument("path", type=click.Path(file_okay=False))
def import_tree(ctx, path):
    """Import a kernel-MARS /mars symlink tree (a copy of it) into the store."""
    items = read_tree(path, ctx.env.host)
    if ctx.options["dry_run"]:
        for item in items:
            click.echo(f"would import {item.key} = {item.value}")
        return
    changed = ctx.store.apply(items)
    click.echo(f"imported {len(changed)} of {len(items)} tuples from {path}")


# ---------------------------------------------------------------- resources
@command("create-resource")
@click.argument("resource")
@click.argument("disk")
@click.argument("size", required=False)
def create_resource(ctx, resource, disk, size):
    """Create RESOURCE on DISK with this host as primary (waiting at most
    --timeout for another create or join on this host to end)."""
    ctx.resources().create(resource, disk, size, force=ctx.options["force"])


@command("join-resource")
@click.argument("resource")
@click.argument("disk")
def join_resource(ctx, resource, disk):
    """Become a replica of RESOURCE on DISK (waiting at most --timeout for
    another create or join on this host to end)."""
    ctx.resources().join(resource, disk)


@command("leave-resource")
@click.argument("resource")
def leave_resource(ctx, resource):
    """Stop being a replica of RESOURCE."""
    ctx.resources().leave(_each(ctx, resource), force=ctx.options["force"])


@command("delete-resource")
@click.argument("resource")
def delete_resource(ctx, resource):
    """Remove RESOURCE from the whole cluster (once every member left it, or --force)."""
    ctx.resources().delete(_each(ctx, resource), force=ctx.options["force"])


@command("set-systemd-unit")
@click.argument("resource")
@click.argument("start_unit")
@click.argument("stop_unit", required=False)
def set_systemd_unit(ctx, resource, start_unit, stop_unit):
    """Record the units that start and stop RESOURCE's stack (systemd-want:
    the designated primary); an empty START_UNIT removes units and want."""
    ctx.resources().set_systemd_unit(resource, start_unit, stop_unit)


@command("get-systemd-unit")
@click.argument("resource")
def get_systemd_unit(ctx, resource):
    """Print `<start unit> <stop unit>` of RESOURCE."""
    value = ctx.resources().get_systemd_unit(resource)
    if value:
        click.echo(value)


@command("set-systemd-want")
@click.argument("resource")
@click.argument("host", required=False)
def set_systemd_want(ctx, resource, host):
    """Record the host where RESOURCE's units should run (default: this
    host), and wait until they followed; `(none)`: none, a temporary stop
    of the stack (the device stays up); `primary` moves a set want to the
    new primary. Needs units (set-systemd-unit); --force: without units,
    and no wait."""
    force = ctx.options["force"]
    ctx.resources().set_systemd_want(resource, host, force=force)
    if not force:
        ctx.roles().wait_want_followed(resource)


@command("get-systemd-want")
@click.argument("resource")
def get_systemd_want(ctx, resource):
    """Print the host where RESOURCE's units should run, `(none)` when
    stopped, nothing when unset."""
    value = ctx.resources().get_systemd_want(resource)
    if value:
        click.echo(value)


def _each(ctx, argument):
    names, _ = expand_resources(ctx.store.state(), argument)
    return names


# -------------------------------------------------------------- data plane
@command("primary")
@click.argument("resource")
def primary(ctx, resource):
    """Make this host the primary of RESOURCE (planned handover; --force takes over)."""
    ctx.roles().primary(resource, force=ctx.options["force"], ignore_sync=ctx.options["ignore_sync"])


@command("secondary")
@click.argument("resource")
def secondary(ctx, resource):
    """Designate no primary for RESOURCE; its device goes down (refused while
    it is open and no systemd units stop its users, unless --force)."""
    for res in _each(ctx, resource):
        ctx.roles().secondary(res, force=ctx.options["force"])


def _register_switch(name, switches, value, help_text, wait_down=False):
    @command(name, help=help_text)
    @click.argument("resource")
    def switch(ctx, resource):
        for res in _each(ctx, resource):
            ctx.roles().set_switches(res, switches, value, wait_device_down=wait_down,
                                     command=name, force=ctx.options["force"])
    return switch


_OPEN = " Refused while the device is open here and no systemd units stop its users (--force)."
_register_switch("up", TODO_SWITCHES, 1, "Attach, connect, sync and replay RESOURCE.")
_register_switch("down", TODO_SWITCHES, 0,
                 "Stop all of RESOURCE's data plane here (device too)." + _OPEN, True)
_register_switch("attach", ("attach",), 1, "Use the local disk of RESOURCE again.")
_register_switch("detach", ("attach",), 0,
                 "Release the local disk of RESOURCE (device too)." + _OPEN, True)


def _register_pause(verb, what, scope):
    suffix = f"-{scope}" if scope else ""

    @command(f"{verb}-{what}{suffix}", help=f"{verb.capitalize()} {what} of RESOURCE "
             f"({'on every member' if scope == 'global' else 'on this host'}).")
    @click.argument("resource")
    def pause(ctx, resource):
        for res in _each(ctx, resource):
            ctx.roles().pause(res, what, 1 if verb == "resume" else 0, scope or "local")
    return pause


for _verb in ("pause", "resume"):
    for _what in ("sync", "fetch", "replay"):
        for _scope in ("", "local", "global"):
            _register_pause(_verb, _what, _scope)


@command("invalidate")
@click.argument("resource")
def invalidate(ctx, resource):
    """Discard this replica and sync it anew (resolves a split brain here)."""
    for res in _each(ctx, resource):
        ctx.roles().invalidate(res)


@command("resize")
@click.argument("resource")
@click.argument("size", required=False)
def resize(ctx, resource, size):
    """Grow RESOURCE to SIZE (default: the smallest member disk, whole 512-byte sectors)."""
    ctx.roles().resize(resource, size)


@command("wait-resource")
@click.argument("resource")
@click.argument("condition", default="up-to-date")
def wait_resource(ctx, resource, condition):
    """Wait until RESOURCE is [not-]{up-to-date,attach,primary,device,consistent}."""
    for res in _each(ctx, resource):
        ctx.roles().wait_resource(res, condition)


@command("wait-umount")
@click.argument("resource")
def wait_umount(ctx, resource):
    """Wait until the device of RESOURCE is no longer open."""
    for res in _each(ctx, resource):
        ctx.roles().wait_umount(res)


@command("log-rotate")
@click.argument("resource")
def log_rotate(ctx, resource):
    """Start a new logfile on the primary of RESOURCE."""
    for res in _each(ctx, resource):
        ctx.roles().log_rotate(res)


@command("log-delete-all")
@click.argument("resource")
def log_delete_all(ctx, resource):
    """Delete the logfiles every member has replayed."""
    for res in _each(ctx, resource):
        deleted = ctx.roles().log_delete_all(res)
        click.echo(f"{res}: deleted {len(deleted)} logfiles")


@command("cron")
def cron(ctx):
    """Housekeeping for all resources here: log-rotate (primary), log-delete-all."""
    ctx.roles().cron(ctx.store.state().my_resources())


# -------------------------------------------------------------------- views
def _register_view(macro, needs_resource):
    @command(f"view-{macro}", help=f"Print the {macro} view.")
    @click.argument("resource", required=needs_resource)
    def view(ctx, resource):
        click.echo(render(ctx.store.state(), macro, resource, ctx.roles().runtime()), nl=False)
    return view


for _macro in [*RESOURCE_VIEWS, *DATA_VIEWS]:
    _register_view(_macro, True)
for _macro in CLUSTER_VIEWS:
    _register_view(_macro, False)


def _register_wait_view(macro):
    reached, what = WAIT_VIEWS[macro]

    @command(f"view-{macro}", help=f"Wait until {macro[len('wait-'):]} holds for RESOURCE "
             "(at most --timeout; exit 3 when it does not).")
    @click.argument("resource")
    def wait_view(ctx, resource):
        # Kernel marsadm waits for each resource in turn, after its header, and
        # goes on with the next when one times out. It exits with its error
        # count (2); ours keeps its documented codes (3: timed out): the
        # kernel's clients test for non-zero.
        roles = ctx.roles()
        timed_out = False
        for res, header in resource_sections(ctx.store.state(), resource):
            click.echo(header, nl=False)
            try:
                roles.wait_for(res, lambda state, status, res=res: reached(state, res, status),
                               what)
            except MarsTimeout as timeout:
                click.echo(f"marsadm view-{macro}: {timeout}", err=True)
                timed_out = True
        if timed_out:
            sys.exit(EXIT_TIMEOUT)
    return wait_view


for _macro in WAIT_VIEWS:
    _register_wait_view(_macro)


@command("view")
@click.argument("resource", default="all")
def view_summary(ctx, resource):
    """Print a human summary of RESOURCE (default all): states, progress, rates."""
    state = ctx.store.state()
    runtime = ctx.roles().runtime()
    for res, header in resource_sections(state, resource):
        click.echo(header + summary(state, res, runtime.status(res)), nl=False)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    cli.main(args=hoist_global_options(argv), prog_name="marsadm")


if __name__ == "__main__":
    main()

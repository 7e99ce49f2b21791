"""Hook specifications (pluggy) and plugin loading.

A host's inventory entry names its storage (`lvm`, `filevg`), its cluster
manager (`systemd`, `lab`) and its container kind (`lxc`). Every plugin that
implements a hook is called in order: `tryfirst` implementations first, then
the others (the last registered first), `trylast` ones last — the shipped
defaults (plugins/defaults.py) are `trylast`, so any plugin can replace them.

Two kinds of hooks; each spec says which it is:

- *First result*: the first answer that is not None wins and the rest are
  not called. A plugin that is not responsible (another host kind) returns
  None. `Hooks.call` raises `NoPlugin` when nobody answered.
- *All results*: every implementation is called; `Hooks.call` returns the
  list of their answers that are not None (empty when none is registered).
  Notifications are of this kind: operations call them through a guard, so
  a failing notifier is reported as a warning and never fails an operation.

Every hook that gets a `Host` (football.inventory) runs its commands on it
through `host.run(argv)`; no hook touches a host's files directly.

Plugins come from the shipped modules (`BUILTIN_PLUGINS`), installed
packages (entry point group `football.plugins`) and plugin directories (the
tunable `plugin_dirs`): every `*.py` file there whose name does not start
with `_` is imported and registered (as the object its `new_plugin()` makes,
if it has one, as the shipped ones; a file reached twice, through a link or
a directory named twice, once). A plugin that cannot be imported, or
implements a hook that no spec knows or with arguments its spec does not
have, is refused when it is loaded (`PluginLoadError` naming the file, or
the package and its entry point; exit 191)."""

import functools
import hashlib
import importlib.metadata
import importlib.util
import sys
from pathlib import Path

import pluggy

from football.errors import Illegal, NoPlugin

PROJECT = "football"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

# A shipped module that keeps state per run (the downtime log) offers
# `new_plugin()`; it is registered as that object instead of the module.
BUILTIN_PLUGINS = ("plugins.filevg", "plugins.lvm", "plugins.lxc", "plugins.labmanager",
                   "plugins.systemd", "plugins.defaults", "plugins.downtime", "plugins.waiting",
                   "plugins.notify")
ENTRY_POINT_GROUP = "football.plugins"


class PluginLoadError(Illegal):
    """A plugin file cannot be imported, or implements a hook that no spec
    knows or with arguments its spec does not have. Nothing was run."""


class StorageSpec:
    """Volumes (LVs) in the host's volume group `host.vg`. Sizes are bytes.
    Failures raise `StorageError` with the same `kind` for every plugin."""

    @hookspec(firstresult=True)
    def lv_create(self, host, lv, size):
        """Create LV `lv` of at least `size` bytes; return its path on the host.
        *First result.* Name clash → kind `exists`; too little space → `no-space`."""

    @hookspec(firstresult=True)
    def lv_resize(self, host, lv, size):
        """Grow or shrink LV `lv` to `size` bytes; return the new size.
        *First result.* Too little space → `no-space`; no such LV → `not-found`."""

    @hookspec(firstresult=True)
    def lv_rename(self, host, lv, new_name):
        """Rename LV `lv` to `new_name`; return the new path. *First result.*"""

    @hookspec(firstresult=True)
    def lv_remove(self, host, lv):
        """Remove LV `lv`; return True. *First result.* Open → `in-use`."""

    @hookspec(firstresult=True)
    def lv_list(self, host):
        """Return {lv name: size in bytes} of the host's VG. *First result.*"""

    @hookspec(firstresult=True)
    def vg_free(self, host):
        """Return the free bytes of the host's VG. *First result.*"""

    @hookspec(firstresult=True)
    def lv_path(self, host, lv):
        """Return the path of LV `lv` on the host (whether or not it exists).
        *First result.*"""


class ContainerSpec:
    """The container of a resource. Its configuration and root filesystem live
    on the resource's volume, mounted at `host.mountpoint(res)`."""

    @hookspec(firstresult=True)
    def container_create(self, host, res):
        """Create the container's configuration and rootfs on the mounted
        volume (the lab's demo container). Return True. *First result.*"""

    @hookspec(firstresult=True)
    def container_start(self, host, res):
        """Start the container (its volume is mounted); return True once it
        runs. Starting a running container is a no-op. *First result.*"""

    @hookspec(firstresult=True)
    def container_stop(self, host, res):
        """Stop the container; return True once it is stopped. Stopping a
        stopped or undefined container is a no-op. *First result.*"""

    @hookspec(firstresult=True)
    def container_state(self, host, res):
        """Return `RUNNING`, `STOPPED` or `UNDEFINED` (no configuration here).
        *First result.*"""


class ClusterManagerSpec:
    """Starting and stopping a resource's whole stack on a host. `hooks` is
    the `Hooks` object, for reaching the container and storage plugins."""

    @hookspec(firstresult=True)
    def resource_start(self, host, res, hooks):
        """Make `host` the MARS primary of `res` (`marsadm primary`), bring up
        the volume and start the container. Idempotent. *First result.*"""

    @hookspec(firstresult=True)
    def resource_stop(self, host, res, hooks):
        """Stop the container and release the volume (unmount), so that
        another host can become primary. Idempotent. *First result.*"""

    @hookspec(firstresult=True)
    def resource_start_stack(self, host, res, hooks):
        """`resource_start` without the container: make `host` the MARS
        primary of `res` and bring up its volume (mounted), leaving the
        container stopped. Called for a container its operator had stopped
        before the operation began: a move or a shrink keeps it stopped.
        Only for hosts whose manager `keeps_stopped`. Idempotent.
        *First result.*"""

    @hookspec(firstresult=True)
    def keeps_stopped(self, host):
        """Called before an operation on a container its operator stopped,
        for every host where it may come up. True when the manager of
        `host` implements `resource_start_stack` (the stack without the
        container, which stays stopped); then it stays stopped.
        *First result.* Default: False: the operation says that it will
        start the container and asks first."""

    @hookspec(firstresult=True)
    def resource_start_vm(self, host, res, hooks):
        """Start only the container; the volume stays as it is. *First result.*"""

    @hookspec(firstresult=True)
    def resource_stop_vm(self, host, res, hooks):
        """Stop only the container; the volume stays mounted. *First result.*"""


class DiscoverySpec:
    """Where a resource lives and how a host names its parts. The defaults
    (plugins/defaults.py) ask MARS and the inventory; a plugin answers for
    fleets where that is not enough (a CMDB, another volume layout)."""

    @hookspec(firstresult=True)
    def get_hyper(self, res, inventory):
        """Called during discovery when the operator did not name the host
        (`<res>:<host>`). Return the `Host` of `inventory` that runs `res`
        (its MARS primary). *First result.* Default: ask every host with
        `marsadm view-get-primary`; raises `Illegal` when no host has `res`
        or the hosts disagree."""

    @hookspec(firstresult=True)
    def get_store(self, res, inventory):
        """Called during discovery of a migrate, after `get_hyper`. Return the
        `Host` that holds the storage of `res`'s primary replica when it is
        *not* the hypervisor itself, else None. *First result.* Default:
        None (storage local to the hypervisor). Football moves only local
        storage: a different host refuses the migrate (exit 191)."""

    @hookspec(firstresult=True)
    def get_vg(self, host):
        """Called once for every inventory host when an operation starts;
        must not contact the host. Return the name of the volume group that
        holds resources on `host` (every later use of `host.vg` sees it).
        *First result.* Default: the inventory's `vg`."""

    @hookspec(firstresult=True)
    def get_mountpoint(self, host, res):
        """Called whenever Football or a plugin needs the directory where
        `res`'s volume is mounted on `host` (`host.mountpoint(res)`); must not
        contact the host. *First result.* Default: the container directory
        `<lxcpath>/<res>` below the host's root."""


class CheckSpec:
    """Preconditions. They read state and change nothing; an operation asks
    them during discovery or right before its downtime window, and refuses
    with `Illegal` (exit 191, nothing changed) when any plugin objects.
    *All results*: every plugin is asked, any objection counts."""

    @hookspec
    def is_startable(self, host, res):
        """Called before a downtime window (before anything is stopped) for
        the host where `res` will start. Return True (or None) when `res`
        can start on `host`; `False` or `(False, reason)` vetoes the
        handover; any other answer is refused (`Illegal`). *All results.*
        Default: True."""

    @hookspec
    def resource_check(self, host, res):
        """Called during discovery for the host that runs `res`. Return a
        list of problem strings (empty: fine). *All results*, concatenated."""

    @hookspec
    def resource_locked(self, host, res):
        """Called before the downtime window, for the source and the target,
        and again while waiting. Return True (or a reason string) when no
        operation may touch `res` on `host` now: the operation waits (like
        `want_downtime`) and gives up after `downtime_gate_timeout`.
        *All results*; any true answer locks. Default: False."""

    @hookspec
    def check_host(self, host):
        """Called during discovery for every involved host. Return a list of
        problem strings. *All results*, concatenated."""

    @hookspec
    def check_migrate(self, res, source, targets):
        """Called during the discovery of a migrate, with the source `Host`
        and the list of target `Host`s (primary first). Return a list of
        problem strings. *All results*, concatenated."""

    @hookspec
    def check_handover(self, res, source, target):
        """Called during the discovery of an operation that hands `res` over
        from `source` to `target` (migrate, handover). Return a list of
        problem strings. *All results*, concatenated."""


class HandoverSpec:
    """Around the downtime window: whether now is a good time, what to carry
    over, and how long it took."""

    @hookspec
    def want_downtime(self, res, source, target, again):
        """Called before the downtime window, then every `poll_interval`
        while the answer is no. Return True (or None) when the downtime may
        begin now; `False` or `(False, reason)` makes the operation wait
        (`start_wait`/`poll_wait` with what=`downtime`) until every plugin
        agrees, and refuse with `Illegal` after `downtime_gate_timeout`;
        any other answer is refused at once (`Illegal`, nothing stopped).
        `again` is False then; True when a migrate or a shrink asks once
        more right before its window, after it waited for its slot and its
        locks (which may last long): answer whether now is still a good
        time without using up again what the first yes used (an operator's
        release); a no sends the run back to the gate. *All results.*
        Default: True."""

    @hookspec
    def save_resource_state(self, host, res):
        """Called right before the downtime window, while `res` still runs
        on `host` (the source). Return a JSON-able dict of what must survive
        the move, or None. *All results*, merged in call order into one dict;
        an exception stops the operation before anything was stopped."""

    @hookspec
    def restore_resource_state(self, host, res, state):
        """Called after the downtime window, `res` running on `host` (the
        target), with the dict `save_resource_state` made. Notification: the
        return value is ignored, an exception is a warning."""

    @hookspec
    def report_downtime(self, operation, res, source, host, seconds):
        """Called after a downtime window ended with `res` running on `host`
        (a `Host`; `source` is where it ran before): `seconds` from the
        beginning of the stop to running. Notification, return ignored."""

    @hookspec
    def prepare_hosts(self, operation, res, hosts):
        """Called once after discovery, before the first phase changes
        anything, with the involved `Host`s. Notification, return ignored."""

    @hookspec
    def finish_hosts(self, operation, res, hosts):
        """Called once after the last phase, also after a failure, with the
        hosts `prepare_hosts` got. Notification, return ignored."""


class ReportingSpec:
    """What an operation is doing, for notification and logging plugins.
    All are notifications: *all results*, the return values are ignored,
    and an exception is reported as a warning instead of failing the
    operation. `operation` is the command's name (`migrate`, `handover`,
    `repair-vm`, `lock`...); `res` its resource, None for the operations on
    hosts only (`lock`, `unlock`, `merge-cluster`, `split-cluster`)."""

    @hookspec
    def configure(self, config):
        """Called once when the hooks for a command are set up, with the
        resolved tunables (`football.config.Config`)."""

    @hookspec
    def football_start(self, operation, res, args):
        """Called when an operation starts, before discovery; `args` is the
        dict of its arguments (migrate: `target`, `target_secondary`; the
        admin operations: `hosts`, lock's `item` and `owner`...) and the
        `phases` it runs. `res` is None for an operation without a resource
        (`lock`, `unlock`, `merge-cluster`, `split-cluster`)."""

    @hookspec
    def football_finished(self, operation, res, summary):
        """Called when an operation succeeded (also when there was nothing to
        do, and after a dry run), with its summary dict (what moved, bytes
        synced, downtime, time per phase; an admin operation's result).
        `res` is None for an operation without a resource."""

    @hookspec
    def football_failed(self, operation, res, error, exit_code):
        """Called when an operation failed, with the exception and the exit
        code it will end with (191 illegal, 198 serious, 199 critical...).
        The original error is raised afterwards whatever the plugins do.
        `res` is None for an operation without a resource."""

    @hookspec
    def football_warning(self, text):
        """Called for every warning the operator sees (`text`, one line),
        whatever operation it comes from."""

    @hookspec
    def phase(self, operation, res, name):
        """Called when a phase begins (`prepare`, `wait`, `finish`, `cleanup`)."""

    @hookspec
    def section(self, operation, res, name):
        """Called when a section inside a phase begins (`downtime`, the
        critical section from the stop to running again; `compensation`)."""

    @hookspec
    def tell_action(self, operation, res, action, hosts):
        """Called right before a big action: `join` (a new replica on
        `hosts`), `handover` (`hosts` = [source, target]), `leave` (the
        replica on `hosts` goes)."""

    @hookspec
    def start_wait(self, what, res):
        """Called when an operation begins to wait for `what` (`downtime`:
        the gate of `want_downtime`/`resource_locked`)."""

    @hookspec
    def poll_wait(self, what, res, elapsed):
        """Called at every poll while waiting for `what`, `elapsed` seconds
        after `start_wait`."""


class ScreenerSpec:
    """The screener's jobs (football/screener.py), for notification plugins
    (a mail or chat script). A notification: *all results*, the return
    values are ignored; the screener reports an exception as a warning (in
    the worker's log, or on the stderr of the command that queued or
    killed the job) and the job goes on as if nothing happened. Shipped:
    plugins/notify.py runs the command `notify_command`."""

    @hookspec
    def notify(self, job, state, text):
        """Called once per state a job enters, right after the jobs'
        database recorded it, by the process that changed it: `queued` by
        `screener start|run|restart`, `interrupted` by `screener kill` of a
        queued job, the others (`running`, `waiting`, `condition`,
        `delayed`, and the finished states of its exit code) by the worker.
        A state is not told twice in a row: phase events of a running job
        and a resumed job's second `running` are not notifications; a job
        that waits and goes on enters `running` again. `timeouted` as shown
        by `list` for a silent job and `archived` (purge) are not states a
        job enters. `job` is the job's row as a JSON-able dict (`id`,
        `resource`, `operation`, `args`: football's command line, `state`,
        `phase`, `message`, `progress`, `location`, `downtime`, `exit_code`,
        `worker`, times as epoch seconds...); `text` one line for people
        (`job vm1 done (exit 0): vm1 runs on b1`). Notification: *all
        results*, the return value is ignored."""


class CommandLineSpec:
    """The command line, before an operation is built."""

    @hookspec(firstresult=True)
    def rewrite_args(self, command, args):
        """Called with the command's name (`migrate`, `migrate-finish`,
        `handover`) and the dict of its arguments (`res`, `target`, ...).
        Return a dict to use instead (the same keys), or None to leave them.
        *First result.*"""


SPECS = (StorageSpec, ContainerSpec, ClusterManagerSpec, DiscoverySpec, CheckSpec,
         HandoverSpec, ReportingSpec, ScreenerSpec, CommandLineSpec)


def plugin_manager(extra=(), entry_points=True, plugin_dirs=()):
    """The plugin manager with the shipped plugins, the installed ones
    (entry point group `football.plugins`), every plugin file of
    `plugin_dirs` and `extra` plugin objects; all checked against the specs."""
    manager = pluggy.PluginManager(PROJECT)
    for spec in SPECS:
        manager.add_hookspecs(spec)
    for name in BUILTIN_PLUGINS:
        module = importlib.import_module(name)
        manager.register(getattr(module, "new_plugin", lambda: module)(), name=name)
    if entry_points:
        register_entry_points(manager)
    manager.check_pending()
    for directory in plugin_dirs:
        register_plugin_dir(manager, directory)
    for plugin in extra:
        manager.register(plugin)
    manager.check_pending()
    return manager


def register_entry_points(manager):
    """Register the plugins of installed packages (entry point group
    `football.plugins`); `PluginLoadError` naming the entry point and its
    package when one cannot be loaded or does not match the specs."""
    for distribution in importlib.metadata.distributions():
        for entry_point in distribution.entry_points.select(group=ENTRY_POINT_GROUP):
            if manager.has_plugin(entry_point.name) or manager.is_blocked(entry_point.name):
                continue
            what = (f"plugin {entry_point.name} ({entry_point.value}) of the installed package "
                    f"{distribution.metadata['Name']} (entry point group {ENTRY_POINT_GROUP})")
            try:
                plugin = entry_point.load()
            except (Exception, SystemExit) as error:
                raise PluginLoadError(f"{what} cannot be loaded: {type(error).__name__}: "
                                      f"{error}") from None
            try:
                manager.register(plugin, name=entry_point.name)
                manager.check_pending()
            except pluggy.PluginValidationError as error:
                raise PluginLoadError(f"{what}: {error}") from None


def register_plugin_dir(manager, directory):
    """Import and register every `*.py` file of `directory` (not `_*.py`), in
    name order; `PluginLoadError` naming the file when one cannot be
    imported or does not match the specs."""
    path = Path(directory)
    if not path.is_dir():
        raise PluginLoadError(f"plugin directory {directory} does not exist (tunable "
                              "plugin_dirs); create it or remove it from the setting")
    for file in sorted(path.glob("*.py")):
        if file.name.startswith("_"):
            continue
        name = str(file.resolve())
        if manager.has_plugin(name):
            continue        # its hooks would be called twice (each notification sent twice)
        plugin = _import_file(file)
        try:
            manager.register(plugin, name=name)
            for caller in manager.get_hookcallers(plugin) or ():
                if not caller.has_spec() and not all(
                        impl.optionalhook for impl in caller.get_hookimpls()
                        if impl.plugin is plugin):
                    raise pluggy.PluginValidationError(
                        plugin, f"unknown hook {caller.name!r}; the hooks are listed in "
                        "football/hooks.py")
        except pluggy.PluginValidationError as error:
            raise PluginLoadError(f"plugin file {file}: {error}") from None


def _import_file(file):
    """The plugin of `file`: its module, or what its `new_plugin()` makes."""
    # A name per path, so that two directories may hold files of the same name.
    digest = hashlib.sha1(str(file.resolve()).encode()).hexdigest()[:10]
    name = f"football_plugin_{file.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        # (SystemExit: a script's `sys.exit(...)` when it lacks something)
        return getattr(module, "new_plugin", lambda: module)()
    except (Exception, SystemExit) as error:
        sys.modules.pop(name, None)
        raise PluginLoadError(f"plugin file {file} cannot be imported: "
                              f"{type(error).__name__}: {error}") from None


def problems_of(results, hook="a check hook"):
    """The problem strings of an all-results check hook: each plugin's list
    (or single string), concatenated. Any other answer (True for "fine") is
    `Illegal` naming the hook: it ended in a TypeError's traceback."""
    found = []
    for result in results:
        if not isinstance(result, (str, list, tuple)):
            raise Illegal(f"a plugin's {hook} answered {result!r}, not a list of problems "
                          f"(empty: none) nor one problem's text; nothing was changed: fix the "
                          f"plugin ({hook} in football/hooks.py says what it answers)")
        found.extend([result] if isinstance(result, str) else result)
    return [str(problem) for problem in found]


def vetoes_of(results, hook):
    """The reasons of the noes among the answers of a veto hook
    (`is_startable`, `want_downtime`): `False`, or `(False, reason)`; a yes
    is True (or None). Any other answer is `Illegal`: read as a yes, a
    plugin's reason alone (as `resource_locked` takes one), or 0, let the
    downtime begin that it meant to hold back."""
    reasons = []
    for result in results:
        if result is True:
            continue
        if result is False:
            reasons.append(f"a plugin's {hook} said no")
        elif isinstance(result, tuple) and result and result[0] is False:
            reasons.append(str(result[1]) if len(result) > 1 else f"a plugin's {hook} said no")
        else:
            raise Illegal(f"a plugin's {hook} answered {result!r}, neither a yes (True or None) "
                          "nor a no (False, or (False, reason)); asked before anything is "
                          f"stopped, nothing was stopped: fix the plugin ({hook} in "
                          "football/hooks.py says what it answers)")
    return reasons


class Hooks:
    """Calls hooks by name with keyword arguments (`hooks.lv_path(host=h,
    lv="vm1")`). A first-result hook nobody answered raises `NoPlugin`; an
    all-results hook returns the list of answers (empty when nobody
    implements it). With `config`, the plugins of its `plugin_dirs` are
    loaded and `configure(config)` is called."""

    def __init__(self, manager=None, config=None):
        if manager is None:
            manager = plugin_manager(plugin_dirs=config.plugin_dirs if config else ())
        self.manager = manager
        self.config = config
        if config is not None:
            self.call("configure", config=config)

    def handover_timeout(self):
        """Seconds `marsadm primary` (and the device after it) may take: the
        tunable, its default without a config."""
        if self.config is None:
            from football.config import TUNABLES

            return TUNABLES["handover_timeout"].default
        return self.config.handover_timeout

    def call(self, name, /, **kwargs):
        caller = getattr(self.manager.hook, name)
        spec = caller.spec
        if spec is not None and "hooks" in spec.argnames:
            kwargs.setdefault("hooks", self)
        result = caller(**kwargs)
        if spec is not None and not spec.opts.get("firstresult"):
            return result
        if result is None:
            host = kwargs.get("host")
            what = (f"host {host.name} (storage {host.storage}, manager {host.manager}, "
                    f"container {host.container})" if host is not None else "these arguments")
            raise NoPlugin(f"no plugin implements {name} for {what}; check the host's "
                           "inventory entry or install the plugin")
        return result

    def first(self, name, /, **kwargs):
        """The answer of a first-result hook where None is a fine answer
        (`rewrite_args`: leave them); never `NoPlugin`."""
        return getattr(self.manager.hook, name)(**kwargs)

    def problems(self, name, /, **kwargs):
        """The problems an all-results check hook found, as one list."""
        return problems_of(self.call(name, **kwargs), name)

    def vetoes(self, name, /, **kwargs):
        """The reasons of the plugins that said no to a veto hook."""
        return vetoes_of(self.call(name, **kwargs), name)

    def apply_host_layout(self, inventory):
        """Let the plugins name every host's volume group (`get_vg`) and the
        mountpoints of its resources (`get_mountpoint`)."""
        for host in inventory.hosts.values():
            vg = self.call("get_vg", host=host)
            if not isinstance(vg, str) or not vg:
                raise NoPlugin(f"get_vg answered {vg!r} for host {host.name}: a plugin must "
                               "return a volume group name")
            host.vg = vg
            host._mountpoint_of = functools.partial(self._mountpoint, host)

    def _mountpoint(self, host, res):
        return self.call("get_mountpoint", host=host, res=res)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda **kwargs: self.call(name, **kwargs)

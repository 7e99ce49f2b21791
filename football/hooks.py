"""Hook specifications (pluggy) and plugin loading.

A host's inventory entry names its storage (`lvm`, `filevg`), its cluster
manager (`systemd`, `lab`) and its container kind (`lxc`). Every plugin that
implements a hook is called in order; a plugin that is not responsible for the
host returns None, so for the hooks marked *first result* the responsible
plugin's answer wins. `call` raises `NoPlugin` when nobody answered.

Every hook receives the `Host` (football.inventory) and runs its commands on
it through `host.run(argv)`; no hook touches a host's files directly."""

import importlib.metadata

import pluggy

from football.errors import NoPlugin

PROJECT = "football"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

BUILTIN_PLUGINS = ("plugins.filevg", "plugins.lvm", "plugins.lxc", "plugins.labmanager",
                   "plugins.systemd")
ENTRY_POINT_GROUP = "football.plugins"


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
    def resource_start_vm(self, host, res, hooks):
        """Start only the container; the volume stays as it is. *First result.*"""

    @hookspec(firstresult=True)
    def resource_stop_vm(self, host, res, hooks):
        """Stop only the container; the volume stays mounted. *First result.*"""


SPECS = (StorageSpec, ContainerSpec, ClusterManagerSpec)


def plugin_manager(extra=(), entry_points=True):
    """The plugin manager with the shipped plugins, the installed ones
    (entry point group `football.plugins`) and `extra` plugin objects."""
    manager = pluggy.PluginManager(PROJECT)
    for spec in SPECS:
        manager.add_hookspecs(spec)
    for name in BUILTIN_PLUGINS:
        manager.register(importlib.import_module(name), name=name)
    if entry_points:
        manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    for plugin in extra:
        manager.register(plugin)
    manager.check_pending()
    return manager


class Hooks:
    """Calls hooks by name with keyword arguments; raises `NoPlugin` when no
    plugin answered a first-result hook."""

    def __init__(self, manager=None):
        self.manager = manager or plugin_manager()

    def call(self, name, **kwargs):
        if name.startswith("resource_"):
            kwargs.setdefault("hooks", self)
        result = getattr(self.manager.hook, name)(**kwargs)
        if result is None:
            host = kwargs.get("host")
            what = (f"host {host.name} (storage {host.storage}, manager {host.manager}, "
                    f"container {host.container})" if host is not None else "these arguments")
            raise NoPlugin(f"no plugin implements {name} for {what}; check the host's "
                           "inventory entry or install the plugin")
        return result

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda **kwargs: self.call(name, **kwargs)

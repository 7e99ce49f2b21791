"""Storage plugin `filevg`: the lab's volume groups of sparse files, run on
the host through `football-host vg <dir> ...` (football/hostside/filevg.py).
Same semantics and failure kinds as the `lvm` plugin."""

from football.errors import StorageError
from football.facts import CACHE
from football.hooks import hookimpl
from football.transport import json_of
from football.storage import storage_error

KIND = "filevg"


def vg_dir(host):
    return host.path(f"/dev/{host.vg}")


def _vg(host, *args):
    argv = ["football-host", "vg", vg_dir(host), *[str(arg) for arg in args]]
    # what the VG holds changes only by a command (facts: the run's cache)
    result = CACHE.run(host, argv) if args == ("info",) else host.run(argv, check=False)
    if not result.ok:
        raise storage_error(result, f"{args[0]} in volume group {host.vg}")
    return json_of(result)


def create_vg(host, size):
    """Create the host's VG with a capacity of `size` bytes (idempotent)."""
    return _vg(host, "create-vg", size)


@hookimpl
def lv_create(host, lv, size):
    if host.storage == KIND:
        return _vg(host, "create", lv, size)["path"]


@hookimpl
def lv_resize(host, lv, size):
    if host.storage != KIND:
        return None
    try:
        return _vg(host, "resize", lv, size)["size"]
    except StorageError as error:
        if error.kind == "unchanged":
            return _vg(host, "info")["lvs"][lv]
        raise


@hookimpl
def lv_rename(host, lv, new_name):
    if host.storage == KIND:
        return _vg(host, "rename", lv, new_name)["path"]


@hookimpl
def lv_remove(host, lv):
    if host.storage == KIND:
        _vg(host, "remove", lv)
        return True


@hookimpl
def lv_list(host):
    if host.storage == KIND:
        return _vg(host, "info")["lvs"]


@hookimpl
def vg_free(host):
    if host.storage == KIND:
        return _vg(host, "info")["free"]


@hookimpl
def lv_path(host, lv):
    if host.storage == KIND:
        return f"{vg_dir(host)}/{lv}"

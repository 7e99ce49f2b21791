"""View macros: `marsadm view-<macro> [<res>]`, byte-compatible output.

A macro prints its value and a newline, or nothing at all when the value is
empty. List values print one item per line. Per-resource macros given `all`
(or several resources) print, before each resource,

    --------- resource <res> <size> [<members>/<cluster hosts>]

Cluster-level macros (`cluster-members`, `my-resources`, `all-resources`)
print once; a resource argument to them is accepted and ignored, as in
kernel MARS."""

import os

from mars.errors import MarsError


def _disk_present(state, res):
    disk = state.disk(res)
    if not disk:
        return ""
    return "1" if os.path.exists(disk) else "0"


RESOURCE_VIEWS = {
    "disk-present": _disk_present,
    "sync-size": lambda state, res: str(state.size(res)),
    "resource-size": lambda state, res: str(state.size(res)),
    "get-primary": lambda state, res: state.designated_primary(res) or "",
    "get-disk": lambda state, res: state.disk(res),
    "resource-members": lambda state, res: state.members(res),
}

CLUSTER_VIEWS = {
    "cluster-members": lambda state: state.cluster_hosts(),
    "my-resources": lambda state: state.my_resources(),
    "all-resources": lambda state: state.all_resources(),
}


def format_value(value):
    """The exact bytes a view prints for one value."""
    if isinstance(value, (list, tuple)):
        return "".join(f"{item}\n" for item in value)
    return f"{value}\n" if value != "" else ""


def resource_header(state, res):
    return (f"--------- resource {res} {state.size(res)} "
            f"[{len(state.members(res))}/{len(state.cluster_hosts())}]\n")


def expand_resources(state, argument):
    """`all` -> this host's resources; `a,b` -> each, checked to exist.
    Returns (resources, with_headers)."""
    if argument == "all":
        return state.my_resources(), True
    names = [name for name in argument.split(",") if name]
    if not names:
        raise MarsError("no resource given")
    for name in names:
        state.require(name)
    return names, len(names) > 1


def render(state, macro, argument=None, runtime=None):
    """The complete output of `view-<macro> <argument>`. `runtime`
    (dataviews.Runtime) supplies marsd's local status for the data-plane
    macros."""
    from mars.dataviews import DATA_VIEWS, Runtime
    if macro in CLUSTER_VIEWS:
        return format_value(CLUSTER_VIEWS[macro](state))
    if macro in DATA_VIEWS:
        runtime = runtime or Runtime(None, daemon_running=False)
        view = DATA_VIEWS[macro]
        return _render_each(state, argument, macro, lambda res: view(state, res, runtime))
    if macro not in RESOURCE_VIEWS:
        raise MarsError(f"unknown view macro {macro!r}")
    return _render_each(state, argument, macro, lambda res: RESOURCE_VIEWS[macro](state, res))


def _render_each(state, argument, macro, value_of):
    if argument is None:
        raise MarsError(f"view-{macro} needs a resource name (or 'all')")
    resources, headers = expand_resources(state, argument)
    parts = []
    for res in resources:
        if headers:
            parts.append(resource_header(state, res))
        parts.append(format_value(value_of(res)))
    return "".join(parts)

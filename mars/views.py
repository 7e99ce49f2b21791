"""View macros: `marsadm view-<macro> [<res>]`, byte-compatible output.

A macro prints its value and a newline, or nothing at all when the value is
empty. List values print one item per line.

Given `all` (this host's resources) or a comma list, every macro -- the
cluster-level ones too, but `cluster-members` given `all` -- runs once per
resource, in kernel MARS's natural order (`vm2` before `vm10`), and prints
before each resource the kernel's header line (userspace/marsadm,
`do_all_res` with the `default-resource` macro):

    --------- resource <res> <size> [<members>/<cluster hosts>]

`<size>` as the kernel's `human-numbers` prints it (`1.000 MiB`, `20.000
GiB`, `512 B`); `guest` instead of `resource` where this host is not a
member. Given a single resource name, no header is printed.

Cluster-level macros (`cluster-members`, `my-resources`, `all-resources`)
without an argument print once; a single resource name is checked to exist
and otherwise ignored, as in kernel MARS; `view-cluster-members all` prints
once too (see ALL_NOT_EXPANDED)."""

import os

from mars.errors import MarsError
from mars.names import natural_order


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

# The kernel's `expand_res_list` does not expand `all` for a command whose
# name contains "cluster": `view-cluster-members all` matches no resource
# there (a warning, nothing on stdout). Here it prints its value once.
ALL_NOT_EXPANDED = {"cluster-members"}


def format_value(value):
    """The exact bytes a view prints for one value."""
    if isinstance(value, (list, tuple)):
        return "".join(f"{item}\n" for item in value)
    return f"{value}\n" if value != "" else ""


def human_size(count):
    """A byte count as kernel marsadm's `number2human` prints it with an
    automatic unit: binary units, three decimals, switching to GiB and TiB
    only from 9.99 of them on (`5120.000 MiB`, `10.000 GiB`), and whole bytes
    below 1 KiB (`512 B`)."""
    k = 1024.0
    if count >= k ** 4 * 9.99:
        unit, scale = "TiB", k ** 4
    elif count >= k ** 3 * 9.99:
        unit, scale = "GiB", k ** 3
    elif count >= k ** 2:
        unit, scale = "MiB", k ** 2
    elif count >= k:
        unit, scale = "KiB", k
    else:
        return f"{int(count + 0.1)} B"
    return f"{count / scale:.3f} {unit}"


def resource_header(state, res):
    """The line kernel marsadm prints before each resource of `all` or a list."""
    kind = "resource" if state.local_host in state.members(res) else "guest"
    return (f"--------- {kind} {res} {human_size(state.size(res))} "
            f"[{len(state.members(res))}/{len(state.cluster_hosts())}]\n")


def expand_resources(state, argument):
    """`all` -> this host's resources; `a,b` -> each, checked to exist; both
    in natural order, as the kernel's `expand_res_list` sorts them.
    Returns (resources, with_headers): headers for `all` and lists only."""
    if argument == "all":
        return sorted(state.my_resources(), key=natural_order), True
    names = [name for name in argument.split(",") if name]
    if not names:
        raise MarsError("no resource given")
    for name in names:
        state.require(name)
    if "," not in argument:
        return names, False
    return sorted(names, key=natural_order), True


def resource_sections(state, argument):
    """[(res, header)] for `argument`; header is '' where none is printed."""
    resources, headers = expand_resources(state, argument)
    return [(res, resource_header(state, res) if headers else "") for res in resources]


def render(state, macro, argument=None, runtime=None):
    """The complete output of `view-<macro> <argument>`. `runtime`
    (dataviews.Runtime) supplies marsd's local status for the data-plane
    macros."""
    from mars.dataviews import DATA_VIEWS, Runtime
    if macro in CLUSTER_VIEWS:
        if argument is None or (argument == "all" and macro in ALL_NOT_EXPANDED):
            return format_value(CLUSTER_VIEWS[macro](state))
        return _render_each(state, argument, macro, lambda res: CLUSTER_VIEWS[macro](state))
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
    return "".join(header + format_value(value_of(res))
                   for res, header in resource_sections(state, argument))

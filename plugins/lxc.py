"""Container plugin `lxc`: LXC containers through the python lxc bindings,
run on the host by `football-host ct <lxcpath> ...`
(football/hostside/container.py). The container's directory is its volume's
mountpoint, so its configuration travels with the volume."""

from football.errors import FootballError
from football.hooks import hookimpl
from football.transport import json_of

KIND = "lxc"


class ContainerFailed(FootballError):
    """A container command failed on a host."""


def _ct(host, *args, timeout=120):
    result = host.run(["football-host", "ct", host.path(host.lxcpath), *args],
                      check=False, timeout=timeout)
    if not result.ok:
        raise ContainerFailed(f"{host.name}: container {args[0]} {' '.join(args[1:])} failed "
                              f"(`{result.command}` {result.how_it_ended}): "
                              f"{result.said}")
    return json_of(result)


@hookimpl
def container_create(host, res):
    if host.container == KIND:
        _ct(host, "create", res)
        return True


@hookimpl
def container_start(host, res):
    if host.container == KIND:
        _ct(host, "start", res)
        return True


@hookimpl
def container_stop(host, res):
    if host.container == KIND:
        _ct(host, "stop", res)
        return True


@hookimpl
def container_state(host, res):
    """RUNNING, STOPPED or UNDEFINED (the hook's answers): LXC's other
    states (FROZEN, FREEZING, THAWED, STARTING, STOPPING, ABORTING) are
    RUNNING, as LXC's own `running` has them: the processes are there, its
    volume is in use. Every caller asks for RUNNING: a frozen container was
    taken for one its operator stopped (a move kept it stopped, repair-vm
    started it elsewhere)."""
    if host.container == KIND:
        state = _ct(host, "state", res)["state"]
        return state if state in ("STOPPED", "UNDEFINED") else "RUNNING"


def list_containers(host):
    """{name: state} of every container under the host's lxcpath."""
    return _ct(host, "list")

"""Cluster manager `lab`: what the systemd units do in production, done by
direct commands on hosts without systemd as init (the lab). Start = become
MARS primary, wait for the device, mount it, start the container (without
the last step for a container its operator stopped: it stays stopped); stop
= stop the container, unmount."""

import time

from football import facts
from football.errors import FootballError
from football.hooks import hookimpl

KIND = "lab"
UMOUNT_ATTEMPTS = 20


class ManagerFailed(FootballError):
    """Starting or stopping a resource's stack failed on a host."""


def mount(host, res):
    """Mount the resource's device at its mountpoint (no-op when mounted)."""
    mountpoint, device = host.mountpoint(res), host.device(res)
    if facts.mount_source(host, mountpoint):
        return False
    host.run(["mkdir", "-p", mountpoint])
    host.run(["mount", "-t", "xfs", device, mountpoint])
    return True


def umount(host, res):
    """Unmount the resource's volume; a busy mount is retried for a while
    (the container's last processes may still be exiting). Done once
    nothing is mounted there: one umount removes only the top one of
    mounts stacked there (two starts that both found it free)."""
    mountpoint = host.mountpoint(res)
    for attempt in range(UMOUNT_ATTEMPTS):
        if not facts.mount_source(host, mountpoint):
            return attempt > 0
        result = host.run(["umount", mountpoint], check=False)
        if not result.ok:
            time.sleep(0.1 * (attempt + 1))
    if not facts.mount_source(host, mountpoint):        # the last umount took the last one
        return True
    raise ManagerFailed(f"{host.name}: cannot unmount {mountpoint}: {result.stderr.strip()}; "
                        f"find what holds it (fuser -vm {mountpoint}) and stop it")


def stale_source(host, res):
    """What the resource's mountpoint is mounted from when that is not its
    device (`<dev_dir>/<res>` or where it points), else None: the loop
    device of a device that crashed with marsd. What runs on it writes
    nowhere, and marsd starts no new device while it is mounted."""
    device = host.device(res)
    source = facts.mount_source(host, host.mountpoint(res))
    if source in (None, device):
        return None
    current = host.run(["readlink", "-f", device], check=False).stdout.strip()
    return None if source == current else source


@hookimpl
def resource_start(host, res, hooks):
    if host.manager != KIND:
        return None
    resource_start_stack(host, res, hooks)
    hooks.container_start(host=host, res=res)
    return True


@hookimpl
def resource_start_stack(host, res, hooks):
    if host.manager != KIND:
        return None
    if stale_source(host, res):         # its container first, then the dead mount
        hooks.container_stop(host=host, res=res)
        umount(host, res)
    timeout = hooks.handover_timeout()
    host.run(["marsadm", f"--timeout={timeout:g}", "primary", res], timeout=timeout + 30)
    host.run(["marsadm", f"--timeout={timeout:g}", "wait-resource", res, "is-device-on"],
             timeout=timeout + 30)
    mount(host, res)
    return True


@hookimpl
def keeps_stopped(host):
    return True if host.manager == KIND else None


@hookimpl
def resource_stop(host, res, hooks):
    if host.manager != KIND:
        return None
    hooks.container_stop(host=host, res=res)
    umount(host, res)
    return True


@hookimpl
def resource_start_vm(host, res, hooks):
    if host.manager == KIND:
        return hooks.container_start(host=host, res=res)


@hookimpl
def resource_stop_vm(host, res, hooks):
    if host.manager == KIND:
        return hooks.container_stop(host=host, res=res)

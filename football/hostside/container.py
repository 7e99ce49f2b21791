"""LXC containers on this host through the python lxc bindings.

A container's directory `<lxcpath>/<name>` is the mountpoint of its volume,
so its `config` and `rootfs/` travel with the volume from host to host. The
only host-specific line, `lxc.rootfs.path`, is rewritten to this host's
mountpoint before each start."""

import os
import re
import signal
import subprocess
import time
from pathlib import Path

from football.journal import replace_durably
from football.templates import render

WORKLOAD_LOG = "/var/workload.log"
WORKLOAD_INTERVAL_VARIABLE = "FOOTBALL_LAB_WORKLOAD_INTERVAL"
STOP_TIMEOUT = 10
START_TIMEOUT = 10
# A start that fails with the container STOPPED is tried again (its monitor
# gone first, see _wait_while); the waits double from 0.5 s.
START_ATTEMPTS = 5
MONITOR_EXIT_TIMEOUT = 30


class ContainerError(Exception):
    pass


def _container(name, lxcpath):
    import lxc  # the bindings need liblxc; imported where used, not at load time

    return lxc.Container(name, config_path=str(lxcpath))


def _readable(name, lxcpath):
    """The container, or None where its config cannot be read: not there,
    or on a filesystem that died under it (a device that crashed: LXC then
    refuses the container, or does not see it, while it runs on)."""
    try:
        container = _container(name, lxcpath)
    except RuntimeError:                # "error during init": its config gave EIO
        return None
    return container if container.defined else None


def state(name, lxcpath):
    """`RUNNING`, `STOPPED` (and the transitional states), or `UNDEFINED`
    (no container, or one whose config cannot be read that does not run)."""
    container = _readable(name, lxcpath)
    if container is None:
        return "RUNNING" if _inits(name, lxcpath) else "UNDEFINED"
    return container.state


def list_states(lxcpath):
    """{name: state} of the containers under `lxcpath`, those LXC cannot
    open (`_readable`) that run included: their monitors name them."""
    import lxc

    names = set(lxc.list_containers(config_path=str(lxcpath)))
    names |= {name for path, name in monitor_commands().values() if path == str(Path(lxcpath))}
    return {name: state(name, lxcpath) for name in sorted(names)}


def create(name, lxcpath):
    """Create the busybox container `name` in its (mounted, empty) directory
    with the lab workload as init. A complete container is left alone; one
    whose creation was interrupted is completed."""
    directory = Path(lxcpath) / name
    rootfs = directory / "rootfs"
    workload = rootfs / "bin" / "workload"
    container = _container(name, lxcpath)
    if container.defined and workload.exists():
        return False
    if not container.defined or not (rootfs / "bin" / "busybox").exists():
        container.clear_config()
        container.set_config_item("lxc.net.0.type", "empty")
        if not container.create("busybox", 0, {}):
            raise ContainerError(f"lxc create of {name} in {lxcpath} (template busybox) failed; "
                                 f"see the lxc messages above")
    _write(directory / "config", render("lxc/busybox.conf.j2", name=name, rootfs=rootfs))
    # the workload last: its presence marks a complete container, so what
    # came before is made durable first (a device that crashed a few seconds
    # after the creation left an empty busybox: "Exec format error")
    _sync_filesystem(directory)
    _write(workload, render("lab/workload.sh", log=WORKLOAD_LOG, interval=workload_interval()),
           mode=0o755)
    _sync_filesystem(directory)
    return True


def _sync_filesystem(path):
    """syncfs(2) of the filesystem `path` is on (`sync -f`)."""
    result = subprocess.run(["sync", "-f", str(path)], capture_output=True, text=True)
    if result.returncode:
        raise ContainerError(f"sync -f {path} failed: {result.stderr.strip()}")


def workload_interval():
    """Seconds between the lab workload's records: 0.1, or what
    `FOOTBALL_LAB_WORKLOAD_INTERVAL` says (0.01 to 10). The tests that run
    several containers side by side on two CPUs take fewer records: each
    is logged, fetched and replayed on two hosts."""
    text = os.environ.get(WORKLOAD_INTERVAL_VARIABLE, "").strip()
    if not text:
        return "0.1"
    try:
        seconds = float(text)
    except ValueError:
        seconds = None
    if seconds is None or not 0.01 <= seconds <= 10:
        raise ContainerError(f"{WORKLOAD_INTERVAL_VARIABLE}={text!r}: give seconds from 0.01 "
                             f"to 10 (the lab workload's interval)")
    return f"{seconds:g}"


def start(name, lxcpath):
    """Start the container and wait until it runs; a running one is left alone."""
    directory = Path(lxcpath) / name
    container = _container(name, lxcpath)
    if not container.defined:
        raise ContainerError(f"container {name} is not defined in {lxcpath} "
                             "(is its volume mounted there?)")
    if container.running:
        return False
    _point_rootfs_here(directory)
    log = Path(lxcpath) / f".{name}.log"
    for attempt in range(1, START_ATTEMPTS + 1):
        _wait_while(lambda: monitors(name, lxcpath) or dying_namesakes(name, lxcpath))
        container = _container(name, lxcpath)
        _refuse_without_its_rootfs(container, directory)
        container.set_config_item("lxc.log.file", str(log))
        if container.start() and container.wait("RUNNING", START_TIMEOUT):
            return True
        if container.state != "STOPPED" or attempt == START_ATTEMPTS:
            break
        time.sleep(0.5 * 2 ** (attempt - 1))
    raise ContainerError(f"container {name} did not start (attempt {attempt} of "
                         f"{START_ATTEMPTS}, state {container.state}); "
                         f"{_what_it_had(directory, log)}")


def _refuse_without_its_rootfs(container, directory):
    """LXC starts a container whose configuration is missing or empty on
    the host's own root, with the host's init: a damaged config file on a
    volume (CI: one that arrived empty after a handover) must stop the start."""
    wanted = directory / "rootfs"
    found = (container.get_config_item("lxc.rootfs.path") or "") if container.defined else ""
    if Path(found.removeprefix("dir:")) == wanted:
        return
    what = ("is missing" if not container.defined else
            f"names rootfs {found}" if found else "names no rootfs")
    raise ContainerError(
        f"container {container.name} not started: its config {directory / 'config'} {what} "
        f"(wanted {wanted}); LXC would run it on this host's own root. Restore the config "
        f"from a replica or the container's template, then start it again")


def _what_it_had(directory, log):
    """For the error of a failed start: the top of its rootfs (an empty one
    means its volume is not mounted) and the end of LXC's log."""
    rootfs = directory / "rootfs"
    try:
        entries = sorted(entry.name for entry in rootfs.iterdir())
        top = ", ".join(entries[:12]) + (", ..." if len(entries) > 12 else "") or "empty"
    except OSError as error:
        top = f"unreadable: {error.strerror}"
    try:
        tail = log.read_text(errors="replace").splitlines()[-4:]
    except OSError:
        tail = []
    return f"{rootfs} holds: {top}; the end of its log {log}:\n" + "\n".join(tail)


def stop(name, lxcpath, timeout=STOP_TIMEOUT):
    """Shut the container down (halt signal), killing it after `timeout` s.
    A frozen one (its operator paused it: `lxc-freeze`) is thawed first:
    frozen, its init cannot take the halt signal, so the shutdown waited
    all of `timeout` (inside a downtime window) and then killed it. One
    whose config cannot be read (`_readable`) is killed: LXC cannot stop
    it, and its filesystem is dead anyway."""
    container = _readable(name, lxcpath)
    if container is None:
        return _kill(name, lxcpath)
    if not container.running:
        return False
    _thaw(container, min(timeout, THAW_WAIT))
    if not container.shutdown(timeout):
        container.stop()
    deadline = time.monotonic() + timeout
    while container.running and time.monotonic() < deadline:
        time.sleep(0.05)
    if container.running:
        raise ContainerError(f"container {name} is still running after stop")
    _wait_while(lambda: monitors(name, lxcpath))
    return True


THAW_WAIT = 5.0         # seconds a stop waits at most for a frozen container to thaw


def _thaw(container, timeout):
    """Thaw a container that is not plainly RUNNING (FROZEN, FREEZING, or
    on its way back: THAWED), asked again until it runs, for at most
    `timeout` s (failing, the shutdown waits, then the kill thaws it). A
    stop of a frozen one in CI, on a busy machine, waited all of its
    timeout once: the thaw asked only while the state said FROZEN."""
    deadline = time.monotonic() + timeout
    while container.state != "RUNNING" and container.running:
        container.unfreeze()
        if time.monotonic() >= deadline:
            return
        time.sleep(0.05)


def _kill(name, lxcpath):
    """Kill the init of a container LXC cannot open (its monitor's child:
    the rest of the container dies with it); whether one ran."""
    inits = _inits(name, lxcpath)
    for pid in inits:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _wait_while(lambda: monitors(name, lxcpath))
    left = monitors(name, lxcpath)
    if left:
        raise ContainerError(f"container {name} (its config unreadable) still runs after its "
                             f"init was killed: monitors {left}")
    return bool(inits)


def _inits(name, lxcpath):
    """Pids of the container's init: the children of its monitors, found
    by their command line (which needs no config)."""
    inits = []
    for monitor in monitors(name, lxcpath):
        try:
            inits += [int(pid) for pid in
                      Path(f"/proc/{monitor}/task/{monitor}/children").read_text().split()]
        except OSError:             # it ended meanwhile
            continue
    return inits


MONITOR = "[lxc monitor] "


def monitor_commands():
    """{pid: (lxcpath, name)} of every LXC monitor process on this machine
    (command line `[lxc monitor] <lxcpath> <name>`)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().rstrip(b"\0").decode(errors="replace")
            except OSError:
                continue
            if command.startswith(MONITOR) and " " in command[len(MONITOR):]:
                path, name = command[len(MONITOR):].rsplit(" ", 1)
                found[int(entry.name)] = (path, name)
    return found


def monitors(name, lxcpath):
    """Pids of LXC's monitor processes of the container."""
    wanted = (str(Path(lxcpath)), name)
    return [pid for pid, monitored in monitor_commands().items() if monitored == wanted]


def dying_namesakes(name, lxcpath, state_of=None):
    """Pids of the monitors of containers of the same name in other LXC
    paths that do not run (stopping, aborting, just stopped). The lab's hosts
    share one machine, and a start beside such a monitor of a namesake fails
    as beside its own ("Failed to mount temporary procfs", "Failed to open
    /dev/pts/0": CI, a handover's start while another lab's vm1 stopped). A
    namesake that runs is no matter, nor is one LXC cannot open (`state`: a
    CI run's start failed with LXC's "error during init" of another lab's
    vm1 on a crashed device). On a real host there is one LXC path."""
    state_of = state_of or (lambda other: state(name, other))
    own = str(Path(lxcpath))
    return [pid for pid, (path, monitored) in monitor_commands().items()
            if monitored == name and path != own and state_of(path) != "RUNNING"]


def _wait_while(monitors_found, timeout=MONITOR_EXIT_TIMEOUT):
    """Until `monitors_found()` finds none, bounded. A stopped container's
    monitor goes on for a while (it removes the cgroups and the mounts): a
    start before it is gone runs beside it and fails (CI: a compensation
    restarted the container a moment after the stop; "Failed to mount
    temporary procfs", two monitors); so does one beside a namesake's (see
    `dying_namesakes`). A monitor that stays is left to the start to report."""
    deadline = time.monotonic() + timeout
    while monitors_found() and time.monotonic() < deadline:
        time.sleep(0.05)


def _point_rootfs_here(directory):
    config = directory / "config"
    text = config.read_text()
    wanted = f"lxc.rootfs.path = dir:{directory / 'rootfs'}"
    updated = re.sub(r"(?m)^lxc\.rootfs\.path\s*=.*$", wanted, text)
    if updated != text:
        _write(config, updated)


def _write(path, text, mode=0o644):
    replace_durably(path, text, path.with_name(path.name + ".tmp"), mode)

"""Cluster manager `systemd` (production, the football-basic model).

Each resource has three units on every host that may run it, rendered from
`templates/systemd/`:

- `<escaped mountpoint>.mount` mounts `/dev/mars/<res>` at the container's
  directory. It is the *stop unit*: stopping it stops everything above it.
- `football-ct-<escaped res>.service` runs the LXC container; it binds to the
  mount unit. It is the *start unit*: starting it mounts the volume first.
- `football-ct-<escaped res>.path`, the trigger, starts the container unit
  whenever the MARS device exists on this host (this host is the actual
  primary). The container unit arms it, and stopping the container disarms it.

Start = `marsadm primary` + make sure the start unit runs; stop = stop the
stop unit. The units MARS records (`marsadm get-systemd-unit`) are the ones
used: an operator's own are left as they are (and only their stop unit is
known to stop the stack: `resource_stop_vm` leaves the container to the
container plugin). While none are recorded, or Football's are (told by the
start unit; the mount unit's name follows the host's mountpoint), Football's
are written where missing or different — never over a file it did not
render — and the trigger armed before `marsadm primary`: with units
recorded, kernel marsadm's `primary` returns only once the device is open on
the new primary. They are recorded after it, where the recorded ones are not
this host's (`set-systemd-unit` gives its want to the designated primary:
recorded before, the old primary's marsd would start the container it just
stopped).

The units go to `/etc/systemd/system`, not `/run` (MARS.md's place for
units kernel marsadm renders again at every boot from its templates):
Football renders them once, on the host it starts the resource on, and a
rebooted host's marsd starts the container again only if its unit is still
there. A unit systemd does not know on a host is stopped there, for
`resource_stop` as for marsd.

No `resource_start_stack` (a stopped container cannot stay stopped across a
move, so `keeps_stopped` is the default no): `marsadm primary` gives
`systemd-want` to the new primary, kernel MARS's as ours, and its marsd
starts the start unit once the device is up; a `(none)` want does not
survive the handover.

The mount unit names the device through `/proc/self/root`
(`What=/proc/self/root/dev/mars/<res>`): a `What=` below /dev makes systemd
require the device unit udev announces for it, and the userspace marsd's
`/dev/mars/<res>` is a symlink udev knows nothing of — the mount waited for
`dev-mars-<res>.device` until its job timed out (90 s) and failed. mount(8)
resolves the path to the block device (the loop device, or kernel MARS's
own), and once mounted systemd binds the unit to that device's unit.

Every command runs through `host.run` as an argument list."""

import logging
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from football.errors import FootballError, Illegal
from football.hooks import hookimpl
from football.templates import render
from football.transport import tail
from mars.errors import MarsError
from mars.names import check_resource

log = logging.getLogger(__name__)

KIND = "systemd"
UNIT_DIR = "/etc/systemd/system"
MARSD_UNIT = "marsd.service"

# Where the binaries are on a production host (pip installs scripts to
# /usr/local/bin, Debian's lxc package to /usr/bin). Units need absolute paths.
MARSD = "/usr/local/bin/marsd"
LXC_START = "/usr/bin/lxc-start"
LXC_STOP = "/usr/bin/lxc-stop"
LXC_WAIT = "/usr/bin/lxc-wait"

# The units' own limits, rendered into them. A stop may take the container's
# ExecStop, its SIGTERM and its SIGKILL each STOP_SECONDS, then the unmount
# systemd's default limit; `systemctl` waits for all of it, and a margin.
START_SECONDS = 90
STOP_SECONDS = 120
MOUNT_SECONDS = 90
UNIT_TIMEOUT = 3 * STOP_SECONDS + MOUNT_SECONDS + 30
STOPPED_STATES = ("inactive", "failed")
RENDERED_MARK = "rendered by Football"       # in the first line of every unit Football renders
# what marsadm says of a resource it does not know (ours; kernel marsadm's)
_UNKNOWN_RESOURCE = re.compile(r"unknown resource|does not exist|no such resource", re.IGNORECASE)

# The characters systemd leaves alone in unit names (systemd-escape).
_UNIT_NAME_CHARS = re.compile(r"[A-Za-z0-9:_.]")
# systemd makes a mount unit whose What= starts so require the device unit
# of that path (systemd's is_device_path); a path through the root of the
# process that mounts (mount(8), run by systemd) names the same file
# without it.
_DEVICE_PATH_PREFIXES = ("/dev/", "/sys/")
_WITHOUT_DEVICE_UNIT = "/proc/self/root"
# Paths go into unit files unquoted, where systemd expands `%`, `$` and `\`
# and splits at white space: allow only what needs none of that.
_PLAIN_PATH = re.compile(r"/[A-Za-z0-9_.:+@/-]*")


class UnitFailed(FootballError):
    """A systemd unit did not reach the state Football asked for on a host."""


def escape(text):
    """`text` as a unit name component, like `systemd-escape TEXT`: `/`
    becomes `-`; `-`, `\\`, a leading `.` and every byte outside
    `[A-Za-z0-9:_.]` become `\\xNN`."""
    escaped = []
    for position, char in enumerate(text):
        if char == "/":
            escaped.append("-")
        elif _UNIT_NAME_CHARS.fullmatch(char) and not (position == 0 and char == "."):
            escaped.append(char)
        else:
            escaped.extend(f"\\x{byte:02x}" for byte in char.encode())
    return "".join(escaped)


def escape_path(path):
    """`path` as a unit name, like `systemd-escape --path PATH`: duplicate and
    trailing slashes and `.` components are dropped, the root is `-`, and
    `..` is refused (ValueError), as systemd refuses it."""
    parts = [part for part in str(path).split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"path {path!r} is not normalized ('..'); "
                         "systemd cannot name a unit after it")
    return escape("/".join(parts)) if parts else "-"


@dataclass(frozen=True)
class ResourceUnits:
    """The unit names of one resource on one host."""

    mount: str
    container: str
    trigger: str

    @property
    def start(self):
        return self.container

    @property
    def stop(self):
        return self.mount


def resource_units(host, res):
    """The names of `res`'s units on `host`."""
    _check_resource(res)
    # Escaped, so that `-` in a resource name does not make systemd apply one
    # resource's drop-ins (football-ct-db-.service.d/) to another (db-01).
    stem = f"football-ct-{escape(res)}"
    return ResourceUnits(mount=escape_path(host.mountpoint(res)) + ".mount",
                         container=f"{stem}.service", trigger=f"{stem}.path")


def unit_names(host, res):
    """(start unit, stop unit) of `res` on `host`, as `marsadm
    set-systemd-unit` records them: the container service and the mount."""
    units = resource_units(host, res)
    return units.start, units.stop


def render_units(host, res, *, lxc_start=LXC_START, lxc_stop=LXC_STOP, lxc_wait=LXC_WAIT):
    """{unit file name: text} of `res`'s mount, container and trigger units."""
    units = resource_units(host, res)
    variables = dict(
        resource=res, escaped_resource=escape(res), host=host.name,
        mountpoint=_plain_path(host.mountpoint(res), "mountpoint"),
        lxcpath=_plain_path(host.path(host.lxcpath), "lxcpath"),
        device=_plain_path(host.device(res), "device"),
        mount_source=mount_source(host.device(res)),
        mount_unit=units.mount, container_unit=units.container, trigger_unit=units.trigger,
        lxc_start=_plain_path(lxc_start, "lxc-start"), lxc_stop=_plain_path(lxc_stop, "lxc-stop"),
        lxc_wait=_plain_path(lxc_wait, "lxc-wait"),
        start_seconds=START_SECONDS, stop_seconds=STOP_SECONDS,
        mount_seconds=MOUNT_SECONDS)
    return {units.mount: render("systemd/volume.mount.j2", **variables),
            units.container: render("systemd/container.service.j2", **variables),
            units.trigger: render("systemd/trigger.path.j2", **variables)}


def mount_source(device):
    """The mount unit's `What=` for the MARS device path `device`: below /dev
    (production), the same path through `/proc/self/root`, so that systemd
    does not wait for a device unit of it (the userspace marsd's symlink has
    none); elsewhere (a lab host's root) as it is."""
    device = _plain_path(device, "device")
    if device.startswith(_DEVICE_PATH_PREFIXES):
        return _WITHOUT_DEVICE_UNIT + device
    return device


def render_marsd(host, *, marsd=MARSD):
    """{`marsd.service`: text}: marsd of `host`, its state below `host.root`."""
    return {MARSD_UNIT: render("systemd/marsd.service.j2", host=host.name,
                               mars_root=_plain_path(host.root, "root"),
                               marsd=_plain_path(marsd, "marsd"))}


def install_units(host, res, **binaries):
    """Write `res`'s units into /etc/systemd/system on `host`, reload systemd
    and record the start and stop unit in MARS. Idempotent; starts nothing.
    `binaries` override the paths of `render_units`."""
    write_units(host, res, render_units(host, res, **binaries))
    record_units(host, res)


def write_units(host, res, units):
    """Write the {name: text} `units` into /etc/systemd/system on `host` and
    reload systemd. Where a write or the reload fails, the files are put
    back as they were (those that were not there removed), said once in the
    log: systemd still runs the units it had, their files stay with them,
    and the next run, finding files that differ from what it renders,
    writes and reloads again."""
    files = {name: _unit_file(host, name) for name in units}
    previous = {name: _previous_text(host, file) for name, file in files.items()}
    written = []
    try:
        for name, text in units.items():
            written.append(name)
            _run(host, ["install", "-D", "-m", "0644", "/dev/stdin", files[name]],
                 f"writing unit {name}", "check that /etc/systemd/system is writable on the "
                 "host; the unit files are as they were before", input=text)
        _run(host, ["systemctl", "daemon-reload"], "reloading systemd",
             "see `journalctl -b -u init.scope` on the host; the unit files are as they were "
             "before (systemd still runs those), the next run writes them anew")
    except Exception:
        _put_back(host, res, {name: previous[name] for name in written}, files)
        raise


def _previous_text(host, file):
    """The text of unit file `file` on `host`, None where there is none
    (told by cat's words, in the C locale whatever the host's)."""
    result = host.run(["env", "LC_ALL=C", "cat", file], check=False, timeout=30)
    if result.ok:
        return result.stdout
    if "No such file" in result.stderr:
        return None
    raise _failed(host, result, f"reading {file}", "check that /etc/systemd/system is readable "
                  "on the host; nothing changed")


def _put_back(host, res, previous, files):
    """After a failed write or reload: each unit file of {name: text before
    (None: none)} `previous` as it was. Never raises (the failure that
    brought it here is what the operator must see); says once in the log
    what it did and what it could not."""
    restored, removed, failed = [], [], []
    for name, text in previous.items():
        if text is None:
            argv, done = ["rm", "-f", files[name]], removed
        else:
            argv, done = ["install", "-D", "-m", "0644", "/dev/stdin", files[name]], restored
        try:
            result = host.run(argv, check=False, timeout=30, input=text)
        except Exception as error:          # noqa: BLE001 - keep putting the others back
            failed.append(f"{name} ({error})")
            continue
        if result.ok:
            done.append(name)
        else:
            failed.append(f"{name} (`{result.command}` {result.how_it_ended}: "
                          f"{tail(result.stderr) or '(no output)'})")
    said = [f"{what}: {', '.join(names)}" for what, names in
            [("put back as before", restored), ("removed (there was none before)", removed),
             ("NOT put back, fix by hand", failed)] if names]
    log.warning("%s: the units of %s were not taken up by systemd; their files %s",
                host.name, res, "; ".join(said))


def record_units(host, res):
    """Record Football's start and stop unit of `res` in MARS (from `host`)."""
    start, stop = unit_names(host, res)
    _run(host, ["marsadm", "set-systemd-unit", res, start, stop], f"recording the units of {res}",
         f"check that {host.name} is a member of {res} (marsadm view {res})")


def recorded_units(host, res):
    """(start unit, stop unit) MARS records for `res`, read on `host`, or
    None while none are recorded there (also where `res` is not known yet:
    a dry run's new host). Kernel marsadm prints one line, `<start> <stop>`,
    or the start unit alone (then also the stop unit)."""
    result = host.run(["marsadm", "get-systemd-unit", res], check=False, timeout=60)
    if not result.ok:
        if _UNKNOWN_RESOURCE.search(result.stderr):
            return None
        raise _failed(host, result, f"reading the units of {res}",
                      f"see `marsadm view {res}` on {host.name}")
    names = result.stdout.split()
    return (names[0], names[-1]) if names else None


def units_of(host, res):
    """(start unit, stop unit, whether they are Football's) of `res` on
    `host`: Football's (the stop unit this host's mount) unless MARS
    records others."""
    recorded = recorded_units(host, res)
    if _footballs(host, res, recorded):
        return (*unit_names(host, res), True)
    return (*recorded, False)


def ensure_units(host, res):
    """Make `host` able to run `res` under systemd; return (start unit,
    whether Football's are to be recorded, whether they are Football's).
    Recorded units that are not Football's are used as they are;
    Football's are written where a file is missing or differs from what
    Football renders now — never over a file Football did not render."""
    recorded = recorded_units(host, res)
    if not _footballs(host, res, recorded):
        return recorded[0], False, False
    names = unit_names(host, res)
    units = render_units(host, res)
    files = [_unit_file(host, name) for name in units]
    present = host.run(["cat", *files], check=False, timeout=30)
    if not present.ok or present.stdout != "".join(units.values()):
        # (-L: the files without the mark; -s: none for a missing one)
        others = host.run(["grep", "-L", "-s", "-F", RENDERED_MARK, *files], check=False,
                          timeout=30).stdout.split()
        if others:
            raise UnitFailed(f"{host.name}: {', '.join(others)} "
                             f"{'is' if len(others) == 1 else 'are'} not Football's (no "
                             f"'{RENDERED_MARK}'), and Football's units of {res} have "
                             "these names; nothing changed — record your own units of it "
                             f"(`marsadm set-systemd-unit {res} <start unit> <stop unit>`), "
                             "or move the files away")
        write_units(host, res, units)
    return names[0], recorded != names, True


def _footballs(host, res, recorded):
    """Whether `recorded` units (None: none) are Football's: told by the
    start unit, the same on every host (the mount unit is named after the
    host's mountpoint, which may differ from host to host)."""
    return recorded is None or recorded[0] == resource_units(host, res).start


@hookimpl
def resource_start(host, res, hooks):
    if host.manager != KIND:
        return None
    start, unrecorded, footballs = ensure_units(host, res)
    if footballs:
        # armed before the handover: with units recorded, kernel marsadm's
        # `primary` returns only once the device is open on the new primary
        # (its systemd-want step), which the trigger's start of the stack does
        trigger = resource_units(host, res).trigger
        _run(host, ["systemctl", "start", trigger], f"arming {trigger}",
             _systemctl_advice(host, start), timeout=UNIT_TIMEOUT)
    timeout = hooks.handover_timeout()
    _run(host, ["marsadm", f"--timeout={timeout:g}", "primary", res],
         f"making {host.name} the primary of {res}",
         f"see `marsadm view {res}` on {host.name}", timeout=timeout + 30)
    _run(host, ["marsadm", f"--timeout={timeout:g}", "wait-resource", res, "is-device-on"],
         f"waiting for the device of {res}",
         f"see `marsadm view {res}` on {host.name}", timeout=timeout + 30)
    if unrecorded:
        record_units(host, res)
    _start_unit(host, start)
    return True


@hookimpl
def resource_stop(host, res):
    if host.manager != KIND:
        return None
    start, stop, footballs = units_of(host, res)
    # Football's: the container is bound to the mount; an operator's stop
    # unit is all that is known to stop
    _stop_unit(host, stop, start if footballs else stop)
    return True


@hookimpl
def resource_start_vm(host, res):
    if host.manager != KIND:
        return None
    start, _, footballs = units_of(host, res)
    if not footballs:
        return None         # which of an operator's units is the container's is not known
    _start_unit(host, start)
    return True


@hookimpl
def resource_stop_vm(host, res):
    if host.manager != KIND:
        return None
    start, _, footballs = units_of(host, res)
    if not footballs:
        return None         # (the container plugin's stop, keeping the mount)
    _stop_unit(host, start, start)
    return True


def _start_unit(host, unit):
    """Start `unit` and insist that it is active afterwards."""
    _run(host, ["systemctl", "start", unit], f"starting {unit}", _systemctl_advice(host, unit),
         timeout=UNIT_TIMEOUT)
    state = _unit_state(host, unit)
    if state != "active":
        raise UnitFailed(f"{host.name}: {unit} is {state} after `systemctl start {unit}`, "
                         f"not active; {_look_at(host, unit)}, fix the cause and start again")


def _stop_unit(host, unit, must_stop):
    """Stop `unit` and insist that it and `must_stop` (one bound to it) are
    no longer active afterwards. A unit systemd does not know on `host`
    (never installed there) is stopped: `systemctl stop` fails, both are
    inactive."""
    result = host.run(["systemctl", "stop", unit], check=False, timeout=UNIT_TIMEOUT)
    for name in dict.fromkeys((must_stop, unit)):
        state = _unit_state(host, name)
        if state in STOPPED_STATES:
            continue
        if not result.ok:
            raise _failed(host, result, f"stopping {unit}",
                          f"{name} is {state}; {_look_at(host, name)}")
        raise UnitFailed(f"{host.name}: {name} is {state} after `systemctl stop {unit}`, "
                         "not stopped (started again by its trigger or another unit?); "
                         f"{_look_at(host, name)}")


def _unit_state(host, unit):
    """`systemctl is-active` of `unit`: active, inactive, failed, activating..."""
    result = host.run(["systemctl", "is-active", unit], check=False, timeout=30)
    return result.stdout.strip() or f"unknown (`systemctl is-active` {result.how_it_ended})"


def _unit_file(host, name):
    return host.path(f"{UNIT_DIR}/{name}")


def _look_at(host, unit):
    return f"see `systemctl status {unit}` and `journalctl -u {unit}` on {host.name}"


def _systemctl_advice(host, unit):
    return (f"{_look_at(host, unit)}; a unit that is not found was never installed there "
            "(plugins.systemd.install_units)")


def _run(host, argv, what, advice, *, timeout=60, input=None):
    """Run `argv` on `host`; a non-zero exit raises UnitFailed naming the host,
    the step, the command, its exit code, the tail of its output and `advice`."""
    result = host.run(argv, check=False, timeout=timeout, input=input)
    if not result.ok:
        raise _failed(host, result, what, advice)
    return result


def _failed(host, result, what, advice):
    detail = tail(result.stderr) or tail(result.stdout) or "(no output)"
    return UnitFailed(f"{host.name}: {what} failed (`{result.command}` "
                      f"{result.how_it_ended}): {detail} — {advice}")


def _check_resource(res):
    try:
        check_resource(res)
    except MarsError as error:
        raise Illegal(str(error)) from None


def _plain_path(path, what):
    path = str(PurePosixPath(path))
    if not _PLAIN_PATH.fullmatch(path):
        raise Illegal(f"{what} {path!r} cannot go into a systemd unit: use an absolute path "
                      "of letters, digits and _ . : + @ / -")
    return path

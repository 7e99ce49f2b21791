"""The fake fleet (tests/helpers/fakefleet.py) with hosts of the `systemd`
cluster manager (plugins/systemd.py), as far as a shrink needs them:

- `marsadm set-systemd-unit` / `get-systemd-unit`: the units MARS records
  for a resource, dropped by `delete-resource` (ours and kernel MARS's drop
  every key of the resource);
- unit files (`install -D ... /dev/stdin FILE`, `cat`, `grep -L`) and
  `systemctl start|stop|is-active|daemon-reload`: a resource's start unit
  (the recorded one, or Football's container service) mounts its volume
  and starts the container, its stop unit (the recorded one, or Football's
  mount unit) stops both; a trigger (`.path`) does nothing here.

`with_units(fleet)` turns the fixture's fleet into one of these (the
inventory's manager `systemd`)."""

import json

from plugins.systemd import RENDERED_MARK, resource_units
from tests.helpers.fakefleet import FakeFleet, Refused

NOT_FOUND = 5       # systemctl: unit not loaded
INACTIVE = 3        # systemctl is-active of a unit that is not active


class UnitsFleet(FakeFleet):
    """A FakeFleet whose marsadm records units and whose hosts run systemd."""

    def _dispatch(self, name, argv, input):
        if argv[0] == "marsadm" and "set-systemd-unit" in argv:
            _, res, *units = [arg for arg in argv[1:] if not arg.startswith("--")]
            self._visible(name, res)
            self.units[res] = (units[0], units[-1])
            return ""
        if argv[0] == "marsadm" and "get-systemd-unit" in argv:
            res = argv[-1]
            self._visible(name, res)
            return " ".join(self.units[res]) + "\n" if res in self.units else ""
        if argv[0] == "marsadm" and "delete-resource" in argv:
            stdout = super()._dispatch(name, argv, input)
            self.units.pop(argv[-1], None)
            return stdout
        if argv[0] == "systemctl":
            return self._systemctl(name, argv[1], argv[2] if len(argv) > 2 else None)
        if argv[0] == "install":
            self.unit_files[(name, argv[-1])] = input
            return ""
        if argv[:3] == ("env", "LC_ALL=C", "cat") or \
                argv[0] == "cat" and not argv[1].startswith("/proc/"):
            files = argv[3:] if argv[0] == "env" else argv[1:]
            missing = [file for file in files if (name, file) not in self.unit_files]
            if missing:
                raise Refused(f"{missing[0]}: No such file or directory")
            return "".join(self.unit_files[(name, file)] for file in files)
        if argv[0] == "grep":
            files = [file for file in argv if (name, file) in self.unit_files]
            return "".join(f"{file}\n" for file in files
                           if RENDERED_MARK not in self.unit_files[(name, file)])
        return super()._dispatch(name, argv, input)

    def _unit(self, name, unit):
        """(res, "start" | "stop" | "trigger") of `unit` on host `name`, None
        for a unit systemd does not know there."""
        host = self.hosts[name]
        for res in self.resources:
            footballs = resource_units(host, res)
            start, stop = self.units.get(res, (footballs.start, footballs.stop))
            roles = {start: "start", stop: "stop", footballs.start: "start",
                     footballs.stop: "stop", footballs.trigger: "trigger"}
            if unit in roles:
                return res, roles[unit]
        return None

    def _systemctl(self, name, verb, unit):
        if verb == "daemon-reload":
            return ""
        known = self._unit(name, unit)
        if known is None:
            if verb == "is-active":
                raise Refused("", INACTIVE, stdout="inactive\n")
            raise Refused(f"Unit {unit} not found.", NOT_FOUND)
        res, role = known
        host = self.hosts[name]
        mountpoint = host.mountpoint(res)
        mounted = mountpoint in self.mounts[name]
        running = self.containers[name].get(res) == "RUNNING"
        if verb == "is-active":
            active = {"start": running, "stop": mounted, "trigger": True}[role]
            if not active:
                raise Refused("", INACTIVE, stdout="inactive\n")
            return "active\n"
        if verb == "start" and role != "trigger":
            if not mounted:
                self._mount(name, ["-t", "xfs", host.device(res), mountpoint])
            if role == "start":
                self._container(name, "start", res)
        elif verb == "stop" and role != "trigger":
            self._container(name, "stop", res)
            if role == "stop" and mounted:
                self._umount(name, [mountpoint])
        return ""


def with_units(fleet):
    """The fixture's `fleet` as a UnitsFleet, its hosts of the `systemd`
    cluster manager."""
    fleet.__class__ = UnitsFleet
    fleet.units, fleet.unit_files = {}, {}
    with open(fleet.inventory_path) as file:
        data = json.load(file)
    data["defaults"]["manager"] = "systemd"
    with open(fleet.inventory_path, "w") as file:
        json.dump(data, file)
    return fleet

"""The inventory: hosts, clusters and their defaults, read from YAML.

```yaml
defaults:            # apply to every host unless the host says otherwise
  storage: lvm       # lvm | filevg
  vg: vg0
  manager: systemd   # systemd | lab
  lxcpath: /var/lib/lxc
clusters:
  cluster1: [a1, a2]
hosts:
  a1: {address: 10.0.0.11}
```
A host's `root` relocates everything it owns below a directory (lab hosts);
production hosts have root `/`."""

from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

import yaml

from football.transport import LocalTransport
from mars.errors import MarsError
from mars.names import check_host, check_resource

HOST_DEFAULTS = {"storage": "lvm", "vg": "vg0", "manager": "systemd", "container": "lxc",
                 "lxcpath": "/var/lib/lxc", "transport": "ssh", "root": "/"}
HOST_FIELDS = set(HOST_DEFAULTS) | {"address", "user", "port", "vg_size", "stripes",
                                     "stripe_size"}


class InventoryError(Exception):
    """The inventory file is missing or does not say what it must."""


@dataclass
class Host:
    """One hypervisor as Football sees it: how to reach it and what it runs."""

    name: str
    address: str
    cluster: str = ""
    storage: str = "lvm"
    vg: str = "vg0"
    manager: str = "systemd"
    container: str = "lxc"
    lxcpath: str = "/var/lib/lxc"
    transport: str = "ssh"
    root: str = "/"
    vg_size: str = ""
    stripes: int = 1        # > 1: new LVs are striped over that many PVs (lvm)
    stripe_size: str = ""   # lvcreate -I, e.g. "64k"; "" leaves LVM's default
    user: str = "root"
    port: int = 22
    env: dict = field(default_factory=dict)
    _runner: object = field(default=None, repr=False, compare=False)

    def path(self, path):
        """`path` as it is on this host's filesystem (below its root)."""
        relative = PurePosixPath(path).relative_to("/")
        return str(PurePosixPath(self.root) / relative)

    def mountpoint(self, res):
        """Where the resource's volume is mounted: its container directory."""
        return self.path(f"{self.lxcpath}/{res}")

    def device(self, res):
        return self.path(f"/dev/mars/{res}")

    @property
    def runner(self):
        if self._runner is None:
            if self.transport != "local":
                raise InventoryError(f"host {self.name}: transport {self.transport!r} "
                                     "is not available yet; use transport: local")
            self._runner = LocalTransport(self.name, self.env)
        return self._runner

    def run(self, argv, **options):
        """Run one command on this host (see `Transport.run`)."""
        return self.runner.run(argv, **options)


@dataclass
class Inventory:
    hosts: dict
    clusters: dict
    demo: dict
    lab: dict = field(default_factory=dict)
    source: str = ""

    def host(self, name):
        try:
            return self.hosts[name]
        except KeyError:
            raise InventoryError(f"unknown host {name!r} (inventory {self.source}: "
                                 f"hosts are {', '.join(sorted(self.hosts))})") from None

    def cluster_of(self, name):
        return self.host(name).cluster

    def with_hosts(self, hosts):
        return replace(self, hosts=hosts)


def load(path, defaults=None):
    """Read and check an inventory file; `defaults` replace the built-in host
    defaults (the file's own `defaults:` still win)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise InventoryError(f"inventory {path} does not exist; pass --inventory FILE") from None
    except yaml.YAMLError as error:
        raise InventoryError(f"inventory {path} is not valid YAML: {error}") from None
    return parse(data, str(path), defaults)


def parse(data, source="<inventory>", defaults=None):
    if not isinstance(data, dict):
        raise InventoryError(f"inventory {source}: expected a mapping at the top")
    for section in ("defaults", "clusters", "hosts", "demo", "lab"):
        if not isinstance(data.get(section) or {}, dict):
            raise InventoryError(f"inventory {source}: {section} must be a mapping")
    defaults = {**HOST_DEFAULTS, **(defaults or {}), **(data.get("defaults") or {})}
    clusters = data.get("clusters") or {}
    declared = data.get("hosts") or {}
    membership = {}
    for cluster, members in clusters.items():
        if not isinstance(members, list) or not members:
            raise InventoryError(f"inventory {source}: cluster {cluster} needs a list of hosts")
        for name in members:
            if name in membership:
                raise InventoryError(f"inventory {source}: host {name} is in clusters "
                                     f"{membership[name]} and {cluster}")
            membership[name] = cluster
    hosts = {}
    for name, settings in declared.items():
        settings = settings or {}
        if not isinstance(settings, dict):
            raise InventoryError(f"inventory {source}: host {name}: expected settings "
                                 f"(address: ..., ...), not {settings!r}")
        try:
            check_host(name)
        except MarsError as error:
            raise InventoryError(f"inventory {source}: {error}") from None
        unknown = set(settings) - HOST_FIELDS
        if unknown:
            raise InventoryError(f"inventory {source}: host {name}: unknown settings "
                                 f"{', '.join(sorted(unknown))}")
        if "address" not in settings:
            raise InventoryError(f"inventory {source}: host {name} has no address")
        merged = {key: value for key, value in dict(defaults, **settings).items()
                  if key in HOST_FIELDS}
        hosts[name] = Host(name=name, cluster=membership.get(name, ""), **merged)
    missing = set(membership) - set(hosts)
    if missing:
        raise InventoryError(f"inventory {source}: clusters name hosts that are not declared: "
                             f"{', '.join(sorted(missing))}")
    demo = data.get("demo") or {}
    if demo:
        try:
            check_resource(demo.get("resource", ""))
        except MarsError as error:
            raise InventoryError(f"inventory {source}: demo: {error}") from None
        for role in ("primary", "secondary"):
            if demo.get(role) not in hosts:
                raise InventoryError(f"inventory {source}: demo {role} {demo.get(role)!r} "
                                     "is not a declared host")
    return Inventory(hosts=hosts, clusters={name: list(m) for name, m in clusters.items()},
                     demo=demo, lab=data.get("lab") or {}, source=source)

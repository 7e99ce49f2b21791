"""The inventory: hosts, clusters and their defaults, read from YAML.

```yaml
defaults:            # apply to every host unless the host says otherwise
  storage: lvm       # lvm | filevg
  vg: vg0
  manager: systemd   # systemd | lab
  lxcpath: /var/lib/lxc
  transport: ssh     # ssh | local
  user: root
  port: 22
  ssh_key: ~/.ssh/id_football   # unset: the ssh agent and ~/.ssh/id_*
  known_hosts: ~/.ssh/known_hosts
  host_key_check: strict        # strict | accept-new | off
  connect_timeout: 10
clusters:
  cluster1: [a1, a2]
hosts:
  a1: {address: 10.0.0.11, env: {LANG: C.UTF-8}}
```
A host's `root` relocates everything it owns below a directory (lab hosts);
production hosts have root `/`. `env` is given to every command on the host
(over SSH as an `env NAME=value ...` prefix)."""

import ipaddress
import math
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

import yaml

from football.config import TEN_YEARS, load_yaml
from football.dryrun import is_read
from football.transport import DEFAULT_CONNECT_TIMEOUT, HOST_KEY_CHECKS, LocalTransport
from mars.errors import MarsError
from mars.names import check_host, check_resource, parse_size

HOST_DEFAULTS = {"storage": "lvm", "vg": "vg0", "manager": "systemd", "container": "lxc",
                 "lxcpath": "/var/lib/lxc", "transport": "ssh", "root": "/"}
HOST_FIELDS = set(HOST_DEFAULTS) | {"address", "user", "port", "vg_size", "stripes",
                                     "stripe_size", "env", "ssh_key", "known_hosts",
                                     "host_key_check", "connect_timeout", "failure_domain",
                                     "max_containers"}
TRANSPORTS = ("ssh", "local")
SECTIONS = ("defaults", "clusters", "hosts", "demo", "lab")
DNS_LABEL = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# LVM's rule for a VG name (lvm(8), "VALID NAMES"); it also keeps <root>/dev/<vg> below /dev
VG_NAME = re.compile(r"[A-Za-z0-9+_.][A-Za-z0-9+_.-]{0,126}")
# storage, manager, container: the KIND of a plugin (plugins/*.py: lvm, filevg,
# systemd, lab, lxc) or of one a plugin directory or package adds, which the
# inventory does not know: a storage kind is checked once the plugins are
# loaded, before an operation (football/storage.py, check_storage_kinds);
# manager and container kinds when a hook finds no plugin
PLUGIN_KIND = re.compile(r"[a-z][a-z0-9_-]{0,62}")
ABSOLUTE_PATHS = ("root", "lxcpath")           # below the host's root: from /, no '..'
KEY_PATHS = ("ssh_key", "known_hosts")         # on this machine: from / or ~ ('': the default)


class InventoryError(Exception):
    """The inventory file is missing or does not say what it must."""


# Callables told of every command a Host runs: (host name, argv, seconds,
# exit code or None when it raised). The downtime window times its steps so.
COMMAND_WATCHERS = []
# How many commands that change a host (not a read, a lock or a wait) Hosts
# ran in this process: a cleanup refused after some of its own is no
# "nothing changed" (football/ops/base.py)
CHANGES_MADE = [0]


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
    env: dict = field(default_factory=dict)     # variables every command sees
    ssh_key: str = ""           # private key; "" = the ssh agent and ~/.ssh/id_*
    known_hosts: str = ""       # "" = ~/.ssh/known_hosts
    host_key_check: str = "strict"      # strict | accept-new | off
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    failure_domain: str = ""    # the planner keeps a primary and its secondary apart ("": unknown)
    max_containers: int = 0     # containers the host runs at most (the planner's; 0: no limit)
    _runner: object = field(default=None, repr=False, compare=False)
    # set by Hooks.apply_host_layout: the plugins' get_mountpoint
    _mountpoint_of: object = field(default=None, repr=False, compare=False)

    def path(self, path):
        """`path` as it is on this host's filesystem (below its root)."""
        relative = PurePosixPath(path).relative_to("/")
        return str(PurePosixPath(self.root) / relative)

    def mountpoint(self, res):
        """Where the resource's volume is mounted: what the plugins say
        (`get_mountpoint`), by default its container directory."""
        if self._mountpoint_of is not None:
            return self._mountpoint_of(res)
        return self.container_dir(res)

    def container_dir(self, res):
        """The resource's container directory below `lxcpath`."""
        return self.path(f"{self.lxcpath}/{res}")

    def device(self, res):
        return self.path(f"/dev/mars/{res}")

    @property
    def runner(self):
        if self._runner is None:
            if self.transport == "local":
                self._runner = LocalTransport(self.name, self.env)
            elif self.transport == "ssh":
                from football.ssh import SSHTransport
                self._runner = SSHTransport(
                    self.name, self.address, port=self.port, user=self.user, env=self.env,
                    ssh_key=self.ssh_key or None, known_hosts=self.known_hosts or None,
                    host_key_check=self.host_key_check, connect_timeout=self.connect_timeout)
            else:
                raise InventoryError(f"host {self.name}: unknown transport {self.transport!r}; "
                                     f"use one of {', '.join(TRANSPORTS)}")
        return self._runner

    def run(self, argv, **options):
        """Run one command on this host (see `Transport.run`). A command that
        changes the host forgets the cached facts (football/facts.py); the
        COMMAND_WATCHERS are told how long it took."""
        if not is_read(argv) and tuple(argv[:2]) != ("football-host", "lock"):
            from football.facts import forget     # facts reads hosts: imported late
            forget()
            if not (argv[0] == "marsadm" and any(str(arg).startswith("wait-") for arg in argv)):
                CHANGES_MADE[0] += 1
        if not COMMAND_WATCHERS:
            return self.runner.run(argv, **options)
        started = time.monotonic()
        exit_code = None                            # raised: no exit code to tell
        try:
            result = self.runner.run(argv, **options)
            exit_code = result.exit_code
            return result
        finally:
            seconds, told = time.monotonic() - started, [str(arg) for arg in argv]
            for watcher in list(COMMAND_WATCHERS):
                watcher(self.name, told, seconds, exit_code)


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
        # bytes: YAML's reader takes a BOM, and names where a file is not UTF-8
        data = load_yaml(path.read_bytes()) or {}
    except FileNotFoundError:
        raise InventoryError(f"inventory {path} does not exist; pass --inventory FILE") from None
    except OSError as error:
        raise InventoryError(f"inventory {path} cannot be read: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise InventoryError(f"inventory {path} is not valid YAML: {error}") from None
    return parse(data, str(path), defaults)


def parse(data, source="<inventory>", defaults=None):
    if not isinstance(data, dict):
        raise InventoryError(f"inventory {source}: expected a mapping at the top")
    unknown = set(data) - set(SECTIONS)
    if unknown:
        raise InventoryError(f"inventory {source}: unknown sections "
                             f"{', '.join(sorted(map(str, unknown)))}; known: "
                             f"{', '.join(SECTIONS)}")
    for section in SECTIONS:
        if not isinstance(data.get(section) or {}, dict):
            raise InventoryError(f"inventory {source}: {section} must be a mapping")
    unknown = set(data.get("defaults") or {}) - HOST_FIELDS
    if unknown:
        raise InventoryError(f"inventory {source}: defaults: unknown settings "
                             f"{', '.join(sorted(map(str, unknown)))}; known: "
                             f"{', '.join(sorted(HOST_FIELDS))}")
    defaults = {**HOST_DEFAULTS, **(defaults or {}), **(data.get("defaults") or {})}
    clusters = data.get("clusters") or {}
    declared = data.get("hosts") or {}
    membership = {}
    for cluster, members in clusters.items():
        if not isinstance(cluster, str) or not cluster.strip():
            raise InventoryError(f"inventory {source}: cluster name {cluster!r} is not a name: "
                                 "give each cluster a name (e.g. cluster1)")
        if cluster in declared:
            raise InventoryError(f"inventory {source}: cluster {cluster} has the name of a "
                                 "host: commands would not know which is meant; rename the "
                                 "cluster")
        if not isinstance(members, list) or not members:
            raise InventoryError(f"inventory {source}: cluster {cluster} needs a list of hosts")
        for name in members:
            if not isinstance(name, str):
                raise InventoryError(f"inventory {source}: cluster {cluster}: {name!r} is not "
                                     "a host name; list the hosts by name: [a1, a2]")
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
                                 f"{', '.join(sorted(map(str, unknown)))}; known: "
                                 f"{', '.join(sorted(HOST_FIELDS))}")
        if "address" not in settings:
            raise InventoryError(f"inventory {source}: host {name} has no address")
        merged = {key: value for key, value in dict(defaults, **settings).items()
                  if key in HOST_FIELDS}
        if merged.get("host_key_check") is False:
            merged["host_key_check"] = "off"     # YAML reads an unquoted `off` as false
        problem = _connection_problem(merged)
        if problem:
            raise InventoryError(f"inventory {source}: host {name}: {problem}")
        merged["env"] = {variable: str(value)
                         for variable, value in (merged.get("env") or {}).items()}
        hosts[name] = Host(name=name, cluster=membership.get(name, ""), **merged)
    _one_machine_each(hosts, source)
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
        problem = _size_problem("size", demo.get("size"))
        if problem:
            raise InventoryError(f"inventory {source}: demo {problem}")
        for role in ("primary", "secondary"):
            if not isinstance(demo.get(role), str) or demo.get(role) not in hosts:
                raise InventoryError(f"inventory {source}: demo {role} {demo.get(role)!r} "
                                     "is not a declared host")
    return Inventory(hosts=hosts, clusters={name: list(m) for name, m in clusters.items()},
                     demo=demo, lab=data.get("lab") or {}, source=source)


def _size_problem(name, value):
    """What is wrong with a size setting (`4G`, `64k`, bytes), or None ('' and
    None: not given)."""
    if value in ("", None):
        return None
    try:
        parse_size(str(value))
    except MarsError as error:
        return f"{name}: {error}"
    return None


def _one_machine_each(hosts, source):
    """Two host names for one address and port are one machine twice (a
    copied line): MARS would take it for two cluster members."""
    seen = {}
    for host in hosts.values():
        where = (_normal_address(host.address), host.port)
        if where in seen:
            raise InventoryError(f"inventory {source}: hosts {seen[where]} and {host.name} "
                                 f"have the same address {host.address} (port {host.port}): "
                                 "give each host its own")
        seen[where] = host.name


def _normal_address(address):
    """One spelling of an address: an IP address as `ipaddress` writes it
    (fd00:0:0::1 is fd00::1; an IPv4-mapped IPv6 address its IPv4 one), a
    DNS name in lower case without its root's dot (h.example.com.)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        name = str(address).lower()
        return name[:-1] if name.endswith(".") else name
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped or ip)


def _address_problem(address):
    """What is wrong with a host's address (an IP address or a DNS name), or None."""
    if not isinstance(address, str):
        return f"address must be an IP address or a DNS name, not {address!r}"
    if re.fullmatch(r"[0-9.]+", address) or ":" in address:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            return f"address {address!r} is not an IP address"
        return None
    labels = address[:-1].split(".") if address.endswith(".") else address.split(".")
    if len(address) > 253 or not all(DNS_LABEL.fullmatch(label) for label in labels):
        return f"address {address!r} is neither an IP address nor a DNS name"
    return None


def _layout_problem(settings):
    """What is wrong with where a host keeps things (its root, lxcpath, VG,
    the plugins it takes), or None."""
    for name in ABSOLUTE_PATHS:
        path = settings.get(name)
        if not isinstance(path, str) or not path.startswith("/") or "\0" in path or \
                ".." in PurePosixPath(path).parts:
            return (f"{name} must be an absolute path (from /, without '..'), not {path!r}")
    for name in KEY_PATHS:
        path = settings.get(name, "")
        if not isinstance(path, str) or "\0" in path or \
                (path and not path.startswith(("/", "~"))):
            return (f"{name} must be a file's path from / or ~ (e.g. ~/.ssh/known_hosts), "
                    f"not {path!r}")
    vg = settings.get("vg")
    if not isinstance(vg, str) or not VG_NAME.fullmatch(vg) or vg in (".", ".."):
        return (f"vg {vg!r} is not a volume group name: letters, digits and '+_.-', not "
                "starting with '-', not '.' or '..'")
    for name in ("storage", "manager", "container"):
        kind = settings.get(name)
        if not isinstance(kind, str) or not PLUGIN_KIND.fullmatch(kind):
            return (f"{name} {kind!r} is not a plugin kind (lower-case letters, digits, "
                    "'-' and '_'; shipped: storage lvm, filevg; manager systemd, lab; "
                    "container lxc)")
    user = settings.get("user", "root")
    if not isinstance(user, str) or not user or any(c.isspace() for c in user):
        return f"user must be a user name, not {user!r}"
    return None


def _connection_problem(settings):
    """What is wrong with how a host is to be reached, or None."""
    problem = _address_problem(settings.get("address")) or _layout_problem(settings)
    if problem:
        return problem
    port = settings.get("port", 22)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        return f"port must be a whole number 1..65535, not {port!r}"
    stripes = settings.get("stripes", 1)
    if isinstance(stripes, bool) or not isinstance(stripes, int) or stripes < 1:
        return f"stripes must be a whole number >= 1, not {stripes!r}"
    for name in ("vg_size", "stripe_size"):
        problem = _size_problem(name, settings.get(name))
        if problem:
            return problem
    if settings.get("transport") not in TRANSPORTS:
        return (f"transport {settings.get('transport')!r} is not one of "
                f"{', '.join(TRANSPORTS)}")
    check = settings.get("host_key_check", "strict")
    if check not in HOST_KEY_CHECKS:
        return f"host_key_check {check!r} is not one of {', '.join(HOST_KEY_CHECKS)}"
    timeout = settings.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        return f"connect_timeout must be a number of seconds > 0, not {timeout!r}"
    if not math.isfinite(timeout) or timeout > TEN_YEARS:
        return (f"connect_timeout must be a number of seconds up to {int(TEN_YEARS)} "
                f"(10 years), not {timeout!r}")
    limit = settings.get("max_containers", 0)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        return f"max_containers must be a whole number >= 0 (0: no limit), not {limit!r}"
    if not isinstance(settings.get("failure_domain", ""), str):
        return f"failure_domain must be a name, not {settings['failure_domain']!r}"
    env = settings.get("env") or {}
    if not isinstance(env, dict):
        return f"env must be a mapping (NAME: value), not {env!r}"
    for variable, value in env.items():
        if not isinstance(variable, str) or not ENV_NAME.fullmatch(variable):
            return f"env: {variable!r} is not a variable name"
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            return f"env: {variable} must be a string, not {value!r}"
    return None

"""The metadata key schema (MARS's names) and a read model over it.

Keys keep the kernel MARS symlink names, so `view-tree` prints the familiar
tree. A key that carries a host name belongs to that host: only that host
writes it (`owner_of`). Keys without one (`uuid`, `resource-<res>/size`,
`primary`, `systemd-*`) resolve by newest stamp."""

import re
import time

from mars.errors import MarsError
from mars.names import check_resource

DELETED = ".deleted"          # tombstone value, as in kernel MARS
NO_PRIMARY = "(none)"

_HOST = r"(?P<host>[a-z][-a-z0-9]*)"
_OWNED_KEY_PATTERNS = [
    re.compile(rf"^ips/ip-{_HOST}$"),
    re.compile(rf"^actual-{_HOST}/"),
    re.compile(rf"^resource-[^/]+/(?:data|device|replay|syncstatus|syncpos|syncsource|unlogged)"
               rf"-{_HOST}$"),
    re.compile(rf"^resource-[^/]+/version-\d+-{_HOST}$"),
    re.compile(rf"^resource-[^/]+/(?:todo|actual)-{_HOST}/"),
]
RESOURCE_KEY_RE = re.compile(r"^resource-(?P<res>[^/]+)/(?P<rest>.+)$")

TODO_SWITCHES = ("attach", "connect", "sync", "allow-replay")


def owner_of(key):
    """The host that alone may write `key`, or None for shared keys."""
    for pattern in _OWNED_KEY_PATTERNS:
        match = pattern.match(key)
        if match:
            return match.group("host")
    return None


def resource_of(key):
    """The resource a key belongs to, or None for cluster keys."""
    match = RESOURCE_KEY_RE.match(key)
    return match.group("res") if match else None


def hosts_and_resources(keys):
    """The hosts (by their ips/ip-<host> keys) and the resources that keys speak of."""
    hosts, resources = set(), set()
    for key in keys:
        if key.startswith(IP_PREFIX):
            hosts.add(key[len(IP_PREFIX):])
        res = resource_of(key)
        if res is not None:
            resources.add(res)
    return hosts, resources


# Key builders: the one place that spells the schema.
IP_PREFIX = "ips/ip-"       # ips/ip-<host> = its address: the cluster's members
HEARTBEAT_PREFIX = "actual-"    # actual-<host>/{alive,time}: every host's heartbeat
RESOURCE_PREFIX = "resource-"   # resource-<res>/<name>: everything about one resource


def ip_key(host):
    return f"{IP_PREFIX}{host}"


def alive_key(host):
    return f"{HEARTBEAT_PREFIX}{host}/alive"


def time_key(host):
    return f"{HEARTBEAT_PREFIX}{host}/time"


def res_key(res, name):
    return f"{RESOURCE_PREFIX}{res}/{name}"


def resource_dir_name(res):
    """The directory of `res`'s logfiles in the state dir, named like its
    keys (kernel MARS keeps both in `/mars/resource-<res>/`)."""
    return f"{RESOURCE_PREFIX}{res}"


def resync_changes(keys, res, host):
    """The changes that make `host`'s replica of `res` sync anew (invalidate):
    its sync position, replay cursor and logfile versions go, its sync status
    is 0. (Not its emergency mark, `unlogged-<host>`: a replica synced
    before it still lacks those writes; it goes once every member synced
    after it, `history.passed_unlogged`.) `keys`: key names of the store
    (others than `res`'s are skipped)."""
    prefix = res_key(res, "")       # owner_of: host names may contain dashes
    changes = {key: None for key in keys
               if key.startswith(prefix) and owner_of(key) == host and "/" not in key[len(prefix):]
               and key[len(prefix):].split("-")[0] in ("syncpos", "syncsource", "replay",
                                                       "version")}
    changes[syncstatus_key(res, host)] = 0
    return changes


# Names inside a resource (`resource-<res>/<name>`), as `resource_value`
# and `res_key` take them.
SIZE_NAME = "size"                  # logical size in bytes
PRIMARY_NAME = "primary"            # the designated primary, or NO_PRIMARY
GROWN_FROM_NAME = "grown-from"      # the size before the last `resize`
SYSTEMD_WANT_NAME = "systemd-want"  # the host that should run the units
SYSTEMD_START_UNIT_NAME = "systemd-start-unit"
SYSTEMD_STOP_UNIT_NAME = "systemd-stop-unit"


def data_name(host):
    return f"data-{host}"


def device_name(host):
    return f"device-{host}"


LOG_END_NAME = "log-end"    # actual-<host>/log-end = <logfile>,<end>: the primary's log, each round
FORCED_NAME = "forced"      # actual-<host>/forced = 1: its device came up by force (primary --force)


def actual_name(host, what):
    """What `host` reports about itself: is-primary, open-count, emergency, ..."""
    return f"actual-{host}/{what}"


def todo_name(host, switch):
    """What the admin wants of `host`: attach, sync, force-primary, log-rotate, ..."""
    return f"todo-{host}/{switch}"


def replay_name(host):
    """`host`'s replay cursor (`<logfile>:<offset>:<end>`)."""
    return f"replay-{host}"


def syncstatus_name(host):
    """The bytes `host`'s sync has copied."""
    return f"syncstatus-{host}"


def syncpos_name(host):
    """Where the log stood when `host`'s sync began (replay starts there)."""
    return f"syncpos-{host}"


def syncsource_name(host):
    """The host `host`'s sync under way copies from (all its chunks come
    from one: `SyncClient`); gone once the sync is complete. Ours, not the
    kernel's."""
    return f"syncsource-{host}"


def unlogged_name(host):
    """Where `host`'s log stopped in emergency mode (a Cursor): it wrote to
    its disk without logging from there on, and a replica synced before it
    missed those writes (`mars.history.missed_unlogged`)."""
    return f"{UNLOGGED_PREFIX}{host}"


UNLOGGED_PREFIX = "unlogged-"


def global_pause_name(what):
    """pause-<what>-global of every member: sync, fetch, replay."""
    return f"global-pause-{what}"


VERSION_PREFIX = "version-"


def version_name(number, host):
    """`host`'s record of logfile `number` (`version-<nr>-<host>`); with
    host '' the prefix every host's record of it starts with."""
    return f"{VERSION_PREFIX}{number}-{host}"


def is_version_name(name):
    return name.startswith(VERSION_PREFIX)


def version_number(name):
    """The logfile number of a `version-<nr>-<host>` name."""
    return int(name.split("-")[1])


def version_host(name):
    """The host of a `version-<nr>-<host>` name: everything after the
    number (host names may contain dashes)."""
    return name.split("-", 2)[-1]


def data_key(res, host):
    return res_key(res, data_name(host))


def data_key_suffix(host):
    """How every `resource-<res>/data-<host>` key of `host` ends."""
    return f"/{data_name(host)}"


def size_key(res):
    return res_key(res, SIZE_NAME)


def primary_key(res):
    return res_key(res, PRIMARY_NAME)


def replay_key(res, host):
    return res_key(res, replay_name(host))


def syncstatus_key(res, host):
    return res_key(res, syncstatus_name(host))


def syncpos_key(res, host):
    return res_key(res, syncpos_name(host))


def todo_key(res, host, switch):
    return res_key(res, todo_name(host, switch))


class ClusterState:
    """What the live tuples of one host's store say, as domain questions.

    `values` maps key -> value and must hold live tuples only (no tombstones).
    Everything here is pure: the store is read once, questions are answered
    from that snapshot."""

    def __init__(self, values, local_host):
        self.values = values
        self.local_host = local_host
        self._resources = None
        self._host_ips = None

    def get(self, key, default=""):
        return self.values.get(key, default)

    # cluster
    def host_ips(self):
        """{host: address} of every cluster member, this host included."""
        if self._host_ips is None:
            self._host_ips = {key[len(IP_PREFIX):]: value for key, value in self.values.items()
                              if key.startswith(IP_PREFIX)}
        return self._host_ips

    def cluster_hosts(self):
        return sorted(self.host_ips())

    def in_cluster(self):
        return self.local_host in self.host_ips()

    def peers(self):
        return [host for host in self.cluster_hosts() if host != self.local_host]

    def last_seen(self, host):
        """Wall-clock time (seconds) of the host's last liveness report, or None."""
        try:
            return float(self.values[time_key(host)])
        except (KeyError, ValueError):
            return None

    def is_alive(self, host, window, now=None):
        if host == self.local_host:
            return True
        seen = self.last_seen(host)
        if seen is None or self.values.get(alive_key(host)) != "1":
            return False
        return (now if now is not None else time.time()) - seen <= window

    # resources
    def resources(self):
        """{res: {rest-of-key: value}} for every resource whose size is set."""
        if self._resources is None:
            grouped = {}
            for key, value in self.values.items():
                match = RESOURCE_KEY_RE.match(key)
                if match:
                    grouped.setdefault(match.group("res"), {})[match.group("rest")] = value
            self._resources = {res: keys for res, keys in grouped.items() if SIZE_NAME in keys}
        return self._resources

    def all_resources(self):
        return sorted(self.resources())

    def exists(self, res):
        return res in self.resources()

    def require(self, res):
        """`res` if it is a valid name of an existing resource, else MarsError
        listing the known ones."""
        check_resource(res)
        if not self.exists(res):
            known = ", ".join(self.all_resources()) or "none"
            raise MarsError(f"unknown resource {res!r} (known: {known})")
        return res

    def wishes_force(self, res, host):
        """`host` is to take `res` over by force (`marsadm primary --force`),
        its device not up yet (`todo-<host>/force-primary`)."""
        return self.resource_value(res, todo_name(host, "force-primary"), "0") == "1"

    def is_actual_primary(self, res, host):
        """`host` reports that the device of `res` is up there."""
        return self.resource_value(res, actual_name(host, "is-primary")) == "1"

    def members(self, res):
        """Hosts holding a replica (`data-<host>`), sorted."""
        keys = self.resources().get(res, {})
        return sorted(rest[len("data-"):] for rest in keys if rest.startswith("data-"))

    def my_resources(self):
        host_key = data_name(self.local_host)
        return sorted(res for res, keys in self.resources().items() if host_key in keys)

    def size(self, res):
        value = self.resources()[res][SIZE_NAME]
        if not value.isdigit():
            raise MarsError(f"resource {res} has an invalid size {value!r} in the metadata")
        return int(value)

    def systemd_units(self, res):
        """(start unit, stop unit) recorded by set-systemd-unit, else None."""
        start = self.resource_value(res, SYSTEMD_START_UNIT_NAME)
        return (start, self.resource_value(res, SYSTEMD_STOP_UNIT_NAME) or start) if start else None

    def designated_primary(self, res):
        """The designated primary, or None when it is `(none)` or unset."""
        value = self.resources().get(res, {}).get(PRIMARY_NAME, NO_PRIMARY)
        return None if value in ("", NO_PRIMARY) else value

    def disk(self, res, host=None):
        return self.resources().get(res, {}).get(data_name(host or self.local_host), "")

    def resource_value(self, res, name, default=""):
        return self.resources().get(res, {}).get(name, default)

    def disk_owner(self, path, host=None):
        """The resource that uses `path` as its disk on `host`, if any."""
        name = data_name(host or self.local_host)
        for res, keys in self.resources().items():
            if keys.get(name) == path:
                return res
        return None

"""A fake fleet: hosts that answer Football's commands as real lab hosts do,
with state that the commands change, so that whole operations run in
seconds without root, marsd, FUSE or LXC.

- `marsadm` is a model of one MARS fleet: clusters, resources, members,
  the designated primary, sync progress, replay; its output is what the
  bundled marsadm prints for the views Football reads (mars/views.py).
- `football-host vg` and `football-host lock` are the real host-side
  helpers, run in-process on the host's root directory (sparse files and
  lock files under the test's tmp dir).
- `football-host ct` (LXC), `mount`, `umount`, `findmnt` are a model: a
  container is defined only where its volume is mounted, a volume can be
  mounted only where the resource's device is up (its primary), and it
  cannot be unmounted while the container runs.

The workload: while a container runs, every command the fleet answers is
one tick in which it appends the next record to the resource's volume (a
sequence number, as templates/lab/workload.sh does); secondaries that have
synced replay up to the primary's last record each tick. A container that
starts continues from the last record on its host's volume, so a start on
a stale copy shows as a repeated sequence number.

`violations` collects what must never happen whatever Football does (two
running copies, an LV removed while MARS still uses it, a handover while
the old primary's device is in use); the tests assert it stays empty."""

import json
import shlex
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner

from football.cli import cli
from football.inventory import Host, parse
from football.ops.cluster import connected_groups
from football.hostside import confined
from football.hostside.cli import cli as host_cli
from football.transport import CommandFailed, Result, Unreachable
from mars.roles import device_open
from mars.views import human_size
from tests.helpers.fakehost import UnexpectedCommand

EXIT_REFUSED, EXIT_TIMEOUT = 1, 3
# what changes a host: marsadm's actions, football-host's (lifecycle set/origin too),
# mount, umount, mkdir
CHANGING = {"join-resource", "leave-resource", "leave-cluster", "create-cluster", "down", "up", "primary", "secondary",
            "merge-cluster", "split-cluster", "create-vg", "create", "resize", "rename", "remove", "start", "stop",
            "take", "release", "mount", "umount", "mkdir", "xfs_growfs", "mkfs.xfs", "rsync",
            "create-resource", "delete-resource", "set", "origin"}


@dataclass
class Replica:
    disk: str
    sync_rest: int              # bytes the full sync still has to copy
    received: int = 0           # bytes its last sync copied (view-sync-received)
    applied: int = 0            # how many of the resource's records this disk holds
    listed: int = None          # the primary's records at its last listing (None: all)
    up: bool = True             # its switches (marsadm down: off; leave-resource needs that)
    fetching: bool = True       # its fetch switch (pause-fetch: off; --force primary needs that)


@dataclass
class Resource:
    size: int
    primary: str
    replicas: dict = field(default_factory=dict)    # host -> Replica
    records: list = field(default_factory=list)     # the primary's volume: sequence numbers
    used: int = 100 << 20           # bytes its filesystem holds (df)
    fs_size: int = 0                # bytes of its filesystem (xfs_growfs grows it)

    def __post_init__(self):
        self.fs_size = self.fs_size or self.size


@dataclass
class FakeLoad:
    """What a host's /proc says of its memory, load and CPUs."""
    mem_total: int = 8 << 30
    mem_free: int = 6 << 30
    load: float = 0.5
    cpus: int = 4


@dataclass
class Volume:
    """A filesystem on an LV that no MARS resource uses (a shrink's copy, a
    replica's disk after the resource went): the records it holds."""
    records: list = field(default_factory=list)
    used: int = 0


def rsh_words(command):
    """An `--rsh` value split as rsync splits it (rsync(1), --rsh): at
    spaces; single or double quotes keep a part whole, a quote doubled
    inside them stands for itself."""
    words, word, quote, index, started = [], [], None, 0, False
    while index < len(command):
        char = command[index]
        if quote is None and char == " ":
            if started:
                words.append("".join(word))
            word, started = [], False
        elif quote is None and char in "'\"":
            quote, started = char, True
        elif char == quote and command[index + 1:index + 2] == quote:
            word.append(char)
            index += 1
        elif char == quote:
            quote = None
        else:
            word.append(char)
            started = True
        index += 1
    if started:
        words.append("".join(word))
    return words


class Refused(Exception):
    def __init__(self, message, exit_code=EXIT_REFUSED, stdout=""):
        super().__init__(message)
        self.exit_code, self.stdout = exit_code, stdout


class FakeFleet:
    """The hosts of `inventory` (a parsed football Inventory whose hosts have
    their own `root` directories) as one simulated fleet."""

    def __init__(self, inventory, vg_size="4G", sync_chunk=None):
        self.inventory = inventory
        self.hosts = inventory.hosts
        self.cluster_id = {}            # host -> MARS cluster number
        for number, members in enumerate(inventory.clusters.values()):
            for name in members:
                self.cluster_id[name] = number
        self.resources = {}
        self.mounts = {name: {} for name in self.hosts}       # host -> {mountpoint: device}
        self.mount_options = {name: {} for name in self.hosts}  # host -> {mountpoint: options}
        self.quota = ""                 # quota options of the volumes' mounts ("usrquota")
        self.quota_limits = {}          # (host, mountpoint) -> restored limits
        self.projects_copied = []       # (host, source, copy) of `football-host projects`
        self.volumes = {}               # (host, LV name) -> Volume
        self.written = {}               # res -> the highest record its workload ever wrote
        self.fail_next = {}             # command (e.g. "create-resource") -> times to refuse
        self.lost_merges = 0            # merge-clusters that succeed and change nothing
        self.containers = {name: {} for name in self.hosts}   # host -> {res: state}
        self.down = set()               # hosts whose marsd does not answer
        self.off = set()                # hosts switched off: no command reaches them
        self.clusterless = set()        # hosts that left their MARS cluster (leave-cluster)
        self.left_behind = {}           # res -> members that kept their part of it when deleted
        self.asked_on = None            # the host the marsadm command being run runs on
        self.forced = False             # the marsadm command being run has --force
        self.marsd_stopped = set()      # hosts without marsd whose marsadm answers from its store
        self.crashed_devices = set()    # (host, res): the device died, its filesystem still mounted
        self.stalled = {}               # host -> why its syncs and fetches stall (its view's error)
        self.behind = set()             # hosts whose replicas say OutDated[F] once synced
        # primaries with writes not yet written back: kernel MARS's is-consistent 0 there
        self.writing_back = set()
        self.kernel_marsadm = False     # marsadm refuses as kernel MARS's does (exit 2)
        # kernel_marsadm: (host, res) -> the size of its disk the member published
        # (actsize), at its last wait-cluster; none yet: the resource's size
        self.actsize = {}
        self.publishes = True           # kernel_marsadm: wait-cluster publishes the disks
        self.broken = set()             # (host, res) whose container does not start (LXC fails)
        self.load = {}                  # host -> FakeLoad (default: FakeLoad())
        self.sync_chunk = sync_chunk    # bytes a sync copies per tick (None: a quarter)
        self.violations = []
        self.calls = []                 # (host, argv) in the order they ran
        self._serial = threading.RLock()
        for host in self.hosts.values():
            Path(host.root).mkdir(parents=True, exist_ok=True)
            self._host_helper(host, ["vg", host.path(f"/dev/{host.vg}"), "create-vg", vg_size])

    # ------------------------------------------------------------ set-up
    def runner(self, name):
        return FakeHostRunner(self, name)

    def create_resource(self, res, primary, secondaries=(), size=320 << 20, running=True):
        """`res` as `lab up` leaves it: an LV on every replica, primary on
        `primary`, mounted there, container running, secondaries synced."""
        members = [primary, *secondaries]
        for name in members:
            host = self.hosts[name]
            self._host_helper(host, ["vg", host.path(f"/dev/{host.vg}"), "create", res, str(size)])
        resource = Resource(size, primary)
        for name in members:
            host = self.hosts[name]
            resource.replicas[name] = Replica(host.path(f"/dev/{host.vg}/{res}"), 0)
        self.resources[res] = resource
        host = self.hosts[primary]
        self.mounts[primary][host.mountpoint(res)] = host.device(res)
        self.mount_options[primary][host.mountpoint(res)] = ",".join(
            filter(None, ["rw", "noatime", self.quota]))
        self.containers[primary][res] = "STOPPED"
        if running:
            self._start_container(primary, res)
        return resource

    # ------------------------------------------------------------ observing
    def cluster_of(self, name):
        number = self.cluster_id[name]
        return sorted(host for host, other in self.cluster_id.items() if other == number)

    def running(self, res):
        return sorted(name for name, states in self.containers.items()
                      if states.get(res) == "RUNNING")

    def members(self, res):
        return sorted(self.resources[res].replicas)

    def lvs(self, name):
        host = self.hosts[name]
        return self._host_json(host, ["vg", host.path(f"/dev/{host.vg}"), "info"])["lvs"]

    def locks(self, name, directory="/var/lock/football"):
        host = self.hosts[name]
        return self._host_json(host, ["lock", host.path(directory), "list"])

    def age_locks(self, item, seconds, directory="/var/lock/football"):
        """Every host's lock `item` `seconds` older: as if its run had died
        then (`run-vm1` of a killed run: taken over once a lease old)."""
        for host in self.hosts.values():
            path = Path(host.path(directory)) / f"{item}.lock"
            if path.exists():
                record = json.loads(path.read_text())
                record["time"] -= seconds
                path.write_text(json.dumps(record))

    def changes(self):
        """The (host, argv) of every command run so far that changes a host."""
        def verb(argv):
            if argv[0] == "marsadm":
                return next(arg for arg in argv[1:] if not arg.startswith("--"))
            return argv[3] if argv[0] == "football-host" else argv[0]
        return [(name, argv) for name, argv in self.calls if verb(argv) in CHANGING]

    def sequence_problems(self, res):
        """Repeated or missing sequence numbers of the workload's records."""
        records = self.resources[res].records
        return [f"{before} -> {after}" for before, after in zip(records, records[1:])
                if after != before + 1]

    # ------------------------------------------------------------ running
    def run(self, name, argv, input=None):
        # one command at a time, as the model and the in-process helpers
        # (which swap sys.stdout) are not thread-safe; Football asks hosts
        # in parallel threads
        with self._serial:
            return self._run(name, argv, input)

    def switch_off(self, name):
        """Host `name` dies: its containers stop (its resources' records
        with them), no command reaches it, its peers find its marsd silent."""
        for res, state in self.containers[name].items():
            if state == "RUNNING":
                self.containers[name][res] = "STOPPED"
        self.off.add(name)
        self.down.add(name)

    def cut_off(self, name):
        """No command of the controller reaches host `name`, which runs on
        (its containers, its marsd: its peers reach it)."""
        self.off.add(name)

    def _run(self, name, argv, input):
        argv = tuple(str(arg) for arg in argv)
        if name in self.off:
            raise Unreachable(f"{name}: ssh: connect to host {name} port 22: No route to host")
        self.calls.append((name, argv))
        self._tick()
        try:
            stdout = self._dispatch(name, argv, input)
            return Result(name, argv, 0, stdout, "")
        except Refused as refused:
            if self.kernel_marsadm and argv[0] == "marsadm" and refused.exit_code == EXIT_REFUSED:
                # its count of errors (ldie, fail_action), its message on stdout too
                return Result(name, argv, 2, f"{refused}\nFAILURE cmd={' '.join(argv[1:])}\n",
                              "")
            return Result(name, argv, refused.exit_code, refused.stdout,
                          f"{argv[0]}: {refused}\n")

    def _dispatch(self, name, argv, input):
        program = argv[0]
        if program == "marsadm":
            options = [arg for arg in argv[1:] if arg.startswith("--")]
            # --host=<another>: act for that host here (the kernel's way to drop a dead one)
            acting = next((arg.split("=", 1)[1] for arg in options
                           if arg.startswith("--host=")), name)
            self.forced = "--force" in options
            return self._marsadm(name, [arg for arg in argv[1:] if not arg.startswith("--")],
                                 acting)
        if program == "football-host":
            return self._football_host(name, list(argv[1:]), input)
        if program in ("mount", "umount", "findmnt", "mkdir", "df", "xfs_growfs", "mkfs.xfs",
                       "blkid", "rsync", "xfs_quota", "cat", "readlink", "find", "xfs_info"):
            return getattr(self, f"_{program.replace('.', '_')}")(name, list(argv[1:]), input)
        raise UnexpectedCommand(f"{name}: the fake fleet does not know {shlex.join(argv)}")

    def _tick(self):
        for res, resource in self.resources.items():
            if resource.primary and self.containers[resource.primary].get(res) == "RUNNING":
                resource.records.append(resource.records[-1] + 1 if resource.records else 1)
                resource.replicas[resource.primary].applied = len(resource.records)
                self.written[res] = max(self.written.get(res, 0), resource.records[-1])
            for name, replica in resource.replicas.items():
                if resource.primary in self.off:
                    continue            # nothing comes from a primary that is off
                if replica.sync_rest and name in self.stalled:
                    continue
                if replica.sync_rest:
                    chunk = min(replica.sync_rest, self.sync_chunk or max(1, resource.size // 4))
                    replica.sync_rest -= chunk
                    replica.received += chunk
                elif name != resource.primary and name not in self.down | set(self.stalled):
                    replica.applied = len(resource.records)

    # ------------------------------------------------------------ marsadm
    def _visible(self, name, res):
        """`res` as `name` sees it: in its MARS cluster; else `Refused` as
        marsadm's ClusterState.require says."""
        resource = self.resources.get(res)
        if resource is None or not set(resource.replicas) & set(self.cluster_of(name)):
            known = ", ".join(self._all_resources(name)) or "none"
            raise Refused(f"unknown resource {res!r} (known: {known})")
        return resource

    def _all_resources(self, name):
        cluster = set(self.cluster_of(name))
        return sorted(res for res, resource in self.resources.items()
                      if set(resource.replicas) & cluster)

    def _my_resources(self, name):
        return sorted(res for res, resource in self.resources.items()
                      if name in resource.replicas)

    def _marsadm(self, name, args, acting=None):
        if name in self.down:
            raise Refused(f"marsd not answering on {name} (timed out)", EXIT_TIMEOUT)
        self.asked_on = name            # the host it runs on (acting: --host)
        name = acting or name
        command, rest = args[0], args[1:]
        if self.fail_next.get(command):
            self.fail_next[command] -= 1
            raise Refused(f"{command} failed (as the test asked)")
        if command.startswith("view-"):
            return self._view(name, command[len("view-"):], rest)
        handler = getattr(self, "_mars_" + command.replace("-", "_"), None)
        if handler is None:
            raise UnexpectedCommand(f"{name}: the fake marsadm does not know {command}")
        return handler(name, *rest)

    def _view(self, name, macro, rest):
        if macro == "my-resources":
            return _lines(self._my_resources(name))
        if macro == "all-resources":
            return _lines(self._all_resources(name))
        if macro == "cluster-members":
            return _lines(self.cluster_of(name))
        argument = rest[0]
        if argument == "all":
            names, headers = self._my_resources(name), True
        else:
            names = argument.split(",")
            headers = len(names) > 1
        out = []
        for res in names:
            resource = self._visible(name, res)
            if headers:
                kind = "resource" if name in resource.replicas else "guest"
                out.append(f"--------- {kind} {res} {human_size(resource.size)} "
                           f"[{len(resource.replicas)}/{len(self.cluster_of(name))}]\n")
            out.append(_lines(self._view_value(name, macro, res, resource)))
        return "".join(out)

    def _view_value(self, name, macro, res, resource):
        replica = resource.replicas.get(name)
        if macro == "resource-members":
            return sorted(resource.replicas)
        if macro == "get-primary":
            return resource.primary or ""
        if macro == "is-primary":       # the device up: not one that crashed under its mount
            return "1" if resource.primary == name and (name, res) not in self.crashed_devices \
                else "0"
        if macro in ("sync-size", "resource-size"):
            return str(resource.size)
        if macro == "disk-present":
            return "1" if replica else ""
        if macro == "is-split-brain":       # (no history forks here)
            return "0" if replica else ""
        if macro == "sync-rest":
            return str(replica.sync_rest) if replica else ""
        if macro == "sync-received":
            return str(replica.received) if replica else ""
        if macro in ("work-rest", "fetch-rest", "replay-rest") and replica and \
                name in self.marsd_stopped and name != resource.primary and \
                not self.kernel_marsadm:
            return ""       # (ours: unknown without marsd; the kernel's reads its tree)
        if macro in ("work-rest", "fetch-rest"):      # (a record is a byte here)
            listed = len(resource.records) if replica is None or replica.listed is None \
                else replica.listed
            return str(max(0, listed - replica.applied)) if replica else ""
        if macro == "fetch-lognr":      # one logfile, a record a byte of it
            return "1" if replica else ""
        if macro == "fetch-logsize":
            return str(replica.applied) if replica else ""
        if macro == "replay-rest":
            return "0" if replica else ""
        if macro == "is-consistent":    # synced: an older state of the primary at worst
            if replica and name == resource.primary and name in self.writing_back:
                return "0"
            return ("0" if replica.sync_rest else "1") if replica else ""
        if macro == "diskstate":
            if not replica:
                return ""
            if replica.sync_rest:
                return "InConsistent"
            return "OutDated[F]" if name in self.behind and name != resource.primary \
                else "UpToDate"
        raise UnexpectedCommand(f"{name}: the fake marsadm has no view-{macro}")

    def _mars_view(self, name, argument="all"):
        """Plain `marsadm view all`: a summary line per resource of the host,
        in the format of the bundled marsadm (facts.parse_view_summary)."""
        lines = []
        for res in self._my_resources(name) if argument == "all" else argument.split(","):
            resource = self._visible(name, res)
            replica = resource.replicas[name]
            synced = not replica.sync_rest
            role = "Primary" if resource.primary == name else "Secondary"
            lines.append(f"{res} [{len(resource.replicas)}/{len(self.cluster_of(name))}] "
                         f"{'UpToDate' if synced else 'InConsistent'} "
                         f"{'Replicating' if synced else 'Syncing'} "
                         f"DCA{'S' if synced else 's'}FR {role} {resource.primary or '(none)'}\n")
            if name in self.stalled:
                lines.append(f"  error: {self.stalled[name]}\n")
            if name in self.marsd_stopped:      # as the bundled marsadm says it
                lines.append("  marsd is not running on this host: figures unavailable\n")
        return "".join(lines)

    def _mars_lowlevel_ls_host_ips(self, name):
        if name in self.clusterless:
            return ""
        return "".join(f"{host} {self.hosts[host].address}\n" for host in self.cluster_of(name))

    def _mars_create_cluster(self, name):
        if name not in self.clusterless:
            raise Refused(f"host {name} is already in a cluster with "
                          f"{', '.join(self.cluster_of(name))}")
        self.clusterless.discard(name)
        self.cluster_id[name] = max(self.cluster_id.values()) + 1
        return ""

    def _mars_wait_cluster(self, name):
        if name in self.clusterless:
            raise Refused(f"host {name} is not a member of any cluster: run create-cluster, or "
                          "join-cluster <peer>")
        silent = [host for host in self.cluster_of(name)
                  if host in self.down or host in self.marsd_stopped]
        if silent:
            raise Refused(f"marsd not answering on {', '.join(silent)} (waited)", EXIT_TIMEOUT)
        if self.kernel_marsadm and self.publishes:
            cluster = set(self.cluster_of(name))
            for res, resource in self.resources.items():
                for host in cluster.intersection(resource.replicas):
                    self.actsize[(host, res)] = self.lvs(host).get(res, 0)
        return ""

    def _mars_merge_cluster(self, name, peer, address):
        mine, theirs = set(self._all_resources(name)), set(self._all_resources(peer))
        if mine & theirs:
            raise Refused(f"both clusters have resources {', '.join(sorted(mine & theirs))}")
        if self.lost_merges:            # the peer never took it in
            self.lost_merges -= 1
            return ""
        number = self.cluster_id[peer]
        for host in self.cluster_of(name):
            self.cluster_id[host] = number
        return ""

    def _mars_split_cluster(self, name):
        cluster = self.cluster_of(name)
        links = [list(resource.replicas) for resource in self.resources.values()]
        for group in connected_groups(cluster, links):
            number = max(self.cluster_id.values()) + 1
            for host in group:
                self.cluster_id[host] = number
        return ""

    def _mars_leave_cluster(self, name):
        """On `name` itself: it leaves (holding no replica). With --host=<name>
        on another host of its cluster (the kernel's way for a dead host):
        the others drop it, unless its marsd answers (and no --force)."""
        held = self._my_resources(name)
        if held:
            raise Refused(f"{name} still holds replicas of {', '.join(held)}")
        if self.asked_on != name:
            if name not in self.cluster_of(self.asked_on):
                raise Refused(f"{name} is not in the cluster of {self.asked_on}")
            if name not in self.down and not self.forced:
                raise Refused(f"{name}'s marsd answers: it is not gone")
        self.cluster_id[name] = max(self.cluster_id.values()) + 1
        self.clusterless.add(name)
        return ""

    def _mars_join_resource(self, name, res, disk):
        resource = self._visible(name, res)
        if name in resource.replicas:
            raise Refused(f"{name} is a member of {res} already")
        if not Path(disk).exists():
            raise Refused(f"disk {disk} does not exist")
        if Path(disk).stat().st_size < resource.size:       # as ours (mars/resources.py)
            raise Refused(f"disk {disk} is too small for {res} ({resource.size} bytes): enlarge "
                          "the disk (lvresize) first")
        resource.replicas[name] = Replica(disk, resource.size)
        return ""

    def _mars_leave_resource(self, name, res):
        resource = self._visible(name, res)
        if name not in resource.replicas:
            raise Refused(f"{name} is no member of {res}")
        if resource.primary == name and not self.forced:
            raise Refused(f"{name} is the primary of {res}; hand it over first")
        if resource.replicas[name].up and not self.forced:   # kernel MARS's leave_res_phase0
            raise Refused(f"{res} is not down on {name}: `marsadm down {res}` first")
        self._keep_disk(name, res, resource)
        del resource.replicas[name]
        return ""

    def _mars_primary(self, name, res):
        resource = self._visible(name, res)
        replica = resource.replicas.get(name)
        if replica is None:
            raise Refused(f"{name} is no member of {res}")
        old = resource.primary
        if old == name:
            return ""
        if self.forced and replica.fetching:        # as kernel MARS's primary_phase0
            raise Refused(f"cannot take {res} over by force on {name} while it fetches: "
                          f"`marsadm pause-fetch {res}` first")
        if replica.sync_rest:
            raise Refused(f"{res} on {name} is not UpToDate")
        if name in self.marsd_stopped:      # (the wish it records is not modelled)
            raise Refused(f"timed out after 600s waiting for {res}'s device on {name}",
                          EXIT_TIMEOUT)
        if old and self.hosts[old].device(res) in self.mounts[old].values() and not self.forced:
            raise Refused(f"{device_open(old, res, 1)}; nothing changed")
        replica.applied = len(resource.records)
        resource.primary = name
        return ""

    def _mars_pause_fetch(self, name, res):
        self._fetch_switch(name, res, False)
        return ""

    def _mars_resume_fetch(self, name, res):
        self._fetch_switch(name, res, True)
        return ""

    def _fetch_switch(self, name, res, on):
        replica = self._visible(name, res).replicas.get(name)
        if replica is None:
            raise Refused(f"{name} is no member of {res}")
        replica.fetching = on

    def _mars_resize(self, name, res, size=None):
        """As marsadm resize: on the primary, to the smallest member's disk
        (or `size`); the secondaries then get the grown tail. Kernel MARS's
        knows the disks by what its members published (`actsize`)."""
        resource = self._visible(name, res)
        if resource.primary != name:
            raise Refused(f"{name} is not the primary of {res}")
        if self.kernel_marsadm:         # the sizes its members published
            disks = {host: self.actsize.get((host, res), resource.size)
                     for host in resource.replicas}
        else:                           # ours asks every member's marsd
            disks = {host: self.lvs(host).get(res, 0) for host in resource.replicas}
        smallest = min(disks.values())
        wanted = int(size) if size else smallest
        if wanted > smallest:
            small = ", ".join(f"{host} ({disk})" for host, disk in sorted(disks.items())
                              if disk < wanted)
            raise Refused(f"disks too small for {wanted} bytes on {small}: lvresize them first")
        if wanted <= resource.size:
            return f"{res} already has {resource.size} bytes\n"
        grown, resource.size = wanted - resource.size, wanted
        for host, replica in resource.replicas.items():
            if host != name:
                replica.sync_rest += grown
                replica.received = 0        # a new sync: of the tail
        return ""

    def _keep_disk(self, name, res, resource):
        """What `name`'s disk of `res` holds once MARS no longer uses it."""
        replica = resource.replicas[name]
        self.volumes[(name, Path(replica.disk).name)] = Volume(
            resource.records[:replica.applied], resource.used)

    def _mars_down(self, name, res):
        self._switch(name, res, up=False)
        return ""

    def _mars_up(self, name, res):
        self._switch(name, res, up=True)
        return ""

    def _switch(self, name, res, up):
        resource = self._visible(name, res)
        if name not in resource.replicas:
            raise Refused(f"{name} is no member of {res}")
        if not up and resource.primary == name and \
                self.hosts[name].device(res) in self.mounts[name].values():
            raise Refused(f"{device_open(name, res, 1, 'down')}; nothing changed")
        resource.replicas[name].up = up

    def _mars_secondary(self, name, res):
        resource = self._visible(name, res)
        if resource.primary and self.hosts[resource.primary].device(res) in \
                self.mounts[resource.primary].values():
            raise Refused(f"{device_open(resource.primary, res, 1)}; nothing changed")
        resource.primary = ""
        return ""

    def _mars_delete_resource(self, name, res):
        resource = self._visible(name, res)
        if resource.primary and self.hosts[resource.primary].device(res) in \
                self.mounts[resource.primary].values():
            self.violations.append(f"{res} deleted on {name} while its device is mounted")
        for host in resource.replicas:
            self._keep_disk(host, res, resource)
        # a member whose marsd is down does not drop its part (its keys are its own)
        self.left_behind[res] = {host for host in resource.replicas if host in self.down}
        del self.resources[res]
        return ""

    def _mars_create_resource(self, name, res, disk):
        if res in self.resources:
            raise Refused(f"resource {res} already exists")
        if self.left_behind.get(res):
            raise Refused(f"{', '.join(sorted(self.left_behind[res]))} already member of "
                          f"resource {res}")
        lv = Path(disk).name
        size = self.lvs(name).get(lv)
        if size is None:
            raise Refused(f"disk {disk} does not exist")
        volume = self.volumes.pop((name, lv), Volume())
        resource = Resource(size, name, records=list(volume.records),
                            used=volume.used or 100 << 20)
        resource.replicas[name] = Replica(disk, 0, applied=len(volume.records))
        self.resources[res] = resource
        return ""

    def _mars_wait_resource(self, name, res, condition):
        resource = self._visible(name, res)
        # the kernel's grammar only (its `wait_cond`), which ours understands too
        if condition not in ("is-device-on", "is-device-off"):
            raise Refused(f"button '{condition}' does not exist")
        if (resource.primary == name) == (condition == "is-device-on"):
            return ""
        raise Refused(f"timed out waiting for {res} {condition} on {name}", EXIT_TIMEOUT)

    # ------------------------------------------------------------ mounts
    def _device_res(self, name, device):
        for res, resource in self.resources.items():
            if self.hosts[name].device(res) == device and resource.primary == name:
                return res
        return None

    def _lv_at(self, name, path):
        """The LV name of `path` in `name`'s volume group, or None."""
        host = self.hosts[name]
        return Path(path).name if str(Path(path).parent) == host.path(f"/dev/{host.vg}") else None

    def _volume_at(self, name, mountpoint):
        """The Volume mounted at `mountpoint` from a plain LV, or None."""
        lv = self._lv_at(name, self.mounts[name].get(mountpoint, ""))
        return self.volumes.get((name, lv)) if lv else None

    def _mkdir(self, name, args, input=None):
        Path(args[-1]).mkdir(parents=True, exist_ok=True)
        return ""

    def _mount(self, name, args, input=None):
        device, mountpoint = args[-2], args[-1]
        lv = self._lv_at(name, device)
        if self._device_res(name, device) is None and (name, lv) not in self.volumes:
            raise Refused(f"{device}: special device does not exist or holds no filesystem", 32)
        if mountpoint in self.mounts[name]:
            raise Refused(f"{mountpoint}: already mounted", 32)
        self.mounts[name][mountpoint] = device
        self.mount_options[name][mountpoint] = args[args.index("-o") + 1] if "-o" in args \
            else ",".join(filter(None, ["rw", self.quota]))
        return ""

    def _umount(self, name, args, input=None):
        mountpoint = args[-1]
        if mountpoint not in self.mounts[name]:
            raise Refused(f"{mountpoint}: not mounted", 32)
        res = self._res_at(name, mountpoint)
        if res and self.containers[name].get(res) == "RUNNING":
            raise Refused(f"{mountpoint}: target is busy", 32)
        del self.mounts[name][mountpoint]
        self.mount_options[name].pop(mountpoint, None)
        self.crashed_devices.discard((name, res))     # marsd brings a new device up
        return ""

    def _readlink(self, name, args, input=None):
        """readlink -f PATH: a device path is its own (the fake has no loop devices)."""
        return args[-1] + "\n"

    def _findmnt(self, name, args, input=None):
        mountpoint = args[args.index("--mountpoint") + 1]
        if mountpoint not in self.mounts[name]:
            raise Refused("", 1)
        if args[args.index("--output") + 1] == "OPTIONS":
            return self.mount_options[name][mountpoint] + "\n"
        return self.mounts[name][mountpoint] + "\n"

    def _df(self, name, args, input=None):
        """df --block-size=1 [--output=COLUMNS] PATH...: the mounted volumes'."""
        output = next((arg.split("=", 1)[1] for arg in args if arg.startswith("--output=")),
                      "size,used").split(",")
        headers = {"size": "1B-blocks", "used": "Used", "target": "Mounted on"}
        lines = [" ".join(headers[column] for column in output)]
        for path in (arg for arg in args if not arg.startswith("-")):
            res = self._res_at(name, path)
            if path not in self.mounts[name] or res is None:
                raise Refused(f"{path}: not a mounted volume of the fake fleet", 1)
            resource = self.resources[res]
            values = {"size": resource.fs_size, "used": resource.used, "target": path}
            lines.append(" ".join(str(values[column]) for column in output))
        return "".join(f"{line}\n" for line in lines)

    def _cat(self, name, args, input=None):
        """cat /proc/meminfo /proc/loadavg /proc/stat: the host's `load`
        (FakeLoad), as the kernel prints them."""
        load = self.load.get(name, FakeLoad())
        files = {"/proc/meminfo": f"MemTotal:       {load.mem_total >> 10} kB\n"
                                  f"MemFree:        {load.mem_free >> 10} kB\n"
                                  f"MemAvailable:   {load.mem_free >> 10} kB\n",
                 "/proc/loadavg": f"{load.load:.2f} {load.load:.2f} {load.load:.2f} 1/100 4242\n",
                 "/proc/stat": "cpu  1 2 3 4\n" + "".join(
                     f"cpu{number} 1 2 3 4\n" for number in range(load.cpus))}
        unknown = [path for path in args if path not in files]
        if unknown:
            raise UnexpectedCommand(f"{name}: the fake fleet cannot cat {unknown}")
        return "".join(files[path] for path in args)

    def _xfs_info(self, name, args, input=None):
        """xfs_info MOUNTPOINT: its data section, as xfsprogs prints it."""
        mountpoint = args[-1]
        res = self._res_at(name, mountpoint)
        if mountpoint not in self.mounts[name] or res is None:
            raise Refused(f"xfs_info: {mountpoint} is not a mounted XFS filesystem", 1)
        blocks = self.resources[res].fs_size // 4096
        return (f"meta-data={self.hosts[name].device(res)} isize=512    agcount=4, "
                f"agsize={blocks // 4} blks\n"
                f"data     =                       bsize=4096   blocks={blocks}, imaxpct=25\n"
                "log      =internal log           bsize=4096   blocks=16384, version=2\n")

    def _xfs_growfs(self, name, args, input=None):
        mountpoint = args[-1]
        res = self._res_at(name, mountpoint)
        if mountpoint not in self.mounts[name] or res is None:
            raise Refused(f"{mountpoint} is not a mounted XFS filesystem", 1)
        self.resources[res].fs_size = self.resources[res].size
        return ""

    def _mkfs_xfs(self, name, args, input=None):
        device = args[-1]
        lv = self._lv_at(name, device)
        if lv is None or lv not in self.lvs(name):
            raise Refused(f"{device}: no such device", 1)
        if any(replica.disk == device for resource in self.resources.values()
               for host, replica in resource.replicas.items() if host == name):
            self.violations.append(f"{name}: mkfs.xfs on {device}, a MARS replica's disk")
        if device in self.mounts[name].values():
            raise Refused(f"{device} contains a mounted filesystem", 1)
        self.volumes[(name, lv)] = Volume()
        return ""

    def _blkid(self, name, args, input=None):
        lv = self._lv_at(name, args[-1])
        if (name, lv) in self.volumes:
            return "xfs\n"
        raise Refused("", 2)

    def _rsync(self, name, args, input=None):
        """rsync <options> --rsh="football-host rsync-source '<mountpoint>'"
        source::volume/ <mountpoint-tmp>/ (its source side confined to the
        volume, football/hostside/confined.py): the copy holds what the
        volume holds now. A pass from the volume's path itself (unconfined)
        is refused as a command the shrink must not run."""
        rsh = [arg[len("--rsh="):] for arg in args if arg.startswith("--rsh=")]
        words = rsh_words(rsh[-1]) if rsh else []
        if args[-2] != confined.SOURCE or words[:2] != ["football-host", "rsync-source"] \
                or len(words) != 3:
            raise UnexpectedCommand(f"{name}: rsync {shlex.join(args)}: a copy pass not from "
                                    "the confined source (--rsh=football-host rsync-source "
                                    f"'<volume>' {confined.SOURCE})")
        source, target = words[2].rstrip("/"), args[-1].rstrip("/")
        res = self._res_at(name, source)
        volume = self._volume_at(name, target)
        if res is None or source not in self.mounts[name] or volume is None:
            raise Refused(f"rsync {source}/ {target}/: not the mounted volume and its copy", 23)
        if "--delete" not in args:
            raise UnexpectedCommand("the fake fleet's rsync copies with --delete only")
        resource = self.resources[res]
        volume.records, volume.used = list(resource.records), resource.used
        return ""

    def _find(self, name, args, input=None):
        """find <copy's mountpoint> -xdev -type f -links +1 ...: the fake's
        filesystems hold no hard links."""
        if args[0] not in self.mounts[name]:
            raise Refused(f"find: '{args[0]}': No such file or directory", 1)
        return ""

    def _xfs_quota(self, name, args, input=None):
        command, mountpoint = args[args.index("-c") + 1], args[-1]
        if mountpoint not in self.mounts[name]:
            raise Refused(f"{mountpoint}: not mounted", 1)
        if command.startswith("dump"):
            return (f"fs = {self.mounts[name][mountpoint]}\n"
                    f"{self.quota_limits.get((name, mountpoint), '1000 0 20480 0 0 0 0')}\n")
        first, _, limits = input.partition("\n")
        if first != f"fs = {self.mounts[name][mountpoint]}":
            self.violations.append(f"{name}: quota restored for {first!r} into {mountpoint}")
        self.quota_limits[(name, mountpoint)] = limits.strip()
        return ""

    def _res_at(self, name, mountpoint):
        return next((res for res in self.resources
                     if self.hosts[name].mountpoint(res) == mountpoint), None)

    # ------------------------------------------------------------ football-host
    def _football_host(self, name, args, input):
        if args[0] == "projects":       # (the trees are not files here)
            self.projects_copied.append((name, *args[1:]))
            return json.dumps({"read": 1, "changed": 1})
        if args[0] == "ct":
            return self._container(name, args[2], args[3] if len(args) > 3 else None)
        if args[:1] == ["vg"] and args[2] in ("remove", "rename"):
            lv, disk = args[3], f"{args[1]}/{args[3]}"
            if any(replica.disk == disk for resource in self.resources.values()
                   for host, replica in resource.replicas.items() if host == name):
                self.violations.append(f"{name}: LV {lv} {args[2]}d while it is a replica's disk")
            if args[2] == "rename" and (name, lv) in self.volumes:
                self.volumes[(name, args[4])] = self.volumes.pop((name, lv))
        result = CliRunner().invoke(host_cli, args, input=input)
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        if result.exit_code:
            raise Refused(result.stderr.strip() or result.stdout.strip(), result.exit_code,
                          result.stdout if result.stderr.strip() else "")
        return result.stdout

    def _host_helper(self, host, args):
        return self._football_host(host.name, args, None)

    def _host_json(self, host, args):
        return json.loads(self._host_helper(host, args))

    def _container(self, name, action, res):
        states = self.containers[name]
        mounted = res is not None and self.hosts[name].mountpoint(res) in self.mounts[name]
        if action == "list":
            return json.dumps({res: state for res, state in states.items()
                               if self.hosts[name].mountpoint(res) in self.mounts[name]})
        if action == "state":
            return json.dumps({"state": states.get(res, "STOPPED") if mounted else "UNDEFINED"})
        if action == "stop":        # as lxc: an undefined or stopped one is left alone
            stopped = mounted and states.get(res) == "RUNNING"
            if stopped:
                states[res] = "STOPPED"
            return json.dumps({"stopped": stopped})
        if not mounted:
            raise Refused(f"container {res} is not defined under {self.hosts[name].lxcpath}", 4)
        if action == "start":
            if (name, res) in self.broken:
                raise Refused(f"container {res} did not start (as the test asked)", 4)
            started = states.get(res) != "RUNNING"
            if started:
                self._start_container(name, res)
            return json.dumps({"started": started})
        raise UnexpectedCommand(f"{name}: the fake fleet has no `ct {action}`")

    def _start_container(self, name, res):
        resource = self.resources[res]
        others = [host for host in self.running(res) if host != name]
        if others:
            self.violations.append(f"{res} started on {name} while it runs on {others}")
        replica = resource.replicas[name]
        if replica.applied < len(resource.records):
            # a start on a stale copy: it counts on from what its volume holds
            self.violations.append(f"{res} started on {name} with {replica.applied} of "
                                   f"{len(resource.records)} records")
            resource.records.append(resource.records[replica.applied - 1] + 1
                                    if replica.applied else 1)
        if resource.records and resource.records[-1] < self.written.get(res, 0):
            self.violations.append(f"{res} started on {name} with records up to "
                                   f"{resource.records[-1]} of {self.written[res]}: lost")
        self.containers[name][res] = "RUNNING"


class FakeHostRunner:
    """One host's transport into the fleet (the interface of
    football.transport.Transport)."""

    def __init__(self, fleet, name):
        self.fleet, self.host = fleet, name

    def run(self, argv, *, check=True, timeout=None, input=None):
        result = self.fleet.run(self.host, argv, input=input)
        if check and not result.ok:
            raise CommandFailed(result)
        return result

    def close(self):
        pass


def _lines(value):
    if isinstance(value, (list, tuple)):
        return "".join(f"{item}\n" for item in value)
    return f"{value}\n" if value != "" else ""


# ------------------------------------------- the fleet of the unit tests

HOMES = {"cluster1": ("a1", "a2"), "cluster2": ("b1", "b2")}


@pytest.fixture
def fake_fleet(tmp_path, monkeypatch):
    """The lab's four hosts (cluster1: a1 a2, cluster2: b1 b2) as a fake
    fleet that every `Host.runner` of the run reaches; vm1 primary on a1,
    replicated to a2. In a test file: `fleet = fake_fleet`."""
    data = {"clusters": {"cluster1": ["a1", "a2"], "cluster2": ["b1", "b2"]},
            "hosts": {name: {"address": f"127.0.9.{number}", "root": str(tmp_path / name)}
                      for number, name in enumerate(["a1", "a2", "b1", "b2"], start=11)},
            "defaults": {"transport": "local", "storage": "filevg", "manager": "lab",
                         "container": "lxc", "vg_size": "4G"}}
    path = tmp_path / "fleet.yml"
    path.write_text(json.dumps(data))
    fleet = FakeFleet(parse(data, str(path)))
    fleet.inventory_path = str(path)
    fleet.state_dir = str(tmp_path / "controller")
    monkeypatch.setattr(Host, "runner", property(lambda host: fleet.runner(host.name)))
    for name in ("FOOTBALL_INVENTORY", "FOOTBALL_STATE_DIR", "FOOTBALL_PLUGIN_DIRS"):
        monkeypatch.delenv(name, raising=False)
    fleet.create_resource("vm1", "a1", ["a2"])
    return fleet


def football(fleet, *args, yes=True):
    """`football --json [--yes] <args>` in-process against the fleet: (exit
    code, events, stderr)."""
    result = CliRunner().invoke(cli, ["--inventory", fleet.inventory_path, "--json",
                                      *(["--yes"] if yes else []),
                                      "--var", f"state_dir={fleet.state_dir}",
                                      "--var", "poll_interval=0", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return result.exit_code, events, result.stderr


def report_of(fleet, *args):
    """The one JSON document a `football --json` command prints whole
    (score, balance --plan, evacuate --plan), run in-process against the
    fleet; it must exit 0."""
    result = CliRunner().invoke(cli, ["--inventory", fleet.inventory_path, "--json",
                                      "--var", f"state_dir={fleet.state_dir}", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def fresh_resource(fleet, res, primary="a1", secondaries=("a2",), size=1 << 30):
    """`res` as at the start: `size`, on `primary`, replicated to
    `secondaries` (whatever it was: replicas, LVs by its name, container)."""
    fleet.resources.pop(res, None)
    for name, host in fleet.hosts.items():
        fleet.containers[name].pop(res, None)
        fleet.mounts[name].pop(host.mountpoint(res), None)
        for lv in fleet.lvs(name):
            if lv == res or lv.startswith(f"{res}-"):
                fleet.run(name, ["football-host", "vg", host.path(f"/dev/{host.vg}"), "remove",
                                 lv])
    fleet.written.pop(res, None)
    fleet.create_resource(res, primary, list(secondaries), size=size)


def failing(fleet, monkeypatch, when, exit_code, stderr):
    """The commands `when(host, argv)` picks exit `exit_code` saying
    `stderr`, run nowhere (the others as before); returns how to undo it."""
    answer = fleet.run

    def run(host, argv, input=None):
        if when(host, tuple(argv)):
            return Result(host=host, argv=tuple(argv), exit_code=exit_code, stdout="",
                          stderr=stderr)
        return answer(host, argv, input=input)
    monkeypatch.setattr(fleet, "run", run)
    return lambda: monkeypatch.setattr(fleet, "run", answer)


def view_all_times_out(fleet, monkeypatch, name):
    """`marsadm view all` on host `name` times out (exit 3): a view that
    lists nothing, which must not read as an empty host."""
    view = fleet._mars_view

    def times_out(host, argument="all"):
        if host == name and argument == "all":
            raise Refused("marsadm view all timed out", 3)
        return view(host, argument)
    monkeypatch.setattr(fleet, "_mars_view", times_out)


def replica_behind(fleet, res="vm1", primary="a1", behind="a2", ahead="b1", writes=3):
    """`res` on `primary` with replicas `behind` (its fetch cut off) and
    `ahead` (of the other cluster, merged with it), after `writes` of the
    workload's writes: `ahead` holds all, `behind` not the last of them."""
    fleet.run(primary, ["marsadm", "merge-cluster", ahead, fleet.hosts[ahead].address])
    fresh_resource(fleet, res, primary, [behind, ahead], size=320 << 20)
    fleet.stalled[behind] = "fetch cut off"
    for _ in range(writes):
        fleet.run(ahead, ["marsadm", "view-get-primary", res])    # (a command: a write)


def points_of(events):
    return [event["name"] for event in events if event["event"] == "injection-point"]


class SharedQueue:
    """Fake-fleet runs as screener jobs of one jobs' database (SQLite in
    `base`) that two controllers share: `taken_over` runs a job that stops
    at an injection point on this controller (its worker died), then the
    same job on another (its own state dir; the stopped run's lock a lease
    old), as a worker there that took it over would."""

    def __init__(self, base, monkeypatch):
        from football.config import Config
        from football.screener import JobStore

        self.base, self.monkeypatch = base, monkeypatch
        self.config = Config(variables=[f"jobs_database_url=sqlite:///{base / 'jobs.sqlite'}"])
        self.store = JobStore(self.config)
        self.options = ["--var", f"jobs_database_url={self.config.jobs_database_url}"]

    def taken_over(self, fleet, command, point):
        """(exit code, events, stderr) of the other controller's run of
        `command` once its job's run here stopped at injection `point`
        (asserted); the job is then done."""
        from football.screener import JobSpec

        [job_id] = self.store.queue([JobSpec(command[1], command[0], list(command[2:]),
                                             id=f"{command[1]}-{point}")], [])
        number = self.store.job(job_id)["number"]
        self.monkeypatch.setenv("FOOTBALL_JOB", str(number))
        code, events, stderr = football(fleet, *self.options, "--debug-injection-point",
                                        str(point), *command)
        assert code == 1 and f"injection point {point} " in stderr, (point, code, stderr)
        fleet.age_locks(f"run-{command[1]}", 1000)
        mine, fleet.state_dir = fleet.state_dir, str(self.base / f"other-controller-{point}")
        try:
            taken_over = football(fleet, *self.options, *command)
        finally:
            fleet.state_dir = mine
        if taken_over[0] == 0:
            self.store.update(number, state="done", worker="other")
        return taken_over

    def unfinished_here(self, fleet):
        """This controller's unfinished operations, those of jobs done
        elsewhere finished first (football status, the refusals)."""
        from football.joblink import completed_jobs
        from football.journal import unfinished_operations

        return unfinished_operations(fleet.state_dir, completed_jobs(self.config))

    def close(self):
        self.store.close()


def assert_placed(fleet, primary, secondaries, res="vm1", running=True):
    """`res` is primary and runs on `primary` alone (not `running`: runs
    nowhere, its volume mounted there), replicated exactly to
    `secondaries`; LVs only there; no lock or intent anywhere (but another
    resource's run lock, kept by its unfinished operation); its records
    unbroken; nothing forbidden happened."""
    resource = fleet.resources[res]
    assert resource.primary == primary
    assert fleet.members(res) == sorted([primary, *secondaries])
    assert fleet.running(res) == ([primary] if running else [])
    if not running:
        mounted = [name for name in fleet.hosts
                   if fleet.hosts[name].mountpoint(res) in fleet.mounts[name]]
        assert mounted == [primary], f"{res} mounted on {mounted}"
    holders = {name for name in fleet.hosts if res in fleet.lvs(name)}
    assert holders == {primary, *secondaries}, f"LVs of {res} on {sorted(holders)}"
    for name in fleet.hosts:
        # another resource's unfinished run keeps its own (run-<other>)
        left = {item for item in fleet.locks(name)
                if not item.startswith("run-") or item == f"run-{res}"}
        assert not left, f"{name}: locks left {fleet.locks(name)}"
        assert not fleet.locks(name, "/var/lib/football/intents"), f"{name}: intents left"
    assert not fleet.sequence_problems(res)
    assert not fleet.violations


def assert_clusters_as_inventory(fleet):
    for members in fleet.inventory.clusters.values():
        for name in members:
            assert fleet.cluster_of(name) == sorted(members), \
                f"{name} is in the MARS cluster {fleet.cluster_of(name)}"

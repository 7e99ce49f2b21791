"""The embedded lab: a fleet of hosts on one machine (ARCHITECTURE.md, "The lab").

A lab host is a root directory `<lab dir>/<host>` plus its own loopback
address. Below its root live its MARS state dir (`mars/`), device dir
(`dev/mars/`), file-backed volume group (`dev/<vg>/`), LXC path
(`var/lib/lxc/`) and logs (`var/log/`). Each host runs its own marsd, started
by the lab with the host's environment; the pids are recorded in
`<lab dir>/lab.json`, next to the copy of the inventory the lab was brought
up from (`inventory.yml`), so that `status`, `exec` and `down` find the same
hosts later. lab.json also lists the containers `lab add` created besides
the demo, so that `up` starts them again, and the lab's screener worker
(`football worker --id lab`, pid and start time: `down` stops it by pid once
it is sure the pid is still that process).

Everything the lab does to a host goes through `host.run` (the local
transport with the host's environment), as Football's operations do; only
starting marsd (booting the host, as systemd would) and the final tear-down
(unmount, loop devices, pids) are done by the lab itself.

`up` is idempotent: every step looks first and acts only where the lab
differs from the inventory. `down` works from what it finds (recorded pids,
mounts and loop devices under the lab dir, containers under the hosts' LXC
paths), so it also cleans up after an interrupted `up`."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from football import facts, inventory
from football.errors import FootballError, Illegal
from football.hooks import Hooks
from football.ops.base import check_resource_name, in_parallel, wait_knows
from mars.device import detach_loop, loops_backed_by, mounts_under
from mars.errors import MarsError
from mars.names import parse_size
from plugins import filevg, labmanager
from plugins import lxc as lxcplugin

DEFAULT_LAB_DIR = "/var/tmp/football-lab"
DEFAULT_INVENTORY = Path(__file__).resolve().parent.parent / "inventory" / "lab.yml"
LAB_HOST_DEFAULTS = {"storage": "filevg", "manager": "lab", "container": "lxc",
                     "transport": "local", "vg": "vg0", "vg_size": "4G"}
DEFAULT_MARSD_ARGS = ["--round-interval", "0.25"]
MARSD_START_TIMEOUT = 20.0
MARSD_STOP_TIMEOUT = 20.0
# seconds a process is waited for after SIGKILL: one stuck in the kernel (D
# state: a hung FUSE device or disk) may never end; `down` says so and goes on
KILLED_WAIT = 10.0
WORKER_ID = "lab"
WORKER_STOP_TIMEOUT = 60.0    # its operations are interrupted: each cleans up first
SYNC_TIMEOUT = 900
MIN_DEMO_SIZE = 320 << 20     # mkfs.xfs refuses filesystems under 300 MB


class LabFailed(FootballError):
    """A lab step failed; the lab may be half up (`lab up` again repairs,
    `lab down` removes it)."""


def lab_dir_default():
    return os.environ.get("FOOTBALL_LAB_DIR", DEFAULT_LAB_DIR)


class Lab:
    def __init__(self, lab_dir=None, inventory_path=None, hooks=None, echo=print):
        self.dir = Path(lab_dir or lab_dir_default()).resolve()
        self.inventory_path = Path(inventory_path) if inventory_path else None
        self.hooks = hooks or Hooks()
        self.echo = echo

    # ------------------------------------------------------------ bookkeeping
    @property
    def state_file(self):
        return self.dir / "lab.json"

    @property
    def inventory_copy(self):
        return self.dir / "inventory.yml"

    def _state(self):
        try:
            return json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return {"marsd": {}, "demo_created": False}

    def _save(self, state):
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
        os.replace(tmp, self.state_file)

    def exists(self):
        return self.inventory_copy.exists()

    def inventory(self):
        """The inventory the lab was brought up from (its copy in the lab dir),
        else the one given, else the default lab.yml."""
        if self.inventory_copy.exists():
            return load_inventory(self.inventory_copy)
        return load_inventory(self.inventory_path or DEFAULT_INVENTORY)

    def hosts(self, inv=None):
        """The lab's hosts as `Host`s reached by the local transport with
        their environment."""
        inv = inv or self.inventory()
        hosts = {}
        for name, declared in inv.hosts.items():
            root = str(self.dir / name)
            env = {"MARS_ROOT": root, "MARS_HOST": name}
            hosts[name] = replace(declared, root=root, env=env, transport="local", _runner=None)
        return hosts

    def fleet(self):
        """The lab as the inventory Football's operations run against."""
        inv = self.inventory()
        return inv.with_hosts(self.hosts(inv))

    @property
    def controller_dir(self):
        """Where operations on the lab keep journals and run logs (`state_dir`
        unless configured): inside the lab, so that `lab down` removes them."""
        return str(self.dir / "controller")

    def host(self, name):
        hosts = self.hosts()
        if name not in hosts:
            raise Illegal(f"no lab host {name!r}; the lab's hosts are {', '.join(sorted(hosts))}")
        return hosts[name]

    # --------------------------------------------------------------------- up
    def up(self, wait_sync=True, worker=True):
        """Bring the lab up as the inventory says, repairing what is missing;
        with `worker`, a screener worker for it runs too."""
        require_root("lab up")
        inv = self._adopt_inventory()
        hosts = self.hosts(inv)
        state = self._state()
        self._save(state)
        for host in hosts.values():
            for sub in ("mars", "var/log", "var/lib/lxc", "dev"):
                Path(host.path("/" + sub)).mkdir(parents=True, exist_ok=True)
        self._clusters(inv, hosts, state, self._marsd_args(inv))
        for host in hosts.values():
            info = filevg.create_vg(host, parse_size(str(host.vg_size)))
            self.echo(f"{host.name}: volume group {host.vg}: {info['size'] >> 20} MiB, "
                      f"{info['free'] >> 20} MiB free")
        if inv.demo:
            self._demo(inv, hosts, state, wait_sync)
        for res, record in state.get("added", {}).items():
            self._ensure_added(res, record, hosts, state, wait_sync)
        if worker:
            self._ensure_worker(state)
        self.echo(f"lab is up in {self.dir}")

    def _adopt_inventory(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        given = Path(self.inventory_path or DEFAULT_INVENTORY)
        if self.inventory_copy.exists():
            if self.inventory_path and given.read_text() != self.inventory_copy.read_text():
                raise Illegal(f"the lab in {self.dir} was brought up from another inventory; "
                              f"take it down first (football lab down) or use another --lab-dir")
            return load_inventory(self.inventory_copy)
        inv = load_inventory(given)
        shutil.copyfile(given, self.inventory_copy)
        return inv

    def _clusters(self, inv, hosts, state, marsd_args):
        """One MARS cluster per inventory cluster; one shared secret for the
        whole lab, so that clusters can be merged later (migrate). The
        clusters come up side by side: first every cluster's first host
        (create-cluster, its marsd), then the others join; the marsds of
        a round start together and are waited for together (each takes
        most of a second to answer)."""
        groups = list(inv.clusters.values()) + [[name] for name in hosts
                                                 if not hosts[name].cluster]
        key_holder = hosts[groups[0][0]] if groups else None
        for round_ in (slice(0, 1), slice(1, None)):       # the first hosts, then the others
            started = []
            for members in groups:
                first = hosts[members[0]]
                for name in members[round_]:
                    host = hosts[name]
                    if host is not key_holder:
                        self._share_key(key_holder, host)
                    if name not in facts.cluster_hosts(host):
                        if host is first:
                            self.echo(f"{name}: create-cluster ({host.address})")
                            host.run(["marsadm", f"--ip={host.address}", "create-cluster"])
                        else:
                            self.echo(f"{name}: join-cluster {first.name}")
                            host.run(["marsadm", f"--ip={host.address}", "join-cluster",
                                      first.name, first.address])
                    started.append((host, self._start_marsd(host, state, marsd_args)))
            for host, process in started:
                if process is not None:
                    self._await_marsd(host, process)

    def _share_key(self, source, host):
        key = host.path("/mars/cluster.key")
        if Path(key).exists():
            return
        secret = source.run(["cat", source.path("/mars/cluster.key")]).stdout
        host.run(["install", "-D", "-m", "0600", "/dev/stdin", key], input=secret)

    def _marsd_args(self, inv):
        return [str(arg) for arg in (inv.lab.get("marsd_args") or DEFAULT_MARSD_ARGS)]

    def _marsd_alive(self, state, name):
        record = state["marsd"].get(name)
        return bool(record) and process_alive(record["pid"], record["start"])

    def _start_marsd(self, host, state, marsd_args):
        """Start `host`'s marsd unless it runs; the process started, or None."""
        if self._marsd_alive(state, host.name):
            return None
        log_path = Path(host.path("/var/log/marsd.log"))
        with open(log_path, "ab") as log:
            process = subprocess.Popen(["marsd", *marsd_args],
                                       env=host.runner.env, stdin=subprocess.DEVNULL,
                                       stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        state["marsd"][host.name] = {"pid": process.pid, "start": process_start(process.pid)}
        self._save(state)
        self.echo(f"{host.name}: marsd started (pid {process.pid}, {host.address}:7777-7779)")
        return process

    def _await_marsd(self, host, process):
        """Wait until the marsd `process` of `host` answers."""
        log_path = Path(host.path("/var/log/marsd.log"))
        deadline = time.monotonic() + MARSD_START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise LabFailed(f"{host.name}: marsd exited with {process.returncode}: "
                                f"{tail_file(log_path)}")
            if host.run(["marsadm", "--timeout=2", "wait-cluster"], check=False).ok:
                return
            time.sleep(0.2)
        raise LabFailed(f"{host.name}: marsd does not answer after {MARSD_START_TIMEOUT:g} s; "
                        f"see {log_path}")

    def worker(self):
        """The lab's screener worker: {"pid", "start", "running"}, or None."""
        record = self._state().get("worker")
        if not record:
            return None
        return {**record, "running": process_alive(record["pid"], record["start"])}

    def _ensure_worker(self, state):
        """`football worker --id lab` on the lab's jobs' database (its state
        dir, through FOOTBALL_LAB_DIR), detached like marsd; its log in
        the controller's log dir."""
        record = state.get("worker")
        if record and process_alive(record["pid"], record["start"]):
            return
        log_path = Path(self.controller_dir) / "log" / "worker.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "football", "worker", "--id", WORKER_ID],
                env={**os.environ, "FOOTBALL_LAB_DIR": str(self.dir)},
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        state["worker"] = {"pid": process.pid, "start": process_start(process.pid)}
        self._save(state)
        self.echo(f"screener worker started (pid {process.pid}; log {log_path})")

    def _stop_worker(self, state):
        """SIGTERM to the lab's worker (its operations are interrupted and
        clean up), SIGKILL after WORKER_STOP_TIMEOUT; only if its pid is
        still the process started (same start time). Returns what did not
        end (`_killed`)."""
        record = state.get("worker")
        if not record or not process_alive(record["pid"], record["start"]):
            return []
        pid = record["pid"]
        self.echo(f"stopping the screener worker (pid {pid})")
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + WORKER_STOP_TIMEOUT
        while pid_running(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid_running(pid):
            os.kill(pid, signal.SIGKILL)
        return self._killed({"the screener worker": pid})

    def _demo(self, inv, hosts, state, wait_sync):
        res = inv.demo["resource"]
        primary, secondary = hosts[inv.demo["primary"]], hosts[inv.demo["secondary"]]
        if not state.get("demo_created"):
            size = parse_size(str(inv.demo.get("size", "1G")))
            if size < MIN_DEMO_SIZE:
                raise Illegal(f"demo size {inv.demo['size']} is too small: xfs needs at least "
                              f"{MIN_DEMO_SIZE >> 20} MiB")
            self._create_demo(res, size, primary, secondary)
            state["demo_created"] = True
            self._save(state)
        self._start(res, hosts, wait_sync)

    def _start(self, res, hosts, wait_sync):
        """Start `res` where MARS says it is primary; wait for its replicas."""
        where = self.primary_of(res, hosts)
        if where is None:
            raise LabFailed(f"{res} has no designated primary in the lab; start it with "
                            f"`football lab exec <host> -- marsadm primary {res}`")
        host = hosts[where]
        stale = labmanager.stale_source(host, res)
        if stale:
            self.echo(f"{where}: {res} is mounted from {stale}, a device that crashed with "
                      "marsd (what runs on it writes nowhere): starting it again on its device")
            self.hooks.resource_start(host=host, res=res)
        elif self.hooks.container_state(host=host, res=res) != "RUNNING":
            self.echo(f"{where}: starting {res}")
            self.hooks.resource_start(host=host, res=res)
        if wait_sync:
            # each host says itself whether it joined: the primary may not
            # have heard of a replica that joined a moment ago
            members = [name for name, other in hosts.items()
                       if res in facts.my_resources(other)]
            for name in members:
                if name != where:
                    self.echo(f"{name}: waiting until {res} is up to date")
                    hosts[name].run(["marsadm", f"--timeout={SYNC_TIMEOUT}", "wait-resource",
                                     res, "up-to-date"], timeout=SYNC_TIMEOUT + 30)
        self.echo(f"{res} runs on {where}")

    def _create_demo(self, res, size, primary, secondary):
        """LV → MARS resource → xfs → mounted → container, then the replica.
        Each step looks first, so an interrupted creation continues."""
        lv = self._ensure_lv(primary, res, size)
        if res not in facts.my_resources(primary):
            self.echo(f"{primary.name}: create-resource {res} on {lv}")
            primary.run(["marsadm", "create-resource", res, lv])
        primary.run(["marsadm", "--timeout=120", "wait-resource", res, "is-device-on"],
                    timeout=150)
        device = primary.device(res)
        if not facts.filesystem_type(primary, device):
            self.echo(f"{primary.name}: mkfs.xfs {device}")
            primary.run(["mkfs.xfs", "-q", device], timeout=300)
        labmanager.mount(primary, res)
        if self.hooks.container_state(host=primary, res=res) == "UNDEFINED":
            self.echo(f"{primary.name}: creating container {res} (busybox, lab workload)")
            self.hooks.container_create(host=primary, res=res)
        if secondary is None:
            return
        replica = self._ensure_lv(secondary, res, size)
        if res not in facts.my_resources(secondary):
            wait_knows(secondary, res, 0.05)
            self.echo(f"{secondary.name}: join-resource {res} on {replica}")
            secondary.run(["marsadm", "join-resource", res, replica])

    def _ensure_lv(self, host, res, size):
        if res not in self.hooks.lv_list(host=host):
            self.echo(f"{host.name}: lvcreate {host.vg}/{res} ({size >> 20} MiB)")
            return self.hooks.lv_create(host=host, lv=res, size=size)
        return self.hooks.lv_path(host=host, lv=res)

    # -------------------------------------------------------------------- add
    def add(self, res, primary, secondary=None, size="320M", wait_sync=True):
        """Another container like the demo: `res` on `primary`, replicated to
        `secondary` when given, started. It is recorded in lab.json before
        anything is created, so that re-running the same `add` (or `lab up`)
        completes an interrupted one, and `lab up` starts it again later."""
        require_root("lab add")
        res = check_resource_name(res)
        try:
            size = parse_size(str(size))
        except MarsError as error:
            raise Illegal(str(error)) from None
        if size < MIN_DEMO_SIZE:
            raise Illegal(f"size {size >> 20} MiB is too small: xfs needs at least "
                          f"{MIN_DEMO_SIZE >> 20} MiB")
        if not self.exists():
            raise Illegal(f"no lab in {self.dir}; bring it up first (football lab up)")
        if secondary == primary:
            raise Illegal("the secondary must differ from the primary")
        placed = [self.host(name) for name in (primary, secondary) if name]
        wanted = {"primary": primary, "secondary": secondary, "size": size, "created": False}
        state, hosts = self._state(), self.hosts()
        record = state.setdefault("added", {}).get(res)
        if record and record != wanted:
            raise Illegal(f"{res} is already in the lab (added on {record['primary']}); "
                          f"`football lab status` shows it, `football lab up` restarts it")
        if not record:
            used = self._holder_of(res, hosts)
            if used:
                raise Illegal(f"{res} is already used in the lab ({used}); choose another name")
            if secondary:
                self._refuse_another_mars_cluster(*placed)
            for host in placed:
                free = self.hooks.vg_free(host=host)
                if free < size:
                    raise Illegal(f"{host.name}: volume group {host.vg} has {free >> 20} MiB "
                                  f"free, {res} needs {size >> 20} MiB")
            state["added"][res] = record = wanted
            self._save(state)
        self._ensure_added(res, record, hosts, state, wait_sync)

    def _refuse_another_mars_cluster(self, primary, secondary):
        """A replica joins within its primary's MARS cluster: elsewhere the
        join would wait for a resource its cluster never learns of."""
        members = facts.cluster_hosts(primary)
        if secondary.name not in members:
            raise Illegal(f"{secondary.name} is not in the MARS cluster of {primary.name} "
                          f"({' '.join(sorted(members))}): choose a host of it, or merge the "
                          f"clusters first (football merge-cluster {primary.name} "
                          f"{secondary.name})")

    def _ensure_added(self, res, record, hosts, state, wait_sync):
        if not record["created"]:
            secondary = hosts[record["secondary"]] if record["secondary"] else None
            self._create_demo(res, record["size"], hosts[record["primary"]], secondary)
        self._start(res, hosts, wait_sync)
        if not record["created"]:
            record["created"] = True
            self._save(state)

    def _holder_of(self, res, hosts):
        """What already has the name `res` in the lab (the demo, or a host with
        an LV, a MARS resource or a container of that name), or None."""
        if res == self.inventory().demo.get("resource"):
            return "the demo container"
        for host in hosts.values():
            if res in self.hooks.lv_list(host=host) or res in facts.my_resources(host) or \
                    self.hooks.container_state(host=host, res=res) != "UNDEFINED":
                return f"on {host.name}"
        return None

    def primary_of(self, res, hosts=None):
        """The designated primary of `res` as the lab's marsadm report it."""
        for host in (hosts or self.hosts()).values():
            try:
                primary = facts.primary(host, res)
            except facts.FactUnavailable:
                continue
            if primary:
                return primary
        return None

    # ----------------------------------------------------------------- status
    def status(self):
        """{host: {...}} with the daemon, the resources and the containers of
        each lab host, read through commands on the hosts."""
        if not self.exists():
            return {}
        hosts, state = self.hosts(), self._state()

        def one(host):
            record = state["marsd"].get(host.name) or {}
            alive = self._marsd_alive(state, host.name)
            entry = {"address": host.address, "cluster": host.cluster, "root": host.root,
                     "marsd_pid": record.get("pid"), "marsd_running": alive,
                     "resources": {}, "containers": {}, "vg_free": None}
            if alive:
                view = host.run(["marsadm", "--timeout=10", "view", "all"], check=False)
                entry["resources"] = facts.parse_view_summary(view.stdout)
            if Path(host.path(host.lxcpath)).is_dir():
                entry["containers"] = lxcplugin.list_containers(host)
            try:
                entry["vg_free"] = self.hooks.vg_free(host=host)
            except FootballError:
                pass
            return host.name, entry

        return dict(in_parallel(one, hosts.values()))

    # ------------------------------------------------------------------- exec
    def exec(self, name, argv):
        """Run `argv` on lab host `name`, as Football would; `Illegal` when
        there is no lab (a `marsadm create-cluster` would make a host's
        state dir where no lab is, which `lab up` then finds)."""
        if not self.exists():
            raise Illegal(f"no lab in {self.dir}; bring it up first (football lab up); "
                          f"nothing was run")
        return self.host(name).run(argv, check=False, timeout=None)

    # ------------------------------------------------------------------- down
    def down(self):
        """Remove everything the lab created; safe after an interrupted up."""
        require_root("lab down")
        if not self.dir.exists():
            self.echo(f"no lab in {self.dir}")
            return
        hosts = self.hosts() if (self.inventory_copy.exists() or
                                 self.inventory_path) else {}
        state = self._state()
        # the lab's loop devices, named while their files' mounts are there: a
        # mount gone (a device process's FUSE mount unmounted after it died)
        # leaves its loop naming `/device`, below no lab dir
        loops = loops_of(self.dir)
        stuck = self._stop_worker(state)
        for host in hosts.values():
            if Path(host.path(host.lxcpath)).is_dir():
                try:
                    for name, ct_state in lxcplugin.list_containers(host).items():
                        if ct_state != "STOPPED":
                            self.echo(f"{host.name}: stopping container {name}")
                            self.hooks.container_stop(host=host, res=name)
                except FootballError as error:
                    self.echo(f"{host.name}: {error}")
        for point, fstype in mounts_under(self.dir):
            if not fstype.startswith("fuse"):
                self.echo(f"umount {point}")
                unmount(point)
        stuck += self._stop_daemons(state)
        deadline = time.monotonic() + 10
        while (attached := still_attached(self.dir, loops)) and time.monotonic() < deadline:
            for loop in attached:
                try:
                    detach_loop(loop)
                    self.echo(f"losetup --detach {loop}")
                except Exception:
                    pass
            time.sleep(0.2)
        for point, _ in mounts_under(self.dir):
            unmount(point)
        left = [f"loop device {loop} ({backing})"
                for loop, backing in still_attached(self.dir, loops).items()]
        left += [f"mount {point}" for point, _ in mounts_under(self.dir)]
        if left or stuck:
            raise LabFailed(f"could not remove {', '.join(left + stuck)}; {self.dir} is kept: "
                            "run `football lab down` again (a process in state D is stuck "
                            "in the kernel, on a hung FUSE device or disk: it may take a "
                            "reboot)")
        shutil.rmtree(self.dir)
        self.echo(f"lab in {self.dir} removed")

    def _stop_daemons(self, state):
        pids = {name: record["pid"] for name, record in state["marsd"].items()
                if process_alive(record["pid"], record["start"])}
        pids.update(self._unrecorded_daemons(set(pids.values())))
        for name, pid in pids.items():
            self.echo(f"{name}: stopping marsd (pid {pid})")
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + MARSD_STOP_TIMEOUT
        while any(pid_running(pid) for pid in pids.values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in pids.values():
            if pid_running(pid):
                os.kill(pid, signal.SIGKILL)
        return self._killed({f"{name}'s marsd": pid for name, pid in pids.items()})

    def _killed(self, pids):
        """Wait up to KILLED_WAIT for the processes `pids` ({what: pid}) that
        were sent SIGKILL; those still there are said and returned."""
        deadline = time.monotonic() + KILLED_WAIT
        while any(pid_running(pid) for pid in pids.values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        stuck = [f"{what} (pid {pid}, state {process_state(pid)})"
                 for what, pid in pids.items() if pid_running(pid)]
        for process in stuck:
            self.echo(f"{process} did not end within {KILLED_WAIT:g} s of SIGKILL")
        return stuck

    def _unrecorded_daemons(self, known):
        """marsd processes of this lab whose pid did not make it into lab.json
        (an `up` killed right after starting one): recognised by their
        MARS_ROOT below the lab dir."""
        found = {}
        prefix = f"MARS_ROOT={self.dir}/".encode()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) in known:
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes().split(b"\0")
                environ = (proc / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(part.endswith(b"marsd") for part in cmdline[:2]) and \
                    any(item.startswith(prefix) for item in environ):
                root = next(item for item in environ if item.startswith(prefix))
                found[root[len(prefix):].decode().split("/")[0] + " (unrecorded)"] = int(proc.name)
        return found


# ------------------------------------------------------------------ helpers
def require_root(what):
    if os.geteuid() != 0:
        raise Illegal(f"{what} needs root (loop devices, FUSE, mount, LXC); run it as root")


def process_start(pid):
    """The start time of `pid` (clock ticks since boot), to tell a recorded
    process from a later one that reuses its pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def pid_running(pid):
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[1].split()[0] == "Z":
        try:
            os.waitpid(pid, os.WNOHANG)     # our own child (tests): reap it
        except ChildProcessError:
            pass
        return False
    return True


def process_state(pid):
    """The state letter of `pid` as /proc shows it (D: stuck in the kernel), or '?'."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "?"


def process_alive(pid, start):
    return pid_running(pid) and process_start(pid) == start


def loops_of(directory):
    """{'/dev/loopN': (backing device 'major:minor', inode)} of the loop
    devices that belong below `directory`: backed by a file there, or
    holding a file system mounted there. Read it while the mounts of their
    files are there: once one is gone, the kernel names the file from the
    root of its own file system (a FUSE device's `/device`), but its device
    and inode stay (`still_attached`)."""
    base = str(directory).rstrip("/") + "/"
    mounted = set()
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            if fields[4].encode().decode("unicode_escape").startswith(base):
                mounted.add(fields[2])
    found = {}
    for loop, (backing, device, inode) in attached_loops().items():
        try:
            number = (Path("/sys/block") / Path(loop).name / "dev").read_text().strip()
        except OSError:
            number = None
        if backing.startswith(base) or number in mounted:
            found[loop] = (device, inode)
    return found


def still_attached(directory, loops):
    """{'/dev/loopN': backing file} of the loop devices backed by a file
    below `directory` now, and of `loops` (`loops_of` before) still backed
    by the same file where its path no longer resolves (its mount gone);
    not a number another's device took meanwhile (another file)."""
    found = loops_backed_by(str(directory).rstrip("/") + "/")
    for loop, (backing, device, inode) in attached_loops().items():
        if loop not in found and loops.get(loop) == (device, inode) and \
                not os.path.exists(backing):
            found[loop] = backing
    return found


def attached_loops():
    """{'/dev/loopN': (backing file, backing device 'major:minor', inode)}
    of every loop device with a backing file (losetup asks the kernel
    itself: device and inode also of a file whose mount is gone)."""
    done = subprocess.run(["losetup", "--json", "--list", "--output",
                           "NAME,BACK-FILE,BACK-MAJ:MIN,BACK-INO"], capture_output=True,
                          text=True)
    if done.returncode != 0 or not done.stdout.strip():
        return {}
    found = {}
    for loop in json.loads(done.stdout).get("loopdevices", []):
        if loop.get("back-file"):
            found[loop["name"]] = (loop["back-file"].strip(),
                                   str(loop.get("back-maj:min") or "").strip(),
                                   loop.get("back-ino"))
    return found


def unmount(point):
    if subprocess.run(["umount", point], capture_output=True).returncode:
        subprocess.run(["umount", "--lazy", point], capture_output=True)


def tail_file(path, lines=8):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def load_inventory(path):
    """A lab inventory: hosts default to file-backed VGs, the lab cluster
    manager and the local transport."""
    return inventory.load(path, defaults=LAB_HOST_DEFAULTS)

"""A lab for a test file: a random 127.A.B.x subnet, a lab dir under the
test's tmp dir, the real `football lab` command line, checks that nothing is
left behind, and what the lab tests ask of it (placement, records, files)."""

import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from football.demo import parse_workload_log
from football.hostside.filevg import FileVG
from football.hostside.locks import list_locks
from mars.device import loops_backed_by, mounts_under
from tests.helpers import programs
from tests.helpers.dataplane import tree_checksums, write_files
from tests.helpers.leftovers import FOOTBALL, processes_naming
from tests.helpers.marshosts import STATE_WAIT, random_subnet

DEMO_SIZE = "320M"          # xfs needs 300 MiB at least

# The injection points of `football migrate` of a resource with two replicas
# to two new hosts, in the order a run reaches them: per new replica merged,
# LV created, joined; synced; the downtime window's three; per old replica
# left, LV removed; the split. tests/unit/test_injection_sweep.py proves
# each on the fake fleet; the lab tests take samples.
MIGRATE_POINTS = (("prepare:merged", "prepare:lv-created", "prepare:joined") * 2
                  + ("wait:synced", "finish:locked", "finish:stopped", "finish:started")
                  + ("cleanup:left", "cleanup:lv-removed") * 2 + ("cleanup:split",))


def lab_inventory(path, demo_size=DEMO_SIZE, vg_size="1G"):
    subnet = random_subnet()
    data = {
        "defaults": {"vg_size": vg_size},
        "clusters": {"cluster1": ["a1", "a2"], "cluster2": ["b1", "b2"]},
        "hosts": {"a1": {"address": f"{subnet}.11"}, "a2": {"address": f"{subnet}.12"},
                  "b1": {"address": f"{subnet}.21"}, "b2": {"address": f"{subnet}.22"}},
        "demo": {"resource": "vm1", "primary": "a1", "secondary": "a2", "size": demo_size},
        "lab": {"marsd_args": ["--round-interval", "0.2"]},
    }
    Path(path).write_text(yaml.safe_dump(data))
    return path


class LabRun:
    def __init__(self, base, demo_size=DEMO_SIZE, vg_size="1G"):
        self.base = Path(base)
        self.dir = self.base / "lab"
        self.inventory = lab_inventory(self.base / "lab.yml", demo_size, vg_size)
        self.env = dict(os.environ, FOOTBALL_LAB_DIR=str(self.dir))

    def football(self, *args, check=True, timeout=600):
        result = programs.run([FOOTBALL, "lab", *args], self.env, timeout)
        if check:
            assert result.returncode == 0, (f"football lab {' '.join(args)} exited "
                                            f"{result.returncode}:\n{result.stderr[-3000:]}")
        return result

    def up(self, *extra, worker=False):
        """`football lab up`; without the lab's screener worker unless `worker`."""
        return self.football("--inventory", str(self.inventory), "up", *extra,
                             *([] if worker else ["--no-worker"]))

    def status(self):
        return json.loads(self.football("status", "--json").stdout)

    def exec(self, host, *argv, check=True):
        return self.football("exec", host, "--", *argv, check=check)

    def workload_log(self, host, res="vm1"):
        return self.dir / host / "var/lib/lxc" / res / "rootfs/var/workload.log"

    def records(self, host, res="vm1"):
        """[(sequence number, uptime)] of the workload's records on `host`."""
        return parse_workload_log(self.workload_log(host, res).read_text())

    def leftovers(self):
        """What a lab down must not leave: mounts, loop devices, containers'
        monitors and daemons of this lab, and the lab dir itself."""
        left = [f"mount {point}" for point, _ in mounts_under(self.dir)]
        left += [f"loop {loop}" for loop in loops_backed_by(str(self.dir) + "/")]
        left += [f"process {pid}: {command}"
                 for pid, command in processes_naming(self.dir).items()]
        if self.dir.exists():
            left.append(f"dir {self.dir}")
        return left

    def keep_logs(self):
        """Copy the hosts' logs (marsd, containers' LXC logs) and the
        controller's run logs (one per football command)
        to `<base>/lab-logs` before `lab down` removes them: a failure seen
        in CI can be read afterwards."""
        kept = self.base / "lab-logs"
        for log in [*self.dir.glob("*/var/log/**/*"), *self.dir.glob("*/var/lib/lxc/.*.log"),
                    *self.dir.glob("controller/log/*")]:
            if log.is_file():
                target = kept / log.relative_to(self.dir)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(log, target)

    def cleanup(self):
        if self.dir.exists():
            self.keep_logs()
            self.football("down", check=False)


@contextmanager
def lab_up(base, demo_size=DEMO_SIZE, vg_size="1G", worker=False, env=None):
    """A lab brought up under `base` for the `with` block (with its
    screener worker when `worker`; `env` added to the lab's environment);
    brought down afterwards, failing when `lab down` left anything behind."""
    run = LabRun(base, demo_size, vg_size)
    run.env.update(env or {})
    try:
        run.up(worker=worker)
        yield run
    finally:
        run.cleanup()
    assert not run.leftovers(), f"lab down left: {run.leftovers()}"


def module_lab(name, demo_size=DEMO_SIZE, vg_size="1G", env=None):
    """The `lab` fixture of a test file: one lab for all its tests (bringing
    it up is the slow part), under a tmp dir called `name`; each host's VG
    `vg_size`. In the file: `lab = module_lab("migrate")`."""
    @pytest.fixture(scope="module")
    def lab(tmp_path_factory):
        with lab_up(tmp_path_factory.mktemp(name), demo_size, vg_size, env=env) as run:
            yield run
    return lab


# For the labs of several containers side by side: a record every 0.5 s,
# not 0.1 s (each is logged, fetched and replayed on two hosts: measured
# 12 % of one CPU per container at 0.1 s, half a CPU for four).
FEWER_RECORDS = {"FOOTBALL_LAB_WORKLOAD_INTERVAL": "0.5"}


def roles_and_running(status, res="vm1"):
    """From `lab status --json`: {host: role} of `res`, and the hosts where
    its container runs."""
    roles = {name: entry["resources"][res]["role"] for name, entry in status.items()
             if res in entry["resources"]}
    running = [name for name, entry in status.items()
               if entry["containers"].get(res) == "RUNNING"]
    return roles, running


def sequence_problems(records):
    """Missing or repeated sequence numbers (a repeat means a record was lost
    and the workload counted again from an older one)."""
    problems = []
    for (before, _), (after, _) in zip(records, records[1:]):
        if after != before + 1:
            problems.append(f"{before} -> {after}")
    if records and records[0][0] != 1:
        problems.append(f"starts at {records[0][0]}")
    return problems


def wait_for_records(lab, host, more_than, timeout=STATE_WAIT):
    """The workload's records on `host` once there are more than `more_than`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            records = lab.records(host)
        except (FileNotFoundError, ValueError):
            records = []
        if len(records) > more_than:
            return records
        time.sleep(0.1)
    raise AssertionError(f"the workload on {host} wrote no more than {more_than} records")


def largest_gap(records):
    """The longest time between two consecutive records (uptime seconds)."""
    return max((b - a for (_, a), (_, b) in zip(records, records[1:])), default=0.0)


def football(env, *args, timeout=900):
    """The `football` command line (global options first), with `env`."""
    return programs.run([FOOTBALL, *args], env, timeout)


def migrate(lab, *args, check=True):
    result = football(lab.env, "--json", *args)
    if check:
        assert result.returncode == 0, f"football {' '.join(args)}: {result.stderr[-3000:]}"
    return result


def events(result, kind):
    return [event for event in map(json.loads, result.stdout.splitlines())
            if event["event"] == kind]


def placement(lab, status=None):
    """{host: role} of vm1, the running container, the LVs and locks of each
    host (read by the host-side helpers' own code, in this process)."""
    status = status or lab.status()
    roles, running = roles_and_running(status)
    lvs = {name: FileVG(lab.dir / name / "dev/vg0").info()["lvs"] for name in status}
    locks = {name: list_locks(lab.dir / name / "var/lock/football") for name in status}
    return roles, running, lvs, locks


def assert_on(lab, primary, secondary):
    status = lab.status()
    roles, running, lvs, locks = placement(lab, status)
    assert roles == {primary: "Primary", secondary: "Secondary"}
    assert running == [primary]
    assert {name for name, volumes in lvs.items() if "vm1" in volumes} == {primary, secondary}
    assert not any(locks.values()), f"locks left: {locks}"
    diskstate = status[secondary]["resources"]["vm1"]["diskstate"]
    assert diskstate in ("UpToDate", "Replaying") or diskstate.startswith("UpToDate")


def files_dir(lab, host, name="data"):
    """A directory inside vm1's root filesystem on `host` (on its volume)."""
    return lab.dir / host / "var/lib/lxc/vm1/rootfs" / name


def written_files(lab, host, name, count, size):
    """Files of random data in vm1's volume on `host`, synced; their checksums."""
    files_dir(lab, host, name).mkdir()
    write_files(files_dir(lab, host, name), count=count, size=size)
    os.sync()
    return tree_checksums(files_dir(lab, host, name))


def inventory_without(lab, dead, path):
    """The lab's hosts as a plain inventory, `dead` unreachable (SSH to a
    port where nothing listens)."""
    data = yaml.safe_load((lab.dir / "inventory.yml").read_text())
    for section in ("demo", "lab"):
        data.pop(section, None)
    data["defaults"].update(storage="filevg", manager="lab", transport="local")
    for name, host in data["hosts"].items():
        root = str(lab.dir / name)
        host.update(root=root, env={"MARS_ROOT": root, "MARS_HOST": name})
    data["hosts"][dead].update(transport="ssh", port=2, connect_timeout=2)
    path.write_text(yaml.safe_dump(data))
    return path

"""A lab of its own per test: a random 127.A.B.x subnet, a lab dir under the
test's tmp dir, the real `football lab` command line, and checks that
nothing is left behind."""

import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import yaml

from football.demo import parse_workload_log
from mars.device import loops_backed_by, mounts_under
from tests.helpers.marshosts import random_subnet

FOOTBALL = str(Path(sys.executable).parent / "football")
DEMO_SIZE = "320M"


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
    def __init__(self, base):
        self.base = Path(base)
        self.dir = self.base / "lab"
        self.inventory = lab_inventory(self.base / "lab.yml")
        self.env = dict(os.environ, FOOTBALL_LAB_DIR=str(self.dir))

    def football(self, *args, check=True, timeout=600):
        result = subprocess.run([FOOTBALL, "lab", *args], env=self.env, capture_output=True,
                                text=True, timeout=timeout)
        if check:
            assert result.returncode == 0, (f"football lab {' '.join(args)} exited "
                                            f"{result.returncode}:\n{result.stderr[-3000:]}")
        return result

    def up(self, *extra):
        return self.football("--inventory", str(self.inventory), "up", *extra)

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
        marker = str(self.dir).encode()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes()
                environ = (proc / "environ").read_bytes()
                state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z" and (marker in cmdline or marker in environ):
                command = cmdline.replace(b"\0", b" ").decode(errors="replace")[:120]
                left.append(f"process {proc.name}: {command}")
        if self.dir.exists():
            left.append(f"dir {self.dir}")
        return left

    def cleanup(self):
        if self.dir.exists():
            self.football("down", check=False)


@contextmanager
def lab_up(base):
    """A lab brought up under `base` for the `with` block; brought down
    afterwards, failing when `lab down` left anything behind."""
    run = LabRun(base)
    try:
        run.up()
        yield run
    finally:
        run.cleanup()
    assert not run.leftovers(), f"lab down left: {run.leftovers()}"


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


def largest_gap(records):
    """The longest time between two consecutive records (uptime seconds)."""
    return max((b - a for (_, a), (_, b) in zip(records, records[1:])), default=0.0)


def football(env, *args, timeout=900):
    """The `football` command line (global options first), with `env`."""
    return subprocess.run([FOOTBALL, *args], env=env, capture_output=True, text=True,
                          timeout=timeout)

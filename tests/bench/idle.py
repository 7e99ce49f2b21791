"""Idle cost of marsd (root): what a primary and a secondary with idle
resources cost in CPU (issue: an idle primary used 15 % of a core).

Two hosts; N resources (default 10) created on A, devices up and not
mounted, replicated to B and up to date; then nothing is written for the
measured seconds (default 20). Prints, per host, the CPU seconds of its
marsd and its device processes over that time as a share of one core.
Aim: the primary <= 1 %.

Run: `make bench-idle` or `.venv/bin/python -m tests.bench.idle [--resources N] [--seconds S]`.
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

from tests.helpers.dataplane import MIB, DataNet

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """User + system CPU seconds of the process `pid` and its children that
    have ended, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / CLOCK_TICKS


def processes_of(host):
    """marsd and its device processes (their command lines name the host's root)."""
    pids = [host.process.pid]
    marker = str(host.root).encode()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != host.process.pid:
            try:
                if marker in (proc / "cmdline").read_bytes() and \
                        b"mars.device" in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def run(resources, seconds):
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as base:
        net = DataNet(Path(base) / "hosts", round_interval=1.0, disk_size=8 * MIB)
        try:
            a, b = net.add("a"), net.add("b")
            net.create_cluster(a, b)
            for host in (a, b):
                host.wait_serving()
            names = [f"vm{index}" for index in range(1, resources + 1)]
            for name in names:
                for host in (a, b):
                    disk = host.root / f"disk-{name}"
                    with open(disk, "wb") as handle:
                        handle.truncate(8 * MIB)
                a.marsadm("create-resource", name, a.root / f"disk-{name}")
                net.wait(a, name, "device")
                b.wait_knows(name)
                b.marsadm("join-resource", name, b.root / f"disk-{name}")
            for name in names:
                net.wait(b, name)
            time.sleep(5)                       # let start-up work settle
            pids = {host.name: processes_of(host) for host in (a, b)}
            before = {pid: cpu_seconds(pid) for found in pids.values() for pid in found}
            started = time.monotonic()
            time.sleep(seconds)
            elapsed = time.monotonic() - started
            used = {pid: cpu_seconds(pid) - before[pid] for pid in before}
            print(f"idle marsd, {resources} resources, round interval 1 s, over {elapsed:.1f} s:")
            for name, role in (("a", "primary (devices up, not mounted)"), ("b", "secondary")):
                marsd, *devices = pids[name]
                share = 100 * sum(used[pid] for pid in pids[name]) / elapsed
                print(f"  {name}, {role}: {share:.2f} % of one core (marsd "
                      f"{100 * used[marsd] / elapsed:.2f} %, {len(devices)} device processes "
                      f"{100 * sum(used[pid] for pid in devices) / elapsed:.2f} %)")
        finally:
            net.cleanup()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resources", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    run(args.resources, args.seconds)


if __name__ == "__main__":
    main()

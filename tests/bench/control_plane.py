"""Control-plane benchmark: 16 marsd on 127.x.y.z, 1000 resources.

Prints figures (not a test):
- time for a fresh cluster of 16 hosts to agree on 1000 resources;
- propagation: a change written on one host until it is visible on all 16
  (median and max over several changes, in seconds and in rounds);
- latency of `marsadm view-all-resources` and `marsadm view-my-resources all`
  (whole process: start, open store, answer);
- CPU used by the 16 daemons while idle.
Aims (issue 2): propagation within two rounds, views under 1 s.

Run: `make bench` or `.venv/bin/python -m tests.bench.control_plane [--hosts N --resources N]`.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mars.hostenv import HostEnv
from mars.keys import res_key
from mars.resources import Resources
from tests.helpers.marshosts import BIN, MarsNet, wait_until


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def time_command(host, args, runs):
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        result = subprocess.run([str(BIN / "marsadm"), *args], env=host.env,
                                capture_output=True, text=True, check=True)
        samples.append(time.perf_counter() - started)
    return samples, result.stdout


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=16)
    parser.add_argument("--resources", type=int, default=1000)
    parser.add_argument("--round-interval", type=float, default=1.0)
    parser.add_argument("--changes", type=int, default=10)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="mars-bench-") as tmp:
        net = MarsNet(Path(tmp), round_interval=args.round_interval)
        hosts = [net.add(f"h{i:02d}") for i in range(args.hosts)]
        try:
            run(net, hosts, args)
        finally:
            net.stop_all()


def run(net, hosts, args):
    print(f"control-plane benchmark: {len(hosts)} marsd on {net.subnet}.x, "
          f"{args.resources} resources, round interval {args.round_interval:g}s")
    started = time.perf_counter()
    net.create_cluster(hosts[0], *hosts[1:])
    wait_until(lambda: all(h.view("cluster-members").count("\n") == len(hosts) for h in hosts),
               timeout=60, what="cluster membership")
    print(f"  cluster of {len(hosts)} formed in {time.perf_counter() - started:.1f}s")

    # Resources: primary on host i, replica on host i+1, created through the
    # same code marsadm runs, in-process (1000 process starts would only
    # measure Python's start-up).
    stores = {h.name: h.store() for h in hosts}
    started = time.perf_counter()
    for number in range(args.resources):
        res = f"r{number:04d}"
        primary, secondary = hosts[number % len(hosts)], hosts[(number + 1) % len(hosts)]
        for host in (primary, secondary):
            disk = host.root / "disks" / res
            disk.parent.mkdir(exist_ok=True)
            with open(disk, "wb") as handle:
                handle.truncate(1 << 20)
        quiet = Resources(HostEnv(primary.name, primary.root), stores[primary.name], echo=lambda *_: None)
        quiet.create(res, str(primary.root / "disks" / res))
    created = time.perf_counter() - started
    wait_until(lambda: all(len(stores[h.name].state().all_resources()) == args.resources
                           for h in hosts), timeout=120, what="every resource on every host")
    started = time.perf_counter()
    for number in range(args.resources):
        res = f"r{number:04d}"
        secondary = hosts[(number + 1) % len(hosts)]
        Resources(HostEnv(secondary.name, secondary.root), stores[secondary.name],
                  echo=lambda *_: None).join(res, str(secondary.root / "disks" / res))
    joined = time.perf_counter() - started
    converge_started = time.perf_counter()
    def agree():
        trees = [stores[h.name].live_values("resource-") for h in hosts]
        state = stores[hosts[0].name].state()
        return all(tree == trees[0] for tree in trees) and all(
            len(state.members(f"r{n:04d}")) == 2 for n in range(args.resources))

    wait_until(agree, timeout=300, interval=0.5, what="every host with the same resources, 2 members each")
    print(f"  created {args.resources} resources in {created:.1f}s, joined replicas in {joined:.1f}s, "
          f"all {len(hosts)} hosts agree {time.perf_counter() - converge_started:.1f}s later")
    tuples = len(stores[hosts[0].name].tuples())
    print(f"  store size: {tuples} tuples per host")

    # Propagation of single changes.
    delays = []
    origin = hosts[0]
    for change in range(args.changes):
        res = f"r{change * 16:04d}"
        key = res_key(res, "systemd-want")
        value = hosts[(change + 3) % len(hosts)].name
        if stores[origin.name].value(key) == value:
            value = hosts[(change + 4) % len(hosts)].name
        time.sleep(args.round_interval * (0.37 * change % 1))   # vary the phase within a round
        stores[origin.name].write({key: value})
        delays.append(wait_until(lambda: all(stores[h.name].value(key) == value for h in hosts),
                                 timeout=30, interval=0.01, longest=0.01,
                                 what=f"change {change} everywhere"))
    print(f"  propagation to all {len(hosts)} hosts over {len(delays)} changes: "
          f"median {statistics.median(delays):.2f}s, max {max(delays):.2f}s "
          f"= {max(delays) / args.round_interval:.2f} rounds at most (aim: <= 2 rounds)")

    host = hosts[min(5, len(hosts) - 1)]
    for args_, label in ((["view-all-resources"], "view-all-resources"),
                         (["view-my-resources", "all"], "view-my-resources all"),
                         (["view-sync-size", "all"], "view-sync-size all")):
        samples, output = time_command(host, args_, 5)
        print(f"  marsadm {label}: median {statistics.median(samples) * 1000:.0f} ms, "
              f"max {max(samples) * 1000:.0f} ms ({output.count(chr(10))} lines) (aim: < 1 s)")
    samples, _ = time_command(host, ["--version"], 5)
    print(f"  (marsadm --version, Python start-up alone: median {statistics.median(samples) * 1000:.0f} ms)")

    before = {h.name: cpu_seconds(h.process.pid) for h in hosts}
    idle = 10.0
    time.sleep(idle)
    used = sum(cpu_seconds(h.process.pid) - before[h.name] for h in hosts)
    print(f"  idle CPU of {len(hosts)} marsd: {used / idle * 100:.0f}% of one core in total "
          f"({used / idle / len(hosts) * 100:.1f}% each)")
    for store in stores.values():
        store.close()


if __name__ == "__main__":
    sys.exit(main())

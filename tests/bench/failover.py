"""Failover benchmark (root): a host with N primaries dies, `football
failover` takes them over on its mate.

The lab's a1 gets N containers (vm1 of 320 MiB and N-1 more, each
replicated to a2, the lab workload writing every 0.5 s); then a1 dies as in
root test_failover (its containers stop, its marsd freezes, no command
reaches it) and `football failover a1` runs, once with one takeover at a
time (`limit_takeovers=1`) and once with the default, each on a lab of its
own. Prints per run: the guards' time (until the first takeover began:
a1 must not answer, nor its marsd to a2 — a frozen one is given 5 s),
the time from there until each container runs on a2 (first, median,
mean, last) and the run's wall time; then that every container's
workload went on on a2 without a missing or repeated record.

Run: `make bench-failover` or `.venv/bin/python -m tests.bench.failover [--resources N]
[--limits 1,4]`.
"""

import argparse
import json
import os
import signal
import statistics
import tempfile
import time

from football.config import TUNABLES
from tests.helpers.lab import LabRun, football, inventory_without, sequence_problems
from tests.helpers.marshosts import wait_until


def populated(lab, count):
    """vm2..vm<count> beside the demo's vm1 on a1, replicated to a2, in sync."""
    names = ["vm1"] + [f"vm{number}" for number in range(2, count + 1)]
    for res in names[1:]:
        lab.football("add", res, "a1", "a2", "--no-wait")
    wait_until(lambda: lab.exec("a2", "marsadm", "view-diskstate", "all").stdout.count(
        "UpToDate") == count, what=f"a2's {count} replicas to be in sync", timeout=300)
    return names


def a1_dies(lab, names):
    """Its containers stop and their mounts go; its marsd freezes. The pid
    of the frozen marsd, and how many records each container wrote."""
    lxcpath = str(lab.dir / "a1" / "var/lib/lxc")
    written = {}
    for res in names:
        lab.exec("a1", "football-host", "ct", lxcpath, "stop", res)
        written[res] = len(lab.records("a1", res))
        lab.exec("a1", "umount", f"{lxcpath}/{res}")
    marsd = lab.status()["a1"]["marsd_pid"]
    os.kill(marsd, signal.SIGSTOP)
    return marsd, written


def records_after(lab, res, more_than):
    """`res`'s workload records on a2 once there are more than `more_than`."""
    def records():
        try:
            return lab.records("a2", res)
        except (FileNotFoundError, ValueError):
            return []
    wait_until(lambda: len(records()) > more_than, what=f"{res}'s workload going on on a2")
    return records()


def one_run(base, count, limit):
    lab = LabRun(base, demo_size="320M", vg_size=f"{count * 384 + 512}M")
    lab.env["FOOTBALL_LAB_WORKLOAD_INTERVAL"] = "0.5"
    marsd = None
    try:
        lab.up()
        names = populated(lab, count)
        marsd, written = a1_dies(lab, names)
        inventory = inventory_without(lab, "a1", lab.base / "fleet.yml")
        started = time.time()
        result = football(lab.env, "--inventory", str(inventory), "--var",
                          f"state_dir={lab.dir / 'controller'}", "--var",
                          f"limit_takeovers={limit}", "--json", "--yes", "failover", "a1")
        wall = time.time() - started
        if result.returncode:
            raise SystemExit(f"failover (limit {limit}) failed: {result.stderr[-2000:]}")
        events = [json.loads(line) for line in result.stdout.splitlines()]
        messages = [event for event in events if event["event"] == "message"]
        # the guards (a1 does not answer, nor its marsd to a2: a frozen one
        # is given REACH_TIMEOUT) end where the first takeover begins
        begun = min(event["time"] for event in messages if " takes over from " in event["text"])
        runs = {event["text"].split()[0]: event["time"] - begun for event in messages
                if event["text"].endswith(" runs on a2")}
        if sorted(runs) != sorted(names):
            raise SystemExit(f"not all taken over: {sorted(runs)}")
        problems = {res: sequence_problems(records_after(lab, res, written[res] + 2))
                    for res in names}
        return {"limit": limit, "wall": wall, "guards": begun - started,
                "runs": sorted(runs.values()),
                "problems": {res: found for res, found in problems.items() if found}}
    finally:
        if marsd is not None:
            os.kill(marsd, signal.SIGCONT)
        lab.cleanup()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resources", type=int, default=9)
    parser.add_argument("--limits", default=f"1,{TUNABLES['limit_takeovers'].default}")
    args = parser.parse_args()
    rows = []
    for limit in [int(value) for value in args.limits.split(",")]:
        with tempfile.TemporaryDirectory(prefix="football-bench-") as base:
            rows.append(one_run(base, args.resources, limit))
    print(f"failover of a1 with {args.resources} primaries, taken over on a2: the guards "
          "(seconds until the first takeover began), then the seconds from there until each "
          "runs on a2, and the run's wall time")
    print(f"{'limit_takeovers':>15} {'guards':>6} {'first':>6} {'median':>6} {'mean':>6} "
          f"{'last':>6} {'wall':>6}  workload")
    for row in rows:
        runs = row["runs"]
        print(f"{row['limit']:>15} {row['guards']:>6.2f} {runs[0]:>6.2f} "
              f"{statistics.median(runs):>6.2f} {statistics.mean(runs):>6.2f} {runs[-1]:>6.2f} "
              f"{row['wall']:>6.2f}  "
              f"{'every record kept' if not row['problems'] else row['problems']}")


if __name__ == "__main__":
    main()

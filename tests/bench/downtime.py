"""Handover downtime benchmark (root): migrate the lab's vm1 (1 GiB volume,
workload running) between cluster1 and cluster2 five times.

Prints per migration and as median/max:
- downtime measured by Football (stop begins -> running on the target);
- the gap seen by the workload (longest pause between two of its records,
  each fdatasync'ed every 100 ms);
- sync time (join -> all targets UpToDate) and Football's own overhead:
  total time minus sync time minus downtime;
- the window's steps, from the commands run inside it (the summary's
  `downtime_commands`): stop (container stop, unmount), handover (`marsadm
  primary`), device up (`wait-resource ... is-device-on`), mount, container
  start, checks (the rest), and the time between commands (Football's own).
Aim (issue 14): median downtime <= 1.0 s, max <= 1.5 s.

Run: `make bench-downtime` or `.venv/bin/python -m tests.bench.downtime [--runs N] [--size 1G]`.
"""

import argparse
import json
import statistics
import tempfile
import time


from tests.helpers.lab import LabRun, football, largest_gap


# step of the downtime window -> whether a command (argv) belongs to it; first match
STEPS = (("stop", lambda argv: "stop" in argv or argv[0] == "umount"),
         ("handover", lambda argv: argv[0] == "marsadm" and "primary" in argv),
         ("device up", lambda argv: argv[0] == "marsadm" and "wait-resource" in argv),
         ("mount", lambda argv: argv[0] in ("mount", "mkdir")),
         ("container start", lambda argv: "start" in argv),
         ("checks", lambda argv: True))
COLUMNS = [*dict(STEPS), "between commands"]


def window_steps(commands, downtime):
    """Seconds per step of the window, and `between commands`: the downtime
    when no command ran (commands in parallel count once)."""
    steps = dict.fromkeys(COLUMNS, 0.0)
    for command in commands:
        name = next(name for name, belongs in STEPS if belongs(command["argv"]))
        steps[name] += command["seconds"]
    busy, reach = 0.0, 0.0
    for command in sorted(commands, key=lambda command: command["at"]):
        start, end = command["at"], command["at"] + command["seconds"]
        busy += max(0.0, end - max(start, reach))
        reach = max(reach, end)
    steps["between commands"] = max(0.0, downtime - busy)
    return steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size", default="1G")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="football-bench-") as base:
        lab = LabRun(base, demo_size=args.size, vg_size="4G")
        try:
            lab.up()
            rows = []
            target = "cluster2"
            for number in range(1, args.runs + 1):
                home = {"cluster1": "a1", "cluster2": "b1"}[target]
                time.sleep(1.0)
                started = time.monotonic()
                result = football(lab.env, "--json", "migrate", "vm1", target)
                total = time.monotonic() - started
                if result.returncode:
                    raise SystemExit(f"migration {number} failed: {result.stderr[-2000:]}")
                summary = [json.loads(line) for line in result.stdout.splitlines()
                           if '"summary"' in line][0]
                time.sleep(1.0)
                records = lab.records(home)
                gap = largest_gap(records[-200:])
                row = {"run": number, "to": target, "downtime": summary["downtime_seconds"],
                       "gap": gap, "sync": summary["sync_seconds"], "total": total,
                       "overhead": total - summary["sync_seconds"] - summary["downtime_seconds"],
                       **window_steps(summary["downtime_commands"], summary["downtime_seconds"])}
                rows.append(row)
                print(f"migration {number} -> {target}: downtime {row['downtime']:.2f} s, "
                      f"workload gap {gap:.2f} s, sync {row['sync']:.1f} s, total "
                      f"{total:.1f} s, overhead {row['overhead']:.1f} s", flush=True)
                print("  window: " + ", ".join(f"{name} {row[name]:.2f} s" for name in COLUMNS),
                      flush=True)
                target = "cluster1" if target == "cluster2" else "cluster2"
            for key, label in (("downtime", "downtime (Football)"), ("gap", "workload gap"),
                               ("overhead", "Football overhead"), ("sync", "sync"),
                               *((name, f"  window: {name}") for name in COLUMNS)):
                values = [row[key] for row in rows]
                print(f"{label:22s} median {statistics.median(values):6.2f} s   "
                      f"max {max(values):6.2f} s")
        finally:
            lab.cleanup()


if __name__ == "__main__":
    main()

"""Shrink benchmark (root): shrink the lab's vm1 (1 GiB volume, workload
running) after filling it with 20,000 files (300 MiB), then expand it back.

Prints:
- the shrink's downtime measured by Football (stop begins -> running again
  on the shrunk volume), the final rsync pass inside it (seconds and its
  share of the downtime), the shrink's total wall time and the seconds of
  each phase (prepare: -tmp LVs, mkfs, first copy; finish: warm copy and the
  downtime window, re-join; wait: the secondary's full sync; cleanup), the
  sizes before and after;
- the gap seen by the workload (longest pause between two of its records,
  each fdatasync'ed every 100 ms) and whether its sequence is unbroken;
- the expand back to 1 GiB: total time, sync time, grown bytes and the
  workload's gap during it (no downtime: ~0.1 s).
Aim: shrink downtime <= 5 s here (20,000 files, 300 MiB, 2 cores).

Run: `make bench-shrink` or
`.venv/bin/python -m tests.bench.shrink [--size 1G] [--files 20000] [--data 300M]`.
"""

import argparse
import itertools
import json
import os
import random
import tempfile
import time


from football.ops.shrink import PHASES
from mars.names import parse_size
from tests.helpers.lab import (LabRun, football, largest_gap, sequence_problems,
                               wait_for_records)

MIB = 1 << 20
DIRS = 100
LARGE = 100                 # larger files; the rest are small ones of 1..8 KiB
SMALL_MAX = 8 << 10


def fill(root, files, data):
    """`files` files of `data` bytes in total under `root`, spread over
    DIRS subdirectories: small ones of 1..8 KiB, and LARGE larger ones
    holding the rest. Synced. Returns (files, bytes) written."""
    rng = random.Random(1)
    large = min(LARGE, files)
    small_sizes = [rng.randint(1 << 10, SMALL_MAX) for _ in range(files - large)]
    rest = data - sum(small_sizes)
    if rest < large:
        raise SystemExit(f"{files} files do not fit into {data} bytes: lower --files or "
                         "raise --data")
    large_sizes = [rest // large + (1 if index < rest % large else 0) for index in range(large)]
    block = os.urandom(4 * MIB)     # random, so that nothing compresses or dedups it
    written = 0
    for index, size in enumerate(small_sizes + large_sizes):
        directory = root / f"d{index % DIRS:03d}"
        if index < DIRS:
            directory.mkdir(parents=True, exist_ok=True)
        with open(directory / f"f{index:05d}", "wb") as handle:
            left, offset = size, (index * 4099) % (len(block) - SMALL_MAX)
            while left:
                chunk = block[offset:offset + min(left, len(block) - offset)]
                handle.write(chunk)
                left -= len(chunk)
                offset = 0
        written += size
    os.sync()
    return len(small_sizes) + len(large_sizes), written


def events_of(result, what):
    """The JSON events of a `football --json` run; exits when it failed."""
    if result.returncode:
        raise SystemExit(f"{what} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def summary_of(events):
    return next(event for event in events if event["event"] == "summary")


def window_steps(events, final_copy):
    """[(seconds, message)] of the downtime window: each message from the
    stop to "runs on its shrunk volume" with the time until the next one
    (Football's event timestamps). The final copy's last step (the copy,
    or after it the pass over the copy's hard-linked names) is split: the
    rest of `final_copy`, then the unmounts and the MARS device going down,
    which say nothing of their own."""
    messages = [event for event in events if event["event"] == "message"]
    first = next(index for index, event in enumerate(messages)
                 if "stopping" in event["text"])
    last = next(index for index, event in enumerate(messages)
                if "runs on its shrunk volume" in event["text"])
    window = messages[first:last + 1]
    steps, copied = [], 0.0
    for before, after in itertools.pairwise(window):
        seconds, text = after["time"] - before["time"], before["text"].strip()
        if "final copy" in text and RELINKED in after["text"]:
            steps.append((seconds, text))
            copied = seconds
        elif "final copy" in text or RELINKED in text:
            rest = final_copy - copied
            steps += [(rest, text), (seconds - rest, "(unmount both, MARS device down)")]
        else:
            steps.append((seconds, text))
    return steps


RELINKED = "hard-linked names again"    # the pass after the final copy, where there is one


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1G", help="vm1's volume (default 1G)")
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--data", default="300M", help="bytes in all files (default 300M)")
    args = parser.parse_args()
    data = parse_size(args.data)
    with tempfile.TemporaryDirectory(prefix="football-bench-") as base:
        lab = LabRun(base, demo_size=args.size, vg_size="4G")
        try:
            lab.up()
            wait_for_records(lab, "a1", 3)
            started = time.monotonic()
            count, written = fill(lab.dir / "a1/var/lib/lxc/vm1/rootfs/benchdata",
                                  args.files, data)
            print(f"filled vm1 with {count} files, {written / MIB:.0f} MiB in "
                  f"{time.monotonic() - started:.1f} s", flush=True)
            time.sleep(1.0)

            started = time.monotonic()
            shrink_events = events_of(football(lab.env, "--json", "--yes", "shrink", "vm1"),
                                      "football --json --yes shrink vm1")
            shrink = summary_of(shrink_events)
            shrink_total = time.monotonic() - started
            time.sleep(1.0)
            records = lab.records("a1")
            shrink_gap = largest_gap(records[-300:])
            problems = sequence_problems(records)
            before_expand = len(records)

            started = time.monotonic()
            expand = summary_of(events_of(football(lab.env, "--json", "--yes", "expand",
                                                   "vm1", "1g"),
                                          "football --json --yes expand vm1 1g"))
            expand_total = time.monotonic() - started
            time.sleep(1.0)
            records = lab.records("a1")
            expand_gap = largest_gap(records[before_expand - 1:])
            problems += [problem for problem in sequence_problems(records)
                         if problem not in problems]

            downtime, final = shrink["downtime_seconds"], shrink["final_copy_seconds"]
            phases = ", ".join(f"{name} {shrink['phases'][name]:.1f} s"
                               for name in PHASES if name in shrink["phases"])
            steps = "\n".join(f"    {seconds:6.2f} s  {text[:90]}"
                              for seconds, text in window_steps(shrink_events, final))
            print(f"""
data:    {count} files, {written / MIB:.0f} MiB in vm1 ({args.size} volume)
shrink:  {shrink['old_size'] / MIB:.0f} MiB -> {shrink['new_size'] / MIB:.0f} MiB, \
{shrink['copy_passes']} copy passes
  downtime (stop -> running)   {downtime:6.2f} s   (aim <= 5 s)
  final rsync                  {final:6.2f} s   ({100 * final / downtime:.0f} % of the downtime)
  rest of the window           {downtime - final:6.2f} s
  the window, step by step (seconds until the next step):
{steps}
  total                        {shrink_total:6.1f} s   ({phases})
  sync (secondary rejoin)      {shrink['sync_seconds']:6.1f} s
  workload gap                 {shrink_gap:6.2f} s
expand:  -> 1 GiB, grown {expand['grown_bytes'] / MIB:.0f} MiB
  total                        {expand_total:6.1f} s
  sync                         {expand['sync_seconds']:6.1f} s
  workload gap                 {expand_gap:6.2f} s
workload records: {len(records)}, sequence {'; '.join(problems) or 'unbroken'}""",
                  flush=True)
        finally:
            lab.cleanup()
            left = lab.leftovers()
            if left:
                print(f"lab down left: {left}")


if __name__ == "__main__":
    main()

"""CPU per MiB of the data path (root): the steadiest figure on a VM whose
throughput drifts by 20-30 % within an hour (issue 14).

Prints, for direct writes on /dev/mars (fio; sequential 1 MiB at iodepth 4
where not said otherwise):
0. the disk under the state dir, written by fio directly: one stream, and
   two at once (a primary writes two: its log and its disk);
1. the primary alone: MiB/s, and the CPU time per MiB written of the
   device process's main thread (the FUSE loop) and of the whole process;
   and the bytes the disk took per byte fio wrote;
2. a primary a with a replicating secondary b on the same CPUs: a's MiB/s,
   how long b takes to catch up after the writer stopped and its rate over
   the whole run, and the CPU time per MiB of a's device, a's marsd (the
   fetch server) and b's marsd (fetch, log append, replay), and the
   disk's bytes written and read per byte fio wrote (a and b share it
   here), and how much of it a's marsd read back to serve b's fetch;
3. b catching up on a burst it did not fetch while it was written (fetch
   paused, the page cache dropped, fetch resumed): b's rate until it is up
   to date, and b's marsd's CPU per MiB. On one machine a and b share the
   disk and the CPUs in 2; this one isolates the secondary's own pace;
4. random 4 KiB direct writes (iodepth 16) with b replicating, and with b's
   fetch paused (the primary alone): IOPS, and the CPU time per write of
   a's device (its main thread, the FUSE loop, apart), b's marsd, and the
   whole machine (busy time, /proc/stat), with the machine's idle share.
   On 2 CPUs the random figure with b is bound by CPU: what the machine
   spends per write sets the IOPS (issue 14's last figure).

CPU times come from /proc/<pid>/task/*/stat around each run. Compare trees
by alternating runs of this benchmark, not by one run each.

Run: `make bench-data-cpu` or `.venv/bin/python -m tests.bench.data_cpu [--runs N] [--seconds S]`.
"""

import argparse
import contextlib
import glob
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from tests.bench.data_plane import fio
from tests.helpers.dataplane import MIB, DataNet

TICK = os.sysconf("SC_CLK_TCK")


def task_seconds(pid):
    """{tid: CPU seconds} of every thread of `pid`."""
    seconds = {}
    for task in glob.glob(f"/proc/{pid}/task/*"):
        try:
            fields = Path(task, "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        seconds[int(task.rsplit("/", 1)[1])] = (int(fields[11]) + int(fields[12])) / TICK
    return seconds


def process_seconds(pid):
    return sum(task_seconds(pid).values())


def block_device(path):
    """The name of the block device (as /proc/diskstats has it) that holds `path`."""
    number = os.stat(path).st_dev
    return Path(f"/sys/dev/block/{os.major(number)}:{os.minor(number)}").resolve().name


def bytes_written(device):
    """Bytes written to `device` since boot (/proc/diskstats: sectors of 512 bytes)."""
    return _disk_sectors(device, 9) * 512


def bytes_read(device):
    """Bytes read from `device` since boot."""
    return _disk_sectors(device, 5) * 512


def _disk_sectors(device, field):
    for line in Path("/proc/diskstats").read_text().splitlines():
        fields = line.split()
        if fields[2] == device:
            return int(fields[field])
    raise SystemExit(f"{device} is not in /proc/diskstats")


def process_read_bytes(pid):
    """Bytes `pid` had read from a disk (/proc/<pid>/io; the page cache's hits not)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("read_bytes:"):
            return int(line.split()[1])
    return 0


def the_disk(base, args):
    """What the disk takes from fio directly, one stream and two at once."""
    target = base / "disk"
    target.mkdir()
    rates = []
    for streams in (1, 2):
        result = subprocess.run(
            ["fio", "--name=disk", f"--directory={target}", "--rw=write", "--bs=1m",
             "--size=1g", "--direct=1", "--ioengine=libaio", "--iodepth=4",
             f"--numjobs={streams}", "--group_reporting", f"--runtime={args.seconds}",
             "--time_based", "--output-format=json"],
            capture_output=True, text=True, check=True)
        rates.append(json.loads(result.stdout)["jobs"][0]["write"]["bw_bytes"] / MIB)
        for leftover in target.iterdir():
            leftover.unlink()
    print(f"0. the disk ({block_device(base)}), fio direct: one stream {rates[0]:.0f} MiB/s, "
          f"two at once {rates[1]:.0f} MiB/s in all", flush=True)


def device_pid(base):
    found = subprocess.run(["pgrep", "-f", f"mars.device.*{base}"], capture_output=True,
                           text=True).stdout.split()
    if not found:
        raise SystemExit(f"no device process under {base}")
    return int(found[0])


def alone(base, args):
    net = DataNet(base / "alone", round_interval=1.0, disk_size=1024 * MIB)
    try:
        a, = net.primary_with_device("a")
        device, pid = str(net.device(a, "vm1")), device_pid(base / "alone")
        disk = block_device(base)
        for _ in range(args.runs):
            os.sync()
            before, main_before = process_seconds(pid), task_seconds(pid).get(pid, 0)
            written = bytes_written(disk)
            rate, _ = fio(device, "seq", "write", "1m", "512m", 4, runtime=args.seconds)
            mib = rate * args.seconds / MIB
            main = task_seconds(pid).get(pid, 0) - main_before
            print(f"1. alone: {rate / MIB:.0f} MiB/s; CPU per MiB: device main thread "
                  f"{1000 * main / mib:.2f} ms, device process "
                  f"{1000 * (process_seconds(pid) - before) / mib:.2f} ms; the disk took "
                  f"{(bytes_written(disk) - written) / MIB / mib:.2f} bytes per byte", flush=True)
    finally:
        net.cleanup()


@contextlib.contextmanager
def replicated_pair(base, name):
    """A primary a with b replicating (1 GiB, rounds of 1 s) under
    `base/name`: (net, a, b, a's device)."""
    net = DataNet(base / name, round_interval=1.0, disk_size=1024 * MIB)
    try:
        a, b = net.primary_with_replicas("a", "b")
        yield net, a, b, str(net.device(a, "vm1"))
    finally:
        net.cleanup()


def with_secondary(base, args):
    with replicated_pair(base, "pair") as (net, a, b, device):
        processes = {"a's device": device_pid(base / "pair"), "a's marsd": a.process.pid,
                     "b's marsd": b.process.pid}
        disk = block_device(base)
        for _ in range(args.runs):
            net.wait(b, "vm1")
            os.sync()
            before = {name: process_seconds(pid) for name, pid in processes.items()}
            written, read = bytes_written(disk), bytes_read(disk)
            fetch_read = process_read_bytes(a.process.pid)
            started = time.perf_counter()
            rate, _ = fio(device, "seq", "write", "1m", "512m", 4, runtime=args.seconds)
            stopped = time.perf_counter()
            during, read = bytes_written(disk) - written, bytes_read(disk) - read
            fetch_read = process_read_bytes(a.process.pid) - fetch_read
            net.wait(b, "vm1")
            caught_up = time.perf_counter()
            mib = rate * (stopped - started) / MIB
            costs = ", ".join(f"{name} {1000 * (process_seconds(pid) - before[name]) / mib:.2f} ms"
                              for name, pid in processes.items())
            print(f"2. with b: a {rate / MIB:.0f} MiB/s; b caught up {caught_up - stopped:.1f} s "
                  f"later ({mib / (caught_up - started):.0f} MiB/s over the run); "
                  f"CPU per MiB: {costs}; the disk took {during / MIB / mib:.2f} bytes per "
                  f"byte during fio and gave {read / MIB / mib:.2f} (a's marsd, the fetch "
                  f"server, read {fetch_read / MIB / mib:.2f})", flush=True)


def catching_up(base, args):
    with replicated_pair(base, "burst") as (net, a, b, device):
        for _ in range(args.runs):
            net.wait(b, "vm1")
            b.marsadm("pause-fetch", "vm1")
            rate, _ = fio(device, "seq", "write", "1m", "1024m", 4, runtime=args.seconds)
            mib = rate * args.seconds / MIB
            # a's log went around the page cache; b's side starts cold too
            os.sync()
            Path("/proc/sys/vm/drop_caches").write_text("3\n")
            before = process_seconds(b.process.pid)
            started = time.perf_counter()
            b.marsadm("resume-fetch", "vm1")
            net.wait(b, "vm1")
            seconds = time.perf_counter() - started
            print(f"3. b catches up on {mib:.0f} MiB (a wrote {rate / MIB:.0f} MiB/s): "
                  f"{seconds:.2f} s, {mib / seconds:.0f} MiB/s; b's marsd "
                  f"{1000 * (process_seconds(b.process.pid) - before) / mib:.2f} ms CPU per MiB",
                  flush=True)


def machine_busy_seconds():
    """CPU seconds the machine spent not idle (nor waiting for I/O), and idle, since boot."""
    user, nice, system, idle, iowait, irq, softirq, steal = \
        (int(field) / TICK for field in Path("/proc/stat").read_text().split()[1:9])
    return user + nice + system + irq + softirq + steal, idle + iowait


def random_writes(base, args):
    with replicated_pair(base, "random") as (net, a, b, device):
        pid = device_pid(base / "random")
        for _ in range(args.runs):
            for mode in ("with b", "alone"):
                net.wait(b, "vm1")
                os.sync()
                if mode == "alone":
                    b.marsadm("pause-fetch", "vm1")
                device_before, main_before = process_seconds(pid), task_seconds(pid).get(pid, 0)
                b_before = process_seconds(b.process.pid)
                busy_before, idle_before = machine_busy_seconds()
                try:
                    _, iops = fio(device, "rand", "randwrite", "4k", "1024m", 16,
                                  runtime=args.seconds)
                    busy, idle = (after - before for after, before in
                                  zip(machine_busy_seconds(), (busy_before, idle_before)))
                    per_write = {"a's device": process_seconds(pid) - device_before,
                                 "its main thread": task_seconds(pid).get(pid, 0) - main_before,
                                 "b's marsd": process_seconds(b.process.pid) - b_before,
                                 "the machine": busy}
                finally:
                    if mode == "alone":
                        b.marsadm("resume-fetch", "vm1")
                writes = iops * args.seconds
                costs = ", ".join(f"{name} {1e6 * seconds / writes:.0f} us"
                                  for name, seconds in per_write.items())
                print(f"4. random 4 KiB, {mode}: {iops:.0f} IOPS; CPU per write: {costs}; "
                      f"the machine idle {100 * idle / (idle + busy):.0f} %", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="mars-bench-cpu-"))
    try:
        the_disk(base, args)
        alone(base, args)
        with_secondary(base, args)
        catching_up(base, args)
        random_writes(base, args)
    finally:
        subprocess.run(["rm", "-rf", str(base)])


if __name__ == "__main__":
    main()

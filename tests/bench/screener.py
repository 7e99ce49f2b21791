"""Jobs per second through the screener's engine (DBOS on SQLite), no root:
50 jobs queued by one `screener run`, executed by a worker in this process
whose jobs do nothing (the engine alone), then whose jobs are a child
process of `true` (the engine and a process per job; a real job adds
football's start-up, about 1 s of imports, and its operation).

With `--lab` (root; `make bench-screener`): also real migrations in a lab
(8 containers of 320 MiB, vm1..vm8, half on a1 and half on a2): all moved
to cluster2 by 8 `football migrate` one after the other, then all moved
back by one `screener run` with `--max 4` on the lab's worker; the total
wall time of each and their ratio.

    python -m tests.bench.screener [JOBS] [--lab [--containers 8] [--max 4]]"""

import argparse
import json
import tempfile
import time
from pathlib import Path

from football.config import Config
from football.screener import FINISHED, ChildProcess, JobStore, Worker
from tests.helpers.jobs import football


class NoOp:
    def run(self, number, args, on_event, on_start):
        return 0


def measure(executor, count, poll):
    with tempfile.TemporaryDirectory() as directory:
        state_dir = Path(directory) / "controller"
        moves = Path(directory) / "moves.csv"
        moves.write_text("resource;operation;host\n" + "".join(
            f"vm{number};handover;a1\n" for number in range(count)))
        variables = [f"state_dir={state_dir}", f"jobs_poll_interval={poll}"]
        worker = Worker(Config(variables=variables), "bench", executor)
        worker.start()
        try:
            started = time.monotonic()
            code, _, err = football(*[item for variable in variables
                                      for item in ("--var", variable)],
                                    "screener", "run", moves)
            assert code == 0, err
            queued = time.monotonic() - started
            store = JobStore(Config(variables=variables))
            while not all(job["state"] in FINISHED for job in store.jobs()):
                time.sleep(0.01)
            seconds = time.monotonic() - started
            assert {job["state"] for job in store.jobs()} == {"done"}
            store.close()
        finally:
            worker.stop(timeout=10)
    return queued, seconds


def lab_migrations(containers, max_running):
    """(seconds of the sequential migrations, seconds of the screener run)."""
    from tests.helpers.jobs import jobs
    from tests.helpers.lab import LabRun, football

    with tempfile.TemporaryDirectory(prefix="football-bench-") as base:
        lab = LabRun(base, vg_size=f"{(containers * 330 >> 10) + 1}G")
        lab.env["FOOTBALL_JOBS_POLL_INTERVAL"] = "0.2"
        try:
            lab.up(worker=True)
            names = [f"vm{number}" for number in range(1, containers + 1)]
            for number, res in enumerate(names[1:], start=2):
                primary, secondary = ("a1", "a2") if number % 2 else ("a2", "a1")
                lab.football("add", res, primary, secondary)
            started = time.monotonic()
            for res in names:
                result = football(lab.env, "--json", "migrate", res, "cluster2")
                if result.returncode:
                    raise SystemExit(f"migrate {res} failed: {result.stderr[-2000:]}")
            sequential = time.monotonic() - started
            moves = Path(base) / "back.csv"
            moves.write_text("resource;operation;target\n" + "".join(
                f"{res};migrate;cluster1\n" for res in names))
            state_dir = lab.dir / "controller"
            started = time.monotonic()
            result = football(lab.env, "--json", "screener", "run", str(moves), "--max",
                              str(max_running))
            if result.returncode:
                raise SystemExit(f"screener run failed: {result.stderr[-2000:]}")
            while True:
                now = jobs(state_dir)
                if all(job["state"] in FINISHED for job in now.values()):
                    break
                time.sleep(0.5)
            screened = time.monotonic() - started
            failed = {res: job["state"] for res, job in now.items() if job["state"] != "done"}
            if failed:
                raise SystemExit(f"screener jobs not done: {json.dumps(failed)}")
        finally:
            lab.cleanup()
    return sequential, screened


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("jobs", type=int, nargs="?", default=50)
    parser.add_argument("--lab", action="store_true", help="also the real lab migrations (root)")
    parser.add_argument("--containers", type=int, default=8)
    parser.add_argument("--max", type=int, default=4)
    args = parser.parse_args()
    count = args.jobs
    for name, executor in (("no-op jobs", NoOp()), ("`true` as the job's process",
                                                    ChildProcess(["true"]))):
        for poll in (1.0, 0.1):
            queued, seconds = measure(executor, count, poll)
            print(f"{name}, jobs_poll_interval {poll:g} s: {count} jobs queued in {queued:.2f} s, "
                  f"all done after {seconds:.2f} s: {count / seconds:.1f} jobs/s, "
                  f"{seconds / count * 1000:.0f} ms per job")
    if args.lab:
        sequential, screened = lab_migrations(args.containers, args.max)
        print(f"lab: {args.containers} migrations one after the other: {sequential:.1f} s; "
              f"by the screener with --max {args.max}: {screened:.1f} s "
              f"(ratio {sequential / screened:.2f})")


if __name__ == "__main__":
    main()

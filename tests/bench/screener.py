"""Jobs per second through the screener's engine (DBOS on SQLite), no root:
50 jobs queued by one `screener run`, executed by a worker in this process
whose jobs do nothing (the engine alone), then whose jobs are a child
process of `true` (the engine and a process per job; a real job adds
football's start-up, about 1 s of imports, and its operation).

    python -m tests.bench.screener [JOBS]"""

import sys
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


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    for name, executor in (("no-op jobs", NoOp()), ("`true` as the job's process",
                                                    ChildProcess(["true"]))):
        for poll in (1.0, 0.1):
            queued, seconds = measure(executor, count, poll)
            print(f"{name}, jobs_poll_interval {poll:g} s: {count} jobs queued in {queued:.2f} s, "
                  f"all done after {seconds:.2f} s: {count / seconds:.1f} jobs/s, "
                  f"{seconds / count * 1000:.0f} ms per job")


if __name__ == "__main__":
    main()

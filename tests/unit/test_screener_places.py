"""A worker's places (`worker_jobs`) gate what it takes from the queues,
between `football worker` processes sharing one jobs' database (SQLite):
a worker takes no job it has no place for, so a job of another run goes
to a worker that has one. The jobs run the stand-in for football
(tests/helpers/standin.py): a `hold…` job runs until it is killed."""

import threading
import time

import pytest

from tests.helpers.jobs import WorkerProcesses, football, jobs, wait_for
from tests.helpers.standin import overlaps, runs, stand_in_command

POLL = "jobs_poll_interval=0.1"
SETTINGS = [POLL, "worker_heartbeat=0.2", "worker_dead_after=3", "worker_jobs=1"]


@pytest.fixture
def state_dir(tmp_path):
    (tmp_path / "controller").mkdir()
    return tmp_path / "controller"


@pytest.fixture
def workers(state_dir, tmp_path, request):
    processes = WorkerProcesses(str(state_dir), [*SETTINGS, stand_in_command(tmp_path)])
    request.addfinalizer(processes.kill_all)
    return processes


def screener(state_dir, *args):
    options = [item for setting in SETTINGS for item in ("--var", setting)]
    code, out, err = football("--var", f"state_dir={state_dir}", *options, "screener", *args)
    assert code == 0, err
    return out


def running_on(state_dir, worker_id):
    """The resources of the jobs running on `worker_id`."""
    return sorted(res for res, job in jobs(state_dir).items()
                  if job["state"] == "running" and job["worker"] == worker_id)


# each of DBOS's ways to take jobs from a queue: none of its limits, one
# partition at a time (`partition_concurrency` 1), partitions under a
# limit of the queue (`global_concurrency`)
@pytest.mark.parametrize("limits", [[], ["--max-per", "host=1"],
                                    ["--max", "2", "--max-per", "host=1"]])
def test_a_worker_without_a_free_place_leaves_a_job_of_another_run_to_an_idle_worker(
        state_dir, workers, tmp_path, limits):
    """Each run has a queue of its own, and DBOS's `worker_concurrency` holds
    per queue: a worker with one place took a job of every run, ran one and
    kept the other waiting "for a place on worker w1" while w2 idled. The
    places gate the dequeue: the second job stays queued until w2 takes it."""
    workers.start("w1")
    for number, res in enumerate(["hold1", "hold2"], 1):
        run = tmp_path / f"run{number}.csv"
        run.write_text(f"resource;operation;host\n{res};handover;a2\n")
        screener(state_dir, "run", run, *limits)
        if number == 1:
            wait_for(lambda: running_on(state_dir, "w1") == ["hold1"], "hold1 to run on w1")
    # DBOS lists the queues every second; w1 polls each every 0.1 s: by now
    # it has looked at the second run's queue several times
    time.sleep(3)
    assert running_on(state_dir, "w1") == ["hold1"]
    workers.start("w2")
    try:
        wait_for(lambda: running_on(state_dir, "w2") == ["hold2"], "hold2 to run on w2",
                 timeout=20)
    finally:
        now = jobs(state_dir)
        for res in ("hold1", "hold2"):
            screener(state_dir, "kill", res)
        ended = wait_for(lambda: (lambda now: now if all(
            job["state"] not in ("queued", "running") for job in now.values()) else None)(
            jobs(state_dir)), "both jobs to end", timeout=60)
    assert {res: (job["worker"], job["message"]) for res, job in now.items()} == {
        "hold1": ("w1", None), "hold2": ("w2", None)}, now
    assert {res: job["state"] for res, job in ended.items()} == {
        "hold1": "interrupted", "hold2": "interrupted"}
    assert (runs(state_dir, "hold1"), runs(state_dir, "hold2")) == (1, 1)
    assert not overlaps(state_dir), overlaps(state_dir)


# ------------------------------------------------------------ Places alone

def test_a_dequeue_takes_at_most_the_free_places_and_keeps_one_for_each_job_it_took():
    from football.screener import Places

    places, offered, stopping = Places(3), [], threading.Event()
    assert places.dequeue(lambda free: offered.append(free) or ["wf1", "wf2"]) == \
        ["wf1", "wf2"]
    assert places.dequeue(lambda free: offered.append(free) or []) == []
    waited = []
    assert places.take(1, "wf1", stopping, lambda: waited.append(1))       # kept for it
    assert places.take(2, "wf2", stopping, lambda: waited.append(2))
    assert places.dequeue(lambda free: offered.append(free) or ["wf3"]) == ["wf3"]
    # full (two taken, one kept): no dequeue at all
    assert places.dequeue(lambda free: offered.append(free) or ["never"]) == []
    assert offered == [3, 1, 1] and not waited
    places.forget("wf3")        # its job ended before it ran
    assert places.dequeue(lambda free: offered.append(free) or []) == []
    assert offered[-1] == 1


def test_a_job_with_no_place_kept_waits_for_one_before_the_queues_get_it(monkeypatch):
    """A job that came without a kept place (its place was given up after
    PLACE_KEPT_FOR) takes the next free place before any dequeue."""
    from football import screener
    from football.screener import Places

    monkeypatch.setattr(screener, "PLACE_KEPT_FOR", 0.2)
    places, stopping = Places(1), threading.Event()
    assert places.dequeue(lambda free: ["late"]) == ["late"]
    assert places.dequeue(lambda free: ["never"]) == []
    time.sleep(0.3)                         # its job did not come: the place is free
    assert places.take(7, "wf7", stopping, lambda: None)
    waited, took = [], []
    waiter = threading.Thread(target=lambda: took.append(
        places.take(8, "wf8", stopping, lambda: waited.append(8))))
    waiter.start()
    wait_for(lambda: waited, "job 8 to wait")
    places.give_back()                      # job 7 ends: its place is job 8's
    assert places.dequeue(lambda free: ["never"]) == []
    waiter.join(timeout=5)
    assert took == [True]
    stopping.set()          # the late job, with no place kept any more, waits: not taken
    assert places.take(9, "late", stopping, lambda: None) is False


def test_the_dequeue_is_gated_only_on_the_dbos_it_was_written_for():
    """The gate wraps two internal queries of dbos 3.4: this dbos's are
    wrapped; one whose queries take other parameters is left as it is,
    said once (its jobs wait for a place as before), not broken."""
    from types import SimpleNamespace

    from dbos._sys_db import SystemDatabase

    from football.screener import Places, Worker

    said = []
    worker = SimpleNamespace(id="w1", places=Places(1), say=said.append)

    class ThisDbos:
        start_queued_workflows = SystemDatabase.start_queued_workflows
        start_queued_partitioned_workflows = SystemDatabase.start_queued_partitioned_workflows

    class OtherDbos:
        def start_queued_workflows(self, queue, executor, version, running):
            return [], None

        start_queued_partitioned_workflows = SystemDatabase.start_queued_partitioned_workflows

    this, other = ThisDbos(), OtherDbos()
    assert Worker._dequeue_in_places(worker, this) is True and said == []
    assert this.start_queued_workflows.__name__ == "start_queued_workflows" and \
        "start_queued_workflows" in vars(this)
    original = other.start_queued_workflows
    assert Worker._dequeue_in_places(worker, other) is False
    assert other.start_queued_workflows == original and not vars(other)
    assert said == ["worker w1: warning: this dbos dequeues otherwise than dbos 3.4: a worker "
                    "may take jobs beyond its worker_jobs places, which then wait for one "
                    "(pin dbos 3.4 to avoid it)"]

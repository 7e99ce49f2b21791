"""The screener in the lab, through a real `football worker` whose jobs are
real `football` processes, one lab for the file:

- the operator gate: a gated handover waits (`waiting`) with its container
  running at its source; `screener kill` ends it `interrupted` with the
  container untouched there;
- one `screener run` moves four containers with `--max 2 --max-per
  target=1`: all end `done`, their recorded events prove the limits held
  (never more than two jobs running, never two syncs to one target host),
  and every container's records and files arrived whole."""

import json
import os

import pytest

from tests.helpers.dataplane import tree_checksums, write_files
from tests.helpers.jobs import WorkerProcesses, events_of, jobs, wait_for
from tests.helpers.lab import (FEWER_RECORDS, football, module_lab, roles_and_running,
                               sequence_problems)

pytestmark = [pytest.mark.root, pytest.mark.integration]

POLL = "jobs_poll_interval=0.2"
FINISHED = {"done", "failed", "serious", "critical", "illegal", "interrupted", "timeouted"}
# four containers of 320 MiB on cluster1 (vm1 with its replica on a2, the
# others alone), moved to cluster2 two at a time, one per target host
HOMES = {"vm1": "a1", "vm2": "a2", "vm3": "a1", "vm4": "a2"}
TARGETS = {"vm1": "b1", "vm2": "b2", "vm3": "b1", "vm4": "b2"}

lab = module_lab("screener", vg_size="2G", env=FEWER_RECORDS)


@pytest.fixture
def worker(lab, tmp_path):
    """A `football worker` of the lab on a jobs' database of the test's own;
    (its WorkerProcesses, the `screener` command line on that database)."""
    state_dir = tmp_path / "jobs"
    state_dir.mkdir()
    workers = WorkerProcesses(str(state_dir), [POLL], env=lab.env)
    workers.start("lab")

    def screener(*args):
        result = football(lab.env, "--json", "--var", f"state_dir={state_dir}", "--var", POLL,
                          "screener", *args)
        assert result.returncode == 0, result.stderr
        return [json.loads(line) for line in result.stdout.splitlines()]

    try:
        yield state_dir, screener
    finally:
        workers.kill_all()


def most_at_once(spans):
    """The most of the (start, end) spans that overlap at one time."""
    steps = sorted((time, step) for start, end in spans for time, step in ((start, 1),
                                                                            (end, -1)))
    most = running = 0
    for _, step in steps:           # at one time an end before a start
        running += step
        most = max(most, running)
    return most


def ended(state_dir, ids, timeout):
    return wait_for(lambda: (lambda now: now if all(
        now.get(job_id, {}).get("state") in FINISHED for job_id in ids) else None)(
        jobs(state_dir)), f"jobs {', '.join(ids)} to end", timeout=timeout, interval=0.5)


def test_a_killed_job_waiting_at_the_gate_leaves_its_container_running_at_its_source(
        lab, worker):
    state_dir, screener = worker
    assert screener("start", "--gate", "handover", "vm1", "a2")[0]["job"] == "vm1"
    job = wait_for(lambda: jobs(state_dir)["vm1"]["state"] == "waiting" and
                   jobs(state_dir)["vm1"], "vm1 at the gate", timeout=120, interval=0.3)
    assert "football screener continue vm1" in job["message"]
    assert roles_and_running(lab.status(), "vm1") == ({"a1": "Primary", "a2": "Secondary"},
                                                      ["a1"])
    assert screener("kill", "vm1")[0]["cancelled"] is False
    job = ended(state_dir, ["vm1"], timeout=120)["vm1"]
    assert (job["state"], job["exit_code"]) == ("interrupted", 190)
    assert roles_and_running(lab.status(), "vm1") == ({"a1": "Primary", "a2": "Secondary"},
                                                      ["a1"])
    kinds = [event["event"] for event in events_of(state_dir, "vm1")]
    assert "downtime-begin" not in kinds and "wait" in kinds


def test_a_run_moves_four_containers_two_at_a_time_one_per_target_losing_nothing(
        lab, worker, tmp_path):
    state_dir, screener = worker
    for res, home in HOMES.items():
        if res != "vm1":
            lab.football("add", res, home)
    files = {}
    for res, home in HOMES.items():
        data = lab.dir / home / "var/lib/lxc" / res / "rootfs/data"
        data.mkdir()
        files[res] = write_files(data, count=4, size=256 << 10)
    os.sync()
    before = {res: len(lab.records(home, res)) for res, home in HOMES.items()}
    moves = tmp_path / "moves.csv"
    moves.write_text("resource;operation;target\n" + "".join(
        f"{res};migrate;{target}\n" for res, target in TARGETS.items()))
    queued = screener("run", str(moves), "--max", "2", "--max-per", "target=1")
    assert [event["event"] for event in queued] == ["queued"] * 4
    done = ended(state_dir, list(TARGETS), timeout=600)
    assert {res: job["state"] for res, job in done.items()} == dict.fromkeys(TARGETS, "done"), \
        {res: events_of(state_dir, res)[-6:] for res in done}

    # the limits, from the recorded events
    spans = {res: [event["time"] for event in events_of(state_dir, res)
                   if event["event"] in ("job-start", "job-end")] for res in TARGETS}
    assert most_at_once(spans.values()) == 2, spans     # the limit, reached
    for target in set(TARGETS.values()):
        assert most_at_once(span for res, span in spans.items()
                            if TARGETS[res] == target) == 1, spans
    syncs = {res: [(event["time"], event["action"]) for event in events_of(state_dir, res)
                   if event["event"] == "slot" and event["slot"] == "sync"] for res in TARGETS}
    for res, (taken, released) in syncs.items():
        assert (taken[1], released[1]) == ("taken", "released"), syncs
        for other, (other_taken, other_released) in syncs.items():
            if other != res and TARGETS[other] == TARGETS[res]:
                assert released[0] <= other_taken[0] or other_released[0] <= taken[0], \
                    f"syncs of {res} and {other} to {TARGETS[res]} overlapped: {syncs}"

    # every container whole on its target
    status = lab.status()
    for res, target in TARGETS.items():
        assert roles_and_running(status, res) == ({target: "Primary"}, [target]), res
        records = lab.records(target, res)
        assert len(records) > before[res] and not sequence_problems(records), res
        data = lab.dir / target / "var/lib/lxc" / res / "rootfs/data"
        assert tree_checksums(data) == files[res], res

"""The screener in the lab: one `screener run` moves two containers to the
same target host with `--max 2 --max-per target=1`, through a real
`football worker` whose jobs are real `football migrate` processes: both
end `done`, their recorded events prove the two syncs to b1 never
overlapped, and neither container lost a record."""

import json

import pytest

from tests.helpers.jobs import WorkerProcesses, events_of, jobs, wait_for
from tests.helpers.lab import football, lab_up, roles_and_running, sequence_problems

pytestmark = [pytest.mark.root, pytest.mark.integration]

POLL = "jobs_poll_interval=0.2"
MOVES = "resource;operation;target;target_secondary\nvm1;migrate;b1;b2\nvm2;migrate;b1;b2\n"


def test_a_run_moves_two_containers_to_one_target_one_after_the_other(tmp_path):
    with lab_up(tmp_path) as lab:
        lab.football("add", "vm2", "a2", "a1")
        state_dir = tmp_path / "jobs"
        state_dir.mkdir()
        moves = tmp_path / "moves.csv"
        moves.write_text(MOVES)
        workers = WorkerProcesses(str(state_dir), [POLL], env=lab.env)
        try:
            worker = workers.start("lab")
            result = football(lab.env, "--json", "--var", f"state_dir={state_dir}", "--var",
                              POLL, "screener", "run", str(moves), "--max", "2", "--max-per",
                              "target=1")
            assert result.returncode == 0, result.stderr
            assert [json.loads(line)["event"] for line in result.stdout.splitlines()] == \
                ["queued", "queued"]
            done = wait_for(lambda: (lambda now: now if {job["state"] for job in now.values()}
                                     <= {"done", "failed", "serious", "critical", "illegal",
                                         "interrupted"} else None)(jobs(state_dir)),
                            "both jobs to end", timeout=900, interval=1.0)
        finally:
            workers.kill_all()
        assert {res: job["state"] for res, job in done.items()} == \
            {"vm1": "done", "vm2": "done"}, (workers.log(worker)[-3000:], {
                res: events_of(state_dir, res)[-8:] for res in done})
        spans = {}
        for res in ("vm1", "vm2"):
            times = {event["event"]: event["time"] for event in events_of(state_dir, res)}
            spans[res] = (times["job-start"], times["job-end"])
        first, second = sorted(spans.values())
        assert first[1] <= second[0], f"the two jobs to b1 overlapped: {spans}"
        status = lab.status()
        for res in ("vm1", "vm2"):
            roles, running = roles_and_running(status, res)
            assert roles == {"b1": "Primary", "b2": "Secondary"} and running == ["b1"], \
                (res, roles, running)
            assert not sequence_problems(lab.records("b1", res)), res

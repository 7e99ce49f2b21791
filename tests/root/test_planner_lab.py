"""The planner in the lab, through a real `football worker` whose jobs are
real `football migrate`/`handover` processes: three containers on
cluster1 and an empty cluster2 — `balance --execute` moves some to
cluster2 and lowers the score, a new plan (cooldown off) has no moves;
`evacuate --execute` of the cluster2 host that took one (the cheapest to
empty and fill again) leaves nothing running or replicated there;
`restore` brings back what came from it. Every container's workload
records are checked unbroken after each step."""

import json

import pytest

from football.config import Config
from football.screener import JobStore
from tests.helpers.jobs import WorkerProcesses, wait_for
from tests.helpers.lab import (FEWER_RECORDS, football, lab_up, roles_and_running,
                               sequence_problems)

pytestmark = [pytest.mark.root, pytest.mark.integration]

RESOURCES = ("vm1", "vm2", "vm3")


def run(lab, state_dir, *args):
    result = football(lab.env, "--json", "--yes", "--var", f"state_dir={state_dir}",
                      "--var", "jobs_poll_interval=0.2", *args)
    assert result.returncode == 0, f"football {' '.join(args)}: {result.stderr[-3000:]}"
    return result


def wait_for_a_worker(state_dir):
    store = JobStore(Config(variables=[f"state_dir={state_dir}"], environ={}))
    try:
        wait_for(store.live_workers, "the worker's first heartbeat", timeout=120, interval=0.2)
    finally:
        store.close()


def summary(result):
    [event] = [event for event in map(json.loads, result.stdout.splitlines())
               if event.get("event") == "summary"]
    return event


def where(lab):
    """{res: (primary, [secondaries])} as `lab status` sees them, each
    running on its primary alone with unbroken records there."""
    status = lab.status()
    found = {}
    for res in RESOURCES:
        roles, running = roles_and_running(status, res)
        [primary] = [host for host, role in roles.items() if role == "Primary"]
        assert running == [primary], (res, roles, running)
        assert not sequence_problems(lab.records(primary, res)), res
        found[res] = (primary, sorted(host for host in roles if host != primary))
    return found


def test_balance_evacuate_and_restore_move_containers_with_every_record(tmp_path):
    with lab_up(tmp_path, env=FEWER_RECORDS) as lab:
        lab.football("add", "vm2", "a1", "a2")
        lab.football("add", "vm3", "a2", "a1")
        state_dir = tmp_path / "controller"
        state_dir.mkdir()
        workers = WorkerProcesses(str(state_dir), ["jobs_poll_interval=0.2"], env=lab.env)
        try:
            workers.start("lab")
            wait_for_a_worker(state_dir)
            balanced = summary(run(lab, state_dir, "balance", "--execute", "--max", "2"))
            assert balanced["moves"] and balanced["score_after"] < balanced["score_before"]
            after = where(lab)
            assert any(primary.startswith("b") for primary, _ in after.values()), after
            replan = json.loads(run(lab, state_dir, "--var", "cooldown=0", "balance",
                                    "--plan").stdout)
            assert replan["moves"] == [], replan

            # the host of cluster2 that took a container: the cheapest to empty
            # and fill again (a1 would send two containers away and back)
            host = sorted(primary for primary, _ in after.values() if primary.startswith("b"))[0]
            came_from_host = {res for res in RESOURCES if host in (after[res][0], *after[res][1])}
            run(lab, state_dir, "evacuate", host, "--execute", "--max", "2")
            evacuated = where(lab)
            assert all(host != primary and host not in secondaries
                       for primary, secondaries in evacuated.values()), evacuated
            status = lab.status()
            assert not status[host]["resources"] and not any(
                state == "RUNNING" for state in status[host]["containers"].values()), status[host]

            run(lab, state_dir, "restore", host, "--max", "2")
            restored = where(lab)
            assert {res for res, (primary, secondaries) in restored.items()
                    if host in (primary, *secondaries)} == came_from_host, restored
        finally:
            workers.kill_all()

"""The planner's plans carried out (football/ops/fleetmoves.py) on the
fake fleet: `evacuate --execute`, `restore`, `balance --execute` and
`--auto`, with a screener worker in this process whose jobs are the real
football command line against the fleet. Each test checks where the
resources end, the hosts' lifecycle marks, that no record was lost, and
that a refusal changed nothing."""

import dataclasses
import io
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from football import lifecycle
from football.cli import cli
from football.config import Config
from football.errors import FootballError, Illegal, Interrupted
from football.hooks import Hooks
from football.inventory import load
from football.ops.base import Context
from football.ops.fleetmoves import BalanceRun, Evacuate, PlanRun, Restore
from football.report import Reporter
from football.screener import Worker
from tests.helpers.fakefleet import fake_fleet, view_all_times_out  # noqa: F401 (a fixture)
from tests.helpers.jobs import InProcessFootball

POLL = "jobs_poll_interval=0.05"


@pytest.fixture
def fleet(fake_fleet):  # noqa: F811
    fake_fleet.create_resource("vm2", "a2", ["a1"])
    return fake_fleet


def settings(fleet, *more):
    return [f"state_dir={fleet.state_dir}", POLL, "poll_interval=0", *more]


def context(fleet, *more):
    config = Config(variables=settings(fleet, *more), environ={})
    inventory = load(fleet.inventory_path)
    hooks = Hooks(config=config)
    hooks.apply_host_layout(inventory)
    return Context(inventory=inventory, config=config, hooks=hooks,
                   reporter=Reporter(as_json=True, stream=io.StringIO()))


def job_options(fleet, *more):
    return ["--inventory", fleet.inventory_path,
            *[arg for item in settings(fleet, *more) for arg in ("--var", item)]]


@pytest.fixture
def worker(fleet):
    worker = Worker(Config(variables=settings(fleet), environ={}), "test", InProcessFootball())
    worker.start()
    yield worker
    worker.stop(timeout=10)


def football_cli(fleet, *args):
    """`football <args>` in-process against the fleet (its settings): (exit
    code, stderr)."""
    result = CliRunner().invoke(cli, [*job_options(fleet), "--yes", *args])
    return result.exit_code, result.stderr


def state_of(fleet, name):
    return lifecycle.read(context(fleet).inventory.host(name))


def replicas(fleet, res):
    """[primary, secondaries...] of `res` as the fleet holds it."""
    primary = fleet.resources[res].primary
    return [primary, *sorted(set(fleet.members(res)) - {primary})]


def assert_whole(fleet, *resources):
    for res in resources:
        assert fleet.running(res) == [fleet.resources[res].primary], res
        assert not fleet.sequence_problems(res), res
    assert not fleet.violations


def test_evacuate_moves_everything_off_the_host_and_restore_brings_it_back(fleet, worker):
    before = {res: replicas(fleet, res) for res in ("vm1", "vm2")}
    summary = Evacuate(context(fleet), ["a1"], job_options=job_options(fleet)).run()
    assert all("a1" not in fleet.members(res) for res in ("vm1", "vm2")), \
        {res: fleet.members(res) for res in ("vm1", "vm2")}
    assert not fleet.lvs("a1"), fleet.lvs("a1")
    record = state_of(fleet, "a1")
    assert record["state"] == "evacuated"
    assert {res: origin["replicas"] for res, origin in record["origins"].items()} == before
    assert set(summary["jobs"].values()) == {"done"}
    assert_whole(fleet, "vm1", "vm2")

    Restore(context(fleet), "a1", job_options=job_options(fleet)).run()
    assert {res: replicas(fleet, res) for res in ("vm1", "vm2")} == before
    assert state_of(fleet, "a1") == {**state_of(fleet, "a1"), "state": "active", "origins": {}}
    assert_whole(fleet, "vm1", "vm2")


def test_a_container_its_operator_stopped_is_evacuated_and_restored_stopped(fleet, worker):
    """An evacuation started a suspended customer's container on its new
    host (its job said so and went on, as `--yes` answers); it stays
    stopped now, its volume up wherever it goes."""
    fleet.create_resource("vm3", "a1", ["a2"], running=False)
    Evacuate(context(fleet), ["a1"], job_options=job_options(fleet)).run()
    primary = fleet.resources["vm3"].primary
    assert "a1" not in fleet.members("vm3") and fleet.running("vm3") == []
    assert fleet.hosts[primary].mountpoint("vm3") in fleet.mounts[primary]
    Restore(context(fleet), "a1", job_options=job_options(fleet)).run()
    assert replicas(fleet, "vm3") == ["a1", "a2"] and fleet.running("vm3") == []
    assert fleet.hosts["a1"].mountpoint("vm3") in fleet.mounts["a1"]
    assert_whole(fleet, "vm1", "vm2")


def test_evacuating_a_cluster_one_of_whose_hosts_is_evacuated_already_evacuates_the_others(
        fleet, worker):
    """a2 was evacuated for a repair; then `evacuate a1 a2` (its cluster)
    marked a1 draining, failed marking a2 (evacuated, not active), and
    every re-run likewise: a1 stayed draining, no balancing anywhere."""
    Evacuate(context(fleet), ["a2"], job_options=job_options(fleet)).run()
    assert state_of(fleet, "a2")["state"] == "evacuated"
    fleet.create_resource("vm3", "a1", [])
    Evacuate(context(fleet), ["a1", "a2"], job_options=job_options(fleet)).run()
    assert [state_of(fleet, name)["state"] for name in ("a1", "a2")] == ["evacuated"] * 2
    assert not {"a1", "a2"} & set(fleet.members("vm3"))
    assert_whole(fleet, "vm1", "vm2", "vm3")


def test_evacuate_and_restore_on_the_command_line_end_with_their_summary_line(fleet, worker):
    """Without --json the summary line read the run's resource, which a run
    of planned moves has not: both commands ended in a KeyError traceback
    (exit 1) after their moves were done."""
    for command, line in ((["evacuate", "a1", "--execute"], "summary: a1: 2 moves (jobs: 2 done)"),
                          (["restore", "a1"], "summary: a1: 2 moves (jobs: 2 done)")):
        result = CliRunner().invoke(cli, [*job_options(fleet), "--yes", *command])
        assert result.exit_code == 0, result.output
        assert line in result.stderr, result.stderr
    assert state_of(fleet, "a1")["state"] == "active"
    assert_whole(fleet, "vm1", "vm2")


def test_evacuate_without_a_worker_is_refused_and_marks_nothing(fleet):
    with pytest.raises(Illegal, match="no screener worker is running"):
        Evacuate(context(fleet), ["a1"], job_options=job_options(fleet)).run()
    assert state_of(fleet, "a1")["state"] == "active"
    assert fleet.changes() == []


def test_evacuate_without_capacity_lists_what_does_not_fit_and_marks_nothing(fleet, worker):
    with pytest.raises(Illegal, match=r"capacity lacking .*vm1.*nothing was changed"):
        Evacuate(context(fleet, f"placement_min_free={100 << 30}"), ["a1"],
                 job_options=job_options(fleet)).run()
    assert state_of(fleet, "a1")["state"] == "active"
    assert fleet.changes() == []


def test_evacuate_over_an_unfinished_operation_of_another_kind_is_refused_marking_nothing(
        fleet):
    """Its job would be refused (an operation over an unfinished one of
    another kind) after a1 was marked draining and the other moves ran."""
    from tests.helpers.fakefleet import football
    code, _, stderr = football(fleet, "--debug-injection-point", "resize:resized",
                               "expand", "vm2", "1g")
    assert code == 1, stderr
    changed = len(fleet.changes())
    with pytest.raises(Illegal, match=r"evacuate of a1: vm2 has an unfinished expand \(football "
                       r"status vm2\); finish it first, then run this again; nothing was "
                       r"changed"):
        Evacuate(context(fleet), ["a1"], job_options=job_options(fleet)).run()
    assert state_of(fleet, "a1")["state"] == "active"
    assert fleet.changes()[changed:] == []


def test_restore_over_an_unfinished_operation_of_another_kind_is_refused_marking_nothing(
        fleet, worker):
    from tests.helpers.fakefleet import football
    Evacuate(context(fleet), ["a1"], job_options=job_options(fleet)).run()
    code, _, stderr = football(fleet, "--debug-injection-point", "resize:resized",
                               "expand", "vm2", "1g")
    assert code == 1, stderr
    changed = len(fleet.changes())
    with pytest.raises(Illegal, match=r"restore of a1: vm2 has an unfinished expand"):
        Restore(context(fleet), "a1", job_options=job_options(fleet)).run()
    assert state_of(fleet, "a1")["state"] == "evacuated"
    assert fleet.changes()[changed:] == []


def test_restore_skip_calls_off_a_draining_host_and_restore_refuses_an_active_ones_moves(
        fleet):
    host = context(fleet).inventory.host("a1")
    lifecycle.change(host, "draining", "test")
    Restore(context(fleet), "a1", skip=True).run()
    assert state_of(fleet, "a1")["state"] == "active"
    with pytest.raises(Illegal, match="unknown host 'z9'"):
        Restore(context(fleet), "z9")


def test_balance_execute_moves_load_to_the_empty_cluster_and_a_new_plan_has_no_moves(
        fleet, worker):
    fleet.create_resource("vm3", "a1", ["a2"])
    summary = BalanceRun(context(fleet), job_options=job_options(fleet)).run()
    assert summary["moves"], summary
    assert summary["score_after"] < summary["score_before"]
    moved = [res for res in ("vm1", "vm2", "vm3") if fleet.resources[res].primary[0] == "b"]
    assert moved, {res: replicas(fleet, res) for res in ("vm1", "vm2", "vm3")}
    assert_whole(fleet, "vm1", "vm2", "vm3")
    again = BalanceRun(context(fleet), job_options=job_options(fleet)).run()
    assert again["moves"] == [] and not fleet.violations


def test_a_balances_moves_leave_no_replica_behind_with_cleanup_old_replicas_off(fleet, worker):
    """The plan counted the room its moves free; they kept the old replicas
    (a resource of four replicas, which evacuate then refused)."""
    fleet.create_resource("vm3", "a1", ["a2"])
    summary = BalanceRun(context(fleet, "cleanup_old_replicas=no"),
                         job_options=job_options(fleet, "cleanup_old_replicas=no")).run()
    assert summary["moves"], summary
    assert {res: len(fleet.members(res)) for res in ("vm1", "vm2", "vm3")} == \
        {"vm1": 2, "vm2": 2, "vm3": 2}
    assert_whole(fleet, "vm1", "vm2", "vm3")


def test_a_balance_plan_that_expired_is_refused_with_what_to_do(fleet, worker):
    fleet.create_resource("vm3", "a1", ["a2"])
    from football.ops.planning import BalancePlanning

    plan = BalancePlanning(context(fleet, "plan_expiry=0")).run()
    with pytest.raises(Illegal, match=f"plan {plan['id']} expired .*football balance --plan"):
        BalanceRun(context(fleet), plan_id=plan["id"], job_options=job_options(fleet)).run()
    assert fleet.changes() == []


def test_balance_auto_acts_only_after_balance_hold_runs_above_the_threshold(fleet, worker):
    fleet.create_resource("vm3", "a1", ["a2"])
    options = ("balance_hold=2", "balance_threshold=0.01", "balance_margin=0.01")
    first = BalanceRun(context(fleet, *options), auto=True,
                       job_options=job_options(fleet)).run()
    assert "has not stayed above balance_threshold" in first["auto"]
    assert fleet.changes() == []
    second = BalanceRun(context(fleet, *options), auto=True,
                        job_options=job_options(fleet)).run()
    assert second["auto"] == "" and second["moves"], second
    assert_whole(fleet, "vm1", "vm2", "vm3")


class WorkerlessStore:
    """Jobs' database stand-in: no worker for the first looks, then one;
    the job runs, then is done."""

    def __init__(self):
        self.looks = 0

    def live_workers(self):
        self.looks += 1
        return [] if self.looks <= 3 else ["w1"]

    def job(self, job_id):
        return {"state": "done" if self.looks > 5 else "running", "message": ""}


def test_waiting_for_moves_says_once_that_no_worker_runs_and_once_that_one_is_back():
    said = []
    states = PlanRun(WorkerlessStore(), [], "plan", say=said.append, poll=0).wait(["plan-vm1"])
    assert states == {"plan-vm1": "done"}
    assert [line.strip() for line in said] == [
        "no screener worker is running: the moves wait until one does (`football worker`)",
        "plan-vm1: running", "a screener worker runs again", "plan-vm1: done"]


def test_the_moves_another_controller_balanced_hold_the_cooldown_here(fleet, worker, tmp_path):
    """Two controllers (their own state dirs) share the jobs' database: the
    resources one balanced are held by the cooldown in the other's plans
    too (before: each read only its own history, and two timers could move
    back what the other moved)."""
    from football.ops.planning import BalancePlanning

    fleet.create_resource("vm3", "a1", ["a2"])
    queue = f"jobs_database_url=sqlite:///{fleet.state_dir}/jobs.sqlite"
    summary = BalanceRun(context(fleet), job_options=job_options(fleet)).run()
    moved = sorted({move.split()[1] for move in summary["moves"]})
    assert moved, summary
    other = context(fleet, f"state_dir={tmp_path / 'other-controller'}", queue,
                     "cooldown=86400")
    plan = BalancePlanning(other).run()
    held = plan["held"]
    assert all(held.get(res, "").startswith("moved within cooldown") for res in moved), held


def test_a_planned_move_that_failed_is_held_by_the_cooldown_not_planned_again(fleet):
    """A balance move refused cleanly (a plugin's check, a room check)
    left nothing unfinished: the next run (the hourly timer) planned it
    again, and it failed again — a failed job and service every hour."""
    from football.ops.planning import BalancePlanning
    from football.screener import JobSpec, JobStore

    fleet.create_resource("vm3", "a1", ["a2"])
    first = BalancePlanning(context(fleet, "cooldown=86400")).run()
    res = first["moves"][0]["resource"]
    store = JobStore(Config(variables=settings(fleet), environ={}))
    [job] = store.queue([JobSpec(res, "migrate", ["b1"])], [],
                        run="balance-20261206-101010-abcdef")
    store.update(store.job(job)["number"], state="failed", exit_code=191,
                 finished=time.time() - 60)
    store.close()
    plan = BalancePlanning(context(fleet, "cooldown=86400")).run()
    assert res not in {move["resource"] for move in plan["moves"]}, plan["moves"]
    assert plan["held"][res].startswith("its planned move failed, held within cooldown"), \
        plan["held"]


def test_balance_auto_waits_while_the_moves_of_a_planners_run_still_run(fleet, tmp_path):
    """One balancer at a time: another run's moves (another controller's
    timer) live in the queue, this timer's run does not act."""
    from football.screener import JobSpec, JobStore

    fleet.create_resource("vm3", "a1", ["a2"])
    store = JobStore(Config(variables=settings(fleet), environ={}))
    store.queue([JobSpec("vm2", "handover", ["a1"])], [], run="balance-20261206-101010-abcdef")
    store.close()
    options = ("balance_hold=1", "balance_threshold=0.01", "balance_margin=0.01")
    summary = BalanceRun(context(fleet, *options), auto=True,
                         job_options=job_options(fleet)).run()
    assert summary["auto"] == ("the moves of balance-20261206-101010-abcdef still run; "
                               "balancing waits for them"), summary
    assert fleet.changes() == []


@pytest.mark.parametrize("auto", [True, False], ids=["balance --auto", "balance --execute"])
def test_two_balancers_that_decide_at_once_queue_one_plan(fleet, auto, monkeypatch):
    """Two controllers' timers (or an operator's `balance --execute` beside
    the timer) decided at once: each saw no other planner's moves live, and
    each queued a plan made on the fleet as it was before the other's moves
    — two balancers, the ping-pong the anchors warn of (both queued a job
    for vm2). The look and the queueing are one turn in the jobs' database:
    the second finds the first's moves and queues nothing."""
    import threading

    from football.screener import JobSpec, JobStore
    from tests.helpers.jobs import Script, ScriptedExecutor

    fleet.create_resource("vm3", "a1", ["a2"])
    executor = ScriptedExecutor()
    executor.scripts["vm2"] = Script(gate=threading.Event())       # the other's move runs
    worker = Worker(Config(variables=settings(fleet), environ={}), "test", executor)
    worker.start()
    other = "balance-20261206-101010-abcdef"
    checked = BalanceRun.checked_moves

    def another_balancer_queues_meanwhile(self, busy):
        store = JobStore(Config(variables=settings(fleet), environ={}))
        store.queue([JobSpec("vm2", "handover", ["a1"], id=f"{other}-vm2")], [], run=other)
        store.close()
        return checked(self, busy)

    monkeypatch.setattr(BalanceRun, "checked_moves", another_balancer_queues_meanwhile)
    options = ("balance_hold=1", "balance_threshold=0.01", "balance_margin=0.01")
    try:
        run = BalanceRun(context(fleet, *options), auto=auto, job_options=job_options(fleet))
        if auto:
            summary = run.run()
            assert summary["auto"] == f"the moves of {other} still run; balancing waits for them"
            assert summary["moves"] == []
        else:
            with pytest.raises(Illegal, match=f"^the moves of {other} still run; balancing "
                               "waits for them .*; nothing was queued$"):
                run.run()
        store = JobStore(Config(variables=settings(fleet), environ={}))
        assert [job["id"] for job in store.jobs()] == [f"{other}-vm2"]
        store.close()
    finally:
        executor.interrupt()
        worker.stop(timeout=10)
    assert fleet.changes() == []


def test_a_resource_whose_job_ended_leaving_its_operation_unfinished_is_not_moved(fleet):
    """A job of any controller that failed after it acted keeps its run
    lock on the hosts: a planned move of that resource would be refused
    (and planned again at every timer); balancing leaves it, saying how it
    goes on. A job that failed before it acted (no journal) holds nothing."""
    from football.joblink import JobLink
    from football.screener import JobSpec, JobStore

    store = JobStore(Config(variables=settings(fleet), environ={}))
    acted, checked = store.queue([JobSpec("vm1", "migrate", ["b1", "b2"]),
                                  JobSpec("vm2", "handover", ["a1"])], [])
    for job_id in (acted, checked):
        store.update(store.job(job_id)["number"], state="failed", exit_code=1)
    link = JobLink(Config(variables=settings(fleet), environ={}), store.job(acted)["number"])
    link.share_journal("migrate-vm1", {"operation": "migrate", "steps": ["prepare"],
                                       "decided": {}, "writes": 1})
    link.close()
    busy = BalanceRun(context(fleet), job_options=job_options(fleet)).busy(store)
    store.close()
    assert busy == {"vm1": "its job vm1 ended failed with its migrate unfinished (football "
                           "screener restart vm1, or a repair)"}


def test_a_resource_pinned_after_its_plan_was_made_is_not_moved_by_it(fleet, worker):
    from football.ops.planning import BalancePlanning

    fleet.create_resource("vm3", "a1", ["a2"])
    plan = BalancePlanning(context(fleet)).run()
    first = plan["moves"][0]["resource"]
    before = replicas(fleet, first)
    summary = BalanceRun(context(fleet, f"balance_pinned={first}"), plan_id=plan["id"],
                         job_options=job_options(fleet)).run()
    assert {"command": plan["moves"][0]["command"],
            "reason": f"{first}: pinned since the plan was made (balance_pinned {first})"} \
        in summary["dropped"]
    assert replicas(fleet, first) == before
    assert_whole(fleet, "vm1", "vm2", "vm3")


def test_a_resource_moved_since_its_plan_was_made_is_not_moved_by_it(fleet, worker):
    """A plan made now holds it (cooldown); the saved plan, executed by its
    id, moved it again."""
    from football.ops.planning import BalancePlanning
    from football.planner.moves import Moved
    from football.planner.plan import record_moved

    fleet.create_resource("vm3", "a1", ["a2"])
    plan = BalancePlanning(context(fleet)).run()
    first = plan["moves"][0]["resource"]
    before = replicas(fleet, first)
    record_moved(fleet.state_dir, Moved(first, time.time(), ("b1", "b2"), ("a1", "a2")))
    summary = BalanceRun(context(fleet), plan_id=plan["id"], job_options=job_options(fleet)).run()
    dropped = {entry["reason"] for entry in summary.get("dropped", [])}
    assert [reason for reason in dropped if reason.startswith(
        f"{first}: moved since the plan was made (at ") and reason.endswith("; cooldown)")]
    assert replicas(fleet, first) == before


def test_a_balance_plan_made_on_one_controller_is_executed_by_its_id_on_another(
        fleet, worker, tmp_path):
    """Where controllers share a jobs' database a plan made on one (`balance
    --plan`, reviewed) runs by its id on another (`balance execute <id>`);
    before, that one said it had no such plan."""
    from football.ops.planning import BalancePlanning

    fleet.create_resource("vm3", "a1", ["a2"])
    queue = f"jobs_database_url=sqlite:///{fleet.state_dir}/jobs.sqlite"
    plan = BalancePlanning(context(fleet, f"state_dir={tmp_path / 'planning'}", queue)).run()
    assert plan["moves"], plan
    summary = BalanceRun(context(fleet, queue), plan_id=plan["id"],
                         job_options=job_options(fleet)).run()
    assert summary["plan"] == plan["id"] and summary["moves"], summary
    assert_whole(fleet, "vm1", "vm2", "vm3")
    with pytest.raises(Illegal, match="no plan 'balance-x' in "):
        BalanceRun(context(fleet, queue), plan_id="balance-x", job_options=job_options(fleet)).run()


def test_a_move_that_stopped_in_its_cleanup_goes_on_when_the_evacuation_runs_again(
        fleet, worker):
    """One move's cleanup failed (its replicas on the old hosts not yet
    removed: the job ended with its journal kept) and the evacuation stops,
    a1 draining. Run again, it finishes that move first — a plan made now
    sees the container moved already — and only then marks a1 evacuated;
    no run lock or journal is left."""
    fleet.fail_next["leave-resource"] = 1
    with pytest.raises(FootballError, match="run `football evacuate` again to go on"):
        Evacuate(context(fleet), ["a1"], job_options=job_options(fleet)).run()
    assert state_of(fleet, "a1")["state"] == "draining"
    assert list((Path(fleet.state_dir) / "journal").glob("*.json"))

    Evacuate(context(fleet), ["a1"], job_options=job_options(fleet)).run()
    assert state_of(fleet, "a1")["state"] == "evacuated"
    assert all("a1" not in fleet.members(res) for res in ("vm1", "vm2"))
    assert not fleet.lvs("a1"), fleet.lvs("a1")
    assert not list((Path(fleet.state_dir) / "journal").glob("*.json"))
    assert not [lock for name in fleet.hosts for lock in fleet.locks(name)]
    assert_whole(fleet, "vm1", "vm2")


def test_an_evacuation_of_an_active_host_plans_over_a_migrate_stopped_in_its_cleanup(
        fleet, worker):
    """`migrate vm1 b1 b2` stopped in its cleanup (vm1 on a1, a2, b1 and b2
    until it goes on); then `evacuate a1`: its first plan, made before the
    unfinished migrate went on, saw four replicas and refused the whole
    evacuation as capacity lacking. It plans as that migrate will leave it,
    finishes it first, then evacuates."""
    fleet.fail_next["leave-resource"] = 1
    code, stderr = football_cli(fleet, "migrate", "vm1", "b1", "b2")
    assert code == 198, stderr
    assert len(fleet.members("vm1")) == 4
    Evacuate(context(fleet), ["a1"], job_options=job_options(fleet)).run()
    assert state_of(fleet, "a1")["state"] == "evacuated"
    assert sorted(fleet.members("vm1")) == ["b1", "b2"]
    assert all("a1" not in fleet.members(res) for res in ("vm1", "vm2"))
    assert_whole(fleet, "vm1", "vm2")


def test_an_evacuations_moves_remove_the_old_replicas_also_where_migrates_keep_them(
        fleet, worker):
    """With cleanup_old_replicas off every move ended done with its replica
    left on the drained host; the next round found it doubled, and the
    evacuation never ended."""
    Evacuate(context(fleet, "cleanup_old_replicas=no"), ["a1"],
             job_options=job_options(fleet, "cleanup_old_replicas=no")).run()
    assert state_of(fleet, "a1")["state"] == "evacuated"
    assert all("a1" not in fleet.members(res) for res in ("vm1", "vm2"))
    assert not fleet.lvs("a1"), fleet.lvs("a1")


def test_restore_skip_while_an_evacuation_runs_calls_it_off_after_its_queued_moves(
        fleet, worker, monkeypatch):
    """`restore a1 --skip` (the help: it calls off an evacuation while it
    drains) marked a1 active and forgot its origins, but the evacuation
    planned on: its next round moved vm3 off a1 all the same (nothing of it
    could come back: its origin was gone), then it failed marking a1
    evacuated. It stops planning: the moves queued run to their end."""
    real = Evacuate.run_plan
    rounds = []

    def run_plan(self, store, plan, what, alone=False):
        states = real(self, store, plan, what, alone)
        rounds.append(plan.id)
        if len(rounds) == 1:
            fleet.create_resource("vm3", "a1", ["a2"])       # came meanwhile
            Restore(context(fleet), "a1", skip=True, job_options=job_options(fleet)).run()
        return states
    monkeypatch.setattr(Evacuate, "run_plan", run_plan)
    with pytest.raises(Interrupted, match=r"evacuating a1: called off \(a1 is active again"):
        Evacuate(context(fleet), ["a1"], job_options=job_options(fleet)).run()
    assert len(rounds) == 1
    assert state_of(fleet, "a1")["state"] == "active"
    assert "a1" in fleet.members("vm3")
    assert_whole(fleet, "vm1", "vm2", "vm3")


def test_a_plans_move_into_room_another_frees_runs_after_it_and_not_after_its_failure(
        fleet, worker):
    """The moves of a plan ran side by side, also one that needs the room
    another frees (`Move.after`): it runs in a wave after that one, and not
    at all where that one did not end done."""
    from football.planner import Move, Plan, Settings

    def plan_of(after):
        return Plan.new("balance", time.time(), [
            Move("vm1", "handover", ("a1", "a2"), ("a2", "a1")),
            Move("vm2", "handover", ("a2", "a1"), ("a1", "a2"), after=after)], 1.0, 0.5,
            Settings())

    run = BalanceRun(context(fleet), job_options=job_options(fleet))
    said = []
    run.say = said.append
    store = run.store()
    try:
        plan = plan_of(("vm1",))
        states = run.run_plan(store, plan, "balancing")
        assert set(states.values()) == {"done"}, states
        first_done = next(number for number, line in enumerate(said)
                          if line.startswith(f"  {plan.id}-vm1: done"))
        assert said.index("  then, in the room the moves before freed: vm2") > first_done, said
        fleet.fail_next["primary"] = 1           # vm1's handover back fails
        plan = Plan.new("balance", time.time(), [
            Move("vm1", "handover", ("a2", "a1"), ("a1", "a2")),
            Move("vm2", "handover", ("a1", "a2"), ("a2", "a1"), after=("vm1",))], 1.0, 0.5,
            Settings())
        with pytest.raises(FootballError, match=f"{plan.id}-vm2 ended skipped"):
            run.run_plan(store, plan, "balancing")
        assert fleet.resources["vm2"].primary == "a1"           # not moved
    finally:
        store.close()



def test_a_host_whose_mars_view_cannot_be_read_is_evacuated_from_its_mates_view(
        fleet, worker, monkeypatch):
    """a1's `marsadm view all` timed out: it listed no replica, nothing was
    moved, and a1 was marked evacuated while it still ran vm1's primary
    (switched off then, vm1 was down); a re-run said "evacuated already"."""
    view_all_times_out(fleet, monkeypatch, "a1")
    Evacuate(context(fleet), ["a1"], job_options=job_options(fleet)).run()
    assert all("a1" not in fleet.members(res) for res in ("vm1", "vm2")), \
        {res: fleet.members(res) for res in ("vm1", "vm2")}
    assert state_of(fleet, "a1")["state"] == "evacuated"
    assert_whole(fleet, "vm1", "vm2")


def test_a_host_that_still_holds_a_replica_is_not_marked_evacuated(fleet, worker, monkeypatch):
    """Whatever the plans read: MARS is asked before the mark."""
    from football.ops import fleetmoves
    real = fleetmoves.plan_evacuation
    monkeypatch.setattr(fleetmoves, "plan_evacuation",
                        lambda *args: dataclasses.replace(real(*args), moves=()))
    with pytest.raises(FootballError, match="not marked evacuated: a1 still holds replicas of "
                       "vm1, vm2; run `football evacuate` again to go on"):
        Evacuate(context(fleet), ["a1"], job_options=job_options(fleet)).run()
    assert state_of(fleet, "a1")["state"] == "draining"


def test_restore_keeps_the_replica_an_evacuation_gave_a_resource_that_had_one(fleet, worker):
    fleet.create_resource("vm3", "a1", [])
    Evacuate(context(fleet), ["a1"], job_options=job_options(fleet)).run()
    assert len(fleet.members("vm3")) == 2
    Restore(context(fleet), "a1", job_options=job_options(fleet)).run()
    assert replicas(fleet, "vm3") == ["a1", "a2"]
    assert_whole(fleet, "vm1", "vm2", "vm3")


def test_a_resource_held_for_a_neighbours_restore_comes_back_with_it(fleet, worker):
    """a1 evacuated, then a2: vm1 and vm2 had left a2 before, so a2
    remembered neither. `restore a1` held them for a2's restore ("`football
    restore a2` brings it back") and forgot them; `restore a2` moved
    nothing; both ended done with vm1, vm2 in the other cluster."""
    before = {res: replicas(fleet, res) for res in ("vm1", "vm2")}
    for host in ("a1", "a2"):
        Evacuate(context(fleet), [host], job_options=job_options(fleet)).run()
    for host in ("a1", "a2"):
        Restore(context(fleet), host, job_options=job_options(fleet)).run()
    assert {res: replicas(fleet, res) for res in ("vm1", "vm2")} == before
    assert_whole(fleet, "vm1", "vm2")


def test_balance_while_a_host_drains_is_refused_and_its_timer_is_told_no_balancing_now(fleet):
    """`balance --auto` (its hourly timer) failed with 191 for the days an
    evacuation takes; a balance asked for by hand is refused."""
    lifecycle.change(context(fleet).inventory.host("b1"), "draining", "test")
    code, stderr = football_cli(fleet, "balance", "--execute")
    assert code == 191 and "no balancing while hosts are draining: b1" in stderr, stderr
    code, stderr = football_cli(fleet, "balance", "--auto")
    assert code == 0, stderr
    assert "no balancing now: while hosts are draining: b1" in stderr, stderr


def test_a_restore_whose_neighbour_is_switched_off_ends_active_saying_the_way_back(
        fleet, worker):
    for host in ("a1", "a2"):
        Evacuate(context(fleet), [host], job_options=job_options(fleet)).run()
    fleet.switch_off("a2")
    ctx = context(fleet)
    Restore(ctx, "a1", job_options=job_options(fleet)).run()
    assert state_of(fleet, "a1")["state"] == "active"
    said = ctx.reporter.stream.getvalue()
    assert "its way back could not be handed to a2" in said and \
        "it goes back by hand: football migrate vm1 a1 a2" in said, said

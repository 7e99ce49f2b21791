"""The way back a balance move must pay `balance_margin` for, as the
controller that ran the move records it (found by a second review of the
planner's area)."""

from football.config import Config
from football.ops.fleetmoves import BalanceRun
from football.ops.planning import cooldown_history
from football.planner import Fleet, FleetHost, Resource, Settings, plan_balance
from tests.helpers.fakefleet import fake_fleet  # noqa: F401 (a fixture)
from tests.unit.test_fleetmoves import context, fleet, job_options, worker  # noqa: F401

GIB = 1 << 30


def test_a_balance_move_this_controller_ran_keeps_its_way_back_in_the_cooldown_history(
        fleet, worker):  # noqa: F811
    """The run recorded its moves with their hosts at the time the run
    began; the jobs' database has the same moves (without hosts) at the
    time each job finished — later: that record, "the newest says", erased
    the way back, and a move back onto the hosts it came from no longer had
    to gain `balance_margin` (the to-and-fro it is there against, a
    downtime a cooldown)."""
    fleet.create_resource("vm3", "a1", ["a2"])
    summary = BalanceRun(context(fleet), job_options=job_options(fleet)).run()
    [command, *_] = summary["moves"]
    _, res, *target = command.split()
    history = cooldown_history(Config(variables=[f"state_dir={fleet.state_dir}"], environ={}))
    assert sorted(record.resource for record in history).count(res) == 2, history
    source = next(record.source for record in history if record.source)
    # a hand-built fleet where the way back gains a little: never with
    # balance_margin 1 (no move gains the whole score)
    hosts = {name: FleetHost(name, cluster=f"cluster{name[0]}", vg_size=100 * GIB,
                             vg_free=(60 if name in source else 40) * GIB)
             for name in ("a1", "a2", "b1", "b2")}
    resources = {res: Resource(res, target[0], tuple(target[1:]), lv_size=GIB)}
    back = plan_balance(Fleet(hosts, resources), Settings(balance_margin=0.0),
                        now=max(record.time for record in history) + 2 * 86400)
    assert [set(move.target) for move in back.moves] == [set(source)], back
    plan = plan_balance(Fleet(hosts, resources), Settings(balance_margin=1.0), history,
                        now=max(record.time for record in history) + 2 * 86400)
    assert plan.moves == (), plan.moves

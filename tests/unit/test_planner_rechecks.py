"""The planner's checks of what it cannot trust: a saved plan's moves are
scored again on the fleet as it is before they run; a host whose state
or MARS view could not be read is no target, and what it holds does not
move by balancing; a resource without a primary is no move of an
evacuation or a restore. On fleets built by hand and on the fake fleet."""

import pytest

from football.errors import Illegal
from football.planner import Settings, plan_balance, plan_evacuation, plan_restore
from football.planner.moves import Move, refusal, short_of
from football.planner.observe import read_fleet
from tests.helpers.fakefleet import fake_fleet, view_all_times_out  # noqa: F401 (a fixture)
from tests.unit.test_fleetmoves import context, job_options, settings  # noqa: F401
from tests.unit.test_fleetmoves import worker  # noqa: F401,F811 (a fixture)
from tests.unit.test_planner import DEFAULTS, GIB, NOW, fleet_of, host, vm  # noqa: F401


# ---------------------------------------------------- a saved plan, later
def test_a_saved_balance_move_that_no_longer_gains_is_not_run_and_says_why():
    """A plan saved yesterday ran its moves today though the fleet had
    changed: only the hard limits were checked, and a move onto a cluster
    that had filled up meanwhile made the score worse."""
    hosts = [host("a1"), host("a2"), host("b1"), host("b2")]
    loaded = [vm("vm1", "a1", "a2"), vm("vm2", "a1", "a2"), vm("vm3", "a2", "a1"),
              vm("vm4", "a2", "a1")]
    plan = plan_balance(fleet_of(hosts, loaded), DEFAULTS, now=NOW)
    [move, *_] = plan.moves
    assert move.target[0].startswith("b"), plan.moves
    assert move.unmet(fleet_of(hosts, loaded), DEFAULTS) is None
    # cluster b filled up since: one more there is worse than none
    filled = [*loaded, vm("vm5", "b1", "b2"), vm("vm6", "b1", "b2"), vm("vm7", "b2", "b1"),
              vm("vm8", "b2", "b1"), vm("vm9", "b1", "b2")]
    why = move.unmet(fleet_of(hosts, filled), DEFAULTS)
    assert why is not None and why.startswith(f"{move.resource}: no longer gains"), why
    assert "football balance --plan" in why, why


def test_a_saved_handover_that_gains_nothing_now_is_not_run():
    hosts = [host("a1"), host("a2"), host("b1"), host("b2")]
    resources = [vm("vm1", "a1", "a2"), vm("vm2", "b1", "b2")]
    handover = Move("vm1", "handover", ("a1", "a2"), ("a2", "a1"), gain=0.5)
    lenient = Settings(min_gain=0.0, min_gain_limit=0.0)
    fleet = fleet_of(hosts, resources)
    # a handover in an even fleet: a1 and a2 just trade places, no gain
    why = handover.unmet(fleet, lenient)
    assert why is not None and "no longer gains" in why, why


def test_a_saved_move_must_gain_what_a_plan_made_now_asks_of_a_move():
    """hbal's rule: at least min_gain unless the spread is above
    min_gain_limit; a migrate pays for its bytes; recomputing the gain of
    a move taken at exactly min_gain does not refuse it."""
    assert short_of(0.005, 0.05, "handover", 0, DEFAULTS) == "min_gain 0.01"
    assert short_of(0.005, 0.5, "handover", 0, DEFAULTS) == ""
    assert short_of(0.01 - 1e-15, 0.05, "handover", 0, DEFAULTS) == ""
    assert short_of(0.005, 0.5, "migrate", 1 << 40, DEFAULTS).startswith(
        "enough to pay for the 1,024.0 GiB it syncs (gain_per_tib 0.01)")
    assert short_of(0.0, 0.5, "handover", 0, DEFAULTS) == "anything"


def test_an_evacuation_or_restore_move_is_checked_without_its_gain():
    """Not for the score's sake: their moves are checked for the hard limits."""
    fleet = fleet_of([host("a1"), host("a2"), host("b1"), host("b2")],
                     [vm("vm1", "a1", "a2")])
    evacuating = Move("vm1", "migrate", ("a1", "a2"), ("b1", "b2"), gain=-1.0)
    assert evacuating.unmet(fleet, DEFAULTS, rescore=False) is None


# -------------------------------------------- a host whose state is unknown
def test_balancing_moves_nothing_off_or_onto_a_host_whose_state_is_unknown():
    """u1's state could not be read (it may be draining, restoring): its
    alone resource was migrated off it for the no-secondary penalty."""
    fleet = fleet_of([host("a1"), host("a2"), host("u1", lifecycle="unknown"), host("u2")],
                     [vm("vm1", "u1"), vm("vm2", "a1", "a2"), vm("vm3", "a1", "a2")])
    plan = plan_balance(fleet, DEFAULTS, now=NOW)
    assert all(move.resource != "vm1" for move in plan.moves), plan.moves
    assert all("u1" not in move.target for move in plan.moves), plan.moves
    assert dict(plan.held)["vm1"] == \
        "its replica's host u1: its state (active, draining, ...) could not be read"


def test_a_saved_move_off_a_host_whose_state_became_unknown_is_not_run():
    fleet = fleet_of([host("a1"), host("a2"), host("u1"), host("u2")],
                     [vm("vm1", "u1", "u2"), vm("vm2", "u1", "u2")])
    plan = plan_balance(fleet, DEFAULTS, now=NOW)
    [move, *_] = plan.moves
    assert move.unmet(fleet, DEFAULTS) is None
    unknown = fleet.with_lifecycle(["u1"], "unknown")
    assert move.unmet(unknown, DEFAULTS) == \
        f"{move.resource}: its replica's host u1: its state (active, draining, ...) " \
        "could not be read"


# ----------------------------------------------- a resource without a primary
def test_an_evacuation_refuses_a_resource_without_a_primary_naming_it_and_what_to_do():
    """Planned as a migrate, whose job could only fail (a migrate needs the
    resource primary somewhere), after the host was marked draining."""
    fleet = fleet_of([host("a1"), host("a2"), host("b1"), host("b2")],
                     [vm("vm1", "a1", "a2"), vm("vm2", "", "a1", "a2")])
    with pytest.raises(Illegal) as refused:
        plan_evacuation(fleet, ["a1"], DEFAULTS, NOW)
    message = str(refused.value)
    assert "vm2 has no primary" in message, message
    assert "football repair-vm vm2 a1 a2" in message and "nothing planned" in message, message


def test_a_restore_holds_a_resource_without_a_primary_and_says_how_it_goes_back():
    fleet = fleet_of([host("a1"), host("a2"), host("b1"), host("b2")],
                     [vm("vm1", "b1", "b2"), vm("vm2", "", "b1", "b2")])
    fleet = fleet.with_lifecycle(["a1"], "evacuated")
    plan = plan_restore(fleet, "a1", {"vm1": ("a1", "a2"), "vm2": ("a1", "a2")}, DEFAULTS, NOW)
    assert [move.resource for move in plan.moves] == ["vm1"], plan.moves
    why = dict(plan.held)["vm2"]
    assert why.startswith("has no primary") and "football repair-vm vm2 b1 b2" in why, why
    assert "football migrate vm2 a1 a2" in why, why


# ------------------------------------------------------- on the fake fleet
@pytest.fixture
def fleet(fake_fleet):  # noqa: F811
    fake_fleet.create_resource("vm2", "a2", ["a1"])
    fake_fleet.create_resource("vm3", "a1", ["a2"])
    return fake_fleet


def replicas(fleet, res):
    primary = fleet.resources[res].primary
    return [primary, *sorted(set(fleet.members(res)) - {primary})]


def test_a_saved_balance_plan_whose_moves_gain_nothing_now_runs_none_of_them(
        fleet, worker):  # noqa: F811
    from football.ops.fleetmoves import BalanceRun
    from football.ops.planning import BalancePlanning

    plan = BalancePlanning(context(fleet)).run()
    assert plan["moves"], plan
    # meanwhile cluster2 filled up
    for number in range(4, 9):
        fleet.create_resource(f"vm{number}", *(("b1", ["b2"]) if number % 2 else ("b2", ["b1"])))
    before = {res: replicas(fleet, res) for res in fleet.resources}
    summary = BalanceRun(context(fleet), plan_id=plan["id"], job_options=job_options(fleet)).run()
    reasons = [entry["reason"] for entry in summary.get("dropped", [])]
    assert reasons and all(": no longer gains" in reason for reason in reasons), summary
    assert {res: replicas(fleet, res) for res in fleet.resources} == before
    assert not summary["jobs"], summary


def test_a_host_whose_mars_view_timed_out_is_no_balance_target(fleet, monkeypatch):
    """b2's `marsadm view all` timed out: it listed nothing, looked empty,
    and balancing planned migrates onto it."""
    view_all_times_out(fleet, monkeypatch, "b2")
    model = read_fleet(context(fleet))
    plan = plan_balance(model, DEFAULTS, now=NOW)
    assert all("b2" not in move.target for move in plan.moves), plan.moves
    b2 = model.hosts["b2"]
    assert b2.reachable and not b2.mars_read and not b2.accepts and not b2.online
    assert refusal(model, "vm1", ("b1", "b2"), DEFAULTS) == \
        "b2's MARS view could not be read (marsadm view all failed or timed out)"


def test_balancing_moves_nothing_off_a_host_whose_mars_view_timed_out():
    fleet = fleet_of([host("a1"), host("a2"), host("b1", mars_read=False), host("b2")],
                     [vm("vm1", "b1"), vm("vm2", "a1", "a2")])
    plan = plan_balance(fleet, DEFAULTS, now=NOW)
    assert all(move.resource != "vm1" for move in plan.moves), plan.moves
    assert dict(plan.held)["vm1"] == "its replica's host b1: its MARS view could not be read"


def test_evacuating_a_host_with_a_resource_without_a_primary_marks_nothing(
        fleet, worker):  # noqa: F811
    from football.ops.fleetmoves import Evacuate

    primary = fleet.resources["vm3"].primary
    fleet.mounts[primary].pop(fleet.hosts[primary].mountpoint("vm3"))
    fleet.containers[primary]["vm3"] = "STOPPED"
    fleet.resources["vm3"].primary = ""
    with pytest.raises(Illegal, match="vm3 has no primary .*football repair-vm vm3 a1 a2"):
        Evacuate(context(fleet), ["a1"], job_options=job_options(fleet)).run()
    from football import lifecycle
    assert lifecycle.read(context(fleet).inventory.host("a1"))["state"] == "active"
    assert fleet.members("vm3") == ["a1", "a2"]


"""A saved balance plan runs on the fleet as it is when it runs: which of
its moves must wait for room another frees is worked out again then."""

from types import SimpleNamespace

from football.ops import fleetmoves
from football.ops.fleetmoves import BalanceRun
from football.planner import Move, Plan
from tests.unit.test_planner import DEFAULTS, fleet_of, host, vm

GIB = 1 << 30


def test_a_saved_plans_moves_wait_for_the_room_they_need_as_the_fleet_is_now(monkeypatch):
    """Made while a2 had room for vmY, the plan ran vm1's and vmY's moves side
    by side. a2 filled up since: vmY's migrate needs the room vm1's move
    frees there, and found none (vm1's old replica goes at its cleanup)."""
    moves = (Move("vm1", "migrate", ("a1", "a2"), ("b1", "b2"), 0.1, 10 * GIB),
             Move("vmY", "migrate", ("a1", "a3"), ("a2", "a3"), 0.1, 8 * GIB))
    plan = Plan("balance-20261207-000000-abcdef", "balance", 0.0, 1e12, moves, 1.0, 0.5)
    assert all(move.after == () for move in plan.moves)
    now = fleet_of([host("a1"), host("a2", free=5), host("a3", free=9),
                    host("b1", free=12), host("b2", free=12)],
                   [vm("vm1", "a1", "a2", size=10), vm("vmY", "a1", "a3", size=8)])
    monkeypatch.setattr(fleetmoves, "cooldown_history", lambda config: [])
    monkeypatch.setattr(Move, "unmet", lambda self, fleet, settings, **_: None)
    said = []
    run = SimpleNamespace(fleet=now, plan=plan, settings=DEFAULTS, config=None,
                          say=said.append, summary={})
    checked = {move.resource: move for move in BalanceRun.checked_moves(run, {})}
    assert (checked["vm1"].after, checked["vmY"].after) == ((), ("vm1",))
    assert said == []
    # with room on a2 they still run side by side
    roomy = SimpleNamespace(**{**run.__dict__, "fleet": fleet_of(
        [host(name, free=50) for name in now.hosts], list(now.resources.values()))})
    assert all(move.after == () for move in BalanceRun.checked_moves(roomy, {}))

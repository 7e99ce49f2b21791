"""A balance move must gain `min_gain` unless the fleet is imbalanced
(its spreads above `min_gain_limit`), whatever penalties no move removes
(found by a second review of the planner's area)."""

from football.planner import Fleet, FleetHost, Resource, Settings, plan_balance

GIB = 1 << 30


def fleet(domain):
    hosts = [FleetHost(name, cluster="c", failure_domain=domain, vg_size=100 * GIB,
                       vg_free=int(free * GIB))
             for name, free in (("a1", 50), ("a2", 49.9), ("a3", 50.1), ("a4", 50))]
    resources = [Resource(f"vm{number}", primary, (secondary,), lv_size=GIB // 100)
                 for number, (primary, secondary) in enumerate(
                     [("a1", "a2"), ("a2", "a1"), ("a3", "a4"), ("a4", "a3")])]
    return Fleet({host.name: host for host in hosts}, {res.name: res for res in resources})


def test_penalties_no_move_removes_do_not_let_moves_below_min_gain_through():
    """Every host in one failure domain: each resource pays 1 for good, the
    score (4.0004) stayed above min_gain_limit 0.1, and two migrates that
    gained 0.00004 each were planned — synced at every balance run; the
    same fleet without failure domains planned none."""
    assert plan_balance(fleet(""), Settings(), now=0).moves == ()
    plan = plan_balance(fleet("dc1"), Settings(), now=0)
    assert plan.score_before > 4
    assert plan.moves == (), plan.moves


def test_an_imbalanced_fleet_still_takes_any_move_that_lowers_its_spreads():
    """Spreads above min_gain_limit: hbal's rule, any gain is taken."""
    plan = plan_balance(fleet("dc1"), Settings(min_gain_limit=0.0001), now=0)
    assert plan.moves

"""`balance --auto` weighs a plan's gain against `balance_margin` as the
tunable says: the part of the score (0..1) a plan must gain (found by a
second review of the planner's area)."""

import pytest

from football.ops.fleetmoves import BalanceRun
from football.planner import Move, Plan, Settings
from tests.helpers.fakefleet import fake_fleet  # noqa: F401 (a fixture)
from tests.unit.test_fleetmoves import context, fleet, job_options  # noqa: F401

OPTIONS = ("balance_hold=1", "balance_threshold=0.01", "balance_margin=0.1")


def decided(fleet, before, after):  # noqa: F811
    run = BalanceRun(context(fleet, *OPTIONS), auto=True, job_options=job_options(fleet))
    move = Move("vm1", "handover", ("a1", "a2"), ("a2", "a1"), before - after)
    run.plan = Plan.new("balance", 0.0, [move], before, after, Settings())
    return run.auto_decision()


@pytest.mark.parametrize("before, after, acts", [
    # 0.3 of a score of 4 (7.5 %): it compared the gain with 0.1 itself,
    # and every hour moved for a sliver of a score that penalties made large
    (4.0, 3.7, False),
    (4.0, 3.5, True),
    # 0.05 of 0.2 (25 %): refused as "less than balance_margin 0.1"
    (0.2, 0.15, True),
    (0.2, 0.19, False),
])
def test_balance_auto_wants_balance_margin_as_a_part_of_the_score(fleet, before, after,  # noqa: F811
                                                                  acts):
    why = decided(fleet, before, after)
    assert (why == "") == acts, why

"""A restore onto a host whose MARS view could not be read (or that does
not answer) is refused saying so and what to do — not as lacking
capacity, which more free space or more hosts would not mend."""

import pytest

from football.errors import Illegal
from football.ops.fleetmoves import Evacuate, Restore
from football.planner import Fleet, FleetHost, Resource, Settings, plan_restore
from tests.helpers.fakefleet import fake_fleet, view_all_times_out  # noqa: F401 (a fixture)
from tests.unit.test_fleetmoves import (context, fleet, job_options,  # noqa: F401 (fixtures)
                                        state_of, worker)

GIB = 1 << 30
NOW = 1_800_000_000.0


def host(name, **values):
    return FleetHost(name, cluster=f"cluster-{name[0]}", vg_size=100 * GIB,
                     vg_free=50 * GIB, **values)


def evacuated_a1(**a1):
    model = Fleet({h.name: h for h in (host("a1", **a1), host("a2"), host("b1"), host("b2"))},
                  {"vm1": Resource("vm1", "b1", ("b2",), lv_size=GIB)})
    return model.with_lifecycle(["a1"], "evacuated")


def test_a_restore_onto_a_host_whose_mars_view_could_not_be_read_says_so_and_what_to_do():
    with pytest.raises(Illegal) as refused:
        plan_restore(evacuated_a1(mars_read=False), "a1", {"vm1": ("a1", "a2")}, Settings(),
                     NOW)
    message = str(refused.value)
    assert "capacity" not in message and "free space" not in message, message
    assert "a1's MARS view could not be read" in message, message
    assert "marsadm view all" in message and "restore again" in message, message
    assert "nothing planned" in message, message


def test_a_restore_onto_a_host_that_does_not_answer_says_so_and_what_to_do():
    with pytest.raises(Illegal) as refused:
        plan_restore(evacuated_a1(reachable=False), "a1", {"vm1": ("a1", "a2")}, Settings(),
                     NOW)
    message = str(refused.value)
    assert "capacity" not in message and "free space" not in message, message
    assert "a1 does not answer" in message and "restore again" in message, message


def test_a_restore_onto_a_readable_host_still_plans_its_moves():
    plan = plan_restore(evacuated_a1(), "a1", {"vm1": ("a1", "a2")}, Settings(), NOW)
    assert [(move.resource, move.target) for move in plan.moves] == [("vm1", ("a1", "a2"))]


# ------------------------------------------------------- on the fake fleet

def test_restore_of_an_evacuated_host_whose_mars_view_times_out_is_refused_marking_nothing(
        fleet, worker, monkeypatch):  # noqa: F811
    Evacuate(context(fleet), ["a1"], job_options=job_options(fleet)).run()
    assert state_of(fleet, "a1")["state"] == "evacuated"
    placed = {res: sorted(fleet.members(res)) for res in fleet.resources}
    view_all_times_out(fleet, monkeypatch, "a1")
    with pytest.raises(Illegal) as refused:
        Restore(context(fleet), "a1", job_options=job_options(fleet)).run()
    message = str(refused.value)
    assert "a1's MARS view could not be read" in message and "capacity" not in message, message
    assert state_of(fleet, "a1")["state"] == "evacuated"
    assert {res: sorted(fleet.members(res)) for res in fleet.resources} == placed

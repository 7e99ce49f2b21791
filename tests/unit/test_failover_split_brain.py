"""`football failover` of a resource whose replicas are in split brain (fake fleet)."""


from tests.helpers.fakefleet import fake_fleet, football, replica_behind

fleet = fake_fleet


def test_a_resource_whose_replicas_are_in_split_brain_is_not_taken_over_unsaid(
        fleet, monkeypatch):
    """vm1 on a1, replicas a2 and b1, whose histories forked (MARS says
    `view-is-split-brain` 1): which one to keep is the operator's
    (repair-mars); a failover took over on one silently, the other left
    a split brain that never follows it."""
    replica_behind(fleet)
    value = fleet._view_value

    def split(name, macro, res, resource):
        if macro == "is-split-brain":
            return "1" if res == "vm1" else "0"
        return value(name, macro, res, resource)

    monkeypatch.setattr(fleet, "_view_value", split)
    fleet.switch_off("a1")
    code, events, stderr = football(fleet, "failover", "a1")
    assert fleet.resources["vm1"].primary == "a1", "taken over in split brain"
    assert code == 199 and "split brain" in stderr + str(events), stderr

"""What the fake fleet (tests/helpers/fakefleet.py) does not model by
itself, for the tests of failover and the repairs: a host cut off from
everything while its containers run on, a resource whose replicas'
histories forked (split brain)."""

from tests.helpers.fakefleet import football


def cut_off_from_all(fleet, name):
    """Host `name` is cut off from the controller and from its peers (no
    command reaches it, its marsd answers nobody), but runs on: its
    containers keep running on their mounted volumes — what no fencing
    stopped (`switch_off` stops them)."""
    fleet.off.add(name)
    fleet.down.add(name)


def back(fleet, name):
    """Host `name` is reachable again (commands, its marsd), as it is."""
    fleet.off.discard(name)
    fleet.down.discard(name)


def failed_over_while_cut_off(fleet, name="a1", res="vm1"):
    """`name` (the primary of `res`) was cut off from all while `res` ran
    on it, failed over (the operator took it for dead) and is back: `res`
    runs on the new primary and, forked, on `name`, which holds no replica
    any more. Returns the new primary's name."""
    cut_off_from_all(fleet, name)
    code, _, stderr = football(fleet, "failover", name)
    assert code == 0, stderr
    back(fleet, name)
    new = fleet.resources[res].primary
    assert new != name and name not in fleet.members(res)
    assert fleet.running(res) == sorted([name, new])
    # (the fake records the second copy the failover started: what this
    # scenario is about; the tests look at what comes after it)
    fleet.violations.clear()
    return new


def split_brain(fleet, monkeypatch, res="vm1", hosts=None):
    """`marsadm view-is-split-brain res` says 1 on `hosts` (default: every
    member): their histories forked."""
    value = fleet._view_value

    def split(name, macro, asked, resource):
        if macro == "is-split-brain" and asked == res and (hosts is None or name in hosts):
            return "1" if name in resource.replicas else ""
        return value(name, macro, asked, resource)

    monkeypatch.setattr(fleet, "_view_value", split)

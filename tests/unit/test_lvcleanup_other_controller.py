"""`football lv-cleanup` of a shrink's LV (`<res>-tmp`, `<res>-preshrink`)
beside another controller's unfinished shrink of `<res>`: its journal is
there, not here, and lv-cleanup's own hold is `run-<res>-tmp`, not the
shrink's `run-<res>`; it removed the secondary's copy."""

from tests.helpers.fakefleet import fake_fleet, football, points_of

fleet = fake_fleet

GIB = 1 << 30


def test_a_shrink_lv_of_another_controllers_unfinished_shrink_stays(fleet, tmp_path):
    fleet.create_resource("vm2", "a1", ["a2"], size=GIB)
    code, events, _ = football(fleet, "--debug-injection-point", "prepare:copied", "shrink",
                               "vm2", "400m")
    assert code == 1 and points_of(events)[-1] == "prepare:copied"
    assert all("vm2-tmp" in fleet.lvs(name) for name in ("a1", "a2"))
    shrinking = fleet.state_dir
    fleet.state_dir = str(tmp_path / "another-controller")
    code, events, stderr = football(fleet, "lv-cleanup", "vm2-tmp", "--do-it")
    assert code == 0, stderr
    assert all("vm2-tmp" in fleet.lvs(name) for name in ("a1", "a2")), \
        "lv-cleanup removed the copy of another controller's unfinished shrink"
    assert "a2: keeps LV vg0/vm2-tmp (a run of vm2 holds a2 (unfinished shrink of vm2" in \
        " ".join(str(events).split())
    fleet.state_dir = shrinking         # the shrink goes on, and ends shrunk everywhere
    code, _, stderr = football(fleet, "shrink", "vm2", "400m")
    assert code == 0, stderr
    assert {name: fleet.lvs(name)["vm2"] for name in ("a1", "a2")} == \
        {"a1": 400 << 20, "a2": 400 << 20}
    code, events, stderr = football(fleet, "lv-cleanup", "vm2-preshrink", "--do-it")
    assert code == 0 and "no host of the inventory has an LV named vm2-preshrink" in \
        str(events), stderr

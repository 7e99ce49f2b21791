"""`football expand` stopped after some LVs grew, and then one replica's
volume group has no room left for the asked size: the re-run that asks a
size that fits finishes it (it was refused as unlike the unfinished run,
whose own size the room refused: no way on without freeing space)."""

from tests.helpers.fakefleet import fake_fleet, football, points_of

fleet = fake_fleet

MIB, GIB = 1 << 20, 1 << 30


def test_a_partly_grown_expand_whose_size_lost_its_room_goes_on_with_a_smaller_size(fleet):
    code, events, _ = football(fleet, "--debug-injection-point", "1", "expand", "vm1", "1g")
    assert code == 1 and points_of(events)[-1] == "grow:lv-grown"
    assert (fleet.lvs("a1")["vm1"], fleet.lvs("a2")["vm1"]) == (GIB, 320 * MIB)
    host = fleet.hosts["a2"]            # another LV took a2's room meanwhile
    fleet.run("a2", ["football-host", "vg", host.path("/dev/vg0"), "create", "filler", "3600M"])
    code, _, stderr = football(fleet, "expand", "vm1", "1g")
    said = " ".join(stderr.split())
    assert code == 191 and "a2: volume group vg0 has 176 MiB free" in said, stderr
    assert "nothing changed" not in said        # a1's LV grew
    code, events, stderr = football(fleet, "expand", "vm1", "480m")     # what fits
    assert code == 0, stderr
    resource = fleet.resources["vm1"]
    assert (fleet.lvs("a1")["vm1"], fleet.lvs("a2")["vm1"]) == (GIB, 480 * MIB)
    assert (resource.size, resource.fs_size) == (480 * MIB, 480 * MIB)
    summary = next(event for event in events if event["event"] == "summary")
    assert (summary["old_size"], summary["new_size"]) == (320 * MIB, 480 * MIB)


def test_a_partly_grown_expand_whose_size_lost_its_room_ends_with_what_mars_has(fleet):
    """Asked for no more than MARS has then: the run ends the unfinished
    one (nothing more grows), so that it refuses nothing after."""
    code, events, _ = football(fleet, "--debug-injection-point", "1", "expand", "vm1", "1g")
    assert code == 1 and points_of(events)[-1] == "grow:lv-grown"
    host = fleet.hosts["a2"]
    fleet.run("a2", ["football-host", "vg", host.path("/dev/vg0"), "create", "filler", "3600M"])
    code, events, stderr = football(fleet, "expand", "vm1", "320m")
    assert code == 0, stderr
    resource = fleet.resources["vm1"]
    assert (resource.size, resource.fs_size, fleet.lvs("a2")["vm1"]) == (320 * MIB,) * 3
    code, events, stderr = football(fleet, "expand", "vm1", "480m")
    assert code == 0, stderr
    assert "unfinished" not in str(events) + stderr
    assert (resource.size, resource.fs_size) == (480 * MIB, 480 * MIB)


def test_a_partly_grown_expand_with_room_for_its_size_still_refuses_another(fleet):
    code, events, _ = football(fleet, "--debug-injection-point", "1", "expand", "vm1", "1g")
    assert code == 1
    code, _, stderr = football(fleet, "expand", "vm1", "480m")
    assert code == 191 and "unfinished expand to 1,024 MiB (asked 1g), not 480m" in stderr, \
        stderr


def test_an_expand_whose_mars_grew_still_refuses_another_size(fleet):
    """After MARS grew, the run's size is MARS's: another size is refused
    as before (the filesystem and the wait are left)."""
    code, events, _ = football(fleet, "--debug-injection-point", "resize:resized", "expand",
                               "vm1", "1g")
    assert code == 1
    code, _, stderr = football(fleet, "expand", "vm1", "480m")
    assert code == 191 and "unfinished expand to 1,024 MiB (asked 1g)" in stderr, stderr
    code, _, stderr = football(fleet, "expand", "vm1", "1g")
    assert code == 0, stderr
    assert fleet.resources["vm1"].fs_size == GIB

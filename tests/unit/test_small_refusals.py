"""Small refusals: lv-cleanup keeps a shrink's LVs (`<res>-tmp`,
`<res>-preshrink`) that an unfinished shrink of `<res>` needs; a size
below a byte is refused as `0g` is; unlock releases only the holder it
saw, not a run that took the lock over since (fake fleet)."""

import time

import pytest

from football.errors import Illegal
from football.hostside import locks as host_locks
from football.ops.lock import Unlock
from football.ops.sizing import parse_target
from tests.helpers.fakefleet import fake_fleet, football  # noqa: F401
from tests.unit.test_unfinished_others import crash_at
from tests.unit.test_unfinished_others import fleet as vm2_fleet

fleet = vm2_fleet       # vm2 at 1 GiB on a1 and a2
LOCKS = "/var/lock/football"


def lv_cleanup(fleet, lv):
    """`football lv-cleanup <lv> --do-it` (exit 0): its result event and what it said."""
    code, events, stderr = football(fleet, "lv-cleanup", lv, "--do-it")
    assert code == 0, stderr
    said = " ".join(event.get("text", "") for event in events)
    return next(event for event in events if event["event"] == "result"), said


# --- lv-cleanup ------------------------------------------------------------------------

@pytest.mark.parametrize("point", ["finish:renamed", "finish:created"])
def test_lv_cleanup_keeps_the_preshrink_lvs_an_unfinished_shrink_goes_back_to(fleet, point):
    crash_at(fleet, point, "shrink", "vm2", "320m")
    assert all("vm2-preshrink" in fleet.lvs(name) for name in ("a1", "a2"))
    result, said = lv_cleanup(fleet, "vm2-preshrink")
    assert all("vm2-preshrink" in fleet.lvs(name) for name in ("a1", "a2"))
    assert result["removed"] == [] and sorted(result["kept"]) == ["a1", "a2"]
    assert "a1: keeps LV" in said and "an unfinished shrink of vm2 needs it" in said
    assert "`football shrink vm2 320m` finishes it" in said
    assert "then `football shrink-cleanup vm2` removes it" in said
    # finished, its cleanup removes them
    assert football(fleet, "shrink", "vm2", "320m")[0] == 0
    assert not any("vm2-preshrink" in fleet.lvs(name) for name in ("a1", "a2"))


def test_lv_cleanup_keeps_the_copy_of_a_shrink_stopped_before_its_window(fleet):
    crash_at(fleet, "prepare:copied", "shrink", "vm2", "320m")
    assert all("vm2-tmp" in fleet.lvs(name) for name in ("a1", "a2"))
    result, said = lv_cleanup(fleet, "vm2-tmp")
    assert all("vm2-tmp" in fleet.lvs(name) for name in ("a1", "a2"))
    assert result["removed"] == [] and sorted(result["kept"]) == ["a1", "a2"]
    assert "a2: keeps LV" in said and "an unfinished shrink of vm2 needs it" in said
    assert "or `football shrink-cleanup vm2` gives it up" in said
    assert "as its copy or its way back" in said
    # given up, nothing of it is kept
    assert football(fleet, "shrink-cleanup", "vm2")[0] == 0
    assert not any("vm2-tmp" in fleet.lvs(name) for name in ("a1", "a2"))


def test_lv_cleanup_keeps_the_full_size_lvs_a_combined_run_hands_back_to(fleet):
    """migrate+shrink+back stopped after its shrink stage (done, its own
    journal finished): the originals' full-size LVs are the way back."""
    crash_at(fleet, "combined:shrink", "migrate+shrink+back", "vm2", "b1")
    assert all("vm2-preshrink" in fleet.lvs(name) for name in ("a1", "a2", "b1"))
    result, said = lv_cleanup(fleet, "vm2-preshrink")
    assert all("vm2-preshrink" in fleet.lvs(name) for name in ("a1", "a2", "b1"))
    assert result["removed"] == [] and sorted(result["kept"]) == ["a1", "a2", "b1"]
    assert "an unfinished migrate+shrink+back of vm2 needs it" in said
    assert "`football migrate+shrink+back vm2 b1` finishes it" in said


# --- sizes -----------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["0g", "0.0g", ".0001k", "0.000m"])
def test_a_size_of_less_than_a_byte_is_refused_with_or_without_a_fraction(text):
    with pytest.raises(Illegal, match=f"'{text}' is neither a fill level"):
        parse_target(text)


def test_a_fraction_of_a_unit_is_rounded_up_to_whole_bytes():
    assert parse_target("1.5g") == ("size", 3 << 29)
    assert parse_target(".001k") == ("size", 2)


# --- unlock ----------------------------------------------------------------------------

def test_unlock_leaves_a_lock_that_a_live_run_took_over_after_unlock_looked(
        fleet, monkeypatch):
    directory = fleet.hosts["a1"].path(LOCKS)
    host_locks.take(directory, "football", "migrate-vm1@dead", 3600)
    discover = Unlock.discover

    def broken_meanwhile(self):
        discover(self)          # it saw the dead run's lock; a live run breaks it now
        time.sleep(0.01)
        assert host_locks.take(directory, "football", "migrate-vm2@live",
                               stale_after=0) == "broken"

    monkeypatch.setattr(Unlock, "discover", broken_meanwhile)
    code, events, stderr = football(fleet, "unlock", "football", "a1")
    assert code == 0, stderr
    assert fleet.locks("a1")["football"]["owner"] == "migrate-vm2@live"
    result = next(event for event in events if event["event"] == "result")
    assert result["released"] == []
    assert result["taken_over"] == [{"host": "a1", "owner": "migrate-vm2@live"}]
    said = " ".join(event.get("text", "") for event in events)
    assert "a1: did not release lock football: migrate-vm2@live holds it since" in said
    assert "not migrate-vm1@dead, who held it when unlock looked" in said
    # looked at again, it is that run's lock that goes
    monkeypatch.setattr(Unlock, "discover", discover)
    assert football(fleet, "unlock", "football", "a1")[0] == 0
    assert "football" not in fleet.locks("a1")


def test_unlock_releases_the_holder_it_saw(fleet):
    host_locks.take(fleet.hosts["a1"].path(LOCKS), "football", "migrate-vm1@dead", 3600)
    code, events, stderr = football(fleet, "unlock", "football", "a1")
    assert code == 0, stderr
    assert "football" not in fleet.locks("a1")
    assert ("a1", ["football-host", "lock", fleet.hosts["a1"].path(LOCKS), "release",
                   "football", "--owner", "migrate-vm1@dead"]) in \
        [(name, list(argv)) for name, argv in fleet.changes()]

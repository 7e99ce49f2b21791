"""The downtime window's times in a journal (window_started, window_ended)
are wall clock, and a re-run may be another controller's (a screener job
taken over) with a clock that disagrees. Whether the window is still open
is told by the order of the journal's writes, not by comparing the two
clocks; a time of another clock ahead of this controller's is taken as now
(a cleanup_delay waited the clocks' difference longer, a resumed window's
length came out negative or cut short) and said; a time this controller's
boot took is read on the monotonic clock (a step of the wall clock since
changes nothing)."""

import json
import socket
import time

import pytest

from football.journal import Journal, unfinished_operations

HOUR = 3600.0


@pytest.fixture
def state_dir(tmp_path):
    return str(tmp_path)


def wall_clock_off_by(monkeypatch, seconds):
    """This process's wall clock `seconds` ahead (behind, when negative)."""
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + seconds)
    return real


def rewrite(state_dir, change):
    path = Journal(state_dir, "migrate", "vm1").path
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_a_window_ended_by_a_controller_whose_clock_is_behind_is_not_open_again(
        state_dir, monkeypatch):
    # controller A (clock an hour ahead) stops the container and crashes
    real = wall_clock_off_by(monkeypatch, HOUR)
    journal = Journal(state_dir, "migrate", "vm1")
    journal.record("critical-section", window_started=time.time())
    monkeypatch.setattr(time, "time", real)
    # controller B (the right time) resumes, compensates: the window ends
    journal = Journal(state_dir, "migrate", "vm1")
    journal.decide(window_ended=time.time())

    again = Journal(state_dir, "migrate", "vm1")
    assert again.open_window_started() is None
    (operation,) = unfinished_operations(state_dir)
    assert operation["in_downtime"] is False


def test_a_window_entered_again_after_it_ended_is_open(state_dir):
    journal = Journal(state_dir, "migrate", "vm1")
    journal.record("critical-section", window_started=time.time())
    journal.decide(window_ended=time.time() + HOUR)     # (a clock ahead: the order counts)
    journal.record("critical-section", window_started=time.time())
    assert Journal(state_dir, "migrate", "vm1").open_window_started() is not None
    assert unfinished_operations(state_dir)[0]["in_downtime"] is True


def test_a_window_end_another_controllers_clock_put_ahead_is_taken_as_now_and_said(state_dir):
    journal = Journal(state_dir, "migrate", "vm1")
    journal.record("critical-section", window_started=time.time() - 60)
    journal.decide(window_ended=time.time())

    def from_another_controller(data):
        ahead = data["decided"]["window_ended"] = time.time() + HOUR
        data.setdefault("clocks", {}).setdefault("window_ended", {}).update(
            host="other-controller", boot="another-boot", wall=ahead, monotonic=5.0)
    rewrite(state_dir, from_another_controller)

    before = time.time()
    resumed = Journal(state_dir, "migrate", "vm1")
    # cleanup_delay counts from here: it waits no hour more
    assert before - 1 <= resumed.decided["window_ended"] <= time.time()
    (said,) = resumed.clock_disagreements
    assert "downtime window ended at" in said and "ahead of this controller's clock" in said
    assert "written on other-controller, whose clock disagrees; taken as now" in said


def test_a_window_start_another_clock_put_ahead_never_makes_the_window_negative(state_dir):
    journal = Journal(state_dir, "migrate", "vm1")
    journal.record("critical-section", window_started=time.time())
    ahead = time.time() + HOUR
    rewrite(state_dir, lambda data: data["decided"].update(window_started=ahead)
            or data.setdefault("clocks", {}).setdefault("window_started", {}).update(
                host="other", boot="x", wall=ahead))
    started = Journal(state_dir, "migrate", "vm1").open_window_started()
    assert started is not None and started <= time.time()


def test_a_window_time_this_boot_took_is_read_on_the_monotonic_clock(state_dir, monkeypatch):
    journal = Journal(state_dir, "migrate", "vm1")
    journal.record("critical-section", window_started=time.time() - 30)
    journal.decide(window_ended=time.time())
    # the wall clock is stepped back an hour (NTP) before the cleanup's re-run
    wall_clock_off_by(monkeypatch, -HOUR)
    resumed = Journal(state_dir, "migrate", "vm1")
    assert abs(resumed.decided["window_ended"] - time.time()) < 5
    assert abs(resumed.decided["window_started"] - (time.time() - 30)) < 5
    assert resumed.clock_disagreements == []


def test_a_journal_without_clock_stamps_is_read_as_before(state_dir):
    journal = Journal(state_dir, "migrate", "vm1")
    journal.record("critical-section", window_started=100.0)
    journal.decide(window_ended=50.0)
    rewrite(state_dir, lambda data: data.pop("clocks"))
    resumed = Journal(state_dir, "migrate", "vm1")
    assert resumed.open_window_started() == 100.0       # ended before it began: open
    assert resumed.decided["window_ended"] == 50.0


def test_a_stamp_of_another_time_than_the_journals_is_stale_and_not_used(state_dir):
    """A journal an older Football (or a hand) wrote again holds a time its
    stamp is not of: the time counts, as it says."""
    journal = Journal(state_dir, "migrate", "vm1")
    journal.record("critical-section", window_started=time.time())
    rewrite(state_dir, lambda data: data["decided"].update(window_started=100.0))
    assert Journal(state_dir, "migrate", "vm1").open_window_started() == 100.0


def test_the_stamps_name_this_controller(state_dir):
    journal = Journal(state_dir, "migrate", "vm1")
    journal.record("critical-section", window_started=time.time())
    assert journal.data["clocks"]["window_started"]["host"] == socket.gethostname()
    assert journal.data["clocks"]["window_started"]["write"] == journal.data["writes"]

"""Journals an earlier Football wrote (no `clocks`: no write order of the
window times) compare the two times, as that Football did
(tests/unit/test_journal_clocks.py). Where one time has its write (this
Football's, after the journal was resumed) and the other none, the one
with its write is the later: a window entered again, or ended, since."""

import json
import time

from football.journal import Journal, unfinished_operations

HOUR = 3600.0


def old_journal(state_dir, **decided):
    """A journal as Football wrote it before the window times were stamped."""
    path = Journal(state_dir, "migrate", "vm1").path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "operation": "migrate", "resource": "vm1", "started": time.time() - 2 * HOUR,
        "steps": ["prepare", "wait", "critical-section"], "decided": decided, "writes": 5,
        "run": {"host": "controller-a", "pid": 1}}, indent=2))


def test_an_old_journals_window_without_an_end_is_open(tmp_path):
    state_dir = str(tmp_path)
    old_journal(state_dir, window_started=time.time() - 60)
    assert Journal(state_dir, "migrate", "vm1").open_window_started() is not None


def test_a_window_entered_again_after_an_old_journals_end_is_open(tmp_path):
    """The old journal's window ended (compensated); this Football's re-run
    enters it again (its start stamped with its write) and dies inside."""
    state_dir = str(tmp_path)
    old_journal(state_dir, window_started=time.time() - 600, window_ended=time.time() - 500)
    journal = Journal(state_dir, "migrate", "vm1")
    journal.record("critical-section", window_started=time.time() - HOUR)    # (a clock behind)
    assert Journal(state_dir, "migrate", "vm1").open_window_started() is not None
    assert unfinished_operations(state_dir)[0]["in_downtime"] is True


def test_a_window_an_old_journal_left_open_and_this_football_ended_is_not_open(tmp_path):
    state_dir = str(tmp_path)
    old_journal(state_dir, window_started=time.time() + HOUR)      # a clock ahead
    journal = Journal(state_dir, "migrate", "vm1")
    assert journal.open_window_started() is not None
    journal.decide(window_ended=time.time())
    assert Journal(state_dir, "migrate", "vm1").open_window_started() is None

"""The controller's line files and stamps survive what a controller lives
through (football/housekeeping.py): a crash in the middle of an append, a
power loss while a history is trimmed, a clock that was briefly wrong."""

import json
import os
import stat
import time

from football import housekeeping
from football.config import Config
from football.housekeeping import DAY, append_line, now_and_then, trim_lines
from football.planner.plan import Moved, history_path, read_history, record_moved

NOW = time.time()


def moved_line(resource):
    return json.dumps({"resource": resource, "time": NOW, "from": ["a1"], "to": ["b1"]})


def test_a_line_appended_after_a_torn_last_line_starts_a_line_of_its_own(tmp_path):
    """A crash mid-append leaves a fragment without its newline: readers
    skip it, and the next record must not be glued to it and lost too."""
    history = history_path(tmp_path)
    history.parent.mkdir(parents=True)
    history.write_text(moved_line("vm1") + "\n" + moved_line("vm2")[:20])
    record_moved(tmp_path, Moved("vm3", NOW, ("a1",), ("b1",)))
    append_line(history, moved_line("vm4"))
    assert [move.resource for move in read_history(tmp_path)] == ["vm1", "vm3", "vm4"]
    assert history.read_text().splitlines()[1] == moved_line("vm2")[:20]


def test_a_trimmed_history_is_synced_before_it_replaces_the_old_one_and_its_directory_after(
        tmp_path, monkeypatch):
    """A power loss after the trim leaves the old lines or the kept ones,
    never an empty file."""
    path = tmp_path / "downtime.log"
    old, recent = json.dumps({"time": NOW - 400 * DAY}), json.dumps({"time": NOW})
    path.write_text(old + "\n" + recent + "\n")
    synced = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        kind = "directory" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        synced.append((kind, path.read_text()))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    assert trim_lines(path, NOW - DAY) == 1
    assert synced == [("file", old + "\n" + recent + "\n"), ("directory", recent + "\n")]
    assert not path.with_name("downtime.log.trim").exists()


def test_a_housekeeping_stamp_dated_in_the_future_does_not_hold_housekeeping_off(
        tmp_path, monkeypatch):
    """A clock that was briefly ahead dated the stamp in the future: its
    age is negative, not fresh; housekeeping runs and dates it anew."""
    kept, warned = [], []
    monkeypatch.setattr(housekeeping, "housekeep", lambda config: kept.append(config))
    config = Config(variables=[f"state_dir={tmp_path}"], environ={})
    stamp = tmp_path / housekeeping.STAMP
    stamp.touch()
    os.utime(stamp, (NOW + 30 * DAY, NOW + 30 * DAY))
    now_and_then(config, warned.append)
    assert len(kept) == 1 and stamp.stat().st_mtime <= time.time()
    now_and_then(config, warned.append)
    assert len(kept) == 1 and warned == []      # dated today now: fresh

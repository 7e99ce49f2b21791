"""The controller's own disk full (fake fleet): a journal that cannot be
written stops the run plainly (198, naming the journal and what to do; a
traceback and exit 1 before), inside the downtime window after the
container runs again; with room again the same command ends the migrate.
A run log that cannot be written is said once and the run goes on."""

import errno
import json

import pytest

from football import journal
from tests.helpers.fakefleet import assert_placed, fake_fleet, football

fleet = fake_fleet

MIGRATE = ("migrate", "vm1", "b1", "b2")
REAL = journal.replace_durably
WRITES = 15         # at most, in a migrate


def journal_writes(monkeypatch, fail_from=None):
    """Count the journal's writes; from the `fail_from`-th on they fail
    with ENOSPC (None: none fails)."""
    real, count = journal.replace_durably, [0]

    def write(*args, **kwargs):
        count[0] += 1
        if fail_from is not None and count[0] >= fail_from:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)
    monkeypatch.setattr(journal, "replace_durably", write)
    return count


def test_a_migrate_writes_its_journal_10_to_15_times(fleet, monkeypatch):
    """(the sweep below fails each of them: it goes to 15)"""
    count = journal_writes(monkeypatch)
    code, _, stderr = football(fleet, *MIGRATE)
    assert code == 0, stderr
    assert 10 <= count[0] <= WRITES, count


@pytest.mark.parametrize("fail_from", range(1, WRITES + 1))
def test_a_journal_that_cannot_be_written_stops_the_run_and_the_re_run_ends_it(
        fleet, monkeypatch, fail_from):
    count = journal_writes(monkeypatch, fail_from)
    code, _, stderr = football(fleet, *MIGRATE)
    if count[0] < fail_from:
        assert code == 0, stderr        # it wrote fewer times: nothing failed
        return
    said = " ".join(stderr.split())
    assert code == 198, stderr
    assert "cannot write the journal " in said and "migrate-vm1.json: No space left on " \
        "device; the migrate of vm1 stopped (steps done: " in said, said
    assert "run the same command again: it resumes" in said
    assert len(fleet.running("vm1")) == 1, "the container must run (again) somewhere"
    monkeypatch.setattr(journal, "replace_durably", REAL)     # room again
    code, _, stderr = football(fleet, *MIGRATE)
    assert code == 0, f"re-run after the journal's write {fail_from} failed: {stderr}"
    assert_placed(fleet, "b1", ["b2"])
    assert fleet.sequence_problems("vm1") == []


def test_a_run_log_that_cannot_be_written_is_said_once_and_the_run_goes_on(
        fleet, monkeypatch):
    import builtins
    real_open = builtins.open

    class Full:
        """A log file whose disk is full."""
        writes = 0

        def write(self, text):
            Full.writes += 1
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self):
            pass

    def opening(path, mode="r", *args, **kwargs):
        if str(path).endswith(".log") and "/log/" in str(path) and "a" in mode:
            return Full()
        return real_open(path, mode, *args, **kwargs)
    monkeypatch.setattr(builtins, "open", opening)
    code, events, stderr = football(fleet, *MIGRATE)
    assert code == 0, stderr
    assert stderr.count("cannot write the run log") == 1 and \
        "No space left on device; the run goes on without it" in stderr, stderr
    assert Full.writes == 1
    assert_placed(fleet, "b1", ["b2"])
    assert json.dumps(events)       # the events still reached --json's stdout

"""What an operation tells its operator (football/report.py): one JSON event
per line with `--json`, the run log, the phase trail and warnings on the
terminal, and progress events throttled to one a second."""

import io
import json
from types import SimpleNamespace

import pytest

from football.report import Reporter


class Clock:
    """Wall and monotonic time the test moves by hand."""

    def __init__(self):
        self.wall, self.mono = 1_700_000_000.0, 100.0

    def advance(self, seconds):
        self.wall += seconds
        self.mono += seconds


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr("football.report.time",
                        SimpleNamespace(time=lambda: clock.wall, monotonic=lambda: clock.mono))
    return clock


@pytest.fixture
def stdout():
    return io.StringIO()


def events(text):
    return [json.loads(line) for line in text.splitlines()]


# --- --json ----------------------------------------------------------------------------

def test_json_events_are_one_object_per_line_with_event_and_time(stdout, clock):
    reporter = Reporter(as_json=True, stream=stdout)
    reporter.event("phase", phase="prepare", resource="vm1")
    clock.advance(2.5)
    reporter.event("phase", phase="wait", resource="vm1")
    assert events(stdout.getvalue()) == [
        {"event": "phase", "time": 1_700_000_000.0, "phase": "prepare", "resource": "vm1"},
        {"event": "phase", "time": 1_700_000_002.5, "phase": "wait", "resource": "vm1"}]


def test_event_returns_the_record_it_wrote(stdout, clock):
    record = Reporter(as_json=True, stream=stdout).event("summary", downtime_seconds=1.25)
    assert record == {"event": "summary", "time": 1_700_000_000.0, "downtime_seconds": 1.25}


def test_with_json_say_warning_and_detail_are_events_and_the_terminal_stays_quiet(
        stdout, capsys):
    reporter = Reporter(as_json=True, verbose=True, stream=stdout)
    reporter.say("* prepare: replicas on the targets", resource="vm1")
    reporter.warning("b1: no sync progress for 60 s")
    reporter.detail("b1: already a replica of vm1")
    assert [(e["event"], e["text"]) for e in events(stdout.getvalue())] == [
        ("message", "* prepare: replicas on the targets"),
        ("warning", "b1: no sync progress for 60 s"),
        ("detail", "b1: already a replica of vm1")]
    assert events(stdout.getvalue())[0]["resource"] == "vm1"
    assert capsys.readouterr().err == ""


def test_without_json_nothing_is_written_to_stdout(stdout, capsys):
    reporter = Reporter(stream=stdout)
    reporter.event("phase", phase="prepare")
    reporter.say("* prepare")
    assert stdout.getvalue() == ""
    assert capsys.readouterr().out == ""


# --- the terminal ----------------------------------------------------------------------

def test_say_prints_the_phase_trail_on_stderr(capsys):
    Reporter().say("* migrating vm1 (1024 MiB) from a1 to b1, b2")
    captured = capsys.readouterr()
    assert captured.err == "* migrating vm1 (1024 MiB) from a1 to b1, b2\n"
    assert captured.out == ""


def test_a_long_line_of_the_trail_stays_one_line_for_logs_and_pipes(capsys):
    line = "would create LV vg0/vm1 on b2 and run `marsadm join-resource vm1 " + \
        "/srv/lab/b2/dev/vg0/vm1` there" + " (padding)" * 10
    Reporter().say(line)
    assert capsys.readouterr().err == line + "\n"


def test_a_warning_is_printed_as_such(capsys):
    Reporter().warning("b1: no sync progress for 60 s")
    assert capsys.readouterr().err == "warning: b1: no sync progress for 60 s\n"


def test_details_show_only_when_verbose(capsys):
    Reporter().detail("b1: already a replica of vm1")
    assert capsys.readouterr().err == ""
    Reporter(verbose=True).detail("b1: already a replica of vm1")
    assert capsys.readouterr().err == "  b1: already a replica of vm1\n"


def test_every_warning_is_told_to_on_warning(stdout):
    told = []
    Reporter(as_json=True, stream=stdout, on_warning=told.append).warning("b1: slow sync")
    assert told == ["b1: slow sync"]


def test_a_failing_on_warning_is_recorded_and_never_raised(stdout):
    def broken(text):
        raise RuntimeError("mail server down")

    Reporter(as_json=True, stream=stdout, on_warning=broken).warning("b1: slow sync")
    assert [(e["event"], e["text"]) for e in events(stdout.getvalue())] == [
        ("warning", "b1: slow sync"), ("warning-hook-failed", "b1: slow sync")]
    assert "mail server down" in events(stdout.getvalue())[1]["error"]


@pytest.mark.parametrize("say", ["say", "warning"])
def test_brackets_in_a_message_are_printed_not_taken_as_markup(capsys, say):
    getattr(Reporter(), say)("b1: diskstate DefectiveLog[bad] [Errno 2] [bold]")
    assert capsys.readouterr().err.endswith("b1: diskstate DefectiveLog[bad] [Errno 2] [bold]\n")


# --- the run log -----------------------------------------------------------------------

def test_the_run_log_gets_every_event_including_details_not_shown(tmp_path, clock, capsys):
    log = tmp_path / "log" / "20240101-000000-migrate-vm1.log"
    reporter = Reporter(log_path=log)
    reporter.say("* prepare")
    reporter.detail("b1: creating LV")
    reporter.warning("slow")
    reporter.close()
    assert [(e["event"], e["text"]) for e in events(log.read_text())] == [
        ("message", "* prepare"), ("detail", "b1: creating LV"), ("warning", "slow")]
    assert all(e["time"] == 1_700_000_000.0 for e in events(log.read_text()))


def test_the_run_log_is_written_as_it_goes_not_only_at_close(tmp_path):
    log = tmp_path / "run.log"
    reporter = Reporter(as_json=True, stream=io.StringIO(), log_path=log)
    reporter.event("phase", phase="prepare")
    assert events(log.read_text())[0]["phase"] == "prepare"      # a crash keeps it
    reporter.close()


def test_a_rerun_appends_to_the_run_log(tmp_path):
    log = tmp_path / "run.log"
    for phase in ("prepare", "wait"):
        reporter = Reporter(as_json=True, stream=io.StringIO(), log_path=log)
        reporter.event("phase", phase=phase)
        reporter.close()
    assert [e["phase"] for e in events(log.read_text())] == ["prepare", "wait"]


def test_the_json_stream_and_the_run_log_hold_the_same_events(tmp_path, stdout):
    log = tmp_path / "run.log"
    reporter = Reporter(as_json=True, stream=stdout, log_path=log)
    reporter.say("* finish")
    reporter.event("summary", resource="vm1")
    reporter.close()
    assert log.read_text() == stdout.getvalue()


def test_closing_twice_and_events_after_close_do_no_harm(tmp_path, stdout):
    reporter = Reporter(as_json=True, stream=stdout, log_path=tmp_path / "run.log")
    reporter.close()
    reporter.close()
    reporter.event("late")
    assert events(stdout.getvalue())[0]["event"] == "late"


# --- progress --------------------------------------------------------------------------

def progress_events(stdout):
    return [(e["done"], e["total"]) for e in events(stdout.getvalue())
            if e["event"] == "progress"]


def test_progress_events_are_throttled_to_one_a_second(stdout, clock):
    reporter = Reporter(as_json=True, stream=stdout)
    with reporter.progress("sync vm1 to b1", 1000) as bar:
        for done in range(0, 900, 100):         # one update every 0.25 s
            bar.update(done)
            clock.advance(0.25)
    assert progress_events(stdout) == [(0, 1000), (400, 1000), (800, 1000)]


def test_the_last_progress_event_is_always_sent(stdout, clock):
    reporter = Reporter(as_json=True, stream=stdout)
    with reporter.progress("sync vm1 to b1", 1000) as bar:
        bar.update(900)
        clock.advance(0.1)
        bar.update(1000)
    assert progress_events(stdout) == [(900, 1000), (1000, 1000)]


def test_a_progress_event_names_what_is_progressing(stdout, clock):
    reporter = Reporter(as_json=True, stream=stdout)
    with reporter.progress("sync vm1 to b1", 10) as bar:
        bar.update(10)
    (event,) = events(stdout.getvalue())
    assert event == {"event": "progress", "time": 1_700_000_000.0, "what": "sync vm1 to b1",
                     "done": 10, "total": 10}


def test_without_json_progress_goes_to_a_bar_on_stderr_and_the_log(tmp_path, capsys, clock):
    log = tmp_path / "run.log"
    reporter = Reporter(log_path=log)
    with reporter.progress("sync vm1 to b1", 1 << 20) as bar:
        bar.update(1 << 19)
        bar.update(1 << 20)
    reporter.close()
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "sync vm1 to b1" in captured.err
    assert [(e["done"], e["total"]) for e in events(log.read_text())] == [
        (1 << 19, 1 << 20), (1 << 20, 1 << 20)]


def test_the_summary_line_says_only_what_the_run_did():
    from football.report import summary_line
    migrate = {"resource": "vm1", "synced_bytes": 12 << 20, "copied_bytes": 2 << 30,
               "sync_seconds": 1.3, "downtime_seconds": 0.44,
               "phases": {"prepare": 0.4, "wait": 1.0, "finish": 0.5, "cleanup": 0.5}}
    assert summary_line(migrate) == (
        "summary: vm1: replicas of 2048 MiB synced in 1.3 s (1575 MiB/s), 12 MiB of it "
        "travelled (zeros and equal chunks do not); downtime 0.44 s; phases: prepare 0.4 s, "
        "wait 1.0 s, finish 0.5 s, cleanup 0.5 s")
    handover = {"resource": "vm1", "synced_bytes": 0, "sync_seconds": 0.0,
                "downtime_seconds": 0.38, "phases": {"finish": 0.4}}
    assert summary_line(handover) == "summary: vm1: downtime 0.38 s; phases: finish 0.4 s"
    nothing = {"resource": "vm1", "synced_bytes": 0, "downtime_seconds": 0.0, "phases": {}}
    assert summary_line(nothing) == "summary: vm1: nothing done"
    # a run of planned moves (evacuate, restore, balance): no resource of its own
    restore = {"hosts": ["b1"], "moves": ["migrate vm1 b1 b2", "migrate vm2 b1"],
               "jobs": {"j1": "done", "j2": "failed"}, "sync_mib_per_s": 0.0,
               "phases": {"restoring": 0.01, "move": 4.17, "active": 0.01}}
    assert summary_line(restore) == ("summary: b1: 2 moves (jobs: 1 done, 1 failed); phases: "
                                     "restoring 0.0 s, move 4.2 s, active 0.0 s")
    assert summary_line({"plan": "balance-1", "moves": [], "jobs": {}, "phases": {"plan": 0.2}}) \
        == "summary: the fleet: 0 moves; phases: plan 0.2 s"


def test_hosts_named_in_a_sentence_get_the_verb_that_agrees():
    from football.report import agreeing
    assert agreeing(["b2"], "holds", "hold") == "b2 holds"
    assert agreeing(["b1", "b2"], "is", "are") == "b1, b2 are"


def test_a_sync_summary_names_what_was_made_equal_and_what_of_it_travelled():
    """The demo said `sync: 12 MiB in 5.2 s (2 MiB/s)` of two 1 GiB replicas
    made equal in 5.2 s: the bytes on the wire, most of the volume being
    zeros. The rate is now that of the replicas; the wire bytes follow."""
    from football.report import sync_phrase
    summary = {"synced_bytes": 12 << 20, "copied_bytes": 2 << 30, "sync_seconds": 5.2}
    assert sync_phrase(summary) == ("replicas of 2048 MiB synced in 5.2 s (394 MiB/s), "
                                    "12 MiB of it travelled (zeros and equal chunks do not)")
    # expand made the grown tails equal (zeros: none of it travelled)
    assert sync_phrase({"synced_bytes": 0, "copied_bytes": 64 << 20, "grown_bytes": 64 << 20,
                        "sync_seconds": 2.0}) == \
        ("grown tails of 64 MiB synced in 2.0 s (32 MiB/s), 0 MiB of it travelled (zeros and "
         "equal chunks do not)")
    # an operation that does not say what it made equal
    assert sync_phrase({"synced_bytes": 64 << 20, "sync_seconds": 2.0}) == \
        "synced 64 MiB at 32 MiB/s"
    assert sync_phrase({"synced_bytes": 0, "copied_bytes": 0, "sync_seconds": 0.0}) == \
        "synced 0 MiB at 0 MiB/s"

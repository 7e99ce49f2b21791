"""What `football migrate` and `football handover` say as they go, on the
fake fleet (tests/helpers/fakefleet.py): the heading names what the run
does (a handover moves no data; a run where the primary stays adds
replicas), and a wait names only the targets that sync."""

from pathlib import Path

from tests.helpers.fakefleet import HOMES, failing, fake_fleet, football

fleet = fake_fleet


def said(fleet, *args):
    code, events, stderr = football(fleet, *args)
    assert code == 0, stderr
    return [event["text"] for event in events if event["event"] == "message"]


def test_a_migrate_names_source_and_targets_and_waits_for_both_targets(fleet):
    primary, secondary = HOMES["cluster2"]
    lines = said(fleet, "migrate", "vm1", "cluster2")
    assert f"* migrating vm1 (320 MiB) from a1 to {primary}, {secondary}" in lines, lines
    assert f"* wait: until {primary}, {secondary} are UpToDate" in lines, lines


def test_a_handover_says_so_and_not_that_it_migrates(fleet):
    lines = said(fleet, "handover", "vm1", "a2")
    assert lines[0] == "* handover of vm1 from a1 to a2; its replicas stay (a1, a2)", lines
    assert not [line for line in lines if "migrating" in line], lines


def test_a_two_phase_migrate_waits_for_the_new_secondary_alone_after_the_handover(fleet):
    primary, secondary = HOMES["cluster2"]
    lines = said(fleet, "migrate", "--two-phase", "vm1", primary, secondary)
    waits = [line for line in lines if line.startswith("* wait:")]
    assert waits == [f"* wait: until {primary} is UpToDate",
                     f"* wait: until {secondary} is UpToDate"], lines
    assert f"* prepare: replicas on {primary}, {secondary} ({primary} holds one already)" \
        in lines, lines


def test_a_handover_asked_elsewhere_than_an_unfinished_one_names_both(fleet):
    code, _, stderr = football(fleet, "--debug-injection-point", "1", "handover", "vm1", "a2")
    assert code == 1, stderr
    code, _, stderr = football(fleet, "handover", "vm1", "a1")
    assert code == 191, stderr
    assert "vm1 has an unfinished handover to a2, a1 (steps done: none), not to a1; nothing " \
        "changed. `football handover vm1 a2` finishes it" in stderr, stderr
    assert "cleanup" not in stderr, stderr        # a handover made no replicas


def test_a_rerun_after_the_window_reports_the_downtime_of_the_run_that_had_it(fleet):
    """A screener job whose worker died after the handover: its re-run
    finds vm1 running on the target and said no downtime at all."""
    from tests.helpers.lab import MIGRATE_POINTS
    for point in ("finish:started", "cleanup:left"):
        target = "cluster2" if point == "finish:started" else "cluster1"
        code, events, stderr = football(fleet, "--debug-injection-point",
                                        str(MIGRATE_POINTS.index(point) + 1), "migrate", "vm1",
                                        target)
        assert code == 1, stderr
        (window,) = [event for event in events if event["event"] == "downtime-end"]
        code, events, stderr = football(fleet, "migrate", "vm1", target)
        assert code == 0, stderr
        summary = next(event for event in events if event["event"] == "summary")
        assert summary["downtime_seconds"] == window["downtime_seconds"] > 0, (point, summary)
        assert not [event for event in events if event["event"] == "downtime-end"]


def test_a_stalled_sync_says_why_as_the_stalled_hosts_view_does(fleet):
    """The warning and the failure said "made no progress" and the states;
    the view of the host that stalls said why."""
    why = "sync from a1 interrupted: peer 10.0.0.11:7779 did not answer within 10s"
    fleet.stalled["b2"] = why
    code, events, stderr = football(fleet, "--var", "stall_warn=0.2", "--var",
                                    "stall_timeout=0.6", "--var", "poll_interval=0.05",
                                    "migrate", "vm1", "cluster2")
    assert code == 198, stderr
    warnings = [event["text"] for event in events if event["event"] == "warning"]
    assert [text for text in warnings if "made no progress" in text and f"b2: error: {why}"
            in text], warnings
    assert f"made no progress for 0.6 s (335544320 bytes left; states {{'b1': 'UpToDate', " \
        f"'b2': 'InConsistent'}}; b2: error: {why}); check marsd and the network" in stderr, \
        stderr
    del fleet.stalled["b2"]
    code, _, stderr = football(fleet, "migrate", "vm1", "cluster2")      # it resumes
    assert code == 0, stderr


def test_a_handover_whose_lag_does_not_fall_changed_nothing_and_leaves_nothing(fleet):
    """It exited 198 and kept its journal and run lock: a later shrink or
    migrate of vm1 was refused as over an unfinished handover ("set its
    journal aside ... and remove what it made"), though nothing was made."""
    fleet.resources["vm1"].replicas["a2"].listed = 10 ** 12       # a2 far behind
    code, _, stderr = football(fleet, "--var", "lag_timeout=0.3", "--var", "poll_interval=0.05",
                               "handover", "vm1", "a2")
    assert code == 191 and "this run changed nothing: run it again once the lag is down" \
        in stderr and "nothing was stopped: vm1 runs on a1" in stderr, stderr
    assert not list(Path(fleet.state_dir, "journal").glob("*.json"))
    assert not [lock for name in fleet.hosts for lock in fleet.locks(name)]
    fleet.resources["vm1"].replicas["a2"].listed = None
    code, _, stderr = football(fleet, "handover", "vm1", "a2")
    assert code == 0, stderr


def test_a_lag_that_does_not_fall_says_why_and_that_nothing_was_stopped(fleet):
    why = "fetch from a1 interrupted: peer 10.0.0.11:7778 did not answer within 10s"
    for phase in ("prepare", "wait"):
        code, _, stderr = football(fleet, f"migrate-{phase}", "vm1", "cluster2")
        assert code == 0, stderr
    fleet.stalled["b1"] = why                       # b1 fetches nothing more: its lag grows
    code, _, stderr = football(fleet, "--var", "limit_mars_logfile=0", "--var", "lag_timeout=0.3",
                               "--var", "poll_interval=0.05", "migrate-finish", "vm1", "cluster2")
    assert code == 198, stderr
    assert f"waiting for the replication lag of vm1 on b1 to fall under 0 MiB; b1: error: {why}; " \
        "nothing was stopped: vm1 runs on a1" in stderr, stderr
    assert fleet.running("vm1") == ["a1"]


def test_a_lag_that_cannot_be_read_is_no_small_lag(fleet, monkeypatch):
    """b1's `view-work-rest` says nothing (ours, where marsd has no status
    of the replica): that counted as no lag (`int('' or 0)`), and the
    handover went on to a replica whose state nobody could tell. It waits,
    and says why."""
    for phase in ("prepare", "wait"):
        code, _, stderr = football(fleet, f"migrate-{phase}", "vm1", "cluster2")
        assert code == 0, stderr
    undo = failing(fleet, monkeypatch, lambda host, argv: host == "b1" and
                   argv[:2] == ("marsadm", "view-work-rest"), 0, "")
    code, _, stderr = football(fleet, "--var", "lag_timeout=0.3", "--var", "poll_interval=0.05",
                               "migrate-finish", "vm1", "cluster2")
    assert code == 198, stderr
    assert "waiting for the replication lag of vm1 on b1 to fall under 64 MiB" in stderr, stderr
    assert fleet.running("vm1") == ["a1"] and fleet.resources["vm1"].primary == "a1"
    undo()
    code, _, stderr = football(fleet, "migrate-finish", "vm1", "cluster2")
    assert code == 0, stderr

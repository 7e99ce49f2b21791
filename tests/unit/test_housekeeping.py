"""What a controller keeps, and for how long (football/housekeeping.py): a
worker archives finished jobs after `jobs_archive_days` (not those waiting
for an operator) and, after `history_days`, deletes archived jobs (with
their events and DBOS's records), run logs, expired plans and finished
journals; everything a run may still need stays."""

import fcntl
import json
import os
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from football.config import Config
from football.errors import Illegal
from football.housekeeping import DAY, append_line, housekeep, trim_lines
from football.planner.plan import load_plan, read_history
from football.screener import EVENTS, JOBS, JOURNALS, PLANS, QUEUES, JobStore
from tests.helpers.fakefleet import fake_fleet, football as fleet_football  # noqa: F401
from tests.helpers.jobs import ScriptedExecutor, Script, football, jobs, wait_for
from tests.unit.test_screener import finished, screener, start_worker

NOW = time.time()


def config_of(state_dir, *settings):
    return Config(variables=[f"state_dir={state_dir}", *settings], environ={})


def old_file(path, text="", days=400):
    """A file at `path` last modified `days` ago."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    stamp = NOW - days * DAY
    os.utime(path, (stamp, stamp))
    return path


def plan_text(expires):
    return json.dumps({"id": "p", "kind": "balance", "expires": expires})


def test_run_logs_expired_plans_and_finished_journals_go_after_history_days_the_rest_stays(
        tmp_path):
    state = tmp_path / "controller"
    gone = [old_file(state / "log" / "20251001-120000-status-all.log"),
            old_file(state / "log" / "20251001-120001-migrate-vm1.log"),
            old_file(state / "journal" / "migrate-vm1.done"),
            old_file(state / "plans" / "balance-20251001-120000-ab12cd.json",
                     plan_text(NOW - 380 * DAY)),
            old_file(state / "plans" / "balance-20251001-130000-unread.json", "{torn")]
    stays = [old_file(state / "log" / "20261130-120000-migrate-vm2.log", days=1),
             old_file(state / "log" / "worker.log"),                 # the worker's own
             old_file(state / "journal" / "shrink-vm3.json"),        # unfinished
             old_file(state / "journal" / "vm1.run"),                # a run's lock file
             old_file(state / "journal" / "expand-vm4.done", days=10),
             # saved long ago, still executable (a long plan_expiry)
             old_file(state / "plans" / "balance-20251001-140000-ef34ab.json",
                      plan_text(NOW + DAY)),
             old_file(state / "plans" / "moved.jsonl", '{"resource": "vm1"}\n'),
             old_file(state / "downtime.log", "vm1 0.4\n")]
    kept = housekeep(config_of(state), now=NOW)
    assert [path for path in gone if path.exists()] == []
    assert [path for path in stays if not path.exists()] == []
    assert (kept.run_logs, kept.journals, kept.plans) == (2, 1, 2)
    assert kept.said(config_of(state)) == ("removed 2 run logs, 2 expired plans, 1 finished "
                                           "journal older than 365 days (history_days)")


def test_history_days_0_keeps_everything_and_a_missing_state_dir_is_nothing_to_do(tmp_path):
    state = tmp_path / "controller"
    log = old_file(state / "log" / "20201001-120000-status-all.log", days=2000)
    kept = housekeep(config_of(state, "history_days=0"), now=NOW)
    assert log.exists() and not kept
    assert not housekeep(config_of(tmp_path / "none"), now=NOW)


# ------------------------------------------------------------------ jobs

def ended(store, job_id, days_ago, state=None):
    """Job `job_id` ended `days_ago` (in `state`)."""
    values = {"finished": NOW - days_ago * DAY, **({"state": state} if state else {})}
    with store.engine.begin() as connection:
        connection.execute(JOBS.update().where(JOBS.c.id == job_id).values(**values))


def dbos_workflows(store):
    with store.engine.connect() as connection:
        return {row[0] for row in connection.execute(sa.text(
            "SELECT workflow_uuid FROM workflow_status"))}


@pytest.fixture
def six_jobs(tmp_path):
    """Six jobs of one run that ran and ended on a worker (events, DBOS's
    records); the store of their database."""
    state = tmp_path / "controller"
    executor = ScriptedExecutor()
    worker = start_worker(state, executor)
    try:
        moves = tmp_path / "moves.csv"
        moves.write_text("resource;operation;host\n" + "".join(
            f"vm{number};handover;a2\n" for number in range(1, 7)))
        assert screener(state, "run", moves, "--max", "2")[0] == 0
        finished(state, *(f"vm{number}" for number in range(1, 7)))
    finally:
        worker.stop(timeout=10)
    store = JobStore(config_of(state))
    yield state, store
    store.close()


def test_a_worker_archives_jobs_after_jobs_archive_days_but_not_those_an_operator_must_see(
        six_jobs):
    state, store = six_jobs
    ended(store, "vm1", 40)                              # done: archived
    ended(store, "vm2", 40, "failed")                    # failed, nothing left: archived
    ended(store, "vm3", 40, "critical")                  # its container runs nowhere
    ended(store, "vm4", 40, "failed")                    # left its migrate unfinished
    with store.engine.begin() as connection:
        connection.execute(JOURNALS.insert().values(job="vm4", name="migrate-vm4",
                                                    data="{}", writes=1))
    ended(store, "vm5", 20)                              # younger than 30 days
    kept = housekeep(config_of(state), store, now=NOW)
    assert kept.archived_jobs == 2
    assert sorted(jobs(state)) == ["vm3", "vm4", "vm5", "vm6"]
    assert sorted(jobs(state, "--state", "archived")) == ["vm1", "vm2"]
    assert "archived 2 jobs that ended more than 30 days ago" in kept.said(config_of(state))
    # by hand, purge archives every finished job
    assert json.loads(screener(state, "purge", "--days", "30")[1])["jobs"] == ["vm3", "vm4"]


def test_archived_jobs_are_forgotten_after_history_days_with_their_events_and_workflows(
        six_jobs):
    state, store = six_jobs
    rows = {job["id"]: job for job in store.jobs()}
    for job_id in ("vm1", "vm2", "vm3", "vm4", "vm5", "vm6"):
        ended(store, job_id, 400 if job_id in ("vm1", "vm2", "vm3") else 100)
    assert store.archive(NOW - 50 * DAY) == ["vm1", "vm2", "vm3", "vm4", "vm5", "vm6"]
    before = dbos_workflows(store)
    assert {rows[job_id]["workflow_id"] for job_id in rows} <= before
    store.keep_plan(json.loads(plan_text(NOW - 400 * DAY)) | {"id": "old"})
    store.keep_plan(json.loads(plan_text(NOW + DAY)) | {"id": "young"})
    kept = housekeep(config_of(state, "jobs_archive_days=0"), store, now=NOW)
    assert (kept.forgotten_jobs, kept.archived_jobs, kept.plans) == (3, 0, 1)
    with store.engine.connect() as connection:
        assert [row.id for row in connection.execute(sa.select(PLANS.c.id))] == ["young"]
    assert sorted(jobs(state, "--state", "archived")) == ["vm4", "vm5", "vm6"]
    assert before - dbos_workflows(store) == {rows[f"vm{number}"]["workflow_id"]
                                              for number in (1, 2, 3)}
    with store.engine.connect() as connection:
        left = {row.job for row in connection.execute(sa.select(EVENTS.c.job).distinct())}
        queues = {row.name for row in connection.execute(sa.select(QUEUES.c.name))}
    assert left == {rows[f"vm{number}"]["number"] for number in (4, 5, 6)}
    queue = rows["vm1"]["queue"]
    assert queue in queues                               # the run's other jobs remain
    assert football("--var", f"state_dir={state}", "screener", "show", "vm1")[0] == 191
    # by hand: the rest; the run's limits go with its last job (a run
    # registered since may be about to queue its jobs: its limits stay)
    with store.engine.begin() as connection:
        connection.execute(QUEUES.update().values(registered=NOW - 100 * DAY))
    store.register_queue("run-new", 1)
    code, out, _ = screener(state, "purge", "--forget", "30")
    assert code == 0 and json.loads(out) == {"event": "archived", "jobs": [], "forgotten": 3}
    assert jobs(state, "--state", "archived") == {}
    with store.engine.connect() as connection:
        assert [row.name for row in connection.execute(sa.select(QUEUES.c.name))] == ["run-new"]
        assert connection.execute(sa.select(EVENTS.c.job)).all() == []


def test_a_worker_keeps_house_when_it_starts_and_says_what_went_once(tmp_path, monkeypatch):
    from football import screener as module

    monkeypatch.setattr(module, "HOUSEKEEPING_FIRST", 0.05)
    monkeypatch.setattr(module, "HOUSEKEEPING_EVERY", 0.05)
    state = tmp_path / "controller"
    log = old_file(state / "log" / "20251001-120000-status-all.log")
    executor = ScriptedExecutor()
    executor.scripts["vm1"] = Script()
    said = []
    worker = start_worker(state, executor, say=said.append)
    try:
        assert screener(state, "start", "handover", "vm1", "a2")[0] == 0
        finished(state, "vm1")
        store = JobStore(config_of(state))
        try:
            ended(store, "vm1", 40)
        finally:
            store.close()
        wait_for(lambda: not log.exists(), "the old run log to go")
        wait_for(lambda: not jobs(state), "the job to be archived")
    finally:
        worker.stop(timeout=10)
    # each pass says what it removed, and only then
    assert [text for text in said if "housekeeping" in text] == [
        "worker test: housekeeping: removed 1 run log older than 365 days (history_days)",
        "worker test: housekeeping: archived 1 job that ended more than 30 days ago "
        "(jobs_archive_days)"]


def test_a_worker_whose_housekeeping_fails_says_so_and_goes_on(tmp_path, monkeypatch):
    from football import screener as module

    monkeypatch.setattr(module, "HOUSEKEEPING_FIRST", 0.05)
    state = tmp_path / "controller"
    said = []

    def failing(config, store=None, now=None):
        raise PermissionError(13, "Permission denied", str(state / "log"))

    monkeypatch.setattr("football.housekeeping.housekeep", failing)
    executor = ScriptedExecutor()
    worker = start_worker(state, executor, say=said.append)
    try:
        wait_for(lambda: any("housekeeping failed" in text for text in said),
                 "the failure to be said")
        assert screener(state, "start", "handover", "vm1", "a2")[0] == 0
        assert finished(state, "vm1")["vm1"]["state"] == "done"
    finally:
        worker.stop(timeout=10)
    assert [text for text in said if "housekeeping" in text] == [
        f"worker test: housekeeping failed ([Errno 13] Permission denied: '{state / 'log'}'); "
        "again in 3600 s"]


def test_a_missing_plan_is_refused_naming_the_newest_saved_ones_not_thousands(tmp_path):
    for hour in range(12):
        old_file(tmp_path / "plans" / f"balance-20261201-{hour:02}0000-aaaaaa.json",
                 plan_text(NOW), days=1 - hour / 24)
    with pytest.raises(Illegal) as refused:
        load_plan(tmp_path, "balance-nonesuch")
    assert str(refused.value).endswith(
        "saved plans: balance-20261201-110000-aaaaaa, balance-20261201-100000-aaaaaa, "
        "balance-20261201-090000-aaaaaa, balance-20261201-080000-aaaaaa, "
        "balance-20261201-070000-aaaaaa (the newest 5 of 12)")


def test_a_controller_without_a_worker_keeps_house_from_its_commands_once_a_day(
        fake_fleet):  # noqa: F811 (a fixture)
    """An operator's machine runs no worker: its commands clear the state
    dir at most once a day (a stamp), never on a dry run; a failure is a
    warning, not a failed command."""
    state = Path(fake_fleet.state_dir)
    first = old_file(state / "log" / "20251001-120000-status-all.log")
    assert fleet_football(fake_fleet, "--dry-run", "migrate", "vm1", "b1", "b2")[0] == 0
    assert first.exists()                       # a dry run changes nothing
    code, _, stderr = fleet_football(fake_fleet, "expand", "vm1", "100m")
    assert code == 0, stderr
    assert not first.exists() and (state / "housekept").exists()
    second = old_file(state / "log" / "20251001-130000-status-all.log")
    assert fleet_football(fake_fleet, "expand", "vm1", "100m")[0] == 0
    assert second.exists()                      # done today already
    stamp = NOW - 2 * DAY
    os.utime(state / "housekept", (stamp, stamp))
    assert fleet_football(fake_fleet, "expand", "vm1", "100m")[0] == 0
    assert not second.exists()


def test_a_failed_housekeeping_is_a_warning_and_tried_again_a_day_later(tmp_path, monkeypatch):
    from football import housekeeping

    def failing(config, store=None, now=None):
        raise PermissionError(13, "Permission denied", str(tmp_path / "log"))

    monkeypatch.setattr(housekeeping, "housekeep", failing)
    warned = []
    housekeeping.now_and_then(config_of(tmp_path), warned.append)
    housekeeping.now_and_then(config_of(tmp_path), warned.append)
    assert warned == [f"housekeeping of {tmp_path} failed ([Errno 13] Permission denied: "
                      f"'{tmp_path / 'log'}'); tried again in a day"]


def test_the_moves_and_downtimes_history_loses_its_lines_older_than_history_days(tmp_path):
    """A line per move and per downtime, for years: the old ones go, the
    recent ones (the cooldown reads hours of them) and what is no record
    stay, in their order."""
    state = tmp_path / "controller"
    moved = state / "plans" / "moved.jsonl"
    lines = [json.dumps({"resource": f"vm{n}", "time": NOW - days * DAY, "from": ["a1"],
                         "to": ["b1"]}) for n, days in enumerate((400, 366, 364, 0.5))]
    old_file(moved, "\n".join(lines[:2] + ["{torn", *lines[2:]]) + "\n", days=0)
    downtime = old_file(state / "downtime.log", json.dumps({"time": NOW - 500 * DAY}) + "\n" +
                        json.dumps({"time": NOW}) + "\n", days=0)
    kept = housekeep(config_of(state), now=NOW)
    assert moved.read_text().splitlines() == ["{torn", *lines[2:]]
    assert downtime.read_text().splitlines() == [json.dumps({"time": NOW})]
    assert kept.history_lines == 3
    assert "3 history lines older than 365 days" in kept.said(config_of(state))
    assert [move.resource for move in read_history(state)] == ["vm2", "vm3"]


def test_a_line_appended_while_the_history_is_trimmed_is_kept(tmp_path):
    """An append waits for the trim's lock and goes into the new file."""
    path = tmp_path / "moved.jsonl"
    path.write_text(json.dumps({"time": NOW - 400 * DAY}) + "\n")
    appended = threading.Event()
    with open(path, "r+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)       # as trim_lines holds it while it rewrites
        writer = threading.Thread(target=lambda: (append_line(path, '{"time": 1e12}'),
                                                  appended.set()))
        writer.start()
        assert not appended.wait(0.2), "the append did not wait for the lock"
        path.with_suffix(".new").write_text("")
        os.replace(path.with_suffix(".new"), path)     # the trim's new file, then unlock
    writer.join(timeout=10)
    assert appended.is_set() and path.read_text() == '{"time": 1e12}\n'
    assert trim_lines(path, NOW) == 0


def test_a_runs_log_is_named_after_its_arguments_inside_the_state_dir_whatever_they_are(
        fake_fleet, tmp_path):  # noqa: F811 (the fixture imported above)
    """The log was opened before the resource name was checked: a mistyped
    or hostile name (`../../../escaped/x`) made a file outside the state dir,
    though the command was refused."""
    code, _, stderr = fleet_football(fake_fleet, "--dry-run", "migrate", "../../../escaped/x", "b1")
    assert code == 191 and "invalid resource name" in stderr, stderr
    assert not (tmp_path / "escaped").exists()
    logs = [path.name for path in (Path(fake_fleet.state_dir) / "log").iterdir()]
    assert len(logs) == 1 and logs[0].endswith("-migrate-.._.._.._escaped_x.log"), logs

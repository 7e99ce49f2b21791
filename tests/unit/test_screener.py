"""The screener (football/screener.py) on DBOS with SQLite in the test's
tmp dir: jobs queued by `football screener start|run`, run by a worker in
this process — through a scripted executor (events and exit codes as a
test wants them) or through the football command line against the fake
fleet — their states, events, limits, and what is refused."""

import json
import threading
from types import SimpleNamespace

import pytest

from football.config import Config
from football.transport import Result
from football.jobdb import FINISHED, STATES
from football.screener import (JobSpec, JobStore, Worker, _with_rate, facts_of, partition_by_slot,
                               progress_text, shown_state, state_of_exit)
from tests.helpers.fakefleet import assert_placed
from tests.helpers.fakefleet import fake_fleet  # noqa: F401 (a fixture)
from tests.helpers.jobs import (InProcessFootball, Script, ScriptedExecutor, events_of, refused,
                                football, jobs, stored_jobs, wait_for)

POLL = "jobs_poll_interval=0.05"


@pytest.fixture
def state_dir(tmp_path):
    return tmp_path / "controller"


def screener(state_dir, *args):
    """`football --json screener <args>` on the jobs' database of `state_dir`."""
    return football("--json", "--var", f"state_dir={state_dir}", "--var", POLL, "screener",
                    *args)


def start_worker(state_dir, executor, worker_id="test", settings=(), say=None):
    worker = Worker(Config(variables=[f"state_dir={state_dir}", POLL, *settings]), worker_id,
                    executor, say=say)
    worker.start()
    return worker


@pytest.fixture
def scripted(state_dir):
    """A worker in this process whose jobs do what `executor.scripts` say."""
    executor = ScriptedExecutor()
    worker = start_worker(state_dir, executor)
    yield executor
    worker.stop(timeout=10)


def finished(state_dir, *ids):
    """The jobs once all of `ids` are finished."""
    return wait_for(lambda: (lambda now: now if all(
        now.get(job_id, {}).get("state") in FINISHED for job_id in ids) else None)(
        jobs(state_dir)), f"jobs {', '.join(ids)} to finish")


# ------------------------------------------------------------------ states

@pytest.mark.parametrize("code, state", [(0, "done"), (191, "illegal"), (190, "interrupted"),
                                         (198, "serious"), (199, "critical"),
                                         (195, "timeouted"), (1, "failed"), (137, "failed")])
def test_a_finished_jobs_state_is_its_operations_exit_code(code, state):
    assert state_of_exit(code) == state
    assert state in STATES


def test_events_set_the_phase_message_progress_waits_and_downtime_of_a_job():
    assert facts_of({"event": "phase", "phase": "wait"}) == {"phase": "wait", "state": "running"}
    assert facts_of({"event": "wait", "state": "condition", "reasons": ["a sync slot on b1"]}) \
        == {"state": "condition", "message": "waiting: a sync slot on b1"}
    assert facts_of({"event": "wait-end"}) == {"state": "running"}
    assert json.loads(facts_of({"event": "progress", "what": "sync", "done": 5,
                                "total": 10})["progress"]) == {"what": "sync", "done": 5,
                                                               "total": 10}
    assert facts_of({"event": "summary", "downtime_seconds": 1.5}) == {"downtime": 1.5}
    assert facts_of({"event": "downtime-end", "host": "b1"}) == {"location": "b1"}
    assert facts_of({"event": "injection-point", "number": 3}) == {}


def test_progress_shows_percent_and_an_eta_from_the_rate_since_its_first_report():
    first = _with_rate(json.dumps({"what": "sync", "done": 0, "total": 1000}), None, 100.0)
    assert progress_text(first) == "0%"
    later = _with_rate(json.dumps({"what": "sync", "done": 250, "total": 1000}), first, 110.0)
    assert progress_text(later) == "25% ETA 30s"         # 25/s, 750 left
    slow = _with_rate(json.dumps({"what": "sync", "done": 500, "total": 1000}), later, 200.0)
    assert progress_text(slow) == "50% ETA 1m40s"
    other = _with_rate(json.dumps({"what": "copy", "done": 10, "total": 20}), slow, 210.0)
    assert progress_text(other) == "50%"                # a new `what` starts its own rate
    assert progress_text(None) == "-"


def test_a_running_job_without_an_event_for_session_timeout_shows_as_timeouted():
    job = {"state": "running", "last_event": 1000.0, "started": 900.0, "created": 800.0,
           "archived": False}
    assert shown_state(job, 60, now=1059) == "running"
    assert shown_state(job, 60, now=1061) == "timeouted"
    assert shown_state(dict(job, state="done"), 60, now=99999) == "done"
    # a job that waits saying why is no time-out: business hours overnight, a
    # host's slots held by hours of syncs (`kill --state timeouted` killed them)
    for waiting in ("waiting", "condition", "delayed"):
        assert shown_state(dict(job, state=waiting), 60, now=99999) == waiting


# -------------------------------------------------------------- lifecycle

def test_a_started_job_runs_on_the_worker_and_ends_done_with_its_events(state_dir, scripted):
    scripted.scripts["vm1"] = Script([{"event": "phase", "phase": "prepare"},
                                      {"event": "message", "text": "vm1: joining b1"},
                                      {"event": "summary", "resource": "vm1",
                                       "downtime_seconds": 0.75, "phases": {"prepare": 1.2}}])
    code, out, err = screener(state_dir, "start", "migrate", "vm1", "cluster2")
    assert code == 0, err
    assert json.loads(out) == {"event": "queued", "job": "vm1",
                               "command": ["migrate", "vm1", "cluster2"]}
    job = finished(state_dir, "vm1")["vm1"]
    assert (job["state"], job["exit_code"], job["phase"], job["downtime"]) == \
        ("done", 0, "prepare", 0.75)
    assert job["message"] == "vm1: joining b1"
    assert job["args"][-3:] == ["migrate", "vm1", "cluster2"]
    kinds = [event["event"] for event in events_of(state_dir, "vm1")]
    assert kinds == ["job-start", "phase", "message", "summary", "job-end"]
    code, out, err = football("--var", f"state_dir={state_dir}", "screener", "show", "vm1")
    assert code == 0, err
    assert "vm1: joining b1" in out and out.strip().endswith("result: done (exit 0)")
    # as a foreground run says it
    assert "summary: vm1: downtime 0.75 s; phases: prepare 1.2 s\n" in out


@pytest.mark.parametrize("code, state", [(198, "serious"), (191, "illegal")])
def test_a_failed_operation_gives_its_job_the_state_of_its_exit_code(state_dir, scripted,
                                                                     code, state):
    scripted.scripts["vm1"] = Script([{"event": "warning", "text": "it broke"}], code=code)
    assert screener(state_dir, "start", "handover", "vm1", "a2")[0] == 0
    job = finished(state_dir, "vm1")["vm1"]
    assert (job["state"], job["exit_code"], job["message"]) == (state, code, "warning: it broke")


def test_a_jobs_log_keeps_its_first_and_last_progress_and_one_a_minute_its_row_the_latest(
        state_dir, scripted):
    """A sync reports its progress every second: 20,000 events of one 4 TiB
    sync, and a thousand jobs' logs grew by millions of rows that `show`
    does not print. The log keeps a kind's first and last progress and one
    per PROGRESS_KEPT_EVERY (60 s); the row always has the latest."""
    scripted.scripts["vm1"] = Script(
        [{"event": "progress", "what": "sync", "done": done, "total": 40} for done in range(30)]
        + [{"event": "progress", "what": "copy", "done": 1, "total": 9}],
        gate=threading.Event())
    assert screener(state_dir, "start", "migrate", "vm1", "b1")[0] == 0
    job = wait_for(lambda: (lambda job: job if job["progress"] and job["progress"]["what"] ==
                            "copy" else None)(jobs(state_dir)["vm1"]), "vm1's copy progress")
    assert (job["progress"]["done"], job["progress"]["total"]) == (1, 9)      # the latest
    scripted.scripts["vm1"].after = [{"event": "progress", "what": "sync", "done": 40,
                                      "total": 40}]
    scripted.scripts["vm1"].gate.set()
    finished(state_dir, "vm1")
    kept = [(event["what"], event["done"]) for event in events_of(state_dir, "vm1")
            if event["event"] == "progress"]
    assert kept == [("sync", 0), ("copy", 1), ("sync", 40)]
    code, out, _ = screener(state_dir, "list")
    assert json.loads(out.splitlines()[0])["progress"]["done"] == 40


def test_a_second_start_for_a_resource_with_a_job_is_refused_with_191(state_dir, scripted):
    gate = threading.Event()
    scripted.scripts["vm1"] = Script(gate=gate)
    assert screener(state_dir, "start", "migrate", "vm1", "cluster2")[0] == 0
    code, out, err = screener(state_dir, "start", "--id", "vm1", "handover", "vm1", "a2")
    assert code == 191 and "vm1 has a job already" in err and refused(out)
    gate.set()
    finished(state_dir, "vm1")
    # finished is not archived: still refused (purge archives, later)
    assert screener(state_dir, "start", "handover", "vm1", "a2")[0] == 191
    assert list(jobs(state_dir)) == ["vm1"]


def test_a_resource_with_a_live_job_under_another_id_gets_no_second_one(state_dir, scripted,
                                                                         tmp_path):
    """The one-job-per-resource check went by job id: a job started with
    `--id move-vm1` (or a planner's `balance-...-vm1`) and a second
    `start`, or a `run` of a CSV naming vm1, were both queued, and both
    moved vm1 — the second to another target."""
    gate = threading.Event()
    scripted.scripts["vm1"] = Script(gate=gate)
    assert screener(state_dir, "start", "--id", "move-vm1", "migrate", "vm1", "cluster2")[0] == 0
    for args in (["start", "migrate", "vm1", "b2"],
                 ["--dry-run", "start", "migrate", "vm1", "b2"]):
        code, out, err = football("--var", f"state_dir={state_dir}", "--var", POLL,
                                  *args[:-4], "screener", *args[-4:])
        assert code == 191 and "vm1 has a job already" in err, (args, err)
    moves = tmp_path / "moves.csv"
    moves.write_text("resource;operation;target\nvm1;migrate;b2\n")
    code, out, err = screener(state_dir, "run", str(moves))
    assert code == 0, err
    assert [json.loads(line)["event"] for line in out.splitlines()][:1] == ["skipped"], out
    assert list(jobs(state_dir)) == ["move-vm1"]
    gate.set()
    finished(state_dir, "move-vm1")


def test_a_job_at_a_limit_shows_as_condition_until_its_wait_ends(state_dir, scripted):
    gate = threading.Event()
    scripted.scripts["vm1"] = Script(
        [{"event": "phase", "phase": "prepare"},
         {"event": "wait", "state": "condition", "reasons": ["a sync slot on b1 (4)"]}],
        gate=gate, after=[{"event": "wait-end"}, {"event": "phase", "phase": "wait"}])
    assert screener(state_dir, "start", "migrate", "vm1", "b1")[0] == 0
    job = wait_for(lambda: jobs(state_dir)["vm1"]["state"] == "condition" and
                   jobs(state_dir)["vm1"], "vm1 at its limit")
    assert job["message"] == "waiting: a sync slot on b1 (4)"
    gate.set()
    job = finished(state_dir, "vm1")["vm1"]
    assert (job["state"], job["phase"]) == ("done", "wait")


def test_bad_arguments_are_refused_before_anything_is_queued(state_dir):
    for args, message in [(("migrat", "vm1", "b1"), "unknown operation 'migrat'"),
                          (("migrate", "vm1"), "football migrate vm1: Missing argument "
                                               "'TARGET'; nothing was queued"),
                          (("migrate", "vm/1", "b1"), "vm/1"),
                          (("expand", "vm1", "1", "2"), "unexpected extra argument"),
                          (("vm1", "migrate", "b1"), "unknown operation 'vm1' (the operation "
                                                     "comes first: migrate vm1 b1)")]:
        code, _, err = screener(state_dir, "start", *args)
        assert code == 191 and message in err, (args, err)
    assert jobs(state_dir) == {}


def test_start_without_a_worker_queues_the_job_and_says_how_to_start_one(state_dir):
    code, out, err = screener(state_dir, "start", "migrate", "vm1", "cluster2")
    assert code == 0 and json.loads(out)["job"] == "vm1"
    assert "no worker is running" in err and "football worker" in err
    assert jobs(state_dir)["vm1"]["state"] == "queued"


# ------------------------------------------------------------------- runs

MOVES = """resource;operation;target;customer
vm1;migrate;b1;acme
vm2;migrate;b1;acme
vm3;migrate;b2;acme
vm4;migrate;b2;other
vm5;handover;a2;acme
vm6;migrate;a1;acme
"""


def test_a_run_holds_its_limits_per_run_and_per_column(state_dir, scripted, tmp_path):
    moves = tmp_path / "moves.csv"
    moves.write_text(MOVES)
    for number in range(1, 7):
        scripted.scripts[f"vm{number}"] = Script(seconds=0.3)
    code, out, err = screener(state_dir, "run", moves, "--max", "2", "--max-per", "target=1")
    assert code == 0, err
    queued = [json.loads(line) for line in out.splitlines()]
    assert [event["job"] for event in queued] == [f"vm{number}" for number in range(1, 7)]
    assert {event["partition"] for event in queued} == {"b1", "b2", "a2", "a1"}
    done = finished(state_dir, *[f"vm{number}" for number in range(1, 7)])
    assert {job["state"] for job in done.values()} == {"done"}
    target = {row.split(";")[0]: row.split(";")[2] for row in MOVES.splitlines()[1:]}
    for running in scripted.alongside:
        assert len(running) <= 2, running
        assert len({target[res] for res in running}) == len(running), running
    assert max(map(len, scripted.alongside)) == 2      # the limits allowed two


def test_a_run_queues_only_the_filtered_rows_and_skips_resources_that_have_a_job(
        state_dir, scripted, tmp_path):
    moves = tmp_path / "moves.csv"
    moves.write_text(MOVES)
    assert screener(state_dir, "start", "migrate", "vm1", "b2")[0] == 0
    code, out, err = screener(state_dir, "run", moves, "--customer==acme", "--target=~^b")
    assert code == 0, err
    said = [json.loads(line) for line in out.splitlines()]
    assert [(event["event"], event["job"]) for event in said] == [
        ("skipped", "vm1"), ("queued", "vm2"), ("queued", "vm3")]
    finished(state_dir, "vm1", "vm2", "vm3")
    assert sorted(jobs(state_dir)) == ["vm1", "vm2", "vm3"]


def test_a_filter_on_a_column_named_like_an_option_of_run_is_a_filter(state_dir, tmp_path):
    """`--gate==yes` (gate is a documented column) was refused as "Option
    '--gate' does not take a value"; `--max==2` as a bad --max."""
    moves = tmp_path / "moves.csv"
    moves.write_text("resource;operation;target;gate;max\nvm1;migrate;b1;yes;1\n"
                     "vm2;migrate;b1;no;2\n")
    code, out, err = football("--var", f"state_dir={state_dir}", "--dry-run", "screener", "run",
                              moves, "--gate==no", "--max", "3", "--max==2")
    assert code == 0, err
    assert "vm2: would queue" in out and "vm1:" not in out, out
    assert "at most 3 at once" in out


def test_a_dry_run_says_what_it_would_queue_and_queues_nothing(state_dir, tmp_path):
    moves = tmp_path / "moves.csv"
    moves.write_text(MOVES)
    code, out, err = football("--var", f"state_dir={state_dir}", "screener", "run", moves,
                              "--max", "2", "--dry-run", "--customer==other")
    assert code == 0, err
    assert "vm4: would queue: migrate vm4 b2" in out
    assert "1 job(s) would be queued (queue run-moves-" in out and "at most 2 at once" in out
    assert jobs(state_dir) == {}


def test_a_dry_run_names_the_partition_of_each_job_that_waits_for_a_host_slot(state_dir, tmp_path):
    moves = tmp_path / "moves.csv"
    moves.write_text("resource;operation;target;size\nvm1;migrate;b1;\nvm2;migrate;cluster2;\n"
                     "vm3;expand;;2G\n")
    code, out, err = football("--inventory", four_hosts(tmp_path), "--var",
                              f"state_dir={state_dir}", "screener", "run", moves, "--dry-run")
    assert code == 0, err
    assert out.splitlines()[:3] == [
        "vm1: would queue: migrate vm1 b1 (partition sync into b1)",
        "vm2: would queue: migrate vm2 cluster2 (partition sync into cluster2)",
        "vm3: would queue: expand vm3 2G"]
    assert "at most 4 per host slot (limit_syncs))" in out
    assert jobs(state_dir) == {}


@pytest.mark.parametrize("text, options, message", [
    ("operation;target\nmigrate;b1\n", (), "no 'resource' column"),
    ("resource;operation;target\nvm1;migrate;b1\nvm2;migrat;b1\n", (),
     "line 3: unknown operation 'migrat'"),
    (MOVES, ("--target=b1",), "is not a filter"),
    (MOVES, ("--nosuch==1",), "no column 'nosuch'"),
    (MOVES, ("--max-per", "nosuch=1"), "no column 'nosuch'"),
    ("resource;operation;args\nvm1;expand;1 2\n", (), "line 2: football expand vm1 1 2"),
])
def test_a_bad_run_file_is_one_line_exit_191_and_nothing_queued(state_dir, tmp_path, text,
                                                                  options, message):
    moves = tmp_path / "moves.csv"
    moves.write_text(text)
    code, out, err = screener(state_dir, "run", moves, *options)
    assert code == 191, (out, err)
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert refused(out), out
    assert jobs(state_dir) == {}


# ---------------------------------------------------- on the fake fleet

def test_jobs_run_real_operations_on_the_fake_fleet(fake_fleet, state_dir, tmp_path):  # noqa: F811
    fleet = fake_fleet
    fleet.create_resource("vm2", "a1", ["a2"])
    worker = start_worker(state_dir, InProcessFootball())
    try:
        moves = tmp_path / "moves.csv"
        moves.write_text("resource,operation,target\nvm1,migrate,cluster2\nvm2,handover,a2\n")
        code, _, err = football("--inventory", fleet.inventory_path, "--json",
                                "--var", f"state_dir={state_dir}", "--var", POLL,
                                "--var", "poll_interval=0", "screener", "run", moves)
        assert code == 0, err
        done = finished(state_dir, "vm1", "vm2")
    finally:
        worker.stop(timeout=10)
    assert {job_id: job["state"] for job_id, job in done.items()} == \
        {"vm1": "done", "vm2": "done"}, [events_of(state_dir, "vm1")[-5:]]
    assert_placed(fleet, "b1", ["b2"])
    assert fleet.resources["vm2"].primary == "a2" and fleet.running("vm2") == ["a2"]
    assert done["vm1"]["location"] == "b1" and done["vm1"]["downtime"] is not None
    phases = [event["phase"] for event in events_of(state_dir, "vm1")
              if event["event"] == "phase"]
    assert phases == ["prepare", "wait", "finish", "cleanup"]


def test_a_job_failed_by_an_injected_fault_ends_done_when_restarted(fake_fleet, state_dir,  # noqa: F811
                                                                    monkeypatch):
    fleet, faults = fake_fleet, []
    run_for_real = fleet.run

    def run(name, argv, input=None):     # b1's first join-resource fails
        if tuple(argv[:2]) == ("marsadm", "join-resource") and name == "b1" and not faults:
            faults.append(name)
            return Result(name, tuple(argv), 1, "", "marsadm: injected fault\n")
        return run_for_real(name, argv, input)

    monkeypatch.setattr(fleet, "run", run)
    options = ("--inventory", fleet.inventory_path, "--json", "--var", f"state_dir={state_dir}",
               "--var", POLL, "--var", "poll_interval=0", "screener")
    worker = start_worker(state_dir, InProcessFootball())
    try:
        code, _, err = football(*options, "start", "migrate", "vm1", "b1", "b2")
        assert code == 0, err
        failed = finished(state_dir, "vm1")["vm1"]
        assert failed["state"] in ("failed", "serious") and faults == ["b1"], failed
        code, _, err = football(*options, "restart", "vm1")
        assert code == 0, err
        done = finished(state_dir, "vm1")["vm1"]
    finally:
        worker.stop(timeout=10)
    assert done["state"] == "done", events_of(state_dir, "vm1")[-5:]
    assert_placed(fleet, "b1", ["b2"])


def test_a_job_running_when_its_worker_stops_resumes_on_the_next_worker(state_dir):
    first_run = threading.Event()
    runs = []

    class Interruptible(ScriptedExecutor):
        def run(self, number, args, on_event, on_start):
            runs.append(number)
            on_event({"event": "phase", "phase": "wait"})
            if len(runs) == 1:
                first_run.set()
                self.interrupted.wait(30)
                on_event({"event": "message", "text": "interrupted"})
                return 190
            return 0

    executor = Interruptible()
    executor.interrupted = threading.Event()
    executor.interrupt = executor.interrupted.set
    worker = start_worker(state_dir, executor, "w1")
    assert screener(state_dir, "start", "migrate", "vm1", "cluster2")[0] == 0
    assert first_run.wait(30)
    worker.stop(timeout=10)
    job = jobs(state_dir)["vm1"]
    assert (job["state"], job["exit_code"], job["message"]) == ("running", None, "interrupted")
    worker = start_worker(state_dir, executor, "w1")     # recovers what w1 left pending
    try:
        job = finished(state_dir, "vm1")["vm1"]
    finally:
        worker.stop(timeout=10)
    assert (job["state"], len(runs)) == ("done", 2)
    kinds = [event["event"] for event in events_of(state_dir, "vm1")]
    assert kinds.count("job-start") == 2 and kinds.count("job-end") == 1


def test_a_failed_job_restarted_runs_again_and_the_failed_one_is_archived(state_dir, scripted):
    scripted.scripts["vm1"] = Script([{"event": "warning", "text": "sync stalled"}], code=1)
    assert screener(state_dir, "start", "handover", "vm1", "a2")[0] == 0
    assert finished(state_dir, "vm1")["vm1"]["state"] == "failed"
    scripted.scripts["vm1"] = Script([{"event": "message", "text": "resumed"}])
    code, out, err = screener(state_dir, "restart", "vm1")
    assert code == 0 and json.loads(out) == {"event": "queued", "job": "vm1"}, err
    job = finished(state_dir, "vm1")["vm1"]
    assert (job["state"], job["message"]) == ("done", "resumed")
    assert job["args"][-3:] == ["handover", "vm1", "a2"] and job["queue"] == "jobs"
    archived = jobs(state_dir, "--state", "archived")["vm1"]
    assert (archived["state"], archived["exit_code"]) == ("archived", 1)
    assert [event["event"] for event in events_of(state_dir, "vm1")].count("job-start") == 1


def test_restart_refuses_a_done_and_an_unknown_job(state_dir, scripted):
    assert screener(state_dir, "start", "handover", "vm1", "a2")[0] == 0
    finished(state_dir, "vm1")
    code, _, err = screener(state_dir, "restart", "vm1")
    assert code == 191 and "it is done" in err
    code, _, err = screener(state_dir, "restart", "vm9")
    assert code == 191 and "no job 'vm9'" in err


def test_purge_archives_old_finished_jobs_so_their_resources_may_get_new_ones(state_dir,
                                                                              scripted):
    gate = threading.Event()
    scripted.scripts["vm2"] = Script(gate=gate)
    assert screener(state_dir, "start", "handover", "vm1", "a2")[0] == 0
    assert screener(state_dir, "start", "handover", "vm2", "a2")[0] == 0
    finished(state_dir, "vm1")
    assert json.loads(screener(state_dir, "purge", "--days", "1")[1])["jobs"] == []
    assert json.loads(screener(state_dir, "purge", "--days", "0")[1])["jobs"] == ["vm1"]
    assert list(jobs(state_dir)) == ["vm2"]                 # running: not archived
    assert screener(state_dir, "start", "handover", "vm1", "a1")[0] == 0
    gate.set()
    assert {job["state"] for job in finished(state_dir, "vm1", "vm2").values()} == {"done"}


def test_the_screeners_commands_under_dry_run_say_what_they_would_do_and_change_nothing(
        state_dir, scripted):
    """`football --dry-run screener start|kill|restart|purge` queued, killed,
    restarted and archived for real: a dry run that acts."""
    gate = threading.Event()
    scripted.scripts["vm1"] = Script([{"event": "phase", "phase": "wait"}], gate=gate)
    scripted.scripts["vm2"] = Script([{"event": "warning", "text": "it broke"}], code=1)
    code, out, err = screener(state_dir, "--dry-run", "start", "migrate", "vm1", "cluster2")
    assert code == 0, err
    assert [json.loads(line)["event"] for line in out.splitlines()] == ["would-queue"]
    assert jobs(state_dir) == {}
    assert screener(state_dir, "start", "migrate", "vm1", "cluster2")[0] == 0
    assert screener(state_dir, "start", "handover", "vm2", "a2")[0] == 0
    wait_for(lambda: jobs(state_dir)["vm1"]["phase"] == "wait", "vm1 running")
    assert finished(state_dir, "vm2")["vm2"]["state"] == "failed"
    # a job that exists is refused as without --dry-run, the refusal an event too
    code, out, err = screener(state_dir, "--dry-run", "start", "handover", "vm1", "a2")
    assert code == 191 and "vm1 has a job already" in err
    assert json.loads(out.splitlines()[-1])["event"] == "failed"
    code, out, err = screener(state_dir, "--dry-run", "kill", "vm1")
    assert code == 0 and json.loads(out)["event"] == "would-kill", err
    code, out, err = screener(state_dir, "--dry-run", "restart", "vm2")
    assert code == 0 and json.loads(out)["event"] == "would-queue", err
    code, out, err = screener(state_dir, "--dry-run", "purge", "--days", "0", "--forget", "0")
    assert code == 0 and json.loads(out) == {"event": "would-archive", "jobs": ["vm2"],
                                             "forgotten": 0}, err
    now = jobs(state_dir)
    assert (now["vm1"]["state"], now["vm2"]["state"]) == ("running", "failed")
    assert jobs(state_dir, "--state", "archived") == {}
    gate.set()
    assert finished(state_dir, "vm1")["vm1"]["state"] == "done"


def test_a_killed_running_job_is_interrupted_as_by_ctrl_c_and_can_be_restarted(state_dir,
                                                                             scripted):
    gate = threading.Event()
    scripted.scripts["vm1"] = Script([{"event": "phase", "phase": "wait"}], gate=gate)
    assert screener(state_dir, "start", "migrate", "vm1", "cluster2")[0] == 0
    wait_for(lambda: jobs(state_dir)["vm1"]["phase"] == "wait", "vm1 running")
    code, out, err = screener(state_dir, "kill", "vm1")
    assert code == 0 and json.loads(out) == {"event": "killed", "job": "vm1",
                                             "cancelled": False}, err
    job = finished(state_dir, "vm1")["vm1"]
    assert (job["state"], job["exit_code"]) == ("interrupted", 190)
    code, _, err = screener(state_dir, "kill", "vm1")
    assert code == 191 and "interrupted already" in err
    scripted.scripts["vm1"] = Script()
    assert screener(state_dir, "restart", "vm1")[0] == 0
    assert finished(state_dir, "vm1")["vm1"]["state"] == "done"


def test_a_job_running_without_an_event_for_session_timeout_is_interrupted_and_ends_timeouted(
        state_dir):
    """A hung operation (a host command that never returns) is interrupted
    as by `kill` and its job ends `timeouted` (195), said in its message and
    the worker's log; one that waits saying why (`condition`) is left alone,
    however long it waits."""
    executor, said = ScriptedExecutor(), []
    worker = start_worker(state_dir, executor, settings=["session_timeout=0.5"],
                          say=said.append)
    try:
        waits = threading.Event()
        executor.scripts["vm2"] = Script([{"event": "wait", "state": "condition",
                                           "reasons": ["a sync slot on b1"]}], gate=waits)
        executor.scripts["vm1"] = Script([{"event": "phase", "phase": "wait"}],
                                         gate=threading.Event())
        assert screener(state_dir, "start", "migrate", "vm2", "cluster2")[0] == 0
        wait_for(lambda: jobs(state_dir)["vm2"]["state"] == "condition", "vm2 waiting")
        assert screener(state_dir, "start", "migrate", "vm1", "cluster2")[0] == 0
        job = finished(state_dir, "vm1")["vm1"]
        assert (job["state"], job["exit_code"]) == ("timeouted", 195)
        assert job["message"].startswith("warning: no event for 0.5 s (session_timeout): "
                                         "the operation is interrupted"), job["message"]
        assert any("no event for 0.5 s" in line for line in said), said
        assert jobs(state_dir)["vm2"]["state"] == "condition"
        waits.set()
        assert finished(state_dir, "vm2")["vm2"]["state"] == "done"
    finally:
        worker.stop(timeout=10)


def test_a_killed_queued_job_never_runs(state_dir, scripted, tmp_path):
    gate = threading.Event()
    scripted.scripts["vm1"] = Script(gate=gate)
    moves = tmp_path / "moves.csv"
    moves.write_text("resource;operation;host\nvm1;handover;a2\nvm2;handover;a2\n")
    assert screener(state_dir, "run", moves, "--max", "1")[0] == 0
    wait_for(lambda: jobs(state_dir)["vm1"]["state"] == "running", "vm1 running")
    code, out, err = screener(state_dir, "kill", "vm2")
    assert code == 0 and json.loads(out)["cancelled"] is True, err
    gate.set()
    assert finished(state_dir, "vm1")["vm1"]["state"] == "done"
    job = jobs(state_dir)["vm2"]
    assert (job["state"], job["message"]) == ("interrupted", "killed before it started")
    assert scripted.ran == ["vm1"]


def test_kill_of_a_run_stops_it_the_queued_never_begin_the_running_are_interrupted(
        state_dir, scripted, tmp_path):
    """An operator stops a run of hundreds of jobs with one command, not by
    listing their IDs; `list --run` shows one run's jobs."""
    for number in range(1, 5):
        scripted.scripts[f"vm{number}"] = Script(gate=threading.Event())
    scripted.scripts["vm9"] = Script(gate=threading.Event())
    moves = tmp_path / "moves.csv"
    moves.write_text("resource;operation;host\n" +
                     "".join(f"vm{number};handover;a2\n" for number in range(1, 5)))
    assert screener(state_dir, "run", moves, "--max", "2")[0] == 0
    assert screener(state_dir, "start", "handover", "vm9", "a2")[0] == 0    # not of the run
    wait_for(lambda: len(scripted.running) == 3, "two jobs of the run and vm9 to run")
    code, out, _ = screener(state_dir, "list", "--run", "moves.csv")
    assert sorted(json.loads(line)["id"] for line in out.splitlines()) == \
        ["vm1", "vm2", "vm3", "vm4"]
    running = sorted(res for res in scripted.running if res != "vm9")
    code, out, err = screener(state_dir, "kill", "--run", "moves.csv")
    assert code == 0, err
    killed = [json.loads(line) for line in out.splitlines()]
    assert [event["cancelled"] for event in killed] == [True, True, False, False]
    assert sorted(event["job"] for event in killed[2:]) == running
    done = finished(state_dir, "vm1", "vm2", "vm3", "vm4")
    assert {done[res]["state"] for res in ("vm1", "vm2", "vm3", "vm4")} == {"interrupted"}
    assert sorted(set(scripted.ran) - {"vm9"}) == running       # the queued never began
    assert jobs(state_dir)["vm9"]["state"] == "running"
    scripted.scripts["vm9"].gate.set()
    assert finished(state_dir, "vm9")["vm9"]["state"] == "done"


def test_restart_of_a_run_queues_again_its_jobs_that_did_not_end_done(state_dir, scripted,
                                                                      tmp_path):
    """`restart --run` (or `--state failed`) is the retry of a mass run:
    only the jobs that did not end done."""
    scripted.scripts.update(vm1=Script(code=1), vm2=Script(), vm3=Script(code=198))
    moves = tmp_path / "moves.csv"
    moves.write_text("resource;operation;host\nvm1;handover;a2\nvm2;handover;a2\n"
                     "vm3;handover;a2\n")
    assert screener(state_dir, "run", moves)[0] == 0
    assert [job["state"] for job in finished(state_dir, "vm1", "vm2", "vm3").values()] == \
        ["failed", "done", "serious"]               # (the only jobs)
    scripted.scripts.update(vm1=Script(), vm3=Script())
    code, out, err = screener(state_dir, "restart", "--run", "moves.csv")
    assert code == 0, err
    assert [json.loads(line)["job"] for line in out.splitlines()] == ["vm1", "vm3"]
    assert {job["state"] for job in finished(state_dir, "vm1", "vm2", "vm3").values()} == \
        {"done"}
    code, out, err = football("--var", f"state_dir={state_dir}", "screener", "restart",
                              "--state", "failed")
    assert (code, out) == (0, "no job to restart\n"), err


def test_a_kill_or_restart_with_a_bad_job_in_its_selection_changes_nothing(state_dir, scripted,
                                                                          tmp_path):
    """Before, `kill vm1 vm9` killed vm1, then failed on vm9 (191) without
    saying that vm1 was killed."""
    scripted.scripts["vm1"] = Script(gate=threading.Event())
    assert screener(state_dir, "start", "handover", "vm1", "a2")[0] == 0
    assert screener(state_dir, "start", "handover", "vm2", "a2")[0] == 0
    assert finished(state_dir, "vm2")["vm2"]["state"] == "done"
    wait_for(lambda: scripted.running == ["vm1"], "vm1 to run")
    for args, said in [
            (("kill", "vm1", "vm9"), "no job 'vm9'; nothing was killed"),
            (("kill", "vm1", "vm2"), "job vm2 is not killed: it is done already; nothing was "
                                     "killed"),
            (("restart", "vm2", "vm1"), "job vm2 is not restarted: it is done; job vm1 is not "
                                        "restarted: it is running: only a finished job is "
                                        "restarted; nothing was restarted"),
            (("kill", "vm1", "--run", "moves.csv"), "give job IDs or --run/--state, not both"),
            (("kill",), "which jobs? give their IDs, --run RUN or --state STATE"),
            (("kill", "--run", "nosuch.csv"), "no run 'nosuch.csv' among the jobs (runs: none)"),
            (("restart", "--state", "broken"), "--state 'broken': one of queued")]:
        code, out, err = screener(state_dir, *args)
        assert code == 191 and refused(out), (args, out, err)
        assert said in err, (args, err)
    assert jobs(state_dir)["vm1"]["state"] == "running" and not scripted.killed
    scripted.scripts["vm1"].gate.set()
    assert finished(state_dir, "vm1")["vm1"]["state"] == "done"


def test_a_jobs_database_made_by_another_process_meanwhile_is_used_and_other_errors_are_not(
        state_dir, monkeypatch):
    """CI: a worker and `screener start` opened a new database at once; both
    found the tables missing, and the second CREATE TABLE failed with
    "already exists". That one looks again and uses what the other made."""
    import sqlite3

    import sqlalchemy as sa

    from football import screener as module
    from football.errors import Illegal
    from football.screener import JobStore

    real = module.METADATA.create_all
    calls = []

    def raced(engine, failure="table football_jobs already exists"):
        calls.append(failure)
        if len(calls) == 1:
            real(engine)                        # the other process, a moment earlier
            raise sa.exc.OperationalError("CREATE TABLE football_jobs", {},
                                          sqlite3.OperationalError(failure))
        real(engine)

    monkeypatch.setattr(module.METADATA, "create_all", raced)
    config = Config(variables=[f"state_dir={state_dir}"], environ={})
    store = JobStore(config)
    try:
        assert len(calls) == 2
        with store.engine.connect() as connection:
            assert connection.execute(sa.select(sa.func.count()).select_from(
                module.JOBS)).scalar() == 0
    finally:
        store.close()

    calls.clear()
    monkeypatch.setattr(module.METADATA, "create_all",
                        lambda engine: raced(engine, "disk I/O error") if not calls else None)
    with pytest.raises(Illegal, match="cannot be used: .*disk I/O error"):
        JobStore(config)
    assert calls == ["disk I/O error"]          # not tried again


# ------------------------------------------------------------ the worker's load

def gated_executor(count):
    """A scripted executor whose jobs vm1..vm<count> each wait at a gate of
    their own (opened by the test), and the gates."""
    executor = ScriptedExecutor()
    gates = {f"vm{number}": threading.Event() for number in range(1, count + 1)}
    for res, gate in gates.items():
        executor.scripts[res] = Script([{"event": "phase", "phase": "prepare"}], gate=gate)
    return executor, gates


def opened(state_dir, gates):
    """The jobs once every gate is open and they all finished."""
    for gate in gates.values():
        gate.set()
    return finished(state_dir, *gates)


def test_a_worker_runs_at_most_worker_jobs_at_once_and_takes_no_job_it_has_no_place_for(
        state_dir, tmp_path):
    """A run of many jobs without --max once started every job at once on
    the worker (1000 football processes of ~70 MB; the engine's connection
    pool ran out and jobs stayed `running` for ever): a worker runs
    `worker_jobs` at once, over all queues. Then it took `worker_jobs` of
    every queue and kept those it had no place for waiting while another
    worker idled: it takes from the queues only the jobs it has a place
    for, the others stay in the database for any worker, and a place that
    frees takes the next one."""
    import time

    from dbos import DBOS

    executor, gates = gated_executor(5)
    worker = start_worker(state_dir, executor, settings=["worker_jobs=2"])
    try:
        moves = tmp_path / "moves.csv"
        moves.write_text("resource;operation;host\n" +
                         "".join(f"vm{number};handover;a2\n" for number in range(1, 5)))
        assert screener(state_dir, "run", moves)[0] == 0           # no --max
        wait_for(lambda: len(executor.running) == 2, "two jobs to run")
        assert screener(state_dir, "start", "handover", "vm5", "a1")[0] == 0    # another queue
        # DBOS lists the queues every second and polls each every 0.05 s here
        time.sleep(2.5)
        now = jobs(state_dir)
        assert sorted((job["state"], job["message"]) for job in now.values()) == \
            [("queued", None)] * 3 + [("running", None)] * 2, now
        running = sorted(res for res, job in now.items() if job["state"] == "running")
        assert sorted(executor.running) == running
        queued = {res: DBOS.get_workflow_status(job["workflow_id"]).status
                  for res, job in stored_jobs(state_dir).items() if res not in running}
        assert queued == dict.fromkeys(set(gates) - set(running), "ENQUEUED"), queued
        gates[running[0]].set()
        wait_for(lambda: len(executor.ran) == 3 and len(executor.running) == 2,
                 "the freed place to take a third job")
        done = opened(state_dir, gates)
    finally:
        worker.stop(timeout=10)
    assert {job["state"] for job in done.values()} == {"done"}
    assert sorted(executor.ran) == sorted(gates)
    assert max(map(len, executor.alongside)) == 2, executor.alongside


def four_hosts(tmp_path):
    """An inventory of the lab's hosts (cluster1: a1 a2, cluster2: b1 b2)
    that nothing reaches: for runs whose jobs are scripted."""
    inventory = tmp_path / "fleet.yml"
    inventory.write_text("clusters: {cluster1: [a1, a2], cluster2: [b1, b2]}\nhosts:\n" + "".join(
        f"  {name}: {{address: 192.0.2.{number}}}\n"
        for number, name in enumerate(["a1", "a2", "b1", "b2"], 1)))
    return inventory


def migrates(*targets):
    """A run file's rows: vm1, vm2, ... migrate to `targets`, in order."""
    return "resource;operation;target\n" + "".join(
        f"vm{number};migrate;{target}\n" for number, target in enumerate(targets, 1))


def held_beside(state_dir, tmp_path, rows, inventory, setting, held, limit):
    """Queue `rows` (a run file's) with `screener run` (the `setting`
    given) on a worker with three places whose jobs vm1..vm6 each wait at a
    gate; the jobs of `held` keep theirs shut while the others run and end:
    `limit` of `held` run meanwhile, and at no time more. The partition of
    each job, as the run said."""
    executor, gates = gated_executor(6)
    worker = start_worker(state_dir, executor, settings=["worker_jobs=3"])
    try:
        run = tmp_path / "run.csv"
        run.write_text(rows)
        code, out, err = football("--json", "--inventory", inventory, "--var",
                                  f"state_dir={state_dir}", "--var", POLL, "--var", setting,
                                  "screener", "run", run)
        assert code == 0, err
        others = set(gates) - held
        for res in others:
            gates[res].set()
        # (the worker takes a held one into a place the others left at its
        # next poll: its dequeue order across partitions is DBOS's)
        wait_for(lambda: others <= set(executor.ran) and not others & set(executor.running)
                 and len(set(executor.running) & held) == limit,
                 f"the other jobs to run beside the held ones, {limit} of those running")
        done = opened(state_dir, gates)
    finally:
        worker.stop(timeout=10)
    assert {job["state"] for job in done.values()} == {"done"}
    assert max(len(held.intersection(running)) for running in executor.alongside) == limit
    return {event["job"]: event["partition"] for event in map(json.loads, out.splitlines())}


def test_a_run_takes_at_most_limit_syncs_jobs_per_target_host_the_others_are_not_stuck_behind(
        state_dir, tmp_path):
    """Without --max-per, a run of many migrates to b1 then one to b2: the
    worker's places (worker_jobs) all went to b1's jobs — limit_syncs of
    them syncing, the others waiting in `condition` for a slot there —
    while b2's job waited queued behind them for hours. The jobs that sync
    into a host the inventory names are partitioned by it, limit_syncs of a
    partition at once."""
    inventory = four_hosts(tmp_path)
    rows = migrates("b1", "b1", "b1", "b1", "cluster2", "b2")
    b1 = {f"vm{number}" for number in range(1, 5)}
    assert held_beside(state_dir, tmp_path, rows, inventory, "limit_syncs=2", b1, 2) == {
        **{res: "sync into b1" for res in b1}, "vm5": "sync into cluster2",
        "vm6": "sync into b2"}


def test_a_runs_migrates_to_a_cluster_take_at_most_its_sync_slots_at_once(state_dir, tmp_path):
    """Migrates to a cluster (its hosts placed later) each had a partition
    of its own: a run of many to cluster2 took every place of a worker,
    most of them waiting for a sync slot on its hosts, while the moves to
    other targets waited queued behind them. A move to a cluster syncs
    into two of its hosts (primary, secondary): cluster2's two hosts with
    limit_syncs 2 sync two moves at once; as many are dequeued at once."""
    inventory = four_hosts(tmp_path)
    rows = migrates("cluster2", "cluster2", "cluster2", "cluster2", "a2", "cluster1")
    cluster2 = {f"vm{number}" for number in range(1, 5)}
    assert held_beside(state_dir, tmp_path, rows, inventory, "limit_syncs=2", cluster2, 2) == {
        **{res: "sync into cluster2" for res in cluster2}, "vm5": "sync into a2",
        "vm6": "sync into cluster1"}


def test_a_larger_clusters_migrates_take_turns_over_half_as_many_partitions_as_it_has_hosts():
    """Each move to a cluster takes a sync slot on two of its hosts: its
    turns over as many partitions as it had hosts dequeued twice the moves
    its slots could sync at once (the others waited in `condition`,
    holding a worker's places). A migrate's first target is what its
    command line parses to (`--pre-hand a2` put it into a2's partition)."""
    inventory = SimpleNamespace(hosts={name: None for name in ("a1", "a2", "c1", "c2", "c3",
                                                                  "c4", "c5")},
                                clusters={"cluster1": ["a1", "a2"],
                                          "cluster3": ["c1", "c2", "c3", "c4", "c5"]})
    specs = [JobSpec(f"vm{number}", "migrate", args) for number, args in enumerate(
        [["cluster3"], ["cluster3"], ["cluster3"], ["cluster1"], ["--pre-hand", "a2", "cluster3"]],
        1)]
    assert partition_by_slot(specs, inventory, {}, {"sync": 3}) == \
        ("host slot (limit_syncs)", 3)
    assert [spec.partition for spec in specs] == [
        "sync into cluster3 (1 of 2)", "sync into cluster3 (2 of 2)",
        "sync into cluster3 (1 of 2)", "sync into cluster1", "sync into cluster3 (2 of 2)"]


def test_a_run_of_shrinks_host_by_host_takes_at_most_limit_shrinks_per_primary_at_once(
        fake_fleet, state_dir, tmp_path):  # noqa: F811
    """A run of shrinks listed host by host, as an operator lists them:
    every place of a worker went to the first host's shrinks, all but
    limit_shrinks of them waiting in `condition` for its shrink slot, while
    the other hosts' shrinks waited queued behind them. Shrinks are
    partitioned by their resource's primary (asked of the hosts once),
    handovers by their source, at most the limit of a partition at once."""
    fleet = fake_fleet
    for res in ("vm2", "vm3", "vm4"):
        fleet.create_resource(res, "a1", ["a2"])
    fleet.create_resource("vm5", "b1", ["b2"])
    fleet.create_resource("vm6", "b2", ["b1"])
    rows = ("resource;operation;host\n" +
            "".join(f"vm{number};shrink;\n" for number in range(1, 6)) + "vm6;handover;b1\n")
    a1 = {f"vm{number}" for number in range(1, 5)}
    assert held_beside(state_dir, tmp_path, rows, fleet.inventory_path, "limit_handovers=1",
                       a1, 1) == {**{res: "shrink on a1" for res in a1}, "vm5": "shrink on b1",
                                  "vm6": "handover from b2"}


def test_a_jobs_events_outlast_a_database_that_fails_for_a_while(state_dir):
    """The jobs' database failing while a job runs (a PostgreSQL restart)
    once let the worker stop reading the operation's output (the operation
    then blocked on a full pipe, or died of a closed one) and left the job
    `running` for ever. Its events are kept until the database answers, in
    their order; its end is written once it does; the worker says so, once."""
    import sqlite3

    import sqlalchemy as sa

    said = []
    executor = ScriptedExecutor()
    executor.scripts["vm1"] = Script([{"event": "phase", "phase": "prepare"},
                                      {"event": "message", "text": "vm1: joining b1"},
                                      {"event": "phase", "phase": "wait"}])
    worker = start_worker(state_dir, executor, say=said.append)
    failures = {"record": 3, "end": 2}

    def failing(name):
        real = getattr(worker.store, name)

        def write(number, *args, **fields):
            # the events from the job's start on, the end twice
            if jobs_started and failures[name]:
                failures[name] -= 1
                raise sa.exc.OperationalError("INSERT", {}, sqlite3.OperationalError(
                    "database is locked"))
            return real(number, *args, **fields)
        return write

    jobs_started = []
    real_record = worker.store.record
    worker.store.record = failing("record")
    worker.store.end = failing("end")
    original_claim = worker.store.claim
    worker.store.claim = lambda *args: (jobs_started.append(1), original_claim(*args))[1]
    try:
        assert screener(state_dir, "start", "migrate", "vm1", "b1")[0] == 0
        job = finished(state_dir, "vm1")["vm1"]
    finally:
        worker.store.record = real_record
        worker.stop(timeout=10)
    assert (job["state"], job["exit_code"], job["phase"], job["message"]) == \
        ("done", 0, "wait", "vm1: joining b1")
    assert [event["event"] for event in events_of(state_dir, "vm1")] == \
        ["job-start", "phase", "message", "phase", "job-end"]
    assert failures == {"record": 0, "end": 0}
    kept = [text for text in said if "kept in memory" in text]
    assert kept == ["worker test: job vm1: its events are kept in memory while the jobs' "
                    "database fails ((sqlite3.OperationalError) database is locked); the "
                    "operation goes on"], said
    assert sum("answers again" in text for text in said) == 1, said
    assert sum("recording its end (done, exit 0) failed" in text for text in said) == 1, said


def dbos_queues(state_dir):
    """{name: global concurrency} of the queues DBOS polls in the jobs' database."""
    from football.screener import JobStore

    store = JobStore(Config(variables=[f"state_dir={state_dir}"], environ={}))
    try:
        return {queue.name: queue.global_concurrency for queue in store.client.list_queues()}
    finally:
        store.close()


def test_a_runs_queue_is_dropped_once_its_jobs_ended_and_comes_back_for_a_restart(
        state_dir, tmp_path, monkeypatch):
    """Every worker polled every run's queue every second for ever: 400 old
    runs kept an idle worker at a full core. A run's queue goes once its
    jobs ended (its worker thread ends with it); a restart of one of its
    jobs brings it back with the run's limits."""
    from football import screener as module

    monkeypatch.setattr(module, "QUEUES_TIDY_EVERY", 0.1)
    monkeypatch.setattr(module, "QUEUES_KEPT_AFTER", 0.0)
    executor = ScriptedExecutor()
    # vm1 waits until the queue was seen: with its jobs ended it may go at once
    executor.scripts["vm1"] = Script(code=1, gate=threading.Event())
    worker = start_worker(state_dir, executor, settings=["worker_heartbeat=0.05"])
    try:
        moves = tmp_path / "moves.csv"
        moves.write_text("resource;operation;host\nvm1;handover;a2\nvm2;handover;a2\n")
        assert screener(state_dir, "run", moves, "--max", "1")[0] == 0
        queue = jobs(state_dir)["vm1"]["queue"]
        wait_for(lambda: dbos_queues(state_dir).get(queue) == 1, "the run's queue, --max 1")
        executor.scripts["vm1"].gate.set()
        assert [job["state"] for job in finished(state_dir, "vm1", "vm2").values()] == \
            ["failed", "done"]
        wait_for(lambda: queue not in dbos_queues(state_dir) and not any(
            thread.name == f"queue-worker-{queue}" for thread in threading.enumerate()),
            "the run's queue and its worker thread to go")
        assert "jobs" in dbos_queues(state_dir)                # the start queue stays
        executor.scripts["vm1"] = Script()
        # as in production from here: a queue registered again is kept a while
        # (at 0 the worker's tidying dropped the restart's queue between DBOS's
        # upsert of it and its look for it: "missing from database after
        # upsert", CI once)
        monkeypatch.setattr(module, "QUEUES_KEPT_AFTER", 60.0)
        assert screener(state_dir, "restart", "vm1")[0] == 0
        wait_for(lambda: dbos_queues(state_dir).get(queue) == 1, "the queue back, --max 1")
        assert finished(state_dir, "vm1")["vm1"]["state"] == "done"
    finally:
        worker.stop(timeout=10)


def test_a_job_queued_into_a_dropped_queue_is_registered_again_and_runs(state_dir, tmp_path,
                                                                        monkeypatch):
    """A restart that queued into a run's queue just as a worker dropped it
    (the jobs had ended) would wait for ever: a worker registers again the
    queue of every job not ended that DBOS does not know, and says so."""
    from football import screener as module
    from football.screener import JobStore

    monkeypatch.setattr(module, "QUEUES_TIDY_EVERY", 0.1)
    moves = tmp_path / "moves.csv"
    moves.write_text("resource;operation;host\nvm3;handover;a2\n")
    assert screener(state_dir, "run", moves, "--max", "2")[0] == 0
    queue = jobs(state_dir)["vm3"]["queue"]
    store = JobStore(Config(variables=[f"state_dir={state_dir}"], environ={}))
    store.client.delete_queue(queue)                            # as the race would
    store.close()
    said = []
    worker = start_worker(state_dir, ScriptedExecutor(), settings=["worker_heartbeat=0.05"],
                          say=said.append)
    try:
        assert finished(state_dir, "vm3")["vm3"]["state"] == "done"
    finally:
        worker.stop(timeout=10)
    assert dbos_queues(state_dir)[queue] == 2
    assert f"worker test: the queue of jobs not ended registered again: {queue}" in said


def planners_racing(config, rounds=5, kind="balance", alone=True, resources=("race0", "race1")):
    """Two planners' runs of `kind` queued (`alone`) at the same moment,
    `rounds` times, each from its own JobStore (as two controllers), side
    N's move of resources[N]: what each round gave (sorted: the job ids
    queued, the refusals' texts; the jobs queued then ended)."""
    from football.screener import JobSpec, JobStore, PlannerBusy, ResourcesBusy

    stores = [JobStore(config) for _ in range(2)]
    rounds_seen = []
    try:
        for number in range(rounds):
            barrier, outcomes = threading.Barrier(2), []

            def queue(side):
                run = f"{kind}-20261206-{number:06}-{side:06}"
                res = resources[side]
                barrier.wait()
                try:
                    [job_id] = stores[side].queue(
                        [JobSpec(res, "handover", ["a1"], id=f"{run}-{res}")], [],
                        run=run, alone=alone)
                    outcomes.append(job_id)
                except (PlannerBusy, ResourcesBusy) as busy:
                    outcomes.append(str(busy))

            threads = [threading.Thread(target=queue, args=(side,)) for side in (0, 1)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            rounds_seen.append(sorted(outcomes))
            for job_id in outcomes:
                if job_id.startswith(f"{kind}-"):
                    stores[0].update(stores[0].job(job_id)["number"], state="done",
                                     finished=0.0)
    finally:
        for store in stores:
            store.close()
    return rounds_seen


def test_two_planners_runs_queued_at_once_queue_one_the_other_finds_its_moves(state_dir):
    """The look for another planner's live moves and the queueing are one
    turn (football_turns): of two at once, one queues, the other is refused
    naming it — never both (two balancers)."""
    config = Config(variables=[f"state_dir={state_dir}"], environ={})
    for outcome in planners_racing(config):
        assert len(outcome) == 2 and sum(text.startswith("the moves of balance-")
                                         for text in outcome) == 1, outcome


def test_two_evacuations_that_move_one_resource_at_once_queue_one_job_for_it(state_dir):
    """Two planners' runs (two operators' evacuations of one host) that
    both planned a move of vm1: the look for its live job and the queueing
    are one turn, so one queues it and the other waits for that job —
    before, each saw none and both queued one: vm1 moved twice."""
    config = Config(variables=[f"state_dir={state_dir}"], environ={})
    for outcome in planners_racing(config, kind="evacuate", alone=False,
                                   resources=("vm1", "vm1")):
        [queued, refused] = sorted(outcome, key=lambda text: not text.startswith("evacuate-"))
        assert queued.startswith("evacuate-") and queued.endswith("-vm1"), outcome
        assert refused == f"vm1: its job {queued} runs", outcome


def test_a_job_taken_over_while_its_operation_went_on_is_ended_by_the_taker_only(state_dir):
    """A worker cut off from the jobs' database for worker_dead_after was
    taken over while its operation went on (the hosts answered it): another
    worker runs the job now. The operation's end here writes neither the
    job's end nor gives back its host slots, which are the taker's. Before,
    the job showed failed while the taker's run went on, and the taker's
    slots were freed under it."""
    import time

    import sqlalchemy as sa

    from football.screener import JOBS, SLOTS, JobStore

    gate = threading.Event()
    executor = ScriptedExecutor()
    executor.scripts["vm1"] = Script(gate=gate, code=1)
    said = []
    worker = start_worker(state_dir, executor, say=said.append)
    store = JobStore(Config(variables=[f"state_dir={state_dir}"], environ={}))
    try:
        assert screener(state_dir, "start", "handover", "vm1", "a2")[0] == 0
        wait_for(lambda: jobs(state_dir)["vm1"]["state"] == "running", "vm1 to run")
        number = store.job("vm1")["number"]
        with store.engine.begin() as connection:         # the taker's claim and its slot
            connection.execute(JOBS.update().where(JOBS.c.number == number)
                               .values(worker="other"))
            connection.execute(SLOTS.insert().values(kind="sync", host="b1", seat=0,
                                                     job=number, taken=time.time()))
        gate.set()
        wait_for(lambda: any("after another worker took it over" in text for text in said),
                 "the worker to say that the job is the other's")
        job = store.job("vm1")
        assert (job["state"], job["worker"], job["exit_code"]) == ("running", "other", None)
        with store.engine.connect() as connection:
            assert [row.host for row in connection.execute(
                sa.select(SLOTS.c.host).where(SLOTS.c.job == number))] == ["b1"]
    finally:
        store.close()
        worker.stop(timeout=10)
    assert [text for text in said if "took it over" in text] == [
        "worker test: job vm1 ended here (exit 1) after another worker took it over: its end "
        "and its host slots are that worker's"]


def test_late_events_of_a_worker_found_dead_do_not_move_the_job_another_worker_ended(
        state_dir):
    """Worker A, cut off from the database longer than worker_dead_after,
    was taken over by B, whose run ended the job `done`; A's events, kept
    while the database was away, were written when it came back and set
    the job `running`, then `condition` (notified again): neither
    restarted nor purged. The events are stored; the state is B's."""
    told = []
    store = JobStore(Config(variables=[f"state_dir={state_dir}"], environ={}))
    store.notify = lambda job, state, text: told.append(state)
    try:
        [job_id] = store.queue([JobSpec("vm1", "handover", ["a2"])], [])
        number = store.live_job(job_id)["number"]
        assert store.claim(number, "A") and store.claim(number, "B")
        assert store.end(number, "B", "done", 0)
        store.record(number, {"event": "phase", "phase": "finish"}, worker_id="A")
        store.record(number, {"event": "wait", "state": "condition", "reasons": ["lock"]},
                     worker_id="A")
        job = store.live_job(job_id)
        assert (job["state"], job["worker"], job["exit_code"]) == ("done", "B", 0), job
        assert [event["event"] for event in store.events(number)][-2:] == ["phase", "wait"]
        assert told == ["queued", "running", "done"], told
    finally:
        store.close()

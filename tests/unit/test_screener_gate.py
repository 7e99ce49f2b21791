"""The screener's operator gate before the downtime window (`--gate`, a
run's `gate` column, `gate_before_downtime`): a job waits in state
`waiting` with its container running at its source until `football screener
continue` releases it — durably; `kill` of a waiting job leaves the
container untouched. On the fake fleet (operations in-process) and with
scripted jobs."""

import json
import threading
import time
from collections import defaultdict

import pytest

from football.config import Config
from football.joblink import DatabaseAway, JobKilled, JobLink
from football.screener import JobSpec, JobStore
from tests.helpers.fakefleet import assert_placed
from tests.helpers.fakefleet import fake_fleet  # noqa: F401 (a fixture)
from tests.helpers.jobs import (InProcessFootball, Script, ScriptedExecutor, events_of, refused,
                                football, football_process, job_worker, jobs, resource_of,
                                stored_jobs, wait_for)

POLL = "jobs_poll_interval=0.05"


def screener(state_dir, *args):
    return football("--json", "--var", f"state_dir={state_dir}", "--var", POLL, "screener",
                    *args)


@pytest.fixture
def state_dir(tmp_path):
    return tmp_path / "controller"


@pytest.fixture
def in_process(fake_fleet, tmp_path):  # noqa: F811
    """A worker running the jobs' operations in-process on the fake fleet."""
    worker = job_worker(tmp_path / "controller", InProcessFootball())
    yield fake_fleet
    worker.stop(timeout=30)


def fleet_screener(fleet, state_dir, *args, variables=()):
    """`football screener <args>` for jobs on the fake fleet (their settings:
    `variables`, NAME=VALUE)."""
    settings = [word for variable in variables for word in ("--var", variable)]
    return football("--inventory", fleet.inventory_path, "--json", "--var",
                    f"state_dir={state_dir}", "--var", POLL, "--var", "poll_interval=0.05",
                    *settings, "screener", *args)


def stored_state(state_dir, job_id, state):
    return wait_for(lambda: (stored_jobs(state_dir).get(job_id) or {}).get("state") == state
                    and stored_jobs(state_dir)[job_id], f"job {job_id} {state}")


# ---------------------------------------------------------- on the fake fleet

def test_a_gated_job_waits_with_its_container_at_the_source_until_continue(in_process,
                                                                           state_dir):
    fleet = in_process
    code, out, err = fleet_screener(fleet, state_dir, "start", "--gate", "handover", "vm1",
                                    "a2")
    assert code == 0, err
    job = stored_state(state_dir, "vm1", "waiting")
    assert "football screener continue vm1" in job["message"]
    assert fleet.resources["vm1"].primary == "a1" and fleet.running("vm1") == ["a1"]
    released = football_process("--json", "--var", f"state_dir={state_dir}", "screener",
                                "continue", "vm1")
    assert released.returncode == 0, released.stderr
    assert json.loads(released.stdout) == {"event": "continued", "job": "vm1"}
    job = stored_state(state_dir, "vm1", "done")
    assert_placed(fleet, "a2", ["a1"])
    kinds = [(event["event"], event.get("state")) for event in events_of(state_dir, "vm1")
             if event["event"] in ("wait", "gate-released", "wait-end", "downtime-begin")]
    assert kinds == [("wait", "waiting"), ("gate-released", None), ("wait-end", None),
                     ("downtime-begin", None)]
    code, out, err = football("--var", f"state_dir={state_dir}", "screener", "show", "vm1")
    assert code == 0, err
    for line in ("waiting: waiting for the operator", "released at the gate",
                 "goes on (downtime)", "handover slot on a1 taken"):
        assert line in out, out


def test_a_killed_waiting_job_ends_interrupted_its_container_untouched_at_the_source(
        in_process, state_dir):
    fleet = in_process
    assert fleet_screener(fleet, state_dir, "start", "--gate", "handover", "vm1", "a2")[0] == 0
    stored_state(state_dir, "vm1", "waiting")
    changes = len(fleet.changes())
    killed = football_process("--var", f"state_dir={state_dir}", "screener", "kill", "vm1")
    assert killed.returncode == 0, killed.stderr
    job = stored_state(state_dir, "vm1", "interrupted")
    assert job["exit_code"] == 190
    assert "still runs on a1, nothing was stopped" in job["message"] or any(
        "still runs on a1, nothing was stopped" in event.get("text", "")
        for event in events_of(state_dir, "vm1"))
    assert fleet.resources["vm1"].primary == "a1" and fleet.running("vm1") == ["a1"]
    assert not [change for change in fleet.changes()[changes:]
                if "stop" in " ".join(map(str, change))], fleet.changes()[changes:]
    assert not any(event["event"] == "downtime-begin" for event in events_of(state_dir, "vm1"))


# --------------------------------------------------------------- continue

def waiting_script():
    """A scripted job that reports the gate and holds until the test lets it go."""
    return Script([{"event": "wait", "state": "waiting", "what": "downtime",
                    "reasons": ["waiting for the operator"]}], gate=threading.Event(),
                  after=[{"event": "wait-end"}])


@pytest.fixture
def scripted(state_dir):
    executor = ScriptedExecutor()
    worker = job_worker(state_dir, executor)
    yield executor
    for script in executor.scripts.values():
        if script.gate is not None:
            script.gate.set()
    worker.stop(timeout=10)


def test_continue_n_releases_the_n_oldest_waiting_jobs(state_dir, scripted):
    for res in ("vm1", "vm2", "vm3"):
        scripted.scripts[res] = waiting_script()
        assert screener(state_dir, "start", "--gate", "handover", res, "a2")[0] == 0
    wait_for(lambda: {job["state"] for job in jobs(state_dir).values()} == {"waiting"},
             "three jobs waiting")
    code, out, err = screener(state_dir, "--dry-run", "continue", "2")
    assert code == 0, err
    assert [(event["event"], event["job"]) for event in map(json.loads, out.splitlines())] == \
        [("would-continue", "vm1"), ("would-continue", "vm2")]
    assert not any(job["released"] for job in jobs(state_dir).values())
    code, out, err = screener(state_dir, "continue", "2")
    assert code == 0, err
    assert [json.loads(line)["job"] for line in out.splitlines()] == ["vm1", "vm2"]
    now = jobs(state_dir)
    assert [res for res, job in now.items() if job["released"]] == ["vm1", "vm2"]


def test_continue_of_a_job_that_is_not_waiting_is_refused_with_191(state_dir, scripted):
    scripted.scripts["vm1"] = Script([{"event": "phase", "phase": "wait"}],
                                     gate=threading.Event())
    assert screener(state_dir, "start", "--gate", "migrate", "vm1", "b1")[0] == 0
    wait_for(lambda: jobs(state_dir)["vm1"]["phase"] == "wait", "vm1 running")
    for args, message in [(("vm1",), "job vm1 is running, not waiting at the gate"),
                          (("vm9",), "no job 'vm9' to continue"),
                          (("3",), "no job waits at the gate")]:
        code, out, err = screener(state_dir, "continue", *args)
        assert code == 191 and message in err, (args, err)
        assert len(err.strip().splitlines()) == 1
        # with --json, the last event says it too
        failed = json.loads(out)
        assert (failed["event"], failed["exit_code"]) == ("failed", 191) and \
            message in failed["text"]
    assert jobs(state_dir)["vm1"]["released"] is None


# --------------------------------------------------------------- durability

def test_a_released_gate_stays_released_for_the_resumed_and_the_restarted_job(state_dir):
    config = Config(variables=[f"state_dir={state_dir}"])
    store = JobStore(config)
    try:
        [job_id] = store.queue([JobSpec("vm1", "handover", ["a2"], gate=True)], [])
        number = store.live_job(job_id)["number"]
        link = JobLink(config, number)
        assert "football screener continue vm1" in link.gate("vm1")
        store.update(number, state="waiting")
        assert store.release(["vm1"]) == ["vm1"]
        assert link.gate("vm1") is None             # a resumed run: no wait again
        store.update(number, state="failed", exit_code=1)
        store.restart("vm1")
        again = JobLink(config, store.live_job("vm1")["number"])
        assert again.gate("vm1") is None            # the restarted job passed it once
        store.kill("vm1")
        with pytest.raises(JobKilled):
            again.gate("vm1")
        link.close()
        again.close()
    finally:
        store.close()


def test_a_gate_closed_again_waits_for_a_new_continue(state_dir):
    """A run that goes back to the gates (business hours ended, a pause
    came, while it waited for its slot and its locks) used its release
    without a downtime: its job gate stayed released, and the downtime
    began hours later without the operator's say."""
    config = Config(variables=[f"state_dir={state_dir}"])
    store = JobStore(config)
    try:
        [job_id] = store.queue([JobSpec("vm1", "handover", ["a2"], gate=True)], [])
        link = JobLink(config, store.live_job(job_id)["number"])
        store.update(link.number, state="waiting")
        assert store.release(["vm1"]) == ["vm1"] and link.gate("vm1") is None
        link.close_gate()
        assert "football screener continue vm1" in link.gate("vm1")
        link.close()
    finally:
        store.close()


def test_a_jobs_database_of_an_older_football_gets_the_new_columns(state_dir):
    import sqlalchemy as sa

    config = Config(variables=[f"state_dir={state_dir}"])
    JobStore(config).close()
    engine = sa.create_engine(f"sqlite:///{state_dir / 'jobs.sqlite'}")
    with engine.begin() as connection:
        for column in ("gate", "released"):
            connection.execute(sa.text(f"ALTER TABLE football_jobs DROP COLUMN {column}"))
    engine.dispose()
    store = JobStore(config)
    try:
        [job_id] = store.queue([JobSpec("vm1", "handover", ["a2"], gate=True)], [])
        job = store.live_job(job_id)
        assert (job["gate"], job["released"]) == (True, None)
    finally:
        store.close()


def test_gate_before_downtime_gates_every_job_read_at_each_poll(state_dir, tmp_path):
    settings = tmp_path / "football.yml"
    settings.write_text("gate_before_downtime: false\n")
    config = Config([settings], [f"state_dir={state_dir}"])
    store = JobStore(config)
    try:
        [job_id] = store.queue([JobSpec("vm1", "handover", ["a2"])], [])
        link = JobLink(config, store.live_job(job_id)["number"])
        assert link.gate("vm1") is None
        settings.write_text("gate_before_downtime: true\n")
        assert "continue vm1" in link.gate("vm1")
        link.close()
    finally:
        store.close()


# ------------------------------------------------------------------ runs

def test_a_runs_gate_column_and_gate_option_gate_their_jobs(state_dir, tmp_path):
    moves = tmp_path / "moves.csv"
    moves.write_text("resource;operation;target;gate\nvm1;migrate;b1;yes\nvm2;migrate;b2;\n"
                     "vm3;handover;a2;no\n")
    code, _, err = screener(state_dir, "run", moves)
    assert code == 0, err
    assert {res: job["gate"] for res, job in jobs(state_dir).items()} == \
        {"vm1": True, "vm2": False, "vm3": False}
    assert screener(state_dir, "start", "--gate", "handover", "vm4", "a2")[0] == 0
    assert jobs(state_dir)["vm4"]["gate"] is True


def test_a_bad_gate_value_in_a_run_is_one_line_exit_191_nothing_queued(state_dir, tmp_path):
    moves = tmp_path / "moves.csv"
    moves.write_text("resource;operation;target;gate\nvm1;migrate;b1;yes\nvm2;migrate;b2;maybe\n")
    code, out, err = screener(state_dir, "run", moves)
    assert code == 191 and "line 3: gate 'maybe' is not yes or no" in err, err
    assert len(err.strip().splitlines()) == 1 and refused(out)
    assert jobs(state_dir) == {}


def test_the_screener_help_names_the_states_and_continue():
    code, out, _ = football("screener", "--help")
    assert code == 0
    for word in ("waiting", "condition", "delayed", "continue", "--gate"):
        assert word in out, word


# ---------------------------------------------------------------- delayed

def test_a_job_with_a_cleanup_delay_shows_delayed_after_its_window_then_cleans_up(
        in_process, state_dir):
    fleet = in_process
    code, _, err = fleet_screener(fleet, state_dir, "start", "migrate", "vm1", "b1", "b2",
                                  variables=["cleanup_delay=2"])
    assert code == 0, err
    job = wait_for(lambda: (lambda job: job if job and job["state"] in ("delayed", "done")
                            else None)(stored_jobs(state_dir).get("vm1")), "vm1 delayed")
    assert job["state"] == "delayed" and "cleanup_delay 2 s" in job["message"], job
    assert fleet.running("vm1") == ["b1"]
    assert "vm1" in fleet.lvs("a1") and "vm1" in fleet.lvs("a2")      # not cleaned up yet
    job = stored_state(state_dir, "vm1", "done")
    assert_placed(fleet, "b1", ["b2"])
    kinds = [(event["event"], event.get("state") or event.get("phase"))
             for event in events_of(state_dir, "vm1")
             if event["event"] in ("downtime-end", "wait", "wait-end", "phase")]
    assert kinds[kinds.index(("downtime-end", None)):] == [
        ("downtime-end", None), ("phase", "cleanup"), ("wait", "delayed"), ("wait-end", None)]
    slots = [(event["action"], event["slot"], event["hosts"])
             for event in events_of(state_dir, "vm1") if event["event"] == "slot"]
    assert slots == [("taken", "sync", ["b1", "b2"]), ("released", "sync", ["b1", "b2"]),
                     ("taken", "handover", ["a1"]), ("released", "handover", ["a1"])]


# ------------------------------------------------------- host-level limits

class SlotTakingJobs(ScriptedExecutor):
    """Each job does what an operation in a job does with the host slots,
    in the worker's threads against the real jobs' database: a sync slot
    on its target (the last argument; limit 1), held a while, given back;
    then a handover slot on `a1` (limit 2), held a while — given back by
    the job itself, or (`vm6`) left to the worker."""

    def __init__(self, config):
        super().__init__()
        self.config = config

    def run(self, number, args, on_event, on_start):
        on_start(None)
        link = JobLink(self.config, number)
        resource, target = resource_of(args), args[-1]

        def tell(kind, **fields):
            on_event({"event": kind, "time": time.time(), **fields})

        try:
            link.wait_for_slots("sync", [target], 1, "limit_syncs", tell, 0.05)
            time.sleep(0.2)
            link.release_slots("sync", [target], tell)
            link.wait_for_slots("handover", ["a1"], 2, "limit_handovers", tell, 0.05)
            time.sleep(0.2)
            if resource != "vm6":
                link.release_slots("handover", ["a1"], tell)
        finally:
            link.close()
        return 0


def most_at_once(state_dir, job_ids):
    """{(kind, host): the most slots held at once}, from the jobs' slot events."""
    changes = defaultdict(list)
    for job_id in job_ids:
        for event in events_of(state_dir, job_id):
            if event["event"] == "slot":
                for host in event["hosts"]:
                    changes[event["slot"], host].append(
                        (event["time"], 1 if event["action"] == "taken" else -1))
    most = {}
    for key, steps in changes.items():
        held = 0
        most[key] = 0
        for _, step in sorted(steps):       # at one time a release before a take
            held += step
            most[key] = max(most[key], held)
    return most


def test_host_slots_hold_across_all_jobs_and_a_waiting_job_shows_condition_with_why(
        state_dir, tmp_path):
    executor = SlotTakingJobs(Config(variables=[f"state_dir={state_dir}"]))
    worker = job_worker(state_dir, executor)
    try:
        moves = tmp_path / "moves.csv"
        moves.write_text("resource;operation;target\n" + "".join(
            f"vm{number};migrate;{target}\n"
            for number, target in enumerate(["b1", "b1", "b1", "b2", "b2", "a2"], start=1)))
        first = tmp_path / "first.csv"          # another run: the limits span runs
        first.write_text("resource;operation;target\nvm7;migrate;b1\n")
        assert screener(state_dir, "run", first)[0] == 0
        assert screener(state_dir, "run", moves, "--max", "6")[0] == 0
        ids = [f"vm{number}" for number in range(1, 8)]
        done = wait_for(lambda: (lambda now: now if all(
            now.get(job_id, {}).get("state") == "done" for job_id in ids) else None)(
            jobs(state_dir)), "the seven jobs to end done")
    finally:
        worker.stop(timeout=10)
    assert len(done) == 7
    most = most_at_once(state_dir, ids)
    assert most[("sync", "b1")] == 1 and most[("sync", "b2")] == 1, most
    assert 1 <= most[("handover", "a1")] <= 2, most
    waits = [event for job_id in ids for event in events_of(state_dir, job_id)
             if event["event"] == "wait"]
    assert any(event["state"] == "condition" and "a sync slot on b1 (limit_syncs 1" in
               event["reasons"][0] for event in waits), waits
    by_worker = [event for event in events_of(state_dir, "vm6") if event["event"] == "slot"
                 and event.get("by") == "worker"]
    assert by_worker == [{"event": "slot", "action": "released", "slot": "handover",
                          "hosts": ["a1"], "by": "worker", "time": by_worker[0]["time"]}]


# ------------------------------------------- the jobs' database does not answer

def gone(link):
    """Point `link` at a PostgreSQL server that refuses connections (as one
    being restarted); the engine it had."""
    from football.jobdb import new_engine

    engine, link._engine = link._engine, new_engine("postgresql://football@127.0.0.1:9/gone")
    return engine


def test_a_jobs_operation_waits_for_its_slot_and_keeps_its_gate_while_the_database_is_away(
        state_dir):
    """A PostgreSQL restart in a mass run once failed the operations that
    read their job at that moment (a traceback: a slot's wait, the gate, a
    slot given back after the downtime window). Now the job's row is what
    the run last read (kill and release change only through the database),
    a slot is waited for with the database's error as the reason, and a
    slot that cannot be given back is its worker's to give back (a warning)."""
    config = Config(variables=[f"state_dir={state_dir}"], environ={})
    store = JobStore(config)
    try:
        store.queue([JobSpec("vm1", "migrate", ["b1"], gate=True)], [])
        number = store.job("vm1")["number"]
        link = JobLink(config, number)
        told = []

        def tell(kind, **fields):
            told.append({"event": kind, **fields})

        assert link.gate("vm1").startswith("waiting for the operator")
        engine = gone(link)
        assert link.row()["id"] == "vm1"                    # as last read
        assert link.gate("vm1").startswith("waiting for the operator")
        link.release_slots("sync", {"b1"}, tell)
        assert told[0]["event"] == "warning" and told[0]["text"].startswith(
            "the sync slots on b1 stay taken until the job's end (its worker gives them "
            "back): the jobs' database does not answer ((psycopg.OperationalError) "), told
        waiting = threading.Thread(target=link.wait_for_slots, args=(
            "handover", ["a1"], 1, "limit_handovers", tell, 0.02))
        waiting.start()
        wait_for(lambda: len(told) > 1, "the wait to be said")
        link._engine = engine                                # it answers again
        waiting.join(timeout=30)
        assert not waiting.is_alive()
        assert [event["event"] for event in told] == ["warning", "wait", "wait-end", "slot"]
        assert told[1]["state"] == "condition" and told[1]["reasons"][0].startswith(
            "the jobs' database does not answer ((psycopg.OperationalError) "), told
        assert told[1]["reasons"][0].endswith("a handover slot on a1 is taken once it does")
        assert link.take_slots("handover", ["a1"], 1) == {}           # held: it has it
        link.close()
        never_read = JobLink(config, number)
        gone(never_read)
        with pytest.raises(DatabaseAway, match="does not answer|Connection refused|connect"):
            never_read.gate("vm1")
    finally:
        store.close()


def test_a_database_that_never_answers_is_an_error_after_connect_timeout(monkeypatch):
    """A partition refuses nothing: a connection to PostgreSQL waited for
    the TCP and server timeouts (minutes) at every look of a waiting run at
    the shared pauses. It is an error after CONNECT_TIMEOUT, as a refused
    one is (here a listener on loopback that never says a word)."""
    import socket

    from football import jobdb as module
    from football.jobdb import PausesUnknown, shared_pauses

    monkeypatch.setattr(module, "CONNECT_TIMEOUT", 1)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        url = f"postgresql://football@127.0.0.1:{silent.getsockname()[1]}/jobs"
        config = Config(variables=[f"jobs_database_url={url}"], environ={})
        started = time.monotonic()
        with pytest.raises(PausesUnknown):
            shared_pauses(config)
        assert time.monotonic() - started < 20
    finally:
        silent.close()

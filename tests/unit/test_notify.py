"""Notifications of the screener: the `notify` hook told once per state a
job enters (by a recording plugin file in `plugin_dirs`, loaded by the
`screener` commands and the worker alike), and the shipped plugin
(plugins/notify.py) that runs `notify_command` with the job as JSON on
stdin — a failing or hanging command is a warning, never a failed job."""

import json
import threading
import time

import pytest

from football.config import Config
from football.screener import FINISHED, Worker
from plugins.notify import NotifyFailed, Notifier
from tests.helpers.jobs import Script, ScriptedExecutor, football, jobs, wait_for

POLL = "jobs_poll_interval=0.05"

RECORDER = '''
import json
from football.hooks import hookimpl

@hookimpl
def notify(job, state, text):
    with open({path!r}, "a") as told:
        told.write(json.dumps({{"job": job, "state": state, "text": text}}) + "\\n")
'''


@pytest.fixture
def state_dir(tmp_path):
    return tmp_path / "controller"


@pytest.fixture
def recorder(tmp_path):
    """`plugin_dirs` with a plugin that appends every notify call to a
    file; `recorder.told()` reads them back."""
    plugin_dir, told = tmp_path / "plugins", tmp_path / "told.jsonl"
    plugin_dir.mkdir()
    (plugin_dir / "recorder.py").write_text(RECORDER.format(path=str(told)))

    class Recorder:
        variable = f"plugin_dirs={plugin_dir}"

        @staticmethod
        def told():
            return [json.loads(line) for line in told.read_text().splitlines()] \
                if told.exists() else []
    return Recorder


def script(tmp_path, name, body):
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def screener(state_dir, variables, *args):
    options = [item for variable in (f"state_dir={state_dir}", POLL, *variables)
               for item in ("--var", variable)]
    return football("--json", *options, "screener", *args)


def finished(state_dir, job_id):
    return wait_for(lambda: (lambda job: job if job and job["state"] in FINISHED else None)(
        jobs(state_dir).get(job_id)), f"job {job_id} to finish")


@pytest.fixture
def worker(state_dir):
    """Starts a worker in this process with `variables` (once per test);
    stopped at the end. Its lines (`say`) are in `worker.said`."""
    started = []

    def start(executor, variables=()):
        said = []
        the_worker = Worker(Config(variables=[f"state_dir={state_dir}", POLL, *variables]),
                            "test", executor, say=said.append)
        the_worker.said = said
        the_worker.start()
        started.append(the_worker)
        return the_worker
    yield start
    for the_worker in started:
        the_worker.stop(timeout=10)


# ------------------------------------------------------------------ the hook

def test_the_hook_is_told_each_state_a_job_enters_once_with_the_job_and_one_line(
        state_dir, recorder, worker):
    executor, gate = ScriptedExecutor(), threading.Event()
    executor.scripts["vm1"] = Script(
        [{"event": "phase", "phase": "prepare"}, {"event": "phase", "phase": "wait"},
         {"event": "wait", "state": "condition", "reasons": ["a sync slot on b1 (4)"]}],
        gate=gate, after=[{"event": "wait-end"}, {"event": "phase", "phase": "finish"},
                          {"event": "message", "text": "vm1 runs on b1"}])
    worker(executor, [recorder.variable])
    code, _, err = screener(state_dir, [recorder.variable], "start", "migrate", "vm1", "b1")
    assert code == 0, err
    wait_for(lambda: jobs(state_dir)["vm1"]["state"] == "condition", "vm1 at its limit")
    gate.set()
    finished(state_dir, "vm1")
    told = wait_for(lambda: (lambda now: now if len(now) >= 5 else None)(recorder.told()),
                    "five notifications")
    time.sleep(0.2)     # nothing more comes
    told = recorder.told()
    # `queued` is told by the command that queued it: it may come after the
    # worker's `running`; the worker's own are in order
    assert sorted(call["state"] for call in told) == sorted(
        ["queued", "running", "condition", "running", "done"])
    assert [call["state"] for call in told if call["state"] != "queued"] == \
        ["running", "condition", "running", "done"]
    for call in told:
        assert (call["job"]["id"], call["job"]["state"], call["job"]["args"][-3:]) == \
            ("vm1", call["state"], ["migrate", "vm1", "b1"])
    texts = {call["state"]: call["text"] for call in told}
    assert texts["queued"] == "job vm1 queued: migrate vm1"
    assert texts["condition"] == "job vm1 condition: waiting: a sync slot on b1 (4)"
    assert texts["done"] == "job vm1 done (exit 0): vm1 runs on b1"
    assert told[-1]["job"]["exit_code"] == 0 and told[-1]["job"]["phase"] == "finish"


def test_a_queued_job_killed_is_told_interrupted_by_the_kill(state_dir, recorder):
    assert screener(state_dir, [recorder.variable], "start", "handover", "vm1", "a2")[0] == 0
    code, _, err = screener(state_dir, [recorder.variable], "kill", "vm1")
    assert code == 0, err
    assert [(call["state"], call["text"]) for call in recorder.told()] == [
        ("queued", "job vm1 queued: handover vm1"),
        ("interrupted", "job vm1 interrupted: killed before it started")]


# ---------------------------------------------------------------- the plugin

def notifier(*variables):
    plugin = Notifier()
    plugin.configure(config=Config(variables=list(variables)))
    return plugin


JOB = {"id": "vm1", "resource": "vm1", "operation": "migrate", "state": "done",
       "args": ["--json", "--yes", "migrate", "vm1", "b1"], "exit_code": 0}


def test_the_notify_command_gets_the_job_as_json_on_stdin(tmp_path):
    command = script(tmp_path, "tell", 'cat > "$1"; echo "$FOOTBALL_JOB_ID $FOOTBALL_JOB_STATE" '
                     '> "$1.env"\n')
    out = tmp_path / "stdin.json"
    notifier(f"notify_command={command} {out}").notify(job=JOB, state="done", text="job vm1 done")
    assert json.loads(out.read_text()) == {**JOB, "text": "job vm1 done"}
    assert (tmp_path / "stdin.json.env").read_text() == "vm1 done\n"


def test_without_a_notify_command_nothing_runs():
    assert notifier().notify(job=JOB, state="done", text="job vm1 done") is None


@pytest.mark.parametrize("body, variables, message", [
    ("echo 'smtp: connection refused' >&2; exit 3\n", [],
     r"failed with exit code 3: smtp: connection refused"),
    ("sleep 30\n", ["notify_timeout=0.3"], r"did not end within 0.3 s \(notify_timeout\)"),
])
def test_a_failing_or_hanging_notify_command_raises_notify_failed_naming_it(
        tmp_path, body, variables, message):
    command = script(tmp_path, "tell", body)
    began = time.monotonic()
    with pytest.raises(NotifyFailed, match=rf"notify_command {command} \(job vm1, done\) "
                       f"{message}"):
        notifier(f"notify_command={command}", *variables).notify(job=JOB, state="done",
                                                                  text="job vm1 done")
    assert time.monotonic() - began < 20    # the script's `sleep 30` was killed with it


def test_a_notify_command_that_cannot_be_run_says_so(tmp_path):
    with pytest.raises(NotifyFailed, match="cannot be run: No such file or directory"):
        notifier(f"notify_command={tmp_path}/missing").notify(job=JOB, state="done", text="x")


def test_a_failing_notify_command_is_a_warning_and_the_job_ends_done(state_dir, tmp_path,
                                                                     worker):
    command = script(tmp_path, "tell", "echo down >&2; exit 3\n")
    failing = f"notify_command={command}"
    the_worker = worker(ScriptedExecutor(), [failing])
    code, out, err = screener(state_dir, [failing], "start", "migrate", "vm1", "b1")
    assert code == 0 and json.loads(out)["job"] == "vm1", err
    assert "football: warning: notifying that job vm1 is queued failed: notify_command" in err
    job = finished(state_dir, "vm1")
    assert (job["state"], job["exit_code"]) == ("done", 0)
    said = wait_for(lambda: [line for line in the_worker.said if "warning" in line] or None,
                    "the worker's warnings")
    assert said[0].startswith("worker test: warning: notifying that job vm1 is running failed:")
    assert "failed with exit code 3: down" in said[0]

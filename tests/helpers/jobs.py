"""Screener tests without root: `football screener ...` in-process against
a jobs' database in the test's tmp dir, a worker in this process whose
jobs run through a stand-in executor (scripted events and exit codes, or
the football command line in-process against the fake fleet), and
`football worker` as a real process that dies with the test."""

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from click.testing import CliRunner

from football.cli import cli, hoist_global_options
from football.runfile import PARAMETERS
from mars import libc
from tests.helpers.marshosts import POLL_LONGEST, poll_pauses

# CliRunner swaps sys.stdout for the whole process: one invocation at a time,
# whether the test's own or a job's run in-process
CLI_LOCK = threading.RLock()


def football(*args, env=None):
    """`football <args>` in-process (global options hoisted as main() does):
    (exit code, stdout, stderr)."""
    with CLI_LOCK:
        result = CliRunner(env=env).invoke(cli, hoist_global_options([str(arg) for arg in args]))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def refused(out):
    """Whether a `--json` command's stdout is what a refusal prints: its
    `failed` event (exit 191) alone, nothing queued or acted on."""
    events = [json.loads(line) for line in out.splitlines()]
    return [(event["event"], event["exit_code"]) for event in events] == [("failed", 191)]


def wait_for(condition, what, timeout=30.0, interval=0.05, longest=POLL_LONGEST):
    """Poll `condition()` until it returns a true value (returned), first
    after `interval` seconds, then less often up to `longest` (`poll_pauses`;
    `longest=interval` to catch a passing state); fail naming `what` after
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    for pause in poll_pauses(interval, longest):
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        time.sleep(pause)


def resource_of(args):
    """The resource of a job's football command line (after the globals)."""
    index = next(number for number, arg in enumerate(args) if arg in PARAMETERS)
    return args[index + 1]


@dataclass
class Script:
    """What a scripted job does: print `events`, wait for `gate` (when
    given), print `after`, take `seconds`, exit with `code`."""
    events: list = field(default_factory=list)
    code: int = 0
    gate: threading.Event = None
    after: list = field(default_factory=list)
    seconds: float = 0.0


class ScriptedExecutor:
    """Runs no operation: each job does what `scripts[resource]` says (by
    default: a phase event and exit 0); who ran alongside whom is logged."""

    def __init__(self):
        self.scripts = {}
        self.running = []
        self.alongside = []         # per job start: the resources running then (itself too)
        self.lock = threading.Lock()
        self.resources, self.killed, self.ran = {}, set(), []

    def interrupt(self):
        """The worker stops: every gate opens (the jobs end as it stops)."""
        for script in self.scripts.values():
            if script.gate is not None:
                script.gate.set()

    def wait(self, timeout):
        return wait_for(lambda: not self.running, "the scripted jobs to end", timeout)

    def interrupt_job(self, number):
        """Ctrl-C to job `number`: its gate opens, it ends with 190."""
        self.killed.add(number)
        script = self.scripts.get(self.resources.get(number))
        if script is not None and script.gate is not None:
            script.gate.set()

    def run(self, number, args, on_event, on_start):
        resource = resource_of(args)
        self.resources[number] = resource
        self.ran.append(resource)
        script = self.scripts.get(resource, Script([{"event": "phase", "phase": "prepare"}]))
        with self.lock:
            self.running.append(resource)
            self.alongside.append(list(self.running))
        on_start(None)
        try:
            for event in script.events:
                on_event(dict(event))
            if script.gate is not None:
                assert script.gate.wait(30), f"{resource}: the test never opened the gate"
            for event in script.after:
                on_event(dict(event))
            time.sleep(script.seconds)      # the job's work
            return 190 if number in self.killed else script.code
        finally:
            with self.lock:
                self.running.remove(resource)


class InProcessFootball:
    """Runs a job's football command line in this process (where the fake
    fleet lives), one at a time, as its job (FOOTBALL_JOB: the operation
    reads its gate and its kill in the jobs' database); its output lines
    become events as they are printed, as a child's would. While one runs,
    the test talks to the screener through `football_process`."""

    def __init__(self):
        self.env = {}       # the worker puts the jobs' database here

    def run(self, number, args, on_event, on_start):
        from football.joblink import JOB_ENV
        from football.screener import event_of

        on_start(None)
        env = {**self.env, JOB_ENV: str(number)}
        with CLI_LOCK:
            saved = sys.stdout, sys.stderr, {name: os.environ.get(name) for name in env}
            sys.stdout = _Lines(lambda line: on_event(event_of(line)))
            sys.stderr = _Lines(lambda line: on_event({"event": "stderr", "text": line}))
            os.environ.update(env)
            try:
                cli.main(args, prog_name="football", standalone_mode=False)
                code = 0
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else 1
            except Exception as error:      # a bug: the job fails, the test sees why
                on_event({"event": "stderr", "text": repr(error)})
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                sys.stdout, sys.stderr, before = saved
                for name, value in before.items():
                    if value is None:
                        os.environ.pop(name, None)
                    else:
                        os.environ[name] = value
        return code

    def interrupt_job(self, number):
        """A kill: the operation sees it in the jobs' database at its next poll."""


class _Lines(io.TextIOBase):
    """A text stream that hands each complete line to `on_line`."""

    def __init__(self, on_line):
        self.on_line, self.partial = on_line, ""

    def write(self, text):
        self.partial += text
        *lines, self.partial = self.partial.split("\n")
        for line in lines:
            self.on_line(line)
        return len(text)

    def flush(self):
        if self.partial:
            self.on_line(self.partial)
            self.partial = ""

    def isatty(self):
        return False


def football_process(*args, timeout=120):
    """`football <args>` as a process of its own (CompletedProcess): what a
    test runs while an in-process job holds the command line."""
    return subprocess.run([sys.executable, "-m", "football", *map(str, args)],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ,
                                                "PYTHONPATH": os.pathsep.join(sys.path)})


def stored_jobs(state_dir):
    """{id: job row} of the jobs' database in `state_dir`, read directly (not
    through the command line, which an in-process job may hold)."""
    from football.config import Config
    from football.screener import JobStore

    store = JobStore(Config(variables=[f"state_dir={state_dir}"]))
    try:
        return {job["id"]: job for job in store.jobs()}
    finally:
        store.close()


def jobs(state_dir, *options):
    """`screener list --json` of the jobs' database in `state_dir`: {id: job}."""
    code, out, err = football("--json", "--var", f"state_dir={state_dir}", "screener", "list",
                              *options)
    assert code == 0, err
    return {job["id"]: job for job in map(json.loads, out.splitlines())}


def events_of(state_dir, job_id, *options):
    """`screener show --json <job_id>`'s events (as `jobs`)."""
    code, out, err = football("--json", "--var", f"state_dir={state_dir}", "screener", "show",
                              job_id, *options)
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines()][1:]


# ------------------------------------------------- `football worker` processes


def _killed_with_parent():
    libc.die_with_parent(signal.SIGKILL)        # dies with the test run


class WorkerProcesses:
    """`football worker` processes of one test; each is killed (by pid) at
    the end of the test, and dies with the test run if that is killed."""

    def __init__(self, state_dir, variables=(), env=None, options=()):
        self.state_dir, self.variables = state_dir, list(variables)
        self.env = env or os.environ
        self.options = list(options)        # other global options (--config FILE)
        self.processes = []

    def start(self, worker_id="w1"):
        argv = [sys.executable, "-m", "football", *self.options,
                "--var", f"state_dir={self.state_dir}",
                *[item for variable in self.variables for item in ("--var", variable)],
                "worker", "--id", worker_id]
        log = open(os.path.join(self.state_dir, f"worker-{worker_id}-{len(self.processes)}.log"),
                   "w")
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, preexec_fn=_killed_with_parent,
                                   env={**self.env, "PYTHONPATH": os.pathsep.join(sys.path)})
        log.close()
        process.log_path = log.name
        self.processes.append(process)
        return process

    def log(self, process):
        with open(process.log_path) as handle:
            return handle.read()

    def kill_all(self):
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)


def job_worker(state_dir, executor, worker_id="test", poll=0.05):
    """A Worker in this process on the jobs' database of `state_dir`, started
    (stop it with `.stop(timeout=...)`)."""
    from football.config import Config
    from football.screener import Worker

    worker = Worker(Config(variables=[f"state_dir={state_dir}",
                                      f"jobs_poll_interval={poll}"]), worker_id, executor)
    worker.start()
    return worker

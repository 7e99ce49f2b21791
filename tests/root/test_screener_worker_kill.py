"""The lab's screener worker (`football lab up` starts it) killed with -9
while a job (vm1 to cluster2) is inside its sync: the orphaned operation is
interrupted as by Ctrl-C and a new lab worker (`lab up` again) resumes the
job from its journal, `screener` saying meanwhile that no worker runs.
Then the worker killed again, inside the downtime window, *with* its
operation, as when the controller's machine dies: nothing compensates,
vm1 stays down, its locks stay. The worker of *another controller* (another
state dir) sharing the jobs' queue in PostgreSQL, as controllers that scale
out do, takes the job over: it goes on from the journal kept with the job
(the window open), the dead run's lock taken over by the same command once
a lease old, its step locks broken as a dead run's. The job ends `done`;
vm1's files and records are intact, no lock or intent is left, and the
lab's controller finishes its own journal of the run that stopped (else it
would call the migrate unfinished for ever). One move for both kills: each
is a run of its own.

The window is caught with a test plugin (`plugin_dirs` of that job only)
whose `resource_start` — the container stopped, before the handover — holds
once until it is interrupted; the sync likewise, by its `phase` hook at the
start of the wait for the sync (the job's progress events caught it while
the sync ran, but a sync of 80 MiB on a fast machine may end before the
first: the test then waited for 300 s and failed, once in CI)."""

import json
import os
import signal

import pytest

from tests.helpers.dataplane import tree_checksums
from tests.helpers.jobs import WorkerProcesses, events_of, jobs, wait_for
from tests.helpers.lab import (FEWER_RECORDS, files_dir, football, lab_up, roles_and_running,
                               sequence_problems, written_files)
from tests.helpers.postgres import postgres_server, postgres_url  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.root, pytest.mark.integration]

# a run lock's lease of 2 s: the other controller takes the dead run's lock
# over 2 s after its last renewal, not 300 s
TUNING = {"FOOTBALL_JOBS_POLL_INTERVAL": "0.2", "FOOTBALL_WORKER_HEARTBEAT": "0.5",
          "FOOTBALL_WORKER_DEAD_AFTER": "3", "FOOTBALL_RUN_LOCK_LEASE": "2"}

HOLD_PLUGIN = '''\
"""Holds a resource's first start (inside its downtime window), and its
first wait for the sync, until the run is interrupted; says so in
held-<res> and waiting-<res> beside this file."""
import time
from pathlib import Path

from football.hooks import hookimpl


def hold_once(marker, text):
    if not marker.exists():
        marker.write_text(text)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            time.sleep(0.1)


@hookimpl(tryfirst=True)
def resource_start(host, res, hooks):
    hold_once(Path(__file__).with_name(f"held-{res}"), host.name)
    return None


@hookimpl
def phase(operation, res, name):
    if name == "wait":
        hold_once(Path(__file__).with_name(f"waiting-{res}"), operation)
'''


def lab_worker(lab):
    return json.loads((lab.dir / "lab.json").read_text()).get("worker")


def screener(lab, *args):
    result = football(lab.env, "--json", *args)
    assert result.returncode == 0, result.stderr
    return result


def event_kinds(queue, job_id):
    return [event["event"] for event in events_of(*queue[:1], job_id, *queue[1:])]


def job_now(queue, job_id):
    """Job `job_id` as the lab's controller lists it (`queue`: its state
    dir, then the options naming the jobs' database)."""
    return jobs(*queue)[job_id]


def kill_the_worker(lab, queue, job_id, with_its_operation=False):
    """kill -9 of the lab's worker while job `job_id` runs; returns once
    its orphaned operation ended (interrupted as by Ctrl-C: its parent
    died; a downtime window compensated) — or, `with_its_operation`, the
    operation and what it runs killed with -9 first, as when the
    controller's machine dies: nothing cleans up, a window stays open."""
    killed = lab_worker(lab)
    child = job_now(queue, job_id)["child_pid"]
    if with_its_operation:
        os.killpg(child, signal.SIGKILL)        # its own session: its commands too
    os.kill(killed["pid"], signal.SIGKILL)
    wait_for(lambda: not _is_running(child), f"{job_id}'s orphaned operation to end",
             timeout=120, interval=0.2)
    return killed


def ended(queue, job_id):
    return wait_for(lambda: (lambda job: job if job["state"] not in ("queued", "running",
                                                                        "condition")
                             else None)(job_now(queue, job_id)), f"{job_id} to end",
                    timeout=300, interval=0.5)


def _is_running(pid):
    try:
        with open(f"/proc/{pid}/cmdline") as cmdline:
            return bool(cmdline.read())      # a zombie's is empty
    except OSError:
        return False


def test_a_job_killed_inside_its_sync_and_its_window_is_resumed_by_a_new_and_another_worker(
        tmp_path, postgres_url):  # noqa: F811 (the fixture)
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "hold_start.py").write_text(HOLD_PLUGIN)
    env = {**TUNING, **FEWER_RECORDS, "FOOTBALL_JOBS_DATABASE_URL": postgres_url}
    with lab_up(tmp_path, worker=True, env=env) as lab:
        queue = (lab.dir / "controller", "--var", f"jobs_database_url={postgres_url}")
        files = written_files(lab, "a1", "data", count=20, size=4 << 20)
        assert f"screener worker: pid {lab_worker(lab)['pid']}, running" in \
            lab.football("status").stdout

        # to cluster2: killed inside its sync, resumed by a new lab worker
        result = screener(lab, "--var", f"plugin_dirs={plugins}", "screener", "start",
                          "migrate", "vm1", "b1", "b2")
        assert "no worker" not in result.stderr
        wait_for(lambda: (plugins / "waiting-vm1").exists(), "the job inside its sync",
                 timeout=300, interval=0.2)
        killed = kill_the_worker(lab, queue, "vm1")
        wait_for(lambda: "no worker is running" in screener(lab, "screener", "list").stderr,
                 "`screener list` to say that no worker runs")
        lab.up("--no-wait", worker=True)
        assert lab_worker(lab)["pid"] != killed["pid"]

        # killed inside its downtime window (the container stopped), with its
        # operation, as if the controller died: the window stays open, its
        # locks stay; resumed by the worker of another controller on the
        # same queue
        wait_for(lambda: (plugins / "held-vm1").exists(), "the job inside its window",
                 timeout=300, interval=0.2)
        assert "downtime-begin" in event_kinds(queue, "vm1")
        kill_the_worker(lab, queue, "vm1", with_its_operation=True)
        assert roles_and_running(lab.status(), "vm1")[1] == []        # down: nobody restarts it
        other_dir = tmp_path / "other-controller"
        other_dir.mkdir()
        others = WorkerProcesses(str(other_dir), env=lab.env)
        try:
            other = others.start("other")
            job = ended(queue, "vm1")
            log = others.log(other)
        finally:
            others.kill_all()
        assert (job["state"], job["worker"]) == ("done", "other"), \
            (events_of(*queue[:1], "vm1", *queue[1:])[-8:], log[-3000:])
        assert event_kinds(queue, "vm1").count("job-start") == 3
        # the other controller went on from the journal kept with the job
        said = [event.get("text", "") for event in events_of(*queue[:1], "vm1", *queue[1:])]
        assert any(text.startswith("  migrate of vm1: going on from the journal its screener "
                                   "job's last run kept") and "critical-section" in text
                   for text in said), said
        assert any(text.startswith("  vm1 is down since ") and "an earlier run ended inside "
                   "its downtime window; going on now" in text for text in said), said

        roles, running = roles_and_running(lab.status(), "vm1")
        assert roles == {"b1": "Primary", "b2": "Secondary"} and running == ["b1"], \
            (roles, running)
        assert not sequence_problems(lab.records("b1")), lab.records("b1")[-5:]
        assert tree_checksums(files_dir(lab, "b1", "data")) == files
        # the lab's controller, whose run stopped unfinished, learns from the
        # queue that the job was done elsewhere: its journal is finished
        status = football(lab.env, "status", "vm1")
        assert status.returncode == 0 and "unfinished" not in status.stdout, status.stdout
        journal = queue[0] / "journal"
        assert not list(journal.glob("*.json"))
        assert json.loads((journal / "migrate-vm1.done").read_text())[
            "completed_elsewhere"]["worker"] == "other"
        left = [str(path.relative_to(lab.dir)) for host in ("a1", "a2", "b1", "b2")
                for directory in ("var/lock/football", "var/lib/football/intents")
                for path in (lab.dir / host / directory).glob("*.lock")]
        assert not left, left        # the run lock kept by the run that stopped too
        last = lab_worker(lab)
    assert not _is_running(last["pid"]), "lab down left the worker running"

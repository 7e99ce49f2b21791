"""The downtime window and its plugins in the lab (one lab for the module,
the tests run in order): a plugin veto or a closed downtime gate refuses
before anything is stopped (191); a start that fails on the target is
compensated on the source (198); a start that fails everywhere is critical
(199) and the message names `football repair-vm`. A test plugin from a
plugin directory injects the failures and records the hooks it is called
with."""

import json
import subprocess
import time

import pytest

from football.hostside.locks import list_locks
from tests.helpers.lab import (FOOTBALL, football, module_lab, roles_and_running,
                               sequence_problems, wait_for_records)

pytestmark = [pytest.mark.root, pytest.mark.integration]

TEST_PLUGIN = '''"""Fails or vetoes what the test asks for in the environment, and
appends every hook call it sees to FOOTBALL_TEST_HOOK_LOG (JSON lines)."""

import json
import os
import time

from football.hooks import hookimpl


def named(variable, host):
    return host.name in os.environ.get(variable, "").split(",")


def record(hook, **fields):
    with open(os.environ["FOOTBALL_TEST_HOOK_LOG"], "a") as log:
        log.write(json.dumps({"hook": hook, **fields}) + "\\n")


@hookimpl(wrapper=True)
def resource_start(host, res):
    if named("FOOTBALL_TEST_FAIL_START", host):
        raise RuntimeError(f"test plugin: the start of {res} on {host.name} fails")
    held = os.environ.get("FOOTBALL_TEST_HOLD_START")
    if held:        # inside the window, the container stopped: until <held> exists
        open(held + ".reached", "w").close()
        deadline = time.monotonic() + 600
        while not os.path.exists(held) and time.monotonic() < deadline:
            time.sleep(0.1)
    return (yield)


@hookimpl
def is_startable(host, res):
    if named("FOOTBALL_TEST_NOT_STARTABLE", host):
        return (False, f"test plugin: {host.name} may not run {res}")
    return True


@hookimpl
def want_downtime(res, source, target):
    return not os.environ.get("FOOTBALL_TEST_NO_DOWNTIME")


@hookimpl
def football_start(operation, res, args):
    record("football_start", operation=operation)


@hookimpl
def tell_action(operation, res, action, hosts):
    record("tell_action", action=action, hosts=[host.name for host in hosts])


@hookimpl
def section(operation, res, name):
    record("section", name=name)


@hookimpl
def start_wait(what, res):
    record("start_wait", what=what)


@hookimpl
def report_downtime(operation, res, source, host, seconds):
    record("report_downtime", source=source.name, host=host.name)


@hookimpl
def football_finished(operation, res, summary):
    record("football_finished")


@hookimpl
def football_failed(operation, res, error, exit_code):
    record("football_failed", exit_code=exit_code)
'''


lab = module_lab("compensation")


@pytest.fixture
def plugins(tmp_path):
    """A plugin directory with the test plugin."""
    directory = tmp_path / "plugins"
    directory.mkdir()
    (directory / "faults.py").write_text(TEST_PLUGIN)
    return directory


@pytest.fixture
def handover(lab, tmp_path, plugins):
    """`football --json --var plugin_dirs=<the test plugin> handover vm1 HOST`
    with `env` added; returns (result, the hook calls the plugin saw)."""
    hook_log = tmp_path / "hooks.jsonl"

    def run(host, *options, **env):
        hook_log.write_text("")
        result = football(dict(lab.env, FOOTBALL_TEST_HOOK_LOG=str(hook_log), **env),
                          "--json", "--var", f"plugin_dirs={plugins}", "--var",
                          "poll_interval=0.1", *options, "handover", "vm1", host)
        calls = [json.loads(line) for line in hook_log.read_text().splitlines()]
        return result, calls

    return run


def placement(lab):
    """{host: role} of vm1, the hosts where it runs, {host: its locks}."""
    status = lab.status()
    roles, running = roles_and_running(status)
    locks = {name: list_locks(lab.dir / name / "var/lock/football") for name in status}
    return roles, running, locks


def assert_last_downtime(lab, source, host):
    """The downtime plugin's last entry is a handover from `source` that ran
    again on `host`, with the window measured (how long is for benchmarks)."""
    entry = json.loads((lab.dir / "controller" / "downtime.log").read_text().splitlines()[-1])
    assert (entry["operation"], entry["source"], entry["host"]) == ("handover", source, host)
    assert entry["downtime_seconds"] > 0


def left_behind(locks):
    """{host: items} of the locks left but vm1's run lock, which the failed
    (so unfinished) handover keeps against other controllers."""
    return {host: sorted(item for item, record in items.items()
                         if not (item == "run-vm1" and record.get("permanent")))
            for host, items in locks.items() if items}


def assert_runs_only_on(lab, host, records_before):
    roles, running, locks = placement(lab)
    assert roles[host] == "Primary", roles
    assert running == [host]
    assert not any(left_behind(locks).values()), f"locks left: {locks}"
    records = wait_for_records(lab, host, records_before + 3)
    assert not sequence_problems(records), sequence_problems(records)
    return records


def test_a_veto_or_a_closed_downtime_gate_refuses_with_191_before_anything_is_stopped(
        lab, handover):
    before = len(wait_for_records(lab, "a1", 3))

    vetoed, _ = handover("a2", FOOTBALL_TEST_NOT_STARTABLE="a2")
    assert vetoed.returncode == 191, vetoed.stderr
    assert "a2: vm1 cannot start there: test plugin: a2 may not run vm1; nothing was " \
           "stopped" in vetoed.stderr

    gated, calls = handover("a2", "--var", "downtime_gate_timeout=0.5",
                            FOOTBALL_TEST_NO_DOWNTIME="1")
    assert gated.returncode == 191, gated.stderr
    assert "no downtime for vm1 within downtime_gate_timeout 0.5 s" in gated.stderr
    assert {"hook": "start_wait", "what": "downtime"} in calls
    assert calls[-1] == {"hook": "football_failed", "exit_code": 191}
    assert not [call for call in calls if call["hook"] == "section"], "a window was opened"

    assert_runs_only_on(lab, "a1", before)


def test_a_start_failing_on_the_target_is_compensated_on_the_source_with_exit_198(
        lab, handover):
    before = len(wait_for_records(lab, "a1", 3))
    result, calls = handover("a2", FOOTBALL_TEST_FAIL_START="a2")
    assert result.returncode == 198, result.stderr
    assert "handover of vm1 failed inside the downtime window" in result.stderr
    assert "test plugin: the start of vm1 on a2 fails" in result.stderr
    assert "vm1 runs again on a1" in result.stderr
    assert_runs_only_on(lab, "a1", before)
    hooks = [call["hook"] for call in calls]
    assert {"hook": "tell_action", "action": "handover", "hosts": ["a1", "a2"]} in calls
    assert {"hook": "section", "name": "compensation"} in calls
    assert hooks[0] == "football_start" and calls[-1] == {"hook": "football_failed",
                                                          "exit_code": 198}
    assert "football_finished" not in hooks
    # The window was real downtime all the same: reported where vm1 runs again.
    assert {"hook": "report_downtime", "source": "a1", "host": "a1"} in calls
    assert_last_downtime(lab, "a1", "a1")


def test_a_handover_without_faults_is_reported_to_the_plugins_and_the_downtime_log(
        lab, handover):
    before = len(wait_for_records(lab, "a1", 3))
    result, calls = handover("a2")
    assert result.returncode == 0, result.stderr
    assert_runs_only_on(lab, "a2", before)
    assert {"hook": "report_downtime", "source": "a1", "host": "a2"} in calls
    assert calls[-1] == {"hook": "football_finished"}
    assert_last_downtime(lab, "a1", "a2")


def test_a_start_failing_everywhere_exits_199_naming_repair_vm_and_lab_up_restarts_it(
        lab, handover):
    before = len(wait_for_records(lab, "a2", 3))
    result, calls = handover("a1", FOOTBALL_TEST_FAIL_START="a1,a2")
    assert result.returncode == 199, result.stderr
    assert "vm1 is NOT running anywhere" in result.stderr
    assert "football repair-vm vm1 a2 a1" in result.stderr
    roles, running, locks = placement(lab)
    assert running == [] and not any(left_behind(locks).values()), (running, locks)
    assert calls[-1] == {"hook": "football_failed", "exit_code": 199}

    # The failing starts never got to `marsadm primary` (the cluster manager's
    # start owns it): MARS still has its primary on a2, and `lab up` starts
    # the demo container there.
    lab.up("--no-wait")
    assert_runs_only_on(lab, "a2", before)


def test_a_controller_killed_in_the_window_is_repaired_from_another_and_its_run_then_ends(
        lab, handover, plugins, tmp_path):
    """The last test's handover to a1 stopped in its window (its journal and
    its kept run lock are this controller's): its re-run finishes it. Then a
    handover to a2 is killed (-9) inside its window, the container stopped
    (the test plugin holds its start). On a second controller (its own
    state dir, as another operator's machine) repair-vm, the way out,
    begins over the dead run once its lock is a lease old and starts vm1;
    the first controller's re-run of its handover then ends it there.""" 
    finished, _ = handover("a1")
    assert finished.returncode == 0, finished.stderr
    before = len(wait_for_records(lab, "a1", 3))
    held = tmp_path / "start-held"
    first = subprocess.Popen(
        [FOOTBALL, "--json", "--var", f"plugin_dirs={plugins}", "--var", "run_lock_lease=1",
         "handover", "vm1", "a2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=dict(lab.env, FOOTBALL_TEST_HOOK_LOG=str(tmp_path / "killed.jsonl"),
                 FOOTBALL_TEST_HOLD_START=str(held)))
    try:
        deadline = time.monotonic() + 600
        while not held.with_name(held.name + ".reached").exists():
            assert first.poll() is None and time.monotonic() < deadline, \
                "the handover never reached its start"
            time.sleep(0.1)
    finally:
        first.kill()
        first.wait()
    assert placement(lab)[1] == [], "vm1 still runs: the kill was not inside the window"

    second = ["--var", f"state_dir={tmp_path / 'second-controller'}", "--var",
              "run_lock_lease=1", "--yes"]
    repaired = football(lab.env, *second, "--var", "lock_retry_timeout=60", "repair-vm",
                        "vm1", "a2", "a1")
    assert repaired.returncode == 0, repaired.stderr
    _, running, locks = placement(lab)
    assert len(running) == 1 and not any(locks.values()), (running, locks)
    assert not sequence_problems(wait_for_records(lab, running[0], before + 3))

    resumed, _ = handover("a2")
    assert resumed.returncode == 0, resumed.stderr
    assert_runs_only_on(lab, "a2", before)
    assert not list((lab.dir / "controller" / "journal").glob("*.json"))

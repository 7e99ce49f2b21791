"""The admin operations (repair-vm, repair-mars, lv-cleanup, lock, unlock,
merge-cluster, split-cluster) are `Operation`s: on the fake fleet, each one's
`--dry-run` changes nothing and lists exactly the host commands its real run
then issues (the `football` locks aside, but for lock and unlock themselves;
waits aside), and the plugins are told `football_start`, then
`football_finished` on success or `football_failed` with the exit code of a
refusal."""

import json
import textwrap
from pathlib import Path

import pytest

from football.screener import JobSpec
from tests.helpers.fakefleet import (SharedQueue, failing, fake_fleet,  # noqa: F401
                                     football, replica_behind)
from tests.unit.test_dry_run import assert_dry_run_is_the_real_run, planned

LOCKS = "/var/lock/football"


@pytest.fixture
def fleet(fake_fleet):  # noqa: F811
    return fake_fleet


def assert_dry_run_lists_what_the_run_issues(fleet, *args, locks=False, in_parallel=False):
    listed = assert_dry_run_is_the_real_run(fleet, *args, locks=locks, in_parallel=in_parallel)
    assert listed, "nothing listed: the test proves nothing"
    return listed


def state(fleet):
    """What the fleet's hosts hold: MARS clusters, resources, containers, LVs, locks."""
    return (dict(fleet.cluster_id),
            {res: (resource.primary, sorted(resource.replicas))
             for res, resource in fleet.resources.items()},
            {name: dict(states) for name, states in fleet.containers.items()},
            {name: fleet.lvs(name) for name in fleet.hosts},
            {name: fleet.locks(name) for name in fleet.hosts})


def lock_argv(fleet, host, *args):
    return ("football-host", "lock", fleet.hosts[host].path(LOCKS), *args)


def take_as(fleet, host, owner):
    """`owner` takes the item `football` on `host` (another run, an operator)."""
    fleet.run(host, lock_argv(fleet, host, "take", "football", "--owner", owner,
                              "--stale-after", "3600"))


# --- dry run = the commands of the real run -------------------------------------------

def test_repair_vms_dry_run_lists_the_stop_elsewhere_and_the_start_the_repair_issues(fleet):
    fleet.containers["a1"]["vm1"] = "STOPPED"          # as a crash leaves it
    listed = assert_dry_run_lists_what_the_run_issues(fleet, "repair-vm", "vm1", "a2", "a1")
    assert ("a1", ("umount", fleet.hosts["a1"].mountpoint("vm1"))) in listed
    assert [host for host, argv in listed if "primary" in argv] == ["a2"]
    assert fleet.running("vm1") == ["a2"] and fleet.resources["vm1"].primary == "a2"
    assert not fleet.violations


def test_repair_mars_dry_run_lists_the_stop_the_rebuild_and_the_start_it_issues(fleet):
    listed = assert_dry_run_lists_what_the_run_issues(fleet, "repair-mars", "vm1", "a1")
    lv = fleet.hosts["a1"].path("/dev/vg0/vm1")
    rebuild = [argv for host, argv in listed if "-resource" in " ".join(argv)]
    assert rebuild == [("marsadm", "delete-resource", "--force", "vm1"),
                       ("marsadm", "create-resource", "vm1", lv, "--timeout=570")]
    assert fleet.members("vm1") == ["a1"] and fleet.running("vm1") == ["a1"]
    assert not fleet.sequence_problems("vm1") and not fleet.violations


def test_repair_mars_takes_the_busy_primarys_copy_for_whole(fleet):
    """Kernel MARS's `view-is-consistent` is 0 on a primary with writes not
    yet written back: its copy is the current one all the same."""
    fleet.writing_back.add("a1")
    code, _, stderr = football(fleet, "repair-mars", "vm1", "a1")
    assert code == 0, stderr
    assert fleet.members("vm1") == ["a1"] and fleet.running("vm1") == ["a1"]
    assert not fleet.sequence_problems("vm1") and not fleet.violations


def test_repair_mars_refuses_a_partial_copy_while_a_whole_one_answers(fleet):
    """A copy whose sync had not begun (b1, just joined) was taken: vm1,
    running fine on a1, stopped there and started on b1's empty copy (the
    workload from its first record again), a1 and a2 dropped."""
    fleet.sync_chunk = 1 << 20
    fleet.stalled["b1"] = "slow link"
    code, _, stderr = football(fleet, "migrate-prepare", "vm1", "b1")
    assert code == 0, stderr
    before = len(fleet.changes())
    code, _, stderr = football(fleet, "repair-mars", "vm1", "b1")
    assert code == 191 and "b1's copy of vm1 is not consistent (its sync is not complete" \
        in stderr and "Name a host whose copy is whole first: a1, a2" in stderr, stderr
    assert [change for change in fleet.changes()[before:]
            if change[1][:2] != ("football-host", "lock")] == []
    assert fleet.running("vm1") == ["a1"]


def test_repair_mars_from_a_copy_behind_the_running_primary_says_what_it_loses(fleet):
    """a2 behind while vm1 ran on a1: repair-mars a2 rolled vm1 back to
    a2's data, unsaid (and the confirmation did not say it either)."""
    fleet.stalled["a2"] = "fetch cut off"
    for _ in range(3):
        fleet.run("b1", ["marsadm", "view-get-primary", "vm1"])        # vm1 writes on a1
    code, _, stderr = football(fleet, "repair-mars", "vm1", "a2", yes=False)
    assert code == 191 and "vm1 runs on its primary a1: rebuilt from a2's copy it goes back " \
        "to what a2 holds" in stderr and "to keep a1's data, name a1 first" in stderr, stderr
    assert fleet.running("vm1") == ["a1"] and sorted(fleet.members("vm1")) == ["a1", "a2"]


def test_repair_mars_from_a_copy_whose_lag_cannot_be_read_says_that_too(fleet, monkeypatch):
    """Its `view-work-rest` said nothing (or failed): the confirmation left
    out what the rebuild loses, as if nothing."""
    failing(fleet, monkeypatch, lambda host, argv: host == "a2" and
            argv[:2] == ("marsadm", "view-work-rest"), 0, "")
    code, _, stderr = football(fleet, "repair-mars", "vm1", "a2", yes=False)
    assert code == 191 and "vm1 runs on its primary a1: rebuilt from a2's copy it goes back " \
        "to what a2 holds (what of a1's log is not yet replayed there cannot be told: its " \
        "view-work-rest says nothing; that is lost); to keep a1's data, name a1 first" \
        in stderr, stderr
    assert fleet.running("vm1") == ["a1"] and sorted(fleet.members("vm1")) == ["a1", "a2"]


def test_repair_mars_from_a_copy_behind_the_stopped_primary_says_what_it_loses(fleet):
    """The same with vm1 stopped on a1: said only while it ran there."""
    fleet.stalled["a2"] = "fetch cut off"
    for _ in range(3):
        fleet.run("b1", ["marsadm", "view-get-primary", "vm1"])        # vm1 writes on a1
    host = fleet.hosts["a1"]
    assert fleet.run("a1", ["football-host", "ct", host.path("/var/lib/lxc"), "stop",
                            "vm1"]).ok
    code, _, stderr = football(fleet, "repair-mars", "vm1", "a2", yes=False)
    assert code == 191 and "vm1 has its primary a1: rebuilt from a2's copy it goes back " \
        "to what a2 holds" in stderr and "to keep a1's data, name a1 first" in stderr, stderr
    assert sorted(fleet.members("vm1")) == ["a1", "a2"]


def test_repair_mars_from_a_copy_behind_another_replica_says_what_it_loses(fleet):
    """a1 (the primary) gone; b1 received all of its log, a2 not the last
    of it: rebuilt from a2 unsaid, b1 dropped."""
    replica_behind(fleet, "vm2")
    fleet.switch_off("a1")
    code, _, stderr = football(fleet, "repair-mars", "vm2", "a2", yes=False)
    assert code == 191 and "b1 has received more of vm2's log than a2: rebuilt from a2's " \
        "copy, vm2 loses what only b1 holds; to keep it, name b1 first" in \
        " ".join(stderr.split()), stderr
    assert sorted(fleet.members("vm2")) == ["a1", "a2", "b1"]


def test_repair_mars_records_its_steps_in_a_journal_finished_when_it_ran_through(fleet):
    code, _, stderr = football(fleet, "repair-mars", "vm1", "a1")
    assert code == 0, stderr
    journal = Path(fleet.state_dir) / "journal"
    assert not list(journal.glob("*.json"))
    done = json.loads((journal / "repair-mars-vm1.done").read_text())
    assert done["steps"] == ["stopped", "rebuilt", "started"]
    assert done["decided"] == {"targets": ["a1"], "origin": ["a1", "a2"]}


def test_repair_mars_resumes_on_the_decided_host_after_a_crash_between_delete_and_create(
        fleet):
    fleet.fail_next["create-resource"] = 1      # the run dies before the creation
    code, _, _ = football(fleet, "repair-mars", "vm1", "a1")
    assert code != 0 and "vm1" not in fleet.resources      # MARS knows it nowhere now
    code, _, stderr = football(fleet, "lv-cleanup", "vm1", "--do-it")
    assert code == 0, stderr
    assert "vm1" in fleet.lvs("a1"), "lv-cleanup removed the LV the repair rebuilds from"
    code, events, stderr = football(fleet, "repair-mars", "vm1", "a1")
    assert code == 0, stderr
    assert "* resuming repair-mars of vm1 on a1" in [event.get("text") for event in events]
    assert fleet.members("vm1") == ["a1"] and fleet.running("vm1") == ["a1"]
    assert not fleet.violations


def test_a_repair_mars_job_another_controller_completed_is_not_resumed_here_later(
        fleet, tmp_path, monkeypatch):
    """A repair-mars job dies between delete and create here; a worker of
    another controller finishes it on a1 (the journal kept with the job).
    The next emergency, here, asks for a2: its run must not resume this
    controller's old journal and rebuild from a1 — the journal of a job done
    elsewhere is finished first."""
    queue = SharedQueue(tmp_path, monkeypatch)
    [job_id] = queue.store.queue([JobSpec("vm1", "repair-mars", ["a1"])], [])
    number = queue.store.job(job_id)["number"]
    monkeypatch.setenv("FOOTBALL_JOB", str(number))
    fleet.fail_next["create-resource"] = 1
    code, _, _ = football(fleet, *queue.options, "repair-mars", "vm1", "a1")
    assert code != 0 and "vm1" not in fleet.resources
    fleet.age_locks("run-vm1", 1000)
    mine, fleet.state_dir = fleet.state_dir, str(tmp_path / "other-controller")
    code, events, stderr = football(fleet, *queue.options, "repair-mars", "vm1", "a1")
    fleet.state_dir = mine
    assert code == 0, stderr
    assert "* resuming repair-mars of vm1 on a1" in [event.get("text") for event in events]
    queue.store.update(number, state="done", worker="other")
    monkeypatch.delenv("FOOTBALL_JOB")
    code, events, stderr = football(fleet, *queue.options, "--dry-run", "repair-mars", "vm1",
                                    "a2")
    queue.close()
    said = [event.get("text") for event in events]
    assert "* resuming repair-mars of vm1 on a1" not in said, said
    # judged afresh: a2's LV is left from the replica the repair dropped,
    # while a1 holds vm1 and answers
    assert code == 191 and "a2 is no replica of vm1" in stderr, stderr


def test_lv_cleanups_dry_run_lists_the_removal_of_the_leftover_lv_only(fleet):
    b2 = fleet.hosts["b2"]
    fleet.run("b2", ["football-host", "vg", b2.path("/dev/vg0"), "create", "vm1",
                     str(64 << 20)])                # a stray LV of an interrupted migrate
    listed = assert_dry_run_lists_what_the_run_issues(fleet, "lv-cleanup", "vm1", "--do-it")
    assert listed == [("b2", ("football-host", "vg", b2.path("/dev/vg0"), "remove", "vm1"))]
    assert "vm1" not in fleet.lvs("b2") and "vm1" in fleet.lvs("a1") and "vm1" in fleet.lvs("a2")


def test_lv_cleanup_without_do_it_is_a_dry_run_of_it(fleet):
    b2 = fleet.hosts["b2"]
    fleet.run("b2", ["football-host", "vg", b2.path("/dev/vg0"), "create", "vm1",
                     str(64 << 20)])
    before = len(fleet.changes())
    code, events, stderr = football(fleet, "lv-cleanup", "vm1")
    assert code == 0, stderr
    assert len(fleet.changes()) == before and "vm1" in fleet.lvs("b2")
    assert planned(events) == [("b2", ("football-host", "vg", b2.path("/dev/vg0"),
                                       "remove", "vm1"))]
    result = next(event for event in events if event["event"] == "result")
    assert result["would_remove"] == ["b2"] and sorted(result["kept"]) == ["a1", "a2"]
    assert "run `football lv-cleanup vm1 --do-it` to remove it" in \
        [event.get("text") for event in events]


def test_locks_dry_run_lists_the_takes_and_unlocks_the_releases_where_it_is_held(fleet):
    listed = assert_dry_run_lists_what_the_run_issues(fleet, "lock", "football", "b1", "a1",
                                                      locks=True)
    assert [(host, argv[3]) for host, argv in listed] == [("a1", "take"), ("b1", "take")]
    assert "football" in fleet.locks("a1") and "football" in fleet.locks("b1")
    # unlock releases on all hosts at once: in any order; the holder it saw
    owners = {host: fleet.locks(host)["football"]["owner"] for host in ("a1", "b1")}
    listed = assert_dry_run_lists_what_the_run_issues(fleet, "unlock", "football", "a1", "b1",
                                                      "b2", locks=True, in_parallel=True)
    assert listed == [(host, lock_argv(fleet, host, "release", "football", "--owner",
                                       owners[host])) for host in ("a1", "b1")]
    assert not any(fleet.locks(host) for host in fleet.hosts)


def test_merge_clusters_dry_run_lists_the_merge_and_split_clusters_the_split_and_remerge(
        fleet):
    listed = assert_dry_run_lists_what_the_run_issues(fleet, "merge-cluster", "a1", "b1")
    assert listed == [("b1", ("marsadm", "merge-cluster", "a1", fleet.hosts["a1"].address))]
    assert fleet.cluster_of("a1") == ["a1", "a2", "b1", "b2"]
    listed = assert_dry_run_lists_what_the_run_issues(fleet, "split-cluster", "a1")
    assert listed == [("a1", ("marsadm", "split-cluster")),
                      ("b2", ("marsadm", "merge-cluster", "b1", fleet.hosts["b1"].address))]
    assert fleet.cluster_of("a1") == ["a1", "a2"] and fleet.cluster_of("b1") == ["b1", "b2"]


# --- the plugins are told how it went -----------------------------------------------

RECORDER = '''
import json

from football.hooks import hookimpl


def note(**fields):
    with open({log!r}, "a") as log:
        log.write(json.dumps(fields) + "\\n")


@hookimpl
def football_start(operation, res, args):
    note(hook="football_start", operation=operation, res=res)


@hookimpl
def football_finished(operation, res, summary):
    note(hook="football_finished", operation=operation, res=res)


@hookimpl
def football_failed(operation, res, error, exit_code):
    note(hook="football_failed", operation=operation, res=res, exit_code=exit_code)
'''


@pytest.fixture
def told(fleet, tmp_path):
    """`told(*args)`: run `football <args>` with a plugin that records the
    start and end hooks; (exit code, [(hook, operation, res[, exit code])])."""
    directory, log = tmp_path / "plugins.d", tmp_path / "hooks.jsonl"
    directory.mkdir()
    (directory / "recorder.py").write_text(textwrap.dedent(RECORDER.format(log=str(log))))

    def run(*args):
        log.unlink(missing_ok=True)
        code, _, stderr = football(fleet, "--var", f"plugin_dirs={directory}", *args)
        calls = [tuple(json.loads(line).values()) for line in log.read_text().splitlines()] \
            if log.exists() else []
        return code, calls, stderr

    return run


@pytest.mark.parametrize("args, res", [
    (("repair-vm", "vm1", "a1"), "vm1"),            # it runs there: nothing to do
    (("repair-mars", "vm1", "a1"), "vm1"),
    (("lv-cleanup", "vm1", "--do-it"), "vm1"),
    (("lock", "football", "a1"), None),
    (("unlock", "football", "a1"), None),
    (("merge-cluster", "a1", "b1"), None),
    (("split-cluster", "a1"), None),
])
def test_an_admin_operation_tells_the_plugins_its_start_and_its_success(told, args, res):
    code, calls, stderr = told(*args)
    assert code == 0, stderr
    assert calls == [("football_start", args[0], res), ("football_finished", args[0], res)]


def test_a_dry_run_of_an_admin_operation_is_told_as_a_success(told):
    code, calls, stderr = told("--dry-run", "repair-mars", "vm1", "a1")
    assert code == 0, stderr
    assert [call[0] for call in calls] == ["football_start", "football_finished"]


@pytest.mark.parametrize("args, res, arrange, message", [
    (("repair-vm", "vm9", "a1"), "vm9", None, "unknown resource vm9"),
    (("repair-mars", "vm1", "a1"), "vm1", lambda fleet: fleet.down.add("a2"),
     "the marsd of a2 (members of vm1) does not answer"),
    (("--var", "lock_retry_timeout=0", "lock", "football", "a1"), None,
     lambda fleet: take_as(fleet, "a1", "migrate-vm1@elsewhere"), "held by migrate-vm1@elsewhere"),
    (("merge-cluster", "a1", "b1"), None, lambda fleet: fleet.down.add("b1"), "b1"),
    (("split-cluster", "a1", "b1"), None, lambda fleet: fleet.down.add("b1"), "b1"),
])
def test_an_admin_operation_refused_tells_the_plugins_it_failed_with_191_and_changes_nothing(
        fleet, told, args, res, arrange, message):
    if arrange:
        arrange(fleet)
    before = state(fleet)
    code, calls, stderr = told(*args)
    operation = next(arg for arg in args if arg in ("repair-vm", "repair-mars", "lock",
                                                   "merge-cluster", "split-cluster"))
    assert code == 191 and message in stderr, stderr
    assert calls == [("football_start", operation, res),
                     ("football_failed", operation, res, 191)]
    assert state(fleet) == before


def test_repair_mars_on_a_host_that_is_no_replica_is_refused_while_members_answer(fleet):
    """b1 holds an LV vm1 but no replica (one left from an earlier one): the
    rebuild stopped vm1 on a1, found it existing ("already exists", taken
    for done), failed to start it on b1: vm1 down, 199."""
    host = fleet.hosts["b1"]
    assert fleet.run("b1", ["football-host", "vg", host.path(f"/dev/{host.vg}"), "create",
                            "vm1", str(320 << 20)]).ok
    before = len(fleet.changes())
    code, _, stderr = football(fleet, "repair-mars", "vm1", "b1")
    assert code == 191, stderr
    assert "b1 is no replica of vm1: its LV vm1 is left from an earlier one (its data as old " \
        "as when it left). a1, a2 hold a replica and answer: name one of them (football " \
        "repair-mars vm1 a1); nothing changed" in " ".join(stderr.split()), stderr
    assert [change for change in fleet.changes()[before:]
            if change[1][:2] != ("football-host", "lock")] == []
    assert fleet.running("vm1") == ["a1"]


def test_a_repair_mars_whose_stop_fails_starts_the_container_again_and_another_host_may_follow(
        fleet, monkeypatch):
    """The stop on a1 failed after the container had stopped (its volume
    busy): 191 "nothing changed" with vm1 down; and a run naming a2 then
    resumed on a1 (the journal's), whatever was named."""
    monkeypatch.setattr("plugins.labmanager.UMOUNT_ATTEMPTS", 2)
    undo = failing(fleet, monkeypatch, lambda host, argv: host == "a1" and argv[0] == "umount",
                   32, "umount: target is busy\n")
    code, events, stderr = football(fleet, "repair-mars", "vm1", "a1")
    assert code == 198, stderr
    assert "a1: cannot stop vm1 to rebuild it:" in stderr and "nothing was rebuilt; it runs " \
        "on a1 again" in " ".join(stderr.split()), stderr
    assert not [event for event in events if event["event"] == "warning"], events
    assert fleet.running("vm1") == ["a1"]
    undo()
    code, events, stderr = football(fleet, "repair-mars", "vm1", "a2")
    assert code == 0, stderr
    said = [event.get("text") for event in events]
    assert "* resuming repair-mars of vm1 on a1" not in said
    assert fleet.members("vm1") == ["a2"] and fleet.running("vm1") == ["a2"]


def test_a_repair_mars_run_again_after_its_stop_failed_checks_the_copy_again(fleet, monkeypatch):
    """It resumed "on a2" without the checks: the confirmation no longer
    said that a2's copy is behind the primary, which wrote on meanwhile."""
    fleet.stalled["a2"] = "fetch cut off"
    for _ in range(3):
        fleet.run("b1", ["marsadm", "view-get-primary", "vm1"])        # vm1 writes on a1
    undo = failing(fleet, monkeypatch, lambda host, argv: host == "a2" and argv[:2] == (
        "football-host", "ct") and argv[3] == "stop", 1, "lxc-stop: cannot stop vm1\n")
    code, _, stderr = football(fleet, "repair-mars", "vm1", "a2")
    assert code == 198, stderr
    undo()
    code, _, stderr = football(fleet, "repair-mars", "vm1", "a2", yes=False)
    assert code == 191 and "vm1 runs on its primary a1: rebuilt from a2's copy it goes back" \
        in stderr, stderr
    assert fleet.running("vm1") == ["a1"]

"""Two controllers on one fleet (two operators' machines, each with its own
state dir), on the fake fleet (tests/helpers/fakefleet.py): a run holds
its resource's lock item `run-<res>` on every host it acts on for as long
as it runs. Another controller's run of any operation on that resource
waits for it (`lock_retry_timeout`), then is refused naming the holder,
with nothing changed; the first run ends as if alone. A lock a killed run
left is taken over at once by its own controller; by another once it is
`run_lock_lease` old (not renewed for that long), if the run had not acted
yet, else only by the same command or a repair."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from football.cli import cli
from football.locks import INTENT_DIR, controller_owner
from football.transport import Unreachable
from tests.helpers.fakefleet import assert_placed, fake_fleet, football, points_of

fleet = fake_fleet

EXIT_ILLEGAL = 191
RUN_LOCK_DIR = "/var/lock/football"


def other_controller(fleet, tmp_path, *args):
    """`football <args>` from a second controller: its own state dir."""
    mine = fleet.state_dir
    fleet.state_dir = str(tmp_path / "other-controller")
    try:
        return football(fleet, "--var", "lock_retry_timeout=0.3", *args)
    finally:
        fleet.state_dir = mine


def changes_but_locks(fleet, since=0):
    """The commands that changed a host since the `since`-th, but lock takes
    and releases (a refused run tries to take its lock)."""
    return [change for change in fleet.changes()[since:]
            if change[1][:2] != ("football-host", "lock")]


def take_run_lock(fleet, name, owner, age=0.0, command=None, run="acting"):
    """`run-vm1` on host `name` held by `owner` since `age` seconds; with
    `command`, as a run that acts holds it (permanent, its command; `run`
    kept: as one that ended with it unfinished)."""
    host = fleet.hosts[name]
    acting = ["--permanent", "--command", command, "--run", run] if command else []
    assert fleet.run(name, ["football-host", "lock", host.path(RUN_LOCK_DIR), "take", "run-vm1",
                            "--owner", owner, "--what", "migrate of vm1, pid 4242",
                            *acting]).ok
    path = Path(host.path(RUN_LOCK_DIR)) / "run-vm1.lock"
    record = json.loads(path.read_text())
    record["time"] -= age
    path.write_text(json.dumps(record))


@pytest.mark.parametrize("args", [("migrate", "vm2", "b2"), ("shrink", "vm2", "400m"),
                                  ("expand", "vm2", "2g"), ("handover", "vm2", "a2")],
                         ids=["migrate", "shrink", "expand", "handover"])
def test_another_controllers_run_on_a_resource_that_moves_is_refused_with_nothing_changed(
        fleet, tmp_path, monkeypatch, args):
    fleet.create_resource("vm2", "a1", ["a2"], size=1 << 30)      # room to shrink
    run = fleet.run
    asked, second = [], []

    def second_controller_while_the_first_waits_for_its_sync(name, argv, input=None):
        # the wait for the sync holds no host lock: only the run lock is there
        result = run(name, argv, input)
        if name == "b1" and "view-sync-rest" in argv and argv[-1] == "vm2" and not asked:
            asked.append(args)
            before = len(fleet.changes())
            second.append(other_controller(fleet, tmp_path, *args))
            second.append(changes_but_locks(fleet, before))
        return result

    monkeypatch.setattr(fleet, "run", second_controller_while_the_first_waits_for_its_sync)
    code, _, stderr = football(fleet, "migrate", "vm2", "b1", "b2")
    assert code == 0, stderr
    (refused, _, refusal), changed = second
    assert refused == EXIT_ILLEGAL, refusal
    assert "lock run-vm2 is held by football@" in refusal
    assert "(migrate of vm2, pid " in refusal
    assert refusal.rstrip().endswith("football unlock run-vm2 a1 a2 b1 b2")
    assert changed == []
    assert not (tmp_path / "other-controller" / "journal" / f"{args[0]}-vm2.json").exists()
    assert_placed(fleet, "b1", ["b2"], res="vm2")


def test_the_run_lock_is_held_on_every_host_the_migrate_acts_on_until_it_ends(fleet, monkeypatch):
    run = fleet.run
    held = {}

    def look_at_the_handover(name, argv, input=None):
        if argv[0] == "marsadm" and "primary" in argv and not held:
            held.update({host: sorted(fleet.locks(host)) for host in fleet.hosts})
        return run(name, argv, input)

    monkeypatch.setattr(fleet, "run", look_at_the_handover)
    code, _, stderr = football(fleet, "migrate", "vm1", "b1", "b2")
    assert code == 0, stderr
    assert {host: "run-vm1" in items for host, items in held.items()} == \
        {"a1": True, "a2": True, "b1": True, "b2": True}
    assert_placed(fleet, "b1", ["b2"])          # and released everywhere


def test_a_run_lock_left_by_a_killed_run_of_this_controller_is_taken_over_at_once(fleet):
    take_run_lock(fleet, "a1", controller_owner(fleet.state_dir))
    code, _, stderr = football(fleet, "--var", "lock_retry_timeout=0", "migrate", "vm1", "b1",
                               "b2")
    assert code == 0, stderr
    assert_placed(fleet, "b1", ["b2"])


def test_another_controllers_run_lock_is_broken_once_run_lock_lease_old(fleet):
    take_run_lock(fleet, "a2", "football@elsewhere:/var/lib/football#0123", age=400)
    code, _, stderr = football(fleet, "--var", "lock_retry_timeout=0", "--var",
                               "run_lock_lease=300", "migrate", "vm1", "b1", "b2")
    assert code == 0, stderr
    assert_placed(fleet, "b1", ["b2"])


def test_another_controllers_live_run_lock_refuses_before_anything_changed(fleet):
    take_run_lock(fleet, "a2", "football@elsewhere:/var/lib/football#0123", age=100)
    code, events, stderr = football(fleet, "--var", "lock_retry_timeout=0.3", "migrate", "vm1",
                                    "b1", "b2")
    assert code == EXIT_ILLEGAL, stderr
    assert "a2: football-host: lock run-vm1 is held by football@elsewhere:/var/lib/football" \
        "#0123 (migrate of vm1, pid 4242) since " in stderr
    waits = [event for event in events if event["event"] == "wait"]
    assert [event["what"] for event in waits] == ["run"]
    assert changes_but_locks(fleet) == []
    assert not (Path(fleet.state_dir) / "journal" / "migrate-vm1.json").exists()
    assert set(fleet.locks("a2")) == {"run-vm1"}        # the other's, kept
    assert all(not fleet.locks(name) for name in ("a1", "b1", "b2"))
    # where the message says: the dead run's lock goes on every host of the run
    assert stderr.rstrip().endswith("football unlock run-vm1 a1 a2 b1 b2")
    assert football(fleet, "unlock", "run-vm1", "a1", "a2", "b1", "b2")[0] == 0
    code, _, stderr = football(fleet, "migrate", "vm1", "b1", "b2")
    assert code == 0, stderr
    assert_placed(fleet, "b1", ["b2"])


def test_dry_run_takes_no_run_lock(fleet):
    take_run_lock(fleet, "a1", "football@elsewhere:/var/lib/football#0123")
    code, _, stderr = football(fleet, "--dry-run", "migrate", "vm1", "b1", "b2")
    assert code == 0, stderr


def test_a_migrate_with_a_pre_hand_is_refused_before_it_hands_anything(fleet):
    """The pre-hand (a handover to a2) changes hosts before the migrate's
    own phases: the resource is held before it."""
    take_run_lock(fleet, "b2", "football@elsewhere:/var/lib/football#0123")
    code, _, stderr = football(fleet, "--var", "lock_retry_timeout=0.3", "migrate", "vm1",
                               "b1", "b2", "--pre-hand", "a2")
    assert code == EXIT_ILLEGAL, stderr
    assert "b2: football-host: lock run-vm1 is held by football@elsewhere" in stderr
    assert changes_but_locks(fleet) == []
    assert fleet.resources["vm1"].primary == "a1"


def test_a_host_that_does_not_answer_when_the_run_takes_its_lock_refuses_with_nothing_changed(
        fleet, monkeypatch):
    """Before, the run failed with 198 in its prepare phase, leaving a
    journal of no steps that refused the next command for other targets."""
    run = fleet.run

    def a2_gone(name, argv, input=None):
        if name == "a2" and argv[:2] == ["football-host", "lock"]:
            raise Unreachable("a2: no route to host")
        return run(name, argv, input)

    monkeypatch.setattr(fleet, "run", a2_gone)
    code, _, stderr = football(fleet, "migrate", "vm1", "b1", "b2")
    assert code == EXIT_ILLEGAL, stderr
    assert "a2: no route to host: the migrate of vm1 acts there and cannot begin without it; " \
        "nothing changed: run it again once the host answers" in stderr
    assert changes_but_locks(fleet) == []
    assert not (Path(fleet.state_dir) / "journal" / "migrate-vm1.json").exists()
    monkeypatch.setattr(fleet, "run", run)
    assert all(not fleet.locks(name) for name in fleet.hosts)
    assert football(fleet, "migrate", "vm1", "b2")[0] == 0        # another target: not refused


def test_status_shows_which_run_of_which_controller_holds_the_resource(fleet):
    take_run_lock(fleet, "a1", "football@elsewhere:/var/lib/football#0123")
    result = CliRunner().invoke(cli, ["--inventory", fleet.inventory_path, "--var",
                                      f"state_dir={fleet.state_dir}", "status"],
                                env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    a1_row = next(line for line in result.output.splitlines() if line.startswith("│ a1 "))
    assert "run-vm1 (migrate of vm1, pid 4242; football@elsewhere:/var/lib/football#0123)" \
        in a1_row


def test_lv_cleanup_waits_for_another_controllers_run_on_the_hosts_of_the_lv(fleet):
    """An LV that no replica uses yet may be the one another controller's
    migrate is about to join (its journal, which would say so, is there)."""
    b2 = fleet.hosts["b2"]
    fleet.run("b2", ["football-host", "vg", b2.path("/dev/vg0"), "create", "vm1",
                     str(64 << 20)])
    take_run_lock(fleet, "b2", "football@elsewhere:/var/lib/football#0123")
    code, _, stderr = football(fleet, "--var", "lock_retry_timeout=0.3", "lv-cleanup", "vm1",
                               "--do-it")
    assert code == EXIT_ILLEGAL, stderr
    assert "b2: football-host: lock run-vm1 is held by football@elsewhere" in stderr
    assert "vm1" in fleet.lvs("b2")


def test_status_lists_another_controllers_run_among_the_operations(fleet):
    for name in ("a1", "b1"):
        take_run_lock(fleet, name, "football@elsewhere:/var/lib/football#0123")
    take_run_lock(fleet, "a2", controller_owner(fleet.state_dir))   # this one's: its journal
    result = CliRunner().invoke(cli, ["--inventory", fleet.inventory_path, "--json", "--var",
                                      f"state_dir={fleet.state_dir}", "status", "vm1"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [(op["operation"], op["resource"], op["state"], op["holding"], op["controller"])
            for op in report["operations"]] == \
        [("migrate", "vm1", "running elsewhere", ["a1", "b1"],
          "football@elsewhere:/var/lib/football#0123")]
    result = CliRunner().invoke(cli, ["--inventory", fleet.inventory_path, "--var",
                                      f"state_dir={fleet.state_dir}", "status", "b1"],
                                env={"COLUMNS": "250"})
    row = next(line for line in result.output.splitlines() if line.startswith("│ migrate "))
    assert "running elsewhere (migrate of vm1, pid 4242; football@elsewhere:" in row
    assert row.split("│")[5].strip() == "b1"         # where it holds vm1, of those asked


@pytest.mark.parametrize("first", [("--debug-injection-point", "3", "migrate", "vm1", "b1", "b2"),
                                   ("migrate-prepare", "vm1", "b1", "b2")],
                         ids=["failed", "a phase alone"])
def test_an_operation_unfinished_on_one_controller_keeps_the_resource_from_another(
        fleet, tmp_path, first):
    """A run that ends with its operation unfinished (failed, or a phase run
    alone) keeps its run lock, never stale, saying so: another controller's
    run would act from a plan of its own (that controller cannot see the
    journal). The same command on the first controller finishes it and
    releases the lock everywhere, also where it no longer acts."""
    code, _, stderr = football(fleet, *first)
    assert code == (0 if first[0] == "migrate-prepare" else 1), stderr   # 1: the crash asked for
    for name in ("a1", "b1"):                   # as if lease times had passed
        path = Path(fleet.hosts[name].path(RUN_LOCK_DIR)) / "run-vm1.lock"
        record = json.loads(path.read_text())
        path.write_text(json.dumps(dict(record, time=record["time"] - 86400)))
    code, _, refusal = other_controller(fleet, tmp_path, "expand", "vm1", "1g")
    assert code == EXIT_ILLEGAL, refusal
    steps = "prepare" if first[0] == "migrate-prepare" else "none"      # b1 joined, b2 not
    assert f"(unfinished migrate of vm1, steps done: {steps}) since " in refusal
    assert "; that run ended with it unfinished: `football migrate vm1 b1 b2` goes on from " \
        "where it stopped (on that controller at once, on another once the lock is " \
        "run_lock_lease old), a repair-vm or repair-mars may begin then; or, to act on vm1 " \
        "from here anyway, football unlock run-vm1 a1 a2 b1" in refusal
    result = CliRunner().invoke(cli, ["--inventory", fleet.inventory_path, "--json", "--var",
                                      f"state_dir={tmp_path / 'other-controller'}", "status",
                                      "vm1"])
    assert [(op["operation"], op["state"]) for op in json.loads(result.stdout)["operations"]] \
        == [("migrate", "unfinished elsewhere")]
    code, _, stderr = football(fleet, "migrate", "vm1", "b1", "b2")
    assert code == 0, stderr
    assert_placed(fleet, "b1", ["b2"])           # no lock left anywhere
    assert other_controller(fleet, tmp_path, "expand", "vm1", "1g")[0] == 0


def test_the_run_that_finishes_an_operation_after_a_host_left_holds_it_while_it_removes_its_lv(
        fleet, monkeypatch):
    """A crash in the cleanup after b1 left vm1, before its LV went: b1 is
    no longer a member, but the re-run removes the LV there — under its
    locks on b1 (it took none there before) — and releases the lock b1 kept
    of the crashed run."""
    code, events, stderr = football(fleet, "migrate", "vm1", "cluster2")
    assert code == 0, stderr
    point = points_of(events).index("cleanup:left") + 1       # the first old host left
    code, _, stderr = football(fleet, "--debug-injection-point", str(point), "migrate", "vm1",
                               "cluster1")
    assert code == 1, stderr
    assert all(set(fleet.locks(name)) == {"run-vm1"} for name in fleet.hosts)
    assert "b1" not in fleet.members("vm1") and "vm1" in fleet.lvs("b1")
    run, held = fleet.run, {}

    def locks_while_the_lv_goes(name, argv, input=None):
        if name == "b1" and argv[:2] == ["football-host", "vg"] and "remove" in argv:
            held.update(fleet.locks("b1"))
        return run(name, argv, input)

    monkeypatch.setattr(fleet, "run", locks_while_the_lv_goes)
    code, _, stderr = football(fleet, "migrate", "vm1", "cluster1")
    assert code == 0, stderr
    assert sorted(held) == ["football", "run-vm1"], held
    assert held["run-vm1"]["run"] == "acting"
    assert_placed(fleet, "a1", ["a2"])         # no lock anywhere, b1's too


def test_a_run_that_acts_holds_a_permanent_lock_naming_its_command_one_without_a_journal_a_lease(
        fleet, monkeypatch):
    """Killed with -9 once it acted, a run leaves an operation that only its
    controller's journal knows: its lock must not go stale for the others.
    An lv-cleanup keeps no journal (it can be run again from scratch): a
    lease is enough."""
    run = fleet.run
    seen = {}

    def look_at_the_run_lock(name, argv, input=None):
        if argv[0] == "marsadm" and "primary" in argv and "migrate" not in seen:
            seen["migrate"] = fleet.locks("a1")["run-vm1"]
        if argv[:2] == ["football-host", "vg"] and "remove" in argv and "migrate" in seen:
            seen.setdefault("lv-cleanup", fleet.locks(name)["run-vm1"])
        return run(name, argv, input)

    monkeypatch.setattr(fleet, "run", look_at_the_run_lock)
    code, _, stderr = football(fleet, "migrate", "vm1", "b1", "b2")
    assert code == 0, stderr
    del seen["lv-cleanup"]          # the migrate's own cleanup's
    a1 = fleet.hosts["a1"]
    run("a1", ["football-host", "vg", a1.path("/dev/vg0"), "create", "vm1", str(64 << 20)])
    code, _, stderr = football(fleet, "lv-cleanup", "vm1", "--do-it")
    assert code == 0, stderr
    assert (seen["migrate"].get("permanent"), seen["migrate"].get("command")) == \
        (True, "migrate vm1 b1 b2")
    assert (seen["lv-cleanup"].get("permanent"), seen["lv-cleanup"].get("command")) == \
        (None, "lv-cleanup vm1 --do-it")
    assert_placed(fleet, "b1", ["b2"])


@pytest.mark.parametrize("age, taken_over", [(400, True), (200, False)],
                         ids=["not renewed for a lease", "renewed within one"])
def test_the_same_command_on_another_controller_takes_a_killed_runs_lock_over_once_a_lease_old(
        fleet, tmp_path, age, taken_over):
    """A run of `migrate vm1 b1 b2` killed (-9) on another controller, once it
    acted: its lock stays on every host it held, permanent. A run of
    anything else from here is refused, whatever its age; the same command
    goes on from the hosts' state once the lock was not renewed for
    run_lock_lease (a screener job another machine's worker resumes), and
    not while it is younger (that run may live)."""
    dead = "football@elsewhere:/var/lib/football#0123"
    for name in ("a1", "a2", "b1", "b2"):
        take_run_lock(fleet, name, dead, age=age, command="migrate vm1 b1 b2")
    code, _, refusal = football(fleet, "--var", "lock_retry_timeout=0.3", "expand", "vm1", "1g")
    assert code == EXIT_ILLEGAL, refusal
    assert "`football migrate vm1 b1 b2` goes on from where it stopped" in refusal
    code, _, refusal = football(fleet, "--var", "lock_retry_timeout=0.3", "migrate", "vm1", "b1")
    assert code == EXIT_ILLEGAL, refusal                 # another command: another plan
    assert changes_but_locks(fleet) == []
    code, events, stderr = football(fleet, "--var", "lock_retry_timeout=0.3", "--var",
                                    "run_lock_lease=300", "migrate", "vm1", "b1", "b2")
    if taken_over:
        assert code == 0, stderr
        assert_placed(fleet, "b1", ["b2"])              # its locks gone everywhere
    else:
        assert code == EXIT_ILLEGAL, stderr
        [wait] = [event for event in events if event["event"] == "wait"]
        assert "; wait for that run; if it ends unfinished or dies: `football migrate vm1 b1 " \
            "b2` goes on from where it stopped" in wait["reasons"][0]
        assert wait["reasons"][0].endswith("football unlock run-vm1 a1 a2 b1 b2")
        assert changes_but_locks(fleet) == []
        assert all(fleet.locks(name)["run-vm1"]["owner"] == dead for name in fleet.hosts)


def test_a_failed_runs_kept_lock_is_taken_over_by_its_command_on_another_controller_and_the_first_then_converges(  # noqa: E501
        fleet, tmp_path):
    """A screener job failed on machine A and restarted on B's worker: the
    same command goes on there once A's kept lock is a lease old (its
    journal stays on A); A's own re-run of it later finds the work done."""
    code, _, stderr = football(fleet, "--debug-injection-point", "3", "migrate", "vm1", "b1",
                               "b2")
    assert code == 1, stderr
    code, _, refusal = other_controller(fleet, tmp_path, "migrate", "vm1", "b1", "b2")
    assert code == EXIT_ILLEGAL, refusal             # kept, and younger than run_lock_lease
    for name in fleet.hosts:
        path = Path(fleet.hosts[name].path(RUN_LOCK_DIR)) / "run-vm1.lock"
        if path.exists():
            record = json.loads(path.read_text())
            path.write_text(json.dumps(dict(record, time=record["time"] - 400)))
    code, _, stderr = other_controller(fleet, tmp_path, "migrate", "vm1", "b1", "b2")
    assert code == 0, stderr
    assert_placed(fleet, "b1", ["b2"])
    assert (Path(fleet.state_dir) / "journal" / "migrate-vm1.json").exists()
    code, _, stderr = football(fleet, "migrate", "vm1", "b1", "b2")
    assert code == 0, stderr
    assert not (Path(fleet.state_dir) / "journal" / "migrate-vm1.json").exists()
    assert_placed(fleet, "b1", ["b2"])


@pytest.mark.parametrize("age, state", [(30, "running elsewhere"), (400, "unfinished elsewhere")],
                         ids=["renewed", "not renewed for a lease"])
def test_status_tells_another_controllers_acting_run_from_one_that_died(fleet, age, state):
    take_run_lock(fleet, "a1", "football@elsewhere:/var/lib/football#0123", age=age,
                  command="migrate vm1 b1 b2")
    result = CliRunner().invoke(cli, ["--inventory", fleet.inventory_path, "--json", "--var",
                                      f"state_dir={fleet.state_dir}", "status", "vm1"])
    assert result.exit_code == 0, result.output
    assert [(op["operation"], op["state"]) for op in json.loads(result.stdout)["operations"]] \
        == [("migrate", state)]


@pytest.mark.parametrize("run, age", [("acting", 400), ("kept", 10)],
                         ids=["acted and died", "ended unfinished"])
def test_a_dead_runs_lock_refuses_other_commands_at_once_and_a_repair_begins_once_a_lease_old(
        fleet, run, age):
    """No wait ends such a lock (only its controller or an unlock does): the
    refusal comes at once, not after lock_retry_timeout. A repair, the way
    out, begins over it once it was not renewed for run_lock_lease."""
    dead = "football@elsewhere:/var/lib/football#0123"
    for name in ("a1", "a2"):
        take_run_lock(fleet, name, dead, age=age, command="migrate vm1 b1 b2", run=run)
    code, events, refusal = football(fleet, "--var", "lock_retry_timeout=5", "expand", "vm1",
                                     "1g")
    assert code == EXIT_ILLEGAL, refusal
    assert [event for event in events if event["event"] == "wait"] == []
    state = "that run ended with it unfinished" if run == "kept" else \
        "that run acted, and stopped renewing it run_lock_lease (120 s) ago: it died"
    assert f"; {state}: `football migrate vm1 b1 b2` goes on from where it stopped" in refusal
    fleet.containers["a1"]["vm1"] = "STOPPED"        # as the dead run left it
    code, _, stderr = football(fleet, "--var", "lock_retry_timeout=0.3", "--var",
                               "run_lock_lease=300", "repair-vm", "vm1", "a1")
    if age > 300:
        assert code == 0, stderr
        assert_placed(fleet, "a1", ["a2"])
    else:
        assert code == EXIT_ILLEGAL, stderr
        assert "wait for that run" not in stderr
        assert all(fleet.locks(name)["run-vm1"]["owner"] == dead for name in ("a1", "a2"))


def test_unlocking_a_dead_runs_lock_says_that_its_operation_stays_unfinished_there(fleet):
    dead = "football@elsewhere:/var/lib/football#0123"
    for name in ("a1", "a2"):
        take_run_lock(fleet, name, dead, command="migrate vm1 b1 b2")
    code, events, stderr = football(fleet, "unlock", "run-vm1", "a1", "a2")
    assert code == 0, stderr
    warnings = [event["text"] for event in events if event["event"] == "warning"]
    assert warnings == [
        "run-vm1 was the lock of a run that acted (migrate of vm1, pid 4242; football@elsewhere:"
        "/var/lib/football#0123): its operation stays unfinished in that controller's journal; "
        "`football migrate vm1 b1 b2` there goes on, or its journal is set aside there "
        "(`football status` there shows it)"]
    assert not fleet.locks("a1") and not fleet.locks("a2")


@pytest.mark.parametrize("controller", ["this", "another"])
def test_the_way_out_breaks_the_host_locks_a_run_killed_in_its_window_left(
        fleet, tmp_path, controller):
    """A handover killed (-9) inside its window leaves its step lock
    (`football`, for lock_break_timeout) and its run lock on the hosts, the
    container stopped. A repair-vm, from this controller or another, holds
    run-vm1 there once it begins (which a live run of vm1 would hold): so
    the step lock of a run of vm1 there is a dead run's, broken at once."""
    owner = controller_owner(fleet.state_dir) if controller == "this" else \
        "football@elsewhere:/var/lib/football#0123"
    step_owner = f"handover-vm1@{'elsewhere' if controller == 'another' else 'here'}"
    for name in ("a1", "a2"):
        take_run_lock(fleet, name, owner, age=400, command="handover vm1 a2")
        host = fleet.hosts[name]
        assert fleet.run(name, ["football-host", "lock", host.path(RUN_LOCK_DIR), "take",
                                "football", "--owner", step_owner]).ok
    fleet.containers["a1"]["vm1"] = "STOPPED"
    code, _, stderr = football(fleet, "--var", "lock_retry_timeout=0.3", "--var",
                               "run_lock_lease=300", "repair-vm", "vm1", "a1")
    assert code == 0, stderr
    assert_placed(fleet, "a1", ["a2"])          # no lock left


@pytest.mark.parametrize("intent_owner, goes_on", [
    ("migrate-vm1@elsewhere:/var/lib/football#0123", True),
    ("migrate-a-vm1@elsewhere:/var/lib/football#0123", False),
], ids=["a dead run of the resource", "a resource named *-vm1"])
def test_the_same_command_replaces_the_sync_intent_of_a_run_killed_before_its_sync_ended(
        fleet, intent_owner, goes_on):
    """Another controller's migrate killed between its sync intent on the
    target and its sync's end: its intent (`sync-vm1`) refused the run that
    goes on (the same command, once its run lock is a lease old) until
    lease_time, an hour. This run holds run-vm1 there, which a live run of
    vm1 would: the intent is a dead run's, replaced at once."""
    for name in ("a1", "a2", "b1", "b2"):
        take_run_lock(fleet, name, "football@elsewhere:/var/lib/football#0123", age=400,
                      command="migrate vm1 b1 b2")
    host = fleet.hosts["b1"]
    assert fleet.run("b1", ["football-host", "lock", host.path(INTENT_DIR), "take", "sync-vm1",
                            "--owner", intent_owner, "--stale-after", "3600"]).ok
    code, events, stderr = football(fleet, "--var", "lock_retry_timeout=0.3", "--var",
                                    "run_lock_lease=300", "migrate", "vm1", "b1", "b2")
    if goes_on:
        assert code == 0, stderr
        assert_placed(fleet, "b1", ["b2"])          # no lock or intent left
        assert any("b1: replaced the sync intent of vm1 of a dead run" in event.get("text", "")
                   for event in events), events
    else:
        assert code == EXIT_ILLEGAL, stderr
        assert f"lock sync-vm1 is held by {intent_owner}" in stderr
        assert fleet.locks("b1", INTENT_DIR)["sync-vm1"]["owner"] == intent_owner


@pytest.mark.parametrize("step_owner", ["handover-vm2@elsewhere", "migrate-a-vm1@elsewhere",
                                        "operator@desk"],
                         ids=["another resource's run", "a resource named *-vm1", "an operator"])
def test_the_way_out_leaves_the_host_locks_of_others_than_a_run_of_its_resource(
        fleet, step_owner):
    for name in ("a1", "a2"):
        take_run_lock(fleet, name, "football@elsewhere:/var/lib/football#0123", age=400,
                      command="handover vm1 a2")
    host = fleet.hosts["a1"]
    assert fleet.run("a1", ["football-host", "lock", host.path(RUN_LOCK_DIR), "take",
                            "football", "--owner", step_owner]).ok
    fleet.containers["a1"]["vm1"] = "STOPPED"
    code, _, stderr = football(fleet, "--var", "lock_retry_timeout=0.3", "--var",
                               "run_lock_lease=300", "repair-vm", "vm1", "a1")
    assert code == EXIT_ILLEGAL, stderr
    assert f"lock football is held by {step_owner} since " in stderr
    assert fleet.locks("a1")["football"]["owner"] == step_owner


TAKEN_OVER_AT = {       # the host command before which another controller takes it over
    "sync": lambda fleet, name, argv: "view-sync-rest" in argv and any(
        "join-resource" in argv for _, argv in fleet.changes()),        # in the wait
    "stop": lambda fleet, name, argv: name == "a1" and argv[-2:] == ("stop", "vm1"),
    "handover": lambda fleet, name, argv: argv[0] == "marsadm" and "primary" in argv}


@pytest.mark.parametrize("where", sorted(TAKEN_OVER_AT))
def test_a_run_whose_hold_another_controller_took_over_stops_at_its_next_step_changing_nothing(
        fleet, monkeypatch, where):
    """A controller cut off from the hosts for run_lock_lease (a partition, a
    stalled machine: its screener worker found dead) lost its hold: another
    controller's run of the same command took it over and goes on from the
    hosts' state. Before, the first went on beside it once it could reach
    them again, its renewal only saying so: two runs of one migrate at once.
    Now it stops at its next step as a crash would — inside the downtime
    window too, where a compensation (the container restarted on its
    source) would fight the other run."""
    import threading

    from football.locks import ResourceRun

    noticed = threading.Event()
    failing = ResourceRun._failing

    def noticing(self, host, why):
        failing(self, host, why)
        noticed.set()

    monkeypatch.setattr(ResourceRun, "_failing", noticing)
    other = "football@elsewhere:/var/lib/football#0123"
    run, taken = fleet.run, []

    def taken_over(name, argv, input=None):
        if TAKEN_OVER_AT[where](fleet, name, tuple(argv)) and not taken:
            for host in fleet.hosts.values():
                path = Path(host.path(RUN_LOCK_DIR)) / "run-vm1.lock"
                if path.exists():
                    record = json.loads(path.read_text())
                    path.write_text(json.dumps({**record, "owner": other}))
            assert noticed.wait(30), "the renewal never found the hold taken over"
            taken.append(len(fleet.changes()))
        return run(name, argv, input)

    monkeypatch.setattr(fleet, "run", taken_over)
    code, _, stderr = football(fleet, "--var", "run_lock_lease=0.3", "migrate", "vm1", "b1",
                               "b2")
    assert code == 1, stderr
    assert "another controller took this run's hold on vm1 over" in stderr
    assert "compensating nothing" in stderr
    changed = changes_but_locks(fleet, taken[0])
    # the step under way ends, nothing after it: no compensation either
    if where == "sync":
        assert changed == []
    elif where == "stop":
        assert {name for name, _ in changed} == {"a1", "a2"}, changed
        assert fleet.running("vm1") == []           # for the other run to bring up
    else:
        assert {name for name, _ in changed} == {"b1"}, changed
        assert fleet.running("vm1") == ["b1"]
    assert all(fleet.locks(name)["run-vm1"]["owner"] == other for name in fleet.hosts
               if "run-vm1" in fleet.locks(name))


def test_lv_cleanup_looks_again_after_waiting_for_another_controllers_run_that_joined_the_lv(
        fleet):
    """lv-cleanup waited for another controller's run of vm2 on b2, whose
    migrate joined b2's LV meanwhile: the look under the lock reused what
    discovery had read (the run's cache) and removed a replica's disk."""
    import threading
    import time

    fleet.create_resource("vm2", "b1")
    b2 = fleet.hosts["b2"]
    disk = b2.path("/dev/vg0/vm2")
    fleet.run("b2", ["football-host", "vg", b2.path("/dev/vg0"), "create", "vm2", str(320 << 20)])
    other = "football@elsewhere:/var/lib/football#0123"
    assert fleet.run("b2", ["football-host", "lock", b2.path(RUN_LOCK_DIR), "take", "run-vm2",
                            "--owner", other, "--what", "migrate of vm2, pid 4242"]).ok

    def the_other_run_joins_then_ends():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
                name == "b2" and "take" in argv and "run-vm2" in argv and other not in argv
                for name, argv in list(fleet.calls)):
            time.sleep(0.01)            # until lv-cleanup waits for the lock
        assert fleet.run("b2", ["marsadm", "join-resource", "vm2", disk]).ok
        fleet.run("b2", ["football-host", "lock", b2.path(RUN_LOCK_DIR), "release", "run-vm2",
                         "--owner", other])

    joining = threading.Thread(target=the_other_run_joins_then_ends)
    joining.start()
    code, events, stderr = football(fleet, "--var", "lock_retry_timeout=30", "lv-cleanup",
                                    "vm2", "--do-it")
    joining.join()
    assert "b2" in fleet.members("vm2")
    assert "vm2" in fleet.lvs("b2"), "a replica's disk was removed"
    assert code == 0, stderr
    assert "b2: LV vm2 changed meanwhile (now in use); left alone" in \
        [event.get("text") for event in events]

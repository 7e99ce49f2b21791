"""A container its operator stopped stays stopped across a move or a
shrink (as Proxmox and Incus keep a stopped one stopped): the operation
brings its volume up at the new primary (MARS primary, mounted) and does
not start the container; a window that fails brings the volume up again
where it was, the container still stopped. Where a cluster manager cannot
bring the volume up alone (`keeps_stopped` false), the operation says it
will start the container and asks first. On the fake fleet
(tests/helpers/fakefleet.py), whose hosts use the lab manager; the lab
keeps one real sample (tests/root/test_migrate_variants.py)."""

import json
import textwrap

import pytest
from click.testing import CliRunner

from football.cli import cli
from football.errors import EXIT_CRITICAL, EXIT_ILLEGAL, EXIT_INTERRUPTED
from football.transport import Result
from tests.helpers.fakefleet import (assert_clusters_as_inventory, assert_placed, fake_fleet,
                                     football, points_of)
from tests.unit.test_dry_run import assert_dry_run_is_the_real_run

fleet = fake_fleet

STOPPED = "vm2 does not run on a1 (STOPPED) and stays stopped"


def stopped_vm2(fleet):
    fleet.create_resource("vm2", "a1", ["a2"], size=1 << 30, running=False)
    fleet.calls.clear()


def said(events):
    return [event["text"] for event in events if event["event"] in ("message", "warning")]


@pytest.mark.parametrize("command, where, placed", [
    (("migrate", "vm2", "b1", "b2"), "b1", ("b1", ["b2"])),
    (("handover", "vm2", "a2"), "a2", ("a2", ["a1"])),
    (("shrink", "vm2", "320m"), "a1", ("a1", ["a2"])),
    (("migrate+shrink", "vm2", "b1", "b2", "320m"), "b1", ("b1", ["b2"])),
    (("migrate+shrink+back", "vm2", "b1", "320m"), "b1", ("a1", ["a2"])),
    (("migrate", "vm2", "b1", "b2", "--pre-hand", "a2"), "a2", ("b1", ["b2"]))])
def test_a_stopped_container_stays_stopped_and_its_volume_comes_up_where_it_goes(
        fleet, command, where, placed):
    """Was: started at the target (7a2d647 asked first). No question now:
    nothing starts it; said once (the stages of a combined operation and a
    migrate's handovers keep it stopped alike, silently)."""
    stopped_vm2(fleet)
    result = CliRunner().invoke(cli, ["--inventory", fleet.inventory_path, "--var",
                                      f"state_dir={fleet.state_dir}", "--var",
                                      "poll_interval=0", *command])      # no --yes
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert text.count(STOPPED) == 1, text
    assert (f"the {command[0]} brings its volume up on {where} without starting it "
            f"(football repair-vm vm2 {where} starts it)") in text
    assert "downtime" not in text.replace("no downtime", ""), text
    assert "(no downtime: it was stopped and stays so)" in " ".join(result.stderr.split())
    assert_placed(fleet, *placed, res="vm2", running=False)
    assert fleet.running("vm1") == ["a1"]
    assert not any(argv[:2] == ("football-host", "ct") and argv[3] == "start"
                   for _, argv in fleet.calls), "a container was started"


def test_a_dry_run_of_a_stopped_one_lists_what_the_run_does_the_volume_without_the_container(
        fleet):
    stopped_vm2(fleet)
    code, events, stderr = football(fleet, "--dry-run", "migrate", "vm2", "b1", "b2")
    assert code == 0 and any(STOPPED in text for text in said(events)), stderr
    would = assert_dry_run_is_the_real_run(fleet, "migrate", "vm2", "b1", "b2")
    b1 = fleet.hosts["b1"]
    assert ("b1", ("mount", "-t", "xfs", b1.device("vm2"), b1.mountpoint("vm2"))) in would
    assert not [argv for _, argv in would if argv[:2] == ("football-host", "ct")
                and argv[3] == "start"], would
    assert_placed(fleet, "b1", ["b2"], res="vm2", running=False)


def test_a_stopped_one_moved_by_a_crashed_run_stays_stopped_after_each_re_run(fleet):
    """The migrate of a stopped container, crashed at each of its injection
    points and run again, ends stopped at the target with its volume up:
    the decision is in the journal (the re-run finds the container stopped
    by its own window and must not take that for the operator's)."""
    stopped_vm2(fleet)
    homes = {"b1": ("b1", ["b2"]), "a1": ("a1", ["a2"])}
    code, events, stderr = football(fleet, "migrate", "vm2", "b1", "b2")
    assert code == 0, stderr
    assert_placed(fleet, *homes["b1"], res="vm2", running=False)
    points = points_of(events)
    assert "finish:stopped" in points and "cleanup:left" in points
    for number, name in enumerate(points, start=1):
        target = "a1" if number % 2 else "b1"
        command = ["migrate", "vm2", target, homes[target][1][0]]
        code, events, stderr = football(fleet, "--debug-injection-point", str(number), *command)
        assert code == 1 and points_of(events)[-1] == name, f"point {number}: {stderr}"
        assert fleet.running("vm2") == [] and not fleet.violations, name
        code, events, stderr = football(fleet, *command)
        assert code == 0, f"re-run after point {number} ({name}): {stderr}"
        assert_placed(fleet, *homes[target], res="vm2", running=False)
    assert_clusters_as_inventory(fleet)
    assert fleet.running("vm1") == ["a1"]


def test_ctrl_c_in_the_window_of_a_stopped_one_brings_its_volume_up_again_not_the_container(
        fleet, monkeypatch):
    stopped_vm2(fleet)
    answer = fleet.run
    pressed = []

    def ctrl_c_at_the_handover(host, argv, input=None):
        if argv[0] == "marsadm" and "primary" in argv and "vm2" in argv and not pressed:
            pressed.append(host)
            raise KeyboardInterrupt
        return answer(host, argv, input=input)

    monkeypatch.setattr(fleet, "run", ctrl_c_at_the_handover)
    code, events, stderr = football(fleet, "migrate", "vm2", "b1", "b2")
    assert pressed == ["b1"] and code == EXIT_INTERRUPTED, stderr
    assert "interrupted inside the downtime window; vm2 is ready again on a1 (its volume; " \
        "stopped, as before)" in stderr
    assert "bringing the volume of vm2 up again" in json.dumps(events)
    assert fleet.resources["vm2"].primary == "a1" and fleet.running("vm2") == []
    assert fleet.hosts["a1"].mountpoint("vm2") in fleet.mounts["a1"]
    code, _, stderr = football(fleet, "migrate", "vm2", "b1", "b2")
    assert code == 0, stderr
    assert_placed(fleet, "b1", ["b2"], res="vm2", running=False)


def test_a_stopped_one_whose_volume_comes_up_nowhere_is_critical_and_says_it_was_stopped(
        fleet, monkeypatch):
    stopped_vm2(fleet)
    answer = fleet.run

    def no_mount(host, argv, input=None):
        if argv[0] == "mount" and any("vm2" in arg for arg in argv):
            return Result(host, tuple(argv), 32, "", "mount: wrong fs type (as the test asks)\n")
        return answer(host, argv, input=input)

    monkeypatch.setattr(fleet, "run", no_mount)
    code, _, stderr = football(fleet, "migrate", "vm2", "b1", "b2")
    assert code == EXIT_CRITICAL, stderr
    assert "the volume of vm2 (stopped before the migrate, as it stays) is NOT up anywhere" \
        in " ".join(stderr.split())
    assert fleet.running("vm2") == [] and not fleet.violations


MANAGER_WITHOUT_STACK = """
    from football.hooks import hookimpl

    @hookimpl(tryfirst=True)
    def keeps_stopped(host):
        return False if host.name == "b1" else None
"""


def test_where_a_manager_cannot_keep_it_stopped_the_operation_asks_and_then_starts_it(
        fleet, tmp_path):
    """The systemd manager starts the container with its stack (marsd
    starts the start unit on the new primary): there the operation says
    that it will start it and asks; `--yes` answers."""
    plugins = tmp_path / "plugins.d"
    plugins.mkdir()
    (plugins / "no_stack.py").write_text(textwrap.dedent(MANAGER_WITHOUT_STACK))
    stopped_vm2(fleet)
    command = ["--var", f"plugin_dirs={plugins}", "migrate", "vm2", "b1", "b2"]
    result = CliRunner().invoke(cli, ["--inventory", fleet.inventory_path, "--var",
                                      f"state_dir={fleet.state_dir}", *command])
    asked = ("vm2 does not run on a1 (STOPPED), and the cluster manager of b1 cannot bring "
             "its volume up without starting it: the migrate starts it on b1")
    assert result.exit_code == EXIT_ILLEGAL, result.output
    assert f"{asked}; go on? needs a confirmation" in " ".join(result.stderr.split())
    assert fleet.changes() == []
    code, events, stderr = football(fleet, *command)
    assert code == 0, stderr
    assert said(events).count(asked) == 1
    assert_placed(fleet, "b1", ["b2"], res="vm2")


@pytest.mark.parametrize("command", [("migrate", "vm2", "cluster2"),
                                     ("migrate", "vm2:a1", "b1", "b2"),
                                     ("shrink", "vm2:a1", "320m"), ("expand", "vm2", "2g"),
                                     ("migrate+shrink+back", "vm2:a1", "b1")])
def test_a_resource_without_designated_primary_is_refused_before_anything_changes(
        fleet, command):
    """After `marsadm secondary vm2` a migrate said "unknown resource vm2:
    no host has it"; with `vm2:a1` it joined the new replicas and waited
    300 s for a sync that needs a primary (exit 198, replicas left). A
    shrink with `vm2:a1` would have made a1 primary unasked."""
    stopped_vm2(fleet)
    for argv in (("umount", fleet.hosts["a1"].mountpoint("vm2")), ("marsadm", "secondary", "vm2")):
        assert fleet.run("a1", argv).ok, argv
    fleet.calls.clear()
    code, _, stderr = football(fleet, *command)
    text = " ".join(stderr.split())
    assert code == EXIT_ILLEGAL, stderr
    assert "vm2 has no designated primary: its replicas on a1, a2 say (none)" in text, text
    where = "a1" if ":" in command[1] else "<host>"
    assert f"football repair-vm vm2 {where} (which starts the container), or `marsadm " \
        f"primary vm2` on {where} to keep the container stopped" in text, text
    assert fleet.changes() == []


@pytest.mark.parametrize("command, phases", [
    (("migrate", "vm2", "b1", "b2"), ("migrate-prepare", "migrate")),
    (("shrink", "vm2", "320m"), ("shrink-prepare", "shrink"))])
def test_a_container_stopped_while_the_operation_waited_stays_stopped(fleet, command, phases):
    """It ran when the operation began (its sync or copy done by a first
    command); its operator stopped it before the window: the window used
    to start it at the target (or on its shrunk volume) all the same."""
    fleet.create_resource("vm2", "a1", ["a2"], size=1 << 30)
    code, _, stderr = football(fleet, phases[0], *command[1:])
    assert code == 0, stderr
    fleet.run("a1", ("football-host", "ct", fleet.hosts["a1"].path(fleet.hosts["a1"].lxcpath),
                     "stop", "vm2"))
    assert fleet.running("vm2") == []
    code, events, stderr = football(fleet, phases[1], *command[1:])
    assert code == 0, stderr
    assert any(f"vm2 no longer runs on a1 (STOPPED; it ran when the {command[0]} began): it "
               "stays stopped" in text for text in said(events)), said(events)
    placed = ("b1", ["b2"]) if command[0] == "migrate" else ("a1", ["a2"])
    assert_placed(fleet, *placed, res="vm2", running=False)


def test_a_run_whose_own_window_stopped_the_container_starts_it_again_on_the_re_run(fleet):
    """The other side of it: a crash inside the window leaves the container
    stopped by the run itself (its window open in the journal): the re-run
    starts it at the target, as decided."""
    fleet.create_resource("vm2", "a1", ["a2"], size=1 << 30)
    code, _, stderr = football(fleet, "--debug-injection-point", "finish:stopped", "migrate",
                               "vm2", "b1", "b2")
    assert code == 1 and fleet.running("vm2") == [], stderr
    code, events, stderr = football(fleet, "migrate", "vm2", "b1", "b2")
    assert code == 0 and not any("no longer runs" in text for text in said(events)), stderr
    assert_placed(fleet, "b1", ["b2"], res="vm2")


def test_a_stopped_container_its_operator_started_while_the_migrate_waited_runs_at_the_end(
        fleet):
    """The other way round: kept stopped as it was at the start, the window
    would have stopped the container its operator had started meanwhile
    and left it down at the target."""
    stopped_vm2(fleet)
    code, _, stderr = football(fleet, "migrate-prepare", "vm2", "b1", "b2")
    assert code == 0, stderr
    fleet.run("a1", ("football-host", "ct", fleet.hosts["a1"].path(fleet.hosts["a1"].lxcpath),
                     "start", "vm2"))
    assert fleet.running("vm2") == ["a1"]
    code, events, stderr = football(fleet, "migrate", "vm2", "b1", "b2")
    assert code == 0, stderr
    assert any("vm2 runs on a1 again (it was stopped when the migrate began): the migrate "
               "starts it where it goes" in text for text in said(events)), said(events)
    assert_placed(fleet, "b1", ["b2"], res="vm2")


def test_a_stopped_one_its_operator_started_after_a_crash_in_the_window_runs_at_the_end(fleet):
    """Crashed in its window, the container started by `repair-vm` (as the
    run's message says): the re-run still kept it stopped — it stopped it
    with no gate (business hours) and left it down at the target, 'no
    downtime'. That window ended with the start; the next is a downtime."""
    stopped_vm2(fleet)
    code, _, stderr = football(fleet, "--debug-injection-point", "finish:stopped", "migrate",
                               "vm2", "b1", "b2")
    assert code == 1, stderr
    code, _, stderr = football(fleet, "repair-vm", "vm2", "a1")
    assert code == 0 and fleet.running("vm2") == ["a1"], stderr
    from tests.unit.test_gates import FAST
    code, events, stderr = football(fleet, *FAST, "--var", "business_hours=9_99", "migrate",
                                    "vm2", "b1", "b2")
    assert code == EXIT_ILLEGAL and "outside business_hours 9_99" in stderr, stderr
    assert any("vm2 runs on a1 again (it was stopped when the migrate began)" in text
               for text in said(events)), said(events)
    assert fleet.running("vm2") == ["a1"]
    before = len(fleet.calls)
    code, events, stderr = football(fleet, "migrate", "vm2", "b1", "b2")
    assert code == 0, stderr
    assert fleet.running("vm2") == ["b1"]
    assert_placed(fleet, "b1", ["b2"], res="vm2")
    summary = next(event for event in events if event["event"] == "summary")
    assert summary["downtime_seconds"] is not None and not summary.get("kept_stopped")
    assert [argv for _, argv in fleet.calls[before:] if argv[:2] == ("football-host", "ct")
            and argv[3] == "stop"], "the window stopped nothing"


def test_a_stopped_one_is_not_held_by_business_hours_but_by_a_pause(fleet, tmp_path):
    """No downtime: business hours (and the operator's gate, `want_downtime`)
    do not hold its window; a pause does (nothing may touch it)."""
    from tests.unit.test_gates import FAST, poll_plugin
    stopped_vm2(fleet)
    code, _, stderr = football(fleet, *FAST, "--var", "business_hours=9_99", "migrate", "vm1",
                               "cluster2")
    assert code == EXIT_ILLEGAL and "outside business_hours 9_99" in stderr, stderr
    code, _, stderr = football(fleet, "pause", "vm2")
    assert code == 0, stderr
    pause = fleet.state_dir + "/pause.vm2"
    unpause = poll_plugin(tmp_path, 20, f"Path({pause!r}).unlink()")
    code, events, stderr = football(fleet, *FAST, *unpause, "--var", "business_hours=9_99",
                                    "migrate", "vm2", "b1", "b2")
    assert code == 0, stderr
    waits = [text for text in said(events) if "waiting before the" in text]
    assert waits == [f"  waiting before the window of vm2: vm2 is locked on a1, b1 "
                     f"(paused by {pause}: football unpause vm2)"], waits
    assert_placed(fleet, "b1", ["b2"], res="vm2", running=False)

"""The gates before a downtime window (plugins/waiting.py) on the fake
fleet: business hours, pause files, the operator's gate; settings read again
while a run waits; time held by a pause does not count toward
downtime_gate_timeout. Nothing is stopped while a gate holds."""

import json
from pathlib import Path

import pytest

from tests.helpers.fakefleet import HOMES, assert_placed, football
from tests.helpers.fakefleet import fake_fleet  # noqa: F401 (a fixture)

FAST = ("--var", "poll_interval=0.05", "--var", "downtime_gate_timeout=0.3")


@pytest.fixture
def fleet(fake_fleet):  # noqa: F811 (the fixture imported above)
    return fake_fleet


def stops(fleet):
    return [argv for _, argv in fleet.calls if argv[:2] == ("football-host", "ct")
            and argv[3] == "stop"]


def poll_plugin(tmp_path, after, action):
    """A plugin file whose poll_wait runs `action` (Python source) once, at
    the `after`-th poll; the --var that loads it."""
    directory = tmp_path / "plugins"
    directory.mkdir(exist_ok=True)
    (directory / "poller.py").write_text(
        "from pathlib import Path\n"
        "from football.hooks import hookimpl\n"
        "polls = []\n"
        "@hookimpl\n"
        "def poll_wait(what, res, elapsed):\n"
        "    polls.append(elapsed)\n"
        f"    if len(polls) == {after}:\n"
        f"        {action}\n")
    return ("--var", f"plugin_dirs={directory}")


def until_business_hours_open(fleet, tmp_path, settings, *command):
    """`command` (default: migrate vm1 cluster2) with the settings file
    `settings`, whose business_hours a plugin opens ('') at the third poll
    of a wait."""
    opened = poll_plugin(tmp_path, 3,
                         f"Path({str(settings)!r}).write_text('business_hours: \"\"\\n')")
    return football(fleet, *FAST, "--var", "downtime_gate_timeout=5", "--config", str(settings),
                    *opened, *(command or ("migrate", "vm1", "cluster2")))


def while_waiting_for_the_handover_slot(monkeypatch, action):
    """`action()` once, while the migrate waits for its handover slot."""
    from football.ops.migrate import Migrate
    real, done = Migrate._take_job_slots, []

    def take_job_slots(self, kind, hosts, limit_name):
        if kind == "handover" and not done:
            done.append(action())
        return real(self, kind, hosts, limit_name)
    monkeypatch.setattr(Migrate, "_take_job_slots", take_job_slots)


def went_back_to_the_gates_before_stopping(events, reason,
                                           waited="the handover slot and the locks", res="vm1"):
    said = [event["text"] for event in events if event["event"] == "message"]
    back = next(number for number, text in enumerate(said)
                if f"{res}: while it waited for {waited}: {reason}" in text
                and text.endswith("back to the gates"))
    stopped = next(number for number, text in enumerate(said) if f"stopping {res}" in text)
    return back < stopped


def test_outside_business_hours_the_downtime_waits_and_then_is_refused_untouched(fleet):
    code, _, stderr = football(fleet, *FAST, "--var", "business_hours=9_99", "migrate", "vm1",
                               "cluster2")
    assert code == 191, stderr
    assert "outside business_hours 9_99" in stderr and "nothing was stopped" in stderr
    assert stops(fleet) == [] and fleet.running("vm1") == ["a1"]
    code, _, stderr = football(fleet, *FAST, "--var", "business_hours=[1-7]_[0-2][0-9]",
                               "migrate", "vm1", "cluster2")
    assert code == 0, stderr
    assert_placed(fleet, *HOMES["cluster2"][:1], HOMES["cluster2"][1:])


def test_business_hours_are_read_again_while_the_run_waits(fleet, tmp_path):
    settings = tmp_path / "settings.yml"
    settings.write_text('business_hours: "9_99"\n')
    code, events, stderr = until_business_hours_open(fleet, tmp_path, settings)
    assert code == 0, stderr
    said = [event["text"] for event in events if event["event"] == "message"]
    assert sum("outside business_hours 9_99" in text for text in said) == 1    # said once
    assert_placed(fleet, *HOMES["cluster2"][:1], HOMES["cluster2"][1:])


def test_a_bad_value_given_before_the_run_is_refused_before_anything_is_done(fleet):
    code, _, stderr = football(fleet, *FAST, "--var", "business_hours=[1-5]_(08-18", "migrate",
                               "vm1", "cluster2")
    assert code == 191 and "business_hours from --var: '[1-5]_(08-18' is not a regular " \
        "expression" in stderr, stderr
    assert fleet.calls == [] and fleet.running("vm1") == ["a1"]


def test_a_settings_file_edited_to_a_bad_value_while_the_run_waits_is_named(fleet, tmp_path):
    settings = tmp_path / "settings.yml"
    settings.write_text('business_hours: "9_99"\n')
    typo = poll_plugin(tmp_path, 2,
                       f"Path({str(settings)!r}).write_text('business_hours: \"[1-7\"\\n')")
    code, events, stderr = football(fleet, *FAST, "--config", str(settings), *typo,
                                    "migrate", "vm1", "cluster2")
    assert code == 191, stderr
    said = [event["text"] for event in events if event["event"] == "message"] + [stderr]
    assert any("outside business_hours 9_99" in text and "the settings as changed are "
               "refused, the run keeps those it started with: setting business_hours from "
               f"config file {settings}: '[1-7' is not a regular expression" in text
               for text in said), said
    assert stops(fleet) == [] and fleet.running("vm1") == ["a1"]


def test_a_pause_holds_the_downtime_and_the_time_held_does_not_count(fleet, tmp_path):
    code, _, stderr = football(fleet, "pause", "vm1")
    assert code == 0, stderr
    pause = fleet.state_dir + "/pause.vm1"
    # held for 20 polls of 0.05 s: far beyond downtime_gate_timeout 0.3 s
    unpause = poll_plugin(tmp_path, 20, f"Path({pause!r}).unlink()")
    code, events, stderr = football(fleet, *FAST, *unpause, "migrate", "vm1", "cluster2")
    assert code == 0, stderr
    # the pause holds both hosts of the window: said once, naming both
    waits = [event["text"] for event in events
             if event["event"] == "message" and "waiting before the downtime" in event["text"]]
    assert waits == [f"  waiting before the downtime of vm1: vm1 is locked on a1, "
                     f"{HOMES['cluster2'][0]} (paused by {pause}: football unpause vm1)"]
    assert_placed(fleet, *HOMES["cluster2"][:1], HOMES["cluster2"][1:])


def test_a_pause_of_a_resource_no_host_has_is_refused_and_pauses_nothing(fleet):
    """A typo would pause nothing while the operator thinks vm1 held."""
    code, _, stderr = football(fleet, "pause", "vm9")
    assert code == 191 and "unknown resource vm9: no host of the inventory has it; nothing " \
        "was paused" in stderr, stderr
    assert not Path(fleet.state_dir, "pause.vm9").exists()
    assert fleet.changes() == []


def test_a_pause_of_a_resource_not_found_while_hosts_are_unreachable_pauses_it_saying_so(
        fleet, monkeypatch):
    from football import facts
    real = facts.all_resources

    def all_resources(host, timeout=60):
        if host.name.startswith("b"):
            raise facts.HostUnreachable(f"{host.name} is unreachable: connection refused")
        return real(host, timeout)
    monkeypatch.setattr(facts, "all_resources", all_resources)
    code, _, stderr = football(fleet, "pause", "vm9")
    assert code == 0 and "vm9 is on none of the hosts that answered; paused all the same, " \
        "it may be on b1, b2 (not asked: unreachable)" in stderr, stderr
    assert Path(fleet.state_dir, "pause.vm9").exists()

def test_pause_of_everything_holds_and_unpause_lets_go(fleet, tmp_path):
    assert football(fleet, "pause")[0] == 0
    pause = fleet.state_dir + "/pause"
    assert football(fleet, "unpause")[0] == 0 and not Path(pause).exists()
    assert football(fleet, "pause")[0] == 0 and Path(pause).exists()
    unpause = poll_plugin(tmp_path, 5, f"Path({pause!r}).unlink()")
    code, events, stderr = football(fleet, *FAST, *unpause, "migrate", "vm1", "cluster2")
    assert code == 0, stderr
    assert f"paused by {pause}: football unpause)" in json.dumps(events)


def test_pause_unpause_and_continue_under_dry_run_say_what_they_would_do_and_change_nothing(
        fleet):
    """They paused, unpaused and released for real under --dry-run."""
    state = Path(fleet.state_dir)
    code, events, stderr = football(fleet, "--dry-run", "pause", "vm1")
    assert code == 0, stderr
    assert [(event["event"], event["resource"]) for event in events] == \
        [("would-pause", "vm1")]
    assert not (state / "pause.vm1").exists()
    code, _, stderr = football(fleet, "--dry-run", "pause", "vm9")   # checked all the same
    assert code == 191 and "unknown resource vm9" in stderr
    code, events, stderr = football(fleet, "--dry-run", "continue", "vm1")
    assert code == 0 and [event["event"] for event in events] == ["would-continue"], stderr
    assert not (state / "continue.vm1").exists()
    code, events, _ = football(fleet, "pause")
    assert code == 0 and [event["event"] for event in events] == ["paused"]
    code, events, stderr = football(fleet, "--dry-run", "unpause")
    assert code == 0 and [(event["event"], event["was_paused"]) for event in events] == \
        [("would-unpause", True)], stderr
    assert (state / "pause").exists()
    code, events, _ = football(fleet, "unpause")
    assert code == 0 and [event["event"] for event in events] == ["unpaused"]
    assert not (state / "pause").exists()
    assert fleet.changes() == []


def test_a_pause_set_while_the_run_waited_for_its_handover_slot_holds_the_downtime(
        fleet, tmp_path, monkeypatch):
    """The gates were checked before the waits for the handover slot and
    the locks, which may last long, and not again: a pause (or a lag grown
    past its limit) meanwhile did not hold the downtime. The run goes back
    to the gates."""
    pause = Path(fleet.state_dir, "pause.vm1")
    while_waiting_for_the_handover_slot(monkeypatch, pause.touch)   # the operator's pause
    unpause = poll_plugin(tmp_path, 3, f"Path({str(pause)!r}).unlink()")
    code, events, stderr = football(fleet, *FAST, *unpause, "migrate", "vm1", "cluster2")
    assert code == 0, stderr
    assert went_back_to_the_gates_before_stopping(events, "vm1 is locked on"), events
    assert_placed(fleet, *HOMES["cluster2"][:1], HOMES["cluster2"][1:])


def test_business_hours_that_ended_while_the_run_waited_for_its_handover_slot_hold_the_downtime(
        fleet, tmp_path, monkeypatch):
    """Business hours were checked before the waits for the handover slot
    and the locks (a mass run's may last long), and not again: a window
    that closed meanwhile did not hold the downtime, which began outside
    it. Asked again there (want_downtime with again=True), the run goes
    back to the gates; the operator's gate passed before is not asked
    again there (its release was used)."""
    settings = tmp_path / "settings.yml"
    settings.write_text('business_hours: ""\n')
    while_waiting_for_the_handover_slot(
        monkeypatch, lambda: settings.write_text('business_hours: "9_99"\n'))
    code, events, stderr = until_business_hours_open(fleet, tmp_path, settings)
    assert code == 0, stderr
    assert went_back_to_the_gates_before_stopping(events, "outside business_hours 9_99"), events
    assert_placed(fleet, *HOMES["cluster2"][:1], HOMES["cluster2"][1:])


def test_the_operators_gate_waits_for_continue_which_is_used_up(fleet):
    gate = ("--var", "gate_before_downtime=yes")
    code, _, stderr = football(fleet, *FAST, *gate, "migrate", "vm1", "cluster2")
    assert code == 191 and "football continue vm1" in stderr, stderr
    assert stops(fleet) == []
    assert football(fleet, "continue", "vm1")[0] == 0
    code, _, stderr = football(fleet, *FAST, *gate, "migrate", "vm1", "cluster2")
    assert code == 0, stderr
    # used up: the next downtime waits again
    code, _, stderr = football(fleet, *FAST, *gate, "handover", "vm1", HOMES["cluster2"][1])
    assert code == 191 and "football continue vm1" in stderr, stderr


def test_a_shrink_waits_at_the_same_gates_before_its_downtime(fleet):
    fleet.create_resource("vm2", "a1", ["a2"], size=1 << 30)
    code, _, stderr = football(fleet, *FAST, "--var", "business_hours=9_99", "shrink", "vm2")
    assert code == 191 and "outside business_hours" in stderr, stderr
    assert stops(fleet) == [] and fleet.running("vm2") == ["a1"]
    assert "vm2-tmp" in fleet.lvs("a1")            # the copy is kept: a re-run resumes
    code, _, stderr = football(fleet, "shrink", "vm2")
    assert code == 0, stderr


def test_business_hours_that_ended_while_a_shrink_waited_for_its_locks_hold_the_downtime(
        fleet, tmp_path, monkeypatch):
    """The shrink's gates were passed before it took the members' locks
    (up to lock_retry_timeout), and not checked again: the downtime began
    outside business hours. Asked again under the locks, it goes back."""
    from football.ops.shrink import Shrink
    fleet.create_resource("vm2", "a1", ["a2"], size=1 << 30)
    settings = tmp_path / "settings.yml"
    settings.write_text('business_hours: ""\n')
    real, done = Shrink._check_startable, []

    def check_startable(self, target, source):      # right after the gates passed
        if not done:
            done.append(settings.write_text('business_hours: "9_99"\n'))
        return real(self, target, source)
    monkeypatch.setattr(Shrink, "_check_startable", check_startable)
    code, events, stderr = until_business_hours_open(fleet, tmp_path, settings, "shrink", "vm2")
    assert code == 0, stderr
    assert went_back_to_the_gates_before_stopping(events, "outside business_hours 9_99",
                                                  waited="the locks", res="vm2"), events
    assert fleet.running("vm2") == ["a1"]


def test_a_run_waiting_for_a_hosts_lock_says_why_in_state_condition(fleet):
    """Another run holds b1's lock: the migrate says so once, as a `wait`
    in state `condition` naming the holder (a screener job shows that, not
    `running`), and ends illegal with nothing changed when it never comes."""
    b1 = fleet.hosts["b1"]
    fleet._host_json(b1, ["lock", b1.path("/var/lock/football"), "take", "football",
                          "--owner", "other-run", "--stale-after", "3600"])
    before = fleet.changes()
    code, events, stderr = football(fleet, "--var", "lock_retry_timeout=0.3", "migrate", "vm1",
                                    "b1", "b2")
    assert code == 191, stderr
    waits = [event for event in events if event["event"] == "wait" and event["what"] == "lock"]
    assert len(waits) == 1, waits
    assert waits[0]["state"] == "condition"
    assert "lock football is held by other-run" in waits[0]["reasons"][0]
    assert "football unlock football b1" in waits[0]["reasons"][0]
    assert fleet.running("vm1") == ["a1"]
    assert [change for change in fleet.changes() if change not in before
            and change[1][:2] != ("football-host", "lock")] == []


def test_a_rerun_after_a_crash_inside_the_window_goes_on_past_the_gates(fleet):
    """The first run stopped vm1 and crashed; the re-run comes outside
    business hours. Holding it at the gate would keep vm1 down until the
    window opens again (and the refusal would say "nothing was stopped"):
    it goes on, and the downtime counts from the first run's stop."""
    from tests.helpers.lab import MIGRATE_POINTS
    point = MIGRATE_POINTS.index("finish:stopped") + 1
    code, _, stderr = football(fleet, *FAST, "--debug-injection-point", str(point),
                               "migrate", "vm1", "cluster2")
    assert code == 1 and "finish:stopped" in stderr, stderr
    assert fleet.running("vm1") == []
    code, events, stderr = football(fleet, *FAST, "--var", "business_hours=9_99", "migrate",
                                    "vm1", "cluster2")
    assert code == 0, stderr
    assert_placed(fleet, *HOMES["cluster2"][:1], HOMES["cluster2"][1:])
    said = [event["text"] for event in events if event["event"] == "message"]
    assert [text for text in said if "is down since" in text and "past the gates" in text], said
    (end,) = [event for event in events if event["event"] == "downtime-end"]
    summary = next(event for event in events if event["event"] == "summary")
    journal = json.loads(next(Path(fleet.state_dir, "journal").glob("migrate-vm1.done"))
                         .read_text())
    # from the first run's stop: longer than this run's window alone
    window = journal["decided"]["window_ended"] - journal["decided"]["window_started"]
    assert summary["downtime_seconds"] == end["downtime_seconds"] >= round(window, 3) - 0.001
    assert journal["started"] < journal["decided"]["window_started"]


def test_a_rerun_after_a_crash_inside_the_window_with_the_container_running_waits(fleet):
    """Killed after the window opened, before the stop (vm1 still runs on
    the source): the re-run waits at the gates like any run."""
    from tests.helpers.lab import MIGRATE_POINTS
    point = MIGRATE_POINTS.index("finish:locked") + 1
    code, _, stderr = football(fleet, *FAST, "--debug-injection-point", str(point),
                               "migrate", "vm1", "cluster2")
    assert code == 1, stderr
    path = Path(fleet.state_dir, "journal", "migrate-vm1.json")
    journal = json.loads(path.read_text())
    journal["steps"].append("critical-section")           # as the window's first step
    journal["decided"]["window_started"] = journal["started"] + 1
    path.write_text(json.dumps(journal))
    assert fleet.running("vm1") == ["a1"]
    code, _, stderr = football(fleet, *FAST, "--var", "business_hours=9_99", "migrate", "vm1",
                               "cluster2")
    assert code == 191 and "outside business_hours 9_99" in stderr, stderr
    assert fleet.running("vm1") == ["a1"]


def test_a_rerun_refused_while_the_container_is_down_since_a_crash_says_so_critical(fleet):
    """Killed after the stop (vm1 down on a1), the re-run found b1 locked by
    an operator: 191 with the lock's words alone, as if nothing were wrong
    (or 198 "runs again" where the lag gate timed out). It is critical:
    vm1 runs nowhere, and the message says since when and how to start it."""
    from tests.helpers.lab import MIGRATE_POINTS
    point = MIGRATE_POINTS.index("finish:stopped") + 1
    code, _, stderr = football(fleet, *FAST, "--debug-injection-point", str(point),
                               "migrate", "vm1", "cluster2")
    assert code == 1, stderr
    assert fleet.running("vm1") == []
    target = fleet.resources["vm1"].replicas.keys() - {"a1", "a2"}
    assert football(fleet, "lock", "football", *sorted(target))[0] == 0
    code, _, stderr = football(fleet, *FAST, "--var", "lock_retry_timeout=0.2", "migrate",
                               "vm1", "cluster2")
    assert code == 199, stderr
    assert "vm1 is down since" in stderr and "football repair-vm vm1 <host>" in stderr, stderr
    assert football(fleet, "unlock", "football", *sorted(target))[0] == 0
    code, _, stderr = football(fleet, *FAST, "migrate", "vm1", "cluster2")
    assert code == 0, stderr
    assert fleet.running("vm1") == [fleet.resources["vm1"].primary]


def test_a_shrink_rerun_after_a_crash_inside_the_window_starts_the_container_first(fleet):
    """A shrink needs its copy's source running: its re-run starts vm2
    again before the gates, and the window the crashed run left open ends
    there (status no longer says it is inside it)."""
    from football.journal import window_left_open
    fleet.create_resource("vm2", "a1", ["a2"], size=1 << 30)
    code, events, stderr = football(fleet, "shrink", "vm2")
    point = next(number for number, event in enumerate(
        (event for event in events if event["event"] == "injection-point"), start=1)
        if event["name"] == "finish:stopped")
    fleet.create_resource("vm3", "a1", ["a2"], size=1 << 30)
    code, _, stderr = football(fleet, "--debug-injection-point", str(point), "shrink", "vm3")
    assert code == 1 and "finish:stopped" in stderr, stderr
    path = Path(fleet.state_dir, "journal", "shrink-vm3.json")
    journal = json.loads(path.read_text())
    assert window_left_open(journal["steps"], journal["decided"])
    code, _, stderr = football(fleet, *FAST, "--var", "business_hours=9_99", "shrink", "vm3")
    assert code == 191 and "outside business_hours" in stderr, stderr
    assert fleet.running("vm3") == ["a1"]
    journal = json.loads(path.read_text())
    assert not window_left_open(journal["steps"], journal["decided"])


@pytest.mark.parametrize("delayed", [("migrate", "vm1", "b1", "b2"), ("shrink", "vm2", "400m")],
                         ids=["migrate", "shrink"])
def test_the_cleanup_delay_holds_no_host_lock_so_other_runs_on_those_hosts_go_on(
        fleet, monkeypatch, delayed):
    """During `cleanup_delay` (hours, where operators keep the old replicas
    a while) the old hosts' lock was held: every other run that needed them
    (the next migrate of a mass run off those hosts) waited
    lock_retry_timeout, then was refused; and once lock_break_timeout
    passed, another run broke the lock of this live one."""
    from football.ops.base import Operation

    fleet.create_resource("vm2", "a1", ["a2"], size=1 << 30)
    other = ("migrate", "vm2", "b1", "b2") if delayed[1] == "vm1" else ("migrate", "vm1", "b2")
    real, meanwhile = Operation._delay_cleanup, []

    def another_run_on_the_old_hosts_meanwhile(self):
        if self.res == delayed[1] and not meanwhile:
            meanwhile.append({name: sorted(fleet.locks(name)) for name in ("a1", "a2")})
            meanwhile.append(football(fleet, "--var", "lock_retry_timeout=0.3", *other))
        return real(self)

    monkeypatch.setattr(Operation, "_delay_cleanup", another_run_on_the_old_hosts_meanwhile)
    code, _, stderr = football(fleet, "--var", "cleanup_delay=0.5", *delayed)
    assert code == 0, stderr
    locks_meanwhile, (other_code, _, other_stderr) = meanwhile
    assert all("football" not in items for items in locks_meanwhile.values()), locks_meanwhile
    assert other_code == 0, other_stderr


def test_where_controllers_share_a_jobs_database_a_pause_holds_every_controllers_runs(
        fleet, tmp_path):
    """`football pause vm1` on one controller: a run of vm1 on another that
    shares the jobs' database (jobs_database_url) holds too, and an unpause
    from that other controller lets it go (a pause file in one controller's
    state dir held that controller's runs alone, and with one queue a
    job may run on any controller's worker)."""
    queue = ("--var", f"jobs_database_url=sqlite:///{tmp_path / 'jobs.sqlite'}")
    code, _, stderr = football(fleet, *queue, "pause", "vm1")
    assert code == 0, stderr
    assert not Path(fleet.state_dir, "pause.vm1").exists()
    mine, fleet.state_dir = fleet.state_dir, str(tmp_path / "other-controller")
    try:
        unpause = poll_plugin(tmp_path, 5, "from click.testing import CliRunner; "
                              "from football.cli import cli; CliRunner().invoke(cli, "
                              f"[*{list(queue)!r}, '--inventory', {fleet.inventory_path!r}, "
                              f"'--var', 'state_dir={fleet.state_dir}', 'unpause', 'vm1'])")
        code, events, stderr = football(fleet, *queue, *FAST, *unpause, "migrate", "vm1",
                                        "cluster2")
    finally:
        fleet.state_dir = mine
    assert code == 0, stderr
    said = json.dumps(events)
    assert "paused in the jobs' database by football@" in said and \
        ": football unpause vm1)" in said, said
    assert_placed(fleet, *HOMES["cluster2"][:1], HOMES["cluster2"][1:])
    from football.config import Config
    from football.jobdb import shared_pauses

    assert shared_pauses(Config(variables=[queue[1]], environ={})) == {}


def test_a_run_that_died_after_the_start_before_the_windows_end_still_delays_the_cleanup(
        fleet, monkeypatch):
    """The container started on the target, then the run died before its
    window's end was recorded: the re-run found it "already up" and, with
    no end of the window to count from, skipped cleanup_delay — the old
    replicas (the way back) went at once."""
    from football.ops.base import InjectedFailure
    from football.ops.migrate import Migrate

    real = Migrate._bring_up

    def up_then_killed(self, target):
        real(self, target)
        raise InjectedFailure("killed right after the start")

    monkeypatch.setattr(Migrate, "_bring_up", up_then_killed)
    code, _, stderr = football(fleet, "migrate", "vm1", "cluster2")
    assert code == 1 and fleet.running("vm1") == ["b1"], stderr
    monkeypatch.setattr(Migrate, "_bring_up", real)
    code, events, stderr = football(fleet, "--var", "cleanup_delay=0.3", "migrate", "vm1",
                                    "cluster2")
    assert code == 0, stderr
    said = [event["text"] for event in events if event["event"] == "message"]
    assert [text for text in said if "cleanup_delay 0.3 s after the downtime window" in text], \
        said

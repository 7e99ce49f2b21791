"""`football failover HOST` on the fake fleet (tests/helpers/fakefleet.py):
a host that is gone for good. Where it was the primary, a consistent
replica takes over by force and the container starts there; its replicas
are dropped from MARS on the primaries (their LVs stay on it); a host that
answers is refused; a re-run goes on with what is left."""

import json
import threading

import pytest
from click.testing import CliRunner

from football.cli import cli
from football.ops.failover import Failover
from tests.helpers.fakefleet import (FakeHostRunner, failing, fake_fleet, football,
                                    fresh_resource, replica_behind, report_of)

fleet = fake_fleet

EXIT_ILLEGAL, EXIT_CRITICAL = 191, 199


@pytest.fixture
def three(fleet):
    """vm1 primary on a1 (replica a2), vm2 primary on a2 (replica a1), vm3
    in the other cluster (b1, b2)."""
    fresh_resource(fleet, "vm2", "a2", ["a1"], size=320 << 20)
    fresh_resource(fleet, "vm3", "b1", ["b2"], size=320 << 20)
    return fleet


def result(events):
    return next(event for event in events if event["event"] == "result")


def test_a_host_that_answers_is_refused_with_nothing_changed(three):
    before = len(three.changes())
    code, _, stderr = football(three, "failover", "a1")
    assert code == EXIT_ILLEGAL
    assert "a1 answers: a failover is for a host that is gone for good. Empty it with " \
        "football evacuate a1 --execute" in stderr, stderr
    assert three.changes()[before:] == []


def test_a_host_only_the_controller_cannot_reach_is_refused_as_its_mates_reach_its_marsd(
        three):
    """a1 runs on; only the controller's way to it is cut (its SSH): a2's
    marsadm wait-cluster reaches a1's marsd, and taking vm1 over would run
    it twice."""
    three.cut_off("a1")
    before = len(three.changes())
    for args in (["--dry-run", "failover", "a1"], ["failover", "a1"]):
        code, _, stderr = football(three, *args)
        assert code == EXIT_ILLEGAL, stderr
        assert "a2 reaches a1's marsd: a1 runs, only this controller cannot reach it (its " \
            "SSH, or the network between)" in stderr, stderr
    assert three.changes()[before:] == []
    assert three.resources["vm1"].primary == "a1" and three.running("vm1") == ["a1"]


def test_failover_takes_over_where_the_dead_host_was_primary_and_drops_its_replicas(three):
    three.switch_off("a1")
    before = len(three.changes())
    code, events, stderr = football(three, "--dry-run", "failover", "a1")
    assert code == 0, stderr
    would = [(event["host"], event["argv"]) for event in events if event["event"] == "would-run"]
    # kernel MARS's way: a replica that still fetches refuses --force primary
    takeover = [("a2", ["marsadm", "pause-fetch", "vm1"]),
                ("a2", ["marsadm", "--timeout=120", "--force", "primary", "vm1"]),
                ("a2", ["marsadm", "resume-fetch", "vm1"])]
    assert would[would.index(takeover[0]):][:3] == takeover, would
    assert ("a2", ["marsadm", "--host=a1", "leave-resource", "--force", "vm1"]) in would
    assert ("a2", ["marsadm", "--host=a1", "leave-resource", "--force", "vm2"]) in would
    assert not [argv for _, argv in would if "vm3" in argv]
    assert three.changes()[before:] == [] and three.resources["vm1"].primary == "a1"

    code, events, stderr = football(three, "failover", "a1")
    assert code == 0, stderr
    assert three.resources["vm1"].primary == "a2" and three.running("vm1") == ["a2"]
    assert three.resources["vm1"].replicas["a2"].fetching      # resumed, for later
    assert three.resources["vm2"].primary == "a2" and three.running("vm2") == ["a2"]
    assert three.members("vm1") == three.members("vm2") == ["a2"]
    assert three.members("vm3") == ["b1", "b2"] and three.running("vm3") == ["b1"]
    assert "vm1" in three.lvs("a2") and not three.sequence_problems("vm1")
    summary = result(events)
    assert summary["taken_over"] == {"vm1": "a2"} and summary["dropped"] == ["vm1", "vm2"]
    assert summary["one_replica"] == {"vm1": "a2", "vm2": "a2"}
    assert summary["unreceived"] == {"vm1": 0}
    said = [event["text"] for event in events if event["event"] == "message"]
    assert "vm1 has one replica now, on a2: football migrate vm1 a2 <secondary> gives it a " \
        "second" in said, said
    assert "a1 stays in the MARS cluster of a2 until football decommission a1 drops it " \
        "(once it holds no replica)" in said, said
    assert said[-1] == "failover of a1: 1 resource taken over, 2 replicas dropped, nothing " \
        "its replicas had heard of lost", said
    assert "football balance --plan plans second replicas for them all where there is room " \
        "(a resource without one costs the score its no_secondary penalty)" in said, said

    code, events, stderr = football(three, "failover", "a1")
    assert code == 0, stderr
    assert any("no resource has a replica on a1" in event.get("text", "") for event in events)

    plan = report_of(three, "balance", "--plan")     # as the failover's last lines say
    assert {move["resource"]: len(move["to"]) for move in plan["moves"]} == {"vm1": 2, "vm2": 2}


def test_takeovers_run_limit_takeovers_at_a_time_and_all_before_the_first_drop(
        fleet, monkeypatch):
    """A dead host's primaries come up on its mate side by side (the last
    of a hundred does not wait for the other 99), at most limit_takeovers
    at once, and every container runs before the first of the dead host's
    replicas is dropped."""
    names = ["vm1"] + [f"vm{number}" for number in range(2, 7)]
    for res in names[1:]:
        fresh_resource(fleet, res, "a1", ["a2"], size=320 << 20)
    fleet.switch_off("a1")
    three_at_once = threading.Barrier(3, timeout=10)   # one at a time never gets past it
    in_flight, most, counting = [0], [0], threading.Lock()
    run = FakeHostRunner.run

    def forced_three_at_once(self, argv, **kwargs):
        if argv[:4] != ["marsadm", "--timeout=120", "--force", "primary"]:
            return run(self, argv, **kwargs)
        with counting:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        try:
            three_at_once.wait()
            return run(self, argv, **kwargs)
        finally:
            with counting:
                in_flight[0] -= 1

    monkeypatch.setattr(FakeHostRunner, "run", forced_three_at_once)
    code, events, stderr = football(fleet, "--var", "limit_takeovers=3", "failover", "a1")
    assert code == 0, stderr
    assert most[0] == 3
    on_a2 = [list(argv) for host, argv in fleet.calls if host == "a2"]
    forced = [index for index, argv in enumerate(on_a2)
              if "--force" in argv and "primary" in argv]
    dropped = [index for index, argv in enumerate(on_a2) if "leave-resource" in argv]
    assert len(forced) == len(dropped) == 6 and max(forced) < min(dropped)
    assert all(fleet.running(res) == ["a2"] and fleet.members(res) == ["a2"] for res in names)
    assert result(events)["dropped"] == names


def test_failover_asks_first(three):
    three.switch_off("a1")
    code, _, stderr = football(three, "failover", "a1", yes=False)
    assert code == EXIT_ILLEGAL and "must be switched off for good (fenced)" in stderr, stderr
    assert three.resources["vm1"].primary == "a1"


def test_a_failover_stopped_between_the_takeover_and_the_drop_goes_on_when_run_again(three):
    three.switch_off("a1")
    code, _, stderr = football(three, "--debug-injection-point", "failover:taken-over",
                               "failover", "a1")
    assert code != 0
    assert three.resources["vm1"].primary == "a2" and three.members("vm1") == ["a1", "a2"]
    code, events, stderr = football(three, "failover", "a1")
    assert code == 0, stderr
    warnings = [event["text"] for event in events if event["event"] == "warning"]
    assert "vm1 does not run on its primary a2 (a failover stopped before it started it " \
        "there, or it was stopped): football repair-vm vm1 a2 starts it" in warnings, warnings
    assert three.members("vm1") == three.members("vm2") == ["a2"]
    assert football(three, "repair-vm", "vm1", "a2")[0] == 0
    assert three.running("vm1") == ["a2"] and not three.sequence_problems("vm1")


def test_a_resource_without_a_consistent_replica_is_named_and_the_others_go_on(three):
    three.resources["vm1"].replicas["a2"].sync_rest = 1 << 20     # a2 was still syncing
    three.switch_off("a1")
    code, events, stderr = football(three, "failover", "a1")
    assert code == EXIT_CRITICAL
    assert "failover of a1: vm1 was not taken over" in stderr, stderr
    warnings = [event["text"] for event in events if event["event"] == "warning"]
    assert any(text.startswith("vm1: no replica that answers is consistent (a2)")
               for text in warnings), warnings
    assert three.resources["vm1"].primary == "a1" and three.members("vm1") == ["a1", "a2"]
    assert three.members("vm2") == ["a2"] and three.running("vm2") == ["a2"]


def test_status_names_the_failover_of_a_host_that_does_not_answer_and_is_a_primary(three):
    three.switch_off("a1")
    result = CliRunner().invoke(cli, ["--inventory", three.inventory_path, "--var",
                                      f"state_dir={three.state_dir}", "status"],
                                env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "a1 does not answer and is the primary of vm1: if it is gone for good (switched " \
        "off), `football failover a1` takes over on their other replicas (`football " \
        "--dry-run failover a1` says what each would lose)" in result.output
    assert "primary of vm2" not in result.output


def test_a_takeover_another_run_made_while_this_one_waited_for_the_lock_is_not_made_again(
        three, monkeypatch):
    """Two controllers fail a1 over at once: the one that got a2's lock
    second looks again under it."""
    three.switch_off("a1")
    holding = Failover.holding

    def other_run_first(self, hosts, changes=True):
        if hosts and three.resources["vm1"].primary == "a1":        # vm1's, not the phase's
            for argv in (["pause-fetch", "vm1"], ["--force", "primary", "vm1"]):
                three.run("a2", ["marsadm", *argv])                   # the other controller
        return holding(self, hosts, changes)

    monkeypatch.setattr(Failover, "holding", other_run_first)
    before = len(three.calls)
    code, events, stderr = football(three, "failover", "a1")
    assert code == 0, stderr
    forced = [argv for _, argv in three.calls[before:] if "--force" in argv and
              "primary" in argv]
    assert len(forced) == 1, "taken over twice"
    assert result(events)["taken_over"] == {} and three.members("vm1") == ["a2"]


def test_a_resource_stopped_on_purpose_is_not_started_only_its_replica_dropped(three):
    """vm2 has no designated primary (`marsadm secondary`: stopped by the
    operator); a1 held its other replica."""
    three.containers["a2"]["vm2"] = "STOPPED"
    three.mounts["a2"].pop(three.hosts["a2"].mountpoint("vm2"), None)
    assert three.run("a2", ["marsadm", "secondary", "vm2"]).ok
    three.switch_off("a1")
    code, events, stderr = football(three, "failover", "a1")
    assert code == 0, stderr
    assert three.resources["vm2"].primary == "" and three.running("vm2") == []
    assert three.members("vm2") == ["a2"]
    assert not [event for event in events if event["event"] == "warning"
                and "vm2" in event["text"]]
    assert three.resources["vm1"].primary == "a2" and three.running("vm1") == ["a2"]


def test_a_resource_whose_only_replica_was_on_the_dead_host_is_named_as_lost_there(fleet):
    fresh_resource(fleet, "vm2", "a1", [], size=320 << 20)
    fleet.switch_off("a1")
    code, events, stderr = football(fleet, "failover", "a1")
    assert code == EXIT_CRITICAL and "vm2 was not taken over" in stderr, stderr
    warnings = [event["text"] for event in events if event["event"] == "warning"]
    assert "vm2: its only replica is on a1: it comes back with a1's disk, or from a " \
        "backup" in warnings, warnings
    assert fleet.resources["vm1"].primary == "a2" and fleet.members("vm1") == ["a2"]


def test_a_primary_that_died_before_its_replica_was_consistent_is_rebuilt_by_repair_mars(
        fleet):
    """a1 dies while a2's sync of vm1 is still running: no replica can take
    over (failover: critical, naming repair-mars); repair-mars refused a
    member that does not answer ("bring their marsd back", for a host that
    never comes back, or a forced handover by hand and a repair-vm). Now,
    once the operator confirms that a1 is switched off, it drops the dead
    member on the chosen host (the creation would wait for it for ever)
    and rebuilds vm1 from a2's LV, as it holds it."""
    fleet.resources["vm1"].replicas["a2"].sync_rest = 512 << 20
    fleet.stalled["a2"] = "sync stalled"
    fleet.switch_off("a1")
    code, events, stderr = football(fleet, "failover", "a1")
    assert code == EXIT_CRITICAL
    assert "football repair-mars vm1 <host> rebuilds it from an LV" in json.dumps(events)

    code, events, stderr = football(fleet, "repair-mars", "vm1", "a2", yes=False)
    assert code == EXIT_ILLEGAL and "a1 must be switched off for good (fenced)" in stderr, stderr
    assert fleet.members("vm1") == ["a1", "a2"]

    code, events, stderr = football(fleet, "repair-mars", "vm1", "a2")
    assert code == 0, stderr
    texts = [event.get("text") for event in events]
    assert "  a2: marsadm --host=a1 leave-resource --force vm1 (a1 does not answer)" in texts
    assert fleet.members("vm1") == ["a2"] and fleet.running("vm1") == ["a2"]


def test_repair_mars_does_not_drop_a_member_that_only_the_controller_cannot_reach(fleet):
    """a1 runs on, cut off from the controller alone: a2 reaches its marsd,
    and repair-mars would drop a replica that a container writes to."""
    fleet.cut_off("a1")
    before = len(fleet.changes())
    code, _, stderr = football(fleet, "repair-mars", "vm1", "a2")
    assert code == EXIT_ILLEGAL, stderr
    assert "a2 reaches the marsd of a1 (members of vm1): a1 runs, only this controller " \
        "cannot reach it" in stderr, stderr
    assert fleet.changes()[before:] == []
    assert fleet.members("vm1") == ["a1", "a2"] and fleet.running("vm1") == ["a1"]


def test_a_takeover_names_what_the_new_primary_never_received_from_the_dead_one(three):
    """a2's fetch from a1 was cut off while vm1 wrote on: what a2 never
    fetched is lost with a1 (asynchronous replication); the failover says
    how much (`view-fetch-rest` on a2) instead of nothing."""
    three.stalled["a2"] = "fetch cut off"
    for _ in range(5):
        three.run("b1", ["marsadm", "view-get-primary", "vm3"])     # vm1 writes on a1
    behind = len(three.resources["vm1"].records) - three.resources["vm1"].replicas["a2"].applied
    assert behind >= 5
    three.switch_off("a1")
    code, events, stderr = football(three, "--dry-run", "failover", "a1")    # before: said
    assert code == 0, stderr
    warnings = [event["text"] for event in events if event["event"] == "warning"]
    assert f"vm1: a2 has not received {behind} bytes of a1's log (as a1 last said it): a " \
        "failover now loses it" in warnings, warnings
    code, _, stderr = football(three, "failover", "a1", yes=False)             # and asked
    assert code == EXIT_ILLEGAL
    assert f"what it wrote that its replicas had not received is lost: vm1 {behind} bytes, as " \
        "they last heard of its log. Fail over vm1, vm2?" in stderr, stderr

    code, events, stderr = football(three, "failover", "a1")
    assert code == 0, stderr
    warnings = [event["text"] for event in events if event["event"] == "warning"]
    assert f"vm1: a2 had not received {behind} bytes of a1's log (as a1 last said it): lost " \
        "with a1, and what it wrote after that" in warnings, warnings
    assert result(events)["unreceived"] == {"vm1": behind}
    said = [event["text"] for event in events if event["event"] == "message"]
    assert said[-1] == f"failover of a1: 1 resource taken over, 2 replicas dropped, {behind} " \
        f"bytes of its log lost (vm1 {behind} bytes)", said


def test_of_several_replicas_the_one_holding_most_takes_over_not_the_one_listing_least(three):
    """What each replica says it has not fetched (`view-fetch-rest`) is
    counted from the primary's log as it last listed it: a2, cut off from
    a1 long before a1 died, had fetched all it had listed (0), b1 was
    fetching the last records a1 wrote (2 to go) and held far more. The
    least unfetched (a2) took over: what b1 had beyond it was lost, b1 a
    split brain. The one holding most of a1's log (`fetch-lognr`,
    `fetch-logsize`) does."""
    three.run("a1", ["marsadm", "merge-cluster", "b1", three.hosts["b1"].address])
    fresh_resource(three, "vm1", "a1", ["a2", "b1"], size=320 << 20)
    replicas = three.resources["vm1"].replicas
    three.run("b2", ["marsadm", "view-get-primary", "vm3"])         # vm1 writes on a1
    three.stalled["a2"] = "cut off from a1"
    replicas["a2"].listed = replicas["a2"].applied
    for _ in range(5):
        three.run("b2", ["marsadm", "view-get-primary", "vm3"])
    three.stalled["b1"] = "fetching"
    replicas["b1"].listed, replicas["b1"].applied = len(three.resources["vm1"].records), \
        replicas["b1"].applied - 2
    said = {name: three.run(name, ["marsadm", "view-fetch-rest", "vm1"]).stdout.strip()
            for name in ("a2", "b1")}
    assert said == {"a2": "0", "b1": "2"}
    assert replicas["b1"].applied > replicas["a2"].applied
    three.switch_off("a1")
    code, events, stderr = football(three, "failover", "a1")
    assert code == 0, stderr
    assert result(events)["taken_over"] == {"vm1": "b1"}
    assert three.running("vm1") == ["b1"]


def test_a_view_that_fails_between_the_choice_and_the_takeover_does_not_undo_the_choice(
        three, monkeypatch):
    """The takeover decides again under the new primary's lock (another run
    may have acted meanwhile); a replica's position that could not be read
    then (-1: chosen last) made it choose the other, and fail vm1 as if
    another run had acted ("its primary is a2 now"), the run critical."""
    three.run("a1", ["marsadm", "merge-cluster", "b1", three.hosts["b1"].address])
    fresh_resource(three, "vm1", "a1", ["a2", "b1"], size=320 << 20)
    three.stalled["a2"] = "fetch cut off"
    three.run("b2", ["marsadm", "view-get-primary", "vm3"])         # vm1 writes on a1
    asked, real = [], Failover._received

    def received(host, res):
        asked.append(host.name)
        return real(host, res) if asked.count(host.name) == 1 else (-1, -1)
    monkeypatch.setattr(Failover, "_received", staticmethod(received))
    three.switch_off("a1")
    code, events, stderr = football(three, "failover", "a1")
    assert code == 0, stderr
    assert result(events)["taken_over"] == {"vm1": "b1"}
    assert three.running("vm1") == ["b1"]


def test_of_several_replicas_the_one_that_received_most_takes_over(three):
    """vm1 has two replicas besides a1: a2's fetch was cut off while vm1
    wrote on, b1 has it all. The first consistent replica took over (a2):
    what b1 had and a2 had not was lost, and b1, ahead of the new primary,
    was a split brain. The one that received most of a1's log does."""
    replica_behind(three)
    assert three.resources["vm1"].replicas["b1"].applied > three.resources["vm1"].replicas[
        "a2"].applied
    three.switch_off("a1")
    code, events, stderr = football(three, "failover", "a1")
    assert code == 0, stderr
    assert result(events)["taken_over"] == {"vm1": "b1"}
    assert result(events)["unreceived"] == {"vm1": 0}
    assert three.running("vm1") == ["b1"]


def test_a_replica_whose_marsd_does_not_answer_does_not_take_over_and_is_named(three):
    """b1 received most of a1's log, but its marsd is down (its host
    answers, its marsadm answers from the store): its `marsadm --force
    primary` recorded the wish and waited out the handover timeout (its
    marsd would take over whenever it came up). vm1 is named with what to
    do — not taken over on a2, which holds less, unasked."""
    replica_behind(three)
    three.switch_off("a1")
    three.marsd_stopped.add("b1")
    code, events, stderr = football(three, "--dry-run", "failover", "a1")
    assert code == 0, stderr
    said = "vm1: b1, the replica that received most of a1's log, cannot take over: its marsd " \
        "does not answer. Start marsd on b1 and run the failover again; to take over on a2 " \
        "instead, losing what only b1 holds, drop b1's replica first, on a2: marsadm " \
        "--host=b1 leave-resource --force vm1"
    assert said in [event["text"] for event in events if event["event"] == "warning"], events
    before = len(three.changes())
    code, events, stderr = football(three, "failover", "a1")
    assert code == EXIT_CRITICAL, stderr
    assert said in [event["text"] for event in events if event["event"] == "warning"], events
    assert "failover of a1: vm1 was not taken over" in stderr, stderr
    assert three.members("vm2") == ["a2"] and three.running("vm2") == ["a2"]
    assert three.resources["vm1"].primary == "a1" and three.running("vm1") == []
    assert not [change for change in three.changes()[before:] if "vm1" in change], \
        three.changes()[before:]
    three.marsd_stopped.discard("b1")
    code, events, stderr = football(three, "failover", "a1")
    assert code == 0, stderr
    assert result(events)["taken_over"] == {"vm1": "b1"}
    assert three.running("vm1") == ["b1"]


def test_a_single_consistent_replica_whose_marsd_does_not_answer_is_named(three):
    three.switch_off("a1")
    three.marsd_stopped.add("a2")
    code, events, stderr = football(three, "failover", "a1")
    assert code == EXIT_CRITICAL, stderr
    assert "failover of a1: vm1 was not taken over (see the warnings above); the others " \
        "were. Run it again" in stderr, stderr            # vm2 was (a2 its primary)
    assert "vm1: its only consistent replica, a2, cannot take over: its marsd does not " \
        "answer. Start marsd on a2 and run the failover again" in [
            event["text"] for event in events if event["event"] == "warning"], events
    assert three.resources["vm1"].primary == "a1"


def test_a_failover_whose_only_resource_failed_does_not_speak_of_others(fleet):
    fleet.switch_off("a1")
    fleet.marsd_stopped.add("a2")
    code, _, stderr = football(fleet, "failover", "a1")
    assert code == EXIT_CRITICAL
    assert "failover of a1: vm1 was not taken over (see the warnings above). Run it again " \
        "once that is seen to" in stderr, stderr


@pytest.mark.parametrize("away", ["switch_off", "cut_off"])
def test_a_replica_that_cannot_be_asked_keeps_one_that_holds_less_from_taking_over(three, away):
    """b1 received all of a1's log, a2 nothing of the last writes; b1's host
    is off (or cut off) too: it was skipped unsaid, a2 took over ("5 bytes
    lost") and b1 stayed a member ahead of the new primary — a split
    brain once back. vm1 is named with what to do; nothing of it changes."""
    replica_behind(three)
    three.switch_off("a1")
    getattr(three, away)("b1")
    before = len(three.changes())
    code, events, stderr = football(three, "failover", "a1")
    assert code == EXIT_CRITICAL, stderr
    warnings = " ".join(event["text"] for event in events if event["event"] == "warning")
    assert "vm1: b1, a replica of vm1, cannot be asked (" in warnings, warnings
    assert "it may hold more of a1's log than a2. Bring it back and run the failover again; " \
        "to take over without, losing what only b1 holds, drop it first, on a2: marsadm " \
        "--host=b1 leave-resource --force vm1" in warnings, warnings
    assert three.resources["vm1"].primary == "a1" and three.running("vm1") == []
    assert not [change for change in three.changes()[before:] if "vm1" in change]


def test_a_takeover_whose_loss_cannot_be_read_says_so_not_that_nothing_was_lost(
        three, monkeypatch):
    """`view-fetch-rest` on the new primary failed (or said nothing): the
    failover ended "nothing its replicas had heard of lost", unsaid."""
    three.switch_off("a1")
    failing(three, monkeypatch, lambda host, argv: argv[:2] == ("marsadm", "view-fetch-rest"),
            1, "marsadm: timed out")
    code, events, stderr = football(three, "failover", "a1")
    assert code == 0, stderr
    warnings = [event["text"] for event in events if event["event"] == "warning"]
    assert "vm1: how much of a1's log a2 has not received cannot be told (marsadm " \
        "view-fetch-rest vm1 there says nothing); what a1 wrote that a2 lacks is lost with " \
        "it" in warnings, warnings
    said = [event["text"] for event in events if event["event"] == "message"]
    assert said[-1] == "failover of a1: 1 resource taken over, 2 replicas dropped, what was " \
        "lost of vm1 cannot be told", said

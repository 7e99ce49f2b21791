"""`limit_syncs` on the fake fleet (tests/helpers/fakefleet.py): a migrate
takes a sync slot on its target before it joins a replica there, and the
slots in use are the target's running syncs plus the live intents (planned
syncs) of other runs. These prove the counting: what holds a slot, what
does not, and that a waiting run goes on once a slot is free.

The lab keeps the real-parts sample: two real runs at once competing for
one slot (tests/root/test_parallel.py)."""

import json
import socket
from pathlib import Path

import pytest

from tests.helpers.fakefleet import assert_placed, fake_fleet, football

fleet = fake_fleet

INTENTS = "/var/lib/football/intents"
OTHER_RUN = "a-sync-of-another-run"
# Only a bound on a hang: a run that waits for a slot nobody frees fails
# after this instead of after the default day. Runs that should not wait
# never come near it.
SLOT_WAIT_BOUND = 60


def migrate(fleet, *args, limit, options=()):
    """`football [options] migrate <args>` with `limit_syncs` at `limit`."""
    return football(fleet, "--var", f"limit_syncs={limit}",
                    "--var", f"sync_timeout={SLOT_WAIT_BOUND}", *options, "migrate", *args)


def intents_dir(fleet, host):
    return fleet.hosts[host].path(INTENTS)


def register_other_intent(fleet, host, item):
    """Another run's planned sync on `host`, taken with the real host-side
    helper as that run's `register_intent` would."""
    taken = fleet.run(host, ["football-host", "lock", intents_dir(fleet, host), "take", item,
                             "--owner", OTHER_RUN, "--stale-after", "600"])
    assert taken.ok, taken.stderr


def release_other_intent(fleet, host, item, run=None):
    released = (run or fleet.run)(host, ["football-host", "lock", intents_dir(fleet, host),
                                         "release", item, "--owner", OTHER_RUN])
    assert released.ok and json.loads(released.stdout)["released"], released


def backdate(fleet, host, item, seconds):
    """Make an intent's record `seconds` old, as if its run had registered
    it then (the record's own time is what the lease is measured from)."""
    path = Path(intents_dir(fleet, host)) / f"{item}.lock"
    record = json.loads(path.read_text())
    record["time"] -= seconds
    path.write_text(json.dumps(record))


def free_slot_after_checks(fleet, monkeypatch, host, checks, free):
    """Answer the run's first `checks` looks at `host`'s intents as they
    are, then call `free(run)` — from inside the fleet, as another run
    finishing while this one waits would. Returns where in `fleet.calls`
    each look was (a slot check ends with listing the intents)."""
    answer = fleet.run
    listing = ("football-host", "lock", intents_dir(fleet, host), "list")
    looks = []

    def run(name, argv, input=None):
        result = answer(name, argv, input=input)
        if name == host and tuple(str(arg) for arg in argv) == listing:
            looks.append(len(fleet.calls))
            if len(looks) == checks:
                free(answer)
        return result

    monkeypatch.setattr(fleet, "run", run)
    return looks


def said(events, stderr, text):
    return any(text in event.get("text", "") for event in events) or text in stderr


def first_call(fleet, host, *words):
    """Index in `fleet.calls` of the first command on `host` with all of `words`."""
    return next(index for index, (name, argv) in enumerate(fleet.calls)
                if name == host and all(word in argv for word in words))


def test_a_migrate_with_a_free_slot_beside_another_runs_intent_does_not_wait(fleet):
    register_other_intent(fleet, "b1", "sync-elsewhere")
    code, events, stderr = migrate(fleet, "vm1", "b1", limit=2)
    assert code == 0, stderr
    assert not said(events, stderr, "waiting for a sync slot")
    assert not said(events, stderr, "syncs running or planned")
    # the other run's intent is its own: left as it was
    assert {item: record["owner"] for item, record in fleet.locks("b1", INTENTS).items()} \
        == {"sync-elsewhere": OTHER_RUN}
    release_other_intent(fleet, "b1", "sync-elsewhere")
    assert_placed(fleet, "b1", [])


@pytest.mark.parametrize("limit", [1, 2])
def test_a_migrate_finding_all_slots_taken_by_intents_waits_until_one_is_released(
        fleet, monkeypatch, limit):
    others = [f"sync-other{number}" for number in range(limit)]
    for item in others:
        register_other_intent(fleet, "b1", item)
    # one of them finishes after the run looked twice: once before it says
    # it waits, once more in its wait
    looks = free_slot_after_checks(
        fleet, monkeypatch, "b1", 2, lambda run: release_other_intent(fleet, "b1", others[0], run))

    code, events, stderr = migrate(fleet, "vm1", "b1", limit=limit)
    assert code == 0, stderr
    taken = ", ".join(f"{item[len('sync-'):]} planned" for item in others)
    assert said(events, stderr, f"b1: waiting for a sync slot on b1 (limit_syncs {limit}; "
                                f"taken: {taken}); a planned slot stays taken until its run "
                                "goes on or ends, or lease_time passes")
    assert len(looks) > 2, "the run went on without looking again after the release"
    released = first_call(fleet, "b1", "release", others[0])
    assert released < first_call(fleet, "b1", "take", "sync-vm1") \
        < first_call(fleet, "b1", "join-resource"), "the run took the slot while it was held"
    # the other runs' intents still held stay; nothing of this run's is left
    assert sorted(fleet.locks("b1", INTENTS)) == others[1:]
    for item in others[1:]:
        release_other_intent(fleet, "b1", item)
    assert_placed(fleet, "b1", [])


def test_an_intent_older_than_lease_time_holds_no_slot(fleet):
    register_other_intent(fleet, "b1", "sync-elsewhere")
    backdate(fleet, "b1", "sync-elsewhere", 601)
    code, events, stderr = migrate(fleet, "vm1", "b1", limit=1,
                                   options=["--var", "lease_time=600"])
    assert code == 0, stderr
    assert not said(events, stderr, "waiting for a sync slot")
    release_other_intent(fleet, "b1", "sync-elsewhere")
    assert_placed(fleet, "b1", [])


def test_a_re_run_does_not_wait_for_the_intent_its_crashed_run_left(fleet):
    code, events, stderr = migrate(fleet, "vm1", "b1", limit=1,
                                   options=["--debug-injection-point", "1"])
    assert code == 1, stderr
    owner = f"migrate-vm1@{socket.gethostname()}"
    assert {item: record["owner"] for item, record in fleet.locks("b1", INTENTS).items()} \
        == {"sync-vm1": owner}, "the crashed run left no intent: nothing to prove"

    code, events, stderr = migrate(fleet, "vm1", "b1", limit=1)
    assert code == 0, stderr
    assert not said(events, stderr, "waiting for a sync slot")
    assert_placed(fleet, "b1", [])


def test_a_running_sync_of_another_resource_on_the_target_holds_a_slot(fleet, monkeypatch):
    vm2 = fleet.create_resource("vm2", "b2", ["b1"])
    # b1's replica of vm2 is syncing and would not finish by itself in this
    # test; it finishes once the run looked twice
    vm2.replicas["b1"].sync_rest = vm2.size * 10**6
    assert not fleet.locks("b1", INTENTS)
    finished = []

    def finish_the_sync(run):
        vm2.replicas["b1"].sync_rest = 0
        finished.append(len(fleet.calls))

    looks = free_slot_after_checks(fleet, monkeypatch, "b1", 2, finish_the_sync)
    code, events, stderr = migrate(fleet, "vm1", "b1", limit=1)
    assert code == 0, stderr
    assert said(events, stderr, "b1: waiting for a sync slot on b1 (limit_syncs 1; taken: vm2 "
                                "running)")
    assert not said(events, stderr, "a planned slot stays taken")
    assert len(looks) > 2
    assert first_call(fleet, "b1", "join-resource", "vm1") >= finished[0], \
        "the run joined while the other sync was running"
    assert_placed(fleet, "b1", [])
    assert fleet.members("vm2") == ["b1", "b2"] and fleet.resources["vm2"].primary == "b2"


def test_a_sync_that_takes_longer_than_sync_timeout_fails_the_wait_and_a_re_run_waits_again(
        fleet):
    fleet.sync_chunk = 1                   # a byte per tick: it would take for ever
    code, _, stderr = football(fleet, "--var", "sync_timeout=0.5", "migrate", "vm1", "b1")
    assert code == 198 and "did not complete within sync_timeout 0.5 s" in stderr, stderr
    assert "re-run to wait for it again" in stderr
    assert fleet.running("vm1") == ["a1"] and not fleet.violations
    fleet.sync_chunk = None
    code, _, stderr = football(fleet, "migrate", "vm1", "b1")
    assert code == 0, stderr
    assert_placed(fleet, "b1", [])

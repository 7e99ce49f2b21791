"""`football lock` refused at one host leaves the others as they were
(football/ops/lock.py): taking is all or nothing, but "nothing" means what
this command took, not the locks its owner held before it. (Not in
`LockSet` itself: a phase's nested lock set that released the phase's own
"again" locks on a refusal is what let two migrates' cleanups, each
holding one old host and splitting over both, get past each other; kept,
they waited on each other for lock_retry_timeout — the lab's screener run,
in CI.) On the fake fleet (tests/helpers/fakefleet.py)."""

from football.errors import EXIT_ILLEGAL
from tests.helpers.fakefleet import fake_fleet, football

fleet = fake_fleet

OTHER = "migrate-vm7@elsewhere"


def hold(fleet, name, owner):
    """`owner` (another run) holds the lock `football` on `name`."""
    host = fleet.hosts[name]
    assert fleet.run(name, ["football-host", "lock", host.path("/var/lock/football"), "take",
                            "football", "--owner", owner, "--stale-after", "3600"]).ok


def test_a_refused_lock_keeps_the_lock_its_owner_held_before_on_another_host(fleet):
    """The operator paused a1; a later `lock football a1 b1` found b1 held
    by another run and said 191, nothing changed — yet it had released a1,
    which it took "again" (its owner held it already), and a1 ran
    operations again although the operator had paused it."""
    assert football(fleet, "lock", "football", "a1")[0] == 0
    [paused] = fleet.locks("a1").values()
    hold(fleet, "b1", OTHER)
    code, _, stderr = football(fleet, "--var", "lock_retry_timeout=0.3",
                               "lock", "football", "a1", "b1")
    assert code == EXIT_ILLEGAL, stderr
    assert f"lock football is held by {OTHER}" in stderr
    assert fleet.locks("a1")["football"]["owner"] == paused["owner"]
    assert fleet.locks("a1")["football"].get("permanent") == paused.get("permanent")
    assert fleet.locks("b1")["football"]["owner"] == OTHER


def test_a_refused_lock_keeps_the_earlier_lock_and_releases_the_new_one(fleet):
    """a1 held before (kept), a2 newly taken (released: all or nothing of
    what this command took), b1 refused."""
    assert football(fleet, "lock", "football", "a1")[0] == 0
    hold(fleet, "b1", OTHER)
    code, _, stderr = football(fleet, "--var", "lock_retry_timeout=0.3",
                               "lock", "football", "a1", "a2", "b1")
    assert code == EXIT_ILLEGAL, stderr
    assert list(fleet.locks("a1")) == ["football"] and fleet.locks("a2") == {}

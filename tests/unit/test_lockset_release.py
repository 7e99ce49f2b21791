"""A lock set's rollback (football/locks.py, `LockSet._all_or_nothing`)
against the real host helper: a refusal releases every lock the set took,
whatever one of the releases does: one that failed (a lost connection)
stopped the rollback, the hosts before it kept the lock until
lock_break_timeout, and the caller got the transport's error instead of the
refusal (no wait for the holder)."""

import pytest

from football import locks
from football.inventory import Host
from football.locks import LockSet, Locked
from tests.unit.test_locks import InProcess, Recording, config, holders

ITEM = "football"


def host(tmp_path, name, log, **options):
    return Host(name=name, address="127.0.0.1", transport="local", root=str(tmp_path / name),
                _runner=Recording(InProcess(name), log, **options))


def test_a_refused_set_whose_rollback_cannot_reach_one_host_still_releases_the_others(
        tmp_path):
    log = []
    a, b, c = (host(tmp_path, "a", log), host(tmp_path, "b", log, fail_release=True),
               host(tmp_path, "c", log))
    locks.take(c, ITEM, "other-run", 3600)
    with pytest.raises(Locked):
        LockSet("run-1", config()).acquire([a, b, c], ITEM)
    assert holders(a) == {}


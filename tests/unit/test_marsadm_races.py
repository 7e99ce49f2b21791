"""Two resource commands at once on one host (two operators, or a command
retried while the first still runs): the checks and the write of one must
not interleave with the other's, or both pass the "disk already used"
check and two resources end up on one disk."""

import threading

import pytest

import mars.resources
from mars.errors import MarsError
from mars.hostenv import HostEnv
from mars.resources import Resources
from mars.store import Store
from tests.unit.conftest import MIB, make_disk


def _command(host, verb, *args):
    """`marsadm <verb> <args>` of `host` as a function of its own store
    connection (a second marsadm process): None when done, else the refusal."""
    def run():
        env = HostEnv(host=host.name, root=host.root)
        with Store(env.db_path, env.host) as store:
            try:
                getattr(Resources(env, store, echo=lambda text: None), verb)(*args)
            except MarsError as exc:
                return str(exc)
        return None
    return run


def _race(monkeypatch, first, second):
    """Run `first`, and `second` while `first` sits between its checks and
    its write (at its `disk_size`, which comes after its check snapshot).
    Returns both refusals (None: done)."""
    real = mars.resources.disk_size
    outcome = {}
    threads = []

    def disk_size_racing(path):
        if not threads:
            thread = threading.Thread(target=lambda: outcome.update(second=second()))
            threads.append(thread)
            thread.start()
            thread.join(1.0)            # done at once, unless it waits for `first`
        return real(path)

    monkeypatch.setattr(mars.resources, "disk_size", disk_size_racing)
    outcome["first"] = first()
    threads[0].join(30)
    return outcome["first"], outcome["second"]


def _disk_users(host, disk):
    with host.store() as store:
        return sorted(key for key, value in store.live_values("resource-").items()
                      if key.endswith(f"/data-{host.name}") and value == disk)


def test_two_creates_at_once_on_one_disk_give_it_to_one_resource_only(h1, tmp_path, monkeypatch):
    disk = make_disk(tmp_path / "disk", MIB)
    refusals = _race(monkeypatch, _command(h1, "create", "vm1", disk),
                     _command(h1, "create", "vm2", disk))
    assert len(_disk_users(h1, disk)) == 1
    assert [bool(refusal) for refusal in refusals] == [False, True], refusals
    assert f"disk {disk} is already the disk of resource vm1" in refusals[1]


@pytest.mark.parametrize("order", ["join-first", "create-first"])
def test_a_join_and_a_create_at_once_on_one_disk_give_it_to_one_resource_only(
        scenario, monkeypatch, order):
    h1 = scenario.host
    h1.peer_apply([("resource-vm3/size", str(MIB), "h2")])
    join = _command(h1, "join", "vm3", scenario.spare)
    create = _command(h1, "create", "vm5", scenario.spare)
    refusals = _race(monkeypatch, *((join, create) if order == "join-first" else (create, join)))
    assert len(_disk_users(h1, scenario.spare)) == 1
    assert [bool(refusal) for refusal in refusals] == [False, True], refusals


def test_the_same_create_twice_at_once_creates_it_once(h1, tmp_path, monkeypatch):
    """A retried create-resource with another disk while the first still runs."""
    disk_a = make_disk(tmp_path / "disk-a", MIB)
    disk_b = make_disk(tmp_path / "disk-b", MIB)
    refusals = _race(monkeypatch, _command(h1, "create", "vm1", disk_a),
                     _command(h1, "create", "vm1", disk_b))
    assert h1.ok("view-get-disk", "vm1") == f"{disk_a}\n"
    assert refusals[0] is None and "resource vm1 already exists" in refusals[1], refusals

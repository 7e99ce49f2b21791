"""The bounded wait for a host's create/join lock lives with the lock, in
mars/resources.py: `Resources(..., timeout=)` gives up after `timeout`
seconds with MarsTimeout (marsadm's exit 3), nothing changed; without a
timeout (None, or -1 as marsadm's --timeout has it) it waits as long as it
takes, as before. marsadm passes --timeout through; it used to take the
lock itself and call the decorator's `__wrapped__`, so any other caller of
Resources (or a third marked method) waited without end."""

import fcntl
import threading

import pytest

from mars.errors import EXIT_TIMEOUT, MarsError, MarsTimeout
from mars.hostenv import HostEnv
from mars.resources import Resources
from mars.store import Store
from tests.unit.conftest import MIB, make_disk


def resources(host, timeout):
    env = HostEnv(host=host.name, root=host.root)
    store = Store(env.db_path, env.host)
    return Resources(env, store, echo=lambda text: None, timeout=timeout), store


def users_of(host, disk):
    with host.store() as store:
        return sorted(key for key, value in store.live_values("resource-").items()
                      if value == disk)


@pytest.mark.parametrize("verb", ["create", "join"])
def test_resources_given_a_timeout_give_up_on_a_held_lock_naming_it_and_change_nothing(
        h1, tmp_path, verb):
    disk = make_disk(tmp_path / "disk", MIB)
    if verb == "join":
        h1.ok("create-resource", "vm0", make_disk(tmp_path / "disk0", MIB))
    commands, store = resources(h1, timeout=0.2)
    # held as another marsadm's create would hold it
    with open(h1.state_dir / "resources.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with pytest.raises(MarsTimeout) as refused:
                getattr(commands, verb)("vm0" if verb == "join" else "vm1", disk)
        finally:
            store.close()
    assert refused.value.exit_code == EXIT_TIMEOUT
    assert f"another create-resource or join-resource on h1 still runs (it holds " \
           f"{h1.state_dir / 'resources.lock'}) after --timeout 0.2 s: nothing was changed" \
           in str(refused.value)
    assert f"then run {verb}-resource again, or give a longer --timeout" in str(refused.value)
    assert users_of(h1, disk) == []


@pytest.mark.parametrize("timeout", [None, -1])
def test_resources_without_a_timeout_wait_for_the_lock_as_long_as_it_takes(h1, tmp_path,
                                                                           timeout):
    disk = make_disk(tmp_path / "disk", MIB)
    outcome = {}

    def create():
        commands, store = resources(h1, timeout)
        try:
            commands.create("vm1", disk)
            outcome["done"] = True
        except MarsError as exc:
            outcome["refused"] = str(exc)
        finally:
            store.close()

    with open(h1.state_dir / "resources.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        thread = threading.Thread(target=create)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive() and not outcome, f"it did not wait for the lock: {outcome}"
    thread.join(60)
    assert outcome == {"done": True}
    assert users_of(h1, disk) == ["resource-vm1/data-h1"]


def test_marsadms_timeout_reaches_the_resources_it_acts_with(h1, monkeypatch):
    """(-1, marsadm's 'forever', is None's 'as long as it takes')."""
    from mars.marsadm import Context
    monkeypatch.setenv("MARS_ROOT", str(h1.root))
    options = {"host": "h1", "timeout": 7.5, "dry_run": False}
    context = Context(options)
    try:
        assert context.resources().timeout == 7.5
        options["timeout"] = -1
        assert context.resources().timeout is None
    finally:
        context.close()

"""Locks and intents (football/locks.py) through the real host helper
(`football-host lock`), on local hosts whose root is a temporary directory:
taking in sorted order, all or nothing, backoff until `lock_retry_timeout`,
stale locks, release on every exit path, and intents with their lease.

Most tests run the helper's click command in this process (the same argv,
JSON and exit codes as the console script, without a Python start per call);
those marked `subprocess` run the installed `football-host` through the local
transport, as Football does on a lab host."""

import json
import os
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from football import locks
from football.config import Config
from football.hostside.cli import cli as football_host
from football.inventory import Host
from football.locks import LockSet, Locked
from football.transport import CommandFailed, LocalTransport, Result, TransportError
from tests.helpers.turns import turn_held

ITEM = "football"


class InProcess:
    """`football-host` as a click command in this process (not thread-safe:
    click swaps sys.stdout while it runs)."""

    def __init__(self, name):
        self.name = name

    def run(self, argv, *, check=True, timeout=None, input=None):
        assert argv[0] == "football-host", argv
        done = CliRunner(catch_exceptions=False).invoke(football_host, argv[1:])
        result = Result(self.name, tuple(argv), done.exit_code, done.stdout, done.stderr)
        if check and not result.ok:
            raise CommandFailed(result)
        return result


class Recording:
    """A transport that notes every `football-host lock` it runs, in one
    list shared by all hosts, so that the order across hosts shows."""

    def __init__(self, transport, log, fail_release=False):
        self.transport, self.log, self.fail_release = transport, log, fail_release

    def run(self, argv, **options):
        action = argv[3] if argv[:2] == ["football-host", "lock"] else argv[0]
        self.log.append((self.transport.host if hasattr(self.transport, "host")
                         else self.transport.name, action))
        if self.fail_release and action == "release":
            raise TransportError(f"{self.log[-1][0]}: connection lost")
        return self.transport.run(argv, **options)

    def close(self):
        pass


@pytest.fixture
def calls():
    return []


@pytest.fixture(params=["in-process"])
def helper(request):
    return request.param


@pytest.fixture
def make_host(tmp_path, calls, helper):
    def make(name, **options):
        transport = LocalTransport(name) if helper == "subprocess" else InProcess(name)
        return Host(name=name, address="127.0.0.1", transport="local",
                    root=str(tmp_path / name), _runner=Recording(transport, calls, **options))
    return make


subprocess_helper = pytest.mark.parametrize("helper", ["subprocess"], indirect=True)


@pytest.fixture
def a(make_host):
    return make_host("a")


@pytest.fixture
def b(make_host):
    return make_host("b")


@pytest.fixture
def c(make_host):
    return make_host("c")


def config(**settings):
    settings = {"lock_retry_timeout": 0, **settings}
    return Config(variables=[f"{name}={value}" for name, value in settings.items()], environ={})


def holders(host, directory=locks.LOCK_DIR):
    return {item: record["owner"] for item, record in locks.held(host, directory).items()}


def age(host, item, seconds, directory=locks.LOCK_DIR):
    """Make the record of `item` on `host` `seconds` old, as if its run had died then."""
    path = Path(host.path(directory)) / f"{item}.lock"
    record = json.loads(path.read_text())
    record["time"] -= seconds
    path.write_text(json.dumps(record))


# --- one host --------------------------------------------------------------------------

@subprocess_helper
def test_take_creates_the_lock_below_the_hosts_root_and_list_shows_its_owner(a, tmp_path):
    assert locks.take(a, ITEM, "run-1", 3600) == "taken"
    assert (tmp_path / "a" / "var" / "lock" / "football" / "football.lock").exists()
    record = locks.held(a)[ITEM]
    assert record["owner"] == "run-1"
    assert time.time() - record["time"] < 60


def test_release_removes_the_lock_and_says_so(a):
    locks.take(a, ITEM, "run-1", 3600)
    assert locks.release(a, ITEM, "run-1") is True
    assert locks.held(a) == {}
    assert locks.release(a, ITEM, "run-1") is False


def test_list_on_a_host_that_never_locked_anything_is_empty(a):
    assert locks.held(a) == {}


def test_another_owner_is_refused_naming_the_holder_and_what_to_do(a):
    locks.take(a, ITEM, "run-1", 3600)
    with pytest.raises(Locked) as caught:
        locks.take(a, ITEM, "run-2", 3600)
    message = str(caught.value)
    assert message.startswith("a: lock football is held by run-1 since ")
    assert "football unlock football a" in message
    assert caught.value.exit_code == 191
    assert holders(a) == {ITEM: "run-1"}


def test_the_same_owner_taking_its_lock_again_resumes_it(a):
    locks.take(a, ITEM, "run-1", 3600)
    assert locks.take(a, ITEM, "run-1", 3600) == "again"
    assert holders(a) == {ITEM: "run-1"}


def test_release_by_another_owner_leaves_the_lock_but_an_empty_owner_releases_any(a):
    locks.take(a, ITEM, "run-1", 3600)
    assert locks.release(a, ITEM, "run-2") is False
    assert holders(a) == {ITEM: "run-1"}
    assert locks.release(a, ITEM) is True       # football unlock
    assert locks.held(a) == {}


def test_a_lock_older_than_stale_after_is_broken_and_taken(a):
    locks.take(a, ITEM, "dead-run", 3600)
    age(a, ITEM, 7200)
    assert locks.take(a, ITEM, "run-2", 3600) == "broken"
    assert holders(a) == {ITEM: "run-2"}


@pytest.mark.parametrize("item", ["../x", "a/b", ""])
def test_a_bad_lock_item_is_refused_by_the_helper_naming_it(a, item):
    with pytest.raises(locks.Illegal) as caught:
        locks.take(a, item, "run-1", 3600)
    message = str(caught.value)
    assert message.startswith(f"a: cannot take lock {item}: ")
    assert f"{item!r} is not a lock item" in message
    assert not Path(a.path(locks.LOCK_DIR)).exists()


# --- many hosts ------------------------------------------------------------------------

def test_a_lock_set_takes_its_hosts_in_sorted_order_whatever_order_it_is_given(a, b, c, calls):
    lockset = LockSet("run-1", config())
    lockset.acquire([c, a, b], ITEM)
    assert calls == [("a", "take"), ("b", "take"), ("c", "take")]
    assert [holders(host) for host in (a, b, c)] == [{ITEM: "run-1"}] * 3


def test_a_host_given_twice_is_locked_once(a, b, calls):
    LockSet("run-1", config()).acquire([b, a, b], ITEM)
    assert calls == [("a", "take"), ("b", "take")]


def test_a_lock_set_releases_in_reverse_order(a, b, c, calls):
    lockset = LockSet("run-1", config())
    lockset.acquire([a, b, c], ITEM)
    calls.clear()
    lockset.release_all()
    assert calls == [("c", "release"), ("b", "release"), ("a", "release")]
    assert [holders(host) for host in (a, b, c)] == [{}] * 3


@subprocess_helper
def test_when_one_host_refuses_none_is_kept_and_the_others_are_released(a, b, c, calls):
    LockSet("run-b", config()).acquire([c], ITEM)
    calls.clear()
    lockset = LockSet("run-a", config())
    with pytest.raises(Locked, match="c: lock football is held by run-b"):
        lockset.acquire([c, b, a], ITEM)
    assert calls == [("a", "take"), ("b", "take"), ("c", "take"),
                     ("b", "release"), ("a", "release")]
    assert (holders(a), holders(b), holders(c)) == ({}, {}, {ITEM: "run-b"})
    assert lockset.taken == []


def test_a_refused_lock_set_is_retried_with_backoff_until_lock_retry_timeout(a, b, calls):
    LockSet("run-b", config()).acquire([b], ITEM)
    calls.clear()
    started = time.monotonic()
    with pytest.raises(Locked):
        LockSet("run-a", config(lock_retry_timeout=1.0)).acquire([a, b], ITEM)
    elapsed = time.monotonic() - started
    attempts = calls.count(("b", "take"))
    assert 1.0 <= elapsed < 60                   # it stops (the bound: only a hang fails it)
    # backoff 0.2 s, 0.4 s, 0.8 s: four attempts on a quiet machine, fewer
    # when each is slow, never a busy loop
    assert 2 <= attempts <= 5
    assert holders(a) == {}


@subprocess_helper
def test_a_waiting_lock_set_gets_its_locks_once_the_holder_releases(a, b):
    holder = LockSet("run-b", config())
    holder.acquire([b], ITEM)
    releaser = threading.Timer(0.3, holder.release_all)
    releaser.start()
    try:
        LockSet("run-a", config(lock_retry_timeout=10)).acquire([a, b], ITEM)
    finally:
        releaser.join()
    assert (holders(a), holders(b)) == ({ITEM: "run-a"}, {ITEM: "run-a"})


def test_a_run_resuming_after_a_crash_retakes_its_own_locks(a, b):
    LockSet("migrate-vm1@ctl", config()).acquire([a, b], ITEM)     # then the run died
    resumed = LockSet("migrate-vm1@ctl", config())
    resumed.acquire([a, b], ITEM)
    assert len(resumed.taken) == 2
    resumed.release_all()
    assert (holders(a), holders(b)) == ({}, {})


def test_a_stale_lock_in_the_set_is_broken_and_reported(a, b):
    LockSet("dead-run", config()).acquire([b], ITEM)
    age(b, ITEM, 120)
    said = []
    LockSet("run-a", config(lock_break_timeout=60), echo=said.append).acquire([a, b], ITEM)
    assert holders(b) == {ITEM: "run-a"}
    assert said == ["b: broke a stale lock football"]


def test_a_lock_younger_than_lock_break_timeout_is_not_broken(a):
    LockSet("other-run", config()).acquire([a], ITEM)
    age(a, ITEM, 30)
    with pytest.raises(Locked):
        LockSet("run-a", config(lock_break_timeout=60)).acquire([a], ITEM)


def test_holding_releases_the_locks_when_the_body_raises(a, b):
    lockset = LockSet("run-1", config())
    with pytest.raises(RuntimeError, match="step failed"):
        with lockset.holding([a, b], ITEM):
            assert holders(a) == holders(b) == {ITEM: "run-1"}
            raise RuntimeError("step failed")
    assert (holders(a), holders(b), lockset.taken) == ({}, {}, [])


def test_holding_releases_the_locks_on_ctrl_c(a):
    with pytest.raises(KeyboardInterrupt):
        with LockSet("run-1", config()).holding([a], ITEM):
            raise KeyboardInterrupt
    assert holders(a) == {}


def test_a_failed_release_is_reported_and_does_not_stop_the_others(make_host, a):
    flaky = make_host("flaky", fail_release=True)
    said = []
    lockset = LockSet("run-1", config(), echo=said.append)
    with pytest.raises(RuntimeError, match="the original error"):
        with lockset.holding([a, flaky], ITEM):
            raise RuntimeError("the original error")
    assert said == ["flaky: could not release lock football: flaky: connection lost"]
    assert holders(a) == {}


# --- intents ---------------------------------------------------------------------------

def test_a_registered_intent_is_live_and_dropped_intents_are_gone(a):
    settings = config()
    locks.register_intent(a, "vm1", "migrate-vm1@ctl", settings)
    locks.register_intent(a, "vm2", "migrate-vm2@ctl", settings)
    assert locks.live_intents(a, settings) == {"vm1", "vm2"}
    locks.drop_intent(a, "vm1", "migrate-vm1@ctl")
    assert locks.live_intents(a, settings) == {"vm2"}


def test_sync_and_shrink_intents_count_apart(a):
    settings = config()
    locks.register_intent(a, "vm1", "migrate-vm1@ctl", settings)
    locks.register_intent(a, "vm2", "shrink-vm2@ctl", settings, kind="shrink")
    assert locks.live_intents(a, settings) == {"vm1"}
    assert locks.live_intents(a, settings, kind="shrink") == {"vm2"}
    locks.drop_intent(a, "vm2", kind="shrink")
    assert locks.live_intents(a, settings, kind="shrink") == set()


def test_intents_live_apart_from_the_locks(a, tmp_path):
    locks.register_intent(a, "vm1", "run-1", config())
    assert locks.held(a) == {}
    assert (tmp_path / "a" / "var" / "lib" / "football" / "intents" / "sync-vm1.lock").exists()


def test_live_intents_leaves_out_the_resource_asking(a):
    settings = config()
    locks.register_intent(a, "vm1", "run-1", settings)
    locks.register_intent(a, "vm2", "run-2", settings)
    assert locks.live_intents(a, settings, except_res="vm1") == {"vm2"}


def test_an_intent_older_than_lease_time_no_longer_counts(a):
    settings = config(lease_time=600)
    locks.register_intent(a, "vm1", "run-1", settings)
    locks.register_intent(a, "vm2", "run-2", settings)
    age(a, "sync-vm1", 601, directory=locks.INTENT_DIR)
    assert locks.live_intents(a, settings) == {"vm2"}


def test_an_expired_intent_of_a_dead_run_is_taken_over_by_a_new_run(a):
    settings = config(lease_time=600)
    locks.register_intent(a, "vm1", "dead-run", settings)
    with pytest.raises(Locked):
        locks.register_intent(a, "vm1", "new-run", settings)
    age(a, "sync-vm1", 601, directory=locks.INTENT_DIR)
    locks.register_intent(a, "vm1", "new-run", settings)
    assert holders(a, locks.INTENT_DIR) == {"sync-vm1": "new-run"}
    assert locks.live_intents(a, settings) == {"vm1"}


def test_the_same_run_registering_its_intent_again_keeps_it(a):
    settings = config()
    locks.register_intent(a, "vm1", "run-1", settings)
    locks.register_intent(a, "vm1", "run-1", settings)
    assert holders(a, locks.INTENT_DIR) == {"sync-vm1": "run-1"}


def test_an_unreadable_intent_record_does_not_count(a):
    settings = config()
    locks.register_intent(a, "vm1", "run-1", settings)
    (Path(a.path(locks.INTENT_DIR)) / "sync-vm1.lock").write_text("{torn")
    assert locks.live_intents(a, settings) == set()


def test_a_lock_set_that_waits_says_so_once_with_the_holder_and_once_when_it_goes_on(a, b):
    """What makes a screener job show `condition` while it waits for a lock
    (before, it showed `running` all the while)."""
    holder = LockSet("run-b", config())
    holder.acquire([b], ITEM)
    heard = []

    def on_wait(reason):
        heard.append(reason)
        if reason is not None and len(heard) == 1:
            holder.release_all()        # the other run ends while this one waits

    LockSet("run-a", config(lock_retry_timeout=30), on_wait=on_wait).acquire([a, b], ITEM)
    assert len(heard) == 2 and heard[1] is None, heard
    assert "b: lock football is held by run-b" in heard[0]
    assert "football unlock football b" in heard[0]
    assert (holders(a), holders(b)) == ({ITEM: "run-a"}, {ITEM: "run-a"})


def test_a_lock_set_that_never_waited_says_nothing(a, b):
    heard = []
    LockSet("run-a", config(), on_wait=heard.append).acquire([a, b], ITEM)
    assert heard == []


# --- one operation on a resource at a time (the controller) ------------------------------

@pytest.fixture
def holder(tmp_path):
    """Another process holding vm1's turn for a migrate until it is killed."""
    with turn_held(tmp_path, "migrate", "vm1") as process:
        yield process


@pytest.mark.parametrize("operation", ["migrate", "shrink"])
def test_another_run_on_the_same_resource_waits_for_the_first_and_then_gives_up(
        tmp_path, holder, operation):
    """Same-owner host locks let a resumed run take over its predecessor's
    locks; two runs of `migrate vm1` at once (two terminals) both went on,
    stopped and started vm1 twice and replaced each other's journal. A
    shrink while a migrate waited at its gate (no host locks held) shrank
    the replicas the migrate had synced. The first holds its turn (an
    flock) until its process ends, kill -9 too."""
    import signal
    config = Config(variables=["lock_retry_timeout=0.3"], environ={})
    said = []
    with pytest.raises(Locked) as caught:
        with locks.one_run_at_a_time(tmp_path, operation, "vm1", config, said.append):
            pass
    assert str(caught.value) == (
        f"migrate of vm1 (pid {holder.pid}) runs on this controller; nothing changed: wait "
        f"for it to end (`football status vm1`) or stop it (kill {holder.pid}), then run "
        f"{operation} vm1 again")
    assert said == [f"migrate of vm1 (pid {holder.pid}) goes on: waiting for it to end"]
    with locks.one_run_at_a_time(tmp_path, "migrate", "vm2", config):   # another resource
        pass
    told = []

    def waiting(text):
        told.append(text)
        if text is not None:
            holder.send_signal(signal.SIGKILL)      # released by the kernel
            holder.wait()

    config = Config(variables=["lock_retry_timeout=60"], environ={})
    with locks.one_run_at_a_time(tmp_path, operation, "vm1", config, waiting):
        assert (tmp_path / "journal" / "vm1.run").read_text() == f"{os.getpid()} {operation}\n"
    assert told == [f"migrate of vm1 (pid {holder.pid}) goes on: waiting for it to end", None]


def test_the_operations_a_run_runs_inside_itself_share_its_turn(tmp_path):
    config = Config(variables=["lock_retry_timeout=0"], environ={})
    with locks.one_run_at_a_time(tmp_path, "migrate+shrink", "vm1", config):
        with locks.one_run_at_a_time(tmp_path, "migrate", "vm1", config):
            with locks.one_run_at_a_time(tmp_path, "handover", "vm1", config):
                pass
        with locks.one_run_at_a_time(tmp_path, "shrink", "vm1", config):
            assert (tmp_path / "journal" / "vm1.run").read_text() == \
                f"{os.getpid()} migrate+shrink\n"
    assert locks._TURNS == set()


def test_another_thread_of_the_process_does_not_share_the_turn(tmp_path):
    import threading
    config = Config(variables=["lock_retry_timeout=0"], environ={})
    refused = []

    def shrink():
        try:
            with locks.one_run_at_a_time(tmp_path, "shrink", "vm1", config):
                pass
        except Locked as error:
            refused.append(str(error))

    with locks.one_run_at_a_time(tmp_path, "migrate", "vm1", config):
        other = threading.Thread(target=shrink)
        other.start()
        other.join()
    assert refused and refused[0].startswith(f"migrate of vm1 (pid {os.getpid()}) runs")


# --- a run's hold on its resource among controllers ----------------------------------

def test_taking_its_own_lock_again_renews_its_time_and_keeps_it_permanent(a):
    locks.take(a, ITEM, "run-1", 3600, permanent=True)
    age(a, ITEM, 7200)
    assert locks.take(a, ITEM, "run-1", 3600) == "again"
    record = locks.held(a)[ITEM]
    assert time.time() - record["time"] < 600
    assert record["permanent"] is True


def test_a_refusal_says_what_the_holder_took_the_lock_for(a):
    locks.take(a, ITEM, "run-1", 3600, what="migrate of vm1, pid 7")
    with pytest.raises(Locked) as caught:
        locks.take(a, ITEM, "run-2", 3600)
    assert str(caught.value).startswith(
        "a: lock football is held by run-1 (migrate of vm1, pid 7) since ")


def test_the_controller_owner_is_stable_per_state_dir_and_differs_between_them(tmp_path):
    first = locks.controller_owner(tmp_path / "one")
    assert locks.controller_owner(tmp_path / "one") == first
    assert first.startswith(f"football@{os.uname().nodename}:{tmp_path / 'one'}#")
    other = locks.controller_owner(tmp_path / "two")
    assert other.rpartition("#")[2] != first.rpartition("#")[2]


def until(condition, what, bound=30.0):
    deadline = time.monotonic() + bound
    while not condition():
        assert time.monotonic() < deadline, f"not within {bound} s: {what}"
        time.sleep(0.02)


def fresh(host, item="run-vm1"):
    record = locks.held(host).get(item)
    return record is not None and time.time() - record["time"] < 600


@subprocess_helper          # the renewal runs in a thread: real helper processes
def test_a_resource_run_renews_its_lock_while_held_and_leaves_none_once_released(a, b):
    warned = []
    run = locks.ResourceRun("vm1", "ctl-1", config(run_lock_lease=0.3), "migrate of vm1",
                            echo=warned.append, warn=warned.append, on_wait=None)
    run.hold([a])
    run.hold([a, b])                    # b is added, a is not taken twice
    assert [host.name for host, _ in run.locks.taken] == ["a", "b"]
    age(a, "run-vm1", 7200)
    age(b, "run-vm1", 7200)
    until(lambda: fresh(a) and fresh(b), "both renewed")
    run.release()
    assert locks.held(a) == {} and locks.held(b) == {}
    assert warned == []


@subprocess_helper
def test_a_resource_run_says_once_that_another_controller_took_its_lock(a):
    warned = []
    run = locks.ResourceRun("vm1", "ctl-1", config(run_lock_lease=0.3), "migrate of vm1",
                            echo=warned.append, warn=warned.append, on_wait=None)
    run.hold([a])
    path = Path(a.path(locks.LOCK_DIR)) / "run-vm1.lock"
    aside = path.with_name("aside")
    aside.write_text(json.dumps({"owner": "ctl-2", "time": time.time() + 3600}))
    os.replace(aside, path)             # as a controller that broke it would
    until(lambda: warned, "the warning")
    run.release()
    assert holders(a) == {"run-vm1": "ctl-2"}        # the other's stays
    assert len(warned) == 1
    assert warned[0].startswith("a: lock run-vm1 is held by ctl-2 since ")
    assert warned[0].endswith(", no longer by this run: it stops at its next step, another "
                              "controller's run of vm1 goes on")
    assert run.lost == ("a", warned[0].removeprefix("a: ").split(", no longer")[0])


@pytest.fixture
def renewal_hanging(tmp_path, monkeypatch):
    """(run, host a, answer): a ResourceRun holding `run-vm1` on a, whose
    first renewal (the second take) hangs until `answer` is set, as if the
    host answered it late."""
    monkeypatch.setattr(locks, "RENEWAL_JOIN", 0.2)
    hanging, answer = threading.Event(), threading.Event()

    class Hangs:
        takes = 0

        def run(self, argv, **options):
            if argv[3] == "take":
                Hangs.takes += 1
                if Hangs.takes == 2:
                    hanging.set()
                    answer.wait(60)
            return LocalTransport("a").run(argv, **options)

    a = Host(name="a", address="127.0.0.1", transport="local", root=str(tmp_path / "a"),
             _runner=Hangs())
    run = locks.ResourceRun("vm1", "ctl-1", config(run_lock_lease=0.3), "migrate of vm1",
                            echo=print, warn=print, on_wait=None, command="migrate vm1 b1")
    run.hold([a])
    until(hanging.is_set, "a renewal under way")
    try:
        yield run, a, answer
    finally:
        answer.set()
        run.release()


def test_a_renewal_hanging_on_a_host_does_not_hold_the_run_from_acting(renewal_hanging):
    run, a, answer = renewal_hanging
    acted = threading.Thread(target=run.acting)     # (a journal write: the main thread)
    acted.start()
    acted.join(10)
    assert not acted.is_alive(), "acting waited for the renewal"
    acting = locks.held(a)["run-vm1"]
    assert (acting["run"], acting["permanent"]) == ("acting", True)
    answer.set()        # the renewal lands (`running`, kept permanent), then the next one
    until(lambda: locks.held(a)["run-vm1"]["time"] > acting["time"] and
          locks.held(a)["run-vm1"]["run"] == "acting", "a renewal after it")
    assert locks.held(a)["run-vm1"]["permanent"] is True


@pytest.mark.parametrize("end", ["release", "keep"])
def test_a_renewal_hanging_on_a_host_does_not_hold_the_runs_end_nor_undo_it(
        tmp_path, renewal_hanging, end):
    run, a, answer = renewal_hanging
    started = time.monotonic()
    if end == "release":
        run.release()
    else:
        (tmp_path / "journal").mkdir()
        run.keep("unfinished migrate of vm1, steps done: prepare", tmp_path)
    assert time.monotonic() - started < 10
    answer.set()                        # the host answers the renewal: it renews the lock...
    run.renewing.join(30)
    assert not run.renewing.is_alive()
    # ... and the renewal, seeing the run ended, leaves it as the end did
    if end == "release":
        assert locks.held(a) == {}
    else:
        record = locks.held(a)["run-vm1"]
        assert (record["what"], record["run"], record["permanent"], record["command"]) == \
            ("unfinished migrate of vm1, steps done: prepare", "kept", True, "migrate vm1 b1")


def test_asking_for_the_controller_owner_without_create_writes_nothing(tmp_path):
    """`football status` (read-only, also run where the state dir cannot be
    written) asks so."""
    assert locks.controller_owner(tmp_path / "state", create=False) is None
    assert not (tmp_path / "state").exists()
    made = locks.controller_owner(tmp_path / "state")
    assert locks.controller_owner(tmp_path / "state", create=False) == made


def take_while_another_looks(tmp_path, monkeypatch, looking, other):
    """`looking` takes ITEM in a thread and, once it has read the lock, gives
    `other` (taking it in this thread) half a second before it goes on (the
    races as they were: whatever `looking` then did went by what it had
    read). ({owner: outcome or `refused: <holder>`}, the owner the lock
    names after both)."""
    from football.hostside import locks as host_locks
    shown, looked = host_locks.show, []

    def show(directory, item):
        holder = shown(directory, item)
        if threading.current_thread().name == looking and not looked:
            looked.append(holder["owner"])
            deadline = time.monotonic() + 0.5
            while (shown(directory, item) or {}).get("owner") != other and \
                    time.monotonic() < deadline:
                time.sleep(0.001)
        return holder
    monkeypatch.setattr(host_locks, "show", show)
    outcomes = {}

    def taker(owner):
        try:
            outcomes[owner] = host_locks.take(tmp_path, ITEM, owner, 3600)
        except host_locks.LockHeld as held:
            outcomes[owner] = f"refused: {held.holder['owner']}"
    thread = threading.Thread(target=taker, args=(looking,), name=looking)
    thread.start()
    while not looked:
        time.sleep(0.001)
    taker(other)
    thread.join()
    return outcomes, shown(tmp_path, ITEM)["owner"]


def a_stale_lock(tmp_path, owner):
    from football.hostside import locks as host_locks
    host_locks.take(tmp_path, ITEM, owner, 3600)
    record = json.loads((tmp_path / f"{ITEM}.lock").read_text())
    (tmp_path / f"{ITEM}.lock").write_text(json.dumps({**record, "time": 0}))


def test_two_takers_that_both_find_a_lock_stale_do_not_both_get_it(tmp_path, monkeypatch):
    # before: run-1 broke the dead run's lock and took it, then run-2 broke
    # run-1's as the stale one it had read, and both held it
    a_stale_lock(tmp_path, "dead-run")
    outcomes, winner = take_while_another_looks(tmp_path, monkeypatch, "run-2", "run-1")
    loser = "run-2" if winner == "run-1" else "run-1"
    assert outcomes[loser] == f"refused: {winner}"
    assert outcomes[winner] in ("broken", "taken")      # taken: after the other broke it


def test_a_renewal_does_not_overwrite_the_lock_another_took_while_it_renewed(
        tmp_path, monkeypatch):
    # before: run-2 broke run-1's stale lock and took it, then run-1's
    # renewal replaced it with run-1's own, and both held it
    a_stale_lock(tmp_path, "run-1")
    outcomes, winner = take_while_another_looks(tmp_path, monkeypatch, "run-1", "run-2")
    loser = "run-2" if winner == "run-1" else "run-1"
    assert outcomes[loser] == f"refused: {winner}"
    assert outcomes[winner] in {"run-1": ("again",), "run-2": ("broken", "taken")}[winner]


def test_a_runs_permanent_lock_is_stale_only_to_its_command_and_a_rescue_an_operators_never(
        tmp_path):
    from football.hostside import locks as host_locks
    host_locks.take(tmp_path, "run-vm1", "controller-a", 3600, permanent=True,
                    command="migrate vm1 b1", run="acting")
    host_locks.take(tmp_path, "run-vm2", "operator@desk", 3600, permanent=True)
    for item in ("run-vm1", "run-vm2"):
        record = json.loads((tmp_path / f"{item}.lock").read_text())
        (tmp_path / f"{item}.lock").write_text(json.dumps({**record, "time": 0}))
    for item in ("run-vm1", "run-vm2"):
        with pytest.raises(host_locks.LockHeld) as held:
            host_locks.take(tmp_path, item, "controller-b", 300, command="expand vm1 1g",
                            run="running")
        assert held.value.stale is True
    with pytest.raises(host_locks.LockHeld):        # an operator's: not even its command
        host_locks.take(tmp_path, "run-vm2", "controller-b", 300, rescue=True)
    assert host_locks.take(tmp_path, "run-vm1", "controller-b", 300, command="migrate vm1 b1",
                           run="running") == "broken"
    host_locks.take(tmp_path, "run-vm1", "controller-b", 300, permanent=True, run="kept")
    assert host_locks.take(tmp_path, "run-vm1", "controller-c", -1, rescue=True) == "broken"


def test_a_run_lock_is_stale_to_no_one_before_its_holders_own_lease_passed(tmp_path):
    """Controllers set up with different run_lock_lease: the holder renews
    within its own; a taker with a shorter one must not judge it dead."""
    from football.hostside import locks as host_locks
    host_locks.take(tmp_path, "run-vm1", "controller-a", 300, command="migrate vm1 b1",
                    run="running", lease=300)
    record = json.loads((tmp_path / "run-vm1.lock").read_text())
    (tmp_path / "run-vm1.lock").write_text(json.dumps({**record, "time": time.time() - 120}))
    with pytest.raises(host_locks.LockHeld) as held:
        host_locks.take(tmp_path, "run-vm1", "controller-b", 60, run="running", lease=60)
    assert held.value.stale is False
    (tmp_path / "run-vm1.lock").write_text(json.dumps({**record, "time": time.time() - 301}))
    assert host_locks.take(tmp_path, "run-vm1", "controller-b", 60, run="running",
                           lease=60) == "broken"

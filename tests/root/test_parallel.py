"""Parallel migrations in the lab: two runs of `football migrate` to the same
target host at once (held at a busy sync slot until both are under way, so
that their start-up times do not decide the race): with `limit_syncs=1`
their syncs do not overlap, the locks they share do not deadlock, and
neither container loses a record. This is the real-parts sample; what
holds a slot and what does not (room for both, expired intents, running
syncs) is proved on the fake fleet (tests/unit/test_sync_limit.py). Two
controllers on one resource: the second one's run is refused while the
first one's runs (the fake fleet's tests/unit/test_controllers.py sweep
the operations). Also `football lab add`, which gives the lab its second
container."""

import json
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor
import subprocess
import threading
import time

import pytest

from tests.helpers.lab import FOOTBALL, football, lab_up, sequence_problems
from tests.helpers.marshosts import STATE_WAIT

pytestmark = [pytest.mark.root, pytest.mark.integration]

# Only a bound on a hang: the runs end when their migrations do. The limit
# itself is proved by the recorded order of their events, not by a time.
MIGRATE_TIMEOUT = 1200


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """One lab for the module (bringing it up is the slow part): vm1 on a1
    and vm2 on a2, each replicated to the other host of cluster1."""
    with lab_up(tmp_path_factory.mktemp("parallel")) as run:
        run.football("add", "vm2", "a2", "a1")
        yield run


def run_output(lab, res, target):
    """Where `migrate_at_once` writes the --json events of one run."""
    return lab.base / f"{res}-{target}.out"


def migrate_at_once(lab, moves, *options):
    """Run `football --json [options] migrate <res> <target>` for each of
    `moves` at once; {res: [events]} once all exited 0."""
    runs = {}
    for res, target in moves.items():
        out = run_output(lab, res, target).open("w+")
        err = (lab.base / f"{res}-{target}.err").open("w+")
        process = subprocess.Popen([FOOTBALL, "--json", *options, "migrate", res, target],
                                   env=lab.env, stdout=out, stderr=err, text=True)
        runs[res] = (process, out, err)
    deadline = time.monotonic() + MIGRATE_TIMEOUT
    for process, _, _ in runs.values():
        try:
            process.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for other, _, _ in runs.values():
                other.kill()
                other.wait()
    outputs = {}
    for res, (process, out, err) in runs.items():
        out.seek(0), err.seek(0)
        outputs[res] = (process.returncode, out.read(), err.read())
        out.close(), err.close()
    failed = {res: code for res, (code, _, _) in outputs.items() if code != 0}
    assert not failed, "migrations failed or hung (killed after " \
        f"{MIGRATE_TIMEOUT} s): {failed}\n" + "\n".join(
            f"--- {res} stderr:\n{stderr[-3000:]}" for res, (_, _, stderr) in outputs.items())
    return {res: [json.loads(line) for line in stdout.splitlines()]
            for res, (_, stdout, _) in outputs.items()}


def sync_window(events):
    """(joined, synced): when the run's replica joined and when it was UpToDate."""
    point = {event["name"]: event["time"] for event in events
             if event["event"] == "injection-point"}
    return point["prepare:joined"], point["wait:synced"]


def said(events, text):
    return any(text in event.get("text", "") for event in events if event["event"] == "message")


def lock_items(lab):
    """The locks and intents left on the lab's hosts (files of `football-host lock`)."""
    return [str(path.relative_to(lab.dir)) for host in ("a1", "a2", "b1", "b2")
            for directory in ("var/lock/football", "var/lib/football/intents")
            for path in (lab.dir / host / directory).glob("*.lock")]


def assert_running_on(lab, host, *resources):
    status = lab.status()
    for res in resources:
        assert status[host]["containers"].get(res) == "RUNNING", status[host]["containers"]
        holders = {name for name, entry in status.items() if res in entry["resources"]}
        assert holders == {host}, f"{res} still on {holders - {host}}"
    assert not lock_items(lab), f"left: {lock_items(lab)}"


def assert_workloads_continue(lab, host, before):
    """Every container's records on `host` go on from `before` without a gap."""
    deadline = time.monotonic() + STATE_WAIT
    for res, count in before.items():
        while len(lab.records(host, res)) <= count + 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        records = lab.records(host, res)
        assert len(records) > count + 2, f"{res} on {host} wrote no new records"
        assert not sequence_problems(records), f"{res}: {sequence_problems(records)}"


def snapshot(lab):
    """What `lab add` may create: containers, resources, free space, added names."""
    state = json.loads((lab.dir / "lab.json").read_text())
    return ({host: (entry["containers"], sorted(entry["resources"]), entry["vg_free"])
             for host, entry in lab.status().items()}, sorted(state["added"]))


def test_lab_add_refuses_bad_input_with_exit_191_and_creates_nothing(lab):
    before = snapshot(lab)
    cases = {
        ("vm3", "zz"): "no lab host 'zz'",
        ("vm;x", "b1"): "invalid resource name",
        ("vm1", "b1"): "already used in the lab (the demo container)",
        ("vm2", "a2", "a1"): "vm2 is already in the lab",
        ("vm3", "b1", "--size", "100M"): "too small",
        ("vm3", "b1", "--size", "2G"): "b1: volume group vg0 has",
        ("vm3", "b1", "b1"): "must differ",
    }
    if "a1" not in lab.exec("b1", "marsadm", "lowlevel-ls-host-ips").stdout:
        # it timed out after 60 s waiting for a1 to know vm3
        cases["vm3", "b1", "a1"] = "a1 is not in the MARS cluster of b1"
    # refusals change nothing, so they may all run at once
    with ThreadPoolExecutor(max_workers=len(cases)) as pool:
        results = dict(zip(cases, pool.map(
            lambda args: lab.football("add", *args, check=False), cases)))
    for args, message in cases.items():
        result = results[args]
        assert result.returncode == 191, f"{args}: {result.returncode} {result.stderr}"
        assert message in result.stderr, f"{args}: {result.stderr}"
    assert snapshot(lab) == before


def test_lab_add_completes_after_an_interruption_and_lab_up_restarts_the_container(lab):
    host = "a1"     # room for vm3 before and after the migrations; stopped at the end
    adding = subprocess.Popen([FOOTBALL, "lab", "add", "vm3", host], env=lab.env, text=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for line in adding.stderr:
        if "creating container vm3" in line:
            adding.kill()
            break
    adding.wait(timeout=60)
    assert adding.returncode == -9, "lab add finished before it could be interrupted"

    again = lab.football("add", "vm3", host)
    assert "lvcreate" not in again.stderr and "mkfs" not in again.stderr
    assert lab.status()[host]["containers"]["vm3"] == "RUNNING"
    lab.exec(host, "football-host", "ct", str(lab.dir / host / "var/lib/lxc"), "stop", "vm3")
    lab.up()
    assert lab.status()[host]["containers"]["vm3"] == "RUNNING"
    assert not sequence_problems(lab.records(host, "vm3"))
    lab.exec(host, "football-host", "ct", str(lab.dir / host / "var/lib/lxc"), "stop", "vm3")


class SlotHeldUntilBothWait(threading.Thread):
    """Takes b1's only sync slot with the intent of a stand-in run, and gives
    it up once both migrations said they wait for a slot: however long their
    start-up takes, the two then compete for one slot."""

    ITEM, OWNER = "sync-elsewhere", "a-sync-of-another-run"

    def __init__(self, lab, moves):
        super().__init__()
        self.lab, self.outputs = lab, [run_output(lab, res, target) for res, target in moves.items()]
        self.intents = str(lab.dir / "b1/var/lib/football/intents")
        self.both_waited = False

    def __enter__(self):
        self.lab.exec("b1", "football-host", "lock", self.intents, "take", self.ITEM,
                      "--owner", self.OWNER, "--stale-after", "600")
        self.start()
        return self

    def run(self):
        deadline = time.monotonic() + MIGRATE_TIMEOUT / 2
        while time.monotonic() < deadline and not self.both_waited:
            self.both_waited = all(path.exists() and "waiting for a sync slot" in path.read_text()
                                   for path in self.outputs)
            time.sleep(0.2)
        self.lab.exec("b1", "football-host", "lock", self.intents, "release", self.ITEM,
                      "--owner", self.OWNER)

    def __exit__(self, *exc):
        self.join()


def test_two_migrations_to_one_host_wait_for_limit_syncs_and_leave_no_locks(lab):
    status = lab.status()
    assert status["a2"]["containers"] == {"vm2": "RUNNING"}
    assert status["a1"]["resources"]["vm2"]["diskstate"] == "UpToDate"
    before = {res: len(lab.records(host, res)) for res, host in (("vm1", "a1"), ("vm2", "a2"))}
    moves = {"vm1": "b1", "vm2": "b1"}
    with SlotHeldUntilBothWait(lab, moves) as holder:
        runs = migrate_at_once(lab, moves, "--var", "limit_syncs=1")
    assert holder.both_waited, "the runs did not wait for the slot a planned sync held"

    assert_running_on(lab, "b1", "vm1", "vm2")
    first, second = sorted(runs, key=lambda res: sync_window(runs[res])[0])
    assert sync_window(runs[second])[0] > sync_window(runs[first])[1], \
        f"syncs overlap with limit_syncs=1: {first} {sync_window(runs[first])}, " \
        f"{second} {sync_window(runs[second])}"
    for res in runs:
        assert said(runs[res], "b1: waiting for a sync slot on b1 (limit_syncs 1; taken: ")
    assert_workloads_continue(lab, "b1", before)


def migrate_held_at_its_pause(lab, res, target, *options):
    """`football --json [options] migrate <res> <target>` from this lab's
    controller, paused (`football pause`) before its downtime window:
    (process, its output file) once it waits there."""
    assert football(lab.env, "pause", res).returncode == 0
    out = (lab.base / f"paused-{res}-{target}.out").open("w+")
    process = subprocess.Popen([FOOTBALL, "--json", *options, "migrate", res, target],
                               env=lab.env,
                               stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + MIGRATE_TIMEOUT
        while f"waiting before the downtime of {res}" not in Path(out.name).read_text():
            assert process.poll() is None, Path(out.name).read_text()[-3000:]
            assert time.monotonic() < deadline, "the migrate never reached its pause"
            time.sleep(0.2)
    except BaseException:
        process.kill()
        process.wait()
        out.close()
        football(lab.env, "unpause", res)
        raise
    return process, out


def test_a_second_controllers_run_on_a_resource_the_first_one_moves_is_refused(lab):
    """This lab's controller migrates vm1 back to a1, held before its window
    by `football pause vm1`; an expand of vm1 from a second controller (its
    own state dir, as another operator's machine) waits lock_retry_timeout,
    then is refused naming the migrate, and changed nothing; the migrate
    then ends as if alone."""
    before = {"vm1": len(lab.records("b1"))}
    first, out = migrate_held_at_its_pause(lab, "vm1", "a1")
    try:
        second = football(lab.env, "--var", f"state_dir={lab.base / 'second-controller'}",
                          "--var", "lock_retry_timeout=1", "--yes", "expand", "vm1", "400m")
        assert second.returncode == 191, second.stderr
        assert "lock run-vm1 is held by football@" in second.stderr
        assert f"(migrate of vm1, pid {first.pid})" in second.stderr
    finally:
        football(lab.env, "unpause", "vm1")
        first.wait(timeout=MIGRATE_TIMEOUT)
        out.close()
    assert first.returncode == 0, Path(out.name).read_text()[-3000:]
    assert_running_on(lab, "a1", "vm1")
    assert_workloads_continue(lab, "a1", before)
    size = lab.exec("a1", "marsadm", "view-sync-size", "vm1").stdout.strip()
    assert int(size) == 320 << 20, f"vm1 has {size} bytes: the expand went on"


def test_a_run_killed_after_it_acted_keeps_its_resource_until_its_command_goes_on(lab):
    """This lab's controller migrates vm1 to b1 and is killed (-9) at its
    pause before the window, after the sync: its run lock stays, permanent.
    A second controller's expand is refused however old the lock is; the
    same migrate from there goes on once the lock was not renewed for its
    run_lock_lease (as a screener job that another machine's worker
    resumes) and ends it; the first controller's re-run then finds the
    work done and ends its journal."""
    second = ["--var", f"state_dir={lab.base / 'second-controller'}", "--var",
              "run_lock_lease=1"]
    before = {"vm1": len(lab.records("a1"))}
    # a lease of a second (renewed every third of it): the lock is judged
    # by the holder's own lease, whatever the taker's
    first, out = migrate_held_at_its_pause(lab, "vm1", "b1", "--var", "run_lock_lease=1")
    first.kill()
    first.wait()
    out.close()
    assert football(lab.env, "unpause", "vm1").returncode == 0
    assert "run-vm1" in " ".join(lock_items(lab))
    refused = football(lab.env, *second, "--var", "lock_retry_timeout=2", "--yes", "expand",
                       "vm1", "400m")
    assert refused.returncode == 191, refused.stderr
    assert "`football migrate vm1 b1` goes on from where it stopped" in refused.stderr
    went_on = football(lab.env, *second, "--var", "lock_retry_timeout=60", "--yes", "migrate",
                       "vm1", "b1")
    assert went_on.returncode == 0, went_on.stderr[-3000:]
    assert_running_on(lab, "b1", "vm1")
    assert_workloads_continue(lab, "b1", before)
    size = lab.exec("b1", "marsadm", "view-sync-size", "vm1").stdout.strip()
    assert int(size) == 320 << 20, f"vm1 has {size} bytes: the expand went on"
    resumed = football(lab.env, "--yes", "migrate", "vm1", "b1")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert not list((lab.dir / "controller" / "journal").glob("*.json"))
    assert_running_on(lab, "b1", "vm1")

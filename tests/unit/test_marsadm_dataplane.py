"""marsadm data-plane commands without a running marsd: the wishes they
write (todo switches, global pauses, invalidate), the preconditions that
refuse (changing nothing), and the waits that time out naming the reason.

The scenario (conftest.py) is h1's store: vm1 (h1 primary, h2), vm2 (h1
only), vm3 (h2 primary, h3). `secondary` makes h1 a member of vm3 too.
Where a test needs marsd "running", it holds marsd's pid-file lock itself
and writes the status file marsd would write."""

import json
import time

import pytest

from tests.unit.conftest import MIB, make_disk
from tests.unit.test_marsadm_commands import assert_refused


def values(host, prefix="resource-"):
    with host.store() as store:
        return store.live_values(prefix)


def own_write(host, changes):
    """Write keys this host owns, as marsd would."""
    with host.store() as store:
        store.write(changes)


@pytest.fixture
def secondary(scenario, tmp_path):
    """h1 joins vm3 (primary h2) with a 2 MiB disk: nothing synced yet."""
    h1 = scenario.host
    h1.ok("join-resource", "vm3", make_disk(tmp_path / "disk3", 2 * MIB))
    return h1




def changed_keys(before, after):
    return {key: after.get(key) for key in set(before) | set(after)
            if before.get(key) != after.get(key)}


# ------------------------------------------------------------------ pauses
def test_pause_fetch_switches_off_connect_here_and_resume_fetch_on_again(scenario):
    h1 = scenario.host
    before = values(h1)
    assert h1.ok("pause-fetch", "vm1") == ""
    assert changed_keys(before, values(h1)) == {"resource-vm1/todo-h1/connect": "0"}
    assert h1.ok("resume-fetch", "vm1") == ""
    assert values(h1) == before


def test_pause_fetch_local_is_pause_fetch(scenario):
    h1 = scenario.host
    h1.ok("pause-fetch-local", "vm1")
    assert values(h1)["resource-vm1/todo-h1/connect"] == "0"


@pytest.mark.parametrize("what, switch", [("sync", "sync"), ("replay", "allow-replay")])
def test_pause_and_resume_of_sync_and_replay_switch_their_todo(scenario, what, switch):
    h1 = scenario.host
    h1.ok(f"pause-{what}", "vm1")
    assert values(h1)[f"resource-vm1/todo-h1/{switch}"] == "0"
    h1.ok(f"resume-{what}", "vm1")
    assert values(h1)[f"resource-vm1/todo-h1/{switch}"] == "1"


def test_pause_sync_global_sets_the_shared_pause_and_leaves_the_local_switch(scenario):
    h1 = scenario.host
    before = values(h1)
    h1.ok("pause-sync-global", "vm1")
    assert changed_keys(before, values(h1)) == {"resource-vm1/global-pause-sync": "1"}
    h1.ok("resume-sync-global", "vm1")
    assert values(h1)["resource-vm1/global-pause-sync"] == "0"
    assert values(h1)["resource-vm1/todo-h1/sync"] == "1"


def test_pause_fetch_of_all_pauses_every_resource_of_this_host(scenario):
    h1 = scenario.host
    h1.ok("pause-fetch", "all")
    now = values(h1)
    assert now["resource-vm1/todo-h1/connect"] == "0"
    assert now["resource-vm2/todo-h1/connect"] == "0"


def test_pause_on_a_non_member_is_refused(scenario):
    assert_refused(scenario.host, ["pause-fetch", "vm3"], "not a member of vm3")


def test_dry_run_pause_says_what_it_would_write_and_changes_nothing(scenario):
    h1 = scenario.host
    before = h1.tuples()
    assert h1.ok("pause-fetch", "vm1", "--dry-run") == \
        "would write resource-vm1/todo-h1/connect = 0\n"
    assert h1.tuples() == before


# -------------------------------------------------------------- invalidate
def test_invalidate_on_the_designated_primary_is_refused(scenario):
    assert_refused(scenario.host, ["invalidate", "vm1"], "h1 is the primary of vm1")


def test_invalidate_on_the_actual_primary_is_refused_after_the_designation_moved(scenario):
    h1 = scenario.host
    h1.peer_apply([("resource-vm1/primary", "h2", "h2")])
    own_write(h1, {"resource-vm1/actual-h1/is-primary": 1})
    assert_refused(h1, ["invalidate", "vm1"], "primary")


def history_of_h1_on_vm3(h1):
    own_write(h1, {"resource-vm3/syncstatus-h1": 2 * MIB,
                   "resource-vm3/syncpos-h1": "log-000000001-h2,100,100",
                   "resource-vm3/replay-h1": "log-000000002-h2,50,80",
                   "resource-vm3/version-1-h1": "abc,log-000000001-h2,300:"})
    h1.peer_apply([("resource-vm3/replay-h2", "log-000000002-h2,80,80", "h2"),
                   ("resource-vm3/version-1-h2", "abc,log-000000001-h2,300:", "h2")])


def test_invalidate_on_a_secondary_forgets_its_history_and_restarts_the_sync(secondary):
    h1 = secondary
    history_of_h1_on_vm3(h1)
    before = values(h1)
    assert h1.ok("invalidate", "vm3") == ""
    assert changed_keys(before, values(h1)) == {
        "resource-vm3/syncstatus-h1": "0",
        "resource-vm3/syncpos-h1": None,
        "resource-vm3/replay-h1": None,
        "resource-vm3/version-1-h1": None,
    }
    assert h1.ok("view-sync-rest", "vm3") == f"{2 * MIB}\n"


def test_dry_run_invalidate_changes_nothing(secondary):
    h1 = secondary
    history_of_h1_on_vm3(h1)
    before = h1.tuples()
    out = h1.ok("--dry-run", "invalidate", "vm3")
    assert "would write resource-vm3/syncstatus-h1 = 0\n" in out
    assert "would write resource-vm3/replay-h1 = .deleted\n" in out
    assert h1.tuples() == before


def test_invalidate_leaves_the_keys_of_a_member_whose_name_ends_like_this_hosts(secondary):
    """Regression: keys were picked by `endswith("-h1")`, so `replay-x-h1`
    of member x-h1 was taken for h1's own: the write was refused (owned by
    x-h1) and invalidate could not run at all."""
    h1 = secondary
    h1.peer_apply([("ips/ip-x-h1", "127.0.0.4", "x-h1"),
                   ("resource-vm3/data-x-h1", "/dev/vg/vm3", "x-h1"),
                   ("resource-vm3/replay-x-h1", "log-000000002-h2,80,80", "x-h1"),
                   ("resource-vm3/version-1-x-h1", "abc,log-000000001-h2,300:", "x-h1")])
    history_of_h1_on_vm3(h1)
    before = values(h1)
    h1.ok("invalidate", "vm3")
    after = values(h1)
    assert after["resource-vm3/replay-x-h1"] == "log-000000002-h2,80,80"
    assert after["resource-vm3/version-1-x-h1"] == "abc,log-000000001-h2,300:"
    assert set(changed_keys(before, after)) == {
        "resource-vm3/syncstatus-h1", "resource-vm3/syncpos-h1", "resource-vm3/replay-h1",
        "resource-vm3/version-1-h1"}


def test_invalidate_on_a_non_member_is_refused(scenario):
    assert_refused(scenario.host, ["invalidate", "vm3"], "not a member of vm3")


# ------------------------------------------------------------------ resize
def report_disk_sizes(h1, h1_size, h2_size):
    """What the members' marsd reported last (`actual-<host>/disk-size`)."""
    own_write(h1, {"resource-vm1/actual-h1/disk-size": h1_size})
    h1.peer_apply([("resource-vm1/actual-h2/disk-size", str(h2_size), "h2")])


@pytest.fixture
def marsd_disks(monkeypatch):
    """The members' marsd answering `disk-size` with the size of their disk
    now: set `disks[host]`; a host without an entry cannot be asked (its
    marsd is down). `disks.asked` lists who was asked."""
    from mars.cluster import Cluster
    from mars.errors import PeerError

    class Disks(dict):
        def __init__(self):
            super().__init__()
            self.asked = []

    disks = Disks()

    def ask(cluster, host, header, timeout=10.0):
        assert header["type"] == "disk-size", header
        disks.asked.append((host, header["res"]))
        if host not in disks:
            raise PeerError("peer 127.0.0.2:7777 unreachable: connection refused")
        return {"type": "disk-size", "disk_size": disks[host]}

    monkeypatch.setattr(Cluster, "ask", ask)
    return disks


def test_resize_to_a_smaller_size_is_refused_without_asking_anyone(scenario, marsd_disks):
    assert_refused(scenario.host, ["resize", "vm1", "512k"], "shrinking", "MARS grows only")
    assert marsd_disks.asked == []


def test_resize_beyond_a_members_disk_is_refused_naming_it(scenario, marsd_disks):
    marsd_disks.update(h1=4 * MIB, h2=2 * MIB)
    assert_refused(scenario.host, ["resize", "vm1", "3m"], "h2 (2097152)", "lvresize them first")


def test_resize_uses_the_disk_sizes_each_members_marsd_tells_now_not_the_reported_ones(
        scenario, marsd_disks):
    h1 = scenario.host
    report_disk_sizes(h1, MIB, MIB)         # before lvresize: marsd has not stepped since
    marsd_disks.update(h1=4 * MIB, h2=3 * MIB)
    assert h1.ok("resize", "vm1") == ""
    assert sorted(marsd_disks.asked) == [("h1", "vm1"), ("h2", "vm1")]
    assert values(h1)["resource-vm1/size"] == str(3 * MIB)


def test_resize_when_a_members_marsd_cannot_be_asked_is_refused_naming_it(scenario, marsd_disks):
    h1 = scenario.host
    report_disk_sizes(h1, 4 * MIB, 4 * MIB)     # reported sizes are no substitute
    marsd_disks.update(h1=4 * MIB)
    for args in (["resize", "vm1"], ["resize", "vm1", "2m"]):
        assert_refused(h1, args, "cannot ask h2 for the size of its disk of vm1 (peer ",
                       "connection refused", "marsd on h2 must run to resize; nothing changed")


def test_resize_grows_to_the_smallest_member_disk_and_records_the_old_size(scenario, marsd_disks):
    h1 = scenario.host
    marsd_disks.update(h1=4 * MIB, h2=3 * MIB)
    h1.ok("resize", "vm1")
    now = values(h1)
    assert now["resource-vm1/size"] == str(3 * MIB)
    assert now["resource-vm1/grown-from"] == str(MIB)


def test_resize_with_dry_run_asks_the_members_says_what_it_would_write_and_writes_nothing(
        scenario, marsd_disks):
    h1 = scenario.host
    marsd_disks.update(h1=4 * MIB, h2=3 * MIB)
    before = h1.tuples()
    assert h1.ok("--dry-run", "resize", "vm1") == (
        f"would write resource-vm1/size = {3 * MIB}\n"
        f"would write resource-vm1/grown-from = {MIB}\n")
    assert h1.tuples() == before


def test_resize_without_a_size_when_no_disk_grew_succeeds_saying_why(scenario, marsd_disks):
    h1 = scenario.host
    marsd_disks.update(h1=4 * MIB, h2=MIB)
    before = h1.tuples()
    assert h1.ok("resize", "vm1") == (
        f"vm1 already has {MIB} bytes, as much as the smallest disk allows (h2: {MIB} bytes): "
        "grow the disks of all members first\n")
    assert h1.tuples() == before


def test_resize_to_the_size_it_has_succeeds_and_changes_nothing(scenario, marsd_disks):
    h1 = scenario.host
    marsd_disks.update(h1=4 * MIB, h2=4 * MIB)
    before = h1.tuples()
    assert h1.ok("resize", "vm1", "1m") == f"vm1 already has {MIB} bytes\n"
    assert h1.tuples() == before


def test_resize_when_a_members_disk_is_smaller_than_the_resource_is_refused_naming_it(
        scenario, marsd_disks):
    marsd_disks.update(h1=4 * MIB, h2=MIB // 2)
    assert_refused(scenario.host, ["resize", "vm1"],
                   f"the disk of h2 ({MIB // 2} bytes) is smaller than vm1 ({MIB} bytes)")


def test_resize_on_a_secondary_is_refused(secondary):
    assert_refused(secondary, ["resize", "vm3", "4m"], "on its primary (h2)")


# ------------------------------------------------------------------- waits
def test_wait_resource_with_an_unknown_condition_is_refused(scenario):
    assert_refused(scenario.host, ["wait-resource", "vm1", "sunny"], "unknown condition 'sunny'")


def assert_timed_out(result, started, *fragments):
    assert result.exit_code == 3, (result.exit_code, result.stdout, result.stderr)
    assert time.monotonic() - started >= 0.3
    assert result.stderr.count("\n") == 1 and "timed out after 0.3s" in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


def test_wait_resource_times_out_naming_marsd_not_running(scenario):
    started = time.monotonic()
    result = scenario.host.run("wait-resource", "vm1", "attach", "--timeout=0.3")
    assert_timed_out(result, started, "waiting for attach of vm1", "marsd is not running on h1")


def test_wait_resource_not_condition_holds_at_once_without_marsd(scenario):
    assert scenario.host.ok("wait-resource", "vm1", "not-primary", "--timeout=0.3") == ""


@pytest.mark.parametrize("condition, status, holds", [
    ("is-device-on", {"is_primary": True, "loop": "/dev/loop7"}, True),
    ("is-device", {"is_primary": True, "loop": "/dev/loop7"}, True),
    ("is-device-on", {"is_primary": True}, False),          # primary, no loop device yet
    ("is-device-off", {"is_primary": False}, True),
    ("has-device-0", {"is_primary": True, "loop": "/dev/loop7"}, False),
    ("is-attached-on", {"attached": True}, True),
    ("is-attach-1", {"attached": False}, False),
    ("todo-attach-on", {}, True),                           # create-resource switched it on
    ("attach-off", {}, False),
    ("is-primary-off", {"is_primary": False}, True),
])
def test_wait_resource_understands_the_kernels_conditions(scenario, fake_marsd, condition,
                                                          status, holds):
    """What Football and kernel-MARS scripts wait for, in the kernel's
    grammar (`wait_cond`: [is-|has-|todo-]<switch>[-on|-off|-1|-0]), which
    works against both: is-device-on after `primary`, is-device-off after
    `secondary`."""
    fake_marsd("vm1", **status)
    result = scenario.host.run("wait-resource", "vm1", condition, "--timeout=0.3")
    assert result.exit_code == (0 if holds else 3), (condition, result.stderr)


def test_wait_resource_refuses_a_kernel_condition_that_names_no_switch(scenario):
    assert_refused(scenario.host, ["wait-resource", "vm1", "is-sunny-on"],
                   "unknown condition 'is-sunny-on'", "is-device[-on|-off]")
    assert_refused(scenario.host, ["wait-resource", "vm1", "device-on"],   # the kernel's too
                   "unknown condition 'device-on'")


def test_wait_umount_times_out_naming_marsd_not_running(scenario):
    """Regression: without marsd there is no open count to read, and
    wait-umount said "closed" although a stale mount may still hold the
    device; it now waits for marsd like the other waits."""
    started = time.monotonic()
    result = scenario.host.run("wait-umount", "vm1", "--timeout=0.3")
    assert_timed_out(result, started, "the device to be closed", "marsd is not running on h1")


def test_wait_umount_returns_once_marsd_reports_the_device_closed(scenario, fake_marsd):
    fake_marsd("vm1", is_primary=True, open_count=0)
    assert scenario.host.ok("wait-umount", "vm1", "--timeout=0.3") == ""


def test_wait_umount_times_out_with_marsds_reason_while_the_device_is_open(scenario, fake_marsd):
    fake_marsd("vm1", is_primary=True, open_count=2,
               waiting="device /dev/mars/vm1 still in use (open count 2)")
    started = time.monotonic()
    result = scenario.host.run("wait-umount", "vm1", "--timeout=0.3")
    assert_timed_out(result, started, "still in use (open count 2)")


def test_a_wait_during_a_split_brain_says_so_at_once_and_once(scenario, fake_marsd):
    """A split brain does not resolve by itself: the wait names it at its
    start (a false one in CI was named only after 180 s), goes on, and
    its timeout names it too."""
    reason = "hosts h1, h2 hold different versions of log-000000001-h1"
    fake_marsd("vm1", is_primary=False, split_brain=reason)
    started = time.monotonic()
    result = scenario.host.run("wait-resource", "vm1", "attach", "--timeout=0.3")
    assert result.exit_code == 3, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and all(reason in line for line in lines), lines
    assert "marsadm invalidate vm1" in lines[0] and "timed out after 0.3s" in lines[1]
    assert time.monotonic() - started >= 0.3


# ----------------------------------------------------------------- primary
def test_primary_with_an_incomplete_sync_is_refused(secondary):
    stderr = assert_refused(secondary, ["primary", "vm3"], "sync")
    assert "0 of 2097152 bytes" in stderr and "--ignore-sync" in stderr


def test_primary_before_replay_passed_the_sync_start_is_refused(secondary):
    h1 = secondary
    own_write(h1, {"resource-vm3/syncstatus-h1": 2 * MIB,
                   "resource-vm3/syncpos-h1": "log-000000002-h2,100,100",
                   "resource-vm3/replay-h1": "log-000000002-h2,50,100"})
    assert_refused(h1, ["primary", "vm3"], "not consistent")


def synced(h1):
    own_write(h1, {"resource-vm3/syncstatus-h1": 2 * MIB})
    return h1


def test_primary_while_the_old_primary_is_not_alive_is_refused_pointing_to_force(secondary):
    stderr = assert_refused(synced(secondary), ["primary", "vm3"], "--force")
    assert "old primary h2" in stderr


def test_primary_refuses_a_split_brain(secondary):
    h1 = synced(secondary)
    h1.peer_apply([("resource-vm3/replay-h2", "log-000000003-h2,0,0", "h2"),
                   ("resource-vm3/replay-h3", "log-000000003-h3,0,0", "h3")])
    assert_refused(h1, ["primary", "vm3"], "split brain", "share number 3")


def make_alive(h1, host):
    h1.peer_apply([(f"actual-{host}/time", str(time.time()), host),
                   (f"actual-{host}/alive", "1", host)])


def test_primary_with_a_live_old_primary_writes_the_wish_then_times_out_without_marsd(secondary):
    h1 = synced(secondary)
    make_alive(h1, "h2")
    started = time.monotonic()
    result = h1.run("primary", "vm3", "--timeout=0.3")
    assert_timed_out(result, started, "the device to come up of vm3", "marsd is not running on h1")
    now = values(h1)
    assert now["resource-vm3/primary"] == "h1"
    assert "resource-vm3/todo-h1/force-primary" not in now


def test_primary_force_is_refused_while_the_replica_fetches_changing_nothing(secondary):
    """As kernel MARS's marsadm (primary_phase0): a replica that fetches
    may go on taking in the old primary's log; its manual's failover is
    pause-fetch, primary --force, resume-fetch."""
    h1 = secondary
    before = h1.tuples()
    assert_refused(h1, ["--force", "primary", "vm3"],
                   "cannot take vm3 over by force on h1 while it fetches: `marsadm pause-fetch "
                   "vm3` first")
    assert h1.tuples() == before


def test_primary_force_skips_the_checks_and_asks_for_a_forced_start(secondary):
    h1 = secondary                      # sync incomplete, old primary dead: --force anyway
    h1.ok("pause-fetch", "vm3")
    started = time.monotonic()
    result = h1.run("--force", "primary", "vm3", "--timeout=0.3")
    assert_timed_out(result, started, "marsd is not running on h1")
    now = values(h1)
    assert now["resource-vm3/primary"] == "h1"
    assert now["resource-vm3/todo-h1/force-primary"] == "1"


def test_dry_run_primary_force_writes_nothing_and_does_not_wait(secondary):
    h1 = secondary
    h1.ok("pause-fetch", "vm3")
    before = h1.tuples()
    out = h1.ok("--dry-run", "--force", "primary", "vm3", "--timeout=5")
    assert "would write resource-vm3/primary = h1\n" in out
    assert "would write resource-vm3/todo-h1/force-primary = 1\n" in out
    assert h1.tuples() == before


def test_primary_on_a_non_member_is_refused(scenario):
    assert_refused(scenario.host, ["primary", "vm3"], "not a member of vm3")


# ------------------------------------------------------------------- views
def test_data_views_without_marsd(scenario):
    h1 = scenario.host
    assert h1.ok("view-diskstate", "vm1") == "NoAttach\n"
    assert h1.ok("view-replstate", "vm1") == "NotStarted\n"
    assert h1.ok("view-role", "vm1") == "NotYetPrimary\n"
    assert h1.ok("view-is-primary", "vm1") == "0\n"
    assert h1.ok("view-flags", "vm1") == "dCaSFR\n"
    assert h1.ok("view-flags", "vm3") == ""
    assert h1.ok("view-sync-rest", "vm1") == "0\n"
    assert h1.ok("view-is-consistent", "vm1") == "1\n"
    assert h1.ok("view-is-split-brain", "vm1") == "0\n"


def test_data_views_ignore_a_status_file_left_by_a_dead_marsd(scenario):
    h1 = scenario.host
    (h1.state_dir / "status").mkdir()
    (h1.state_dir / "status" / "vm1.json").write_text(json.dumps(
        {"is_primary": True, "attached": True, "updated": time.time()}))
    own_write(h1, {"resource-vm1/actual-h1/is-primary": 1})
    assert h1.ok("view-diskstate", "vm1") == "NoAttach\n"
    assert h1.ok("view-is-primary", "vm1") == "0\n"


def test_data_views_read_the_status_of_a_running_marsd(scenario, fake_marsd):
    h1 = scenario.host
    own_write(h1, {"resource-vm1/actual-h1/is-primary": 1})
    fake_marsd("vm1", is_primary=True, attached=True, device="/x/dev/mars/vm1",
               loop="/dev/loop3", open_count=1, rates={"log": 0})
    assert h1.ok("view-diskstate", "vm1") == "UpToDate\n"
    assert h1.ok("view-replstate", "vm1") == "Replicating\n"
    assert h1.ok("view-role", "vm1") == "Primary\n"
    assert h1.ok("view-is-primary", "vm1") == "1\n"
    assert h1.ok("view", "vm1") == (
        "vm1 [2/3] UpToDate Replicating DCASFR Primary h1\n"
        "  device /x/dev/mars/vm1 -> /dev/loop3, open count 1, logging 0 B/s\n")


def test_view_summary_without_marsd_says_so(scenario):
    assert scenario.host.ok("view", "vm1") == (
        "vm1 [2/3] NoAttach NotStarted dCaSFR NotYetPrimary h1\n"
        "  marsd is not running on this host: figures unavailable\n")

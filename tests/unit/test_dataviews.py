"""Data-plane views (mars/dataviews.py) on hand-built metadata snapshots and
status dicts shaped like the ones marsd's worker writes.

The cluster: hosts h1, h2, h3; vm1 is 1 MiB with members h1 (designated and
actual primary) and h2; h3 is no member. Most tests look from h2, a synced
secondary that replays h1's first logfile past its sync start position."""

import json
import os
import time
from types import SimpleNamespace

import pytest

from mars.dataviews import (DATA_VIEWS, STATUS_FRESH, Runtime, diskstate, flags,
                            is_consistent, replstate, rest, role, summary, sync_rest)
from mars.daemon import PidFile
from mars.history import passed_unlogged
from mars.hostenv import HostEnv
from mars.keys import ClusterState
from mars.roles import daemon_pid, daemon_running
from tests.unit.conftest import MIB, make_disk

RES = "vm1"
GIB = 1 << 30


@pytest.fixture
def disk(tmp_path):
    return make_disk(tmp_path / "disk", MIB)


def state(disk, local="h2", changes=None):
    """`local`'s snapshot. `changes` maps keys below `resource-vm1/` to a new
    value, or to None to remove the key."""
    values = {
        "ips/ip-h1": "127.0.0.1", "ips/ip-h2": "127.0.0.2", "ips/ip-h3": "127.0.0.3",
        "resource-vm1/size": str(MIB),
        "resource-vm1/primary": "h1",
        "resource-vm1/data-h1": disk,
        "resource-vm1/data-h2": disk,
        "resource-vm1/syncstatus-h1": str(MIB),
        "resource-vm1/syncstatus-h2": str(MIB),
        "resource-vm1/syncpos-h2": "log-000000001-h1,100,100",
        "resource-vm1/replay-h1": "log-000000001-h1,300,300",
        "resource-vm1/replay-h2": "log-000000001-h1,200,300",
        "resource-vm1/actual-h1/is-primary": "1",
    }
    for host in ("h1", "h2"):
        for switch in ("attach", "connect", "sync", "allow-replay"):
            values[f"resource-vm1/todo-{host}/{switch}"] = "1"
    for key, value in (changes or {}).items():
        if value is None:
            values.pop(f"resource-vm1/{key}", None)
        else:
            values[f"resource-vm1/{key}"] = value
    return ClusterState(values, local)


def primary_state(disk, changes=None):
    return state(disk, "h1", changes)


def secondary_status(**changes):
    """A healthy, idle secondary's status as marsd's worker writes it."""
    status = {
        "is_primary": False, "attached": True, "source": "h1", "source_alive": True,
        "error": None, "fetch_rest": 0, "replay_rest": 0, "work_rest": 0,
        "syncing": False, "sync_done": MIB, "damage": None, "emergency": False,
        "waiting": None, "recovering": False,
        "rates": {"sync": 0, "fetch": 0, "replay": 0, "log": 0},
        "device": None, "loop": None, "open_count": 0, "updated": 1000.0,
    }
    status.update(changes)
    return status


def primary_status(**changes):
    """The actual primary's status: device up and open (mounted)."""
    base = {"is_primary": True, "source": None, "device": "/srv/h1/dev/mars/vm1",
            "loop": "/dev/loop7", "open_count": 1,
            "rates": {"sync": 0, "fetch": 0, "replay": 0, "log": 2048}}
    base.update(changes)
    return secondary_status(**base)


# ---------------------------------------------------------------- diskstate
def test_diskstate_of_a_non_member_is_notjoined(disk):
    assert diskstate(state(disk, "h3"), RES, secondary_status()) == "NotJoined"


def test_diskstate_is_notpresent_when_the_configured_disk_is_missing(disk, tmp_path):
    st = state(disk, changes={"data-h2": str(tmp_path / "gone")})
    assert diskstate(st, RES, secondary_status()) == "NotPresent"


def test_diskstate_is_detached_when_attach_is_off_even_with_a_damaged_log(disk):
    st = state(disk, changes={"todo-h2/attach": "0"})
    assert diskstate(st, RES, secondary_status(damage="bad digest at 4096")) == "Detached"
    assert diskstate(st, RES, {}) == "Detached"


def test_diskstate_names_the_log_damage_before_anything_else_marsd_reports(disk):
    status = secondary_status(damage="log-000000001-h1: bad digest at 4096", emergency=True)
    assert diskstate(state(disk), RES, status) == "DefectiveLog[log-000000001-h1: bad digest at 4096]"


def test_diskstate_is_noattach_without_a_status_from_marsd(disk):
    assert diskstate(state(disk), RES, {}) == "NoAttach"
    assert diskstate(primary_state(disk), RES, {}) == "NoAttach"


def test_diskstate_is_emergencymode_on_a_primary_that_stopped_logging(disk):
    assert diskstate(primary_state(disk), RES, primary_status(emergency=True)) == "EmergencyMode"


def test_diskstate_of_a_working_primary_is_uptodate(disk):
    # its own syncstatus does not matter: the primary's disk is the reference
    st = primary_state(disk, {"syncstatus-h1": "0"})
    assert diskstate(st, RES, primary_status()) == "UpToDate"


def test_diskstate_is_recovery_while_the_new_primary_starts_its_device(disk):
    st = primary_state(disk, {"actual-h1/is-primary": "0"})
    status = secondary_status(source=None, waiting="starting the device (recovery from the log)",
                              recovering=True)
    assert diskstate(st, RES, status) == "Recovery"


def test_diskstate_is_recovery_by_the_reported_fact_not_by_the_waiting_text(disk):
    st = primary_state(disk, {"actual-h1/is-primary": "0", "syncpos-h1": None})
    assert diskstate(st, RES, secondary_status(source=None, waiting="starting soon")) == "UpToDate"
    assert diskstate(st, RES, secondary_status(source=None, recovering=True)) == "Recovery"


def test_diskstate_of_a_designated_primary_whose_status_has_no_waiting_reason(disk):
    """Regression: marsd writes `"waiting": null`; diskstate crashed on it."""
    st = primary_state(disk, {"actual-h1/is-primary": "0", "syncpos-h1": None})
    assert diskstate(st, RES, secondary_status(source=None, waiting=None)) == "UpToDate"
    assert diskstate(st, RES, secondary_status(source=None, fetch_rest=5)) == "OutDated[F]"


def test_diskstate_is_inconsistent_while_the_sync_is_incomplete(disk):
    st = state(disk, changes={"syncstatus-h2": str(MIB - 512)})
    assert diskstate(st, RES, secondary_status()) == "InConsistent"


def test_diskstate_is_inconsistent_until_replay_passes_the_sync_start(disk):
    st = state(disk, changes={"replay-h2": "log-000000001-h1,99,300"})
    assert diskstate(st, RES, secondary_status()) == "InConsistent"


@pytest.mark.parametrize("fetch_rest, replay_rest, expected", [
    (4096, 0, "OutDated[F]"),
    (0, 512, "OutDated[R]"),
    (4096, 512, "OutDated[FR]"),
    (0, 0, "UpToDate"),
])
def test_diskstate_of_a_consistent_secondary_says_what_is_still_to_do(
        disk, fetch_rest, replay_rest, expected):
    status = secondary_status(fetch_rest=fetch_rest, replay_rest=replay_rest,
                              work_rest=fetch_rest + replay_rest)
    assert diskstate(state(disk), RES, status) == expected


# ----------------------------------------------------------- is_consistent
def test_a_non_member_is_not_consistent(disk):
    assert is_consistent(state(disk, "h3"), RES) is False


def test_the_actual_primary_is_consistent_whatever_its_sync_figures(disk):
    assert is_consistent(primary_state(disk, {"syncstatus-h1": "0"}), RES) is True


def test_the_creator_without_a_sync_start_position_is_consistent(disk):
    st = primary_state(disk, {"actual-h1/is-primary": None})
    assert is_consistent(st, RES) is True


@pytest.mark.parametrize("changes", [
    {"syncstatus-h2": str(MIB - 1)},
    {"syncstatus-h2": "garbage"},
    {"syncstatus-h2": None},
])
def test_an_incomplete_sync_is_not_consistent(disk, changes):
    assert is_consistent(state(disk, changes=changes), RES) is False


@pytest.mark.parametrize("cursor, expected", [
    ("log-000000001-h1,99,300", False),     # before syncpos
    ("log-000000001-h1,100,300", True),     # exactly at it
    ("log-000000002-h1,0,0", True),         # a later logfile, position smaller
    ("log-000000002-h2,0,0", True),         # a later logfile of another origin
    (None, False),                          # no replay cursor yet
    ("not-a-cursor", False),
    ("junk,1,2", False),                    # not a logfile name
])
def test_a_synced_secondary_is_consistent_once_replay_passed_syncpos(disk, cursor, expected):
    st = state(disk, changes={"replay-h2": cursor, "syncpos-h2": "log-000000001-h1,100,100"})
    assert is_consistent(st, RES) is expected


@pytest.mark.parametrize("syncpos, passed", [
    ("log-000000001-h1,100,100", False),    # h2 synced before h1's mark: it still lacks them
    ("log-000000001-h1,150,150", False),    # at the mark
    ("log-000000002-h1,10,10", True)])      # after: nobody misses them, the mark may go
def test_an_emergency_mark_may_go_once_every_other_member_synced_after_it(disk, syncpos,
                                                                        passed):
    st = state(disk, "h1", {"unlogged-h1": "log-000000001-h1,150,150", "syncpos-h2": syncpos})
    assert passed_unlogged(st, RES, "h1") is passed
    assert passed_unlogged(state(disk, "h1"), RES, "h1") is False       # no mark


def test_a_sync_start_in_a_later_logfile_than_the_cursor_is_not_passed(disk):
    st = state(disk, changes={"syncpos-h2": "log-000000003-h1,0,0",
                              "replay-h2": "log-000000002-h1,900,900"})
    assert is_consistent(st, RES) is False


@pytest.mark.parametrize("mark, expected", [
    (None, True),
    ("log-000000001-h1,50,50", True),       # logging stopped before h2's sync began
    ("log-000000001-h1,150,150", False),    # after: h2 missed what h1 wrote unlogged
    ("log-000000001-h1,100,100", False),    # where h2's sync ended: it completed while the
    #                                         log stood at the mark, copying the disk meanwhile
    ("log-000000003-h1,0,0", False)])
def test_a_replica_synced_before_a_primary_wrote_unlogged_is_not_consistent(disk, mark,
                                                                            expected):
    """Emergency mode: the primary wrote straight to its disk from its
    `unlogged-<host>` mark on. Once it logged again (its device restarted),
    a replica synced before the mark resumed replay and reported itself
    UpToDate and consistent — a failover or handover could take over on
    it without those writes."""
    changes = {"replay-h2": "log-000000002-h1,10,10"}
    if mark:
        changes["unlogged-h1"] = mark
    assert is_consistent(state(disk, changes=changes), RES) is expected
    # the host that wrote them holds them: its own mark is no gap
    assert is_consistent(state(disk, "h1", {**changes, "actual-h1/is-primary": "0",
                                            "unlogged-h1": "log-000000003-h1,0,0"}), RES)


# --------------------------------------------------------------- replstate
def test_replstate_of_a_non_member_is_notjoined(disk):
    assert replstate(state(disk, "h3"), RES, {}) == "NotJoined"


def test_replstate_of_the_working_primary_is_replicating(disk):
    assert replstate(primary_state(disk), RES, primary_status()) == "Replicating"


def test_replstate_of_a_primary_in_emergency_mode(disk):
    assert replstate(primary_state(disk), RES, primary_status(emergency=True)) == "EmergencyMode"


def test_replstate_of_a_primary_that_remains_after_the_designation_moved(disk):
    st = primary_state(disk, {"primary": "h2"})
    assert replstate(st, RES, primary_status()) == "Replicating"


def test_replstate_is_notstarted_without_marsd(disk):
    assert replstate(state(disk), RES, {}) == "NotStarted"
    assert replstate(primary_state(disk), RES, {}) == "NotStarted"


def test_replstate_of_a_designated_primary_whose_device_is_not_up_yet(disk):
    st = primary_state(disk, {"actual-h1/is-primary": "0"})
    assert replstate(st, RES, secondary_status(source=None)) == "NotYetPrimary"


@pytest.mark.parametrize("changes, expected", [
    ({}, "Syncing"),
    ({"todo-h2/sync": "0"}, "PausedSync"),
    ({"global-pause-sync": "1"}, "PausedSync"),
    ({"global-pause-sync": "0"}, "Syncing"),
])
def test_replstate_while_the_sync_is_incomplete(disk, changes, expected):
    st = state(disk, changes={"syncstatus-h2": "4096", **changes})
    assert replstate(st, RES, secondary_status(syncing=True)) == expected


@pytest.mark.parametrize("changes, expected", [
    ({"todo-h2/connect": "0"}, "PausedFetch"),
    ({"global-pause-fetch": "1"}, "PausedFetch"),
    ({"todo-h2/connect": "0", "todo-h2/allow-replay": "0"}, "PausedFetch"),
    ({"todo-h2/allow-replay": "0"}, "PausedReplay"),
    ({"global-pause-replay": "1"}, "PausedReplay"),
    ({"todo-h2/sync": "0", "global-pause-sync": "1"}, "Replaying"),   # sync is complete
])
def test_replstate_of_a_synced_secondary_with_pauses(disk, changes, expected):
    assert replstate(state(disk, changes=changes), RES, secondary_status()) == expected


def test_replstate_is_noprimarydesignated_without_a_source(disk):
    st = state(disk, changes={"primary": "(none)", "actual-h1/is-primary": "0"})
    assert replstate(st, RES, secondary_status(source=None)) == "NoPrimaryDesignated"


@pytest.mark.parametrize("status_changes", [
    {"source_alive": False},
    {"error": "h1: connection refused"},
])
def test_replstate_is_primaryunreachable_when_the_source_is_dead_or_failing(disk, status_changes):
    assert replstate(state(disk), RES, secondary_status(**status_changes)) == "PrimaryUnreachable"


def test_replstate_of_a_healthy_secondary_is_replaying(disk):
    assert replstate(state(disk), RES, secondary_status()) == "Replaying"
    assert replstate(state(disk), RES, secondary_status(fetch_rest=10, replay_rest=5)) == "Replaying"


# -------------------------------------------------------------------- role
def test_role_of_a_non_member_is_none(disk):
    assert role(state(disk, "h3"), RES, secondary_status()) == "None"


def test_role_of_the_designated_and_actual_primary_is_primary(disk):
    assert role(primary_state(disk), RES, primary_status()) == "Primary"


def test_role_of_an_actual_primary_no_longer_designated_is_remainsprimary(disk):
    assert role(primary_state(disk, {"primary": "h2"}), RES, primary_status()) == "RemainsPrimary"
    assert role(primary_state(disk, {"primary": "(none)"}), RES, primary_status()) == "RemainsPrimary"


def test_role_of_the_designated_primary_before_its_device_is_up_is_notyetprimary(disk):
    assert role(primary_state(disk, {"actual-h1/is-primary": "0"}), RES,
                secondary_status()) == "NotYetPrimary"


def test_role_does_not_trust_is_primary_without_a_running_marsd(disk):
    assert role(primary_state(disk), RES, {}) == "NotYetPrimary"
    assert role(primary_state(disk, {"primary": "h2"}), RES, {}) == "Secondary"


def test_role_of_a_member_that_is_not_designated_is_secondary(disk):
    assert role(state(disk), RES, secondary_status()) == "Secondary"
    assert role(state(disk), RES, {}) == "Secondary"


# ------------------------------------------------------------------- flags
# kernel MARS's marsadm (its `flags` macro): device, consistent, attach,
# then sync, fetch, replay; capital reached, lower on its way, - off
def test_flags_of_a_healthy_secondary(disk):
    assert flags(state(disk), RES, secondary_status()) == "dCASFR"


def test_flags_of_the_working_primary_are_all_done(disk):
    # the primary's rests are its own business: F and R stay capital
    status = primary_status(fetch_rest=7, replay_rest=7)
    assert flags(primary_state(disk), RES, status) == "DCASFR"


def test_flags_of_a_designated_primary_coming_up(disk):
    st = primary_state(disk, {"actual-h1/is-primary": "0"})
    assert flags(st, RES, secondary_status(source=None)) == "dCASFR"


def test_flags_show_work_in_progress_in_lower_case(disk):
    st = state(disk, changes={"syncstatus-h2": "0"})
    status = secondary_status(attached=False, source=None, fetch_rest=1, replay_rest=1)
    assert flags(st, RES, status) == "dcasfr"


def test_flags_without_marsd_show_only_the_wishes(disk):
    assert flags(state(disk), RES, {}) == "dCaSFR"
    assert flags(state(disk, changes={"todo-h2/attach": "0"}), RES, {}) == "dC-SFR"


def test_flags_show_no_connection_error_as_kernel_mars_has_none_among_them(disk):
    assert flags(state(disk), RES, secondary_status(error="h1: timeout")) == "dCASFR"


def test_flags_of_a_missing_disk_have_no_device_and_no_consistency(disk):
    st = state(disk, changes={"syncstatus-h2": "0"})
    os.unlink(disk)
    assert flags(st, RES, secondary_status(attached=False, fetch_rest=1,
                                           replay_rest=1)) == "--asfr"


def test_flags_show_switched_off_parts_as_dashes(disk):
    off = {name: "0" for name in ("todo-h2/attach", "todo-h2/connect", "todo-h2/sync",
                                  "todo-h2/allow-replay")}
    off["syncstatus-h2"] = "0"
    st = state(disk, changes=off)
    assert flags(st, RES, secondary_status(attached=False)) == "dc----"


@pytest.mark.parametrize("pause, expected", [
    ("sync", "dcA-FR"),
    ("fetch", "dcAs-R"),
    ("replay", "dcAsF-"),
])
def test_flags_show_a_global_pause_like_a_local_one(disk, pause, expected):
    """Regression: a global pause stops the worker exactly like the local
    switch, but the flags went on showing the paused part as in progress."""
    st = state(disk, changes={"syncstatus-h2": "0", f"global-pause-{pause}": "1"})
    assert flags(st, RES, secondary_status()) == expected


# ---------------------------------------------------- sync-rest, work-rest
def test_sync_rest_is_size_minus_syncstatus(disk):
    assert sync_rest(state(disk, changes={"syncstatus-h2": "1000"}), RES) == str(MIB - 1000)
    assert sync_rest(state(disk), RES) == "0"


def test_sync_rest_is_never_negative(disk):
    assert sync_rest(state(disk, changes={"syncstatus-h2": str(2 * MIB)}), RES) == "0"


def test_sync_rest_without_syncstatus_is_the_whole_size(disk):
    assert sync_rest(state(disk, changes={"syncstatus-h2": None}), RES) == str(MIB)


def test_sync_rest_and_work_rest_are_empty_on_a_non_member(disk):
    assert sync_rest(state(disk, "h3"), RES) == ""
    assert rest(state(disk, "h3"), RES, secondary_status(work_rest=5), "work_rest") == ""


@pytest.mark.parametrize("macro, name", [("work-rest", "work_rest"),
                                         ("fetch-rest", "fetch_rest"),
                                         ("replay-rest", "replay_rest")])
def test_the_rests_are_what_marsd_reports_and_zero_on_the_primary(disk, macro, name):
    """work-rest, and its parts as the kernel's marsadm has them: fetch-rest
    (of the primary's log as it last listed it or said it) and replay-rest;
    unknown (empty) on a secondary without marsd's status, not 0."""
    def view(state, status):
        return DATA_VIEWS[macro](state, RES, SimpleNamespace(status=lambda res: status))
    assert view(state(disk), secondary_status(**{name: 12345})) == "12345"
    assert view(state(disk), {}) == ""
    assert view(primary_state(disk), primary_status(**{name: 999})) == "0"
    assert view(primary_state(disk), {}) == "0"


def test_fetch_lognr_and_logsize_are_the_newest_logfile_held_here_marsd_running_or_not(
        disk, tmp_path):
    """How far a member received the primary's log, the same measure on each
    (failover chooses by it): its own newest logfile and the bytes it holds
    of it, whatever the source's log was at its last listing."""
    runtime = Runtime(tmp_path, daemon_running=False)
    views = [DATA_VIEWS[macro] for macro in ("fetch-lognr", "fetch-logsize")]
    assert [view(state(disk), RES, runtime) for view in views] == ["0", "0"]
    resource_dir = tmp_path / f"resource-{RES}"
    resource_dir.mkdir()
    (resource_dir / "log-000000009-h1").write_bytes(b"x" * 4096)
    (resource_dir / "log-000000010-h1").write_bytes(b"x" * 1000)
    (resource_dir / "version-000000009-h1").write_text("not a logfile")
    assert [view(state(disk), RES, runtime) for view in views] == ["10", "1000"]
    assert [view(state(disk, "h3"), RES, runtime) for view in views] == ["", ""]


def test_the_view_table_reads_the_status_through_the_runtime(disk, tmp_path):
    st = primary_state(disk)
    running = write_status(tmp_path, primary_status(updated=time.time()))
    stopped = Runtime(tmp_path, daemon_running=False)
    assert DATA_VIEWS["is-primary"](st, RES, running) == "1"
    assert DATA_VIEWS["is-primary"](st, RES, stopped) == "0"
    assert DATA_VIEWS["role"](st, RES, running) == "Primary"
    assert DATA_VIEWS["flags"](st, RES, running) == "DCASFR"
    assert DATA_VIEWS["flags"](state(disk, "h3"), RES, running) == ""
    assert DATA_VIEWS["is-consistent"](state(disk, changes={"syncstatus-h2": "0"}), RES,
                                       running) == "0"


# ----------------------------------------------------------------- Runtime
def write_status(state_dir, status, res=RES):
    (state_dir / "status").mkdir(exist_ok=True)
    (state_dir / "status" / f"{res}.json").write_text(json.dumps(status))
    return Runtime(state_dir, now=status.get("updated", 0) + 1)


def test_runtime_returns_a_fresh_status_file(tmp_path):
    write_status(tmp_path, secondary_status(updated=5000.0))
    runtime = Runtime(tmp_path, now=5000.0 + STATUS_FRESH)
    assert runtime.status(RES) == secondary_status(updated=5000.0)


def test_runtime_ignores_a_status_file_older_than_status_fresh(tmp_path):
    write_status(tmp_path, secondary_status(updated=5000.0))
    assert Runtime(tmp_path, now=5000.0 + STATUS_FRESH + 0.5).status(RES) == {}


def test_runtime_without_a_running_marsd_has_no_status(tmp_path):
    write_status(tmp_path, secondary_status(updated=5000.0))
    assert Runtime(tmp_path, daemon_running=False, now=5000.0).status(RES) == {}


def test_runtime_ignores_the_status_a_crashed_marsd_left_for_the_restarted_one(tmp_path):
    """Killed and restarted within STATUS_FRESH: the dead marsd's file says
    the device is up; until the new marsd reported, nothing is known."""
    write_status(tmp_path, primary_status(updated=5000.0, marsd=111))
    assert Runtime(tmp_path, now=5001.0, daemon_pid=222).status(RES) == {}
    assert Runtime(tmp_path, now=5001.0, daemon_pid=0).status(RES) == {}     # pid not written yet
    assert Runtime(tmp_path, now=5001.0, daemon_pid=111).status(RES)["is_primary"]


def test_daemon_pid_is_the_pid_of_the_marsd_holding_the_pid_file(tmp_path):
    env = HostEnv("h1", tmp_path)
    env.ensure_state_dir()
    assert daemon_pid(env) is None
    holder = PidFile(env.pid_path)
    holder.acquire()
    try:
        # flock locks belong to the open file: another open of it sees the lock
        assert daemon_pid(env) == os.getpid() and daemon_running(env)
    finally:
        holder.release()
    assert daemon_pid(env) is None and not daemon_running(env)


@pytest.mark.parametrize("content", [None, "{not json", json.dumps({"attached": True})])
def test_runtime_has_no_status_for_a_missing_corrupt_or_undated_file(tmp_path, content):
    if content is not None:
        (tmp_path / "status").mkdir()
        (tmp_path / "status" / f"{RES}.json").write_text(content)
    assert Runtime(tmp_path, now=time.time()).status(RES) == {}


def test_runtime_reads_each_resource_from_its_own_file(tmp_path):
    write_status(tmp_path, secondary_status(updated=5000.0, work_rest=1), res="vm1")
    write_status(tmp_path, secondary_status(updated=5000.0, work_rest=2), res="vm2")
    runtime = Runtime(tmp_path, now=5001.0)
    assert runtime.status("vm1")["work_rest"] == 1
    assert runtime.status("vm2")["work_rest"] == 2
    assert runtime.status("vm3") == {}


# ----------------------------------------------------------------- summary
def test_summary_of_the_primary_has_the_state_line_and_the_device_line(disk):
    text = summary(primary_state(disk), RES, primary_status())
    assert text == ("vm1 [2/3] UpToDate Replicating DCASFR Primary h1\n"
                    "  device /srv/h1/dev/mars/vm1 -> /dev/loop7, open count 1, logging 2.0 KiB/s\n")


def test_summary_of_a_new_primary_shows_no_rest_of_the_log_it_followed(disk):
    """Right after a forced takeover the status still held the rest of the
    dead primary's log it had been fetching: `view` showed "fetch: rest
    327.1 KiB" on the primary, where `view-fetch-rest` said 0."""
    status = primary_status(fetch_rest=334950, replay_rest=4096)
    assert summary(primary_state(disk), RES, status) == \
        summary(primary_state(disk), RES, primary_status())


def test_summary_of_a_healthy_secondary_is_one_line(disk):
    assert summary(state(disk), RES, secondary_status()) == \
        "vm1 [2/3] UpToDate Replaying dCASFR Secondary h1\n"


def test_summary_while_syncing_shows_progress_rate_and_eta(disk):
    st = state(disk, changes={"syncstatus-h2": str(MIB // 4)})
    status = secondary_status(syncing=True, sync_done=MIB // 2,
                              rates={"sync": 64 * 1024, "fetch": 0, "replay": 0, "log": 0})
    assert summary(st, RES, status) == (
        "vm1 [2/3] InConsistent Syncing dcAsFR Secondary h1\n"
        "  sync: 50.0% 512.0 KiB of 1.0 MiB, rate 64.0 KiB/s, eta 0:00:08\n")


def test_summary_eta_counts_hours_and_is_unknown_without_a_rate(disk):
    st = state(disk, changes={"size": str(10 * GIB), "syncstatus-h2": "0"})
    status = secondary_status(syncing=True, sync_done=0,
                              rates={"sync": MIB, "fetch": 0, "replay": 0, "log": 0})
    assert summary(st, RES, status).splitlines()[1] == \
        "  sync: 0.0% 0 B of 10.0 GiB, rate 1.0 MiB/s, eta 2:50:40"
    status["rates"]["sync"] = 0
    assert summary(st, RES, status).splitlines()[1] == \
        "  sync: 0.0% 0 B of 10.0 GiB, rate 0 B/s, eta unknown"


def test_summary_shows_fetch_and_replay_rests(disk):
    status = secondary_status(fetch_rest=3 * MIB, replay_rest=1536, work_rest=3 * MIB + 1536,
                              rates={"sync": 0, "fetch": MIB, "replay": 0, "log": 0})
    assert summary(state(disk), RES, status) == (
        "vm1 [2/3] OutDated[FR] Replaying dCASfr Secondary h1\n"
        "  fetch: rest 3.0 MiB, rate 1.0 MiB/s, eta 0:00:03\n"
        "  replay: rest 1.5 KiB, rate 0 B/s, eta unknown\n")


def test_summary_lists_split_brain_damage_waiting_and_error(disk):
    status = secondary_status(split_brain="logfiles x, y share number 2", damage="bad digest",
                              waiting="fetch paused", error="h1: refused")
    lines = summary(state(disk), RES, status).splitlines()
    assert lines[1:] == ["  split brain: logfiles x, y share number 2", "  damage: bad digest",
                         "  waiting: fetch paused", "  error: h1: refused"]
    assert lines[0].startswith("vm1 [2/3] DefectiveLog[bad digest] PrimaryUnreachable ")


def test_summary_without_marsd_says_figures_are_unavailable(disk):
    assert summary(state(disk), RES, {}) == (
        "vm1 [2/3] NoAttach NotStarted dCaSFR Secondary h1\n"
        "  marsd is not running on this host: figures unavailable\n")


def test_summary_without_marsd_during_a_sync_uses_the_recorded_progress(disk):
    st = state(disk, changes={"syncstatus-h2": str(MIB // 4)})
    assert summary(st, RES, {}).splitlines()[1] == \
        "  sync: 25.0% 256.0 KiB of 1.0 MiB, rate 0 B/s, eta unknown"


def test_summary_of_a_non_member_without_a_primary(disk):
    st = state(disk, "h3", {"primary": "(none)"})
    assert summary(st, RES, {}) == "vm1 [2/3] NotJoined NotJoined ------ None (none)\n"


def test_is_alive_is_whether_the_designated_primary_reported_within_the_window(disk):
    """As the kernel's marsadm has it (`is-alive` without an argument: the
    designated primary's time link, recent within --window); this host
    where none is designated. A member other than the primary that is
    silent does not count (it did: every member had to be alive)."""
    def seen(local="h2", primary="h1", h1_time=None):
        snapshot = state(disk, local, {"primary": primary})
        if h1_time is not None:
            snapshot.values.update({"actual-h1/time": str(h1_time), "actual-h1/alive": "1"})
        return snapshot

    view = DATA_VIEWS["is-alive"]
    now = time.time()

    def alive(snapshot, window=60.0):
        return view(snapshot, RES, SimpleNamespace(window=window))

    assert alive(seen(h1_time=now - 5)) == "1"
    assert alive(seen(h1_time=now - 5), window=3) == "0"
    assert alive(seen()) == "0"                                  # never heard
    assert alive(seen(primary="(none)")) == "1"                  # none designated: this host
    assert alive(seen(local="h1", primary="h2")) == "0"          # h2 silent to h1
    assert alive(seen(local="h1")) == "1"                        # the primary itself

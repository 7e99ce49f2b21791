"""Which logfiles may go (mars.replay.lowest_needed_logfile), and how a new
primary finds the logfiles after its cursor whatever their origin
(TransactionLog recovery), also for host names with dashes."""

import pytest

from mars.replay import lowest_needed_logfile
from mars.keys import ClusterState
from mars.lamport import LamportClock
from mars.replay import Cursor
from mars.translog import TransactionLog
from tests.unit.conftest import MIB, make_disk, random_writes, write_log


def snapshot(cursors, members=("h1", "h2", "h3")):
    values = {"resource-vm1/size": str(MIB), "resource-vm1/primary": "h1"}
    for host in members:
        values[f"resource-vm1/data-{host}"] = "/dev/vg/vm1"
    values.update({f"resource-vm1/replay-{host}": cursor for host, cursor in cursors.items()})
    return ClusterState(values, "h1")


def test_the_lowest_needed_logfile_is_the_lowest_members_cursor():
    state = snapshot({"h1": "log-000000007-h1,10,10", "h2": "log-000000005-h1,0,900",
                      "h3": "log-000000006-h1,3,3"})
    assert lowest_needed_logfile(state, "vm1") == 5


def test_the_lowest_needed_logfile_compares_numbers_not_origins():
    state = snapshot({"h1": "log-000000012-h1,0,0", "h2": "log-000000011-h2,0,0",
                      "h3": "log-000000009-a,0,0"})
    assert lowest_needed_logfile(state, "vm1") == 9


def test_a_member_without_a_cursor_may_need_any_logfile():
    state = snapshot({"h1": "log-000000007-h1,10,10", "h2": "log-000000005-h1,0,0"})
    assert lowest_needed_logfile(state, "vm1") is None


@pytest.mark.parametrize("bad", ["garbage", "log-5-h1,0,0", "log-000000005-h1,x,0"])
def test_a_member_with_a_malformed_cursor_may_need_any_logfile(bad):
    state = snapshot({"h1": "log-000000007-h1,10,10", "h2": bad, "h3": "log-000000006-h1,0,0"})
    assert lowest_needed_logfile(state, "vm1") is None


def test_cursors_of_hosts_that_left_do_not_hold_logfiles_back():
    state = snapshot({"h1": "log-000000007-h1,10,10", "h2": "log-000000006-h1,0,0",
                      "h9": "log-000000001-h1,0,0"}, members=("h1", "h2"))
    assert lowest_needed_logfile(state, "vm1") == 6


def test_a_resource_without_members_needs_nothing_known():
    assert lowest_needed_logfile(snapshot({}, members=()), "vm1") is None
    assert lowest_needed_logfile(snapshot({}), "vm9") is None


# ------------------------------------------- recovery across logfile origins
@pytest.mark.parametrize("host", ["h2", "web-1"])
def test_a_new_primary_replays_the_logfiles_after_its_cursor_from_any_origin(tmp_path, host):
    """Regression: on a host named `web-1`, recovery looked for the next
    logfile only among origins starting with `web-`, missed the old primary's
    `log-000000002-h1` and started a second logfile number 2 (a fork)."""
    resource_dir = tmp_path / "resource-vm1"
    resource_dir.mkdir()
    first = random_writes(1, 20, MIB)
    second = random_writes(2, 20, MIB)
    write_log(resource_dir / "log-000000001-h1", first)
    write_log(resource_dir / "log-000000002-h1", second, first_sequence=len(first) + 1)
    end = (resource_dir / "log-000000001-h1").stat().st_size
    disk = make_disk(tmp_path / "disk", MIB)
    log = TransactionLog(str(resource_dir), disk, host, LamportClock())
    try:
        replayed = log.recover(Cursor("log-000000001-h1", end, end))
    finally:
        log.close()
    assert replayed == len(second)
    assert log.logfile == f"log-000000003-{host}"
    # the cursor stood at the end of logfile 1: only logfile 2 reaches the disk
    expected = bytearray(MIB)
    for offset, data in second:
        expected[offset:offset + len(data)] = data
    with open(disk, "rb") as handle:
        assert handle.read() == bytes(expected)


def test_recovery_refuses_two_logfiles_with_one_number_whatever_the_host_name(tmp_path):
    resource_dir = tmp_path / "resource-vm1"
    resource_dir.mkdir()
    write_log(resource_dir / "log-000000001-h1", random_writes(1, 3, MIB))
    write_log(resource_dir / "log-000000001-web-1", random_writes(2, 3, MIB))
    disk = make_disk(tmp_path / "disk", MIB)
    log = TransactionLog(str(resource_dir), disk, "db-1", LamportClock())
    try:
        with pytest.raises(ValueError, match="share number 1: split brain"):
            log.recover(None)
    finally:
        log.close()

"""View macros through the marsadm CLI: the exact bytes Football parses.

The scenario (conftest.py) is h1's store of a cluster h1, h2, h3:
vm1 (h1 primary on disk1, and h2, 1 MiB), vm2 (h1 only, 512 KiB),
vm3 (h2 primary and h3, 2 MiB; h1 is not a member)."""

import os
import threading
import time

import pytest

from mars.errors import MarsError
from mars.views import format_value, render

MIB = 1 << 20
HEADER_VM1 = "--------- resource vm1 1.000 MiB [2/3]\n"
HEADER_VM2 = "--------- resource vm2 512.000 KiB [1/3]\n"
GUEST_VM3 = "--------- guest vm3 2.000 MiB [2/3]\n"      # h1 is not a member of vm3


def test_view_disk_present_is_1_while_the_disk_exists_and_0_once_it_is_gone(scenario):
    h1 = scenario.host
    assert h1.ok("view-disk-present", "vm1") == "1\n"
    os.remove(scenario.disk1)
    assert h1.ok("view-disk-present", "vm1") == "0\n"


def test_view_disk_present_prints_nothing_on_a_non_member(scenario):
    assert scenario.host.ok("view-disk-present", "vm3") == ""


def test_view_sync_size_and_resource_size_print_bytes(scenario):
    h1 = scenario.host
    assert h1.ok("view-sync-size", "vm1") == f"{MIB}\n"
    assert h1.ok("view-resource-size", "vm1") == f"{MIB}\n"
    assert h1.ok("view-sync-size", "vm2") == "524288\n"
    assert h1.ok("view-resource-size", "vm3") == f"{2 * MIB}\n"


def test_view_get_primary_prints_the_designated_primary(scenario):
    assert scenario.host.ok("view-get-primary", "vm1") == "h1\n"
    assert scenario.host.ok("view-get-primary", "vm3") == "h2\n"


def test_view_get_primary_prints_nothing_when_the_primary_is_none(scenario):
    scenario.host.peer_apply([("resource-vm3/primary", "(none)", "h2")])
    assert scenario.host.ok("view-get-primary", "vm3") == ""


def test_view_get_disk_prints_the_local_disk_or_nothing_for_a_non_member(scenario):
    assert scenario.host.ok("view-get-disk", "vm1") == f"{scenario.disk1}\n"
    assert scenario.host.ok("view-get-disk", "vm3") == ""


def test_view_resource_members_prints_one_host_per_line(scenario):
    assert scenario.host.ok("view-resource-members", "vm1") == "h1\nh2\n"
    assert scenario.host.ok("view-resource-members", "vm2") == "h1\n"
    assert scenario.host.ok("view-resource-members", "vm3") == "h2\nh3\n"


def test_view_cluster_members_prints_every_host(scenario):
    assert scenario.host.ok("view-cluster-members") == "h1\nh2\nh3\n"


def test_cluster_level_views_accept_and_ignore_a_single_resource_argument(scenario):
    assert scenario.host.ok("view-cluster-members", "vm3") == "h1\nh2\nh3\n"
    assert scenario.host.ok("view-all-resources", "vm1") == "vm1\nvm2\nvm3\n"


def test_cluster_level_views_given_all_print_once_per_resource_under_its_header(scenario):
    assert scenario.host.ok("view-all-resources", "all") == (
        f"{HEADER_VM1}vm1\nvm2\nvm3\n{HEADER_VM2}vm1\nvm2\nvm3\n")


def test_view_my_resources_lists_only_resources_this_host_holds(scenario):
    assert scenario.host.ok("view-my-resources") == "vm1\nvm2\n"


def test_view_all_resources_lists_every_resource_of_the_cluster(scenario):
    assert scenario.host.ok("view-all-resources") == "vm1\nvm2\nvm3\n"


def test_a_deleted_resource_disappears_from_the_views(scenario):
    scenario.host.ok("--force", "delete-resource", "vm2")      # h1 is still a member
    assert scenario.host.ok("view-all-resources") == "vm1\nvm3\n"
    assert scenario.host.ok("view-my-resources") == "vm1\n"


def test_lowlevel_ls_host_ips_prints_host_and_address_lines(scenario):
    assert scenario.host.ok("lowlevel-ls-host-ips") == (
        "h1 127.0.0.1\nh2 127.0.0.2\nh3 127.0.0.3\n")


def test_get_systemd_unit_prints_start_and_stop_unit(scenario):
    h1 = scenario.host
    assert h1.ok("get-systemd-unit", "vm1") == ""
    assert h1.ok("set-systemd-unit", "vm1", "start-vm1.service", "stop-vm1.target") == ""
    assert h1.ok("get-systemd-unit", "vm1") == "start-vm1.service stop-vm1.target\n"


def test_set_systemd_unit_without_stop_unit_uses_the_start_unit_for_both(scenario):
    scenario.host.ok("set-systemd-unit", "vm1", "mars@vm1.service")
    assert scenario.host.ok("get-systemd-unit", "vm1") == "mars@vm1.service mars@vm1.service\n"


def test_get_systemd_want_prints_the_wanted_host_or_nothing(scenario):
    h1 = scenario.host
    assert h1.ok("get-systemd-want", "vm1") == ""
    h1.ok("set-systemd-unit", "vm1", "start-vm1.service")
    h1.ok("--force", "set-systemd-want", "vm1")                 # --force: not waited for
    assert h1.ok("get-systemd-want", "vm1") == "h1\n"
    h1.ok("--force", "set-systemd-want", "vm1", "h2")
    assert h1.ok("get-systemd-want", "vm1") == "h2\n"
    h1.ok("--force", "set-systemd-want", "vm1", "none")
    assert h1.ok("get-systemd-want", "vm1") == "(none)\n"     # as kernel MARS: "stopped"


def test_set_systemd_want_refuses_a_resource_without_units_unless_forced(scenario):
    """As kernel MARS: a want without units has nothing to follow it; with
    --force it is recorded, and get-systemd-want still prints nothing."""
    h1 = scenario.host
    before = h1.tuples()
    refused = h1.run("set-systemd-want", "vm1", "(none)")
    assert refused.exit_code == 1, refused.stderr
    assert "vm1 has no systemd units" in refused.stderr
    assert "marsadm set-systemd-unit vm1 <start unit> [<stop unit>]" in refused.stderr
    assert "nothing changed" in refused.stderr and refused.stderr.count("\n") == 1
    assert h1.tuples() == before
    h1.ok("--force", "set-systemd-want", "vm1", "(none)")
    with h1.store() as store:
        assert store.get("resource-vm1/systemd-want").value == "(none)"
    assert h1.ok("get-systemd-want", "vm1") == ""


@pytest.fixture
def units(scenario):
    """The scenario's h1, with units recorded for vm1."""
    scenario.host.ok("set-systemd-unit", "vm1", "start-vm1.service", "stop-vm1.target")
    return scenario.host


def _h2_reports(h1, is_primary, open_count, alive=True):
    """h2's own report about vm1's device, as its marsd would send it."""
    h1.peer_apply([("resource-vm1/data-h2", "/dev/vg/vm1", "h2"),
                   ("resource-vm1/actual-h2/is-primary", str(is_primary), "h2"),
                   ("resource-vm1/actual-h2/open-count", str(open_count), "h2"),
                   ("actual-h2/alive", "1", "h2"),
                   ("actual-h2/time", str(time.time() - (0 if alive else 3600)), "h2")])


def test_set_systemd_want_none_waits_until_no_member_has_the_device_open(units):
    """As kernel MARS's set-systemd-want: it returns once the stack
    followed (here: the stop unit freed the device), not when the wish is
    written; a timeout names where the device is still open."""
    h1 = units
    _h2_reports(h1, is_primary=1, open_count=1)
    timed_out = h1.run("--timeout=1.3", "set-systemd-want", "vm1", "(none)")
    assert timed_out.exit_code == 3, timed_out.stderr
    said, ended = timed_out.stderr.splitlines()       # a wait says why once, then its end
    assert said == ("marsadm: vm1: waiting for its units to stop on every member: the device "
                    "is open on h2 (open count 1) (until --timeout, 1.3s)")
    assert "waiting for its units to stop on every member of vm1" in ended
    assert "the device is open on h2 (open count 1)" in ended

    closed = threading.Timer(0.3, _h2_reports, (h1, 1, 0))     # h2's stop unit ran
    closed.start()
    started = time.monotonic()
    h1.ok("--timeout=30", "set-systemd-want", "vm1", "(none)")
    closed.join()
    assert time.monotonic() - started >= 0.3


def test_set_systemd_want_does_not_wait_for_a_member_that_does_not_answer(units):
    h1 = units
    _h2_reports(h1, is_primary=1, open_count=1, alive=False)
    result = h1.run("--timeout=30", "set-systemd-want", "vm1", "(none)")
    assert result.exit_code == 0, result.stderr
    assert "h2 does not answer (no liveness report within 60s): not waited for" in result.stderr


def test_set_systemd_want_on_a_host_waits_until_its_start_unit_opened_the_device(units):
    """The device up on h2 and not open: waited for until it is; not up
    there: its marsd starts the units once it is, said and not waited for."""
    h1 = units
    _h2_reports(h1, is_primary=0, open_count=0)
    result = h1.run("--timeout=30", "set-systemd-want", "vm1", "h2")
    assert result.exit_code == 0, result.stderr
    assert "the device is not up on h2: its units start there once it is" in result.stderr

    _h2_reports(h1, is_primary=1, open_count=0)
    timed_out = h1.run("--timeout=0.3", "set-systemd-want", "vm1", "h2")
    assert timed_out.exit_code == 3, timed_out.stderr
    assert "waiting for its units to start on h2 of vm1: the device is not open on h2 yet" \
        in timed_out.stderr
    _h2_reports(h1, is_primary=1, open_count=1)
    h1.ok("--timeout=30", "set-systemd-want", "vm1", "h2")


def test_set_systemd_unit_gives_the_want_to_the_designated_primary_and_empty_removes_all(
        scenario):
    """As kernel MARS's marsadm: recording a start unit sets systemd-want
    to the designated primary (which then runs the units); an empty start
    unit removes units and want (nothing runs them any more)."""
    h1 = scenario.host
    h1.ok("--force", "set-systemd-want", "vm1", "h2")
    h1.ok("set-systemd-unit", "vm1", "start-vm1.service", "stop-vm1.target")
    assert h1.ok("get-systemd-want", "vm1") == "h1\n"
    h1.ok("set-systemd-unit", "vm1", "")
    assert (h1.ok("get-systemd-unit", "vm1"), h1.ok("get-systemd-want", "vm1")) == ("", "")


def test_secondary_makes_a_set_want_none_and_leaves_an_unset_one_unset(scenario):
    """As kernel MARS's `secondary`: the units stop everywhere."""
    h1 = scenario.host
    h1.ok("set-systemd-unit", "vm1", "start-vm1.service", "stop-vm1.target")
    for res in ("vm1", "vm2"):                  # vm2 has no units, no want
        h1.ok("secondary", "--timeout=5", res)
    assert h1.ok("get-systemd-want", "vm1") == "(none)\n"
    assert h1.ok("get-systemd-want", "vm2") == ""


def test_view_with_all_prints_a_header_before_each_of_my_resources(scenario):
    assert scenario.host.ok("view-resource-size", "all") == (
        f"{HEADER_VM1}{MIB}\n{HEADER_VM2}524288\n")
    assert scenario.host.ok("view-resource-members", "all") == (
        f"{HEADER_VM1}h1\nh2\n{HEADER_VM2}h1\n")


def test_view_with_a_comma_list_prints_headers_in_natural_order(scenario):
    assert scenario.host.ok("view-get-primary", "vm3,vm1") == f"{HEADER_VM1}h1\n{GUEST_VM3}h2\n"


def test_view_with_headers_prints_only_the_header_for_an_empty_value(scenario):
    assert scenario.host.ok("view-get-disk", "vm1,vm3") == (
        f"{HEADER_VM1}{scenario.disk1}\n{GUEST_VM3}")


def test_header_counts_members_and_cluster_hosts_as_they_change(scenario):
    h1 = scenario.host
    h1.peer_apply([("ips/ip-h4", "127.0.0.4", "h4"),
                   ("resource-vm2/data-h4", "/dev/vg/vm2", "h4")])
    assert h1.ok("view-sync-size", "all") == (
        f"--------- resource vm1 1.000 MiB [2/4]\n{MIB}\n"
        "--------- resource vm2 512.000 KiB [2/4]\n524288\n")


def test_views_print_nothing_at_all_for_a_host_without_resources(make_host):
    lonely = make_host("h4")
    lonely.ok("--ip=127.0.0.4", "create-cluster")
    for macro in ("view-my-resources", "view-all-resources"):
        assert lonely.ok(macro) == ""
    for macro in ("view-get-primary", "view-disk-present", "view-resource-size"):
        assert lonely.ok(macro, "all") == ""


def test_views_work_on_a_store_that_does_not_exist_yet(make_host):
    fresh = make_host("h5")
    assert fresh.ok("view-cluster-members") == ""
    assert fresh.ok("lowlevel-ls-host-ips") == ""


@pytest.mark.parametrize("value, text", [
    ("", ""), ("0", "0\n"), ("h1", "h1\n"), ([], ""), (["a", "b"], "a\nb\n")])
def test_format_value_prints_value_and_newline_or_nothing(value, text):
    assert format_value(value) == text


def test_render_refuses_an_unknown_macro_and_a_missing_resource(scenario):
    with scenario.host.store() as store:
        state = store.state()
    with pytest.raises(MarsError, match="unknown view macro"):
        render(state, "no-such-macro", "vm1")
    with pytest.raises(MarsError, match="needs a resource name"):
        render(state, "get-primary")


def test_a_malformed_size_from_a_peer_gives_a_one_line_error_not_a_traceback(scenario):
    scenario.host.peer_apply([("resource-vm3/size", "abc", "h2")])
    result = scenario.host.run("view-resource-size", "vm3")
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "vm3" in result.stderr


def test_a_handover_that_timed_out_gives_the_want_back_with_the_primary(scenario):
    """`primary` moves a set want to the new host; when it times out while
    the old primary still has its device up, the primary goes back to it,
    and the want must too: left on this host, it would make the old
    primary's marsd stop its running units."""
    h1 = scenario.host
    h1.ok("set-systemd-unit", "vm1", "start-vm1.service", "stop-vm1.target")
    h1.peer_apply([("resource-vm1/primary", "h2", "h2"),
                   ("resource-vm1/systemd-want", "h2", "h2"),
                   ("resource-vm1/actual-h2/is-primary", "1", "h2")])
    h1.ok("pause-fetch", "vm1")
    timed_out = h1.run("primary", "--force", "--timeout=0.2", "vm1")
    assert timed_out.exit_code != 0 and "the primary of vm1 is h2 again" in timed_out.stderr, \
        (timed_out.stdout, timed_out.stderr)
    assert (h1.ok("view-get-primary", "vm1"), h1.ok("get-systemd-want", "vm1")) == \
        ("h2\n", "h2\n")

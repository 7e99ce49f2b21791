"""marsadm as existing MARS tooling drives it: the behaviour of kernel MARS's
marsadm (github schoebel/mars, userspace/marsadm, Perl) that the original
bash Football (github schoebel/football, football.sh) relies on. Each test
names the kernel function its fact comes from.

- Resource headers: `do_all_res` prints, before each resource of `all` or
  of a comma list (sorted by `expand_res_list` with `alphanum_cmp`),
  `--------- $type $hint` where $type is `resource` for a member
  (`is_member`), else `guest`, and $hint is the `default-resource` macro
  `%{res} %human-numbers{}{ }{ }{%resource-size{}} [%count-resource-peers{}/
  %count-configured-peers{}]`; `number2human` gives `1.000 MiB`. A single
  resource name takes the `do_one_res` path: no header. The `view` branch of
  the main program runs every `view-<macro>` through `do_all_res`, so every
  macro given `all` prints the headers, `view-my-resources` too (not one
  whose name contains "cluster": `expand_res_list` leaves `all` alone there).
  football.sh (`compute_nr_syncs`) parses them:
  `marsadm view-my-resources all | grep ".---" | awk '{ print $3; }'`, and
  `marsadm view-sync-rest all | grep '^[0-9]\\+$' | grep -v '^0$' | wc -l`.
- Views on a resource this host is not a member of answer, exit 0:
  `do_one_res` skips `check_res_member` for commands matching `^view`.
- `view-wait-{is,todo}-{attach,sync,fetch,replay,primary,secondary}-{on,off}`
  (the `%trivial_globs` view macros, carried out by `wait_cond` with
  `check_status` / `check_todo`) wait until the switch is on/off, at most
  --timeout (`sleep_timeout`). On timeout `check_status` dies ("Timeout"),
  `do_all_res` adds the resource's `fail_action`, the program exits with its
  error count: 2. football.sh runs
  `marsadm view-wait-is-primary-off $res || echo IGNORE`.
- `delete-resource` (`delete_res_phase1`) refuses without --force while
  `get_total_peers` finds a host with a data-, device- or replay- link:
  "resource '$res' is not empty: first remove the hosts '$h_list' via
  leave-resource"; it exits 2 (ldie + fail_action) and changes nothing.
- `set-systemd-unit` (`set_systemd_unit_phase1` -> `set_link`,
  `finish_links`) always writes its links with a fresh timestamp, also when
  the value is the same."""

import subprocess
import time

import pytest

from mars.dataviews import WAIT_VIEWS
from mars.views import human_size
from tests.unit.conftest import MIB, make_disk

HEADER_VM1 = "--------- resource vm1 1.000 MiB [2/3]\n"
HEADER_VM2 = "--------- resource vm2 512.000 KiB [1/3]\n"
GUEST_VM3 = "--------- guest vm3 2.000 MiB [2/3]\n"
EXIT_TIMED_OUT = 3       # the kernel exits 2 (its error count); ours keeps its codes
EXIT_REFUSED = 1


def football_pipe(stdout, pipeline):
    """Feed marsadm's output through the shell pipeline football.sh puts
    after it (a fixed test string, no user input)."""
    done = subprocess.run(["bash", "-c", pipeline], input=stdout, capture_output=True,
                          text=True, check=True)
    return done.stdout




def timed(host, *args):
    started = time.monotonic()
    result = host.run(*args)
    return result, time.monotonic() - started


# ----------------------------------------------------------- resource headers
@pytest.mark.parametrize("count, text", [
    (0, "0 B"), (512, "512 B"), (1023, "1023 B"), (1024, "1.000 KiB"),
    (512 * 1024, "512.000 KiB"), (MIB, "1.000 MiB"), (1536 * 1024, "1.500 MiB"),
    (9 << 30, "9216.000 MiB"), (10 << 30, "10.000 GiB"), (20 << 30, "20.000 GiB"),
    (9 << 40, "9216.000 GiB"), (10 << 40, "10.000 TiB")])
def test_header_size_is_printed_as_kernel_number2human_does(count, text):
    """`number2human` with no unit: M from 1 MiB, G and T only from 9.99 of
    them, three decimals, whole bytes below 1 KiB."""
    assert human_size(count) == text


@pytest.mark.parametrize("macro, vm1, vm2", [
    ("view-resource-size", f"{MIB}\n", "524288\n"),
    ("view-get-primary", "h1\n", "h1\n"),
    ("view-resource-members", "h1\nh2\n", "h1\n"),
    ("view-sync-rest", "0\n", "0\n"),
    ("view-diskstate", "NoAttach\n", "NoAttach\n"),
    ("view-replstate", "NotStarted\n", "NotStarted\n"),
    ("view-is-primary", "0\n", "0\n"),
    ("view-role", "NotYetPrimary\n", "NotYetPrimary\n"),
    ("view-my-resources", "vm1\nvm2\n", "vm1\nvm2\n"),
    ("view-all-resources", "vm1\nvm2\nvm3\n", "vm1\nvm2\nvm3\n"),
])
def test_every_view_macro_given_all_prints_the_kernel_header_before_each_resource(
        scenario, macro, vm1, vm2):
    """`do_all_res`: `--------- resource <default-resource macro>` per resource."""
    assert scenario.host.ok(macro, "all") == f"{HEADER_VM1}{vm1}{HEADER_VM2}{vm2}"


def test_view_cluster_members_given_all_prints_the_hosts_once(scenario):
    """`expand_res_list` does not expand `all` for a command whose name
    contains "cluster"; the kernel then prints only a warning ("resource
    qualifier 'all' does not match any resource or guest names"). Here the
    hosts are printed once, without a header."""
    assert scenario.host.ok("view-cluster-members", "all") == "h1\nh2\nh3\n"


def test_the_summary_view_given_all_prints_the_header_before_each_resource(scenario):
    """`view all` goes through `do_all_res` like every view."""
    out = scenario.host.ok("view", "all")
    assert out.startswith(HEADER_VM1 + "vm1 [2/3] ")
    assert f"\n{HEADER_VM2}vm2 [1/3] " in out
    assert not scenario.host.ok("view", "vm1").startswith("---")


@pytest.mark.parametrize("macro", ["view-resource-size", "view-get-primary", "view-sync-rest",
                                   "view-diskstate", "view-is-primary", "view"])
def test_a_single_resource_name_prints_no_header(scenario, macro):
    """`do_all_res`: no comma and not `all` -> `do_one_res`, no header."""
    assert "---------" not in scenario.host.ok(macro, "vm1")


def test_a_list_is_printed_in_natural_order_with_guest_for_a_non_member(scenario, tmp_path):
    """`expand_res_list` sorts with `alphanum_cmp`; `do_all_res` says `guest`
    where `is_member` is false."""
    h1 = scenario.host
    h1.ok("create-resource", "vm10", make_disk(tmp_path / "disk10", MIB))
    assert h1.ok("view-get-primary", "vm10,vm3,vm2") == (
        f"{HEADER_VM2}h1\n{GUEST_VM3}h2\n--------- resource vm10 1.000 MiB [1/3]\nh1\n")
    assert h1.ok("view-get-primary", "all").startswith(f"{HEADER_VM1}h1\n{HEADER_VM2}h1\n"
                                                       "--------- resource vm10 ")


def test_footballs_resource_list_reads_the_names_from_the_headers(scenario):
    """football.sh compute_nr_syncs:
    `marsadm view-my-resources all | grep ".---" | awk '{ print $3; }'`."""
    out = scenario.host.ok("view-my-resources", "all")
    assert football_pipe(out, "grep '.---' | awk '{ print $3; }'") == "vm1\nvm2\n"


def test_footballs_sync_counter_counts_the_resources_still_syncing(scenario, tmp_path):
    """football.sh compute_nr_syncs:
    `marsadm view-sync-rest all | grep '^[0-9]\\+$' | grep -v '^0$' | wc -l`;
    the headers must not count."""
    h1 = scenario.host
    count = "grep '^[0-9]\\+$' | grep -v '^0$' | wc -l"
    assert football_pipe(h1.ok("view-sync-rest", "all"), count).strip() == "0"
    h1.ok("join-resource", "vm3", make_disk(tmp_path / "disk3", 2 * MIB))   # nothing synced
    out = h1.ok("view-sync-rest", "all")
    assert "--------- resource vm3 2.000 MiB [3/3]\n2097152\n" in out
    assert football_pipe(out, count).strip() == "1"


# ---------------------------------------------------------------- non-members
@pytest.mark.parametrize("macro, answer", [
    ("view-get-primary", "h2\n"), ("view-resource-members", "h2\nh3\n"),
    ("view-resource-size", f"{2 * MIB}\n"), ("view-disk-present", ""), ("view-get-disk", ""),
    ("view-sync-rest", ""), ("view-work-rest", ""), ("view-fetch-rest", ""),
    ("view-replay-rest", ""), ("view-flags", ""), ("view-diskstate", "NotJoined\n"),
    ("view-replstate", "NotJoined\n"), ("view-role", "None\n"), ("view-is-primary", "0\n"),
])
def test_views_on_a_resource_this_host_is_not_a_member_of_answer_with_exit_0(
        scenario, macro, answer):
    """`do_one_res` skips `check_res_member` for `^view` commands."""
    result = scenario.host.run(macro, "vm3")
    assert (result.exit_code, result.stdout, result.stderr) == (0, answer, "")


# ---------------------------------------------------------------- wait macros
def test_every_kernel_wait_macro_exists():
    """The kernel's list: `wait-{is,todo}-{attach,sync,fetch,replay,primary,
    secondary}-{on,off}` (%trivial_globs)."""
    assert sorted(WAIT_VIEWS) == sorted(
        f"wait-{side}-{name}-{end}" for side in ("is", "todo")
        for name in ("attach", "sync", "fetch", "replay", "primary", "secondary")
        for end in ("on", "off"))


@pytest.mark.parametrize("macro, res", [
    ("view-wait-is-primary-off", "vm1"),        # marsd is not running: no device here
    ("view-wait-is-attach-off", "vm1"),
    ("view-wait-is-sync-off", "vm1"),
    ("view-wait-is-secondary-on", "vm1"),
    ("view-wait-todo-attach-on", "vm1"),
    ("view-wait-todo-fetch-on", "vm1"),
    ("view-wait-todo-primary-on", "vm1"),       # h1 is the designated primary
    ("view-wait-todo-secondary-off", "vm1"),
    ("view-wait-is-primary-off", "vm3"),        # not a member: check_status reads 0
    ("view-wait-todo-attach-off", "vm3"),       # not a member: check_todo finds no switch
    ("view-wait-todo-attach-on", "vm3"),
])
def test_a_wait_macro_whose_condition_holds_returns_at_once_printing_nothing(
        scenario, macro, res):
    result = scenario.host.run("--timeout=60", macro, res)     # would exit 3 if it waited
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "")


@pytest.mark.parametrize("macro", ["view-wait-is-primary-on", "view-wait-is-attach-on",
                                   "view-wait-todo-attach-off", "view-wait-todo-secondary-on"])
def test_a_wait_macro_whose_condition_does_not_hold_times_out_with_exit_3(
        scenario, macro):
    """`check_status`/`check_todo` -> `sleep_timeout` -> ldie; `do_all_res`
    -> `fail_action`: error count 2. Nothing is changed."""
    h1 = scenario.host
    before = h1.ok("view-tree")
    result, seconds = timed(h1, "--timeout=0.5", macro, "vm1")
    assert result.exit_code == EXIT_TIMED_OUT, (result.stdout, result.stderr, result.exception)
    assert result.stdout == ""
    assert result.stderr.startswith(f"marsadm {macro}: timed out after 0.5s")
    assert result.stderr.count("\n") == 1
    assert seconds >= 0.5                       # waited its --timeout
    assert h1.ok("view-tree") == before


def test_a_timed_out_wait_names_marsd_not_running(scenario):
    result = scenario.host.run("--timeout=0.2", "view-wait-is-primary-on", "vm1")
    assert "marsd is not running on h1" in result.stderr


def test_wait_is_primary_follows_what_marsd_reports(scenario, fake_marsd):
    """Football's handover check `view-wait-is-primary-off`: on while marsd
    reports the device up here (as view-is-primary), off once it is down."""
    h1 = scenario.host
    with h1.store() as store:
        store.write({"resource-vm1/actual-h1/is-primary": 1})
    fake_marsd("vm1", is_primary=True, attached=True)
    assert h1.ok("view-is-primary", "vm1") == "1\n"
    assert h1.ok("view-wait-is-primary-on", "vm1") == ""
    assert h1.run("--timeout=0.3", "view-wait-is-primary-off", "vm1").exit_code == EXIT_TIMED_OUT
    assert h1.run("--timeout=0.3", "view-wait-is-secondary-on", "vm1").exit_code == EXIT_TIMED_OUT
    with h1.store() as store:
        store.write({"resource-vm1/actual-h1/is-primary": 0})
    assert h1.ok("view-wait-is-primary-off", "vm1") == ""


def test_wait_is_secondary_means_the_device_is_not_up_here(scenario):
    """Kernel `wait_cond` maps is-secondary to is-primary and means to invert
    it, but tests `$name eq "secondary"`, never true: its wait-is-secondary-on
    waits for is-primary=1. Here it waits for what its name says."""
    h1 = scenario.host
    assert h1.ok("view-wait-is-secondary-on", "vm1") == ""
    assert h1.run("--timeout=0.2", "view-wait-is-secondary-off", "vm1").exit_code == EXIT_TIMED_OUT


def test_wait_todo_follows_the_switches_the_admin_sets(scenario):
    h1 = scenario.host
    assert h1.run("--timeout=0.2", "view-wait-todo-fetch-off", "vm1").exit_code == EXIT_TIMED_OUT
    h1.ok("pause-fetch", "vm1")
    assert h1.ok("view-wait-todo-fetch-off", "vm1") == ""
    h1.ok("resume-fetch", "vm1")
    h1.ok("pause-replay-global", "vm1")         # paused for every member: not wanted here either
    assert h1.ok("view-wait-todo-replay-off", "vm1") == ""
    h1.ok("secondary", "--timeout=0", "vm1")
    assert h1.ok("view-wait-todo-secondary-on", "vm1") == ""
    assert h1.ok("view-wait-todo-primary-off", "vm1") == ""


def test_a_wait_macro_given_all_waits_for_each_resource_after_its_header(scenario):
    """`do_all_res`: header, then the wait; a timed-out resource does not
    stop the others; the exit code counts the failure."""
    h1 = scenario.host
    assert h1.ok("view-wait-is-primary-off", "all") == HEADER_VM1 + HEADER_VM2
    result = h1.run("--timeout=0.2", "view-wait-is-primary-on", "all")
    assert result.exit_code == EXIT_TIMED_OUT
    assert result.stdout == HEADER_VM1 + HEADER_VM2
    assert result.stderr.count("timed out") == 2


# ------------------------------------------------------------ delete-resource
def test_delete_resource_refuses_while_hosts_hold_the_resource_and_changes_nothing(scenario):
    """`delete_res_phase1`: "resource '$res' is not empty: first remove the
    hosts '$h_list' via leave-resource" unless --force (the kernel exits 2 there,
    ldie + fail_action; ours 1: refused, nothing changed)."""
    h1 = scenario.host
    before = h1.ok("view-tree")
    result = h1.run("delete-resource", "vm1")
    assert result.exit_code == EXIT_REFUSED, (result.stderr, result.exception)
    assert result.stdout == ""
    assert result.stderr.startswith("marsadm delete-resource: resource 'vm1' is not empty: "
                                    "first remove the hosts 'h1,h2' via leave-resource")
    assert "--force" in result.stderr
    assert h1.ok("view-tree") == before


def test_delete_resource_counts_a_host_that_is_not_this_one_and_refuses_a_list_as_a_whole(
        scenario):
    """`get_total_peers` counts every host with a data-, device- or replay-
    link; a non-member may run delete-resource (`do_one_res` skips
    `check_res_member` for it). vm2 is held by h1 only, vm3 by h2 and h3."""
    h1 = scenario.host
    before = h1.ok("view-tree")
    result = h1.run("delete-resource", "vm2,vm3")
    assert result.exit_code == EXIT_REFUSED
    assert "resource 'vm2' is not empty: first remove the hosts 'h1' via" in result.stderr
    assert h1.ok("view-tree") == before
    result = h1.run("delete-resource", "vm3")
    assert "resource 'vm3' is not empty: first remove the hosts 'h2,h3' via" in result.stderr
    assert h1.ok("view-tree") == before


def test_delete_resource_goes_once_every_host_has_left(scenario):
    h1 = scenario.host
    h1.ok("--force", "leave-resource", "vm2")      # the designated primary leaves by force
    assert h1.ok("delete-resource", "vm2") == ""
    assert h1.ok("view-all-resources") == "vm1\nvm3\n"


def test_delete_resource_with_force_deletes_a_resource_with_members(scenario):
    """`delete_res_phase1` with --force: "BRUTE FORCE resource destruction"."""
    h1 = scenario.host
    assert h1.ok("--force", "delete-resource", "vm1") == ""
    assert h1.ok("view-all-resources") == "vm2\nvm3\n"


# ----------------------------------------------------------- set-systemd-unit
def test_set_systemd_unit_rewrites_an_unchanged_value_with_a_fresh_stamp(scenario):
    """`set_link` + `finish_links` rewrite the links with a new timestamp even
    when the value is the same: the last set-systemd-unit wins, also over a
    different value another host wrote before it (still on its way here)."""
    h1 = scenario.host
    h1.ok("set-systemd-unit", "vm1", "start-vm1.service", "stop-vm1.service")
    with h1.store() as store:
        first = store.get("resource-vm1/systemd-start-unit").stamp
    h1.ok("set-systemd-unit", "vm1", "start-vm1.service", "stop-vm1.service")
    with h1.store() as store:
        second = store.get("resource-vm1/systemd-start-unit").stamp
        assert second > first
        assert store.get("resource-vm1/systemd-stop-unit").stamp == second
        # h2's different wish, written between the two, arrives only now
        store.apply([("resource-vm1/systemd-start-unit", "other.service", first + 1, "h2")])
    assert h1.ok("get-systemd-unit", "vm1") == "start-vm1.service stop-vm1.service\n"

"""Facts (football/facts.py): the parsers on output the bundled marsadm
printed in a running lab (tests/unit/data/marsadm) and printed here offline,
and the facts that ask a host, with a fake runner standing in for it."""

from pathlib import Path
from types import SimpleNamespace

import pytest

from football import facts
from football.errors import Illegal
from football.facts import parse_host_ips, parse_lines, parse_view_all, parse_view_summary
from football.inventory import Host
from football.transport import CommandFailed
from mars.logfile import LogDamage
from plugins import defaults
from tests.unit.conftest import MIB, make_disk

DATA = Path(__file__).parent / "data" / "marsadm"


def recorded(name):
    return (DATA / name).read_text()


# --- parsers on recorded output --------------------------------------------------------

def test_parse_view_all_maps_each_resource_to_its_value():
    assert parse_view_all(recorded("view_diskstate_all_a1.txt")) == {"vm1": "UpToDate"}


def test_parse_view_all_gives_an_empty_value_to_a_resource_the_macro_printed_nothing_for():
    text = ("--------- resource vm1 335544320 [2/2]\n"
            "--------- resource vm2 1048576 [1/2]\n"
            "a2\n")
    assert parse_view_all(text) == {"vm1": "", "vm2": "a2"}


def test_parse_view_all_of_a_host_without_resources_is_empty():
    assert parse_view_all("") == {}


def test_parse_lines_gives_one_name_per_line():
    assert parse_lines(recorded("view_resource_members_a2.txt")) == ["a1", "a2"]


def test_parse_lines_of_an_empty_list_is_empty():
    assert recorded("view_my_resources_b1.txt") == ""
    assert parse_lines(recorded("view_my_resources_b1.txt")) == []
    assert parse_lines("\n  \n") == []


def test_parse_host_ips_maps_each_cluster_host_to_its_address():
    assert parse_host_ips(recorded("lowlevel_ls_host_ips_a1.txt")) == {
        "a1": "127.0.99.11", "a2": "127.0.99.12"}


def test_parse_host_ips_of_no_cluster_is_empty_and_skips_lines_it_cannot_read():
    assert parse_host_ips("") == {}
    assert parse_host_ips("a1 127.0.0.1\ngarbage\n") == {"a1": "127.0.0.1"}


def test_parse_view_summary_reads_a_secondarys_line():
    assert parse_view_summary(recorded("view_all_a1.txt")) == {"vm1": {
        "diskstate": "UpToDate", "replstate": "Replaying", "flags": "dCASFR",
        "role": "Secondary", "primary": "a2", "members": 2, "notes": []}}


def test_parse_view_summary_reads_a_primarys_line_and_skips_its_detail_lines():
    assert parse_view_summary(recorded("view_all_a2.txt")) == {"vm1": {
        "diskstate": "UpToDate", "replstate": "Replicating", "flags": "DCASFR",
        "role": "Primary", "primary": "a2", "members": 2, "notes": []}}


def test_parse_view_summary_of_a_host_without_resources_is_empty():
    assert recorded("view_all_b1.txt") == ""
    assert parse_view_summary(recorded("view_all_b1.txt")) == {}


def test_parse_view_summary_reads_none_designated_as_an_empty_primary():
    # mars/dataviews.py `summary` prints `(none)` when no primary is designated
    line = "vm1 [2/2] UpToDate Replaying dCASFR Secondary (none)\n"
    assert parse_view_summary(line)["vm1"]["primary"] == ""
    assert parse_view_summary(line)["vm1"]["role"] == "Secondary"


def test_parse_view_summary_reads_kernel_marsadms_line_with_how_long_the_primary_is_unheard():
    """Kernel MARS's default macro ends with `commstate` (HH:MM:SS since the
    designated primary was heard from, once past --window): a replica whose
    primary died must not vanish from the summary (status, the planner)."""
    lines = ("  vm3 [2/3] UpToDate PrimaryUnreachable dCASFR Secondary h2 00:05:12\n"
             "  vm4 [2/2] UpToDate NoPrimaryDesignated dCASFR Secondary  101:00:07\n")
    summary = parse_view_summary(lines)
    assert (summary["vm3"]["replstate"], summary["vm3"]["primary"]) == ("PrimaryUnreachable", "h2")
    assert (summary["vm4"]["role"], summary["vm4"]["primary"]) == ("Secondary", "")


def test_parse_view_summary_reads_what_marsadm_prints_after_secondary(h1, tmp_path):
    h1.ok("create-resource", "vm1", make_disk(tmp_path / "disk", MIB))
    h1.ok("secondary", "vm1")
    printed = h1.ok("view", "all")
    assert "(none)" in printed
    assert parse_view_summary(printed) == {"vm1": {
        "diskstate": "NoAttach", "replstate": "NotStarted", "flags": "dCaSFR",
        "role": "Secondary", "primary": "", "members": 1, "notes": []}}


def test_parse_view_summary_reads_a_damaged_log_whose_diskstate_has_spaces():
    # mars/dataviews.py `diskstate` prints `DefectiveLog[<str(LogDamage)>]`
    damage = LogDamage("/srv/a1/mars/resource-vm1/log-000000002-a2", 4096, "bad digest",
                       torn_tail=False)
    line = f"vm1 [2/2] DefectiveLog[{damage}] Replaying DC-SFr Secondary a2\n"
    assert parse_view_summary(line) == {"vm1": {
        "diskstate": f"DefectiveLog[{damage}]", "replstate": "Replaying", "flags": "DC-SFr",
        "role": "Secondary", "primary": "a2", "members": 2, "notes": []}}


def test_parse_view_summary_keeps_the_lines_that_say_why_a_replica_waits_or_fails():
    # a marsd restarted while the crashed device's filesystem is still mounted
    text = ("vm1 [2/2] UpToDate NotYetPrimary dCaSFR NotYetPrimary a1\n"
            "  waiting: /dev/loop1 of the device that crashed with marsd is still in use\n"
            "  a2: rest 1 MiB, rate 0 B/s, eta -\n"
            "vm2 [2/2] UpToDate Replaying dCASFR Secondary a2\n"
            "  error: the disk refused a write\n")
    summary = parse_view_summary(text)
    assert summary["vm1"]["notes"] == [
        "waiting: /dev/loop1 of the device that crashed with marsd is still in use"]
    assert summary["vm2"]["notes"] == ["error: the disk refused a write"]


def test_parse_view_summary_reads_an_outdated_diskstate():
    line = "vm1 [2/2] OutDated[FR] Replaying DC-sfr Secondary a2\n"
    assert parse_view_summary(line)["vm1"]["diskstate"] == "OutDated[FR]"


def test_parse_view_summary_reads_every_resource():
    text = ("vm1 [2/2] UpToDate Replaying dCASFR Secondary a2\n"
            "vm2 [1/2] UpToDate Replicating DCASFR Primary a1\n"
            "  device /dev/mars/vm2 -> /dev/loop1, open count 0, logging 0 B/s\n")
    summary = parse_view_summary(text)
    assert sorted(summary) == ["vm1", "vm2"]
    assert (summary["vm2"]["role"], summary["vm2"]["members"]) == ("Primary", 1)


# --- facts asked of a host -------------------------------------------------------------

@pytest.fixture
def host(runner):
    host = Host(name="h1", address="10.0.0.1")
    host._runner = runner
    return host


FINDMNT = ["findmnt", "--noheadings", "--output", "SOURCE", "--mountpoint", "/var/lib/lxc/vm1"]
BLKID = ["blkid", "--probe", "--output", "value", "--match-tag", "TYPE", "/dev/mars/vm1"]


def test_mount_source_is_the_device_mounted_at_the_path(host, runner):
    runner.expect(FINDMNT, stdout="/dev/mars/vm1\n")
    assert facts.mount_source(host, "/var/lib/lxc/vm1") == "/dev/mars/vm1"


def test_mount_source_of_a_path_where_nothing_is_mounted_is_none(host, runner):
    runner.expect(FINDMNT, exit=1)
    assert facts.mount_source(host, "/var/lib/lxc/vm1") is None


def test_mount_source_that_findmnt_cannot_tell_is_an_error_not_nothing_mounted(host, runner):
    """findmnt missing (127) or failing otherwise was read as "nothing
    mounted": a mount went on top of the one there."""
    runner.expect(FINDMNT, exit=127, stderr="findmnt: command not found\n")
    with pytest.raises(CommandFailed, match="command not found"):
        facts.mount_source(host, "/var/lib/lxc/vm1")


def test_mount_source_with_empty_output_is_none(host, runner):
    runner.expect(FINDMNT, stdout="\n")
    assert facts.mount_source(host, "/var/lib/lxc/vm1") is None


def test_filesystem_type_is_what_blkid_reads(host, runner):
    runner.expect(BLKID, stdout="ext4\n")
    assert facts.filesystem_type(host, "/dev/mars/vm1") == "ext4"


def test_filesystem_type_of_a_device_without_a_filesystem_is_empty(host, runner):
    runner.expect(BLKID, exit=2)
    assert facts.filesystem_type(host, "/dev/mars/vm1") == ""


def test_cluster_hosts_parses_lowlevel_ls_host_ips_and_is_empty_outside_a_cluster(host,
                                                                                  runner):
    runner.expect(["marsadm", "lowlevel-ls-host-ips"],
                  stdout=recorded("lowlevel_ls_host_ips_a1.txt"))
    runner.expect(["marsadm", "lowlevel-ls-host-ips"], stdout="")
    assert facts.cluster_hosts(host) == {"a1": "127.0.99.11", "a2": "127.0.99.12"}
    facts.forget()          # a second run of the fact (the cache is per run)
    assert facts.cluster_hosts(host) == {}


@pytest.mark.parametrize("fact, argv", [
    (lambda host: facts.cluster_hosts(host), ["marsadm", "lowlevel-ls-host-ips"]),
    (lambda host: facts.my_resources(host), ["marsadm", "view-my-resources"]),
    (lambda host: facts.members(host, "vm1"), ["marsadm", "view-resource-members", "vm1"]),
    (lambda host: facts.primary(host, "vm1"), ["marsadm", "view-get-primary", "vm1"]),
])
def test_a_fact_that_cannot_be_read_raises_naming_host_and_command_never_answers_none(
        host, runner, fact, argv):
    """A failed `view-my-resources` must not read as 'no resources here'."""
    runner.expect(argv, stderr="marsadm: marsd not answering\n", exit=3)
    with pytest.raises(facts.FactUnavailable, match=f"{host.name}: `{' '.join(argv)}` exited 3: "
                       "marsadm: marsd not answering"):
        fact(host)


def test_view_all_runs_the_macro_for_all_resources(host, runner):
    runner.expect(["marsadm", "view-diskstate", "all"],
                  stdout=recorded("view_diskstate_all_a1.txt"))
    assert facts.view_all(host, "diskstate") == {"vm1": "UpToDate"}


def test_wait_cluster_names_the_hosts_whose_marsd_does_not_answer():
    stderr = ("marsadm: timed out after 5s, marsd not answering on a2, b1 (a2: connection "
              "refused; b1: timed out); start marsd there or check the network\n")
    assert facts.parse_not_answering(stderr) == {"a2", "b1"}
    assert facts.parse_not_answering("marsadm: not a cluster member\n") is None


# --- the per-run cache ------------------------------------------------------------------

MEMBERS = ["marsadm", "view-resource-members", "vm1"]


@pytest.fixture
def cached(host):
    facts.forget()
    yield host
    facts.forget()


def test_a_cached_fact_is_asked_once_until_a_command_changes_a_host(cached):
    runner = cached._runner
    runner.expect(MEMBERS, stdout="h1\nh2\n")
    assert facts.members(cached, "vm1") == ["h1", "h2"]
    assert facts.members(cached, "vm1") == ["h1", "h2"]
    assert runner.calls == [tuple(MEMBERS)]
    runner.expect(["marsadm", "join-resource", "vm1", "/dev/vg0/vm1"])
    cached.run(["marsadm", "join-resource", "vm1", "/dev/vg0/vm1"])
    runner.expect(MEMBERS, stdout="h1\nh2\nh3\n")
    assert facts.members(cached, "vm1") == ["h1", "h2", "h3"]


def test_a_lock_taken_or_a_read_does_not_forget_the_cached_facts(cached):
    runner = cached._runner
    runner.expect(MEMBERS, stdout="h1\n")
    facts.members(cached, "vm1")
    runner.expect(["football-host", "lock", "/var/lock/football", "take", "football"])
    cached.run(["football-host", "lock", "/var/lock/football", "take", "football"])
    runner.expect(["marsadm", "view-sync-rest", "vm1"], stdout="0\n")
    cached.run(["marsadm", "view-sync-rest", "vm1"])
    assert facts.members(cached, "vm1") == ["h1"]
    assert runner.calls.count(tuple(MEMBERS)) == 1


def test_a_failed_fact_is_not_cached_and_asked_again(cached):
    runner = cached._runner
    runner.expect(MEMBERS, stderr="marsd not answering", exit=1)
    with pytest.raises(facts.FactUnavailable):
        facts.members(cached, "vm1")
    runner.expect(MEMBERS, stdout="h1\n")
    assert facts.members(cached, "vm1") == ["h1"]


def test_each_poll_of_a_wait_reads_the_facts_afresh(cached):
    from football.ops.base import wait_until
    runner = cached._runner
    for answer in ("h1\n", "h1\n", "h1\nh2\n"):
        runner.expect(MEMBERS, stdout=answer)
    seen = wait_until(lambda: "h2" in facts.members(cached, "vm1") and "yes", 5, 0,
                      "h2 to be a member")
    assert seen == "yes" and runner.calls.count(tuple(MEMBERS)) == 3


def test_synced_bytes_are_what_marsd_counted_else_the_estimate_marked_as_such(host, runner):
    from football.ops.base import synced_bytes
    received = ["marsadm", "view-sync-received", "vm1"]
    runner.expect(received, stdout="7340032\n")
    assert synced_bytes([host], "vm1", estimate=1 << 30) == (7340032, True)
    # kernel MARS has no such view: the estimate stands in, and says so
    runner.expect(received, stderr="marsadm: unknown macro view-sync-received\n", exit=1)
    assert synced_bytes([host], "vm1", estimate=1 << 30) == (1 << 30, False)


# --- finding a resource's primary (plugins/defaults.py) ---------------------------------

def test_a_resource_no_host_has_is_refused_naming_the_hosts_that_could_not_be_asked(
        monkeypatch):
    def primary(host, res, timeout):
        if host.name in ("b1", "b2"):
            raise facts.HostUnreachable(f"{host.name} is unreachable: connection refused")
        raise facts.FactUnavailable(f"{host.name}: unknown resource {res}")

    monkeypatch.setattr(facts, "primary", primary)
    hosts = {name: SimpleNamespace(name=name) for name in ("a1", "a2", "b1", "b2")}
    inventory = SimpleNamespace(hosts=hosts, source="fleet.yml")
    with pytest.raises(Illegal) as caught:
        defaults.primary_host("vm1", inventory)
    assert str(caught.value) == (
        "unknown resource vm1: no host of the inventory (fleet.yml) has it; not asked, "
        "unreachable: b1 is unreachable: connection refused; b2 is unreachable: connection "
        "refused; name its host as vm1:<host> if it is not discoverable")
    monkeypatch.setattr(facts, "primary", lambda host, res, timeout: "a2")
    assert defaults.primary_host("vm1", inventory).name == "a2"


# --- a host that is slow is no host that is gone ----------------------------------------

class Raising:
    """A host whose every command raises `error`."""

    def __init__(self, error):
        self.name, self.error = "a2", error

    def run(self, argv, check=True, timeout=None):
        raise self.error


def test_a_command_that_timed_out_or_lost_its_connection_is_no_unreachable_host():
    """Reached, but slow (or the connection broke in the command): the host
    is there. Counted unreachable, it was a silent host — one that a
    failover, a repair or a migrate's cleanup may take for gone."""
    from football.ops.base import answers
    from football.transport import CommandTimedOut, ConnectionLost, Unreachable

    for error in (CommandTimedOut("a2", ["marsadm", "lowlevel-ls-host-ips"], 60),
                  ConnectionLost("a2: the connection broke while ... ran")):
        with pytest.raises(facts.FactUnavailable) as caught:
            facts.read(Raising(error), ["marsadm", "lowlevel-ls-host-ips"])
        assert not isinstance(caught.value, facts.HostUnreachable), error
        assert answers(Raising(error))
    with pytest.raises(facts.HostUnreachable, match="a2 is unreachable: no route"):
        facts.read(Raising(Unreachable("no route")), ["marsadm", "lowlevel-ls-host-ips"])
    assert not answers(Raising(Unreachable("no route")))

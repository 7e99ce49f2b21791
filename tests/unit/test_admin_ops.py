"""The pure parts of status, lock/unlock, lv-cleanup and merge/split-cluster:
parsers fed with what the bundled marsadm prints, scope and filtering,
journals, the split plan (pieces + inventory clusters → re-merges) and the
checks of the arguments. No root, no marsd: hosts are fake runners."""

import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from football import facts, lifecycle
from football.cli import cli
from football.config import Config
from football.dryrun import Planner
from football.errors import Illegal
from football.inventory import load, parse
from football.journal import Journal
from football.ops.base import Context, marsd_answers
from football.ops.cluster import (MarsCluster, MergeCluster, SplitCluster, connected_groups,
                                  every_member_answers, pieces_after_split, plan, remerges,
                                  wanted_groups)
from football.ops.lock import Lock, Unlock, check_item, check_owner
from football.ops.lvcleanup import leftovers
from football.journal import process_start, run_alive, unfinished_operations
from football.ops.status import mark_running, render, resolve_scope, select
from football.snapshot import observe_host, resource_replicas
from football.report import Reporter
from football.transport import Result, Unreachable
from tests.helpers.fakefleet import fake_fleet, football  # noqa: F401 (a fixture)
from tests.helpers.fakehost import FakeRunner

INVENTORY = {"clusters": {"cluster1": ["a1", "a2"], "cluster2": ["b1", "b2"]},
             "hosts": {"a1": {"address": "10.0.0.11"}, "a2": {"address": "10.0.0.12"},
                       "b1": {"address": "10.0.0.21"}, "b2": {"address": "10.0.0.22"},
                       "spare": {"address": "10.0.0.99"}},
             "defaults": {"transport": "local", "storage": "filevg", "manager": "lab"}}


@pytest.fixture
def ctx(tmp_path):
    inv = parse(INVENTORY, "test.yml")
    for name, host in inv.hosts.items():
        host._runner = FakeRunner(name)
    stream = io.StringIO()
    reporter = Reporter(as_json=True, stream=stream)     # events land in `stream`
    context = Context(inventory=inv, config=Config(variables=[f"state_dir={tmp_path}"],
                                                   environ={}),
                      hooks=None, reporter=reporter)
    yield context
    for host in inv.hosts.values():
        pending = getattr(host._runner, "pending", [])
        assert not pending, f"{host.name}: expected but not run: {pending}"


class MarsadmRunner:
    """A transport that runs `marsadm` in-process as a unit-test MARS host,
    so parsers read what the bundled marsadm really prints."""

    def __init__(self, mars_host):
        self.mars_host = mars_host

    def run(self, argv, *, check=True, timeout=None, input=None):
        assert argv[0] == "marsadm", argv
        done = self.mars_host.run(*argv[1:])
        return Result(self.mars_host.name, tuple(argv), done.exit_code, done.stdout,
                      done.stderr)


# --- facts: parsers on marsadm's output ------------------------------------------------

def test_parse_view_all_lists_reads_several_resources_members_as_marsadm_prints_them(scenario):
    text = scenario.host.ok("view-resource-members", "vm1,vm3")
    assert text.startswith("--------- resource vm1 ")
    assert facts.parse_view_all_lists(text) == {"vm1": ["h1", "h2"], "vm3": ["h2", "h3"]}


def test_parse_view_all_lists_keeps_a_resource_without_items_with_an_empty_list():
    text = ("--------- resource vm1 1048576 [0/2]\n"
            "--------- resource vm2 1048576 [2/2]\nh1\nh2\n")
    assert facts.parse_view_all_lists(text) == {"vm1": [], "vm2": ["h1", "h2"]}


def test_members_of_all_maps_every_resource_of_the_cluster_to_its_members(scenario):
    host = parse(INVENTORY).hosts["a1"]
    host._runner = MarsadmRunner(scenario.host)
    assert facts.members_of_all(host) == {"vm1": ["h1", "h2"], "vm2": ["h1"],
                                          "vm3": ["h2", "h3"]}


def test_members_of_all_with_a_single_resource_reads_the_list_without_header(h1, tmp_path):
    from tests.unit.conftest import MIB, make_disk
    h1.ok("create-resource", "vm1", make_disk(tmp_path / "disk", MIB))
    host = parse(INVENTORY).hosts["a1"]
    host._runner = MarsadmRunner(h1)
    assert facts.members_of_all(host) == {"vm1": ["h1"]}


def test_members_of_all_of_a_cluster_without_resources_is_empty(h1):
    host = parse(INVENTORY).hosts["a1"]
    host._runner = MarsadmRunner(h1)
    assert facts.members_of_all(host) == {}


# --- status: scope, rows, filtering, journals ------------------------------------------

def test_status_scope_is_a_host_a_cluster_or_else_a_resource_looked_for_everywhere(ctx):
    inv = ctx.inventory
    assert resolve_scope(inv, None) == ("all", "", ["a1", "a2", "b1", "b2", "spare"])
    assert resolve_scope(inv, "b2") == ("host", "b2", ["b2"])
    assert resolve_scope(inv, "cluster1") == ("cluster", "cluster1", ["a1", "a2"])
    assert resolve_scope(inv, "vm7")[:2] == ("resource", "vm7")


@pytest.mark.parametrize("name", ["vm1;reboot", "$(id)", "../etc", "-x"])
def test_status_refuses_a_name_that_is_no_host_cluster_or_resource_name(ctx, name):
    with pytest.raises(Illegal, match="neither a host, a cluster nor a resource"):
        resolve_scope(ctx.inventory, name)


def test_resource_rows_show_an_lv_that_mars_does_not_use_with_empty_mars_fields():
    summary = facts.parse_view_summary("vm1 [2/2] UpToDate Replicating DCASFR Primary a1\n")
    rows = [replica.row() for replica in resource_replicas(
        "a1", summary, {"vm1": "0"}, {"vm1": 320 << 20, "vm1-tmp": 1 << 20}, {"vm1": "RUNNING"})]
    assert rows[0] == {"resource": "vm1", "host": "a1", "role": "Primary",
                       "diskstate": "UpToDate", "replstate": "Replicating", "flags": "DCASFR",
                       "primary": "a1", "sync_rest": 0, "lv_size": 320 << 20,
                       "container": "RUNNING", "notes": []}
    assert rows[1]["resource"] == "vm1-tmp" and rows[1]["role"] == ""
    assert rows[1]["sync_rest"] is None and rows[1]["lv_size"] == 1 << 20


def report_of():
    def host(cluster, reachable=True):
        return {"cluster": cluster, "reachable": reachable, "error": "" if reachable else "down",
                "mars_cluster": {}, "vg_free": 0, "locks": {}, "intents": {}}
    rows = [{"resource": "vm1", "host": "a1"}, {"resource": "vm1", "host": "a2"},
            {"resource": "vm2", "host": "b1"}]
    operations = [{"operation": "migrate", "resource": "vm1", "targets": ["b1", "b2"],
                   "origin": ["a1", "a2"]},
                  {"operation": "migrate", "resource": "vm3", "targets": ["a2"],
                   "origin": ["a1"]}]
    return {"scope": {}, "hosts": {"a1": host("cluster1"), "a2": host("cluster1"),
                                   "b1": host("cluster2"), "b2": host("cluster2", False)},
            "resources": rows, "operations": operations}


def test_status_of_a_resource_shows_its_rows_the_hosts_holding_it_and_its_operations():
    part = select(report_of(), "resource", "vm1", ["a1", "a2", "b1", "b2"])
    assert [row["host"] for row in part["resources"]] == ["a1", "a2"]
    assert sorted(part["hosts"]) == ["a1", "a2"]
    assert [op["resource"] for op in part["operations"]] == ["vm1"]


def test_status_of_a_host_or_cluster_shows_its_hosts_and_the_operations_naming_them():
    part = select(report_of(), "host", "b1", ["b1"])
    assert list(part["hosts"]) == ["b1"] and part["resources"] == [{"resource": "vm2",
                                                                    "host": "b1"}]
    assert [op["resource"] for op in part["operations"]] == ["vm1"]
    part = select(report_of(), "cluster", "cluster1", ["a1", "a2"])
    assert sorted(part["hosts"]) == ["a1", "a2"] and len(part["resources"]) == 2
    assert [op["resource"] for op in part["operations"]] == ["vm1", "vm3"]


def test_status_of_a_resource_no_host_has_is_illegal_and_names_the_unreachable_hosts():
    with pytest.raises(Illegal, match=r"unknown resource vm9.*unreachable: b2"):
        select(report_of(), "resource", "vm9", ["a1", "a2", "b1", "b2"])


def test_unfinished_operations_are_the_journals_not_done_and_damage_is_shown(tmp_path):
    journal = tmp_path / "journal"
    journal.mkdir()
    (journal / "migrate-vm1.json").write_text(json.dumps({
        "operation": "migrate", "resource": "vm1", "started": 1.0,
        "steps": ["prepare", "wait", "critical-section"],
        "decided": {"targets": ["b1", "b2"], "origin": ["a1", "a2"]}}))
    (journal / "migrate-vm2.done").write_text("{}")
    (journal / "migrate-vm3.json").write_text("{not json")
    operations = unfinished_operations(tmp_path)
    assert [op["resource"] for op in operations] == ["vm1", "vm3"]       # (a damaged one's: its file name's)
    assert operations[0]["targets"] == ["b1", "b2"] and operations[0]["in_downtime"]
    assert "damaged" in operations[1]
    assert unfinished_operations(tmp_path / "nothing") == []


def test_status_says_inside_the_downtime_window_only_of_a_run_that_left_its_container_down(
        fake_fleet):  # noqa: F811
    """A migrate whose window failed and was compensated (vm1 runs again on
    a1) was shown "inside the downtime window" as one that crashed there."""
    fake_fleet.fail_next["primary"] = 1                 # the handover to b1 fails
    assert football(fake_fleet, "migrate", "vm1", "cluster2")[0] == 198
    assert fake_fleet.running("vm1") == ["a1"]
    (operation,) = unfinished_operations(fake_fleet.state_dir)
    assert "critical-section" in operation["steps"] and not operation["in_downtime"]
    code, _, stderr = football(fake_fleet, "--debug-injection-point", "finish:stopped",
                               "migrate", "vm1", "cluster2")   # the re-run crashes in there
    assert code != 0 and fake_fleet.running("vm1") == [], stderr
    (operation,) = unfinished_operations(fake_fleet.state_dir)
    assert operation["in_downtime"]
    assert football(fake_fleet, "migrate", "vm1", "cluster2")[0] == 0
    assert unfinished_operations(fake_fleet.state_dir) == []


@pytest.mark.parametrize("point", ["wait:synced", "finish:stopped"])
def test_a_migrate_resumed_after_its_sync_reports_the_sync_as_it_ran(
        fake_fleet, point):  # noqa: F811
    """The re-run's summary said the sync took from its start in the first
    run until the re-run's wait phase ("2048 MiB synced in 125.1 s", the
    sync having taken 1.3 s two minutes before); also after a crash at the
    end of the wait phase ("800 MiB synced in 6.4 s", lab)."""
    code, _, stderr = football(fake_fleet, "--debug-injection-point", point,
                               "migrate", "vm1", "cluster2")
    assert code != 0, stderr
    (operation,) = unfinished_operations(fake_fleet.state_dir)
    decided = json.loads(Path(operation["journal"]).read_text())["decided"]
    code, events, stderr = football(fake_fleet, "migrate", "vm1", "cluster2")
    assert code == 0, stderr
    summary = next(event for event in events if event["event"] == "summary")
    assert summary["sync_seconds"] == round(decided["sync_ended"] - decided["sync_started"], 3)


def test_a_migrate_stopped_before_its_first_join_counts_its_sync_from_the_re_runs_join(
        fake_fleet):  # noqa: F811
    code, _, stderr = football(fake_fleet, "--debug-injection-point", "prepare:merged",
                               "migrate", "vm1", "cluster2")
    assert code != 0, stderr
    (operation,) = unfinished_operations(fake_fleet.state_dir)
    assert "sync_started" not in json.loads(Path(operation["journal"]).read_text())["decided"]
    rerun = time.time()
    assert football(fake_fleet, "migrate", "vm1", "cluster2")[0] == 0
    journal = Path(operation["journal"]).with_suffix(".done")
    assert json.loads(journal.read_text())["decided"]["sync_started"] >= rerun


def test_an_operation_whose_owner_holds_a_lock_is_running_else_unfinished():
    hosts = {"a1": {"locks": {"football": {"owner": "migrate-vm1@ctl"}}, "intents": {}},
             "b1": {"locks": {}, "intents": {"sync-vm1": {"owner": "migrate-vm1@ctl"}}},
             "b2": {"locks": {"football": {"owner": "operator@ctl"}}, "intents": {}}}
    operations = mark_running([{"operation": "migrate", "resource": "vm1"},
                               {"operation": "migrate", "resource": "vm11"}], hosts)
    assert operations[0]["state"] == "running" and operations[0]["holding"] == ["a1", "b1"]
    assert operations[1]["state"] == "unfinished"


def test_an_intent_left_by_a_run_that_ended_does_not_make_it_look_running():
    """A shrink refused by its probe copy (exit 191) keeps its intent on the
    host until the lease ends; status said "running" of it meanwhile."""
    hosts = {"b1": {"locks": {}, "intents": {"shrink-vm1": {"owner": "shrink-vm1@ctl"}}},
             "b2": {"locks": {}, "intents": {}}}

    def state(alive, locks=None):
        hosts["b2"]["locks"] = locks or {}
        (operation,) = mark_running([{"operation": "shrink", "resource": "vm1",
                                      "alive": alive}], hosts)
        return operation["state"], operation["holding"]
    assert state(False) == ("unfinished", ["b1"])       # its process ended
    assert state(True) == ("running", ["b1"])           # it waits, holding its intent
    assert state(None) == ("running", ["b1"])           # not known here: the intent says so
    # a run killed inside its window (SIGKILL: nothing released) keeps its
    # locks; "running" told the operator to wait while its container was down
    assert state(False, {"football": {"owner": "shrink-vm1@ctl"}}) == \
        ("unfinished", ["b1", "b2"])
    assert state(None, {"football": {"owner": "shrink-vm1@ctl"}}) == ("running", ["b1", "b2"])


def test_a_journal_names_the_process_that_wrote_it_and_status_asks_whether_it_lives(tmp_path):
    journal = Journal(tmp_path, "shrink", "vm1")
    journal.record("prepare")
    (operation,) = unfinished_operations(tmp_path)
    assert json.loads(Path(operation["journal"]).read_text())["run"] == \
        {"pid": os.getpid(), "host": socket.gethostname(), "start": process_start(os.getpid())}
    # a football process (its command line says so) that lives, then ends; it
    # says when it runs (until its exec, a child has its parent's command line)
    child = subprocess.Popen([sys.executable, "-c", "print('up', flush=True); "
                              "import time; time.sleep(60)", "football"], stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline() == b"up\n"
        here, started = socket.gethostname(), process_start(child.pid)
        assert run_alive({"pid": child.pid, "host": here}) is True
        assert run_alive({"pid": child.pid, "host": here, "start": started}) is True
        # its pid gone to another football process since (a later run, a worker)
        assert run_alive({"pid": child.pid, "host": here, "start": started - 1}) is False
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    assert run_alive({"pid": child.pid, "host": socket.gethostname()}) is False
    assert run_alive({"pid": child.pid, "host": "another-controller"}) is None
    # a process whose pid it got, that only names a football file
    reader = subprocess.Popen([sys.executable, "-c", "print('up', flush=True); "
                               "import time; time.sleep(60)", "/var/log/football.log"],
                              stdout=subprocess.PIPE)
    try:
        assert reader.stdout.readline() == b"up\n"
        assert run_alive({"pid": reader.pid, "host": socket.gethostname()}) is False
    finally:
        reader.kill()
        reader.wait()
        reader.stdout.close()
    assert run_alive(None) is None


def test_an_unreachable_host_is_shown_as_such_and_rendered_without_a_crash(ctx):
    class Down:
        def run(self, argv, **options):
            raise Unreachable("a1: ssh: connect to host 10.0.0.11 port 22: No route to host")

    host = ctx.inventory.hosts["a1"]
    host._runner = Down()
    view, replicas = observe_host(ctx, host)
    entry = view.entry()
    assert entry["reachable"] is False and "No route to host" in entry["error"]
    assert replicas == []
    out = io.StringIO()
    render({"hosts": {"a1": entry}, "resources": [], "operations": []},
           Console(file=out, width=200))
    assert "No route to host" in out.getvalue()


def test_status_shows_each_hosts_lifecycle_beside_the_containers_it_runs(fake_fleet):  # noqa: F811
    inventory = load(fake_fleet.inventory_path)
    lifecycle.change(inventory.host("a1"), "draining", "operator")
    fake_fleet.create_resource("vm2", "b1", ["b2"])
    result = CliRunner().invoke(cli, ["--inventory", fake_fleet.inventory_path, "--json", "--var",
                                      f"state_dir={fake_fleet.state_dir}", "status"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    # a1 drains while it runs vm1: the container's state is the row's, not the host's
    assert {name: host["lifecycle"] for name, host in report["hosts"].items()} == \
        {"a1": "draining", "a2": "active", "b1": "active", "b2": "active"}
    assert {(row["resource"], row["host"]): row["container"] for row in report["resources"]} == \
        {("vm1", "a1"): "RUNNING", ("vm1", "a2"): "", ("vm2", "b1"): "RUNNING",
         ("vm2", "b2"): ""}
    out = io.StringIO()
    render(report, Console(file=out, width=200))
    a1_row = next(line for line in out.getvalue().splitlines() if line.startswith("│ a1 "))
    assert "draining" in a1_row and "RUNNING" not in a1_row


def test_status_says_of_a_host_whose_marsd_does_not_run_that_its_states_are_not_current(
        fake_fleet):  # noqa: F811
    """Its marsadm answers from the store what marsd last reported: vm1's
    primary read "NotYetPrimary NoAttach" while its container ran, and
    the host "reachable: yes"."""
    fake_fleet.marsd_stopped.add("a2")
    result = CliRunner().invoke(cli, ["--inventory", fake_fleet.inventory_path, "--json", "--var",
                                      f"state_dir={fake_fleet.state_dir}", "status"])
    assert result.exit_code == 0, result.output
    hosts = json.loads(result.stdout)["hosts"]
    assert "marsd is not running: its replicas' states are not current" in hosts["a2"]["error"]
    assert not hosts["a1"]["error"] and hosts["a2"]["reachable"]


def test_status_tells_what_to_do_about_a_run_that_stopped_inside_its_window():
    def shown(state, containers):
        operation = {"operation": "migrate", "resource": "vm1", "steps": ["critical-section"],
                     "targets": ["b1", "b2"], "started": None, "state": state,
                     "in_downtime": True}
        rows = [{"resource": "vm1", "host": host, "role": "", "diskstate": "", "replstate": "",
                 "flags": "", "sync_rest": 0, "lv_size": 1 << 30, "container": container}
                for host, container in containers.items()]
        out = io.StringIO()
        render({"hosts": {}, "resources": rows, "operations": [operation]},
               Console(file=out, width=300))
        return out.getvalue()
    down = shown("unfinished", {"a1": "STOPPED", "a2": ""})
    assert "vm1 runs on none of a1, a2: its migrate stopped inside the downtime window; run it " \
        "again now, or start vm1 where it was with `football repair-vm vm1 <host>`" in down, down
    up = shown("unfinished", {"a1": "", "b1": "RUNNING"})
    assert "vm1 runs on b1; its migrate stopped inside the downtime window: run it again to " \
        "finish it" in up, up
    assert "goes on from where it stopped" not in shown("running", {"a1": "STOPPED"})


def test_status_shows_why_mars_waits_or_fails_under_the_resources():
    row = {"resource": "vm1", "host": "a1", "role": "NotYetPrimary", "diskstate": "UpToDate",
           "replstate": "NotYetPrimary", "flags": "dCaSFR", "sync_rest": 0,
           "lv_size": 1 << 30, "container": "RUNNING",
           "notes": ["waiting: /dev/loop1 of the device that crashed [with marsd] is in use"]}
    out = io.StringIO()
    render({"hosts": {}, "resources": [row], "operations": []}, Console(file=out, width=200))
    assert "vm1 on a1: waiting: /dev/loop1 of the device that crashed [with marsd] is in use" \
        in out.getvalue(), out.getvalue()


# --- lock / unlock ---------------------------------------------------------------------

@pytest.mark.parametrize("item", ["football", "vm1", "sync-vm1", "a_b.c"])
def test_lock_items_are_letters_digits_dash_underscore_and_dot(item):
    assert check_item(item) == item


@pytest.mark.parametrize("item", ["", "a/b", "../x", "-f", ".hidden", "x y", "a;b", "x" * 128])
def test_a_lock_item_that_is_no_plain_file_name_is_illegal(item):
    with pytest.raises(Illegal, match="lock items are letters"):
        check_item(item)


@pytest.mark.parametrize("owner", ["", "a b", "x;y", "o" * 129])
def test_a_lock_owner_with_spaces_or_shell_characters_is_illegal(owner):
    with pytest.raises(Illegal, match="invalid owner"):
        check_owner(owner)


def test_lock_refuses_unknown_hosts_and_no_hosts_before_touching_any(ctx):
    with pytest.raises(Illegal, match="unknown host 'zz'"):
        Lock(ctx, "football", ["a1", "zz"])
    with pytest.raises(Illegal, match="at least one host"):
        Unlock(ctx, "football", [])


def test_lock_in_a_dry_run_lists_the_takes_and_runs_nothing(ctx):
    ctx.dry_run, ctx.planner = True, Planner(ctx.reporter)
    summary = Lock(ctx, "football", ["a2", "a1"], owner="ops@desk").run()
    assert summary["hosts"] == []
    assert summary["would_run"] == [
        {"host": name, "argv": ["football-host", "lock", "/var/lock/football", "take",
                                "football", "--owner", "ops@desk", "--stale-after", "3600.0",
                                "--permanent"]} for name in ("a1", "a2")]
    assert ctx.inventory.hosts["a1"]._runner.calls == []


def test_lock_takes_a_permanent_lock_on_every_host_in_sorted_order(ctx):
    for name in ("a2", "a1"):
        runner = ctx.inventory.hosts[name]._runner
        runner.expect(["football-host", "lock", "/var/lock/football", "list"], stdout="{}")
        runner.expect(["football-host", "lock", "/var/lock/football", "take", "football",
                       "--owner", "ops@desk", "--stale-after", "3600.0", "--permanent"],
                      stdout='{"outcome": "taken"}')
    assert Lock(ctx, "football", ["a2", "a1"], owner="ops@desk").run()["hosts"] == ["a2", "a1"]


def test_an_operators_permanent_lock_is_never_broken_as_stale_but_unlock_removes_it(tmp_path):
    from football.hostside import locks as host_locks
    assert host_locks.take(tmp_path, "football", "operator@desk", 0, permanent=True) == "taken"
    time.sleep(0.01)
    with pytest.raises(host_locks.LockHeld, match="held by operator@desk"):
        host_locks.take(tmp_path, "football", "migrate-vm1@ctl", stale_after=0)
    host_locks.take(tmp_path, "other", "migrate-vm1@ctl", 0)
    time.sleep(0.01)
    assert host_locks.take(tmp_path, "other", "migrate-vm2@ctl", 0) == "broken"
    assert host_locks.release(tmp_path, "football", "") is True


def test_unlock_releases_whoever_holds_it_and_says_whose_lock_it_was(ctx):
    runner = ctx.inventory.hosts["b1"]._runner
    runner.expect(["football-host", "lock", "/var/lock/football", "list"],
                  stdout=json.dumps({"football": {"owner": "migrate-vm1@ctl",
                                                  "time": time.time()}}))
    runner.expect(["football-host", "lock", "/var/lock/football", "release", "football",
                   "--owner", "migrate-vm1@ctl"], stdout='{"released": true}')
    ctx.inventory.hosts["b2"]._runner.expect(
        ["football-host", "lock", "/var/lock/football", "list"], stdout="{}")
    result = Unlock(ctx, "football", ["b1", "b2"]).run()
    assert result["released"] == [{"host": "b1", "owner": "migrate-vm1@ctl"}]
    said = [json.loads(line).get("text", "") for line in
            ctx.reporter.stream.getvalue().splitlines()]
    assert any(text.startswith("b1: released lock football held by migrate-vm1@ctl since")
               for text in said), said
    assert "b2: lock football is not held" in said


# --- lv-cleanup ------------------------------------------------------------------------

def test_only_an_lv_that_no_member_uses_and_no_journal_plans_is_a_leftover():
    candidates = {"a1": "", "a2": "", "b1": "", "b2": "mounted at /var/lib/lxc/vm1"}
    assert leftovers(candidates, members={"a1"}, planned={"a2"}) == ["b1"]
    assert leftovers({}, members=set(), planned=set()) == []


# --- merge / split planning ------------------------------------------------------------

CLUSTERS = {"cluster1": ["a1", "a2"], "cluster2": ["b1", "b2"]}
RUNNABLE = {"a1", "a2", "b1", "b2", "spare"}


def cluster(*hosts, members=None):
    return MarsCluster({host: f"addr-{host}" for host in hosts}, members or {}, hosts[0])


def test_connected_groups_join_hosts_through_links_and_ignore_strangers():
    assert connected_groups(["a", "b", "c", "d"], [["a", "b"], ["b", "c"], ["x", "d"]]) == \
        [["a", "b", "c"], ["d"]]
    assert connected_groups([], [["a"]]) == []


def test_split_cluster_pieces_are_hosts_sharing_resources_and_the_others_alone():
    merged = cluster("a1", "a2", "b1", "b2", members={"vm1": ["b1", "b2"]})
    assert pieces_after_split(merged) == [["a1"], ["a2"], ["b1", "b2"]]


def test_after_a_migrate_to_cluster2_the_merged_cluster_splits_and_cluster1_is_remerged():
    merged = cluster("b1", "a1", "a2", "b2", members={"vm1": ["b1", "b2"]})
    splits, merges = plan([merged], CLUSTERS, RUNNABLE)
    assert splits == [merged]
    assert merges == [("a2", "a1")]


def test_clusters_as_the_inventory_says_need_nothing():
    clusters = [cluster("a1", "a2", members={"vm1": ["a1", "a2"]}), cluster("b1", "b2")]
    assert plan(clusters, CLUSTERS, RUNNABLE) == ([], [])


def test_a_resource_shared_across_inventory_clusters_keeps_them_in_one_cluster():
    merged = cluster("a1", "a2", "b1", "b2", members={"vm1": ["a1", "b1"]})
    assert plan([merged], CLUSTERS, RUNNABLE) == ([], [])


def test_a_run_interrupted_between_split_and_merge_only_merges_on_the_rerun():
    clusters = [cluster("a1", "a2"), cluster("b1", members={"vm1": ["b1"]}), cluster("b2")]
    assert plan(clusters, CLUSTERS, RUNNABLE) == ([], [("b2", "b1")])


def test_a_host_in_no_inventory_cluster_and_without_resources_goes_alone():
    merged = cluster("a1", "a2", "spare", members={"vm1": ["a1", "a2"]})
    splits, merges = plan([merged], CLUSTERS, RUNNABLE)
    assert splits == [merged] and merges == []
    assert wanted_groups([merged], CLUSTERS) == [["a1", "a2"], ["spare"]]


def test_three_pieces_of_one_inventory_cluster_are_merged_into_the_first():
    pieces = [["c1"], ["c2"], ["c3"]]
    assert remerges(pieces, [["c1", "c2", "c3"]], {"c1", "c2", "c3"}) == \
        [("c2", "c1"), ("c3", "c1")]


def test_a_piece_without_an_inventory_host_cannot_be_merged_by_football():
    with pytest.raises(Illegal, match="merge them by hand"):
        remerges([["a1"], ["x9"]], [["a1", "x9"]], {"a1"})


def test_merge_and_split_cluster_check_their_hosts_before_touching_any(ctx):
    with pytest.raises(Illegal, match="two different hosts"):
        MergeCluster(ctx, "a1", "a1")
    with pytest.raises(Illegal, match="unknown host 'zz'"):
        MergeCluster(ctx, "a1", "zz")
    with pytest.raises(Illegal, match="unknown host 'zz'"):
        SplitCluster(ctx, ["a1", "zz"])
    with pytest.raises(Illegal, match="at least one host"):
        SplitCluster(ctx, [])


def test_migrate_splits_clusters_after_a_move_unless_told_not_to():
    assert Config(environ={}).split_clusters_after_migrate is True
    off = Config(variables=["split_clusters_after_migrate=no"], environ={})
    assert off.split_clusters_after_migrate is False


# --- the command line ------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["lock", "a/b", "a1"], "invalid lock item"),
    (["unlock", "football", "zz"], "unknown host 'zz'"),
    (["lock", "football", "a1", "--owner", "me; reboot"], "invalid owner"),
    (["lv-cleanup", "vm1;rm"], "invalid"),
    (["merge-cluster", "a1", "a1"], "two different hosts"),
    (["split-cluster", "nowhere"], "unknown host 'nowhere'"),
    (["status", "$(id)"], "neither a host"),
])
def test_bad_arguments_exit_191_before_any_host_is_asked(tmp_path, args, message):
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(json.dumps(INVENTORY))
    result = CliRunner().invoke(cli, ["--inventory", str(inventory), "--var",
                                      f"state_dir={tmp_path}", *args])
    assert result.exit_code == 191, result.output
    assert message in result.output


# --- wait-cluster: a dead target vs. a dead bystander ------------------------------------

DEAD_PEER = ("marsadm: warning: marsd not answering on b2 (b2: connection refused); "
             "they count as dead: not waiting for them\n")
OWN_MARSD_DOWN = ("marsadm: timed out after 10s, marsd not answering on a1, b2 (a1: connection "
                  "refused; b2: connection refused); start marsd there or check the network\n")


class WaitCluster:
    """A host whose `marsadm wait-cluster` exits as given."""

    def __init__(self, name, exit_code, stderr, stdout=""):
        self.name, self.address = name, "10.0.0.11"
        self.result = (exit_code, stdout, stderr)

    def run(self, argv, check=True, timeout=None):
        assert argv[0] == "marsadm" and argv[-1] == "wait-cluster"
        return Result(self.name, tuple(argv), *self.result)


def test_a_host_whose_peer_is_dead_answers_and_one_whose_own_marsd_is_down_does_not():
    assert marsd_answers(WaitCluster("a1", 0, DEAD_PEER)) == (True, "")
    answers, why = marsd_answers(WaitCluster("a1", 3, OWN_MARSD_DOWN))
    assert not answers and "a1" in why and "is marsd running there?" in why


def test_a_split_is_refused_when_wait_cluster_warns_of_a_dead_member():
    every_member_answers(WaitCluster("a1", 0, ""))
    with pytest.raises(Illegal, match="not every host of its MARS cluster answers.*b2") \
            as refused:
        every_member_answers(WaitCluster("a1", 0, DEAD_PEER))
    # a host that never comes back (decommissioned) would block every split for ever
    assert "Where b2 is gone for good (evacuated, or failed over: it holds no replica), " \
        "`football decommission b2` drops it from the cluster. Nothing was changed" \
        in str(refused.value)
    # kernel MARS's marsadm counts the dead (exit 0), it does not name them
    kernel = "1/2 peer(s) seem to be alive, and 1 peer(s) seem to be dead / not reachable\n"
    for stdout, stderr in ((kernel, ""), ("", kernel)):
        with pytest.raises(Illegal, match="not every host of its MARS cluster answers.*"
                           r"1 peer\(s\) seem to be dead.*`football decommission <host>`"):
            every_member_answers(WaitCluster("a1", 0, stderr, stdout))


def test_status_shows_the_pauses_that_hold_runs_here_and_of_a_resource_its_own(
        fake_fleet, tmp_path):  # noqa: F811
    """A paused run waits by design, but never unseen: `status` names every
    pause (this controller's files, the jobs' database's where controllers
    share one), and of a resource those that hold it."""
    queue = ["--var", f"jobs_database_url=sqlite:///{tmp_path / 'jobs.sqlite'}"]
    base = ["--inventory", fake_fleet.inventory_path, "--var", f"state_dir={fake_fleet.state_dir}"]
    fake_fleet.create_resource("vm2", "b1", ["b2"])
    assert CliRunner().invoke(cli, [*base, "pause", "vm2"]).exit_code == 0        # a file
    assert CliRunner().invoke(cli, [*base, *queue, "pause"]).exit_code == 0       # shared
    result = CliRunner().invoke(cli, [*base, *queue, "--json", "status"])
    assert result.exit_code == 0, result.output
    pauses = json.loads(result.stdout)["pauses"]
    assert [(pause["resource"], pause["where"], bool(pause["by"])) for pause in pauses] == \
        [("vm2", f"{fake_fleet.state_dir}/pause.vm2", False), ("*", "the jobs' database", True)]
    result = CliRunner().invoke(cli, [*base, *queue, "--json", "status", "vm1"])
    assert [pause["resource"] for pause in json.loads(result.stdout)["pauses"]] == ["*"]
    out = io.StringIO()
    render(json.loads(CliRunner().invoke(cli, [*base, *queue, "--json", "status"]).stdout),
           Console(file=out, width=200))
    lines = [line for line in out.getvalue().splitlines() if line.startswith("paused: ")]
    assert lines[0].startswith("paused: vm2, since ") and \
        lines[0].endswith("pause.vm2): runs wait before their downtime window until "
                          "`football unpause vm2`"), lines
    assert lines[1].startswith("paused: every resource, since ") and " by football@" in \
        lines[1] and lines[1].endswith("(the jobs' database): runs wait before their downtime "
                                       "window until `football unpause`"), lines


def test_a_run_waits_before_its_downtime_while_the_shared_pauses_cannot_be_read(
        fake_fleet, tmp_path):  # noqa: F811
    """Where controllers share a jobs' database, a pause there is the
    operator's brake for every controller — and in an incident the database
    may be what is away. A run that cannot read the pauses waits before its
    downtime window, saying why, and goes on once they can be read (before,
    it went on as if nothing were paused); `status` says it cannot tell."""
    import threading

    from football.screener import JobStore

    database = tmp_path / "jobs.sqlite"
    database.write_bytes(b"not a database " * 100)     # a database that does not answer
    shared = [f"state_dir={fake_fleet.state_dir}", f"jobs_database_url=sqlite:///{database}"]
    fake_fleet.create_resource("vm2", "a1", ["a2"])
    result = CliRunner().invoke(cli, ["--inventory", fake_fleet.inventory_path, "--json",
                                      *[word for setting in shared for word in ("--var", setting)],
                                      "status"])
    pauses = json.loads(result.stdout)["pauses"]
    assert [(pause["resource"], pause.get("unknown")) for pause in pauses] == [("*", True)]
    assert pauses[0]["where"].startswith("the jobs' database does not answer: "
                                         "(sqlite3.DatabaseError) file is not a database")
    out = io.StringIO()
    render(json.loads(result.stdout), Console(file=out, width=300))
    assert "paused?: the jobs' database does not answer: (sqlite3.DatabaseError) file is not " \
        "a database: whether runs are paused there cannot be read; they wait before their " \
        "downtime window until it answers" in out.getvalue()
    ran = {}
    run = threading.Thread(target=lambda: ran.update(result=football(
        fake_fleet, "--var", shared[1], "--var", "poll_interval=0.02", "migrate", "vm2", "b1")))
    run.start()
    logs = Path(fake_fleet.state_dir) / "log"
    waiting = "whether vm2 is paused there cannot be read; waiting until it answers"
    wait_for_text = time.monotonic() + 60
    while not any(waiting in path.read_text() for path in logs.glob("*-migrate-vm2.log")):
        assert run.is_alive() and time.monotonic() < wait_for_text, ran
        time.sleep(0.05)
    assert fake_fleet.resources["vm2"].primary == "a1"       # nothing stopped
    answering = tmp_path / "answering.sqlite"               # it answers: no pause there
    JobStore(Config(variables=[shared[0], f"jobs_database_url=sqlite:///{answering}"],
                    environ={})).close()
    os.replace(answering, database)
    run.join(timeout=60)
    code, events, err = ran["result"]
    assert code == 0, err
    assert fake_fleet.resources["vm2"].primary == "b1"
    waits = [event for event in events if event["event"] == "wait" and
             event.get("what") == "downtime"]
    assert waits[0]["reasons"][0].startswith(
        "vm2 is locked on a1, b1 (the jobs' database does not answer ((sqlite3.DatabaseError) "
        "file is not a database): whether vm2 is paused there"), waits
    assert all(wait["state"] == "condition" and "whether vm2 is paused there" in
               wait["reasons"][0] for wait in waits), waits

"""`football decommission HOST` on the fake fleet (tests/helpers/fakefleet.py):
a host that holds no replica any more leaves its MARS cluster — by itself
where it answers (it must be evacuated), else dropped by a host of its
cluster the kernel's way (`marsadm --host=HOST leave-cluster`); a host
that holds a replica, or answers and is not evacuated, is refused with
nothing changed."""

import json

import pytest

from football import lifecycle
from tests.helpers.fakefleet import fake_fleet, football

fleet = fake_fleet

EXIT_ILLEGAL = 191


def evacuated(fleet, name):
    for state in ("draining", "evacuated"):
        lifecycle.change(fleet.hosts[name], state, "test")


def changes(fleet):
    """What changed hosts, but for the run's own lock (taken and given back)."""
    return [(name, argv) for name, argv in fleet.changes() if argv[:2] != ("football-host", "lock")]


def result(events):
    return next(event for event in events if event["event"] == "result")


def assert_refused(fleet, host, *fragments):
    before = len(changes(fleet))
    code, _, stderr = football(fleet, "decommission", host)
    assert code == EXIT_ILLEGAL, stderr
    for fragment in fragments:
        assert fragment in stderr, stderr
    assert "nothing was changed" in stderr, stderr
    assert changes(fleet)[before:] == []


def test_an_evacuated_host_that_answers_leaves_its_mars_cluster_by_itself(fleet):
    evacuated(fleet, "b2")
    before = len(changes(fleet))
    code, events, stderr = football(fleet, "--dry-run", "decommission", "b2")
    assert code == 0, stderr
    assert [(event["host"], event["argv"]) for event in events
            if event["event"] == "would-run"] == [("b2", ["marsadm", "leave-cluster"])]
    assert changes(fleet)[before:] == [] and fleet.cluster_of("b1") == ["b1", "b2"]

    code, events, stderr = football(fleet, "decommission", "b2")
    assert code == 0, stderr
    assert changes(fleet)[before:] == [("b2", ("marsadm", "leave-cluster"))]
    assert fleet.cluster_of("b1") == ["b1"]
    assert result(events)["left"] == {"b2": ["b1"]}
    assert result(events)["still_listed_by"] == {"b2": []}
    texts = " ".join(event.get("text", "") for event in events)
    assert f"take it out of the inventory ({fleet.inventory_path})" in texts

    code, events, stderr = football(fleet, "decommission", "b2")
    assert code == 0, stderr
    assert "b2 is in no MARS cluster" in json.dumps(events)
    assert changes(fleet)[before:] == [("b2", ("marsadm", "leave-cluster"))]


def test_a_host_in_use_is_refused_naming_the_evacuation(fleet):
    assert_refused(fleet, "b2", "b2 is active: football evacuate b2 --execute first")
    evacuated(fleet, "a2")          # marked, but vm1 is still replicated there
    assert_refused(fleet, "a2", "a2 still holds replicas of vm1: football evacuate a2 --execute")
    assert fleet.cluster_of("a1") == ["a1", "a2"] and fleet.cluster_of("b1") == ["b1", "b2"]


def test_a_dead_host_is_dropped_by_a_host_of_its_cluster(fleet):
    fleet.switch_off("b2")
    code, events, stderr = football(fleet, "decommission", "b2")
    assert code == 0, stderr
    assert ("b1", ("marsadm", "--host=b2", "leave-cluster")) in changes(fleet)
    assert fleet.cluster_of("b1") == ["b1"]
    assert result(events)["left"] == {"b2": ["b1"]}


def test_a_dead_host_that_held_replicas_is_refused_until_it_was_failed_over(fleet):
    """The documented way for a host that died: failover, then decommission;
    a1's cluster is then a1 alone, and a migrate's split no longer waits
    for a2."""
    fleet.switch_off("a2")
    assert_refused(fleet, "a2", "a2 still holds replicas of vm1, as a1 sees it: "
                   "football failover a2 (it is gone for good) first")

    code, _, stderr = football(fleet, "failover", "a2")
    assert code == 0, stderr
    code, _, stderr = football(fleet, "decommission", "a2")
    assert code == 0, stderr
    assert fleet.cluster_of("a1") == ["a1"]

    code, _, stderr = football(fleet, "migrate", "vm1", "b1", "b2")
    assert code == 0, stderr
    assert fleet.members("vm1") == ["b1", "b2"] and fleet.running("vm1") == ["b1"]


def test_every_host_of_a_cluster_leaves_the_silent_ones_first(fleet):
    """cluster2 is decommissioned as a whole: b2 died (dropped by b1 while
    b1, the only host that lists it, is still a member), then b1 leaves."""
    evacuated(fleet, "b1")
    fleet.switch_off("b2")
    code, events, stderr = football(fleet, "decommission", "cluster2")
    assert code == 0, stderr
    assert [argv for _, argv in changes(fleet) if argv[0] == "marsadm"] == [
        ("marsadm", "--host=b2", "leave-cluster"), ("marsadm", "leave-cluster")]
    assert {"b1", "b2"} <= fleet.clusterless
    assert result(events)["left"] == {"b1": ["b2"], "b2": ["b1"]}
    code, events, stderr = football(fleet, "decommission", "cluster2")
    assert code == 0 and "b1, b2 are in no MARS cluster" in json.dumps(events), stderr


def test_a_cluster_is_refused_as_a_whole_when_one_host_is_in_use(fleet):
    evacuated(fleet, "b1")          # b2 is active
    assert_refused(fleet, "cluster2", "b2 is active: football evacuate b2 --execute first")
    assert fleet.cluster_of("b1") == ["b1", "b2"]


@pytest.fixture
def without_b2(fleet, tmp_path):
    """The inventory once b2 was taken out of it (the fleet still has b2)."""
    data = json.loads(open(fleet.inventory_path).read())
    data["clusters"]["cluster2"] = ["b1"]
    del data["hosts"]["b2"]
    path = tmp_path / "without-b2.yml"
    path.write_text(json.dumps(data))
    fleet.inventory_path = str(path)
    return fleet


def test_a_host_out_of_the_inventory_is_found_in_the_cluster_of_the_others(without_b2):
    fleet = without_b2
    # its marsd answers: not gone; the survivor's marsadm refuses to drop it
    code, _, stderr = football(fleet, "decommission", "b2")
    assert code == EXIT_ILLEGAL
    assert "b1: marsadm: b2's marsd answers: it is not gone; nothing was changed" in stderr, \
        stderr
    assert fleet.cluster_of("b1") == ["b1", "b2"]
    fleet.kernel_marsadm = True         # refusals exit 2, said on stdout
    code, _, stderr = football(fleet, "decommission", "b2")
    assert code == EXIT_ILLEGAL and "b2's marsd answers: it is not gone" in stderr and \
        "nothing was changed" in stderr, stderr
    fleet.kernel_marsadm = False
    fleet.switch_off("b2")
    code, events, stderr = football(fleet, "decommission", "b2")
    assert code == 0, stderr
    assert fleet.cluster_of("b1") == ["b1"]
    texts = " ".join(event.get("text", "") for event in events)
    assert "inventory" not in texts         # nothing left to take out


@pytest.mark.parametrize("name", ["B2", "b2;reboot", "all"])
def test_a_name_that_is_no_host_name_is_refused(fleet, name):
    assert_refused(fleet, name, name)


def status(fleet):
    """`football --json status` against the fleet: its report."""
    from click.testing import CliRunner

    from football.cli import cli
    result = CliRunner().invoke(cli, ["--inventory", fleet.inventory_path, "--json", "--var",
                                      f"state_dir={fleet.state_dir}", "status"])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_status_names_a_host_in_a_mars_cluster_but_out_of_the_inventory(without_b2):
    from rich.console import Console

    from football.ops.status import render

    report = status(without_b2)
    assert report["outside_inventory"] == {"b2": ["b1"]}
    console = Console(record=True, width=200)
    render(report, console)
    assert "b2 is in the MARS cluster of b1 but not in the inventory: if it is gone for good, " \
        "`football decommission b2` drops it" in console.export_text()

    without_b2.switch_off("b2")
    assert football(without_b2, "decommission", "b2")[0] == 0
    assert status(without_b2)["outside_inventory"] == {}


def test_a_decommissioned_host_taken_back_into_use_is_told_how_to_start_a_cluster(fleet):
    """A host that left its MARS cluster is in none: a migrate to it (after
    `restore --skip`) is refused naming create-cluster — not "is marsd
    running there?" — and once it ran there, the migrate merges it."""
    evacuated(fleet, "b2")
    assert football(fleet, "decommission", "b2")[0] == 0
    assert football(fleet, "restore", "b2", "--skip")[0] == 0
    code, _, stderr = football(fleet, "migrate", "vm1", "b1", "b2")
    assert code == EXIT_ILLEGAL
    assert "host b2 (127.0.9.14) is in no MARS cluster (a new host, or one decommissioned): " \
        "`marsadm --ip=127.0.9.14 create-cluster` there makes it a cluster of its own" in stderr, \
        stderr
    assert fleet.members("vm1") == ["a1", "a2"]

    fleet.run("b2", ["marsadm", "--ip=127.0.9.14", "create-cluster"])
    code, _, stderr = football(fleet, "migrate", "vm1", "b1", "b2")
    assert code == 0, stderr
    assert fleet.members("vm1") == ["b1", "b2"] and fleet.running("vm1") == ["b1"]


def test_a_migrate_to_a_host_back_in_use_leaves_its_decommissioned_mate_out(fleet):
    """cluster2 was decommissioned; b1 comes back into use (a cluster of its
    own), b2 not. The migrate's cleanup kept inventory clusters whole by
    merging b2 into b1's cluster: "b2 is not a member of any cluster", the
    run serious after its container had moved (the lab: `restore a1`)."""
    for name in ("b1", "b2"):
        evacuated(fleet, name)
    assert football(fleet, "decommission", "cluster2")[0] == 0
    assert football(fleet, "restore", "b1", "--skip")[0] == 0
    fleet.run("b1", ["marsadm", "--ip=127.0.9.13", "create-cluster"])
    before = len(changes(fleet))
    code, _, stderr = football(fleet, "migrate", "vm1", "b1")
    assert code == 0, stderr
    assert fleet.running("vm1") == ["b1"] and "b2" in fleet.clusterless
    assert not [argv for name, argv in changes(fleet)[before:] if name == "b2"]

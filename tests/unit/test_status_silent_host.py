"""`football status <host>` of a host that does not answer (found by a
second review of the planner's area): its replicas, as its answering
cluster mates list them, are shown as for `football status`."""

import json

from click.testing import CliRunner

from football.cli import cli
from tests.helpers.fakefleet import fake_fleet

fleet = fake_fleet


def status(fleet, *args):
    result = CliRunner().invoke(cli, ["--inventory", fleet.inventory_path, "--json", "--var",
                                      f"state_dir={fleet.state_dir}", "status", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_status_of_a_silent_host_names_its_replicas_as_its_mates_list_them(fleet):
    """a2 is switched off: `status a2` observed a2 alone, and silent_replicas
    asked only the observed hosts that answer — none: it showed a2
    unreachable and no replica, as if a2 held nothing (`status` shows vm1
    on a2 from a1's list of its members)."""
    fleet.switch_off("a2")
    report = status(fleet, "a2")
    assert not report["hosts"]["a2"]["reachable"]
    rows = [(row["resource"], row["host"], row["notes"]) for row in report["resources"]]
    assert rows == [("vm1", "a2", ["a2 does not answer (its mates list this replica)"])]


def test_status_of_a_cluster_whose_hosts_all_are_silent_says_so_without_its_replicas(fleet):
    """Both hosts of cluster1 silent: no mate answers, nothing is invented."""
    fleet.switch_off("a1")
    fleet.switch_off("a2")
    report = status(fleet, "cluster1")
    assert report["resources"] == []
    assert not report["hosts"]["a1"]["reachable"] and not report["hosts"]["a2"]["reachable"]

"""What `football status` shows an operator (found by a review of the
operator's views): its `--json` document alone on stdout, one row per
replica whatever part of a host could not be read."""

import json
from pathlib import Path

from click.testing import CliRunner

from football import housekeeping
from football.cli import cli
from football.locks import LOCK_DIR
from tests.helpers.fakefleet import (
    failing,
    fake_fleet,
)


fleet = fake_fleet

def status(fleet, *args):
    """`football --json status <args>`, exit 0."""
    result = CliRunner().invoke(cli, ["--inventory", fleet.inventory_path, "--json", "--var",
                                      f"state_dir={fleet.state_dir}", "status", *args])
    assert result.exit_code == 0, result.output
    return result


def test_status_json_is_one_document_also_when_housekeeping_warns(fleet, monkeypatch):
    """A command keeps house now and then; a housekeeping that fails is a
    warning. Its event went to stdout before `status --json`'s document,
    which then was no JSON for automation to read."""
    def fails(config, *args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(housekeeping, "housekeep", fails)
    result = status(fleet)
    report = json.loads(result.stdout)
    assert [row["host"] for row in report["resources"]] == ["a1", "a2"]
    assert "housekeeping of " in result.stderr


def test_a_replica_whose_hosts_mars_view_cannot_be_read_is_one_row(fleet, monkeypatch):
    """a2 answers, but its `marsadm view all` does not (it timed out): its
    LV of vm1 is a row, and its mates' list of vm1's members says a2 holds
    a replica — the one row says both, not two rows of vm1 on a2."""
    failing(fleet, monkeypatch, lambda host, argv: host == "a2" and argv[-2:] == ("view", "all"),
            3, "timed out")
    result = status(fleet)
    rows = [row for row in json.loads(result.stdout)["resources"] if row["host"] == "a2"]
    assert len(rows) == 1, rows
    assert rows[0]["lv_size"] == 320 << 20
    assert rows[0]["notes"] == ["a2 does not answer (its mates list this replica)"]


def test_another_controllers_run_that_died_before_it_acted_is_not_shown_running(fleet):
    """A run lock `run-vm1` of another controller's run that never acted is
    a lease: renewed while that run lives, broken by the next run once it
    was not renewed for run_lock_lease. One a day old was shown `running
    elsewhere`, and the operator waited for a run that was dead."""
    host = fleet.hosts["a1"]
    directory = host.path(LOCK_DIR)
    assert fleet.run("a1", ["football-host", "lock", directory, "take", "run-vm1", "--owner",
                            "football@elsewhere:/var/lib/football#0123", "--what",
                            "migrate of vm1, pid 4242"]).ok
    path = Path(directory) / "run-vm1.lock"
    record = json.loads(path.read_text())
    path.write_text(json.dumps(dict(record, time=record["time"] - 86400)))
    [operation] = json.loads(status(fleet, "vm1").stdout)["operations"]
    assert operation["state"] == "stale elsewhere"

"""The command line's answers to what an operator may get wrong (found by
a review of the operator's views)."""

import json

import pytest
from click.testing import CliRunner

from football.cli import cli
from football.errors import EXIT_ILLEGAL
from tests.helpers.fakefleet import fake_fleet


fleet = fake_fleet

@pytest.mark.parametrize("argv", [["status"], ["--json", "status"], ["migrate", "vm1", "b1"],
                                  ["--dry-run", "expand", "vm1", "1g"]],
                         ids=["status", "status --json", "migrate", "a dry run"])
def test_a_state_dir_that_cannot_be_written_is_refused_without_a_traceback(
        fleet, tmp_path, argv):
    """An operator whose state_dir is no directory (a typo), or one he may
    not write (the default /var/lib/football, not as root): the run log
    cannot be made. That was a traceback (exit 1); it is a refusal, 191,
    naming the setting, and nothing was done."""
    not_a_directory = tmp_path / "state"
    not_a_directory.write_text("")
    result = CliRunner().invoke(cli, ["--inventory", fleet.inventory_path, "--yes",
                                      "--var", f"state_dir={not_a_directory}", *argv])
    assert not result.exception or isinstance(result.exception, SystemExit), result.exc_info
    assert result.exit_code == EXIT_ILLEGAL, result.output
    assert f"football: cannot write the run log in {not_a_directory}" in result.stderr
    assert "set state_dir" in result.stderr
    if "--json" in argv:
        assert json.loads(result.stdout)["event"] == "failed"
    assert fleet.members("vm1") == ["a1", "a2"]

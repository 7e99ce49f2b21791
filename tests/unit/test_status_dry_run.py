"""`football --dry-run status` (read-only: it runs no command that changes
anything) printed "dry run: 0 commands would run; nothing was changed"
under its tables. Needs the change of football/cli.py's `_run` (no such
line for a command that reports one document: status, score, the plans)."""

from click.testing import CliRunner

from football.cli import cli
from tests.helpers.fakefleet import fake_fleet

fleet = fake_fleet


def test_a_dry_run_of_status_says_no_commands_would_run(fleet):
    result = CliRunner().invoke(cli, ["--inventory", fleet.inventory_path, "--var",
                                      f"state_dir={fleet.state_dir}", "--dry-run", "status"])
    assert result.exit_code == 0, result.output
    assert "vm1" in result.stdout
    assert "would run" not in result.output, result.output

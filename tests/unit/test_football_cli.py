from click.testing import CliRunner

from football import __version__
from football.cli import cli


def test_football_version_prints_the_package_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"football, version {__version__}"


def test_football_help_describes_the_tool():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "Move LXC containers" in result.output

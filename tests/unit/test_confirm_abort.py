"""An operator who answers a confirmation with Ctrl-C or Ctrl-D (click's
`Abort`) refuses it: 191 "not confirmed; nothing was changed", as a no.
The catch-all for unexpected errors (exit 198, a traceback, "a bug in
Football") took it for one. On the fake fleet (tests/helpers/fakefleet.py)."""

import textwrap
from types import SimpleNamespace

import click
from click.testing import CliRunner

from football.cli import cli
from football.ops import base
from football.errors import EXIT_ILLEGAL
from tests.helpers.fakefleet import fake_fleet  # noqa: F401 (a fixture)
from tests.unit.test_kept_stopped import MANAGER_WITHOUT_STACK, stopped_vm2

fleet = fake_fleet


def test_a_confirmation_answered_with_ctrl_d_is_no_unexpected_error(
        fleet, tmp_path, monkeypatch):  # noqa: F811 (the fixture imported above)
    plugins = tmp_path / "plugins.d"
    plugins.mkdir()
    (plugins / "no_stack.py").write_text(textwrap.dedent(MANAGER_WITHOUT_STACK))
    stopped_vm2(fleet)

    def aborted(*args, **kwargs):
        raise click.Abort()             # what click.confirm raises on EOF or Ctrl-C

    monkeypatch.setattr(click, "confirm", aborted)
    # (CliRunner's stdin is no terminal: `confirm` would refuse without asking;
    # base.py reads sys only there)
    monkeypatch.setattr(base, "sys", SimpleNamespace(stdin=SimpleNamespace(isatty=lambda: True)))
    result = CliRunner().invoke(cli, ["--inventory", fleet.inventory_path, "--var",
                                      f"state_dir={fleet.state_dir}", "--var",
                                      f"plugin_dirs={plugins}", "migrate", "vm2", "b1", "b2"])
    assert result.exit_code == EXIT_ILLEGAL, result.output
    assert "unexpected error" not in result.output and "Traceback" not in result.output, \
        result.output
    assert "not confirmed; nothing was changed" in result.output, result.output
    assert fleet.changes() == []

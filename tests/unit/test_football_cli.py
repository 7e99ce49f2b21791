import json
import sys

import pytest
from click.testing import CliRunner

from football import __version__
from football.cli import Globals, cli, hoist_global_options, main


def test_football_version_prints_the_package_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"football, version {__version__}"


def test_football_help_describes_the_tool():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "Move LXC containers" in result.output


@pytest.mark.parametrize("argv, said", [
    (["migrate", "vm1"], "Missing argument 'TARGET'"),
    (["shrink", "vm1", "-5"], "No such option '-5'"),
    (["migrate", "--bogus", "vm1", "cluster2"], "No such option '--bogus'"),
    (["frobnicate"], "No such command 'frobnicate'"),
    (["screener", "frobnicate"], "No such command 'frobnicate'"),
    (["lab", "up", "--hosts"], "No such option '--hosts'"),
    (["--debug-injection-point", "stopped", "migrate", "vm1", "cluster2"],
     "neither a number nor a point's name"),
])
def test_a_usage_mistake_exits_191_illegal_as_every_refusal_does(argv, said):
    result = CliRunner().invoke(cli, argv, prog_name="football")
    assert result.exit_code == 191, result.output
    assert said in result.output and "Usage: football" in result.output
    # with --json, stdout's one line says it: automation reading it sees why
    result = CliRunner().invoke(cli, ["--json", *argv], prog_name="football")
    assert result.exit_code == 191, result.output
    [failed] = [json.loads(line) for line in result.stdout.splitlines()]
    assert (failed["event"], failed["exit_code"]) == ("failed", 191) and said in failed["text"]


def test_a_usage_mistake_after_a_valued_global_option_is_said_in_json_too(tmp_path):
    """`--json` after `--inventory FILE`: the scan for it stopped at FILE,
    and stdout stayed empty."""
    result = CliRunner().invoke(cli, ["--inventory", str(tmp_path / "fleet.yml"), "--json",
                                      "--debug-injection-point", "Bad!", "status"],
                                prog_name="football")
    assert result.exit_code == 191, result.output
    [failed] = [json.loads(line) for line in result.stdout.splitlines()]
    assert failed["event"] == "failed" and "neither a number nor a point's name" in failed["text"]


@pytest.mark.parametrize("argv", [["worker"], ["lab", "up"], ["lab", "add", "vm2", "a1"],
                                  ["lab", "demo"], ["lab", "down"],
                                  ["lab", "exec", "a1", "--", "touch", "made"]])
def test_a_command_without_a_dry_run_refuses_dry_run_and_does_nothing(argv, tmp_path,
                                                                     monkeypatch):
    """`football --dry-run worker` ran the queued jobs for real, `--dry-run
    lab down` removed the lab."""
    monkeypatch.setenv("FOOTBALL_LAB_DIR", str(tmp_path / "lab"))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["--dry-run", "--var", f"state_dir={tmp_path / 'state'}",
                                      *argv])
    assert result.exit_code == 191, result.output
    assert f"`football {' '.join(argv[:2] if argv[0] == 'lab' else argv[:1])}` has no dry run" \
        in result.output
    assert sorted(path.name for path in tmp_path.iterdir()) == []


# --- global options anywhere on the line -------------------------------------------------

@pytest.mark.parametrize("argv, hoisted", [
    (["migrate", "vm1", "cluster2", "--yes"], ["--yes", "migrate", "vm1", "cluster2"]),
    (["migrate", "--json", "vm1", "--var", "poll_interval=0", "cluster2", "--dry-run"],
     ["--json", "--var", "poll_interval=0", "--dry-run", "migrate", "vm1", "cluster2"]),
    (["handover", "vm1", "a2", "--inventory=fleet.yml", "-v", "--config", "c.yml"],
     ["--inventory=fleet.yml", "-v", "--config", "c.yml", "handover", "vm1", "a2"]),
    (["--yes", "migrate", "vm1", "cluster2"], ["--yes", "migrate", "vm1", "cluster2"]),
    # lab's commands have an --inventory and a --json of their own
    (["lab", "status", "--json"], ["lab", "status", "--json"]),
    (["--json", "lab", "up", "--inventory", "lab.yml"], ["--json", "lab", "--inventory",
                                                         "lab.yml", "up"]),
    (["lab", "up", "--lab-dir=/srv/lab", "--inventory", "my.yml"],
     ["lab", "--lab-dir=/srv/lab", "--inventory", "my.yml", "up"]),
    (["--var", "x=1", "lab", "status", "--json", "--inventory", "my.yml"],
     ["--var", "x=1", "lab", "--inventory", "my.yml", "status", "--json"]),
    (["lab", "exec", "a1", "tool", "--inventory", "x.yml"],       # the command's own
     ["lab", "exec", "a1", "tool", "--inventory", "x.yml"]),
    (["lab", "exec", "a1", "--", "marsadm", "--json"], ["lab", "exec", "a1", "--", "marsadm",
                                                        "--json"]),
])
def test_global_options_may_stand_after_the_command(argv, hoisted):
    assert hoist_global_options(argv) == hoisted


def test_an_option_after_the_command_reaches_football(monkeypatch, capsys):
    """`football config --var poll_interval=7` (as an operator types it)."""
    monkeypatch.setattr(sys, "argv", ["football", "config", "--var", "poll_interval=7"])
    with pytest.raises(SystemExit) as ended:
        main()
    assert ended.value.code == 0
    assert "poll_interval = 7" in capsys.readouterr().out


# --- the lab's defaults -----------------------------------------------------------------

def test_the_lab_plans_without_load_and_memory_which_its_hosts_share(tmp_path, monkeypatch):
    """The lab's hosts are one machine: each read the same load, and the
    score, giving each primary a share of its host's, found every move
    worse (`balance --plan` never moved anything in the lab)."""
    monkeypatch.setenv("FOOTBALL_LAB_DIR", str(tmp_path))
    monkeypatch.delenv("FOOTBALL_WEIGHT_CPU_LOAD", raising=False)
    (tmp_path / "inventory.yml").write_text("hosts: {}\n")
    settings = Globals(None, (), False, True, False, False, (), 0).settings()
    assert (settings.weight_cpu_load, settings.weight_free_memory) == (0.0, 0.0)
    assert settings.state_dir == str(tmp_path / "controller")
    settings = Globals(None, (), False, True, False, False, ("weight_cpu_load=2",), 0).settings()
    assert settings.weight_cpu_load == 2.0                      # a --var still wins
    settings = Globals(str(tmp_path / "fleet.yml"), (), False, True, False, False, (),
                       0).settings()
    assert settings.weight_cpu_load == 1.0                      # a fleet of its own: as set


def test_lab_exec_without_a_lab_is_refused_and_runs_nothing(tmp_path, monkeypatch):
    """It ran the command with the environment of a host that does not
    exist (exit 0 for `true`); `marsadm create-cluster` made a state dir
    there that a later `lab up` found."""
    monkeypatch.setenv("FOOTBALL_LAB_DIR", str(tmp_path / "lab"))
    made = tmp_path / "made"
    result = CliRunner().invoke(cli, ["lab", "exec", "a1", "--", "touch", str(made)])
    assert result.exit_code == 191, result.output
    assert f"no lab in {tmp_path / 'lab'}; bring it up first (football lab up)" in result.output
    assert not made.exists() and not (tmp_path / "lab").exists()

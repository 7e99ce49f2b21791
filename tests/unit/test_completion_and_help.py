"""The installed `football` command completes itself in the shell (click's
completion, README "Shell completion"), and its help describes the
arguments and the global options."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from football.cli import cli

FOOTBALL = Path(sys.executable).parent / "football"
GLOBAL_OPTIONS = ("--inventory", "--config", "--dry-run", "--yes", "--json", "--verbose",
                  "--var", "--debug-injection-point", "--version", "--help")


def football(env, *args):
    """Run the console script with extra environment; returns (exit code, stdout)."""
    done = subprocess.run([str(FOOTBALL), *args], env=dict(os.environ, **env),
                          capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout


def complete(words, cword):
    code, out = football({"_FOOTBALL_COMPLETE": "bash_complete", "COMP_WORDS": words,
                          "COMP_CWORD": str(cword)})
    assert code == 0
    return [line.split(",", 1) for line in out.splitlines()]


def help_text(*args):
    result = CliRunner().invoke(cli, [*args, "--help"], prog_name="football")
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())       # rewrapped: wrapping depends on the width


# --- completion ------------------------------------------------------------------------

@pytest.mark.parametrize("shell, marker", [
    ("bash", "complete -o nosort -F _football_completion football"),
    ("zsh", "#compdef football"),
    ("fish", "complete --no-files --command football"),
])
def test_the_console_script_prints_a_completion_script_for_each_shell(shell, marker):
    code, out = football({"_FOOTBALL_COMPLETE": f"{shell}_source"})
    assert code == 0
    assert marker in out
    assert "_FOOTBALL_COMPLETE=" in out


def test_completing_mig_offers_migrate_its_phases_and_the_combined_operations():
    offered = complete("football mig", 1)
    assert ["plain", "migrate"] in offered
    assert {value for _, value in offered} == {
        "migrate", "migrate-prepare", "migrate-wait", "migrate-finish", "migrate-cleanup",
        "migrate+shrink", "migrate+shrink+back"}


def test_completing_a_dash_offers_the_global_options():
    offered = {value for _, value in complete("football --", 1)}
    assert {"--inventory", "--dry-run", "--json", "--var"} <= offered


# --- help ------------------------------------------------------------------------------

def test_football_help_lists_every_global_option_with_its_meaning():
    text = help_text()
    for option in GLOBAL_OPTIONS:
        assert option in text, option
    assert "One JSON event per line on stdout." in text
    assert "Set any tunable" in text
    assert "[env var: FOOTBALL_INVENTORY]" in text


def test_football_help_lists_the_commands_and_the_exit_codes():
    text = help_text()
    for command in ("migrate", "migrate-prepare", "migrate-cleanup", "handover", "config", "lab"):
        assert f" {command} " in text, command
    assert "191 illegal (bad usage or input, refused: nothing changed)" in text
    assert "199 critical" in text


def test_migrate_help_names_its_arguments_and_explains_them():
    text = help_text("migrate")
    assert "Usage: football migrate [OPTIONS] RES TARGET [TARGET_SECONDARY]" in text
    assert "TARGET (a host, or a cluster: primary and secondary chosen by placement)" in text
    assert "RES:HOST names its current host" in text


@pytest.mark.parametrize("phase", ["prepare", "wait", "finish", "cleanup"])
def test_each_migrate_phase_command_says_it_runs_that_phase_alone(phase):
    text = help_text(f"migrate-{phase}")
    assert f"Usage: football migrate-{phase} [OPTIONS] RES TARGET [TARGET_SECONDARY]" in text
    assert f"Only the {phase} phase of migrate" in text


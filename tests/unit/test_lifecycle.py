"""A host's lifecycle state as `football-host lifecycle` keeps it on the
host (football/hostside/lifecycle.py): the transitions it allows, the
origins it remembers once, and what a refused change leaves (nothing)."""

import json

import pytest
from click.testing import CliRunner

from football.hostside import lifecycle
from football.hostside.cli import EXIT_LIFECYCLE_REFUSED, cli


def helper(directory, *args):
    result = CliRunner().invoke(cli, ["lifecycle", str(directory), *args])
    return result.exit_code, result.stdout, result.stderr


def test_a_host_without_a_record_is_active_and_reading_it_writes_nothing(tmp_path):
    code, stdout, _ = helper(tmp_path / "state", "get")
    assert code == 0
    assert json.loads(stdout) == {"state": "active", "since": 0.0, "by": "", "origins": {}}
    assert not (tmp_path / "state").exists()


def test_a_host_goes_active_draining_evacuated_restoring_active(tmp_path):
    for state in ("draining", "evacuated", "restoring", "active"):
        code, stdout, stderr = helper(tmp_path, "set", state, "--by", "evacuate@admin1")
        assert code == 0, stderr
        record = json.loads(stdout)
        assert record["state"] == state and record["by"] == "evacuate@admin1"
        assert lifecycle.read(tmp_path) == record


@pytest.mark.parametrize("path, refused", [
    (["draining", "evacuated"], "draining"),    # evacuated → draining: restore first
    ([], "evacuated"),                          # active → evacuated without draining
    ([], "restoring"),
])
def test_a_change_the_state_does_not_allow_exits_7_and_changes_nothing(tmp_path, path,
                                                                        refused):
    for state in path:
        lifecycle.change(tmp_path, state, "test")
    before = lifecycle.read(tmp_path)
    code, _, stderr = helper(tmp_path, "set", refused, "--by", "test")
    assert code == EXIT_LIFECYCLE_REFUSED
    assert f"cannot become {refused}" in stderr
    assert lifecycle.read(tmp_path) == before


def test_expect_changes_only_from_the_expected_state(tmp_path):
    code, _, stderr = helper(tmp_path, "set", "draining", "--by", "b", "--expect", "evacuated")
    assert code == EXIT_LIFECYCLE_REFUSED and "the host is active, not evacuated" in stderr
    assert lifecycle.read(tmp_path)["state"] == "active"
    code, _, _ = helper(tmp_path, "set", "draining", "--by", "b", "--expect", "active")
    assert code == 0 and lifecycle.read(tmp_path)["state"] == "draining"


def test_setting_the_same_state_again_keeps_when_and_by_whom(tmp_path):
    first = lifecycle.change(tmp_path, "draining", "first")
    again = lifecycle.change(tmp_path, "draining", "second")
    assert (again["since"], again["by"]) == (first["since"], "first")


def test_an_origin_is_recorded_once_and_forgotten_when_the_host_is_active_again(tmp_path):
    lifecycle.change(tmp_path, "draining", "test")
    code, stdout, _ = helper(tmp_path, "origin", "vm1", "a1", "a2")
    assert code == 0 and json.loads(stdout) == {"resource": "vm1", "new": True}
    _, stdout, _ = helper(tmp_path, "origin", "vm1", "a2", "b1")     # a later move of vm1
    assert json.loads(stdout)["new"] is False
    assert lifecycle.read(tmp_path)["origins"]["vm1"]["replicas"] == ["a1", "a2"]
    lifecycle.change(tmp_path, "active", "test")                     # called off
    assert lifecycle.read(tmp_path)["origins"] == {}


def test_bad_names_and_states_are_refused_before_anything_is_written(tmp_path):
    for args in (["origin", "vm1;reboot", "a1"], ["origin", "vm1", "a1;reboot"],
                 ["origin", "vm1"], ["set", "gone", "--by", "x"]):
        code, _, _ = helper(tmp_path, *args)
        assert code == 2, args
    assert not (tmp_path / lifecycle.FILE).exists()


@pytest.mark.parametrize("text", ["", "{not json", "[]", '{"state": "Draining"}'])
def test_a_damaged_record_is_named_with_what_to_do_not_a_traceback_and_is_kept(tmp_path, text):
    """A record edited by hand (or damaged) made every command a Python
    traceback; a change must not write over it either (it may say draining)."""
    (tmp_path / lifecycle.FILE).write_text(text)
    for args in (["get"], ["set", "active", "--by", "x"], ["origin", "vm1", "a1"]):
        result = CliRunner().invoke(cli, ["lifecycle", str(tmp_path), *args])
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), \
            (args, result.exception)
        assert f"{tmp_path / lifecycle.FILE} is no host-state record" in result.stderr, \
            result.stderr
        assert "Traceback" not in result.stderr
    assert (tmp_path / lifecycle.FILE).read_text() == text

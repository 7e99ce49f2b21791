"""Yes/no settings (football/config.py) take every plain way of writing
yes or no — YAML's true/false, yes/no, on/off and its numbers 1/0, or those
words as text — and refuse anything else naming the setting and the
accepted values."""

import pytest

from football.config import TUNABLES, Config
from football.errors import Illegal

YES_NO_SETTINGS = sorted(name for name, tunable in TUNABLES.items()
                         if isinstance(tunable.default, bool))


def settings_of(tmp_path, text):
    path = tmp_path / "football.yml"
    path.write_text(text)
    return Config([str(path)], (), environ={}), str(path)


@pytest.mark.parametrize("name", YES_NO_SETTINGS)
@pytest.mark.parametrize("written, meant", [
    ("0", False), ("1", True), ("no", False), ("yes", True), ("off", False), ("on", True),
    ("false", False), ("True", True), ("'0'", False), ("'yes'", True), ("'On'", True)])
def test_a_yes_no_setting_in_yaml_takes_1_0_yes_no_on_off_and_true_false(
        tmp_path, name, written, meant):
    settings, _ = settings_of(tmp_path, f"{name}: {written}\n")
    assert getattr(settings, name) is meant


def test_cleanup_old_replicas_0_in_a_config_file_turns_the_cleanup_off(tmp_path):
    settings, path = settings_of(tmp_path, "cleanup_old_replicas: 0\n")
    assert settings.cleanup_old_replicas is False
    assert settings.origin["cleanup_old_replicas"] == f"config file {path}"


@pytest.mark.parametrize("written, shown", [
    ("2", "2"), ("-1", "-1"), ("1.0", "1.0"), ("y", "'y'"), ("maybe", "'maybe'"),
    ("''", "''"), ("[yes]", "[True]"), ("", "None")])
def test_a_yes_no_setting_refuses_what_is_not_plainly_yes_or_no_naming_the_accepted_values(
        tmp_path, written, shown):
    with pytest.raises(Illegal) as caught:
        settings_of(tmp_path, f"gate_before_downtime: {written}\n")
    path = tmp_path / "football.yml"
    assert str(caught.value) == (
        f"setting gate_before_downtime from config file {path}: {shown} is not a yes/no: "
        "write true or false (or yes/no, on/off, 1/0)")


@pytest.mark.parametrize("text, meant", [("1", True), ("0", False), (" Off ", False)])
def test_a_yes_no_setting_from_the_environment_takes_the_same_words(text, meant):
    settings = Config((), (), environ={"FOOTBALL_CLEANUP_OLD_REPLICAS": text})
    assert settings.cleanup_old_replicas is meant


@pytest.mark.parametrize("name, written", [("limit_syncs", "true"), ("lease_time", "yes"),
                                           ("state_dir", "on")])
def test_a_yes_no_word_is_still_refused_for_a_number_or_a_text_setting(tmp_path, name,
                                                                        written):
    with pytest.raises(Illegal, match=f"setting {name} from config file .*: True is not a"):
        settings_of(tmp_path, f"{name}: {written}\n")


@pytest.mark.parametrize("written, meant", [("1", True), ("0", False), ("On", True),
                                            ("", False), ("NO", False)])
def test_a_run_files_gate_column_takes_the_same_yes_and_no_words(written, meant):
    from football.runfile import gated, parse

    _, (job,) = parse(f"resource;operation;target;gate\nvm1;migrate;a2;{written}\n")
    assert gated(job) is meant


def test_a_run_files_gate_that_is_neither_says_the_accepted_words():
    from football.runfile import RunFileError, gated, parse

    _, (job,) = parse("resource;operation;target;gate\nvm1;migrate;a2;2\n", "jobs.csv")
    with pytest.raises(RunFileError) as caught:
        gated(job, "jobs.csv")
    assert str(caught.value) == ("jobs.csv line 2: gate '2' is not yes or no: write yes or no "
                                 "(or true/false, on/off, 1/0; empty: no); nothing was queued")

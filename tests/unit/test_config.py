"""The tunables (football/config.py): defaults < YAML files (later wins) <
FOOTBALL_<NAME> in the environment < --var; where each value came from;
conversion to the default's type; and every mistake named plainly."""

import json

import pytest
from click.testing import CliRunner

from football.cli import cli
from football.config import TUNABLES, Config
from football.errors import Illegal


@pytest.fixture
def config_file(tmp_path):
    def write(text, name="football.yml"):
        path = tmp_path / name
        path.write_text(text)
        return str(path)
    return write


def config(files=(), variables=(), environ=None):
    return Config(files, variables, environ={} if environ is None else environ)


def refused(**layers):
    with pytest.raises(Illegal) as caught:
        config(**layers)
    return str(caught.value)


# --- layers ----------------------------------------------------------------------------

def test_without_files_environment_or_vars_every_setting_is_its_default():
    settings = config()
    for name, tunable in TUNABLES.items():
        assert getattr(settings, name) == tunable.default
        assert settings.origin[name] == "default"


def test_a_config_file_overrides_the_default_and_says_so(config_file):
    path = config_file("limit_syncs: 2\n")
    settings = config(files=[path])
    assert settings.limit_syncs == 2
    assert settings.origin["limit_syncs"] == f"config file {path}"
    assert settings.origin["lease_time"] == "default"


def test_of_two_config_files_the_later_one_wins(config_file):
    first = config_file("limit_syncs: 2\nlease_time: 60\n", "first.yml")
    second = config_file("limit_syncs: 3\n", "second.yml")
    settings = config(files=[first, second])
    assert (settings.limit_syncs, settings.origin["limit_syncs"]) == (3, f"config file {second}")
    assert (settings.lease_time, settings.origin["lease_time"]) == (60.0, f"config file {first}")


def test_the_environment_wins_over_config_files(config_file):
    settings = config(files=[config_file("limit_syncs: 2\n")],
                      environ={"FOOTBALL_LIMIT_SYNCS": "5"})
    assert settings.limit_syncs == 5
    assert settings.origin["limit_syncs"] == "environment FOOTBALL_LIMIT_SYNCS"


def test_var_wins_over_the_environment_and_config_files(config_file):
    settings = config(files=[config_file("limit_syncs: 2\n")],
                      environ={"FOOTBALL_LIMIT_SYNCS": "5"}, variables=["limit_syncs=7"])
    assert settings.limit_syncs == 7
    assert settings.origin["limit_syncs"] == "--var"


def test_of_two_vars_for_one_setting_the_later_one_wins():
    assert config(variables=["limit_syncs=1", "limit_syncs=9"]).limit_syncs == 9


def test_var_allows_spaces_around_the_name_and_the_number():
    assert config(variables=[" limit_syncs = 3 "]).limit_syncs == 3


def test_a_var_value_may_contain_an_equals_sign():
    assert config(variables=["state_dir=/srv/a=b"]).state_dir == "/srv/a=b"


def test_by_default_the_process_environment_is_read(monkeypatch):
    monkeypatch.setenv("FOOTBALL_LEASE_TIME", "42")
    assert Config().lease_time == 42.0


def test_unknown_football_variables_in_the_environment_are_ignored():
    # FOOTBALL_INVENTORY and FOOTBALL_LAB_DIR belong to the command line, not to the tunables
    settings = config(environ={"FOOTBALL_INVENTORY": "fleet.yml", "FOOTBALL_NO_SUCH": "1"})
    assert settings.items() == config().items()


def test_lower_case_environment_names_are_not_read():
    assert config(environ={"FOOTBALL_limit_syncs": "9"}).limit_syncs == 4


def test_default_replaces_only_a_value_nobody_set(config_file):
    settings = config()
    settings.default("state_dir", "/var/tmp/lab/controller")
    assert settings.state_dir == "/var/tmp/lab/controller"
    assert settings.origin["state_dir"] == "default"
    chosen = config(variables=["state_dir=/srv/football"])
    chosen.default("state_dir", "/var/tmp/lab/controller")
    assert chosen.state_dir == "/srv/football"


def test_items_lists_every_setting_sorted_by_name():
    assert [name for name, _ in config().items()] == sorted(TUNABLES)


def test_reading_an_unknown_setting_is_an_attribute_error():
    with pytest.raises(AttributeError, match="limit_sync"):
        config().limit_sync


# --- conversion ------------------------------------------------------------------------

@pytest.mark.parametrize("text, value", [("3", 3), (" 12 ", 12), ("1", 1), ("+2", 2)])
def test_a_text_value_becomes_a_whole_number_for_an_integer_setting(text, value):
    settings = config(environ={"FOOTBALL_LIMIT_SYNCS": text})
    assert settings.limit_syncs == value and type(settings.limit_syncs) is int


@pytest.mark.parametrize("text, value", [("1.5", 1.5), ("60", 60.0), ("1e3", 1000.0)])
def test_a_text_value_becomes_a_float_for_a_seconds_setting(text, value):
    settings = config(variables=[f"lease_time={text}"])
    assert settings.lease_time == value and type(settings.lease_time) is float


@pytest.mark.parametrize("text", ["yes", "YES", "true", "True", "on", "1", " yes "])
def test_yes_words_turn_a_boolean_on(text):
    assert config(variables=[f"cleanup_old_replicas={text}"]).cleanup_old_replicas is True


@pytest.mark.parametrize("text", ["no", "No", "false", "FALSE", "off", "0"])
def test_no_words_turn_a_boolean_off(text):
    assert config(variables=[f"cleanup_old_replicas={text}"]).cleanup_old_replicas is False


def test_a_string_setting_keeps_its_text_as_given():
    assert config(environ={"FOOTBALL_STATE_DIR": " /srv/x "}).state_dir == " /srv/x "


def test_yaml_values_of_the_right_type_are_taken_as_they_are(config_file):
    settings = config(files=[config_file(
        "limit_syncs: 2\nlease_time: 1.5\ncleanup_old_replicas: no\nstate_dir: /srv/f\n")])
    assert (settings.limit_syncs, settings.lease_time, settings.cleanup_old_replicas,
            settings.state_dir) == (2, 1.5, False, "/srv/f")


def test_a_whole_number_in_yaml_is_good_for_a_float_setting(config_file):
    settings = config(files=[config_file("lock_retry_timeout: 30\n")])
    assert settings.lock_retry_timeout == 30.0 and type(settings.lock_retry_timeout) is float


def test_a_quoted_number_in_yaml_is_converted_like_text(config_file):
    assert config(files=[config_file("limit_syncs: '6'\n")]).limit_syncs == 6


def test_a_list_of_paths_is_colon_separated_in_the_environment_and_var():
    assert config(environ={"FOOTBALL_PLUGIN_DIRS": "/a:/b"}).plugin_dirs == ("/a", "/b")
    assert config(variables=["plugin_dirs= /a : :/b "]).plugin_dirs == ("/a", "/b")
    assert config(variables=["plugin_dirs="]).plugin_dirs == ()


def test_a_list_of_paths_is_a_yaml_list_in_a_config_file(config_file):
    path = config_file("plugin_dirs: [/etc/football/plugins, /srv/plugins]\n")
    assert config(files=[path]).plugin_dirs == ("/etc/football/plugins", "/srv/plugins")


def test_a_list_of_paths_that_is_not_strings_is_refused(config_file):
    path = config_file("plugin_dirs: [1, 2]\n")
    assert refused(files=[path]) == (f"setting plugin_dirs from config file {path}: [1, 2] "
                                     "is not a list (':'-separated)")


# --- mistakes --------------------------------------------------------------------------

def test_an_unknown_setting_in_var_is_refused_naming_it_and_the_known_ones():
    message = refused(variables=["limit_sync=3"])
    assert message.startswith("unknown setting 'limit_sync' in --var; known: ")
    assert "limit_syncs" in message and "lease_time" in message
    assert "football config" in message


def test_an_unknown_setting_in_a_config_file_is_refused_naming_it_and_the_file(config_file):
    path = config_file("limit_syncs: 2\nleas_time: 60\n")
    assert refused(files=[path]).startswith(f"unknown setting 'leas_time' in config file {path}")


def test_a_var_without_an_equals_sign_is_refused():
    assert refused(variables=["limit_syncs"]) == "--var 'limit_syncs': expected name=value"


@pytest.mark.parametrize("variable, message", [
    ("limit_syncs=many", "setting limit_syncs from --var: 'many' is not a whole number"),
    ("limit_syncs=2.5", "setting limit_syncs from --var: '2.5' is not a whole number"),
    ("limit_syncs=", "setting limit_syncs from --var: '' is not a whole number"),
    ("lease_time=soon", "setting lease_time from --var: 'soon' is not a number"),
    ("cleanup_old_replicas=2", "setting cleanup_old_replicas from --var: '2' is not a yes/no"),
    ("cleanup_old_replicas=maybe", "setting cleanup_old_replicas from --var: 'maybe' is not a "
                                   "yes/no"),
])
def test_a_bad_value_is_refused_naming_the_setting_the_value_and_the_kind(variable, message):
    assert refused(variables=[variable]).startswith(message)


@pytest.mark.parametrize("variable, shown, complaint", [
    ("limit_syncs=0", "0", "is below 1, its least"),
    ("limit_shrinks=-1", "-1", "is below 1, its least"),
    ("lease_time=-5", "-5.0", "is below 0, its least"),
    ("poll_interval=-0.1", "-0.1", "is below 0, its least"),
    ("shrink_percent=100", "100", "is outside 1..99"),
    ("balance_margin=1.5", "1.5", "is outside 0..1"),
    ("min_space=1000", "1000", f"is below {300 << 20}, its least"),
    ("max_moves=0", "0", "is below 1, its least"),
    ("weight_cpu_load=-1", "-1.0", "is below 0, its least"),
    ("business_hours=[1-5", "'[1-5'", "is not a regular expression (unterminated character "
                                      "set at position 0)"),
])
def test_a_value_out_of_its_range_is_refused_naming_the_range_and_the_meaning(
        variable, shown, complaint):
    name = variable.split("=")[0]
    assert refused(variables=[variable]) == (f"setting {name} from --var: {shown} {complaint} "
                                             f"— {name}: {TUNABLES[name].meaning}")


@pytest.mark.parametrize("variable", ["poll_interval=0", "lock_retry_timeout=0",
                                      "plan_expiry=0", "cleanup_delay=0", "limit_syncs=1",
                                      "shrink_percent=1", "shrink_percent=99",
                                      "balance_margin=0", "business_hours=",
                                      f"min_space={300 << 20}"])
def test_the_ends_of_a_range_are_taken(variable):
    name, _, value = variable.partition("=")
    assert str(getattr(config(variables=[variable]), name)) in (value, f"{value}.0")


@pytest.mark.parametrize("name", sorted(TUNABLES))
def test_every_default_is_within_its_own_range(name):
    tunable = TUNABLES[name]
    assert tunable.check is None or tunable.check(tunable.default) is None


def test_a_file_changed_to_a_bad_value_keeps_the_settings_and_says_why(config_file):
    path = config_file("limit_syncs: 2\n")
    settings = config(files=[path])
    config_file("limit_syncs: 0\n")
    again = settings.reloaded()
    assert again is settings and again.limit_syncs == 2
    assert again.refused_change.startswith(f"setting limit_syncs from config file {path}: 0 is "
                                           "below 1")
    config_file("limit_syncs: 3\n")
    again = settings.reloaded()
    assert again.limit_syncs == 3 and again.refused_change is None


def test_a_bad_value_in_the_environment_names_the_variable():
    assert refused(environ={"FOOTBALL_LIMIT_SYNCS": "four"}) == (
        "setting limit_syncs from environment FOOTBALL_LIMIT_SYNCS: 'four' is not a "
        "whole number")


@pytest.mark.parametrize("text, shown", [
    ("limit_syncs: 2.5", "2.5"),
    ("limit_syncs: true", "True"),
    ("limit_syncs: [1, 2]", "[1, 2]"),
    ("limit_syncs:", "None"),
    ("lease_time: yes", "True"),
    ("cleanup_old_replicas: 2", "2"),
    ("state_dir: 5", "5"),
])
def test_a_yaml_value_of_the_wrong_type_is_refused_naming_the_file(config_file, text, shown):
    path = config_file(text + "\n")
    name = text.split(":")[0]
    assert refused(files=[path]).startswith(f"setting {name} from config file {path}: {shown} "
                                            "is not a ")


def test_a_missing_config_file_is_refused_naming_it(tmp_path):
    path = tmp_path / "nowhere.yml"
    assert refused(files=[str(path)]) == f"config file {path} does not exist"


def test_a_config_file_that_is_a_directory_is_refused_naming_it(tmp_path):
    assert refused(files=[str(tmp_path)]) == (f"config file {tmp_path} cannot be read: "
                                              "Is a directory")


def test_a_config_file_not_in_utf8_is_refused_and_one_with_a_bom_is_read(tmp_path):
    path = tmp_path / "football.yml"
    path.write_bytes('limit_syncs: 2\nowner: "M\u00fcller"\n'.encode("latin-1"))
    assert refused(files=[str(path)]).startswith(f"config file {path} is not valid YAML: "
                                                 "unacceptable character #x00fc")
    path.write_bytes("limit_syncs: 2\n".encode("utf-8-sig"))
    assert config(files=[str(path)]).limit_syncs == 2

def test_a_config_file_that_is_not_yaml_is_refused_naming_it(config_file):
    path = config_file("limit_syncs: [2\n")
    assert refused(files=[path]).startswith(f"config file {path} is not valid YAML: ")


@pytest.mark.parametrize("text", ["- limit_syncs\n", "just text\n", "42\n"])
def test_a_config_file_that_is_not_a_mapping_is_refused(config_file, text):
    path = config_file(text)
    assert refused(files=[path]) == f"config file {path}: expected a mapping of settings"


def test_an_empty_config_file_changes_nothing(config_file):
    settings = config(files=[config_file("")])
    assert set(settings.origin.values()) == {"default"}


def test_a_refused_value_is_illegal_so_the_run_exits_191_having_changed_nothing():
    with pytest.raises(Illegal) as caught:
        config(variables=["limit_syncs=x"])
    assert caught.value.exit_code == 191


# --- documentation ---------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(TUNABLES))
def test_every_tunable_has_a_one_line_meaning(name):
    meaning = TUNABLES[name].meaning
    assert meaning.strip() and "\n" not in meaning


def test_football_config_shows_each_value_its_origin_and_meaning(config_file, tmp_path):
    path = config_file("limit_syncs: 2\n")
    result = CliRunner(env={"FOOTBALL_LEASE_TIME": "60"}).invoke(
        cli, ["--config", path, "--var", "stall_warn=5", "config"])
    assert result.exit_code == 0, result.output
    lines = {line.split(" = ")[0]: line for line in result.output.splitlines()}
    assert sorted(lines) == sorted(TUNABLES)
    assert lines["limit_syncs"].startswith(f"limit_syncs = 2  (config file {path}) — parallel")
    assert lines["lease_time"].startswith("lease_time = 60.0  (environment FOOTBALL_LEASE_TIME)")
    assert lines["stall_warn"].startswith("stall_warn = 5.0  (--var)")
    assert "(default)" in lines["poll_interval"]


def test_football_config_shows_what_the_operations_get_the_labs_defaults_too(tmp_path,
                                                                           monkeypatch):
    """It showed the built-in defaults (state_dir /var/lib/football) while
    a lab was up and every operation used the lab's."""
    monkeypatch.setenv("FOOTBALL_LAB_DIR", str(tmp_path))
    for name in ("FOOTBALL_STATE_DIR", "FOOTBALL_WEIGHT_CPU_LOAD", "FOOTBALL_INVENTORY"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "inventory.yml").write_text("hosts: {}\n")     # a lab is up
    result = CliRunner().invoke(cli, ["--json", "config"])
    assert result.exit_code == 0, result.output
    settings = {event["name"]: event for event in map(json.loads, result.stdout.splitlines())}
    assert sorted(settings) == sorted(TUNABLES)
    assert (settings["state_dir"]["value"], settings["state_dir"]["origin"]) == \
        (str(tmp_path / "controller"), "default: the lab's")
    assert (settings["weight_cpu_load"]["value"], settings["limit_syncs"]["origin"]) == \
        (0.0, "default")
    result = CliRunner().invoke(cli, ["config"])
    assert f"state_dir = '{tmp_path / 'controller'}'  (default: the lab's) — " in result.output


def test_football_config_with_an_unknown_var_exits_191_naming_it():
    result = CliRunner().invoke(cli, ["--var", "bogus=1", "config"])
    assert result.exit_code == 191
    assert "unknown setting 'bogus' in --var" in result.output

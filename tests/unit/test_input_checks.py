"""Bad input is refused where it is read (football/config.py,
football/inventory.py): exit 191 with a message naming what is wrong and
what to do, nothing changed, never a traceback later in an operation that
has already acted."""

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from football.cli import cli
from football.config import TUNABLES
from football.errors import EXIT_ILLEGAL, Illegal
from football.inventory import InventoryError, load, parse
from tests.unit.test_config import config, refused


def inventory_refused(text):
    with pytest.raises(InventoryError) as caught:
        parse(yaml.safe_load(text), "test.yml")
    return str(caught.value)


@pytest.fixture
def write(tmp_path):
    def write(text, name="file.yml"):
        path = tmp_path / name
        path.write_text(text)
        return str(path)
    return write


HOSTS = "hosts: {a1: {address: 10.0.0.1}, a2: {address: 10.0.0.2}}\n"


# --- 1. commands split like a shell's words --------------------------------------------

@pytest.mark.parametrize("name", ["notify_command", "job_command"])
def test_a_command_setting_with_an_unclosed_quote_is_refused_when_read(name):
    """Before: taken, then every operation died with ValueError('No closing
    quotation') where the notify plugin or the worker split it."""
    message = refused(variables=[f'{name}=chat-post "oops'])
    assert message.startswith(f"setting {name} from --var: 'chat-post \"oops' cannot be split "
                              "into a command's words (No closing quotation): close the quote")


@pytest.mark.parametrize("name", ["notify_command", "job_command"])
def test_a_command_setting_with_quoted_words_is_taken(name):
    value = "/usr/local/bin/chat-post --channel 'football ops'"
    assert getattr(config(variables=[f"{name}={value}"]), name) == value


# --- 2. the jobs' database URL ---------------------------------------------------------

@pytest.mark.parametrize("url, complaint", [
    ("bogus", "is not a database URL"),
    ("postgres://f@db/jobs", "names the database 'postgres', which the screener cannot use"),
])
def test_a_jobs_database_url_the_screener_cannot_use_is_refused_when_read(url, complaint):
    """Before: `bogus` was taken and `balance` died with sqlalchemy's ArgumentError."""
    message = refused(variables=[f"jobs_database_url={url}"])
    assert message.startswith(f"setting jobs_database_url from --var: {url!r} {complaint}")
    assert "postgresql://USER:PASSWORD@HOST/DB" in message


@pytest.mark.parametrize("url", ["", "postgresql://f:p%w@db/jobs",
                                 "postgresql+psycopg://f@db:5433/jobs",
                                 "sqlite:////var/lib/football/jobs.sqlite"])
def test_a_postgresql_or_sqlite_jobs_database_url_is_taken(url):
    assert config(variables=[f"jobs_database_url={url}"]).jobs_database_url == url


# --- 3. seconds, days and sizes: finite, within bounds ---------------------------------

@pytest.mark.parametrize("variable, complaint", [
    ("poll_interval=inf", "inf is not a finite number"),
    ("poll_interval=1e999", "inf is not a finite number"),
    ("poll_interval=nan", "nan is not a finite number"),
    ("poll_interval=1e300", "1e+300 is above 315576000 (10 years), its most"),
    ("sync_timeout=-inf", "-inf is not a finite number"),
    ("history_days=1e9", "1000000000.0 is above 3652.5 (10 years), its most"),
    ("weight_cpu_load=inf", "inf is not a finite number"),
    ("placement_min_free=" + "9" * 30, "9" * 30 + " is above 1152921504606846976 (1 EiB), "
                                                  "its most"),
])
def test_a_time_or_size_setting_must_be_finite_and_within_its_bound(variable, complaint):
    name = variable.split("=")[0]
    assert refused(variables=[variable]).startswith(f"setting {name} from --var: {complaint}")


@pytest.mark.parametrize("name", sorted(name for name, tunable in TUNABLES.items()
                                        if isinstance(tunable.default, float)))
def test_no_number_setting_takes_an_infinity(name):
    with pytest.raises(Illegal):
        config(variables=[f"{name}=inf"])


def test_an_infinity_in_a_yaml_file_is_refused_too(write):
    path = write("poll_interval: .inf\n")
    assert refused(files=[path]).startswith(f"setting poll_interval from config file {path}: "
                                            "inf is not a finite number")


def test_football_config_with_an_infinite_setting_exits_191_with_valid_json():
    """Before: `--json config` printed Infinity, which is not JSON."""
    result = CliRunner().invoke(cli, ["--json", "--var", "poll_interval=inf", "config"])
    assert result.exit_code == EXIT_ILLEGAL
    assert "Traceback" not in result.output and "Infinity" not in result.stdout
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[-1]["event"] == "failed" and "poll_interval" in events[-1]["text"]


# --- 4. locks and workers --------------------------------------------------------------

@pytest.mark.parametrize("variable, least", [("lock_break_timeout=0", "60"),
                                             ("lock_break_timeout=59", "60"),
                                             ("run_lock_lease=0", "0.3"),
                                             ("run_lock_lease=0.1", "0.3")])
def test_a_lock_that_would_be_broken_at_once_is_refused_stating_the_least(variable, least):
    """Before: 0 was taken, and a fresh lock was broken at once: no exclusion."""
    name = variable.split("=")[0]
    assert f"is below {least}, its least" in refused(variables=[variable])
    assert refused(variables=[variable]).startswith(f"setting {name} from --var:")


def test_the_least_lock_times_are_taken():
    settings = config(variables=["lock_break_timeout=60", "run_lock_lease=0.3"])
    assert (settings.lock_break_timeout, settings.run_lock_lease) == (60.0, 0.3)


def test_worker_dead_after_below_twice_the_heartbeat_is_refused_naming_both():
    message = refused(variables=["worker_heartbeat=5", "worker_dead_after=5"])
    assert message.startswith("setting worker_dead_after (5 s, from --var) is less than twice "
                              "worker_heartbeat (5 s, from --var)")
    assert "raise worker_dead_after or lower worker_heartbeat" in message
    settings = config(variables=["worker_heartbeat=0.3", "worker_dead_after=3"])
    assert (settings.worker_heartbeat, settings.worker_dead_after) == (0.3, 3.0)


# --- 5. state_dir ----------------------------------------------------------------------

@pytest.mark.parametrize("value, complaint", [
    ("", "'' is empty: give a directory"),
    ("  ", "'  ' is empty: give a directory"),
    ("var/football", "'var/football' is not an absolute path: give the directory from /"),
])
def test_an_empty_or_relative_state_dir_is_refused(value, complaint):
    """Before: `state_dir=` was taken and journals landed in the current directory."""
    assert refused(variables=[f"state_dir={value}"]).startswith(
        f"setting state_dir from --var: {complaint}")


# --- 6. FOOTBALL_* variables -----------------------------------------------------------

@pytest.mark.parametrize("variable, meant", [("FOOTBALL_LIMIT_SYNC", "limit_syncs"),
                                             ("FOOTBALL_POLL_INTERVALL", "poll_interval"),
                                             ("FOOTBALL_STATE_DIRS", "state_dir")])
def test_a_football_variable_that_misspells_a_setting_is_refused(variable, meant):
    """Before: ignored, and the setting kept its default without a word."""
    assert refused(environ={variable: "2"}) == (
        f"environment {variable} names no setting: did you mean FOOTBALL_{meant.upper()} "
        f"({meant})? Correct or unset it (see `football config`)")


@pytest.mark.parametrize("variable", [
    "FOOTBALL_INVENTORY", "FOOTBALL_LAB_DIR", "FOOTBALL_LAB_WORKLOAD_INTERVAL",
    "FOOTBALL_TOOL_SERVER", "FOOTBALL_TOOL_SOCKET", "FOOTBALL_JOB", "FOOTBALL_JOB_ID",
    "FOOTBALL_JOB_STATE", "FOOTBALL_TEMPLATES", "FOOTBALL_ROOT", "FOOTBALL_TEST_FAIL_START",
    "FOOTBALL_TEST_HOOK_LOG"])
def test_football_variables_that_are_not_settings_are_left_alone(variable):
    assert config(environ={variable: "1"}).items() == config().items()


def test_a_misspelt_football_variable_exits_191_from_the_command_line():
    result = CliRunner(env={"FOOTBALL_LIMIT_SYNC": "2"}).invoke(cli, ["config"])
    assert result.exit_code == EXIT_ILLEGAL
    assert "FOOTBALL_LIMIT_SYNC names no setting" in result.output
    assert "Traceback" not in result.output


# --- 7. yes/no in YAML -----------------------------------------------------------------

@pytest.mark.parametrize("number", ["2", "-1"])
def test_a_yaml_number_for_a_yes_no_setting_is_refused_saying_what_to_write(write, number):
    """Before: `0 is not a yes/no (true/false, on/off, 1/0)`: it contradicted
    itself. 0 and 1 are taken now (tests/unit/test_yes_no_settings.py);
    other numbers are refused, saying the accepted words."""
    path = write(f"cleanup_old_replicas: {number}\n")
    assert refused(files=[path]) == (
        f"setting cleanup_old_replicas from config file {path}: {number} is not a yes/no: "
        "write true or false (or yes/no, on/off, 1/0)")


# --- 8. the inventory's names ----------------------------------------------------------

@pytest.mark.parametrize("text, message", [
    ("hosts: {a1: {address: 10.0.0.1, 22: x}}",
     "host a1: unknown settings 22; known: address, "),
    ("clusters: {c: [a1, {a2: 1}]}\n" + HOSTS,
     "cluster c: {'a2': 1} is not a host name; list the hosts by name: [a1, a2]"),
    ("clusters: {c: [a1, 5]}\n" + HOSTS,
     "cluster c: 5 is not a host name; list the hosts by name"),
    ("clusters: {5: [a1]}\n" + HOSTS, "cluster name 5 is not a name"),
    (HOSTS + "demo: {resource: vm1, primary: [a1], secondary: a2}",
     "demo primary ['a1'] is not a declared host"),
    (HOSTS + "demo: {resource: vm1, primary: a1, secondary: {a2: 1}}",
     "demo secondary {'a2': 1} is not a declared host"),
])
def test_an_inventory_name_that_is_not_a_string_is_refused_not_a_type_error(text, message):
    """Before: TypeError or `unhashable type` (exit 1, a traceback)."""
    assert inventory_refused(text).startswith(f"inventory test.yml: {message}")


def test_an_inventory_with_a_bad_cluster_member_exits_191_from_the_command_line(write):
    path = write("clusters: {c: [a1, {a2: 1}]}\n" + HOSTS, "fleet.yml")
    result = CliRunner().invoke(cli, ["--inventory", path, "status"])
    assert result.exit_code == EXIT_ILLEGAL, result.output
    assert "is not a host name" in result.output and "Traceback" not in result.output


# --- 9. a host's paths, VG and plugin kinds --------------------------------------------

@pytest.mark.parametrize("setting, value, message", [
    ("lxcpath", "var/lib/lxc", "lxcpath must be an absolute path (from /, without '..'), "
                               "not 'var/lib/lxc'"),
    ("lxcpath", 5, "lxcpath must be an absolute path (from /, without '..'), not 5"),
    ("lxcpath", "/var/lib/../../etc", "lxcpath must be an absolute path"),
    ("root", 5, "root must be an absolute path (from /, without '..'), not 5"),
    ("root", "", "root must be an absolute path"),
    ("known_hosts", 3, "known_hosts must be a file's path from / or ~ "
                       "(e.g. ~/.ssh/known_hosts), not 3"),
    ("ssh_key", "keys/id", "ssh_key must be a file's path from / or ~"),
    ("vg", "../../etc", "vg '../../etc' is not a volume group name: letters, digits and "
                        "'+_.-', not starting with '-', not '.' or '..'"),
    ("vg", "-vg", "vg '-vg' is not a volume group name"),
    ("vg", "..", "vg '..' is not a volume group name"),
    ("vg", "vg/0", "vg 'vg/0' is not a volume group name"),
    ("vg", 0, "vg 0 is not a volume group name"),
    ("storage", 5, "storage 5 is not a plugin kind"),
    ("manager", "Sys D", "manager 'Sys D' is not a plugin kind"),
    ("container", None, "container None is not a plugin kind"),
    ("user", 5, "user must be a user name, not 5"),
    ("connect_timeout", float("inf"), "connect_timeout must be a number of seconds up to "
                                      "315576000 (10 years), not inf"),
])
def test_a_hosts_path_vg_or_plugin_kind_of_the_wrong_shape_is_refused(setting, value,
                                                                       message):
    """Before: taken, and a crash later (a relative lxcpath, a number), or
    paths outside /dev (vg ../../etc)."""
    data = yaml.safe_load(HOSTS)
    data["hosts"]["a1"][setting] = value
    with pytest.raises(InventoryError) as caught:
        parse(data, "test.yml")
    assert str(caught.value).startswith(f"inventory test.yml: host a1: {message}")


@pytest.mark.parametrize("setting, value", [
    ("vg", "vg-nvme"), ("vg", "vg_0.fast+"), ("lxcpath", "/var/lib/my lxc"),
    ("root", "/tmp/lab/a1"), ("ssh_key", "~/.ssh/id_football"), ("ssh_key", ""),
    ("known_hosts", "/keys/known_hosts"), ("storage", "zfs"), ("manager", "systemd"),
])
def test_a_hosts_well_formed_path_vg_or_plugin_kind_is_taken(setting, value):
    data = yaml.safe_load(HOSTS)
    data["hosts"]["a1"][setting] = value
    assert getattr(parse(data, "test.yml").host("a1"), setting) == value


# --- 10. a key given twice -------------------------------------------------------------

@pytest.mark.parametrize("text, key, lines", [
    ("clusters:\n  cluster1: [a1]\n  cluster1: [a2]\nhosts: {a1: {address: 10.0.0.1}, "
     "a2: {address: 10.0.0.2}}\n", "cluster1", (2, 3)),
    ("hosts:\n  a1: {address: 10.0.0.1}\n  a1: {address: 10.0.0.9}\n", "a1", (2, 3)),
    ("hosts:\n  a1: {address: 10.0.0.1, address: 10.0.0.9}\n", "address", (2, 2)),
])
def test_an_inventory_key_given_twice_is_refused_naming_it_and_its_lines(write, text, key,
                                                                         lines):
    """Before: the last won silently (cluster1's first hosts dropped, a
    host's second address kept)."""
    path = write(text, "fleet.yml")
    with pytest.raises(InventoryError) as caught:
        load(path)
    message = str(caught.value)
    assert message.startswith(f"inventory {path} is not valid YAML: ")
    assert f"key {key!r} is given twice (first on line {lines[0]}): keep one" in message
    assert f"line {lines[1]}" in message


def test_a_config_file_setting_given_twice_is_refused_naming_it_and_its_lines(write):
    path = write("limit_syncs: 2\nlease_time: 60\nlimit_syncs: 8\n")
    message = refused(files=[path])
    assert message.startswith(f"config file {path} is not valid YAML: ")
    assert "key 'limit_syncs' is given twice (first on line 1): keep one" in message
    assert "line 3" in message


def test_a_yaml_merge_may_still_be_overridden(write):
    path = write("hosts:\n  a1: &a {address: 10.0.0.1, port: 2222}\n"
                 "  a2:\n    <<: *a\n    address: 10.0.0.2\n", "fleet.yml")
    assert load(path).host("a2").address == "10.0.0.2"


# --- 11. a cluster named like a host ---------------------------------------------------

def test_a_cluster_named_like_a_host_is_refused():
    assert inventory_refused("clusters: {a1: [a1, a2]}\n" + HOSTS) == (
        "inventory test.yml: cluster a1 has the name of a host: commands would not know "
        "which is meant; rename the cluster")


# --- 12. one machine under two spellings -----------------------------------------------

@pytest.mark.parametrize("first, second", [("fd00::1", "fd00:0:0::1"),
                                           ("h.example.com", "h.example.com."),
                                           ("H.Example.com", "h.example.COM."),
                                           ("10.0.0.1", "::ffff:10.0.0.1")])
def test_one_address_spelt_two_ways_is_one_machine(first, second):
    message = inventory_refused(f"hosts: {{a1: {{address: '{first}'}}, "
                                f"a2: {{address: '{second}'}}}}")
    assert message.startswith("inventory test.yml: hosts a1 and a2 have the same address ")


# --- the shipped inventories still read ------------------------------------------------

@pytest.mark.parametrize("name", ["example-fleet.yml", "lab.yml"])
def test_the_shipped_inventories_pass_every_check(name):
    assert load(Path(__file__).parents[2] / "inventory" / name).hosts

"""The `systemd` cluster manager without systemd as init: the exact commands
each hook and `install_units` run (through a recording fake transport), unit
name escaping checked against the real `systemd-escape`, and the rendered
units checked by the real `systemd-analyze verify` (which works offline);
also the screener worker's unit (football-worker.service), checked alike."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pluggy
import pytest
from click.testing import CliRunner

from football.cli import cli
from football.errors import Illegal
from football.ops.fleetmoves import balance_units
from football.screener import STOP_WAIT, systemd_word, worker_unit
from football.hooks import ClusterManagerSpec, Hooks, plugin_manager
from football.inventory import Host
from plugins import systemd
from plugins.systemd import UnitFailed, escape, escape_path, install_units, render_marsd, \
    render_units, unit_names

TRICKY_RESOURCES = ["vm1", "db-01", "web.example_2"]
PRIMARY = ["marsadm", "--timeout=120", "primary"]
NOT_ACTIVE = 3  # systemctl is-active's exit code for a unit that is not active


@pytest.fixture
def host(runner):
    return Host(name="h1", address="10.0.0.1", manager="systemd", _runner=runner)


def tool(name):
    """The path of a system tool the tests need; missing is a failure, not a
    skip, so a machine without it cannot pass silently."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: install the Debian package providing it "
                    "(systemd for systemd-*, lxc for lxc-*; `make deps` does)")
    return path


def systemd_escape(*args):
    done = subprocess.run([tool("systemd-escape"), *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def real_binaries():
    return dict(lxc_start=tool("lxc-start"), lxc_stop=tool("lxc-stop"), lxc_wait=tool("lxc-wait"))


def marsd_binary():
    marsd = Path(sys.executable).parent / "marsd"
    assert marsd.exists(), f"{marsd} missing: install the project into the venv (make venv)"
    return str(marsd)


def setting(text, key):
    """The value of `key=` in a unit file's text."""
    match = re.search(rf"^{key}=(.*)$", text, re.MULTILINE)
    assert match, f"no {key}= in\n{text}"
    return match.group(1)


# --- unit names --------------------------------------------------------------------------

def test_unit_names_are_the_container_service_to_start_and_the_mount_to_stop(host):
    assert unit_names(host, "vm1") == ("football-ct-vm1.service", "var-lib-lxc-vm1.mount")
    assert unit_names(host, "db-01") == ("football-ct-db\\x2d01.service",
                                         "var-lib-lxc-db\\x2d01.mount")


@pytest.mark.parametrize("path", [
    "/var/lib/lxc/vm1", "/var/lib/lxc/db-01", "/var/lib/lxc/web.example_2",
    "/srv/lab-1/h1/var/lib/lxc/a.b-c_d", "/.hidden/x", "/var/lib/lxc/.dot", "//var//lib/lxc/",
    "/a/./b", "/", "/-lead/_under", "/with space/ümlaut", "/back\\slash/co:lon",
])
def test_escape_path_matches_systemd_escape_path(path):
    assert escape_path(path) == systemd_escape("--path", path)


@pytest.mark.parametrize("text", TRICKY_RESOURCES + ["_x", ".lead", "a/b", "a\\b", "x:y"])
def test_escape_matches_systemd_escape(text):
    assert escape(text) == systemd_escape(text)


def test_escape_path_refuses_parent_components_as_systemd_does():
    refused = subprocess.run([tool("systemd-escape"), "--path", "/a/../b"], capture_output=True)
    assert refused.returncode != 0
    with pytest.raises(ValueError, match="not normalized"):
        escape_path("/a/../b")


@pytest.mark.parametrize("res", TRICKY_RESOURCES)
def test_mount_unit_file_name_is_the_escaped_where_path(host, res):
    units = render_units(host, res)
    (mount_name,) = [name for name in units if name.endswith(".mount")]
    where = setting(units[mount_name], "Where")
    assert where == f"/var/lib/lxc/{res}"
    assert mount_name == systemd_escape("--path", "--suffix=mount", where)


# --- rendering ---------------------------------------------------------------------------

def verified_units(host, res, tmp_path):
    """{name: text} of the units rendered for `res` (and marsd's), written
    to `tmp_path`, after `systemd-analyze verify` passed them without a
    word."""
    units = dict(render_units(host, res, **real_binaries()),
                 **render_marsd(host, marsd=marsd_binary()))
    for name, text in units.items():
        (tmp_path / name).write_text(text)
    done = subprocess.run([tool("systemd-analyze"), "verify", *sorted(units)], cwd=tmp_path,
                          capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    return units


@pytest.mark.parametrize("res", TRICKY_RESOURCES)
def test_rendered_units_pass_systemd_analyze_verify_without_warnings(host, res, tmp_path):
    units = verified_units(host, res, tmp_path)
    assert sorted(units) == sorted([*unit_names(host, res), f"football-ct-{escape(res)}.path",
                                    "marsd.service"])


def test_verify_would_catch_a_mount_unit_named_after_another_path(host, tmp_path):
    # The check above is only worth something if verify looks at the name.
    units = render_units(host, "db-01", **real_binaries())
    mount_name = unit_names(host, "db-01")[1]
    (tmp_path / "var-lib-lxc-db-01.mount").write_text(units[mount_name])
    done = subprocess.run([tool("systemd-analyze"), "verify", "var-lib-lxc-db-01.mount"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode != 0 and "doesn't match unit name" in done.stderr


def test_units_mount_the_mars_device_and_run_the_container_bound_to_it(host):
    units = render_units(host, "db-01")
    start, stop = unit_names(host, "db-01")
    mount, container = units[stop], units[start]
    trigger = units["football-ct-db\\x2d01.path"]
    # below /dev through /proc/self/root: no device unit required (udev
    # announces none for the userspace marsd's symlink)
    assert (setting(mount, "What"), setting(mount, "Type")) == \
        ("/proc/self/root/dev/mars/db-01", "xfs")
    assert setting(mount, "Description") == \
        "Football: volume of db-01 (/dev/mars/db-01 on /var/lib/lxc/db-01)"
    assert setting(mount, "Requires") == "marsd.service"
    assert setting(container, "BindsTo") == setting(container, "After") == stop
    assert setting(container, "ExecStart") == "/usr/bin/lxc-start -F -n db-01 -P /var/lib/lxc"
    assert setting(container, "ExecStop") == "/usr/bin/lxc-stop -n db-01 -P /var/lib/lxc"
    assert setting(container, "Wants") == "football-ct-db\\x2d01.path"
    assert setting(trigger, "PathExists") == "/dev/mars/db-01"
    assert setting(trigger, "Unit") == setting(trigger, "PartOf") == start


def test_units_of_a_lab_host_live_below_its_root(runner):
    lab = Host(name="h2", address="127.0.0.32", root="/srv/lab/h2", _runner=runner)
    units = render_units(lab, "vm1")
    mount = units["srv-lab-h2-var-lib-lxc-vm1.mount"]
    assert setting(mount, "Where") == "/srv/lab/h2/var/lib/lxc/vm1"
    assert setting(mount, "What") == "/srv/lab/h2/dev/mars/vm1"
    assert "-P /srv/lab/h2/var/lib/lxc" in units["football-ct-vm1.service"]


def test_marsd_unit_runs_marsd_as_the_host_and_restarts_it_on_failure(host):
    text = render_marsd(host, marsd="/opt/football/bin/marsd")["marsd.service"]
    assert setting(text, "ExecStart") == "/opt/football/bin/marsd --host=h1"
    assert setting(text, "Environment") == "MARS_ROOT=/"
    assert setting(text, "Restart") == "on-failure"
    assert setting(text, "After") == "network-online.target local-fs.target"


@pytest.mark.parametrize("lxcpath", ["/var/lib/my lxc", "/var/lib/%n", "/var/$HOME",
                                     "/var/lib\\x2d"])
def test_rendering_refuses_paths_systemd_would_expand_or_split(runner, lxcpath):
    odd = Host(name="h1", address="10.0.0.1", lxcpath=lxcpath, _runner=runner)
    with pytest.raises(Illegal, match="cannot go into a systemd unit"):
        render_units(odd, "vm1")


def test_rendering_refuses_an_invalid_resource_name(host):
    with pytest.raises(Illegal, match="invalid resource name"):
        render_units(host, "../etc")


# --- the screener's worker ---------------------------------------------------------------

WORKER_OPTIONS = ["--config", "/etc/football.yml",
                  "--var", "jobs_database_url=postgresql://f:p%w@db/jobs", "--var", "x=a \"b\" $HOME"]


def test_the_worker_unit_passes_systemd_analyze_verify_without_warnings(tmp_path):
    (name, text), = worker_unit(WORKER_OPTIONS, "ctl 1").items()
    (tmp_path / name).write_text(text)
    done = subprocess.run([tool("systemd-analyze"), "verify", name], cwd=tmp_path,
                          capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert name == "football-worker.service"


def test_the_worker_unit_runs_football_worker_restarts_it_and_waits_out_a_downtime_window():
    text = worker_unit(WORKER_OPTIONS, "ctl 1")["football-worker.service"]
    assert setting(text, "ExecStart") == (
        f"{sys.executable} -m football --config /etc/football.yml --var "
        '"jobs_database_url=postgresql://f:p%%w@db/jobs" --var "x=a \\"b\\" $$HOME" worker '
        '--id "ctl 1"')
    assert (setting(text, "Type"), setting(text, "Restart")) == ("exec", "on-failure")
    # SIGTERM to the worker alone (it interrupts its operations itself), and
    # systemd's SIGKILL only after the worker's own wait for them
    assert (setting(text, "KillSignal"), setting(text, "KillMode")) == ("SIGTERM", "mixed")
    assert int(setting(text, "TimeoutStopSec").removesuffix("s")) > STOP_WAIT


@pytest.mark.parametrize("word, written", [("/usr/bin/python3", "/usr/bin/python3"),
                                           ("a b", '"a b"'), ("50%", '"50%%"'), ("$X", '"$$X"'),
                                           ('say "hi"\\', '"say \\"hi\\"\\\\"')])
def test_a_systemd_word_is_quoted_and_escaped_as_systemd_reads_it(word, written):
    assert systemd_word(word) == written


def test_football_worker_prints_its_unit_with_the_global_options(tmp_path):
    config = tmp_path / "football.yml"
    config.write_text("limit_syncs: 2\n")
    result = CliRunner().invoke(cli, ["--config", str(config), "worker", "--id", "w2",
                                      "--systemd-unit"])
    assert result.exit_code == 0, result.output
    assert setting(result.stdout, "ExecStart").endswith(f"--config {config} worker --id w2")


@pytest.mark.parametrize("argv", [["worker", "--systemd-unit"], ["balance", "--systemd-unit"]])
def test_a_unit_of_settings_that_do_not_pass_is_not_printed(argv):
    """It was, and failed at every start of the unit."""
    result = CliRunner().invoke(cli, ["--var", "no_such=1", *argv])
    assert result.exit_code == 191 and "no_such" in result.output, result.output
    assert "ExecStart" not in result.output


# --- installing --------------------------------------------------------------------------

def expect_no_unit_files(runner, files):
    """Before writing, each unit file's previous text is read (C locale):
    here there is none."""
    for file in files:
        runner.expect(["env", "LC_ALL=C", "cat", file], exit=1,
                      stderr=f"cat: {file}: No such file or directory\n")


def reads_of(files):
    """The reads of the unit files' previous text, as `runner.inputs` has them."""
    return [(("env", "LC_ALL=C", "cat", file), None) for file in files]


def test_install_units_writes_each_unit_then_reloads_systemd_then_records_the_units(host,
                                                                                   runner):
    units = render_units(host, "db-01")
    files = [f"/etc/systemd/system/{name}" for name in units]
    expect_no_unit_files(runner, files)
    for name in units:
        runner.expect(["install", "-D", "-m", "0644", "/dev/stdin", f"/etc/systemd/system/{name}"])
    runner.expect(["systemctl", "daemon-reload"])
    runner.expect(["marsadm", "set-systemd-unit", "db-01", "football-ct-db\\x2d01.service",
                   "var-lib-lxc-db\\x2d01.mount"])
    install_units(host, "db-01")
    assert runner.inputs == [
        *reads_of(files),
        *[(("install", "-D", "-m", "0644", "/dev/stdin", f"/etc/systemd/system/{name}"), text)
          for name, text in units.items()],
        (("systemctl", "daemon-reload"), None),
        (("marsadm", "set-systemd-unit", "db-01", "football-ct-db\\x2d01.service",
          "var-lib-lxc-db\\x2d01.mount"), None),
    ]


def test_install_units_stops_at_a_unit_it_cannot_write_and_names_host_and_file(host, runner):
    files = [f"/etc/systemd/system/{name}" for name in render_units(host, "vm1")]
    first = Path(files[0]).name
    expect_no_unit_files(runner, files)
    runner.expect(["install", "-D", "-m", "0644", "/dev/stdin", files[0]],
                  stderr="install: cannot create regular file: Read-only file system\n", exit=1)
    runner.expect(["rm", "-f", files[0]])          # as before: there was none
    with pytest.raises(UnitFailed, match=rf"h1: writing unit {re.escape(first)} failed .*"
                                         "Read-only file system"):
        install_units(host, "vm1")
    # no other unit written, systemd not reloaded
    assert runner.calls[len(files):] == [
        ("install", "-D", "-m", "0644", "/dev/stdin", files[0]), ("rm", "-f", files[0])]


# --- the hooks ---------------------------------------------------------------------------

def expect_units_in_place(runner, host, res):
    """MARS records Football's units of `res`; their files are as rendered;
    the trigger is armed before the handover."""
    units = render_units(host, res)
    runner.expect(["marsadm", "get-systemd-unit", res], stdout=" ".join(unit_names(host, res)))
    runner.expect(["cat", *(f"/etc/systemd/system/{name}" for name in units)],
                  stdout="".join(units.values()))
    runner.expect(["systemctl", "start", trigger_of(res)])


def trigger_of(res):
    return f"football-ct-{escape(res)}.path"


def expect_start(runner, res, unit, state="active\n", exit=0):
    expect_units_in_place(runner, Host(name="h1", address="10.0.0.1"), res)
    runner.expect([*PRIMARY, res])
    runner.expect(["marsadm", "--timeout=120", "wait-resource", res, "is-device-on"])
    runner.expect(["systemctl", "start", unit])
    runner.expect(["systemctl", "is-active", unit], stdout=state, exit=exit)


def test_resource_start_waits_for_the_handover_as_long_as_handover_timeout(host, runner):
    from football.config import Config

    expect_units_in_place(runner, host, "db-01")
    runner.expect(["marsadm", "--timeout=45", "primary", "db-01"])
    runner.expect(["marsadm", "--timeout=45", "wait-resource", "db-01", "is-device-on"])
    runner.expect(["systemctl", "start", "football-ct-db\\x2d01.service"])
    runner.expect(["systemctl", "is-active", "football-ct-db\\x2d01.service"], stdout="active\n")
    hooks = Hooks(config=Config(variables=["handover_timeout=45"], environ={}))
    assert systemd.resource_start(host, "db-01", hooks) is True
    assert runner.calls[3] == ("marsadm", "--timeout=45", "primary", "db-01")


def test_resource_start_makes_the_host_primary_then_starts_and_checks_the_start_unit(host,
                                                                                     runner):
    expect_start(runner, "db-01", "football-ct-db\\x2d01.service")
    assert systemd.resource_start(host, "db-01", Hooks()) is True
    assert runner.calls[2:] == [
        ("systemctl", "start", trigger_of("db-01")),
        (*PRIMARY, "db-01"),
        ("marsadm", "--timeout=120", "wait-resource", "db-01", "is-device-on"),
        ("systemctl", "start", "football-ct-db\\x2d01.service"),
        ("systemctl", "is-active", "football-ct-db\\x2d01.service"),
    ]


def test_resource_start_raises_naming_host_and_unit_when_the_unit_is_not_active_after(host,
                                                                                      runner):
    expect_start(runner, "vm1", "football-ct-vm1.service", state="failed\n", exit=NOT_ACTIVE)
    with pytest.raises(UnitFailed) as raised:
        systemd.resource_start(host, "vm1", Hooks())
    message = str(raised.value)
    assert message.startswith("h1: football-ct-vm1.service is failed")
    assert "journalctl -u football-ct-vm1.service" in message


def test_resource_start_reports_a_failing_systemctl_start_with_where_to_look(host, runner):
    expect_units_in_place(runner, host, "vm1")
    runner.expect([*PRIMARY, "vm1"])
    runner.expect(["marsadm", "--timeout=120", "wait-resource", "vm1", "is-device-on"])
    runner.expect(["systemctl", "start", "football-ct-vm1.service"], exit=1,
                  stderr="Job for football-ct-vm1.service failed because the control process "
                         "exited with error code.\n")
    with pytest.raises(UnitFailed, match=r"h1: starting football-ct-vm1.service failed "
                                         r"\(`systemctl start football-ct-vm1.service` exited 1\)"
                                         r".*systemctl status football-ct-vm1.service"):
        systemd.resource_start(host, "vm1", Hooks())


def test_resource_start_does_not_touch_units_when_the_handover_fails(host, runner):
    expect_units_in_place(runner, host, "vm1")
    runner.expect([*PRIMARY, "vm1"], exit=1,
                  stderr="sync of vm1 on h1 is incomplete (0 of 1048576 bytes)\n")
    with pytest.raises(UnitFailed, match="h1: making h1 the primary of vm1 failed .*incomplete"):
        systemd.resource_start(host, "vm1", Hooks())
    assert runner.calls[2:] == [("systemctl", "start", "football-ct-vm1.path"), (*PRIMARY, "vm1")]


def test_resource_start_on_a_host_without_units_writes_them_first_and_records_them_once_primary(
        host, runner):
    units = render_units(host, "db-01")
    start, stop = unit_names(host, "db-01")
    files = [f"/etc/systemd/system/{name}" for name in units]
    runner.expect(["marsadm", "get-systemd-unit", "db-01"])                 # none recorded
    runner.expect(["cat", *files], exit=1, stderr=f"cat: {files[0]}: No such file or directory\n")
    runner.expect(["grep", "-L", "-s", "-F", "rendered by Football", *files], exit=2)
    expect_no_unit_files(runner, files)
    for file in files:
        runner.expect(["install", "-D", "-m", "0644", "/dev/stdin", file])
    runner.expect(["systemctl", "daemon-reload"])
    runner.expect(["systemctl", "start", trigger_of("db-01")])
    runner.expect([*PRIMARY, "db-01"])
    runner.expect(["marsadm", "--timeout=120", "wait-resource", "db-01", "is-device-on"])
    runner.expect(["marsadm", "set-systemd-unit", "db-01", start, stop])
    runner.expect(["systemctl", "start", start])
    runner.expect(["systemctl", "is-active", start], stdout="active\n")
    assert systemd.resource_start(host, "db-01", Hooks()) is True
    # written before `primary` (its marsd starts the start unit once the
    # device is up); recorded after it, where the want follows this host
    # (recorded before, the old primary's marsd would start the container)
    order = [call[:2] for call in runner.calls]
    assert order.index(("systemctl", "daemon-reload")) < order.index(tuple(PRIMARY[:2]))
    assert runner.calls.index(("systemctl", "start", trigger_of("db-01"))) < \
        order.index(tuple(PRIMARY[:2]))
    assert order.index(tuple(PRIMARY[:2])) < order.index(("marsadm", "set-systemd-unit"))
    assert [text for argv, text in runner.inputs if argv[0] == "install"] == list(units.values())


def test_resource_start_rewrites_units_that_differ_from_what_football_renders(host, runner):
    units = render_units(host, "vm1")
    files = [f"/etc/systemd/system/{name}" for name in units]
    old = [text.replace("TimeoutStopSec=120s", "TimeoutStopSec=9s") for text in units.values()]
    assert old != list(units.values())
    runner.expect(["marsadm", "get-systemd-unit", "vm1"], stdout=" ".join(unit_names(host, "vm1")))
    runner.expect(["cat", *files], stdout="".join(old))
    runner.expect(["grep", "-L", "-s", "-F", "rendered by Football", *files], exit=1)
    for file, text in zip(files, old):
        runner.expect(["env", "LC_ALL=C", "cat", file], stdout=text)
    for name in units:
        runner.expect(["install", "-D", "-m", "0644", "/dev/stdin", f"/etc/systemd/system/{name}"])
    runner.expect(["systemctl", "daemon-reload"])
    runner.expect(["systemctl", "start", "football-ct-vm1.path"])
    runner.expect([*PRIMARY, "vm1"])
    runner.expect(["marsadm", "--timeout=120", "wait-resource", "vm1", "is-device-on"])
    runner.expect(["systemctl", "start", "football-ct-vm1.service"])
    runner.expect(["systemctl", "is-active", "football-ct-vm1.service"], stdout="active\n")
    assert systemd.resource_start(host, "vm1", Hooks()) is True
    assert [text for argv, text in runner.inputs if argv[0] == "install"] == list(units.values())
    assert not [call for call in runner.calls if "set-systemd-unit" in call]   # recorded already


def test_units_an_operator_recorded_are_used_as_they_are(host, runner):
    runner.expect(["marsadm", "get-systemd-unit", "vm1"], stdout="vm-vm1.target vm-vm1.mount\n")
    runner.expect([*PRIMARY, "vm1"])
    runner.expect(["marsadm", "--timeout=120", "wait-resource", "vm1", "is-device-on"])
    runner.expect(["systemctl", "start", "vm-vm1.target"])
    runner.expect(["systemctl", "is-active", "vm-vm1.target"], stdout="active\n")
    assert systemd.resource_start(host, "vm1", Hooks()) is True
    runner.expect(["marsadm", "get-systemd-unit", "vm1"], stdout="vm-vm1.target vm-vm1.mount\n")
    runner.expect(["systemctl", "stop", "vm-vm1.mount"])
    # only their stop unit is known to stop the stack (a target may only
    # want the container)
    runner.expect(["systemctl", "is-active", "vm-vm1.mount"], stdout="inactive\n", exit=NOT_ACTIVE)
    assert systemd.resource_stop(host, "vm1") is True
    # which of them is the container's is not known: the container plugin's
    # stop keeps the mount (shrink's final copy)
    runner.expect(["marsadm", "get-systemd-unit", "vm1"], stdout="vm-vm1.target\n")
    assert systemd.resource_stop_vm(host, "vm1") is None
    assert not [call for call in runner.calls if call[0] in ("install", "cat", "grep")
                or "set-systemd-unit" in call or call[-1].endswith(".path")]


def test_football_s_units_recorded_from_a_host_with_another_mountpoint_are_still_football_s(
        runner):
    """lxcpath per host: the mount unit's name differs from host to host.
    Taken for an operator's, nothing was written on the other host and its
    start failed (exit 5, not found); its stop stopped the other host's
    mount name and raised with the container running."""
    other = Host(name="h1", address="10.0.0.1", manager="systemd", lxcpath="/srv/lxc",
                 _runner=runner)
    recorded = "football-ct-vm1.service var-lib-lxc-vm1.mount\n"       # from a host of /var/lib/lxc
    units = render_units(other, "vm1")
    files = [f"/etc/systemd/system/{name}" for name in units]
    runner.expect(["marsadm", "get-systemd-unit", "vm1"], stdout=recorded)
    runner.expect(["cat", *files], exit=1)
    runner.expect(["grep", "-L", "-s", "-F", "rendered by Football", *files], exit=2)
    expect_no_unit_files(runner, files)
    for file in files:
        runner.expect(["install", "-D", "-m", "0644", "/dev/stdin", file])
    runner.expect(["systemctl", "daemon-reload"])
    runner.expect(["systemctl", "start", "football-ct-vm1.path"])
    runner.expect([*PRIMARY, "vm1"])
    runner.expect(["marsadm", "--timeout=120", "wait-resource", "vm1", "is-device-on"])
    runner.expect(["marsadm", "set-systemd-unit", "vm1", "football-ct-vm1.service",
                   "srv-lxc-vm1.mount"])             # this host's, where marsd follows them now
    runner.expect(["systemctl", "start", "football-ct-vm1.service"])
    runner.expect(["systemctl", "is-active", "football-ct-vm1.service"], stdout="active\n")
    assert systemd.resource_start(other, "vm1", Hooks()) is True
    runner.expect(["marsadm", "get-systemd-unit", "vm1"], stdout=recorded)
    expect_stopped(runner, "srv-lxc-vm1.mount")
    assert systemd.resource_stop(other, "vm1") is True


def test_a_unit_file_football_did_not_render_is_not_overwritten(host, runner):
    units = render_units(host, "vm1")
    files = [f"/etc/systemd/system/{name}" for name in units]
    runner.expect(["marsadm", "get-systemd-unit", "vm1"])
    runner.expect(["cat", *files], exit=1)
    runner.expect(["grep", "-L", "-s", "-F", "rendered by Football", *files], exit=2,
                  stdout="/etc/systemd/system/var-lib-lxc-vm1.mount\n")
    with pytest.raises(UnitFailed, match=r"h1: /etc/systemd/system/var-lib-lxc-vm1.mount is not "
                                         r"Football's .*; nothing changed — record your own "
                                         r"units of it \(`marsadm set-systemd-unit vm1 "):
        systemd.resource_start(host, "vm1", Hooks())
    assert runner.calls[-1][0] == "grep"        # nothing written, started or handed over


def test_a_host_that_does_not_know_the_resource_yet_has_no_units_recorded(host, runner):
    """A dry run's new host (its join only planned): `get-systemd-unit`
    fails there, which stopped the dry run."""
    runner.expect(["marsadm", "get-systemd-unit", "vm1"], exit=1,
                  stderr="marsadm: unknown resource 'vm1' (known: vm2)\n")
    assert systemd.recorded_units(host, "vm1") is None
    runner.expect(["marsadm", "get-systemd-unit", "vm1"], exit=1, stderr="cannot read /mars\n")
    with pytest.raises(UnitFailed, match="h1: reading the units of vm1 failed .*cannot read"):
        systemd.recorded_units(host, "vm1")


def test_resource_stop_of_units_systemd_does_not_know_on_the_host_is_stopped(host, runner):
    runner.expect(["marsadm", "get-systemd-unit", "vm1"])
    runner.expect(["systemctl", "stop", "var-lib-lxc-vm1.mount"], exit=5,
                  stderr="Failed to stop var-lib-lxc-vm1.mount: Unit var-lib-lxc-vm1.mount "
                         "not loaded.\n")
    for unit in ("football-ct-vm1.service", "var-lib-lxc-vm1.mount"):
        runner.expect(["systemctl", "is-active", unit], stdout="inactive\n", exit=NOT_ACTIVE)
    assert systemd.resource_stop(host, "vm1") is True


def test_resource_stop_raises_with_systemctl_s_words_when_the_volume_stays_mounted(host, runner):
    expect_recorded(runner, host, "vm1")
    runner.expect(["systemctl", "stop", "var-lib-lxc-vm1.mount"], exit=1,
                  stderr="Job for var-lib-lxc-vm1.mount failed.\n")
    runner.expect(["systemctl", "is-active", "football-ct-vm1.service"], stdout="inactive\n",
                  exit=NOT_ACTIVE)
    runner.expect(["systemctl", "is-active", "var-lib-lxc-vm1.mount"], stdout="active\n")
    with pytest.raises(UnitFailed, match=r"h1: stopping var-lib-lxc-vm1.mount failed \(`systemctl "
                                         r"stop var-lib-lxc-vm1.mount` exited 1\): Job for .* — "
                                         r"var-lib-lxc-vm1.mount is active"):
        systemd.resource_stop(host, "vm1")


def expect_stopped(runner, mount, container="football-ct-vm1.service"):
    """`systemctl stop` of Football's stop unit `mount`, then container and
    mount found inactive."""
    runner.expect(["systemctl", "stop", mount])
    for unit in (container, mount):
        runner.expect(["systemctl", "is-active", unit], stdout="inactive\n", exit=NOT_ACTIVE)


def expect_recorded(runner, host, res):
    runner.expect(["marsadm", "get-systemd-unit", res], stdout=" ".join(unit_names(host, res)))


def test_systemctl_waits_longer_than_the_units_may_take_to_stop(host):
    units = render_units(host, "vm1")
    start, stop = unit_names(host, "vm1")
    seconds = {key: int(setting(text, key).removesuffix("s")) for text, key in
               [(units[start], "TimeoutStopSec"), (units[start], "TimeoutStartSec"),
                (units[stop], "TimeoutSec")]}
    # ExecStop, then SIGTERM, then SIGKILL, each up to TimeoutStopSec; then the unmount
    assert systemd.UNIT_TIMEOUT > 3 * seconds["TimeoutStopSec"] + seconds["TimeoutSec"]
    assert systemd.UNIT_TIMEOUT > seconds["TimeoutStartSec"] + seconds["TimeoutSec"]


def test_resource_stop_stops_the_mount_and_checks_that_container_and_mount_are_inactive(
        host, runner):
    expect_recorded(runner, host, "vm1")
    expect_stopped(runner, "var-lib-lxc-vm1.mount")
    assert systemd.resource_stop(host, "vm1") is True
    assert runner.calls[1:] == [("systemctl", "stop", "var-lib-lxc-vm1.mount"),
                                ("systemctl", "is-active", "football-ct-vm1.service"),
                                ("systemctl", "is-active", "var-lib-lxc-vm1.mount")]


def test_resource_stop_raises_when_the_container_came_back(host, runner):
    expect_recorded(runner, host, "vm1")
    runner.expect(["systemctl", "stop", "var-lib-lxc-vm1.mount"])
    runner.expect(["systemctl", "is-active", "football-ct-vm1.service"], stdout="activating\n",
                  exit=NOT_ACTIVE)
    with pytest.raises(UnitFailed, match=r"h1: football-ct-vm1.service is activating after "
                                         r"`systemctl stop var-lib-lxc-vm1.mount`"):
        systemd.resource_stop(host, "vm1")


def test_resource_start_vm_starts_and_checks_only_the_container_unit(host, runner):
    expect_recorded(runner, host, "web.example_2")
    runner.expect(["systemctl", "start", "football-ct-web.example_2.service"])
    runner.expect(["systemctl", "is-active", "football-ct-web.example_2.service"],
                  stdout="active\n")
    assert systemd.resource_start_vm(host, "web.example_2") is True
    assert [call[:2] for call in runner.calls[1:]] == [("systemctl", "start"),
                                                       ("systemctl", "is-active")]


def test_resource_stop_vm_stops_only_the_container_unit_and_keeps_the_mount(host, runner):
    expect_recorded(runner, host, "vm1")
    runner.expect(["systemctl", "stop", "football-ct-vm1.service"])
    runner.expect(["systemctl", "is-active", "football-ct-vm1.service"], stdout="inactive\n",
                  exit=NOT_ACTIVE)
    assert systemd.resource_stop_vm(host, "vm1") is True
    assert runner.calls[1:] == [("systemctl", "stop", "football-ct-vm1.service"),
                                ("systemctl", "is-active", "football-ct-vm1.service")]


@pytest.mark.parametrize("hook", ["resource_start", "resource_stop", "resource_start_vm",
                                  "resource_stop_vm"])
def test_every_hook_returns_none_and_runs_nothing_for_a_host_of_another_manager(runner, hook):
    lab = Host(name="h1", address="127.0.0.31", manager="lab", _runner=runner)
    extra = (None,) if hook == "resource_start" else ()
    assert getattr(systemd, hook)(lab, "vm1", *extra) is None
    assert runner.calls == []


def test_the_plugin_answers_through_the_plugin_manager(host, runner):
    expect_recorded(runner, host, "vm1")
    runner.expect(["systemctl", "stop", "football-ct-vm1.service"])
    runner.expect(["systemctl", "is-active", "football-ct-vm1.service"], stdout="inactive\n",
                  exit=NOT_ACTIVE)
    assert Hooks(plugin_manager(entry_points=False)).resource_stop_vm(host=host, res="vm1")


def test_only_this_plugin_answers_none_for_a_lab_host_through_pluggy(runner):
    manager = pluggy.PluginManager("football")
    manager.add_hookspecs(ClusterManagerSpec)
    manager.register(systemd)
    lab = Host(name="h1", address="127.0.0.31", manager="lab", _runner=runner)
    assert manager.hook.resource_start(host=lab, res="vm1", hooks=None) is None


# --- scheduled balancing -----------------------------------------------------------------

def test_the_balance_units_pass_systemd_analyze_verify_and_run_balance_auto(tmp_path):
    units = balance_units(WORKER_OPTIONS, "Mon..Fri *-*-* 02:00")
    for name, text in units.items():
        (tmp_path / name).write_text(text)
    done = subprocess.run([tool("systemd-analyze"), "verify", *sorted(units)], cwd=tmp_path,
                          capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    service, timer = units["football-balance.service"], units["football-balance.timer"]
    assert setting(service, "ExecStart") == (
        f"{sys.executable} -m football --config /etc/football.yml --var "
        '"jobs_database_url=postgresql://f:p%%w@db/jobs" --var "x=a \\"b\\" $$HOME" balance '
        "--auto")
    assert setting(service, "Type") == "oneshot"
    assert setting(timer, "OnCalendar") == "Mon..Fri *-*-* 02:00"


@pytest.mark.parametrize("schedule", ["hourly\nExecStart=/bin/sh", "daily; reboot", "%h"])
def test_a_schedule_that_is_not_a_calendar_event_is_refused(schedule):
    with pytest.raises(Illegal, match="not a systemd calendar event"):
        balance_units((), schedule)

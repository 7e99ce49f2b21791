"""The `systemd` cluster manager's unit files: a failed write or reload puts
the previous files back (never leaves a running stack without its files),
and the mount unit of a production host does not wait for a device unit
that udev never announces for the userspace marsd's /dev/mars symlink —
checked by systemd itself (`systemd --test` dumps the dependencies it
gives the units, without being PID 1)."""

import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from football.inventory import Host
from plugins.systemd import UnitFailed, install_units, render_marsd, render_units, unit_names
from tests.unit.test_systemd_plugin import (marsd_binary, real_binaries, setting, tool,
                                            verified_units)

UNIT_DIR = "/etc/systemd/system"
NOBODY = "65534"


@pytest.fixture
def host(runner):
    return Host(name="h1", address="10.0.0.1", manager="systemd", _runner=runner)


def expect_previous(runner, files, texts):
    """`cat` of each unit file (C locale): its text, or missing where
    `texts` has None."""
    for file, text in zip(files, texts):
        if text is None:
            runner.expect(["env", "LC_ALL=C", "cat", file], exit=1,
                          stderr=f"cat: {file}: No such file or directory\n")
        else:
            runner.expect(["env", "LC_ALL=C", "cat", file], stdout=text)


# --- a write or reload that fails ------------------------------------------------------------

def test_a_reload_that_fails_puts_the_previous_unit_files_back_and_says_so_once(host, runner,
                                                                                caplog):
    """They were removed: systemd went on running the container and its
    mount, with no unit file left for them (after the next reload, or a
    reboot, marsd could not start them)."""
    units = render_units(host, "vm1")
    files = [f"{UNIT_DIR}/{name}" for name in units]
    old_mount = next(iter(units.values())).replace("TimeoutSec=90s", "TimeoutSec=60s")
    expect_previous(runner, files, [old_mount, None, None])
    for file in files:
        runner.expect(["install", "-D", "-m", "0644", "/dev/stdin", file])
    runner.expect(["systemctl", "daemon-reload"], exit=1,
                  stderr="Failed to reload daemon: Access denied\n")
    runner.expect(["install", "-D", "-m", "0644", "/dev/stdin", files[0]])
    runner.expect(["rm", "-f", files[1]])
    runner.expect(["rm", "-f", files[2]])
    with caplog.at_level(logging.INFO, logger="plugins.systemd"):
        with pytest.raises(UnitFailed, match="h1: reloading systemd failed .*Access denied.* "
                                             "the unit files are as they were before"):
            install_units(host, "vm1")
    assert runner.inputs[-3:] == [
        (("install", "-D", "-m", "0644", "/dev/stdin", files[0]), old_mount),
        (("rm", "-f", files[1]), None), (("rm", "-f", files[2]), None)]
    said = [record.getMessage() for record in caplog.records if record.name == "plugins.systemd"]
    assert len(said) == 1, said
    assert f"put back as before: {Path(files[0]).name}" in said[0]
    assert "removed (there was none before)" in said[0]
    assert not [call for call in runner.calls if "set-systemd-unit" in call]   # not recorded


def test_a_write_that_fails_puts_back_only_what_was_written(host, runner, caplog):
    units = render_units(host, "vm1")
    files = [f"{UNIT_DIR}/{name}" for name in units]
    texts = list(units.values())
    expect_previous(runner, files, texts[:2] + [None])
    runner.expect(["install", "-D", "-m", "0644", "/dev/stdin", files[0]])
    runner.expect(["install", "-D", "-m", "0644", "/dev/stdin", files[1]], exit=1,
                  stderr="install: cannot create regular file: No space left on device\n")
    for file in files[:2]:
        runner.expect(["install", "-D", "-m", "0644", "/dev/stdin", file])
    with caplog.at_level(logging.INFO, logger="plugins.systemd"):
        with pytest.raises(UnitFailed, match="writing unit .* No space left"):
            install_units(host, "vm1")
    assert [text for argv, text in runner.inputs[-2:]] == texts[:2]
    assert ("systemctl", "daemon-reload") not in runner.calls


def test_a_put_back_that_fails_is_said_and_the_reload_s_failure_raised(host, runner, caplog):
    units = render_units(host, "vm1")
    files = [f"{UNIT_DIR}/{name}" for name in units]
    expect_previous(runner, files, list(units.values()))
    for file in files:
        runner.expect(["install", "-D", "-m", "0644", "/dev/stdin", file])
    runner.expect(["systemctl", "daemon-reload"], exit=1, stderr="Access denied\n")
    runner.expect(["install", "-D", "-m", "0644", "/dev/stdin", files[0]], exit=1,
                  stderr="install: Read-only file system\n")
    for file in files[1:]:
        runner.expect(["install", "-D", "-m", "0644", "/dev/stdin", file])
    with caplog.at_level(logging.INFO, logger="plugins.systemd"):
        with pytest.raises(UnitFailed, match="reloading systemd failed"):
            install_units(host, "vm1")
    (said,) = [record.getMessage() for record in caplog.records
               if record.name == "plugins.systemd"]
    assert "NOT put back, fix by hand" in said and "Read-only file system" in said


def test_a_unit_file_that_cannot_be_read_stops_before_anything_is_written(host, runner):
    units = render_units(host, "vm1")
    first = f"{UNIT_DIR}/{next(iter(units))}"
    runner.expect(["env", "LC_ALL=C", "cat", first], exit=1,
                  stderr=f"cat: {first}: Permission denied\n")
    with pytest.raises(UnitFailed, match=r"h1: reading .* failed .*Permission denied.*nothing "
                                         "changed"):
        install_units(host, "vm1")
    assert runner.calls == [("env", "LC_ALL=C", "cat", first)]


def test_units_written_and_reloaded_are_recorded(host, runner):
    units = render_units(host, "vm1")
    files = [f"{UNIT_DIR}/{name}" for name in units]
    expect_previous(runner, files, [None, None, None])
    for file in files:
        runner.expect(["install", "-D", "-m", "0644", "/dev/stdin", file])
    runner.expect(["systemctl", "daemon-reload"])
    runner.expect(["marsadm", "set-systemd-unit", "vm1", *unit_names(host, "vm1")])
    install_units(host, "vm1")
    assert runner.calls[-1][:2] == ("marsadm", "set-systemd-unit")


# --- the mount unit and the device unit -------------------------------------------------------

def systemd_dependencies(units, start, unit):
    """What systemd 252 says of `unit` (its settings and dependencies) with
    `units` ({name: text}) loaded and a start of `start` planned, from
    `systemd --test` (it dumps them and exits; not as root, which it
    refuses: as nobody)."""
    directory = tempfile.mkdtemp(prefix="h6-units-")
    try:
        os.chmod(directory, 0o755)
        for name, text in units.items():
            (Path(directory) / name).write_text(text)
            os.chmod(Path(directory) / name, 0o644)
        systemd = "/lib/systemd/systemd"
        assert os.access(systemd, os.X_OK), "systemd missing: install Debian's systemd package"
        as_nobody = [tool("setpriv"), f"--reuid={NOBODY}", f"--regid={NOBODY}",
                     "--clear-groups"] if os.geteuid() == 0 else []
        done = subprocess.run([*as_nobody, systemd, "--system", "--test", f"--unit={start}",
                               "--no-pager"], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "SYSTEMD_UNIT_PATH": f"{directory}:"})
    finally:
        shutil.rmtree(directory)
    assert done.returncode == 0, done.stderr
    block = done.stdout.split(f"-> Unit {unit}:\n", 1)[1].split("-> Unit ", 1)[0]
    return block


@pytest.mark.parametrize("res", ["vm1", "db-01"])
def test_the_mount_unit_of_a_production_host_waits_for_no_device_unit(host, res):
    """`What=/dev/mars/<res>` made systemd require `dev-mars-<res>.device`,
    which udev never announces for the symlink the userspace marsd makes:
    the mount waited until its job timed out (90 s) and failed."""
    units = dict(render_units(host, res, **real_binaries()),
                 **render_marsd(host, marsd=marsd_binary()))
    start, stop = unit_names(host, res)
    block = systemd_dependencies(units, start, stop)
    assert f"What: /proc/self/root/dev/mars/{res}" in block
    assert "Requires: marsd.service" in block
    devices = [line.strip() for line in block.splitlines() if ".device" in line]
    assert devices == [], devices
    # and the container still comes with its mount
    assert f"BoundBy: {start}" in block


@pytest.mark.parametrize("res", ["vm1", "db-01"])
def test_the_mount_unit_names_the_mars_device_and_passes_systemd_analyze_verify(host, res,
                                                                                tmp_path):
    units = verified_units(host, res, tmp_path)
    mount = units[unit_names(host, res)[1]]
    assert setting(mount, "What") == f"/proc/self/root/dev/mars/{res}"
    assert Path(setting(mount, "What")).resolve() == Path(f"/dev/mars/{res}").resolve()
    assert f"/dev/mars/{res}" in setting(mount, "Description")


def test_a_device_path_outside_dev_is_the_mount_source_as_it_is(runner):
    from plugins.systemd import mount_source

    lab = Host(name="h2", address="127.0.0.32", root="/srv/lab/h2", _runner=runner)
    mount = render_units(lab, "vm1")["srv-lab-h2-var-lib-lxc-vm1.mount"]
    assert setting(mount, "What") == "/srv/lab/h2/dev/mars/vm1"
    assert mount_source("/sys/block/x") == "/proc/self/root/sys/block/x"
    assert mount_source("/devices/mars/vm1") == "/devices/mars/vm1"

"""The lab's file-backed volume group (football/hostside/filevg.py) and its
command line `football-host vg <dir> ...` (football/hostside/cli.py): every
operation, every failure in LVM's words and exit codes, extent accounting,
and refusing to remove an LV that a process holds open.

The VG used by most tests holds 10 extents of 4 MiB (40 MiB)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from football.hostside.cli import cli
from football.hostside.filevg import EXIT_FAILED, EXIT_INVALID, EXTENT, FileVG, VGError, \
    extents, users_of

MIB = 1 << 20
VG_SIZE = 10 * EXTENT
FOOTBALL_HOST = Path(sys.executable).parent / "football-host"


@pytest.fixture
def vg_dir(tmp_path):
    return tmp_path / "dev" / "vg0"


@pytest.fixture
def vg(vg_dir):
    filevg = FileVG(vg_dir)
    filevg.create_vg(VG_SIZE)
    return filevg


def failure(action, *args):
    """The VGError that `action(*args)` raises."""
    with pytest.raises(VGError) as caught:
        action(*args)
    return caught.value


# --- the volume group ------------------------------------------------------------------

def test_create_vg_makes_the_directory_and_an_empty_vg_of_that_capacity(vg_dir):
    FileVG(vg_dir).create_vg(VG_SIZE)
    assert FileVG(vg_dir).info() == {"vg": "vg0", "size": VG_SIZE, "free": VG_SIZE,
                                     "extent_size": EXTENT, "free_extents": 10, "lvs": {}}


def test_create_vg_rounds_the_capacity_up_to_whole_extents(vg_dir):
    FileVG(vg_dir).create_vg(VG_SIZE + 1)
    assert FileVG(vg_dir).info()["size"] == 11 * EXTENT


def test_create_vg_again_with_the_same_size_keeps_the_vg_and_its_lvs(vg):
    vg.create("vm1", EXTENT)
    vg.create_vg(VG_SIZE)
    vg.create_vg(VG_SIZE - 1)  # rounds to the same number of extents
    assert vg.info()["lvs"] == {"vm1": EXTENT}
    assert vg.info()["size"] == VG_SIZE


def test_create_vg_again_with_another_size_is_refused_and_changes_nothing(vg):
    error = failure(vg.create_vg, 2 * VG_SIZE)
    assert str(error) == f"A volume group called vg0 already exists with size {VG_SIZE}B."
    assert error.exit_code == EXIT_FAILED
    assert vg.info()["size"] == VG_SIZE


def test_info_of_a_directory_that_does_not_exist_is_vg_not_found(vg_dir):
    error = failure(FileVG(vg_dir).info)
    assert str(error) == 'Volume group "vg0" not found'
    assert error.exit_code == EXIT_FAILED
    assert not vg_dir.exists()


def test_info_of_a_directory_without_vg_metadata_is_vg_not_found(vg_dir):
    vg_dir.mkdir(parents=True)
    assert str(failure(FileVG(vg_dir).info)) == 'Volume group "vg0" not found'


@pytest.mark.parametrize("operation, args", [
    ("create", ("vm1", EXTENT)), ("resize", ("vm1", EXTENT)), ("rename", ("vm1", "vm2")),
    ("remove", ("vm1",))])
def test_every_lv_operation_on_a_missing_vg_is_vg_not_found(vg_dir, operation, args):
    error = failure(getattr(FileVG(vg_dir), operation), *args)
    assert str(error) == 'Volume group "vg0" not found'
    assert error.exit_code == EXIT_FAILED


# --- create and the extent accounting --------------------------------------------------

def test_create_makes_a_file_of_whole_extents_and_returns_its_path(vg, vg_dir):
    path = vg.create("vm1", 6 * MIB)
    assert path == str(vg_dir / "vm1")
    assert os.path.getsize(path) == 2 * EXTENT


def test_an_lv_file_is_sparse(vg):
    path = vg.create("vm1", 8 * EXTENT)
    assert os.stat(path).st_blocks * 512 < EXTENT


@pytest.mark.parametrize("size, used", [
    (1, EXTENT), (EXTENT - 1, EXTENT), (EXTENT, EXTENT), (EXTENT + 1, 2 * EXTENT)])
def test_an_lv_counts_against_the_vg_in_whole_extents(vg, size, used):
    vg.create("vm1", size)
    info = vg.info()
    assert info["lvs"] == {"vm1": used}
    assert info["free"] == VG_SIZE - used
    assert info["free_extents"] == (VG_SIZE - used) // EXTENT


def test_free_space_is_the_capacity_minus_every_lv(vg):
    vg.create("vm1", EXTENT)
    vg.create("vm2", 3 * EXTENT)
    info = vg.info()
    assert info["lvs"] == {"vm1": EXTENT, "vm2": 3 * EXTENT}
    assert info["free"] == 6 * EXTENT
    assert info["free_extents"] == 6


def test_info_does_not_list_the_vgs_own_metadata_and_lock_files(vg, vg_dir):
    vg.create("vm1", EXTENT)
    assert sorted(path.name for path in vg_dir.iterdir() if path.name.startswith("."))
    assert list(vg.info()["lvs"]) == ["vm1"]


def test_create_may_take_exactly_all_the_free_space(vg):
    vg.create("vm1", VG_SIZE)
    assert vg.info()["free"] == 0


def test_create_with_a_name_in_use_is_refused_in_lvms_words(vg):
    vg.create("vm1", EXTENT)
    error = failure(vg.create, "vm1", 2 * EXTENT)
    assert str(error) == 'Logical Volume "vm1" already exists in volume group "vg0"'
    assert error.exit_code == EXIT_FAILED
    assert vg.info()["lvs"] == {"vm1": EXTENT}


def test_create_larger_than_the_free_space_is_refused_in_lvms_words(vg):
    vg.create("vm1", 8 * EXTENT)
    error = failure(vg.create, "vm2", 2 * EXTENT + 1)
    assert str(error) == 'Volume group "vg0" has insufficient free space (2 extents): 3 required.'
    assert error.exit_code == EXIT_FAILED
    assert vg.info()["lvs"] == {"vm1": 8 * EXTENT}


@pytest.mark.parametrize("name", ["../x", "a b", ".hidden", ";rm", "", "x/y", "a" * 128,
                                  "$(id)"])
def test_create_refuses_an_invalid_lv_name_with_exit_3_and_creates_no_file(vg, vg_dir,
                                                                            tmp_path, name):
    error = failure(vg.create, name, EXTENT)
    assert str(error) == f'Logical volume name "{name}" is invalid.'
    assert error.exit_code == EXIT_INVALID
    assert vg.info()["lvs"] == {}
    assert not (vg_dir.parent / "x").exists()


def test_extents_rounds_bytes_up_to_whole_4_mib_extents():
    assert EXTENT == 4 * MIB
    assert [extents(size) for size in (0, 1, EXTENT, EXTENT + 1)] == [0, 1, 1, 2]


# --- resize ----------------------------------------------------------------------------

def test_growing_an_lv_takes_free_space_and_keeps_its_data(vg):
    path = vg.create("vm1", EXTENT)
    with open(path, "r+b") as handle:
        handle.write(b"data")
    assert vg.resize("vm1", 3 * EXTENT) == 3 * EXTENT
    assert os.path.getsize(path) == 3 * EXTENT
    assert vg.info()["free"] == 7 * EXTENT
    with open(path, "rb") as handle:
        assert handle.read(4) == b"data"


def test_shrinking_an_lv_gives_its_extents_back_to_the_vg(vg):
    vg.create("vm1", 5 * EXTENT)
    assert vg.resize("vm1", 2 * EXTENT) == 2 * EXTENT
    assert vg.info()["free"] == 8 * EXTENT
    assert vg.info()["lvs"] == {"vm1": 2 * EXTENT}


def test_resize_rounds_up_to_whole_extents_and_returns_the_new_size(vg):
    vg.create("vm1", EXTENT)
    assert vg.resize("vm1", 2 * EXTENT + 1) == 3 * EXTENT


def test_growing_by_exactly_the_free_space_is_allowed(vg):
    vg.create("vm1", 4 * EXTENT)
    assert vg.resize("vm1", VG_SIZE) == VG_SIZE
    assert vg.info()["free"] == 0


def test_growing_beyond_the_free_space_is_refused_in_lvms_words_and_changes_nothing(vg):
    vg.create("vm1", 5 * EXTENT)
    vg.create("vm2", 3 * EXTENT)
    error = failure(vg.resize, "vm1", 8 * EXTENT)
    assert str(error) == "Insufficient free space: 3 extents needed, but only 2 available"
    assert error.exit_code == EXIT_FAILED
    assert vg.info()["lvs"] == {"vm1": 5 * EXTENT, "vm2": 3 * EXTENT}


def test_resize_to_the_size_the_lv_has_is_refused_as_lvm_does(vg):
    vg.create("vm1", 2 * EXTENT)
    error = failure(vg.resize, "vm1", 2 * EXTENT - 1)
    assert str(error) == "New size (2 extents) matches existing size (2 extents)."
    assert error.exit_code == EXIT_FAILED


def test_resize_of_an_lv_that_does_not_exist_is_not_found(vg):
    error = failure(vg.resize, "vm9", EXTENT)
    assert str(error) == 'Failed to find logical volume "vg0/vm9"'
    assert error.exit_code == EXIT_FAILED
    assert vg.info()["lvs"] == {}


# --- rename ----------------------------------------------------------------------------

def test_rename_moves_the_lv_with_its_data_and_returns_the_new_path(vg, vg_dir):
    path = vg.create("vm1", EXTENT)
    Path(path).write_bytes(b"data")
    assert vg.rename("vm1", "vm1-old") == str(vg_dir / "vm1-old")
    assert vg.info()["lvs"] == {"vm1-old": 4}
    assert (vg_dir / "vm1-old").read_bytes() == b"data"
    assert not (vg_dir / "vm1").exists()


def test_rename_to_a_name_in_use_is_refused_and_keeps_both_lvs(vg):
    vg.create("vm1", EXTENT)
    vg.create("vm2", 2 * EXTENT)
    error = failure(vg.rename, "vm1", "vm2")
    assert str(error) == 'Logical Volume "vm2" already exists in volume group "vg0"'
    assert error.exit_code == EXIT_FAILED
    assert vg.info()["lvs"] == {"vm1": EXTENT, "vm2": 2 * EXTENT}


def test_rename_of_an_lv_that_does_not_exist_is_not_found(vg):
    error = failure(vg.rename, "vm9", "vm10")
    assert str(error) == 'Failed to find logical volume "vg0/vm9"'
    assert error.exit_code == EXIT_FAILED


@pytest.mark.parametrize("name", ["../x", "a b", ".hidden", ";rm"])
def test_rename_to_an_invalid_name_is_refused_with_exit_3(vg, vg_dir, name):
    vg.create("vm1", EXTENT)
    error = failure(vg.rename, "vm1", name)
    assert str(error) == f'Logical volume name "{name}" is invalid.'
    assert error.exit_code == EXIT_INVALID
    assert vg.info()["lvs"] == {"vm1": EXTENT}
    assert not (vg_dir.parent / "x").exists()


def test_rename_of_an_lv_a_process_holds_open_is_refused_as_in_use(vg):
    path = vg.create("vm1", EXTENT)
    with open(path, "rb"):
        error = failure(vg.rename, "vm1", "vm2")
    assert str(error) == "Logical volume vg0/vm1 in use."
    assert vg.info()["lvs"] == {"vm1": EXTENT}


# --- remove ----------------------------------------------------------------------------

def test_remove_deletes_the_file_and_frees_its_extents(vg, vg_dir):
    vg.create("vm1", 3 * EXTENT)
    vg.remove("vm1")
    assert not (vg_dir / "vm1").exists()
    assert vg.info()["free"] == VG_SIZE


def test_remove_of_an_lv_that_does_not_exist_is_not_found(vg):
    error = failure(vg.remove, "vm9")
    assert str(error) == 'Failed to find logical volume "vg0/vm9"'
    assert error.exit_code == EXIT_FAILED


def test_remove_of_an_lv_a_process_holds_open_is_refused_and_keeps_it(vg, vg_dir):
    path = vg.create("vm1", EXTENT)
    with open(path, "rb"):
        error = failure(vg.remove, "vm1")
        assert str(error) == "Logical volume vg0/vm1 in use."
        assert error.exit_code == EXIT_FAILED
        assert (vg_dir / "vm1").exists()
    vg.remove("vm1")
    assert vg.info()["lvs"] == {}


# --- users_of --------------------------------------------------------------------------

def test_users_of_a_file_nobody_holds_open_is_empty(tmp_path):
    path = tmp_path / "lv"
    path.write_bytes(b"")
    assert users_of(path) == []


def test_users_of_names_the_process_that_holds_the_file_open(tmp_path):
    path = tmp_path / "lv"
    path.write_bytes(b"")
    with open(path, "rb"):
        assert f"pid {os.getpid()}" in users_of(path)


def test_users_of_follows_a_symlink_to_the_file_held_open(tmp_path):
    path = tmp_path / "lv"
    path.write_bytes(b"")
    (tmp_path / "link").symlink_to(path)
    with open(path, "rb"):
        assert f"pid {os.getpid()}" in users_of(tmp_path / "link")


# --- the command line ------------------------------------------------------------------

def host_vg(vg_dir, *args):
    """`football-host vg <vg_dir> <args>` in-process; click's Result."""
    return CliRunner().invoke(cli, ["vg", str(vg_dir), *[str(arg) for arg in args]])


def answer(result):
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    assert result.stderr == ""
    return json.loads(result.stdout)


def test_cli_create_vg_answers_the_vgs_info_in_json(vg_dir):
    assert answer(host_vg(vg_dir, "create-vg", "40m")) == {
        "vg": "vg0", "size": VG_SIZE, "free": VG_SIZE, "extent_size": EXTENT,
        "free_extents": 10, "lvs": {}}


def test_cli_create_vg_again_with_the_same_size_succeeds(vg_dir):
    answer(host_vg(vg_dir, "create-vg", "40m"))
    assert answer(host_vg(vg_dir, "create-vg", "40m"))["size"] == VG_SIZE


def test_cli_operations_answer_json_on_stdout(vg_dir):
    answer(host_vg(vg_dir, "create-vg", "40m"))
    assert answer(host_vg(vg_dir, "create", "vm1", "1")) == {"path": str(vg_dir / "vm1")}
    assert answer(host_vg(vg_dir, "resize", "vm1", "8m")) == {"size": 8 * MIB}
    assert answer(host_vg(vg_dir, "rename", "vm1", "vm2")) == {"path": str(vg_dir / "vm2")}
    assert answer(host_vg(vg_dir, "info"))["lvs"] == {"vm2": 8 * MIB}
    assert answer(host_vg(vg_dir, "remove", "vm2")) == {"removed": "vm2"}
    assert answer(host_vg(vg_dir, "info"))["free"] == VG_SIZE


@pytest.mark.parametrize("args, message", [
    (("create", "vm1", "4m"), 'Logical Volume "vm1" already exists in volume group "vg0"'),
    (("create", "vm2", "40m"),
     'Volume group "vg0" has insufficient free space (9 extents): 10 required.'),
    (("resize", "vm1", "44m"), "Insufficient free space: 10 extents needed, but only 9 available"),
    (("resize", "vm1", "4m"), "New size (1 extents) matches existing size (1 extents)."),
    (("resize", "vm9", "4m"), 'Failed to find logical volume "vg0/vm9"'),
    (("rename", "vm9", "vm10"), 'Failed to find logical volume "vg0/vm9"'),
    (("remove", "vm9"), 'Failed to find logical volume "vg0/vm9"'),
    (("create-vg", "80m"), f"A volume group called vg0 already exists with size {VG_SIZE}B."),
])
def test_cli_failures_print_lvms_message_on_stderr_and_exit_5(vg_dir, args, message):
    answer(host_vg(vg_dir, "create-vg", "40m"))
    answer(host_vg(vg_dir, "create", "vm1", "4m"))
    result = host_vg(vg_dir, *args)
    assert result.exit_code == 5
    assert result.stderr == f"  {message}\n"
    assert result.stdout == ""


def test_cli_on_a_missing_vg_prints_vg_not_found_and_exits_5(vg_dir):
    result = host_vg(vg_dir, "info")
    assert (result.exit_code, result.stderr) == (5, '  Volume group "vg0" not found\n')


def test_cli_invalid_lv_name_exits_3(vg_dir):
    answer(host_vg(vg_dir, "create-vg", "40m"))
    result = host_vg(vg_dir, "create", "../x", "4m")
    assert result.exit_code == 3
    assert result.stderr == '  Logical volume name "../x" is invalid.\n'


def test_cli_a_size_that_is_not_a_size_is_a_usage_error(vg_dir):
    answer(host_vg(vg_dir, "create-vg", "40m"))
    result = host_vg(vg_dir, "create", "vm1", "lots")
    assert result.exit_code == 2
    assert "'lots' is not a size" in result.stderr
    assert answer(host_vg(vg_dir, "info"))["lvs"] == {}


def test_the_football_host_console_script_answers_json_and_fails_like_lvm(vg_dir):
    def run(*args):
        return subprocess.run([str(FOOTBALL_HOST), "vg", str(vg_dir), *args],
                              capture_output=True, text=True, timeout=30)

    created = run("create-vg", "40m")
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["size"] == VG_SIZE
    refused = run("create", "vm1", "1g")
    assert refused.returncode == 5
    assert refused.stderr == ('  Volume group "vg0" has insufficient free space (10 extents): '
                              '256 required.\n')
    assert refused.stdout == ""

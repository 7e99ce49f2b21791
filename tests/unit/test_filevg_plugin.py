"""The `filevg` storage plugin (plugins/filevg.py) through the hooks: each hook
runs the real `football-host vg` command on a local host whose root is a
temporary directory, and each failure is a `StorageError` of the same kind
the `lvm` plugin raises for LVM's message (tests/unit/data/lvm) — proof that
filevg fails with the same messages as LVM."""

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from football.errors import StorageError
from football.hooks import Hooks, plugin_manager
from football.hostside.cli import cli
from football.hostside.filevg import EXTENT
from football.inventory import Host
from football.storage import failure_kind
from plugins import filevg

LVM_DATA = Path(__file__).parent / "data" / "lvm"
VG_SIZE = 10 * EXTENT


@pytest.fixture
def host(tmp_path):
    return Host(name="h1", address="127.0.0.1", storage="filevg", vg="vg0", transport="local",
                root=str(tmp_path))


@pytest.fixture
def hooks():
    return Hooks(plugin_manager(entry_points=False))


@pytest.fixture
def vg(host):
    """The host's VG of 10 extents, created through the plugin."""
    return filevg.create_vg(host, VG_SIZE)


def storage_failure(hook, **kwargs):
    with pytest.raises(StorageError) as caught:
        hook(**kwargs)
    return caught.value


# --- what each hook does ---------------------------------------------------------------

def test_create_vg_makes_the_vg_below_the_hosts_root_and_answers_its_info(host, tmp_path):
    info = filevg.create_vg(host, VG_SIZE)
    assert info == {"vg": "vg0", "size": VG_SIZE, "free": VG_SIZE, "extent_size": EXTENT,
                    "free_extents": 10, "lvs": {}}
    assert (tmp_path / "dev" / "vg0" / ".vg.json").is_file()


def test_create_vg_is_idempotent_through_the_plugin(host, vg):
    assert filevg.create_vg(host, VG_SIZE) == vg


def test_lv_create_makes_the_lv_and_returns_its_path_on_the_host(host, hooks, vg, tmp_path):
    path = hooks.lv_create(host=host, lv="vm1", size=EXTENT)
    assert path == str(tmp_path / "dev" / "vg0" / "vm1")
    assert os.path.getsize(path) == EXTENT


def test_lv_path_is_the_file_in_the_vg_directory_whether_or_not_it_exists(host, hooks,
                                                                         tmp_path):
    assert hooks.lv_path(host=host, lv="vm1") == str(tmp_path / "dev" / "vg0" / "vm1")
    assert not (tmp_path / "dev").exists()


def test_lv_path_is_where_lv_create_put_the_lv(host, hooks, vg):
    assert hooks.lv_create(host=host, lv="vm1", size=EXTENT) == hooks.lv_path(host=host,
                                                                               lv="vm1")


def test_lv_list_and_vg_free_count_whole_extents(host, hooks, vg):
    hooks.lv_create(host=host, lv="vm1", size=1)
    hooks.lv_create(host=host, lv="vm2", size=2 * EXTENT)
    assert hooks.lv_list(host=host) == {"vm1": EXTENT, "vm2": 2 * EXTENT}
    assert hooks.vg_free(host=host) == 7 * EXTENT


def test_lv_list_of_an_empty_vg_is_empty(host, hooks, vg):
    assert hooks.lv_list(host=host) == {}
    assert hooks.vg_free(host=host) == VG_SIZE


def test_lv_resize_grows_and_shrinks_and_returns_the_new_size(host, hooks, vg):
    hooks.lv_create(host=host, lv="vm1", size=EXTENT)
    assert hooks.lv_resize(host=host, lv="vm1", size=3 * EXTENT) == 3 * EXTENT
    assert hooks.vg_free(host=host) == 7 * EXTENT
    assert hooks.lv_resize(host=host, lv="vm1", size=2 * EXTENT) == 2 * EXTENT
    assert hooks.vg_free(host=host) == 8 * EXTENT


def test_lv_resize_to_the_size_the_lv_has_returns_that_size_without_error(host, hooks, vg):
    hooks.lv_create(host=host, lv="vm1", size=2 * EXTENT)
    assert hooks.lv_resize(host=host, lv="vm1", size=2 * EXTENT) == 2 * EXTENT
    assert hooks.lv_resize(host=host, lv="vm1", size=2 * EXTENT - 1) == 2 * EXTENT


def test_lv_rename_returns_the_new_path(host, hooks, vg, tmp_path):
    hooks.lv_create(host=host, lv="vm1", size=EXTENT)
    assert hooks.lv_rename(host=host, lv="vm1", new_name="vm2") == str(
        tmp_path / "dev" / "vg0" / "vm2")
    assert hooks.lv_list(host=host) == {"vm2": EXTENT}


def test_lv_remove_returns_true_and_frees_the_space(host, hooks, vg):
    hooks.lv_create(host=host, lv="vm1", size=EXTENT)
    assert hooks.lv_remove(host=host, lv="vm1") is True
    assert hooks.lv_list(host=host) == {}
    assert hooks.vg_free(host=host) == VG_SIZE


def test_the_filevg_plugin_answers_none_for_an_lvm_host(tmp_path):
    lvm_host = Host(name="h1", address="127.0.0.1", storage="lvm", transport="local",
                    root=str(tmp_path))
    assert filevg.lv_create(host=lvm_host, lv="vm1", size=EXTENT) is None
    assert filevg.lv_list(host=lvm_host) is None
    assert filevg.lv_path(host=lvm_host, lv="vm1") is None
    assert not (tmp_path / "dev").exists()


# --- failures: kind, host, what to do --------------------------------------------------

def test_creating_an_lv_whose_name_is_taken_is_exists(host, hooks, vg):
    hooks.lv_create(host=host, lv="vm1", size=EXTENT)
    error = storage_failure(hooks.lv_create, host=host, lv="vm1", size=EXTENT)
    assert error.kind == "exists"
    assert str(error).startswith("h1: create in volume group vg0 failed")
    assert "choose another name" in str(error)


def test_renaming_onto_a_taken_name_is_exists(host, hooks, vg):
    hooks.lv_create(host=host, lv="vm1", size=EXTENT)
    hooks.lv_create(host=host, lv="vm2", size=EXTENT)
    error = storage_failure(hooks.lv_rename, host=host, lv="vm1", new_name="vm2")
    assert error.kind == "exists"
    assert str(error).startswith("h1: rename in volume group vg0 failed")


def test_creating_an_lv_larger_than_the_free_space_is_no_space(host, hooks, vg):
    error = storage_failure(hooks.lv_create, host=host, lv="vm1", size=VG_SIZE + 1)
    assert error.kind == "no-space"
    assert str(error).startswith("h1: ")
    assert "free space in the volume group or choose another host" in str(error)
    assert hooks.lv_list(host=host) == {}


def test_growing_an_lv_beyond_the_free_space_is_no_space(host, hooks, vg):
    hooks.lv_create(host=host, lv="vm1", size=EXTENT)
    error = storage_failure(hooks.lv_resize, host=host, lv="vm1", size=VG_SIZE + EXTENT)
    assert error.kind == "no-space"
    assert hooks.lv_list(host=host) == {"vm1": EXTENT}


@pytest.mark.parametrize("hook, kwargs", [
    ("lv_resize", {"lv": "vm9", "size": EXTENT}),
    ("lv_rename", {"lv": "vm9", "new_name": "vm10"}),
    ("lv_remove", {"lv": "vm9"}),
])
def test_an_lv_that_does_not_exist_is_not_found(host, hooks, vg, hook, kwargs):
    error = storage_failure(getattr(hooks, hook), host=host, **kwargs)
    assert error.kind == "not-found"
    assert str(error).startswith("h1: ")
    assert 'Failed to find logical volume "vg0/vm9"' in str(error)
    assert "check the volume group and volume names in the inventory" in str(error)


@pytest.mark.parametrize("hook, kwargs", [
    ("lv_create", {"lv": "vm1", "size": EXTENT}), ("lv_list", {}), ("vg_free", {}),
    ("lv_remove", {"lv": "vm1"})])
def test_a_vg_that_was_never_created_is_not_found(host, hooks, hook, kwargs):
    error = storage_failure(getattr(hooks, hook), host=host, **kwargs)
    assert error.kind == "not-found"
    assert 'Volume group "vg0" not found' in str(error)


def test_removing_an_lv_a_process_holds_open_is_in_use_and_keeps_it(host, hooks, vg):
    path = hooks.lv_create(host=host, lv="vm1", size=EXTENT)
    with open(path, "rb"):
        error = storage_failure(hooks.lv_remove, host=host, lv="vm1")
    assert error.kind == "in-use"
    assert str(error).startswith("h1: remove in volume group vg0 failed")
    assert "stop what uses the volume" in str(error)
    assert hooks.lv_list(host=host) == {"vm1": EXTENT}


def test_a_failure_names_the_command_and_its_exit_code(host, hooks, vg, tmp_path):
    error = storage_failure(hooks.lv_remove, host=host, lv="vm9")
    assert f"`football-host vg {tmp_path}/dev/vg0 remove vm9` exited 5" in str(error)


def test_an_invalid_lv_name_is_a_storage_error_of_kind_invalid(host, hooks, vg):
    error = storage_failure(hooks.lv_create, host=host, lv="../x", size=EXTENT)
    assert error.kind == "invalid"
    assert "exited 3" in str(error)


# --- the same messages as LVM ----------------------------------------------------------

def filevg_stderr(vg_dir, setup, args, hold=None):
    """What `football-host vg` prints on stderr for `args` after `setup`
    commands, with the LV `hold` held open meanwhile."""
    runner = CliRunner()
    for step in setup:
        assert runner.invoke(cli, ["vg", str(vg_dir), *step]).exit_code == 0
    handle = open(vg_dir / hold, "rb") if hold else None
    try:
        result = runner.invoke(cli, ["vg", str(vg_dir), *args])
    finally:
        if handle:
            handle.close()
    assert result.exit_code != 0
    return result.stderr


WITH_VM1_VM2 = [("create-vg", "40m"), ("create", "vm1", "4m"), ("create", "vm2", "4m")]

# kind: (LVM's recorded messages, filevg's failures of the same kind)
SAME_KIND = {
    "exists": (["lvcreate_exists.txt", "lvrename_exists.txt"],
               [(WITH_VM1_VM2, ("create", "vm1", "4m"), None),
                (WITH_VM1_VM2, ("rename", "vm1", "vm2"), None)]),
    "no-space": (["lvcreate_nospace.txt", "lvresize_nospace.txt"],
                 [(WITH_VM1_VM2, ("create", "vm3", "1g"), None),
                  (WITH_VM1_VM2, ("resize", "vm1", "1g"), None)]),
    "not-found": (["lvremove_notfound.txt", "lvresize_notfound.txt", "lvrename_notfound.txt",
                   "vgs_notfound.txt"],
                  [(WITH_VM1_VM2, ("remove", "vm9"), None),
                   (WITH_VM1_VM2, ("resize", "vm9", "4m"), None),
                   (WITH_VM1_VM2, ("rename", "vm9", "vm10"), None),
                   ([], ("info",), None)]),
    "in-use": (["lvremove_inuse.txt"],
               [(WITH_VM1_VM2, ("remove", "vm1"), "vm1")]),
    "unchanged": (["lvresize_same.txt"],
                  [(WITH_VM1_VM2, ("resize", "vm1", "4m"), None)]),
    "invalid": (["lvcreate_invalid.txt"],
                [(WITH_VM1_VM2, ("create", "../x", "4m"), None)]),
}


@pytest.mark.parametrize("kind", sorted(SAME_KIND))
def test_filevg_and_lvm_messages_for_the_same_failure_classify_the_same(tmp_path, kind):
    lvm_files, filevg_failures = SAME_KIND[kind]
    for name in lvm_files:
        assert failure_kind((LVM_DATA / name).read_text()) == kind, name
    for number, (setup, args, hold) in enumerate(filevg_failures):
        stderr = filevg_stderr(tmp_path / str(number) / "vg0", setup, args, hold)
        assert failure_kind(stderr) == kind, (args, stderr)


def test_a_message_neither_lvm_nor_filevg_is_known_for_is_failed():
    assert failure_kind((LVM_DATA / "lvcreate_activation_failed.txt").read_text()) == "failed"
    assert failure_kind("") == "failed"

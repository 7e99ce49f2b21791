"""The `lvm` storage plugin without LVM: the exact lvm2 commands each hook
runs (through a recording fake transport), the `StorageError` kind each of
LVM's failure messages becomes, and the parsers on recorded lvm2 2.03 output
(tests/unit/data/lvm)."""

from pathlib import Path

import pytest

from football.errors import StorageError
from football.hooks import Hooks, plugin_manager
from football.inventory import Host, parse
from plugins import lvm
from plugins.lvm import LvmOutputError, Segment, parse_lvm_size, parse_lvs, parse_lvs_table, \
    parse_vgs
from tests.helpers.fakehost import UnexpectedCommand

DATA = Path(__file__).parent / "data" / "lvm"
MIB, GIB, TIB = 1 << 20, 1 << 30, 1 << 40
LVM_FAILED = 5  # ECMD_FAILED, lvm2's exit code for a command that failed
LVM_INVALID = 3  # EINVALID_CMD_LINE
REPORT = ["--noheadings", "--nosuffix", "--units", "b", "--separator", ";"]
LVS = ["lvs", *REPORT, "-o", "lv_name,lv_size,seg_size,stripes,stripe_size", "vg0"]
VGS = ["vgs", *REPORT, "-o", "vg_name,vg_size,vg_free,vg_extent_size,vg_free_count", "vg0"]


def recorded(name):
    return (DATA / name).read_text()


@pytest.fixture
def host(runner):
    return Host(name="h1", address="10.0.0.1", storage="lvm", vg="vg0", _runner=runner)


@pytest.fixture
def hooks():
    return Hooks(plugin_manager(entry_points=False))


# --- the commands each hook runs ---------------------------------------------------------

def test_lv_create_passes_the_size_in_bytes_and_returns_the_device_path(host, runner, hooks):
    runner.expect(["lvcreate", "--yes", "-n", "vm1", "-L", f"{GIB}b", "vg0"],
                  stdout='  Logical volume "vm1" created.\n')
    assert hooks.lv_create(host=host, lv="vm1", size=GIB) == "/dev/vg0/vm1"
    assert len(runner.calls) == 1


def test_lv_create_stripes_over_the_hosts_stripe_count_with_its_stripe_size(host, runner,
                                                                            hooks):
    host.stripes, host.stripe_size = 2, "64k"
    runner.expect(["lvcreate", "--yes", "-n", "vm1", "-L", f"{GIB}b", "-i", "2", "-I", "64k",
                   "vg0"])
    assert hooks.lv_create(host=host, lv="vm1", size=GIB) == "/dev/vg0/vm1"


def test_lv_create_without_a_stripe_size_leaves_it_to_lvm(host, runner, hooks):
    host.stripes = 3
    runner.expect(["lvcreate", "--yes", "-n", "vm1", "-L", f"{GIB}b", "-i", "3", "vg0"])
    hooks.lv_create(host=host, lv="vm1", size=GIB)


def test_lv_resize_returns_the_size_lvm_reports_afterwards(host, runner, hooks):
    runner.expect(["lvresize", "--yes", "--force", "-L", f"{3 * GIB}b", "vg0/vm2"])
    runner.expect(LVS, stdout=recorded("lvs_segments.txt"))
    assert hooks.lv_resize(host=host, lv="vm2", size=3 * GIB) == 3 * GIB
    assert runner.calls[0][0] == "lvresize" and runner.calls[1][0] == "lvs"


def test_lv_resize_to_the_size_the_lv_has_is_a_successful_no_op(host, runner, hooks):
    runner.expect(["lvresize", "--yes", "--force", "-L", f"{2 * GIB}b", "vg0/vm1"],
                  stderr=recorded("lvresize_same.txt"), exit=LVM_FAILED)
    runner.expect(LVS, stdout=recorded("lvs_segments.txt"))
    assert hooks.lv_resize(host=host, lv="vm1", size=2 * GIB) == 2 * GIB


def test_lv_resize_to_the_size_the_lv_has_is_a_no_op_also_as_newer_lvm2_says_it(
        host, runner, hooks):
    """lvm2 2.03.17 and later print "matches existing size" on stdout and
    only "No size change." on stderr (its source's wording, not recorded
    here): it was a failure, not the no-op."""
    runner.expect(["lvresize", "--yes", "--force", "-L", f"{2 * GIB}b", "vg0/vm1"],
                  stdout=recorded("lvresize_same.txt"),
                  stderr=recorded("lvresize_same_2_03_17_stderr.txt"), exit=LVM_FAILED)
    runner.expect(LVS, stdout=recorded("lvs_segments.txt"))
    assert hooks.lv_resize(host=host, lv="vm1", size=2 * GIB) == 2 * GIB


def test_lv_resize_reports_the_rounded_up_size_not_the_requested_one(host, runner, hooks):
    # LVM allocates whole extents: asking for one byte less still leaves 2 GiB
    # (and it takes whole sectors only: "Size is not a multiple of 512").
    runner.expect(["lvresize", "--yes", "--force", "-L", f"{2 * GIB}b", "vg0/vm1"],
                  stderr=recorded("lvresize_same.txt"), exit=LVM_FAILED)
    runner.expect(LVS, stdout=recorded("lvs_segments.txt"))
    assert hooks.lv_resize(host=host, lv="vm1", size=2 * GIB - 1) == 2 * GIB


def test_lv_rename_runs_lvrename_and_returns_the_new_path(host, runner, hooks):
    runner.expect(["lvrename", "vg0", "vm1", "vm1-old"],
                  stdout='  Renamed "vm1" to "vm1-old" in volume group "vg0"\n')
    assert hooks.lv_rename(host=host, lv="vm1", new_name="vm1-old") == "/dev/vg0/vm1-old"


def snapshots_of(lv):
    return ["lvs", "--noheadings", "--separator", ";", "-o", "lv_name,lv_attr", "-S",
            f"origin={lv}", "vg0"]


def test_lv_remove_runs_lvremove_without_asking_and_returns_true(host, runner, hooks):
    # a thin snapshot outlives its origin: no reason to keep the volume
    runner.expect(snapshots_of("vm1"), stdout="  vm1-thinsnap;Vwi---tz-k\n")
    runner.expect(["lvremove", "--yes", "--force", "vg0/vm1"],
                  stdout='  Logical volume "vm1" successfully removed.\n')
    assert hooks.lv_remove(host=host, lv="vm1") is True


def test_lv_remove_of_a_volume_with_snapshots_removes_nothing_and_names_them(host, runner, hooks):
    runner.expect(snapshots_of("vm1"), stdout="  vm1-backup;swi-a-s---\n  vm1-old;Swi-I-s---\n")
    with pytest.raises(StorageError) as raised:
        hooks.lv_remove(host=host, lv="vm1")
    assert raised.value.kind == "failed"       # not in-use: waiting would not help
    assert str(raised.value).startswith("h1: volume vm1 has snapshots (vm1-backup, vm1-old)")
    assert "lvremove vg0/vm1-backup; lvremove vg0/vm1-old" in str(raised.value)
    assert not [call for call in runner.calls if call[0] == "lvremove"]


def test_lv_list_maps_every_lv_to_its_whole_size_once(host, runner, hooks):
    runner.expect(LVS, stdout=recorded("lvs_segments.txt"))
    assert hooks.lv_list(host=host) == {"root": 20 * GIB, "vm1": 2 * GIB, "vm2": 3 * GIB}


def test_lv_list_of_an_empty_volume_group_is_empty(host, runner, hooks):
    runner.expect(LVS, stdout="")
    assert hooks.lv_list(host=host) == {}


def test_vg_free_is_the_free_bytes_vgs_reports(host, runner, hooks):
    runner.expect(VGS, stdout=recorded("vgs.txt"))
    assert hooks.vg_free(host=host) == 19199 * 4 * MIB


def test_lv_path_is_below_dev_vg_and_runs_nothing(host, runner, hooks):
    assert hooks.lv_path(host=host, lv="vm9") == "/dev/vg0/vm9"
    assert runner.calls == []


def test_an_unexpected_command_fails_the_test(host, runner):
    with pytest.raises(UnexpectedCommand):
        host.run(["lvs"])


# --- failures ------------------------------------------------------------------------------

FAILURES = [
    # hook, arguments, command, recorded stderr, exit code, kind
    ("lv_create", {"lv": "vm1", "size": GIB},
     ["lvcreate", "--yes", "-n", "vm1", "-L", f"{GIB}b", "vg0"],
     "lvcreate_exists.txt", LVM_FAILED, "exists"),
    ("lv_create", {"lv": "vm1", "size": GIB},
     ["lvcreate", "--yes", "-n", "vm1", "-L", f"{GIB}b", "vg0"],
     "lvcreate_nospace.txt", LVM_FAILED, "no-space"),
    ("lv_create", {"lv": "snapshot1", "size": GIB},
     ["lvcreate", "--yes", "-n", "snapshot1", "-L", f"{GIB}b", "vg0"],
     "lvcreate_invalid.txt", LVM_INVALID, "invalid"),
    ("lv_create", {"lv": "vm1", "size": GIB},
     ["lvcreate", "--yes", "-n", "vm1", "-L", f"{GIB}b", "vg0"],
     "lvcreate_activation_failed.txt", LVM_FAILED, "failed"),
    ("lv_resize", {"lv": "vm1", "size": 2 * GIB},
     ["lvresize", "--yes", "--force", "-L", f"{2 * GIB}b", "vg0/vm1"],
     "lvresize_nospace.txt", LVM_FAILED, "no-space"),
    ("lv_resize", {"lv": "vm9", "size": GIB},
     ["lvresize", "--yes", "--force", "-L", f"{GIB}b", "vg0/vm9"],
     "lvresize_notfound.txt", LVM_FAILED, "not-found"),
    ("lv_rename", {"lv": "vm9", "new_name": "vm10"}, ["lvrename", "vg0", "vm9", "vm10"],
     "lvrename_notfound.txt", LVM_FAILED, "not-found"),
    ("lv_rename", {"lv": "vm1", "new_name": "vm2"}, ["lvrename", "vg0", "vm1", "vm2"],
     "lvrename_exists.txt", LVM_FAILED, "exists"),
    ("lv_remove", {"lv": "vm9"}, ["lvremove", "--yes", "--force", "vg0/vm9"],
     "lvremove_notfound.txt", LVM_FAILED, "not-found"),
    ("lv_remove", {"lv": "vm1"}, ["lvremove", "--yes", "--force", "vg0/vm1"],
     "lvremove_inuse.txt", LVM_FAILED, "in-use"),
    # an LV with holders (a dm, kpartx or crypt device on it): lvm2's
    # activate.c wording, not recorded here
    ("lv_remove", {"lv": "vm1"}, ["lvremove", "--yes", "--force", "vg0/vm1"],
     "lvremove_holders.txt", LVM_FAILED, "in-use"),
]


@pytest.mark.parametrize("hook, arguments, argv, stderr, exit_code, kind", FAILURES,
                         ids=[f"{case[0]}-{case[3].removesuffix('.txt')}" for case in FAILURES])
def test_each_lvm_failure_message_raises_its_storage_error_kind(host, runner, hooks, hook,
                                                                arguments, argv, stderr,
                                                                exit_code, kind):
    if hook == "lv_remove":
        runner.expect(snapshots_of(arguments["lv"]))
    runner.expect(argv, stderr=recorded(stderr), exit=exit_code)
    with pytest.raises(StorageError) as raised:
        hooks.call(hook, host=host, **arguments)
    assert raised.value.kind == kind


@pytest.mark.parametrize("hook, command", [("lv_list", "lvs"), ("vg_free", "vgs")])
def test_reading_a_missing_volume_group_is_not_found(runner, hooks, hook, command):
    host = Host(name="h1", address="10.0.0.1", storage="lvm", vg="vgx", _runner=runner)
    argv = (LVS if command == "lvs" else VGS)[:-1] + ["vgx"]
    runner.expect(argv, stderr=recorded("vgs_notfound.txt"), exit=LVM_FAILED)
    with pytest.raises(StorageError) as raised:
        hooks.call(hook, host=host)
    assert raised.value.kind == "not-found"


def test_a_failure_names_the_host_the_command_its_exit_code_and_lvms_message(host, runner,
                                                                           hooks):
    runner.expect(snapshots_of("vm1"))
    runner.expect(["lvremove", "--yes", "--force", "vg0/vm1"],
                  stderr=recorded("lvremove_inuse.txt"), exit=LVM_FAILED)
    with pytest.raises(StorageError) as raised:
        hooks.lv_remove(host=host, lv="vm1")
    message = str(raised.value)
    assert message.startswith("h1: ")
    assert "`lvremove --yes --force vg0/vm1` exited 5" in message
    assert "Logical volume vg0/vm1 contains a filesystem in use." in message


def test_output_lvm_did_not_mean_to_print_is_a_failed_storage_error(host, runner, hooks):
    runner.expect(LVS, stdout="  vm1 2147483648\n")
    with pytest.raises(StorageError) as raised:
        hooks.lv_list(host=host)
    assert raised.value.kind == "failed"
    assert "lvs --noheadings" in str(raised.value)


# --- only for lvm hosts --------------------------------------------------------------------

def test_the_lvm_plugin_answers_none_for_a_filevg_host_and_runs_nothing(runner):
    host = Host(name="h1", address="10.0.0.1", storage="filevg", vg="vg0", _runner=runner)
    assert lvm.lv_create(host=host, lv="vm1", size=GIB) is None
    assert lvm.lv_resize(host=host, lv="vm1", size=GIB) is None
    assert lvm.lv_rename(host=host, lv="vm1", new_name="vm2") is None
    assert lvm.lv_remove(host=host, lv="vm1") is None
    assert lvm.lv_list(host=host) is None
    assert lvm.vg_free(host=host) is None
    assert lvm.lv_path(host=host, lv="vm1") is None
    assert runner.calls == []


def test_the_inventory_gives_a_host_its_stripes():
    inventory = parse({"hosts": {"h1": {"address": "10.0.0.1", "stripes": 2,
                                        "stripe_size": "128k"}}})
    assert (inventory.host("h1").stripes, inventory.host("h1").stripe_size) == (2, "128k")


# --- parsers on recorded output ------------------------------------------------------------

def test_parse_lvs_gathers_the_segment_rows_of_an_lv_into_one_lv():
    vm2 = parse_lvs(recorded("lvs_segments.txt"))["vm2"]
    assert vm2.size == 3 * GIB
    assert vm2.segments == (Segment(GIB, 1, 0), Segment(512 * MIB, 1, 0),
                            Segment(1536 * MIB, 1, 0))
    assert (vm2.stripes, vm2.stripe_size) == (1, 0)


def test_parse_lvs_reads_the_stripes_of_a_striped_lv():
    vm1 = parse_lvs(recorded("lvs_segments.txt"))["vm1"]
    assert (vm1.size, vm1.stripes, vm1.stripe_size) == (2 * GIB, 2, 64 * 1024)
    assert len(vm1.segments) == 1


def test_parse_lvs_skips_indentation_and_blank_lines():
    assert list(parse_lvs("\n  root;1024;1024;1;0\n\n   \n")) == ["root"]


def test_parse_lvs_accepts_sizes_with_a_byte_suffix():
    lvs = parse_lvs(recorded("lvs_units_suffix.txt"))
    assert {name: lv.size for name, lv in lvs.items()} == {"root": 20 * GIB, "vm1": 2 * GIB}
    assert lvs["vm1"].stripe_size == 65536


def test_parse_lvs_accepts_human_units_and_rounding_markers():
    lvs = parse_lvs(recorded("lvs_units_human.txt"))
    assert lvs["data"].size == TIB and len(lvs["data"].segments) == 2
    assert lvs["root"].size == round(29.5 * GIB)
    assert lvs["swap"].size == 4 * GIB
    assert (lvs["vm1"].size, lvs["vm1"].stripes, lvs["vm1"].stripe_size) == (512 * MIB, 2, 65536)


def test_parse_lvs_rejects_segments_that_do_not_add_up_to_the_lv_size():
    with pytest.raises(LvmOutputError, match="add up to"):
        parse_lvs("  vm2;3221225472;1073741824;1;0\n  vm2;3221225472;1073741824;1;0\n")


def test_parse_lvs_rejects_an_lv_reported_with_two_sizes():
    with pytest.raises(LvmOutputError, match="sizes"):
        parse_lvs("  vm2;2048;1024;1;0\n  vm2;4096;1024;1;0\n")


@pytest.mark.parametrize("line", ["  vm1;1024;1024;1", "  vm1;1024;1024;x;0",
                                  "  vm1;1024;lots;1;0"])
def test_parse_lvs_rejects_rows_it_cannot_read(line):
    with pytest.raises(LvmOutputError):
        parse_lvs(line)


def test_parse_vgs_reads_size_free_space_and_extents():
    vg = parse_vgs(recorded("vgs.txt"))
    assert (vg.name, vg.size, vg.free) == ("vg0", 25599 * 4 * MIB, 19199 * 4 * MIB)
    assert (vg.extent_size, vg.free_extents) == (4 * MIB, 19199)


@pytest.mark.parametrize("text", ["", "  vg0;1;1;1;1\n  vg1;1;1;1;1\n"])
def test_parse_vgs_wants_exactly_one_volume_group(text):
    with pytest.raises(LvmOutputError, match="one volume group"):
        parse_vgs(text)


def test_parse_lvs_table_reads_names_and_rounded_sizes_of_plain_lvs():
    assert parse_lvs_table(recorded("lvs_table.txt")) == {
        "data": TIB, "root": round(29.5 * GIB), "swap": 4 * GIB, "vm1": 512 * MIB}


@pytest.mark.parametrize("text, size", [
    ("1073741824", GIB), ("1073741824B", GIB), ("  1073741824 ", GIB), ("0 ", 0),
    ("<29.50g", round(29.5 * GIB)), (">1.99g", round(1.99 * GIB)), ("1.00t", TIB),
    ("512.00m", 512 * MIB), ("4.00m", 4 * MIB), ("64.00k", 65536), ("2048s", MIB),
    ("1.00G", 10 ** 9),
])
def test_parse_lvm_size_reads_bytes_units_and_rounding_markers(text, size):
    assert parse_lvm_size(text) == size


@pytest.mark.parametrize("text", ["", "g", "12x", "-1", "1.5.0m", "<<1g"])
def test_parse_lvm_size_rejects_what_is_not_a_size(text):
    with pytest.raises(LvmOutputError):
        parse_lvm_size(text)

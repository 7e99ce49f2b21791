"""The store as kernel MARS's symlink tree: view-tree and import-tree."""

import os

import pytest

from mars.errors import MarsError
from mars.store import MetaTuple
from mars.tree import read_tree

T0 = 1_600_000_000_000_000_000      # mtimes in the kernel tree (ns)


def link(root, key, value, stamp):
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(value, path)
    os.utime(path, ns=(stamp, stamp), follow_symlinks=False)
    return path


@pytest.fixture
def kernel_tree(tmp_path):
    """A copy of kernel host h2's /mars: h1 and h2 in the cluster, vm1 on h2."""
    root = tmp_path / "kernel-mars"
    link(root, "ips/ip-h1", "10.0.0.1", T0 + 1)
    link(root, "ips/ip-h2", "10.0.0.2", T0 + 2)
    link(root, "uuid", "1234-abcd", T0 + 3)
    link(root, "resource-vm1/size", "1048576", T0 + 4)
    link(root, "resource-vm1/primary", "h2", T0 + 5)
    link(root, "resource-vm1/data-h2", "/dev/vg/vm1", T0 + 6)
    link(root, "resource-vm1/todo-h2/attach", "1", T0 + 7)
    link(root, "resource-vm1/actual-h2/is-primary", "1", T0 + 8)
    link(root, "resource-vm1/version-000000001-h2", "d1g3st,log-000000001-h2,4096:", T0 + 9)
    (root / "resource-vm1/log-000000001-h2").write_bytes(b"\0" * 4096)   # a logfile
    (root / "resource-vm1/log-000000002-h1").write_bytes(b"")
    return root


EXPECTED_IMPORT = [
    MetaTuple("ips/ip-h1", "10.0.0.1", T0 + 1, "h1"),
    MetaTuple("ips/ip-h2", "10.0.0.2", T0 + 2, "h2"),
    MetaTuple("resource-vm1/actual-h2/is-primary", "1", T0 + 8, "h2"),
    MetaTuple("resource-vm1/data-h2", "/dev/vg/vm1", T0 + 6, "h2"),
    MetaTuple("resource-vm1/primary", "h2", T0 + 5, "h3"),
    MetaTuple("resource-vm1/size", "1048576", T0 + 4, "h3"),
    MetaTuple("resource-vm1/todo-h2/attach", "1", T0 + 7, "h2"),
    MetaTuple("resource-vm1/version-1-h2", "d1g3st,log-000000001-h2,4096:", T0 + 9, "h2"),
    MetaTuple("uuid", "1234-abcd", T0 + 3, "h3"),
]


# ------------------------------------------------------------------ view-tree
def test_view_tree_prints_state_dir_key_arrow_value_lines_sorted_without_tombstones(make_host):
    h1 = make_host("h1")
    with h1.store() as store:
        store.write({"ips/ip-h1": "127.0.0.1", "uuid": "u-1", "resource-vm1/size": "4096",
                     "resource-vm2/size": "8192"})
        store.delete(["resource-vm2/size"])
        store.apply([("ips/ip-h2", "127.0.0.2", 100, "h2")])
    state = h1.state_dir
    assert h1.ok("view-tree") == (
        f"{state}/ips/ip-h1 -> 127.0.0.1\n"
        f"{state}/ips/ip-h2 -> 127.0.0.2\n"
        f"{state}/resource-vm1/size -> 4096\n"
        f"{state}/uuid -> u-1\n")


def test_view_tree_with_stamps_appends_stamp_and_origin(make_host):
    h1 = make_host("h1")
    with h1.store() as store:
        store.apply([("ips/ip-h2", "127.0.0.2", 100, "h2"), ("uuid", "u-1", 200, "h3")])
    assert h1.ok("view-tree", "--stamps") == (
        f"{h1.state_dir}/ips/ip-h2 -> 127.0.0.2  [100 h2]\n"
        f"{h1.state_dir}/uuid -> u-1  [200 h3]\n")


def test_view_tree_of_an_empty_store_prints_nothing(make_host):
    assert make_host("h1").ok("view-tree") == ""


# ---------------------------------------------------------------- import-tree
def test_import_tree_takes_values_stamps_and_owners_from_the_links(make_host, kernel_tree):
    h3 = make_host("h3")
    out = h3.ok("import-tree", kernel_tree)
    assert out == f"imported 9 of 9 tuples from {kernel_tree}\n"
    assert h3.tuples() == EXPECTED_IMPORT


def test_imported_tree_answers_the_views(make_host, kernel_tree):
    h2 = make_host("h2")
    h2.ok("import-tree", kernel_tree)
    assert h2.ok("lowlevel-ls-host-ips") == "h1 10.0.0.1\nh2 10.0.0.2\n"
    assert h2.ok("view-all-resources") == "vm1\n"
    assert h2.ok("view-my-resources") == "vm1\n"
    assert h2.ok("view-get-primary", "vm1") == "h2\n"
    assert h2.ok("view-get-disk", "vm1") == "/dev/vg/vm1\n"


def test_import_tree_skips_regular_files_such_as_logfiles(kernel_tree):
    keys = [item.key for item in read_tree(kernel_tree, "h3")]
    assert not any("/log-" in key for key in keys)
    assert len(keys) == 9


def test_import_tree_keeps_the_owner_of_another_hosts_key_as_origin(tmp_path):
    root = tmp_path / "tree"
    link(root, "ips/ip-h7", "10.0.0.7", T0)
    link(root, "resource-vm1/data-h7", "/dev/vg/vm1", T0)
    link(root, "resource-vm1/size", "4096", T0)
    origins = {item.key: item.origin for item in read_tree(root, "h1")}
    assert origins == {"ips/ip-h7": "h7", "resource-vm1/data-h7": "h7",
                       "resource-vm1/size": "h1"}


def test_import_tree_reads_a_link_whose_target_happens_to_be_a_directory(tmp_path):
    root = tmp_path / "tree"
    link(root, "ips/ip-h1", "10.0.0.1", T0)
    link(root, "resource-vm1/data-h1", str(tmp_path), T0 + 1)     # an existing directory
    items = read_tree(root, "h1")
    assert MetaTuple("resource-vm1/data-h1", str(tmp_path), T0 + 1, "h1") in items


def test_import_tree_does_not_overwrite_newer_tuples(h1, kernel_tree):
    with h1.store() as store:
        uuid_before = store.get("uuid")
    out = h1.ok("import-tree", kernel_tree)
    assert out == f"imported 7 of 9 tuples from {kernel_tree}\n"     # not uuid, not ip-h1
    with h1.store() as store:
        assert store.get("uuid") == uuid_before
        assert store.value("ips/ip-h1") == "127.0.0.1"    # ours is newer than the tree's
        assert store.value("ips/ip-h2") == "10.0.0.2"


def test_import_tree_refuses_a_tree_without_ips_links_and_imports_nothing(make_host, tmp_path):
    root = tmp_path / "not-mars"
    link(root, "resource-vm1/size", "4096", T0)
    link(root, "uuid", "u-1", T0)
    h1 = make_host("h1")
    result = h1.run("import-tree", root)
    assert result.exit_code == 1
    assert result.stderr == (f"marsadm import-tree: {root} holds no ips/ip-<host> links: "
                             "not a MARS state tree\n")
    assert h1.tuples() == []


def test_import_tree_refuses_a_path_that_is_not_a_directory(make_host, tmp_path):
    h1 = make_host("h1")
    result = h1.run("import-tree", tmp_path / "missing")
    assert result.exit_code == 1
    assert "is not a directory" in result.stderr
    assert h1.tuples() == []


def test_import_tree_refuses_a_malformed_link_and_imports_nothing(make_host, kernel_tree):
    link(kernel_tree, "resource-vm1/primary-odd", "h2\nh3", T0)
    h1 = make_host("h1")
    result = h1.run("import-tree", kernel_tree)
    assert result.exit_code == 1
    assert "cannot import" in result.stderr and "primary-odd" in result.stderr
    assert result.stderr.count("\n") == 1
    assert h1.tuples() == []


def test_import_tree_dry_run_lists_tuples_and_changes_nothing(make_host, kernel_tree):
    h1 = make_host("h1")
    out = h1.ok("--dry-run", "import-tree", kernel_tree)
    assert sorted(out.splitlines()) == [f"would import {item.key} = {item.value}"
                                for item in EXPECTED_IMPORT]
    assert h1.tuples() == []


def test_read_tree_refuses_a_missing_directory(tmp_path):
    with pytest.raises(MarsError, match="is not a directory"):
        read_tree(tmp_path / "nope", "h1")


def test_import_tree_spells_a_kernel_version_key_as_this_mars_does(tmp_path):
    """The kernel pads a version's logfile number to nine digits: imported
    as it was, no lookup of logfile 5's version (`version-5-h7`) found it."""
    root = tmp_path / "tree"
    link(root, "ips/ip-h7", "10.0.0.7", T0)
    link(root, "resource-vm1/version-000000005-h7", "00ab,log-000000005-h7,4096:", T0)
    link(root, "resource-vm1/version-000000012-db-h7", "00cd,log-000000012-db-h7,0:", T0)
    keys = {item.key: item.origin for item in read_tree(root, "h1")}
    assert keys == {"ips/ip-h7": "h7", "resource-vm1/version-5-h7": "h7",
                    "resource-vm1/version-12-db-h7": "db-h7"}

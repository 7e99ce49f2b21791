"""The kernel's symlink tree under the state dir, kept by marsd from the
store for tools that read /mars instead of asking marsadm (the original
Football: `[[ -d /mars/ips/ ]]`, `/mars/resource-<res>/data-<host>`)."""

import os
import threading

import pytest

from tests.helpers.marshosts import wait_until
from tests.integration.support import build_cluster, sparse_disk, wait_for_key, wait_for_resources

pytestmark = pytest.mark.integration

HEARTBEAT = ("/time",)      # rewritten every round: compared for presence, not value


def mirror(host):
    """{key: link value} of every link in the host's state dir."""
    root = host.root / "mars"
    found = {}
    for directory, dirs, files in os.walk(root):
        dirs[:] = [name for name in dirs if name not in ("fuse", "status")]
        for name in files + dirs:
            path = os.path.join(directory, name)
            try:
                found[os.path.relpath(path, root)] = os.readlink(path)
            except OSError:     # not a link, or removed by the daemon since the walk listed it
                pass
    return found


def tree(host, member_of):
    """view-tree as {key: value}: the cluster's keys and those of the
    resources in `member_of` (a host mirrors only its own resources)."""
    prefix = f"{host.root / 'mars'}/"
    lines = host.marsadm("view-tree").stdout.splitlines()
    entries = dict(line[len(prefix):].split(" -> ", 1) for line in lines)
    return {key: value for key, value in entries.items()
            if not key.startswith("resource-") or key.split("/")[0][len("resource-"):] in member_of}


def comparable(entries):
    return {key: (value if not key.endswith(HEARTBEAT) else "<time>")
            for key, value in entries.items()}


def wait_mirrored(host, member_of):
    wait_until(lambda: comparable(mirror(host)) == comparable(tree(host, member_of)),
               what=f"{host.name}'s mirror equal to its view-tree",
               show=lambda: {"mirror only": sorted(set(mirror(host)) - set(tree(host, member_of))),
                             "tree only": sorted(set(tree(host, member_of)) - set(mirror(host)))})


def test_the_mirror_follows_the_store_through_create_join_leave_and_delete(marsnet):
    alpha, bravo, charlie = build_cluster(marsnet, "alpha", "bravo", "charlie")
    for host in (alpha, bravo, charlie):
        wait_mirrored(host, ())
        assert (host.root / "mars" / "ips").is_dir()
        assert os.readlink(host.root / "mars" / "ips" / "ip-bravo") == bravo.address

    alpha.marsadm("create-resource", "vm1", sparse_disk(alpha))
    wait_for_resources([bravo, charlie], ["vm1"])
    bravo.marsadm("join-resource", "vm1", sparse_disk(bravo))
    wait_for_key([alpha, charlie], "resource-vm1/data-bravo", str(bravo.root / "disks" / "disk"))
    wait_mirrored(alpha, ("vm1",))
    wait_mirrored(bravo, ("vm1",))
    wait_mirrored(charlie, ())              # not a member: no resource-vm1 links
    data = alpha.root / "mars" / "resource-vm1" / "data-bravo"
    assert os.readlink(data) == str(bravo.root / "disks" / "disk")

    bravo.marsadm("down", "vm1")
    bravo.marsadm("leave-resource", "vm1")
    wait_for_key([alpha], "resource-vm1/data-bravo", None)
    wait_mirrored(bravo, ())
    wait_mirrored(alpha, ("vm1",))
    assert not os.path.lexists(data)

    alpha.marsadm("delete-resource", "vm1", "--force")
    wait_until(lambda: not any(key.startswith("resource-vm1/") for key in mirror(alpha)),
               what="alpha's mirror without vm1's links", show=lambda: mirror(alpha))
    wait_mirrored(alpha, ())


def test_a_reader_never_finds_a_link_missing_while_marsd_rewrites_it(marsnet):
    (alpha,) = build_cluster(marsnet, "alpha")
    link = alpha.root / "mars" / "actual-alpha" / "time"
    wait_until(lambda: os.path.islink(link), what=f"{link} written")
    seen, missing, stop = set(), [], threading.Event()

    def read():
        while not stop.is_set():
            try:
                seen.add(os.readlink(link))
            except OSError as exc:
                missing.append(exc)
    reader = threading.Thread(target=read)
    reader.start()
    try:
        # the heartbeat link is replaced every round: read through several
        wait_until(lambda: len(seen) >= 4, what="the heartbeat link rewritten 3 times",
                   show=lambda: sorted(seen))
    finally:
        stop.set()
        reader.join()
    assert missing == []

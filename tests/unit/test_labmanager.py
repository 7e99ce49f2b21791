"""The lab's cluster manager (plugins/labmanager.py) against a recording
fake transport: what it says it did to a resource's mount is what the
host's mount table shows afterwards."""

from football.inventory import Host
from plugins import labmanager

FINDMNT = ["findmnt", "--noheadings", "--output", "SOURCE", "--mountpoint",
           "/var/lib/lxc/vm1"]


def test_an_unmount_of_a_volume_mounted_twice_leaves_neither_mount_behind(runner):
    """Two mounts stacked at the mountpoint (two starts that both found it
    free): one umount removes the top one only; said done then, the stop
    left the volume mounted (and a start after it found a mount there and
    mounted nothing)."""
    runner.expect(FINDMNT, stdout="/dev/mars/vm1\n/dev/mars/vm1\n")
    runner.expect(["umount", "/var/lib/lxc/vm1"])
    runner.expect(FINDMNT, stdout="/dev/mars/vm1\n")
    runner.expect(["umount", "/var/lib/lxc/vm1"])
    runner.expect(FINDMNT, exit=1)
    host = Host(name="h1", address="10.0.0.1", manager="lab", _runner=runner)
    assert labmanager.umount(host, "vm1") is True
    assert runner.calls.count(tuple(FINDMNT)) == 3


def test_an_unmount_of_a_volume_not_mounted_says_it_did_nothing(runner):
    runner.expect(FINDMNT, exit=1)
    host = Host(name="h1", address="10.0.0.1", manager="lab", _runner=runner)
    assert labmanager.umount(host, "vm1") is False

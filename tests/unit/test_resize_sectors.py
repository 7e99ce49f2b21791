"""`marsadm resize` takes whole 512-byte sectors only, as create-resource
does: a size given that is none is refused before anyone is asked, and
without a size the smallest member disk's whole sectors are taken (its
tail of less than a sector stays unused)."""

from tests.unit.conftest import MIB
from tests.unit.test_marsadm_commands import assert_refused
from tests.unit.test_marsadm_dataplane import marsd_disks, values  # noqa: F401 (a fixture)


def test_resize_to_a_size_of_no_whole_sectors_is_refused_without_asking_anyone(
        scenario, marsd_disks):  # noqa: F811
    marsd_disks.update(h1=4 * MIB, h2=4 * MIB)
    asked = 2 * MIB + 100
    assert_refused(scenario.host, ["resize", "vm1", str(asked)],
                   f"size {asked} ({asked} bytes) is no whole number of 512-byte sectors",
                   f"e.g. {2 * MIB} or {2 * MIB + 512}", "nothing changed")
    assert marsd_disks.asked == []


def test_resize_without_a_size_takes_the_smallest_disks_whole_sectors(
        scenario, marsd_disks):  # noqa: F811
    h1 = scenario.host
    marsd_disks.update(h1=4 * MIB, h2=3 * MIB + 1000)
    assert h1.ok("resize", "vm1") == ""
    now = values(h1)
    assert now["resource-vm1/size"] == str(3 * MIB + 512)
    assert now["resource-vm1/grown-from"] == str(MIB)


def test_resize_without_a_size_when_the_smallest_disk_grew_by_less_than_a_sector_changes_nothing(
        scenario, marsd_disks):  # noqa: F811
    h1 = scenario.host
    marsd_disks.update(h1=4 * MIB, h2=MIB + 100)
    before = h1.tuples()
    assert h1.ok("resize", "vm1") == (
        f"vm1 already has {MIB} bytes, as much as the smallest disk allows (h2: {MIB + 100} "
        "bytes, whole 512-byte sectors only): grow the disks of all members first\n")
    assert h1.tuples() == before

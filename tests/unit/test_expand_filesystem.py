"""`football expand` of a resource whose filesystem is not XFS (an ext4 an
operator made): xfs_growfs cannot grow it. It grew every LV and MARS, then
failed at xfs_growfs (198), and every re-run failed there again; refused
before anything grows (191, nothing changed)."""

from tests.helpers.fakefleet import failing, fake_fleet, football

fleet = fake_fleet

MIB = 1 << 20


def test_an_expand_of_a_filesystem_that_is_not_xfs_is_refused_before_anything_grows(
        fleet, monkeypatch):
    mountpoint = fleet.hosts["a1"].mountpoint("vm1")
    undo = failing(fleet, monkeypatch,
                   lambda host, argv: argv[0] in ("xfs_info", "xfs_growfs"), 1,
                   f"xfs_info: {mountpoint} is not a mounted XFS filesystem\n")
    code, _, stderr = football(fleet, "expand", "vm1", "1g")
    said = " ".join(stderr.split())
    assert code == 191, stderr
    assert "not an XFS filesystem" in said and "nothing changed" in said
    assert fleet.changes() == []
    assert (fleet.lvs("a1")["vm1"], fleet.lvs("a2")["vm1"], fleet.resources["vm1"].size) == \
        (320 * MIB,) * 3
    undo()
    code, _, stderr = football(fleet, "expand", "vm1", "1g")
    assert code == 0, stderr
    assert fleet.resources["vm1"].fs_size == 1 << 30

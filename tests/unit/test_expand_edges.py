"""Expand's edges: over a migrate that handed over already (its old
replicas are leaving: their LVs are not grown, the migrate is finished
first), and of a container its operator stopped (its volume not mounted:
the refusal says how to go on)."""

from tests.helpers.fakefleet import fake_fleet, football

fleet = fake_fleet

EXIT_ILLEGAL = 191


def test_an_expand_over_a_migrate_that_handed_over_grows_no_old_replica(fleet):
    code, _, stderr = football(fleet, "--debug-injection-point", "finish:started", "migrate",
                               "vm1", "b1", "b2")
    assert code == 1, stderr
    assert fleet.running("vm1") == ["b1"] and fleet.members("vm1") == ["a1", "a2", "b1", "b2"]
    before = {name: dict(fleet.lvs(name)) for name in fleet.hosts}
    code, _, stderr = football(fleet, "expand", "vm1", "1g")
    assert code == EXIT_ILLEGAL, stderr
    assert {name: dict(fleet.lvs(name)) for name in fleet.hosts} == before
    text = " ".join(stderr.split())
    assert "a1, a2" in text and "`football migrate vm1 b1 b2`" in text, text
    assert "nothing changed" in text
    code, _, stderr = football(fleet, "migrate", "vm1", "b1", "b2")     # the way on
    assert code == 0, stderr
    code, _, stderr = football(fleet, "expand", "vm1", "1g")
    assert code == 0, stderr
    assert {name: fleet.lvs(name).get("vm1") for name in fleet.hosts} == \
        {"a1": None, "a2": None, "b1": 1 << 30, "b2": 1 << 30}


def test_an_expand_over_a_migrate_before_its_handover_grows_the_new_replicas_too(fleet):
    code, _, stderr = football(fleet, "--debug-injection-point", "wait:synced", "migrate",
                               "vm1", "b1", "b2")
    assert code == 1, stderr
    code, _, stderr = football(fleet, "expand", "vm1", "1g")
    assert code == 0, stderr
    assert {name: fleet.lvs(name)["vm1"] for name in fleet.hosts} == \
        {name: 1 << 30 for name in fleet.hosts}


def stopped_and_unmounted(fleet, res="vm1", host="a1"):
    fleet.containers[host][res] = "STOPPED"
    fleet.run(host, ["umount", fleet.hosts[host].mountpoint(res)])


def test_an_expand_of_a_stopped_container_says_how_to_go_on_and_that_way_works(fleet):
    stopped_and_unmounted(fleet)
    code, _, stderr = football(fleet, "expand", "vm1", "1g")
    assert code == EXIT_ILLEGAL, stderr
    text = " ".join(stderr.split())
    host = fleet.hosts["a1"]
    mount = f"mount -t xfs {host.device('vm1')} {host.mountpoint('vm1')}"
    assert "does not run" in text and mount in text, text
    assert f"umount {host.mountpoint('vm1')}" in text and "nothing changed" in text
    assert fleet.lvs("a1")["vm1"] == 320 << 20
    fleet.run("a1", mount.split())          # what it says, then the expand
    code, _, stderr = football(fleet, "expand", "vm1", "1g")
    assert code == 0, stderr
    assert fleet.lvs("a1")["vm1"] == 1 << 30 and fleet.running("vm1") == []

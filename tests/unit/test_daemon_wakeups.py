"""Which resource workers a change of the store wakes (mars.daemon.changed_resources)."""

from mars.daemon import changed_resources


def test_a_resources_keys_wake_only_that_resources_worker():
    assert changed_resources({"resource-vm1/primary", "resource-vm1/actual-h2/open-count",
                              "resource-db-2/replay-h1"}) == {"vm1", "db-2"}


def test_the_heartbeats_of_hosts_wake_nobody():
    assert changed_resources({"actual-h1/time", "actual-h2/alive"}) == set()


def test_any_other_key_of_the_cluster_wakes_every_worker():
    assert changed_resources({"resource-vm1/primary", "ips/ip-h3"}) is None
    assert changed_resources({"uuid"}) is None

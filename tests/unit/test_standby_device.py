"""The device process marsd keeps ready ahead (`Daemon.keep_standby_ready`):
kept while this host holds a complete replica, and no longer after."""

from types import SimpleNamespace

from mars.daemon import Daemon
from mars.hostenv import HostEnv


class Warm:
    def __init__(self):
        self.dropped = False

    def exited(self):
        return False

    def drop(self):
        self.dropped = True


def replica(complete):
    return SimpleNamespace(replica_complete=lambda: complete)


def test_the_standby_goes_with_the_last_complete_replica_though_others_still_sync(tmp_path):
    """vm1 complete here (a standby kept for it), vm2 still syncing: vm1
    left or deleted, the standby stayed, though none of the replicas left
    could become primary (`keep_standby_ready` spawns none for them)."""
    daemon = Daemon(HostEnv("a", tmp_path))
    warm = daemon.warm_device = Warm()
    daemon.workers = {"vm1": replica(True), "vm2": replica(False)}
    daemon.keep_standby_ready()
    assert daemon.warm_device is warm and not warm.dropped
    del daemon.workers["vm1"]                   # left, or deleted
    daemon.keep_standby_ready()
    assert warm.dropped and daemon.warm_device is None

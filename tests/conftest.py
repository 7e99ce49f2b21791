import os

import pytest

from tests.helpers.dataplane import DataNet


# Under `--dist loadfile --no-loadscope-reorder` (make test) a worker takes a
# whole file at a time, in collection order: a long file collected last keeps
# one worker busy alone at the end. So the longest files (minutes of lab
# migrations) go first.
LONGEST_FILES_FIRST = ("tests/root/test_migrate.py", "tests/root/test_migrate_variants.py",
                       "tests/root/test_parallel.py", "tests/root/test_repair.py")


def pytest_collection_modifyitems(config, items):
    def rank(item):
        path = item.nodeid.split("::")[0]
        return LONGEST_FILES_FIRST.index(path) if path in LONGEST_FILES_FIRST else \
            len(LONGEST_FILES_FIRST)

    items.sort(key=rank)        # stable: the order within and after them stays
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (CI runs as root)")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def marsnet(tmp_path):
    """A set of MARS hosts on random 127.x.y.z addresses; every marsd is
    stopped by pid at the end, even when the test fails, and the devices
    marsd brought up for resources (loop devices, FUSE mounts) are gone."""
    net = DataNet(tmp_path / "hosts")
    try:
        yield net
    finally:
        net.cleanup()

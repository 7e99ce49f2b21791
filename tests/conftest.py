import os

import pytest

from tests.helpers.dataplane import DataNet


def pytest_collection_modifyitems(config, items):
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

import pytest

from mars.device import loops_backed_by
from tests.helpers.dataplane import DataNet, mounts_under
from tests.helpers.lab import assert_on, migrate, roles_and_running


@pytest.fixture
def datanet(tmp_path):
    """MARS hosts with disks; everything (mounts, loops, daemons) is gone
    afterwards, and the test fails if the clean-up left something."""
    net = DataNet(tmp_path / "hosts")
    try:
        yield net
    finally:
        net.cleanup()
    assert not mounts_under(tmp_path), f"left mounted: {mounts_under(tmp_path)}"
    assert not loops_backed_by(str(tmp_path)), "left loop devices attached"


@pytest.fixture
def at_home(lab):
    """vm1 primary on a1 with its replica on a2, as `lab up` made it: moved
    back there if an earlier test left it elsewhere."""
    roles, running = roles_and_running(lab.status())
    if roles != {"a1": "Primary", "a2": "Secondary"} or running != ["a1"]:
        migrate(lab, "migrate", "vm1", "a1", "a2")
        assert_on(lab, "a1", "a2")
    return lab

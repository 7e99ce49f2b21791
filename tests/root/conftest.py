import pytest

from tests.helpers.dataplane import DataNet, mounts_under
from mars.device import loops_backed_by


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

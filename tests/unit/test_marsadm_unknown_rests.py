"""What the views say where marsd's status cannot tell (marsd down, or a
step behind the metadata): never a figure or a state it does not know."""

import pytest

from tests.unit.conftest import MIB, make_disk


def _split_brain(h1):
    """vm1's metadata shows a split brain: h1 and h2 each started a logfile 1."""
    with h1.store() as store:
        store.write({"resource-vm1/replay-h1": "log-000000001-h1,0,0"})
    h1.peer_apply([("resource-vm1/replay-h2", "log-000000001-h2,0,0", "h2")])


def test_view_says_a_split_brain_the_metadata_shows_while_marsd_is_down(scenario):
    h1 = scenario.host
    _split_brain(h1)
    assert h1.ok("view-is-split-brain", "vm1") == "1\n"
    assert ("  split brain: logfiles log-000000001-h1, log-000000001-h2 share number 1"
            in h1.ok("view", "vm1").splitlines())


def test_view_says_a_split_brain_marsd_has_not_reported_yet(scenario, fake_marsd):
    h1 = scenario.host
    fake_marsd("vm1", is_primary=True, attached=True, device="d", loop="l")
    _split_brain(h1)
    assert h1.ok("view-is-split-brain", "vm1") == "1\n"
    assert any(line.startswith("  split brain: ") for line in h1.ok("view", "vm1").splitlines())


@pytest.mark.parametrize("macro", ["work-rest", "fetch-rest", "replay-rest"])
def test_the_rests_of_a_secondary_whose_marsd_is_down_are_unknown_not_zero(
        scenario, tmp_path, macro):
    """No marsd, no listing of the primary's log: how much is missing is
    unknown here. `0` read as "nothing missing, no lag" (failover's
    account of what was lost, repair's of what a rebuild loses)."""
    h1 = scenario.host
    h1.ok("join-resource", "vm3", make_disk(tmp_path / "disk3", 2 * MIB))
    log_dir = h1.state_dir / "resource-vm3"
    log_dir.mkdir()
    (log_dir / "log-000000001-h2").write_bytes(b"x" * 4096)     # fetched, not replayed
    with h1.store() as store:
        store.write({"resource-vm3/replay-h1": "log-000000001-h2,0,0"})
    assert h1.ok(f"view-{macro}", "vm3") == ""


def test_the_rests_of_the_primary_whose_marsd_is_down_are_zero(scenario):
    h1 = scenario.host
    with h1.store() as store:
        store.write({"resource-vm1/actual-h1/is-primary": "1"})
    for macro in ("work-rest", "fetch-rest", "replay-rest"):
        assert h1.ok(f"view-{macro}", "vm1") == "0\n"

"""A resource's hold (run-<res>) is kept while this controller holds a
journal of it that cannot be read: what that run left is unknown here."""

from pathlib import Path

import pytest

from tests.helpers.fakefleet import fake_fleet, football  # noqa: F401 (a fixture)
from tests.unit.test_controllers import other_controller


@pytest.fixture
def fleet(fake_fleet):  # noqa: F811 (the fixture imported above)
    return fake_fleet


def test_a_repair_keeps_the_hold_while_a_journal_of_the_resource_is_damaged(fleet, tmp_path):
    """The hold ended (the damaged journal skipped as if finished), and
    another controller's expand ran on vm1, while this controller's damaged
    migrate journal still refused every operation of vm1 here."""
    code, _, stderr = football(fleet, "migrate-prepare", "vm1", "b1", "b2")
    assert code == 0, stderr
    journal = Path(fleet.state_dir) / "journal" / "migrate-vm1.json"
    journal.write_text("{torn")
    fleet.containers["a1"]["vm1"] = "STOPPED"
    code, _, stderr = football(fleet, "repair-vm", "vm1", "a1")
    assert code == 0, stderr
    code, _, refusal = other_controller(fleet, tmp_path, "expand", "vm1", "1g")
    assert code != 0
    assert "cannot be read" in refusal and f"mv {journal} {journal}.damaged" in refusal, refusal
    # set aside once read: the next run here that ends releases the hold
    journal.rename(f"{journal}.damaged")
    fleet.containers["a1"]["vm1"] = "STOPPED"
    code, _, stderr = football(fleet, "repair-vm", "vm1", "a1")
    assert code == 0, stderr
    assert not any(name.startswith("run-vm1") for host in fleet.hosts
                   for name in fleet.locks(host)), {h: fleet.locks(h) for h in fleet.hosts}

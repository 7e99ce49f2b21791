"""Answers of the veto hooks (`want_downtime`, `is_startable`) that are
neither a yes nor a no as their specs say (football/hooks.py): a plugin
meant a no, and the downtime must not begin on a misreading."""

import pytest

from football.errors import Illegal
from football.hooks import Hooks, hookimpl, plugin_manager
from tests.helpers.fakefleet import football
from tests.helpers.fakefleet import fake_fleet  # noqa: F401 (a fixture)
from tests.unit.test_gates import FAST, stops
from tests.unit.test_hooks import plugin_dir, zfs_host


@pytest.mark.parametrize("answer", ['"the customer\'s backup runs"', "0", '["no"]'])
def test_a_want_downtime_answering_neither_yes_nor_no_stops_the_run_before_the_downtime(
        fake_fleet, tmp_path, answer):  # noqa: F811 (the fixture imported above)
    """A plugin answering its reason alone (as `resource_locked` takes
    one), or 0: counted as a yes, the downtime began."""
    directory = plugin_dir(tmp_path, backup=f"""
        @hookimpl
        def want_downtime(res, source, target):
            return {answer}
        """)
    code, _, stderr = football(fake_fleet, *FAST, "--var", f"plugin_dirs={directory}",
                               "migrate", "vm1", "cluster2")
    assert code == 191, stderr
    assert "want_downtime answered" in stderr and "nothing was stopped" in stderr, stderr
    assert stops(fake_fleet) == [] and fake_fleet.running("vm1") == ["a1"]


def test_the_answers_the_veto_specs_name_are_read_as_before():
    class Answers:
        def __init__(self, answer):
            self.answer = answer

        @hookimpl
        def is_startable(self, host, res):
            return self.answer

    def vetoes(answer):
        hooks = Hooks(plugin_manager(extra=[Answers(answer)], entry_points=False))
        return hooks.vetoes("is_startable", host=zfs_host(), res="vm1")

    assert vetoes(True) == vetoes(None) == []
    assert vetoes(False) == ["a plugin's is_startable said no"]
    assert vetoes((False, "no bridge")) == ["no bridge"]
    with pytest.raises(Illegal, match="is_startable answered 'no bridge'"):
        vetoes("no bridge")

"""A plugin's hook that raises something else than Football's errors (its
CMDB down, a bug): the command ends with its documented exit code and,
with --json, a `failed` event (it ended in a bare traceback, exit 1), and
a failure before anything was stopped does not read as one inside the
downtime window. On the fake fleet (tests/helpers/fakefleet.py)."""

import pytest

from football.errors import EXIT_SERIOUS
from tests.helpers.fakefleet import fake_fleet, football, report_of  # noqa: F401 (a fixture)
from tests.unit.test_gates import FAST, stops
from tests.unit.test_hooks import plugin_dir


@pytest.mark.parametrize("hook", ["check_host", "save_resource_state"])
def test_a_plugin_hook_that_raises_ends_the_run_with_198_and_a_failed_event(
        fake_fleet, tmp_path, hook):  # noqa: F811 (the fixture imported above)
    arguments = {"check_host": "host", "save_resource_state": "host, res"}[hook]
    directory = plugin_dir(tmp_path, cmdb=f"""
        @hookimpl
        def {hook}({arguments}):
            raise RuntimeError("the CMDB does not answer")
        """)
    code, events, stderr = football(fake_fleet, *FAST, "--var", f"plugin_dirs={directory}",
                                    "migrate", "vm1", "cluster2")
    assert code == EXIT_SERIOUS, stderr
    assert "unexpected error: RuntimeError: the CMDB does not answer" in stderr, stderr
    assert events[-1]["event"] == "failed" and events[-1]["exit_code"] == EXIT_SERIOUS
    assert stops(fake_fleet) == [] and fake_fleet.running("vm1") == ["a1"]
    operations = report_of(fake_fleet, "status", "vm1")["operations"]
    assert not [op for op in operations if op["in_downtime"]], operations


def test_a_start_vetoed_while_the_run_waited_for_its_locks_stops_nothing(
        fake_fleet, tmp_path):  # noqa: F811 (the fixture imported above)
    """is_startable was asked before the waits for the handover slot and the
    locks only (want_downtime once more under them): a target the CMDB put
    in maintenance meanwhile got the container."""
    directory = plugin_dir(tmp_path, cmdb="""
        asked = []

        @hookimpl
        def is_startable(host, res):
            asked.append(host.name)
            return len(asked) == 1 or (False, f"{host.name} went into maintenance")
        """)
    code, _, stderr = football(fake_fleet, *FAST, "--var", f"plugin_dirs={directory}",
                               "migrate", "vm1", "cluster2")
    assert code == 191, stderr
    assert "b1 went into maintenance" in stderr and "nothing was stopped" in stderr, stderr
    assert stops(fake_fleet) == [] and fake_fleet.running("vm1") == ["a1"]


def test_a_check_hook_answering_true_is_refused_naming_the_hook(
        fake_fleet, tmp_path):  # noqa: F811 (the fixture imported above)
    """A check hook's answer is a list of problems: True ("fine") ended in
    a TypeError's traceback."""
    directory = plugin_dir(tmp_path, cmdb="""
        @hookimpl
        def check_host(host):
            return True
        """)
    code, _, stderr = football(fake_fleet, "--var", f"plugin_dirs={directory}", "migrate",
                               "vm1", "cluster2")
    assert code == 191, stderr
    assert "a plugin's check_host answered True, not a list of problems" in stderr, stderr
    assert fake_fleet.changes() == []

"""Where the downtime went: every command run inside the downtime window is
in the summary (`downtime_commands`: host, argv, start after the window
opened, duration, exit code) and in the `downtime-end` event — those and
no others — so that an operator
(and `make bench-downtime`) can tell the stop from the handover, the device,
the mount and the container start."""

import pytest

from football.inventory import COMMAND_WATCHERS
from tests.helpers.fakefleet import fake_fleet, football  # noqa: F401


@pytest.fixture
def fleet(fake_fleet):  # noqa: F811
    return fake_fleet


def window_of(events):
    summary = next(event for event in events if event["event"] == "summary")
    return summary["downtime_seconds"], summary["downtime_commands"]


@pytest.mark.parametrize("args", [("handover", "vm1", "a2"), ("migrate", "vm1", "cluster2")])
def test_the_summary_lists_the_commands_of_the_downtime_window_in_order_and_only_those(
        fleet, args):
    before = len(fleet.calls)
    code, events, stderr = football(fleet, *args)
    assert code == 0, stderr
    seconds, commands = window_of(events)
    ended = [event for event in events if event["event"] == "downtime-end"]
    assert [event["commands"] for event in ended] == [commands]
    target = "a2" if args[0] == "handover" else "b1"
    issued = [(host, list(argv)) for host, argv in fleet.calls[before:]]
    listed = [(command["host"], command["argv"]) for command in commands]
    # a contiguous stretch of what the fleet ran, from the stop to the start
    start = issued.index(listed[0])
    assert issued[start:start + len(listed)] == listed
    assert any(argv[0] == "football-host" and "stop" in argv for host, argv in listed
               if host == "a1"), listed
    assert (target, ["marsadm", "--timeout=600", "primary", "vm1"]) in listed or any(
        host == target and argv[0] == "marsadm" and "primary" in argv for host, argv in listed)
    starts = [host for host, argv in listed if argv[0] == "football-host" and "start" in argv]
    assert starts == [target] and listed[-1][0] == target, listed    # then: does it run?
    assert not any("join-resource" in argv or "leave-resource" in argv for _, argv in listed)
    starts = [command["at"] for command in commands]
    assert starts == sorted(starts) and starts[0] >= 0
    assert all(0 <= command["seconds"] <= seconds and command["exit_code"] is not None
               for command in commands)
    assert not COMMAND_WATCHERS, "the window left its watcher behind"


def test_a_window_that_fails_lists_the_compensation_too_and_leaves_no_watcher(fleet):
    fleet.fail_next["primary"] = 1                  # the handover to b1 fails
    code, events, stderr = football(fleet, "migrate", "vm1", "cluster2")
    assert code == 198, stderr
    ended = [event for event in events if event["event"] == "downtime-end"]
    commands = ended[0]["commands"]
    handovers = [(command["host"], command["exit_code"]) for command in commands
                 if command["argv"][0] == "marsadm" and "primary" in command["argv"]]
    assert handovers[0][0] == "b1" and handovers[0][1] != 0
    starts = [(command["host"], command["exit_code"]) for command in commands
              if command["argv"][0] == "football-host" and "start" in command["argv"]]
    assert starts[-1] == ("a1", 0)                  # compensated: back on a1
    assert not COMMAND_WATCHERS


def test_a_start_failing_after_the_mount_is_compensated_on_the_source_after_a_stop_there(fleet):
    """The target mounted the volume, then its container did not start: it
    holds the device, and MARS refuses the handover back until it lets go.
    The compensation stops it there first, then restarts on the source."""
    fleet.broken.add(("b1", "vm1"))
    code, events, stderr = football(fleet, "migrate", "vm1", "cluster2")
    assert code == 198, stderr                      # serious: runs again on the source
    assert "runs again on a1" in stderr
    assert fleet.running("vm1") == ["a1"] and fleet.resources["vm1"].primary == "a1"
    assert not fleet.mounts["b1"] and not fleet.violations
    commands = [event for event in events if event["event"] == "downtime-end"][0]["commands"]
    released = [index for index, command in enumerate(commands)
                if command["host"] == "b1" and command["argv"][0] == "umount"]
    back = [index for index, command in enumerate(commands)
            if command["host"] == "a1" and "primary" in command["argv"]]
    assert released and back and released[0] < back[-1]

"""The waiting plugin's gates (plugins/waiting.py) together: what one gate
does must not use up what another holds."""

import pytest

from tests.helpers.fakefleet import HOMES, assert_placed, football
from tests.helpers.fakefleet import fake_fleet  # noqa: F401 (a fixture)
from tests.unit.test_gates import FAST, poll_plugin, stops

GATE = ("--var", "gate_before_downtime=yes")


@pytest.fixture
def fleet(fake_fleet):  # noqa: F811 (the fixture imported above)
    return fake_fleet


def test_a_continue_given_while_the_resource_is_paused_is_kept_until_the_pause_ends(
        fleet, tmp_path):
    """The operator released vm1's gate (`football continue`) while it was
    paused: the run used the release up at its first poll although the
    pause held the downtime, then waited for the operator again once the
    pause ended, and was refused."""
    assert football(fleet, "pause", "vm1")[0] == 0
    assert football(fleet, "continue", "vm1")[0] == 0
    pause = fleet.state_dir + "/pause.vm1"
    unpause = poll_plugin(tmp_path, 5, f"Path({pause!r}).unlink()")
    code, events, stderr = football(fleet, *FAST, *GATE, *unpause, "migrate", "vm1", "cluster2")
    assert code == 0, stderr
    said = [event["text"] for event in events if event["event"] == "message"]
    assert not any("waiting for the operator" in text for text in said), said
    assert_placed(fleet, *HOMES["cluster2"][:1], HOMES["cluster2"][1:])


def test_a_continue_is_used_up_when_the_run_goes_back_to_the_gates(fleet, tmp_path,
                                                                    monkeypatch):
    """Kept while other gates hold, the release is still used once the run
    passed the gates: a pause that came while it waited for its handover
    slot sends it back, where it waits for a new `continue` (its downtime
    would begin later than the operator allowed it)."""
    from pathlib import Path

    from tests.unit.test_gates import while_waiting_for_the_handover_slot
    pause = Path(fleet.state_dir, "pause.vm1")
    while_waiting_for_the_handover_slot(monkeypatch, pause.touch)
    unpause = poll_plugin(tmp_path, 3, f"Path({str(pause)!r}).unlink()")
    assert football(fleet, "continue", "vm1")[0] == 0
    code, _, stderr = football(fleet, *FAST, *GATE, *unpause, "migrate", "vm1", "cluster2")
    assert code == 191 and "football continue vm1" in stderr, stderr
    assert stops(fleet) == [] and fleet.running("vm1") == ["a1"]


def test_business_hours_that_match_no_hour_of_the_week_say_the_gate_never_opens(fleet):
    """`[1-5]_8-18` for `[1-5]_(0[8-9]|1[0-8])`: the run said only "outside
    business_hours" and waited out downtime_gate_timeout (a weekend's, set
    for the Monday) for a window that never comes."""
    code, _, stderr = football(fleet, *FAST, "--var", "business_hours=[1-5]_8-18", "migrate",
                               "vm1", "cluster2")
    assert code == 191, stderr
    assert "outside business_hours [1-5]_8-18" in stderr
    assert "it matches no <weekday 1-7>_<hour 00-23> (1_00 to 7_23): the downtime never " \
        "begins" in stderr, stderr
    assert stops(fleet) == [] and fleet.running("vm1") == ["a1"]



def test_the_business_hours_reason_is_the_same_all_the_wait_long_and_says_when_it_opens(
        monkeypatch):
    """The reason named the hour (`now 5_19`): a gate says a reason again
    when its words change, so the wait was said again every hour, in the
    run's output and as a job's wait event."""
    import datetime
    import time
    from types import SimpleNamespace

    from plugins import waiting

    hours = "[1-5]_(0[8-9]|1[0-8])"
    plugin = waiting.Waiting()
    plugin.config = SimpleNamespace(reloaded=lambda: SimpleNamespace(business_hours=hours))
    monkeypatch.setattr(waiting, "_unchanged", lambda settings: "")
    reasons = []
    for when in ("2026-12-04 19:30", "2026-12-05 03:10", "2026-12-06 23:59"):  # Fri to Sun
        moment = datetime.datetime.strptime(when, "%Y-%m-%d %H:%M")
        monkeypatch.setattr(waiting, "time", SimpleNamespace(
            strftime=lambda fmt, *_, moment=moment: moment.strftime(fmt),
            localtime=lambda *_, moment=moment: time.struct_time(moment.timetuple())))
        allowed, reason = plugin.want_downtime("vm1", None, None, False)
        assert allowed is False
        reasons.append(reason)
    assert len(set(reasons)) == 1, reasons
    assert reasons[0] == f"outside business_hours {hours} (it opens Mon 08:00)"

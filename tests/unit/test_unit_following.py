"""marsd's systemd integration (`Primary.follow_units`) against a fake
`systemctl` (MARS_SYSTEMCTL) that answers as systemd 252 does: a stop unit
systemd does not know on this host (a member where the units were never
installed) counts as stopped, once; a start of a unit that is not there is
a failure, said in `view` and retried."""

import logging
from types import SimpleNamespace

import pytest
import trio

from mars.primary import UNITS_RETRY_FIRST, Primary

UNITS = ("football-ct-vm1.service", "var-lib-lxc-vm1.mount")

# systemctl's words and exit code (5) for a unit systemd has no file of
FAKE_SYSTEMCTL = """#!/bin/sh
echo "$*" >> "{log}"
case "$1" in
  stop) echo "Failed to stop $2: Unit $2 not loaded." >&2 ;;
  start) echo "Failed to start $2: Unit $2 not found." >&2 ;;
esac
exit 5
"""


@pytest.fixture
def calls(tmp_path, monkeypatch):
    log = tmp_path / "systemctl.log"
    systemctl = tmp_path / "systemctl"
    systemctl.write_text(FAKE_SYSTEMCTL.format(log=log))
    systemctl.chmod(0o755)
    monkeypatch.setenv("MARS_SYSTEMCTL", str(systemctl))
    return lambda: log.read_text().splitlines() if log.exists() else []


def primary_on(tmp_path):
    waits = []
    worker = SimpleNamespace(res="vm1", host="b", waiting_for=waits.append,
                             env=SimpleNamespace(state_dir=tmp_path, dev_dir=tmp_path / "dev"))
    return Primary(worker), waits


STATE = SimpleNamespace(systemd_units=lambda res: UNITS,
                        resource_value=lambda res, key, default=None: None)


def test_a_stop_unit_systemd_does_not_know_here_is_stopped_once_and_said_nowhere(
        tmp_path, calls, caplog):
    primary, waits = primary_on(tmp_path)
    with caplog.at_level(logging.INFO, logger="mars"):
        for _ in range(3):                          # three steps of a secondary
            trio.run(primary.follow_units, STATE, False)
    assert calls() == [f"stop {UNITS[1]}"]
    assert primary.units_done == ("stop", UNITS[1])
    assert waits == []
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


def test_a_start_unit_that_is_not_installed_is_a_failure_said_once_and_retried(
        tmp_path, calls, caplog, monkeypatch):
    """Retried with a backoff, not at every step: a primary that waits
    steps every data tick, and systemctl ran 20 times a second. Another
    action (the stop of a handover) is tried at once."""
    now = [1000.0]
    monkeypatch.setattr("mars.primary.time.monotonic", lambda: now[0])
    primary, waits = primary_on(tmp_path)
    with caplog.at_level(logging.INFO, logger="mars"):
        for _ in range(3):
            trio.run(primary.follow_units, STATE, True)
        assert calls() == [f"start {UNITS[0]}"]
        now[0] += UNITS_RETRY_FIRST
        trio.run(primary.follow_units, STATE, True)     # its backoff passed: once more
        trio.run(primary.follow_units, STATE, True)
        assert calls() == [f"start {UNITS[0]}"] * 2
        now[0] += UNITS_RETRY_FIRST                     # doubled: not yet
        trio.run(primary.follow_units, STATE, True)
        assert calls() == [f"start {UNITS[0]}"] * 2
        trio.run(primary.follow_units, STATE, False)    # the device should go: at once
    assert calls() == [f"start {UNITS[0]}"] * 2 + [f"stop {UNITS[1]}"]
    assert primary.units_done == ("stop", UNITS[1])
    assert len(waits) == 6 and all(f"Unit {UNITS[0]} not found" in wait for wait in waits)
    assert "tried again 1 s after it failed" in waits[1]
    assert waits[1] == waits[2]             # no countdown: marsadm says each new reason
    errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1 and "exited 5" in errors[0]

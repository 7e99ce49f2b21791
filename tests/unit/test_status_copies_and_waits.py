"""`football status`: a container that runs where its resource has no
replica (a second copy) is flagged; a run of this controller that lives
and waits says what it waits for (from its run log)."""

import io
import json
import os
import time
from pathlib import Path

from rich.console import Console

from football import journal
from football.ops.status import render
from tests.helpers.fakefleet import Volume, fake_fleet, football, report_of

fleet = fake_fleet


def stray_copy(fleet, name, res="vm1"):
    """`res`'s container runs on `name` from a plain LV of its name there."""
    host = fleet.hosts[name]
    fleet.run(name, ["football-host", "vg", host.path(f"/dev/{host.vg}"), "create", res,
                     str(320 << 20)])
    fleet.volumes[(name, res)] = Volume()
    fleet.run(name, ["mount", host.path(f"/dev/{host.vg}/{res}"), host.mountpoint(res)])
    fleet.containers[name][res] = "RUNNING"


def rendered(report):
    out = io.StringIO()
    render(report, Console(file=out, width=400))
    return " ".join(out.getvalue().split())


def test_a_container_running_where_its_resource_has_no_replica_is_flagged(fleet):
    stray_copy(fleet, "b1")
    report = report_of(fleet, "status")
    notes = {(row["resource"], row["host"]): row["notes"] for row in report["resources"]}
    assert notes[("vm1", "a1")] == [] and notes[("vm1", "a2")] == []
    (note,) = notes[("vm1", "b1")]
    assert "b1 holds no replica of vm1" in note and "runs on a1 too" in note, note
    assert "vm1 on b1: its container runs here, but b1 holds no replica of vm1" in \
        rendered(report)
    # the primary's container stopped: the copy is the only one, from no replica
    fleet.containers["a1"]["vm1"] = "STOPPED"
    (note,) = next(row["notes"] for row in report_of(fleet, "status", "vm1")["resources"]
                   if row["host"] == "b1")
    assert "runs on no member of vm1" in note, note


def test_two_running_copies_on_members_are_flagged(fleet):
    fleet.containers["a2"]["vm1"] = "RUNNING"
    fleet.mounts["a2"][fleet.hosts["a2"].mountpoint("vm1")] = "elsewhere"
    report = report_of(fleet, "status", "vm1")
    notes = {row["host"]: row["notes"] for row in report["resources"]}
    assert notes["a1"] == [] and \
        any("runs here and on a1 too: two copies" in note for note in notes["a2"]), notes


def test_a_live_run_that_waits_says_what_it_waits_for(fleet, monkeypatch):
    code, _, stderr = football(fleet, "--debug-injection-point", "wait:synced", "migrate",
                               "vm1", "b1", "b2")
    assert code == 1, stderr
    # its re-run lives (as a foreground run in another terminal) and waits for a lock
    monkeypatch.setattr(journal, "run_alive", lambda run: True)
    log = Path(fleet.state_dir) / "log" / time.strftime("%Y%m%d-%H%M%S-migrate-vm1.log",
                                                       time.localtime(time.time() + 1))
    since = time.time()
    with open(log, "w") as handle:
        for event in ({"event": "wait", "time": since - 5, "state": "condition",
                       "what": "turn", "resource": "vm1", "reasons": ["earlier"]},
                      {"event": "wait-end", "time": since - 4, "what": "turn",
                       "resource": "vm1"},
                      {"event": "wait", "time": since, "state": "condition", "what": "lock",
                       "resource": "vm1", "reasons": ["[b1] lock football held by "
                                                      "operator@ctl (pause)"]}):
            handle.write(json.dumps(event) + "\n")
    report = report_of(fleet, "status", "vm1")
    (operation,) = report["operations"]
    assert operation["state"] == "running"
    assert operation["waiting"]["what"] == "lock"
    assert operation["waiting"]["reasons"] == ["[b1] lock football held by operator@ctl (pause)"]
    text = rendered(report)
    assert "waits for lock" in text and "[b1] lock football held by operator@ctl" in text, text
    with open(log, "a") as handle:      # the wait is over
        handle.write(json.dumps({"event": "wait-end", "time": since + 1, "what": "lock",
                                 "resource": "vm1"}) + "\n")
    (operation,) = report_of(fleet, "status", "vm1")["operations"]
    assert operation["state"] == "running" and not operation.get("waiting")
    os.remove(log)

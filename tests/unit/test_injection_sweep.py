"""Every injection point of every operation, swept on a fake fleet
(tests/helpers/fakefleet.py): the real `football` command line, plugins,
journal, locks and host-side helpers; hosts that answer as lab hosts do.
For each point N: a run that crashes at N, then a re-run of the same
command, must end with the resource where it was asked to go, running
once, its workload's records unbroken, no lock left, no LV left on old
hosts, the MARS clusters as the inventory wants them — and nothing that
must never happen (two running copies, a removed disk in use) on the way.

The real lab keeps samples of these (tests/root/test_migrate.py)."""

import json
import os
import signal

import pytest

from football.cli import hang_up_as_ctrl_c, terminate_as_ctrl_c
from tests.helpers.fakefleet import (HOMES, SharedQueue, assert_clusters_as_inventory,
                                     assert_placed, fake_fleet, football, points_of)
from tests.helpers.lab import MIGRATE_POINTS

fleet = fake_fleet


def sweep(fleet, command, destinations, placed):
    """Run `command(destination)` once to count its injection points, then
    for every point N: crash at N, re-run, check `placed(destination)`.
    The destinations alternate, so each crashed run has real work to do.
    Returns the names of the points."""
    code, events, stderr = football(fleet, *command(destinations[0]))
    assert code == 0, stderr
    placed(destinations[0])
    points = points_of(events)
    for number, name in enumerate(points, start=1):
        where = destinations[number % len(destinations)]
        code, events, stderr = football(fleet, "--debug-injection-point", str(number),
                                        *command(where))
        assert code == 1, f"point {number} ({name}): exit {code}: {stderr}"
        assert f"injection point {number} ({name})" in stderr
        assert points_of(events)[-1] == name, f"point {number}: reached {points_of(events)}"
        assert not fleet.violations, f"point {number} ({name}): {fleet.violations}"
        assert len(fleet.running("vm1")) <= 1
        code, events, stderr = football(fleet, *command(where))
        assert code == 0, f"re-run after point {number} ({name}): exit {code}: {stderr}"
        placed(where)
    return points


def test_migrate_resumes_after_a_crash_at_every_injection_point(fleet):
    def placed(cluster):
        primary, secondary = HOMES[cluster]
        assert_placed(fleet, primary, [secondary])
        assert_clusters_as_inventory(fleet)

    points = sweep(fleet, lambda cluster: ["migrate", "vm1", cluster],
                   ["cluster2", "cluster1"], placed)
    assert tuple(points) == MIGRATE_POINTS


def test_two_phase_migrate_resumes_after_a_crash_at_every_injection_point(fleet):
    def placed(cluster):
        primary, secondary = HOMES[cluster]
        assert_placed(fleet, primary, [secondary])
        assert_clusters_as_inventory(fleet)

    points = sweep(fleet, lambda cluster: ["migrate", "--two-phase", "vm1", *HOMES[cluster]],
                   ["cluster2", "cluster1"], placed)
    # the new primary synced and handed over to first, then the new secondary
    assert points[:4] == ["prepare:merged", "prepare:lv-created", "prepare:joined",
                          "wait:synced"]
    assert points.count("finish:stopped") == 1 and points.count("wait:synced") == 2
    assert points.index("finish:started") < points.index("wait:synced", 4)


def test_migrate_with_handovers_before_and_after_resumes_at_every_injection_point(fleet):
    def placed(cluster):
        primary, secondary = HOMES[cluster]
        assert_placed(fleet, secondary, [primary])
        assert_clusters_as_inventory(fleet)

    def command(cluster):
        # hand over to the current secondary first, to the new secondary at the end
        before = HOMES["cluster1" if cluster == "cluster2" else "cluster2"][0]
        return ["migrate", "vm1", *HOMES[cluster], "--pre-hand", before,
                "--post-hand", HOMES[cluster][1]]

    code, _, stderr = football(fleet, "handover", "vm1", "a2")
    assert code == 0, stderr
    points = sweep(fleet, command, ["cluster2", "cluster1"], placed)
    assert points.count("finish:stopped") == 3       # pre-hand, the migrate, post-hand


def test_handover_resumes_after_a_crash_at_every_injection_point(fleet):
    points = sweep(fleet, lambda host: ["handover", "vm1", host], ["a2", "a1"],
                   lambda host: assert_placed(fleet, host, [{"a1": "a2", "a2": "a1"}[host]]))
    assert points == ["finish:locked", "finish:stopped", "finish:started"]


def test_split_cluster_resumes_after_a_crash_between_split_and_merges(fleet):
    fleet.create_resource("vm2", "b1")         # b2 holds nothing: alone after a split
    code, _, stderr = football(fleet, "merge-cluster", "a1", "b1")
    assert code == 0, stderr
    assert fleet.cluster_of("a1") == ["a1", "a2", "b1", "b2"]
    code, events, stderr = football(fleet, "--debug-injection-point", "1",
                                    "split-cluster", "a1", "b1")
    assert code == 1 and points_of(events) == ["split-cluster:split"], stderr
    # crashed after the split, before the merges: cluster2 is in pieces
    assert fleet.cluster_of("b2") == ["b2"] and fleet.cluster_of("a1") == ["a1", "a2"]
    code, _, stderr = football(fleet, "split-cluster", "a1", "b1")
    assert code == 0, stderr
    assert_clusters_as_inventory(fleet)
    assert not fleet.violations


def test_ctrl_c_inside_the_downtime_window_restarts_the_container_and_a_rerun_completes(
        fleet, monkeypatch):
    """Ctrl-C at the handover (`marsadm primary` on the new host): the
    window compensates as for any failure, exit 190 says where it runs."""
    answer = fleet.run
    pressed = []

    def ctrl_c_at_the_handover(host, argv, input=None):
        if "primary" in argv and argv[0] == "marsadm" and not pressed:
            pressed.append(host)
            raise KeyboardInterrupt
        return answer(host, argv, input=input)

    monkeypatch.setattr(fleet, "run", ctrl_c_at_the_handover)
    code, events, stderr = football(fleet, "migrate", "vm1", "cluster2")
    assert pressed == ["b1"]
    assert code == 190, stderr
    assert "interrupted inside the downtime window; vm1 runs again on a1" in stderr
    assert "migrate of vm1 interrupted (Ctrl-C); restarting vm1" in json.dumps(events) + stderr
    assert fleet.running("vm1") == ["a1"] and not fleet.violations
    for name in fleet.hosts:     # only vm1's run lock, kept while the migrate is unfinished
        locks = fleet.locks(name)
        assert set(locks) == {"run-vm1"} and locks["run-vm1"]["permanent"], f"{name}: {locks}"
        assert locks["run-vm1"]["what"].startswith("unfinished migrate of vm1, steps done: ")

    code, events, stderr = football(fleet, "migrate", "vm1", "cluster2")
    assert code == 0, stderr
    assert_placed(fleet, *HOMES["cluster2"][:1], HOMES["cluster2"][1:])


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_inside_the_downtime_window_is_a_ctrl_c_and_cannot_cut_the_restart_short(
        fleet, monkeypatch, signum):
    """`kill PID` of a run at its handover ended the process there: the
    container stayed stopped, the locks held. SIGTERM is a Ctrl-C now; a
    second one while the container restarts is told and waits. SIGHUP (the
    operator's SSH session gone) too."""
    answer = fleet.run
    sent = []

    def sigterm(host, argv, input=None):
        if argv[0] == "marsadm" and "primary" in argv and not sent:
            sent.append(host)
            os.kill(os.getpid(), signum)
        if list(argv[:2]) == ["football-host", "ct"] and argv[3] == "start" and len(sent) == 1:
            sent.append(host)                           # the compensation's start
            os.kill(os.getpid(), signum)
        return answer(host, argv, input=input)

    monkeypatch.setattr(fleet, "run", sigterm)
    previous = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGHUP)}
    try:
        terminate_as_ctrl_c()
        hang_up_as_ctrl_c()
        code, _, stderr = football(fleet, "migrate", "vm1", "cluster2")
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    assert sent == ["b1", "a1"], sent
    assert code == 190, stderr
    assert "SIGTERM: restarting the container first, then stopping" in stderr
    assert "interrupted inside the downtime window; vm1 runs again on a1" in stderr
    assert fleet.running("vm1") == ["a1"] and not fleet.violations
    for name in fleet.hosts:     # only vm1's run lock, kept while the migrate is unfinished
        locks = fleet.locks(name)
        assert set(locks) == {"run-vm1"} and locks["run-vm1"]["permanent"], f"{name}: {locks}"
        assert locks["run-vm1"]["what"].startswith("unfinished migrate of vm1, steps done: ")


def test_named_injection_points_crash_a_run_and_each_re_run_in_turn(fleet):
    """`--debug-injection-point NAME` stops at the first point of that name,
    whatever number it has in a resumed run: the lab's chained samples
    (tests/root/test_migrate_variants.py) rely on it."""
    for name in ("prepare:lv-created", "finish:stopped", "cleanup:left"):
        code, events, stderr = football(fleet, "--debug-injection-point", name,
                                        "migrate", "vm1", "cluster2")
        assert code == 1 and points_of(events)[-1] == name, stderr
        assert not fleet.violations
    assert fleet.running("vm1") == ["b1"]        # the third run crashed in its cleanup
    code, _, stderr = football(fleet, "migrate", "vm1", "cluster2")
    assert code == 0, stderr
    assert_placed(fleet, "b1", ["b2"])
    assert_clusters_as_inventory(fleet)


def test_an_injection_point_that_is_neither_a_number_nor_a_name_is_a_usage_error(fleet):
    code, _, stderr = football(fleet, "--debug-injection-point", "stopped", "migrate", "vm1",
                               "cluster2")
    assert code == 191 and "neither a number nor a point's name" in stderr, stderr
    assert fleet.changes() == []


def test_a_migrate_job_stopped_at_every_injection_point_is_finished_by_another_controller(
        fleet, tmp_path, monkeypatch):
    """The sweep of screener jobs whose run stops at point N (its worker
    died) and whose job a worker of another controller takes over (its own
    state dir, one shared queue; the stopped run's lock taken over once a
    lease old): it goes on from the journal kept with the job and ends as a
    re-run here would. The first controller then finishes its own journal
    of the job (done elsewhere)."""
    queue = SharedQueue(tmp_path, monkeypatch)
    code, events, stderr = football(fleet, "migrate", "vm1", "cluster2")
    assert code == 0, stderr
    for number, name in enumerate(points_of(events), start=1):
        where = ["cluster2", "cluster1"][number % 2]
        code, _, stderr = queue.taken_over(fleet, ["migrate", "vm1", where], number)
        assert code == 0, f"taken over after point {number} ({name}): exit {code}: {stderr}"
        assert_placed(fleet, *HOMES[where][:1], HOMES[where][1:])
        assert_clusters_as_inventory(fleet)
        assert queue.unfinished_here(fleet) == [], number
    queue.close()

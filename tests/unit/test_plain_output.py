"""Every operator command as a human runs it: without `--json`, on the fake
fleet (tests/helpers/fakefleet.py), with the options `football()` passes
(`--yes`, `--inventory`, `--var state_dir=...`, `--var poll_interval=0`).
Each test checks the exit code the command documents (0 done, 191 illegal,
198 serious, 199 critical, 1 an injection point), that no exception other
than the exit escaped (no traceback), and the lines an operator reads: the
phase trail and the final `summary:` line of an operation on a resource
(football/report.py `summary_line`), the tables of status, score and the
plans, the `would run` lines of a dry run, the one `football: ...` line of
a refusal. A crash in the plain output (a KeyError in the summary line of
`evacuate --execute`) once went unnoticed for weeks because every test ran
with `--json`.

Already covered without `--json` elsewhere, and not repeated here:
`balance --plan` on a crowded fleet (test_planner_commands.py), the summary
lines of `evacuate --execute` and `restore` (test_fleetmoves.py; here they
run as part of a longer human session), bad arguments of lock, unlock,
lv-cleanup, merge/split-cluster and status (test_admin_ops.py).

Found by writing them, and fixed: the migrate phase commands left the
journal open (status showed the migrate unfinished for ever, and the next
migrate went to its old targets whatever it asked for); a phase command's
dry run listed the whole operation; a given-up shrink claimed a sync;
an evacuation short of capacity said "vm1 needs 0 GiB"."""

import json
import re
import traceback
from pathlib import Path

import pytest
from click.testing import CliRunner

from football.cli import cli
from football.config import Config
from football.screener import Worker
from tests.helpers.fakefleet import (
    assert_clusters_as_inventory,
    assert_placed,
    fake_fleet,  # noqa: F401 (a fixture)
)
from tests.helpers.jobs import InProcessFootball
from tests.helpers.turns import turn_held

MIB, GIB = 1 << 20, 1 << 30
JOBS_POLL = ("--var", "jobs_poll_interval=0.05")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


# ------------------------------------------------------------------ helpers

def football_plain(fleet, *args, code=0):
    """`football <args>` without --json, in-process against the fleet:
    (stdout, stderr) once it exited with `code` and raised nothing but its
    exit."""
    result = CliRunner().invoke(cli, ["--inventory", fleet.inventory_path, "--yes",
                                      "--var", f"state_dir={fleet.state_dir}",
                                      "--var", "poll_interval=0", *args])
    stdout, stderr = ANSI.sub("", result.stdout), ANSI.sub("", result.stderr)
    shown = f"football {' '.join(args)}\n--- stdout\n{stdout}--- stderr\n{stderr}"
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError("".join(traceback.format_exception(*result.exc_info)) + shown)
    assert "Traceback" not in stdout + stderr, shown
    assert result.exit_code == code, f"exit {result.exit_code}, expected {code}\n{shown}"
    return stdout, stderr


def lines_of(text):
    return [line.rstrip() for line in text.splitlines() if line.strip()]


def summary_of(stderr):
    """The run's last line, which must be its summary line."""
    last = lines_of(stderr)[-1]
    assert last.startswith("summary: "), stderr
    return last


def assert_in_order(text, *fragments):
    """Each fragment occurs in `text`, after the one before it."""
    at = 0
    for fragment in fragments:
        found = text.find(fragment, at)
        assert found >= 0, f"{fragment!r} not found (in order) in:\n{text}"
        at = found + len(fragment)


def with_roots(fleet, text):
    """`text` with <a1> etc. replaced by those hosts' root directories."""
    for name, host in fleet.hosts.items():
        text = text.replace(f"<{name}>", str(host.root))
    return text


def tables(stdout):
    """The rich tables of `stdout`: [(title, [row as {column: cell}])]."""
    found, header = [], []
    for line in stdout.splitlines():
        stripped = line.strip()
        if stripped.startswith("┃"):
            header = [cell.strip() for cell in stripped.strip("┃").split("┃")]
        elif stripped.startswith("│"):
            cells = [cell.strip() for cell in stripped.strip("│").split("│")]
            if not found:
                found.append(("", []))          # a table without a title
            found[-1][1].append(dict(zip(header, cells)))
        elif stripped and stripped[0] not in "┏┡└":
            found.append((stripped, []))
    return found


def table(stdout, title):
    """The rows of the first table whose title starts with `title`."""
    for name, rows in tables(stdout):
        if name.startswith(title):
            return rows
    raise AssertionError(f"no table {title!r} in:\n{stdout}")


def changes_but_locks(fleet, since=0):
    return [(host, argv) for host, argv in fleet.changes()[since:]
            if argv[:2] != ("football-host", "lock")]


def json_report(fleet, *args):
    result = CliRunner().invoke(cli, ["--inventory", fleet.inventory_path, "--json",
                                      "--var", f"state_dir={fleet.state_dir}", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# ------------------------------------------------------------------ fleets

@pytest.fixture
def fleet(fake_fleet):  # noqa: F811 (the fixture imported above)
    """vm1 (320 MiB) primary on a1, replica a2; vm2 (1 GiB, 100 MiB used)
    primary on a1, replica a2; cluster2 (b1 b2) empty."""
    fake_fleet.create_resource("vm2", "a1", ["a2"], size=GIB)
    return fake_fleet


@pytest.fixture
def two_clusters(fake_fleet):  # noqa: F811
    """vm1 on a1 (replica a2), vm2 (320 MiB) on b1 (replica b2)."""
    fake_fleet.create_resource("vm2", "b1", ["b2"])
    return fake_fleet


@pytest.fixture
def crowded(fake_fleet):  # noqa: F811
    """vm1 and vm2 (320 MiB each) primary on a1, replicas on a2; cluster2 empty."""
    fake_fleet.create_resource("vm2", "a1", ["a2"])
    return fake_fleet


@pytest.fixture
def worker(crowded):
    """A screener worker in this process whose jobs are the real command
    line against the fleet (as tests/unit/test_fleetmoves.py runs them)."""
    settings = [f"state_dir={crowded.state_dir}", "jobs_poll_interval=0.05", "poll_interval=0"]
    the_worker = Worker(Config(variables=settings, environ={}), "test", InProcessFootball())
    the_worker.start()
    yield the_worker
    the_worker.stop(timeout=10)


# ------------------------------------------------------------------ migrate

SYNCED = r"replicas of {} MiB synced in \d+\.\d s \(\d+ MiB/s\), {} MiB of it travelled"
DOWNTIME = r"downtime \d+\.\d\d s"


@pytest.mark.parametrize("args, trail, placed, synced", [
    (["migrate", "vm1", "cluster2"],
     ["* migrating vm1 (320 MiB) from a1 to b1, b2", "* prepare: replicas on b1, b2",
      "b1: creating LV vg0/vm1", "b2: creating LV vg0/vm1",
      "* wait: until b1, b2 are UpToDate", "* finish: handover of vm1 to b1",
      "a1: stopping vm1", "b1: starting vm1", "vm1 runs on b1; downtime",
      "* cleanup: removing the replicas on a1, a2", "MARS clusters now: a1 a2; b1 b2"],
     ("b1", ["b2"]), 640),
    (["migrate", "vm1", "b1"],
     ["* migrating vm1 (320 MiB) from a1 to b1", "* prepare: replicas on b1",
      "* wait: until b1 is UpToDate", "vm1 runs on b1; downtime",
      "* cleanup: removing the replicas on a1, a2"],
     ("b1", []), 320),
    (["migrate", "vm1", "b2", "b1", "--two-phase"],
     ["* migrating vm1 (320 MiB) from a1 to b2, b1", "* prepare: replicas on b2",
      "* wait: until b2 is UpToDate", "* finish: handover of vm1 to b2",
      "vm1 runs on b2; downtime", "* prepare: replicas on b2, b1 (b2 holds one already)",
      "b1: creating LV vg0/vm1", "* wait: until b1 is UpToDate",
      "* cleanup: removing the replicas on a1, a2"],
     ("b2", ["b1"]), 640),
    (["migrate", "vm1", "cluster2", "--pre-hand", "a2", "--post-hand", "b2"],
     ["* pre-hand: vm1 to a2", "* handover of vm1 from a1 to a2; its replicas stay (a1, a2)",
      "vm1 runs on a2; downtime",
      "* migrating vm1 (320 MiB) from a2 to b1, b2", "* finish: handover of vm1 to b1",
      "* cleanup: removing the replicas on a1, a2", "* post-hand: vm1 to b2",
      "* handover of vm1 from b1 to b2; its replicas stay (b1, b2)", "vm1 runs on b2; downtime"],
     ("b2", ["b1"]), 640),
], ids=["to-a-cluster", "to-a-host-alone", "two-phase", "pre-and-post-hand"])
def test_a_plain_migrate_says_its_phases_and_ends_with_its_summary_line(
        fleet, args, trail, placed, synced):
    _, stderr = football_plain(fleet, *args)
    assert_in_order(stderr, *trail)
    summary = summary_of(stderr)
    # the handovers before and after are downtimes of their own
    hands = r" \(and its handovers' pre-hand \d+\.\d\d s, post-hand \d+\.\d\d s\)" \
        if "--pre-hand" in args else ""
    assert re.fullmatch(rf"summary: vm1: {SYNCED.format(synced, synced)} \(zeros and equal "
                        rf"chunks do not\); {DOWNTIME}{hands}; phases: prepare \d+\.\d s, "
                        r"wait \d+\.\d s, finish \d+\.\d s, cleanup \d+\.\d s", summary), summary
    # a host alone leaves one replica: said, since the old pair goes
    alone = "warning: no secondary named: vm1 ends with one replica, on b1 (the replicas on " \
        "a1, a2 go with cleanup); for two: football migrate vm1 b1 <secondary>"
    assert (alone in stderr) == (args == ["migrate", "vm1", "b1"]), stderr
    assert_placed(fleet, *placed)


def test_a_plain_handover_says_who_takes_over_and_its_summary_has_no_sync(fleet):
    _, stderr = football_plain(fleet, "handover", "vm1", "a2")
    # a handover moves no data: its first line does not announce a migration
    assert lines_of(stderr)[0] == "* handover of vm1 from a1 to a2; its replicas stay (a1, a2)"
    assert_in_order(stderr, "* finish: handover of vm1 to a2", "a1: stopping vm1",
                    "a2: starting vm1", "vm1 runs on a2; downtime")
    assert re.fullmatch(rf"summary: vm1: {DOWNTIME}; phases: finish \d+\.\d s",
                        summary_of(stderr)), stderr
    assert_placed(fleet, "a2", ["a1"])


def test_the_migrate_phase_commands_each_say_their_phase_and_its_summary(fleet):
    expected = {
        "prepare": (["* prepare: replicas on b1, b2", "b1: merge-cluster with a1",
                     "b1: creating LV vg0/vm1", "b2: creating LV vg0/vm1"],
                    r"summary: vm1: phases: prepare \d+\.\d s"),
        # the syncs had ended before migrate-wait looked: their time is a bound
        "wait": (["* wait: until b1, b2 are UpToDate"],
                 r"summary: vm1: replicas of 640 MiB synced in at most \d+\.\d s \(at least "
                 r"\d+ MiB/s; they had ended before this run looked\), 640 MiB of it "
                 r"travelled .*; phases: wait \d+\.\d s"),
        "finish": (["* finish: handover of vm1 to b1", "a1: stopping vm1",
                    "vm1 runs on b1; downtime"],
                   rf"summary: vm1: {DOWNTIME}; phases: finish \d+\.\d s"),
        "cleanup": (["* cleanup: removing the replicas on a1, a2",
                     "MARS clusters now: a1 a2; b1 b2"],
                    r"summary: vm1: phases: cleanup \d+\.\d s"),
    }
    for phase, (trail, summary) in expected.items():
        _, stderr = football_plain(fleet, f"migrate-{phase}", "vm1", "cluster2")
        assert_in_order(stderr, *trail)
        assert re.fullmatch(summary, summary_of(stderr)), (phase, stderr)
    assert_placed(fleet, "b1", ["b2"])


def run_the_four_migrate_phases(fleet):
    for phase in ("prepare", "wait", "finish", "cleanup"):
        football_plain(fleet, f"migrate-{phase}", "vm1", "cluster2")


def test_after_the_four_migrate_phase_commands_status_shows_no_unfinished_migrate(fleet):
    run_the_four_migrate_phases(fleet)
    stdout, _ = football_plain(fleet, "status", "vm1")
    assert "unfinished operations" not in stdout, stdout


def test_a_migrate_after_the_phase_commands_goes_to_its_new_target(fleet):
    run_the_four_migrate_phases(fleet)
    _, stderr = football_plain(fleet, "migrate", "vm1", "cluster1")
    assert "resuming" not in stderr, stderr
    assert fleet.resources["vm1"].primary in ("a1", "a2"), stderr


def test_a_migrate_asked_elsewhere_than_an_unfinished_one_is_refused_naming_both(fleet):
    """An unfinished migrate to b1, b2 (it crashed before the handover);
    the operator now asks for another host. It was resumed to b1, b2,
    silently, whatever was asked."""
    _, stderr = football_plain(fleet, "--debug-injection-point", "wait:synced",
                               "migrate", "vm1", "cluster2", code=1)
    before = len(fleet.changes())
    _, stderr = football_plain(fleet, "migrate", "vm1", "a2", code=191)
    assert "vm1 has an unfinished migrate to b1, b2 (steps done: prepare), not to a2; nothing " \
        "changed. `football migrate vm1 b1 b2` finishes it. To go to a2 instead, set it aside " \
        "(mv " in stderr, stderr
    assert len(fleet.changes()) == before
    journal = next(Path(fleet.state_dir, "journal").glob("migrate-vm1.json"))
    journal.rename(journal.with_name(journal.name + ".abandoned"))
    football_plain(fleet, "migrate", "vm1", "a2", "a1")
    # the abandoned run's replicas on b1, b2 went with the new run's cleanup
    assert_placed(fleet, "a2", ["a1"])
    _, stderr = football_plain(fleet, "migrate", "vm1", "cluster1")     # a cluster: its hosts
    assert "already on" in stderr, stderr


def test_a_migrate_stopped_in_its_window_shows_in_status_and_a_re_run_ends_it(fleet):
    _, stderr = football_plain(fleet, "--debug-injection-point", "finish:stopped",
                               "migrate", "vm1", "cluster2", code=1)
    assert re.search(r"^football: stopped at injection point \d+ \(finish:stopped\)", stderr,
                     re.MULTILINE), stderr
    stdout, _ = football_plain(fleet, "status", "vm1")
    [operation] = table(stdout, "unfinished operations")
    assert (operation["operation"], operation["resource"], operation["targets"]) == \
        ("migrate", "vm1", "b1, b2")
    assert operation["state"] == "unfinished, inside the downtime window", stdout
    assert {row["container"] for row in table(stdout, "resources")} == {"-"}, stdout
    _, stderr = football_plain(fleet, "migrate", "vm1", "cluster2")
    assert lines_of(stderr)[0] == "* resuming migrate of vm1 to b1, b2", stderr
    assert "vm1 runs on b1; downtime" in stderr
    assert summary_of(stderr).startswith("summary: vm1: "), stderr
    stdout, _ = football_plain(fleet, "status", "vm1")
    assert "unfinished operations" not in stdout, stdout
    assert_placed(fleet, "b1", ["b2"])


# ------------------------------------------------------------------ shrink, expand, combined

def test_a_plain_shrink_says_its_copies_and_window_and_ends_with_its_summary_line(fleet):
    _, stderr = football_plain(fleet, "shrink", "vm2")
    assert_in_order(stderr, "* shrinking vm2 from 1,024 MiB to 320 MiB on a1, a2",
                    "* prepare: vm2-tmp on a1, a2, first copy", "a1: first copy",
                    "* finish: last copies, then the downtime of vm2", "a1: stopping vm2",
                    "a1: final copy", "a1: vm2 -> vm2-preshrink, vm2-tmp -> vm2",
                    "vm2 runs on its shrunk volume; downtime",
                    "* wait: until a2 holds the shrunk vm2",
                    "* cleanup: vm2-preshrink and vm2-tmp on a1, a2",
                    "a1: removing LV vg0/vm2-preshrink", "a2: removing LV vg0/vm2-preshrink")
    assert re.fullmatch(rf"summary: vm2: {SYNCED.format(320, 320)} .*; {DOWNTIME}; phases: "
                        r"prepare \d+\.\d s, finish \d+\.\d s, wait \d+\.\d s, cleanup \d+\.\d s",
                        summary_of(stderr)), stderr
    assert fleet.resources["vm2"].size == 320 * MIB
    assert_placed(fleet, "a1", ["a2"], "vm2")


def test_the_shrink_phase_commands_each_say_their_phase_and_its_summary(fleet):
    expected = {
        "shrink-prepare": (["* prepare: vm2-tmp on a1, a2, first copy",
                            "a1: creating LV vg0/vm2-tmp", "a2: creating LV vg0/vm2-tmp"],
                           r"summary: vm2: phases: prepare \d+\.\d s"),
        "shrink-finish": (["* finish: last copies, then the downtime of vm2",
                           "vm2 runs on its shrunk volume; downtime"],
                          rf"summary: vm2: {DOWNTIME}; phases: finish \d+\.\d s"),
        "shrink-cleanup": (["* wait: until a2 holds the shrunk vm2",
                            "a1: removing LV vg0/vm2-preshrink",
                            "a2: removing LV vg0/vm2-preshrink"],
                           (rf"summary: vm2: {SYNCED.format(320, 320)} .*; phases: "
                            r"wait \d+\.\d s, cleanup \d+\.\d s")),
    }
    for command, (trail, summary) in expected.items():
        _, stderr = football_plain(fleet, command, "vm2")
        assert_in_order(stderr, *trail)
        assert re.fullmatch(summary, summary_of(stderr)), (command, stderr)
    stdout, _ = football_plain(fleet, "status", "vm2")
    assert "unfinished operations" not in stdout, stdout
    assert {row["LV"] for row in table(stdout, "resources")} == {"320 MiB"}, stdout
    assert_placed(fleet, "a1", ["a2"], "vm2")


def test_shrink_cleanup_after_shrink_prepare_gives_the_shrink_up_and_says_what_it_removed(
        fleet):
    football_plain(fleet, "shrink-prepare", "vm2")
    _, stderr = football_plain(fleet, "shrink-cleanup", "vm2")
    assert_in_order(stderr, "a1: removing LV vg0/vm2-tmp", "a2: removing LV vg0/vm2-tmp")
    assert summary_of(stderr).startswith("summary: vm2: "), stderr
    assert fleet.resources["vm2"].size == GIB
    assert_placed(fleet, "a1", ["a2"], "vm2")


def test_a_shrink_asked_another_size_than_an_unfinished_one_is_refused_naming_both(fleet):
    """A re-run with another size went on with the journal's, silently."""
    football_plain(fleet, "shrink-prepare", "vm2", "400m")
    before = len(fleet.changes())
    _, stderr = football_plain(fleet, "shrink", "vm2", "500m", code=191)
    assert "football: vm2 has an unfinished shrink to 400 MiB (asked 400m; steps done: " \
        "prepare), not 500m; nothing changed. `football shrink vm2 400m` finishes it" in stderr, \
        stderr
    assert fleet.changes()[before:] == []
    football_plain(fleet, "shrink-finish", "vm2")        # a phase command may leave it out
    football_plain(fleet, "shrink", "vm2", "400m")
    assert fleet.resources["vm2"].size == 400 * MIB


def test_an_expand_asked_another_size_than_an_unfinished_one_is_refused_naming_both(fleet):
    _, stderr = football_plain(fleet, "--debug-injection-point", "1", "expand", "vm1", "1g",
                               code=1)
    _, stderr = football_plain(fleet, "expand", "vm1", "2g", code=191)
    assert "football: vm1 has an unfinished expand to 1,024 MiB (asked 1g), not 2g; nothing " \
        "changed. `football expand vm1 1g` finishes it" in stderr, stderr
    football_plain(fleet, "expand", "vm1", "1g")
    assert fleet.resources["vm1"].size == GIB


def test_a_given_up_shrink_does_not_claim_a_sync_in_its_summary(fleet):
    """It said "* shrinking vm2 from 1,024 MiB to 320 MiB", waited for a2 to
    hold "the shrunk vm2" and claimed "replicas of 320 MiB synced"."""
    football_plain(fleet, "shrink-prepare", "vm2")
    _, stderr = football_plain(fleet, "shrink-cleanup", "vm2")
    assert lines_of(stderr)[0] == "* giving up the shrink of vm2: it stays at 1,024 MiB; " \
        "removing its copy (vm2-tmp) on a1, a2", stderr
    assert "synced" not in summary_of(stderr) and "* wait:" not in stderr, stderr
    assert fleet.resources["vm2"].size == 1 << 30
    assert not [lv for name in ("a1", "a2") for lv in fleet.lvs(name) if lv.startswith("vm2-")]


@pytest.mark.parametrize("args, trail, size, grown", [
    (["expand", "vm1", "1g"],
     ["* expanding vm1 from 320 MiB to 1,024 MiB on a1, a2 (online; 100 MiB used)",
      "a1: growing LV vg0/vm1 to 1,024 MiB", "a2: growing LV vg0/vm1 to 1,024 MiB",
      "a1: marsadm resize vm1", "a1: xfs_growfs", "* wait: until a2 holds the grown tail"],
     1024, 704),
    (["extend", "vm1", "30"],       # 100 MiB used are 30 % of 336 MiB (whole extents)
     ["* expanding vm1 from 320 MiB to 336 MiB on a1, a2 (online; 100 MiB used)",
      "a1: growing LV vg0/vm1 to 336 MiB", "a2: growing LV vg0/vm1 to 336 MiB"],
     336, 16),
], ids=["to-a-size", "alias-extend-to-a-fill-level"])
def test_a_plain_expand_says_what_grows_and_ends_with_the_grown_tails_synced(
        fleet, args, trail, size, grown):
    _, stderr = football_plain(fleet, *args)
    assert_in_order(stderr, *trail)
    assert re.fullmatch(rf"summary: vm1: grown tails of {grown} MiB synced in .*; {DOWNTIME}; "
                        r"phases: grow \d+\.\d s, resize \d+\.\d s, growfs \d+\.\d s, "
                        r"wait \d+\.\d s", summary_of(stderr)), stderr
    assert fleet.resources["vm1"].size == size * MIB
    assert_placed(fleet, "a1", ["a2"])


@pytest.mark.parametrize("args, trail, synced, stages, placed", [
    (["migrate+shrink", "vm2", "cluster2"],
     ["* migrate+shrink of vm2: to b1 alone, shrink there, then a replica on b2",
      "* migrating vm2 (1024 MiB) from a1 to b1",
      "* shrinking vm2 from 1,024 MiB to 320 MiB on b1", "vm2 runs on its shrunk volume",
      "* adding a replica of vm2 (320 MiB) on b2; the primary stays on b1"],
     1024 + 320, "migrate, shrink, secondary, cleanup", ("b1", ["b2"])),
    (["migrate+shrink+back", "vm2", "b1"],
     ["* migrate+shrink+back of vm2: to b1, shrink there, back to a1, a2",
      "* migrating vm2 (1024 MiB) from a1 to b1",
      "* shrinking vm2 from 1,024 MiB to 320 MiB on b1, a1, a2",
      "* migrating vm2 (320 MiB) from b1 to a1, a2", "vm2 runs on a1; downtime",
      "* cleanup: vm2-preshrink and vm2-tmp on a1, a2, b1", "a1: removing LV vg0/vm2-preshrink"],
     1024 + 2 * 320, "migrate, shrink, back, cleanup", ("a1", ["a2"])),
], ids=["migrate+shrink", "migrate+shrink+back"])
def test_a_plain_combined_operation_says_its_stages_and_sums_their_syncs(
        fleet, args, trail, synced, stages, placed):
    _, stderr = football_plain(fleet, *args)
    assert_in_order(stderr, *trail)
    phases = ", ".join(rf"{stage} \d+\.\d s" for stage in stages.split(", "))
    assert re.fullmatch(rf"summary: vm2: {SYNCED.format(synced, synced)} .*; {DOWNTIME}; "
                        rf"phases: {phases}", summary_of(stderr)), stderr
    assert fleet.resources["vm2"].size == 320 * MIB
    assert_placed(fleet, *placed, "vm2")


# ------------------------------------------------------------------ nothing to do, refusals

NOTHING_TO_DO = [
    (["migrate", "vm1", "a1", "a2"], "vm1 is already on a1, a2: nothing to do",
     "summary: vm1: nothing done"),
    (["handover", "vm1", "a1"], "vm1's primary is on a1 already: nothing to do",
     "summary: vm1: nothing done"),
    (["shrink", "vm1"], ("vm1: it has 320 MiB, the asked 85 means 320 MiB (100 MiB used): "
                         "not smaller: nothing to do"), "summary: vm1: nothing done"),
    (["expand", "vm2", "1g"], ("vm2: it has 1,024 MiB, the asked 1g means 1,024 MiB "
                               "(100 MiB used): nothing to do"), "summary: vm2: nothing done"),
    (["restore", "a1"], "a1 is active already: nothing to do", "summary: a1: nothing done"),
    (["repair-vm", "vm1", "a1"], "vm1: it runs on a1: nothing to do", None),
    (["repair-vm", "vm1", "a2"], ("vm1: it runs on a1, not on a2; to move it to a2: football "
                                  "handover vm1 a2: nothing to do"), None),
    (["lv-cleanup", "vm1"], "vm1: no LV of it is a leftover: nothing to do", None),
    (["lv-cleanup", "vm7"], "vm7: no host of the inventory has an LV named vm7: nothing to do",
     None),
    (["unlock", "football", "a1"], "a1: lock football is not held", None),
    (["split-cluster", "a1", "b1"], ("the MARS clusters of a1, b1 are as the inventory and "
                                     "the shared resources want: nothing to do"), None),
]


@pytest.mark.parametrize("args, said, summary", NOTHING_TO_DO,
                         ids=[" ".join(case[0]) for case in NOTHING_TO_DO])
def test_a_command_with_nothing_to_do_says_so_exits_0_and_changes_nothing(
        fleet, args, said, summary):
    before = len(fleet.changes())
    _, stderr = football_plain(fleet, *args)
    assert said in lines_of(stderr), stderr
    if summary:
        assert summary_of(stderr) == summary
    assert changes_but_locks(fleet, before) == []


BAD_INPUT = [
    (["migrate", "vm1", "nowhere"], ("unknown host or cluster 'nowhere'; hosts: a1, a2, b1, "
                                     "b2; clusters: cluster1, cluster2")),
    (["migrate", "vm1", "b1", "b1"], "the target secondary must differ from the target primary"),
    (["migrate-prepare", "vm9", "cluster2"], "unknown resource vm9"),
    (["handover", "vm1", "b1"], "b1 has no replica of vm1 (replicas: a1, a2); use football"),
    (["shrink", "vm9"], "unknown resource vm9: no host of the inventory"),
    (["expand", "vm1", "bogus"], "'bogus' is neither a fill level (1..99, percent) nor a size"),
    (["migrate+shrink", "vm1", "b1", "10g", "20g"], "more than one size: 10g 20g"),
    (["repair-vm", "vm1", "b1"], "none of b1 has a replica of vm1 (replicas: a1, a2)"),
    (["lock", "football", "zz"], "unknown host 'zz'"),
    (["status", "vm9"], "unknown resource vm9: no host of the inventory has it"),
    (["evacuate", "a1", "--plan", "--execute"], "choose one of --plan and --execute"),
    (["evacuate", "cluster1", "--execute"], "no screener worker is running to run the moves"),
    (["balance", "execute", "nosuch"], "no plan 'nosuch'"),
    (["balance", "--plan", "--execute"], "choose one of --plan, --execute, --auto"),
    (["screener", "show", "nosuch"], "no job 'nosuch' (see `football screener list`)"),
    (["screener", "list", "--state", "bogus"], "--state 'bogus': one of queued, running"),
]


@pytest.mark.parametrize("args, message", BAD_INPUT,
                         ids=[" ".join(case[0]) for case in BAD_INPUT])
def test_bad_input_exits_191_with_one_line_saying_why_and_changes_nothing(fleet, args, message):
    before = len(fleet.changes())
    stdout, stderr = football_plain(fleet, *args, code=191)
    assert len(lines_of(stderr)) == 1, stderr
    assert stderr.startswith("football: ") and message in stderr, stderr
    assert stdout == ""
    assert changes_but_locks(fleet, before) == []
    assert_placed(fleet, "a1", ["a2"])


def test_evacuating_without_capacity_exits_191_and_names_every_resource_that_does_not_fit(
        fleet):
    _, stderr = football_plain(fleet, "--var", f"placement_min_free={100 << 30}",
                               "evacuate", "a1", code=191)
    assert "evacuating a1: capacity lacking for 2 resource(s), nothing planned" in stderr
    assert "vm1: " in stderr and "vm2: " in stderr, stderr
    assert fleet.changes() == []


def test_evacuating_without_capacity_says_why_a_small_resource_does_not_fit(fleet):
    _, stderr = football_plain(fleet, "--var", f"placement_min_free={100 << 30}",
                               "evacuate", "a1", code=191)
    """It said "vm1: 0 GiB, ... (e.g. b2: 4 GiB VG free, vm1 needs 0 GiB)"."""
    assert "vm1: 320 MiB, no cluster of active hosts has room" in stderr, stderr
    assert "VG free, vm1 needs 320 MiB and placement_min_free keeps 100.0 GiB" in stderr, stderr


# ------------------------------------------------------------------ failures

def test_a_shrink_failing_in_its_window_exits_198_says_it_runs_again_and_a_re_run_ends_it(
        fleet):
    fleet.fail_next["create-resource"] = 1
    _, stderr = football_plain(fleet, "shrink", "vm2", code=198)
    assert "football: shrink of vm2 failed inside the downtime window" in stderr, stderr
    assert "football: shrink of vm2 failed inside the downtime window; vm2 runs again on a1. " \
        "The failure: " in stderr, stderr
    assert fleet.running("vm2") == ["a1"]
    _, stderr = football_plain(fleet, "shrink", "vm2")
    assert "* finish: vm2 is on its shrunk volume" in stderr, stderr
    assert re.fullmatch(rf"summary: vm2: {SYNCED.format(320, 320)} .*", summary_of(stderr))
    assert_placed(fleet, "a1", ["a2"], "vm2")


def test_repair_vm_starts_a_stopped_container_and_exits_199_when_it_cannot(fleet):
    fleet.containers["a1"]["vm1"] = "STOPPED"
    fleet.broken.add(("a1", "vm1"))
    _, stderr = football_plain(fleet, "repair-vm", "vm1", "a1", code=199)
    assert lines_of(stderr)[0] == "* a1: starting vm1", stderr
    assert "warning: a1: cannot start vm1" in stderr
    assert lines_of(stderr)[-1].startswith("football: vm1 could not be started on a1 and is NOT "
                                           "running (designated primary: a1)"), stderr
    assert fleet.running("vm1") == []
    fleet.broken.clear()
    _, stderr = football_plain(fleet, "repair-vm", "vm1", "a1")
    assert lines_of(stderr) == ["* a1: starting vm1", "vm1 runs on a1"], stderr
    assert_placed(fleet, "a1", ["a2"])


def test_repair_vm_of_a_container_running_without_its_device_starts_it_again(fleet):
    """vm1 runs on a1 on the filesystem of a device that crashed (marsd was
    killed): is-primary 0 there. repair-vm said "it runs on a1: nothing to
    do"; it stops it there (off the dead mount) and starts it again."""
    fleet.crashed_devices.add(("a1", "vm1"))
    before = len(fleet.calls)
    _, stderr = football_plain(fleet, "repair-vm", "vm1", "a1")
    assert "warning: a1: vm1 runs there without its MARS device (one that crashed: what it " \
        "writes goes nowhere); it is stopped and started again" in stderr, stderr
    assert lines_of(stderr)[-1] == "vm1 runs on a1", stderr
    on_a1 = [argv for host, argv in fleet.calls[before:] if host == "a1"]
    stopped = on_a1.index(next(argv for argv in on_a1 if argv[:2] == ("football-host", "ct")
                               and argv[3] == "stop"))
    assert ("umount", str(fleet.hosts["a1"].mountpoint("vm1"))) in on_a1[stopped:], on_a1
    assert fleet.running("vm1") == ["a1"] and not fleet.crashed_devices
    assert_placed(fleet, "a1", ["a2"])


def test_repair_mars_rebuilds_stand_alone_and_lv_cleanup_lists_then_removes_the_old_lv(fleet):
    _, stderr = football_plain(fleet, "repair-mars", "vm1", "a1")
    assert_in_order(stderr, "* rebuild vm1 stand-alone on a1 from "
                    f"{fleet.hosts['a1'].path('/dev/vg0/vm1')}, dropping the replicas on a2",
                    "a1: marsadm delete-resource --force vm1",
                    "a1: marsadm create-resource vm1", "* a1: starting vm1")
    assert lines_of(stderr)[-1] == ("vm1 runs stand-alone on a1; old LVs on a2: football "
                                    "lv-cleanup vm1; new replica: football migrate vm1 a1 "
                                    "<secondary>"), stderr
    assert fleet.members("vm1") == ["a1"] and fleet.running("vm1") == ["a1"]
    _, stderr = football_plain(fleet, "lv-cleanup", "vm1")
    assert lines_of(stderr) == [
        "a1: keeps LV vg0/vm1 (a MARS replica uses it)",
        with_roots(fleet, "would run on a2: football-host vg <a2>/dev/vg0 remove vm1"),
        "run `football lv-cleanup vm1 --do-it` to remove it"], stderr
    assert "vm1" in fleet.lvs("a2")
    _, stderr = football_plain(fleet, "lv-cleanup", "vm1", "--do-it")
    assert lines_of(stderr) == ["a1: keeps LV vg0/vm1 (a MARS replica uses it)",
                                "a2: removed LV vg0/vm1"], stderr
    assert "vm1" not in fleet.lvs("a2") and "vm1" in fleet.lvs("a1")
    assert_placed(fleet, "a1", [])


# ------------------------------------------------------------------ locks, clusters, gates

def test_an_operators_lock_shows_in_status_holds_off_a_handover_and_unlock_says_whose_it_was(
        fleet):
    _, stderr = football_plain(fleet, "lock", "football", "a1", "a2", "--owner", "alice")
    assert lines_of(stderr) == [("took lock football on a1, a2 as alice; it stays until "
                                 "`football unlock football a1 a2`")], stderr
    stdout, _ = football_plain(fleet, "status", "a1")
    assert [row["locks"] for row in table(stdout, "hosts")] == ["football (alice)"], stdout
    _, stderr = football_plain(fleet, "--var", "lock_retry_timeout=0",
                               "handover", "vm1", "a2", code=191)
    assert re.search(r"^football: a\d: .*lock football is held by alice since .*football unlock "
                     r"football a\d$", stderr, re.MULTILINE), stderr
    _, stderr = football_plain(fleet, "unlock", "football", "a1", "a2")
    released = [re.fullmatch(r"(a[12]): released lock football held by alice since "
                             r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", line) for line in lines_of(stderr)]
    assert all(released) and sorted(match.group(1) for match in released) == ["a1", "a2"], \
        stderr
    _, stderr = football_plain(fleet, "unlock", "football", "a1")
    assert lines_of(stderr) == ["a1: lock football is not held"], stderr
    assert_placed(fleet, "a1", ["a2"])


def test_merge_cluster_and_split_cluster_say_the_mars_clusters_they_leave(fleet):
    _, stderr = football_plain(fleet, "merge-cluster", "a1", "b1")
    assert lines_of(stderr) == ["* merging the MARS clusters of a1 and b1",
                                "  b1: marsadm merge-cluster a1 127.0.9.11",
                                "  MARS cluster now: a1 a2 b1 b2"], stderr
    assert fleet.cluster_of("b2") == ["a1", "a2", "b1", "b2"]
    _, stderr = football_plain(fleet, "split-cluster", "a1", "b1")
    assert_in_order(stderr, "* MARS clusters a1 a2 b1 b2 become a1 a2; b1 b2",
                    "marsadm split-cluster")
    assert lines_of(stderr)[-1] == "  MARS clusters now: a1 a2; b1 b2", stderr
    assert_clusters_as_inventory(fleet)


def test_pause_unpause_and_continue_say_what_they_did_to_which_gate_file(fleet):
    state = Path(fleet.state_dir)
    for args, line, exists in (
            (["pause", "vm1"], f"paused vm1 ({state / 'pause.vm1'})", True),
            (["unpause", "vm1"], "unpaused vm1", False),
            (["unpause", "vm1"], f"vm1 was not paused ({state / 'pause.vm1'} does not exist)",
             False),
            (["pause"], f"paused every resource ({state / 'pause'})", None),
            (["unpause"], "unpaused every resource", None),
            (["unpause"], f"there was no pause of all resources ({state / 'pause'} does not "
                          "exist)", None),
            (["continue", "vm1", "vm2"], "\n".join(
                f"{res}: may go offline (no run of {res} goes on now: the next one's downtime "
                f"begins at its gate without waiting; `rm {state / f'continue.{res}'}` takes it "
                "back)" for res in ("vm1", "vm2")), None)):
        stdout, _ = football_plain(fleet, *args)
        assert stdout == line + "\n", (args, stdout)
        if exists is not None:
            assert (state / "pause.vm1").exists() is exists
    assert fleet.changes() == []


def test_continue_while_a_run_of_the_resource_goes_on_says_only_that_it_may_go(fleet):
    """`continue` with no run going on left a release that the next run's
    gate, hours later, passed at once; it says so now, and how to take it
    back; with a run going on (its turn held) it says what it did."""
    with turn_held(fleet.state_dir, "migrate", "vm1"):
        stdout, _ = football_plain(fleet, "continue", "vm1")
    assert stdout == "vm1: may go offline\n"
    assert (Path(fleet.state_dir) / "continue.vm1").exists()


# ------------------------------------------------------------------ status, score, plans

@pytest.mark.parametrize("scope, hosts, rows", [
    (None, ["a1", "a2", "b1", "b2"], [("vm1", "a1"), ("vm1", "a2"), ("vm2", "b1"), ("vm2", "b2")]),
    ("vm1", ["a1", "a2"], [("vm1", "a1"), ("vm1", "a2")]),
    ("a2", ["a2"], [("vm1", "a2")]),
    ("cluster2", ["b1", "b2"], [("vm2", "b1"), ("vm2", "b2")]),
], ids=["all", "a-resource", "a-host", "a-cluster"])
def test_status_shows_the_hosts_and_replicas_in_its_scope_as_the_fleet_has_them(
        two_clusters, scope, hosts, rows):
    fleet = two_clusters
    stdout, stderr = football_plain(fleet, "status", *([scope] if scope else []))
    assert stderr == ""
    host_rows = table(stdout, "hosts")
    assert [row["host"] for row in host_rows] == hosts, stdout
    for row in host_rows:
        name = row["host"]
        assert row["cluster"] == ("cluster1" if name[0] == "a" else "cluster2")
        assert (row["state"], row["reachable"], row["locks"], row["intents"]) == \
            ("active", "yes", "-", "-"), row
        assert row["MARS cluster"] == " ".join(fleet.cluster_of(name)), row
        assert row["VG free"] == f"{4096 - 320} MiB", row      # one 320 MiB LV on each
    resource_rows = table(stdout, "resources")
    assert [(row["resource"], row["host"]) for row in resource_rows] == rows, stdout
    for row in resource_rows:
        primary = fleet.resources[row["resource"]].primary == row["host"]
        assert (row["role"], row["container"]) == \
            (("Primary", "RUNNING") if primary else ("Secondary", "-")), row
        assert (row["diskstate"], row["replstate"], row["sync rest"], row["LV"]) == \
            ("UpToDate", "Replicating", "-", "320 MiB"), row
    assert "unfinished operations" not in stdout


def test_score_shows_the_same_terms_score_and_container_counts_as_its_json(two_clusters):
    fleet = two_clusters
    report = json_report(fleet, "score")
    stdout, _ = football_plain(fleet, "score")
    assert lines_of(stdout)[-1] == f"score {report['score']:.4f}", stdout
    terms = {row["term"]: row["value"] for row in table(stdout, "terms")}
    assert terms == {term: f"{value:.4f}" for term, value in report["terms"].items()}
    hosts = {row["host"]: row for row in table(stdout, "hosts")}
    assert sorted(hosts) == ["a1", "a2", "b1", "b2"]
    for name, row in hosts.items():
        assert row["lifecycle"] == "active"
        assert row["containers"].split()[0] == str(report["hosts"][name]["container_count"])
    assert hosts["a1"]["containers"].startswith("1 ") and hosts["a2"]["containers"] == "0 (0 %)"


@pytest.mark.parametrize("args, kind", [
    (["balance", "--plan"], "balance"),
    (["evacuate", "a1", "--plan"], "evacuate"),
    (["evacuate", "cluster1"], "evacuate"),         # --plan is the default
], ids=["balance", "evacuate-a-host", "evacuate-a-cluster"])
def test_a_printed_plan_lists_the_moves_it_saved_and_changes_nothing(crowded, args, kind):
    fleet = crowded
    stdout, _ = football_plain(fleet, *args)
    [(title, rows)] = [(name, rows) for name, rows in tables(stdout)
                       if name.startswith(f"{kind} plan {kind}-")]
    plan_id = title.split()[-1]
    saved_as = re.search(r"saved as\s+(\S+\.json)", stdout).group(1)
    assert Path(saved_as) == Path(fleet.state_dir) / "plans" / f"{plan_id}.json"
    plan = json.loads(Path(saved_as).read_text())
    moves = [(move["resource"], move["kind"], " ".join(move["from"]), " ".join(move["to"]))
             for move in plan["moves"]]
    assert [(row["resource"], row["kind"], row["from"], row["to"]) for row in rows] == moves
    count = len(moves)
    assert re.search(rf"^score {plan['score_before']:.4f} -> {plan['score_after']:.4f}; "
                     rf"{count} move{'' if count == 1 else 's'}, ", stdout, re.MULTILINE), stdout
    if kind == "evacuate":      # everything leaves cluster1's a1
        assert sorted(move[0] for move in moves) == ["vm1", "vm2"]
        assert all("a1" not in move[3].split() for move in moves), moves
    else:
        assert moves and all(set(move[3].split()) & {"b1", "b2"} for move in moves), moves
    assert fleet.changes() == []


# ------------------------------------------------------------------ dry runs

DRY_RUNS = [
    (["migrate", "vm1", "cluster2"], [
        "* migrating vm1 (320 MiB) from a1 to b1, b2",
        "would run on b1: marsadm merge-cluster a1 127.0.9.11",
        "would run on b1: football-host vg <b1>/dev/vg0 create vm1 335544320",
        "would run on b1: marsadm join-resource vm1 <b1>/dev/vg0/vm1",
        "would run on b2: marsadm join-resource vm1 <b2>/dev/vg0/vm1",
        "would run on a1: football-host ct <a1>/var/lib/lxc stop vm1",
        "would run on b1: football-host ct <b1>/var/lib/lxc start vm1",
        "would run on a1: marsadm leave-resource vm1",
        "would run on a1: football-host vg <a1>/dev/vg0 remove vm1",
        "would run on b1: marsadm split-cluster"]),
    (["shrink", "vm2"], [
        "* shrinking vm2 from 1,024 MiB to 320 MiB on a1, a2",
        "would run on a1: football-host vg <a1>/dev/vg0 create vm2-tmp 335544320",
        ("would run on a1: rsync -aHAXS -x --numeric-ids --modify-window=-1 --delete --inplace "
         "'--rsh=football-host rsync-source '\"'\"'<a1>/var/lib/lxc/vm2'\"'\"'' "
         "source::volume/ <a1>/var/lib/lxc/vm2-tmp/"),
        "would run on a1: football-host ct <a1>/var/lib/lxc stop vm2",
        ("would run on a1: rsync -aHAXS -x --numeric-ids --modify-window=-1 --delete --inplace "
         "'--rsh=football-host rsync-source '\"'\"'<a1>/var/lib/lxc/vm2'\"'\"'' "
         "source::volume/ <a1>/var/lib/lxc/vm2-tmp/"),
        "would run on a1: marsadm delete-resource --force vm2",
        "would run on a2: football-host vg <a2>/dev/vg0 rename vm2 vm2-preshrink",
        "would run on a1: marsadm create-resource vm2 <a1>/dev/vg0/vm2",
        "would run on a2: marsadm join-resource vm2 <a2>/dev/vg0/vm2",
        "would run on a2: football-host vg <a2>/dev/vg0 remove vm2-preshrink"]),
    (["handover", "vm1", "a2"], [
        "would run on a1: football-host ct <a1>/var/lib/lxc stop vm1",
        "would run on a2: mount -t xfs <a2>/dev/mars/vm1 <a2>/var/lib/lxc/vm1",
        "would run on a2: football-host ct <a2>/var/lib/lxc start vm1"]),
    (["expand", "vm1", "1g"], [
        "would run on a1: football-host vg <a1>/dev/vg0 resize vm1 1073741824",
        "would run on a2: football-host vg <a2>/dev/vg0 resize vm1 1073741824",
        "would run on a1: xfs_growfs <a1>/var/lib/lxc/vm1"]),
    (["migrate+shrink", "vm2", "cluster2"], [
        "* migrate+shrink of vm2: to b1 alone, shrink there, then a replica on b2",
        "would run on b1: football-host vg <b1>/dev/vg0 create vm2 1073741824",
        "then shrink, secondary, cleanup: their commands depend on what migrate leaves"]),
    (["repair-mars", "vm1", "a1"], [
        "would run on a1: marsadm delete-resource --force vm1",
        "would run on a1: marsadm create-resource vm1 <a1>/dev/vg0/vm1",
        "would run on a1: football-host ct <a1>/var/lib/lxc start vm1"]),
    (["lock", "football", "a1"], [
        "would run on a1: football-host lock <a1>/var/lock/football take football"]),
]


@pytest.mark.parametrize("args, would_run", DRY_RUNS,
                         ids=[" ".join(case[0]) for case in DRY_RUNS])
def test_a_dry_run_prints_the_commands_it_would_run_and_changes_nothing(fleet, args, would_run):
    before = len(fleet.changes())
    _, stderr = football_plain(fleet, "--dry-run", *args)
    assert_in_order(stderr, *(with_roots(fleet, line) for line in would_run))
    count = stderr.count("would run on ")
    assert lines_of(stderr)[-1] == f"dry run: {count} command{'' if count == 1 else 's'} would " \
        "run; nothing was changed", stderr
    assert fleet.changes()[before:] == []
    assert_placed(fleet, "a1", ["a2"])
    assert_placed(fleet, "a1", ["a2"], "vm2")


@pytest.mark.parametrize("args, in_this_phase, not_in_this_phase", [
    (["migrate-prepare", "vm1", "cluster2"], "join-resource vm1", "stop vm1"),
    (["migrate-finish", "vm1", "cluster2"], "stop vm1", "join-resource"),
    (["shrink-prepare", "vm2"], "create vm2-tmp", "delete-resource"),
], ids=["migrate-prepare", "migrate-finish", "shrink-prepare"])
def test_the_dry_run_of_a_phase_command_lists_only_that_phases_commands(
        fleet, args, in_this_phase, not_in_this_phase):
    """A phase command's dry run listed the whole operation's commands (the
    downtime window's among them, for a prepare)."""
    _, stderr = football_plain(fleet, "--dry-run", *args)
    assert in_this_phase in stderr, stderr
    assert not_in_this_phase not in stderr, stderr


# ------------------------------------------------------------------ the screener

def test_screener_start_list_show_kill_and_purge_say_what_became_of_the_job(fleet):
    stdout, stderr = football_plain(fleet, "screener", "start", "migrate", "vm2", "cluster2")
    assert stdout == "vm2\n"
    assert stderr.startswith("football: no worker is running: queued jobs wait"), stderr
    _, stderr = football_plain(fleet, "screener", "start", "migrate", "vm2", "b1", code=191)
    assert "vm2 has a job already" in stderr
    stdout, _ = football_plain(fleet, "screener", "list")
    assert [(row["id"], row["operation"], row["state"]) for row in
            table(stdout, "screener jobs (1)")] == [("vm2", "migrate", "queued")], stdout
    stdout, _ = football_plain(fleet, "screener", "show", "vm2")
    assert lines_of(stdout)[0].startswith("job vm2: football --inventory "), stdout
    assert lines_of(stdout)[0].endswith(" migrate vm2 cluster2"), stdout
    assert lines_of(stdout)[-1] == "result: queued", stdout
    stdout, _ = football_plain(fleet, "screener", "kill", "vm2")
    assert stdout == "vm2: killed before it started\n"
    stdout, _ = football_plain(fleet, "screener", "list")
    assert [(row["id"], row["state"], row["last message"]) for row in
            table(stdout, "screener jobs (1)")] == \
        [("vm2", "interrupted", "killed before it started")], stdout
    stdout, _ = football_plain(fleet, "screener", "purge", "--days", "0")
    assert stdout == "archived 1 job(s): vm2\n"
    stdout, _ = football_plain(fleet, "screener", "list")
    assert table(stdout, "screener jobs (0)") == []
    assert fleet.changes() == []
    assert_placed(fleet, "a1", ["a2"], "vm2")


def test_balance_execute_runs_its_moves_as_jobs_and_ends_with_the_fleets_summary(
        crowded, worker):
    fleet = crowded
    _, stderr = football_plain(fleet, *JOBS_POLL, "balance", "--execute")
    heading = re.search(r"^\* balancing: plan (balance-\S+), (\d+) move\(s\), score "
                        r"\d+\.\d{4} -> \d+\.\d{4}$", stderr, re.MULTILINE)
    assert heading, stderr
    plan_id, count = heading.group(1), int(heading.group(2))
    queued = re.findall(rf"^  queued {plan_id}-(vm\d): football migrate (vm\d) (b\d) (b\d)$",
                        stderr, re.MULTILINE)
    assert count >= 1 and len(queued) == count, stderr
    for res, same, primary, secondary in queued:
        assert res == same
        assert re.search(rf"^  {plan_id}-{res}: done", stderr, re.MULTILINE), stderr
        assert_placed(fleet, primary, [secondary], res)
    assert re.fullmatch(rf"summary: the fleet: {count} move{'' if count == 1 else 's'} "
                        rf"\(jobs: {count} done\); phases: execute \d+\.\d s",
                        summary_of(stderr)), stderr
    _, stderr = football_plain(fleet, *JOBS_POLL, "balance", "--execute")
    assert re.search(r"^plan balance-\S+ has no moves: nothing to do$", stderr,
                     re.MULTILINE), stderr
    assert summary_of(stderr) == "summary: the fleet: nothing done"


def test_an_evacuation_shows_in_status_and_the_screener_and_restore_brings_it_back(
        crowded, worker):
    fleet = crowded
    _, stderr = football_plain(fleet, *JOBS_POLL, "evacuate", "a1", "--execute")
    assert_in_order(stderr, "a1: draining", "* evacuating a1: plan evacuate-", ", 2 move(s)",
                    "a1: evacuated")
    assert re.fullmatch(r"summary: a1: 2 moves \(jobs: 2 done\); phases: drain \d+\.\d s, "
                        r"move \d+\.\d s, evacuated \d+\.\d s", summary_of(stderr)), stderr
    jobs = dict(re.findall(r"^  queued (\S+-(vm\d)): football migrate", stderr, re.MULTILINE))
    assert sorted(jobs.values()) == ["vm1", "vm2"], stderr
    stdout, _ = football_plain(fleet, "status", "a1")
    assert [(row["host"], row["state"]) for row in table(stdout, "hosts")] == \
        [("a1", "evacuated")], stdout
    assert table(stdout, "resources") == [], stdout
    stdout, _ = football_plain(fleet, "screener", "list")
    assert sorted((row["id"], row["operation"], row["state"])
                  for row in table(stdout, "screener jobs (2)")) == \
        sorted((job, "migrate", "done") for job in jobs), stdout
    job = next(job for job, res in jobs.items() if res == "vm1")
    stdout, _ = football_plain(fleet, "screener", "show", job)
    assert re.search(r"^job \S+: football .* migrate vm1 b\d b\d$", stdout, re.MULTILINE), stdout
    assert re.search(r"^\d\d:\d\d:\d\d summary: vm1: replicas of 640 MiB synced", stdout,
                     re.MULTILINE), stdout
    # the job's phases in the order they ran (its stored summary had them sorted)
    assert re.search(r"phases: prepare \S+ s, wait \S+ s, finish \S+ s, cleanup \S+ s$", stdout,
                     re.MULTILINE), stdout
    assert lines_of(stdout)[-1] == "result: done (exit 0)", stdout
    _, stderr = football_plain(fleet, *JOBS_POLL, "evacuate", "a1", "--execute")
    assert lines_of(stderr) == ["a1 is evacuated already: nothing to do",
                                "summary: a1: nothing done"], stderr
    _, stderr = football_plain(fleet, "migrate", "vm1", "a1", code=191)
    assert stderr.startswith("football: a1 is evacuated: no resource is placed there"), stderr
    _, stderr = football_plain(fleet, *JOBS_POLL, "restore", "a1")
    assert_in_order(stderr, "a1: restoring", "* restoring a1: plan restore-", ", 2 move(s)",
                    "a1: active")
    assert summary_of(stderr).startswith("summary: a1: 2 moves (jobs: 2 done); phases: "), stderr
    assert_placed(fleet, "a1", ["a2"], "vm1")
    assert_placed(fleet, "a1", ["a2"], "vm2")


# ------------------------------------------------------------------ what prints no fleet state

@pytest.mark.parametrize("args, expected", [
    (["config"], ["poll_interval = 0.0  (--var) — ", "state_dir = '{state}'  (--var) — "]),
    (["balance", "--systemd-unit"], [
        "# football-balance.service", "ExecStart=",
        (" -m football --inventory {inventory} --var state_dir={state} --var poll_interval=0 "
         "balance --auto"),
        "# football-balance.timer", "OnCalendar=hourly"]),
    (["worker", "--systemd-unit"], [
        "ExecStart=", (" -m football --inventory {inventory} --var state_dir={state} "
                       "--var poll_interval=0 worker\n")]),
], ids=["config", "balance-systemd-unit", "worker-systemd-unit"])
def test_config_and_the_systemd_units_carry_this_command_lines_inventory_and_vars(
        fleet, args, expected):
    stdout, _ = football_plain(fleet, *args)
    assert_in_order(stdout, *(text.format(inventory=Path(fleet.inventory_path).absolute(),
                                          state=fleet.state_dir) for text in expected))
    assert fleet.changes() == []


def test_repair_vm_stops_a_copy_on_a_crashed_device_beside_the_one_that_runs(fleet):
    """vm1 runs on a1, and a copy of it on a2 on what is left of a crashed
    device: repair-vm said it stops it, then "it runs on a1: nothing to
    do" — both copies ran on."""
    host = fleet.hosts["a2"]
    fleet.mounts["a2"][host.mountpoint("vm1")] = host.device("vm1")
    fleet.containers["a2"]["vm1"] = "RUNNING"
    fleet.crashed_devices.add(("a2", "vm1"))
    assert fleet.running("vm1") == ["a1", "a2"]
    before = len(fleet.calls)
    _, stderr = football_plain(fleet, "repair-vm", "vm1", "a1")
    on_a2 = [argv for name, argv in fleet.calls[before:] if name == "a2"]
    stop = next(index for index, argv in enumerate(on_a2) if argv[:2] == ("football-host", "ct")
                and argv[3] == "stop")
    assert [argv for argv in on_a2[:stop] if argv[:2] == ("football-host", "lock")
            and "take" in argv], on_a2          # under the locks
    assert "warning: a2: vm1 runs there without its MARS device (one that crashed: what it " \
        "writes goes nowhere); it is stopped (it runs on a1)" in stderr, stderr
    assert lines_of(stderr)[-1] == "vm1 runs on a1", stderr
    assert fleet.running("vm1") == ["a1"]
    assert_placed(fleet, "a1", ["a2"])

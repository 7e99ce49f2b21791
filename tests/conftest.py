import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings

from tests.helpers.dataplane import DataNet
from tests.helpers.leftovers import clean_up_after, dead_runs, done, guard, mark_alive


# Property tests (hypothesis): in `make test` (CI) the same examples every
# run, with no time bound per example: a rare example one run happens upon,
# or a loaded machine's slow one, failed a landing whose change it was not
# about (test_logfile, once). HYPOTHESIS_PROFILE=explore draws new examples
# each run, to look for what the fixed ones miss.
settings.register_profile("steady", derandomize=True, deadline=None)
settings.register_profile("explore", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "steady"))

# Under `--dist loadfile --no-loadscope-reorder` (make test) a worker takes a
# whole file at a time, in collection order: a long file collected last keeps
# one worker busy alone at the end. So the longest files (minutes of lab
# migrations) go first.
LONGEST_FILES_FIRST = (       # as `make test` printed them (2026-12-03, suite branch), longest first
    "tests/root/test_screener.py", "tests/root/test_crashes.py", "tests/root/test_shrink.py",
    "tests/root/test_planner_lab.py", "tests/root/test_screener_worker_kill.py",
    "tests/root/test_parallel.py", "tests/root/test_operations.py", "tests/root/test_mars_faults.py",
    "tests/integration/test_cluster_membership.py", "tests/root/test_lab.py",
    "tests/root/test_migrate_variants.py", "tests/integration/test_merge_and_split.py",
    "tests/root/test_admin_ops.py", "tests/root/test_migrate.py", "tests/root/test_repair.py",
    "tests/unit/test_screener.py", "tests/root/test_replication.py",
    "tests/integration/test_ssh_transport.py", "tests/root/test_screener_postgres.py",
    "tests/unit/test_combined.py")


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    """As root, first clean up what earlier runs that were killed left (their
    labs, daemons, mounts: tests/helpers/leftovers.py), then mark this run
    alive; in the controller only: xdist's workers live below its base dir.
    Then, in every pytest process, start the guard that cleans up at once
    after this process if it is killed."""
    config = session.config
    if os.geteuid() != 0:
        return
    factory = config._tmp_path_factory
    if not hasattr(config, "workerinput"):
        given = factory._given_basetemp
        runs_root = Path(given).parent if given else \
            Path(os.environ.get("PYTEST_DEBUG_TEMPROOT") or tempfile.gettempdir()) / \
            "pytest-of-root"
        for base in dead_runs(runs_root):
            clean_up_after(base)
        config.football_alive = mark_alive(factory.getbasetemp())
    # the controller and each worker: what they leave goes at once if they are killed
    config.football_guard = guard(factory.getbasetemp())


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session):
    """After the last fixtures' teardown (also after a Ctrl-C): the run
    cleaned up itself, its guard goes."""
    guarding = getattr(session.config, "football_guard", None)
    if guarding is not None:
        done(guarding)


_seconds_by_file = {}


def pytest_runtest_logreport(report):
    """Setup, call and teardown of every test, summed by file (under xdist
    in the controller too: the workers' reports come there)."""
    path = report.nodeid.split("::")[0]
    _seconds_by_file[path] = _seconds_by_file.get(path, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter):
    """The slowest files at the end of every run: with three workers the wall
    time is about a third of their sum, so a file that grows shows in every CI log."""
    if not _seconds_by_file:
        return
    terminalreporter.write_sep("=", "slowest files (setup + call + teardown)")
    total = sum(_seconds_by_file.values())
    for path, seconds in sorted(_seconds_by_file.items(), key=lambda item: -item[1])[:20]:
        terminalreporter.write_line(f"{seconds:8.1f}s {path}")
    terminalreporter.write_line(f"{total:8.1f}s all {len(_seconds_by_file)} files")


def pytest_collection_modifyitems(config, items):
    def rank(item):
        path = item.nodeid.split("::")[0]
        return LONGEST_FILES_FIRST.index(path) if path in LONGEST_FILES_FIRST else \
            len(LONGEST_FILES_FIRST)

    items.sort(key=rank)        # stable: the order within and after them stays
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (CI runs as root)")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def marsnet(tmp_path):
    """A set of MARS hosts on random 127.x.y.z addresses; every marsd is
    stopped by pid at the end, even when the test fails, and the devices
    marsd brought up for resources (loop devices, FUSE mounts) are gone."""
    net = DataNet(tmp_path / "hosts")
    try:
        yield net
    finally:
        net.cleanup()


@pytest.fixture(autouse=True)
def _no_cached_facts():
    """Each test starts without the facts an earlier one read (the cache is
    per run, and a test's runs share the process)."""
    from football import facts
    facts.forget()

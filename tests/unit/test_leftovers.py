"""Which processes a killed test run left: a process names a run's dir only
by that dir or a path below it (tests/helpers/leftovers.py)."""

from tests.helpers.leftovers import names

RUN = b"/tmp/pytest-of-root/pytest-4"


def test_a_path_below_the_run_dir_names_it_in_arguments_options_and_the_environment():
    assert names(RUN + b"/popen-gw0/lab0/lab/a1/mars", RUN)
    assert names(b"--basetemp=" + RUN, RUN)
    assert names(b"FOOTBALL_LAB_DIR=" + RUN + b"/popen-gw1/lab", RUN)
    assert names(b"[lxc monitor] " + RUN + b"/lab/a1/var/lib/lxc vm1", RUN)


def test_a_run_dir_whose_name_only_starts_the_same_is_not_named():
    """The cleanup of a dead run 4 once stopped the live run 48's processes."""
    assert not names(b"/tmp/pytest-of-root/pytest-48/popen-gw0/lab", RUN)
    assert not names(b"--basetemp=/tmp/pytest-of-root/pytest-48", RUN)
    assert not names(b"[lxc monitor] /tmp/pytest-of-root/pytest-48/lab/a1/var/lib/lxc vm1", RUN)

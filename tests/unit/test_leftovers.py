"""What a killed test run left: a process names a run's dir only by that
dir or a path below it (tests/helpers/leftovers.py); a private PostgreSQL
server's files go once nobody holds their owner lock (tests/helpers/postgres.py)."""

import subprocess
import sys

from tests.helpers import leftovers
from tests.helpers.leftovers import clean_up_after, names
from tests.helpers.postgres import DIR_PREFIX, remove_leftovers

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


def test_the_files_of_a_killed_runs_postgres_server_go_and_a_live_ones_stay(tmp_path):
    dead, alive, foreign = (tmp_path / f"{DIR_PREFIX}{name}" for name in ("dead", "alive", "x"))
    for directory in (dead, alive, foreign):
        directory.mkdir()
    (dead / "owner").write_text("")
    (alive / "owner").write_text("")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time; owner = open(sys.argv[1]); "
         "fcntl.flock(owner, fcntl.LOCK_EX); print('held', flush=True); time.sleep(600)",
         str(alive / "owner")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        remove_leftovers(tmp_path)
        assert sorted(path.name for path in tmp_path.iterdir()) == \
            [alive.name, foreign.name]          # foreign: no owner file, not ours
    finally:
        holder.kill()
        holder.wait()
    remove_leftovers(tmp_path)                  # the run that held it was killed
    assert sorted(path.name for path in tmp_path.iterdir()) == [foreign.name]


def test_the_labs_of_a_killed_run_are_all_taken_down_though_each_down_removes_its_dir(
        tmp_path, monkeypatch):
    """The next run's clean-up globbed lazily for lab.json while `lab down`
    removed the dirs it walked: FileNotFoundError, the run ended at its start."""
    base = tmp_path / "pytest-7"
    labs = [base / "popen-gw0" / "lab0" / "lab", base / "popen-gw1" / "lab1" / "lab"]
    for lab in labs:
        (lab / "a1" / "mars").mkdir(parents=True)
        (lab / "lab.json").write_text('{"marsd": {}}')
    football = tmp_path / "football"            # `lab down` as far as the dirs go
    football.write_text('#!/bin/sh\nrm -rf "$FOOTBALL_LAB_DIR"\n')
    football.chmod(0o755)
    monkeypatch.setattr(leftovers, "FOOTBALL", str(football))
    said = []
    clean_up_after(base, say=said.append)
    assert not any(lab.exists() for lab in labs)
    assert len([line for line in said if "lab down" in line]) == 2

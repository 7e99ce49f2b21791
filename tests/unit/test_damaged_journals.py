"""A journal that cannot be read (torn, not JSON, not a journal) stops every
operation on the resource its file name tells, naming it and what to do,
and keeps that resource out of a planner's moves; a journal whose screener
job was completed elsewhere is finished only when no run here went on from
it or holds the resource's turn, and without touching a live run's files."""

import fcntl
import json
import os
from pathlib import Path

import pytest

from football.errors import Illegal
from football.journal import (OPERATIONS, Journal, named_by, unfinished_operations,
                              unfinished_resources)
from tests.helpers.fakefleet import fake_fleet, football  # noqa: F401
from tests.unit.test_unfinished_others import refused_unchanged

GIB = 1 << 30


@pytest.fixture
def fleet(fake_fleet):  # noqa: F811 (the fixture imported above)
    """The fake fleet with vm2 (a1, a2) and vm3 (a1, a2)."""
    fake_fleet.create_resource("vm2", "a1", ["a2"], size=GIB)
    fake_fleet.create_resource("vm3", "a1", ["a2"], size=GIB)
    return fake_fleet


def torn_migrate_journal(state_dir, res="vm2"):
    """The first half of a valid migrate journal of `res`, as a crash of
    something other than Journal leaves it; its path."""
    journal = Journal(state_dir, "migrate", res)
    journal.record("prepare", targets=["b1", "b2"], origin=["a1", "a2"])
    text = journal.path.read_text()
    journal.path.write_text(text[:len(text) // 2])
    return journal.path


# --- a damaged journal refuses every operation on its resource -------------------------

@pytest.mark.parametrize("command", [("shrink", "vm2"), ("expand", "vm2", "2g"),
                                     ("migrate", "vm2", "b1", "b2"),
                                     ("migrate+shrink", "vm2", "b1", "b2", "320m")])
def test_a_torn_journal_refuses_every_operation_on_its_resource_naming_it_and_what_to_do(
        fleet, command):
    path = torn_migrate_journal(fleet.state_dir)
    torn = path.read_text()
    said = refused_unchanged(fleet, *command)
    assert f"journal {path} is damaged (" in said
    assert "nothing was changed" in said
    assert f"Read what it still says, then move it aside (mv {path} {path}.damaged)" in said
    assert path.read_text() == torn         # left as it was, for the operator to read


def test_a_torn_journal_of_another_resource_refuses_nothing(fleet):
    torn_migrate_journal(fleet.state_dir, "vm3")
    code, _, stderr = football(fleet, "shrink", "vm2")
    assert code == 0, stderr


def test_once_the_damaged_journal_is_set_aside_the_operation_goes(fleet):
    path = torn_migrate_journal(fleet.state_dir)
    refused_unchanged(fleet, "shrink", "vm2")
    path.rename(f"{path}.damaged")
    code, _, stderr = football(fleet, "shrink", "vm2")
    assert code == 0, stderr


def test_a_torn_journal_keeps_its_resource_out_of_the_planners_moves(tmp_path):
    path = torn_migrate_journal(tmp_path)
    Journal(tmp_path, "shrink", "vm3").record("prepare")
    busy = unfinished_resources(tmp_path)
    assert sorted(busy) == ["vm2", "vm3"]
    assert str(path) in busy["vm2"] and "damaged" in busy["vm2"]
    (damaged, _) = unfinished_operations(tmp_path)
    assert (damaged["operation"], damaged["resource"]) == ("migrate", "vm2")
    assert "damaged" in damaged


@pytest.mark.parametrize("resource", [["vm2"], {"name": "vm2"}, 2])
def test_a_journal_whose_resource_is_not_a_name_is_damaged_not_a_crash(fleet, resource):
    journal = Journal(fleet.state_dir, "migrate", "vm2")
    journal.record("prepare", targets=["b1", "b2"])
    journal.path.write_text(json.dumps({**journal.data, "resource": resource}))
    busy = unfinished_resources(fleet.state_dir)
    assert list(busy) == ["vm2"] and "damaged" in busy["vm2"]
    with pytest.raises(Illegal, match="is damaged"):
        Journal(fleet.state_dir, "migrate", "vm2")
    assert f"journal {journal.path} is damaged" in refused_unchanged(fleet, "shrink", "vm2")


@pytest.mark.parametrize("name, told", [
    ("migrate-vm2.json", ("migrate", "vm2")),
    ("migrate-vm-2.json", ("migrate", "vm-2")),
    ("shrink-migrate-x.json", ("shrink", "migrate-x")),
    ("migrate+shrink-vm2.json", ("migrate+shrink", "vm2")),
    ("migrate+shrink+back-db-1.json", ("migrate+shrink+back", "db-1")),
    ("repair-mars-vm2.json", ("repair-mars", "vm2")),
    ("handover-vm2.example.json", ("handover", "vm2.example")),
    ("migrate-.json", ("?", "?")),
    ("notes.json", ("?", "?")),
    ("migrate-a b.json", ("?", "?")),
])
def test_a_damaged_journals_operation_and_resource_are_told_by_its_file_name(name, told):
    assert named_by(Path("/state/journal") / name) == told


def test_every_operation_that_keeps_a_journal_is_known_by_its_file_names():
    import importlib
    import inspect
    import pkgutil

    import football.ops
    from football.ops.base import Operation

    for module in pkgutil.iter_modules(football.ops.__path__):
        importlib.import_module(f"football.ops.{module.name}")
    pending, journaled = list(Operation.__subclasses__()), set()
    while pending:
        kind = pending.pop()
        pending.extend(kind.__subclasses__())
        if kind.operation and any("self.open_journal(" in inspect.getsource(cls)
                                  for cls in kind.__mro__ if cls is not Operation
                                  and issubclass(cls, Operation)):
            journaled.add(kind.operation)
    assert journaled and journaled <= set(OPERATIONS)


# --- a journal completed elsewhere, finished while a run here begins ----------------------

@pytest.fixture
def queue(tmp_path):
    """A jobs' database (SQLite in the state dir) holding one job `vm1`,
    done by a worker of another controller."""
    from football.config import Config
    from football.screener import JobSpec, JobStore

    state_dir = tmp_path / "state"
    config = Config(variables=[f"state_dir={state_dir}"])
    store = JobStore(config)
    [job_id] = store.queue([JobSpec("vm1", "migrate", ["b1", "b2"])], [])
    number = store.job(job_id)["number"]
    store.update(number, state="done", worker="ctl2-worker", finished=1234.5)
    yield state_dir, config, number
    store.close()


def stale_journal_of_job(state_dir, number, monkeypatch):
    """A migrate's journal of vm1 written by the run of job `number`, a
    process long gone; alive: the runs of this process (a run here)."""
    monkeypatch.setattr("football.journal.run_alive", lambda run: isinstance(run, dict)
                        and run.get("pid") == os.getpid())
    with monkeypatch.context() as job:
        job.setenv("FOOTBALL_JOB", str(number))
        journal = Journal(state_dir, "migrate", "vm1")
        journal.record("prepare")
    journal.data["run"]["pid"] = 2 ** 22 + 1          # no such process
    journal.path.write_text(json.dumps(journal.data))
    (state_dir / "journal" / "vm1.run").touch()       # its turn's file, released
    return journal.path


def test_a_journal_a_run_here_went_on_from_while_the_database_answered_is_kept(
        queue, monkeypatch):
    from football.joblink import completed_jobs

    state_dir, config, number = queue
    path = stale_journal_of_job(state_dir, number, monkeypatch)

    def completed_slowly(numbers):
        # meanwhile a new run of vm1 here goes on from the journal (its pid, alive)
        Journal(state_dir, "migrate", "vm1").record("wait")
        return completed_jobs(config)(numbers)

    (operation,) = unfinished_operations(state_dir, completed_slowly)
    assert operation["alive"] and operation["steps"] == ["prepare", "wait"]
    data = json.loads(path.read_text())
    assert data["run"]["pid"] == os.getpid() and "completed_elsewhere" not in data
    assert not path.with_suffix(".done").exists()


def test_a_journal_is_not_finished_while_another_run_holds_its_resources_turn(
        queue, monkeypatch):
    from football.joblink import completed_jobs

    state_dir, config, number = queue
    path = stale_journal_of_job(state_dir, number, monkeypatch)
    written = path.read_text()
    with open(state_dir / "journal" / "vm1.run", "a+") as turn:    # another run's turn
        fcntl.flock(turn, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert len(unfinished_operations(state_dir, completed_jobs(config))) == 1
        assert path.read_text() == written
    assert unfinished_operations(state_dir, completed_jobs(config)) == []   # its turn ended
    assert json.loads(path.with_suffix(".done").read_text())["completed_elsewhere"][
        "worker"] == "ctl2-worker"


def test_a_run_holding_the_resources_turn_itself_finishes_a_journal_completed_elsewhere(
        queue, monkeypatch):
    from football.joblink import completed_jobs
    from football.locks import one_run_at_a_time

    state_dir, config, number = queue
    path = stale_journal_of_job(state_dir, number, monkeypatch)
    with one_run_at_a_time(state_dir, "shrink", "vm1", config):
        assert unfinished_operations(state_dir, completed_jobs(config)) == []
    assert path.with_suffix(".done").exists()


def test_finishing_a_journal_completed_elsewhere_leaves_a_live_runs_temporary_file_alone(
        queue, monkeypatch):
    from football.joblink import completed_jobs

    state_dir, config, number = queue
    path = stale_journal_of_job(state_dir, number, monkeypatch)
    being_written = path.with_suffix(".tmp")                 # a live run's own write
    being_written.write_text('{"steps": ["prepare", "wa')
    assert unfinished_operations(state_dir, completed_jobs(config)) == []
    assert being_written.read_text() == '{"steps": ["prepare", "wa'
    assert sorted(name.name for name in path.parent.iterdir()) == \
        ["migrate-vm1.done", "migrate-vm1.tmp", "vm1.run"]

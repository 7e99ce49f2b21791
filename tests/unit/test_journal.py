"""The journal (football/journal.py): what an operation completed and
decided, durable across a crash, replaced atomically, set aside when the
operation finishes, and refused plainly when damaged."""

import json

import pytest

from football.errors import Illegal
from football.journal import Journal, JournalUnwritable


@pytest.fixture
def state_dir(tmp_path):
    return tmp_path / "state"


def journal_files(state_dir):
    return sorted(path.name for path in (state_dir / "journal").iterdir())


# --- recording -------------------------------------------------------------------------

def test_a_new_journal_has_no_steps_no_decisions_and_is_not_resumed(state_dir):
    journal = Journal(state_dir, "migrate", "vm1")
    assert (journal.resumed, journal.decided, journal.done("prepare")) == (False, {}, False)
    assert not journal.path.exists()


def test_the_journal_lives_under_the_state_dir_named_by_operation_and_resource(state_dir):
    assert Journal(state_dir, "migrate", "vm1").path == state_dir / "journal" / "migrate-vm1.json"


def test_record_marks_a_step_done_and_keeps_what_it_decided(state_dir):
    journal = Journal(state_dir, "migrate", "vm1")
    journal.record("prepare", full_syncs=1)
    assert journal.done("prepare") and not journal.done("wait")
    assert journal.decided == {"full_syncs": 1}


def test_recording_a_step_twice_lists_it_once(state_dir):
    journal = Journal(state_dir, "migrate", "vm1")
    journal.record("prepare")
    journal.record("prepare")
    assert journal.data["steps"] == ["prepare"]


def test_steps_are_kept_in_the_order_they_completed(state_dir):
    journal = Journal(state_dir, "migrate", "vm1")
    for step in ("prepare", "wait", "finish"):
        journal.record(step)
    assert journal.data["steps"] == ["prepare", "wait", "finish"]


def test_decide_keeps_decisions_without_completing_a_step(state_dir):
    journal = Journal(state_dir, "migrate", "vm1")
    journal.decide(targets=["b1", "b2"])
    journal.decide(origin=["a1", "a2"])
    journal.decide(targets=["b2", "b1"])
    assert journal.decided == {"targets": ["b2", "b1"], "origin": ["a1", "a2"]}
    assert journal.data["steps"] == []


def test_the_file_names_its_operation_and_resource(state_dir):
    journal = Journal(state_dir, "shrink", "vm1")
    journal.record("prepare")
    written = json.loads(journal.path.read_text())
    assert (written["operation"], written["resource"]) == ("shrink", "vm1")
    assert isinstance(written["started"], float)


def test_journals_of_other_operations_and_resources_are_separate(state_dir):
    Journal(state_dir, "migrate", "vm1").record("prepare", targets=["b1"])
    assert not Journal(state_dir, "migrate", "vm2").resumed
    assert not Journal(state_dir, "shrink", "vm1").resumed


# --- crashes ---------------------------------------------------------------------------

def test_a_run_after_a_crash_reads_every_step_and_decision_recorded(state_dir):
    crashed = Journal(state_dir, "migrate", "vm1")
    crashed.decide(targets=["b1", "b2"], origin=["a1", "a2"])
    crashed.record("prepare", full_syncs=2)
    del crashed                         # the process dies here; only the file remains
    resumed = Journal(state_dir, "migrate", "vm1")
    assert resumed.resumed
    assert resumed.done("prepare") and not resumed.done("wait")
    assert resumed.decided == {"targets": ["b1", "b2"], "origin": ["a1", "a2"], "full_syncs": 2}


def test_a_resumed_journal_keeps_recording_where_the_crashed_run_stopped(state_dir):
    Journal(state_dir, "migrate", "vm1").record("prepare")
    resumed = Journal(state_dir, "migrate", "vm1")
    resumed.record("wait")
    assert Journal(state_dir, "migrate", "vm1").data["steps"] == ["prepare", "wait"]


def test_writing_leaves_no_temporary_file_behind(state_dir):
    journal = Journal(state_dir, "migrate", "vm1")
    journal.record("prepare")
    journal.decide(targets=["b1"])
    assert journal_files(state_dir) == ["migrate-vm1.json"]


def test_a_half_written_temporary_file_from_a_crash_does_not_hurt(state_dir):
    Journal(state_dir, "migrate", "vm1").record("prepare", targets=["b1"])
    (state_dir / "journal" / "migrate-vm1.tmp").write_text('{"steps": ["prep')
    resumed = Journal(state_dir, "migrate", "vm1")
    assert resumed.done("prepare") and resumed.decided == {"targets": ["b1"]}
    resumed.record("wait")
    assert journal_files(state_dir) == ["migrate-vm1.json"]
    assert Journal(state_dir, "migrate", "vm1").data["steps"] == ["prepare", "wait"]


def test_a_crash_before_the_rename_leaves_the_previous_journal_whole(state_dir, monkeypatch):
    journal = Journal(state_dir, "migrate", "vm1")
    journal.record("prepare", targets=["b1"])

    def crash(*args):
        raise OSError("power lost")

    monkeypatch.setattr("football.journal.os.replace", crash)
    with pytest.raises(JournalUnwritable, match=r"cannot write the journal .*migrate-vm1.json: "
                       r"power lost; the migrate of vm1 stopped \(steps done: prepare, wait\)"):
        journal.record("wait", synced=True)
    monkeypatch.undo()
    survivor = Journal(state_dir, "migrate", "vm1")
    assert survivor.data["steps"] == ["prepare"]
    assert survivor.decided == {"targets": ["b1"]}


# --- finishing -------------------------------------------------------------------------

def test_finish_sets_the_journal_aside_so_the_next_run_starts_afresh(state_dir):
    journal = Journal(state_dir, "migrate", "vm1")
    journal.record("prepare", targets=["b1"])
    journal.finish()
    assert journal_files(state_dir) == ["migrate-vm1.done"]
    again = Journal(state_dir, "migrate", "vm1")
    assert (again.resumed, again.data["steps"], again.decided) == (False, [], {})


def test_the_finished_journal_keeps_its_steps_and_when_it_finished(state_dir):
    journal = Journal(state_dir, "migrate", "vm1")
    journal.record("prepare")
    journal.finish()
    done = json.loads((state_dir / "journal" / "migrate-vm1.done").read_text())
    assert done["steps"] == ["prepare"]
    assert done["finished"] >= done["started"]


def test_a_second_finished_run_replaces_the_first_ones_done_file(state_dir):
    for target in ("b1", "a1"):
        journal = Journal(state_dir, "migrate", "vm1")
        journal.record("prepare", targets=[target])
        journal.finish()
    done = json.loads((state_dir / "journal" / "migrate-vm1.done").read_text())
    assert done["decided"] == {"targets": ["a1"]}
    assert journal_files(state_dir) == ["migrate-vm1.done"]


def test_finishing_a_journal_that_never_recorded_anything_writes_nothing(state_dir):
    Journal(state_dir, "migrate", "vm1").finish()
    assert not (state_dir / "journal").exists()


# --- damage ----------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    '{"steps": ["prepare"], "decid',      # torn write by something other than Journal
    "",
    "\x00\x00\x00\x00",
    "[]",
    '{"steps": "prepare", "decided": {}}',
    '{"operation": "migrate"}',
])
def test_a_damaged_journal_is_refused_naming_it_and_saying_what_to_do(state_dir, text):
    path = state_dir / "journal" / "migrate-vm1.json"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    with pytest.raises(Illegal) as caught:
        Journal(state_dir, "migrate", "vm1")
    message = str(caught.value)
    assert message.startswith(f"journal {path} is damaged (")
    assert f"mv {path} {path}.damaged" in message
    assert "nothing was changed" in message
    assert path.read_text() == text         # left as it was, for the operator to read


def test_a_journal_that_is_not_utf8_is_refused_as_damaged(state_dir):
    path = state_dir / "journal" / "migrate-vm1.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(b'{"steps": ["\xff\xfe"]}')
    with pytest.raises(Illegal, match="is damaged"):
        Journal(state_dir, "migrate", "vm1")


def test_after_the_damaged_journal_is_moved_aside_the_run_starts_afresh(state_dir):
    path = state_dir / "journal" / "migrate-vm1.json"
    path.parent.mkdir(parents=True)
    path.write_text("garbage")
    with pytest.raises(Illegal):
        Journal(state_dir, "migrate", "vm1")
    path.rename(f"{path}.damaged")
    assert not Journal(state_dir, "migrate", "vm1").resumed


# --- a screener job's journal, completed by a later run elsewhere ------------------------

@pytest.fixture
def queue(state_dir):
    """A jobs' database (SQLite in the state dir) holding one job `vm1`."""
    from football.config import Config
    from football.screener import JobSpec, JobStore

    config = Config(variables=[f"state_dir={state_dir}"])
    store = JobStore(config)
    [job_id] = store.queue([JobSpec("vm1", "migrate", ["b1", "b2"])], [])
    yield config, store, store.job(job_id)["number"]
    store.close()


def journal_of_job(state_dir, number, monkeypatch, alive=False):
    """A migrate's journal written by the run of job `number` (of a pid
    that no process has, unless `alive`)."""
    monkeypatch.setenv("FOOTBALL_JOB", str(number))
    journal = Journal(state_dir, "migrate", "vm1")
    journal.record("prepare")
    if not alive:
        journal.data["run"]["pid"] = 2 ** 22 + 1          # no such process
        journal.path.write_text(json.dumps(journal.data))
    return journal


def test_a_journal_whose_job_another_worker_completed_is_finished_saying_by_whom(
        state_dir, queue, monkeypatch):
    from football.joblink import completed_jobs
    from football.journal import unfinished_operations

    config, store, number = queue
    journal_of_job(state_dir, number, monkeypatch)
    assert [op["operation"] for op in unfinished_operations(state_dir, completed_jobs(config))] \
        == ["migrate"]                                    # the job is not done yet
    store.update(number, state="done", worker="ctl2-worker", finished=1234.5)
    assert unfinished_operations(state_dir, completed_jobs(config)) == []
    assert journal_files(state_dir) == ["migrate-vm1.done"]
    done = json.loads((state_dir / "journal" / "migrate-vm1.done").read_text())
    assert done["completed_elsewhere"] == {"job": "vm1", "number": number,
                                           "worker": "ctl2-worker", "finished": 1234.5}
    assert done["steps"] == ["prepare"]


def test_a_journal_of_a_failed_job_restarted_and_done_elsewhere_is_finished(
        state_dir, queue, monkeypatch):
    from football.joblink import completed_jobs
    from football.journal import unfinished_operations

    config, store, number = queue
    journal_of_job(state_dir, number, monkeypatch)
    store.update(number, state="failed", exit_code=1)
    assert len(unfinished_operations(state_dir, completed_jobs(config))) == 1
    store.restart("vm1")
    again = store.job("vm1")["number"]
    assert again != number
    store.update(again, state="done", worker="ctl2-worker")
    assert unfinished_operations(state_dir, completed_jobs(config)) == []
    assert json.loads((state_dir / "journal" / "migrate-vm1.done").read_text())[
        "completed_elsewhere"]["number"] == again


def test_a_journal_is_kept_while_its_run_lives_without_a_job_or_without_the_database(
        state_dir, queue, monkeypatch, tmp_path):
    from football.config import Config
    from football.joblink import completed_jobs
    from football.journal import unfinished_operations

    config, store, number = queue
    store.update(number, state="done")
    journal_of_job(state_dir, number, monkeypatch, alive=True)
    with monkeypatch.context() as running:       # as a football process that still runs
        running.setattr("football.journal.run_alive", lambda run: True)
        assert len(unfinished_operations(state_dir, completed_jobs(config))) == 1
    monkeypatch.delenv("FOOTBALL_JOB")
    Journal(state_dir, "shrink", "vm2").record("prepare")              # no job
    elsewhere = Config(variables=[f"state_dir={tmp_path / 'no-database'}"])
    journal_of_job(state_dir, number, monkeypatch)
    assert [op["operation"] for op in unfinished_operations(state_dir, completed_jobs(
        elsewhere))] == ["migrate", "shrink"]
    assert not (tmp_path / "no-database").exists()       # reading created no database
    assert [op["operation"] for op in unfinished_operations(state_dir, completed_jobs(
        config))] == ["shrink"]


# --- a screener job's journal, kept with the job ------------------------------------------

class JobsJournals:
    """What `Journal` is given as `shared` (a JobLink): a dict; `failing`
    makes every call raise, as a database that does not answer."""

    def __init__(self):
        self.kept, self.failing = {}, False

    def _answer(self):
        if self.failing:
            raise OSError("the jobs' database does not answer")

    def journal(self, name):
        self._answer()
        return json.loads(json.dumps(self.kept[name])) if name in self.kept else None

    def share_journal(self, name, data):
        self._answer()
        self.kept[name] = json.loads(json.dumps(data))

    def drop_journal(self, name):
        self._answer()
        self.kept.pop(name, None)


def test_a_jobs_journal_is_kept_with_the_job_and_another_controller_goes_on_from_it(tmp_path):
    job = JobsJournals()
    first = Journal(tmp_path / "ctl1", "migrate", "vm1", shared=job)
    first.record("prepare", targets=["b1", "b2"])
    first.record("wait")
    assert job.kept["migrate-vm1"]["steps"] == ["prepare", "wait"]
    assert job.kept["migrate-vm1"]["writes"] == 2
    other = Journal(tmp_path / "ctl2", "migrate", "vm1", shared=job)
    assert (other.resumed, other.taken_from_the_job) == (True, True)
    assert (other.data["steps"], other.decided) == (["prepare", "wait"], {"targets": ["b1", "b2"]})
    assert json.loads(other.path.read_text())["steps"] == ["prepare", "wait"]     # its own now
    other.record("finish")
    again = Journal(tmp_path / "ctl2", "migrate", "vm1", shared=job)
    assert (again.resumed, again.taken_from_the_job) == (True, False)            # its own file
    other.finish()
    assert "migrate-vm1" not in job.kept
    assert (tmp_path / "ctl2" / "journal" / "migrate-vm1.done").exists()


def test_the_journal_written_more_often_wins_between_a_controllers_own_and_the_jobs(tmp_path):
    job = JobsJournals()
    first = Journal(tmp_path / "ctl1", "shrink", "vm1", shared=job)
    first.record("prepare")
    other = Journal(tmp_path / "ctl2", "shrink", "vm1", shared=job)
    other.record("finish")                  # the job went on elsewhere
    stale = Journal(tmp_path / "ctl1", "shrink", "vm1", shared=job)
    assert (stale.data["steps"], stale.taken_from_the_job) == (["prepare", "finish"], True)
    job.kept["shrink-vm1"]["writes"] = 0    # the job's copy older than this one's
    own = Journal(tmp_path / "ctl1", "shrink", "vm1", shared=job)
    assert (own.data["steps"], own.taken_from_the_job) == (["prepare", "finish"], False)


def test_a_jobs_database_that_does_not_answer_is_said_once_and_the_run_goes_on(tmp_path):
    job, told = JobsJournals(), []
    job.failing = True
    journal = Journal(tmp_path / "ctl1", "migrate", "vm1", shared=job)
    assert not journal.resumed
    journal.on_unshared = told.append
    journal.record("prepare")
    journal.record("wait")
    assert json.loads(journal.path.read_text())["steps"] == ["prepare", "wait"]
    assert len(told) == 1 and "does not answer" in str(told[0])
    journal.finish()
    assert len(told) == 1


def test_forgetting_a_run_that_changed_nothing_drops_the_jobs_copy_too(tmp_path):
    job = JobsJournals()
    journal = Journal(tmp_path / "ctl1", "migrate", "vm1", shared=job)
    journal.record("checked")
    journal.forget()
    assert not journal.path.exists() and job.kept == {}


def test_a_jobs_journals_live_in_the_jobs_database_by_its_id_across_a_restart_until_purged(
        state_dir, queue):
    from football.joblink import JobLink

    config, store, number = queue
    link = JobLink(config, number)
    Journal(state_dir, "migrate", "vm1", shared=link).record("prepare", targets=["b1"])
    assert link.journal("migrate-vm1")["decided"] == {"targets": ["b1"]}
    assert link.journal("shrink-vm1") is None
    store.update(number, state="failed", exit_code=1)
    store.restart("vm1")                     # a new row of the same job: it goes on
    again = JobLink(config, store.job("vm1")["number"])
    assert again.journal("migrate-vm1")["steps"] == ["prepare"]
    again.share_journal("migrate-vm1", {"steps": ["prepare", "wait"], "decided": {},
                                        "writes": 2})
    assert link.journal("migrate-vm1")["writes"] == 2       # one row, updated
    store.update(store.job("vm1")["number"], state="failed", exit_code=1, finished=1.0)
    assert store.archive(finished_before=2.0) == ["vm1"]
    assert again.journal("migrate-vm1") is None            # a later job of vm1 starts afresh
    link.close()
    again.close()

"""Housekeeping (football/housekeeping.py) removes finished journals
(`.done`) after `history_days`, but not those of a resource with a journal
that is not finished: a combined run reads its stages' (`shrink-<res>.done`)
to tell a stage that completed just before a crash from one to run again."""

import json

from football.housekeeping import housekeep
from tests.unit.test_housekeeping import NOW, config_of, old_file


def test_finished_journals_of_a_resource_with_an_unfinished_combined_run_stay(tmp_path):
    state = tmp_path / "controller"
    combined = old_file(state / "journal" / "migrate+shrink-vm1.json", json.dumps(
        {"operation": "migrate+shrink", "resource": "vm1", "steps": ["migrate"],
         "decided": {"shrink_started": NOW - 401 * 86400}}))
    stays = [combined,
             old_file(state / "journal" / "shrink-vm1.done",
                      json.dumps({"finished": NOW - 400 * 86400})),
             old_file(state / "journal" / "migrate-vm1.done"),
             # a journal that cannot be read counts as unfinished too
             old_file(state / "journal" / "expand-vm2.json", "{torn"),
             old_file(state / "journal" / "migrate-vm2.done")]
    gone = [old_file(state / "journal" / "shrink-vm3.done"),
            old_file(state / "journal" / "migrate+shrink-vm3.done")]
    kept = housekeep(config_of(state), now=NOW)
    assert [path.name for path in stays if not path.exists()] == []
    assert [path.name for path in gone if path.exists()] == []
    assert kept.journals == 2

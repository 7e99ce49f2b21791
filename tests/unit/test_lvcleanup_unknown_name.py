"""`football lv-cleanup NAME` removes only what Football's resources left:
NAME must be, or have been, a MARS resource (MARS metadata of any host, or
a journal of this controller names it; a shrink's `<res>-tmp` /
`<res>-preshrink` by its resource). An LV of another name (the operator's
`backup`) is refused, naming where it was found, unless `force`."""

import os

from football.ops.lvcleanup import LvCleanup
from tests.helpers.fakefleet import fake_fleet, football

fleet = fake_fleet

EXIT_ILLEGAL = 191


def make_lv(fleet, name, lv, size=64 << 20):
    host = fleet.hosts[name]
    fleet.run(name, ["football-host", "vg", host.path(f"/dev/{host.vg}"), "create", lv,
                     str(size)])


def test_an_lv_of_a_name_no_mars_resource_ever_had_is_refused_and_stays(fleet):
    make_lv(fleet, "a1", "backup")
    make_lv(fleet, "b2", "backup")
    before = len(fleet.changes())
    code, _, stderr = football(fleet, "lv-cleanup", "backup", "--do-it")
    assert code == EXIT_ILLEGAL, stderr
    assert "backup" in fleet.lvs("a1") and "backup" in fleet.lvs("b2")
    assert [argv for _, argv in fleet.changes()[before:] if "lock" not in argv] == []
    text = " ".join(stderr.split())
    assert "no MARS resource" in text and "vg0/backup on a1, vg0/backup on b2" in text and "--force" in text
    assert "nothing was changed" in text
    code, _, stderr = football(fleet, "lv-cleanup", "backup")     # the listing too
    assert code == EXIT_ILLEGAL and "no MARS resource" in stderr, stderr


def test_forced_an_unknown_names_lv_goes(fleet, monkeypatch):
    # (the CLI's `--force` passes force=True; here it is put in its place)
    make_lv(fleet, "a1", "backup")
    made = []
    original = LvCleanup.__init__

    def forced(self, ctx, res, do_it=False, force=False):
        made.append(res)
        original(self, ctx, res, do_it, force=True)
    monkeypatch.setattr(LvCleanup, "__init__", forced)
    code, _, stderr = football(fleet, "lv-cleanup", "backup", "--do-it")
    assert code == 0, stderr
    assert made == ["backup"] and "backup" not in fleet.lvs("a1")


def test_a_leftover_of_a_resource_mars_knows_still_goes_without_force(fleet):
    make_lv(fleet, "b1", "vm1")         # vm1 is a MARS resource (a1, a2); b1 is no member
    code, _, stderr = football(fleet, "lv-cleanup", "vm1", "--do-it")
    assert code == 0, stderr
    assert "vm1" not in fleet.lvs("b1") and "vm1" in fleet.lvs("a1")


def test_a_leftover_of_a_resource_only_a_finished_journal_names_goes(fleet):
    make_lv(fleet, "b1", "gone")
    journal = fleet.state_dir + "/journal"
    os.makedirs(journal, exist_ok=True)
    with open(f"{journal}/migrate-gone.done", "w") as handle:
        handle.write('{"operation": "migrate", "resource": "gone", "steps": [], '
                     '"decided": {}}')
    code, _, stderr = football(fleet, "lv-cleanup", "gone", "--do-it")
    assert code == 0, stderr
    assert "gone" not in fleet.lvs("b1")


def test_a_shrinks_lv_of_a_known_resource_goes_without_force(fleet):
    make_lv(fleet, "b1", "vm1-preshrink")
    code, _, stderr = football(fleet, "lv-cleanup", "vm1-preshrink", "--do-it")
    assert code == 0, stderr
    assert "vm1-preshrink" not in fleet.lvs("b1")

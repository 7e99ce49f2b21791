"""repair-vm's stop of a copy on a host without a replica: where the stop
failed and whether it still runs can then not be read, it is not taken
for stopped (a second copy started beside it)."""

from tests.helpers.fakefleet import fake_fleet, football
from tests.helpers.cutoff_fleet import failed_over_while_cut_off

fleet = fake_fleet


def test_repair_vm_starts_nothing_where_the_stray_copy_cannot_be_told_stopped(
        fleet, monkeypatch):
    new = failed_over_while_cut_off(fleet)
    fleet.containers[new]["vm1"] = "STOPPED"
    answer = fleet.run
    stop_tried = []

    def run(host, argv, input=None):
        argv = tuple(argv)
        if host == "a1" and argv[:2] == ("football-host", "ct") and "stop" in argv:
            stop_tried.append(argv)
        if host == "a1" and stop_tried and argv[:2] == ("football-host", "ct"):
            from football.transport import Result
            return Result(host=host, argv=argv, exit_code=255, stdout="",
                          stderr="ssh: connect to host a1: Connection timed out")
        return answer(host, argv, input=input)
    monkeypatch.setattr(fleet, "run", run)
    code, _, stderr = football(fleet, "repair-vm", "vm1", new)
    assert stop_tried, stderr
    assert code != 0, stderr
    assert fleet.running("vm1") == ["a1"], "started beside a copy not known stopped"
    assert "a1" in stderr and "vm1" in stderr, stderr

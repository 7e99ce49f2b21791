"""The log follower's bookkeeping, without a source: what it counts as
still to fetch when it cannot list the source's log."""

from types import SimpleNamespace

import pytest
import trio

from mars.errors import PeerError
from mars.follow import LogFollower
from mars.keys import LOG_END_NAME, actual_name, replay_name, todo_name


def test_a_secondary_that_cannot_list_its_sources_log_counts_what_the_metadata_says_it_has(
        tmp_path):
    """b's fetch connection to a fails (only it: the metadata still comes):
    its fetch-rest kept counting from a's log as b last listed it — all
    fetched, 0 — while a logged on. A failover then read b as holding all
    of a's log, and said "nothing lost". It counts up to a's log's end as
    a's metadata tells it (`actual-a/log-end`)."""
    reports = {}
    (tmp_path / "log-000000001-a").write_bytes(bytes(4096))     # fetched so far
    metadata = {replay_name("b"): "log-000000001-a,4096,4096",
                actual_name("a", LOG_END_NAME): "log-000000001-a,1052672",
                todo_name("b", "allow-replay"): "0"}

    async def refused(*args, **kwargs):
        raise PeerError("a: fetch connection refused")

    worker = SimpleNamespace(
        res="vm1", host="b", dir=str(tmp_path),
        channels=SimpleNamespace(request=refused),
        switch=lambda state, name: metadata.get(todo_name("b", name), "1") == "1",
        report=reports.update, waiting_for=lambda why: None,
        metrics=SimpleNamespace(lag=SimpleNamespace(
            labels=lambda res: SimpleNamespace(set=lambda value: None))))
    state = SimpleNamespace(resource_value=lambda res, name, default=None:
                            metadata.get(name, default))
    follower = LogFollower(worker)
    follower.remote = {"log-000000001-a": 4096}         # its last listing: all fetched
    with pytest.raises(PeerError, match="refused"):
        trio.run(follower.follow, state, "a")
    assert reports["fetch_rest"] == 1052672 - 4096


def _replaying_follower(tmp_path, host, logfile, cut, monkeypatch):
    """A follower on `host` whose copy of `logfile` holds one record and a
    part of the next (`cut` bytes of it); replay from its start, with the
    partial record's search (`LogScan._is_tail`) counted."""
    from mars.logfile import HEADER, LogScan
    from tests.unit.conftest import write_log
    written = write_log(tmp_path / logfile, [(0, b"a" * 4096), (4096, b"b" * 4096)])
    (tmp_path / logfile).write_bytes(
        (tmp_path / logfile).read_bytes()[:written[1].position + HEADER.size + cut])
    disk = tmp_path / "disk"
    disk.write_bytes(bytes(16384))
    searched = []
    search = LogScan._is_tail
    monkeypatch.setattr(LogScan, "_is_tail",
                        lambda scan, *args: searched.append(scan.position) or search(scan, *args))
    reports = {}
    state = SimpleNamespace(resource_value=lambda res, name, default=None: default,
                            disk=lambda res: str(disk))
    worker = SimpleNamespace(
        res="vm1", host=host, dir=tmp_path, state=lambda: state, report=reports.update,
        rates={"replay": SimpleNamespace(add=lambda count: None)},
        metrics=SimpleNamespace(replayed=SimpleNamespace(
            labels=lambda res: SimpleNamespace(inc=lambda count: None))),
        write=lambda values: None)
    follower = LogFollower(worker)
    trio.run(follower._replay, state)
    return follower, disk, searched, reports


def test_replay_of_a_copy_still_being_fetched_does_not_search_the_partial_record(
        tmp_path, monkeypatch):
    """b replays a's logfile as it comes: each step ends inside a record
    whose rest has not come yet. Searching that rest for a valid record
    after it cost 6 % of b's CPU under a sequential writer."""
    follower, disk, searched, reports = _replaying_follower(
        tmp_path, "b", "log-000000001-a", 1000, monkeypatch)
    assert follower.cursor.position > 0 and disk.read_bytes()[:4096] == b"a" * 4096
    assert searched == [] and reports.get("damage") is None


def test_replay_of_its_own_logfile_still_searches_a_record_cut_short(tmp_path, monkeypatch):
    """This host's own logfile (it was primary) comes from nowhere: a
    record cut short there is a torn tail only if nothing valid follows."""
    follower, disk, searched, _ = _replaying_follower(
        tmp_path, "b", "log-000000001-b", 1000, monkeypatch)
    assert searched == [follower.cursor.position]

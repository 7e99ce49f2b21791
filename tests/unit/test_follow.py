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

"""A store whose own wall clock is far behind refuses its peers' tuples as
"ahead": the warning must not blame the peer's clock alone."""

import logging
import time

from mars.store import MAX_STAMP_AHEAD_NS, Store


def test_the_refusal_of_tuples_ahead_names_this_hosts_clock_too(tmp_path, caplog):
    behind = time.time_ns() - 2 * MAX_STAMP_AHEAD_NS
    store = Store(tmp_path / "meta.db", "h2", wall=lambda: behind)
    right = time.time_ns()
    with caplog.at_level(logging.WARNING, logger="mars.store"):
        changed = store.apply([("ips/ip-h1", "127.0.0.31", right, "h1")], from_peer=True)
    assert changed == []
    said = " ".join(record.getMessage() for record in caplog.records)
    assert "refused tuples of h1" in said, said
    assert "this host's" in said.split("is wrong")[0].split("ahead of this host's clock")[-1], said

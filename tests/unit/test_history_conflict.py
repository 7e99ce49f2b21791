"""Split brain as the metadata shows it (mars.history.history_conflict), and
the final version a new primary replays up to (`final_version`).

Histories are built with the real version chain (`version_value`): h1 wrote
logfiles 1 and 2 and closed them; h2 replayed them."""

import pytest

from mars import history
from mars.history import history_conflict, own_versions_below
from mars.keys import ClusterState
from mars.replay import version_value

LOG1, LOG2 = "log-000000001-h1", "log-000000002-h1"
V1 = version_value("", LOG1, 300, [b"a" * 20, b"b" * 20])
V2 = version_value(V1, LOG2, 500, [b"c" * 20])


def snapshot(extra=None, members=("h1", "h2"), local="h1"):
    values = {"resource-vm1/size": "1048576", "resource-vm1/primary": "h1"}
    for host in members:
        values[f"resource-vm1/data-{host}"] = "/dev/vg/vm1"
        values[f"ips/ip-{host}"] = "127.0.0.1"
    values.update({f"resource-vm1/{key}": value for key, value in (extra or {}).items()})
    return ClusterState(values, local)


def agreeing():
    """h1 closed logfiles 1 and 2 and writes logfile 3; h2 replayed 1 and is in 2."""
    return {"version-1-h1": V1, "version-2-h1": V2, "version-1-h2": V1,
            "replay-h1": "log-000000003-h1,40,40", "replay-h2": f"{LOG2},120,500"}


def conflict(extra, members=("h1", "h2")):
    state = snapshot(extra, members)
    return history_conflict(state, "vm1", state.members("vm1"))


def test_the_version_values_chain_their_predecessor():
    assert V1.split(":", 1)[1] == ""
    assert V2.split(":", 1)[1] == V1.split(":", 1)[0]
    assert V2.split(":", 1)[0].split(",")[1:] == [LOG2, "500"]


def test_an_agreeing_history_is_no_conflict():
    assert conflict(agreeing()) is None


def test_no_metadata_at_all_is_no_conflict():
    assert conflict({}) is None


def test_a_cursor_exactly_at_a_closed_logfiles_end_is_no_conflict():
    assert conflict({**agreeing(), "replay-h2": f"{LOG1},300,300"}) is None


def test_two_logfiles_with_one_number_in_the_versions_are_a_split_brain():
    forked = version_value(V1, "log-000000002-h2", 400, [b"d" * 20])
    reason = conflict({**agreeing(), "version-2-h2": forked})
    assert reason == "logfiles log-000000002-h1, log-000000002-h2 share number 2"


def test_two_logfiles_with_one_number_in_the_replay_cursors_are_a_split_brain():
    reason = conflict({**agreeing(), "replay-h2": "log-000000003-h2,10,10"})
    assert reason == "logfiles log-000000003-h1, log-000000003-h2 share number 3"


def test_a_cursor_naming_another_origins_logfile_than_a_version_is_a_split_brain():
    reason = conflict({"version-2-h1": V2, "replay-h2": "log-000000002-h2,0,0"})
    assert reason == "logfiles log-000000002-h1, log-000000002-h2 share number 2"


def test_cursors_of_hosts_that_are_not_members_are_not_considered():
    extra = {**agreeing(), "replay-h3": "log-000000003-h3,10,10"}
    state = snapshot(extra)
    assert history_conflict(state, "vm1", ["h1", "h2"]) is None
    assert history_conflict(state, "vm1", ["h1", "h2", "h3"]) is not None


def test_two_different_versions_of_one_logfile_are_a_split_brain():
    other = version_value("", LOG1, 300, [b"a" * 20, b"X" * 20])
    reason = conflict({**agreeing(), "version-1-h2": other})
    assert reason == f"hosts h1, h2 hold different versions of {LOG1}"


def test_the_same_logfile_closed_at_different_ends_is_a_split_brain():
    shorter = version_value("", LOG1, 200, [b"a" * 20])
    reason = conflict({**agreeing(), "version-1-h2": shorter})
    assert reason == f"hosts h1, h2 hold different versions of {LOG1}"


def test_a_cursor_beyond_a_closed_logfiles_end_is_a_split_brain():
    reason = conflict({**agreeing(), "replay-h2": f"{LOG1},400,400"})
    assert reason == f"h2 replayed {LOG1} to 400, beyond its end 300 as h1 closed it"


@pytest.mark.parametrize("extra", [
    {"version-1-h2": "garbage"},
    {"version-1-h2": "abc,not-a-log,12:"},
    {"replay-h2": "garbage"},
    {"replay-h2": "junk,1,2"},
    {"version-7": V1},                      # no host part at all
])
def test_malformed_versions_and_cursors_are_ignored(extra):
    assert conflict({**agreeing(), **extra}) is None


# Host names may contain dashes (`[a-z][-a-z0-9]*`): the host of a
# `version-<nr>-<host>` key is everything after the number.
def test_different_versions_of_hosts_whose_names_end_alike_are_a_split_brain():
    """Regression: `db-a` and `web-a` were both taken for host `a`, so one
    version hid the other and the fork went unnoticed."""
    other = version_value("", LOG1, 300, [b"X" * 20])
    reason = conflict({"version-1-db-a": V1, "version-1-web-a": other},
                      members=("db-a", "web-a"))
    assert reason == f"hosts db-a, web-a hold different versions of {LOG1}"


def test_a_cursor_beyond_the_end_names_the_dashed_host_that_closed_the_logfile():
    reason = conflict({"version-1-db-a": V1, "replay-web-a": f"{LOG1},301,301"},
                      members=("db-a", "web-a"))
    assert reason == f"web-a replayed {LOG1} to 301, beyond its end 300 as db-a closed it"


# ---------------------------------------------------------- final version
def final_version(extra, members=("h1", "h2")):
    return history.final_version(snapshot(extra, members), "vm1")


def test_the_final_version_is_the_newest_logfile_its_origin_closed():
    assert final_version(agreeing()) == (LOG2, 500, "h1")


def test_versions_written_by_a_replaying_host_do_not_count_as_closing():
    v3 = version_value(V2, "log-000000003-h1", 900, [])
    assert final_version({**agreeing(), "version-3-h2": v3}) == (LOG2, 500, "h1")


def test_no_closed_logfile_means_no_final_version():
    assert final_version({"replay-h1": "log-000000001-h1,0,0"}) is None


def test_the_final_version_of_an_origin_with_a_dashed_name():
    """Regression: for origin `db-a` the key's host was read as `a`, so the
    new primary found no final version and did not replay up to it."""
    log = "log-000000001-db-a"
    version = version_value("", log, 700, [b"e" * 20])
    assert final_version({"version-1-db-a": version}, members=("db-a", "web-a")) == (log, 700, "db-a")


def test_pruning_takes_only_this_hosts_own_versions_by_the_whole_host_name():
    names = ["version-1-a", "version-2-a", "version-9-a", "version-1-db-a", "version-2-b",
             "version-x-a", "replay-a", "version-3-a-b"]
    assert sorted(own_versions_below(names, "a", 5)) == ["version-1-a", "version-2-a"]
    assert own_versions_below(names, "db-a", 5) == ["version-1-db-a"]
    assert own_versions_below(names, "b", 5) == ["version-2-b"]


def test_a_logfile_its_origin_never_closed_ends_where_the_host_that_took_over_ended_it():
    """h1 died in logfile 2; h2 took over by force, ended logfile 2 at 450
    when its device came up (version-2-h2) and logs in logfile 3: a third
    replica moves on from logfile 2 at that end (it waited for h1's
    version, which never comes). h1's own version, where there is one,
    still counts first."""
    taken_over = version_value(V1, LOG2, 450, [b"c" * 20])
    state = snapshot({"version-1-h1": V1, "version-2-h2": taken_over}, ("h1", "h2", "h3"))
    assert history.closed_end(state, "vm1", LOG2) is None
    assert history.closed_end(state, "vm1", LOG2, successor="h2") == (450, taken_over)
    assert history.closed_end(state, "vm1", LOG2, successor="h3") is None
    closed = snapshot({**agreeing(), "version-2-h2": taken_over}, ("h1", "h2", "h3"))
    assert history.closed_end(closed, "vm1", LOG2, successor="h2") == (500, V2)

"""`football screener purge` takes ages in days that are numbers, 0 or
more: nan (PostgreSQL orders NaN above every number: `finished <= NaN`
took every job; SQLite reads it as NULL: none) and inf are refused with
191, nothing archived or deleted."""

import json

import pytest

from football.config import Config
from football.errors import Illegal
from football.screener import JobStore, purge_before
from tests.helpers.jobs import refused
from tests.unit.test_screener import finished, screener, scripted, state_dir  # noqa: F401


@pytest.mark.parametrize("option", ["--days", "--forget"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN", "-1"])
def test_purge_refuses_an_age_that_is_no_finite_number_of_days_with_191(
        state_dir, option, value):  # noqa: F811
    code, out, err = screener(state_dir, "purge", option, value)
    assert code == 191 and refused(out), (out, err)


@pytest.mark.parametrize("ages", [("--days", "nan"), ("--days", "0", "--forget", "nan")])
def test_a_refused_purge_archives_nothing(state_dir, scripted, ages):  # noqa: F811
    """Also where --days is a good age and --forget not: the jobs were
    archived, then --forget refused."""
    assert screener(state_dir, "start", "handover", "vm1", "a2")[0] == 0
    finished(state_dir, "vm1")
    assert screener(state_dir, "purge", *ages)[0] == 191
    code, out, _ = screener(state_dir, "list")
    assert code == 0 and [json.loads(line)["id"] for line in out.splitlines()] == ["vm1"]


@pytest.mark.parametrize("when", [float("nan"), float("inf"), float("-inf")])
def test_the_store_archives_and_deletes_no_jobs_by_a_time_that_is_no_number(
        state_dir, when):  # noqa: F811
    store = JobStore(Config(variables=[f"state_dir={state_dir}"], environ={}))
    try:
        with pytest.raises(Illegal, match="not a time; nothing was archived"):
            store.archive(when)
        with pytest.raises(Illegal, match="not a time; nothing was deleted"):
            store.forget(when)
    finally:
        store.close()


@pytest.mark.parametrize("days", [float("nan"), float("inf"), -1.0])
def test_purge_before_names_the_option_of_an_age_that_is_no_number_of_days(days):
    with pytest.raises(Illegal, match=r"^--forget .*: not a number of days \(0 or more, "
                                      r"finite\); nothing was archived or deleted$"):
        purge_before(days, "--forget")
    assert purge_before(1.5, "--days", now=200000.0) == 200000.0 - 1.5 * 86400

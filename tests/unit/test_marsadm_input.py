"""Bad global options are refused at once (exit 2, naming the option),
not taken for a value that changes what a command does."""

import pytest


@pytest.mark.parametrize("option", ["--timeout=nan", "--window=nan", "--timeout=NaN"])
def test_a_timeout_or_window_that_is_not_a_number_is_refused(scenario, option):
    """NaN passed click's float: every comparison with it is false, so as
    --timeout a wait never ended (silently), as --window no host was alive."""
    result = scenario.host.run(option, "view-is-alive", "vm1")
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert option.split("=")[0] in result.stderr and "not a number" in result.stderr
    assert result.stdout == ""


def test_minus_one_still_waits_forever_and_other_timeouts_still_parse(scenario):
    for option in ("--timeout=-1", "--timeout=0", "--timeout=inf", "--window=0.5"):
        assert scenario.host.ok(option, "view-get-primary", "vm1") == "h1\n"


def test_a_refused_delete_names_the_way_to_remove_a_host_that_is_down(scenario):
    """h2, a member of vm1, is down: `leave-resource` on it cannot run. A
    forced delete would leave its keys until it is back: a new vm1 is
    refused meanwhile, or, forced, counts h2 as a member with the old data."""
    h1 = scenario.host
    before = h1.tuples()
    result = h1.run("delete-resource", "vm1")
    assert result.exit_code == 1
    assert "for one that is down, here: marsadm --host=<it> leave-resource --force vm1" \
        in result.stderr, result.stderr
    assert h1.tuples() == before
    h1.ok("--host=h2", "leave-resource", "--force", "vm1")          # the way it names
    assert h1.ok("view-resource-members", "vm1") == "h1\n"

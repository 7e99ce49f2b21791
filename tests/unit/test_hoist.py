"""Global options may stand anywhere on the marsadm command line."""

import pytest

from mars.marsadm import hoist_global_options, main


@pytest.mark.parametrize("argv, hoisted", [
    (["view-get-primary", "vm1", "--timeout=5"], ["--timeout=5", "view-get-primary", "vm1"]),
    (["view-get-primary", "vm1", "--timeout", "5"],
     ["--timeout", "5", "view-get-primary", "vm1"]),
    (["leave-resource", "--force", "vm1"], ["--force", "leave-resource", "vm1"]),
    (["primary", "vm1", "--ignore-sync", "--dry-run"],
     ["--ignore-sync", "--dry-run", "primary", "vm1"]),
    (["create-cluster", "--host", "h2", "--ip=127.0.0.2"],
     ["--host", "h2", "--ip=127.0.0.2", "create-cluster"]),
    (["join-cluster", "h1", "10.0.0.1", "--ip", "10.0.0.2", "--window=30"],
     ["--ip", "10.0.0.2", "--window=30", "join-cluster", "h1", "10.0.0.1"]),
    (["wait-cluster", "--timeout", "-1"], ["--timeout", "-1", "wait-cluster"]),
])
def test_options_after_the_subcommand_are_moved_to_the_front(argv, hoisted):
    assert hoist_global_options(argv) == hoisted


def test_options_already_in_front_and_their_order_are_kept():
    argv = ["--timeout=5", "--force", "view-get-primary", "vm1"]
    assert hoist_global_options(argv) == argv


def test_the_value_of_a_separate_option_is_not_mistaken_for_a_subcommand_argument():
    assert hoist_global_options(["--host", "view-tree", "view-tree"]) == [
        "--host", "view-tree", "view-tree"]


def test_subcommand_options_and_arguments_stay_behind_the_subcommand():
    argv = ["view-tree", "--stamps"]
    assert hoist_global_options(argv) == argv
    assert hoist_global_options(["view-tree", "--stamps", "--force"]) == [
        "--force", "view-tree", "--stamps"]


def test_an_option_that_only_starts_like_a_global_one_is_not_hoisted():
    argv = ["view-tree", "--forced", "--hosts=3"]
    assert hoist_global_options(argv) == argv


def test_main_accepts_global_options_after_the_subcommand(make_host, monkeypatch, capsys):
    h1 = make_host("h1")
    monkeypatch.setenv("MARS_ROOT", str(h1.root))
    monkeypatch.delenv("MARS_HOST", raising=False)
    with pytest.raises(SystemExit) as done:
        main(["create-cluster", "--host", "h1", "--ip=127.0.0.1"])
    assert done.value.code == 0
    with pytest.raises(SystemExit) as done:
        main(["lowlevel-ls-host-ips", "--timeout", "5", "--host=h1"])
    assert done.value.code == 0
    assert capsys.readouterr().out == "h1 127.0.0.1\n"


@pytest.mark.parametrize("window", ["-5", "0"])
def test_a_liveness_window_not_above_zero_is_a_usage_error(h1, window):
    """With it every peer counted as dead (a typo's minus sign)."""
    result = h1.run(f"--window={window}", "view", "all")
    assert result.exit_code == 2 and "Invalid value for '--window'" in result.output, \
        result.output

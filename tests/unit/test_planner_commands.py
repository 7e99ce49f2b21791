"""`football score`, `balance --plan` and `evacuate --plan` end to end on
the fake fleet: three containers on cluster1, cluster2 empty."""

import json

import pytest

from tests.helpers.fakefleet import fake_fleet, football, report_of

fleet = fake_fleet


@pytest.fixture
def crowded(fleet):
    """vm1, vm2, vm3 primary on a1, replicated to a2; cluster2 empty."""
    for res in ("vm2", "vm3"):
        fleet.create_resource(res, "a1", ["a2"])
    fleet.calls.clear()
    return fleet


def test_score_shows_the_score_each_term_and_each_hosts_fractions(crowded):
    report = report_of(crowded, "score")
    assert set(report["terms"]) >= {"free_vg", "free_memory", "containers", "cpu_load",
                                    "no_secondary"}
    assert report["score"] == pytest.approx(sum(report["terms"].values()))
    assert report["score"] > 0.1
    assert report["hosts"]["a1"]["container_count"] == 3
    assert report["hosts"]["b1"]["container_count"] == 0
    assert not crowded.changes()


def test_balance_plan_moves_containers_to_the_empty_cluster_and_saves_the_plan(crowded):
    plan = report_of(crowded, "balance", "--plan")
    assert plan["kind"] == "balance" and plan["moves"]
    assert plan["score_after"] < plan["score_before"]
    targets = {host for move in plan["moves"] for host in move["to"]}
    assert targets & {"b1", "b2"}
    for move in plan["moves"]:
        assert move["gain"] > 0
        assert move["command"][:2] in (["migrate", move["resource"]],
                                       ["handover", move["resource"]])
        if move["kind"] == "migrate":
            assert move["sync_bytes"] == (320 << 20) * len(set(move["to"]) - set(move["from"]))
    saved = json.loads(open(plan["path"]).read())
    assert saved["id"] == plan["id"] and saved["moves"] == plan["moves"]
    assert not crowded.changes()        # a plan changes no host


def test_balance_plan_leaves_the_pinned_resources_where_they_are(crowded):
    plan = report_of(crowded, "--var", "balance_pinned=vm1:vm3", "balance", "--plan")
    assert {move["resource"] for move in plan["moves"]} == {"vm2"}
    assert plan["held"] == {"vm1": "pinned (balance_pinned vm1)",
                            "vm3": "pinned (balance_pinned vm3)"}


def test_balance_plan_without_json_prints_the_moves_and_the_scores(crowded):
    from click.testing import CliRunner
    from football.cli import cli
    result = CliRunner().invoke(cli, ["--inventory", crowded.inventory_path,
                                      "--var", f"state_dir={crowded.state_dir}",
                                      "balance", "--plan"])
    assert result.exit_code == 0, result.output
    assert "balance plan balance-" in result.output and "score " in result.output
    assert "vm" in result.output and "->" in result.output


def test_balance_plan_holds_a_resource_with_an_unfinished_operation(crowded):
    """Its move would be refused (an operation of another kind over an
    unfinished one): the plan does not move it and says why."""
    from tests.helpers.fakefleet import football
    code, _, stderr = football(crowded, "--debug-injection-point", "wait:synced",
                               "migrate", "vm2", "b1", "b2")
    assert code == 1, stderr
    plan = report_of(crowded, "balance", "--plan")
    assert dict(plan["held"])["vm2"] == "an unfinished migrate (football status vm2)"
    assert "vm2" not in {move["resource"] for move in plan["moves"]}

def test_a_printed_plan_counts_its_moves_in_words_that_agree():
    import io
    from rich.console import Console
    from football.ops.planning import render_plan
    move = {"resource": "vm1", "kind": "migrate", "from": ["b1", "b2"], "to": ["a1", "a2"],
            "gain": 19.5, "sync_bytes": 2 << 30}
    for moves, words in (([], "0 moves, 0.0 GiB"), ([move], "1 move, 2.0 GiB"),
                         ([move, move], "2 moves, 4.0 GiB")):
        out = io.StringIO()
        render_plan({"kind": "evacuate", "id": "evacuate-1", "moves": moves, "score_before": 20.0,
                     "score_after": 0.5, "sync_bytes": sum(m["sync_bytes"] for m in moves),
                     "path": "/plans/evacuate-1.json", "expires": 0},
                    Console(file=out, width=200))
        assert f"score 20.0000 -> 0.5000; {words} to sync" in out.getvalue()


def test_a_plan_with_nothing_to_move_says_why_instead_of_an_empty_table():
    import io
    from rich.console import Console
    from football.ops.planning import render_plan
    for kind, hosts, score_before, why in (
            ("balance", [], 0.25, "no move within the hard limits gains enough"),
            ("balance", [], 0.0, "the fleet is balanced"),
            ("evacuate", ["a2"], 0.25, "no primary or replica is on a2")):
        out = io.StringIO()
        render_plan({"kind": kind, "id": f"{kind}-1", "hosts": hosts, "moves": [],
                     "score_before": score_before, "score_after": score_before,
                     "sync_bytes": 0, "path": f"/plans/{kind}-1.json", "expires": 0},
                    Console(file=out, width=200))
        text = out.getvalue()
        assert f"{kind} plan {kind}-1: nothing to move ({why}" in text, text
        assert "━" not in text and "0 moves" in text, text      # no table
    out = io.StringIO()
    render_plan({"kind": "balance", "id": "balance-2", "hosts": [], "moves": [],
                 "score_before": 0.5, "score_after": 0.5, "sync_bytes": 0, "expires": 0,
                 "path": "/plans/balance-2.json",
                 "held": {"vm1": "moved within cooldown (until 2026-12-06 20:31)",
                          "vm2": "a job runs for it"}}, Console(file=out, width=300))
    assert ("gain_per_tib; not moved now: vm1 moved within cooldown (until 2026-12-06 20:31); "
            "vm2 a job runs for it)") in out.getvalue(), out.getvalue()


def test_evacuate_plan_finds_a_place_off_the_host_for_every_replica(crowded):
    plan = report_of(crowded, "evacuate", "a1", "--plan")
    assert plan["kind"] == "evacuate" and plan["hosts"] == ["a1"]
    assert sorted(move["resource"] for move in plan["moves"]) == ["vm1", "vm2", "vm3"]
    assert all("a1" not in move["to"] for move in plan["moves"])
    assert not crowded.changes()


@pytest.mark.parametrize("args, message", [
    (["evacuate", "x9", "--plan"], "unknown host or cluster 'x9'"),
    (["evacuate", "a1", "--plan", "--execute"], "choose one of --plan and --execute"),
    (["restore", "x9"], "unknown host 'x9'"),
    (["balance", "run", "it"], "balance takes `execute PLAN-ID`"),
    (["balance", "execute", "balance-nothing"], "no plan 'balance-nothing'"),
    (["balance", "--plan", "--execute"], "choose one of"),
])
def test_bad_input_is_one_line_and_exit_191(crowded, args, message):
    code, _, err = football(crowded, *args)
    assert code == 191
    assert message in err and len(err.strip().splitlines()) == 1
    assert not crowded.changes()

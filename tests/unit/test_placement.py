"""Where migrate puts a resource (Migrate._place on a FleetSnapshot,
snapshot.rank_targets) and when it may start a sync (_wait_for_sync_slot),
with a fake inventory, fake storage hooks and recorded `marsadm` answers: no
host is contacted.

Placement in a cluster: enough VG space first, then the fewest other
resources, then where the resource is now (the source, then a host with a
replica), then the name; hosts that cannot be asked come last."""

import io
import json
from types import SimpleNamespace

import pytest

from football import facts
from football.config import Config
from football.errors import Illegal
from football.inventory import parse
from football.journal import Journal
from football.ops.base import Context, TimedOut
from football.ops.migrate import Migrate
from football.report import Reporter
from football.transport import Unreachable
from tests.helpers.fakehost import FakeRunner

GIB = 1 << 30

FLEET = {
    "clusters": {"cluster1": ["a1", "a2"], "cluster2": ["b1", "b2", "b3"], "cluster3": ["c1"]},
    "hosts": {name: {"address": f"192.0.2.{number}"}
              for number, name in enumerate(["a1", "a2", "b1", "b2", "b3", "c1", "d1"], 11)},
}


class FakeStorage:
    """The storage hooks placement asks: LVs and free space per host; a host
    in `down` cannot be asked."""

    def __init__(self):
        self.lvs, self.free, self.down = {}, {}, set()

    def _ask(self, host):
        if host.name in self.down:
            raise Unreachable(f"{host.name}: connection refused")

    def lv_list(self, host):
        self._ask(host)
        return self.lvs.get(host.name, {})

    def vg_free(self, host):
        self._ask(host)
        return self.free.get(host.name, 100 * GIB)


@pytest.fixture
def storage():
    return FakeStorage()


@pytest.fixture
def inventory():
    inventory = parse(FLEET, "fleet.yml")
    for host in inventory.hosts.values():
        host._runner = FakeRunner(host.name)
    return inventory


@pytest.fixture
def events():
    return io.StringIO()


@pytest.fixture
def make_migrate(inventory, storage, events):
    def make(target, secondary=None, res="vm1", source="a1", size=10 * GIB, **settings):
        config = Config(variables=[f"{name}={value}" for name, value in settings.items()],
                        environ={})
        ctx = Context(inventory=inventory, config=config, hooks=storage,
                      reporter=Reporter(as_json=True, stream=events))
        migrate = Migrate(ctx, res, target, secondary)
        migrate.source, migrate.size = inventory.host(source), size     # as discover() does
        return migrate
    return make


VIEW_ALL = ["marsadm", "--timeout=30", "view", "all"]


def host_state(runner, state):
    runner.expect(["football-host", "lifecycle", "/var/lib/football", "get"],
                  stdout=json.dumps({"state": state, "since": 0, "by": "", "origins": {}}))


def resources_on(inventory, states=None, **per_host):
    """Each host answers what a snapshot asks once: its MARS cluster, its
    resources (`marsadm view all`: synced secondaries) and its lifecycle
    state (`states`: host -> state, default active)."""
    for name, resources in per_host.items():
        runner = inventory.host(name).runner
        runner.expect(["marsadm", "lowlevel-ls-host-ips"], stdout=f"{name} 192.0.2.1\n")
        runner.expect(VIEW_ALL, stdout="".join(
            f"{res} [2/2] UpToDate Replicating DCASFR Secondary a1\n" for res in resources))
        host_state(runner, (states or {}).get(name, "active"))


class Down:
    def run(self, argv, **options):
        raise Unreachable("connection refused")


def placed(migrate):
    return [host.name for host in migrate._place()]


def no_pending(inventory):
    return {name: host.runner.pending for name, host in inventory.hosts.items()
            if host.runner.pending}


# --- a cluster target ------------------------------------------------------------------

def test_a_cluster_target_picks_the_two_hosts_with_the_fewest_resources(
        make_migrate, inventory, storage):
    resources_on(inventory, b1=["vm7", "vm8", "vm9"], b2=["vm5"], b3=[])
    assert placed(make_migrate("cluster2")) == ["b3", "b2"]
    assert no_pending(inventory) == {}


def test_draining_and_evacuated_hosts_are_never_placed_even_when_they_are_emptiest(
        make_migrate, inventory):
    resources_on(inventory, {"b2": "draining", "b3": "evacuated"},
                 b1=["vm5", "vm6", "vm7"], b2=[], b3=[])
    assert placed(make_migrate("cluster2")) == ["b1"]
    assert no_pending(inventory) == {}


def test_a_host_being_restored_is_placed_as_an_active_one(make_migrate, inventory):
    resources_on(inventory, {"b2": "restoring"}, b1=["vm5", "vm6"], b2=[], b3=["vm7"])
    assert placed(make_migrate("cluster2")) == ["b2", "b3"]


def test_a_cluster_whose_hosts_all_drain_is_refused_with_191(make_migrate, inventory):
    resources_on(inventory, {"b1": "draining", "b2": "draining", "b3": "evacuated"},
                 b1=[], b2=[], b3=[])
    with pytest.raises(Illegal, match="every host of cluster cluster2 is draining or evacuated"):
        placed(make_migrate("cluster2"))


def test_an_explicit_target_that_is_draining_is_refused_naming_it_and_restore(
        make_migrate, inventory):
    migrate = make_migrate("b1", "b2")
    migrate.targets = migrate._place()
    host_state(inventory.host("b1").runner, "active")
    host_state(inventory.host("b2").runner, "draining")
    with pytest.raises(Illegal, match=r"b2 is draining: .*football restore b2"):
        migrate._refuse_hosts_placement_refuses()
    assert no_pending(inventory) == {}


def test_enough_space_comes_before_fewer_resources(make_migrate, inventory, storage):
    storage.free.update(b1=100 * GIB, b2=9 * GIB, b3=10 * GIB)
    resources_on(inventory, b1=["vm7", "vm8", "vm9"], b2=[], b3=["vm5"])
    assert placed(make_migrate("cluster2", size=10 * GIB)) == ["b3", "b1"]


def test_space_kept_free_by_placement_min_free_counts_as_not_enough(
        make_migrate, inventory, storage):
    storage.free.update(b1=11 * GIB, b2=12 * GIB, b3=100 * GIB)
    resources_on(inventory, b1=[], b2=["vm5"], b3=["vm5", "vm6"])
    migrate = make_migrate("cluster2", size=10 * GIB, placement_min_free=2 * GIB)
    assert placed(migrate) == ["b2", "b3"]


def test_a_host_that_already_has_the_lv_has_enough_space_whatever_is_free(
        make_migrate, inventory, storage):
    storage.free.update(b1=0, b2=0, b3=0)
    storage.lvs["b2"] = {"vm1": 10 * GIB}
    resources_on(inventory, b1=[], b2=["vm1", "vm5"], b3=[])
    assert placed(make_migrate("cluster2"))[0] == "b2"


def test_the_resource_itself_does_not_count_among_a_hosts_resources(
        make_migrate, inventory, storage):
    storage.lvs["b2"] = {"vm1": 10 * GIB}
    resources_on(inventory, b1=["vm5"], b2=["vm1"], b3=["vm5", "vm6"])
    assert placed(make_migrate("cluster2")) == ["b2", "b1"]


def test_on_equal_counts_the_current_source_comes_first_then_a_replica_then_the_name(
        make_migrate, inventory, storage):
    storage.lvs["b3"] = {"vm1": 10 * GIB}
    resources_on(inventory, b1=["vm5"], b2=["vm6"], b3=["vm1", "vm7"])
    assert placed(make_migrate("cluster2", source="b2")) == ["b2", "b3"]


def test_on_equal_counts_without_a_replica_the_name_decides(make_migrate, inventory):
    resources_on(inventory, b1=["vm5"], b2=["vm6"], b3=["vm7"])
    assert placed(make_migrate("cluster2")) == ["b1", "b2"]


def test_a_host_that_cannot_be_asked_comes_last_even_after_hosts_without_space(
        make_migrate, inventory, storage):
    storage.free.update(b1=1 * GIB)
    storage.down.add("b2")
    inventory.host("b2")._runner = Down()
    resources_on(inventory, b1=["vm5"], b3=["vm5", "vm6", "vm7"])
    migrate = make_migrate("cluster2")
    assert placed(migrate) == ["b3", "b1"]


def test_a_host_whose_storage_hook_fails_comes_last_as_an_unreachable_one(
        make_migrate, inventory, storage):
    def broken(host):
        if host.name == "b1":
            raise Illegal(f"{host.name}: vgs failed")
        return 100 * GIB

    storage.vg_free = broken
    resources_on(inventory, b1=[], b2=["vm5"], b3=["vm5", "vm6"])
    assert placed(make_migrate("cluster2")) == ["b2", "b3"]


def test_a_host_whose_marsadm_fails_is_placed_last_as_an_unreachable_one(
        make_migrate, inventory):
    """A failed `view all` is not 'no resources' (facts.py): the host
    cannot tell, and what cannot tell comes last."""
    runner = inventory.host("b1").runner
    runner.expect(["marsadm", "lowlevel-ls-host-ips"], stdout="b1 192.0.2.13\n")
    runner.expect(VIEW_ALL, exit=1, stderr="marsadm: marsd not answering\n")
    host_state(runner, "active")
    resources_on(inventory, b2=["vm5"], b3=["vm6"])
    assert placed(make_migrate("cluster2")) == ["b2", "b3"]


def test_a_cluster_of_one_host_gives_one_target(make_migrate, inventory):
    resources_on(inventory, c1=["vm5"])
    assert placed(make_migrate("cluster3")) == ["c1"]


def test_placing_in_a_cluster_changes_nothing_on_any_host(make_migrate, inventory):
    resources_on(inventory, b1=[], b2=[], b3=[])
    make_migrate("cluster2")._place()
    commands = {call for host in inventory.hosts.values() for call in host.runner.calls}
    assert commands == {("marsadm", "lowlevel-ls-host-ips"), tuple(VIEW_ALL),
                        ("football-host", "lifecycle", "/var/lib/football", "get")}


# --- a host target ---------------------------------------------------------------------

def test_a_host_target_is_the_primary_alone_and_no_host_is_asked(make_migrate, inventory):
    assert placed(make_migrate("b2")) == ["b2"]
    assert all(host.runner.calls == [] for host in inventory.hosts.values())


def test_a_host_target_with_a_secondary_gives_both_in_that_order(make_migrate):
    assert placed(make_migrate("b2", "c1")) == ["b2", "c1"]


def test_a_host_in_no_cluster_is_a_target(make_migrate):
    assert placed(make_migrate("d1")) == ["d1"]


def test_a_secondary_equal_to_the_primary_is_refused(make_migrate):
    with pytest.raises(Illegal, match="the target secondary must differ from the target "
                                      "primary"):
        make_migrate("b2", "b2")._place()


def test_an_unknown_target_is_refused_listing_the_hosts_and_clusters(make_migrate):
    with pytest.raises(Illegal) as caught:
        make_migrate("cluster9")._place()
    assert str(caught.value) == ("unknown host or cluster 'cluster9'; hosts: a1, a2, b1, b2, "
                                 "b3, c1, d1; clusters: cluster1, cluster2, cluster3")
    assert caught.value.exit_code == 191


def test_an_unknown_secondary_is_refused_listing_the_hosts(make_migrate):
    with pytest.raises(Illegal, match=r"unknown host 'zz' \(inventory fleet.yml: hosts are "
                                      r"a1, a2, b1, b2, b3, c1, d1\)"):
        make_migrate("b2", "zz")._place()


# --- the sync limit --------------------------------------------------------------------

class Clock:
    """Monotonic time for wait_until that moves only when it sleeps."""

    def __init__(self):
        self.now, self.sleeps = 0.0, []

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr("football.ops.base.time",
                        SimpleNamespace(monotonic=clock.monotonic, sleep=clock.sleep))
    return clock


@pytest.fixture
def syncs(monkeypatch):
    """What `marsadm view-sync-rest all` and the intents say on the target,
    one answer per poll (the last one repeats); records what was asked."""
    state = SimpleNamespace(rests=[{}], intents=[set()], asked=[])

    def view_all(host, macro, timeout=60):
        state.asked.append((host.name, macro))
        return state.rests.pop(0) if len(state.rests) > 1 else state.rests[0]

    def live_intents(host, config, except_res=None):
        state.asked.append((host.name, "intents", except_res))
        return state.intents.pop(0) if len(state.intents) > 1 else state.intents[0]

    monkeypatch.setattr(facts, "view_all", view_all)
    monkeypatch.setattr("football.ops.migrate.live_intents", live_intents)
    return state


def said(events):
    return [line for line in events.getvalue().splitlines() if '"message"' in line]


def polls(syncs):
    return syncs.asked.count(("b1", "sync-rest"))


def test_under_the_limit_the_sync_starts_at_once(make_migrate, inventory, syncs, clock, events):
    syncs.rests = [{"vm5": "1048576", "vm6": "0", "vm7": ""}]
    syncs.intents = [{"vm8"}]
    make_migrate("b1", limit_syncs=3)._wait_for_sync_slot(inventory.host("b1"))
    assert clock.sleeps == [] and said(events) == []
    assert syncs.asked == [("b1", "sync-rest"), ("b1", "intents", "vm1")]


def test_running_syncs_and_intents_together_reach_the_limit(
        make_migrate, inventory, syncs, clock, events):
    syncs.rests = [{"vm5": "1048576", "vm6": "4096"}, {"vm5": "0", "vm6": "4096"}]
    syncs.intents = [{"vm7"}]
    make_migrate("b1", limit_syncs=3)._wait_for_sync_slot(inventory.host("b1"))
    assert polls(syncs) == 2
    assert len(said(events)) == 1
    assert "b1: waiting for a sync slot on b1 (limit_syncs 3; taken: vm5 running, vm6 " \
        "running, vm7 planned); a planned slot stays taken" in said(events)[0]


def test_a_resource_both_syncing_and_intended_counts_once(make_migrate, inventory, syncs, clock):
    syncs.rests = [{"vm5": "1048576"}]
    syncs.intents = [{"vm5"}]
    make_migrate("b1", limit_syncs=2)._wait_for_sync_slot(inventory.host("b1"))
    assert clock.sleeps == []


def test_the_resource_being_migrated_does_not_count_against_its_own_slot(
        make_migrate, inventory, syncs, clock):
    syncs.rests = [{"vm1": "1048576", "vm5": "1048576"}]   # a resumed run: vm1 already syncs
    make_migrate("b1", limit_syncs=2)._wait_for_sync_slot(inventory.host("b1"))
    assert clock.sleeps == []


def test_it_waits_while_the_limit_is_reached_and_starts_when_a_slot_frees(
        make_migrate, inventory, syncs, clock):
    busy = {"vm5": "1048576", "vm6": "1048576"}
    syncs.rests = [busy, busy, busy, {"vm5": "1048576", "vm6": "0"}]
    make_migrate("b1", limit_syncs=2)._wait_for_sync_slot(inventory.host("b1"))
    assert polls(syncs) == 4
    assert clock.sleeps == [1.0, 1.0]


def test_it_polls_at_least_a_second_apart_or_at_poll_interval_if_longer(
        make_migrate, inventory, syncs, clock):
    busy = {"vm5": "1048576"}
    syncs.rests = [busy, busy, busy, {}]
    make_migrate("b1", limit_syncs=1, poll_interval=5)._wait_for_sync_slot(inventory.host("b1"))
    assert clock.sleeps == [5.0, 5.0]


def test_intents_alone_can_fill_the_slots(make_migrate, inventory, syncs, clock):
    syncs.intents = [{"vm5", "vm6"}, {"vm5", "vm6"}, {"vm5"}]
    make_migrate("b1", limit_syncs=2)._wait_for_sync_slot(inventory.host("b1"))
    assert polls(syncs) == 3


def test_a_slot_that_never_frees_is_refused_after_sync_timeout_naming_the_host(
        make_migrate, inventory, syncs, clock):
    """Before the run changed anything: 191, nothing changed."""
    syncs.rests = [{"vm5": "1048576"}]
    migrate = make_migrate("b1", limit_syncs=1, sync_timeout=10)
    with pytest.raises(Illegal, match=r"no sync slot on b1 came free within sync_timeout 10 s "
                       r"\(limit_syncs 1; taken: vm5 running\); this run changed nothing"):
        migrate._wait_for_sync_slot(inventory.host("b1"))
    assert 10 <= clock.now <= 12


def test_a_slot_that_never_frees_after_a_first_join_times_out_as_a_failure(
        make_migrate, inventory, syncs, clock, tmp_path):
    """A replica joined already (the first target's): the run changed
    something, its re-run goes on from there."""
    syncs.rests = [{"vm5": "1048576"}]
    migrate = make_migrate("b1", limit_syncs=1, sync_timeout=10)
    migrate.journal = Journal(tmp_path, "migrate", "vm1")
    migrate.journal.decide(joined=["b2"])
    with pytest.raises(TimedOut, match="timed out after 10 s waiting for a sync slot on b1"):
        migrate._wait_for_sync_slot(inventory.host("b1"))


# --- on a snapshot alone ---------------------------------------------------------------

def snapshot_of(**hosts):
    """A FleetSnapshot of hosts given as name=(vg_free, [resources]); None: unreachable."""
    from football.snapshot import FleetSnapshot, HostView, Replica
    views, replicas = {}, []
    for name, spec in hosts.items():
        if spec is None:
            views[name] = HostView(name, "c", "192.0.2.1", error="unreachable")
            continue
        free, resources = spec
        views[name] = HostView(name, "c", "192.0.2.1", reachable=True, vg_free=free,
                               lvs={res: GIB for res in resources})
        replicas += [Replica(res, name, "Secondary", "UpToDate", "Replicating", "DCASFR", "x1",
                             0, GIB) for res in resources]
    return FleetSnapshot(views, tuple(replicas))


def test_ranking_on_a_snapshot_needs_no_host():
    from football.snapshot import rank_targets
    snapshot = snapshot_of(h1=(50 * GIB, ["vm5", "vm6"]), h2=(50 * GIB, ["vm5"]),
                           h3=(GIB, []), h4=None, h5=(0, ["vm1", "vm5"]))
    ranked = rank_targets(snapshot, ["h1", "h2", "h3", "h4", "h5"], "vm1", 10 * GIB,
                          source="h9", min_free=0)
    # room first (h5 holds vm1's LV already), then the fewest others (vm1 itself does
    # not count: h5 and h2 have one), then a replica before none, unreachable last
    assert ranked == ["h5", "h2", "h1", "h3", "h4"]


def test_a_snapshot_answers_members_primary_and_resources_per_host():
    snapshot = snapshot_of(h1=(GIB, ["vm1", "vm2"]), h2=(GIB, ["vm1"]), h3=None)
    assert snapshot.members("vm1") == ["h1", "h2"] and snapshot.members("vm9") == []
    assert snapshot.primary("vm1") == "x1" and snapshot.primary("vm9") == ""
    assert snapshot.resources_on("h1") == ["vm1", "vm2"] and snapshot.resources_on("h3") == []

"""The planner's fleet model: read from the hosts (the fake fleet), and
what a move changes in it."""

import io

import pytest

from football.config import Config
from football.errors import FootballError
from football.hooks import Hooks
from football.ops.base import Context
from football.planner.fleet import Fleet, FleetHost, Resource
from football.planner.observe import parse_df_used, parse_host_load, read_fleet
from football.report import Reporter
from tests.helpers.fakefleet import FakeLoad, fake_fleet

GIB = 1 << 30
fleet = fake_fleet


def context_of(fleet):
    config = Config(variables=[f"state_dir={fleet.state_dir}"], environ={})
    hooks = Hooks(config=config)
    hooks.apply_host_layout(fleet.inventory)
    return Context(inventory=fleet.inventory, config=config, hooks=hooks,
                   reporter=Reporter(as_json=True, stream=io.StringIO()))


def test_host_load_is_parsed_from_proc_meminfo_loadavg_and_stat():
    text = ("MemTotal:       16384 kB\nMemFree:  100 kB\nMemAvailable:    4096 kB\n"
            "0.10 0.20 1.50 2/300 4000\ncpu  1 2 3\ncpu0 1 2 3\ncpu1 1 2 3\nintr 5\n")
    assert parse_host_load(text) == {"mem_total": 16 << 20, "mem_free": 4 << 20,
                                     "load": 1.5, "cpus": 2}
    assert parse_host_load("") == {"mem_total": None, "mem_free": None, "load": None,
                                   "cpus": None}


def test_df_used_keeps_only_the_mountpoints_asked():
    text = "Used Mounted on\n123 /var/lib/lxc/vm1\n999 /\n"
    assert parse_df_used(text, {"/var/lib/lxc/vm1", "/var/lib/lxc/vm2"}) == {
        "/var/lib/lxc/vm1": 123}


def test_read_fleet_reads_replicas_vg_memory_load_and_inventory_attributes(fleet):
    fleet.inventory.hosts["a1"].failure_domain = "rack1"
    fleet.inventory.hosts["a1"].max_containers = 14
    fleet.load["a1"] = FakeLoad(mem_total=8 * GIB, mem_free=2 * GIB, load=3.0, cpus=8)
    fleet.create_resource("vm2", "b1", ["b2"], size=640 << 20)
    model = read_fleet(context_of(fleet))
    a1 = model.hosts["a1"]
    assert (a1.cluster, a1.failure_domain, a1.max_containers, a1.lifecycle) == (
        "cluster1", "rack1", 14, "active")
    assert (a1.mem_total, a1.mem_free, a1.load, a1.cpus) == (8 * GIB, 2 * GIB, 3.0, 8)
    assert a1.vg_size == 4 * GIB and a1.vg_free == 4 * GIB - (320 << 20)
    vm1, vm2 = model.resources["vm1"], model.resources["vm2"]
    assert (vm1.primary, vm1.secondaries, vm1.lv_size, vm1.used) == (
        "a1", ("a2",), 320 << 20, 100 << 20)
    # the only container on a1 carries all of a1's used memory and load
    assert (vm1.memory, vm1.load) == (6 * GIB, 3.0)
    assert (vm2.primary, vm2.secondaries, vm2.lv_size) == ("b1", ("b2",), 640 << 20)
    assert model.containers == {"a1": 1, "a2": 0, "b1": 1, "b2": 0}


def test_a_host_whose_state_cannot_be_read_is_no_target_of_moves(fleet, monkeypatch):
    """An unread state (the host did not answer for a moment, or its
    football-host could not tell) was read as active: a draining host got
    moves planned onto it. It is "unknown" now, and takes none."""
    from football import lifecycle
    from football.planner import Settings
    from football.planner.moves import refusal
    real = lifecycle.read

    def read(host):
        if host.name == "b2":
            raise FootballError("b2: football-host: no such command lifecycle")
        return real(host)
    monkeypatch.setattr(lifecycle, "read", read)
    model = read_fleet(context_of(fleet))
    assert (model.hosts["b2"].lifecycle, model.hosts["b2"].accepts) == ("unknown", False)
    assert model.hosts["b1"].lifecycle == "active"
    assert refusal(model, "vm1", ("b1", "b2"), Settings()) == \
        "b2's state (active, draining, ...) could not be read"


def test_a_host_whose_proc_cannot_be_read_has_unknown_memory_and_load(fleet, monkeypatch):
    from tests.helpers.fakefleet import Refused
    answer = fleet._cat

    def cat(name, args, input=None):
        if name == "a2":
            raise Refused("cat: /proc/meminfo: Permission denied")
        return answer(name, args, input)

    monkeypatch.setattr(fleet, "_cat", cat)
    model = read_fleet(context_of(fleet))
    a2 = model.hosts["a2"]
    assert (a2.mem_total, a2.mem_free, a2.load, a2.cpus) == (None, None, None, None)
    assert a2.reachable and model.hosts["a1"].mem_total == 8 * GIB


def test_a_fleet_after_a_migrate_moves_the_lv_space_and_the_container():
    hosts = {name: FleetHost(name, cluster=name[0], vg_size=100 * GIB, vg_free=50 * GIB,
                             mem_total=64 * GIB, mem_free=32 * GIB, cpus=8, load=4.0)
             for name in ("a1", "a2", "b1", "b2")}
    fleet = Fleet(hosts, {"vm1": Resource("vm1", "a1", ("a2",), lv_size=10 * GIB,
                                          memory=4 * GIB, load=1.0)})
    moved = fleet.after("vm1", ("b1", "b2"))
    assert [moved.hosts[name].vg_free for name in ("a1", "a2", "b1", "b2")] == [
        60 * GIB, 60 * GIB, 40 * GIB, 40 * GIB]
    assert (moved.hosts["a1"].mem_free, moved.hosts["a1"].load) == (36 * GIB, 3.0)
    assert (moved.hosts["b1"].mem_free, moved.hosts["b1"].load) == (28 * GIB, 5.0)
    assert moved.containers == {"a1": 0, "a2": 0, "b1": 1, "b2": 0}
    assert moved.resources["vm1"].replicas == ("b1", "b2")
    assert fleet.resources["vm1"].replicas == ("a1", "a2")     # a value: unchanged


def test_a_handover_moves_the_container_but_no_space():
    hosts = {name: FleetHost(name, vg_size=100 * GIB, vg_free=50 * GIB) for name in ("a1", "a2")}
    fleet = Fleet(hosts, {"vm1": Resource("vm1", "a1", ("a2",), lv_size=10 * GIB)})
    moved = fleet.after("vm1", ("a2", "a1"))
    assert [moved.hosts[name].vg_free for name in ("a1", "a2")] == [50 * GIB, 50 * GIB]
    assert moved.containers == {"a1": 0, "a2": 1}


@pytest.mark.parametrize("limit, expected", [(0, 2), (14, 14)])
def test_a_hosts_container_fraction_is_of_max_containers_else_the_fleets_most(limit, expected):
    hosts = {"a1": FleetHost("a1", max_containers=limit or None), "a2": FleetHost("a2")}
    fleet = Fleet(hosts, {f"vm{n}": Resource(f"vm{n}", "a2") for n in range(2)})
    assert fleet.capacity("a2") == expected


def inventory_with(**settings):
    from football.inventory import parse
    return parse({"hosts": {"a1": {"address": "192.0.2.11", **settings}}}, "fleet.yml")


def test_the_inventory_gives_a_host_a_failure_domain_and_max_containers():
    host = inventory_with(failure_domain="rack7", max_containers=14).hosts["a1"]
    assert (host.failure_domain, host.max_containers) == ("rack7", 14)
    assert (inventory_with().hosts["a1"].failure_domain,
            inventory_with().hosts["a1"].max_containers) == ("", 0)


@pytest.mark.parametrize("settings, message", [
    ({"max_containers": -1}, "max_containers must be a whole number >= 0"),
    ({"max_containers": "many"}, "max_containers must be a whole number >= 0"),
    ({"failure_domain": ["rack1"]}, "failure_domain must be a name"),
])
def test_a_wrong_planner_attribute_in_the_inventory_is_refused(settings, message):
    from football.inventory import InventoryError
    with pytest.raises(InventoryError, match=message):
        inventory_with(**settings)

"""The documented example of a production fleet (inventory/example-fleet.yml)
parses, says what production needs, and mentions every host setting there is."""

import ipaddress
import re
from pathlib import Path

import pytest

from football.inventory import HOST_FIELDS, load

EXAMPLE = Path(__file__).parents[2] / "inventory" / "example-fleet.yml"
DOCUMENTATION_RANGE = ipaddress.ip_network("192.0.2.0/24")


@pytest.fixture(scope="module")
def fleet():
    return load(EXAMPLE)


def test_the_example_fleet_parses_into_clusters_of_hosts(fleet):
    assert len(fleet.clusters) >= 2
    assert all(len(members) >= 2 for members in fleet.clusters.values())
    for cluster, members in fleet.clusters.items():
        assert all(fleet.cluster_of(name) == cluster for name in members)


def test_every_example_address_is_from_the_documentation_range(fleet):
    for host in fleet.hosts.values():
        assert ipaddress.ip_address(host.address) in DOCUMENTATION_RANGE, host.name


def test_example_hosts_are_production_hosts_reached_over_ssh(fleet):
    for host in fleet.hosts.values():
        assert (host.storage, host.manager, host.container, host.transport, host.root) == (
            "lvm", "systemd", "lxc", "ssh", "/"), host.name
        assert host.host_key_check in ("strict", "accept-new"), host.name


def test_a_hosts_own_settings_win_over_the_example_defaults(fleet):
    default, own = fleet.host("fra1-hv01"), fleet.host("ber1-hv02")
    assert (default.port, default.lxcpath, default.host_key_check) == (
        22, "/var/lib/lxc", "strict")
    assert (own.port, own.lxcpath, own.host_key_check) == (2222, "/srv/lxc", "accept-new")
    assert (fleet.host("fra2-hv01").stripes, fleet.host("fra2-hv01").stripe_size) == (2, "64k")


@pytest.mark.parametrize("setting", sorted(HOST_FIELDS))
def test_the_example_explains_every_host_setting(setting):
    # a setting added to the inventory without a word in the example fails here
    assert re.search(rf"[`\s{{]{setting}[`:]", EXAMPLE.read_text()), setting

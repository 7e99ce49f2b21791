"""The inventory (football/inventory.py): hosts with their clusters and
defaults, the paths of a host with a root, every mistake an inventory can
make, and the shipped lab inventory."""

from pathlib import Path

import pytest
import yaml

from football import lab
from football.inventory import HOST_DEFAULTS, Host, InventoryError, load, parse
from football.ssh import SSHTransport
from football.transport import DEFAULT_CONNECT_TIMEOUT, LocalTransport

LAB_INVENTORY = Path(__file__).parents[2] / "inventory" / "lab.yml"

GOOD = """\
defaults:
  vg: vg1
  manager: lab
clusters:
  cluster1: [a1, a2]
  cluster2: [b1]
hosts:
  a1: {address: 10.0.0.11}
  a2: {address: 10.0.0.12, vg: vgfast, port: 2222}
  b1: {address: 10.0.0.21, storage: filevg}
  lonely: {address: 10.0.0.99}
demo:
  resource: vm1
  primary: a1
  secondary: a2
"""


@pytest.fixture
def inventory_file(tmp_path):
    def write(text):
        path = tmp_path / "inventory.yml"
        path.write_text(text)
        return path
    return write


def good():
    return yaml.safe_load(GOOD)


def refused(data, **options):
    with pytest.raises(InventoryError) as caught:
        parse(data, "test.yml", **options)
    return str(caught.value)


# --- a good inventory ------------------------------------------------------------------

def test_load_gives_every_declared_host_with_its_address(inventory_file):
    inventory = load(inventory_file(GOOD))
    assert sorted(inventory.hosts) == ["a1", "a2", "b1", "lonely"]
    assert inventory.host("a2").address == "10.0.0.12"
    assert inventory.host("a2").name == "a2"


def test_each_host_knows_its_cluster_and_a_host_in_none_has_an_empty_cluster(inventory_file):
    inventory = load(inventory_file(GOOD))
    assert [inventory.cluster_of(name) for name in ("a1", "a2", "b1", "lonely")] == [
        "cluster1", "cluster1", "cluster2", ""]
    assert inventory.clusters == {"cluster1": ["a1", "a2"], "cluster2": ["b1"]}


def test_the_files_defaults_apply_to_every_host_and_a_host_overrides_them(inventory_file):
    inventory = load(inventory_file(GOOD))
    assert inventory.host("a1").vg == "vg1"
    assert inventory.host("a2").vg == "vgfast"
    assert {host.manager for host in inventory.hosts.values()} == {"lab"}
    assert inventory.host("b1").storage == "filevg"
    assert inventory.host("a1").storage == "lvm"
    assert inventory.host("a2").port == 2222
    assert inventory.host("a1").port == 22


def test_settings_nobody_gives_are_the_built_in_host_defaults(inventory_file):
    host = load(inventory_file(GOOD)).host("a1")
    assert (host.transport, host.root, host.lxcpath, host.container) == (
        HOST_DEFAULTS["transport"], "/", "/var/lib/lxc", "lxc")


def test_defaults_given_by_the_caller_apply_but_the_files_defaults_win(inventory_file):
    inventory = load(inventory_file(GOOD), defaults={"transport": "local", "vg": "vgcaller"})
    assert inventory.host("a1").transport == "local"
    assert inventory.host("a1").vg == "vg1"


def test_the_demo_section_and_the_source_are_kept(inventory_file):
    path = inventory_file(GOOD)
    inventory = load(path)
    assert inventory.demo == {"resource": "vm1", "primary": "a1", "secondary": "a2"}
    assert inventory.source == str(path)


def test_an_empty_inventory_file_has_no_hosts(inventory_file):
    inventory = load(inventory_file(""))
    assert (inventory.hosts, inventory.clusters, inventory.demo) == ({}, {}, {})


def test_asking_for_an_undeclared_host_names_the_hosts_there_are(inventory_file):
    inventory = load(inventory_file(GOOD))
    with pytest.raises(InventoryError, match="unknown host 'zz'.*a1, a2, b1, lonely"):
        inventory.host("zz")


def test_with_hosts_replaces_the_hosts_and_keeps_the_rest(inventory_file):
    inventory = load(inventory_file(GOOD))
    smaller = inventory.with_hosts({"a1": inventory.host("a1")})
    assert list(smaller.hosts) == ["a1"]
    assert smaller.clusters == inventory.clusters
    assert len(inventory.hosts) == 4


# --- a host's paths --------------------------------------------------------------------

def test_a_host_with_root_slash_has_its_paths_where_they_are():
    host = Host(name="a1", address="10.0.0.11")
    assert host.path("/dev/vg0/vm1") == "/dev/vg0/vm1"
    assert host.mountpoint("vm1") == "/var/lib/lxc/vm1"
    assert host.device("vm1") == "/dev/mars/vm1"


def test_a_host_with_a_root_has_every_path_below_it():
    host = Host(name="a1", address="127.0.0.11", root="/tmp/lab/a1", lxcpath="/srv/lxc")
    assert host.path("/dev/vg0/vm1") == "/tmp/lab/a1/dev/vg0/vm1"
    assert host.mountpoint("vm1") == "/tmp/lab/a1/srv/lxc/vm1"
    assert host.device("vm1") == "/tmp/lab/a1/dev/mars/vm1"


def test_a_local_host_runs_commands_through_a_local_transport_with_its_env():
    host = Host(name="a1", address="127.0.0.11", transport="local", env={"MARS_HOST": "a1"})
    assert isinstance(host.runner, LocalTransport)
    assert host.run(["sh", "-c", "echo $MARS_HOST"]).stdout == "a1\n"


def test_an_ssh_host_is_reached_by_an_ssh_transport_with_its_settings_and_no_connection_yet():
    data = good()
    data["defaults"].update({"ssh_key": "/keys/football", "host_key_check": "accept-new",
                             "known_hosts": "/keys/known_hosts", "connect_timeout": 2.5})
    data["hosts"]["a2"].update({"user": "football", "env": {"MARS_ROOT": "/srv/a2", "N": 1}})
    runner = parse(data, "test.yml").host("a2").runner
    assert isinstance(runner, SSHTransport)
    assert (runner.host, runner.address, runner.port, runner.user) == (
        "a2", "10.0.0.12", 2222, "football")
    assert runner.env == {"MARS_ROOT": "/srv/a2", "N": "1"}
    assert (runner.ssh_key, str(runner.known_hosts), runner.host_key_check,
            runner.connect_timeout) == ("/keys/football", "/keys/known_hosts", "accept-new", 2.5)
    assert runner._connection is None


def test_an_ssh_hosts_defaults_are_strict_host_keys_from_the_users_known_hosts():
    runner = parse(good(), "test.yml").host("a1").runner
    assert (runner.user, runner.port, runner.host_key_check, runner.ssh_key) == (
        "root", 22, "strict", None)
    assert runner.known_hosts == Path("~/.ssh/known_hosts").expanduser()
    assert runner.connect_timeout == DEFAULT_CONNECT_TIMEOUT


def test_a_host_runner_is_made_once_so_its_connection_is_reused():
    host = parse(good(), "test.yml").host("a1")
    assert host.runner is host.runner


def test_a_host_made_in_code_with_an_unknown_transport_names_the_transports():
    host = Host(name="a1", address="10.0.0.11", transport="telnet")
    with pytest.raises(InventoryError, match="host a1: unknown transport 'telnet'; "
                                             "use one of ssh, local"):
        host.run(["true"])


# --- mistakes --------------------------------------------------------------------------

def test_a_missing_inventory_file_says_to_pass_one(tmp_path):
    with pytest.raises(InventoryError, match=r"missing\.yml does not exist; pass --inventory"):
        load(tmp_path / "missing.yml")


def test_an_inventory_that_is_not_yaml_is_refused_naming_the_file(inventory_file):
    path = inventory_file("hosts: {a1: [unclosed\n")
    with pytest.raises(InventoryError, match=f"inventory {path} is not valid YAML"):
        load(path)


def test_an_inventory_saved_with_a_byte_order_mark_reads_as_without(tmp_path):
    path = tmp_path / "inventory.yml"
    path.write_bytes(LAB_INVENTORY.read_text().encode("utf-8-sig"))
    assert load(path).hosts.keys() == load(LAB_INVENTORY).hosts.keys()


def test_an_inventory_not_in_utf8_is_refused_naming_the_character(tmp_path):
    """Not a traceback (UnicodeDecodeError) as before."""
    path = tmp_path / "inventory.yml"
    path.write_bytes('hosts: {a1: {address: 127.0.0.11, room: "M\u00fcller"}}\n'
                     .encode("latin-1"))
    with pytest.raises(InventoryError, match=f"inventory {path} is not valid YAML: "
                       "unacceptable character #x00fc"):
        load(path)
    with pytest.raises(InventoryError, match=f"inventory {tmp_path} cannot be read: "
                       "Is a directory"):
        load(tmp_path)

def test_an_inventory_that_is_not_a_mapping_is_refused(inventory_file):
    with pytest.raises(InventoryError, match="expected a mapping at the top"):
        load(inventory_file("- a1\n- a2\n"))


@pytest.mark.parametrize("section", ["defaults", "clusters", "hosts", "demo", "lab"])
def test_a_section_that_is_not_a_mapping_is_refused_naming_it(section):
    data = good()
    data[section] = ["a1", "a2"]
    assert refused(data) == f"inventory test.yml: {section} must be a mapping"


def test_a_host_given_only_an_address_instead_of_settings_is_refused():
    data = good()
    data["hosts"]["a1"] = "10.0.0.11"
    assert refused(data) == ("inventory test.yml: host a1: expected settings "
                             "(address: ..., ...), not '10.0.0.11'")


def test_a_host_without_an_address_is_refused():
    data = good()
    data["hosts"]["a1"] = {"vg": "vg0"}
    assert refused(data) == "inventory test.yml: host a1 has no address"


def test_a_host_with_no_settings_at_all_has_no_address():
    data = good()
    data["hosts"]["a1"] = None
    assert refused(data) == "inventory test.yml: host a1 has no address"


def test_an_unknown_host_setting_is_refused_naming_it():
    data = good()
    data["hosts"]["a1"]["adress"] = "10.0.0.1"
    data["hosts"]["a1"]["colour"] = "blue"
    assert refused(data).startswith("inventory test.yml: host a1: unknown settings adress, "
                                    "colour; known: address, connect_timeout, ")


def test_an_unknown_setting_in_the_defaults_is_refused_not_dropped():
    data = good()
    data["defaults"]["storag"] = "lvm"          # a typo: storage stayed the built-in default
    assert refused(data).startswith("inventory test.yml: defaults: unknown settings storag; "
                                    "known: address, ")


def test_an_unknown_section_is_refused_naming_the_known_ones():
    data = good()
    data["clusterz"] = data.pop("clusters")     # a typo: every host was in no cluster
    assert refused(data) == ("inventory test.yml: unknown sections clusterz; known: defaults, "
                             "clusters, hosts, demo, lab")


def test_two_hosts_at_one_address_and_port_are_refused_naming_both():
    data = good()
    data["hosts"]["b1"]["address"] = "10.0.0.11"
    assert refused(data) == ("inventory test.yml: hosts a1 and b1 have the same address "
                             "10.0.0.11 (port 22): give each host its own")
    data["hosts"]["b1"]["port"] = 2222          # one address, two ports: two machines behind NAT
    assert parse(data, "test.yml").host("b1").port == 2222


@pytest.mark.parametrize("setting, value, message", [
    ("transport", "telnet", "transport 'telnet' is not one of ssh, local"),
    ("host_key_check", "yes", "host_key_check 'yes' is not one of strict, accept-new, off"),
    ("host_key_check", True, "host_key_check True is not one of strict, accept-new, off"),
    ("connect_timeout", 0, "connect_timeout must be a number of seconds > 0, not 0"),
    ("connect_timeout", "10s", "connect_timeout must be a number of seconds > 0, not '10s'"),
    ("env", ["A=1"], "env must be a mapping (NAME: value), not ['A=1']"),
    ("env", {"A B": "1"}, "env: 'A B' is not a variable name"),
    ("env", {"PATH=/x": "1"}, "env: 'PATH=/x' is not a variable name"),
    ("env", {"A": ["1"]}, "env: A must be a string, not ['1']"),
    ("address", "999.0.0.11", "address '999.0.0.11' is not an IP address"),
    ("address", "10.0.0", "address '10.0.0' is not an IP address"),
    ("address", "fe80::1::2", "address 'fe80::1::2' is not an IP address"),
    ("address", "my host", "address 'my host' is neither an IP address nor a DNS name"),
    ("address", "-a.example", "address '-a.example' is neither an IP address nor a DNS name"),
    # refused at once (a regular expression with nested repeats took seconds per character)
    ("address", "a" * 60 + "!", f"address {'a' * 60 + '!'!r} is neither an IP address nor a "
                                "DNS name"),
    ("address", 10, "address must be an IP address or a DNS name, not 10"),
    ("port", "ssh", "port must be a whole number 1..65535, not 'ssh'"),
    ("port", 0, "port must be a whole number 1..65535, not 0"),
    ("port", 70000, "port must be a whole number 1..65535, not 70000"),
    ("vg_size", "lots", "vg_size: invalid size 'lots': give bytes or a number with "
                        "k/m/g/t/p (binary units), e.g. 10g"),
    ("stripe_size", "-64k", "stripe_size: invalid size '-64k': give bytes or a number with "
                            "k/m/g/t/p (binary units), e.g. 10g"),
    ("stripes", 0, "stripes must be a whole number >= 1, not 0"),
])
def test_a_bad_connection_setting_is_refused_naming_host_and_setting(setting, value, message):
    data = good()
    data["hosts"]["a1"][setting] = value
    assert refused(data) == f"inventory test.yml: host a1: {message}"


@pytest.mark.parametrize("address", ["10.0.0.1", "::1", "fe80::1", "a1", "a1.example.org",
                                     "a1.example.org.", "xn--bcher-kva.example"])
def test_an_ip_address_or_a_dns_name_is_a_good_address(address):
    data = good()
    data["hosts"]["a1"]["address"] = address
    assert parse(data, "test.yml").host("a1").address == address


def test_host_key_check_off_unquoted_in_yaml_means_off(inventory_file):
    inventory = load(inventory_file(GOOD.replace("  manager: lab\n",
                                                 "  manager: lab\n  host_key_check: off\n")))
    assert inventory.host("a1").host_key_check == "off"


def test_a_bad_connection_setting_in_the_defaults_is_refused_for_the_first_host():
    data = good()
    data["defaults"]["host_key_check"] = "no"
    assert refused(data).startswith("inventory test.yml: host a1: host_key_check 'no'")


def test_a_host_in_two_clusters_is_refused_naming_both():
    data = good()
    data["clusters"]["cluster2"].append("a1")
    assert refused(data) == "inventory test.yml: host a1 is in clusters cluster1 and cluster2"


def test_a_cluster_naming_an_undeclared_host_is_refused_naming_it():
    data = good()
    data["clusters"]["cluster2"].append("ghost")
    assert refused(data) == ("inventory test.yml: clusters name hosts that are not declared: "
                             "ghost")


@pytest.mark.parametrize("members", [[], "a1", None])
def test_a_cluster_without_a_list_of_hosts_is_refused(members):
    data = good()
    data["clusters"]["cluster3"] = members
    assert refused(data) == "inventory test.yml: cluster cluster3 needs a list of hosts"


@pytest.mark.parametrize("name", ["A1", "1a", "a_1", "localhost", "a" * 64])
def test_a_bad_host_name_is_refused(name):
    data = good()
    data["hosts"][name] = {"address": "10.0.0.1"}
    message = refused(data)
    assert message.startswith("inventory test.yml: invalid host name")
    assert repr(name) in message


@pytest.mark.parametrize("role", ["primary", "secondary"])
def test_a_demo_host_that_is_not_declared_is_refused(role):
    data = good()
    data["demo"][role] = "ghost"
    assert refused(data) == f"inventory test.yml: demo {role} 'ghost' is not a declared host"


def test_a_bad_demo_size_is_refused_before_a_lab_makes_anything():
    data = good()
    data["demo"]["size"] = "1 gig"
    assert refused(data).startswith("inventory test.yml: demo size: invalid size '1 gig'")


@pytest.mark.parametrize("resource", ["../vm", "all", "", "a b"])
def test_a_bad_demo_resource_name_is_refused(resource):
    data = good()
    data["demo"]["resource"] = resource
    message = refused(data)
    assert message.startswith("inventory test.yml: demo: invalid resource name")


# --- the shipped lab inventory ---------------------------------------------------------

def test_the_lab_inventory_gives_file_backed_lab_hosts_reached_locally():
    inventory = lab.load_inventory(LAB_INVENTORY)
    assert sorted(inventory.hosts) == ["a1", "a2", "b1", "b2"]
    for host in inventory.hosts.values():
        assert (host.storage, host.manager, host.transport) == ("filevg", "lab", "local")
    assert inventory.cluster_of("a1") == inventory.cluster_of("a2") == "cluster1"
    assert inventory.cluster_of("b1") == inventory.cluster_of("b2") == "cluster2"
    assert inventory.demo["primary"] in inventory.hosts
    assert inventory.demo["secondary"] in inventory.hosts

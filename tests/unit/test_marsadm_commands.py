"""marsadm resource and cluster commands that work offline: what they write,
and how they refuse. A refusal is one line on stderr naming the problem,
exit code 1 (2 for a command line click cannot parse), and no change at all
to the store."""

import pytest

from tests.unit.conftest import MIB, make_disk


def assert_refused(host, args, *fragments, code=1):
    """Run marsadm, expect a refusal that mentions every fragment and changes nothing."""
    before = host.tuples()
    key_before = (host.state_dir / "cluster.key").exists()
    result = host.run(*args)
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr,
                                      result.exception)
    assert result.stdout == ""
    if code == 1:
        assert result.stderr.startswith("marsadm")
        assert result.stderr.endswith("\n") and result.stderr.count("\n") == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr
    assert host.tuples() == before
    assert (host.state_dir / "cluster.key").exists() == key_before
    return result.stderr


# ------------------------------------------------------------------- create
def test_create_cluster_makes_this_host_the_only_member_and_writes_the_secret(make_host):
    h1 = make_host("h1")
    assert h1.ok("create-cluster", "--ip=10.1.2.3") == ""
    assert h1.ok("lowlevel-ls-host-ips") == "h1 10.1.2.3\n"
    assert len((h1.state_dir / "cluster.key").read_text().strip()) == 64
    with h1.store() as store:
        assert store.value("uuid")
        assert {item.origin for item in store.tuples()} == {"h1"}


def test_create_cluster_with_force_starts_over_without_the_old_members(scenario):
    h1 = scenario.host
    with h1.store() as store:
        old_uuid = store.value("uuid")
    h1.ok("--force", "--ip=127.0.0.9", "create-cluster")
    assert h1.ok("lowlevel-ls-host-ips") == "h1 127.0.0.9\n"
    assert h1.ok("view-all-resources") == ""
    with h1.store() as store:
        assert store.value("uuid") not in ("", old_uuid)
        assert set(store.vector()) == {"h1"}


def test_create_resource_writes_size_primary_and_membership(h1, tmp_path):
    disk = make_disk(tmp_path / "disk", 4 * MIB)
    h1.ok("create-resource", "vm1", disk, "1m")
    with h1.store() as store:
        values = store.live_values("resource-vm1/")
    assert values == {
        "resource-vm1/size": str(MIB),
        "resource-vm1/primary": "h1",
        "resource-vm1/data-h1": disk,
        "resource-vm1/device-h1": "vm1",
        "resource-vm1/syncstatus-h1": str(MIB),
        "resource-vm1/todo-h1/attach": "1",
        "resource-vm1/todo-h1/connect": "1",
        "resource-vm1/todo-h1/sync": "1",
        "resource-vm1/todo-h1/allow-replay": "1",
    }


def test_create_resource_stores_the_absolute_disk_path(h1, tmp_path, monkeypatch):
    make_disk(tmp_path / "rel-disk", MIB)
    monkeypatch.chdir(tmp_path)
    h1.ok("create-resource", "vm1", "rel-disk")
    assert h1.ok("view-get-disk", "vm1") == f"{tmp_path / 'rel-disk'}\n"


def test_dry_run_create_resource_prints_would_write_lines_and_changes_nothing(scenario):
    h1 = scenario.host
    before = h1.tuples()
    out = h1.ok("create-resource", "vm4", scenario.spare, "--dry-run")
    assert out == "".join(f"would write resource-vm4/{key} = {value}\n" for key, value in [
        ("size", MIB), ("primary", "h1"), ("data-h1", scenario.spare), ("device-h1", "vm4"),
        ("syncstatus-h1", MIB), ("todo-h1/attach", 1), ("todo-h1/connect", 1),
        ("todo-h1/sync", 1), ("todo-h1/allow-replay", 1)])
    assert h1.tuples() == before


def test_dry_run_create_cluster_writes_neither_tuples_nor_the_secret(make_host):
    h4 = make_host("h4")
    out = h4.ok("--dry-run", "--ip=127.0.0.4", "create-cluster")
    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("would write uuid = ")
    assert lines[1] == "would write ips/ip-h4 = 127.0.0.4"
    assert h4.tuples() == []
    assert not (h4.state_dir / "cluster.key").exists()


def test_dry_run_delete_resource_lists_tombstones_and_changes_nothing(scenario):
    before = scenario.host.tuples()
    out = scenario.host.ok("--dry-run", "--force", "delete-resource", "vm2")
    assert "would write resource-vm2/size = .deleted\n" in out
    assert "would write resource-vm2/data-h1 = .deleted\n" in out
    assert scenario.host.tuples() == before


# --------------------------------------------------------------- join/leave
def test_join_resource_makes_this_host_a_member_with_nothing_synced(scenario, tmp_path):
    h1 = scenario.host
    disk = make_disk(tmp_path / "big", 2 * MIB)
    h1.ok("join-resource", "vm3", disk)
    assert h1.ok("view-resource-members", "vm3") == "h1\nh2\nh3\n"
    assert h1.ok("view-get-primary", "vm3") == "h2\n"
    with h1.store() as store:
        assert store.value("resource-vm3/syncstatus-h1") == "0"
        assert store.value("resource-vm3/size") == str(2 * MIB)
        assert store.get("resource-vm3/size").origin == "h2"   # untouched


def test_join_resource_again_with_the_same_disk_is_a_no_op(scenario, tmp_path):
    h1 = scenario.host
    disk = make_disk(tmp_path / "big", 2 * MIB)
    h1.ok("join-resource", "vm3", disk)
    before = h1.tuples()
    assert "nothing to do" in h1.ok("join-resource", "vm3", disk)
    assert h1.tuples() == before


def test_join_and_create_wait_while_marsd_has_not_removed_the_logs_of_an_earlier_replica(
        scenario, tmp_path):
    """After leave-resource or delete-resource, marsd removes the replica's
    logfiles once it has seen it; a new replica of the same name must not
    start among them (another incarnation's logs have the same names)."""
    h1 = scenario.host
    disk = make_disk(tmp_path / "big", 2 * MIB)
    old_logs = h1.state_dir / "resource-vm3"
    old_logs.mkdir()
    (old_logs / "log-000000001-h1").write_bytes(b"of an earlier vm3")
    assert_refused(h1, ("join-resource", "vm3", disk), f"{old_logs} still holds logs of an "
                   "earlier vm3 on h1", "marsadm wait-cluster")
    h1.ok("--force", "delete-resource", "vm2")
    (h1.state_dir / "resource-vm2").mkdir()
    assert_refused(h1, ("create-resource", "vm2", scenario.disk2), "still holds logs")
    old_logs.rename(tmp_path / "removed")          # as marsd does
    h1.ok("join-resource", "vm3", disk)
    h1.ok("--force", "create-resource", "vm2", scenario.disk2)    # --force: anyway


def test_leave_resource_tombstones_only_this_hosts_keys(scenario, tmp_path):
    h1 = scenario.host
    h1.ok("join-resource", "vm3", make_disk(tmp_path / "big", 2 * MIB))
    h1.ok("down", "vm3")
    h1.ok("leave-resource", "vm3")
    assert h1.ok("view-resource-members", "vm3") == "h2\nh3\n"
    with h1.store() as store:
        assert store.get("resource-vm3/data-h1").deleted
        assert store.get("resource-vm3/todo-h1/attach").deleted
        assert store.value("resource-vm3/size") == str(2 * MIB)


def test_leave_resource_for_a_dead_host_run_on_a_survivor_drops_only_its_replica(scenario):
    """The kernel's way to drop a dead host's replica: `marsadm --host=<dead>
    leave-resource --force` on a survivor. Here too: the dead one's keys of
    that resource are tombstoned, the survivor's own and the resource stay."""
    h1 = scenario.host
    h1.peer_apply([("resource-vm1/todo-h2/attach", "1", "h2")])
    assert_refused(h1, ["--host=h2", "leave-resource", "vm1"], "vm1 is not down on h2")
    h1.ok("--host=h2", "leave-resource", "--force", "vm1")
    assert h1.ok("view-resource-members", "vm1") == "h1\n"
    with h1.store() as store:
        assert store.get("resource-vm1/data-h2").deleted
        # labelled as written by h1 for h2: h2, back, pulls it (mars/store.py)
        assert store.get("resource-vm1/data-h2").origin == "h2@h1"
        assert store.get("resource-vm1/todo-h2/attach").deleted
        assert not store.get("resource-vm1/data-h1").deleted
        assert store.value("resource-vm1/primary") == "h1"
    assert h1.ok("lowlevel-ls-host-ips").splitlines() == [
        "h1 127.0.0.1", "h2 127.0.0.2", "h3 127.0.0.3"]       # the cluster as it was


def test_leave_resource_refuses_a_replica_that_is_not_down_unless_forced(scenario, tmp_path):
    """As kernel MARS's leave_res_phase0: every switch of this host off
    first (`marsadm down`; a pause-sync alone is not enough), or --force."""
    h1 = scenario.host
    h1.ok("join-resource", "vm3", make_disk(tmp_path / "big", 2 * MIB))
    h1.ok("pause-sync", "vm3")
    assert_refused(h1, ["leave-resource", "vm3"], "vm3 is not down on h1 (attach, connect, "
                   "allow-replay on): `marsadm down vm3` first, then leave-resource (or --force)")
    h1.ok("--force", "leave-resource", "vm3")
    assert h1.ok("view-resource-members", "vm3") == "h2\nh3\n"


def test_leave_resource_by_the_primary_with_force_is_allowed(scenario):
    scenario.host.ok("--force", "leave-resource", "vm2")
    assert scenario.host.ok("view-my-resources") == "vm1\n"


def test_delete_resource_keeps_other_hosts_keys_for_them_to_drop(scenario):
    h1 = scenario.host
    h1.ok("--force", "delete-resource", "vm1")
    with h1.store() as store:
        assert store.get("resource-vm1/size").deleted
        assert store.get("resource-vm1/primary").deleted
        assert store.get("resource-vm1/data-h1").deleted
        assert store.value("resource-vm1/data-h2") == "/dev/vg/vm1"


def test_delete_resource_of_a_list_deletes_each(scenario):
    scenario.host.ok("--force", "delete-resource", "vm1,vm2")
    assert scenario.host.ok("view-all-resources") == "vm3\n"


def test_leave_resource_all_leaves_every_resource_this_host_may_leave(scenario, tmp_path):
    h1 = scenario.host
    h1.ok("join-resource", "vm3", make_disk(tmp_path / "big", 2 * MIB))
    h1.ok("--force", "leave-resource", "all")
    assert h1.ok("view-my-resources") == ""


# ---------------------------------------------------------------- refusals
@pytest.mark.parametrize("name, fragment", [
    ("all", "invalid resource name 'all': reserved word"),
    ("none", "reserved word"),
    ("Vm/1", "invalid resource name 'Vm/1'"),
    ("vm1;rm -rf /", "invalid resource name 'vm1;rm -rf /'"),
    ("a b", "invalid resource name 'a b'"),
    ("$(x)", "invalid resource name '$(x)'"),
    ("../x", "invalid resource name '../x'"),
    ("a,b", "invalid resource name 'a,b'"),
    ("vm4\n", "invalid resource name 'vm4\\n'"),    # '$' once let this through
])
def test_create_resource_refuses_an_invalid_name(scenario, name, fragment):
    assert_refused(scenario.host, ["create-resource", name, scenario.spare], fragment)


@pytest.mark.parametrize("args", [
    ["view-get-primary", "vm1;reboot"],
    ["view-resource-members", "vm1,$(id)"],
    ["join-resource", "a b", "/tmp/x"],
    ["leave-resource", "`id`"],
    ["delete-resource", "../vm1"],
])
def test_commands_refuse_resource_names_with_shell_metacharacters(scenario, args):
    assert_refused(scenario.host, args, "invalid resource name")


@pytest.mark.parametrize("args", [
    ["view-get-primary", "vm9"],
    ["view-sync-size", "vm1,vm9"],
    ["join-resource", "vm9", "/tmp/x"],
    ["leave-resource", "vm9"],
    ["delete-resource", "vm9"],
    ["get-systemd-unit", "vm9"],
    ["set-systemd-want", "vm9"],
])
def test_unknown_resource_is_refused_listing_the_known_ones(scenario, args):
    assert_refused(scenario.host, args, "unknown resource 'vm9' (known: vm1, vm2, vm3)")


def test_create_resource_refuses_a_missing_disk(scenario, tmp_path):
    missing = tmp_path / "no-such-disk"
    assert_refused(scenario.host, ["create-resource", "vm4", missing],
                   f"disk {missing} does not exist")


def test_create_resource_refuses_a_directory_as_disk(scenario, tmp_path):
    assert_refused(scenario.host, ["create-resource", "vm4", tmp_path],
                   "neither a block device nor a regular file")


def test_create_resource_refuses_a_size_larger_than_the_disk(scenario):
    assert_refused(scenario.host, ["create-resource", "vm4", scenario.spare, "2m"],
                   f"disk {scenario.spare} has {MIB} bytes, smaller than the requested size {2 * MIB}")


def test_create_resource_refuses_an_invalid_size(scenario):
    assert_refused(scenario.host, ["create-resource", "vm4", scenario.spare, "10x"],
                   "invalid size '10x'")


def test_create_resource_refuses_a_duplicate(scenario):
    assert_refused(scenario.host, ["create-resource", "vm3", scenario.spare],
                   "resource vm3 already exists (members: h2, h3)")


def test_create_resource_refuses_a_disk_already_used_by_another_resource(scenario):
    assert_refused(scenario.host, ["create-resource", "vm4", scenario.disk1],
                   f"disk {scenario.disk1} is already the disk of resource vm1 on h1")


def test_create_resource_refuses_an_empty_disk(scenario, tmp_path):
    empty = make_disk(tmp_path / "empty", 0)
    assert_refused(scenario.host, ["create-resource", "vm4", empty],
                   f"disk {empty} is empty (0 bytes)")


def test_join_resource_refuses_a_disk_that_is_too_small(scenario):
    assert_refused(scenario.host, ["join-resource", "vm3", scenario.spare],
                   f"disk {scenario.spare} is too small for vm3: it has {MIB} bytes, "
                   f"the resource needs {2 * MIB}")


def test_join_resource_refuses_a_disk_used_by_another_resource(scenario, tmp_path):
    h1 = scenario.host
    big = make_disk(tmp_path / "big", 2 * MIB)
    h1.ok("create-resource", "vm4", big)
    assert_refused(h1, ["join-resource", "vm3", big],
                   f"disk {big} is already the disk of resource vm4 on h1")


def test_join_resource_refuses_a_second_disk_for_the_same_resource(scenario):
    assert_refused(scenario.host, ["join-resource", "vm1", scenario.spare],
                   f"h1 is already a member of vm1 with disk {scenario.disk1}")


def test_leave_resource_refuses_the_designated_primary(scenario):
    assert_refused(scenario.host, ["leave-resource", "vm1"],
                   "h1 is the designated primary of vm1")


def test_leave_resource_refuses_a_non_member(scenario):
    assert_refused(scenario.host, ["leave-resource", "vm3"], "h1 is not a member of vm3")


def test_leave_resource_list_refused_for_one_resource_changes_nothing(scenario, tmp_path):
    h1 = scenario.host
    h1.ok("join-resource", "vm3", make_disk(tmp_path / "big", 2 * MIB))
    assert_refused(h1, ["leave-resource", "vm3,vm1"], "designated primary of vm1")


@pytest.mark.parametrize("unit", [
    "a;b.service", "a b.service", "$(x).service",
    "vm1.service\n"])
def test_set_systemd_unit_refuses_invalid_unit_names(scenario, unit):
    assert_refused(scenario.host, ["set-systemd-unit", "vm1", unit], "invalid systemd unit name")


def test_set_systemd_want_refuses_a_host_outside_the_cluster(scenario):
    assert_refused(scenario.host, ["set-systemd-want", "vm1", "h9"],
                   "host h9 is not a cluster member (h1, h2, h3)")
    assert_refused(scenario.host, ["set-systemd-want", "vm1", "Bad"], "invalid host name 'Bad'")


def test_create_cluster_twice_without_force_is_refused(scenario):
    assert_refused(scenario.host, ["--ip=127.0.0.1", "create-cluster"],
                   "host h1 is already in a cluster with h1, h2, h3", "--force")


def test_create_cluster_refuses_an_invalid_address(make_host):
    h1 = make_host("h1")
    assert_refused(h1, ["--ip=999.1.1.1", "create-cluster"], "invalid IP address '999.1.1.1'")


def test_join_cluster_when_already_in_a_cluster_is_refused(scenario):
    assert_refused(scenario.host, ["join-cluster", "h9", "127.0.0.9"],
                   "host h1 is already in a cluster with h1, h2, h3", "merge-cluster")


def test_join_cluster_refuses_an_invalid_peer_name(make_host):
    assert_refused(make_host("h4"), ["join-cluster", "Peer", "127.0.0.1"],
                   "invalid host name 'Peer'")


def test_join_cluster_without_the_secret_takes_it_over_ssh_and_refuses_when_ssh_fails(
        make_host, monkeypatch):
    # ssh fails at once, without a connection: its proxy command is `false`
    monkeypatch.setenv("MARS_SSH_OPTIONS", "-o ProxyCommand=false")
    host = make_host("h4")
    assert_refused(host, ["--ip=127.0.0.4", "join-cluster", "--ssh-port=2222", "h1", "127.0.0.1"],
                   "ssh to h1 (127.0.0.1:2222) failed", "--ssh-port, MARS_SSH_OPTIONS")
    assert not (host.state_dir / "cluster.key").exists()


def test_join_cluster_dry_run_without_the_secret_says_it_would_take_it_over_ssh(make_host):
    host = make_host("h4")
    result = host.run("--dry-run", "--ip=127.0.0.4", "join-cluster", "h1", "127.0.0.1")
    assert (result.exit_code, result.stdout) == (
        0, "would take the cluster secret of h1 over ssh (port 22)\n")
    assert not (host.state_dir / "cluster.key").exists() and host.tuples() == []


def test_the_ssh_command_is_batch_mode_root_at_the_peer_with_port_and_options(monkeypatch):
    from mars.sshpeer import READ_SECRET, ssh_command
    monkeypatch.setenv("MARS_SSH_OPTIONS", "-i /k/id -o 'UserKnownHostsFile=/k/known hosts'")
    assert ssh_command("10.0.0.2", 2222, READ_SECRET) == [
        "ssh", "-p", "2222", "-o", "BatchMode=yes", "-i", "/k/id",
        "-o", "UserKnownHostsFile=/k/known hosts", "root@10.0.0.2", READ_SECRET]


def test_leave_cluster_refuses_while_this_host_holds_replicas(scenario):
    assert_refused(scenario.host, ["leave-cluster"], "still holds replicas of vm1, vm2")


def test_leave_cluster_for_another_host_is_a_drop_that_keeps_this_hosts_metadata(h1):
    """The kernel's marsadm drops a dead host with `--host=<dead> leave-cluster`
    run on a survivor; ours once forgot the survivor's whole cluster then
    (its state dir is this host's). It is a drop of that host now (the drop
    itself, which asks the peers, is tested with real marsds in
    tests/integration/test_cluster_membership.py): refused while the host
    holds a replica; a host not in the cluster is nothing to do."""
    h1.peer_apply([("ips/ip-h2", "127.0.0.2", "h2"), ("resource-vm1/size", "1048576", "h2"),
                   ("resource-vm1/data-h2", "/dev/vg/vm1", "h2")])
    assert_refused(h1, ["--host=h2", "leave-cluster"], "h2 still holds replicas of vm1",
                   "marsadm --host=h2 leave-resource --force <res>")
    assert h1.ok("--host=h3", "leave-cluster") == "h3 is not in the cluster of h1: nothing to do\n"
    h1.peer_apply([("resource-vm1/data-h2", ".deleted", "h2")])
    before = h1.tuples()
    assert h1.ok("--force", "--dry-run", "--host=h2", "leave-cluster") == \
        "would drop h2 from the cluster of h1, h2\n"
    assert h1.tuples() == before
    assert h1.ok("lowlevel-ls-host-ips").splitlines() == ["h1 127.0.0.1", "h2 127.0.0.2"]


def test_leave_cluster_with_host_where_the_hostname_is_no_mars_name_leaves(make_host,
                                                                           monkeypatch):
    """Without MARS_HOST, a machine whose hostname is no MARS host name
    (HV_01) is named by --host: that is this host, and it leaves."""
    from click.testing import CliRunner

    from mars.marsadm import cli

    host = make_host("h5")
    host.ok("--ip=127.0.0.5", "create-cluster")
    monkeypatch.setattr("socket.gethostname", lambda: "HV_01.example")
    result = CliRunner(env={"MARS_ROOT": str(host.root), "MARS_HOST": None}).invoke(
        cli, ["--host=h5", "leave-cluster"])
    assert result.exit_code == 0, result.output
    assert host.ok("lowlevel-ls-host-ips") == ""


@pytest.mark.parametrize("args, fragment", [
    (["create-resource", "vm1", "/tmp/disk"], "host h4 is not a cluster member"),
    (["join-resource", "vm1", "/tmp/disk"], "host h4 is not a cluster member"),
    (["set-systemd-unit", "vm1", "a.service"], "host h4 is not a cluster member"),
    (["set-systemd-want", "vm1"], "host h4 is not a cluster member"),
    (["leave-cluster"], "host h4 is not a member of any cluster"),
    (["split-cluster"], "host h4 is not a member of any cluster"),
    (["update-cluster"], "host h4 is not a member of any cluster"),
    (["wait-cluster"], "host h4 is not a member of any cluster"),
    (["merge-cluster", "h1", "127.0.0.1"], "host h4 is not a member of any cluster"),
    (["view-get-primary", "vm1"], "unknown resource 'vm1' (known: none)"),
])
def test_commands_before_create_cluster_are_refused(make_host, args, fragment):
    assert_refused(make_host("h4"), args, fragment)


@pytest.mark.parametrize("host", ["Bad", "1abc", "localhost", "all", "h_1"])
def test_invalid_host_option_is_refused(make_host, host):
    h1 = make_host("h1")
    stderr = assert_refused(h1, [f"--host={host}", "view-cluster-members"],
                            f"invalid host name '{host}'")
    assert stderr.startswith("marsadm: ")
    assert not h1.state_dir.exists()


def test_invalid_mars_host_environment_is_refused(make_host):
    assert_refused(make_host("none"), ["view-cluster-members"], "invalid host name 'none'")


@pytest.mark.parametrize("args", [
    ["create-resource"],
    ["create-resource", "vm4"],
    ["view-get-primary"],
    ["no-such-command"],
    ["--timeout=soon", "view-cluster-members"],
    ["view-cluster-members", "--no-such-option"],
])
def test_command_lines_click_cannot_parse_exit_2_and_change_nothing(scenario, args):
    assert_refused(scenario.host, args, "Error", code=2)


def test_recreating_a_deleted_resource_does_not_inherit_the_old_members(scenario):
    h1 = scenario.host
    h1.ok("--force", "delete-resource", "vm1")
    result = h1.run("create-resource", "vm1", scenario.spare)
    if result.exit_code == 0:
        assert h1.ok("view-resource-members", "vm1") == "h1\n"
    else:
        assert result.exit_code == 1 and "vm1" in result.stderr


def test_wait_cluster_takes_its_hosts_from_the_snapshot_it_checks_them_against(
        scenario, monkeypatch):
    """A split-cluster between marsadm's two looks at the store made the
    hosts of the first "not cluster members" in the second, exit 1 (seen in
    CI: a screener job's readiness check on b2 while another job's cleanup
    split b2's cluster, and the job ended illegal)."""
    from mars.cluster import Cluster
    h1 = scenario.host
    looks, waited_for = [], []
    real_state = Cluster._state

    def split_before_this_look(cluster):
        if not looks:           # h2 and h3 split off between the looks
            h1.peer_apply([("ips/ip-h2", ".deleted", "h2"), ("ips/ip-h3", ".deleted", "h3")])
        looks.append(1)
        return real_state(cluster)

    monkeypatch.setattr(Cluster, "_state", split_before_this_look)
    monkeypatch.setattr(Cluster, "_run", lambda cluster, wait, state, hosts, timeout:
                        waited_for.append(hosts) or {})
    assert h1.ok("wait-cluster") == ""
    assert waited_for == [["h1"]]

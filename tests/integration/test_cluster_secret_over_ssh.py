"""join-cluster and merge-cluster take the peer's cluster secret over SSH
(root, host key verified, --ssh-port), as the kernel's marsadm does: the
secret never crosses the MARS ports. One real sshd plays every host: each
session gets the MARS_ROOT of the host whose address it came in on."""

import pytest

from tests.helpers.sshd import Sshd
from tests.integration.support import sparse_disk, wait_for_membership, wait_for_resources

pytestmark = pytest.mark.integration


def secret(host):
    return (host.root / "mars" / "cluster.key").read_text().strip()


@pytest.fixture
def ssh_net(marsnet, tmp_path, monkeypatch):
    """a1, a2, b1; an sshd on every host's address; marsadm's ssh (the
    environment every host's marsadm inherits) trusts its host key and logs
    in with the test's client key."""
    a1, a2, b1 = (marsnet.add(name) for name in ("a1", "a2", "b1"))
    sshd = Sshd(tmp_path / "sshd", [host.address for host in (a1, a2, b1)],
                {host.address: {"MARS_ROOT": host.root} for host in (a1, a2, b1)}).start()
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(sshd.known_hosts_lines())
    monkeypatch.setenv("MARS_SSH_OPTIONS", f"-i {sshd.client_key} -o IdentitiesOnly=yes "
                                           f"-o UserKnownHostsFile={known_hosts} "
                                           "-o StrictHostKeyChecking=yes")
    try:
        yield marsnet, sshd, known_hosts, (a1, a2, b1)
    finally:
        sshd.stop()


def test_merge_of_clusters_with_different_secrets_gives_both_sides_the_peers(ssh_net):
    marsnet, sshd, _, (a1, a2, b1) = ssh_net
    marsnet.create_cluster(a1, a2)
    marsnet.create_cluster(b1)
    assert secret(a1) == secret(a2) != secret(b1)
    wait_for_membership([a1, a2], [a1, a2])
    b1.marsadm("create-resource", "vm1", sparse_disk(b1))

    a2.marsadm("merge-cluster", f"--ssh-port={sshd.port}", b1.name, b1.address)

    assert secret(a1) == secret(a2) == secret(b1)
    everyone = [a1, a2, b1]
    wait_for_membership(everyone, everyone)
    wait_for_resources(everyone, ["vm1"])


def test_join_without_a_secret_takes_the_peers_over_ssh(ssh_net):
    marsnet, sshd, _, (a1, a2, _) = ssh_net
    marsnet.create_cluster(a1)
    assert not (a2.root / "mars" / "cluster.key").exists()
    a2.marsadm("join-cluster", f"--ssh-port={sshd.port}", a1.name, a1.address,
               f"--ip={a2.address}")
    assert secret(a2) == secret(a1)
    a2.start()
    wait_for_membership([a1, a2], [a1, a2])


def test_a_peer_whose_host_key_is_unknown_is_refused_and_nothing_changes(ssh_net):
    marsnet, sshd, known_hosts, (a1, a2, b1) = ssh_net
    known_hosts.write_text("")
    marsnet.create_cluster(a1, a2)
    marsnet.create_cluster(b1)
    before = {host.name: secret(host) for host in (a1, a2, b1)}
    wait_for_membership([a1, a2], [a1, a2])

    result = a2.marsadm("merge-cluster", f"--ssh-port={sshd.port}", b1.name, b1.address, check=False)

    assert result.returncode == 1, result.stderr
    assert "Host key verification failed" in result.stderr and "ssh to b1" in result.stderr
    assert {host.name: secret(host) for host in (a1, a2, b1)} == before
    assert "b1" not in a2.marsadm("view-cluster-members").stdout

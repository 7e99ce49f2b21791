"""Control-plane review: merge-cluster against a peer whose answer is lost."""

import pytest

from mars import antientropy, net
from mars.cluster import Cluster
from mars.errors import MarsError, PeerError, PeerRefused
from mars.hostenv import HostEnv
from mars.store import Store
from tests.unit.conftest import FakeWall


class Peer:
    """A peer's marsd in-process: its store answers pulls and pushes as
    antientropy.answer does; `lose_push_reply` makes one push reach it and
    its reply get lost (a timeout, a reset)."""

    def __init__(self, store, secret=None):
        self.store = store
        self.secret = secret            # refuses another one (None: takes any)
        self.lose_push_reply = False

    def install(self, monkeypatch):
        peer = self

        class Channel:
            def __init__(self):
                self.peer = peer.store.host

            async def aclose(self):
                pass

        async def connect(address, port, host, key, **kwargs):
            if peer.secret is not None and key != peer.secret.encode():
                raise PeerRefused(f"{peer.store.host} refuses us: another cluster secret")
            return Channel()

        async def fetch(channel, vector, timeout=60.0):
            reply, body = antientropy.answer(peer.store, "a1", {"type": "pull", "vector": vector},
                                             b"")
            return net.decode_tuples(body), reply["vector"]

        async def push(channel, items, timeout=60.0, admit=False):
            antientropy.answer(peer.store, "a1", {"type": "push", "admit": admit},
                               net.encode_tuples(items))
            if peer.lose_push_reply:
                peer.lose_push_reply = False
                raise PeerError(f"{peer.store.host}: connection reset")

        monkeypatch.setattr(net, "connect", connect)
        monkeypatch.setattr(antientropy, "fetch", fetch)
        monkeypatch.setattr(antientropy, "push", push)


def test_merge_cluster_again_after_a_lost_reply_completes_the_merge(tmp_path, monkeypatch):
    """The peer took this cluster's tuples, its reply was lost: merge-cluster
    failed before anything was written here. Run again, it found this
    cluster's own resources on the peer and refused for ever ('resources
    exist in both clusters'), the peer listing a cluster that did not list
    it."""
    wall = FakeWall(10**18)
    with Store(tmp_path / "a1.sqlite", "a1", wall=wall) as a1, \
            Store(tmp_path / "b1.sqlite", "b1", wall=wall) as b1:
        a1.write({"uuid": "u-a", "ips/ip-a1": "10.0.0.1"})
        a1.write({"resource-vm1/size": "4096", "resource-vm1/primary": "a1",
                  "resource-vm1/data-a1": "/dev/vg/vm1"})
        wall.now += 10
        b1.write({"uuid": "u-b", "ips/ip-b1": "10.0.0.2"})
        b1.write({"resource-vm2/size": "4096", "resource-vm2/primary": "b1",
                  "resource-vm2/data-b1": "/dev/vg/vm2"})
        peer = Peer(b1)
        peer.install(monkeypatch)
        env = HostEnv(host="a1", root=tmp_path)
        env.ensure_state_dir()
        env.write_cluster_key("a" * 64)
        cluster = Cluster(env, a1, timeout=5)
        peer.lose_push_reply = True
        with pytest.raises(PeerError):
            cluster.merge("b1", "10.0.0.2")
        assert a1.state().cluster_hosts() == ["a1"]
        cluster.merge("b1", "10.0.0.2")
        assert a1.state().cluster_hosts() == ["a1", "b1"]
        assert a1.state().all_resources() == ["vm1", "vm2"]


def test_a_merge_refused_for_a_clash_leaves_the_cluster_secret_as_it_was(tmp_path, monkeypatch):
    """With another cluster secret, merge-cluster took the peer's over SSH
    and gave it to this cluster's members and this host before it could
    look at the peer's metadata; a clash found then ('resources exist in
    both clusters') refused the merge, and this cluster was left running on
    the other cluster's secret."""
    from mars import sshpeer
    wall = FakeWall(10**18)
    mine, theirs = "a" * 64, "b" * 64
    env = HostEnv(host="a1", root=tmp_path)
    env.ensure_state_dir()
    env.write_cluster_key(mine)
    installed = {}
    monkeypatch.setattr(sshpeer, "fetch_secret", lambda *args, **kwargs: theirs)
    monkeypatch.setattr(sshpeer, "check_login", lambda *args, **kwargs: None)
    monkeypatch.setattr(sshpeer, "install_secret",
                        lambda host, address, secret, *args: installed.update({host: secret}))
    with Store(tmp_path / "a1.sqlite", "a1", wall=wall) as a1, \
            Store(tmp_path / "b1.sqlite", "b1", wall=wall) as b1:
        a1.write({"uuid": "u-a", "ips/ip-a1": "10.0.0.1"})
        a1.apply([("ips/ip-a2", "10.0.0.3", 5, "a2")])
        a1.write({"resource-vm1/size": "4096", "resource-vm1/data-a1": "/dev/vg/vm1"})
        b1.write({"uuid": "u-b", "ips/ip-b1": "10.0.0.2"})
        b1.write({"resource-vm1/size": "8192", "resource-vm1/data-b1": "/dev/vg/vm1"})
        Peer(b1, secret=theirs).install(monkeypatch)
        with pytest.raises(MarsError, match="resources exist in both clusters"):
            Cluster(env, a1, timeout=5).merge("b1", "10.0.0.2")
        assert (installed, env.cluster_key()) == ({}, mine.encode())

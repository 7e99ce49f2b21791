"""Which host a process speaks for, and where that host keeps its state."""

import os
import stat

import pytest

from mars.errors import MarsError
from mars.hostenv import HostEnv, resolve_address


def test_host_option_wins_over_mars_host_and_root_comes_from_mars_root(monkeypatch, tmp_path):
    monkeypatch.setenv("MARS_HOST", "h2")
    monkeypatch.setenv("MARS_ROOT", str(tmp_path))
    assert HostEnv.from_environment().host == "h2"
    env = HostEnv.from_environment(host="h3")
    assert env.host == "h3"
    assert env.state_dir == tmp_path / "mars"
    assert env.dev_dir == tmp_path / "dev" / "mars"
    assert env.db_path == tmp_path / "mars" / "metadata.sqlite"


def test_an_invalid_host_name_from_the_environment_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("MARS_HOST", "Not_A_Host")
    with pytest.raises(MarsError, match="invalid host name 'Not_A_Host'"):
        HostEnv.from_environment(root=tmp_path)


def test_cluster_key_is_created_once_private_and_never_replaced(tmp_path):
    env = HostEnv(host="h1", root=tmp_path)
    env.create_cluster_key()
    key = env.cluster_key()
    assert len(key) == 64
    assert stat.S_IMODE(os.stat(env.key_path).st_mode) == 0o600
    env.create_cluster_key()
    assert env.cluster_key() == key


def test_missing_or_short_cluster_key_is_refused_with_what_to_do(tmp_path):
    env = HostEnv(host="h1", root=tmp_path)
    with pytest.raises(MarsError, match="no cluster secret .* copy cluster.key"):
        env.cluster_key()
    env.ensure_state_dir()
    env.key_path.write_text("abc\n")
    with pytest.raises(MarsError, match="too short"):
        env.cluster_key()


@pytest.mark.parametrize("address", [
    "999.0.0.1", "10.0.0.256", "example.org", "::1x", "::1",
    # abbreviated forms inet_aton would take: stored as given, '127.1' would not be
    # recognised as the 127.0.0.1 another host already uses
    "127.1", "10.0.0", "0x7f.0.0.1"])
def test_an_invalid_or_abbreviated_address_is_refused(address):
    with pytest.raises(MarsError, match=f"invalid IP address '{address}'"):
        resolve_address("h1", address)


def test_a_given_address_is_used_without_a_lookup():
    assert resolve_address("no-such-host-anywhere", "127.0.0.31") == "127.0.0.31"


def test_unit_tests_cannot_reach_the_network():
    from tests.unit.conftest import NetworkUsed
    with pytest.raises(NetworkUsed):
        resolve_address("h1")

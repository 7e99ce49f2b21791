"""Fixtures of the SSH transport's tests against a real sshd (root): the
sshd on a loopback address of the run's own, its host key known, and
`connect(**settings)`."""

import pytest

from football.ssh import SSHTransport
from tests.helpers.marshosts import STATE_WAIT, random_subnet
from tests.helpers.sshd import Sshd


@pytest.fixture
def sshd(tmp_path):
    server = Sshd(tmp_path / "sshd", [f"{random_subnet()}.5"])
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def known_hosts(tmp_path, sshd):
    path = tmp_path / "known_hosts"
    path.write_text(sshd.known_hosts_lines())
    return path


@pytest.fixture
def connect(sshd, known_hosts):
    """connect(**settings) -> an SSHTransport to the test's sshd, closed at the end."""
    made = []

    def make(**settings):
        settings = {"port": sshd.port, "ssh_key": str(sshd.client_key),
                    "known_hosts": str(known_hosts), "connect_timeout": STATE_WAIT, **settings}
        made.append(SSHTransport("h1", sshd.addresses[0], **settings))
        return made[-1]

    yield make
    for transport in made:
        transport.close()

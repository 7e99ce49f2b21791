"""Where a host keeps its state, and which host this process speaks for.

`MARS_ROOT` (default `/`) relocates everything a host owns: the state dir
`<root>/mars` (production `/mars`) and the device dir `<root>/dev/mars`.
The host name comes from `--host`, else `MARS_HOST`, else the short hostname.
Several lab hosts on one machine are simply several roots."""

import hashlib
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

from mars.errors import MarsError
from mars.names import check_host

PORT_META = 7777
PORT_FETCH = 7778
PORT_SYNC = 7779


@dataclass(frozen=True)
class HostEnv:
    """The identity and the paths of one MARS host."""

    host: str
    root: Path

    @classmethod
    def from_environment(cls, host=None, root=None):
        """Resolve host name and root from arguments, then the environment."""
        root = Path(root or os.environ.get("MARS_ROOT") or "/")
        host = host or os.environ.get("MARS_HOST") or socket.gethostname().split(".")[0]
        return cls(host=check_host(host), root=root)

    @property
    def state_dir(self):
        return self.root / "mars"

    @property
    def dev_dir(self):
        return self.root / "dev" / "mars"

    @property
    def db_path(self):
        return self.state_dir / "metadata.sqlite"

    @property
    def key_path(self):
        return self.state_dir / "cluster.key"

    @property
    def pid_path(self):
        return self.state_dir / "marsd.pid"

    @property
    def wake_address(self):
        """marsd's wake-up socket: Linux's abstract namespace (no file, no
        path length limit), named after the state dir."""
        digest = hashlib.sha256(str(self.state_dir.resolve()).encode()).hexdigest()[:24]
        return f"\0mars-wake-{digest}"

    def poke_daemon(self):
        """Tell this host's marsd that its store changed, so that it acts at
        once, not at its next round. Best effort: no marsd is fine."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as poke:
                poke.setblocking(False)
                poke.sendto(b"!", self.wake_address)
        except OSError:
            pass

    def ensure_state_dir(self):
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    def cluster_key(self):
        """The cluster secret, as bytes. Missing key is an operator error."""
        try:
            text = self.key_path.read_text().strip()
        except FileNotFoundError:
            raise MarsError(
                f"no cluster secret at {self.key_path}: run create-cluster on the first host, "
                "or copy cluster.key from a cluster member's state dir") from None
        if len(text) < 32:
            raise MarsError(f"cluster secret {self.key_path} is too short (need >= 32 hex characters)")
        return text.encode()

    def create_cluster_key(self, replace=False):
        """Write a new random cluster secret unless one is there already
        (`replace`: always, so that an abandoned cluster cannot talk to us)."""
        if replace or not self.key_path.exists():
            self.write_cluster_key(secrets.token_hex(32))

    def write_cluster_key(self, text):
        """Replace the cluster secret (owner-only, atomically, durable)."""
        if len(text.strip()) < 32:
            raise MarsError("a cluster secret needs at least 32 hex characters")
        self.ensure_state_dir()
        tmp = self.key_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text.strip() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.key_path)


def resolve_address(name, given=None):
    """The IPv4 address for a host: `given` if set, else a name lookup."""
    if given:
        try:
            socket.inet_pton(socket.AF_INET, given)   # dotted quad only, no "127.1"
        except OSError:
            raise MarsError(f"invalid IP address {given!r}") from None
        return given
    try:
        return socket.gethostbyname(name)
    except OSError:
        raise MarsError(
            f"cannot resolve host {name!r} to an address: give it explicitly "
            "(--ip=<addr>, or the peer's address after its name)") from None

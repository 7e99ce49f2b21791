"""Fixtures for unit tests: no root, no marsd, no network.

A host is a temporary MARS_ROOT; `marsadm` runs the click CLI in-process
(global options hoisted as `main()` does); other hosts exist only as tuples
applied to the local store, as if a peer had sent them."""

import errno
import fcntl
import json
import os
import random
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from mars import follow
from mars.marsadm import cli, hoist_global_options
from mars.store import Store
from tests.helpers.fakehost import FakeRunner

MIB = 1 << 20


class NetworkUsed(AssertionError):
    """A unit test tried to reach the network."""


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Unit tests never connect or look names up: fail loudly if code tries.
    Unix sockets (the tool server's) are local, not network."""
    def refuse(*args, **kwargs):
        raise NetworkUsed(f"unit test tried to use the network: {args!r}")

    class GuardedSocket(socket.socket):
        def connect(self, *args):
            if self.family != socket.AF_UNIX:
                refuse(*args)
            return super().connect(*args)

        def connect_ex(self, *args):
            if self.family != socket.AF_UNIX:
                refuse(*args)
            return super().connect_ex(*args)

    monkeypatch.setattr(socket, "socket", GuardedSocket)
    for name in ("create_connection", "getaddrinfo", "gethostbyname", "gethostbyname_ex"):
        monkeypatch.setattr(socket, name, refuse)


class FakeWall:
    """A wall clock the test sets by hand (nanoseconds)."""

    def __init__(self, now=1_000_000):
        self.now = now

    def __call__(self):
        return self.now


@dataclass
class Host:
    """One host's MARS_ROOT, driven through the marsadm CLI."""

    name: str
    root: Path

    @property
    def state_dir(self):
        return self.root / "mars"

    @property
    def db_path(self):
        return self.state_dir / "metadata.sqlite"

    def run(self, *args):
        """Run `marsadm <args>` as this host; returns click's Result."""
        runner = CliRunner(env={"MARS_ROOT": str(self.root), "MARS_HOST": self.name})
        return runner.invoke(cli, hoist_global_options([str(arg) for arg in args]),
                             prog_name="marsadm")

    def ok(self, *args):
        """Run marsadm, insist on exit 0 and no stderr, return stdout."""
        result = self.run(*args)
        assert result.exit_code == 0, (
            f"marsadm {' '.join(map(str, args))} exited {result.exit_code}: "
            f"{result.stdout!r} {result.stderr!r} {result.exception!r}")
        assert result.stderr == ""
        return result.stdout

    def store(self):
        self.state_dir.mkdir(parents=True, exist_ok=True)
        return Store(self.db_path, self.name)

    def tuples(self):
        """Every stored tuple (tombstones included), [] when no store exists."""
        if not self.db_path.exists():
            return []
        with self.store() as store:
            return store.tuples()

    def peer_apply(self, items):
        """Apply (key, value, origin) triples as if peers had sent them, each
        with a stamp newer than anything in the store (in list order)."""
        with self.store() as store:
            base = max((item.stamp for item in store.tuples()), default=0)
            base = max(base, store.clock.last) + 1000
            store.apply([(key, value, base + index, origin)
                         for index, (key, value, origin) in enumerate(items)])


@pytest.fixture
def make_host(tmp_path):
    def make(name, root=None):
        root = Path(root) if root else tmp_path / name
        root.mkdir(parents=True, exist_ok=True)
        return Host(name, root)
    return make


@pytest.fixture
def h1(make_host):
    """A host h1 that created a cluster (offline) at 127.0.0.1."""
    host = make_host("h1")
    host.ok("--ip=127.0.0.1", "create-cluster")
    return host


def make_disk(path, size):
    """A sparse file standing in for an LV."""
    with open(path, "wb"):
        pass
    os.truncate(path, size)
    return str(path)


@dataclass
class Scenario:
    """h1's view of a three-host cluster.

    vm1: members h1 (primary, disk1 1 MiB) and h2;
    vm2: member h1 only, 512 KiB on disk2 (1 MiB);
    vm3: members h2 (primary) and h3, 2 MiB; h1 is not a member."""

    host: Host
    disk1: str
    disk2: str
    spare: str      # an unused 1 MiB disk on h1


@pytest.fixture
def scenario(h1, tmp_path):
    disk1 = make_disk(tmp_path / "disk1", MIB)
    disk2 = make_disk(tmp_path / "disk2", MIB)
    spare = make_disk(tmp_path / "spare", MIB)
    h1.ok("create-resource", "vm1", disk1)
    h1.ok("create-resource", "vm2", disk2, "512k")
    h1.peer_apply([
        ("ips/ip-h2", "127.0.0.2", "h2"),
        ("ips/ip-h3", "127.0.0.3", "h3"),
        ("resource-vm1/data-h2", "/dev/vg/vm1", "h2"),
        ("resource-vm3/size", str(2 * MIB), "h2"),
        ("resource-vm3/primary", "h2", "h2"),
        ("resource-vm3/data-h2", "/dev/vg/vm3", "h2"),
        ("resource-vm3/data-h3", "/dev/vg/vm3", "h3"),
    ])
    return Scenario(h1, disk1, disk2, spare)


def random_writes(seed, count, disk_size, lengths=(512, 4096, 3)):
    """`count` reproducible (offset, data) writes inside a disk of `disk_size`."""
    rng = random.Random(seed)
    writes = []
    for _ in range(count):
        length = rng.choice(lengths)
        writes.append((rng.randrange(0, disk_size - length), rng.randbytes(length)))
    return writes


def write_log(path, writes, first_sequence=1, **options):
    """A synced logfile holding `writes`; returns the Records as written."""
    from mars.logfile import LogWriter
    writer = LogWriter(path, first_sequence, **options)
    records = [writer.append(1000 + number, offset, data)
               for number, (offset, data) in enumerate(writes)]
    writer.sync()
    writer.close()
    return records


@pytest.fixture
def runner():
    """A recording fake transport (tests/helpers/fakehost.py); the test fails
    if a command it expected was never run."""
    runner = FakeRunner("h1")
    yield runner
    assert not runner.pending, f"expected commands were not run: {runner.pending}"


@pytest.fixture
def fake_marsd(scenario):
    """Hold marsd's pid-file lock (marsadm then believes marsd runs); returns
    a function writing `<state dir>/status/<res>.json` as marsd does."""
    h1 = scenario.host
    fd = os.open(h1.state_dir / "marsd.pid", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, f"{os.getpid()}\n".encode())

    def write_status(res, **status):
        (h1.state_dir / "status").mkdir(exist_ok=True)
        status.setdefault("updated", time.time())
        status.setdefault("marsd", os.getpid())       # written by the marsd holding the lock
        (h1.state_dir / "status" / f"{res}.json").write_text(json.dumps(status))

    yield write_status
    os.close(fd)


@pytest.fixture
def no_direct_io(monkeypatch):
    """A file system that refuses O_DIRECT and uncached writes: EINVAL at
    the first direct write, EOPNOTSUPP at the first uncached one (of the
    sync client's and of the log appender's)."""
    from mars import directio, transfer
    real = directio.pwritev_all

    def refusing(fd, buffers, offset, flags=0):
        if flags & directio.RWF_DONTCACHE:
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(fd, buffers, offset, flags)

    for module in (directio, transfer):
        monkeypatch.setattr(module, "pwritev_all", refusing)


@pytest.fixture(autouse=True)
def uncached_refusals_of_this_test(monkeypatch):
    """The file systems that refused an uncached write (a test's spy
    refusing them on tmp_path's) are forgotten after each test."""
    from mars import directio
    monkeypatch.setattr(directio, "_refused_uncached", set())


@pytest.fixture
def no_uncached_writes(monkeypatch):
    """A kernel without uncached writes (before Linux 6.14, or a block
    device): `DirectWriter`s asked for them write with O_DIRECT."""
    from mars import directio
    real = directio.DirectWriter.__init__

    def direct_only(self, path, uncached=False):
        real(self, path)

    monkeypatch.setattr(directio.DirectWriter, "__init__", direct_only)


@pytest.fixture
def fails_once(monkeypatch):
    """Once armed (`fails_once["armed"] = True`), the next fdatasync fails
    with EIO (of the fd `fails_once["fd"]` only, where one is set), then
    they succeed again: Linux reports a lost write-back once per open file.
    No replica disk's failure is kept from another test
    (`follow._disk_sync_failures`)."""
    real = os.fdatasync
    state = {"armed": False, "fd": None}

    def fdatasync(fd):
        if state["armed"] and state["fd"] in (None, fd):
            state["armed"] = False
            raise OSError(errno.EIO, "Input/output error")
        return real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    monkeypatch.setattr(follow, "_disk_sync_failures", {})
    return state

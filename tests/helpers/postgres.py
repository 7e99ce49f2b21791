"""A private PostgreSQL server for a test run (Debian's `postgresql`
package): initdb into a temp dir as the `postgres` user, the server
listening only on a random 127.A.B.x address and a free port, its unix
socket in a private dir, one database; stopped by pid at the end, also when
the test fails, and it dies with the test run if that is killed. The
files of a killed run's server are removed by the next run: its creator
holds a lock on `owner` in the server's dir for as long as it lives.

The data dir is not under the test's tmp dir: pytest makes that root-only
(0700), and the server runs as `postgres`."""

import ctypes
import fcntl
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.helpers.marshosts import random_subnet

SERVER_USER = "postgres"
DATABASE = "football_jobs"
START_WAIT = 60.0
PR_SET_PDEATHSIG = 1
DIR_PREFIX = "football-pg-"


def binaries():
    """The dir of initdb and postgres (the newest version installed)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda path: int(Path(path).parts[4]) if Path(path).parts[4].isdigit()
                   else 0)
    if not found:
        raise RuntimeError("PostgreSQL is not installed: `make deps` installs Debian's "
                           "postgresql package")
    return Path(found[-1]).parent


def _fast_shutdown_with_parent():
    """The server gets SIGINT (fast shutdown) when the test run dies."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGINT, 0, 0, 0)


def free_port(address):
    with socket.socket() as probe:
        probe.bind((address, 0))
        return probe.getsockname()[1]


class PostgresServer:
    """One server: `start()` makes and starts it, `url` names its
    database, `stop()` ends it (by pid) and removes its files."""

    def __init__(self, user=SERVER_USER):
        self.user = pwd.getpwnam(user)
        self.address = f"{random_subnet()}.5"
        self.password = secrets.token_hex(12)
        self.process = None
        with open(Path(tempfile.gettempdir()) / f"{DIR_PREFIX}lock", "a") as making:
            fcntl.flock(making, fcntl.LOCK_EX)      # no sweep between making and locking
            remove_leftovers()
            self.dir = Path(tempfile.mkdtemp(prefix=DIR_PREFIX))
            self.owner = open(self.dir / "owner", "w")
            fcntl.flock(self.owner, fcntl.LOCK_EX)  # released when this process ends
        os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)
        self.data, self.sockets = self.dir / "data", self.dir / "sockets"
        self.log_path = self.dir / "server.log"
        self.port = None

    @property
    def url(self):
        return (f"postgresql://football:{self.password}@{self.address}:{self.port}/"
                f"{DATABASE}")

    def _as_server_user(self, argv, **kwargs):
        return subprocess.run(argv, user=self.user.pw_uid, group=self.user.pw_gid,
                              extra_groups=[], cwd=self.dir, capture_output=True, text=True,
                              timeout=120, **kwargs)

    def start(self):
        bin_dir = binaries()
        password_file = self.dir / "password"
        password_file.write_text(self.password + "\n")
        os.chown(password_file, self.user.pw_uid, self.user.pw_gid)
        result = self._as_server_user([
            str(bin_dir / "initdb"), "-D", str(self.data), "-U", "football",
            f"--pwfile={password_file}", "--auth=scram-sha-256", "-E", "UTF8", "--no-sync"])
        assert result.returncode == 0, f"initdb failed:\n{result.stdout}{result.stderr}"
        password_file.unlink()
        self.sockets.mkdir(mode=0o700)
        os.chown(self.sockets, self.user.pw_uid, self.user.pw_gid)
        self.port = free_port(self.address)
        self._serve()
        self._connected(f"CREATE DATABASE {DATABASE}")
        return self

    def pause(self):
        """Stop the server (fast shutdown, by its pid), keeping its data:
        the jobs' database goes away, as in a restart of it."""
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=30)

    def resume(self):
        """Start the paused server again, on the same address and port."""
        self._serve()
        self._connected("SELECT 1")

    def _serve(self):
        log = open(self.log_path, "a")
        os.chown(self.log_path, self.user.pw_uid, self.user.pw_gid)
        self.process = subprocess.Popen(
            [str(binaries() / "postgres"), "-D", str(self.data), "-k", str(self.sockets),
             "-c", f"listen_addresses={self.address}", "-p", str(self.port),
             "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "max_connections=200"],
            user=self.user.pw_uid, group=self.user.pw_gid, extra_groups=[], cwd=self.dir,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=_fast_shutdown_with_parent)
        log.close()

    def _connected(self, statement):
        """Run `statement` as soon as the server accepts connections."""
        import psycopg

        deadline = time.monotonic() + START_WAIT
        while True:
            assert self.process.poll() is None, f"postgres exited:\n{self.log()}"
            try:
                with psycopg.connect(host=self.address, port=self.port, user="football",
                                     password=self.password, dbname="postgres",
                                     autocommit=True, connect_timeout=5) as connection:
                    connection.execute(statement)
                return
            except psycopg.OperationalError as error:
                if time.monotonic() > deadline:
                    raise AssertionError(f"postgres did not accept connections: {error}\n"
                                         f"{self.log()}") from None
                time.sleep(0.2)

    def log(self):
        try:
            return self.log_path.read_text()[-3000:]
        except OSError:
            return ""

    def stop(self):
        """Fast shutdown (SIGINT) of the server by its pid, SIGKILL after
        30 s; its files removed."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.owner.close()


def remove_leftovers(parent=None):
    """Remove the dirs of servers whose test run was killed (nobody holds
    their `owner` lock any more; the server died with the run). Called
    under the lock that dirs are made under; one without an owner file is
    not ours."""
    for directory in Path(parent or tempfile.gettempdir()).glob(f"{DIR_PREFIX}*"):
        if not directory.is_dir():
            continue
        try:
            with open(directory / "owner") as owner:
                fcntl.flock(owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:             # held (alive), or no owner file
            continue
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres_server(request):
    """A private PostgreSQL server for the test file (root: it runs as
    `postgres`), started."""
    server = PostgresServer()
    request.addfinalizer(server.stop)
    return server.start()


@pytest.fixture(scope="module")
def postgres_url(postgres_server):
    """The URL of a database on the test file's private PostgreSQL server."""
    return postgres_server.url

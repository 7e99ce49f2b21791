"""A real sshd of the test's own: host and client keys generated into the
test's directory, its own sshd_config, listening on 127.x.y.z addresses and
one free port, logging to a file (`-e`), stopped by its pid."""

import os
import re
import signal
import socket
import subprocess
from pathlib import Path

from tests.helpers.leftovers import die_with_parent
from tests.helpers.marshosts import wait_until

SSHD = "/usr/sbin/sshd"
PRIVSEP_DIR = Path("/run/sshd")     # sshd refuses to start without it


def keygen(path):
    """A new ed25519 key pair at `path` (private) and `path`.pub."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "football-test",
                    "-f", str(path)], check=True, capture_output=True)
    return Path(path)


def free_port(address):
    with socket.socket() as probe:
        probe.bind((address, 0))
        return probe.getsockname()[1]


class Sshd:
    """One sshd process for `addresses`; `client_key` may log in as root."""

    def __init__(self, base, addresses, env_by_address=None, max_sessions=50):
        """`env_by_address`: {address: {name: value}} set for sessions that
        came in on that address (SetEnv): one sshd plays several hosts.
        `max_sessions`: sessions (channels) one connection may hold at once."""
        self.env_by_address = dict(env_by_address or {})
        self.max_sessions = max_sessions
        self.dir = Path(base)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.addresses = list(addresses)
        self.port = free_port(self.addresses[0])
        self.client_key = keygen(self.dir / "client_key")
        (self.dir / "authorized_keys").write_text(self.client_key.with_suffix(".pub").read_text())
        self.host_key = keygen(self.dir / "host_key")
        self.log_path = self.dir / "sshd.log"
        self.process = None

    def known_hosts_lines(self):
        """What ssh-keyscan would say about every address, for known_hosts."""
        key = " ".join(self.host_key.with_suffix(".pub").read_text().split()[:2])
        return "".join(f"[{address}]:{self.port} {key}\n" for address in self.addresses)

    def write_config(self):
        listen = "".join(f"ListenAddress {address}:{self.port}\n" for address in self.addresses)
        config = self.dir / "sshd_config"
        config.write_text(
            f"{listen}"
            f"HostKey {self.host_key}\n"
            f"AuthorizedKeysFile {self.dir / 'authorized_keys'}\n"
            "PidFile none\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            f"LogLevel VERBOSE\nMaxSessions {self.max_sessions}\n"
            + "".join(f"Match LocalAddress {address}\n  SetEnv "
                      + " ".join(f"{name}={value}" for name, value in env.items()) + "\n"
                      for address, env in self.env_by_address.items()))
        return config

    def start(self):
        assert self.process is None, "sshd already started"
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.write_config())],
                                            stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT,
                                            preexec_fn=die_with_parent)

        def listening():
            assert self.process.poll() is None, f"sshd exited: {self.log(offset)}"
            return self.log(offset).count("Server listening on") >= len(self.addresses)

        wait_until(listening, what="sshd listening", show=lambda: self.log(offset)[-2000:])
        return self

    def stop(self):
        """Stop the listener and the per-connection processes it forked (they
        outlive the listener's SIGTERM, as sessions outlive an sshd restart)."""
        if self.process is None:
            return
        sessions = children_of(self.process.pid)
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None
        signal_each(sessions, signal.SIGTERM)

    def drop_connections(self):
        """End every open connection, as a host's reboot or a network cut would."""
        signal_each(children_of(self.process.pid), signal.SIGTERM)

    def freeze_connections(self):
        """Stop (SIGSTOP) the per-connection sshd processes, not the commands
        they run: the host goes silent on its open connections, as a frozen
        host or a half-open TCP connection would. Their pids, for `thaw`."""
        frozen, todo = [], children_of(self.process.pid)
        while todo:
            pid = todo.pop()
            try:
                name = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if b"sshd" in name:
                os.kill(pid, signal.SIGSTOP)
                frozen.append(pid)
                todo += children_of(pid)
        return frozen

    @staticmethod
    def thaw(pids):
        signal_each(pids, signal.SIGCONT)

    def restart_with_new_host_key(self):
        self.stop()
        for path in (self.host_key, self.host_key.with_suffix(".pub")):
            path.unlink()
        keygen(self.host_key)
        return self.start()

    def log(self, offset=0):
        """sshd's log from byte `offset` on (its lines end in CR LF)."""
        if not self.log_path.exists():
            return ""
        return self.log_path.read_bytes()[offset:].decode(errors="replace")

    def connections_to(self, address):
        """How many TCP connections sshd accepted on `address` (LogLevel VERBOSE)."""
        return len(re.findall(rf"Connection from \S+ port \d+ on {re.escape(address)} port "
                              rf"{self.port}\b", self.log()))

    def logins(self):
        return self.log().count("Accepted publickey for root")


def children_of(parent):
    """The pids of `parent`'s child processes."""
    children = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and \
                    int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent:
                children.append(int(proc.name))
        except OSError:
            pass
    return children


def signal_each(pids, sent):
    """Signal `sent` to each of `pids` that still runs."""
    for pid in pids:
        try:
            os.kill(pid, sent)
        except ProcessLookupError:
            pass


def pgrep(pattern):
    """The pids of processes whose command line contains `pattern`."""
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]

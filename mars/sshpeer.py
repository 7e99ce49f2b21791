"""What marsadm asks of a peer over SSH, as the kernel's marsadm does for
what must not cross the network in clear: the cluster secret (join-cluster
on a host without it, merge-cluster of two clusters with different ones).

OpenSSH's client does it, as root (the kernel's way): host keys are
verified as its configuration says (BatchMode: never a prompt, so an
unknown or changed host key is refused), `--ssh-port` gives the port, and
`MARS_SSH_OPTIONS` any further options (`-i <key> -o
UserKnownHostsFile=<file>`, …). On the peer, the secret is
`${MARS_ROOT:-}/mars/cluster.key` as its login shell sees it."""

import os
import re
import shlex
import subprocess

from mars.errors import MarsError

SSH_PORT = 22
READ_SECRET = 'cat "${MARS_ROOT:-}/mars/cluster.key"'
WRITE_SECRET = ('umask 077 && d="${MARS_ROOT:-}/mars" && mkdir -p "$d" && '
                'cat > "$d/cluster.key.new" && mv -f "$d/cluster.key.new" "$d/cluster.key"')
SECRET = re.compile(r"[0-9a-f]{32,}")


def ssh_command(address, port, remote):
    options = shlex.split(os.environ.get("MARS_SSH_OPTIONS", ""))
    return ["ssh", "-p", str(port), "-o", "BatchMode=yes", *options, f"root@{address}", remote]


def _run(host, address, port, remote, timeout, input=None):
    command = ssh_command(address, port, remote)
    try:
        done = subprocess.run(command, input=input, capture_output=True, text=True,
                              timeout=None if timeout < 0 else max(timeout, 1))
    except subprocess.TimeoutExpired:
        raise MarsError(f"ssh to {host} ({address}:{port}) did not finish within {timeout:g}s") \
            from None
    except OSError as exc:
        raise MarsError(f"cannot run ssh: {exc}") from None
    if done.returncode != 0:
        said = "; ".join(line.strip() for line in done.stderr.strip().splitlines()[-3:])
        raise MarsError(f"ssh to {host} ({address}:{port}) failed (exit {done.returncode}): "
                        f"{said[-300:] or 'no message'}; check that root may log "
                        "in there by key and that its host key is known (--ssh-port, "
                        "MARS_SSH_OPTIONS)")
    return done.stdout


def fetch_secret(host, address, port=SSH_PORT, timeout=60.0):
    """The cluster secret of `host`, read over SSH."""
    text = _run(host, address, port, READ_SECRET, timeout).strip()
    if not SECRET.fullmatch(text):
        raise MarsError(f"{host} ({address}) has no usable cluster secret: is it a member of a "
                        "cluster?")
    return text


def check_login(host, address, port=SSH_PORT, timeout=60.0):
    """Raise MarsError unless `host` lets us in over SSH."""
    _run(host, address, port, "true", timeout)


def install_secret(host, address, secret, port=SSH_PORT, timeout=60.0):
    """Replace the cluster secret of `host` over SSH (atomically there)."""
    _run(host, address, port, WRITE_SECRET, timeout, input=secret + "\n")

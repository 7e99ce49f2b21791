"""The source side of a shrink's copy pass, confined to the volume it copies.

rsync reads its source by path, as root on the host, while the container
runs: its owner (root inside it) can swap a directory for a symlink (to
/etc, /root) between rsync's file list and its open of a file below it,
and a name of the relink pass's list (`--files-from`) is resolved through
any symlink above it (rsync 3.5.0 anchors a plain pass's opens, not the
names of a list; older ones neither). rsync then copied host files into the
copy, the customer's filesystem from then on.

So the source side runs as a single-use rsync daemon over a remote-shell
pipe (rsync(1), "USING RSYNC-DAEMON FEATURES VIA A REMOTE-SHELL
CONNECTION"), chrooted into the volume: every path, an absolute symlink's
too, resolves inside it. The pass is

    rsync <options> --rsh="football-host rsync-source '<volume>'" source::volume/ <copy>/

rsync starts the "remote shell" with `source rsync --server --daemon .`
appended; `serve` ignores those and execs `rsync --server --daemon` with
CONFIG, a file that never changes: the module's path comes from the
environment (`%FOOTBALL_RSYNC_SOURCE%`, rsyncd.conf(5)), no path is quoted
into a file. The parameters (rsyncd.conf(5), rsync 3.5.0):

- `use chroot = yes`: chroot into the path or fail (unset, rsync 3.2.7 and
  later go on unconfined, with a warning);
- `uid = 0`, `gid = 0`: read every file, as the plain pass did (root's
  daemon otherwise becomes "nobody");
- `numeric ids = yes`: no user or group names looked up inside the
  container's tree (its /etc/passwd, its NSS libraries, loaded by root);
- `munge symlinks = no`: symlinks are sent verbatim (the chroot keeps them
  from being followed out);
- `read only`, `list = no`: a source only, one module;
- `reverse lookup = no`: no DNS lookup of the pipe's "client";
- `log file = /dev/null`, opened before the chroot: syslog's /dev/log
  inside it would be the container's; errors reach the client over the
  protocol all the same."""

import os
import sys

MODULE = "volume"
SOURCE_VARIABLE = "FOOTBALL_RSYNC_SOURCE"
SOURCE = f"source::{MODULE}/"       # a pass's source argument, served by `rsh_command`
CONFIG_DIR = "/run/football"
CONFIG_PATH = os.path.join(CONFIG_DIR, "rsyncd-source.conf")
CONFIG = f"""# football-host rsync-source (football/hostside/confined.py); rewritten when changed
reverse lookup = no
log file = /dev/null

[{MODULE}]
    path = %{SOURCE_VARIABLE}%
    use chroot = yes
    read only = yes
    list = no
    uid = 0
    gid = 0
    numeric ids = yes
    munge symlinks = no
    transfer logging = no
"""


class ConfinedError(Exception):
    """The confined source cannot be served (a bad path, no room for CONFIG)."""


def rsh_command(source):
    """The `--rsh` value that serves `source` confined: rsync splits it at
    spaces, a single-quoted part is kept whole, a single quote inside one
    is doubled (rsync(1), --rsh)."""
    return "football-host rsync-source '" + source.replace("'", "''") + "'"


def _checked_source(source):
    if not os.path.isabs(source):
        raise ConfinedError(f"{source!r} is no absolute path")
    # (a "/./" in a module's path splits it into chroot and inner path)
    source = os.path.normpath(source)
    if not os.path.isdir(source):
        raise ConfinedError(f"{source}: no such directory")
    return source


def write_config():
    """CONFIG at CONFIG_PATH, written (temporary file, then rename) where
    it is missing or differs; its path."""
    try:
        with open(CONFIG_PATH) as handle:
            if handle.read() == CONFIG:
                return CONFIG_PATH
    except FileNotFoundError:
        pass
    os.makedirs(CONFIG_DIR, mode=0o755, exist_ok=True)
    temporary = f"{CONFIG_PATH}.{os.getpid()}"
    try:
        with open(temporary, "w") as handle:
            handle.write(CONFIG)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, CONFIG_PATH)
    except OSError:
        # (/run full or read-only: no half-written file stays behind)
        try:
            os.unlink(temporary)
        except OSError:
            pass                # (not made; the first error is the one to say)
        raise
    return CONFIG_PATH


def serve(source):
    """Exec the daemon that sends `source` chrooted into it (on the
    remote-shell pipe rsync gave us as stdin and stdout)."""
    source = _checked_source(source)
    try:
        config = write_config()
    except OSError as error:
        raise ConfinedError(f"cannot write the rsync daemon's configuration {CONFIG_PATH}: "
                            f"{error.strerror or error}") from None
    os.environ[SOURCE_VARIABLE] = source
    sys.stdout.flush()
    os.execvp("rsync", ["rsync", "--server", "--daemon", f"--config={config}", "."])

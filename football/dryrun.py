"""Dry run: the host commands a run would issue, recorded instead of run.

An operation's `dry_run()` walks the same action code its phases run —
its own commands and the plugins' hooks (`lv_create`, `resource_stop`,
...) — with each host replaced by `Planner.host(host)`, a `RecordingHost`:

- a command that only reads (`READS`: MARS views, findmnt, blkid, df, the
  helpers' `info`/`state`/`list`, `systemctl is-active`, ...) runs on the real
  host, so that the plugins decide from the real state as in a real run;
- every other command is recorded — (host, argv), in order — and answers
  as a successful command with no output (`Result.planned`). Plugins parse
  JSON output with `football.transport.json_of`, which gives a planned
  result's fields as placeholders.

Mounts are the state that action code looks at before it acts (mount
only what is not mounted, unmount what is): a planned `mount`/`umount`
changes what `findmnt --mountpoint` answers later in the same dry run.
Any other check after a planned change (is the unit active now?) reads the
real, unchanged host and may fail: `Planner.attempt` keeps what was
recorded before such a failure and drops the failure. Locks, intents and
waits are not listed: every step of a real run holds the `football` lock of
the hosts it acts on."""

import shlex

from football.errors import FootballError
from football.transport import Result, TransportError

# marsadm verbs that only read, besides view-*, lowlevel-ls-* and get-*
MARSADM_READS = {"cat", "show", "status", "view", "version"}
# football-host helpers: the actions that only read
HELPER_READS = {("vg", "info"), ("ct", "state"), ("ct", "list"), ("lock", "list"),
                ("lifecycle", "get")}
PROGRAM_READS = {"findmnt", "blkid", "df", "cat", "test", "stat", "lvs", "vgs", "pvs",
                 "lxc-info", "lxc-ls", "xfs_info", "find"}
SYSTEMCTL_READS = {"is-active", "is-enabled", "show", "status", "cat", "list-units"}


def is_read(argv):
    """True when `argv` only reads the host (runs for real in a dry run)."""
    program, args = argv[0], [str(arg) for arg in argv[1:]]
    words = [arg for arg in args if not arg.startswith("-")]
    if program == "marsadm":
        verb = words[0] if words else ""
        return verb.startswith(("view", "lowlevel-ls", "get-")) or verb in MARSADM_READS
    if program == "football-host":
        # football-host <helper> <dir> <action> ...
        return len(args) >= 3 and (args[0], args[2]) in HELPER_READS
    if program == "systemctl":
        return bool(words) and words[0] in SYSTEMCTL_READS
    if program == "xfs_quota":
        return any("dump" in arg or "report" in arg for arg in args) and \
            not any("restore" in arg or "limit" in arg for arg in args)
    return program in PROGRAM_READS


class Planner:
    """The commands a dry run would issue, in order: `commands` is a list
    of (host name, argv); each is also said (`would run on <host>: ...`) and
    sent as a `would-run` event."""

    def __init__(self, reporter):
        self.reporter = reporter
        self.commands = []
        self.mounts = {}        # (host, mountpoint) -> planned source, '' when unmounted

    def host(self, host):
        return host if isinstance(host, RecordingHost) else RecordingHost(host, self)

    def record(self, host, argv):
        argv = [str(arg) for arg in argv]
        self.commands.append((host.name, argv))
        words = [arg for arg in argv[1:] if not arg.startswith("-")]
        if argv[0] == "umount" and words:
            self.mounts[host.name, words[-1]] = ""
        elif argv[0] == "mount" and len(words) >= 2:
            self.mounts[host.name, words[-1]] = words[-2]
        self.reporter.event("would-run", host=host.name, argv=argv)
        if not self.reporter.as_json:
            self.reporter.console.print(f"would run on {host.name}: {shlex.join(argv)}",
                                        highlight=False, markup=False)

    def attempt(self, action):
        """Run `action()` (recording); a failure after it recorded a command
        is a check of a planned change on the unchanged host: dropped."""
        before = len(self.commands)
        try:
            return action()
        except (FootballError, TransportError):
            if len(self.commands) == before:
                raise
            return None


class RecordingHost:
    """A host whose changes are recorded instead of run (see the module);
    everything else is the real host's."""

    def __init__(self, host, planner):
        self._host, self._planner = host, planner

    def __getattr__(self, name):
        return getattr(self._host, name)

    def run(self, argv, *, check=True, timeout=None, input=None):
        planned_mount = self._planned_mount(argv)
        if planned_mount is not None:
            return Result(self._host.name, tuple(argv), 0 if planned_mount else 1,
                          f"{planned_mount}\n" if planned_mount else "", "", planned=True)
        if is_read(argv):
            return self._host.run(argv, check=check, timeout=timeout, input=input)
        self._planner.record(self._host, argv)
        return Result(self._host.name, tuple(str(arg) for arg in argv), 0, "", "",
                      planned=True)

    def _planned_mount(self, argv):
        """What a planned mount or umount makes `findmnt --mountpoint X`
        answer (the source, '' for nothing), or None when none was planned."""
        argv = [str(arg) for arg in argv]
        if argv[0] != "findmnt" or "--mountpoint" not in argv or \
                ("--output" in argv and argv[argv.index("--output") + 1] != "SOURCE"):
            return None
        mountpoint = argv[argv.index("--mountpoint") + 1]
        return self._planner.mounts.get((self._host.name, mountpoint))

"""Facts: a command run on a host plus a pure parser of its output.

The parsers take the text the bundled marsadm (and kernel MARS's marsadm)
prints, in the formats MARS.md fixes, so they can be tested on recorded
output.

One error policy for the facts that ask MARS about membership
(`cluster_hosts`, `my_resources`, `members`, `primary`): a host that cannot
be reached or a command that fails raises `FactUnavailable` naming host,
command and why — never an empty answer that reads as "none" (a failed
`view-my-resources` must not look like a deleted resource). The caller
decides what that means: `status` shows it, discovery refuses.

A per-run cache (`CACHE`) keeps the answers of the facts that only a
change made by a command can change — who is in the cluster, the members,
the designated primary, the resources, and (through `CACHE.run`, for the
storage plugins) the VG reports — so that a run asks each once per step. Any command that changes a host (`Host.run` of a command
that is not a read, locks aside) forgets them all, for every host: a join
on one host changes what the others list. A wait forgets them before each
poll (`wait_until`): what it waits for changes without a command of ours.
Answers that change by themselves (sync rest, disk state, lag) are never
cached."""

import re
import threading

from football.errors import FootballError
from football.inventory import InventoryError
from football.transport import CommandFailed, TransportError, Unreachable


class FactUnavailable(FootballError):
    """A fact could not be read on a host (unreachable, or the command failed)."""


class HostUnreachable(FactUnavailable):
    """A fact could not be read because the host could not be reached."""


class FactCache:
    """(host name, argv) -> the result of a cached read; thread-safe. Only
    successful results are kept: a failure is asked again."""

    def __init__(self):
        self._results = {}
        self._lock = threading.Lock()

    def run(self, host, argv, timeout=60):
        """`host.run(argv, check=False)`, answered from the cache when the
        same read ran since the last change."""
        key = (host.name, tuple(str(arg) for arg in argv))
        with self._lock:
            if key in self._results:
                return self._results[key]
        result = host.run(argv, check=False, timeout=timeout)
        if result.ok:
            with self._lock:
                self._results[key] = result
        return result

    def read(self, host, argv, timeout=60):
        """`read`, cached."""
        return read(host, argv, timeout, run=self.run)

    def forget(self):
        with self._lock:
            self._results.clear()


CACHE = FactCache()
forget = CACHE.forget


def read(host, argv, timeout=60, run=None):
    """stdout of a read-only command on `host`; `FactUnavailable` otherwise."""
    try:
        result = run(host, argv, timeout) if run else \
            host.run(argv, check=False, timeout=timeout)
    except (Unreachable, InventoryError) as error:
        raise HostUnreachable(f"{host.name} is unreachable: {error}") from None
    except TransportError as error:
        # reached: the command outlived its time limit, or the connection broke
        # while it ran — the host is there (a slow one is no dead one to take
        # over from or to drop: `answers`, `silent_hosts`)
        raise FactUnavailable(str(error)) from None
    if not result.ok:
        raise FactUnavailable(f"{host.name}: `{result.command}` {result.how_it_ended}: "
                              f"{result.stderr.strip()[-300:]}")
    return result.stdout

# Before each resource of `all` or a list (kernel marsadm's do_all_res):
# `--------- resource <res> <size> [<members>/<hosts>]`, `guest` for a
# resource the host is not a member of.
RESOURCE_HEADER = re.compile(r"^--------- (?:resource|guest) (\S+) ")


def parse_view_all(text):
    """`marsadm view-<macro> all` → {resource: value} (value '' when empty)."""
    values, current = {}, None
    for line in text.splitlines():
        header = RESOURCE_HEADER.match(line)
        if header:
            current = header.group(1)
            values[current] = ""
        elif current is not None and line.strip() and not values[current]:
            values[current] = line.strip()
    return values


def parse_lines(text):
    """One name per line (resource-members, my-resources, ...)."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def parse_host_ips(text):
    """`marsadm lowlevel-ls-host-ips` → {host: address}."""
    hosts = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            hosts[parts[0]] = parts[1]
    return hosts


NOT_ANSWERING = re.compile(r"marsd not answering on ([^(]+) \(")


def parse_not_answering(text):
    """The hosts a timed-out `marsadm wait-cluster` names as not answering,
    or None when the text does not say."""
    match = NOT_ANSWERING.search(text)
    return {name.strip() for name in match.group(1).split(",")} if match else None


def view(host, macro, res, timeout=60):
    """The value of `marsadm view-<macro> <res>` on `host` ('' when empty)."""
    return host.run(["marsadm", f"view-{macro}", res], timeout=timeout).stdout.strip()


def view_count(host, macro, res, timeout=60):
    """The number `marsadm view-<macro> <res>` prints on `host` (bytes, a
    logfile's number), or None where it prints none: unknown (our marsadm
    without marsd's status), never 0."""
    value = view(host, macro, res, timeout)
    return int(value) if value.isdigit() else None


def view_all(host, macro, timeout=60):
    return parse_view_all(host.run(["marsadm", f"view-{macro}", "all"], timeout=timeout).stdout)


def cluster_hosts(host, timeout=60):
    """{host: address} of the MARS cluster `host` is in."""
    return parse_host_ips(CACHE.read(host, ["marsadm", "lowlevel-ls-host-ips"], timeout))


def my_resources(host, timeout=60):
    """The resources `host` holds a replica of."""
    return parse_lines(CACHE.read(host, ["marsadm", "view-my-resources"], timeout))


def members(host, res, timeout=60):
    """The hosts with a replica of `res`, as `host` sees them."""
    return parse_lines(CACHE.read(host, ["marsadm", "view-resource-members", res], timeout))


def primary(host, res, timeout=60):
    """The designated primary of `res` as `host` sees it ('' for none)."""
    return CACHE.read(host, ["marsadm", "view-get-primary", res], timeout).strip()


def mount_source(host, path):
    """What is mounted at `path` on the host, or None (findmnt exits 1). Any
    other failure raises: taken for "nothing mounted", a mount went on top
    of the one there, and lv-cleanup took a mounted volume for unused."""
    result = host.run(["findmnt", "--noheadings", "--output", "SOURCE", "--mountpoint", path],
                      check=False)
    if result.exit_code not in (0, 1):
        raise CommandFailed(result)
    return (result.stdout.strip() or None) if result.ok else None


def filesystem_type(host, device):
    """The filesystem on `device` as blkid reads it, or '' when none."""
    result = host.run(["blkid", "--probe", "--output", "value", "--match-tag", "TYPE", device],
                      check=False)
    return result.stdout.strip() if result.ok else ""


# The diskstate `DefectiveLog[<damage>]` has spaces inside its brackets.
# Kernel MARS's marsadm ends the line with its `commstate`: how long the
# primary has not been heard from (HH:MM:SS), once that is past --window;
# after an empty primary (two spaces then).
SUMMARY = re.compile(r"^(?P<res>\S+) \[(?P<members>\d+)/(?P<hosts>\d+)\] "
                     r"(?P<diskstate>[^\s\[]+(?:\[[^\]]*\])?) "
                     r"(?P<replstate>\S+) (?P<flags>\S+) (?P<role>\S+)"
                     r"(?: (?P<primary>\S*))?(?: (?P<unheard>\d+:\d\d:\d\d))?$")


# what the bundled marsadm's plain view says of a replica on a host whose
# marsd does not run (kernel MARS has no daemon to miss)
MARSD_DOWN = "marsd is not running on this host"


# the lines under a summary line that say why a replica does not go on
NOTE_LABELS = ("waiting", "error", "split brain", "damage")


def parse_view_summary(text):
    """Plain `marsadm view all`: {resource: {diskstate, replstate, flags,
    role, primary, members, notes}} from each resource's summary line and
    the lines under it that say why it waits or fails (`notes`, NOTE_LABELS:
    "waiting: ..."; none from kernel MARS's marsadm)."""
    resources, current = {}, None
    for line in text.splitlines():
        match = SUMMARY.match(line.strip())
        if match:
            current = resources[match["res"]] = {
                "diskstate": match["diskstate"], "replstate": match["replstate"],
                "flags": match["flags"], "role": match["role"],
                "primary": match["primary"] if match["primary"] not in (None, "(none)") else "",
                "members": int(match["members"]), "notes": []}
        elif current is not None and line.startswith("  ") and \
                line.strip().partition(":")[0] in NOTE_LABELS:
            current["notes"].append(line.strip())
    return resources


def parse_view_all_lists(text):
    """A list macro given several resources (`view-resource-members a,b`, or
    `all`) → {resource: [one item per line]}."""
    values, current = {}, None
    for line in text.splitlines():
        header = RESOURCE_HEADER.match(line)
        if header:
            current = header.group(1)
            values[current] = []
        elif current is not None and line.strip():
            values[current].append(line.strip())
    return values


def all_resources(host, timeout=60):
    """Every resource of the host's MARS cluster, members here or not."""
    return parse_lines(host.run(["marsadm", "view-all-resources"], timeout=timeout).stdout)


def members_of_all(host, timeout=60):
    """{resource: [member hosts]} of every resource of the host's MARS
    cluster, as this host sees them."""
    resources = all_resources(host, timeout)
    if not resources:
        return {}
    text = host.run(["marsadm", "view-resource-members", ",".join(resources)],
                    timeout=timeout).stdout
    # marsadm prints the resource headers only when it was given several
    if len(resources) == 1:
        return {resources[0]: parse_lines(text)}
    return parse_view_all_lists(text)


_XFS_DATA = re.compile(r"^data\s*=.*?\bbsize=(\d+)\s+blocks=(\d+)", re.MULTILINE)


def filesystem_data_size(host, path):
    """Bytes of the data section of the XFS filesystem mounted at `path`
    (`xfs_info`: what xfs_growfs grows to the device's size), or None where
    it cannot be read (no XFS)."""
    result = host.run(["xfs_info", path], check=False)
    match = _XFS_DATA.search(result.stdout) if result.ok else None
    return int(match.group(1)) * int(match.group(2)) if match else None


def filesystem_usage(host, path):
    """(size, used) in bytes of the filesystem mounted at `path` on the host."""
    result = host.run(["df", "--block-size=1", "--output=size,used", path])
    size, used = result.stdout.strip().splitlines()[-1].split()
    return int(size), int(used)

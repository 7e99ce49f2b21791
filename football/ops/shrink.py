"""Shrink a resource's volume: its filesystem is copied into a smaller one
(FOOTBALL.md, "Shrink"; the original's facts in reference/football-sh.md §1).

Phases, each announced as it runs and each looking at the real state first,
so that a re-run resumes (size, primary and secondaries are kept in the
journal: after the resource was deleted, MARS no longer knows them):

1. prepare — a shrink slot on the primary (`limit_shrinks`, intents with
   leases); a `<res>-tmp` LV of the new size on the primary and every
   secondary; on the primary `mkfs.xfs`, mounted at `<mountpoint>-tmp`
   (with the quota options of the original's mount), and the first copy
   while the container runs: `rsync -aHAXS -x --numeric-ids
   --modify-window=-1 --delete --inplace`, its source side chrooted into
   the volume (football/hostside/confined.py) (exit 24, files vanished while
   copying, is fine then; the copy's hard-linked names once more after the
   final pass, not in place: `RSYNC`), then
   the quota limits (`xfs_quota -x -c dump` / `restore`).
2. finish — a warm pass; the probe: when `max_rsync_downtime` is set, one
   more pass is timed and a longer one fails the run here, before any
   downtime (the copy is kept: a re-run resumes). Then the downtime window:
   stop the container (verified), the final pass, unmount both, the MARS
   resource down and deleted on every member, the LVs renamed (`<res>` →
   `<res>-preshrink`, `<res>-tmp` → `<res>`), the resource created again
   on the primary, started there. The secondaries then join their renamed
   LVs (a full sync of the small volume), outside the window.
3. wait — until the secondaries have synced and are consistent.
4. cleanup — the `-preshrink` LVs and leftover `-tmp` LVs go.

Until cleanup a failed shrink can always go back: inside the window the
container is restarted from the old resource while it exists; once it was
deleted, a stand-alone resource is rebuilt from the LV that holds the data
(`<res>` — the copy once the final pass is in it — else `<res>-preshrink`,
renamed back) and started (exit 198)."""

import itertools
import time

from football import facts
from football.errors import Critical, FootballError, Illegal
from football.hostside import confined
from football.locks import drop_intent, live_intents
from football.ops.base import Operation, reachable, synced_bytes, wait_knows, wait_uptodate
from football.ops.repair import create_argv, create_when_free, leave_argvs, marsadm_timeout
from football.ops.sizing import mib, new_size, parse_target
from football.ops.window import DowntimeWindow, restart_somewhere
from football.report import agreeing
from football.transport import CommandFailed, TransportError
from plugins.labmanager import KIND as LAB_MANAGER
from plugins.systemd import recorded_units

PHASES = ("prepare", "finish", "wait", "cleanup")
TMP, PRESHRINK = "-tmp", "-preshrink"
# Files compared by size and mtime to the nanosecond (`--modify-window=-1`,
# rsync 3.1.3): to the second, a write that kept a file's size in the
# second of the pass before was not copied. Written in place (`--inplace`):
# a large file that changed needs no room for a second copy of itself — the
# final pass, in the window, ran out of room for a database file larger
# than the new filesystem's free space. In place, though, a file the copy
# holds hard-linked is written through all its names, also where the
# container broke the link (a file saved by rename: a package upgrade's):
# the other names got its content. So the names the copy holds hard-linked
# before the window (`LINKED`) are copied once more after the final pass,
# not in place (`RELINK`): a name written through differs from its source
# in size or mtime, and is written anew and renamed. The names are the
# container owner's: listed ending in NUL (one may hold a newline), and one
# that is no UTF-8 (read as U+FFFD: no such name) is copied as the directory
# above its first such part, whole (`--recursive`: what is equal stays).
# The volume's filesystem only (`-x`, as `find -xdev`): a mount below its
# mountpoint on the host is not copied into it (an empty directory stands
# for it, as on the volume). The source side is confined to the volume: a
# daemon chrooted into it sends it (`--rsh`, football/hostside/confined.py):
# a symlink the container's owner put in place of a directory, or above a
# name of the relink list, took rsync to host files, copied into the copy.
RSYNC = ("rsync", "-aHAXS", "-x", "--numeric-ids", "--modify-window=-1", "--delete",
         "--inplace")
RELINK = ("rsync", "-aHAXS", "-x", "--numeric-ids", "--modify-window=-1", "--recursive",
          "--from0", "--files-from=-", "--ignore-missing-args")
LINKED = ("-xdev", "-type", "f", "-links", "+1", "-printf", "%P\\0")    # find <copy> ...
# seconds at the downtime gates after which a warm pass copies what the
# container wrote meanwhile (a probe pass does, with max_rsync_downtime)
GATE_WAIT_RECOPY = 10.0
# seconds a create-resource's or join-resource's host command has beyond
RSYNC_VANISHED = 24         # files vanished while copying: the container still writes
# (XFS names a quota it accounts without enforcing it `uqnoenforce`, ...)
QUOTA_OPTIONS = {"usrquota": "-u", "uquota": "-u", "grpquota": "-g", "gquota": "-g",
                 "prjquota": "-p", "pquota": "-p", "uqnoenforce": "-u", "qnoenforce": "-u",
                 "gqnoenforce": "-g", "pqnoenforce": "-p"}


def agcount(size):
    """Allocation groups for a new XFS of `size` bytes: one per 4 GiB, 4 to
    1024 (the original's 1024 is meant for volumes of terabytes)."""
    return max(4, min(1024, size >> 32))


XFS_LOG = 64 << 20          # the least log mkfs.xfs makes (xfsprogs 5.15 and later)


def shrink_target(size, config):
    """The target the command line's `size` asks for (`parse_target`; None:
    the fill level `shrink_percent`)."""
    return parse_target(str(size if size is not None else config.shrink_percent))


def shrunk_size(target, used, config):
    """The volume size a shrink to `target` makes of a filesystem that
    uses `used` bytes (`new_size`, the new XFS's log counted)."""
    return new_size(target, used, config.min_space, XFS_LOG)


def headroom(size):
    """Bytes a new XFS of `size` needs beyond the data: its log and 2 %
    for metadata."""
    return XFS_LOG + size // 50


class Shrink(Operation):
    operation = "shrink"
    finishes_others_first = True
    whole = PHASES

    def __init__(self, ctx, res, size=None):
        super().__init__(ctx, res)
        self.asked = str(size if size is not None else ctx.config.shrink_percent)
        self.size_given = size is not None     # a phase command may leave it to the journal
        self.target = shrink_target(size, ctx.config)
        self.tmp, self.preshrink = f"{self.res}{TMP}", f"{self.res}{PRESHRINK}"
        self.summary.update({"old_size": None, "new_size": None, "downtime_seconds": None,
                             "final_copy_seconds": None, "copy_passes": 0,
                             "synced_bytes": 0, "sync_seconds": 0.0})

    def start_args(self):
        return {"size": self.asked}

    def _run(self, phases):
        self.phases = tuple(phases)
        return super()._run(phases)

    # ------------------------------------------------------------- discovery
    def discover(self):
        inv = self.ctx.inventory
        self.journal = self.open_journal()
        decided = self.journal.decided
        if decided.get("primary"):
            # after the deletion MARS knows neither: the journal does
            self.primary = self.host(decided["primary"])
            self.secondaries = [self.host(name) for name in decided["secondaries"]]
        else:
            self.primary = self.named_host() if self.source_hint else \
                self.hooks.get_hyper(res=self.res, inventory=inv)
            self.secondaries = [self.host(name) for name in facts.members(self.primary, self.res)
                if name in inv.hosts and name != self.primary.name]
        self.members = [self.primary, *self.secondaries]
        for host in self.members:
            reachable(host)
        self._refuse_names_taken()
        self.mountpoint = self.primary.mountpoint(self.res)
        self.tmp_mountpoint = self.mountpoint + TMP
        if "size" in decided and self.size_given and decided.get("asked", self.asked) != self.asked:
            self._refuse_unlike_unfinished(
                f"to {mib(decided['size'])}", f"asked {decided['asked']}; steps done: "
                f"{', '.join(self.journal.data['steps']) or 'none'}", self.asked,
                [decided["asked"]], f" (before its downtime, `football shrink-cleanup "
                f"{self.res}` gives it up); then shrink again with {self.asked}")
        if "size" in decided:
            self.old_size, self.new_size = decided["old_size"], decided["size"]
        elif self.phases in (("cleanup",), ("wait", "cleanup")):
            self.old_size = self.new_size = None     # removes leftovers: no size needed
        else:
            self._decide_size()
        self.summary.update(old_size=self.old_size, new_size=self.new_size)
        if self.new_size is not None and not self.nothing_to_do():
            self._refuse_on_plugin_problems(self.members, self.primary)
        self._refuse_cleanup_before_the_joins()

    def _refuse_cleanup_before_the_joins(self):
        """shrink-cleanup of a shrink stopped after its resource was made
        again, before the secondaries joined it: its wait would wait
        `sync_timeout` for replicas that never come (then 199)."""
        if self.phases not in (("cleanup",), ("wait", "cleanup")) or not self._recreated():
            return
        members = facts.members(self.primary, self.res)
        missing = [host.name for host in self.secondaries if host.name not in members]
        if missing:
            raise Illegal(f"{', '.join(missing)} {'has' if len(missing) == 1 else 'have'} not "
                          f"joined the shrunk {self.res} yet: its shrink stopped in its finish "
                          f"phase (steps done: {', '.join(self.journal.data['steps']) or 'none'})"
                          f"; football shrink-finish {self.res} goes on from there (they join), "
                          "then shrink-cleanup; nothing changed")

    def _refuse_names_taken(self):
        """`Illegal` where `<res>-tmp` or `<res>-preshrink`, the names of the
        copy and of the old volume, are resources of their own (a valid
        name): the shrink took their LV for its copy (mkfs, `rsync
        --delete` into the mounted volume, their mountpoint being its copy's
        too) and the cleanup removed it."""
        taken = sorted({self.tmp, self.preshrink} & set(facts.all_resources(self.primary)))
        if taken:
            raise Illegal(f"{' and '.join(taken)}: a resource of that name is in this MARS "
                          f"cluster; a shrink of {self.res} names its copy {self.tmp} and "
                          f"keeps the old volume as {self.preshrink}, and would take that "
                          f"resource's LV and mountpoint; nothing changed (no shrink of "
                          f"{self.res} while it is in the cluster)")

    def _refuse_left_after_a_window(self):
        """`Illegal` where a shrink that had its window left its traces and
        this controller has no journal of it (a state dir lost): the old
        volume (`-preshrink`) on a host that is no member of the shrunk
        resource now — a secondary that never joined it again. "Not smaller:
        nothing to do" said nothing of it."""
        members = {host.name for host in self.members}
        names = [name for name in facts.cluster_hosts(self.primary)
                 if name not in members and name in self.ctx.inventory.hosts]
        left = []
        for name in names:
            try:
                if self.preshrink in self.hooks.lv_list(host=self.host(name)):
                    left.append(name)
            except (FootballError, TransportError) as error:    # (a mate down: not asked)
                self.ctx.reporter.detail(f"{name}: its LVs not read ({error})")
        if left:
            raise Illegal(f"{', '.join(left)} {'holds' if len(left) == 1 else 'hold'} "
                          f"{self.preshrink}, the volume of an earlier shrink of {self.res}, "
                          f"and {'is' if len(left) == 1 else 'are'} no replica of it now: that "
                          "shrink stopped before they joined again (this controller has no "
                          f"journal of it). football migrate {self.res} {self.primary.name} "
                          f"{left[0]} makes a replica there again, then football shrink-cleanup "
                          f"{self.res} removes {self.preshrink}; nothing changed")

    def _decide_size(self):
        """The new size from the filesystem's use; `Illegal` when the data
        would not fit or a volume group lacks the room (nothing changed)."""
        self.old_size = int(facts.view(self.primary, "sync-size", self.res) or 0)
        if not facts.mount_source(self.primary, self.mountpoint):
            raise Illegal(f"{self.primary.name}: {self.res} is not mounted at {self.mountpoint}; "
                          "shrink copies a running container's filesystem: start it first "
                          f"(football repair-vm {self.res} {self.primary.name}); nothing changed")
        _, self.used = facts.filesystem_usage(self.primary, self.mountpoint)
        self.new_size = shrunk_size(self.target, self.used, self.config)
        if self.nothing_to_do():
            self._refuse_left_after_a_window()
            return
        if self.used + headroom(self.new_size) > self.new_size:
            raise Illegal(f"{self.res} holds {mib(self.used)}: it does not fit into "
                          f"{mib(self.new_size)} (the new filesystem needs "
                          f"{mib(headroom(self.new_size))} of its own); give a larger size or "
                          "a lower fill level (a larger volume); nothing changed")
        lvs = {host.name: self.hooks.lv_list(host=host) for host in self.members}
        leftovers = [f"{host.name}: {self.preshrink}" for host in self.members
                     if self.preshrink in lvs[host.name]]
        # a smaller copy (an earlier shrink's, its journal lost) was taken as
        # it was: the fit checked for the size decided, the final copy into
        # it could run out of space inside the downtime (a larger one is
        # whole extents, or a larger volume than asked: no harm)
        leftovers += [f"{host.name}: {self.tmp} of {mib(lvs[host.name][self.tmp])}, smaller "
                      f"than {mib(self.new_size)}" for host in self.members
                      if lvs[host.name].get(self.tmp, self.new_size) < self.new_size]
        if leftovers:
            raise Illegal(f"an earlier shrink of {self.res} left {', '.join(leftovers)}; remove "
                          f"it with football shrink-cleanup {self.res}, then shrink again; "
                          "nothing changed")
        lacking = []
        for host in self.members:
            if self.tmp in lvs[host.name]:
                continue
            free = self.hooks.vg_free(host=host)
            if free < self.new_size:
                lacking.append(f"{host.name}: volume group {host.vg} has {mib(free)} free, "
                               f"needs {mib(self.new_size)}")
        if lacking:
            raise Illegal(f"shrink of {self.res} to {mib(self.new_size)}: {'; '.join(lacking)}; "
                          "free space there first; nothing changed")

    def nothing_to_do(self):
        if self.journal.data["steps"] or self.new_size is None or \
                self.new_size < self.old_size:
            return None
        return (f"it has {mib(self.old_size)}, the asked {self.asked} means "
                f"{mib(self.new_size)} ({mib(self.used)} used): not smaller")

    def _giving_up(self):
        """shrink-cleanup of a shrink that never reached its window (the
        resource is as it was): its copy goes, nothing is shrunk or synced."""
        return self.phases in (("cleanup",), ("wait", "cleanup")) and \
            self.new_size is not None and self._exists() and not self._recreated()

    def announce(self):
        if self._giving_up():
            self.say(f"* giving up the shrink of {self.res}: it stays at "
                     f"{mib(int(facts.view(self.primary, 'sync-size', self.res) or 0))}; "
                     f"removing its copy ({self.tmp}) on "
                     f"{', '.join(host.name for host in self.members)}")
        elif self.new_size is not None:
            self.say(f"* shrinking {self.res} from {mib(self.old_size)} to {mib(self.new_size)} "
                     f"on {', '.join(host.name for host in self.members)}")
            self._keep_stopped_or_ask(self.primary, self.primary.name, self.members)

    def dry_run(self, phases=PHASES):
        """The commands of the shrink (of those of its phases in `phases`)
        from the state now: prepare, finish (its window and the re-joins)
        and cleanup."""
        planned, attempt = self.ctx.planned, self.ctx.planner.attempt
        primary = planned(self.primary)
        if self.new_size is None:           # giving up a prepared shrink
            if "cleanup" in phases:
                self._remove_leftovers(via=planned)
            return
        if "prepare" in phases:
            for host in self.members:
                self.hooks.lv_create(host=planned(host), lv=self.tmp, size=self.new_size)
            primary.run(self._mkfs_argv(self.hooks.lv_path(host=self.primary, lv=self.tmp)))
            for argv in self._mount_tmp_argvs():
                primary.run(argv)
            self._copy_commands(primary)                                # first
        if "finish" in phases:
            self._finish_commands(planned, attempt, primary)
        if "cleanup" in phases:
            for host in self.members:
                self.hooks.lv_remove(host=planned(host), lv=self.preshrink)

    def _finish_commands(self, planned, attempt, primary):
        """Dry run: the finish phase's commands (warm and probe copies, the
        window, the re-joins)."""
        for _ in range(2 if self.config.max_rsync_downtime else 1):     # warm, probe
            self._copy_commands(primary)
        self._stop_container(primary)
        self._copy_commands(primary)
        if self._mounted(self.tmp_mountpoint) and self._linked_in_copy():
            primary.run(self._rsync_argv(relink=True))
        primary.run(["umount", self.tmp_mountpoint])
        attempt(lambda: self.hooks.resource_stop(host=primary, res=self.res))
        for host, argv in self._delete_argvs():
            planned(host).run(argv)
        for host in self.members:
            self.hooks.lv_rename(host=planned(host), lv=self.res, new_name=self.preshrink)
            self.hooks.lv_rename(host=planned(host), lv=self.tmp, new_name=self.res)
        primary.run(self._create_argv(self.primary, "create-resource"))
        units = self._recorded_units() if self._exists() else \
            self.journal.decided.get("systemd_units")
        if units:
            primary.run(self._set_units_argv(units))
        attempt(lambda: self._start_hook()(host=primary, res=self.res))
        for host in self.secondaries:
            planned(host).run(self._create_argv(host, "join-resource"))

    def _copy_commands(self, primary):
        """Dry run: one copy pass (rsync, then the quota limits)."""
        primary.run(self._rsync_argv())
        for argv, limits in self._quota_restores():
            primary.run(argv, input=limits)

    def involved(self):
        sizes = {"size": self.new_size, "old_size": self.old_size} if self.new_size else {}
        if sizes and "asked" not in self.journal.decided:      # what a re-run must ask again
            sizes["asked"] = self.asked
        self.journal.decide(**sizes, primary=self.primary.name,
                            secondaries=[host.name for host in self.secondaries])
        return self.members

    # ----------------------------------------------------------------- state
    def _exists(self):
        return self.res in facts.my_resources(self.primary)

    def _recreated(self):
        """The window is behind: the resource exists again (the journal says
        it was created), or smaller than it was (MARS cannot make a resource
        smaller any other way). Not "at the new size": the LV is whole
        extents of its volume group, and stripes or extents over 4 MiB made
        it larger than that (a re-run shrank once more; a shrink-cleanup took
        the shrink for given up and removed `-preshrink` while the
        secondaries still synced)."""
        if not self._exists() or self.new_size is None:
            return False
        return bool(self.journal.decided.get("recreated")) or \
            int(facts.view(self.primary, "sync-size", self.res) or 0) < self.old_size

    def _mounted(self, mountpoint):
        return facts.mount_source(self.primary, mountpoint)

    # --------------------------------------------------------------- prepare
    def prepare(self):
        if self._recreated() or not self._exists():
            self.say(f"* prepare: {self.res} is past its copy already")
            self.journal.record("prepare")
            return
        if self.journal.done("prepare") and self.tmp in self.hooks.lv_list(host=self.primary):
            self.say(f"* prepare: {self.tmp} is prepared already")
            return
        self._follow_a_stop_or_start_meanwhile(self.primary, self.members)
        self._running_again()
        self.say(f"* prepare: {self.tmp} on {', '.join(host.name for host in self.members)}, "
                 "first copy")
        self._take_shrink_slot()
        with self.holding(self.members):
            for host in self.members:
                if self.tmp not in self.hooks.lv_list(host=host):
                    self.say(f"  {host.name}: creating LV {host.vg}/{self.tmp}")
                    self.hooks.lv_create(host=host, lv=self.tmp, size=self.new_size)
            self.ctx.inject("prepare:lv-created")
            lv = self.hooks.lv_path(host=self.primary, lv=self.tmp)
            if facts.filesystem_type(self.primary, lv) != "xfs":
                self.say(f"  {self.primary.name}: mkfs.xfs {lv}")
                self.primary.run(self._mkfs_argv(lv), timeout=self.config.command_timeout)
            self.ctx.inject("prepare:mkfs")
            self._mount_tmp()
        self._copy("first copy")
        self.ctx.inject("prepare:copied")
        self.journal.record("prepare")

    def _running_again(self):
        """A run that crashed inside the window left the container stopped:
        the copy needs its mounted volume, so it starts again (the window
        then stops it once more)."""
        if not self._is_up(self.primary):
            self.say(f"  {self.primary.name}: starting {self.res} again (a run before stopped "
                     "it)" if not self.kept_stopped else f"  {self.primary.name}: mounting "
                     f"{self.res} again (a run before unmounted it), not starting it")
            self._bring_up(self.primary)
            if self.journal.open_window_started() is not None:   # it runs: that window ended
                self.journal.decide(window_ended=time.time())

    def _take_shrink_slot(self):
        """A shrink slot on the primary: other resources' `-tmp` LVs and
        shrink intents count against `limit_shrinks`."""
        def free():
            tmps = {lv[:-len(TMP)] for lv in self.hooks.lv_list(host=self.primary)
                    if lv.endswith(TMP)} - {self.res}
            # a copy is a shrink on this host where it is mounted here: a
            # secondary's copy of another host's shrink is not (it took this
            # host's slot: "a shrink per primary")
            tmps = {name for name in tmps
                    if facts.mount_source(self.primary, self.primary.mountpoint(name) + TMP)}
            planned = live_intents(self.primary, self.config, except_res=self.res, kind="shrink")
            return self._slot_free(tmps, planned - tmps, self.config.limit_shrinks)

        self._take_job_slots("shrink", [self.primary], "limit_shrinks")
        self._take_slot(self.primary, "shrink", free,
                        f"limit_shrinks {self.config.limit_shrinks}")

    def _mkfs_argv(self, lv):
        return ["mkfs.xfs", "-q", "-f", "-s", "size=4096", "-d",
                f"agcount={agcount(self.new_size)}", lv]

    def _quota_options(self):
        """The quota options of the resource's mount ({option: xfs_quota type})."""
        result = self.primary.run(["findmnt", "--noheadings", "--output", "OPTIONS",
                                   "--mountpoint", self.mountpoint], check=False)
        options = result.stdout.strip().split(",") if result.ok else []
        return {option: QUOTA_OPTIONS[option] for option in options if option in QUOTA_OPTIONS}

    def _mount_tmp(self):
        if self._mounted(self.tmp_mountpoint):
            return
        for argv in self._mount_tmp_argvs():
            self.primary.run(argv, timeout=self.config.command_timeout)

    def _mount_tmp_argvs(self):
        lv = self.hooks.lv_path(host=self.primary, lv=self.tmp)
        options = ["noatime", *self._quota_options()]
        return [["mkdir", "-p", self.tmp_mountpoint],
                ["mount", "-t", "xfs", "-o", ",".join(options), lv, self.tmp_mountpoint]]

    def _rsync_argv(self, relink=False):
        """A copy pass (`relink`: of the names on its stdin) from the volume,
        its source side confined to it, into the copy."""
        return [*(RELINK if relink else RSYNC), f"--rsh={confined.rsh_command(self.mountpoint)}",
                confined.SOURCE, f"{self.tmp_mountpoint}/"]

    def _linked_in_copy(self):
        """The names (relative) of the files the copy holds hard-linked."""
        result = self.primary.run(["find", self.tmp_mountpoint, *LINKED],
                                  timeout=self.config.copy_timeout)
        names = {}
        for name in result.stdout.split("\0"):
            if "\ufffd" in name:       # (no UTF-8: the directory above, whole)
                parts = name.split("/")[:-1]
                name = "/".join(itertools.takewhile(lambda part: "\ufffd" not in part,
                                                    parts)) or "."
            if name:
                names[name] = None
        return list(names)

    def _relink(self, linked):
        """The names the copy held hard-linked before the final pass, copied
        once more, not in place (`RELINK`)."""
        self.say(f"  {self.primary.name}: the {len(linked)} hard-linked names again, not in "
                 "place")
        self.primary.run(self._rsync_argv(relink=True),
                         input="".join(f"{name}\0" for name in linked),
                         timeout=self.config.copy_timeout)

    def _copy(self, what, final=False):
        """One rsync pass on the primary, then the quota limits; the seconds
        it took. Both filesystems must be mounted: an rsync --delete from an
        empty mountpoint would empty the copy."""
        source, copy = self._mounted(self.mountpoint), self._mounted(self.tmp_mountpoint)
        if not source or not copy or source == copy:
            raise FootballError(f"{self.primary.name}: {self.mountpoint} and "
                                f"{self.tmp_mountpoint} must both be mounted to copy (found "
                                f"{source or 'nothing'} and {copy or 'nothing'}); not copied. "
                                "Re-run to resume")
        argv = self._rsync_argv()
        self.say(f"  {self.primary.name}: {what} ({' '.join(RSYNC[1:])})")
        started = time.monotonic()
        result = self.primary.run(argv, check=False,
                                  timeout=self.config.copy_timeout)
        if not (result.ok or (result.exit_code == RSYNC_VANISHED and not final)):
            raise CommandFailed(result)
        kinds = list(dict.fromkeys(self._quota_options().values()))
        self._copy_quota(kinds)
        if not final and "-p" in kinds:
            # rsync copies no project ID: the project limits restored above
            # held no file (the final copy's new files inherit theirs from
            # their directory: no walk inside the downtime)
            self.primary.run(["football-host", "projects", self.mountpoint,
                              self.tmp_mountpoint], timeout=self.config.copy_timeout)
        self.summary["copy_passes"] += 1
        return time.monotonic() - started

    def _copy_quota(self, kinds=None):
        for argv, limits in self._quota_restores(kinds):
            self.primary.run(argv, input=limits)

    def _quota_restores(self, kinds=None):
        """[(xfs_quota restore argv, the limits it reads)]: the source's quota
        limits of each kind that has any, pointed at the copy's device."""
        tmp_device = self._mounted(self.tmp_mountpoint) or \
            self.hooks.lv_path(host=self.primary, lv=self.tmp)
        restores = []
        kinds = dict.fromkeys(self._quota_options().values()) if kinds is None else kinds
        for kind in kinds:
            dump = self.primary.run(["xfs_quota", "-x", "-c", f"dump {kind}",
                                     self.mountpoint]).stdout
            limits = "".join(f"fs = {tmp_device}\n" if line.startswith("fs = ") else line
                             for line in dump.splitlines(keepends=True))
            if limits.strip():
                restores.append((["xfs_quota", "-x", "-c", f"restore {kind}",
                                  self.tmp_mountpoint], limits))
        return restores

    # ---------------------------------------------------------------- finish
    def finish(self):
        if self._recreated():
            self.say(f"* finish: {self.res} is on its shrunk volume")
            self.summary["downtime_seconds"] = self.journal.decided.get("downtime")  # its window's
            if not self._is_up(self.primary):
                self._start_in_the_window()     # a crash between the creation and the start
            self._rename()          # a secondary's rename may be what failed
        else:
            self._window()
        self._rejoin()
        self.journal.record("finish", downtime=self.summary["downtime_seconds"])

    def _start_in_the_window(self):
        """The container down on its shrunk volume (a run ended inside its
        window after the creation): started inside the window that run left
        open, counted from its beginning; one that does not start then is
        compensated as there (critical, 199, where it runs nowhere: it
        exited 198, "goes on", the container down)."""
        with self.holding(self.members), DowntimeWindow(
                self, self.primary, self._compensate,
                self.journal.open_window_started()) as window:
            self._start_in(window)
        self.summary["downtime_seconds"] = window.seconds

    def _start_in(self, window):
        """The container up on its shrunk volume, the window's work done
        (the units recorded before its deletion recorded again first)."""
        self._record_kept_units()
        self.say(f"  {self.primary.name}: starting {self.res}" if not self.kept_stopped
                 else f"  {self.primary.name}: mounting {self.res}, not starting it")
        self._bring_up(self.primary)
        window.ran_on(self.primary)

    def _window(self):
        exists = self._exists()
        if exists and self.tmp not in self.hooks.lv_list(host=self.primary):
            raise Illegal(f"{self.primary.name}: no {self.tmp} to finish with: run football "
                          f"shrink-prepare {self.res} first; nothing changed")
        if exists:
            self._follow_a_stop_or_start_meanwhile(self.primary, self.members)
            self._running_again()
            self.say(f"* finish: last copies, then the downtime of {self.res}" if not
                     self.kept_stopped else f"* finish: last copies, then {self.res} is "
                     "re-created (it is stopped: no downtime)")
            with self.holding(self.members):
                self._mount_tmp()
            self._copy("warm copy")
        else:
            linked = []
            self.say(f"* finish: {self.res} was deleted by a run before: renaming, creating, "
                     "starting")
        # a run before deleted it: the container is down since that run's
        # window began, and this one counts from there
        down_since = None if exists else self.journal.open_window_started()
        while True:
            if exists:
                waited_since = time.monotonic()
                self._downtime_gate(self.primary, self.primary)
                # after the gates, which may wait for hours (business hours,
                # an operator's go): a probe timed before them said nothing
                # of what the container wrote meanwhile, all of it then the
                # final copy's inside the window; without a probe, one more
                # warm pass takes it (outside the window)
                waited = time.monotonic() - waited_since
                if self.config.max_rsync_downtime:
                    self._probe()
                elif waited > GATE_WAIT_RECOPY:
                    self._copy(f"warm copy (after {waited:.0f} s at the gates)")
                linked = self._linked_in_copy()     # (only the passes change the copy's links)
                self._check_startable(self.primary, self.primary)
                waited_since = time.monotonic()
            with self.holding(self.members):
                if exists and self._gates_closed_meanwhile(self.primary, self.primary,
                                                           "the locks"):
                    continue            # (the locks let go: the gates again)
                if exists:
                    # the locks too may be waited for long (another run on a
                    # member): what the container wrote meanwhile is taken
                    # as after the gates, by a probe or one more warm pass
                    waited = time.monotonic() - waited_since
                    if waited > GATE_WAIT_RECOPY:
                        if self.config.max_rsync_downtime:
                            self._probe()
                        else:
                            self._copy(f"warm copy (after {waited:.0f} s for the locks)")
                        linked = self._linked_in_copy()
                    self._keep_units()
                with DowntimeWindow(self, self.primary, self._compensate,
                                    down_since) as window:
                    self._window_work(exists, window, linked)
            break
        self.summary["downtime_seconds"] = window.seconds
        self.say(f"  {self.res} " + ("is mounted from its shrunk volume (stopped, as before)"
                                     if self.kept_stopped else "runs on its shrunk volume")
                 + f"; {self._window_words(window.seconds)}"
                 + (f" (final copy {self.summary['final_copy_seconds']:.2f} s)"
                    if self.summary["final_copy_seconds"] is not None else ""))
        drop_intent(self.primary, self.res, kind="shrink")
        self._release_job_slots("shrink", [self.primary])
        self.ctx.inject("finish:started")

    def _window_work(self, exists, window, linked):
        """Inside the window: where `res` exists, stop, final copy (and the
        copy's hard-linked names, `linked`, once more), unmount, delete;
        then rename, create, start."""
        if exists:
            self._stop()
            started = time.monotonic()
            self._copy("final copy", final=True)
            if linked:
                self._relink(linked)
            self.summary["final_copy_seconds"] = round(time.monotonic() - started, 3)
            self.ctx.inject("finish:copied")
            self._unmount()
            self._delete()
        self._rename()
        self.ctx.inject("finish:renamed")
        self._create()
        self._start_in(window)

    def _probe(self):
        """With `max_rsync_downtime`: one more pass, timed; longer than the
        limit fails the run before any downtime (the copy stays)."""
        limit = self.config.max_rsync_downtime
        if not limit:
            return
        seconds = self._copy("probe copy (max_rsync_downtime)")
        if seconds > limit:
            took = f"{seconds:.1f}" if seconds >= 1 else f"{seconds:.3f}"     # not "0.0 s"
            raise Illegal(f"a copy pass of {self.res} took {took} s, more than "
                          f"max_rsync_downtime {limit:g} s: the final copy would keep it down "
                          f"that long. It still runs on {self.primary.name}, nothing was "
                          "stopped; the copy is kept: re-run later (or raise the limit) and it "
                          "resumes")

    def _stop(self):
        """Stop the container, keep the mounts; verified: the final copy must
        not race a running container."""
        self.say(f"  {self.primary.name}: stopping {self.res}" if not self.kept_stopped else
                 f"  {self.primary.name}: {self.res} is stopped (and stays so)")
        self._stop_container(self.primary)
        state = self.hooks.container_state(host=self.primary, res=self.res)
        if state == "RUNNING":
            raise FootballError(f"{self.primary.name}: {self.res} still runs after the stop")
        self.ctx.inject("finish:stopped")

    def _stop_container(self, host):
        """The container stopped by the cluster manager, its volume kept
        mounted; where the manager leaves that to the container plugin (the
        systemd manager with an operator's own units: which is the
        container's is not known), by that plugin. (Not `hooks.call`: its
        None for no answer was `NoPlugin`, and the window failed.)"""
        if self.hooks.first("resource_stop_vm", host=host, res=self.res,
                            hooks=self.hooks) is None:
            self.hooks.container_stop(host=host, res=self.res)

    def _unmount(self):
        if self._mounted(self.tmp_mountpoint):
            self.primary.run(["umount", self.tmp_mountpoint],
                             timeout=self.config.command_timeout)
        self.hooks.resource_stop(host=self.primary, res=self.res)
        self.ctx.inject("finish:unmounted")

    def _delete(self):
        """The MARS resource down and deleted: the secondaries leave, the
        primary's device goes down, then the resource goes."""
        timeout = self.config.handover_timeout
        for host, argv in self._delete_argvs():
            if argv[-2] in ("down", "leave-resource") and self.res not in facts.my_resources(host):
                continue
            self.say(f"  {host.name}: {' '.join(argv)}")
            host.run(argv, timeout=timeout + 30 if "wait-resource" in argv
                     else self.config.command_timeout)
        self.ctx.inject("finish:deleted")

    def _delete_argvs(self):
        timeout = self.config.handover_timeout
        return [*((host, argv) for host in self.secondaries
                  for argv in leave_argvs(self.res, timeout)),
                (self.primary, ["marsadm", "secondary", self.res]),
                (self.primary, ["marsadm", f"--timeout={timeout:g}", "wait-resource", self.res,
                                "is-device-off"]),
                (self.primary, ["marsadm", "delete-resource", "--force", self.res])]

    def _rename(self):
        """`<res>` → `<res>-preshrink`, `<res>-tmp` → `<res>` on every member
        where the copy still waits for its place; never on a host where
        `<res>` is a replica's disk."""
        for host in self.members:
            lvs = self.hooks.lv_list(host=host)
            if self.tmp not in lvs or self.res in facts.my_resources(host):
                continue
            if self.res in lvs and self.preshrink not in lvs:
                self.hooks.lv_rename(host=host, lv=self.res, new_name=self.preshrink)
                lvs = self.hooks.lv_list(host=host)
            if self.res not in lvs:
                self.hooks.lv_rename(host=host, lv=self.tmp, new_name=self.res)
                self.say(f"  {host.name}: {self.res} -> {self.preshrink}, {self.tmp} -> "
                         f"{self.res}")

    def _create(self):
        lv = self.hooks.lv_path(host=self.primary, lv=self.res)
        self.say(f"  {self.primary.name}: marsadm create-resource {self.res} {lv}")
        self._create_when_free(self.primary, "create-resource")
        self.journal.decide(recreated=True)
        self.ctx.inject("finish:created")

    def _create_argv(self, host, verb):
        """`marsadm create-resource|join-resource res lv --timeout=<s>` on
        `host`, as `create_when_free(..., bounded=True)` runs it (the dry
        run's)."""
        return create_argv(self.res, self.hooks.lv_path(host=host, lv=self.res), verb,
                           marsadm_timeout(self.config.command_timeout))

    def _create_when_free(self, host, verb):
        """`create_when_free` on `host`, with a --timeout within the
        command's own limit: marsadm gives up its wait for another create or
        join on the host (exit 3, saying so) before the transport kills it."""
        create_when_free(host, self.res, self.hooks.lv_path(host=host, lv=self.res),
                         self.config, verb, bounded=True)

    # ------------------------------------------------------- systemd units
    def _recorded_units(self):
        """(start unit, stop unit) MARS records for `res` (`marsadm
        get-systemd-unit` on the primary), None while none are. The lab's
        cluster manager records none (it starts the stack by commands): not
        asked there."""
        if self.primary.manager == LAB_MANAGER:
            return None
        return recorded_units(self.primary, self.res)

    def _keep_units(self):
        """Before the deletion, which drops them: the units recorded for
        `res` (an operator's own, or Football's), kept in the journal, so
        that a re-run after a crash past the deletion knows them too."""
        units = self._recorded_units()
        self.journal.decide(systemd_units=list(units) if units else None)

    def _record_kept_units(self):
        """After the creation, before the start: the units kept before the
        deletion recorded again (the cluster manager's start found none and
        wrote and recorded Football's over an operator's own); not where
        units are recorded already (a re-run's, or an operator's since)."""
        units = self.journal.decided.get("systemd_units")
        if not units or self._recorded_units() is not None:
            return
        self.say(f"  {self.primary.name}: marsadm set-systemd-unit {self.res} {' '.join(units)}")
        self.primary.run(self._set_units_argv(units), timeout=self.config.command_timeout)

    def _set_units_argv(self, units):
        return ["marsadm", "set-systemd-unit", self.res, *units]

    def _compensate(self, error):
        """Inside the window: restart from the old resource while it exists;
        once deleted, rebuild it stand-alone from the LV with the data."""
        if not self._exists():
            try:
                self._rebuild()
            except Exception as rebuild_error:       # say it, then tell what is left
                self.ctx.reporter.warning(f"{self.primary.name}: rebuilding {self.res} "
                                          f"failed: {rebuild_error}")
                raise Critical(f"shrink of {self.res} failed inside the downtime window: "
                               f"{error}; rebuilding it failed too ({rebuild_error}); it is "
                               f"NOT running. Its data: LV {self.res} (the copy) or "
                               f"{self.preshrink} (the original) on {self.primary.name}; "
                               f"football repair-mars {self.res} {self.primary.name}") from None
        else:
            self._say_who_left()
        return restart_somewhere(self, [self.primary], error)

    def _say_who_left(self):
        """The secondaries that left the resource in the window before it
        failed, and the two ways on: it runs on the primary alone."""
        try:
            members = facts.members(self.primary, self.res)
        except (FootballError, TransportError):
            return
        left = [host.name for host in self.secondaries if host.name not in members]
        if left:
            self.ctx.reporter.warning(
                f"{self.res}: {', '.join(left)} left it in the window; it has no replica "
                f"there now: football shrink {self.res} goes on (they join at the new size), "
                f"football shrink-cleanup {self.res} gives the shrink up (they join again at "
                "its size)")

    def _rebuild(self):
        lvs = self.hooks.lv_list(host=self.primary)
        if self.res not in lvs:
            # renamed to -preshrink, the copy not yet in its place: back
            self.hooks.lv_rename(host=self.primary, lv=self.preshrink, new_name=self.res)
        lv = self.hooks.lv_path(host=self.primary, lv=self.res)
        self.ctx.reporter.warning(f"{self.primary.name}: rebuilding {self.res} stand-alone "
                                  f"from {lv}")
        self._create_when_free(self.primary, "create-resource")
        try:
            self._record_kept_units()
        except (FootballError, TransportError) as error:     # it starts nevertheless
            self.ctx.reporter.warning(f"{self.primary.name}: the units of {self.res} were not "
                                      f"recorded again ({error}): record them by hand "
                                      f"(marsadm set-systemd-unit {self.res} "
                                      f"{' '.join(self.journal.decided['systemd_units'])})")

    def _rejoin(self):
        for host in self.secondaries:
            if self.res in facts.my_resources(host):
                continue
            wait_knows(host, self.res, self.config.poll_interval)
            lv = self.hooks.lv_path(host=host, lv=self.res)
            self.say(f"  {host.name}: marsadm join-resource {self.res} {lv}")
            self._create_when_free(host, "join-resource")
            self.ctx.inject("finish:joined")

    # ------------------------------------------------------------------ wait
    def wait(self):
        if self.secondaries and not self._giving_up():
            names = [host.name for host in self.secondaries]
            self.say(f"* wait: until {agreeing(names, 'holds', 'hold')} the shrunk {self.res}")
            size = self.new_size or int(facts.view(self.primary, "sync-size", self.res) or 0)
            waited = wait_uptodate(self, self.secondaries, size * len(self.secondaries),
                                   f"sync {self.res}")
            synced, measured = synced_bytes(self.secondaries, self.res, size)
            # what the full syncs made equal; synced_bytes is what of it travelled
            self.summary.update(sync_seconds=round(waited, 3), synced_bytes=synced,
                                synced_bytes_measured=measured,
                                copied_bytes=size * len(self.secondaries))
        self.ctx.inject("wait:synced")
        self.journal.record("wait")

    # --------------------------------------------------------------- cleanup
    def _remove_leftovers(self, via=lambda host: host):
        """Unmount the copy, remove `-preshrink` and `-tmp` on every member."""
        if self._mounted(self.tmp_mountpoint):
            via(self.primary).run(["umount", self.tmp_mountpoint],
                                  timeout=self.config.command_timeout)
        for host in self.members:
            lvs = self.hooks.lv_list(host=host)
            for lv in (self.preshrink, self.tmp):
                if lv in lvs:
                    self.say(f"  {host.name}: removing LV {host.vg}/{lv}")
                    self.hooks.lv_remove(host=via(host), lv=lv)
            self.ctx.inject("cleanup:removed")

    def cleanup(self):
        if not self._exists():
            raise Illegal(f"{self.res} is not a resource on {self.primary.name} now (a shrink "
                          f"stopped inside its window): football shrink-finish {self.res} "
                          "first; its LVs are kept; nothing changed")
        # no lock for the whole phase (as prepare and finish, which wait
        # first and lock per step): its delay may last hours, and would hold
        # every other run on the members; their lock once it is over
        self._delay_cleanup()
        with self.holding(self.members):
            if self._giving_up() and self.journal.open_window_started() is not None:
                # a run stopped in its window before the deletion: the
                # container is stopped (the journal closed, `status` would
                # no longer show it); given up, it runs again on its volume
                # (one its operator stopped stays so)
                self._running_again()
            self.say(f"* cleanup: {self.preshrink} and {self.tmp} on "
                     f"{', '.join(host.name for host in self.members)}")
            self._remove_leftovers()
            if self._giving_up():
                # a window that failed after the secondaries left: the
                # container runs again on the primary alone; given up, they
                # join again on their LV as it was (a full sync), else it
                # kept one replica, said nowhere
                self._rejoin()
            drop_intent(self.primary, self.res, kind="shrink")
        self._release_job_slots("shrink", [self.primary])
        self.journal.record("cleanup")
        self.journal.finish()       # shrunk, or a shrink given up: either way complete


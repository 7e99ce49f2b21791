"""Expand a resource's volume online: the container keeps running (FOOTBALL.md,
"Expand").

Steps, each announced as it runs and each looking first, so that a re-run
resumes (the new size is kept in the journal):

1. grow — every replica's LV grows to the new size (`lv_resize`; one that
   is that big already is left alone).
2. resize — `marsadm resize <res>` on the primary: MARS grows the resource
   and its device to the smallest member's disk.
3. growfs — `xfs_growfs` on the mounted filesystem.
4. wait — until every secondary is UpToDate again: it gets the grown tail,
   not the whole volume.

The new size: a fill level in percent of the used space, or a size with a
unit (football/ops/sizing.py). Before anything changes, the filesystem must
be XFS (xfs_growfs grows it), every member must
be in the inventory (its LV grows too), every replica's volume group must
have the room and every member's marsd must answer (`marsadm resize` asks
each for the size of its disk). Refused as well, saying how to go on: a
container that does not run and whose volume is not mounted (expand grows
a mounted filesystem and starts no container its operator stopped), and an
expand over an unfinished migrate that handed over already (its old
replicas are leaving; MARS would need their LVs grown too)."""


from football import facts, joblink
from football.errors import Illegal
from football.ops.base import Operation, reachable, synced_bytes, wait_until, wait_uptodate
from football.ops.sizing import mib, new_size, parse_target
from football.report import agreeing

PHASES = ("grow", "resize", "growfs", "wait")
# what xfs_growfs may leave of a device unused (a last allocation group too
# small to add), so a filesystem this much smaller than MARS was not grown
GROWFS_SLACK = 16 << 20


class Expand(Operation):
    operation = "expand"
    finishes_others_first = True
    whole = PHASES

    def __init__(self, ctx, res, size):
        super().__init__(ctx, res)
        self.asked = size
        self.target = parse_target(size)
        self.over_unfinished = []       # the unfinished migrates it goes on over
        self.summary.update({"old_size": None, "new_size": None, "grown_bytes": 0,
                             "synced_bytes": 0,
                             "sync_seconds": 0.0, "downtime_seconds": 0.0})

    def start_args(self):
        return {"size": self.asked}

    # ------------------------------------------------------------- discovery
    def discover(self):
        inv = self.ctx.inventory
        self.journal = self.open_journal()
        self.primary = self.named_host() if self.source_hint else \
            self.hooks.get_hyper(res=self.res, inventory=inv)
        names = facts.members(self.primary, self.res)
        self.members = [self.host(name) for name in names if name in inv.hosts]
        outside = [name for name in names if name not in inv.hosts]
        self.secondaries = [host for host in self.members if host.name != self.primary.name]
        for host in self.members:
            reachable(host)
        self._refuse_over_a_handover(names)
        self.size = self._mars_size()
        self.mountpoint = self.primary.mountpoint(self.res)
        if not facts.mount_source(self.primary, self.mountpoint):
            self._refuse_not_mounted()
        _, self.used = facts.filesystem_usage(self.primary, self.mountpoint)
        decided = self.journal.decided
        if decided.get("asked", self.asked) != self.asked:
            # the unfinished run's size lost its room before MARS grew (only
            # LVs did; a larger one does no harm): the size asked now goes on
            # — else no run could finish, nor a smaller size begin
            if self.size != decided.get("old_size") or not self._lacking(decided["size"]):
                self._refuse_unlike_unfinished(
                    f"to {mib(decided['size'])}", f"asked {decided['asked']}", self.asked,
                    [decided["asked"]], f"; then expand again with {self.asked}")
            decided = {}
        self.new_size = decided.get("size") or \
            new_size(self.target, self.used, self.config.min_space)
        self.summary.update(old_size=self.journal.decided.get("old_size", self.size),
                            new_size=self.new_size)
        if self.nothing_to_do():
            return
        if facts.filesystem_data_size(self.primary, self.mountpoint) is None:
            # else every LV and MARS grew, and xfs_growfs failed, on every re-run too
            raise Illegal(f"{self.primary.name}: {self.mountpoint} is not an XFS filesystem "
                          f"(xfs_info cannot read it): expand grows the filesystem of "
                          f"{self.res} with xfs_growfs; nothing changed")
        self._refuse_members_outside_the_inventory(outside)
        lacking = self._lacking(self.new_size)
        if lacking:
            grown = " (the LVs an earlier run grew stay so); this run changed nothing" if \
                self.journal.resumed else "; nothing changed"
            raise Illegal(f"expand of {self.res} to {mib(self.new_size)}: {'; '.join(lacking)}; "
                          f"free space there or choose a smaller size{grown}")
        self._refuse_on_plugin_problems(self.members, self.primary)

    def _refuse_over_a_handover(self, members):
        """`Illegal` where an unfinished migrate of `res` handed over already
        (the primary is one of its targets, not the host it began on): the
        old replicas among `members` are leaving (its cleanup removes them),
        yet MARS grows the resource no further than its smallest member's
        disk, so an expand now grows their LVs too, room needed on hosts
        being emptied. Finished first, the expand grows the new ones alone.
        (Before the handover it goes on: the new replicas grow with it.)"""
        for op in joblink.unfinished_operations(self.config):
            if op["resource"] != self.res or op["operation"] != "migrate" or \
                    op.get("damaged") or not op["origin"]:
                continue
            targets = op["targets"]
            if self.primary.name not in targets or op["origin"][0] == self.primary.name:
                continue
            leaving = [name for name in members if name not in targets]
            if not leaving:
                continue
            raise Illegal(
                f"{self.res} has an unfinished migrate that handed over to "
                f"{self.primary.name} already: its old {'replica' if len(leaving) == 1 else 'replicas'} "
                f"on {', '.join(leaving)} {'is' if len(leaving) == 1 else 'are'} leaving (its "
                f"cleanup removes {'it' if len(leaving) == 1 else 'them'}), and an expand now "
                f"would grow {'its LV' if len(leaving) == 1 else 'their LVs'} too (MARS grows "
                f"{self.res} no further than its smallest member's disk). Finish the migrate "
                f"first — `football migrate {self.res} {' '.join(targets)}`, the command that "
                "started it —, then expand; nothing changed")

    def _going_on_over(self, unfinished):
        # said once it goes on (`announce`): over a migrate that handed
        # over, `_refuse_over_a_handover` refuses it first
        self.over_unfinished = unfinished

    def _say_over_unfinished(self, grows):
        for op in self.over_unfinished:
            self.say(f"  {self.res} has an unfinished migrate (steps done: "
                     f"{', '.join(op['steps']) or 'none yet'}): "
                     + ("the expand grows its new replicas too; " if grows else "")
                     + "run the migrate again afterwards to finish it")

    def _refuse_not_mounted(self):
        """`Illegal`: the volume is not mounted on the primary. xfs_growfs
        grows a mounted filesystem, and the used space that sizes the new
        volume is read there; a container its operator stopped is not
        started for it. Says how to expand it stopped."""
        host, mountpoint = self.primary, self.mountpoint
        if self.hooks.container_state(host=host, res=self.res) == "RUNNING":
            raise Illegal(f"{host.name}: {self.res} runs, but its volume is not mounted at "
                          f"{mountpoint}; expand grows the mounted filesystem: look at how it "
                          "runs (`football status`) first; nothing changed")
        raise Illegal(f"{host.name}: {self.res} does not run and its volume is not mounted at "
                      f"{mountpoint}: expand grows the mounted filesystem (xfs_growfs) and "
                      "does not start a container its operator stopped; nothing changed. To "
                      f"expand it stopped: on {host.name}, `mount -t xfs "
                      f"{host.device(self.res)} {mountpoint}`, run this expand again, then "
                      f"`umount {mountpoint}`; or start it (`football repair-vm {self.res} "
                      f"{host.name}`) and expand it running")

    def _lacking(self, size):
        """What each member's volume group lacks for an LV of `size` ([]:
        room everywhere); `Illegal` where a member has no LV."""
        lacking = []
        for host in self.members:
            have = self.hooks.lv_list(host=host).get(self.res)
            if have is None:
                raise Illegal(f"{host.name}: no LV {host.vg}/{self.res}, yet it is a member of "
                              f"{self.res}; repair the replica first; nothing changed")
            free = self.hooks.vg_free(host=host) if have < size else 0
            if have < size and free < size - have:
                lacking.append(f"{host.name}: volume group {host.vg} has {mib(free)} free, "
                               f"needs {mib(size - have)}")
        return lacking

    def _refuse_members_outside_the_inventory(self, outside):
        """Every member's LV must grow: MARS grows the resource no further
        than its smallest member's disk, so with one left out the resize
        would wait `command_timeout` at the old size, on every re-run."""
        if not outside:
            return
        one = len(outside) == 1
        drops = "; ".join(f"on {name}: `marsadm down {self.res}`, then `marsadm leave-resource "
                          f"{self.res}` (gone for good: `marsadm --host={name} leave-resource "
                          f"--force {self.res}` on {self.primary.name})" for name in outside)
        raise Illegal(f"{agreeing(outside, 'holds a replica', 'hold replicas')} of {self.res} "
                      f"but {'is' if one else 'are'} not in the inventory: expand grows every "
                      f"member's LV, and MARS grows {self.res} no further than the smallest "
                      f"member's disk; add {'it' if one else 'them'} to the inventory, or drop "
                      f"{'that replica' if one else 'those replicas'} — {drops} —, then "
                      "expand again; nothing changed")

    def nothing_to_do(self):
        if self.journal.resumed or self.new_size > self.size:
            return None
        # MARS has the size, its filesystem may not: a run stopped after its
        # resize whose journal is not here (another controller's, or set aside)
        self.filesystem = facts.filesystem_data_size(self.primary, self.mountpoint)
        if self.filesystem is not None and self.filesystem < self.size - GROWFS_SLACK:
            self.new_size = self.size       # the filesystem alone grows, to what MARS has
            self.summary["new_size"] = self.size
            return None
        return (f"it has {mib(self.size)}, the asked {self.asked} means {mib(self.new_size)} "
                f"({mib(self.used)} used)")

    def announce(self):
        if self.new_size <= self.size and not self.journal.resumed:
            self.say(f"* expanding {self.res}: MARS has {mib(self.size)} already, its "
                     f"filesystem {mib(self.filesystem)}: growing the filesystem "
                     f"(online; {mib(self.used)} used)")
            self._say_over_unfinished(grows=False)
            return
        self.say(f"* expanding {self.res} from {mib(self.size)} to {mib(self.new_size)} on "
                 f"{', '.join(host.name for host in self.members)} (online; "
                 f"{mib(self.used)} used)")
        self._say_over_unfinished(grows=True)

    def dry_run(self):
        for phase in (self.grow, self.resize, self.growfs):
            phase(via=self.ctx.planned)

    def locks(self, phase):
        """Every phase but the wait holds the `football` lock of the members."""
        return [] if phase == "wait" else self.members

    def involved(self):
        self.journal.decide(size=self.new_size, old_size=self.summary["old_size"],
                            asked=self.asked)
        return self.members

    # ---------------------------------------------------------------- phases
    def grow(self, via=lambda host: host):
        for host in self.members:
            have = self.hooks.lv_list(host=host).get(self.res, 0)
            if have < self.new_size:
                self.say(f"  {host.name}: growing LV {host.vg}/{self.res} to "
                         f"{mib(self.new_size)}")
                self.hooks.lv_resize(host=via(host), lv=self.res, size=self.new_size)
            self.ctx.inject("grow:lv-grown")
        self.journal.record("grow")

    def resize(self, via=lambda host: host):
        """`marsadm resize` on the primary, until MARS has the new size.
        Kernel MARS's resize grows to the smallest disk its members have
        published (their `actsize` links), which each does on a pass of its
        own: right after lvresize the primary may still know the old sizes,
        and the resize then ends at the old size, exit 0 — and xfs_growfs
        after it has nothing to grow into. So `wait-cluster` first, as the
        bash original did, and the size looked at after: both again until it
        grew, bounded by `command_timeout`. (Ours asks every member's marsd
        for the size of its disk as it is now.)"""
        if self._mars_size() < self.new_size:
            self.say(f"  {self.primary.name}: marsadm resize {self.res}")
            timeout = self.config.command_timeout
            primary = via(self.primary)
            told = []

            def resized():
                primary.run(["marsadm", f"--timeout={timeout:g}", "wait-cluster"], check=False,
                            timeout=timeout + 30)
                result = primary.run(["marsadm", f"--timeout={timeout:g}", "resize", self.res],
                                     timeout=timeout + 30)
                size = self._mars_size()
                if result.planned or size >= self.new_size:
                    return True
                if not told:
                    told.append(size)
                    self.say(f"  {self.primary.name}: {self.res} is still {mib(size)}: the grown "
                             "disks of its members have not reached it yet; again, for up to "
                             f"{timeout:g} s")
                return False
            wait_until(resized, timeout, self.config.poll_interval,
                       f"MARS to grow {self.res} to {mib(self.new_size)} (`marsadm resize` on "
                       f"{self.primary.name} did not grow it that far: the grown disks of its "
                       "members have not reached it)")
        self.ctx.inject("resize:resized")
        self.journal.record("resize")

    def _mars_size(self):
        return int(facts.view(self.primary, "sync-size", self.res) or 0)

    def growfs(self, via=lambda host: host):
        # xfs_growfs to the size the filesystem has already is a no-op (exit 0)
        self.say(f"  {self.primary.name}: xfs_growfs {self.mountpoint}")
        via(self.primary).run(["xfs_growfs", self.mountpoint],
                              timeout=self.config.command_timeout)
        self.ctx.inject("growfs:grown")
        self.journal.record("growfs")

    def wait(self):
        """Until every secondary holds the grown volume (nothing left to
        sync, consistent: `synced_and_consistent`), bounded by `sync_timeout`."""
        if self.secondaries:
            names = [host.name for host in self.secondaries]
            self.say(f"* wait: until {agreeing(names, 'holds', 'hold')} the grown tail")
        waited = wait_uptodate(self, self.secondaries,
                               (self.new_size - self.summary["old_size"]) * len(self.secondaries),
                               f"the grown tail of {self.res}") if self.secondaries else 0.0
        size, _ = facts.filesystem_usage(self.primary, self.mountpoint)
        grown = self.new_size - self.summary["old_size"]
        # the secondaries synced the grown tail, not the volume
        synced, measured = synced_bytes(self.secondaries, self.res, grown)
        self.summary.update(grown_bytes=grown, filesystem_size=size, synced_bytes=synced,
                            synced_bytes_measured=measured, sync_seconds=round(waited, 3),
                            copied_bytes=grown * len(self.secondaries))
        self.ctx.inject("wait:synced")
        self.journal.record("wait")

"""A container its operator stopped stays stopped through an operation.

A migrate, handover, shrink or combined operation of a container that does
not run (its operator stopped it: a suspended customer, a broken one)
brings its volume up where it goes, MARS primary and mounted, without the
container (`resource_start_stack`), as Proxmox and Incus keep a stopped one
stopped. Decided by an operation's first run and kept in its journal
(`kept_stopped`): a re-run after a crash inside the window finds the
container stopped by its own window and must not take that for the
operator's. A container stopped (or started) by its operator while the
operation waited follows that before the window. Where a host's cluster
manager cannot bring the volume up alone (`keeps_stopped` no: the systemd
manager), the operation says it will start the container and asks.

`StoppedContainer` is a part of `Operation` (football/ops/base.py): it uses
its `res`, `journal`, `hooks`, `ctx`, `summary`, `say` and `outermost`."""

import time

from football import facts
from football.errors import FootballError


class StoppedContainer:
    """Whether the run keeps the container stopped, and bringing it up so."""

    def _cannot_keep_stopped(self, hosts):
        """The names of `hosts` whose cluster manager cannot bring a volume
        up without its container."""
        return [host.name for host in {host.name: host for host in hosts}.values()
                if not self.hooks.keeps_stopped(host=host)]

    def _keep_stopped_or_ask(self, host, where, hosts):
        """A container that does not run on `host` (its operator stopped it)
        stays stopped: the operation brings its volume up on `where` without
        starting it (`kept_stopped`), where the cluster manager of each of
        `hosts` (where it may come up, compensation included) can
        (`keeps_stopped`); else it would run afterwards: said, and asked
        (`--yes` answers; a dry run only says it). Decided by an operation's
        first run (a resumed run goes on as it was decided: its own window
        may have stopped the container) and said by the outermost operation
        (a combined one's stages and a migrate's handovers decide alike)."""
        if self.journal is None or self.journal.resumed:
            return
        state = self.hooks.container_state(host=host, res=self.res)
        if state == "RUNNING":
            return
        cannot = self._cannot_keep_stopped(hosts)
        if not cannot:      # written with the run's first decision or step
            self.journal.decided["kept_stopped"] = True
            if self.outermost:
                self.say(f"  {self.res} does not run on {host.name} ({state}) and stays "
                         f"stopped: the {self.operation} brings its volume up on {where} "
                         f"without starting it (football repair-vm {self.res} {where} "
                         "starts it)")
            return
        if not self.outermost:
            return
        text = (f"{self.res} does not run on {host.name} ({state}), and the cluster manager "
                f"of {', '.join(cannot)} cannot bring its volume up without starting it: the "
                f"{self.operation} starts it on {where}")
        self.ctx.reporter.warning(text)
        if not self.ctx.dry_run:
            from football.ops.base import confirm       # base imports this module

            confirm(self.ctx, f"{text}; go on?")

    def _follow_a_stop_or_start_meanwhile(self, host, hosts):
        """Whether the container runs on `host` may have changed since this
        operation began (no window of it is left open: its own stop): its
        operator stopped it meanwhile (or it died), or started one that was
        stopped. The run goes on as it is now: a stopped one stays stopped
        (where the managers of `hosts` can keep it so), a started one runs
        at the end. Said, and kept in the journal. Before the window only —
        or where a window of it was left open and its operator started the
        container since (`repair-vm`): that window ended then, and the next
        one is a downtime, through the gates, ending with it running."""
        if self.journal is None:
            return
        left_open = self.journal.open_window_started() is not None
        if left_open and not self.kept_stopped:
            return
        state = self.hooks.container_state(host=host, res=self.res)
        if self.kept_stopped and state == "RUNNING":
            self.journal.decide(kept_stopped=False,
                                **({"window_ended": time.time()} if left_open else {}))
            self.ctx.reporter.warning(
                f"{self.res} runs on {host.name} again (it was stopped when the "
                f"{self.operation} began): the {self.operation} starts it where it goes")
            return
        if left_open or self.kept_stopped or state == "RUNNING" or \
                self._cannot_keep_stopped(hosts):
            return
        self.journal.decide(kept_stopped=True)
        self.ctx.reporter.warning(
            f"{self.res} no longer runs on {host.name} ({state}; it ran when the "
            f"{self.operation} began): it stays stopped, the {self.operation} goes on with its "
            f"volume alone (football repair-vm {self.res} <host> starts it)")

    @property
    def kept_stopped(self):
        """Whether this run keeps the container stopped, as its operator had
        it before the operation began (`_keep_stopped_or_ask`)."""
        return self.journal is not None and bool(self.journal.decided.get("kept_stopped"))

    def _bring_up(self, host):
        """Start `res` on `host` as this run has it: running, or, kept
        stopped, its volume alone (primary, mounted); `FootballError`
        naming what it is instead."""
        if not self.kept_stopped:
            self.hooks.resource_start(host=host, res=self.res)
            state = self.hooks.container_state(host=host, res=self.res)
            if state != "RUNNING":
                raise FootballError(f"{host.name}: {self.res} is {state} after the start")
            return
        self.hooks.resource_start_stack(host=host, res=self.res)
        if not self._is_up(host):
            raise FootballError(f"{host.name}: the volume of {self.res} is not mounted at "
                                f"{host.mountpoint(self.res)} after the start of its stack")
        if self.hooks.container_state(host=host, res=self.res) == "RUNNING":
            raise FootballError(f"{host.name}: {self.res} runs after the start of its stack "
                                "without the container (it was stopped and should stay so)")

    def _start_hook(self):
        """The cluster manager's hook that brings `res` up as this run has
        it (for a dry run's commands)."""
        return self.hooks.resource_start_stack if self.kept_stopped else \
            self.hooks.resource_start

    def _is_up(self, host):
        """Whether `res` is up on `host` as this run has it: running, or,
        kept stopped, its volume mounted from its device."""
        if not self.kept_stopped:
            return self.hooks.container_state(host=host, res=self.res) == "RUNNING"
        return facts.mount_source(host, host.mountpoint(self.res)) is not None

    def _window_words(self, seconds):
        """The window's length as the run says it: the customer's downtime,
        or, kept stopped, the handover's time (no downtime: it did not run).
        A kept-stopped run's summary says so (`kept_stopped`)."""
        if not self.kept_stopped:
            return f"downtime {seconds:.2f} s"
        self.summary["kept_stopped"] = True
        return f"window {seconds:.2f} s (no downtime: it was stopped)"

    def _up_as(self, host, again=""):
        """How `res` is up on `host`, for what the run says (`again`: " again"
        after a compensation)."""
        return f"is ready{again} on {host.name} (its volume; stopped, as before)" if \
            self.kept_stopped else f"runs{again} on {host.name}"

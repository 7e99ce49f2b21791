"""The downtime window: from the container's stop until it runs again.

`DowntimeWindow` is what every operation with downtime (migrate, handover,
shrink) shares, so that none of them owns a copy of it:

- the critical-section record in the journal (`status` shows a run inside
  it), `save_resource_state` before and `restore_resource_state` after;
- the measurement (stop begins → running again) as `downtime-begin` /
  `downtime-end` events and `report_downtime` to the plugins;
- the commands run inside it, each with its host, start (seconds after the
  window opened) and duration: `commands` of the `downtime-end` event and
  `downtime_commands` in the summary, where the downtime went (`make
  bench-downtime` sums them per step);
- compensation: whatever ends the window early — an error, Ctrl-C — the
  operation's `compensate(error)` brings the container back (it returns
  the host where it runs, or raises `Critical`); Ctrl-C meanwhile does not
  cut it short. The window then ends with `Interrupted` (Ctrl-C) or
  `Serious` (an error), naming where the container runs. An injected
  failure is a crash: nothing is compensated.

    with DowntimeWindow(op, source, compensate) as window:
        ... stop, hand over, start ...
        window.ran_on(target)
    op.summary["downtime_seconds"] = window.seconds
"""

import time

from football.errors import Critical, FootballError, Interrupted, Serious
from football.inventory import COMMAND_WATCHERS
from football.ops.base import InjectedFailure, sigint_deferred


class DowntimeWindow:
    """`down_since`: the wall-clock start of an earlier run's window that
    this one goes on with (that run ended inside it, the container down
    since): the window counts from there."""

    def __init__(self, op, source, compensate, down_since=None):
        self.op, self.source, self.compensate = op, source, compensate
        self.down_since = down_since
        self.saved = {}
        self.runs_on = None
        self.began = None
        self.seconds = None
        self.run_seconds = None     # this run's part of `seconds`
        self.commands = []          # {host, argv, at, seconds, exit_code} run inside it

    def ran_on(self, host):
        """The window's work is done: the container runs on `host`."""
        self.runs_on = host

    def __enter__(self):
        op = self.op
        # (before the journal says the window began: a plugin that fails
        # here has stopped nothing, and status said "inside the window")
        for part in op.hooks.call("save_resource_state", host=self.source, res=op.res):
            self.saved.update(part)
        op.journal.record("critical-section", window_started=self.down_since or time.time())
        op._tell("section", name="downtime")
        self.began = time.monotonic()
        COMMAND_WATCHERS.append(self._timed)
        op.ctx.reporter.event("downtime-begin", resource=op.res, host=self.source.name)
        return self

    def _timed(self, host, argv, seconds, exit_code):
        ended = time.monotonic() - self.began
        self.commands.append({"host": host, "argv": argv, "at": round(ended - seconds, 3),
                              "seconds": round(seconds, 3), "exit_code": exit_code})

    def _stop_timing(self):
        if self._timed in COMMAND_WATCHERS:
            COMMAND_WATCHERS.remove(self._timed)

    def __exit__(self, kind, error, traceback):
        try:
            return self._exit(error)
        finally:
            self._stop_timing()     # also when the window ends without _end (a crash)

    def _exit(self, error):
        if error is None:
            self._end(self.runs_on or self.source)
            return False
        if isinstance(error, InjectedFailure):
            return False                    # a crash: the re-run resumes
        op = self.op
        # another controller's run took over: it brings the container up
        op.ctx.check_hold(f"the failure inside the downtime window ({error})")
        with sigint_deferred():             # a second Ctrl-C must not cut it short
            op._tell("section", name="compensation")
            why = "interrupted (Ctrl-C)" if isinstance(error, KeyboardInterrupt) else \
                f"failed: {error}"
            op.ctx.reporter.warning(f"{op.operation} of {op.res} {why}; " + (
                f"bringing the volume of {op.res} up again" if op.kept_stopped else
                f"restarting {op.res}"))
            runs_on = self.compensate(error)
            try:
                self._end(runs_on)
            except FootballError as end_error:      # its journal: the failure may be that
                op.ctx.reporter.warning(str(end_error))
        again = op._up_as(runs_on, " again")
        if isinstance(error, KeyboardInterrupt):
            raise Interrupted(f"{op.operation} of {op.res} interrupted inside the downtime "
                              f"window; {op.res} {again}. Re-run the same command to resume"
                              ) from None
        # what runs where first: the error may end in a command's stderr
        raise Serious(f"{op.operation} of {op.res} failed inside the downtime window; {op.res} "
                      f"{again}. The failure: {error}") from None

    def _end(self, host):
        """`res` runs again on `host`: restore its state there and report the
        window (also a compensated one: the container was down)."""
        op = self.op
        # one instant for the downtime and the journal's end of the window
        # (read back as the downtime by a re-run, and where cleanup_delay counts from)
        ended = time.time()
        self.run_seconds = self.seconds = round(time.monotonic() - self.began, 3)
        if self.down_since is not None:
            self.seconds = round(max(self.run_seconds, ended - self.down_since), 3)
        self._stop_timing()
        op.summary["downtime_commands"] = self.commands
        op._tell("restore_resource_state", host=host, state=self.saved)
        op._tell("report_downtime", source=self.source, host=host, seconds=self.seconds)
        op.ctx.reporter.event("downtime-end", resource=op.res, host=host.name,
                              downtime_seconds=self.seconds, commands=self.commands)
        if op.journal is not None:      # where cleanup_delay counts from; what a re-run reports
            op.journal.decide(window_ended=ended, downtime=self.seconds)


def restart_somewhere(op, hosts, error):
    """Compensation by restart: start `res` on the first of `hosts` where it
    runs and return that host; `Critical` when it runs nowhere. Never raises
    anything else. Before each try the others are stopped: a host whose
    start failed after its mount still holds the device, and MARS refuses
    the handover to any other host while it does."""
    hosts = list({host.name: host for host in hosts}.values())
    for host in hosts:
        _stop_elsewhere(op, [other for other in hosts if other.name != host.name])
        try:
            op._bring_up(host)
            return host
        except Exception as restart_error:       # keep trying the others
            op.ctx.reporter.warning(f"{host.name}: restart failed: {restart_error}")
    names = " ".join(host.name for host in hosts)
    down = (f"its window; the volume of {op.res} (stopped before the {op.operation}, as it "
            "stays) is NOT up anywhere", " (it starts the container too)") if op.kept_stopped \
        else (f"the downtime window; {op.res} is NOT running anywhere", "")
    raise Critical(f"{op.operation} of {op.res} failed inside {down[0]}. Run football "
                   f"repair-vm {op.res} {names}{down[1]}. The failure: {error}")


def _stop_elsewhere(op, hosts):
    """Stop `res` on `hosts` (a stop where it does not run changes nothing);
    a failure is said and the compensation goes on."""
    for host in hosts:
        try:
            op.hooks.resource_stop(host=host, res=op.res)
        except Exception as stop_error:         # keep going: the start will tell
            op.ctx.reporter.warning(f"{host.name}: stopping {op.res} before the restart "
                                    f"elsewhere failed: {stop_error}")

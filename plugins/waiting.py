"""Plugin `waiting`: the gates before a downtime window, for every operation
and site (FOOTBALL.md, "Waiting"; the original had them in a site plugin).

- `business_hours`: a regular expression matched as a whole against the
  controller's `<weekday 1-7>_<hour 00-23>` (`date +%u_%H`), e.g.
  `[1-5]_(0[8-9]|1[0-8])`: a downtime begins only inside it ('' = always).
- pause files in the controller's state dir: `pause` holds every resource,
  `pause.<res>` one (`football pause [RES]`, `football unpause [RES]`);
  where controllers share a jobs' database (`jobs_database_url`) the pause
  is recorded there instead and holds every controller's runs and jobs;
  while that database does not answer, a run cannot tell whether it is
  paused there and waits too (said, with the database's error). While one
  exists the resource counts as locked: the time does not count toward
  `downtime_gate_timeout`.
- `gate_before_downtime`: every downtime waits for the operator's
  `football continue <res>` (a file `continue.<res>`, used up by the run
  that passes the gate). A screener job's gate is the job's own
  (football/joblink.py: `football screener continue`, state `waiting`).

The settings (`business_hours`, `gate_before_downtime`) are read again at
every poll (config files and environment), so an operator can change them
while a run waits; the pause files are looked for in the run's state dir."""

import re
import time
from pathlib import Path

from football.hooks import hookimpl
from football.joblink import in_job

PAUSE_ALL = "pause"
# every <weekday>_<hour> there is: what business_hours is matched against
WEEK_HOURS = tuple(f"{day}_{hour:02d}" for day in range(1, 8) for hour in range(24))
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def pause_file(state_dir, res=None):
    return Path(state_dir) / (f"{PAUSE_ALL}.{res}" if res else PAUSE_ALL)


class Pause:
    """Where `football pause [res]` is kept: the jobs' database when
    controllers share one (`jobs_database_url`: every controller's runs and
    jobs hold, any controller takes it back), else a file in this
    controller's state dir."""

    def __init__(self, config, res=None):
        self.res, self.config = res, config
        self.path = pause_file(config.state_dir, res)
        self.store = None
        if config.jobs_database_url:
            from football.locks import controller_owner
            from football.screener import JobStore

            self.store = JobStore(config)
            self.owner = controller_owner(config.state_dir)

    @property
    def where(self):
        return "the jobs' database: every controller holds it" if self.store else str(self.path)

    def exists(self):
        from football.jobdb import PausesUnknown, shared_pauses

        if self.store is not None:
            try:
                return (self.res or "*") in shared_pauses(self.config)
            except PausesUnknown:
                return False        # the store's own write or delete says the rest
        return self.path.exists()

    def set(self):
        if self.store is not None:
            self.store.pause(self.res, self.owner)
        else:
            self.path.touch()

    def clear(self):
        if self.store is not None:
            self.store.unpause(self.res)
        self.path.unlink(missing_ok=True)       # also one made before the database was shared

    def close(self):
        if self.store is not None:
            self.store.close()


def pauses(config):
    """[{resource ('*': all), since, where, by}] of the pauses that hold
    runs of this controller: its pause files and, where controllers share a
    jobs' database, the pauses recorded there (`football status` shows them:
    a paused run waits by design, but never unseen)."""
    from football.jobdb import PausesUnknown, shared_pauses

    found = []
    for path in sorted(Path(config.state_dir).glob(f"{PAUSE_ALL}*")):
        name = path.name
        if name == PAUSE_ALL or name.startswith(f"{PAUSE_ALL}."):
            found.append({"resource": name[len(PAUSE_ALL) + 1:] or "*", "where": str(path),
                          "since": path.stat().st_mtime, "by": None})
    try:
        shared = shared_pauses(config)
    except PausesUnknown as error:
        return found + [{"resource": "*", "where": f"the jobs' database does not answer: {error}",
                         "since": None, "by": None, "unknown": True}]
    found += [{"resource": res, "where": "the jobs' database", "since": when, "by": by}
              for res, (when, by) in sorted(shared.items())]
    return found


def continue_file(state_dir, res):
    return Path(state_dir) / f"continue.{res}"


class Waiting:
    def __init__(self):
        self.config = None
        # the resources whose `continue` this run used, until their window
        # begins or the run goes back to the gates (as a job's `released`):
        # a pause or another plugin's no at that poll must not use it up
        self.released = set()

    @hookimpl
    def configure(self, config):
        self.config = config

    @hookimpl
    def resource_locked(self, host, res):
        if self.config is None:
            return False
        state_dir = self.config.state_dir
        for path, command in ((pause_file(state_dir), "football unpause"),
                              (pause_file(state_dir, res), f"football unpause {res}")):
            if path.exists():
                return f"paused by {path}: {command}"
        if not self.config.jobs_database_url:
            return False        # (SQLAlchemy: 0.25 s of imports, for nothing)
        from football.jobdb import PausesUnknown, shared_pauses

        try:
            shared = shared_pauses(self.config)
        except PausesUnknown as error:
            return (f"the jobs' database does not answer ({error}): whether {res} is paused "
                    "there cannot be read; waiting until it answers (a run with --var "
                    "jobs_database_url= goes on without it)")
        for name, command in (("*", "football unpause"), (res, f"football unpause {res}")):
            if name in shared:
                when, by = shared[name]
                return (f"paused in the jobs' database by {by} at "
                        f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(when))}: {command}")
        return False

    @hookimpl
    def want_downtime(self, res, source, target, again):
        if self.config is None:
            return True
        if again:       # the window begins now, or the run goes back to the gates
            self.released.discard(res)
        settings = self.config.reloaded()
        if settings.business_hours:
            if not re.fullmatch(settings.business_hours, time.strftime("%u_%H")):
                # the same words all the wait long (not the hour: said
                # again every hour), and when the window opens
                return (False, f"outside business_hours {settings.business_hours}"
                               f"{_opens(settings.business_hours)}"
                               f"{_never(settings.business_hours)}{_unchanged(settings)}")
        # a screener job's gate is its own (football/joblink.py): released
        # by `football screener continue`, durably
        if settings.gate_before_downtime and not in_job() and not again and \
                res not in self.released:
            released = continue_file(settings.state_dir, res)
            if not released.exists():
                return (False, f"waiting for the operator (gate_before_downtime): "
                               f"football continue {res}{_unchanged(settings)}")
            released.unlink(missing_ok=True)
            self.released.add(res)
        return True


def _opens(business_hours, now=None):
    """` (it opens Mon 08:00)`: the next hour that `business_hours`
    matches after `now` (a time.struct_time; default: now), or '' when
    none does (`_never` says why). The same while a run waits for it."""
    now = time.localtime() if now is None else now
    this_hour = now.tm_wday * 24 + now.tm_hour          # WEEK_HOURS' index (Mon 00 first)
    for ahead in range(1, len(WEEK_HOURS) + 1):
        index = (this_hour + ahead) % len(WEEK_HOURS)
        if re.fullmatch(business_hours, WEEK_HOURS[index]):
            day, hour = divmod(index, 24)
            return f" (it opens {WEEKDAYS[day]} {hour:02d}:00)"
    return ""


def _never(business_hours):
    """Why the gate never opens, when `business_hours` matches no hour of
    the week (`8-18` for `0[8-9]|1[0-8]`): the run would wait out its
    downtime_gate_timeout for a window that never comes."""
    if any(re.fullmatch(business_hours, hour) for hour in WEEK_HOURS):
        return ""
    return (f"; it matches no <weekday 1-7>_<hour 00-23> ({WEEK_HOURS[0]} to {WEEK_HOURS[-1]}): "
            "the downtime never begins, change business_hours")


def _unchanged(settings):
    """Why the settings did not change, when an operator's change was refused
    (a typo in the file edited to open the gate must not look like the old value)."""
    if settings.refused_change is None:
        return ""
    return (f"; the settings as changed are refused, the run keeps those it started with: "
            f"{settings.refused_change}")


def new_plugin():
    return Waiting()

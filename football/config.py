"""Tunables: every setting with its default and a one-line meaning.

Layers, later wins: the defaults here < config files (YAML mappings, in the
order given) < environment variables `FOOTBALL_<NAME>` (upper case) <
`--var name=value` on the command line. Values are converted to the type of
the default (a list, of paths or patterns: ':'-separated in the environment and --var)
and checked against the setting's range; an unknown name or a value out of
range is an error, so a typo never passes silently (nor waits, at the first
gate, to fail a run that has already synced)."""

import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from football.errors import Illegal


def at_least(low):
    """A range check: `low` or more."""
    return lambda value: None if value >= low else f"is below {low}, its least"


def between(low, high):
    """A range check: from `low` to `high`."""
    return lambda value: None if low <= value <= high else f"is outside {low}..{high}"


def regular_expression(value):
    try:
        re.compile(value)
    except re.error as error:
        return f"is not a regular expression ({error})"
    return None


COUNT = at_least(1)         # limits and counts: 0 would wait for ever (`football pause` holds)
SECONDS = at_least(0)       # 0: do not wait, poll without a pause, expire at once
WEIGHT = at_least(0)


@dataclass(frozen=True)
class Tunable:
    default: object
    meaning: str
    check: object = None    # value -> what is wrong with it, or None


TUNABLES = {
    "state_dir": Tunable("/var/lib/football",
                         "where journals, run logs and intents of this controller live"),
    "limit_syncs": Tunable(4, "parallel syncs per target host (running syncs and intents)",
                           COUNT),
    "limit_mars_logfile": Tunable(64, "replication lag (MiB, view-work-rest) allowed before "
                                      "the handover starts", at_least(0)),
    "lock_break_timeout": Tunable(3600.0, "seconds after which another run's lock is stale "
                                          "and broken", SECONDS),
    "lock_retry_timeout": Tunable(600.0, "seconds to keep retrying to take locks before "
                                         "giving up", SECONDS),
    "run_lock_lease": Tunable(120.0, "seconds a resource's run lock (run-<res>) stays another "
                                     "controller's after its last renewal (every third of it); "
                                     "once the run acted, only towards the same command",
                              SECONDS),
    "lease_time": Tunable(7200.0, "seconds an intent (a planned sync) counts against limits",
                          SECONDS),
    "poll_interval": Tunable(0.5, "seconds between polls while waiting for MARS", SECONDS),
    "stall_timeout": Tunable(300.0, "seconds without sync progress before a wait fails", SECONDS),
    "stall_warn": Tunable(60.0, "seconds without sync progress before a warning", SECONDS),
    "sync_timeout": Tunable(86400.0, "seconds a sync may take in all", SECONDS),
    "lag_timeout": Tunable(600.0, "seconds to wait for the lag to fall under "
                                  "limit_mars_logfile", SECONDS),
    "command_timeout": Tunable(600.0, "seconds a single host command may take", SECONDS),
    "handover_timeout": Tunable(120.0, "seconds `marsadm primary` may take in the downtime "
                                       "window", SECONDS),
    "placement_min_free": Tunable(0, "bytes a target VG must keep free beyond the volume",
                                  at_least(0)),
    "min_space": Tunable(320 << 20, "bytes a shrunk or expanded volume has at least "
                         "(xfs needs 300 MiB)", at_least(300 << 20)),
    "limit_handovers": Tunable(2, "parallel downtime windows (handovers) per source host "
                                  "among the screener's jobs", COUNT),
    "limit_takeovers": Tunable(4, "parallel takeovers per host in a failover (each starts "
                                  "a device and a container there)", COUNT),
    "limit_shrinks": Tunable(1, "parallel shrinks per primary host (copies running and "
                                "intents)", COUNT),
    "shrink_percent": Tunable(85, "fill level (percent) a shrunk filesystem has when no size "
                                  "is given", between(1, 99)),
    "max_rsync_downtime": Tunable(0.0, "seconds: when one more copy pass before the shrink's "
                                       "downtime takes longer, the shrink fails before any "
                                       "downtime (0: no probe)", SECONDS),
    "copy_timeout": Tunable(86400.0, "seconds one copy pass of a shrink may take", SECONDS),
    "cleanup_delay": Tunable(0.0, "seconds between the end of the downtime window and the "
                                  "cleanup (old replicas, a shrink's old LV kept meanwhile; "
                                  "a screener job shows `delayed`)", SECONDS),
    "cleanup_old_replicas": Tunable(True, "migrate removes the replicas on the old hosts "
                                          "after the handover"),
    "split_clusters_after_migrate": Tunable(True, "migrate cleanup splits MARS clusters whose "
                                                  "hosts no longer share resources (inventory "
                                                  "clusters stay whole)"),
    "plugin_dirs": Tunable((), "directories whose *.py files are loaded as plugins "
                               "(':'-separated in the environment and --var)"),
    "business_hours": Tunable("", "regular expression on <weekday 1-7>_<hour 00-23> of the "
                                  "controller, e.g. [1-5]_(0[8-9]|1[0-8]): a downtime begins "
                                  "only then ('': any time)", regular_expression),
    "gate_before_downtime": Tunable(False, "every downtime waits for `football continue <res>`"),
    "downtime_gate_timeout": Tunable(3600.0, "seconds to wait before the downtime window "
                                             "while a plugin's want_downtime says no or "
                                             "resource_locked says yes; then refused", SECONDS),
    "jobs_database_url": Tunable("", "the screener's database (DBOS system database), e.g. "
                                     "postgresql://user:pw@host/football_jobs for workers on "
                                     "several controllers ('': SQLite jobs.sqlite in state_dir)"),
    "jobs_poll_interval": Tunable(1.0, "seconds between a screener worker's looks into a job "
                                       "queue", SECONDS),
    "session_timeout": Tunable(10800.0, "seconds without an event after which a running "
                                        "screener job shows as timeouted (not one that waits "
                                        "saying why: waiting, condition, delayed)", SECONDS),
    "worker_jobs": Tunable(20, "jobs one screener worker runs at once (each is a football "
                               "process of ~70 MB that polls the jobs' database while it waits "
                               "for a host slot); the others wait queued, in their order",
                           COUNT),
    "jobs_archive_days": Tunable(30.0, "days after its end a finished screener job is "
                                       "archived by the worker (not a critical one, nor one "
                                       "that left its operation unfinished; 0: only by "
                                       "`screener purge`)", at_least(0)),
    "history_days": Tunable(365.0, "days a controller keeps archived jobs, run logs, expired "
                                   "plans, finished journals and the lines of its moves' and "
                                   "downtimes' history (its worker clears them hourly, "
                                   "its commands daily; 0: kept for ever)", at_least(0)),
    "worker_heartbeat": Tunable(2.0, "seconds between a screener worker's heartbeats in the "
                                     "jobs' database", SECONDS),
    "worker_dead_after": Tunable(10.0, "seconds without a heartbeat after which a screener "
                                       "worker is dead: another live worker takes over its "
                                       "jobs (they resume from their journals)", SECONDS),
    "job_command": Tunable("", "the command a screener worker runs a job's football command "
                               "line with ('': this installation's football)"),
    "notify_command": Tunable("", "the command (split like a shell's words, run without one) "
                                  "the notify plugin runs for every state a screener job "
                                  "enters, with the job as JSON on stdin ('': none)"),
    "notify_timeout": Tunable(30.0, "seconds the notify command may take before it is killed "
                                    "(a warning, never a failed job)", SECONDS),
    # the planner (football/planner): the score's weights and penalties as
    # Ganeti's hbal has them, its stop rules, and its safeguards against thrashing
    "weight_free_vg": Tunable(0.5, "score: weight of the spread (standard deviation) of the "
                                   "hosts' free VG fractions", WEIGHT),
    "weight_free_memory": Tunable(0.5, "score: weight of the spread of the hosts' free memory "
                                       "fractions", WEIGHT),
    "weight_containers": Tunable(1.0, "score: weight of the spread of the hosts' container "
                                      "counts (as fractions of max_containers)", WEIGHT),
    "weight_cpu_load": Tunable(1.0, "score: weight of the spread of the hosts' CPU load "
                                    "(15-minute load average per CPU)", WEIGHT),
    "penalty_draining_primary": Tunable(16.0, "score: for each primary on a draining or "
                                              "evacuated host", WEIGHT),
    "penalty_draining_replica": Tunable(4.0, "score: for each resource with a replica (primary "
                                             "or secondary) on a draining or evacuated host",
                                        WEIGHT),
    "penalty_same_failure_domain": Tunable(1.0, "score: for each resource whose primary and a "
                                                "secondary share a failure_domain", WEIGHT),
    "penalty_no_secondary": Tunable(1.0, "score: for each resource without a secondary", WEIGHT),
    "min_gain": Tunable(0.01, "the planner takes a move only while it lowers the score by at "
                              "least this much (or the score is above min_gain_limit)", WEIGHT),
    "min_gain_limit": Tunable(0.1, "above this score any move that lowers it is taken", WEIGHT),
    "gain_per_tib": Tunable(0.01, "a migrate must lower the score by at least this much per "
                                  "TiB it syncs (a handover syncs nothing)", WEIGHT),
    "max_moves": Tunable(10, "moves in one balance plan at most", COUNT),
    "cooldown": Tunable(86400.0, "seconds after a resource moved before balancing moves it "
                                 "again (never back where it came from meanwhile)", SECONDS),
    "plan_expiry": Tunable(86400.0, "seconds a saved plan may be executed after it was made",
                           SECONDS),
    "balance_pinned": Tunable((), "resources balancing never moves, as shell patterns "
                                  "(vm-db*; ':'-separated in the environment and --var); "
                                  "evacuate moves them all the same"),
    "balance_threshold": Tunable(0.1, "balance --auto: the score above which the fleet counts "
                                      "as imbalanced", WEIGHT),
    "balance_hold": Tunable(3, "balance --auto: consecutive runs the score must stay above "
                               "balance_threshold before it acts", COUNT),
    "balance_margin": Tunable(0.1, "balance --auto: the part of the score (0..1) a plan must "
                                   "gain before it is executed", between(0, 1)),
}


class Config:
    """Resolved tunables; read them as attributes (`config.limit_syncs`)."""

    def __init__(self, files=(), variables=(), environ=None):
        self.sources = (tuple(files), tuple(variables), environ)
        self.refused_change = None
        self.defaults = {}
        environ = os.environ if environ is None else environ
        values = {name: tunable.default for name, tunable in TUNABLES.items()}
        self.origin = {name: "default" for name in TUNABLES}
        for path in files:
            for name, value in _read(path).items():
                self._set(values, name, value, f"config file {path}")
        for name in TUNABLES:
            key = f"FOOTBALL_{name.upper()}"
            if key in environ:
                self._set(values, name, environ[key], f"environment {key}")
        for item in variables:
            name, sep, value = item.partition("=")
            if not sep:
                raise Illegal(f"--var {item!r}: expected name=value")
            self._set(values, name.strip(), value, "--var")
        self._values = values

    def _set(self, values, name, value, origin):
        if name not in TUNABLES:
            raise Illegal(f"unknown setting {name!r} in {origin}; known: "
                          f"{', '.join(sorted(TUNABLES))} (see `football config`)")
        values[name] = convert(name, value, TUNABLES[name], origin)
        self.origin[name] = origin

    def reloaded(self):
        """The settings read again from the same files, environment and
        --var (a run that waits sees what the operator changed meanwhile);
        these when a file cannot be read now or holds a bad value, with
        why in `refused_change`."""
        try:
            again = Config(*self.sources)
        except Illegal as error:
            self.refused_change = str(error)
            return self
        for name, (value, why) in self.defaults.items():
            again.default(name, value, why)
        return again

    def default(self, name, value, why=None):
        """Use `value` for `name` unless a file, the environment or --var set
        it; `why` (e.g. "the lab's") tells its origin from the built-in one."""
        self.defaults[name] = (value, why)
        if self.origin[name].startswith("default"):
            self._values[name] = convert(name, value, TUNABLES[name], "default")
            self.origin[name] = f"default: {why}" if why else "default"

    def __getattr__(self, name):
        try:
            return self.__dict__["_values"][name]
        except KeyError:
            raise AttributeError(name) from None

    def items(self):
        return sorted(self._values.items())


KINDS = {bool: "yes/no (true/false, on/off, 1/0)", int: "whole number", float: "number",
         str: "string", tuple: "list (':'-separated)"}


def convert(name, value, tunable, origin):
    """`value` as the type of the tunable's default, within its range;
    `Illegal` naming setting, value and origin."""
    value = _typed(name, value, tunable.default, origin)
    complaint = tunable.check(value) if tunable.check else None
    if complaint:
        raise Illegal(f"setting {name} from {origin}: {value!r} {complaint} — "
                      f"{name}: {tunable.meaning}")
    return value


def _typed(name, value, default, origin):
    wrong = Illegal(f"setting {name} from {origin}: {value!r} is not a "
                    f"{KINDS[type(default)]}")
    if isinstance(default, tuple):
        return _paths(value, wrong)
    if isinstance(value, str) and not isinstance(default, str):
        text = value.strip()
        try:
            if isinstance(default, bool):
                if text.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError(text)
                return text.lower() in ("1", "true", "yes", "on")
            return type(default)(text)
        except ValueError:
            raise wrong from None
    if isinstance(default, bool) != isinstance(value, bool) or \
            not isinstance(value, (type(default), int if isinstance(default, float) else ())):
        raise wrong
    return type(default)(value)


def _paths(value, wrong):
    """A list (of paths, of patterns) as a tuple: a YAML list, or one string
    separated by ':' (environment, --var)."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(":") if part.strip())
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise wrong


def _read(path):
    try:
        # bytes: YAML's reader takes a BOM, and names where a file is not UTF-8
        data = yaml.safe_load(Path(path).read_bytes()) or {}
    except FileNotFoundError:
        raise Illegal(f"config file {path} does not exist") from None
    except OSError as error:
        raise Illegal(f"config file {path} cannot be read: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise Illegal(f"config file {path} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise Illegal(f"config file {path}: expected a mapping of settings")
    return data

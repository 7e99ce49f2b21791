"""Tunables: every setting with its default and a one-line meaning.

Layers, later wins: the defaults here < config files (YAML mappings, in the
order given) < environment variables `FOOTBALL_<NAME>` (upper case) <
`--var name=value` on the command line. Values are converted to the type of
the default (a list, of paths or patterns: ':'-separated in the environment and --var)
and checked against the setting's range; an unknown name or a value out of
range is an error, so a typo never passes silently (nor waits, at the first
gate, to fail a run that has already synced). An upper-case `FOOTBALL_<NAME>`
that is a near miss of a setting's (FOOTBALL_LIMIT_SYNC) is refused too; other
FOOTBALL_* variables belong to the command line, the lab and plugins
(NOT_SETTINGS) and are left alone."""

import difflib
import math
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import yaml

from football.errors import Illegal

TEN_YEARS = 10 * 365.25 * 86400     # seconds: the most any time setting may be
EXBIBYTE = 1 << 60                  # bytes: the most any size setting may be


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML
    itself keeps the last silently: a copied line would replace a host, or
    a setting, without a word). Keys a merge (`<<:`) brings in may be
    overridden, as YAML means them to be."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:
                    continue            # unhashable: SafeLoader refuses it itself
                if first is not key_node:
                    raise yaml.constructor.ConstructorError(
                        "while reading the mapping that begins here", node.start_mark,
                        f"key {key!r} is given twice (first on line "
                        f"{first.start_mark.line + 1}): keep one", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def load_yaml(data):
    """The YAML document in `data` (bytes or text) as safe_load reads it,
    except that a key given twice in a mapping is a `yaml.YAMLError`."""
    return yaml.load(data, Loader=UniqueKeyLoader)  # noqa: S506 (a SafeLoader)


def _shown(number):
    """A bound as the operator writes it: 60, not 60.0 nor 6e+01."""
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


def at_least(low, most=None, unit=""):
    """A range check: `low` or more (and `most` at most, `unit` naming it)."""
    def check(value):
        if value < low:
            return f"is below {_shown(low)}, its least"
        if most is not None and value > most:
            return f"is above {_shown(most)}{unit}, its most"
        return None
    return check


def between(low, high):
    """A range check: from `low` to `high`."""
    return lambda value: None if low <= value <= high else f"is outside {low}..{high}"


def shell_words(value):
    """A command line split like a shell's words (shlex)."""
    try:
        shlex.split(value)
    except ValueError as error:
        return (f"cannot be split into a command's words ({error}): close the quote, or "
                "escape it with a backslash")
    return None


def database_url(value):
    """'' or a database URL SQLAlchemy reads, of PostgreSQL or SQLite."""
    if not value:
        return None
    from sqlalchemy.engine import make_url        # imported late: only when one is set
    from sqlalchemy.exc import ArgumentError

    try:
        backend = make_url(value).get_backend_name()
    except (ArgumentError, ValueError) as error:
        return (f"is not a database URL ({error}); write postgresql://USER:PASSWORD@HOST/DB, "
                "or '' for SQLite in state_dir")
    if backend not in ("postgresql", "sqlite"):
        return (f"names the database {backend!r}, which the screener cannot use; write "
                "postgresql://USER:PASSWORD@HOST/DB, or '' for SQLite in state_dir")
    return None


def absolute_directory(value):
    """A directory given from the root (a relative one would follow the
    current directory: every command somewhere else)."""
    if not value.strip():
        return "is empty: give a directory, e.g. /var/lib/football"
    if not value.strip().startswith("/"):
        return "is not an absolute path: give the directory from /, e.g. /var/lib/football"
    return None


def regular_expression(value):
    try:
        re.compile(value)
    except re.error as error:
        return f"is not a regular expression ({error})"
    return None


COUNT = at_least(1)         # limits and counts: 0 would wait for ever (`football pause` holds)
# 0: do not wait, poll without a pause, expire at once; never more than ten
# years (time.sleep and the JSON of `football config` take no infinity)
SECONDS = at_least(0, TEN_YEARS, " (10 years)")
DAYS = at_least(0, TEN_YEARS / 86400, " (10 years)")
BYTES = at_least(0, EXBIBYTE, " (1 EiB)")
WEIGHT = at_least(0)


@dataclass(frozen=True)
class Tunable:
    default: object
    meaning: str
    check: object = None    # value -> what is wrong with it, or None


TUNABLES = {
    "state_dir": Tunable("/var/lib/football",
                         "where journals, run logs and intents of this controller live "
                         "(an absolute path)", absolute_directory),
    "limit_syncs": Tunable(4, "parallel syncs per target host (running syncs and intents)",
                           COUNT),
    "limit_mars_logfile": Tunable(64, "replication lag (MiB, view-work-rest) allowed before "
                                      "the handover starts",
                                  at_least(0, EXBIBYTE >> 20, " (1 EiB)")),
    # a run's `football` lock is not renewed while it holds it: one broken
    # sooner than a minute would not keep two runs apart at all
    "lock_break_timeout": Tunable(3600.0, "seconds after which another run's lock is stale "
                                          "and broken (at least 60)",
                                  at_least(60.0, TEN_YEARS, " (10 years)")),
    "lock_retry_timeout": Tunable(600.0, "seconds to keep retrying to take locks before "
                                         "giving up", SECONDS),
    "run_lock_lease": Tunable(120.0, "seconds a resource's run lock (run-<res>) stays another "
                                     "controller's after its last renewal (every third of it); "
                                     "once the run acted, only towards the same command "
                                     "(at least 0.3)",
                              # renewed every third of it, at most every 0.05 s: a
                              # shorter lease goes stale between renewals
                              at_least(0.3, TEN_YEARS, " (10 years)")),
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
                                  BYTES),
    "min_space": Tunable(320 << 20, "bytes a shrunk or expanded volume has at least "
                         "(xfs needs 300 MiB)", at_least(300 << 20, EXBIBYTE, " (1 EiB)")),
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
                                     "several controllers ('': SQLite jobs.sqlite in state_dir)",
                             database_url),
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
                                       "`screener purge`)", DAYS),
    "history_days": Tunable(365.0, "days a controller keeps archived jobs, run logs, expired "
                                   "plans, finished journals and the lines of its moves' and "
                                   "downtimes' history (its worker clears them hourly, "
                                   "its commands daily; 0: kept for ever)", DAYS),
    "worker_heartbeat": Tunable(2.0, "seconds between a screener worker's heartbeats in the "
                                     "jobs' database", SECONDS),
    "worker_dead_after": Tunable(10.0, "seconds without a heartbeat after which a screener "
                                       "worker is dead: another live worker takes over its "
                                       "jobs (they resume from their journals; at least "
                                       "twice worker_heartbeat)", SECONDS),
    "job_command": Tunable("", "the command a screener worker runs a job's football command "
                               "line with ('': this installation's football)",
                         shell_words),
    "notify_command": Tunable("", "the command (split like a shell's words, run without one) "
                                  "the notify plugin runs for every state a screener job "
                                  "enters, with the job as JSON on stdin ('': none)",
                            shell_words),
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
                              "least this much (or the spread is above min_gain_limit)", WEIGHT),
    "min_gain_limit": Tunable(0.1, "while the score's spread part (the score without its "
                                   "penalties) is above this, any move that lowers the score "
                                   "is taken", WEIGHT),
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


# FOOTBALL_* variables that are not settings: the command line's, the
# lab's, a screener job's, the host tools' and the tests' plugins' (FOOTBALL_TEST_*)
NOT_SETTINGS = frozenset({"FOOTBALL_INVENTORY", "FOOTBALL_LAB_DIR",
                          "FOOTBALL_LAB_WORKLOAD_INTERVAL", "FOOTBALL_TOOL_SERVER",
                          "FOOTBALL_TOOL_SOCKET", "FOOTBALL_JOB", "FOOTBALL_JOB_ID",
                          "FOOTBALL_JOB_STATE", "FOOTBALL_TEMPLATES", "FOOTBALL_ROOT"})


def _near_miss(key):
    """The setting an upper-case FOOTBALL_* variable that names none was
    surely meant for (FOOTBALL_LIMIT_SYNC: limit_syncs), or None."""
    suffix = key.removeprefix("FOOTBALL_")
    if key in NOT_SETTINGS or key.startswith("FOOTBALL_TEST_") or suffix != suffix.upper():
        return None
    close = difflib.get_close_matches(suffix.lower(), TUNABLES, n=1, cutoff=0.8)
    return close[0] if close else None


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
        for key in sorted(environ):
            if key.startswith("FOOTBALL_") and key.removeprefix("FOOTBALL_").lower() \
                    not in TUNABLES:
                meant = _near_miss(key)
                if meant:
                    raise Illegal(f"environment {key} names no setting: did you mean "
                                  f"FOOTBALL_{meant.upper()} ({meant})? Correct or unset it "
                                  "(see `football config`)")
        for name in TUNABLES:
            key = f"FOOTBALL_{name.upper()}"
            if key in environ:
                self._set(values, name, environ[key], f"environment {key}")
        for item in variables:
            name, sep, value = item.partition("=")
            if not sep:
                raise Illegal(f"--var {item!r}: expected name=value")
            self._set(values, name.strip(), value, "--var")
        self._cross_check(values)
        self._values = values

    def _cross_check(self, values):
        """Settings that are each in range but wrong together."""
        heartbeat, dead_after = values["worker_heartbeat"], values["worker_dead_after"]
        if dead_after < 2 * heartbeat:
            raise Illegal(f"setting worker_dead_after ({dead_after:g} s, from "
                          f"{self.origin['worker_dead_after']}) is less than twice "
                          f"worker_heartbeat ({heartbeat:g} s, from "
                          f"{self.origin['worker_heartbeat']}): a live worker would be taken "
                          "for dead between two heartbeats and its jobs taken over; raise "
                          "worker_dead_after or lower worker_heartbeat")

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
# the words (and YAML's 1 and 0, numbers to it) a yes/no setting takes, in
# any case; YAML 1.1 reads yes/no/on/off unquoted as booleans already
YES_WORDS = ("1", "true", "yes", "on")
NO_WORDS = ("0", "false", "no", "off")


def convert(name, value, tunable, origin):
    """`value` as the type of the tunable's default, within its range;
    `Illegal` naming setting, value and origin."""
    value = _typed(name, value, tunable.default, origin)
    if isinstance(value, float) and not math.isfinite(value):
        complaint = "is not a finite number"
    else:
        complaint = tunable.check(value) if tunable.check else None
    if complaint:
        raise Illegal(f"setting {name} from {origin}: {value!r} {complaint} — "
                      f"{name}: {tunable.meaning}")
    return value


def _typed(name, value, default, origin):
    if isinstance(default, bool):
        return _yes_no(name, value, origin)
    wrong = Illegal(f"setting {name} from {origin}: {value!r} is not a "
                    f"{KINDS[type(default)]}")
    if isinstance(default, tuple):
        return _paths(value, wrong)
    if isinstance(value, str) and not isinstance(default, str):
        try:
            return type(default)(value.strip())
        except ValueError:
            raise wrong from None
    if isinstance(value, bool) or \
            not isinstance(value, (type(default), int if isinstance(default, float) else ())):
        raise wrong
    return type(default)(value)


def _yes_no(name, value, origin):
    """A yes/no setting's value: YAML's true/false (yes/no, on/off unquoted),
    its numbers 1 and 0, or one of those words as text (environment, --var,
    quoted YAML); anything else (2, 1.5, y, maybe) is refused: it is not
    plain which was meant."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return value == 1
    if isinstance(value, str) and value.strip().lower() in YES_WORDS + NO_WORDS:
        return value.strip().lower() in YES_WORDS
    raise Illegal(f"setting {name} from {origin}: {value!r} is not a yes/no: write true or "
                  "false (or yes/no, on/off, 1/0)")


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
        data = load_yaml(Path(path).read_bytes()) or {}
    except FileNotFoundError:
        raise Illegal(f"config file {path} does not exist") from None
    except OSError as error:
        raise Illegal(f"config file {path} cannot be read: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise Illegal(f"config file {path} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise Illegal(f"config file {path}: expected a mapping of settings")
    return data

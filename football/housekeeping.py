"""What a controller keeps, and for how long: a controller runs for years,
and what every run leaves must not grow without end.

- the screener's finished jobs are archived `jobs_archive_days` after they
  ended (the bash screener's `purge` from cron: 30 days), so that `list`
  shows what is recent and their resources may get new jobs under the same
  id; not the jobs that wait for an operator (a critical one, one that left
  its operation unfinished);
- after `history_days`: archived jobs are forgotten (their events and
  DBOS's records of their workflows too), and the run logs, the saved
  plans that expired and the finished journals (`.done`) go.

An hourly `balance --auto` alone saves a plan and writes a run log every
hour (8,760 of each a year); a monitoring check of `football status` every
minute writes 525,600 run logs a year; every job keeps its events.

Kept: what a run may still need — a plan not expired, a journal not
finished and the finished journals of its resource (a combined run reads
its stages'), the lock files of the runs (`journal/<res>.run`: another process
may hold one), the screener worker's log. The moves history the cooldown
reads (`plans/moved.jsonl`, a line per move) and `downtime.log` (a line per
downtime) lose their lines older than `history_days` (the cooldown is
hours); lines are appended and the files rewritten under a lock of the
file (`append_line`), so that no line goes astray.

`housekeep` does it all; a screener worker calls it when it starts and every
`HOUSEKEEPING_EVERY` seconds (football/screener.py). A controller that runs
no worker (operators' machines) keeps its state dir's house from its
commands, at most once a day (`now_and_then`). A day is 86,400 s of the
controller's clock; a file's age is its modification time."""

import fcntl
import json
import os
import re
import time
from dataclasses import dataclass, fields
from pathlib import Path

from football.journal import named_by, replace_durably

DAY = 86400.0
STAMP = "housekept"             # in the state dir: when a command last kept house
RUN_LOG = re.compile(r"\d{8}-\d{6}-.+\.log")       # football/cli.py: <stamp>-<operation>-<res>.log


@dataclass
class Kept:
    """What one housekeeping pass removed, by kind."""
    archived_jobs: int = 0
    forgotten_jobs: int = 0
    run_logs: int = 0
    plans: int = 0
    journals: int = 0
    history_lines: int = 0

    def said(self, config):
        """One line of what went, or '' when nothing did."""
        from football.report import counted

        parts = []
        if self.archived_jobs:
            parts.append(f"archived {counted(self.archived_jobs, 'job')} that ended more than "
                         f"{config.jobs_archive_days:g} days ago (jobs_archive_days)")
        old = [counted(count, noun) for noun, count in
               (("archived job", self.forgotten_jobs), ("run log", self.run_logs),
                ("expired plan", self.plans), ("finished journal", self.journals),
                ("history line", self.history_lines)) if count]
        if old:
            parts.append(f"removed {', '.join(old)} older than {config.history_days:g} days "
                         "(history_days)")
        return "; ".join(parts)

    def __bool__(self):
        return any(getattr(self, field.name) for field in fields(self))


def housekeep(config, store=None, now=None):
    """One pass over the state dir and, with `store` (a JobStore), the
    jobs' database; what went (`Kept`). A file another process removed
    meanwhile is not an error; any other error propagates."""
    now = time.time() if now is None else now
    kept = Kept()
    if store is not None and config.jobs_archive_days > 0:
        kept.archived_jobs = len(store.archive(now - config.jobs_archive_days * DAY,
                                               unattended=True))
    if config.history_days <= 0:
        return kept
    before = now - config.history_days * DAY
    if store is not None:
        kept.forgotten_jobs = store.forget(before)
        kept.plans += store.forget_plans(before)
    state_dir = Path(config.state_dir)
    kept.run_logs = _remove_old(state_dir / "log", before, lambda path: RUN_LOG.fullmatch(path.name))
    read_on = _resources_unfinished(state_dir / "journal")
    kept.journals = _remove_old(state_dir / "journal", before, lambda path: path.suffix == ".done"
                                and named_by(path.with_suffix(".json"))[1] not in read_on)
    kept.plans += _remove_old(state_dir / "plans", before,
                              lambda path: path.suffix == ".json" and _expired(path, before))
    for history in (state_dir / "plans" / "moved.jsonl", state_dir / "downtime.log"):
        kept.history_lines += trim_lines(history, before)
    return kept


def append_line(path, line):
    """Append `line` (a JSON record) to `path` under the file's lock, on
    the file the path names then: `trim_lines` replaces it by a new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        with open(path, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            if not _still_named(handle, path):
                continue            # trimmed meanwhile: the line goes into the new file
            size = os.fstat(handle.fileno()).st_size
            if size and os.pread(handle.fileno(), 1, size - 1) != b"\n":
                # a crash tore the last line: readers skip it, and this
                # line must not be glued to it and skipped too
                handle.write("\n")
            handle.write(line.rstrip("\n") + "\n")
            return


def trim_lines(path, before):
    """Drop the lines of `path` (JSON records with a `time`) older than
    `before`, rewriting it under its lock (`replace_durably`: a power loss
    leaves the old lines or the kept ones); a line that is no record stays.
    How many went."""
    try:
        handle = open(path, "r+")
    except FileNotFoundError:
        return 0
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        if not _still_named(handle, path):
            return 0                # another pass trimmed it meanwhile
        lines = handle.read().splitlines(keepends=True)
        kept = [line for line in lines if not _older(line, before)]
        if len(kept) == len(lines):
            return 0
        # appenders waiting on the lock reopen it
        replace_durably(path, "".join(kept), Path(f"{path}.trim"))
    return len(lines) - len(kept)


def _still_named(handle, path):
    """Whether `path` still names the file `handle` has open (a trim
    replaces it by a new one)."""
    try:
        return os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _older(line, before):
    try:
        return float(json.loads(line)["time"]) < before
    except (ValueError, KeyError, TypeError):
        return False


def now_and_then(config, warn):
    """The state dir's housekeeping (run logs, plans, journals; the jobs'
    database is a worker's) when it was not done for a day: a command calls
    it, so that a controller without a worker keeps house too. Its failure
    is said (`warn`) and tried again a day later; it never fails the command."""
    if config.history_days <= 0:
        return
    stamp = Path(config.state_dir) / STAMP
    try:
        # a stamp dated in the future (a clock that was briefly ahead) is
        # not fresh: housekeeping would stay off until the clock caught up
        if 0 <= time.time() - stamp.stat().st_mtime < DAY:
            return
    except FileNotFoundError:
        pass
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.touch()                   # first: commands at once do it once
        housekeep(config)
    except OSError as error:
        warn(f"housekeeping of {config.state_dir} failed ({error}); tried again in a day")


def _expired(path, before):
    """Whether the saved plan at `path` expired before `before` (one that
    cannot be read cannot be executed either)."""
    try:
        return float(json.loads(path.read_text())["expires"]) < before
    except FileNotFoundError:
        return False
    except (OSError, ValueError, KeyError, TypeError):
        return True


def _resources_unfinished(directory):
    """The resources with a journal in `directory` that is not finished
    (`*.json`, also one that cannot be read): their finished journals stay.
    A combined run reads its stages' (`shrink-<res>.done`) to tell a stage
    that completed just before a crash; without it the stage runs again
    (a second shrink)."""
    try:
        return {named_by(path)[1] for path in directory.glob("*.json")} - {"?"}
    except OSError:
        return set()


def _remove_old(directory, before, wanted):
    """Remove the files of `directory` last modified before `before` that
    `wanted` accepts; how many."""
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return 0
    for entry in entries:
        path = Path(entry.path)
        try:
            if not entry.is_file(follow_symlinks=False) or entry.stat().st_mtime >= before \
                    or not wanted(path):
                continue
            path.unlink()
        except FileNotFoundError:
            continue
        removed += 1
    return removed

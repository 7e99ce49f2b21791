"""What an operation tells its operator: a phase trail, progress bars with
bytes, rate and ETA while syncing, one JSON event per line with `--json`, a
run log per operation, and the final summary."""

import json
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.progress import (BarColumn, DownloadColumn, Progress, ProgressColumn, TextColumn,
                           TimeRemainingColumn)
from rich.text import Text


def to_devnull(descriptors):
    """What is written to the file `descriptors` is dropped from now on
    (their reader is gone, or their terminal hung up)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for fd in descriptors:
        try:
            os.dup2(devnull, fd)
        except OSError:
            pass
    os.close(devnull)


class Reporter:
    """`on_warning(text)`, when given, is told every warning (the
    `football_warning` hook); its failure is logged, never raised."""

    def __init__(self, as_json=False, verbose=False, log_path=None, stream=None,
                 on_warning=None):
        self.as_json, self.verbose = as_json, verbose
        self.on_warning = on_warning
        self.stream = stream or sys.stdout
        # Lines are not wrapped: a terminal wraps them itself, and a log or a
        # pipe gets whole lines to search in.
        self.console = Console(file=sys.stderr, soft_wrap=True)
        self.log_path = Path(log_path) if log_path else None
        self._log = None
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "a", buffering=1)
        self.started = time.monotonic()
        # events come from the run's threads too (parallel steps, its run
        # lock's renewal): one line at a time
        self._writing = threading.Lock()

    def event(self, kind, **fields):
        record = {"event": kind, "time": round(time.time(), 3), **fields}
        # in the order written, not sorted: a summary's phases are in the
        # order they ran (`screener show` listed them alphabetically)
        line = json.dumps(record) + "\n"
        with self._writing:
            if self._log:
                try:
                    self._log.write(line)
                except OSError as error:
                    self._log_failed(error)
            if self.as_json:
                try:
                    self.stream.write(line)
                    self.stream.flush()
                except BrokenPipeError:
                    self._reader_gone()
        return record

    def _log_failed(self, error):
        """The run log cannot be written (its disk is full): said once, and
        the run goes on without it (its journal, which it cannot go on
        without, fails the run where it cannot be written)."""
        log, self._log = self._log, None
        try:
            log.close()
        except OSError:
            pass
        self.console.print(f"football: cannot write the run log {self.log_path}: "
                           f"{error.strerror or error}; the run goes on without it",
                           highlight=False, markup=False)

    def _reader_gone(self):
        """Whoever read the events is gone (a screener worker killed with
        -9): the run goes on to its end — a cleanup, a downtime window's
        compensation — and its run log keeps every event; what it prints
        from now on, on stdout and stderr (the same reader), is dropped."""
        descriptors = set()
        for stream in {self.stream, sys.stdout, sys.stderr}:
            try:
                descriptors.add(stream.fileno())
            except (OSError, ValueError, AttributeError):
                pass        # not a file (tests capture output in memory)
        to_devnull(descriptors)

    def say(self, text, **fields):
        """A line of the phase trail."""
        self.event("message", text=text, **fields)
        if not self.as_json:
            self.console.print(text, highlight=False, markup=False)

    def detail(self, text):
        self.event("detail", text=text)
        if self.verbose and not self.as_json:
            self.console.print(f"  {text}", style="dim", highlight=False, markup=False)

    def warning(self, text):
        self.event("warning", text=text)
        if not self.as_json:
            self.console.print(f"warning: {text}", style="yellow", highlight=False, markup=False)
        if self.on_warning:
            try:
                self.on_warning(text)
            except Exception as error:      # a notifier never fails the operation
                self.event("warning-hook-failed", text=text, error=repr(error))

    def progress(self, description, total):
        """A progress bar (bytes, rate, ETA); `update(done)` moves it."""
        return SyncProgress(self, description, total)

    def close(self):
        if self._log:
            self._log.close()
            self._log = None


class RateColumn(ProgressColumn):
    """The bar's rate in MiB/s, as the summary says it (rich's own says
    MB/s, and "?" of a sync that ended before its second poll: then the
    average over the bar's time)."""

    def render(self, task):
        speed = task.finished_speed or task.speed
        if speed is None and task.elapsed:
            speed = task.completed / task.elapsed
        return Text("?" if speed is None else f"{speed / (1 << 20):,.0f} MiB/s",
                    style="progress.data.speed")


class SyncProgress:
    def __init__(self, reporter, description, total):
        self.reporter, self.description, self.total = reporter, description, total
        self.bar = None
        self.last_event = 0.0
        if not reporter.as_json:
            self.bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                DownloadColumn(binary_units=True), RateColumn(),
                                TimeRemainingColumn(),
                                console=reporter.console, transient=False)
            self.task = self.bar.add_task(description, total=total)

    def __enter__(self):
        if self.bar:
            self.bar.start()
        return self

    def update(self, done):
        if self.bar:
            self.bar.update(self.task, completed=done)
        now = time.monotonic()
        if now - self.last_event >= 1.0 or done >= self.total:
            self.last_event = now
            self.reporter.event("progress", what=self.description, done=done, total=self.total)

    def __exit__(self, *exc):
        if self.bar:
            self.bar.stop()


def counted(count, noun):
    """`count` and `noun`, plural but for one: "1 move", "2 moves"."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def agreeing(names, singular, plural):
    """`names` joined, with the verb that agrees: "b2 holds", "b1, b2 hold"."""
    return f"{', '.join(names)} {singular if len(names) == 1 else plural}"


def summary_line(summary):
    """The run's last line: what its syncs made equal, its downtime (an
    operation on a resource), its moves and their jobs' states (balance,
    evacuate, restore), its phases; only what the run did ("synced 0 MiB at
    0 MiB/s; downtime -; phases: -" was said of a run that had nothing to do)."""
    subject = summary.get("resource") or ", ".join(summary.get("hosts") or []) or "the fleet"
    if summary.get("phases") == {}:
        return f"summary: {subject}: nothing done"
    phases = ", ".join(f"{name} {value:.1f} s" for name, value in
                       (summary.get("phases") or {}).items())
    parts = [sync_phrase(summary)] if summary.get("synced_bytes") or \
        summary.get("copied_bytes") else []
    if summary.get("downtime_seconds") is not None:
        hands = ", ".join(f"{name} {summary[key]:.2f} s" for name, key in
                          (("pre-hand", "pre_hand_downtime_seconds"),
                           ("post-hand", "post_hand_downtime_seconds"))
                          if summary.get(key) is not None)
        parts.append((f"window {summary['downtime_seconds']:.2f} s (no downtime: it was "
                      "stopped and stays so)" if summary.get("kept_stopped") else
                      f"downtime {summary['downtime_seconds']:.2f} s")
                     + (f" (and its handovers' {hands})" if hands else ""))
    if "moves" in summary:
        states = Counter((summary.get("jobs") or {}).values())
        jobs = ", ".join(f"{number} {state}" for state, number in sorted(states.items()))
        parts.append(counted(len(summary["moves"]), "move") + (f" (jobs: {jobs})" if jobs else ""))
    if phases:
        parts.append(f"phases: {phases}")
    return f"summary: {subject}: {'; '.join(parts) or 'nothing done'}"


def sync_phrase(summary):
    """How a summary's sync reads: what was made equal and at what rate,
    and how much of it travelled ("synced 12 MiB at 2 MiB/s" said of 2 GiB
    of replicas made equal in 5 s, most of them zeros, read as a slow sync)."""
    synced, seconds = summary.get("synced_bytes", 0), summary.get("sync_seconds", 0.0)
    copied = summary.get("copied_bytes") or 0
    if not copied:
        rate = synced / seconds / (1 << 20) if seconds else 0.0
        return f"synced {synced >> 20} MiB at {rate:.0f} MiB/s"
    rate = copied / seconds / (1 << 20) if seconds else 0.0
    what = "grown tails" if "grown_bytes" in summary else "replicas"     # expand: the tails
    # ended before this run looked (a phase command after another): a bound
    took = f"in at most {seconds:.1f} s (at least {rate:.0f} MiB/s; they had ended before " \
        "this run looked)" if summary.get("sync_seconds_at_most") else \
        f"in {seconds:.1f} s ({rate:.0f} MiB/s)"
    return (f"{what} of {copied >> 20} MiB synced {took}, "
            f"{synced >> 20} MiB of it travelled (zeros and equal chunks do not)")

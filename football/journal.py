"""The durable record of one operation: the steps it completed and what it
decided (hosts, sizes), so that re-running the same command resumes.

One JSON file per operation and resource under `<state_dir>/journal/`,
replaced atomically (temp file, fsync, rename, directory fsync) after every
step. The journal only saves time: every step also checks the real state
before acting, so a lost journal costs a few extra checks, never data."""

import fcntl
import json
import os
import socket
import threading
import time
from pathlib import Path

from football.errors import FootballError, Illegal
from football.joblink import JOB_ENV
from mars.errors import MarsError
from mars.names import check_resource


# the operations that keep a journal, `<operation>-<resource>.json`: the
# resource of a damaged one is told by its file name (resource names may
# hold '-', operation names '-' and '+')
OPERATIONS = ("migrate", "shrink", "expand", "handover", "migrate+shrink",
              "migrate+shrink+back", "repair-mars")

# The times in `decided` of when the downtime window began and ended: wall
# clock, read back by a re-run — the downtime of a window a crash left
# open counts from `window_started`, the cleanup_delay from `window_ended` —
# which may be another controller's (a screener job taken over), whose
# clock may disagree. Each is stamped in the journal's `clocks` with the
# clock that took it (controller, boot, its monotonic reading) and the
# write that recorded it: a run on the same boot reads it on the monotonic
# clock (a step of the wall clock meanwhile changes nothing), whether the
# window is open is told by the order of the writes (not by comparing two
# controllers' times), and a time of another clock that lies ahead of this
# controller's is taken as now (said in `clock_disagreements`).
WINDOW_TIMES = ("window_started", "window_ended")
CLOCK_SLACK = 1.0       # seconds two readings of the same instant may differ by


def this_clock():
    """(controller, boot id): whose monotonic clock `time.monotonic()`
    reads; boot id '' where it cannot be read (no reading is then taken
    for one of this clock's)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = ""
    return socket.gethostname(), boot


class JournalUnwritable(FootballError):
    """The journal cannot be written (the controller's disk is full, read
    only): the run stops, since a re-run could not tell what it did."""


class Journal:
    """`dry`: a dry run's — it reads the file but writes nothing.

    `shared`: the screener job the run is (a `joblink.JobLink`), or None.
    A job's journal is kept with the job as well, at every write, so that a
    worker of another controller that takes the job over (one shared queue)
    goes on from it as this controller would: a run finds the job's copy
    when it has none of its own, or an older one (`writes`: how often the
    journal was written), and takes it as its own. Keeping the copy is
    best effort: a jobs' database that does not answer is told to
    `on_unshared` (once) and the run goes on — a run that finds no journal
    only does more checks."""

    dry = False
    on_write = None     # called before each write (the run acts from the first on)
    on_unshared = None  # called with the error when the job's copy could not be kept

    def __init__(self, state_dir, operation, res, shared=None):
        self.path = Path(state_dir) / "journal" / f"{operation}-{res}.json"
        self.name, self.shared, self._unshared = f"{operation}-{res}", shared, False
        self.data = {"operation": operation, "resource": res, "steps": [], "decided": {},
                     "started": time.time()}
        own = self._read() if self.path.exists() else None
        the_jobs = self._the_jobs()
        if the_jobs is not None and (own is None or
                                     the_jobs.get("writes", 0) > own.get("writes", 0)):
            # written by the job's run on another controller after this one's
            self.data, self.resumed = the_jobs, True
            self._keep_here()
        elif own is not None:
            self.data, self.resumed = own, True
        else:
            self.resumed = False
        self.taken_from_the_job = self.resumed and self.data is the_jobs
        self.clock_disagreements = []       # what a resumed journal's times said of clocks
        if self.resumed:
            self._window_times_on_this_clock()

    def _the_jobs(self):
        if self.shared is None:
            return None
        try:
            data = self.shared.journal(self.name)
        except Exception:       # noqa: BLE001 (the database down: the run goes on from its own)
            return None
        valid = isinstance(data, dict) and isinstance(data.get("steps"), list) and \
            isinstance(data.get("decided"), dict)
        return data if valid else None

    def _keep_here(self):
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            replace_durably(self.path, json.dumps(self.data, indent=2, sort_keys=True),
                            self.path.with_suffix(".tmp"))
        except OSError as error:
            raise self._unwritable(error) from None

    def _read(self):
        # Damage is not repaired silently: the journal may hold what no host
        # shows any more (the original hosts of migrate+shrink+back).
        try:
            data = journal_of(self.path.read_text())
        except (OSError, ValueError) as error:
            raise Illegal(damaged_journal(self.path, error)) from None
        return data

    @property
    def decided(self):
        return self.data["decided"]

    def done(self, step):
        return step in self.data["steps"]

    def open_window_started(self):
        """When the downtime window was entered (wall clock) of a run that
        ended inside it (`window_left_open`); None when none was left open
        (or the journal is older than `window_started`)."""
        if window_left_open(self.data["steps"], self.decided, self.data.get("clocks")):
            return self.decided.get("window_started")
        return None

    def record(self, step, **decided):
        if step not in self.data["steps"]:
            self.data["steps"].append(step)
        self._stamp_window_times(decided)
        self.data["decided"].update(decided)
        self._write()

    def decide(self, **decided):
        self._stamp_window_times(decided)
        self.data["decided"].update(decided)
        self._write()

    def _stamp_window_times(self, decided):
        """Stamp the window times among `decided` (WINDOW_TIMES) with the
        write about to record them and the clock that took them: this
        controller's, unless it is the time already recorded (a re-run
        going on with the window an earlier run left open), whose clock
        stays the one that took it."""
        clocks = self.data.setdefault("clocks", {})
        host, boot = this_clock()
        for key in WINDOW_TIMES:
            value = decided.get(key)
            if not isinstance(value, (int, float)):
                continue
            earlier = _stamp_of(clocks, self.decided, key)
            if earlier is not None and self.decided.get(key) == value:
                stamp = dict(earlier)
            else:
                stamp = {"host": host, "boot": boot, "wall": value,
                         "monotonic": time.monotonic() - (time.time() - value)}
            stamp["write"] = self.data.get("writes", 0) + 1
            clocks[key] = stamp

    def _window_times_on_this_clock(self):
        """The window times of a resumed journal as this controller's wall
        clock has them now: one this boot took, by the monotonic clock (the
        wall clock may have been stepped since); one of another clock that
        lies ahead of now, as now — else a window's length came out
        negative or cut short and a cleanup_delay waited the clocks'
        difference longer — said in `clock_disagreements`."""
        clocks = self.data.get("clocks")
        clocks = clocks if isinstance(clocks, dict) else {}
        here, now, monotonic_now = this_clock(), time.time(), time.monotonic()
        for key in WINDOW_TIMES:
            value = self.decided.get(key)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            stamp = _stamp_of(clocks, self.decided, key) or {}
            reading = stamp.get("monotonic")
            if here[1] and (stamp.get("host"), stamp.get("boot")) == here and \
                    isinstance(reading, (int, float)) and reading <= monotonic_now:
                on_this_clock = now - (monotonic_now - reading)
                if abs(on_this_clock - value) > CLOCK_SLACK:      # the wall clock stepped since
                    self.decided[key] = stamp["wall"] = on_this_clock
            elif value > now + CLOCK_SLACK:
                self.clock_disagreements.append(
                    f"the journal {self.path} says the downtime window "
                    f"{key.removeprefix('window_')} at {_stamp(value)}, {value - now:.0f} s "
                    f"ahead of this controller's clock ({_stamp(now)}): it was written on "
                    f"{stamp.get('host') or (self.data.get('run') or {}).get('host', '?')}, "
                    "whose clock disagrees; taken as now (check both controllers' time "
                    "synchronisation, e.g. chronyc tracking)")
                self.decided[key] = now
                clocks[key] = {**stamp, "host": here[0], "boot": here[1], "wall": now,
                               "monotonic": monotonic_now}

    def finish(self):
        """The operation completed: its journal goes (kept as `.done` for audit)."""
        if self.path.exists():
            self.data["finished"] = time.time()
            self._write(share=False)
            try:
                os.replace(self.path, self.path.with_suffix(".done"))
            except OSError as error:
                raise self._unwritable(error) from None
            self._unshare()

    def forget(self):
        """The run changed nothing: its journal goes, here and with its job."""
        self.path.unlink(missing_ok=True)
        self._unshare()

    def _unshare(self):
        if self.shared is None or self.dry:
            return
        try:
            self.shared.drop_journal(self.name)
        except Exception as error:      # noqa: BLE001 (said; the run's result stands)
            self._tell_unshared(error)

    def _tell_unshared(self, error):
        if not self._unshared and self.on_unshared is not None:
            self._unshared = True
            self.on_unshared(error)

    def _write(self, share=True):
        if self.dry:
            return
        if self.on_write is not None:
            self.on_write()
        self.data["writes"] = self.data.get("writes", 0) + 1
        # the process that writes it: `football status` tells a run that is
        # still going from one that ended (its intents outlive it)
        self.data["run"] = {"pid": os.getpid(), "host": socket.gethostname(),
                            "start": process_start(os.getpid())}
        if os.environ.get(JOB_ENV, "").isdigit():
            # a screener job's run: a later run elsewhere may complete it
            self.data["run"]["job"] = int(os.environ[JOB_ENV])
        self._keep_here()
        if share and self.shared is not None:
            try:
                self.shared.share_journal(self.name, self.data)
            except Exception as error:      # noqa: BLE001 (said once; the run goes on)
                self._tell_unshared(error)

    def _unwritable(self, error):
        steps = ", ".join(self.data["steps"]) or "none"
        return JournalUnwritable(
            f"cannot write the journal {self.path}: {error.strerror or error}; the "
            f"{self.data['operation']} of {self.data['resource']} stopped (steps done: "
            f"{steps}). Free space in {self.path.parent} (or make it writable), then run the "
            "same command again: it resumes, each step checking the real state first")


def journal_of(text):
    """The journal `text` holds (a dict), else ValueError saying why not:
    what a run resumes from and what `unfinished_operations` lists alike."""
    data = json.loads(text)
    if not (isinstance(data, dict) and isinstance(data.get("steps"), list)
            and isinstance(data.get("decided"), dict)):
        raise ValueError("not a journal (steps and decided are missing)")
    for key in ("operation", "resource"):
        if not isinstance(data.get(key, ""), str):
            raise ValueError(f"not a journal (its {key} is not a name: {data[key]!r})")
    return data


def damaged_journal(path, error, then="re-run"):
    """What to do about the journal at `path` that cannot be read (`error`):
    damage is not repaired silently, since the journal may hold what no host
    shows any more (the original hosts of migrate+shrink+back); `then`: the
    command to run once it is set aside."""
    return (f"journal {path} is damaged ({error}); nothing was changed. Read what it still "
            f"says, then move it aside (mv {path} {path}.damaged) and {then}: every step "
            "checks the real state, so starting afresh only costs time")


def named_by(path):
    """(operation, resource) that the name of the journal at `path` says
    (`<operation>-<resource>.json`), or ("?", "?") when it names none of
    OPERATIONS: how a journal that cannot be read is told."""
    stem = Path(path).name.removesuffix(".json")
    for operation in sorted(OPERATIONS, key=len, reverse=True):
        res = stem.removeprefix(f"{operation}-")
        if res != stem and res:
            try:
                return operation, check_resource(res)
            except MarsError:
                break
    return "?", "?"


def window_left_open(steps, decided, clocks=None):
    """Whether a journal's run stopped inside its downtime window: it
    entered the window (`critical-section`) and did not finish the phase,
    and nothing ended the window since (compensation, which starts the
    container again, writes `window_ended` after the last `window_started`;
    journals older than `window_started` count by `window_ended` alone).
    "After" is told by the writes that recorded them (the journal's
    `clocks`), not by comparing the two times: they may be two
    controllers' clocks, and one an hour ahead kept a window ended by the
    other open for ever. Where one of them has its write and the other
    none, the other is older (a journal an earlier Football wrote, resumed:
    the window entered again since, or ended since). Where neither has
    (all of it that earlier Football's), the times are compared, as that
    Football did: right where one controller took both (a window entered
    again after its compensation and left by a crash reads as open), wrong
    only where two controllers' clocks disagreed."""
    if "critical-section" not in steps or "finish" in steps:
        return False
    ended, started = decided.get("window_ended"), decided.get("window_started")
    if ended is None:
        return True
    if started is None:
        return False
    started_write, ended_write = [_write_of(clocks, decided, key)
                                  for key in ("window_started", "window_ended")]
    if started_write is None and ended_write is None:
        return ended < started
    if started_write is None or ended_write is None:
        return ended_write is None
    return ended_write < started_write


def _write_of(clocks, decided, key):
    """The number of the write that recorded the window time `key`, or None
    (a journal's time from before the writes were stamped)."""
    write = (_stamp_of(clocks, decided, key) or {}).get("write")
    return write if isinstance(write, int) and not isinstance(write, bool) else None


def _stamp_of(clocks, decided, key):
    """The stamp of the window time `key` in a journal's `clocks`, if it is
    the stamp of the time `decided` holds (a journal an older Football
    wrote again, or one edited by hand, holds another: its stamp is
    stale), else None."""
    stamp = clocks.get(key) if isinstance(clocks, dict) else None
    if isinstance(stamp, dict) and stamp.get("wall") == decided.get(key):
        return stamp
    return None


def _stamp(seconds):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def unfinished_operations(state_dir, completed_jobs=None):
    """The journals of operations this controller started and not finished
    (`<state_dir>/journal/*.json`; finished ones end in `.done`).

    `completed_jobs(numbers)` ({number: how} of the screener jobs among
    `numbers` whose operation a later run completed): a journal of such a
    job whose run here is over is finished first, saying how — the job
    was taken over by a worker of another controller (one shared queue)
    or restarted there, and done; this controller's journal would
    otherwise call the operation unfinished for ever, refuse other
    operations on the resource and keep its run lock."""
    paths = sorted((Path(state_dir) / "journal").glob("*.json"))
    if completed_jobs is not None:
        paths = _finish_completed_elsewhere(paths, completed_jobs)
    operations = []
    for path in paths:
        operation, res = named_by(path)
        try:
            data = journal_of(path.read_text())
            decided = data["decided"]
            operations.append({
                "operation": data.get("operation", operation),
                "resource": data.get("resource", res),
                "steps": list(data["steps"]), "decided": dict(decided),
                "targets": list(decided.get("targets") or []),
                "origin": list(decided.get("origin") or []),
                "started": data.get("started"), "journal": str(path),
                "in_downtime": window_left_open(data["steps"], decided, data.get("clocks")),
                "alive": run_alive(data.get("run"))})
        except (OSError, ValueError, AttributeError, TypeError) as error:
            # the resource its name says: it refuses what an unfinished
            # operation of that resource would (damage is not repaired silently)
            operations.append({"operation": operation, "resource": res, "steps": [],
                               "decided": {}, "targets": [], "origin": [], "started": None,
                               "journal": str(path), "damaged": str(error)})
    return operations


def unfinished_resources(state_dir, completed_jobs=None):
    """{resource: why} of the resources with an unfinished operation (which
    refuses an operation of another kind on them: a planner does not move
    them), or a damaged journal (which refuses every operation on them);
    a damaged journal whose name tells no resource is only listed by
    `unfinished_operations`."""
    busy = {}
    for op in unfinished_operations(state_dir, completed_jobs):
        if "damaged" not in op:
            busy.setdefault(op["resource"], f"an unfinished {op['operation']} (football "
                            f"status {op['resource']})")
        elif op["resource"] != "?":
            busy[op["resource"]] = (f"its {op['operation']}'s journal {op['journal']} is "
                                    f"damaged (mv {op['journal']} {op['journal']}.damaged "
                                    "once read)")
    return busy


def _finish_completed_elsewhere(paths, completed_jobs):
    """`paths` without the journals that a later run of their screener job
    completed (`completed_jobs`), each kept as `.done` with how.

    The jobs' database may take a while to answer, and a run here may begin
    meanwhile (a re-run of the resource's operation): a journal is finished
    only under its resource's turn (one_run_at_a_time; skipped while another
    run holds it, this thread's own turn excepted) and only as it was read
    before the question (its `writes` and `run`, the run still over)."""
    of_jobs = {}
    for path in paths:
        try:
            data = journal_of(path.read_text())
        except (OSError, ValueError):
            continue            # damaged: listed as such
        run = data.get("run")
        if isinstance(run, dict) and isinstance(run.get("job"), int) and \
                run_alive(run) is False and _names_a_resource(data.get("resource")):
            of_jobs[path] = data
    if not of_jobs:
        return paths
    completed = completed_jobs(sorted({data["run"]["job"] for data in of_jobs.values()}))
    left = []
    for path in paths:
        read = of_jobs.get(path)
        how = completed.get(read["run"]["job"]) if read is not None else None
        if how is None or not _finish_as_completed(path, read, how):
            left.append(path)   # still listed: the operator sees it
    return left


def _finish_as_completed(path, read, how):
    """Keep the journal at `path` as `.done`, completed elsewhere (`how`),
    if it is still as `read` and its run over, under its resource's turn;
    whether it was."""
    from football.locks import _TURNS

    turn = path.parent / f"{read['resource']}.run"
    mine = (turn, threading.get_ident()) in _TURNS     # this run's turn: a run here waits
    try:
        # not created: a run here creates it before it writes a journal
        # (one_run_at_a_time), so none wrote this one; and a turn file
        # made here could not be removed safely
        handle = open(turn, "r+")
    except FileNotFoundError:
        handle = None
    except OSError:
        return False
    try:
        if handle is not None and not mine:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        data = journal_of(path.read_text())
        if (data.get("writes"), data.get("run")) != (read.get("writes"), read["run"]) \
                or run_alive(data["run"]) is not False:
            return False        # a run here went on from it, or wrote its own
        data["completed_elsewhere"] = how
        # not `<name>.tmp`: that is the journal's own run's
        replace_durably(path, json.dumps(data, indent=2, sort_keys=True),
                        path.with_name(f"{path.name}.{os.getpid()}.completed.tmp"))
        os.replace(path, path.with_suffix(".done"))
    except (OSError, ValueError):
        return False            # BlockingIOError: another run holds the turn
    finally:
        if handle is not None:
            handle.close()      # releases the flock
    return True


def _names_a_resource(name):
    try:
        return check_resource(name) == name
    except MarsError:
        return False


def run_alive(run):
    """Whether the process that last wrote a journal (`run`: pid, host and
    start) still runs: True or False on this host, None where the journal
    does not say (older) or another host ran it. A football process by a
    word of its command line, and the same process by its start time (its
    pid may have gone to another football process since: a later run, a
    worker)."""
    if not isinstance(run, dict) or run.get("host") != socket.gethostname():
        return None
    try:
        pid = int(run["pid"])
        words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, KeyError, TypeError, ValueError):
        return False
    # its program (a script, or `python -m football`), not any word naming a
    # football file (`less football.log`, a checkout's path)
    if not any(os.path.basename(word) == b"football" for word in words):
        return False
    return run.get("start") is None or process_start(pid) == run["start"]


def process_start(pid):
    """When process `pid` started (clock ticks since boot, /proc/<pid>/stat's
    22nd field), or None: with the pid, it names one process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat[stat.rindex(")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def replace_durably(path, text, tmp, mode=None):
    """Replace `path` with `text` atomically and durably: written to `tmp`
    and fsync'ed, renamed over `path`, the directory fsync'ed. A crash (or a
    handover that takes the volume elsewhere) leaves the old file or the new
    one, never an empty one."""
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        if mode is not None:
            os.fchmod(handle.fileno(), mode)
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    directory = os.open(Path(path).parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)

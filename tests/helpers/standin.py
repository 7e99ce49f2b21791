"""A stand-in for `football` as the job command of `football worker`
processes (`job_command`), for tests of workers sharing a queue and taking
over each other's jobs: no operation, only what a test checks.

A job `handover <res> <host>` counts its runs in `<state_dir>/<res>.runs`
and marks itself running in `<res>.running` (created exclusively: a second
run at the same time writes `<res>.overlap`); it prints a phase event,
then either ends after a moment (exit 0) or, for a resource named `hold…`
in its first run, waits for Ctrl-C as a long sync would (exit 190)."""

import sys
import textwrap

STAND_IN = textwrap.dedent("""\
    import json, os, signal, sys, time
    args = sys.argv[1:]
    state_dir = next(a.split("=", 1)[1] for a in args if a.startswith("state_dir="))
    res = args[-2]
    base = os.path.join(state_dir, res)
    runs = int(open(base + ".runs").read()) + 1 if os.path.exists(base + ".runs") else 1
    open(base + ".runs.new", "w").write(str(runs))
    os.replace(base + ".runs.new", base + ".runs")      # read while it runs: whole or not
    try:
        os.close(os.open(base + ".running", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        open(base + ".overlap", "a").write(f"run {runs} began while another ran\\n")
    def say(**event):
        try:
            print(json.dumps(event), flush=True)
        except BrokenPipeError:         # its worker was killed: the run goes on to its end
            pass
    def end(code):
        try:
            os.unlink(base + ".running")
        except FileNotFoundError:
            pass
        sys.exit(code)
    say(event="phase", phase="prepare", run=runs)
    if res.startswith("hold") and runs == 1:
        signal.signal(signal.SIGINT, lambda signum, frame: (
            say(event="message", text="interrupted, cleaned up"), end(190)))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(0.05)
        end(1)
    time.sleep(0.5)
    say(event="summary", resource=res, downtime_seconds=0.5)
    end(0)
    """)


def stand_in_command(tmp_path):
    """The `job_command` setting that runs the stand-in (written to `tmp_path`)."""
    path = tmp_path / "football_stand_in.py"     # a football run, as the worker sees it
    path.write_text(STAND_IN)
    return f"job_command={sys.executable} {path}"


def runs(state_dir, res):
    path = state_dir / f"{res}.runs"
    return int(path.read_text()) if path.exists() else 0


def overlaps(state_dir):
    """{resource: what the stand-in said} of the jobs that ran twice at once."""
    return {path.name.removesuffix(".overlap"): path.read_text()
            for path in state_dir.glob("*.overlap")}

"""`football screener list | head`: the pipe closes under the listing;
football exits without a traceback or a complaint about the pipe."""

import subprocess
import sys

from tests.helpers.jobs import football


def test_a_listing_whose_reader_closes_the_pipe_ends_quietly(tmp_path):
    # more than a pipe's buffer (64 KiB) of JSON lines, or the listing would
    # fit in it before the reader closes: each job's command line carries the
    # --var settings of the command that queued it, a long one here
    state_dir = tmp_path / "controller"
    moves = tmp_path / "moves.csv"
    moves.write_text("resource;operation;host\n" + "".join(f"vm{number};handover;a1\n"
                                                           for number in range(60)))
    code, _, err = football("--var", f"state_dir={state_dir}", "--var", "job_command=" + "x" * 1500,
                            "screener", "run", moves)
    assert code == 0, err
    listing = subprocess.Popen([sys.executable, "-m", "football", "--json", "--var",
                                f"state_dir={state_dir}", "screener", "list"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    listing.stdout.readline()
    listing.stdout.close()          # as `head -1` does
    err = listing.stderr.read().decode()
    listing.wait(timeout=60)
    assert "Traceback" not in err and "BrokenPipe" not in err and "Errno 32" not in err, err
    assert listing.returncode in (0, 1)

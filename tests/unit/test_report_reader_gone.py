"""An operation whose reader of events is gone (its screener worker was
killed with -9: the pipe of its stdout closed) goes on to its end."""

import subprocess
import sys
import textwrap

RUN = textwrap.dedent("""\
    import sys
    from football.report import Reporter
    reporter = Reporter(as_json=True)
    reporter.event("phase", phase="prepare")
    sys.stdin.read()                    # until the test closed the pipe's other end
    for number in range(20000):         # more than the pipe holds
        reporter.event("progress", done=number)
    reporter.warning("interrupted; restarting vm1")
    open(sys.argv[1], "w").write("went on to its end")
    """)


def test_an_operation_goes_on_when_the_reader_of_its_events_is_gone(tmp_path):
    marker = tmp_path / "end"
    run = subprocess.Popen([sys.executable, "-c", RUN, str(marker)], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert '"phase"' in run.stdout.readline().decode()
    run.stdout.close()                  # the worker died
    run.stdin.close()
    assert run.wait(timeout=60) == 0, run.stderr.read().decode()
    assert marker.read_text() == "went on to its end"

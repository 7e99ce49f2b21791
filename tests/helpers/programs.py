"""The project's own programs as the tests run them: `marsadm`,
`football-host` and `football`, through one tool server per test process
(football/toolserver.py) instead of a new interpreter per command.

A lab test runs hundreds of them; started as programs each costs 0.15–0.6 s
of CPU in imports before it does anything, and each `football` run started
a tool server of its own (0.4 s): together about a third of the suite's
CPU. The server is shared, so the `football` runs it forks send their
commands to it as well. Forked from the server they are still processes of
their own (own pid, environment, working directory, pipes, exit code,
killed at the time limit), which is what the tests ask of them. Anything
else, and every command when `FOOTBALL_TOOL_SERVER=0`, runs as a program."""

import os
import subprocess
import sys
from pathlib import Path

from football.toolserver import TOOLS, ServerGone, ToolServer

BIN = Path(sys.executable).parent
SERVED = {**TOOLS, "football": ("football.cli", "main")}
# shared: the `football` runs it forks send their own tools' commands to it too
_server = ToolServer(more_tools={"football": SERVED["football"]}, share=True)


def run(argv, env, timeout, input=None):
    """`subprocess.run(argv, env=env, capture_output=True, text=True,
    timeout=timeout, input=input)` for the bundled programs given by their
    path in this installation."""
    argv = [str(arg) for arg in argv]
    if (os.environ.get("FOOTBALL_TOOL_SERVER") != "0"
            and Path(argv[0]).parent == BIN and Path(argv[0]).name in SERVED):
        try:
            code, stdout, stderr = _server.run(argv, {**env, **_server.environment()},
                                               timeout, input)
        except ServerGone:
            pass
        else:
            return subprocess.CompletedProcess(argv, code, stdout, stderr)
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout,
                          input=input, stdin=None if input is not None else subprocess.DEVNULL)

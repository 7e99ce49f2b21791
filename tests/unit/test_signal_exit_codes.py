"""Exit codes when a signal ends something: a `football` command that
SIGINT (Ctrl-C), SIGTERM or SIGHUP stops exits 190, interrupted, on every
path (FOOTBALL.md, README's exit codes); a host command killed by signal N
that `football lab exec` ran exits 128 + N, as a shell says — not N's
negative, which sys.exit turned into 256 - N (241 for SIGTERM)."""

import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from football.cli import cli
from football.errors import EXIT_INTERRUPTED, exit_status
from football.transport import Result

SLEEPING_PLUGIN = """\
import os, time
from football.hooks import hookimpl

@hookimpl
def configure(config):
    open(os.environ["H10_READY"], "w").close()
    time.sleep(120)
"""


@pytest.mark.parametrize("code, status", [(0, 0), (2, 2), (-15, 143), (-9, 137), (-2, 130),
                                          (-1, 129), (None, 137)])
def test_a_command_killed_by_signal_n_has_the_exit_status_128_plus_n(code, status):
    assert exit_status(code) == status


@pytest.mark.parametrize("code, status", [(-15, 143), (-9, 137), (3, 3)])
def test_lab_exec_of_a_killed_command_exits_128_plus_its_signal(monkeypatch, tmp_path, code,
                                                                  status):
    from football.lab import Lab

    monkeypatch.setattr(Lab, "exec", lambda self, host, argv: Result(host, tuple(argv), code,
                                                                     "out\n", ""))
    result = CliRunner().invoke(cli, ["lab", "--lab-dir", str(tmp_path), "exec", "a1", "--",
                                      "sleep", "100"])
    assert result.exit_code == status, result.output
    assert result.output == "out\n"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_command_stopped_by_ctrl_c_sigterm_or_sighup_exits_190(tmp_path, signum):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "sleeping.py").write_text(SLEEPING_PLUGIN)
    inventory = tmp_path / "fleet.yml"
    inventory.write_text("hosts: {a1: {address: 10.0.0.1}}\n")
    ready = tmp_path / "ready"
    process = subprocess.Popen(
        [sys.executable, "-m", "football", "--inventory", str(inventory),
         "--var", f"state_dir={tmp_path / 'state'}", "--var", f"plugin_dirs={plugins}",
         "status", "a1"],
        env=dict(os.environ, H10_READY=str(ready)), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
        # as a terminal's foreground job: SIGINT not ignored (a shell's
        # background job inherits it ignored)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), process.communicate(timeout=10)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == EXIT_INTERRUPTED, stderr
    assert "football: interrupted" in stderr

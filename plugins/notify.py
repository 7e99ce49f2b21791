"""Plugin `notify`: tells a command about every state a screener job enters
(the `notify` hook), e.g. a mail or chat script.

The tunable `notify_command` is the command, split like a shell's words
(`shlex`) and run without a shell; '' (the default) turns the plugin off.
It gets on stdin one JSON object: the job's row (`id`, `resource`,
`operation`, `args`, `state`, `phase`, `message`, `exit_code`...) plus
`text`, the one-line notification; and in its environment
`FOOTBALL_JOB_ID` and `FOOTBALL_JOB_STATE`, for scripts that need no more:

    notify_command: /usr/local/bin/chat-post --channel football

A command that fails (exit code not 0, cannot be started) or takes longer
than `notify_timeout` seconds (it is killed then) raises `NotifyFailed`; the
screener reports that as a warning and the job goes on as if nothing
happened. Its exit code says how it went: one that exits 0 succeeded,
also when a child it left behind (a mailer's daemon) still runs and holds
what it was given; that child is neither waited for nor killed. The
command runs in the process that changed the job's state (the worker, or
the `screener` command that queued or killed it)."""

import json
import os
import shlex
import signal
import subprocess
import tempfile

from football.errors import FootballError
from football.hooks import hookimpl

STDERR_TAIL = 300     # characters of the command's stderr a warning quotes


class NotifyFailed(FootballError):
    """The notify command failed or timed out; the job is not affected."""


class Notifier:
    """Runs `notify_command` once `configure` told it; before that (a
    `Hooks` without config) it runs nothing."""

    def __init__(self):
        self.command, self.timeout = [], None

    @hookimpl
    def configure(self, config):
        self.command = shlex.split(config.notify_command)
        self.timeout = config.notify_timeout

    @hookimpl
    def notify(self, job, state, text):
        if not self.command:
            return
        what = f"notify_command {shlex.join(self.command)} (job {job.get('id')}, {state})"
        env = {**os.environ, "FOOTBALL_JOB_ID": str(job.get("id")), "FOOTBALL_JOB_STATE": state}
        # the job on stdin and the command's stderr in files, not pipes: it
        # is done when it exits, not when every holder of a pipe closed it
        # (a mailer that leaves a daemon behind with them would be called
        # killed after notify_timeout, although it succeeded)
        with tempfile.TemporaryFile() as stdin, tempfile.TemporaryFile() as stderr:
            stdin.write(json.dumps({**job, "text": text}).encode())
            stdin.flush()
            stdin.seek(0)
            try:
                # a session of its own: on a timeout its children go too (a
                # script's `sleep` would keep it running)
                process = subprocess.Popen(self.command, stdin=stdin, stdout=subprocess.DEVNULL,
                                           stderr=stderr, env=env, start_new_session=True)
            except OSError as error:
                raise NotifyFailed(f"{what} cannot be run: {error.strerror}; check the "
                                   "setting notify_command") from None
            try:
                code = process.wait(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                raise NotifyFailed(f"{what} did not end within {self.timeout:g} s "
                                   "(notify_timeout) and was killed") from None
            if code != 0:
                stderr.seek(0)
                tail = stderr.read().decode(errors="replace").strip()[-STDERR_TAIL:]
                raise NotifyFailed(f"{what} failed with exit code {code}: "
                                   f"{tail or 'no stderr'}")


def new_plugin():
    """A notifier of its own for every plugin manager (its own settings)."""
    return Notifier()

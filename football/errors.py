"""Football's errors and the exit codes they map to (FOOTBALL.md, "Safety machinery")."""

EXIT_DONE = 0
EXIT_ILLEGAL = 191      # bad arguments or a failed precondition: nothing changed
EXIT_INTERRUPTED = 190  # Ctrl-C, cleaned up
EXIT_SERIOUS = 198      # failed, container running again after compensation
EXIT_CRITICAL = 199     # failed inside the downtime window, container not running


def exit_status(code):
    """A command's exit code as a process's exit status, the way a shell
    gives it: a command killed by signal N (-N, as Python's subprocess
    tells it) is 128 + N (143 for SIGTERM, 137 for SIGKILL); passed to
    sys.exit as it was, -15 left the process with 241. None (killed by a
    signal nobody named: an SSH session's) is 137, as for SIGKILL."""
    if code is None:
        return 137
    return 128 - code if code < 0 else code


class FootballError(Exception):
    """An error the operator reads: what went wrong and what to do next."""

    exit_code = EXIT_SERIOUS


class Illegal(FootballError):
    """Bad input or a failed precondition; nothing was changed, safe to retry."""

    exit_code = EXIT_ILLEGAL


class StorageError(FootballError):
    """A storage command failed. `kind` says why, the same for every storage
    plugin: `exists` (name clash), `no-space`, `not-found`, `in-use`, `failed`."""

    def __init__(self, kind, message):
        self.kind = kind
        super().__init__(message)


class NoPlugin(Illegal):
    """No plugin implements what a host's inventory entry asks for."""


class Serious(FootballError):
    """Failed; the container runs again (after compensation)."""

    exit_code = EXIT_SERIOUS


class Interrupted(FootballError):
    """Ctrl-C, after what it interrupted was cleaned up (locks released, the
    container running again); re-running the command resumes."""

    exit_code = EXIT_INTERRUPTED


class Critical(FootballError):
    """Failed, and the container is not running anywhere."""

    exit_code = EXIT_CRITICAL

"""Errors of the MARS layer and the exit codes marsadm maps them to."""

# marsadm exit codes (also listed in `marsadm --help`).
EXIT_OK = 0
EXIT_ERROR = 1      # refused: bad input or failed precondition; nothing was changed
EXIT_USAGE = 2      # command line could not be parsed (click's own code)
EXIT_TIMEOUT = 3    # waited for --timeout seconds and the condition did not come true


class MarsError(Exception):
    """A refused request: the message says what was wrong and what to do.

    Raised before anything is written, so the store is unchanged."""

    exit_code = EXIT_ERROR


class MarsTimeout(MarsError):
    """A wait ran out of time; the message names what was still missing."""

    exit_code = EXIT_TIMEOUT


class PeerError(MarsError):
    """A peer could not be reached, refused us, or broke the protocol."""


class PeerRefused(PeerError):
    """The peer answers but refuses us, or we refuse it (another cluster
    secret): alive, and misconfigured."""

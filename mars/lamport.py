"""Lamport clock: stamps are nanoseconds, never behind the wall clock and never
behind anything seen from a peer.

    now = max(wall clock ns, last seen stamp + 1)

Every local write takes a fresh stamp; every stamp received from a peer is
`observe`d. Stamps of one origin are therefore strictly increasing, which the
pull protocol relies on (a peer asks for "everything after stamp S")."""

import threading
import time

# Stamps are stored as SQLite INTEGERs (signed 64 bits): one this large
# (the year 2116 in nanoseconds) is no stamp, and is not observed
MAX_STAMP = 1 << 62


class LamportClock:
    """A thread-safe Lamport clock over wall-clock nanoseconds."""

    def __init__(self, last=0, wall=time.time_ns):
        self._last = last
        self._wall = wall
        self._lock = threading.Lock()

    @property
    def last(self):
        """The newest stamp issued or observed."""
        return self._last

    def observe(self, stamp):
        """Advance past a stamp seen elsewhere (a peer's message, a stored tuple)."""
        with self._lock:
            if self._last < stamp < MAX_STAMP:
                self._last = stamp

    def now(self):
        """Issue a new stamp, strictly greater than every stamp issued or observed."""
        with self._lock:
            self._last = max(self._wall(), self._last + 1)
            return self._last

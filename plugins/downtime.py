"""Plugin `downtime`: records every downtime window (the critical section
from the stop to running again) as one JSON line in
`<state_dir>/downtime.log` of the controller:

    {"time": 1718000000.123, "operation": "migrate", "resource": "vm1",
     "source": "a1", "host": "b1", "downtime_seconds": 2.315}

The line is appended under the file's lock (`football.housekeeping.append_line`),
so that parallel runs of the same controller do not interleave their
records and housekeeping may drop the old ones (`history_days`)."""

import json
import time
from pathlib import Path

from football.hooks import hookimpl
from football.housekeeping import append_line

LOG_NAME = "downtime.log"


class DowntimeLog:
    """Knows where to write once `configure` told it the state dir; before
    that (a `Hooks` without config) it records nothing."""

    def __init__(self):
        self.path = None

    @hookimpl
    def configure(self, config):
        self.path = Path(config.state_dir) / LOG_NAME

    @hookimpl
    def report_downtime(self, operation, res, source, host, seconds):
        if self.path is None:
            return
        record = {"time": round(time.time(), 3), "operation": operation, "resource": res,
                  "source": getattr(source, "name", source), "host": getattr(host, "name", host),
                  "downtime_seconds": round(seconds, 3)}
        append_line(self.path, json.dumps(record, sort_keys=True))


def new_plugin():
    """A recorder of its own for every plugin manager."""
    return DowntimeLog()

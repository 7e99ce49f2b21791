"""The durable record of one operation: the steps it completed and what it
decided (hosts, sizes), so that re-running the same command resumes.

One JSON file per operation and resource under `<state_dir>/journal/`,
replaced atomically (temp file, fsync, rename, directory fsync) after every
step. The journal only saves time: every step also checks the real state
before acting, so a lost journal costs a few extra checks, never data."""

import json
import os
import time
from pathlib import Path


class Journal:
    def __init__(self, state_dir, operation, res):
        self.path = Path(state_dir) / "journal" / f"{operation}-{res}.json"
        self.data = {"operation": operation, "resource": res, "steps": [], "decided": {},
                     "started": time.time()}
        if self.path.exists():
            self.data = json.loads(self.path.read_text())
            self.resumed = True
        else:
            self.resumed = False

    @property
    def decided(self):
        return self.data["decided"]

    def done(self, step):
        return step in self.data["steps"]

    def record(self, step, **decided):
        if step not in self.data["steps"]:
            self.data["steps"].append(step)
        self.data["decided"].update(decided)
        self._write()

    def decide(self, **decided):
        self.data["decided"].update(decided)
        self._write()

    def finish(self):
        """The operation completed: its journal goes (kept as `.done` for audit)."""
        if self.path.exists():
            self.data["finished"] = time.time()
            self._write()
            os.replace(self.path, self.path.with_suffix(".done"))

    def _write(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as handle:
            json.dump(self.data, handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

"""A volume group of sparse files: the lab's stand-in for LVM.

The VG is a directory (the lab puts it where LVM puts its device nodes,
`<host root>/dev/<vg>/`); each LV is a sparse file in it, so its path is
`/dev/<vg>/<lv>` on the host as with LVM. The VG's capacity is fixed at
creation in `.vg.json`; LV sizes are rounded up to whole extents (4 MiB) and
count fully against it, whether written or not, exactly as LVM allocates.

Failures print the messages LVM prints for the same mistakes and exit 5, as
LVM's commands do, so one parser classifies both (plugins/lvm.py)."""

import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path

from mars.names import DERIVED_NAME_RE

EXTENT = 4 * 1024 * 1024
META = ".vg.json"
LOCK = ".vg.lock"
EXIT_FAILED = 5       # LVM's ECMD_FAILED
EXIT_INVALID = 3      # LVM's EINVALID_CMD_LINE


class VGError(Exception):
    def __init__(self, message, exit_code=EXIT_FAILED):
        self.exit_code = exit_code
        super().__init__(message)


def extents(size):
    return -(-int(size) // EXTENT)


class FileVG:
    def __init__(self, directory):
        self.dir = Path(directory)
        self.name = self.dir.name

    # --- the VG itself

    def create_vg(self, size):
        """Create the VG with a capacity of `size` bytes; an existing VG of the
        same capacity is left alone (idempotent), another capacity is refused."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with self._locked():
            if (self.dir / META).exists():
                have = self._meta()["size"]
                if have != extents(size) * EXTENT:
                    raise VGError(f'A volume group called {self.name} already exists '
                                  f'with size {have}B.')
                return
            self._write_meta({"size": extents(size) * EXTENT, "extent_size": EXTENT})

    def info(self):
        with self._locked():
            meta = self._meta()
            lvs = self._lvs()
        used = sum(lvs.values())
        return {"vg": self.name, "size": meta["size"], "free": meta["size"] - used,
                "extent_size": EXTENT, "free_extents": (meta["size"] - used) // EXTENT,
                "lvs": lvs}

    # --- logical volumes

    def create(self, lv, size):
        self._check_name(lv)
        with self._locked():
            lvs = self._lvs()
            if lv in lvs:
                raise VGError(f'Logical Volume "{lv}" already exists in volume group "{self.name}"')
            need = extents(size)
            free = self._free_extents(lvs)
            if need > free:
                raise VGError(f'Volume group "{self.name}" has insufficient free space '
                              f'({free} extents): {need} required.')
            path = self.dir / lv
            with open(path, "xb") as handle:
                handle.truncate(need * EXTENT)
        return str(path)

    def resize(self, lv, size):
        """Set the LV's size; the same size is a no-op (LVM refuses it, the
        plugins accept that refusal as done)."""
        with self._locked():
            lvs = self._lvs()
            self._require(lv, lvs)
            need, have = extents(size), lvs[lv] // EXTENT
            if need == have:
                raise VGError(f"New size ({need} extents) matches existing size ({have} extents).")
            free = self._free_extents(lvs)
            if need - have > free:
                raise VGError(f"Insufficient free space: {need - have} extents needed, "
                              f"but only {free} available")
            os.truncate(self.dir / lv, need * EXTENT)
        return need * EXTENT

    def rename(self, lv, new_name):
        self._check_name(new_name)
        with self._locked():
            lvs = self._lvs()
            self._require(lv, lvs)
            if new_name in lvs:
                raise VGError(f'Logical Volume "{new_name}" already exists in volume group '
                              f'"{self.name}"')
            self._refuse_in_use(lv)
            os.rename(self.dir / lv, self.dir / new_name)
        return str(self.dir / new_name)

    def remove(self, lv):
        with self._locked():
            self._require(lv, self._lvs())
            self._refuse_in_use(lv)
            os.unlink(self.dir / lv)

    # --- internals

    def _meta(self):
        try:
            return json.loads((self.dir / META).read_text())
        except FileNotFoundError:
            raise VGError(f'Volume group "{self.name}" not found') from None

    def _write_meta(self, meta):
        tmp = self.dir / (META + ".tmp")
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, self.dir / META)

    def _lvs(self):
        self._meta()
        return {path.name: path.stat().st_size for path in sorted(self.dir.iterdir())
                if not path.name.startswith(".") and path.is_file()}

    def _free_extents(self, lvs):
        return (self._meta()["size"] - sum(lvs.values())) // EXTENT

    def _require(self, lv, lvs):
        if lv not in lvs:
            raise VGError(f'Failed to find logical volume "{self.name}/{lv}"')

    @staticmethod
    def _check_name(lv):
        if not isinstance(lv, str) or not DERIVED_NAME_RE.fullmatch(lv) or lv.startswith("."):
            raise VGError(f'Logical volume name "{lv}" is invalid.', EXIT_INVALID)

    def _refuse_in_use(self, lv):
        if users_of(self.dir / lv):
            raise VGError(f"Logical volume {self.name}/{lv} in use.")

    @contextmanager
    def _locked(self):
        if not self.dir.is_dir():
            raise VGError(f'Volume group "{self.name}" not found')
        with open(self.dir / LOCK, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield


def users_of(path):
    """Who holds the file open: loop devices backed by it and processes with
    an open descriptor on it (as `lvremove` refuses an open LV)."""
    path = os.path.realpath(path)
    users = []
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        try:
            if backing.read_text().strip() == path:
                users.append(f"/dev/{backing.parent.parent.name}")
        except OSError:
            continue
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            fds = list(fd_dir.iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) == path:
                    users.append(f"pid {fd_dir.parent.name}")
                    break
            except OSError:
                continue
    return users

"""Storage plugin `lvm`: logical volumes in the host's LVM volume group,
managed with the lvm2 (2.03) command line tools.

Every command is an argument list run with `host.run(argv, check=False)`; a
failure becomes a `StorageError` whose kind `storage_error` reads from LVM's
message, the same kinds the `filevg` plugin raises. Sizes go to LVM in bytes
with an explicit unit (`-L <n>b`), so no site setting can change their
meaning; LVM rounds them up to whole extents.

Facts are read with `lvs` and `vgs` in bytes and parsed by pure functions
(`parse_lvs`, `parse_vgs`) that the unit tests feed recorded outputs."""

import re
from dataclasses import dataclass

from football.errors import StorageError
from football.facts import CACHE
from football.hooks import hookimpl
from football.storage import storage_error

KIND = "lvm"

REPORT_OPTIONS = ("--noheadings", "--nosuffix", "--units", "b", "--separator", ";")
LVS_FIELDS = "lv_name,lv_size,seg_size,stripes,stripe_size"
VGS_FIELDS = "vg_name,vg_size,vg_free,vg_extent_size,vg_free_count"

# LVM's unit letters: lower case are powers of 1024, upper case powers of
# 1000 (lvm(8), --units), except that bytes and sectors are the same either way.
_UNITS = {"": 1, "b": 1, "B": 1, "s": 512, "S": 512,
          **{letter: 1024 ** power for power, letter in enumerate("kmgtpe", 1)},
          **{letter: 1000 ** power for power, letter in enumerate("KMGTPE", 1)}}
_SIZE = re.compile(r"([<>]?)(\d+(?:\.\d+)?)\s*([bBsSkKmMgGtTpPeE]?)")
_EXACT = re.compile(r"\d+[bB]?")


class LvmOutputError(ValueError):
    """LVM printed something the parsers do not understand."""


@dataclass(frozen=True)
class Segment:
    """One segment of an LV: `size` bytes spread over `stripes` PVs."""

    size: int
    stripes: int
    stripe_size: int


@dataclass(frozen=True)
class LV:
    """A logical volume as `lvs` reports it, with its segments in order."""

    name: str
    size: int
    segments: tuple

    @property
    def stripes(self):
        """The stripe count of the widest segment (1: not striped)."""
        return max(segment.stripes for segment in self.segments)

    @property
    def stripe_size(self):
        """The stripe size of the widest segment in bytes (0: not striped)."""
        return max(self.segments, key=lambda segment: segment.stripes).stripe_size


@dataclass(frozen=True)
class VG:
    """A volume group as `vgs` reports it; sizes in bytes."""

    name: str
    size: int
    free: int
    extent_size: int
    free_extents: int


def parse_lvm_size(text):
    """LVM's printing of a size → bytes.

    Accepts plain bytes (`1073741824`), a unit suffix (`1073741824B`,
    `512.00m`, `1.00t`, `4.00m`) and the rounding markers of human output
    (`<29.50g`: a little less than that). A rounded value is the nearest
    byte count to what was printed, not the exact size."""
    match = _SIZE.fullmatch(text.strip())
    if not match:
        raise LvmOutputError(f"not an LVM size: {text!r}")
    _, number, unit = match.groups()
    return round(float(number) * _UNITS[unit]) if "." in number else int(number) * _UNITS[unit]


def _count(text):
    """A count LVM printed (stripes, extents)."""
    if not re.fullmatch(r"[0-9]+", text):
        raise LvmOutputError(f"not a count: {text!r}")
    return int(text)


def _rows(text, columns, command):
    """The non-blank lines of a `--separator ';'` report, split and stripped."""
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = [field.strip() for field in line.split(";")]
        if len(fields) != columns:
            raise LvmOutputError(f"{command}: expected {columns} fields, got {line!r}")
        rows.append(fields)
    return rows


def parse_lvs(text):
    """`lvs ... -o lv_name,lv_size,seg_size,stripes,stripe_size` → {name: LV}.

    Asking for segment fields makes lvs print one row per segment, each
    repeating the LV's name and total size: the rows of one LV are gathered
    into its `segments`, and their sizes must add up to the total."""
    sizes, segments, exact = {}, {}, {}
    for name, lv_size, seg_size, stripes, stripe_size in _rows(text, 5, "lvs"):
        size = parse_lvm_size(lv_size)
        if sizes.setdefault(name, size) != size:
            raise LvmOutputError(f"lvs: LV {name} is reported with sizes {sizes[name]} and {size}")
        segments.setdefault(name, []).append(
            Segment(parse_lvm_size(seg_size), _count(stripes), parse_lvm_size(stripe_size)))
        exact[name] = exact.get(name, True) and bool(
            _EXACT.fullmatch(lv_size) and _EXACT.fullmatch(seg_size))
    lvs = {}
    for name, size in sizes.items():
        total = sum(segment.size for segment in segments[name])
        # Human units are rounded to two decimals, so their sum may miss the
        # total by a little; in bytes it must be exact.
        if exact[name] and total != size:
            raise LvmOutputError(f"lvs: the segments of LV {name} add up to {total} bytes, "
                                 f"not its size {size}")
        lvs[name] = LV(name, size, tuple(segments[name]))
    return lvs


def parse_vgs(text):
    """`vgs ... -o vg_name,vg_size,vg_free,vg_extent_size,vg_free_count <vg>`
    → the VG (the output must hold exactly one)."""
    rows = _rows(text, 5, "vgs")
    if len(rows) != 1:
        raise LvmOutputError(f"vgs: expected one volume group, got {len(rows)}")
    name, size, free, extent_size, free_extents = rows[0]
    return VG(name, parse_lvm_size(size), parse_lvm_size(free), parse_lvm_size(extent_size),
              _count(free_extents))


def parse_lvs_table(text):
    """Plain `lvs` (the human table with its header) → {lv name: bytes}.

    Sizes there are rounded (`<29.50g`). Splitting on blanks is enough
    because the columns up to LSize (LV, VG, Attr) are never empty."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return {}
    header = lines[0].split()
    try:
        name_at, size_at = header.index("LV"), header.index("LSize")
    except ValueError:
        raise LvmOutputError(f"lvs: no LV and LSize columns in {lines[0]!r}") from None
    sizes = {}
    for line in lines[1:]:
        fields = line.split()
        if len(fields) <= max(name_at, size_at):
            raise LvmOutputError(f"lvs: too few columns in {line!r}")
        sizes[fields[name_at]] = parse_lvm_size(fields[size_at])
    return sizes


def _run(host, argv, what, cached=False):
    """Run an LVM command; raise its `StorageError` when it fails. A
    `cached` report is asked once per run until a command changes a host
    (football/facts.py)."""
    result = CACHE.run(host, argv) if cached else host.run(argv, check=False)
    if not result.ok:
        raise storage_error(result, what)
    return result


def _parsed(host, parse, result):
    try:
        return parse(result.stdout)
    except LvmOutputError as error:
        raise StorageError("failed", f"{host.name}: cannot read the output of `{result.command}`: "
                                     f"{error} — is this lvm2 2.03?") from None


def lvs(host):
    """{name: LV} of the host's volume group."""
    result = _run(host, ["lvs", *REPORT_OPTIONS, "-o", LVS_FIELDS, host.vg],
                  f"listing the volumes of volume group {host.vg}", cached=True)
    return _parsed(host, parse_lvs, result)


def vgs(host):
    """The host's volume group."""
    result = _run(host, ["vgs", *REPORT_OPTIONS, "-o", VGS_FIELDS, host.vg],
                  f"reading volume group {host.vg}", cached=True)
    return _parsed(host, parse_vgs, result)


def _bytes(size):
    """`size` for `-L`, in bytes rounded up to whole sectors: lvm2 refuses
    a byte count that is not a multiple of 512 ("Try using ...") and rounds
    up to whole extents anyway."""
    return f"{-(-size // 512) * 512}b"


def _size_of(host, lv):
    found = lvs(host).get(lv)
    if found is None:
        raise StorageError("not-found", f"{host.name}: volume {lv} is not in volume group "
                                        f"{host.vg} after resizing it")
    return found.size


@hookimpl
def lv_create(host, lv, size):
    if host.storage != KIND:
        return None
    striping = []
    if host.stripes > 1:
        striping = ["-i", str(host.stripes)]
        # Without -I LVM picks its default stripe size (64 KiB).
        if host.stripe_size:
            striping += ["-I", host.stripe_size]
    _run(host, ["lvcreate", "--yes", "-n", lv, "-L", _bytes(size), *striping, host.vg],
         f"creating volume {lv} in volume group {host.vg}")
    return lv_path(host, lv)


@hookimpl
def lv_resize(host, lv, size):
    if host.storage != KIND:
        return None
    try:
        # --force: shrinking must not stop at a question nobody can answer.
        _run(host, ["lvresize", "--yes", "--force", "-L", _bytes(size), f"{host.vg}/{lv}"],
             f"resizing volume {lv} in volume group {host.vg}")
    except StorageError as error:
        # LVM refuses a resize to the size the LV already has; that is our
        # wish fulfilled, not a failure.
        if error.kind != "unchanged":
            raise
    # Read back: LVM rounds up to whole extents (and stripes).
    return _size_of(host, lv)


@hookimpl
def lv_rename(host, lv, new_name):
    if host.storage != KIND:
        return None
    _run(host, ["lvrename", host.vg, lv, new_name],
         f"renaming volume {lv} to {new_name} in volume group {host.vg}")
    return lv_path(host, new_name)


@hookimpl
def lv_remove(host, lv):
    if host.storage != KIND:
        return None
    # lvremove --yes of an origin removes its (non-thin) snapshots with it:
    # an operator's backup of a replica would go at a migrate's cleanup
    snapshots = cow_snapshots(host, lv)
    if snapshots:
        raise StorageError("failed", f"{host.name}: volume {lv} has snapshots ({', '.join(snapshots)}) "
                                     "that removing it would remove too; nothing was removed — "
                                     "remove them (" + "; ".join(f"lvremove {host.vg}/{snapshot}"
                                                                 for snapshot in snapshots) +
                                     ") or copy what you need of them first, then run again")
    _run(host, ["lvremove", "--yes", "--force", f"{host.vg}/{lv}"],
         f"removing volume {lv} from volume group {host.vg}")
    return True


def cow_snapshots(host, lv):
    """The names of `lv`'s snapshots that lvremove of their origin removes
    with it: lv_attr `s` (a snapshot, also an invalid one) and `S` (one
    merging, thin too). A thin snapshot (`V`) outlives its origin."""
    result = _run(host, ["lvs", "--noheadings", "--separator", ";", "-o", "lv_name,lv_attr",
                         "-S", f"origin={lv}", host.vg],
                  f"listing the snapshots of volume {lv} in volume group {host.vg}")
    rows = _parsed(host, lambda text: _rows(text, 2, "lvs"), result)
    return [name for name, attr in rows if attr[:1] in ("s", "S")]


@hookimpl
def lv_list(host):
    if host.storage == KIND:
        return {name: found.size for name, found in lvs(host).items()}


@hookimpl
def vg_free(host):
    if host.storage == KIND:
        return vgs(host).free


@hookimpl
def lv_path(host, lv):
    if host.storage == KIND:
        return f"/dev/{host.vg}/{lv}"

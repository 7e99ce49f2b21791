"""The new size of a resource's volume, for shrink and expand (FOOTBALL.md).

The operator gives either a plain number, the *fill level* in percent the
filesystem shall have afterwards (new size = used × 100 / percent, at least
`min_space`), or a size with a unit (`k`, `m`, `g`, `t`: binary units,
`20g`, `1.5t`), the new size itself. Sizes are rounded up to whole extents
of 4 MiB (LVM's default extent; the lab's VG uses the same)."""

import re
from fractions import Fraction

from football.errors import Illegal
from mars.errors import MarsError
from mars.names import SIZE_UNITS, parse_size

EXTENT = 4 << 20
PERCENT = re.compile(r"(\d+)%?")
FRACTIONAL = re.compile(r"(\d*\.\d+)([kmgtKMGT])(i?[bB])?")    # 1.5g, as lvcreate -L takes it


def parse_target(text):
    """("percent", n) or ("size", bytes) from the command line; `Illegal`
    naming what is wrong and what is meant."""
    text = str(text).strip()
    match = PERCENT.fullmatch(text)
    if match:
        percent = int(match.group(1))
        if not 1 <= percent <= 99:
            raise Illegal(f"fill level {percent} % is outside 1..99: a plain number is the "
                          "percent the filesystem shall be full afterwards; give a size with "
                          "a unit (e.g. 20g) for a size")
        return ("percent", percent)
    match = FRACTIONAL.fullmatch(text)
    if match:
        size = Fraction(match.group(1)) * SIZE_UNITS[match.group(2).lower()]
        # less than a byte (0.0g) is refused as 0g is, not rounded up to
        # a byte and then taken for `min_space`
        if size >= 1:
            return ("size", -(-size // 1))
    else:
        try:
            return ("size", parse_size(text))
        except MarsError:
            pass
    raise Illegal(f"{text!r} is neither a fill level (1..99, percent) nor a size with a "
                  "unit (k, m, g, t; e.g. 20g, 1.5t)")


def new_size(target, used, min_space, overhead=0):
    """The volume size `target` asks for, given the filesystem's `used`
    bytes: at least `min_space`, rounded up to whole extents. A fill level
    adds `overhead`, what a new filesystem keeps for itself (its log), so
    that the level holds for the space it offers."""
    kind, value = target
    size = -(-used * 100 // value) + overhead if kind == "percent" else value
    size = max(size, min_space)
    return -(-size // EXTENT) * EXTENT


def mib(size):
    return f"{size / (1 << 20):,.0f} MiB"

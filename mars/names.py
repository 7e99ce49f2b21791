"""Validation of host and resource names, and of sizes given on the command line.

Names end up in keys, paths, LV names and command lines, so they are checked
before anything else happens."""

import re

from mars.errors import MarsError

HOST_RE = re.compile(r"[a-z][-a-z0-9]{0,62}")
RESERVED_HOSTS = frozenset(
    "none all any full empty undefined remote local localhost".split())

# Resource names become LV names and container names: letters, digits and
# `_ - .`, starting with a letter, digit or underscore. Commas separate lists.
RESOURCE_RE = re.compile(r"[A-Za-z0-9_][-A-Za-z0-9_.]{0,63}")
RESERVED_RESOURCES = frozenset("all none any full empty undefined".split())
# What is named after a resource: its LVs (`<res>-preshrink`), the lock items
# of its runs (`run-<res>`, `shrink-<res>`); as long as LVM's names may be
DERIVED_NAME_RE = re.compile(r"[A-Za-z0-9_][-A-Za-z0-9_.]{0,126}")

SIZE_RE = re.compile(r"(\d+)([kmgtpKMGTP]?)(i?[bB])?")
SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def check_host(name):
    """Return `name` if it is a valid host name, else raise MarsError."""
    if not isinstance(name, str) or not HOST_RE.fullmatch(name):
        raise MarsError(
            f"invalid host name {name!r}: use lower-case letters, digits and '-', "
            "starting with a letter, at most 63 characters")
    if name in RESERVED_HOSTS:
        raise MarsError(f"invalid host name {name!r}: reserved word, choose another name")
    return name


def check_resource(name):
    """Return `name` if it is a valid resource name, else raise MarsError."""
    if not isinstance(name, str) or not RESOURCE_RE.fullmatch(name):
        raise MarsError(
            f"invalid resource name {name!r}: use letters, digits, '_', '-' and '.', "
            "starting with a letter, digit or '_', at most 64 characters")
    if name in RESERVED_RESOURCES:
        raise MarsError(f"invalid resource name {name!r}: reserved word, choose another name")
    return name


def natural_order(name):
    """Sort key of kernel marsadm's `alphanum_cmp`: runs of digits compare as
    numbers, so `vm2` comes before `vm10`."""
    return re.sub(r"[0-9]+", lambda digits: f"{int(digits.group()):012d}", name)


def parse_size(text):
    """Parse `1073741824`, `512k`, `10G`, `2GiB` (binary units) into bytes."""
    match = SIZE_RE.fullmatch(text.strip()) if isinstance(text, str) else None
    if not match:
        raise MarsError(
            f"invalid size {text!r}: give bytes or a number with k/m/g/t/p (binary units), e.g. 10g")
    size = int(match.group(1)) * SIZE_UNITS[match.group(2).lower()]
    if size <= 0:
        raise MarsError(f"invalid size {text!r}: must be greater than zero")
    return size

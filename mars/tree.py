"""The store as kernel MARS's symlink tree: printing it and importing one.

Kernel MARS keeps its metadata as symlinks under /mars: the link name (relative
to /mars) is the key, the link target the value, the link's mtime the Lamport
stamp. `import-tree` reads such a tree (a copy of a kernel host's /mars) into
our store, so an existing cluster can move to userspace MARS."""

import os

from mars.errors import MarsError
from mars.keys import owner_of
from mars.store import check_tuple_shape


def render_tree(store, prefix, with_stamps=False):
    """`<prefix>/<key> -> <value>` lines, sorted by key, live tuples only."""
    lines = []
    for item in store.tuples(include_tombstones=False):
        line = f"{prefix}/{item.key} -> {item.value}"
        if with_stamps:
            line += f"  [{item.stamp} {item.origin}]"
        lines.append(line + "\n")
    return "".join(lines)


def read_tree(root, importing_host):
    """Tuples from a kernel-MARS symlink tree. Regular files (logfiles) and
    directories are structure, not metadata, and are skipped. A key that
    carries a host name gets that host as origin."""
    root = os.path.abspath(root)
    if not os.path.isdir(root):
        raise MarsError(f"{root} is not a directory: give the path of a copied /mars tree")
    items = []
    for directory, _dirs, files in os.walk(root):
        for name in sorted(files + _dirs):
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                continue
            key = os.path.relpath(path, root)
            value = os.readlink(path)
            stamp = os.lstat(path).st_mtime_ns
            origin = owner_of(key) or importing_host
            try:
                items.append(check_tuple_shape((key, value, stamp, origin)))
            except ValueError as exc:
                raise MarsError(f"cannot import {path}: {exc}") from None
    if not any(item.key.startswith("ips/ip-") for item in items):
        raise MarsError(f"{root} holds no ips/ip-<host> links: not a MARS state tree")
    return items

"""The store as kernel MARS's symlink tree: printing it and importing one.

Kernel MARS keeps its metadata as symlinks under /mars: the link name (relative
to /mars) is the key, the link target the value, the link's mtime the Lamport
stamp. `import-tree` reads such a tree (a copy of a kernel host's /mars) into
our store, so an existing cluster can move to userspace MARS."""

import contextlib
import logging
import os

from mars.errors import MarsError
from mars.keys import (IP_PREFIX, data_key, data_key_suffix, is_version_name, owner_of, res_key,
                       resource_of, version_host, version_name, version_number)
from mars.store import check_tuple_shape

log = logging.getLogger("marsd.tree")

UNMIRRORED_DIRS = ("fuse", "status")     # the state dir's own, never keys (FUSE mounts in fuse/)


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
            key = _our_spelling(os.path.relpath(path, root))
            value = os.readlink(path)
            stamp = os.lstat(path).st_mtime_ns
            origin = owner_of(key) or importing_host
            try:
                items.append(check_tuple_shape((key, value, stamp, origin)))
            except ValueError as exc:
                raise MarsError(f"cannot import {path}: {exc}") from None
    if not any(item.key.startswith(IP_PREFIX) for item in items):
        raise MarsError(f"{root} holds no ips/ip-<host> links: not a MARS state tree")
    return items


def _our_spelling(key):
    """`key` as this MARS spells it: the kernel pads a version's logfile
    number to nine digits (`version-000000005-h1`), this MARS does not
    (`version-5-h1`): imported as it was, no lookup of a logfile's version
    found it."""
    res, name = resource_of(key), key.rpartition("/")[2]
    if res and is_version_name(name) and key == res_key(res, name):
        with contextlib.suppress(ValueError, IndexError):
            return res_key(res, version_name(version_number(name), version_host(name)))
    return key


class TreeMirror:
    """marsd's read-only mirror of the store as the kernel's symlink tree
    under the state dir (`/mars` in production), for the tools that read it
    instead of asking marsadm: the original Football checks `/mars/ips/` and
    reads `/mars/resource-<res>/data-<host>`. Written from the store alone,
    never read back. Like the kernel, a host holds the links of the cluster
    (`ips/`, `uuid`, `actual-<host>/...`) and of the resources it is a
    member of. Every link is replaced atomically (a new link renamed over
    the old one): a reader never sees one half-written or missing. A path
    that is not a link (a logfile, a directory) is never touched."""

    def __init__(self, root, host):
        self.root = os.path.abspath(root)
        self.host = host
        self.links = self._existing_links()     # key -> value as written
        self.refused = set()                    # keys whose path is not a link: said once

    def _existing_links(self):
        found = {}
        for directory, dirs, files in os.walk(self.root):
            if directory == self.root:
                dirs[:] = [name for name in dirs if name not in UNMIRRORED_DIRS]
            for name in files + dirs:
                path = os.path.join(directory, name)
                if os.path.islink(path):
                    found[os.path.relpath(path, self.root)] = os.readlink(path)
        return found

    def _mirrored(self, values):
        """The keys of `values` ({key: value} of live tuples) that this host
        mirrors."""
        member = {resource_of(key) for key in values if key.endswith(data_key_suffix(self.host))
                  and resource_of(key) is not None}
        return {key: value for key, value in values.items()
                if resource_of(key) is None or resource_of(key) in member}

    def update(self, store, changed=None):
        """Bring the tree in line with the store: every key when `changed`
        is None, else the keys in `changed` (and every key of a resource
        whose membership of this host changed)."""
        if changed is None:
            wanted = self._mirrored(store.live_values())
            doomed = set(self.links) - set(wanted)
        else:
            resources = {resource_of(key) for key in changed
                         if key.endswith(data_key_suffix(self.host))}
            resources.discard(None)
            keys = set(changed)
            for res in resources:
                keys |= set(store.live_values(res_key(res, "")))
                keys |= {key for key in self.links if resource_of(key) == res}
            values = {key: store.value(key) for key in keys}
            live = {key: value for key, value in values.items() if value}
            members = {res for res in {resource_of(key) for key in keys} - {None}
                       if store.value(data_key(res, self.host))}
            wanted = {key: value for key, value in live.items()
                      if resource_of(key) is None or resource_of(key) in members}
            doomed = keys - set(wanted)
        for key, value in wanted.items():
            if self.links.get(key) != value:
                self._link(key, value)
        for key in doomed:
            if key in self.links:
                self._unlink(key)

    def _link(self, key, value):
        path = os.path.join(self.root, key)
        if os.path.lexists(path) and not os.path.islink(path):
            if key not in self.refused:
                log.warning("tree mirror: %s is not a link: left as it is", path)
                self.refused.add(key)
            return
        os.makedirs(os.path.dirname(path), exist_ok=True)
        temporary = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.new")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        os.symlink(value, temporary)
        os.replace(temporary, path)
        self.links[key] = value

    def _unlink(self, key):
        path = os.path.join(self.root, key)
        if os.path.islink(path):
            os.unlink(path)
        self.links.pop(key, None)

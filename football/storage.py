"""What storage plugins share: sizes in extents, and one reading of LVM's
failure messages (the filevg helper prints the same ones), so every storage
plugin raises the same `StorageError` kinds for the same mistakes."""

import re

from football.errors import NoPlugin, StorageError

# LVM's messages, in the wording of lvm2 2.03 (and of football-host vg).
_KINDS = (
    ("exists", re.compile(r"already exists in volume group|A volume group called .* already exists")),
    ("no-space", re.compile(r"insufficient free space|Insufficient free space|"
                            r"Insufficient suitable allocatable extents")),
    ("not-found", re.compile(r"Failed to find logical volume|Volume group \"[^\"]*\" not found|"
                             r"Cannot process volume group|"
                             r"Existing logical volume \"[^\"]*\" not found")),  # lvrename
    # (lvremove of an LV with holders: a dm, kpartx or crypt device on it)
    ("in-use", re.compile(r"\bin use\b|contains a filesystem in use|is open|"
                          r"is used by another device")),
    # (lvm2 2.03.17 and later: "New size ... matches existing size" on
    # stdout, "No size change." on stderr)
    ("unchanged", re.compile(r"matches existing size|No size change")),
    ("invalid", re.compile(r"name \"[^\"]*\" is invalid|Names starting .* are reserved")),
)


def failure_kind(stderr):
    """The `StorageError` kind that LVM's (or filevg's) message means."""
    for kind, pattern in _KINDS:
        if pattern.search(stderr):
            return kind
    return "failed"


def storage_error(result, what):
    """A `StorageError` for the failed command `result` doing `what`."""
    kind = failure_kind(f"{result.stderr}\n{result.stdout}")
    message = result.said or "(no output)"
    advice = {
        "exists": "choose another name, or remove the old volume (football lv-cleanup)",
        "no-space": "free space in the volume group or choose another host",
        "not-found": "check the volume group and volume names in the inventory",
        "in-use": "stop what uses the volume (container, mount, MARS) first",
    }.get(kind, "see the message above")
    return StorageError(kind, f"{result.host}: {what} failed (`{result.command}` "
                              f"{result.how_it_ended}): {message} — {advice}")


# an LV name no resource has: `lv_path` of it asks a storage plugin whether
# it serves a host's kind without contacting the host
_PROBE_LV = "football-storage-kind-probe"


def storage_kinds(hooks):
    """The storage kinds the loaded plugins name (their `KIND`, where they
    implement `lv_path`): what an inventory's `storage:` may say."""
    kinds = set()
    for plugin in hooks.manager.get_plugins():
        kind = getattr(plugin, "KIND", None)
        serves = any(caller.name == "lv_path"
                     for caller in hooks.manager.get_hookcallers(plugin) or ())
        if serves and isinstance(kind, str):
            kinds.add(kind)
    return kinds


def check_storage_kinds(inventory, hooks):
    """Refuse (exit 191, nothing done) an inventory host whose `storage:` no
    loaded plugin serves — a typo such as `lvmm` — when the plugins are
    loaded, before an operation begins. Found only where a storage hook was
    first called for that host, it failed late: for a migrate's source, at
    its cleanup, after the downtime window (as a refusal, "nothing changed").
    Asks each plugin's `lv_path` (pure: no host is contacted)."""
    served = {name: hooks.first("lv_path", host=host, lv=_PROBE_LV) is not None
              for name, host in inventory.hosts.items()}
    for name, host in sorted(inventory.hosts.items()):
        if not served[name]:
            known = storage_kinds(hooks) | {other.storage for other_name, other
                                            in inventory.hosts.items() if served[other_name]}
            raise NoPlugin(f"inventory {inventory.source}: host {name}: storage "
                           f"{host.storage!r} is a kind no storage plugin serves (known: "
                           f"{', '.join(sorted(known)) or 'none'}); correct the host's storage "
                           "(or the defaults' storage) in the inventory, or add the plugin of "
                           "that kind (plugin_dirs, or an installed package); nothing was done")

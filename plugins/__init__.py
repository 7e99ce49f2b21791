"""Plugins shipped with Football (pluggy hook implementations): cluster
managers (systemd, lab), containers (lxc), storage (lvm, filevg), reporting.
They arrive with the lab and the operations; see FOOTBALL.md, "Hooks"."""

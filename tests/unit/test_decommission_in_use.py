"""`football decommission HOST` refuses (191, nothing changed) a host that
is still in use though it holds no replica: an unfinished operation of
this controller plans to put one there (a migrate's target, the original
hosts a migrate+shrink+back comes back to), or a container runs there
outside MARS (a plain LV mounted, a stray copy)."""

import json
import os

from football import lifecycle
from tests.helpers.fakefleet import Volume, fake_fleet, football

fleet = fake_fleet

EXIT_ILLEGAL = 191


def evacuated(fleet, name):
    for state in ("draining", "evacuated"):
        lifecycle.change(fleet.hosts[name], state, "test")


def mars_changes(fleet, before):
    return [(name, argv) for name, argv in fleet.changes()[before:] if argv[0] == "marsadm"]


def test_a_host_an_unfinished_migrate_targets_is_refused_naming_it(fleet):
    code, _, stderr = football(fleet, "--debug-injection-point", "prepare:lv-created",
                               "migrate", "vm1", "b1", "b2")
    assert code == 1, stderr
    assert "b2" not in fleet.members("vm1")
    evacuated(fleet, "b2")
    before = len(fleet.changes())
    code, _, stderr = football(fleet, "decommission", "b2")
    assert code == EXIT_ILLEGAL, stderr
    text = " ".join(stderr.split())
    assert "unfinished migrate of vm1" in text and "football migrate vm1 b1 b2" in text, text
    assert "nothing was changed" in text
    assert mars_changes(fleet, before) == [] and "b2" in fleet.cluster_of("b1")


def test_the_original_hosts_of_an_unfinished_migrate_shrink_back_are_refused(fleet):
    # its journal as the run keeps it once the resource is on the temporary host
    journal = os.path.join(fleet.state_dir, "journal")
    os.makedirs(journal, exist_ok=True)
    with open(os.path.join(journal, "migrate+shrink+back-vm7.json"), "w") as handle:
        json.dump({"operation": "migrate+shrink+back", "resource": "vm7",
                   "steps": ["migrate", "shrink"], "started": 1.0,
                   "decided": {"primary": "a1", "secondary": None, "origin": ["b2"],
                               "size": None}}, handle)
    evacuated(fleet, "b2")
    before = len(fleet.changes())
    code, _, stderr = football(fleet, "decommission", "b2")
    assert code == EXIT_ILLEGAL, stderr
    text = " ".join(stderr.split())
    assert "unfinished migrate+shrink+back of vm7" in text, text
    assert mars_changes(fleet, before) == []


def test_a_container_running_outside_mars_is_refused_naming_it(fleet):
    host = fleet.hosts["b2"]
    fleet.run("b2", ["football-host", "vg", host.path(f"/dev/{host.vg}"), "create", "web",
                     str(64 << 20)])
    fleet.volumes[("b2", "web")] = Volume()
    fleet.run("b2", ["mount", host.path(f"/dev/{host.vg}/web"), host.mountpoint("web")])
    fleet.containers["b2"]["web"] = "RUNNING"
    evacuated(fleet, "b2")
    before = len(fleet.changes())
    code, _, stderr = football(fleet, "decommission", "b2")
    assert code == EXIT_ILLEGAL, stderr
    text = " ".join(stderr.split())
    assert "b2 runs the container web" in text and "nothing was changed" in text, text
    assert mars_changes(fleet, before) == [] and "b2" in fleet.cluster_of("b1")
    fleet.containers["b2"]["web"] = "STOPPED"      # stopped: it goes
    code, _, stderr = football(fleet, "decommission", "b2")
    assert code == 0, stderr
    assert "b2" not in fleet.cluster_of("b1")

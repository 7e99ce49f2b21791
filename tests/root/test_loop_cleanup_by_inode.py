"""`football lab down` and the sweep after a killed test run
(tests/helpers/leftovers.py) detach the loop devices of their dir also
where the mount of a loop's file went during the clean-up: the kernel then
names the file from the root of its own file system (a FUSE device's
`/device`), below no dir of theirs, and the loop stayed attached. A tmpfs
stands in for the device process's FUSE mount (both are unmounted lazily
while the loop holds the file)."""

import json
import subprocess
from pathlib import Path

import pytest

from football.lab import Lab, attached_loops
from tests.helpers.leftovers import clean_up_after

pytestmark = [pytest.mark.root]


class LoopOnAMount:
    """A loop device over `<mountpoint>/device`, the mount a tmpfs; `close`
    removes both (the test's own, by name and identity)."""

    def __init__(self, mountpoint):
        self.mountpoint = Path(mountpoint)
        self.mountpoint.mkdir(parents=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(self.mountpoint)],
                       check=True)
        subprocess.run(["truncate", "-s", "4M", str(self.mountpoint / "device")], check=True)
        self.loop = subprocess.run(["losetup", "--find", "--show", str(self.mountpoint / "device")],
                                   check=True, capture_output=True, text=True).stdout.strip()
        _, *self.identity = attached_loops()[self.loop]

    def attached(self):
        """The loop's backing file while it is still this test's loop, else None."""
        backing, *identity = attached_loops().get(self.loop, (None, None, None))
        return backing if identity == self.identity else None

    def close(self):
        if self.attached() is not None:
            subprocess.run(["losetup", "--detach", self.loop], capture_output=True)
        if any(line.split()[4] == str(self.mountpoint)
               for line in Path("/proc/self/mountinfo").read_text().splitlines()):
            subprocess.run(["umount", "--lazy", str(self.mountpoint)], capture_output=True)


@pytest.fixture
def loop_on_a_mount():
    made = []

    def make(mountpoint):
        made.append(LoopOnAMount(mountpoint))
        return made[-1]

    yield make
    for loop in made:
        loop.close()


def test_lab_down_detaches_a_loop_whose_files_mount_went_during_it(tmp_path, loop_on_a_mount):
    lab_dir = tmp_path / "lab"
    device = loop_on_a_mount(lab_dir / "a1" / "mars" / "fuse" / "vm1")
    (lab_dir / "lab.json").write_text(json.dumps({"marsd": {}, "demo_created": False}))
    said = []
    Lab(lab_dir, echo=said.append).down()
    assert device.attached() is None, (device.attached(), said)
    assert f"losetup --detach {device.loop}" in said
    assert not lab_dir.exists()


def test_the_sweep_after_a_killed_run_detaches_a_loop_whose_files_mount_it_unmounts(
        tmp_path, loop_on_a_mount):
    base = tmp_path / "pytest-7"
    device = loop_on_a_mount(base / "test_crash0" / "hosts" / "a" / "mars" / "fuse" / "vm1")
    said = []
    clean_up_after(base, say=said.append)
    assert device.attached() is None, (device.attached(), said)


def test_a_loop_another_dir_holds_is_left_to_it(tmp_path, loop_on_a_mount):
    """Not a loop whose file was only *somewhere*: one of another run stays."""
    ours = loop_on_a_mount(tmp_path / "run-1" / "fuse")
    theirs = loop_on_a_mount(tmp_path / "run-10" / "fuse")
    clean_up_after(tmp_path / "run-1", say=lambda line: None)
    assert ours.attached() is None
    assert theirs.attached() == str(theirs.mountpoint / "device")

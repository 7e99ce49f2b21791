"""`football-host projects` on real xfs: the project IDs and the inherit flag
rsync does not copy (a shrink's copy of a volume with project quotas). Two
small xfs images on loop devices; their project IDs set and read with
xfs_io, as an operator would."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.dataplane import xfs_volumes

pytestmark = [pytest.mark.root]

HOST_HELPER = str(Path(sys.executable).parent / "football-host")


def xfs_io(command, path):
    return subprocess.run(["xfs_io", "-c", command, str(path)], capture_output=True, text=True,
                          check=True).stdout


def project_of(path):
    return int(xfs_io("lsproj", path).split("=")[1])


@pytest.fixture
def two_volumes(tmp_path):
    """(source, copy): two mounted xfs filesystems, gone afterwards."""
    with xfs_volumes(tmp_path, ("source", "copy")) as mounted:
        yield mounted


def test_the_copy_gets_the_project_ids_and_inherit_flags_rsync_leaves_behind(two_volumes):
    source, copy = two_volumes
    (source / "site1" / "www").mkdir(parents=True)
    (source / "site1" / "www" / "index.html").write_text("hello\n")
    (source / "shared").mkdir()
    (source / "shared" / "link").symlink_to("../site1")
    xfs_io("chproj -R 42", source / "site1")
    xfs_io("chattr -R +P", source / "site1")            # (files ignore it: directories)
    subprocess.run(["rsync", "-aHAXS", "--numeric-ids", f"{source}/", f"{copy}/"], check=True)
    assert project_of(copy / "site1" / "www" / "index.html") == 0          # rsync's copy
    result = subprocess.run([HOST_HELPER, "projects", str(source), str(copy)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert '"changed": 3' in result.stdout, result.stdout
    for path in ("site1", "site1/www", "site1/www/index.html"):
        assert project_of(copy / path) == 42, path
    assert project_of(copy / "shared") == 0
    assert "P" in xfs_io("lsattr", copy / "site1").split()[0]
    # what is created in the copy now inherits the project, as in the source
    (copy / "site1" / "www" / "new.html").write_text("new\n")
    assert project_of(copy / "site1" / "www" / "new.html") == 42
    # run again: nothing left to change
    result = subprocess.run([HOST_HELPER, "projects", str(source), str(copy)],
                            capture_output=True, text=True)
    assert '"changed": 0' in result.stdout, result.stdout

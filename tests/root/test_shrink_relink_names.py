"""The shrink's copy against names the container's owner chooses: the
copy's hard-linked names (found before the window, copied once more after
the final pass, not in place) may hold a newline or bytes that are no
UTF-8; each is copied again all the same. Real rsync and find between two
directories, the passes as the shrink makes them (their source side a
daemon chrooted into the volume: root, and `football-host` on the PATH the
transport gives host commands), the commands' output read as a host's
command is (text, what is no UTF-8 replaced)."""

import os
import subprocess
from types import SimpleNamespace

import pytest

from football.ops import shrink
from football.transport import LocalTransport

pytestmark = [pytest.mark.root]


class LocalHost:
    """Runs a command here, with the environment and output the transport
    gives it."""
    name = "here"

    def run(self, argv, check=True, timeout=None, input=None):
        done = subprocess.run(argv, input=None if input is None else input.encode(),
                              env=LocalTransport(self.name).env, capture_output=True)
        result = SimpleNamespace(exit_code=done.returncode, ok=done.returncode == 0,
                                 stdout=done.stdout.decode(errors="replace"),
                                 stderr=done.stderr.decode(errors="replace"))
        assert not check or result.ok, (argv, result.stderr)
        return result


def a_shrink(source, copy):
    """The parts of a shrink its copy of hard-linked names uses."""
    run = SimpleNamespace(primary=LocalHost(), config=SimpleNamespace(copy_timeout=60),
                          mountpoint=str(source), tmp_mountpoint=str(copy),
                          say=lambda text: None)
    run._rsync_argv = lambda relink=False: shrink.Shrink._rsync_argv(run, relink)
    return run


def final_pass(source, copy):
    """As the shrink's finish: the copy's linked names, the pass in place,
    those names again not in place."""
    run = a_shrink(source, copy)
    linked = shrink.Shrink._linked_in_copy(run)
    run.primary.run(run._rsync_argv())
    if linked:
        shrink.Shrink._relink(run, linked)


@pytest.mark.parametrize("pair", [(b"new\nline", b"other\nname"), (b"bad\xff", b"bad\xfe2"),
                                  (b"dir\xff/x", b"dir\xff/y"), (b"plain", b"name")],
                         ids=["newline", "no-utf8", "no-utf8-directory", "plain"])
def test_a_broken_hard_link_whose_names_hold_a_newline_or_no_utf8_is_repaired(tmp_path, pair):
    """A file saved by rename breaks its hard link in the source; the pass
    in place wrote its new content through the copy's link into the other
    name. Names with a newline (the list was read by lines: `a` and `b`
    instead of `a\\nb`) or bytes that are no UTF-8 (read as U+FFFD: a name
    that is not there) were not copied again: the other name kept the
    content of the file saved."""
    source, copy = tmp_path / "source", tmp_path / "copy"
    source.mkdir()
    pairs = [pair]
    os.mkdir(os.path.join(bytes(source), b"dir\xff"))
    for first, second in pairs:
        first, second = os.path.join(bytes(source), first), os.path.join(bytes(source), second)
        with open(first, "wb") as handle:
            handle.write(b"original content\n")
        os.link(first, second)
    run = a_shrink(source, copy)
    run.primary.run(run._rsync_argv())
    for _, second in pairs:                 # saved by rename: the link broken
        second = os.path.join(bytes(source), second)
        with open(second + b".new", "wb") as handle:
            handle.write(b"saved anew!\n")
        os.rename(second + b".new", second)
    final_pass(source, copy)
    for first, second in pairs:
        copied = os.path.join(bytes(copy), first), os.path.join(bytes(copy), second)
        with open(copied[0], "rb") as handle:
            assert handle.read() == b"original content\n", first
        with open(copied[1], "rb") as handle:
            assert handle.read() == b"saved anew!\n", second

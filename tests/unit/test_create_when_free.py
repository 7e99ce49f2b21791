"""`create_when_free`: a shrink's and a repair's create-resource (or
join-resource) right after the resource was deleted, retried while the
deletion has not reached everyone, in our marsadm's words and in kernel
MARS's (userspace/marsadm `create_res`: its lwarn/ldie texts)."""

from types import SimpleNamespace

import pytest

from football.ops.repair import create_when_free
from football.transport import CommandFailed, Result

CONFIG = SimpleNamespace(command_timeout=10, poll_interval=0)
KERNEL_OLD_REMAINS = ("OLD REMAIN '/mars/resource-vm1/log-000000007-a1'\n"
                      "Resource directory has some old remains.\nFirst cleanup.\n"
                      "If you really want to create-resource, run 'marsadm delete-resource' "
                      "first.\nREFUSING create-resource\n")
KERNEL_MEMBERS_LEFT = ("DANGER: hosts 'a2' are already member of resource 'vm1'.\n"
                       "REFUSING to trash your resource!\n")


class Host:
    """Answers the create with the exit codes and stderr texts given, in turn."""

    name = "a1"

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = []

    def run(self, argv, check=True, timeout=None):
        self.calls.append(argv)
        code, stderr = self.answers.pop(0)
        return Result(self.name, tuple(argv), code, "", stderr)


@pytest.mark.parametrize("refusal", [
    "marsadm create-resource: /mars/resource-vm1 still holds logs of an earlier vm1 on a1",
    KERNEL_OLD_REMAINS, KERNEL_MEMBERS_LEFT],
    ids=["ours", "kernel-old-remains", "kernel-members-left"])
def test_a_create_is_retried_while_the_deleted_resource_is_not_yet_gone(refusal):
    host = Host((1, refusal), (1, refusal), (0, ""))
    create_when_free(host, "vm1", "/dev/vg0/vm1", CONFIG)
    assert host.calls == [["marsadm", "create-resource", "vm1", "/dev/vg0/vm1"]] * 3


@pytest.mark.parametrize("verb, answer", [
    ("create-resource", "marsadm create-resource: resource vm1 already exists (members: a1)"),
    ("join-resource", "resource 'vm1' has been already joined -- this is dangerous!\n"
                      "refusing dangerous operation\n")],
    ids=["ours-created", "kernel-joined"])
def test_a_resource_made_already_counts_as_done(verb, answer):
    """A re-run after a crash right after its create or join."""
    host = Host((1, answer))
    create_when_free(host, "vm1", "/dev/vg0/vm1", CONFIG, verb=verb)
    assert len(host.calls) == 1


def test_any_other_refusal_fails_at_once():
    host = Host((1, "block device '/dev/vg0/vm1' must be an absolute path starting with '/'\n"))
    with pytest.raises(CommandFailed):
        create_when_free(host, "vm1", "/dev/vg0/vm1", CONFIG)
    assert len(host.calls) == 1

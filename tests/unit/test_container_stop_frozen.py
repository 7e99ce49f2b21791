"""`football-host ct stop` of a frozen container thaws it before the
shutdown (frozen, its init cannot take the halt signal: the shutdown
waited its whole timeout, then LXC killed it). The calls, on a stand-in
for the lxc bindings' Container; the real LXC: tests/root/test_frozen_container_stop.py."""

import pytest

from football.hostside import container


class Recorded:
    """An lxc.Container that records the calls a stop makes."""

    def __init__(self, state):
        self.state, self.calls, self.defined = state, [], True

    @property
    def running(self):
        return self.state != "STOPPED"

    def unfreeze(self):
        self.calls.append("unfreeze")
        self.state = "RUNNING"
        return True

    def shutdown(self, timeout):
        self.calls.append("shutdown")
        if self.state in ("FROZEN", "FREEZING"):
            return False        # its init cannot take the signal
        self.state = "STOPPED"
        return True

    def stop(self):
        self.calls.append("stop")
        self.state = "STOPPED"
        return True


@pytest.mark.parametrize("state, calls", [("FROZEN", ["unfreeze", "shutdown"]),
                                          ("FREEZING", ["unfreeze", "shutdown"]),
                                          ("RUNNING", ["shutdown"]),
                                          ("STOPPED", [])])
def test_a_frozen_container_is_thawed_before_its_shutdown(monkeypatch, tmp_path, state, calls):
    fake = Recorded(state)
    monkeypatch.setattr(container, "_readable", lambda name, lxcpath: fake)
    monkeypatch.setattr(container, "monitors", lambda name, lxcpath: [])
    assert container.stop("vm1", tmp_path) == (state != "STOPPED")
    assert fake.calls == calls and fake.state == "STOPPED"


class SlowToThaw(Recorded):
    """Frozen; the first unfreeze is not enough (a busy machine: the
    freezer still says FROZEN), the second thaws it."""

    def unfreeze(self):
        self.calls.append("unfreeze")
        if self.calls.count("unfreeze") >= 2:
            self.state = "RUNNING"
        return True


def test_a_container_that_stays_frozen_after_the_first_thaw_is_thawed_again(
        monkeypatch, tmp_path):
    """The stop asked once, while the state said FROZEN, and then waited out
    its whole timeout (seen once in CI)."""
    fake = SlowToThaw("FROZEN")
    monkeypatch.setattr(container, "_readable", lambda name, lxcpath: fake)
    monkeypatch.setattr(container, "monitors", lambda name, lxcpath: [])
    assert container.stop("vm1", tmp_path)
    assert fake.calls == ["unfreeze", "unfreeze", "shutdown"] and fake.state == "STOPPED"

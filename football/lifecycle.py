"""Host lifecycle states as the controller reads and changes them, through
`football-host lifecycle` on the host (the record lives there, so every
controller sees the same state; format and transitions in
football/hostside/lifecycle.py)."""

from football.errors import FootballError, Illegal
from football.hostside.lifecycle import REFUSED_AS_TARGET, STATES, TRANSITIONS
from football.transport import json_of

__all__ = ["REFUSED_AS_TARGET", "STATES", "TRANSITIONS", "read", "change", "record_origin",
           "origins", "refuse_as_targets"]

STATE_DIR = "/var/lib/football"
EXIT_REFUSED = 7


def _run(host, *args, check=True):
    return host.run(["football-host", "lifecycle", host.path(STATE_DIR), *args], check=check)


def read(host):
    """{state, since, by, origins} of `host` (a host without a record is active)."""
    return json_of(_run(host, "get"))


def change(host, state, by, expect=()):
    """Set `host`'s state; `Illegal` when its current state does not allow
    it (nothing changed). Returns the new record."""
    result = _run(host, "set", state, "--by", by,
                  *[arg for current in expect for arg in ("--expect", current)], check=False)
    if result.exit_code == EXIT_REFUSED:
        raise Illegal(f"{host.name}: {result.stderr.strip()}")
    if not result.ok:
        raise FootballError(f"{host.name}: could not set its state to {state}: "
                            f"{result.said}")
    return json_of(result)


def record_origin(host, res, replicas):
    """Remember on `host` where `res` had its replicas (primary first)
    before it moved away (once)."""
    return json_of(_run(host, "origin", res, *replicas))["new"]


def origins(host):
    """{resource: its replicas before it moved away, primary first}, as
    `host` remembers them."""
    return {res: record["replicas"] for res, record in read(host)["origins"].items()}


def refuse_as_targets(hosts, states):
    """`Illegal` naming the hosts whose state (`states`: name -> state)
    placement refuses, with what to do."""
    refused = sorted(host for host in hosts if states.get(host) in REFUSED_AS_TARGET)
    if refused:
        raise Illegal(f"{', '.join(f'{name} is {states[name]}' for name in refused)}: no "
                      "resource is placed there; choose another target, or take it back "
                      f"into use with `football restore {refused[0]}`")

"""The default answers of the hooks that need one, registered `trylast`
so that any plugin implementing the same hook is asked first (and, for the
first-result hooks, replaces the default by answering)."""

from football.errors import Illegal
from football.hooks import hookimpl
from football.ops.base import in_parallel, no_designated_primary
from football import facts
from football.report import agreeing


def primary_host(res, inventory):
    """The `Host` of `inventory` that MARS names the primary of `res`, asking
    every host in parallel; `Illegal` when none knows `res` (naming the hosts
    that could not be asked: one of them may have it) or they disagree."""
    def ask(host):
        try:
            return facts.primary(host, res, timeout=30)
        except facts.HostUnreachable as error:
            return error
        except facts.FactUnavailable:
            return None

    hosts = list(inventory.hosts.values())
    said = in_parallel(ask, hosts)
    answers = {answer for answer in said if isinstance(answer, str) and answer}
    undesignated = [host.name for host, answer in zip(hosts, said) if answer == ""]
    if not answers and undesignated:
        raise Illegal(no_designated_primary(res, undesignated))
    if not answers:
        unreachable = [str(answer) for answer in said if isinstance(answer, Exception)]
        unasked = (f"; not asked, unreachable: {'; '.join(unreachable[:3])}"
                   f"{f' (and {len(unreachable) - 3} more)' if len(unreachable) > 3 else ''}"
                   if unreachable else "")
        raise Illegal(f"unknown resource {res}: no host of the inventory ({inventory.source}) "
                      f"has it{unasked}; name its host as {res}:<host> if it is not "
                      "discoverable")
    if len(answers) > 1:
        saying = {}
        for host, answer in zip(hosts, said):
            if answer in answers:
                saying.setdefault(answer, []).append(host.name)
        says = "; ".join(f"{agreeing(names, 'says', 'say')} {primary}"
                         for primary, names in sorted(saying.items()))
        raise Illegal(f"{res}: hosts disagree on the primary ({says}); a host whose marsd "
                      "does not run sees what was before it stopped (start it there: it learns "
                      f"the newer one). To act now, name the primary: {res}:<host>; a split "
                      f"brain: football repair-mars {res} <host>")
    name = answers.pop()
    if name not in inventory.hosts:
        raise Illegal(f"{res}: its primary {name} is not in the inventory "
                      f"({inventory.source}); add it there")
    return inventory.hosts[name]


@hookimpl(trylast=True)
def get_hyper(res, inventory):
    return primary_host(res, inventory)


@hookimpl(trylast=True)
def get_store(res, inventory):
    return None                 # local storage: the hypervisor's own volume group


@hookimpl(trylast=True)
def get_vg(host):
    return host.vg


@hookimpl(trylast=True)
def get_mountpoint(host, res):
    return host.container_dir(res)


@hookimpl(trylast=True)
def is_startable(host, res):
    return True


@hookimpl(trylast=True)
def keeps_stopped(host):
    return False


@hookimpl(trylast=True)
def want_downtime(res, source, target):
    return True


@hookimpl(trylast=True)
def resource_locked(host, res):
    return False

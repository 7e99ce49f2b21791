"""`football lock ITEM HOST...` and `football unlock ITEM HOST...`: the
operator's hand on the lock items that operations take (football/locks.py).

Every operation that changes a host takes the item `football` there (in
sorted host order, all or nothing) and keeps retrying while someone else
holds it, for `lock_retry_timeout` seconds, then gives up with exit 191
naming the lock. So `football lock football a1` pauses every operation that
needs a1 until `football unlock football a1`.

- `lock` takes the item on all the hosts or on none (same backoff as the
  operations). The operator's lock is *permanent*: unlike an operation's, it
  never goes stale after `lock_break_timeout`; only `unlock` removes it.
  Taking it again as the same owner is a no-op.
- `unlock` releases the item whoever holds it: it is the tool for the locks
  of dead runs, so it says whose lock it removed and since when."""

import time

from football.errors import FootballError, Illegal
from football.inventory import InventoryError
from football.locks import LockSet, held, release, run_owner
from football.ops.base import in_parallel
from football.transport import TransportError
from mars.names import RESOURCE_RE

OWNER_CHARACTERS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.@:+")


def check_item(item):
    """A lock item is a file name on the hosts: letters, digits, '-', '_', '.'."""
    if not isinstance(item, str) or not RESOURCE_RE.fullmatch(item):
        raise Illegal(f"invalid lock item {item!r}: lock items are letters, digits, '-', '_' "
                      "and '.' (up to 64, not starting with '-' or '.'), e.g. football")
    return item


def check_owner(owner):
    if not owner or len(owner) > 128 or not set(owner) <= OWNER_CHARACTERS:
        raise Illegal(f"invalid owner {owner!r}: letters, digits and -_.@:+ (up to 128)")
    return owner


def default_owner():
    return run_owner("operator")


def check_hosts(inventory, names):
    """The inventory's hosts of `names` (each once, in the order given)."""
    if not names:
        raise Illegal("name at least one host")
    try:
        return [inventory.host(name) for name in dict.fromkeys(names)]
    except InventoryError as error:
        raise Illegal(str(error)) from None


def since(record):
    stamp = (record or {}).get("time")
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)) if stamp else "?"


class Lock:
    operation = "lock"

    def __init__(self, ctx, item, hosts, owner=None):
        self.ctx = ctx
        self.item = check_item(item)
        self.owner = check_owner(owner or default_owner())
        self.hosts = check_hosts(ctx.inventory, hosts)

    def run(self):
        names = ", ".join(host.name for host in self.hosts)
        if self.ctx.dry_run:
            self.ctx.reporter.say(f"would take lock {self.item} on {names} as {self.owner}")
            return {"lock": self.item, "hosts": [], "owner": self.owner}
        locks = LockSet(self.owner, self.ctx.config, self.ctx.reporter.detail, permanent=True)
        locks.acquire(self.hosts, self.item)
        self.ctx.reporter.say(f"took lock {self.item} on {names} as {self.owner}; it stays "
                              f"until `football unlock {self.item} "
                              f"{' '.join(host.name for host in self.hosts)}`")
        return {"lock": self.item, "hosts": [host.name for host in self.hosts],
                "owner": self.owner}


class Unlock:
    operation = "unlock"

    def __init__(self, ctx, item, hosts):
        self.ctx = ctx
        self.item = check_item(item)
        self.hosts = check_hosts(ctx.inventory, hosts)

    def _one(self, host):
        """(host, holder record or None, error text)."""
        try:
            holder = held(host, check=True).get(self.item)
            if holder is not None and not self.ctx.dry_run and \
                    not release(host, self.item) and self.item in held(host, check=True):
                return host.name, None, f"the lock {self.item} is still there after a release"
            return host.name, holder, ""
        except (TransportError, FootballError, ValueError) as error:
            return host.name, None, str(error)

    def run(self):
        say = self.ctx.reporter.say
        released, failed = [], []
        for name, holder, error in in_parallel(self._one, self.hosts):
            if error:
                failed.append(f"{name}: {error}")
            elif holder is None:
                say(f"{name}: lock {self.item} is not held")
            else:
                verb = "would release" if self.ctx.dry_run else "released"
                say(f"{name}: {verb} lock {self.item} held by "
                    f"{holder.get('owner', '?')} since {since(holder)}")
                released.append({"host": name, "owner": holder.get("owner")})
        if failed:
            raise FootballError(f"could not release lock {self.item} on: {'; '.join(failed)}; "
                                "re-run unlock for those hosts once they answer")
        return {"lock": self.item, "released": released}

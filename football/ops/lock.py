"""`football lock ITEM HOST...` and `football unlock ITEM HOST...`: the
operator's hand on the lock items that operations take (football/locks.py).

Every operation that changes a host takes the item `football` there (in
sorted host order, all or nothing) and keeps retrying while someone else
holds it, for `lock_retry_timeout` seconds, then gives up with exit 191
naming the lock. So `football lock football a1` pauses every operation that
needs a1 until `football unlock football a1`.

- `lock` takes the item on all the hosts or on none (same backoff as the
  operations); refused, it leaves the hosts as they were: those it had
  locked before stay locked. The operator's lock is *permanent*: unlike an
  operation's, it never goes stale after `lock_break_timeout`; only
  `unlock` removes it. Taking it again as the same owner is a no-op.
- `unlock` releases the item whoever holds it: it is the tool for the locks
  of dead runs, so it says whose lock it removed and since when. It
  releases the holder it saw: a run that took the item over since (it
  broke a stale lock) keeps it, and unlock says so."""

import time

from football.errors import FootballError, Illegal
from football.inventory import InventoryError
from football.locks import LockSet, held, outlives_its_run, run_owner
from football.locks import release as release_item
from football.ops.base import Operation, in_parallel
from football.transport import TransportError
from mars.names import DERIVED_NAME_RE

OWNER_CHARACTERS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.@:+")


def check_item(item):
    """A lock item is a file name on the hosts: letters, digits, '-', '_', '.'."""
    if not isinstance(item, str) or not DERIVED_NAME_RE.fullmatch(item):
        raise Illegal(f"invalid lock item {item!r}: lock items are letters, digits, '-', '_' "
                      "and '.' (up to 127, not starting with '-' or '.'), e.g. football")
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


class Lock(Operation):
    """Single step (taking is all or nothing): no journal. Its dry run lists
    the `football-host lock ... take` commands."""

    operation = "lock"
    whole = ("take",)

    def __init__(self, ctx, item, hosts, owner=None):
        super().__init__(ctx)
        self.item = check_item(item)
        self.owner = check_owner(owner or default_owner())     # the lock's, not the run's
        self.hosts = check_hosts(ctx.inventory, hosts)
        self.summary.update(lock=self.item, hosts=[], owner=self.owner)

    def start_args(self):
        return {"item": self.item, "hosts": [host.name for host in self.hosts],
                "owner": self.owner}

    def discover(self):
        """Nothing to read: taking the item is all or nothing, whoever holds it."""

    def dry_run(self):
        self._take(via=self.ctx.planned)

    def take(self):
        self._take()
        self.say(f"took lock {self.item} on {', '.join(host.name for host in self.hosts)} as "
                 f"{self.owner}; it stays until `football unlock {self.item} "
                 f"{' '.join(host.name for host in self.hosts)}`")
        self.summary["hosts"] = [host.name for host in self.hosts]

    def _take(self, via=lambda host: host):
        # hosts where this owner holds the item already stay out of the set:
        # a refusal at another host releases what the set took (all or
        # nothing), which would be the operator's earlier lock too — under
        # a 191 "nothing changed"
        mine = set() if self.ctx.dry_run else {
            host.name for host in self.hosts
            if held(host).get(self.item, {}).get("owner") == self.owner}
        locks = LockSet(self.owner, self.config, self.ctx.reporter.detail, permanent=True)
        locks.acquire([via(host) for host in self.hosts if host.name not in mine], self.item)


class Unlock(Operation):
    """Single step (each host's release stands alone; a re-run releases what
    is left): no journal. Its dry run lists the `football-host lock ...
    release` commands of the hosts where the item is held."""

    operation = "unlock"
    whole = ("release",)

    def __init__(self, ctx, item, hosts):
        super().__init__(ctx)
        self.item = check_item(item)
        self.hosts = check_hosts(ctx.inventory, hosts)
        self.summary.update(lock=self.item, released=[], taken_over=[])

    def start_args(self):
        return {"item": self.item, "hosts": [host.name for host in self.hosts]}

    def _holder(self, host):
        """(host, holder record or None, error text)."""
        try:
            return host, held(host, check=True).get(self.item), ""
        except (TransportError, FootballError, ValueError) as error:
            return host, None, str(error)

    def discover(self):
        """Who holds the item on each host (a host that cannot tell is
        reported at the end: the others are released anyway)."""
        looks = in_parallel(self._holder, self.hosts)
        self.holders = [(host, holder) for host, holder, error in looks if holder is not None]
        self.failed = [f"{host.name}: {error}" for host, _, error in looks if error]
        self.unheld = [host for host, holder, error in looks if holder is None and not error]

    def announce(self):
        for host in self.unheld:
            self.say(f"{host.name}: lock {self.item} is not held")

    def dry_run(self):
        for host, holder in self.holders:
            self._release(host, holder, via=self.ctx.planned)
        self._fail_for_the_silent()

    def release(self):
        outcomes = in_parallel(lambda entry: self._release(*entry), self.holders)
        for (host, holder), (error, taker) in zip(self.holders, outcomes):
            if error:
                self.failed.append(f"{host.name}: {error}")
            elif taker is not None:
                # the lock it saw is gone (broken): the taker's is not its to remove
                self.say(f"{host.name}: did not release lock {self.item}: "
                         f"{taker.get('owner', '?')} holds it since {since(taker)}, not "
                         f"{holder.get('owner', '?')}, who held it when unlock looked (that "
                         f"lock was broken or released meanwhile); `football unlock "
                         f"{self.item} {host.name}` again releases the new one")
                self.summary["taken_over"].append({"host": host.name,
                                                   "owner": taker.get("owner")})
            else:
                self.say(f"{host.name}: released lock {self.item} held by "
                         f"{holder.get('owner', '?')} since {since(holder)}")
                self.summary["released"].append({"host": host.name,
                                                 "owner": holder.get("owner")})
        self._say_what_stays_unfinished()
        self._fail_for_the_silent()

    def _say_what_stays_unfinished(self):
        """A run's lock that outlived its run (it acted, or ended with its
        operation unfinished): the journal on its controller still says so."""
        runs = {(holder.get("owner", "?"), holder.get("what", "?"), holder.get("command"))
                for _, holder in self.holders if outlives_its_run(holder)}
        for owner, what, command in sorted(runs, key=str):
            again = f"`football {command}` there goes on" if command else \
                "the same command there goes on"
            self.ctx.reporter.warning(
                f"{self.item} was the lock of a run that acted ({what}; {owner}): its "
                f"operation stays unfinished in that controller's journal; {again}, or its "
                "journal is set aside there (`football status` there shows it)")

    def _release(self, host, holder, via=lambda host: host):
        """Release the item on `host` if `holder`, whom discovery saw, still
        holds it: between that look and now a live run may have broken the
        (stale) lock and hold the item. ('', None) when the item is gone from
        `host`, ('', record) when another holder has it now, (why, None)
        when the release failed."""
        owner = holder.get("owner") or ""          # a record without one: any holder
        try:
            if release_item(via(host), self.item, owner):
                return "", None
            taker = held(host, check=True).get(self.item)
        except (TransportError, FootballError, ValueError) as error:
            return str(error), None
        if taker is None:
            return "", None
        if owner and taker.get("owner") != owner:
            return "", taker
        return f"the lock {self.item} is still there after a release", None

    def _fail_for_the_silent(self):
        if self.failed:
            raise FootballError(f"could not release lock {self.item} on: "
                                f"{'; '.join(self.failed)}; re-run unlock for those hosts "
                                "once they answer")

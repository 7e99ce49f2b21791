"""Shared steps of the integration tests: disks, store reads, cluster setup.

Polling reads the stores directly (cheap); what a test finally asserts about
the user-visible state it reads through the real `marsadm`."""

import os
import secrets
import time
from concurrent.futures import ThreadPoolExecutor

from tests.helpers.marshosts import STATE_WAIT, wait_until

ROUND = 0.2                 # MarsNet's round interval
# A marsd whose timing a test controls: >> marsadm's start-up. Where a busy
# machine makes it not, the test misses the moment it aims at and passes.
SLOW_ROUND = 1.2


def sparse_disk(host, name="disk", size=16 << 20):
    """A sparse file standing in for the host's LV."""
    path = host.root / "disks" / name
    path.parent.mkdir(exist_ok=True)
    path.touch()
    os.truncate(path, size)
    return path


def host_ips(host):
    """{host: address} as this host's store has the membership."""
    return {key[len("ips/ip-"):]: value for key, value in host.live_values("ips/ip-").items()}


DATA_PLANE_KEYS = ("/actual-", "/replay-", "/version-", "/syncpos-", "/syncstatus-")


def replicated_metadata(host):
    """Live tuples except those marsd itself rewrites as it works: liveness
    and the data plane's progress (replay cursors, versions, sync state)."""
    return {key: value for key, value in host.live_values().items()
            if not key.startswith("actual-") and not any(part in key for part in DATA_PLANE_KEYS)}


def outputs(hosts, *args):
    """stdout of `marsadm *args` on every host, run side by side: {name: stdout}."""
    with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
        results = pool.map(lambda host: host.marsadm(*args).stdout, hosts)
        return dict(zip((host.name for host in hosts), results))


def assert_output_everywhere(hosts, args, expected):
    """`marsadm *args` prints exactly `expected` on every host."""
    got = outputs(hosts, *args)
    wrong = {name: text for name, text in got.items() if text != expected}
    assert not wrong, f"marsadm {' '.join(map(str, args))}: expected {expected!r}, got {wrong}"


def start_all(*hosts):
    """Start the marsd of every host not running yet; wait until all serve."""
    for host in hosts:
        if host.process is None:
            host.start()
    for host in hosts:
        host.wait_serving()


def build_cluster(marsnet, *names):
    """create-cluster on the first name, join the others, every marsd serving."""
    hosts = [marsnet.add(name) for name in names]
    marsnet.create_cluster(*hosts)
    start_all(*hosts)
    wait_for_membership(hosts, hosts)
    return hosts


def join_cluster(marsnet, host, via):
    """join-cluster on `host` through the (serving) member `via`."""
    marsnet.share_key(via, host)
    host.marsadm("join-cluster", via.name, via.address, f"--ip={host.address}")


def wait_for_membership(observers, members, timeout=STATE_WAIT):
    """Wait until every observer's store lists exactly `members`; returns seconds."""
    expected = {host.name: host.address for host in members}
    return wait_until(lambda: all(host_ips(host) == expected for host in observers),
                      timeout=timeout,
                      what=f"{', '.join(h.name for h in observers)} listing exactly "
                           f"{', '.join(sorted(expected))}",
                      show=lambda: {host.name: sorted(host_ips(host)) for host in observers})


def wait_for_resources(observers, resources, timeout=STATE_WAIT):
    """Wait until every observer's store knows exactly `resources`."""
    expected = set(resources)

    def known(host):
        return {key[len("resource-"):-len("/size")] for key in host.live_values("resource-")
                if key.endswith("/size")}

    return wait_until(lambda: all(known(host) == expected for host in observers),
                      timeout=timeout,
                      what=f"{', '.join(h.name for h in observers)} knowing exactly "
                           f"{', '.join(sorted(expected)) or 'no resource'}",
                      show=lambda: {host.name: sorted(known(host)) for host in observers})


def wait_for_key(observers, key, value, timeout=STATE_WAIT):
    return wait_until(lambda: all(host.live_values(key).get(key) == value for host in observers),
                      timeout=timeout,
                      what=f"{key} = {value} on {', '.join(h.name for h in observers)}",
                      show=lambda: {host.name: host.live_values(key).get(key) for host in observers})


def write_foreign_secret(host):
    """Give `host` a cluster.key of its own, unlike everybody else's."""
    (host.root / "mars" / "cluster.key").write_text(secrets.token_hex(32) + "\n")


def assert_stays(predicate, seconds, what, interval=0.05, show=None):
    """Assert `predicate` holds at every poll for `seconds` (e.g. that
    anti-entropy does not bring something back). `show()` describes the state
    in the failure message."""
    started = time.monotonic()
    while True:
        if not predicate():
            state = f"; state: {show()}" if show else ""
            raise AssertionError(
                f"no longer true after {time.monotonic() - started:.2f}s: {what}{state}")
        if time.monotonic() - started >= seconds:
            return
        time.sleep(interval)


def next_round_of(host):
    """Block until `host`'s marsd starts a new round (it writes its liveness first)."""
    def last_round():
        return host.live_values("actual-").get(f"actual-{host.name}/time")

    last = last_round()
    wait_until(lambda: last_round() != last, interval=0.005, longest=0.005,
               what=f"a new round of {host.name}",
               show=lambda: f"its liveness still {last}; its log:\n{host.current_log()[-2000:]}")


def restart_with_pullers_mid_round(host, peers, round_interval=SLOW_ROUND):
    """Restart `host`'s marsd with a round every `round_interval` seconds while
    `peers` are down: its pullers to them fail once and reconnect after the
    first backoff (half a round), so from then on they pull in the middle of
    its rounds, not right after them. `peers` run again afterwards."""
    for each in (host, *peers):
        each.stop()
    host.start(f"--round-interval={round_interval}")
    host.wait_serving()
    for peer in peers:
        wait_until(lambda: f"{peer.address}:7777 unreachable" in host.current_log(),
                   what=f"{host.name} failing to reach {peer.name}",
                   show=lambda: host.current_log()[-2000:])
    start_all(*peers)
    for peer in peers:
        wait_until(lambda: f"peer {peer.name} ({peer.address}) reachable again"
                   in host.current_log(), what=f"{host.name} reaching {peer.name} again",
                   show=lambda: host.current_log()[-2000:])

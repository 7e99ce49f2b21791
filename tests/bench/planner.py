"""The planner on the original platform's size, no hosts: a synthetic fleet
of 1,000 hosts (500 clusters of two, each host in its own failure domain)
and 14,000 containers spread unevenly; the time for a 20-move balance plan
(aim: under 10 s), for the evacuation plan of one cluster, and the memory
(the model's and the planning's allocations by tracemalloc, the process's
peak RSS).

    python -m tests.bench.planner [HOSTS] [CONTAINERS]"""

import random
import resource
import sys
import time
import tracemalloc

from football.planner import (Fleet, FleetHost, Resource, Settings, plan_balance,
                              plan_evacuation, score)

GIB = 1 << 30


def synthetic_fleet(hosts=1000, containers=14000, seed=13):
    """Clusters of two hosts; each cluster's share of the containers skewed
    (some crowded, some nearly empty), primaries split unevenly between
    its two hosts; memory, load and LV sizes drawn per container."""
    rng = random.Random(seed)
    clusters = hosts // 2
    weights = [rng.choice([0.2, 0.5, 1.0, 1.0, 1.5, 2.0]) for _ in range(clusters)]
    total = sum(weights)
    counts = [int(containers * weight / total) for weight in weights]
    for number in range(containers - sum(counts)):
        counts[number % clusters] += 1
    resources, used, memory, load, primaries = {}, {}, {}, {}, {}
    names = []
    for cluster, count in enumerate(counts):
        pair = (f"c{cluster:03d}-hv1", f"c{cluster:03d}-hv2")
        names += pair
        lean = rng.uniform(0.3, 0.9)        # the part of the cluster's primaries on hv1
        for _ in range(count):
            res = f"vm{len(resources):05d}"
            first = rng.random() < lean
            primary, secondary = pair if first else pair[::-1]
            resources[res] = Resource(res, primary, (secondary,),
                                      lv_size=rng.randint(20, 200) * GIB,
                                      memory=rng.randint(2, 12) * GIB,
                                      load=rng.uniform(0.2, 3.0))
            for name in pair:
                used[name] = used.get(name, 0) + resources[res].lv_size
            memory[primary] = memory.get(primary, 0) + resources[res].memory
            load[primary] = load.get(primary, 0.0) + resources[res].load
            primaries[primary] = primaries.get(primary, 0) + 1
    fleet_hosts = {}
    for name in names:
        vg_size = max(16 << 40, used.get(name, 0) + (2 << 40))
        fleet_hosts[name] = FleetHost(
            name, cluster=name.split("-")[0], failure_domain=f"rack-{name}",
            vg_size=vg_size, vg_free=vg_size - used.get(name, 0),
            mem_total=1024 * GIB, mem_free=1024 * GIB - 16 * GIB - memory.get(name, 0),
            cpus=128, load=1.0 + load.get(name, 0.0), max_containers=60)
    return Fleet(fleet_hosts, resources)


def main():
    hosts = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    containers = int(sys.argv[2]) if len(sys.argv) > 2 else 14000
    settings = Settings(max_moves=20)
    started = time.perf_counter()
    fleet = synthetic_fleet(hosts, containers)
    built = time.perf_counter() - started
    started = time.perf_counter()
    before = score(fleet, settings).total
    scored = time.perf_counter() - started
    print(f"fleet: {len(fleet.hosts)} hosts, {len(fleet.resources)} containers "
          f"(built in {built:.2f} s); score {before:.4f} (computed in {scored:.3f} s)")

    started, cpu = time.perf_counter(), time.process_time()
    plan = plan_balance(fleet, settings, now=time.time())
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    kinds = {kind: sum(move.kind == kind for move in plan.moves)
             for kind in ("handover", "migrate")}
    print(f"balance: {len(plan.moves)} moves ({kinds['handover']} handovers, "
          f"{kinds['migrate']} migrations, {plan.sync_bytes / (1 << 40):.2f} TiB to sync) "
          f"in {seconds:.2f} s ({cpu:.2f} s CPU; {seconds / max(1, len(plan.moves)):.3f} s "
          f"per move); "
          f"score {plan.score_before:.4f} -> {plan.score_after:.4f}")

    cluster = sorted(fleet.hosts)[:2]
    started, cpu = time.perf_counter(), time.process_time()
    evacuation = plan_evacuation(fleet, cluster, settings, time.time())
    print(f"evacuate {' '.join(cluster)}: {len(evacuation.moves)} moves planned in "
          f"{time.perf_counter() - started:.2f} s ({time.process_time() - cpu:.2f} s CPU)")

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss     # KiB on Linux
    # tracemalloc slows Python several times: measured on a fresh fleet and
    # a 2-move plan (the search's memory does not grow with the moves)
    tracemalloc.start()
    fleet = synthetic_fleet(hosts, containers)
    model, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    plan_balance(fleet, Settings(max_moves=2), now=time.time())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"memory: the fleet model {model / (1 << 20):.1f} MiB, planning's peak "
          f"{(peak - model) / (1 << 20):.1f} MiB beyond it (tracemalloc); peak RSS of the "
          f"process {rss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()

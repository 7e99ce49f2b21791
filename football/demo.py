"""`football lab demo` (what `make demo` runs): bring the lab up, migrate
the demo container to the other cluster while its workload writes, and show
what happened — sync throughput, downtime as Football measured it and as the
workload saw it, and that every record written before the stop is there
after the move, with the sequence going on."""

import time

from football.config import Config
from football.hooks import Hooks, hookimpl, plugin_manager
from football.ops.base import Context
from football.ops.migrate import Migrate
from football.report import Reporter, sync_phrase
from football.hostside.container import WORKLOAD_LOG

# The workload writes a record a moment: the demo waits for a few before the
# move and for its first after it, polling, at most WRITES_WAIT seconds (a
# fixed 2 s sleep saw none after the move on a loaded machine: "wrote nothing")
RECORDS_BEFORE, WRITES_WAIT, POLL = 5, 60.0, 0.2


def parse_workload_log(text):
    """[(sequence number, uptime)] of the workload's records
    (`<seq> <epoch> <uptime>` per line, templates/lab/workload.sh)."""
    records = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3:
            records.append((int(parts[0]), float(parts[2])))
    return records


def workload_records(host, res):
    """The workload's records on the volume mounted on `host`, read there."""
    path = f"{host.mountpoint(res)}/rootfs{WORKLOAD_LOG}"
    return parse_workload_log(host.run(["cat", path]).stdout)


def verify(before, after):
    """Problems in the records: any record of `before` missing or changed in
    `after`, a missing or repeated sequence number, no progress after."""
    problems = []
    if not before:
        problems.append("no records were read at the stop")
    if after[:len(before)] != before:
        problems.append("records written before the move differ after it")
    for (one, _), (two, _) in zip(after, after[1:]):
        if two != one + 1:
            problems.append(f"sequence jumps from {one} to {two}")
    if len(after) <= len(before):
        problems.append("the workload wrote nothing after the move")
    return problems


class StopWitness:
    """A plugin that reads the workload's records right after the container
    stopped on a host (its volume still mounted): exactly what was written
    before the stop."""

    def __init__(self, res):
        self.res, self.records = res, None

    @hookimpl(wrapper=True)
    def container_stop(self, host, res):
        result = yield
        if res == self.res and self.records is None:
            self.records = workload_records(host, res)
        return result


def records_until(enough, host, res):
    """The workload's records on `host` once `enough(records)`, or as they
    are after WRITES_WAIT (what they lack is then said by `verify`)."""
    deadline = time.monotonic() + WRITES_WAIT
    while not enough(records := workload_records(host, res)) and time.monotonic() < deadline:
        time.sleep(POLL)
    return records


def run_demo(the_lab, echo, as_json=False):
    """Bring the lab up, migrate the demo container to the other cluster,
    print the summary; True when the data checks out."""
    the_lab.up()
    inv = the_lab.fleet()
    res = inv.demo["resource"]
    config = Config()
    config.default("state_dir", the_lab.controller_dir, "the lab's")
    witness = StopWitness(res)
    hooks = Hooks(plugin_manager(extra=[witness], plugin_dirs=config.plugin_dirs), config=config)
    hooks.apply_host_layout(inv)
    ctx = Context(inventory=inv, config=config, hooks=hooks, reporter=Reporter(as_json=as_json),
                  yes=True)
    source = inv.host(the_lab.primary_of(res))
    target = next(name for name in inv.clusters if name != source.cluster)
    records_until(lambda records: len(records) >= RECORDS_BEFORE, source, res)
    echo(f"\n{res} runs on {source.name} ({source.cluster}); its workload has written "
         f"{len(workload_records(source, res))} records. Migrating it to {target} "
         "while it writes:\n")
    started = time.monotonic()
    summary = Migrate(ctx, res, target).run()
    total = time.monotonic() - started
    new_home = inv.host(the_lab.primary_of(res))
    before = witness.records or []
    after = records_until(lambda records: len(records) > len(before), new_home, res)
    problems = verify(before, after)
    gap = after[len(before)][1] - before[-1][1] if before and len(after) > len(before) else 0.0
    lines = [
        "",
        f"demo summary: {res} moved from {source.name} to {new_home.name} ({target}) "
        f"in {total:.1f} s",
        f"  sync:      {sync_phrase(summary)}",
        f"  downtime:  {summary['downtime_seconds']:.2f} s measured by Football "
        f"(stop begins -> running on {new_home.name})",
        f"             {gap:.2f} s gap seen by the workload (its last record before the "
        "stop -> its first after)",
        "  phases:    " + ", ".join(f"{name} {value:.1f} s"
                                    for name, value in summary["phases"].items()),
        (f"  data:      all {len(before)} records written before the stop are present after "
         f"the move, unchanged; the sequence continues without a gap to {after[-1][0]}")
        if not problems else f"  DATA PROBLEMS: {'; '.join(problems)}",
        "",
        "The lab keeps running: `football lab status`, "
        f"`football lab exec {new_home.name} -- marsadm view {res}`, "
        f"`football migrate {res} {source.cluster}` to move it back; "
        "`football lab down` removes it all.",
    ]
    for line in lines:
        echo(line)
    return not problems

"""Prometheus metrics of one marsd, served on `<host address>:<port>/metrics`."""

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        labels = ["resource"]
        self.logged = Counter("mars_logged_bytes", "Payload bytes appended to logfiles (primary)",
                              labels, registry=self.registry)
        self.fetched = Counter("mars_fetched_bytes", "Logfile bytes fetched from the source",
                               labels, registry=self.registry)
        self.replayed = Counter("mars_replayed_bytes", "Payload bytes replayed onto the disk",
                                labels, registry=self.registry)
        self.synced = Counter("mars_synced_bytes", "Disk bytes received by full sync",
                              labels, registry=self.registry)
        self.lag = Gauge("mars_work_rest_bytes", "Bytes still to fetch and replay (secondary)",
                         labels, registry=self.registry)
        self.steps = Counter("mars_worker_steps", "Steps of the resource's worker (an idle "
                             "resource takes few: it waits for news)", labels,
                             registry=self.registry)
        self.errors = Counter("mars_errors", "Data plane errors (network, disk, protocol)",
                              labels, registry=self.registry)

    def serve(self, port, address):
        start_http_server(port, addr=address, registry=self.registry)

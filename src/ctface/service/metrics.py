"""``/metrics`` in the Prometheus text format (prometheus-client, one registry per app):
requests by route, method and status, a latency histogram by route, the worker queue's depth
and capacity, and refusals and failures by error code."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)


class Metrics:
    def __init__(self, queue_depth: Callable[[], int], capacity: int, workers: int) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("ctface_requests", "HTTP requests answered",
                                ["route", "method", "status"], registry=r)  # fmt: skip
        self.latency = Histogram("ctface_request_seconds", "Time to answer a request",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.failures = Counter("ctface_failures", "Requests answered with an error, by code",
                                ["code"], registry=r)  # fmt: skip
        depth = Gauge("ctface_queue_depth", "Heavy requests running or waiting for a worker",
                      registry=r)  # fmt: skip
        depth.set_function(lambda: float(queue_depth()))
        Gauge("ctface_queue_capacity", "Heavy requests admitted at once (then 503)",
              registry=r).set(capacity)  # fmt: skip
        Gauge("ctface_workers", "Worker processes holding the model", registry=r).set(workers)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def failure(self, code: str) -> None:
        self.failures.labels(code).inc()

    def text(self) -> bytes:
        return generate_latest(self.registry)

"""Prometheus metrics of ``aios up`` (served at ``/metrics``, text exposition format 0.0.4).

- ``aios_http_requests_total{method, route, status}`` and
  ``aios_http_request_duration_seconds{method, route}`` (histogram): the API's requests by
  route template (``/api/v1/devices/{device_id}``; ``unmatched`` for unknown paths).
- ``aios_mqtt_messages_ingested_total``, ``aios_mqtt_messages_refused_total{reason}``.
- ``aios_websocket_clients{channel}`` (``devices``, ``notifications``, ``pipelines``),
  ``aios_websocket_messages_dropped_total``, ``aios_websocket_clients_dropped_total``.
- ``aios_runs_active``: pipeline runs starting, running or stopping.
- ``aios_devices{status}``: devices by derived status (online, warning, offline).

Gauges read their sources when scraped; a source that fails is logged and left out of that
scrape rather than failing it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

# Seconds: 5 ms to 10 s, the range of an API call that reads or writes a few records.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class IngestCounts:
    """MQTT messages the ingester stored, and refused by reason."""

    ingested: int
    refused: Mapping[str, int]


@dataclass
class Sources:
    """Where the scraped gauges and counters come from (each optional)."""

    websocket_clients: Callable[[], Mapping[str, int]] | None = None
    websocket_dropped: Callable[[], tuple[int, int]] | None = None
    """(messages dropped, clients dropped)."""
    ingest: Callable[[], IngestCounts] | None = None
    active_runs: Callable[[], int] | None = None
    devices_by_status: Callable[[], Mapping[str, int]] | None = None


class _SourcesCollector(Collector):
    def __init__(self, sources: Sources) -> None:
        self.sources = sources

    def collect(self) -> Iterator[Metric]:
        s = self.sources
        yield from self._safe("websocket_clients", self._websocket, s)
        yield from self._safe("ingest", self._ingest, s)
        yield from self._safe("active_runs", self._runs, s)
        yield from self._safe("devices_by_status", self._devices, s)

    @staticmethod
    def _safe(
        name: str, collect: Callable[[Sources], Iterator[Metric]], sources: Sources
    ) -> Iterator[Metric]:
        try:
            metrics = list(collect(sources))
        except Exception:
            log.warning("metrics source failed", extra={"source": name}, exc_info=True)
            return
        yield from metrics

    @staticmethod
    def _websocket(s: Sources) -> Iterator[Metric]:
        if s.websocket_clients is not None:
            gauge = GaugeMetricFamily(
                "aios_websocket_clients", "Connected WebSocket clients.", labels=["channel"]
            )
            by_kind = {"devices": 0, "notifications": 0, "pipelines": 0}
            for channel, count in s.websocket_clients().items():
                kind = channel.split("/", 1)[0]
                by_kind[kind] = by_kind.get(kind, 0) + count
            for kind, count in sorted(by_kind.items()):
                gauge.add_metric([kind], count)
            yield gauge
        if s.websocket_dropped is not None:
            messages, clients = s.websocket_dropped()
            yield CounterMetricFamily(
                "aios_websocket_messages_dropped",
                "Messages not delivered because the client was too slow.",
                value=messages,
            )
            yield CounterMetricFamily(
                "aios_websocket_clients_dropped",
                "WebSocket clients disconnected for being too slow.",
                value=clients,
            )

    @staticmethod
    def _ingest(s: Sources) -> Iterator[Metric]:
        if s.ingest is None:
            return
        counts = s.ingest()
        yield CounterMetricFamily(
            "aios_mqtt_messages_ingested", "MQTT messages stored.", value=counts.ingested
        )
        refused = CounterMetricFamily(
            "aios_mqtt_messages_refused", "MQTT messages refused, by reason.", labels=["reason"]
        )
        for reason, count in sorted(counts.refused.items()):
            refused.add_metric([reason], count)
        yield refused

    @staticmethod
    def _runs(s: Sources) -> Iterator[Metric]:
        if s.active_runs is None:
            return
        yield GaugeMetricFamily(
            "aios_runs_active",
            "Pipeline runs starting, running or stopping.",
            value=s.active_runs(),
        )

    @staticmethod
    def _devices(s: Sources) -> Iterator[Metric]:
        if s.devices_by_status is None:
            return
        gauge = GaugeMetricFamily("aios_devices", "Devices by status.", labels=["status"])
        counts = {"online": 0, "warning": 0, "offline": 0} | dict(s.devices_by_status())
        for status, count in sorted(counts.items()):
            gauge.add_metric([status], count)
        yield gauge


class Metrics:
    """The metrics of one ``aios up`` process, in their own registry."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, sources: Sources | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.sources = sources or Sources()
        self.http_requests = Counter(
            "aios_http_requests",
            "HTTP requests to the API, by route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_duration = Histogram(
            "aios_http_request_duration_seconds",
            "Time to answer an API request, seconds.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_SourcesCollector(self.sources))

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one API request (an :data:`~aios.up.adapter.RequestObserver`)."""
        self.http_requests.labels(method, route, str(status)).inc()
        self.http_duration.labels(method, route).observe(seconds)

    def render(self) -> bytes:
        """The current values in the Prometheus text format."""
        return generate_latest(self.registry)

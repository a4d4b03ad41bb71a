"""``aios up``: the whole service on one machine.

The REST API (the same Powertools handler API Gateway serves, behind a thin local HTTP
adapter), live WebSocket feeds, an MQTT broker (embedded, or an external one by URL), the
MQTT ingester, the local run launcher and a background scheduler, with data under one
folder. Modules:

- :mod:`aios.up.adapter` — HTTP request → API Gateway REST proxy event → HTTP response.
- :mod:`aios.up.feed` — the WebSocket :class:`~aios.services.Feed`.
- :mod:`aios.up.broker` — the embedded broker and the MQTT :class:`~aios.services.DeviceLink`.
- :mod:`aios.up.bootstrap` — settings loading and :func:`~aios.up.bootstrap.build_services`.
- :mod:`aios.up.metrics` — Prometheus metrics.
- :mod:`aios.up.logging` — one JSON object per log line.
- :mod:`aios.up.server` — the process: start, serve, shut down.
"""

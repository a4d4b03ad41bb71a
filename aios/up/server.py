"""The ``aios up`` process: start everything, serve, shut down without losing anything.

Start, in order: logging; the HTTP socket is bound (so a busy port fails before anything
else starts); the embedded MQTT broker (unless ``broker_url`` names an external one); the
store, feed, device link and run launcher (:func:`aios.up.bootstrap.build_services`); runs
a previous process left active are marked failed (``PipelineRuns.recover``); the MQTT
ingester; with the embedded broker, every device's desired configuration is published
again, retained (the broker keeps retained messages in memory only); the local connector
(``local_connector``); with ``demo``, the demo site (:mod:`aios.up.demo`: its PLC is
started right after the HTTP socket and stopped last, its connector is the local one, then
its devices are placed and its pipeline played); the first admin account when there is
no account (its password is printed once, on standard output); the scheduler (every
``SCHEDULER_INTERVAL_SECONDS``: device status transitions and alerts, command timeouts;
and, on a thread of its own, at once and then every ``TELEMETRY_PRUNE_INTERVAL_SECONDS``:
telemetry older than ``telemetry_retention_days`` is pruned); then the HTTP server.

HTTP: ``/api/v1/…``, ``/docs`` and ``/openapi.json`` go to the API handler through
:class:`~aios.up.adapter.ApiGatewayAdapter`; ``/ws/…`` are the live feeds; ``/healthz``
answers ``{"status": "ok"|"unavailable", "checks": {...}}`` (200 or 503); ``/metrics`` is
Prometheus' text format; ``/`` serves the built console (``web/dist``, with fallback to
``index.html`` for the console's own routes) or, without it, a JSON index of the above. Every
request's ``Host`` must be one of ``allowed_hosts``.

Shutdown on SIGINT or SIGTERM: stop accepting connections, finish the requests in progress
(up to ``GRACEFUL_SHUTDOWN_SECONDS``), close the feeds, then stop the scheduler, the
ingester (after storing every message it received), the runs, the device link (after the
broker acknowledged what it was sent), the store and the broker. Exit status 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import signal
import socket
import ssl
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from aios.domain import utcnow
from aios.fleet.service import FleetService
from aios.runs.local import LocalRunLauncher
from aios.store.port import Store
from aios.up.adapter import ApiGatewayAdapter, HostCheckMiddleware
from aios.up.bootstrap import ConfigError, UpSettings, build_services
from aios.up.broker import BrokerAddress, EmbeddedBroker, MqttDeviceLink
from aios.up.feed import WebSocketFeed
from aios.up.logs import configure_logging
from aios.up.metrics import IngestCounts, Metrics, Sources

log = logging.getLogger(__name__)

SCHEDULER_INTERVAL_SECONDS = 5.0
TELEMETRY_PRUNE_INTERVAL_SECONDS = 3600.0
GRACEFUL_SHUTDOWN_SECONDS = 10
HTTP_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
EXIT_OK = 0
EXIT_FAILED = 1


class StartError(Exception):
    """``aios up`` could not start; the message says what to change."""


# --------------------------------------------------------------------------- pieces


class Scheduler:
    """Calls each job every ``interval`` seconds on one background thread.

    A job that raises is logged and called again at the next tick.
    """

    def __init__(
        self,
        jobs: list[tuple[str, Callable[[], Any]]],
        interval: float = SCHEDULER_INTERVAL_SECONDS,
        *,
        name: str = "scheduler",
    ) -> None:
        self.jobs = jobs
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        """Start ticking (the first tick runs at once)."""
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            for name, job in self.jobs:
                if self._stop.is_set():
                    return
                try:
                    job()
                except Exception:
                    log.exception("scheduled job failed", extra={"job": name})
            self._stop.wait(self.interval)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the job in progress (waiting up to ``timeout`` seconds)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)


def telemetry_pruner(
    store: Store, retention_days: float, clock: Callable[[], datetime] = utcnow
) -> Callable[[], int]:
    """The scheduled job of telemetry retention: each call prunes the samples older than
    ``retention_days`` before ``clock()`` (:meth:`~aios.store.port.TelemetryStore.prune`),
    logs how many were deleted, and returns that count. Raises what the store raises (the
    :class:`Scheduler` logs it and tries again at the next tick); ValueError at once for
    a ``retention_days`` that is not positive."""
    if not retention_days > 0:
        raise ValueError(f"telemetry_retention_days must be positive, got {retention_days}")
    retention = timedelta(days=retention_days)

    def prune() -> int:
        before = clock() - retention
        deleted = store.telemetry.prune(before)
        log.info(
            "telemetry pruned",
            extra={"deleted": deleted, "before": before.isoformat(), "days": retention_days},
        )
        return deleted

    return prune


def default_web_dir() -> Path:
    """``web/dist`` beside the ``aios`` package (where the console's build lands)."""
    return Path(__file__).resolve().parents[2] / "web" / "dist"


def _spa_endpoint(web_dir: Path) -> Callable[[Request], Any]:
    """Serve files of ``web_dir``; paths that are not files get ``index.html`` (the console
    routes them), unless they look like a file (a dot in the last segment): 404."""
    root = web_dir.resolve()
    index = root / "index.html"

    async def serve(request: Request) -> Response:
        relative = request.path_params.get("path", "")
        candidate = (root / relative).resolve()
        if candidate.is_relative_to(root) and candidate.is_file():
            return FileResponse(candidate)
        if "." in relative.rsplit("/", 1)[-1]:
            return JSONResponse(
                {"error": {"code": "not_found", "message": f"no file /{relative}"}},
                status_code=404,
            )
        return FileResponse(index, headers={"Cache-Control": "no-cache"})

    return serve


def explained(probe: Callable[[], bool], reason: str) -> Callable[[], bool]:
    """``probe``, raising :class:`ProbeFailed` with ``reason`` when it answers False."""

    def check() -> bool:
        if not probe():
            raise ProbeFailed(reason)
        return True

    return check


class ProbeFailed(Exception):
    """A health probe's part does not work; the message says how (shown in /healthz)."""


@dataclass
class HealthCheck:
    """What ``/healthz`` checks: each probe returns whether its part works."""

    probes: dict[str, Callable[[], bool]] = field(default_factory=dict)

    def run(self) -> tuple[bool, dict[str, dict[str, Any]]]:
        """Run every probe; return (all ok, per-probe ``{"ok": bool, "error"?: str}``)."""
        results: dict[str, dict[str, Any]] = {}
        for name, probe in self.probes.items():
            try:
                ok = bool(probe())
                results[name] = {"ok": ok}
            except ProbeFailed as err:
                results[name] = {"ok": False, "error": str(err)}
            except Exception as err:
                log.warning("health probe failed", extra={"probe": name}, exc_info=True)
                results[name] = {"ok": False, "error": type(err).__name__}
        return all(r["ok"] for r in results.values()), results


def build_http_app(
    *,
    adapter: ApiGatewayAdapter,
    feed: WebSocketFeed,
    metrics: Metrics,
    health: HealthCheck,
    allowed_hosts: list[str],
    web_dir: Path | None = None,
    on_started: Callable[[], None] | None = None,
) -> Starlette:
    """The Starlette application of ``aios up`` (see the module doc for its routes).

    ``web_dir``: the built console, or ``None`` (``/`` then answers a JSON index).
    ``on_started``: called once the application's lifespan started.
    """

    async def healthz(_request: Request) -> JSONResponse:
        ok, checks = await asyncio.to_thread(health.run)
        return JSONResponse(
            {"status": "ok" if ok else "unavailable", "checks": checks},
            status_code=200 if ok else 503,
        )

    async def metrics_endpoint(_request: Request) -> Response:
        body = await asyncio.to_thread(metrics.render)
        return Response(body, media_type=metrics.content_type)

    async def index(_request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "name": "AIOS",
                "api": "/api/v1",
                "docs": "/docs",
                "openapi": "/openapi.json",
                "health": "/healthz",
                "metrics": "/metrics",
                "feeds": ["/ws/devices", "/ws/notifications", "/ws/pipelines/{pipeline_id}"],
            }
        )

    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        *feed.routes(),
        Route("/api/{rest:path}", adapter.endpoint, methods=HTTP_METHODS),
        Route("/docs", adapter.endpoint, methods=HTTP_METHODS),
        Route("/openapi.json", adapter.endpoint, methods=HTTP_METHODS),
    ]
    has_console = web_dir is not None and (web_dir / "index.html").is_file()
    if has_console and web_dir is not None:
        spa = _spa_endpoint(web_dir)
        routes += [
            Route("/", spa, methods=["GET", "HEAD"]),
            Route("/{path:path}", spa, methods=["GET", "HEAD"]),
        ]
    else:
        routes += [
            Route("/", index, methods=["GET", "HEAD"]),
            Route("/{path:path}", adapter.endpoint, methods=HTTP_METHODS),
        ]

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        feed.attach(asyncio.get_running_loop())
        if on_started is not None:
            on_started()
        try:
            yield
        finally:
            await feed.close()
            await asyncio.to_thread(adapter.close)

    return Starlette(
        routes=routes,
        middleware=[Middleware(HostCheckMiddleware, allowed_hosts=allowed_hosts or ["*"])],
        lifespan=lifespan,
    )


class _Server(uvicorn.Server):
    """uvicorn's server, except that after a graceful stop on SIGINT/SIGTERM it does not
    re-raise the signal (``aios up`` shuts the rest down and exits 0)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free one).

    Raises:
        StartError: the address is in use or cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP;
    # without it, responses written in two parts wait for delayed ACKs (some 40 ms each).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as err:
        sock.close()
        raise StartError(
            f"cannot listen on {host}:{port}: {err.strerror}; choose another port "
            "(--port or AIOS_PORT) or stop what uses it"
        ) from err
    sock.set_inheritable(True)
    return sock


def _display_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def demo_lines(base: str, plc_port: int, password: str | None, *, playing: bool) -> list[str]:
    """What ``aios up --demo`` tells people last: where to sign in, with the first
    admin's password when it was created by this start (``None``: an earlier one).
    ``playing``: whether the demo pipeline runs (else the console's Pipelines page says
    why it could not start)."""
    from aios.api.auth import FIRST_ADMIN_USERNAME

    state = (
        "is playing on the demo camera"
        if playing
        else "could not start (see the log above, or Pipelines in the console)"
    )
    lines = [
        "",
        f"Demo site: the intrusion pipeline {state};",
        f"its siren is coil 0 of the simulated PLC on 127.0.0.1:{plc_port}.",
        f"Open {base}/ and sign in:",
        f"  username: {FIRST_ADMIN_USERNAME}",
    ]
    if password is not None:
        lines.append(f"  password: {password}")
    else:
        lines.append("  (its password was shown when this data folder was first used)")
    return lines


def _ingest_counts(stats: dict[str, int]) -> IngestCounts:
    from aios.fleet.ingest import REASONS

    refused = {r: stats.get(r, 0) for r in REASONS if r != "accepted"}
    return IngestCounts(ingested=stats.get("accepted", 0), refused=refused)


def republish_desired_configs(fleet: FleetService, link: MqttDeviceLink) -> int:
    """Publish every device's desired configuration again, retained.

    The embedded broker keeps retained messages in memory only: after a restart, devices
    subscribing to ``cfg/aios/{id}/desired`` would otherwise find nothing. Waits up to 10 s
    for the link to connect; returns how many configurations were published.
    """
    link.start(wait=10.0)
    published = 0
    cursor: str | None = None
    try:
        while True:
            page = fleet.store.devices.list(limit=500, cursor=cursor)
            for device in page.items:
                if device.desired_version >= 1 and fleet.publish_desired_config(device):
                    published += 1
            cursor = page.next_cursor
            if cursor is None:
                break
    except Exception:  # the store closed (shutdown during start) or failed: logged
        log.exception("publishing desired configurations again failed")
    if published:
        log.info("desired configurations published again", extra={"count": published})
    return published


def _quietly(name: str, close: Callable[[], Any]) -> Callable[[], None]:
    def run() -> None:
        try:
            close()
        except Exception:
            log.exception("shutdown step failed", extra={"step": name})
        else:
            log.info("shutdown step done", extra={"step": name})

    return run


# --------------------------------------------------------------------------- the process


def serve(settings: UpSettings, *, out: TextIO | None = None) -> int:
    """Run ``aios up`` with ``settings`` until SIGINT/SIGTERM; return the exit status.

    ``out`` receives what people read (URLs, the first admin's password); logs go to
    standard error.

    Raises:
        StartError, ConfigError: something could not start (nothing is left running).
    """
    out = out or sys.stdout
    configure_logging(settings.log_level)
    from aios.api.app import create_app
    from aios.api.auth import FIRST_ADMIN_USERNAME, ensure_first_admin
    from aios.fleet.ingest import MqttIngester
    from aios.runs.service import PipelineRuns

    with contextlib.ExitStack() as stack:
        sock = bind_socket(settings.host, settings.port)
        stack.callback(sock.close)
        http_port = sock.getsockname()[1]

        demo = None
        connector_file = settings.local_connector
        if settings.demo:
            from aios.up.demo import DemoError, start_demo_site

            if connector_file is not None:
                raise StartError(
                    "the demo runs its own connector: give --demo or --connector "
                    "(AIOS_LOCAL_CONNECTOR), not both"
                )
            try:
                demo = start_demo_site(Path(settings.data_dir), settings.demo_plc_port)
            except DemoError as err:
                raise StartError(str(err)) from err
            stack.callback(_quietly("demo PLC", demo.stop))  # stopped last
            connector_file = demo.connector_file

        broker: EmbeddedBroker | None = None
        embedded: BrokerAddress | None = None
        if not settings.broker_url:
            broker = EmbeddedBroker(settings.broker_host, settings.broker_port)
            try:
                broker.start()
            except Exception as err:
                raise StartError(str(err)) from err
            stack.callback(_quietly("broker", broker.stop))
            embedded = broker.address

        services, closers = build_services(settings, broker=embedded)
        for name, close in reversed(closers):
            stack.callback(_quietly(name, close))
        link = services.link
        assert isinstance(link, MqttDeviceLink)

        recovered = PipelineRuns(services).recover()
        if recovered:
            log.warning(
                "runs left active by the previous process marked failed",
                extra={"runs": [r.id for r in recovered]},
            )
        launcher = services.launcher
        if isinstance(launcher, LocalRunLauncher):
            pruned = launcher.prune_edge_plans()
            if pruned:
                log.warning(
                    "stream plans of runs that are no longer active removed from connectors",
                    extra={"plans": pruned},
                )

        fleet = FleetService(services)
        address = link.address
        ingester = MqttIngester(
            fleet,
            host=address.host,
            port=address.port,
            client_id="aios-ingest-"
            + hashlib.sha256(str(Path(settings.data_dir).resolve()).encode()).hexdigest()[:8],
            tls=ssl.create_default_context() if address.tls else None,
            username=address.username,
            password=address.password,
        )
        ingester.start()
        stack.callback(_quietly("ingester", ingester.stop))
        if broker is not None:
            threading.Thread(
                target=republish_desired_configs,
                args=(fleet, link),
                name="republish-desired",
                daemon=True,
            ).start()

        if connector_file is not None:
            from aios.up.local_connector import LocalConnectorError, start_local_connector

            try:
                local = start_local_connector(connector_file, fleet, address)
            except LocalConnectorError as err:
                raise StartError(str(err)) from err
            # stopped before the ingester and the broker: its last messages are delivered
            stack.callback(_quietly("local connector", lambda: local.stop(flush_timeout=5.0)))
        demo_playing = demo.finish(services, fleet) if demo is not None else False

        password = ensure_first_admin(services)
        if password is not None:
            # Printed at once: were the start to fail later, the account would be locked out.
            out.write(
                "First admin account created; its password is shown only this once:\n"
                f"  username: {FIRST_ADMIN_USERNAME}\n"
                f"  password: {password}\n"
            )
            out.flush()

        scheduler = Scheduler(
            [("fleet.evaluate", fleet.evaluate), ("fleet.expire_commands", fleet.expire_commands)]
        )
        # On its own thread: a long prune (the first after a while) delays no fleet job.
        pruner = Scheduler(
            [
                (
                    "telemetry.prune",
                    telemetry_pruner(
                        services.store, settings.telemetry_retention_days, services.clock
                    ),
                )
            ],
            interval=TELEMETRY_PRUNE_INTERVAL_SECONDS,
            name="telemetry-prune",
        )
        scheduler.start()
        pruner.start()

        def stop_schedulers() -> None:
            pruner.stop(timeout=5.0)
            scheduler.stop()

        stack.callback(_quietly("scheduler", stop_schedulers))

        feed = services.feed
        assert isinstance(feed, WebSocketFeed)
        metrics = Metrics(
            Sources(
                websocket_clients=feed.client_counts,
                websocket_dropped=lambda: (
                    feed.stats.messages_dropped,
                    feed.stats.clients_dropped,
                ),
                ingest=lambda: _ingest_counts(ingester.stats),
                active_runs=lambda: len(services.store.runs.list_active()),
                devices_by_status=lambda: {
                    "online": (s := fleet.summary()).online,
                    "warning": s.warning,
                    "offline": s.offline,
                },
            )
        )
        health = HealthCheck(
            {
                "store": lambda: services.store.users.count() >= 0,
                "broker": explained(link.is_connected, f"not connected to {address.url}"),
                "ingester": explained(
                    lambda: ingester.wait_subscribed(0), "not subscribed to device topics"
                ),
            }
        )
        adapter = ApiGatewayAdapter(create_app(services), observe=metrics.observe_request)
        web_dir = settings.web_dir or default_web_dir()
        has_console = (web_dir / "index.html").is_file()
        if settings.web_dir is not None and not has_console:
            log.warning(
                "AIOS_WEB_DIR has no index.html: the console is not served",
                extra={"web_dir": str(web_dir)},
            )
        base = f"http://{_display_host(settings.host)}:{http_port}"

        def announce() -> None:
            lines = [
                "AIOS is up.",
                f"  API:      {base}/api/v1",
                f"  Docs:     {base}/docs",
                f"  Console:  {base}/",
                f"  Health:   {base}/healthz",
                f"  MQTT:     {address.url}",
                f"  Data:     {Path(settings.data_dir).resolve()}",
            ]
            if demo is not None:
                lines += demo_lines(base, demo.plc_port, password, playing=demo_playing)
            out.write("\n".join(lines) + "\n")
            out.flush()

        app = build_http_app(
            adapter=adapter,
            feed=feed,
            metrics=metrics,
            health=health,
            allowed_hosts=settings.allowed_hosts,
            web_dir=web_dir if has_console else None,
            on_started=announce,
        )
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=http_port,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
            server_header=False,
            # The client address is the socket's peer: X-Forwarded-For from any client
            # (loopback included) would let it pick its address for the login rate
            # limit and the audit log. Behind a reverse proxy, rate limits are per proxy.
            proxy_headers=False,
        )
        server = _Server(config)
        log.info("serving", extra={"url": base})
        asyncio.run(server.serve(sockets=[sock]))
        log.info("stopping", extra={"signals": [int(s) for s in server._captured_signals]})
    log.info("stopped")
    return EXIT_OK


def main(
    config_file: Path | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
    data_dir: Path | None = None,
    local_connector: Path | None = None,
    demo: bool | None = None,
    out: TextIO | None = None,
) -> int:
    """Load settings (see :mod:`aios.up.bootstrap`) and :func:`serve`; return the exit
    status (1, with the reason on standard error, when it cannot start)."""
    from aios.up.bootstrap import load_settings

    try:
        settings = load_settings(
            config_file,
            host=host,
            port=port,
            data_dir=data_dir,
            local_connector=local_connector,
            demo=demo,
        )
        return serve(settings, out=out)
    except (ConfigError, StartError) as err:
        sys.stderr.write(f"error: {err}\n")
        return EXIT_FAILED
    except Exception as err:  # logged with its traceback; the terminal gets one line
        log.exception("aios up failed")
        sys.stderr.write(f"error: aios up failed: {type(err).__name__}: {err}\n")
        return EXIT_FAILED

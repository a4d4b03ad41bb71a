"""Play and Stop of stored pipelines: the run records, and the messages about them.

:class:`PipelineRuns` is what the API calls for ``POST pipelines/{id}/execute`` and
``POST pipelines/{id}/stop``. It checks the stored revision, keeps at most one active run
per pipeline, writes the :class:`~aios.domain.Run` record and hands the run to the
process's :class:`~aios.services.RunLauncher` (local threads in ``aios up``, the lifecycle
state machine in the cloud), which writes the run's progress to the same record.

Run status goes ``starting`` → ``running`` → ``stopping`` → ``stopped`` (Stop), or ends
``succeeded`` (its sources ended) or ``failed`` (``error`` says why). Every change is
published on the feed channel ``pipelines/{pipeline_id}``:

- ``{"type": "run.status", "pipeline_id", "run_id", "status", "run": <Run as JSON>}``
- ``{"type": "run.counters", "pipeline_id", "run_id", "counters": {...}}`` (by launchers)
- ``{"type": "event", "pipeline_id", "run_id", "event": <EventRecord as JSON>}`` (launchers)

Run records are written with conditional updates (:func:`update_run`): the service, the
launcher's progress writer and its final write never overwrite each other.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from aios.domain import Run, RunStatus
from aios.pipeline.validation import validate_pipeline
from aios.services import Feed, Services
from aios.store.port import Conflict, NotFound, Store

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted: the service stopped while the run was active"
"""The error of runs found active when a process starts (see :meth:`PipelineRuns.recover`)."""

UPDATE_ATTEMPTS = 20
"""Conditional writes of a run tried before giving up (each retry re-reads the record)."""


class LauncherUnavailable(RuntimeError):
    """This process cannot start or stop pipeline runs (no run launcher is configured)."""


class RunCapacityExceeded(RuntimeError):
    """As many runs as the launcher allows are active already; stop one first."""


def channel(pipeline_id: str) -> str:
    """Return the feed channel of a pipeline's runs: ``pipelines/{pipeline_id}``."""
    return f"pipelines/{pipeline_id}"


def status_message(run: Run, *, by: str | None = None) -> dict[str, Any]:
    """Return the ``run.status`` feed message of ``run`` (``by``: who asked, if someone did)."""
    message: dict[str, Any] = {
        "type": "run.status",
        "pipeline_id": run.pipeline_id,
        "run_id": run.id,
        "status": run.status.value,
        "run": run.model_dump(mode="json"),
    }
    if by is not None:
        message["by"] = by
    return message


def publish(feed: Feed, channel_name: str, message: dict[str, Any]) -> None:
    """Publish on the feed; a feed that fails is logged, never fails the run."""
    try:
        feed.publish(channel_name, message)
    except Exception:
        log.exception("publishing %s on %s failed", message.get("type"), channel_name)


def update_run(store: Store, run_id: str, change: Callable[[Run], Run | None]) -> Run | None:
    """Apply ``change`` to the stored run with a conditional write, retrying on Conflict.

    ``change`` gets the run as stored and returns the new run, or ``None`` to leave it as
    it is; it is called again with the newer record when another writer got there first.

    Returns:
        The run as stored after the write, or ``None`` when ``change`` declined.

    Raises:
        NotFound: the run does not exist.
        Conflict: the record kept moving for :data:`UPDATE_ATTEMPTS` attempts.
    """
    for _ in range(UPDATE_ATTEMPTS):
        current = store.runs.get(run_id)
        if current is None:
            raise NotFound(f"run '{run_id}' does not exist")
        changed = change(current)
        if changed is None:
            return None
        try:
            return store.runs.update(changed, expected_version=current.version)
        except Conflict:
            continue
    raise Conflict(f"run '{run_id}' kept changing; gave up after {UPDATE_ATTEMPTS} attempts")


class PipelineRuns:
    """Play and Stop of stored pipelines, with one active run per pipeline at most.

    Args:
        services: the process's ports; ``services.launcher`` runs the pipelines.
    """

    def __init__(self, services: Services) -> None:
        self.services = services
        self._lock = threading.Lock()

    @property
    def store(self) -> Store:
        """The service's store."""
        return self.services.store

    def active(self, pipeline_id: str) -> Run | None:
        """Return the pipeline's run that is starting, running or stopping, if any."""
        runs = [r for r in self.store.runs.list_active() if r.pipeline_id == pipeline_id]
        return min(runs, key=lambda r: (r.started_at, r.id)) if runs else None

    def execute(
        self, pipeline_id: str, *, revision: int | None = None, actor: str | None = None
    ) -> Run:
        """Start a run of the pipeline's ``revision`` (default: its latest).

        The run is created ``starting`` and handed to the launcher, which marks it
        ``running`` once its sources start.

        Returns:
            The run as stored when the launcher took it.

        Raises:
            NotFound: no such pipeline, or no such revision of it.
            aios.pipeline.validation.PipelineInvalid: the revision does not validate
                (``issues`` lists every problem).
            LauncherUnavailable: this process cannot start runs.
            Conflict: the pipeline has an active run already (starting or running: stop
                it first; stopping: wait until it is stopped — a few seconds at most for
                runs of ``aios up``).
            RunCapacityExceeded: the launcher runs as many pipelines as it may; the run is
                recorded ``failed`` with the message. Other errors of the launcher are
                recorded the same way and re-raised.
        """
        from aios.nodes import CATALOG

        record = self.store.pipelines.get(pipeline_id)
        if record is None:
            raise NotFound(f"pipeline '{pipeline_id}' does not exist")
        number = record.latest_revision if revision is None else revision
        stored = self.store.pipelines.get_revision(pipeline_id, number)
        if stored is None:
            raise NotFound(
                f"pipeline '{pipeline_id}' has no revision {number} "
                f"(its latest is {record.latest_revision})"
            )
        validate_pipeline(stored.document, CATALOG)
        launcher = self.services.launcher
        if launcher is None:
            raise LauncherUnavailable(
                "this process cannot start pipeline runs: no run launcher is configured "
                "(start the pipeline from `aios up` or the cloud API)"
            )
        with self._lock:
            running = self.active(pipeline_id)
            if running is not None and running.status is RunStatus.STOPPING:
                raise Conflict(
                    f"pipeline '{pipeline_id}' is still stopping (run '{running.id}'): its "
                    "executions in flight get a few seconds to finish; play it again once "
                    "the run is stopped"
                )
            if running is not None:
                raise Conflict(
                    f"pipeline '{pipeline_id}' is already {running.status.value} "
                    f"(run '{running.id}'); stop it before starting it again"
                )
            run = self.store.runs.create(
                Run(
                    pipeline_id=pipeline_id,
                    revision=number,
                    status=RunStatus.STARTING,
                    started_by=actor,
                    started_at=self.services.clock(),
                )
            )
            log.info(
                "run %s of pipeline %s revision %d starting (by %s)",
                run.id,
                pipeline_id,
                number,
                actor or "-",
            )
            publish(self.services.feed, channel(pipeline_id), status_message(run, by=actor))
            try:
                launcher.start(run, stored.document)
            except Exception as err:
                self._fail(run.id, str(err) or type(err).__name__)
                raise
        return self.store.runs.get(run.id) or run

    def _fail(self, run_id: str, error: str) -> None:
        now = self.services.clock()

        def change(run: Run) -> Run | None:
            if not run.status.active:
                return None
            return run.model_copy(
                update={"status": RunStatus.FAILED, "error": error, "stopped_at": now}
            )

        failed = update_run(self.store, run_id, change)
        if failed is not None:
            log.warning("run %s failed to start: %s", run_id, error)
            publish(self.services.feed, channel(failed.pipeline_id), status_message(failed))

    def stop(self, pipeline_id: str, *, actor: str | None = None) -> Run:
        """Ask the pipeline's active run to stop: it is marked ``stopping`` at once, and
        ``stopped`` by the launcher when its workers have stopped (clips finished,
        executions in flight done). Stopping a run that is stopping asks again.

        Returns:
            The run as stored after the request.

        Raises:
            NotFound: the pipeline has no active run.
            LauncherUnavailable: this process cannot stop runs.
        """
        run = self.active(pipeline_id)
        if run is None:
            raise NotFound(f"pipeline '{pipeline_id}' has no active run to stop")
        launcher = self.services.launcher
        if launcher is None:
            raise LauncherUnavailable(
                "this process cannot stop pipeline runs: no run launcher is configured"
            )

        def change(current: Run) -> Run | None:
            if not current.status.active or current.status is RunStatus.STOPPING:
                return None
            return current.model_copy(update={"status": RunStatus.STOPPING})

        stopping = update_run(self.store, run.id, change)
        if stopping is not None:
            log.info("run %s of pipeline %s stopping (by %s)", run.id, pipeline_id, actor or "-")
            publish(self.services.feed, channel(pipeline_id), status_message(stopping, by=actor))
        else:
            current = self.store.runs.get(run.id)
            if current is None or not current.status.active:
                raise NotFound(
                    f"pipeline '{pipeline_id}' has no active run to stop (run '{run.id}' "
                    f"ended {current.status.value if current else 'and was removed'})"
                )
        launcher.stop(run.id)
        return self.store.runs.get(run.id) or run

    def recover(self) -> list[Run]:
        """Mark runs a previous process left active as ``failed`` with :data:`INTERRUPTED`.

        Call once when a process that runs pipelines locally (``aios up``) starts, before
        it starts any run: nothing of those runs is running any more, and their records
        must not claim otherwise (nor block Play with a Conflict). They are not restarted
        on their own — a run that stopped with the service is restarted by Play, on
        purpose. Not for processes whose launcher runs elsewhere (the cloud's state
        machine keeps its own runs).

        Returns:
            The runs marked failed.
        """
        now = self.services.clock()
        marked: list[Run] = []
        for stale in self.store.runs.list_active():

            def change(run: Run) -> Run | None:
                if not run.status.active:
                    return None
                return run.model_copy(
                    update={"status": RunStatus.FAILED, "error": INTERRUPTED, "stopped_at": now}
                )

            failed = update_run(self.store, stale.id, change)
            if failed is not None:
                log.warning(
                    "run %s of pipeline %s was %s when the service stopped; marked failed",
                    failed.id,
                    failed.pipeline_id,
                    stale.status.value,
                )
                publish(self.services.feed, channel(failed.pipeline_id), status_message(failed))
                marked.append(failed)
        return marked

"""The stream worker's health file, and the container health check that reads it.

The worker (:mod:`aios.cloud.worker`) rewrites a small JSON file every few seconds
(atomically: a temporary file renamed over it)::

    {"state": "ready", "time": "2026-01-05T09:00:00+00:00", "worker": "detector-run_1",
     "plans": [{"plan_id": "run_1.cam", "state": "running", "frames": 412, "events": 3}]}

``state`` is ``starting`` (model loading, cameras connecting), ``ready`` (every camera's
stream tier running), ``stopping`` or ``failed``. The container's ``HEALTHCHECK`` runs
``python -m aios.cloud.worker_health``: exit 0 when the file was written within
``max_age_seconds`` and its state is ``starting`` or ``ready``, else 1. This module imports
the standard library only, so the check starts in a few milliseconds.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HEALTH_FILE_ENV = "AIOS_WORKER_HEALTH_FILE"
"""Environment variable naming the health file (default :data:`DEFAULT_HEALTH_FILE`)."""

DEFAULT_HEALTH_FILE = Path(tempfile.gettempdir()) / "aios-worker-health.json"

HEALTH_MAX_AGE_ENV = "AIOS_WORKER_HEALTH_MAX_AGE_SECONDS"
"""Environment variable: how old the file may be before the check fails (default 30 s)."""

DEFAULT_MAX_AGE_SECONDS = 30.0
"""Six times the worker's write interval (5 s): a main loop stuck that long is unhealthy."""

HEALTHY_STATES = frozenset({"starting", "ready"})


def health_file(environ: Mapping[str, str] | None = None) -> Path:
    """The health file the environment names (:data:`HEALTH_FILE_ENV`)."""
    environ = os.environ if environ is None else environ
    return Path(environ.get(HEALTH_FILE_ENV) or DEFAULT_HEALTH_FILE)


def write_health(
    path: Path, state: str, worker: str, plans: Sequence[Mapping[str, Any]] = ()
) -> None:
    """Replace the health file with ``state`` and ``plans`` (atomically).

    Raises:
        OSError: the folder cannot be written.
    """
    body = {
        "state": state,
        "time": datetime.now(UTC).isoformat(),
        "worker": worker,
        "plans": [dict(p) for p in plans],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.part")
    temporary.write_text(json.dumps(body), encoding="utf-8")
    temporary.replace(path)


def check_health(path: Path, max_age_seconds: float, *, now: float | None = None) -> str | None:
    """Why the worker is unhealthy, or ``None`` when it is healthy.

    Healthy: the file exists, was modified within ``max_age_seconds`` (by ``now``, a
    ``time.time()`` value) and holds a state of :data:`HEALTHY_STATES`.
    """
    try:
        age = (time.time() if now is None else now) - path.stat().st_mtime
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return f"no readable health file at {path}: {type(err).__name__}"
    if age > max_age_seconds:
        return f"the health file is {age:.0f} s old (limit {max_age_seconds:g} s)"
    state = body.get("state") if isinstance(body, dict) else None
    if state not in HEALTHY_STATES:
        return f"the worker is {state}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """The container health check: exit 0 when healthy, 1 (reason on stderr) otherwise."""
    del argv
    try:
        max_age = float(os.environ.get(HEALTH_MAX_AGE_ENV) or DEFAULT_MAX_AGE_SECONDS)
    except ValueError:
        max_age = DEFAULT_MAX_AGE_SECONDS
    problem = check_health(health_file(), max_age)
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover - the container's HEALTHCHECK
    sys.exit(main())

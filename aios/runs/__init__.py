"""Pipeline runs in the service: Play/Stop of stored pipelines and their run records.

:mod:`aios.runs.service` holds the domain logic (:class:`PipelineRuns`);
:mod:`aios.runs.local` the launcher that runs pipelines in threads of this process
(``aios up``). The launcher is imported from its module: it loads the video runtime.
"""

from __future__ import annotations

from aios.runs.service import (
    INTERRUPTED,
    LauncherUnavailable,
    PipelineRuns,
    RunCapacityExceeded,
    channel,
    status_message,
    update_run,
)

__all__ = [
    "INTERRUPTED",
    "LauncherUnavailable",
    "PipelineRuns",
    "RunCapacityExceeded",
    "channel",
    "status_message",
    "update_run",
]

"""The stream clock shared by every stateful analytic: presentation timestamps in seconds."""

from __future__ import annotations

import math


def check_pts(pts_seconds: float, last: float | None) -> float:
    """Return ``pts_seconds`` as a float after checking it may follow ``last``.

    Analytics measure durations on the frames' presentation timestamps, which must be
    finite and never decrease (equal is allowed: a repeated frame).

    Raises:
        ValueError: ``pts_seconds`` is not finite, or is earlier than ``last`` (a restarted
            source: call the analytic's ``reset()``).
    """
    if not math.isfinite(pts_seconds):
        raise ValueError(f"pts_seconds must be finite, got {pts_seconds}")
    if last is not None and pts_seconds < last:
        raise ValueError(
            f"pts_seconds went backwards ({last} -> {pts_seconds}); "
            "call reset() when the source restarts"
        )
    return float(pts_seconds)

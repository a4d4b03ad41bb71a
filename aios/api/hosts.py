"""Which ``Host`` header values a service answers (``AIOS_ALLOWED_HOSTS``).

Shared by the API (which checks every request itself, also behind API Gateway) and the
local HTTP server of ``aios up`` (which checks its other routes: feeds, health, console).
"""

from __future__ import annotations

HOST_NOT_ALLOWED = "this host name is not served here; add it to AIOS_ALLOWED_HOSTS"
"""The message of a refused ``Host`` header (error code ``host_not_allowed``, 400)."""


def host_allowed(host: str | None, allowed: list[str]) -> bool:
    """Whether a ``Host`` header value is allowed.

    Entries match the host name case-insensitively, with or without the port
    (``localhost``, ``localhost:8080``); ``*.example.com`` matches subdomains; ``*``
    matches everything (also a missing header).
    """
    if "*" in allowed:
        return True
    if not host:
        return False
    host = host.strip().lower()
    if host.startswith("["):  # IPv6 literal, "[::1]:8080"
        name = host[: host.find("]") + 1] if "]" in host else host
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    for raw in allowed:
        entry = raw.strip().lower()
        if entry in (host, name):
            return True
        if entry.startswith("*.") and name.endswith(entry[1:]):
            return True
    return False

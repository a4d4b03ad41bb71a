"""Who may call what: the one permission table of the API, and what each write audits.

Roles are ordered viewer < operator < admin; a role may call every endpoint whose minimum
role is at or below it. ``viewer`` reads; ``operator`` also writes devices and pipelines,
executes and stops runs, acknowledges alerts and pipeline events, sends commands and grabs
camera snapshots by URL; ``admin`` also manages users, reads the audit log, changes site
settings and integration secrets, and backs up and restores the configuration.

Keys are ``(METHOD, OpenAPI path)``. A route that is registered but missing here is refused
to everyone (fail closed); a test checks the table and the routes match exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

from aios.domain import Role

API_PREFIX = "/api/v1"

ROLE_RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


def role_allows(role: Role, required: Role) -> bool:
    """Whether ``role`` is at or above ``required`` (viewer < operator < admin)."""
    return ROLE_RANK[role] >= ROLE_RANK[required]


@dataclass(frozen=True)
class Permission:
    """``role``: minimum role (``None``: no access token needed). ``action``: the audit
    action of a write (``None``: not audited, or audited by the route itself, see
    ``self_audited``). ``target``: the audit target type; its id is the route's path
    parameter. ``grant``: the route is not for users: it takes no access token but a grant
    of this kind, which the route itself checks (e.g. ``media_upload``: a connector's
    upload grant for one run, :func:`aios.api.auth.issue_upload_grant`); its body is
    passed to it as sent (bytes), not read as JSON."""

    role: Role | None
    action: str | None = None
    target: str | None = None
    self_audited: bool = False
    grant: str | None = None


PUBLIC = Permission(None)
VIEWER = Permission(Role.VIEWER)
ADMIN_READ = Permission(Role.ADMIN)


def _w(role: Role, action: str, target: str) -> Permission:
    return Permission(role, action, target)


_O, _A, _V = Role.OPERATOR, Role.ADMIN, Role.VIEWER

_TABLE: dict[tuple[str, str], Permission] = {
    # authentication (login/refresh/logout audit themselves: outcome and actor are theirs)
    ("POST", "/auth/login"): Permission(None, "auth.login", "user", self_audited=True),
    ("POST", "/auth/refresh"): Permission(None, "auth.refresh", "user", self_audited=True),
    ("POST", "/auth/logout"): Permission(None, "auth.logout", "user", self_audited=True),
    ("GET", "/auth/me"): VIEWER,
    ("POST", "/auth/password"): _w(_V, "user.password_change", "user"),
    # users
    ("GET", "/users"): ADMIN_READ,
    ("POST", "/users"): _w(_A, "user.create", "user"),
    ("GET", "/users/{user_id}"): ADMIN_READ,
    # Any signed-in user may PUT their own record (password, name); the route refuses
    # other users' records and role/disabled changes unless the caller is an admin.
    ("PUT", "/users/{user_id}"): _w(_V, "user.update", "user"),
    ("DELETE", "/users/{user_id}"): _w(_A, "user.delete", "user"),
    # devices
    ("GET", "/devices"): VIEWER,
    ("POST", "/devices"): _w(_O, "device.create", "device"),
    ("GET", "/devices/{device_id}"): VIEWER,
    ("PUT", "/devices/{device_id}"): _w(_O, "device.update", "device"),
    ("DELETE", "/devices/{device_id}"): _w(_O, "device.delete", "device"),
    ("POST", "/devices/{device_id}/command"): _w(_O, "device.command", "device"),
    ("GET", "/devices/{device_id}/commands"): VIEWER,
    ("GET", "/devices/{device_id}/commands/{request_id}"): VIEWER,
    ("GET", "/devices/{device_id}/events"): VIEWER,
    ("GET", "/devices/{device_id}/telemetry"): VIEWER,
    ("PUT", "/devices/{device_id}/config"): _w(_O, "device.config", "device"),
    ("GET", "/devices/{device_id}/alert-rules"): VIEWER,
    ("POST", "/devices/{device_id}/alert-rules"): _w(_O, "alert_rule.create", "device"),
    ("DELETE", "/alert-rules/{rule_id}"): _w(_O, "alert_rule.delete", "alert_rule"),
    # live view (WebRTC from the camera's connector): watching is reading
    ("POST", "/devices/{device_id}/live"): VIEWER,
    ("DELETE", "/devices/{device_id}/live/{session_id}"): VIEWER,
    ("GET", "/alert-rules"): VIEWER,
    # a current JPEG of a fleet camera, through its connector (a command)
    ("GET", "/devices/{device_id}/snapshot"): VIEWER,
    # a JPEG from a camera URL a pipeline's camera node names (audited: an outbound call)
    ("POST", "/cameras/snapshot"): _w(_O, "camera.snapshot", "camera"),
    # pipelines and runs
    ("GET", "/pipelines"): VIEWER,
    ("POST", "/pipelines"): _w(_O, "pipeline.create", "pipeline"),
    ("POST", "/pipelines/validate"): VIEWER,
    ("GET", "/pipelines/{pipeline_id}"): VIEWER,
    ("PUT", "/pipelines/{pipeline_id}"): _w(_O, "pipeline.update", "pipeline"),
    ("DELETE", "/pipelines/{pipeline_id}"): _w(_O, "pipeline.delete", "pipeline"),
    ("GET", "/pipelines/{pipeline_id}/revisions"): VIEWER,
    ("GET", "/pipelines/{pipeline_id}/revisions/{revision}"): VIEWER,
    ("POST", "/pipelines/{pipeline_id}/validate"): VIEWER,
    ("POST", "/pipelines/{pipeline_id}/execute"): _w(_O, "pipeline.execute", "pipeline"),
    ("POST", "/pipelines/{pipeline_id}/stop"): _w(_O, "pipeline.stop", "pipeline"),
    ("GET", "/pipelines/{pipeline_id}/runs"): VIEWER,
    ("GET", "/runs/{run_id}"): VIEWER,
    ("GET", "/runs/{run_id}/media/{kind}/{name}"): VIEWER,
    # a connector uploading a run's snapshot or clip, with the run's upload grant
    ("PUT", "/runs/{run_id}/media/{kind}/{name}"): Permission(None, grant="media_upload"),
    # another system posting to a webhook input of an active run, with the node's secret
    ("POST", "/webhooks/{target_id}/{hook}"): Permission(None, grant="webhook_secret"),
    # events, analytics, catalog
    ("GET", "/events"): VIEWER,
    ("POST", "/events/{event_id}/acknowledge"): _w(_O, "event.acknowledge", "event"),
    ("GET", "/analytics/availability"): VIEWER,
    ("GET", "/system"): VIEWER,
    ("GET", "/analytics/devices"): VIEWER,
    ("GET", "/analytics/events"): VIEWER,
    ("GET", "/analytics/performance"): VIEWER,
    ("GET", "/nodes"): VIEWER,
    # alerts
    ("GET", "/alerts"): VIEWER,
    ("POST", "/alerts/{alert_id}/acknowledge"): _w(_O, "alert.acknowledge", "alert"),
    # administration
    ("GET", "/audit"): ADMIN_READ,
    ("GET", "/settings"): ADMIN_READ,
    ("PUT", "/settings"): _w(_A, "settings.update", "settings"),
    # integration secrets (values never leave the service) and configuration backups
    ("GET", "/integrations"): ADMIN_READ,
    ("PUT", "/integrations/{name}"): _w(_A, "integration.set", "integration"),
    ("DELETE", "/integrations/{name}"): _w(_A, "integration.clear", "integration"),
    ("GET", "/backup"): ADMIN_READ,
    ("POST", "/restore"): _w(_A, "backup.restore", "backup"),
}

PERMISSIONS: dict[tuple[str, str], Permission] = {
    (method, API_PREFIX + path): perm for (method, path), perm in _TABLE.items()
}
"""``(METHOD, "/api/v1/...")`` → :class:`Permission`, for every API route."""

PERMISSIONS[("GET", "/docs")] = PUBLIC
PERMISSIONS[("GET", "/openapi.json")] = PUBLIC


def permission_for(method: str, openapi_path: str) -> Permission | None:
    """The permission of a registered route, or ``None`` if the table has none."""
    return PERMISSIONS.get((method.upper(), openapi_path))

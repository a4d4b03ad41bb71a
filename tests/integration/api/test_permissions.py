"""The permission table: every route has one entry, and each is enforced (401 without a
token, 403 for a role below the one required) before the request body is looked at."""

from __future__ import annotations

import re

from api_client import ApiClient
from api_support import Account

from aios.api.app import ApiResolver
from aios.api.permissions import PERMISSIONS, ROLE_RANK
from aios.domain import Role

SECURED = sorted((key, perm) for key, perm in PERMISSIONS.items() if perm.role is not None)


def concrete(path: str) -> str:
    """A path with each ``{param}`` replaced by a value (``revision`` must be a number)."""
    return re.sub(r"\{(\w+)\}", lambda m: "1" if m[1] == "revision" else f"x-{m[1]}", path)


def test_every_route_has_exactly_one_permission_entry(app: ApiResolver) -> None:
    """The table and the registered routes are the same set."""
    # GIVEN the resolver's routes
    routes = {(r.method, r.openapi_path) for r in app.registered_routes()}
    # THEN each has a permission, and each permission names a route
    assert routes == set(PERMISSIONS)


def test_public_routes_are_only_the_sign_in_ones_and_the_docs() -> None:
    """Everything but login, refresh, logout, the docs and the routes that take a grant
    instead (a connector's media upload) needs a token."""
    public = sorted(k for k, p in PERMISSIONS.items() if p.role is None and p.grant is None)
    granted = sorted((k, p.grant) for k, p in PERMISSIONS.items() if p.grant is not None)
    assert granted == [
        (("POST", "/api/v1/webhooks/{target_id}/{hook}"), "webhook_secret"),
        (("PUT", "/api/v1/runs/{run_id}/media/{kind}/{name}"), "media_upload"),
    ]
    assert all(PERMISSIONS[k].role is None for k, _ in granted)
    assert public == [
        ("GET", "/docs"),
        ("GET", "/openapi.json"),
        ("POST", "/api/v1/auth/login"),
        ("POST", "/api/v1/auth/logout"),
        ("POST", "/api/v1/auth/refresh"),
    ]


def test_writes_are_operator_or_admin_and_user_admin_is_admin_only() -> None:
    """The role split of the brief: viewers read; operators write the fleet and pipelines;
    admins manage users, audit and settings."""
    for (method, path), perm in PERMISSIONS.items():
        if perm.role is None:
            continue
        if path.startswith("/api/v1/users") and method != "PUT":
            assert perm.role is Role.ADMIN, (method, path)
        if path.startswith(("/api/v1/audit", "/api/v1/settings")):
            assert perm.role is Role.ADMIN, (method, path)
        if path.startswith("/api/v1/devices/{device_id}/live"):
            # watching a camera live (start/end one's own session) is reading
            assert perm.role is Role.VIEWER, (method, path)
        elif method in ("POST", "PUT", "DELETE") and path.startswith(
            ("/api/v1/devices", "/api/v1/alert-rules", "/api/v1/alerts")
        ):
            assert perm.role is Role.OPERATOR, (method, path)
        if method in ("PUT", "DELETE") and path.startswith("/api/v1/pipelines"):
            assert perm.role is Role.OPERATOR, (method, path)
        if path.endswith(("/execute", "/stop")):
            assert perm.role is Role.OPERATOR, (method, path)
        if path.startswith(("/api/v1/integrations", "/api/v1/backup", "/api/v1/restore")):
            assert perm.role is Role.ADMIN, (method, path)  # secrets, whole-site configuration
        elif (
            method == "GET"
            and not path.startswith(("/api/v1/users", "/api/v1/audit"))
            and (path != "/api/v1/settings")
        ):
            assert perm.role is Role.VIEWER, (method, path)


def test_no_token_is_401_on_every_secured_route(api: ApiClient) -> None:
    """Without a bearer token every secured route answers 401, body or not."""
    wrong = []
    for (method, path), _perm in SECURED:
        # WHEN called without a token (and with a body that would not validate)
        res = api.call(method, concrete(path), json_body={"bogus": True})
        # THEN 401 asking to sign in, with the WWW-Authenticate challenge
        if (
            res.status != 401
            or res.error["code"] != "unauthenticated"
            or res.headers.get("www-authenticate") != "Bearer"
        ):
            wrong.append((method, path, res.status, res.text[:200]))
    assert wrong == []


def test_a_role_below_the_required_one_is_403_on_every_route(
    api: ApiClient, viewer: Account, operator: Account
) -> None:
    """Each role below the route's minimum gets 403 naming the role needed."""
    wrong = []
    checked = 0
    for (method, path), perm in SECURED:
        assert perm.role is not None
        for account in (viewer, operator):
            if ROLE_RANK[account.user.role] >= ROLE_RANK[perm.role]:
                continue
            checked += 1
            res = api.call(method, concrete(path), token=account.token, json_body={"bogus": 1})
            if (
                res.status != 403
                or res.error["code"] != "forbidden"
                or perm.role.value not in res.error["message"]
            ):
                wrong.append((account.user.role.value, method, path, res.status, res.text[:200]))
    assert wrong == []
    assert checked >= 25


def test_allowed_roles_pass_the_gate(
    api: ApiClient, viewer: Account, operator: Account, admin: Account
) -> None:
    """A role at or above the minimum is let through (whatever the route answers next)."""
    wrong = []
    for (method, path), perm in SECURED:
        assert perm.role is not None
        for account in (viewer, operator, admin):
            if ROLE_RANK[account.user.role] < ROLE_RANK[perm.role]:
                continue
            res = api.call(method, concrete(path), token=account.token, json_body={"bogus": 1})
            self_service = (method, path) == ("PUT", "/api/v1/users/{user_id}")
            if res.status in (401, 403) and not self_service:
                wrong.append((account.user.role.value, method, path, res.status, res.text[:200]))
            if res.status >= 500:
                wrong.append((account.user.role.value, method, path, res.status, res.text[:200]))
    assert wrong == []


def test_a_bad_or_foreign_token_is_401(api: ApiClient, admin: Account) -> None:
    """A tampered token, a token of another key and a non-bearer scheme are refused."""
    import jwt

    tampered = admin.token[:-4] + ("AAAA" if not admin.token.endswith("AAAA") else "BBBB")
    foreign = jwt.encode(
        {"sub": admin.user.id, "role": "admin", "iat": 1, "exp": 2**40, "iss": "aios", "jti": "x"},
        "another-key-" + "z" * 40,
        algorithm="HS256",
    )
    for headers in (
        {"Authorization": f"Bearer {tampered}"},
        {"Authorization": f"Bearer {foreign}"},
        {"Authorization": f"Basic {admin.token}"},
        {"Authorization": "Bearer"},
    ):
        res = api.get("/api/v1/auth/me", headers=headers)
        assert res.status == 401, headers
    none_alg = jwt.encode(
        {"sub": admin.user.id, "role": "admin", "iat": 1, "exp": 2**40, "iss": "aios", "jti": "x"},
        None,
        algorithm="none",
    )
    assert api.get("/api/v1/auth/me", token=none_alg).status == 401


def test_denied_writes_are_audited(api: ApiClient, viewer: Account, admin: Account) -> None:
    """A 403 on a write is in the audit log as denied, with the caller and address."""
    # WHEN a viewer tries to delete a device
    assert api.delete("/api/v1/devices/cam-9", token=viewer.token).status == 403
    # THEN the audit log has it
    entries = api.get("/api/v1/audit", token=admin.token, query={"target_type": "device"}).json()[
        "items"
    ]
    assert [
        (e["action"], e["actor"], e["outcome"], e["target_id"], e["source_ip"]) for e in entries
    ] == [("device.delete", "vera", "denied", "cam-9", "203.0.113.7")]

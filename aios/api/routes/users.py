"""``/api/v1/users``: accounts (admins), and a user's own password and name."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path

from aios.api.errors import ConflictApi, Forbidden, Unprocessable
from aios.api.models import PageOut, UserCreate, UserOut, UserUpdate
from aios.api.permissions import API_PREFIX
from aios.api.routes._common import DEFAULT_LIMIT, Cursor, Limit, listed, require
from aios.domain import Role, User
from aios.store.port import Conflict, UserStore

if TYPE_CHECKING:
    from aios.api.app import ApiResolver

UserId = Annotated[str, Path(max_length=128, description="The user's id.")]


def _enabled_admins(users: UserStore) -> list[User]:
    admins: list[User] = []
    cursor: str | None = None
    while True:
        page = users.list(limit=1000, cursor=cursor)
        admins.extend(u for u in page.items if u.role is Role.ADMIN and not u.disabled)
        if page.next_cursor is None:
            return admins
        cursor = page.next_cursor


def register(app: ApiResolver) -> None:
    """Add the user routes."""
    store = app.services.store
    auth = app.auth

    def get_user(user_id: str) -> User:
        return require(store.users.get(user_id), f"user '{user_id}'")

    @app.get(f"{API_PREFIX}/users", tags=["users"], summary="List users (by username)")
    def list_users(limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None) -> PageOut[UserOut]:
        page = listed(lambda: store.users.list(limit=limit, cursor=cursor), cursor)
        return PageOut[UserOut](
            items=[UserOut.of(u) for u in page.items], next_cursor=page.next_cursor
        )

    @app.post(f"{API_PREFIX}/users", tags=["users"], summary="Create a user", status_code=201)
    def create_user(body: UserCreate) -> UserOut:
        now = app.services.clock()
        user = User(
            username=body.username,
            display_name=body.display_name,
            email=body.email,
            role=body.role,
            password_hash=auth.hash_password(body.password),
            created_at=now,
            updated_at=now,
        )
        try:
            created = store.users.create(user)
        except Conflict:
            raise ConflictApi(
                f"the username '{body.username}' is taken; choose another",
                code="username_taken",
            ) from None
        app.audit_target(created.id, username=created.username, role=created.role.value)
        return UserOut.of(created)

    @app.get(f"{API_PREFIX}/users/<user_id>", tags=["users"], summary="Get a user")
    def read_user(user_id: UserId) -> UserOut:
        return UserOut.of(get_user(user_id))

    @app.put(
        f"{API_PREFIX}/users/<user_id>",
        tags=["users"],
        summary="Change a user (admins: any field; users: their own name, email, password)",
        description="Absent fields are kept. A password change (own: with current_password) "
        "or disabling signs the user out everywhere (refresh tokens revoked).",
    )
    def update_user(user_id: UserId, body: UserUpdate) -> UserOut:
        principal = app.principal()
        is_admin = principal.role is Role.ADMIN
        is_self = principal.user_id == user_id
        if not is_admin and not is_self:
            raise Forbidden("only admins change other users")
        admin_only = [name for name in ("role", "disabled") if getattr(body, name) is not None] + (
            ["unlock"] if body.unlock else []
        )
        if admin_only and not is_admin:
            raise Forbidden(f"only admins change {', '.join(admin_only)}")
        user = get_user(user_id)
        if body.version is not None and body.version != user.version:
            raise ConflictApi(
                f"the user changed since version {body.version} (now {user.version}); "
                "reload it and apply the change again"
            )
        changes: dict[str, Any] = {"updated_at": app.services.clock()}
        for name in ("display_name", "email", "role", "disabled"):
            value = getattr(body, name)
            if value is not None or (name == "email" and "email" in body.model_fields_set):
                changes[name] = value  # email: null clears it
        if body.unlock:
            changes.update(failed_logins=0, locked_until=None)
        revoke = False
        if body.password is not None:
            if is_self:
                if body.current_password is None:
                    raise Unprocessable.field(
                        "body.current_password", "give your current password to change it"
                    )
                if not auth.verify_password(user, body.current_password):
                    auth.record_failure(user.id)
                    raise Unprocessable.field("body.current_password", "does not match")
            changes["password_hash"] = auth.hash_password(body.password)
            revoke = True
        demoted = changes.get("role", user.role) is not Role.ADMIN or changes.get(
            "disabled", user.disabled
        )
        if (
            user.role is Role.ADMIN
            and not user.disabled
            and demoted
            and len(_enabled_admins(store.users)) <= 1
        ):
            raise ConflictApi(
                "this is the last enabled admin; make another user admin first",
                code="last_admin",
            )
        if changes.get("disabled"):
            revoke = True
        updated = store.users.update(user.model_copy(update=changes), expected_version=user.version)
        if revoke:
            auth.revoke_user(user.id)
        app.audit_target(
            user.id,
            fields=sorted(k for k in changes if k not in ("updated_at", "password_hash"))
            + (["password"] if body.password is not None else []),
        )
        return UserOut.of(updated)

    @app.delete(
        f"{API_PREFIX}/users/<user_id>", tags=["users"], summary="Delete a user", status_code=204
    )
    def delete_user(user_id: UserId) -> Response[None]:
        principal = app.principal()
        if principal.user_id == user_id:
            raise ConflictApi(
                "you cannot delete your own account; ask another admin", code="self_delete"
            )
        user = get_user(user_id)
        if user.role is Role.ADMIN and not user.disabled and len(_enabled_admins(store.users)) <= 1:
            raise ConflictApi("this is the last enabled admin", code="last_admin")
        store.users.delete(user_id)
        auth.revoke_user(user_id)
        return Response(status_code=204, body=None)

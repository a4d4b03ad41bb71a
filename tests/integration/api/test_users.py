"""``/api/v1/users``: accounts managed by admins; users change their own details."""

from __future__ import annotations

from api_client import ApiClient
from api_support import PASSWORD, Account

USERS = "/api/v1/users"


def test_create_read_list_update_delete(api: ApiClient, admin: Account) -> None:
    """The whole life of an account, each write audited, no hash ever returned."""
    # WHEN an admin creates a user
    res = api.post(
        USERS,
        {
            "username": "olga",
            "password": "s3cret-enough",
            "display_name": "Olga",
            "email": "olga@example.com",
            "role": "operator",
        },
        token=admin.token,
    )
    assert res.status == 201, res.text
    olga = res.json()
    assert (olga["username"], olga["role"], olga["version"]) == ("olga", "operator", 1)
    assert "password" not in res.text and "argon2" not in res.text
    # THEN it can be read and is listed (by username)
    assert api.get(f"{USERS}/{olga['id']}", token=admin.token).json() == olga
    listed = api.get(USERS, token=admin.token).json()
    assert [u["username"] for u in listed["items"]] == ["alice", "olga"]
    assert listed["next_cursor"] is None
    # AND it can sign in
    login = api.post("/api/v1/auth/login", {"username": "olga", "password": "s3cret-enough"})
    assert login.status == 200
    # WHEN updated (with the version read)
    res = api.put(
        f"{USERS}/{olga['id']}",
        {"display_name": "Olga K.", "role": "viewer", "version": 1},
        token=admin.token,
    )
    assert res.status == 200, res.text
    assert (res.json()["display_name"], res.json()["role"], res.json()["version"]) == (
        "Olga K.",
        "viewer",
        2,
    )
    # AND a stale version is a conflict
    stale = api.put(f"{USERS}/{olga['id']}", {"display_name": "x", "version": 1}, token=admin.token)
    assert stale.status == 409 and stale.error["code"] == "conflict"
    # WHEN deleted
    assert api.delete(f"{USERS}/{olga['id']}", token=admin.token).status == 204
    # THEN gone
    gone = api.get(f"{USERS}/{olga['id']}", token=admin.token)
    assert gone.status == 404 and gone.error["code"] == "not_found"
    assert api.delete(f"{USERS}/{olga['id']}", token=admin.token).status == 404
    # AND each write is in the audit log, without secrets
    audit = api.get("/api/v1/audit", token=admin.token, query={"target_id": olga["id"]})
    actions = sorted(
        (e["action"], e["outcome"], e["detail"]["status"])
        for e in audit.json()["items"]
        if e["actor"] == "alice"
    )
    assert actions == [
        ("user.create", "success", 201),
        ("user.delete", "failure", 404),
        ("user.delete", "success", 204),
        ("user.update", "failure", 409),
        ("user.update", "success", 200),
    ]
    assert "s3cret-enough" not in audit.text


def test_duplicate_username_is_409(api: ApiClient, admin: Account) -> None:
    """Usernames are unique, case-insensitively."""
    res = api.post(USERS, {"username": "ALICE", "password": "long enough"}, token=admin.token)
    assert res.status == 409 and res.error["code"] == "username_taken"


def test_bad_bodies_name_their_fields(api: ApiClient, admin: Account) -> None:
    """422 lists each bad field by path."""
    res = api.post(
        USERS,
        {"username": "bad name!", "password": "short", "role": "root", "extra": 1},
        token=admin.token,
    )
    assert res.status == 422
    assert sorted(res.fields()) == [
        "body.extra",
        "body.password",
        "body.role",
        "body.username",
    ]
    assert api.post(USERS, None, token=admin.token).fields() == ["body"]
    broken = api.call(
        "POST",
        USERS,
        token=admin.token,
        json_body="{not json",
        headers={"Content-Type": "application/json"},
    )
    assert broken.status == 400 and broken.fields() == ["body"]
    assert broken.error["code"] == "invalid_json"


def test_pagination_over_users(api: ApiClient, admin: Account, password_hash: str) -> None:
    """limit and cursor walk the list without repeats; limit is bounded; a foreign cursor
    is 422."""
    from api_support import add_user

    from aios.domain import Role

    for i in range(4):
        add_user(api.app, f"user{i}", Role.VIEWER, password_hash)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = api.get(USERS, token=admin.token, query=query).json()
        seen += [u["username"] for u in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["alice", "user0", "user1", "user2", "user3"]
    assert pages == 3
    for bad in (0, 1001, "many"):
        res = api.get(USERS, token=admin.token, query={"limit": bad})
        assert res.status == 422 and res.fields() == ["query.limit"]
    res = api.get(USERS, token=admin.token, query={"cursor": "bm90LWEtY3Vyc29y"})
    assert res.status == 422 and res.fields() == ["query.cursor"]


def test_users_change_only_their_own_details(
    api: ApiClient, viewer: Account, operator: Account
) -> None:
    """A viewer may rename themself and change their password (with the current one), not
    their role, and not another user."""
    me = f"{USERS}/{viewer.user.id}"
    res = api.put(me, {"display_name": "V", "email": "v@example.com"}, token=viewer.token)
    assert (res.status, res.json()["email"]) == (200, "v@example.com")
    cleared = api.put(me, {"email": None}, token=viewer.token)
    assert (cleared.json()["email"], cleared.json()["display_name"]) == (None, "V")
    role = api.put(me, {"role": "admin"}, token=viewer.token)
    assert role.status == 403 and "role" in role.error["message"]
    other = api.put(f"{USERS}/{operator.user.id}", {"display_name": "x"}, token=viewer.token)
    assert other.status == 403
    missing = api.put(me, {"password": "new password 1"}, token=viewer.token)
    assert missing.status == 422 and missing.fields() == ["body.current_password"]
    res = api.put(
        me, {"password": "new password 1", "current_password": PASSWORD}, token=viewer.token
    )
    assert res.status == 200
    # AND the old sessions are signed out
    assert api.post("/api/v1/auth/refresh", {"refresh_token": viewer.refresh_token}).status == 401


def test_the_last_admin_cannot_be_removed(api: ApiClient, admin: Account) -> None:
    """Demoting, disabling or deleting the only enabled admin is refused; self-delete too."""
    me = f"{USERS}/{admin.user.id}"
    for change in ({"role": "viewer"}, {"disabled": True}):
        res = api.put(me, change, token=admin.token)
        assert res.status == 409 and res.error["code"] == "last_admin"
    res = api.delete(me, token=admin.token)
    assert res.status == 409 and res.error["code"] == "self_delete"
    # WHEN there is a second admin, the first may step down
    second = api.post(
        USERS, {"username": "bob", "password": "long enough", "role": "admin"}, token=admin.token
    ).json()
    assert api.put(me, {"role": "operator"}, token=admin.token).status == 200
    assert second["role"] == "admin"


def test_me_shows_the_caller(api: ApiClient, operator: Account) -> None:
    res = api.get("/api/v1/auth/me", token=operator.token)
    assert res.status == 200
    assert (res.json()["username"], res.json()["role"]) == ("oscar", "operator")

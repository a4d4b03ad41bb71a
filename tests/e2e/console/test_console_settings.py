"""Settings, Documentation and Profile in the console, end to end against ``aios up --demo``.

Users and roles (an admin creates an operator, who then sees operator controls and no
admin sections), alert policies, integration secrets (set, shown masked, the value
nowhere in the page or in API answers), backup download and restore (counts, and the
refusal of an invalid file with its field paths), a viewer without edit controls, the
user guide at ``/help`` (the API's Swagger UI keeps ``/docs``), and the profile: name
change and a password change that signs out the other sessions.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from console_support import UI_TIMEOUT_MS, Api, shot, sign_in
from playwright.sync_api import expect
from up_process import UpProcess

DEMO_SENSOR = "sim-climate"
"""A demo sensor (telemetry ``temperature``), reached through the demo's connector."""


@pytest.fixture(autouse=True, scope="module")
def _patient_expect() -> None:
    """Assertions wait as long as page elements may take (the demo is busy detecting)."""
    expect.set_options(timeout=UI_TIMEOUT_MS)


@pytest.fixture(scope="module")
def admin_api(demo: UpProcess, admin_password: str) -> Api:
    """The API as admin, signed in for this module (access tokens last 15 minutes)."""
    return Api(demo.url, "admin", admin_password)


def _suffix() -> str:
    return secrets.token_hex(3)


@contextmanager
def _other_page(browser: Any, demo: UpProcess) -> Iterator[Any]:
    """A second browser context (another person), checked like the ``page`` fixture: no
    request to another host, no uncaught error."""
    origin = urlsplit(demo.url).netloc
    foreign: list[str] = []
    errors: list[str] = []
    context = browser.new_context(base_url=demo.url, viewport={"width": 1440, "height": 900})
    context.set_default_timeout(UI_TIMEOUT_MS)
    context.on(
        "request",
        lambda r: (
            foreign.append(r.url)
            if urlsplit(r.url).scheme not in ("data", "blob", "about")
            and urlsplit(r.url).netloc != origin
            else None
        ),
    )
    page = context.new_page()
    page.on("pageerror", lambda err: errors.append(str(err)))
    try:
        yield page
    finally:
        context.close()
    assert not foreign, f"the console asked for other hosts: {foreign}"
    assert not errors, f"uncaught errors in the page: {errors}"


def _create_user(api: Api, role: str, password: str, **extra: Any) -> dict[str, Any]:
    username = f"{role}-{_suffix()}"
    user: dict[str, Any] = api.post(
        "/users", {"username": username, "password": password, "role": role, **extra}
    )
    return user


def test_admin_creates_an_operator_who_sees_operator_controls_but_no_admin_sections(
    page: Any, browser: Any, demo: UpProcess, admin_password: str, admin_api: Api
) -> None:
    username = f"oper-{_suffix()}"
    password = "operator-pass-" + _suffix()
    sign_in(page, "admin", admin_password)
    page.get_by_role("link", name="Settings").click()
    expect(page.get_by_role("tab", name="Users and roles")).to_have_attribute(
        "aria-selected", "true"
    )
    expect(page.get_by_test_id("user-row-admin")).to_be_visible()

    page.get_by_role("button", name="New user").click()
    dialog = page.get_by_role("dialog", name="New user")
    dialog.get_by_label(re.compile("^Username")).fill(username)
    dialog.get_by_label(re.compile("^Display name")).fill("Otto Operator")
    dialog.get_by_label(re.compile("^E-mail")).fill("not-an-address")
    dialog.get_by_label(re.compile("^Role")).select_option("operator")
    dialog.get_by_label(re.compile("^Initial password")).fill(password)
    dialog.get_by_role("button", name="Create user").click()
    # the form checks the e-mail before the API sees it
    expect(dialog.get_by_text("Enter an e-mail address")).to_be_visible()
    dialog.get_by_label(re.compile("^E-mail")).fill(f"{username}@example.com")
    dialog.get_by_role("button", name="Create user").click()
    expect(dialog).to_be_hidden()
    row = page.get_by_test_id(f"user-row-{username}")
    expect(row).to_contain_text("Otto Operator")
    expect(row).to_contain_text("Operator")
    created = [u for u in admin_api.get("/users", limit=1000)["items"] if u["username"] == username]
    assert created and created[0]["role"] == "operator"

    # a taken username comes back from the API onto the field
    page.get_by_role("button", name="New user").click()
    dialog.get_by_label(re.compile("^Username")).fill(username)
    dialog.get_by_label(re.compile("^Initial password")).fill(password)
    dialog.get_by_role("button", name="Create user").click()
    expect(dialog.get_by_text(f"the username '{username}' is taken")).to_be_visible()
    dialog.get_by_role("button", name="Cancel").click()
    shot(page, "settings-users")

    with _other_page(browser, demo) as other:
        sign_in(other, username, password)
        other.goto("/settings?tab=users")  # an admin section asked for by URL: not shown
        expect(other.get_by_role("tab", name="Alert policies")).to_have_attribute(
            "aria-selected", "true"
        )
        expect(other.get_by_role("tab", name="Users and roles")).to_have_count(0)
        expect(other.get_by_role("tab", name="Backup and restore")).to_have_count(0)
        expect(other.get_by_test_id("admin-notice")).to_contain_text("Operator")

        # operators edit alert policies: add a rule on a demo sensor, see it, delete it
        other.get_by_role("button", name="New alert rule").click()
        rule_dialog = other.get_by_role("dialog", name="New alert rule")
        rule_dialog.get_by_label(re.compile("^Find a device")).fill(DEMO_SENSOR)
        rule_dialog.get_by_label(re.compile("^Device")).select_option(DEMO_SENSOR)
        rule_dialog.get_by_label(re.compile("^Condition")).select_option("metric_above")
        rule_dialog.get_by_label(re.compile("^Metric")).fill("temperature")
        rule_dialog.get_by_label(re.compile("^Threshold")).fill("35")
        rule_dialog.get_by_label(re.compile("^For minutes")).fill("2")
        rule_dialog.get_by_label(re.compile("^Severity")).select_option("critical")
        rule_dialog.get_by_role("button", name="Add rule").click()
        expect(rule_dialog).to_be_hidden()
        table = other.get_by_role("table", name="Alert rules")
        rule_row = table.get_by_role("row").filter(has_text="temperature above 35 for 2 min")
        expect(rule_row).to_contain_text("critical")
        rules = admin_api.get("/alert-rules", device_id=DEMO_SENSOR)["items"]
        added = [r for r in rules if r["metric"] == "temperature" and r["threshold"] == 35]
        assert added and added[0]["severity"] == "critical" and added[0]["for_minutes"] == 2
        shot(other, "settings-alerts")

        rule_row.get_by_role("button", name=re.compile("^Delete rule")).click()
        other.get_by_role("dialog", name="Delete this alert rule?").get_by_role(
            "button", name="Delete rule"
        ).click()
        expect(rule_row).to_have_count(0)
        rules = admin_api.get("/alert-rules", device_id=DEMO_SENSOR)["items"]
        assert not [r for r in rules if r["id"] == added[0]["id"]]


def test_integration_secret_is_write_only_and_the_guide_is_at_help(
    page: Any, admin_password: str, admin_api: Api
) -> None:
    name = f"e2e_webhook_{_suffix()}"
    value = "whsec-" + secrets.token_urlsafe(18) + "-wxyz"
    replaced = "whsec-" + secrets.token_urlsafe(18) + "-abcd"
    sign_in(page, "admin", admin_password)
    page.goto("/settings")
    page.get_by_role("tab", name="Integrations").click()
    for group in ("WhatsApp", "Telegram", "SMTP"):
        expect(page.get_by_role("region", name=group)).to_be_visible()

    form = page.get_by_role("form", name="Add a secret")
    form.get_by_label(re.compile("^Secret name")).fill(name)
    form.get_by_label(re.compile("^Secret value")).fill(value)
    form.get_by_role("button", name="Add secret").click()
    row = page.get_by_test_id(f"secret-{name}")
    expect(row.get_by_test_id("secret-state")).to_have_text("Set ••••wxyz")
    expect(row).to_contain_text("set here")
    secret_input = row.locator(f"#secret-{name}")
    expect(secret_input).to_have_attribute("placeholder", "•••• set")
    expect(secret_input).to_have_value("")
    expect(form.get_by_label(re.compile("^Secret value"))).to_have_value("")

    # replace it through its own row: the new value leaves the input once stored
    secret_input.fill(replaced)
    row.get_by_role("button", name=f"Save {name}").click()
    expect(row.get_by_test_id("secret-state")).to_have_text("Set ••••abcd")
    expect(secret_input).to_have_value("")
    shot(page, "settings-integrations")

    html = page.content()
    assert value not in html and replaced not in html
    for path in ("/integrations", "/backup"):
        answer = admin_api.client.get(path)
        assert answer.status_code == 200
        assert value not in answer.text and replaced not in answer.text
    listed = {i["name"]: i for i in admin_api.get("/integrations")["items"]}
    assert listed[name]["set"] and listed[name]["source"] == "store"

    # the user guide: the console's route is /help; /docs stays the API's Swagger UI
    page.get_by_role("link", name="Documentation").click()
    page.wait_for_url("**/help")
    expect(page.get_by_role("heading", level=1, name="AIOS user guide")).to_be_visible()
    for heading in ("Getting started", "Fleet Management", "Pipeline builder", "Troubleshooting"):
        expect(page.get_by_role("heading", level=2, name=heading)).to_be_visible()
    contents = page.get_by_role("navigation", name="Contents")
    expect(contents.get_by_role("link", name="API reference")).to_have_attribute("href", "/docs")
    contents.get_by_role("link", name="Troubleshooting").click()
    expect(page.get_by_role("heading", level=2, name="Troubleshooting")).to_be_in_viewport()
    shot(page, "help")
    page.reload()  # the SPA route survives a reload
    expect(page.get_by_role("heading", level=1, name="AIOS user guide")).to_be_visible()
    swagger = page.request.get("/docs")
    assert swagger.ok and "swagger" in swagger.text().lower()


def test_backup_downloads_and_restores_with_counts_or_field_paths(
    page: Any, admin_password: str, tmp_path: Path
) -> None:
    sign_in(page, "admin", admin_password)
    page.goto("/settings?tab=backup")
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download backup").click()
    download = download_info.value
    assert download.suggested_filename.startswith("aios-backup-")
    assert download.suggested_filename.endswith(".json")
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    backup = json.loads(saved.read_text(encoding="utf-8"))
    assert backup["schema_version"] == 1
    device_ids = {d["id"] for d in backup["devices"]}
    assert {"courtyard", DEMO_SENSOR} <= device_ids
    assert backup["pipelines"], "the demo pipeline is in the backup"
    assert all("password" not in json.dumps(u) for u in backup["users"])

    # restore the same file: every device is there already (unchanged or updated)
    page.get_by_label("Backup file").set_input_files(str(saved))
    summary = page.get_by_test_id("backup-summary")
    expect(summary).to_contain_text(f"devices: {len(backup['devices'])}")
    expect(summary).to_contain_text(f"pipelines: {len(backup['pipelines'])}")
    summary.get_by_role("button", name="Restore").click()
    result = page.get_by_test_id("restore-result")
    expect(result).to_contain_text("Restored.")
    cells = result.get_by_role("row").filter(has_text="devices").get_by_role("cell")
    created, updated, unchanged = (int(cells.nth(i).inner_text()) for i in (1, 2, 3))
    assert created == 0
    assert updated + unchanged == len(backup["devices"])
    shot(page, "settings-backup")

    # an invalid file is refused whole, each problem with its place in the file
    broken = dict(backup)
    broken["devices"] = [dict(backup["devices"][0], kind="toaster"), *backup["devices"][1:]]
    broken_path = tmp_path / "broken.json"
    broken_path.write_text(json.dumps(broken), encoding="utf-8")
    page.get_by_label("Backup file").set_input_files(str(broken_path))
    page.get_by_test_id("backup-summary").get_by_role("button", name="Restore").click()
    problems = page.get_by_test_id("restore-problems")
    expect(problems).to_contain_text("nothing was changed")
    expect(problems).to_contain_text("devices.0.kind")

    # a file that is not a backup never reaches the API
    junk = tmp_path / "junk.json"
    junk.write_text('{"hello": "world"}', encoding="utf-8")
    page.get_by_label("Backup file").set_input_files(str(junk))
    expect(page.get_by_text("junk.json: The file is not an AIOS backup")).to_be_visible()
    expect(page.get_by_test_id("backup-summary")).to_have_count(0)


def test_viewer_sees_settings_without_edit_controls(
    page: Any, admin_api: Api, viewer: tuple[str, str]
) -> None:
    rule = admin_api.post(
        f"/devices/{DEMO_SENSOR}/alert-rules",
        {"kind": "offline", "for_minutes": 15, "severity": "warning"},
    )
    try:
        sign_in(page, *viewer)
        page.goto("/settings")
        expect(page.get_by_test_id("admin-notice")).to_contain_text("Viewer")
        tabs = page.get_by_role("tab")
        expect(tabs).to_have_count(1)
        expect(tabs).to_have_text("Alert policies")
        table = page.get_by_role("table", name="Alert rules")
        expect(table.get_by_role("row").filter(has_text="offline for 15 min")).to_be_visible()
        expect(page.get_by_role("button", name="New alert rule")).to_have_count(0)
        expect(page.get_by_role("button", name=re.compile("^Delete"))).to_have_count(0)
        expect(page.get_by_role("main").locator("input, select, textarea")).to_have_count(0)
    finally:
        admin_api.client.delete(f"/alert-rules/{rule['id']}").raise_for_status()


def test_profile_changes_name_and_password_signing_out_other_sessions(
    page: Any, demo: UpProcess, admin_api: Api
) -> None:
    old_password = "profile-old-" + _suffix()
    new_password = "profile-new-" + _suffix()
    user = _create_user(admin_api, "operator", old_password, display_name="Paul")
    username = user["username"]
    # another session of the same account (another browser)
    with httpx.Client(base_url=demo.url + "/api/v1", timeout=30) as client:
        other = client.post("/auth/login", json={"username": username, "password": old_password})
        other.raise_for_status()
        other_refresh = other.json()["refresh_token"]

        sign_in(page, username, old_password)
        page.get_by_role("link", name="Profile").click()
        expect(page.get_by_test_id("profile-username")).to_have_text(username)
        expect(page.get_by_test_id("profile-role")).to_contain_text("Operator")
        expect(page.get_by_role("main").get_by_role("combobox")).to_have_count(0)

        page.get_by_label(re.compile("^Display name")).fill("Paula Profile")
        page.get_by_role("button", name="Save profile").click()
        expect(page.get_by_test_id("current-user")).to_contain_text("Paula Profile")
        assert admin_api.get(f"/users/{user['id']}")["display_name"] == "Paula Profile"

        form = page.get_by_role("form", name="Change password")
        form.get_by_label(re.compile("^Current password")).fill("not-my-password")
        form.get_by_label(re.compile("^New password")).fill(new_password)
        form.get_by_label(re.compile("^Confirm new password")).fill(new_password + "x")
        form.get_by_role("button", name="Change password").click()
        expect(form.get_by_text("The two passwords differ")).to_be_visible()
        form.get_by_label(re.compile("^Confirm new password")).fill(new_password)
        form.get_by_role("button", name="Change password").click()
        expect(form.get_by_text("This is not your current password")).to_be_visible()
        form.get_by_label(re.compile("^Current password")).fill(old_password)
        form.get_by_role("button", name="Change password").click()
        expect(page.get_by_test_id("password-changed")).to_contain_text("signed out")
        shot(page, "profile")

        # the other session is over; this one goes on with the tokens the change returned
        refused = client.post("/auth/refresh", json={"refresh_token": other_refresh})
        assert refused.status_code == 401
        page.reload()
        expect(page.get_by_test_id("profile-username")).to_have_text(username)

        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url("**/login")
        sign_in(page, username, new_password)
        expect(page.get_by_test_id("current-user")).to_contain_text("Paula Profile")
        stale = client.post("/auth/login", json={"username": username, "password": old_password})
        assert stale.status_code == 401

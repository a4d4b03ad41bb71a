"""Helpers of the console's end-to-end tests (``tests/e2e/console``): the REST API for
arranging what the browser then shows, screenshots as artifacts, signing in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "out" / "test-artifacts" / "console"
UI_TIMEOUT_MS = 20_000
"""How long a page element may take to appear (the demo runs detection on 2 cores)."""


class Api:
    """The demo's REST API for arranging what the browser then shows. Signs in again when
    the access token (15 minutes) has expired during a long session."""

    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.client = httpx.Client(base_url=base_url + "/api/v1", timeout=30)
        self._credentials = {"username": username, "password": password}
        self._sign_in()

    def _sign_in(self) -> None:
        tokens = self.client.post("/auth/login", json=self._credentials)
        tokens.raise_for_status()
        self.client.headers["Authorization"] = f"Bearer {tokens.json()['access_token']}"

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send a request; on 401 sign in once more and send it again."""
        response = self.client.request(method, path, **kwargs)
        if response.status_code == 401:
            self._sign_in()
            response = self.client.request(method, path, **kwargs)
        response.raise_for_status()
        return response

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params).json()

    def post(self, path: str, body: Any) -> Any:
        response = self.request("POST", path, json=body)
        return response.json() if response.content else None


def shot(page: Any, name: str) -> Path:
    """Save a screenshot of the whole page as a test artifact. The console scrolls inside
    its ``<main>``, so the window is made as tall as that content for the picture."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    size = page.viewport_size
    content = page.evaluate(
        "() => Math.max(document.documentElement.scrollHeight,"
        " ...[...document.querySelectorAll('main')].map((m) =>"
        " m.scrollHeight + m.getBoundingClientRect().top))"
    )
    if size and content > size["height"]:
        page.set_viewport_size({"width": size["width"], "height": min(int(content), 6000)})
    try:
        page.screenshot(path=str(path), full_page=True)
    finally:
        if size:
            page.set_viewport_size(size)
    return path


def sign_in(page: Any, username: str, password: str) -> None:
    """Sign in through the login form and wait for the dashboard."""
    page.goto("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("navigation").wait_for()
    page.wait_for_url("**/")

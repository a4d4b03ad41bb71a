"""The console end to end: Debian's Chromium driven by Playwright against a real
``aios up --demo`` (the demo site: connector with ``vtest.avi`` as a camera, a simulated PLC,
simulated sensors, the intrusion pipeline playing) serving the built console.

Every page opened here fails its test if the console asks for anything outside the host it
is served from (the ``page`` fixture). Screenshots land in ``out/test-artifacts/console``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from console_support import UI_TIMEOUT_MS, Api
from up_process import UpProcess
from up_support import free_port

ROOT = Path(__file__).resolve().parents[3]
WEB_DIST = Path(os.environ.get("AIOS_TEST_WEB_DIST", ROOT / "web" / "dist"))
CHROMIUM = os.environ.get("AIOS_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="session")
def console_build() -> Path:
    """The built console (``web/dist``, made by ``scripts/setup.sh``)."""
    if not (WEB_DIST / "index.html").is_file():
        pytest.fail("web/dist is missing: build the console with `npm --prefix web run build`")
    return WEB_DIST


@pytest.fixture(scope="session")
def demo(console_build: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    """``aios up --demo`` on free loopback ports, its PLC simulator on a free port too."""
    work = tmp_path_factory.mktemp("console-demo")
    up = UpProcess(
        work / "data",
        work,
        args=("--demo",),
        env={
            "AIOS_DEMO_PLC_PORT": str(free_port()),
            "AIOS_WEB_DIR": str(console_build),
            # every test signs in from 127.0.0.1: the per-address limit is not under test here
            "AIOS_LOGIN_RATE_PER_MINUTE": "1000",
        },
    )
    try:
        up.start()
        yield up
    finally:
        up.cleanup()


@pytest.fixture(scope="session")
def admin_password(demo: UpProcess) -> str:
    return demo.admin_password()


@pytest.fixture(scope="session")
def api(demo: UpProcess, admin_password: str) -> Api:
    return Api(demo.url, "admin", admin_password)


@pytest.fixture(scope="session")
def viewer(api: Api) -> tuple[str, str]:
    """A viewer account (username, password)."""
    password = "viewer-pass-1234"
    api.post(
        "/users",
        {"username": "viewer1", "password": password, "role": "viewer", "display_name": "Vera"},
    )
    return "viewer1", password


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/setup.sh --dev installs Debian's chromium")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=UI_TIMEOUT_MS)  # assertions wait as long as actions

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any, demo: UpProcess) -> Iterator[Any]:
    """A fresh browser context (no session) on the demo's console. At the end, fails if any
    request went to another host than the console's."""
    origin = urlsplit(demo.url)
    foreign: list[str] = []
    context = browser.new_context(base_url=demo.url, viewport={"width": 1440, "height": 900})
    context.set_default_timeout(UI_TIMEOUT_MS)

    def check(request: Any) -> None:
        url = urlsplit(request.url)
        if url.scheme in ("data", "blob", "about"):
            return
        if url.netloc != origin.netloc:
            foreign.append(request.url)

    context.on("request", check)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    yield page
    context.close()
    assert not foreign, f"the console asked for other hosts: {foreign}"
    assert not errors, f"uncaught errors in the page: {errors}"

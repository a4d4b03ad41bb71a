"""``schemas/openapi.json`` (the console's generated types come from it) is the API's."""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from aios.cli import app

ROOT = Path(__file__).resolve().parents[3]


def test_published_openapi_document_is_current() -> None:
    result = CliRunner().invoke(app, ["openapi"])
    assert result.exit_code == 0, result.output
    published = json.loads((ROOT / "schemas" / "openapi.json").read_text(encoding="utf-8"))
    assert json.loads(result.output) == published, (
        "run: aios openapi > schemas/openapi.json && npm --prefix web run gen:api"
    )


def test_every_reference_resolves() -> None:
    text = (ROOT / "schemas" / "openapi.json").read_text(encoding="utf-8")
    schemas = json.loads(text)["components"]["schemas"]
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', text))
    assert refs <= set(schemas), refs - set(schemas)

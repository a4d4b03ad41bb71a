"""The console's form tests render every node type from a copy of the catalog
(``web/src/components/nodeform/__fixtures__/catalog.json``): it must be the catalog's."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from aios.cli import app

FIXTURE = (
    Path(__file__).resolve().parents[3] / "web/src/components/nodeform/__fixtures__/catalog.json"
)


def test_console_catalog_fixture_is_current() -> None:
    result = CliRunner().invoke(app, ["nodes", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == json.loads(FIXTURE.read_text(encoding="utf-8")), (
        f"run: aios nodes --json > {FIXTURE.relative_to(FIXTURE.parents[4])}"
    )

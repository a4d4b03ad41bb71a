"""The node catalog: registration, unique ids, strict and documented configs, JSON export."""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys
from typing import Any

import pytest
from pydantic import BaseModel

import aios.nodes
from aios.catalog.base import NodeType
from aios.catalog.registry import Catalog, CatalogError
from aios.nodes import CATALOG, NODE_MODULES


def node_module_names() -> list[str]:
    """Return every node module in aios.nodes (private helpers start with '_')."""
    return sorted(
        m.name for m in pkgutil.iter_modules(aios.nodes.__path__) if not m.name.startswith("_")
    )


def test_every_node_module_is_registered() -> None:
    """A node module that is not listed in the registry fails this test."""
    # GIVEN the modules on disk and the explicit registry
    registered = {m.__name__.rsplit(".", 1)[1] for m in NODE_MODULES}
    # THEN they are the same set
    assert set(node_module_names()) == registered
    for name in node_module_names():
        module = importlib.import_module(f"aios.nodes.{name}")
        assert isinstance(module.NODE, NodeType), f"aios.nodes.{name} has no NODE"
        assert CATALOG.get(module.NODE.type_id) is module.NODE


def test_duplicate_type_ids_are_rejected() -> None:
    """Loading two node types with one id raises."""
    node = next(iter(CATALOG))
    with pytest.raises(CatalogError, match="duplicate node type id"):
        Catalog([node, node])


def _fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, Any, type[BaseModel]]]:
    out = []
    for name, field in model.model_fields.items():
        out.append((prefix + name, field, model))
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out += _fields(annotation, prefix + name + ".")
    return out


@pytest.mark.parametrize("node_type", list(CATALOG), ids=lambda t: t.type_id)
def test_configs_are_strict_titled_described_and_bounded(node_type: NodeType[Any]) -> None:
    """Every config forbids unknown fields; every field has a title, a description or
    a self-explanatory title, and numeric fields have bounds."""
    model = node_type.config_model
    assert model.model_config.get("extra") == "forbid"
    for path, field, owner in _fields(model):
        assert owner.model_config.get("extra") == "forbid", f"{path}: sub-model not strict"
        assert field.title, f"{node_type.type_id} {path}: no title"
        if field.annotation in (int, float, int | None, float | None):
            bounds = [m for m in field.metadata if type(m).__name__ in ("Ge", "Gt", "Le", "Lt")]
            assert len(bounds) >= 2, f"{node_type.type_id} {path}: numeric field without bounds"
            assert field.description, f"{node_type.type_id} {path}: no description (units)"


def test_manifests_are_complete() -> None:
    """Every manifest has a namespaced versioned id, a title, a description and an icon."""
    for node_type in CATALOG:
        m = node_type.manifest
        assert m.type.startswith("aios/") and "@" in m.type
        assert m.title and m.description and m.icon
        assert m.inputs or m.outputs


def test_cli_prints_catalog_json() -> None:
    """`aios nodes --json` prints manifests and config JSON Schemas."""
    # WHEN the command runs
    out = subprocess.run(
        [sys.executable, "-m", "aios.cli", "nodes", "--json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    # THEN every node type is there with its schema
    data = json.loads(out)
    types = {n["type"]: n for n in data["nodes"]}
    assert set(types) == {t.type_id for t in CATALOG}
    zone = types["aios/zone@1"]
    assert zone["category"] == "logic"
    assert zone["config_schema"]["additionalProperties"] is False
    assert "polygon" in zone["config_schema"]["required"]
    assert {p["kind"] for p in zone["outputs"]} == {"detections", "event"}


def test_rtsp_password_is_write_only_in_exports() -> None:
    """The RTSP password is a secret: masked when a config is printed."""
    node_type = CATALOG.get("aios/camera.rtsp@1")
    assert node_type is not None
    config = node_type.parse_config({"host": "cam", "username": "u", "password": "p@ss#w:rd/"})
    assert "p@ss#w:rd/" not in repr(config) and "p@ss#w:rd/" not in str(config.model_dump())


def test_rtsp_url_needs_a_host() -> None:
    """An RTSP URL without a host is refused at validation, not retried forever."""
    from pydantic import ValidationError

    node_type = CATALOG.get("aios/camera.rtsp@1")
    assert node_type is not None
    with pytest.raises(ValidationError, match="has no host"):
        node_type.parse_config({"url": "rtsp://"})

"""Where AIOS keeps downloaded and generated files on this host."""

from __future__ import annotations

import os
from pathlib import Path


def aios_home() -> Path:
    """Return the data folder: ``$AIOS_HOME`` if set, else ``~/.cache/aios``.

    The folder holds fetched models (``models/``) and demo assets (``assets/``); it is
    created on first use.
    """
    root = Path(os.environ.get("AIOS_HOME") or Path.home() / ".cache" / "aios")
    root.mkdir(parents=True, exist_ok=True)
    return root


def models_dir() -> Path:
    """Return the folder of converted and verified detection models."""
    path = aios_home() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def assets_dir() -> Path:
    """Return the folder of demo assets (videos, photos)."""
    path = aios_home() / "assets"
    path.mkdir(parents=True, exist_ok=True)
    return path

"""Demo and test assets taken from Debian packages (no other download source is needed).

* ``vtest.avi`` — people walking, 768×576, 10 fps, 795 frames — from ``opencv-doc``
  (``usr/share/doc/opencv-doc/examples/data/vtest.avi``).
* ``person.jpg``, ``dog.jpg``, ``horses.jpg``, ``kite.jpg`` — from ``darknet``
  (``usr/share/darknet/data/``).

Packages are fetched with ``apt-get download`` (no installation, no root needed for the
extraction) and unpacked with ``dpkg-deb -x``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from aios.paths import assets_dir


class AssetError(RuntimeError):
    """An asset could not be obtained; the message says what to install or set."""


@dataclass(frozen=True)
class DebianAsset:
    """A file inside a Debian package."""

    name: str
    package: str
    member: str


ASSETS: dict[str, DebianAsset] = {
    "vtest.avi": DebianAsset(
        "vtest.avi", "opencv-doc", "usr/share/doc/opencv-doc/examples/data/vtest.avi"
    ),
    **{
        name: DebianAsset(name, "darknet", f"usr/share/darknet/data/{name}")
        for name in ("person.jpg", "dog.jpg", "horses.jpg", "kite.jpg")
    },
}


def _run(cmd: list[str], cwd: Path) -> None:
    try:
        subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True, timeout=600)
    except FileNotFoundError as err:
        raise AssetError(
            f"{cmd[0]} is not available: assets come from Debian packages; "
            "run on a Debian-based host or place the files in the assets folder by hand"
        ) from err
    except subprocess.CalledProcessError as err:
        raise AssetError(
            f"{' '.join(cmd)} failed: {err.stderr.strip()[-500:]}"
            " (on a fresh host run 'apt-get update' first)"
        ) from err


def _fetch_package(package: str, wanted: list[DebianAsset], dest: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="aios-deb-") as tmp:
        work = Path(tmp)
        _run(["apt-get", "download", package], cwd=work)
        debs = sorted(work.glob(f"{package}_*.deb"))
        if not debs:
            raise AssetError(f"apt-get download {package} produced no .deb file")
        root = work / "root"
        _run(["dpkg-deb", "-x", str(debs[0]), str(root)], cwd=work)
        for asset in wanted:
            src = root / asset.member
            if not src.is_file():
                raise AssetError(f"{asset.member} is not in {debs[0].name}")
            tmp_dest = dest / f".{asset.name}.part"
            shutil.copyfile(src, tmp_dest)
            tmp_dest.replace(dest / asset.name)


def fetch(names: list[str] | None = None) -> dict[str, Path]:
    """Make the named assets (default: all of :data:`ASSETS`) available locally.

    Returns:
        A mapping from asset name to its path in :func:`aios.paths.assets_dir`.

    Raises:
        KeyError: an unknown asset name.
        AssetError: the Debian package could not be downloaded or lacks the file.
    """
    dest = assets_dir()
    wanted = [ASSETS[n] for n in (names or list(ASSETS))]
    missing = [a for a in wanted if not (dest / a.name).is_file()]
    for package in sorted({a.package for a in missing}):
        _fetch_package(package, [a for a in missing if a.package == package], dest)
    return {a.name: dest / a.name for a in wanted}


def path(name: str) -> Path:
    """Return the local path of one asset, fetching it first if needed."""
    return fetch([name])[name]

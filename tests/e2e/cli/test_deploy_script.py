"""``scripts/deploy.sh`` before it needs any tool or AWS: its help and its argument
checks."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "deploy.sh"
BASH = shutil.which("bash")

pytestmark = pytest.mark.skipif(BASH is None, reason="needs bash")


def deploy(*args: str) -> subprocess.CompletedProcess[str]:
    # Only the system's basic tools: the checks run before AWS or SAM is looked for.
    return subprocess.run(
        [str(BASH), str(SCRIPT), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": f"{Path(str(BASH)).parent}:/usr/bin:/bin"},
    )


def test_help_prints_exactly_the_comment_block() -> None:
    lines = SCRIPT.read_text(encoding="utf-8").splitlines()
    block = []
    for line in lines[1:]:
        if not line.startswith("#"):
            break
        block.append(line.removeprefix("#").removeprefix(" "))
    result = deploy("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "\n".join(block) + "\n"
    assert result.stdout.startswith("Deploy AIOS to an AWS account")
    assert "set -euo" not in result.stdout


def test_camera_without_connector_is_an_error() -> None:
    result = deploy("--camera", "cam-gate")
    assert result.returncode == 2
    assert result.stderr.startswith("error: --camera needs --connector")
    assert result.stdout == ""
    unknown = deploy("--stage", "dev", "--bogus")
    assert unknown.returncode == 2 and "unknown option --bogus" in unknown.stderr

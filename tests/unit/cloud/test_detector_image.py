"""The GPU stream worker's image file (``infra/detector/Containerfile``), read as Docker reads
it (no engine here): an official CUDA base, Python 3.11, onnxruntime-gpu instead of
onnxruntime, the model fetched at build, a non-root user, a health check and the worker as
entry point — and the modules it names exist and do what it expects."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from aios.cloud import worker, worker_health

ROOT = Path(__file__).resolve().parents[3]
CONTAINERFILE = ROOT / "infra" / "detector" / "Containerfile"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    stage: int


def parse(text: str) -> tuple[dict[str, str], list[Instruction]]:
    """Global ``ARG`` defaults, and the instructions (continuations joined, comments dropped)
    with the index of the stage they belong to."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    args: dict[str, str] = {}
    out: list[Instruction] = []
    stage = -1
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        if keyword == "ARG" and stage == -1:
            name, _, default = rest.partition("=")
            args[name.strip()] = default.strip()
        out.append(Instruction(keyword, rest.strip(), stage))
    return args, out


@pytest.fixture(scope="module")
def image() -> tuple[dict[str, str], list[Instruction]]:
    return parse(CONTAINERFILE.read_text(encoding="utf-8"))


def expand(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], value)


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


def runs(instructions: list[Instruction]) -> str:
    return "\n".join(i.args for i in instructions if i.keyword == "RUN")


def test_every_stage_starts_from_nvidias_cuda_runtime_with_cudnn(image: tuple) -> None:
    args, instructions = image
    bases = [expand(i.args.split()[0], args) for i in instructions if i.keyword == "FROM"]
    assert len(bases) == 2
    for base in bases:
        repository, _, tag = base.partition(":")
        assert repository == "nvidia/cuda"  # NVIDIA's official CUDA images
        # CUDA 12 with cuDNN: what onnxruntime-gpu's CUDA provider loads; a pinned tag
        assert re.fullmatch(r"12\.\d+\.\d+-cudnn-runtime-ubuntu\d\d\.\d\d", tag), tag


def test_python_311_and_onnxruntime_gpu_replace_the_cpu_runtime(image: tuple) -> None:
    _, instructions = image
    build = runs([i for i in instructions if i.stage == 0])
    assert "uv python install 3.11" in build
    syncs = [line for line in build.splitlines() if "uv sync" in line]
    assert syncs and all("--python 3.11" in s and "--frozen" in s for s in syncs)
    # the CPU onnxruntime of the lock is left out of every sync ...
    assert all("--no-install-package onnxruntime" in s for s in syncs)
    assert all("--extra vision" in s for s in syncs)
    # ... and it is a package of the lock (else the option would silently do nothing)
    lock = tomllib.loads((ROOT / "uv.lock").read_text(encoding="utf-8"))
    assert "onnxruntime" in {p["name"] for p in lock["package"]}
    # onnxruntime-gpu is installed, at a pinned version
    gpu = re.search(r'"onnxruntime-gpu==\$\{ONNXRUNTIME_GPU_VERSION\}"', build)
    assert gpu is not None
    version = next(
        i.args.partition("=")[2]
        for i in instructions
        if i.keyword == "ARG" and i.args.startswith("ONNXRUNTIME_GPU_VERSION=")
    )
    assert re.fullmatch(r"1\.\d+\.\d+", version)


def test_the_model_is_fetched_at_build_into_the_home_the_worker_reads(image: tuple) -> None:
    _, instructions = image
    build = [i for i in instructions if i.stage == 0]
    fetch = [i for i in build if i.keyword == "RUN" and "aios models fetch" in i.args]
    assert len(fetch) == 1
    homes = [i.args for i in instructions if i.keyword == "ENV" and "AIOS_HOME=" in i.args]
    assert len(homes) == 2 and all("AIOS_HOME=/opt/aios/home" in h for h in homes)
    # the ENV comes before the fetch in the build stage, and the run stage gets the folder
    assert build.index(fetch[0]) > next(
        n for n, i in enumerate(build) if i.keyword == "ENV" and "AIOS_HOME=" in i.args
    )
    copies = [i.args for i in final_stage(instructions) if i.keyword == "COPY"]
    assert "--from=build /opt/aios /opt/aios" in copies
    assert "--from=build /opt/python /opt/python" in copies


def test_the_worker_runs_as_a_non_root_user(image: tuple) -> None:
    _, instructions = image
    final = final_stage(instructions)
    users = [i for i in final if i.keyword == "USER"]
    assert len(users) == 1
    user = users[0].args
    assert user not in {"root", "0"} and not user.startswith(("0:", "root:"))
    assert re.search(rf"useradd .*--uid \d+ .* {re.escape(user)}$", runs(final), re.M)
    # nothing runs as root after the switch
    assert final.index(users[0]) > max(n for n, i in enumerate(final) if i.keyword == "RUN")


def test_entrypoint_healthcheck_and_stop_signal(image: tuple) -> None:
    _, instructions = image
    final = final_stage(instructions)
    [entry] = [i for i in final if i.keyword == "ENTRYPOINT"]
    assert json.loads(entry.args) == ["python", "-m", "aios.cloud.worker"]
    [health] = [i for i in final if i.keyword == "HEALTHCHECK"]
    options, _, command = health.args.partition("CMD ")
    assert json.loads(command) == ["python", "-m", "aios.cloud.worker_health"]
    flags = dict(f.split("=", 1) for f in shlex.split(options))
    assert set(flags) == {"--interval", "--timeout", "--start-period", "--retries"}
    [stop] = [i for i in final if i.keyword == "STOPSIGNAL"]
    assert stop.args == "SIGTERM"
    env_lines = " ".join(i.args for i in final if i.keyword == "ENV")
    assert f"{worker_health.HEALTH_FILE_ENV}=" in env_lines
    assert f"{worker.WORK_DIR}=" in env_lines


def test_the_modules_the_image_runs_are_what_it_expects(tmp_path: Path) -> None:
    # the entry point and the health check are runnable modules with a main()
    assert callable(worker.main) and callable(worker_health.main)
    health = tmp_path / "health.json"
    assert worker_health.check_health(health, 30) is not None  # no file: unhealthy
    worker_health.write_health(health, "starting", "detector-run_1")
    assert worker_health.check_health(health, 30) is None
    worker_health.write_health(health, "failed", "detector-run_1")
    assert worker_health.check_health(health, 30) == "the worker is failed"
    worker_health.write_health(health, "ready", "detector-run_1")
    assert worker_health.check_health(health, 30, now=health.stat().st_mtime + 31) is not None


def test_only_the_packages_are_copied_into_the_build(image: tuple) -> None:
    _, instructions = image
    copies = [i.args for i in instructions if i.keyword == "COPY" and i.stage == 0]
    sources = {c.split()[0] for c in copies if not c.startswith("--from")}
    assert sources == {"pyproject.toml", "aios", "connector"}

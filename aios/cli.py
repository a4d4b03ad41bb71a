"""The ``aios`` command line: thin commands that build services and delegate to the library."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

app = typer.Typer(
    name="aios",
    help="AIOS: video analytics and automation pipelines for cameras and industrial devices.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="Detection models.", no_args_is_help=True)
assets_app = typer.Typer(help="Demo assets (video, photos).", no_args_is_help=True)
pipeline_app = typer.Typer(help="Pipeline documents.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(assets_app, name="assets")
app.add_typer(pipeline_app, name="pipeline")

EXIT_INVALID = 2
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report an interrupted command

# OpenCV's own logging (device probing warnings) is noise next to ours.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format='{"time":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s",'
        '"message":"%(message)s"}',
        stream=sys.stderr,
    )


def _err(message: str) -> None:
    typer.echo(message, err=True)


class _UnreadableError(Exception):
    """The pipeline file cannot be read as text."""


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as err:
        raise _UnreadableError(f"cannot read {path}: {err.strerror}") from err
    except UnicodeDecodeError as err:
        raise _UnreadableError(
            f"cannot read {path}: not UTF-8 text (byte {err.start}); save the pipeline as "
            "UTF-8 JSON"
        ) from err


def _read_json(path: Path) -> Any:
    try:
        return _read_text(path)
    except _UnreadableError as err:
        _err(f"error: {err}")
        raise typer.Exit(EXIT_INVALID) from err


def _check_output(path: Path | None, what: str, *, folder: bool = False) -> None:
    """Exit with a clear message unless ``path`` can be written (checked before running)."""
    if path is None:
        return
    problem = (path.exists() and not path.is_dir()) if folder else path.is_dir()
    if problem:
        kind = "a folder" if folder else "a file"
        _err(f"error: {what} {path} must be {kind}")
        raise typer.Exit(EXIT_INVALID)
    parent = path if folder else path.parent
    existing = parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        _err(f"error: cannot write {what} {path}: {existing} is not a writable folder")
        raise typer.Exit(EXIT_INVALID)


@app.command("nodes")
def nodes_command(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print manifests and config JSON Schemas as JSON.")
    ] = False,
) -> None:
    """List the node catalog (the web palette renders from `--json`)."""
    from aios.catalog.base import Category
    from aios.nodes import CATALOG

    if as_json:
        typer.echo(json.dumps(CATALOG.export(), indent=2))
        return
    order = list(Category)
    for node_type in sorted(CATALOG, key=lambda t: (order.index(t.manifest.category), t.type_id)):
        m = node_type.manifest
        ins = ", ".join(f"{p.name}:{p.kind.value}" for p in m.inputs) or "-"
        outs = ", ".join(f"{p.name}:{p.kind.value}" for p in m.outputs) or "-"
        typer.echo(f"{m.category.value:<10} {m.type:<28} {m.title:<18} in[{ins}] out[{outs}]")


@pipeline_app.command("schema")
def pipeline_schema_command() -> None:
    """Print the JSON Schema of pipeline documents."""
    from aios.pipeline.document import pipeline_json_schema

    typer.echo(json.dumps(pipeline_json_schema(), indent=2))


def _validate_or_exit(path: Path) -> Any:
    from aios.nodes import CATALOG
    from aios.pipeline.validation import PipelineInvalid, validate_pipeline

    raw = _read_json(path)
    try:
        return validate_pipeline(raw, CATALOG)
    except PipelineInvalid as err:
        _err(f"{path}: invalid pipeline, {len(err.issues)} problem(s):")
        for issue in err.issues:
            _err(f"  - {issue}")
        raise typer.Exit(EXIT_INVALID) from err


@app.command("validate")
def validate_command(
    pipeline: Annotated[Path, typer.Argument(help="Pipeline document (JSON).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Validate a pipeline document; every problem is listed with where it is."""
    from aios.nodes import CATALOG
    from aios.pipeline.validation import PipelineInvalid, validate_pipeline

    if as_json:
        try:
            raw = _read_text(pipeline)
        except _UnreadableError as err:
            issue = {"code": "invalid_document", "message": str(err), "location": "document"}
            typer.echo(json.dumps({"valid": False, "issues": [issue]}))
            raise typer.Exit(EXIT_INVALID) from err
    else:
        validated = _validate_or_exit(pipeline)
        typer.echo(
            f"{pipeline}: valid ({len(validated.nodes)} nodes, "
            f"{sum(len(v) for v in validated.incoming.values())} edges)"
        )
        return
    try:
        validate_pipeline(raw, CATALOG)
    except PipelineInvalid as err:
        typer.echo(json.dumps({"valid": False, "issues": [i.to_dict() for i in err.issues]}))
        raise typer.Exit(EXIT_INVALID) from err
    typer.echo(json.dumps({"valid": True, "issues": []}))


@app.command("run")
def run_command(  # noqa: PLR0917 - typer options
    pipeline: Annotated[Path, typer.Argument(help="Pipeline document (JSON).")],
    source: Annotated[
        str | None,
        typer.Option(
            "--source",
            help="Replace the pipeline's video input: a file path, an rtsp:// URL or a "
            "webcam index.",
        ),
    ] = None,
    events: Annotated[
        Path | None,
        typer.Option("--events", help="Write events here, one JSON object per line."),
    ] = None,
    annotated: Annotated[
        Path | None,
        typer.Option("--annotated", help="Write the video with boxes, zones and lines drawn."),
    ] = None,
    media_dir: Annotated[
        Path | None,
        typer.Option(
            "--media-dir",
            help="Folder for snapshots and clips (default: 'media' beside the events file).",
        ),
    ] = None,
    max_frames: Annotated[
        int | None, typer.Option("--max-frames", min=1, help="Stop after this many frames.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logs.")] = False,
) -> None:
    """Run the video side of a pipeline and write its events (JSON lines)."""
    _setup_logging(verbose)
    from aios.runtime.batch import BatchOptions, run_batch
    from aios.runtime.stream import RunError

    validated = _validate_or_exit(pipeline)
    from aios.runtime.batch import SourceOverrideError, override_source

    if source is not None:
        try:
            validated = override_source(validated, source)
        except SourceOverrideError as err:
            _err(f"error: {err}")
            raise typer.Exit(EXIT_INVALID) from err
    _check_output(events, "events file")
    _check_output(annotated, "annotated video")
    _check_output(media_dir, "media folder", folder=True)
    options = BatchOptions(
        events_path=events,
        media_dir=media_dir,
        annotated_path=annotated,
        max_frames=max_frames,
        progress=not quiet,
    )
    try:
        summary, runner = run_batch(validated, options, install_stop=_install_stop)
    except RunError as err:
        _err(f"error: {err}")
        raise typer.Exit(EXIT_FAILED) from err
    _err(
        f"{summary.frames} frames, {summary.events_written} events in "
        f"{summary.wall_seconds:.1f} s" + (f" → {events}" if events else "")
    )
    dropped = sum(s.dropped_frames for s in summary.sources.values())
    if dropped:
        _err(f"{dropped} stale frames dropped to keep up with live video")
    if runner.stopping.is_set():
        raise typer.Exit(EXIT_INTERRUPTED)


def _install_stop(stop: Any) -> None:
    def handler(signum: int, _frame: FrameType | None) -> None:
        _err(f"stopping (signal {signum})…")
        stop()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


@models_app.command("fetch")
def models_fetch_command(
    force: Annotated[bool, typer.Option("--force", help="Convert and verify again.")] = False,
    input_size: Annotated[
        list[int] | None,
        typer.Option(
            "--input-size", help="Network input side in pixels (repeatable); default 416."
        ),
    ] = None,
) -> None:
    """Obtain, convert, verify and cache the default COCO detector (YOLOv3-tiny → ONNX)."""
    _setup_logging(False)
    from aios.vision.model_store import ModelError, fetch_default_model

    for size in input_size or [416]:
        try:
            path = fetch_default_model(force=force, input_size=size)
        except ModelError as err:
            _err(f"error: {err}")
            raise typer.Exit(EXIT_FAILED) from err
        typer.echo(str(path))


@assets_app.command("fetch")
def assets_fetch_command(
    names: Annotated[list[str] | None, typer.Argument(help="Asset names (default: all).")] = None,
) -> None:
    """Fetch the demo video and test photos."""
    from aios import assets

    try:
        paths = assets.fetch(names or None)
    except (assets.AssetError, KeyError) as err:
        _err(f"error: {err}")
        raise typer.Exit(EXIT_FAILED) from err
    for name, path in paths.items():
        typer.echo(f"{name}\t{path}")


def main() -> None:
    """Entry point of the ``aios`` console script."""
    app()


if __name__ == "__main__":
    main()

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

from aios.cloud.cli import app as cloud_app

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
app.add_typer(cloud_app, name="cloud")

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
    executions: Annotated[
        Path | None,
        typer.Option(
            "--executions",
            help="Write every event-tier execution (action results, history) here, one JSON "
            "object per line (default: 'executions.jsonl' beside the events file).",
        ),
    ] = None,
    state: Annotated[
        Path | None,
        typer.Option(
            "--state",
            help="SQLite file keeping cooldowns and stored values across runs "
            "(default: kept in memory for this run).",
        ),
    ] = None,
    secrets: Annotated[
        Path | None,
        typer.Option(
            "--secrets",
            help="JSON file of secrets by name, read after AIOS_SECRET_<NAME> variables.",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logs.")] = False,
) -> None:
    """Run a pipeline: video analytics, then conditions and actions for each event."""
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
    if executions is None and events is not None:
        executions = events.parent / "executions.jsonl"
    _check_output(executions, "executions file")
    if secrets is not None and not secrets.is_file():
        _err(f"error: secrets file {secrets} does not exist")
        raise typer.Exit(EXIT_INVALID)
    options = BatchOptions(
        events_path=events,
        media_dir=media_dir,
        annotated_path=annotated,
        max_frames=max_frames,
        progress=not quiet,
        executions_path=executions,
        state_path=state,
        secrets_path=secrets,
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
    if summary.event_tier:
        runs = ", ".join(f"{n} {s.lower()}" for s, n in summary.event_tier["executions"].items())
        _err(f"executions: {runs or 'none'}" + (f" → {executions}" if executions else ""))
        for node_id, counts in summary.event_tier["results"].items():
            _err(f"  {node_id}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
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


sim_app = typer.Typer(help="Simulated devices for demos and tests.", no_args_is_help=True)
app.add_typer(sim_app, name="sim")


@sim_app.command("plc")
def sim_plc_command(
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="TCP port (0: any).")
    ] = 5020,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    watch: Annotated[
        int, typer.Option("--watch", min=1, max=2000, help="Report changes of coils 0..N-1.")
    ] = 16,
    seconds: Annotated[
        float | None, typer.Option("--seconds", min=0.1, help="Stop after this long.")
    ] = None,
) -> None:
    """Run a simulated Modbus TCP PLC and print every change of its first coils."""
    import time

    from aios.plc.simulator import start_simulator

    stopping = {"now": False}

    def stop(*_args: Any) -> None:
        stopping["now"] = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    with start_simulator(host=host, port=port) as plc:
        typer.echo(f"simulated PLC listening on {host}:{plc.port} (unit 1)", err=True)
        before = plc.read_coils(0, watch)
        ends = None if seconds is None else time.monotonic() + seconds
        while not stopping["now"] and (ends is None or time.monotonic() < ends):
            time.sleep(0.05)
            now = plc.read_coils(0, watch)
            for address, (old, new) in enumerate(zip(before, now, strict=True)):
                if old != new:
                    stamp = time.strftime("%H:%M:%S")
                    typer.echo(f"{stamp} coil {address}: {'ON' if new else 'OFF'}", err=False)
            before = now


@app.command("compile")
def compile_command(
    pipeline: Annotated[Path, typer.Argument(help="Pipeline document (JSON).")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the definition here.")
    ] = None,
) -> None:
    """Print the event tier of a pipeline as Amazon States Language (linted with statelint)."""
    from aios.events.compiler import CompileError, compile_pipeline, lint

    validated = _validate_or_exit(pipeline)
    try:
        compiled = compile_pipeline(validated)
    except CompileError as err:
        _err(f"error: {err}")
        raise typer.Exit(EXIT_INVALID) from err
    if compiled is None:
        _err("error: the pipeline has no event-tier nodes (conditions, actions, outputs)")
        raise typer.Exit(EXIT_INVALID)
    problems = lint(compiled.definition)
    if problems:
        for problem in problems:
            _err(f"statelint: {problem}")
        raise typer.Exit(EXIT_FAILED)
    if output is not None:
        output.write_text(compiled.text() + "\n", encoding="utf-8")
        _err(f"{len(compiled.definition['States'])} top-level states → {output}")
    else:
        typer.echo(compiled.text())


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


@app.command("openapi")
def openapi_command() -> None:
    """Print the REST API's OpenAPI document (JSON), as served at ``/openapi.json``."""
    import tempfile

    from aios.api.app import create_app
    from aios.config import Settings
    from aios.services import Services
    from aios.store.factory import open_store

    with tempfile.TemporaryDirectory(prefix="aios-openapi-") as folder:
        settings = Settings(data_dir=Path(folder), jwt_secret="x" * 48)
        store = open_store(settings)
        try:
            app = create_app(Services(store=store, settings=settings))
            typer.echo(json.dumps(json.loads(app.get_openapi_json_schema()), indent=2))
        finally:
            store.close()


users_app = typer.Typer(help="Accounts of the console and API.", no_args_is_help=True)
app.add_typer(users_app, name="users")


@users_app.command("first-admin")
def first_admin_command(
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="Store to create it in: dynamodb://TABLE (the deployed DataTable; region and "
            "credentials from the AWS environment) or sqlite:///path/aios.db. "
            "Default: AIOS_DATABASE_URL, else <data_dir>/aios.db.",
        ),
    ] = None,
) -> None:
    """Create the first admin account of a store that has none, and print its password.

    The password is generated and shown once (only its hash is stored): sign in with it and
    change it in Profile. Exit 1 when the store has accounts already (nothing is changed).
    """
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

    from aios.api.auth import FIRST_ADMIN_USERNAME, ensure_first_admin
    from aios.config import Settings
    from aios.services import Services
    from aios.store.factory import DatabaseUrlError, open_store
    from aios.store.port import StoreError

    def aws_setup_error(err: Exception) -> str:
        if isinstance(err, NoRegionError):
            return "error: no AWS region: set AWS_REGION (the region of the deployed stack)"
        if isinstance(err, NoCredentialsError):
            return (
                "error: no AWS credentials: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, for the account of the deployed stack"
            )
        return f"error: AWS configuration: {err}; check AWS_PROFILE and AWS_REGION"

    try:
        settings = Settings(database_url=database_url) if database_url else Settings()
        store = open_store(settings)
    except DatabaseUrlError as err:
        _err(str(err))
        raise typer.Exit(EXIT_INVALID) from err
    except BotoCoreError as err:  # no region, an unknown AWS_PROFILE…
        _err(aws_setup_error(err))
        raise typer.Exit(EXIT_FAILED) from err
    try:
        password = ensure_first_admin(Services(store=store, settings=settings))
    except (StoreError, ClientError, BotoCoreError) as err:
        where = settings.database_url or "the store"
        if isinstance(err, (NoRegionError, NoCredentialsError)):
            message = aws_setup_error(err)
        elif "ResourceNotFoundException" in str(err):
            table = where.removeprefix("dynamodb://")
            message = (
                f"error: DynamoDB table {table!r} does not exist in this account and region: "
                "pass the deployed stack's DataTable name (--database-url dynamodb://TABLE) "
                "and check AWS_REGION"
            )
        else:
            message = (
                f"error: cannot create the account in {where}: {err}; check the table name, "
                "AWS_REGION and that the credentials may read and write the table"
            )
        _err(message)
        raise typer.Exit(EXIT_FAILED) from err
    finally:
        store.close()
    if password is None:
        _err(
            "the store has accounts already: nothing was created. Sign in with an admin "
            "account and manage users in Settings."
        )
        raise typer.Exit(EXIT_FAILED)
    typer.echo(f"username: {FIRST_ADMIN_USERNAME}\npassword: {password}")


@app.command("up")
def up_command(  # noqa: PLR0917 - typer options
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="TOML file of settings (keys as in .env.example, lower case, without AIOS_); "
            "environment variables and .env take precedence.",
        ),
    ] = None,
    host: Annotated[str | None, typer.Option("--host", help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option("--port", min=1, max=65535, help="HTTP port.")] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Folder of the database and state.")
    ] = None,
    connector: Annotated[
        Path | None,
        typer.Option(
            "--connector",
            help="Connector configuration (YAML) of the devices beside this machine, run "
            "in this process against the embedded broker.",
        ),
    ] = None,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="Start the demo site too: a simulated PLC (port AIOS_DEMO_PLC_PORT, default "
            "5020), the demo video as a camera and simulated sensors on a local connector, "
            "and the intrusion pipeline playing on them. Reuses what an earlier start made.",
        ),
    ] = False,
) -> None:
    """Start the service on this machine: API, console, live feeds, MQTT broker and runs."""
    from aios.up.server import main as up_main

    code = up_main(
        config,
        host=host,
        port=port,
        data_dir=data_dir,
        local_connector=connector,
        demo=demo or None,
    )
    if code:
        raise typer.Exit(code)


def main() -> None:
    """Entry point of the ``aios`` console script."""
    app()


if __name__ == "__main__":
    main()

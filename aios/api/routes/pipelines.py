"""``/api/v1/pipelines`` and ``/api/v1/runs``: documents, revisions, validation, Play/Stop.

Saving (POST, PUT) stores any document that has the pipeline document's *shape*
(:class:`~aios.pipeline.document.PipelineDocument`; otherwise 422 with field paths such as
``body.nodes.0.id``), even when its graph or node configs have problems: an editor saves
work in progress. Those problems are returned with every save and read (``validation``),
by ``POST …/validate``, and block ``POST …/execute`` (422 ``pipeline_invalid`` listing each
issue with its node id and field path). A saved document nests at most
:data:`aios.domain.MAX_JSON_DEPTH` levels in all (see
:class:`~aios.api.models.PipelineDocumentIn`); a deeper one is a 422 and nothing is saved.
A saved document is at most :data:`MAX_DOCUMENT_BYTES` (compact UTF-8 JSON) with every
store; a larger one is a 422 (``body``, type ``too_large``) and nothing is saved.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query

from aios.api.errors import ConflictApi, Unprocessable
from aios.api.models import (
    ExecuteRequest,
    PageOut,
    PipelineDetail,
    PipelineDocumentIn,
    PipelineIssueOut,
    PipelineOut,
    PipelineUpdate,
    ValidationResult,
)
from aios.api.permissions import API_PREFIX
from aios.api.routes._common import DEFAULT_LIMIT, Cursor, Limit, listed, require
from aios.domain import JsonObject, PipelineRecord, PipelineRevision, Run
from aios.pipeline.document import PipelineDocument
from aios.pipeline.validation import PipelineInvalid, validate_pipeline
from aios.runs.edge import fleet_plcs, placement_problems
from aios.runs.service import PipelineRuns
from aios.services import Services

if TYPE_CHECKING:
    from aios.api.app import ApiResolver

PipelineId = Annotated[str, Path(max_length=128, description="The pipeline's id.")]
RunId = Annotated[str, Path(max_length=128, description="The run's id.")]
Revision = Annotated[int, Path(ge=1, le=2**31, description="Revision number, from 1.")]

STORE_ITEM_BYTES = 400 * 1024
"""DynamoDB's largest item, 400 KB (DynamoDB developer guide, "Service, account, and table
quotas": item size); a pipeline revision is one item."""

MAX_DOCUMENT_BYTES = 350 * 1024
"""Largest pipeline document saved, measured as compact UTF-8 JSON: under
:data:`STORE_ITEM_BYTES`, with room for the revision's other attributes and for DynamoDB's
encoding of the document (map keys, numbers). The same limit with every store."""


def document_size_problem(document: dict[str, Any]) -> str | None:
    """What is wrong with the size of ``document`` (``None``: it fits
    :data:`MAX_DOCUMENT_BYTES`, measured as compact UTF-8 JSON)."""
    size = len(json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode())
    if size <= MAX_DOCUMENT_BYTES:
        return None
    return (
        f"the pipeline document is {-(-size // 1024)} KB; the store keeps at most "
        f"{STORE_ITEM_BYTES // 1024} KB per revision, {MAX_DOCUMENT_BYTES // 1024} KB of "
        "it for the document: split it into smaller pipelines, or shorten large node settings"
    )


def check_document_size(document: dict[str, Any], field: str = "body") -> None:
    """Refuse a document larger than :data:`MAX_DOCUMENT_BYTES`.

    Raises:
        Unprocessable: 422 on ``field`` (the document's place in the request body), type
            ``too_large``, saying the size in KB and what to do.
    """
    problem = document_size_problem(document)
    if problem is not None:
        raise Unprocessable.field(field, problem, type_="too_large")


def validation_of(document: Any, services: Services | None = None) -> ValidationResult:
    """Validate a document against the catalog; every problem, located. With ``services``,
    also against the fleet: each fleet camera node must name a registered camera behind a
    connector, and each PLC write node with a ``device_id`` a registered PLC behind one
    (what Play needs), reported on the node's ``config.device_id`` with code
    ``fleet_camera`` / ``fleet_plc``."""
    from aios.nodes import CATALOG

    try:
        validated = validate_pipeline(document, CATALOG)
    except PipelineInvalid as err:
        return ValidationResult(
            valid=False, issues=[PipelineIssueOut(**issue.to_dict()) for issue in err.issues]
        )
    if services is None:
        return ValidationResult(valid=True)
    _sources, problems = placement_problems(services, validated)
    plcs = fleet_plcs(validated)
    issues = [
        PipelineIssueOut(
            code="fleet_plc" if node_id in plcs else "fleet_camera",
            message=message,
            node_id=node_id,
            path=["config", "device_id"] if node_id else [],
            location=f"node '{node_id}' config.device_id" if node_id else "document",
        )
        for node_id, message in problems
    ]
    return ValidationResult(valid=not issues, issues=issues)


def _out(record: PipelineRecord) -> PipelineOut:
    return PipelineOut(**record.model_dump())


def register(app: ApiResolver) -> None:
    """Add the pipeline and run routes."""
    store = app.services.store
    runs = PipelineRuns(app.services)

    def get_record(pipeline_id: str) -> PipelineRecord:
        return require(store.pipelines.get(pipeline_id), f"pipeline '{pipeline_id}'")

    def active_run_id(pipeline_id: str) -> str | None:
        run = runs.active(pipeline_id)
        return run.id if run else None

    def detail(record: PipelineRecord) -> PipelineDetail:
        revision = require(
            store.pipelines.get_revision(record.id, record.latest_revision),
            f"revision {record.latest_revision} of pipeline '{record.id}'",
        )
        return PipelineDetail(
            **record.model_dump(),
            document=revision.document,
            validation=validation_of(revision.document, app.services),
            active_run_id=active_run_id(record.id),
        )

    def stored_document(document: PipelineDocument, field: str = "body") -> dict[str, Any]:
        stored = document.model_dump(mode="json", by_alias=True)
        check_document_size(stored, field)
        return stored

    @app.get(f"{API_PREFIX}/pipelines", tags=["pipelines"], summary="List pipelines (by id)")
    def list_pipelines(
        *,
        search: Annotated[
            str | None, Query(max_length=200, description="Substring of the name or id.")
        ] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> PageOut[PipelineOut]:
        page = listed(
            lambda: store.pipelines.list(search=search, limit=limit, cursor=cursor), cursor
        )
        return PageOut[PipelineOut](
            items=[_out(r) for r in page.items], next_cursor=page.next_cursor
        )

    @app.post(
        f"{API_PREFIX}/pipelines",
        tags=["pipelines"],
        summary="Create a pipeline from a document (its revision 1)",
        status_code=201,
    )
    def create_pipeline(body: PipelineDocumentIn) -> PipelineDetail:
        now = app.services.clock()
        record = PipelineRecord(
            name=body.name,
            description=body.description,
            created_by=app.principal().username,
            created_at=now,
            updated_at=now,
        )
        created = store.pipelines.create(record, stored_document(body))
        app.audit_target(created.id, name=created.name)
        return detail(created)

    @app.post(
        f"{API_PREFIX}/pipelines/validate",
        tags=["pipelines"],
        summary="Validate a document without saving it",
    )
    def validate_document(body: Annotated[JsonObject, Body()]) -> ValidationResult:
        return validation_of(body, app.services)

    @app.get(
        f"{API_PREFIX}/pipelines/<pipeline_id>",
        tags=["pipelines"],
        summary="Get a pipeline with its latest document",
    )
    def read_pipeline(pipeline_id: PipelineId) -> PipelineDetail:
        return detail(get_record(pipeline_id))

    @app.put(
        f"{API_PREFIX}/pipelines/<pipeline_id>",
        tags=["pipelines"],
        summary="Save a new revision of a pipeline",
    )
    def update_pipeline(pipeline_id: PipelineId, body: PipelineUpdate) -> PipelineDetail:
        record = get_record(pipeline_id)
        if body.expected_revision > record.latest_revision:
            raise ConflictApi(
                f"revision {body.expected_revision} of pipeline '{pipeline_id}' does not "
                f"exist; the latest is {record.latest_revision}: reload it and apply your "
                "change again",
                code="stale_revision",
            )
        if body.expected_revision < record.latest_revision:
            raise ConflictApi(
                f"pipeline '{pipeline_id}' was saved as revision {record.latest_revision} "
                f"since you loaded revision {body.expected_revision}; reload it and apply "
                "your change again",
                code="stale_revision",
            )
        updated = store.pipelines.add_revision(
            pipeline_id,
            stored_document(body.document, "body.document"),
            expected_revision=body.expected_revision,
            name=body.document.name,
            description=body.document.description,
            created_by=app.principal().username,
            at=app.services.clock(),
        )
        app.audit_target(pipeline_id, revision=updated.latest_revision)
        return detail(updated)

    @app.delete(
        f"{API_PREFIX}/pipelines/<pipeline_id>",
        tags=["pipelines"],
        summary="Delete a pipeline and its revisions (runs and events are kept)",
        status_code=204,
    )
    def delete_pipeline(pipeline_id: PipelineId) -> Response[None]:
        get_record(pipeline_id)
        running = active_run_id(pipeline_id)
        if running is not None:
            raise ConflictApi(
                f"pipeline '{pipeline_id}' is running (run '{running}'); stop it first",
                code="pipeline_running",
            )
        store.pipelines.delete(pipeline_id)
        return Response(status_code=204, body=None)

    @app.get(
        f"{API_PREFIX}/pipelines/<pipeline_id>/revisions",
        tags=["pipelines"],
        summary="List a pipeline's revisions (newest first)",
    )
    def list_revisions(
        *, pipeline_id: PipelineId, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
    ) -> PageOut[PipelineRevision]:
        get_record(pipeline_id)
        page = listed(
            lambda: store.pipelines.list_revisions(pipeline_id, limit=limit, cursor=cursor),
            cursor,
        )
        return PageOut[PipelineRevision](items=page.items, next_cursor=page.next_cursor)

    @app.get(
        f"{API_PREFIX}/pipelines/<pipeline_id>/revisions/<revision>",
        tags=["pipelines"],
        summary="Get one revision of a pipeline",
    )
    def read_revision(pipeline_id: PipelineId, revision: Revision) -> PipelineRevision:
        get_record(pipeline_id)
        return require(
            store.pipelines.get_revision(pipeline_id, revision),
            f"revision {revision} of pipeline '{pipeline_id}'",
        )

    @app.post(
        f"{API_PREFIX}/pipelines/<pipeline_id>/validate",
        tags=["pipelines"],
        summary="Validate a stored revision (default: the latest)",
    )
    def validate_stored(
        *,
        pipeline_id: PipelineId,
        revision: Annotated[int | None, Query(ge=1, le=2**31)] = None,
    ) -> ValidationResult:
        record = get_record(pipeline_id)
        number = revision or record.latest_revision
        stored = require(
            store.pipelines.get_revision(pipeline_id, number),
            f"revision {number} of pipeline '{pipeline_id}'",
        )
        return validation_of(stored.document, app.services)

    @app.post(
        f"{API_PREFIX}/pipelines/<pipeline_id>/execute",
        tags=["pipelines"],
        summary="Play: start a run of a revision (default: the latest)",
        status_code=202,
    )
    def execute_pipeline(
        *,
        pipeline_id: PipelineId,
        revision: Annotated[
            int | None,
            Query(ge=1, le=2**31, description="The revision to run (default: the latest)."),
        ] = None,
        body: Annotated[ExecuteRequest | None, Body()] = None,
    ) -> Run:
        chosen = body.revision if body is not None else None
        if chosen is not None and revision is not None and chosen != revision:
            raise Unprocessable.field(
                "body.revision",
                f"differs from the query's revision {revision}; give the revision once",
            )
        number = chosen if chosen is not None else revision
        run = runs.execute(pipeline_id, revision=number, actor=app.principal().username)
        app.audit_target(pipeline_id, run_id=run.id, revision=run.revision)
        return run

    @app.post(
        f"{API_PREFIX}/pipelines/<pipeline_id>/stop",
        tags=["pipelines"],
        summary="Stop the pipeline's active run",
        status_code=202,
    )
    def stop_pipeline(pipeline_id: PipelineId) -> Run:
        run = runs.stop(pipeline_id, actor=app.principal().username)
        app.audit_target(pipeline_id, run_id=run.id)
        return run

    @app.get(
        f"{API_PREFIX}/pipelines/<pipeline_id>/runs",
        tags=["pipelines"],
        summary="List a pipeline's runs (newest first)",
    )
    def list_runs(
        *, pipeline_id: PipelineId, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
    ) -> PageOut[Run]:
        get_record(pipeline_id)
        page = listed(lambda: store.runs.list(pipeline_id, limit=limit, cursor=cursor), cursor)
        return PageOut[Run](items=page.items, next_cursor=page.next_cursor)

    @app.get(f"{API_PREFIX}/runs/<run_id>", tags=["pipelines"], summary="Get a run")
    def read_run(run_id: RunId) -> Run:
        return require(store.runs.get(run_id), f"run '{run_id}'")

"""``/api/v1/backup`` and ``/api/v1/restore``: a site's configuration as one JSON file.

The file (:class:`~aios.api.models.BackupFile`, ``schema_version`` :data:`BACKUP_SCHEMA_VERSION`)
holds what people configured, not what happened:

- ``devices``: id, name, kind, site, tags, location, parent, pending, and the desired
  configuration (not status, health, reported configuration or history);
- ``pipelines``: every revision's document, oldest first;
- ``alert_rules``; ``settings`` (the site settings, ``{"fleet": {...}}``);
- ``users``: id, username, display name, email, role, disabled — never a password hash
  (a user the restore creates cannot sign in until an admin sets a password);
- ``integration_secrets``: the *names* of the secrets set, never their values (the
  restore answers which of them are missing here).

Restore (``mode=merge``, the only mode: nothing absent from the file is deleted) first
validates the whole file — every problem is reported with its field path, such as
``body.devices.2.kind`` or ``body.pipelines.0.revisions.1.nodes.3.id``, and nothing is
written if there is one — then upserts: a record whose id is new is created; an existing
one is updated when it differs (a device through the fleet service, so its ``version``
and ``desired_version`` move on and the new desired configuration is published; a
pipeline whose latest document differs gets *one* new revision with the file's latest
document, so its revision history stays consistent; a user keeps its password). The
caller's own account is never changed by a restore (no one locks themselves out).
"""

from __future__ import annotations

import json
import secrets
from typing import TYPE_CHECKING, Annotated, Any, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aios import __version__
from aios.api.errors import Unprocessable, field_path
from aios.api.models import (
    BackupFile,
    BackupUser,
    DeviceCreate,
    KindCounts,
    PipelineDocumentIn,
    RestoreOut,
)
from aios.api.permissions import API_PREFIX
from aios.api.routes.pipelines import document_size_problem
from aios.domain import AlertRule, Device, JsonObject, PipelineRecord, User
from aios.fleet.service import FLEET_SETTINGS_KEY, UPDATABLE_FIELDS, FleetService

if TYPE_CHECKING:
    from aios.api.app import ApiResolver

BACKUP_SCHEMA_VERSION = 1
"""Version of the backup file's format; a file of a newer one is refused."""

MAX_DETAILS = 100
"""Problems listed at most in a refused restore."""


class BackupDevice(DeviceCreate):
    """A device as a backup holds it."""

    pending: bool = False
    desired_config: JsonObject = Field(default_factory=dict)


class BackupSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fleet: dict[str, bool] = Field(default_factory=dict)


def _pages(fetch: Any) -> list[Any]:
    items: list[Any] = []
    cursor: str | None = None
    while True:
        page = fetch(cursor)
        items.extend(page.items)
        if page.next_cursor is None:
            return items
        cursor = page.next_cursor


def _problems(err: ValidationError, prefix: str) -> list[dict[str, Any]]:
    return [
        {
            "field": field_path((prefix, *e.get("loc", ()))) if e.get("loc") else prefix,
            "message": str(e.get("msg", "invalid value")),
            "type": str(e.get("type", "value_error")),
        }
        for e in err.errors()
    ]


def register(app: ApiResolver) -> None:
    """Add the backup and restore routes."""
    store = app.services.store
    fleet = FleetService(app.services)

    def export() -> BackupFile:
        devices = _pages(lambda c: store.devices.list(limit=1000, cursor=c))
        pipelines: list[dict[str, Any]] = []
        for record in _pages(lambda c: store.pipelines.list(limit=1000, cursor=c)):
            revisions = _pages(
                lambda c, pid=record.id: store.pipelines.list_revisions(pid, limit=1000, cursor=c)
            )
            pipelines.append(
                {
                    "id": record.id,
                    "name": record.name,
                    "description": record.description,
                    "revisions": [r.document for r in sorted(revisions, key=lambda r: r.revision)],
                }
            )
        users = _pages(lambda c: store.users.list(limit=1000, cursor=c))
        fleet_settings = store.settings.get(FLEET_SETTINGS_KEY)
        return BackupFile(
            schema_version=BACKUP_SCHEMA_VERSION,
            exported_at=app.services.clock(),
            exported_by=app.principal().username,
            devices=[
                BackupDevice(
                    id=d.id,
                    name=d.name,
                    kind=d.kind,
                    site=d.site,
                    tags=d.tags,
                    location=d.location,
                    parent_id=d.parent_id,
                    firmware_version=d.firmware_version,
                    pending=d.pending,
                    desired_config=d.desired_config,
                ).model_dump(mode="json")
                for d in devices
            ],
            pipelines=pipelines,
            alert_rules=[r.model_dump(mode="json") for r in store.alerts.list_rules()],
            settings={
                "fleet": {
                    k: v
                    for k, v in (fleet_settings or {}).items()
                    if isinstance(k, str) and isinstance(v, bool)
                }
                if isinstance(fleet_settings, dict)
                else {}
            },
            users=[
                BackupUser(
                    id=u.id,
                    username=u.username,
                    display_name=u.display_name,
                    email=u.email,
                    role=u.role,
                    disabled=u.disabled,
                ).model_dump(mode="json")
                for u in users
            ],
            integration_secrets=[s.name for s in store.secrets.list()],
        )

    @app.get(
        f"{API_PREFIX}/backup",
        tags=["settings"],
        summary="Download the site's configuration as one JSON file",
        description=__doc__ or "",
        responses={
            200: {
                "description": "The backup file (Content-Disposition: attachment).",
                "content": {"application/json": {"schema": BackupFile.model_json_schema()}},
            }
        },
    )
    def backup() -> Response[str]:
        body = export()
        stamp = body.exported_at.strftime("%Y%m%dT%H%M%SZ")
        return Response(
            status_code=200,
            content_type="application/json",
            body=json.dumps(body.model_dump(mode="json"), ensure_ascii=False, indent=1),
            headers={
                "Content-Disposition": f'attachment; filename="aios-backup-{stamp}.json"',
                "Cache-Control": "no-store",
            },
        )

    @app.post(
        f"{API_PREFIX}/restore",
        tags=["settings"],
        summary="Restore a backup file (validated whole first; merge: create or update)",
        description=__doc__ or "",
    )
    def restore(
        body: BackupFile,
        mode: Annotated[
            Literal["merge"],
            Query(description="merge: create new records, update existing ones, delete none."),
        ] = "merge",
    ) -> RestoreOut:
        if body.schema_version > BACKUP_SCHEMA_VERSION:
            raise Unprocessable.field(
                "body.schema_version",
                f"this backup is of format version {body.schema_version}, newer than this "
                f"version of AIOS ({__version__}) reads ({BACKUP_SCHEMA_VERSION}); restore "
                "it with a newer AIOS",
            )
        problems: list[dict[str, Any]] = []

        def check(model: type[BaseModel], value: Any, path: str) -> Any:
            try:
                return model.model_validate(value)
            except ValidationError as err:
                problems.extend(_problems(err, path))
                return None

        def problem(path: str, message: str) -> None:
            problems.append({"field": path, "message": message, "type": "value_error"})

        # ---- validate everything
        devices: list[BackupDevice] = []
        indexed: list[tuple[int, BackupDevice]] = []
        seen: set[str] = set()
        for i, raw in enumerate(body.devices):
            device = check(BackupDevice, raw, f"body.devices.{i}")
            if device is None:
                continue
            if device.id in seen:
                problem(f"body.devices.{i}.id", f"device '{device.id}' is listed twice")
                continue
            seen.add(device.id)
            devices.append(device)
            indexed.append((i, device))
        kinds = {d.id: d.kind.value for d in devices}
        for i, device in indexed:
            if device.parent_id is None:
                continue
            parent_kind = kinds.get(device.parent_id)
            if parent_kind is None:
                stored_parent = store.devices.get(device.parent_id)
                parent_kind = stored_parent.kind.value if stored_parent else None
            if parent_kind is None:
                problem(
                    f"body.devices.{i}.parent_id",
                    f"parent '{device.parent_id}' is neither in the backup nor registered",
                )
            elif parent_kind != "connector":
                problem(
                    f"body.devices.{i}.parent_id",
                    f"parent '{device.parent_id}' is a {parent_kind}, not a connector",
                )

        pipelines: list[tuple[str, str, str, list[dict[str, Any]]]] = []
        pipeline_ids: set[str] = set()
        for i, raw in enumerate(body.pipelines):
            if not isinstance(raw, dict):
                problem(f"body.pipelines.{i}", "a pipeline is an object")
                continue
            head = check(_PipelineHead, raw, f"body.pipelines.{i}")
            revisions = raw.get("revisions")
            if not isinstance(revisions, list) or not revisions:
                problem(f"body.pipelines.{i}.revisions", "at least one revision is needed")
                continue
            documents: list[dict[str, Any]] = []
            for j, document in enumerate(revisions):
                where = f"body.pipelines.{i}.revisions.{j}"
                parsed = check(PipelineDocumentIn, document, where)
                if parsed is None:
                    continue
                dumped = parsed.model_dump(mode="json", by_alias=True)
                too_large = document_size_problem(dumped)
                if too_large is not None:
                    problem(where, too_large)
                    continue
                documents.append(dumped)
            if head is None or len(documents) != len(revisions):
                continue
            if head.id in pipeline_ids:
                problem(f"body.pipelines.{i}.id", f"pipeline '{head.id}' is listed twice")
                continue
            pipeline_ids.add(head.id)
            pipelines.append((head.id, head.name, head.description, documents))

        rules: list[AlertRule] = []
        for i, raw in enumerate(body.alert_rules):
            rule = check(AlertRule, raw, f"body.alert_rules.{i}")
            if rule is None:
                continue
            if rule.device_id not in kinds and store.devices.get(rule.device_id) is None:
                problem(
                    f"body.alert_rules.{i}.device_id",
                    f"device '{rule.device_id}' is neither in the backup nor registered",
                )
            rules.append(rule)

        settings = check(BackupSettings, body.settings, "body.settings")

        users: list[BackupUser] = []
        names: dict[str, str] = {}
        for i, raw in enumerate(body.users):
            user = check(BackupUser, raw, f"body.users.{i}")
            if user is None:
                continue
            key = user.username.casefold()
            if key in names and names[key] != user.id:
                problem(f"body.users.{i}.username", f"username '{user.username}' is listed twice")
                continue
            names[key] = user.id
            holder = store.users.get_by_username(user.username)
            if holder is not None and holder.id != user.id:
                problem(
                    f"body.users.{i}.username",
                    f"username '{user.username}' belongs to another user here ({holder.id})",
                )
                continue
            users.append(user)

        if problems:
            shown = problems[:MAX_DETAILS]
            raise Unprocessable(
                f"the backup has {len(problems)} problem(s); nothing was restored. First: "
                f"{shown[0]['field']}: {shown[0]['message']}",
                code="invalid_backup",
                details=shown,
            )

        # ---- write
        actor = app.principal()
        now = app.services.clock()
        out = RestoreOut(
            mode=mode,
            devices=KindCounts(),
            pipelines=KindCounts(),
            alert_rules=KindCounts(),
            settings=KindCounts(),
            users=KindCounts(),
            missing_secrets=[],
        )
        # connectors (parents) before the devices behind them
        for device in sorted(devices, key=lambda d: (d.parent_id is not None, d.id)):
            current = store.devices.get(device.id)
            if current is None:
                fleet.register(
                    Device(**device.model_dump(exclude={"desired_config"})),
                    actor=actor.username,
                )
                if device.desired_config:
                    fleet.set_desired_config(
                        device.id,
                        device.desired_config,
                        expected_version=None,
                        actor=actor.username,
                    )
                out.devices.created += 1
                continue
            wanted = device.model_dump(include=set(UPDATABLE_FIELDS) | {"pending"})
            have = current.model_dump(include=set(UPDATABLE_FIELDS) | {"pending"})
            changes = {k: v for k, v in wanted.items() if v != have.get(k)}
            if changes:
                fleet.update(device.id, changes, expected_version=None, actor=actor.username)
            config_changed = device.desired_config != current.desired_config
            if config_changed:
                fleet.set_desired_config(
                    device.id, device.desired_config, expected_version=None, actor=actor.username
                )
            if changes or config_changed:
                out.devices.updated += 1
            else:
                out.devices.unchanged += 1

        for pipeline_id, name, description, documents in pipelines:
            record = store.pipelines.get(pipeline_id)
            if record is None:
                created = store.pipelines.create(
                    PipelineRecord(
                        id=pipeline_id,
                        name=name,
                        description=description,
                        created_by=actor.username,
                        created_at=now,
                        updated_at=now,
                    ),
                    documents[0],
                )
                for document in documents[1:]:
                    created = store.pipelines.add_revision(
                        pipeline_id,
                        document,
                        expected_revision=created.latest_revision,
                        created_by=actor.username,
                        at=now,
                    )
                out.pipelines.created += 1
                continue
            latest = store.pipelines.get_revision(pipeline_id, record.latest_revision)
            if latest is not None and latest.document == documents[-1]:
                out.pipelines.unchanged += 1
                continue
            store.pipelines.add_revision(
                pipeline_id,
                documents[-1],
                expected_revision=record.latest_revision,
                name=name,
                description=description,
                created_by=actor.username,
                at=now,
            )
            out.pipelines.updated += 1

        for rule in rules:
            current_rule = store.alerts.get_rule(rule.id)
            if current_rule == rule:
                out.alert_rules.unchanged += 1
                continue
            fleet.put_rule(rule, actor=actor.username)
            if current_rule is None:
                out.alert_rules.created += 1
            else:
                out.alert_rules.updated += 1

        if settings is not None and settings.fleet:
            stored = store.settings.get(FLEET_SETTINGS_KEY)
            value: dict[str, Any] = dict(stored) if isinstance(stored, dict) else {}
            merged = {**value, **settings.fleet}
            if merged == value:
                out.settings.unchanged += 1
            else:
                store.settings.put(FLEET_SETTINGS_KEY, merged)
                if stored is None:
                    out.settings.created += 1
                else:
                    out.settings.updated += 1

        for user in users:
            if user.id == actor.user_id:
                out.users.unchanged += 1
                continue
            existing = store.users.get(user.id)
            if existing is None:
                store.users.create(
                    User(
                        id=user.id,
                        username=user.username,
                        display_name=user.display_name,
                        email=user.email,
                        role=user.role,
                        disabled=user.disabled,
                        # no usable password: an admin sets one before the user signs in
                        password_hash=f"!restored-{secrets.token_hex(16)}",
                        created_at=now,
                        updated_at=now,
                    )
                )
                out.users.created += 1
                continue
            fields = user.model_dump(exclude={"id"})
            if all(getattr(existing, k) == v for k, v in fields.items()):
                out.users.unchanged += 1
                continue
            store.users.update(
                existing.model_copy(update={**fields, "updated_at": now}), existing.version
            )
            if user.disabled or user.role != existing.role:
                store.refresh_tokens.revoke_user(user.id, at=now)
            out.users.updated += 1

        have_secrets = {s.name for s in store.secrets.list()}
        out.missing_secrets = sorted(set(body.integration_secrets) - have_secrets)
        app.audit_target(
            None,
            devices=out.devices.model_dump(),
            pipelines=out.pipelines.model_dump(),
            alert_rules=out.alert_rules.model_dump(),
            users=out.users.model_dump(),
        )
        return out


class _PipelineHead(BaseModel):
    """A backup pipeline's own fields (its revisions are checked one by one)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    revisions: list[Any]

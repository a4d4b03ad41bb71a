"""``/api/v1/integrations``: the secrets the notification and webhook nodes use, shown
masked, set and cleared by an admin.

What goes where. A *secret* — a WhatsApp Cloud API access token, a Telegram bot token, an
SMTP password, a webhook's shared signing secret, an HTTP POST's authorization or signing
secret — is set here and kept in the store's secrets table
(:class:`~aios.store.port.IntegrationSecretStore`; SQLite: encrypted at rest); a node's
configuration only *names* it (``access_token_secret: whatsapp_access_token``). Everything
else an integration needs — the SMTP host, port, sender and recipients, the WhatsApp phone
number id and recipients, the Telegram chat ids, a webhook's path — is not secret and is
part of the node's configuration, saved and versioned with the pipeline (two pipelines may
send through different SMTP servers or to different chats).

Where the nodes find a secret, first match wins: the service's environment
(``AIOS_SECRET_<NAME>``; whoever runs the service can pin a value), then the value set
here, then the service's secrets file (``--secrets`` / ``AIOS_SECRETS_FILE``). The list
says which one is in effect (``source``). Values never appear in a response, the audit
log (its entries name the secret only) or the logs.
"""

from __future__ import annotations

import logging
import os
import re
from typing import TYPE_CHECKING, Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path

from aios.api.errors import NotFoundApi, Unprocessable
from aios.api.models import (
    IntegrationSecretIn,
    IntegrationSecretOut,
    IntegrationsOut,
    SecretUse,
)
from aios.api.permissions import API_PREFIX
from aios.events.secrets import SECRET_NAME_PATTERN, FileSecretStore, SecretNotFound, env_var_for
from aios.store.port import SecretInfo, Store

if TYPE_CHECKING:
    from aios.api.app import ApiResolver

log = logging.getLogger(__name__)

MASK = "••••"

WELL_KNOWN: dict[str, tuple[str, str]] = {
    "whatsapp_access_token": (
        "WhatsApp access token",
        "WhatsApp Cloud API access token (a system user token of the Meta business "
        "account); the WhatsApp node's default. The phone number id and recipients are "
        "set on the node.",
    ),
    "telegram_bot_token": (
        "Telegram bot token",
        "The bot token @BotFather gave; the Telegram node's default. Chat ids are set on the node.",
    ),
    "smtp_password": (
        "SMTP password",
        "Password of the SMTP login; the email node's default. Host, port, user, sender "
        "and recipients are set on the node.",
    ),
}
"""Secrets listed even before a pipeline names them: the defaults of the notification
nodes (``aios/whatsapp@1``, ``aios/telegram@1``, ``aios/email@1``)."""

_NAME_RE = re.compile(SECRET_NAME_PATTERN)

SecretName = Annotated[
    str,
    Path(
        max_length=128,
        description="The secret's name (letters, digits, '_', '.', '-'; starts with a "
        "letter), as a node's configuration names it.",
    ),
]


def secret_fields(config_schema: dict[str, Any]) -> dict[str, str]:
    """The fields of a node configuration JSON Schema that name a secret, with their
    titles (a field whose schema, or one of its ``anyOf`` branches, has the secret name
    pattern)."""
    found: dict[str, str] = {}
    for field, prop in (config_schema.get("properties") or {}).items():
        if not isinstance(prop, dict):
            continue
        branches = [prop, *[b for b in prop.get("anyOf", []) if isinstance(b, dict)]]
        if any(b.get("pattern") == SECRET_NAME_PATTERN for b in branches):
            found[field] = str(prop.get("title") or field)
    return found


def secret_uses(store: Store) -> dict[str, list[tuple[SecretUse, str]]]:
    """Secret name → where the latest revision of each pipeline names it (and the field's
    title)."""
    from aios.nodes import CATALOG

    fields_by_type = {
        node_type.type_id: secret_fields(node_type.config_model.model_json_schema())
        for node_type in CATALOG
    }
    uses: dict[str, list[tuple[SecretUse, str]]] = {}
    cursor: str | None = None
    while True:
        page = store.pipelines.list(limit=1000, cursor=cursor)
        for record in page.items:
            revision = store.pipelines.get_revision(record.id, record.latest_revision)
            nodes = (revision.document.get("nodes") if revision else None) or []
            for node in nodes:
                if not isinstance(node, dict):
                    continue
                node_type = str(node.get("type") or "")
                config = node.get("config") if isinstance(node.get("config"), dict) else {}
                assert isinstance(config, dict)
                for field, title in fields_by_type.get(node_type, {}).items():
                    named = config.get(field)
                    if named is None and field in _defaults(node_type):
                        named = _defaults(node_type)[field]
                    if isinstance(named, str) and _NAME_RE.match(named):
                        use = SecretUse(
                            pipeline_id=record.id,
                            pipeline_name=record.name,
                            node_id=str(node.get("id") or ""),
                            node_type=node_type,
                            field=field,
                        )
                        uses.setdefault(named, []).append((use, title))
        if page.next_cursor is None:
            return uses
        cursor = page.next_cursor


def _defaults(node_type: str) -> dict[str, Any]:
    from aios.nodes import CATALOG

    found = CATALOG.get(node_type)
    if found is None:
        return {}
    return {
        name: field.default
        for name, field in found.config_model.model_fields.items()
        if isinstance(field.default, str)
    }


def register(app: ApiResolver) -> None:
    """Add the integration routes."""
    store = app.services.store

    def file_has(name: str) -> bool:
        path = app.services.settings.secrets_file
        if path is None:
            return False
        try:
            FileSecretStore(path).get(name)
        except SecretNotFound:
            return False
        except (OSError, ValueError):
            log.warning("the secrets file could not be read")
            return False
        return True

    def describe(
        name: str,
        info: SecretInfo | None,
        uses: list[tuple[SecretUse, str]],
    ) -> IntegrationSecretOut:
        env_var = env_var_for(name)
        in_env = bool(os.environ.get(env_var))
        source: Any
        if in_env:
            source = "env"
        elif info is not None:
            source = "store"
        elif file_has(name):
            source = "file"
        else:
            source = None
        hint = info.hint if info is not None and source == "store" else None
        masked = None if source is None else (MASK + hint if hint else f"{MASK} set")
        if name in WELL_KNOWN:
            title, description = WELL_KNOWN[name]
        elif uses:
            first, field_title = uses[0]
            title = field_title
            description = f"Named by node '{first.node_id}' ({first.node_type}) of pipeline " + (
                f"'{first.pipeline_name}'"
                + (f" and {len(uses) - 1} other node(s)" if len(uses) > 1 else "")
            )
        else:
            title, description = name, "Set from the console; no pipeline names it now."
        return IntegrationSecretOut(
            name=name,
            title=title,
            description=description,
            env_var=env_var,
            set=source is not None,
            source=source,
            masked=masked,
            hint=hint,
            stored=info is not None,
            updated_at=info.updated_at if info else None,
            updated_by=info.updated_by if info else None,
            used_by=[use for use, _ in uses],
        )

    def check_name(name: str) -> None:
        if not _NAME_RE.match(name):
            raise Unprocessable.field(
                "path.name",
                "a secret name starts with a letter and has letters, digits, '_', '.', '-' "
                "(at most 128 characters)",
                type_="string_pattern_mismatch",
            )

    @app.get(
        f"{API_PREFIX}/integrations",
        tags=["integrations"],
        summary="Integration secrets: which are set, where from, masked (never the values)",
        description=__doc__ or "",
    )
    def list_integrations() -> IntegrationsOut:
        stored = {info.name: info for info in store.secrets.list()}
        uses = secret_uses(store)
        names = sorted(set(WELL_KNOWN) | set(uses) | set(stored))
        return IntegrationsOut(items=[describe(n, stored.get(n), uses.get(n, [])) for n in names])

    @app.put(
        f"{API_PREFIX}/integrations/<name>",
        tags=["integrations"],
        summary="Set an integration secret (stored encrypted; running pipelines use it at "
        "their next action)",
    )
    def set_integration(name: SecretName, body: IntegrationSecretIn) -> IntegrationSecretOut:
        check_name(name)
        info = store.secrets.put(
            name, body.value, by=app.principal().username, at=app.services.clock()
        )
        app.audit_target(name)
        return describe(name, info, secret_uses(store).get(name, []))

    @app.delete(
        f"{API_PREFIX}/integrations/<name>",
        tags=["integrations"],
        summary="Clear an integration secret set from the console",
        status_code=204,
    )
    def clear_integration(name: SecretName) -> Response[None]:
        check_name(name)
        if not store.secrets.delete(name):
            raise NotFoundApi(f"no value of secret '{name}' is stored")
        return Response(status_code=204, body=None)

"""Integration secrets on AWS Secrets Manager: the cloud
:class:`aios.store.port.IntegrationSecretStore`.

The secret of integration ``telegram_bot_token`` is the Secrets Manager secret
``<prefix>telegram_bot_token`` (prefix ``AIOS_INTEGRATION_SECRET_PREFIX``, e.g.
``aios/prod/integrations/``), its ``SecretString`` the value itself, so operators may also
set it with the AWS CLI. What may be shown of it — who set it, when, the hint — is kept in
the secret's ``Description`` as JSON (``{"updated_at", "updated_by", "hint"}``); a secret
created outside the console shows its ``LastChangedDate`` and no hint.

Values are never logged nor returned by :meth:`SecretsManagerSecretStore.list` /
:meth:`~SecretsManagerSecretStore.info`. A cleared secret is deleted without a recovery
window (the console's "clear" means gone; the name can be set again at once).
"""

from __future__ import annotations

import builtins
import json
import logging
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from aios.store.codec import from_iso, to_iso, utc
from aios.store.port import MAX_SECRET_BYTES, SecretInfo, secret_hint

log = logging.getLogger(__name__)

_GONE = frozenset({"ResourceNotFoundException"})
_MARKED_FOR_DELETION = "InvalidRequestException"
"""What Secrets Manager answers for a secret scheduled for deletion (created elsewhere with a
recovery window): it is treated as absent, and restored when set again."""


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


class SecretsManagerSecretStore:
    """Integration secrets as Secrets Manager secrets named ``prefix + name``.

    Args:
        prefix: name prefix of the secrets (``aios/<stage>/integrations/``).
        client: a ``secretsmanager`` client (default: ``boto3.client("secretsmanager")``,
            built on first use).
        kms_key_id: KMS key of new secrets (default: the account's ``aws/secretsmanager``).
    """

    def __init__(
        self, prefix: str, *, client: Any | None = None, kms_key_id: str | None = None
    ) -> None:
        if not prefix:
            raise ValueError("the integration secret prefix cannot be empty")
        self.prefix = prefix
        self._client = client
        self._kms_key_id = kms_key_id

    @property
    def client(self) -> Any:
        """The Secrets Manager client."""
        if self._client is None:
            import boto3

            self._client = boto3.client("secretsmanager")
        return self._client

    def secret_id(self, name: str) -> str:
        """The Secrets Manager name of integration secret ``name``."""
        return f"{self.prefix}{name}"

    # ------------------------------------------------------------------ reading

    def get(self, name: str) -> str | None:
        """The value, or ``None`` when no such secret is set."""
        try:
            response = self.client.get_secret_value(SecretId=self.secret_id(name))
        except ClientError as err:
            if _code(err) in _GONE or _code(err) == _MARKED_FOR_DELETION:
                return None
            raise
        value = response.get("SecretString")
        return value if isinstance(value, str) and value else None

    def _info(self, name: str, described: dict[str, Any]) -> SecretInfo:
        meta: dict[str, Any] = {}
        description = described.get("Description")
        if isinstance(description, str) and description.startswith("{"):
            try:
                loaded = json.loads(description)
            except ValueError:
                loaded = None
            if isinstance(loaded, dict):
                meta = loaded
        updated_at: datetime | None = None
        if isinstance(meta.get("updated_at"), str):
            try:
                updated_at = from_iso(meta["updated_at"])
            except ValueError:
                updated_at = None
        if updated_at is None:
            changed = described.get("LastChangedDate") or described.get("CreatedDate")
            updated_at = (
                changed.astimezone(UTC) if isinstance(changed, datetime) else datetime.now(UTC)
            )
        by = meta.get("updated_by")
        hint = meta.get("hint")
        return SecretInfo(
            name=name,
            updated_at=updated_at,
            updated_by=by if isinstance(by, str) else None,
            hint=hint if isinstance(hint, str) else None,
        )

    def info(self, name: str) -> SecretInfo | None:
        """What may be shown of the secret (never its value), or ``None``."""
        try:
            described = self.client.describe_secret(SecretId=self.secret_id(name))
        except ClientError as err:
            if _code(err) in _GONE:
                return None
            raise
        if described.get("DeletedDate") is not None:
            return None
        return self._info(name, described)

    def list(self) -> builtins.list[SecretInfo]:
        """Every integration secret set (those under the prefix), by name."""
        found: builtins.list[SecretInfo] = []
        paginator = self.client.get_paginator("list_secrets")
        pages = paginator.paginate(
            Filters=[{"Key": "name", "Values": [self.prefix]}], IncludePlannedDeletion=False
        )
        for page in pages:
            for entry in page.get("SecretList", []):
                full = entry.get("Name", "")
                if not full.startswith(self.prefix) or entry.get("DeletedDate") is not None:
                    continue
                found.append(self._info(full[len(self.prefix) :], entry))
        return sorted(found, key=lambda info: info.name)

    # ------------------------------------------------------------------ writing

    def put(self, name: str, value: str, *, by: str | None, at: datetime) -> SecretInfo:
        """Set (or replace) the secret.

        Raises:
            ValueError: empty value, or over :data:`aios.store.port.MAX_SECRET_BYTES`.
            botocore.exceptions.ClientError: Secrets Manager refused.
        """
        if not value:
            raise ValueError("a secret value cannot be empty")
        if len(value.encode("utf-8")) > MAX_SECRET_BYTES:
            raise ValueError(f"a secret value is at most {MAX_SECRET_BYTES} bytes")
        at = utc(at, name="at")
        info = SecretInfo(name=name, updated_at=at, updated_by=by, hint=secret_hint(value))
        description = json.dumps(
            {"updated_at": to_iso(at), "updated_by": by, "hint": info.hint},
            separators=(",", ":"),
        )
        secret_id = self.secret_id(name)
        create: dict[str, Any] = {
            "Name": secret_id,
            "SecretString": value,
            "Description": description,
            "Tags": [{"Key": "aios:integration", "Value": name}],
        }
        if self._kms_key_id:
            create["KmsKeyId"] = self._kms_key_id
        try:
            self.client.create_secret(**create)
        except ClientError as err:
            code = _code(err)
            if code == _MARKED_FOR_DELETION:
                self.client.restore_secret(SecretId=secret_id)
            elif code != "ResourceExistsException":
                raise
            self.client.update_secret(
                SecretId=secret_id, SecretString=value, Description=description
            )
        log.info("integration secret %s set", name)
        return info

    def delete(self, name: str) -> bool:
        """Delete the secret at once (no recovery window); ``True`` if it was set.

        (A forced ``DeleteSecret`` of a secret that does not exist succeeds, so existence is
        checked first.)"""
        if self.info(name) is None:
            return False
        try:
            self.client.delete_secret(
                SecretId=self.secret_id(name), ForceDeleteWithoutRecovery=True
            )
        except ClientError as err:
            if _code(err) in _GONE or _code(err) == _MARKED_FOR_DELETION:
                return False
            raise
        log.info("integration secret %s cleared", name)
        return True

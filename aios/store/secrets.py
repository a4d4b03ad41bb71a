"""The pipelines' view of the integration secrets set from the console.

:class:`StoredSecrets` is a :class:`aios.events.secrets.SecretStore` over the store's
:class:`~aios.store.port.IntegrationSecretStore`, so a node asking for
``whatsapp_access_token`` finds the value an admin set with
``PUT /api/v1/integrations/whatsapp_access_token``. It is read at each lookup: a value
changed from the console is used by the next action of a running pipeline.

Precedence where several sources hold a name (see :func:`secret_chain`): the environment
(``AIOS_SECRET_<NAME>``, set by whoever runs the service, wins), then the console's store,
then the ``--secrets`` / ``AIOS_SECRETS_FILE`` file.
"""

from __future__ import annotations

from pathlib import Path

from aios.events.secrets import (
    ChainSecretStore,
    EnvSecretStore,
    FileSecretStore,
    SecretNotFound,
    SecretStore,
)
from aios.store.port import IntegrationSecretStore


class StoredSecrets:
    """Secrets from the store (``SecretStore`` protocol: ``get`` raises SecretNotFound)."""

    def __init__(self, secrets: IntegrationSecretStore) -> None:
        self._secrets = secrets

    def get(self, name: str) -> str:
        """Return the stored value; raise :class:`SecretNotFound` when none is stored."""
        value = self._secrets.get(name)
        if not value:
            raise SecretNotFound(name)
        return value


def secret_chain(
    stored: IntegrationSecretStore | None, secrets_file: Path | None = None
) -> SecretStore:
    """The secrets a pipeline's nodes read: environment, then ``stored``, then the file."""
    chain: list[SecretStore] = [EnvSecretStore()]
    if stored is not None:
        chain.append(StoredSecrets(stored))
    if secrets_file is not None:
        chain.append(FileSecretStore(secrets_file))
    return ChainSecretStore(*chain)

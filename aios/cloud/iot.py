"""Messages to devices through AWS IoT Core's data plane (``iot-data`` ``Publish``).

:class:`IotDataLink` is the cloud :class:`aios.services.DeviceLink`: JSON payloads at QoS 1,
retained when asked (``cfg/aios/{device_id}/desired``; IoT Core keeps retained messages,
see "Retained messages" in the AWS IoT Core developer guide).

The data endpoint is ``AIOS_IOT_DATA_ENDPOINT`` (``https://<prefix>-ats.iot.<region>.
amazonaws.com``), else the account's ``DescribeEndpoint(endpointType="iot:Data-ATS")``,
resolved at the first publish and kept for the container's life.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from typing import Any

from aios.cloud import env
from aios.up.encoding import json_default

log = logging.getLogger(__name__)

DATA_ENDPOINT_TYPE = "iot:Data-ATS"
"""The Amazon Trust Services endpoint; the legacy ``iot:Data`` one uses a Symantec CA."""


def _iot_client() -> Any:
    import boto3

    return boto3.client("iot")


def _iot_data_client(endpoint_url: str) -> Any:
    import boto3

    return boto3.client("iot-data", endpoint_url=endpoint_url)


def describe_data_endpoint() -> str:
    """``https://`` + the account's ``iot:Data-ATS`` endpoint address (IoT control plane).

    Raises:
        botocore.exceptions.ClientError: the call was refused.
    """
    address = _iot_client().describe_endpoint(endpointType=DATA_ENDPOINT_TYPE)["endpointAddress"]
    return address if "://" in address else f"https://{address}"


class IotDataLink:
    """:class:`aios.services.DeviceLink` over IoT Core's ``Publish`` (HTTPS, SigV4 by boto3).

    Args:
        endpoint: the data endpoint URL; ``None``: :func:`describe_data_endpoint` at the
            first publish.
        client: an ``iot-data`` client to use (tests); built on first use otherwise.
    """

    def __init__(self, endpoint: str | None = None, *, client: Any | None = None) -> None:
        self._endpoint = endpoint
        self._client = client
        self._lock = threading.Lock()

    @classmethod
    def from_environment(cls) -> IotDataLink:
        """The link on ``AIOS_IOT_DATA_ENDPOINT`` (unset: described at the first publish)."""
        endpoint = os.environ.get(env.IOT_DATA_ENDPOINT) or None
        if endpoint and "://" not in endpoint:
            endpoint = f"https://{endpoint}"
        return cls(endpoint)

    @property
    def endpoint(self) -> str:
        """The data endpoint URL (described on first use when not configured)."""
        with self._lock:
            if self._endpoint is None:
                self._endpoint = describe_data_endpoint()
            return self._endpoint

    def _data_client(self) -> Any:
        if self._client is None:
            endpoint = self.endpoint
            with self._lock:
                if self._client is None:
                    self._client = _iot_data_client(endpoint)
        return self._client

    def publish(self, topic: str, payload: dict[str, Any], *, retain: bool = False) -> None:
        """Publish ``payload`` as compact JSON on ``topic`` at QoS 1.

        Raises:
            TypeError: the payload is not JSON-serialisable.
            botocore.exceptions.ClientError: IoT Core refused (throttled, not allowed,
                payload over 128 KiB).
        """
        data = json.dumps(payload, default=json_default, separators=(",", ":"))
        self._data_client().publish(
            topic=topic,
            qos=1,
            retain=retain,
            payload=data.encode(),
            contentType="application/json",
        )
        log.debug("published on %s (%d bytes, retain=%s)", topic, len(data), retain)

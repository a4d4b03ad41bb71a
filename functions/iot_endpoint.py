"""CloudFormation custom resource ``Custom::IotEndpoint``: the account's AWS IoT Core data
endpoint, which no CloudFormation resource returns.

Create and Update call ``iot:DescribeEndpoint`` (``endpointType`` from the resource property
``EndpointType``, default ``iot:Data-ATS``, the Amazon Trust Services endpoint) and return
the attributes ``Address`` (``<prefix>-ats.iot.<region>.amazonaws.com``) and ``Url``
(``https://`` + address). Delete has nothing to remove.

The outcome is sent as CloudFormation expects from a Lambda-backed custom resource: a JSON
document PUT to the pre-signed ``ResponseURL`` of the request ("Custom resource response
objects", AWS CloudFormation User Guide). Any failure is reported as ``FAILED`` with its
reason, so the stack operation fails at once instead of waiting out the timeout.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from typing import Any

import boto3

log = logging.getLogger(__name__)
log.setLevel(logging.INFO)

DEFAULT_ENDPOINT_TYPE = "iot:Data-ATS"
RESPONSE_TIMEOUT_SECONDS = 30.0
"""How long the PUT of the response to CloudFormation may take."""


def describe(endpoint_type: str) -> dict[str, str]:
    """The attributes of the resource: ``{"Address": host, "Url": "https://" + host}``.

    Raises:
        botocore.exceptions.ClientError: the call was refused.
    """
    address = boto3.client("iot").describe_endpoint(endpointType=endpoint_type)["endpointAddress"]
    return {"Address": address, "Url": f"https://{address}"}


def send(
    event: dict[str, Any],
    status: str,
    data: dict[str, str],
    physical_id: str,
    reason: str = "",
) -> None:
    """PUT the custom resource response to the request's ``ResponseURL``.

    Raises:
        urllib.error.URLError: the response could not be delivered.
    """
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason[:3000] or status,
            "PhysicalResourceId": physical_id,
            "StackId": event["StackId"],
            "RequestId": event["RequestId"],
            "LogicalResourceId": event["LogicalResourceId"],
            "NoEcho": False,
            "Data": data,
        }
    ).encode()
    # The pre-signed URL is signed without a content type: send none.
    request = urllib.request.Request(
        event["ResponseURL"],
        data=body,
        method="PUT",
        headers={"Content-Type": "", "Content-Length": str(len(body))},
    )
    with urllib.request.urlopen(request, timeout=RESPONSE_TIMEOUT_SECONDS) as response:
        response.read()


def handler(event: dict[str, Any], context: Any) -> None:
    """Answer a CloudFormation custom resource request (Create, Update or Delete)."""
    request_type = event.get("RequestType", "")
    properties = event.get("ResourceProperties") or {}
    physical_id = event.get("PhysicalResourceId") or f"{event.get('LogicalResourceId', 'iot')}"
    status, data, reason = "SUCCESS", {}, ""
    try:
        if request_type in ("Create", "Update"):
            data = describe(str(properties.get("EndpointType") or DEFAULT_ENDPOINT_TYPE))
            physical_id = data["Address"]
        elif request_type != "Delete":
            raise ValueError(f"unknown RequestType {request_type!r}")
    except Exception as exc:  # every failure is reported to CloudFormation
        status, data = "FAILED", {}
        reason = f"{type(exc).__name__}: {exc}"
        log.exception("custom resource %s failed", request_type)
    log.info("custom resource %s: %s %s", request_type, status, physical_id)
    send(event, status, data, physical_id, reason)

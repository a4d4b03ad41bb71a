"""The PLC write task function (``PlcWriteV1Function``) writing a fleet PLC in the cloud,
in moto: the command is published on IoT Core to the PLC's connector
(``cmd/aios/<connector>/req``), the connector's answer comes back through the
command-response function (as the IoT rule gives it), and the task returns ``sent``; no
answer is ``Aios.Transient`` and a refusal ``Aios.Permanent`` (what Retry and Catch match).
Both functions run their real handlers under the template's environment."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from cloud_functions import REGION, Deployment, deploy
from moto.core import DEFAULT_ACCOUNT_ID
from moto.iotdata.models import iotdata_backends

from aios.domain import CommandStatus, Device, DeviceKind
from aios.messages import CommandResponse, TopicKind, topic

pytestmark = pytest.mark.timeout(120)

CONNECTOR, PLC = "site-gw", "line-plc"
TASK, RESPONSES = "PlcWriteV1Function", "CommandResponseIngestFunction"


@pytest.fixture
def deployment(moto: None) -> Iterator[Deployment]:
    deployment = deploy({TASK, RESPONSES})
    store = deployment.services(RESPONSES).store
    store.devices.create(Device(id=CONNECTOR, name="Site connector", kind=DeviceKind.CONNECTOR))
    store.devices.create(Device(id=PLC, name="Line PLC", kind=DeviceKind.PLC, parent_id=CONNECTOR))
    yield deployment


_COUNTER = [0]


def payload(timeout: float = 5.0) -> dict[str, Any]:
    """The Task's payload as the compiled state machine sends it."""
    _COUNTER[0] += 1
    n = _COUNTER[0]
    return {
        "node_id": "siren",
        "node_type": "aios/plc_write@1",
        "config": {
            "device_id": PLC,
            "timeout_seconds": timeout,
            "writes": [{"name": "siren", "table": "coil", "address": 1, "value": True}],
        },
        "event": {"event_id": f"evt-{n}", "event_type": "zone.enter", "source_id": "cam-1"},
        "context": {"pipeline": "Line alarms", "entry": "zone"},
        "execution": f"arn:aws:states:us-east-1:123456789012:express:m:e{n}",
    }


def requests_published() -> list[dict[str, Any]]:
    published = iotdata_backends[DEFAULT_ACCOUNT_ID][REGION].published_payloads
    return [json.loads(p) for t, p in list(published) if t == f"cmd/aios/{CONNECTOR}/req"]


class TaskCall:
    """The task function invoked in a thread (it waits for the command's answer)."""

    def __init__(self, deployment: Deployment, body: dict[str, Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(deployment, body))
        self._thread.start()

    def _run(self, deployment: Deployment, body: dict[str, Any]) -> None:
        try:
            self.result = deployment.invoke(TASK, body)
        except BaseException as err:
            self.error = err

    def join(self) -> None:
        self._thread.join(60)
        assert not self._thread.is_alive(), "the task did not return"


def wait_request(count: int) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while len(found := requests_published()) < count:
        assert time.monotonic() < deadline, "no command published"
        time.sleep(0.02)
    return found[count - 1]


def answer(deployment: Deployment, request: dict[str, Any], ok: bool, **fields: Any) -> None:
    """Answer as the connector does: a CommandResponse on its res topic, given to the
    command-response function as the IoT rule gives it."""
    response = CommandResponse(
        message_id=f"res-{request['request_id']}",
        time=datetime.now(UTC),
        request_id=request["request_id"],
        ok=ok,
        **fields,
    )
    event = {
        **json.loads(response.model_dump_json()),
        "mqtt_topic": topic(TopicKind.COMMAND_RESPONSE, CONNECTOR),
    }
    out = deployment.invoke(RESPONSES, event)
    assert out["accepted"], out


def test_the_task_writes_the_fleet_plc_through_its_connector(deployment: Deployment) -> None:
    call = TaskCall(deployment, payload())
    request = wait_request(1)
    # the command names the PLC, on its connector's topic, with the connector's params
    assert (request["device_id"], request["name"]) == (PLC, "write_coil")
    assert request["params"] == {"table": "coil", "address": 1, "value": True}
    answer(deployment, request, True, result={"value": 1.0, "table": "coil", "address": 1})
    call.join()
    assert call.error is None, call.error
    assert call.result["status"] == "sent"
    write = call.result["detail"]["writes"][0]
    assert write["commands"] == [request["request_id"]] and write["read_back"] == [1.0]
    # in the PLC's command history, with its outcome and who asked
    stored = deployment.services(RESPONSES).store.commands.get(request["request_id"])
    assert stored is not None and stored.status is CommandStatus.SUCCEEDED
    assert stored.requested_by == "pipeline 'Line alarms', node 'siren'"


def test_no_answer_is_transient(deployment: Deployment) -> None:
    started = time.monotonic()
    call = TaskCall(deployment, payload(timeout=1.0))
    call.join()
    assert type(call.error).__name__ == "Aios.Transient", call.error
    assert "no answer within 1 s" in str(call.error)
    assert time.monotonic() - started < 10
    assert len(requests_published()) == 1


def test_a_refusal_is_permanent(deployment: Deployment) -> None:
    call = TaskCall(deployment, payload())
    request = wait_request(1)
    reason = "PLC answered exception 02 ILLEGAL DATA ADDRESS (line-plc, coil address 1)"
    answer(deployment, request, False, result={"exception_code": 2}, error=reason)
    call.join()
    assert type(call.error).__name__ == "Aios.Permanent", call.error
    assert reason in str(call.error)

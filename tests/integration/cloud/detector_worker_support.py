"""Resources of the stream worker's tests, in moto: the data table with a pipeline and a run,
the media bucket, and a Standard state machine that waits for the worker's task token.

Logical ids and environment names are the contract's (:mod:`aios.cloud.env`).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aios.domain import PipelineRecord, Run, RunStatus
from aios.store.dynamodb import DynamoStore, create_table

REGION = "us-east-1"
TABLE = "aios-test-DataTable"
BUCKET = "aios-test-mediabucket"
QUEUE = "aios-test-worker-start"
ROLE_ARN = "arn:aws:iam::123456789012:role/aios-test-lifecycle"
IOT_DATA_ENDPOINT = "https://data-ats.iot.us-east-1.amazonaws.com"
TASK_ARN = "arn:aws:ecs:us-east-1:123456789012:task/aios-test/0123456789abcdef0123456789abcdef"


def wait_for(check: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def clients(session: Any, endpoint_url: str | None = None) -> dict[str, Any]:
    """The boto3 clients the tests use."""
    kwargs: dict[str, Any] = {"region_name": REGION}
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
    return {
        name: session.client(name, **kwargs) for name in ("dynamodb", "s3", "sqs", "stepfunctions")
    }


def seed_run(dynamodb: Any, document: dict[str, Any], *, run_id: str = "run_w1") -> DynamoStore:
    """Create the data table with ``document`` as pipeline ``pl_w1`` revision 1, and run
    ``run_id`` of it (``starting``); return the store."""
    create_table(dynamodb, TABLE)
    store = DynamoStore(TABLE, client=dynamodb)
    store.pipelines.create(PipelineRecord(id="pl_w1", name=document["name"]), document)
    store.runs.create(Run(id=run_id, pipeline_id="pl_w1", revision=1, status=RunStatus.STARTING))
    return store


def callback_machine(sfn: Any, sqs: Any, heartbeat_seconds: int = 30) -> tuple[str, str]:
    """A Standard state machine whose first Task sends its task token to an SQS queue and
    waits for the callback (as the lifecycle waits on ``ecs:runTask.waitForTaskToken``);
    return its ARN and the queue URL."""
    queue_url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
    definition = {
        "StartAt": "StartWorker",
        "States": {
            "StartWorker": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                "Parameters": {
                    "QueueUrl": queue_url,
                    "MessageBody": {"token.$": "$$.Task.Token", "run_id.$": "$.run_id"},
                },
                "HeartbeatSeconds": heartbeat_seconds,
                "TimeoutSeconds": 300,
                "ResultPath": "$.worker",
                "Next": "Running",
            },
            "Running": {"Type": "Succeed"},
        },
    }
    arn = sfn.create_state_machine(
        name="aios-test-lifecycle",
        definition=json.dumps(definition),
        roleArn=ROLE_ARN,
        type="STANDARD",
    )["stateMachineArn"]
    return arn, queue_url


def task_token(sqs: Any, queue_url: str, timeout: float = 20.0) -> str:
    """The task token the state machine sent to the queue."""

    def receive() -> str | None:
        messages = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=0).get("Messages")
        return json.loads(messages[0]["Body"])["token"] if messages else None

    token: str = wait_for(receive, timeout, "the task token on the queue", every=0.2)
    return token


def execution_done(sfn: Any, execution_arn: str, timeout: float) -> dict[str, Any]:
    """The execution once it is no longer running."""
    done: dict[str, Any] = wait_for(
        lambda: (
            (d := sfn.describe_execution(executionArn=execution_arn))["status"] != "RUNNING" and d
        ),
        timeout,
        "the execution to leave its waiting state",
        every=0.2,
    )
    return done


@dataclass
class TaskMetadataServer:
    """The ECS task metadata endpoint v4 on 127.0.0.1: ``GET /task`` → ``{"TaskARN"}``."""

    task_arn: str = TASK_ARN

    def start(self) -> TaskMetadataServer:
        arn = self.task_arn

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                if self.path != "/v4/container-1/task":
                    self.send_response(404)
                    self.end_headers()
                    return
                body = json.dumps({"Cluster": "aios-test", "TaskARN": arn}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    @property
    def uri(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v4/container-1"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

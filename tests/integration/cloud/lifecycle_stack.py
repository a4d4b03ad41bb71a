"""Play and Stop in moto: the lifecycle state machine, its task function and the pipeline
task functions of ``template.yaml``, bound to the real handlers of ``functions/``.

:func:`lifecycle_stack` (inside the ``moto`` fixture's ``mock_aws``) creates those
resources with :class:`cloud_stack.CloudStack` (the template's own definitions,
environments and substitutions; the detector deployed by :data:`PARAMETERS`) and makes every
Lambda invocation — a test's, or a state machine Task's — run the function's real handler
under its environment, errors reported as the Lambda Python runtime reports them
(``errorType`` = the exception class's ``__name__``).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from cloud_functions import REGION, Deployment
from cloud_stack import ENVIRONMENT_LOCK, CloudStack

from aios.cloud import env
from aios.domain import PipelineRecord, Run, RunStatus
from aios.events.compiler import task_placeholder

ROOT = Path(__file__).resolve().parents[3]
LIFECYCLE_ASL = ROOT / "stepfunctions" / "lifecycle.asl.json"
CONTAINER = "detector"
PREFIX = "aios-test-pl-"
"""The event machines' name prefix: the template's ``${NamePrefix}-${Stage}-pl-``."""
_LOCK = ENVIRONMENT_LOCK
MOTO_CONFIG: Any = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
}
"""moto executes state machines; Lambda runs no code of its own (handlers are bound)."""


def event_node_types() -> list[str]:
    """Every event-tier node type of the catalog (one task function each)."""
    from aios.nodes import CATALOG

    return sorted(t.type_id for t in CATALOG if t.event_role is not None)


def substitutions(
    function_arn: str, cluster: str, task_definition: str, provider: str = "gpu"
) -> dict[str, str]:
    """The lifecycle machine's DefinitionSubstitutions."""
    return {
        "LifecycleTaskFunctionArn": function_arn,
        "DetectorClusterArn": cluster,
        "DetectorTaskDefinitionArn": task_definition,
        "DetectorCapacityProviderName": provider,
        "DetectorContainerName": CONTAINER,
    }


def lifecycle_definition(values: dict[str, str]) -> str:
    """``stepfunctions/lifecycle.asl.json`` with its placeholders substituted."""
    text = LIFECYCLE_ASL.read_text()
    for key, value in values.items():
        text = text.replace("${" + key + "}", value)
    assert "${" not in text, "a placeholder of the lifecycle machine has no substitution"
    return text


@dataclass
class LifecycleStack:
    """The deployed stack and how to reach it.

    Attributes:
        deployment: tables, bucket, secrets and the functions' environments.
        functions: function name → (logical id, handler path, environment).
        lifecycle_arn: the lifecycle state machine.
        cluster: the GPU worker's cluster ARN.
        calls: every Lambda invocation: ``{"function", "payload", "error"}``.
    """

    deployment: Deployment
    functions: dict[str, tuple[str, str, dict[str, str]]]
    lifecycle_arn: str
    cluster: str
    calls: list[dict[str, Any]] = field(default_factory=list)

    @property
    def sfn(self) -> Any:
        return boto3.client("stepfunctions", region_name=REGION)

    def services(self, logical_id: str = "ApiFunction") -> Any:
        """A function's services (store, link, launcher) as it builds them."""
        from aios.cloud.services import cloud_services

        # os.environ is the process's: swapped under the lock the bound handlers hold
        with _LOCK, self.deployment.environ(logical_id):
            return cloud_services()

    def store(self) -> Any:
        return self.services().store

    def add_pipeline(self, document: dict[str, Any]) -> str:
        """Store a pipeline (revision 1) and return its id."""
        record = self.store().pipelines.create(PipelineRecord(name=document["name"]), document)
        return str(record.id)

    def play(self, pipeline_id: str) -> Run:
        """Play as the API does (:class:`aios.runs.service.PipelineRuns`) with the launcher."""
        from aios.runs.service import PipelineRuns

        with _LOCK, self.deployment.environ("ApiFunction"):
            return PipelineRuns(self.services()).execute(pipeline_id, actor="tester")

    def stop(self, pipeline_id: str) -> Run:
        from aios.runs.service import PipelineRuns

        with _LOCK, self.deployment.environ("ApiFunction"):
            return PipelineRuns(self.services()).stop(pipeline_id, actor="tester")

    def run(self, run_id: str) -> Run:
        run = self.store().runs.get(run_id)
        assert run is not None
        return run  # type: ignore[no-any-return]

    def wait_run(self, run_id: str, status: RunStatus, *, timeout: float = 20.0) -> Run:
        """Wait until the run has ``status`` (failing early if its lifecycle ended)."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.run(run_id)
            if run.status is status:
                return run
            assert time.monotonic() < deadline, (
                f"run {run_id} is {run.status.value} ({run.error}), not {status.value}; "
                f"lifecycle: {self.execution(run_id)}; failed calls: "
                f"{[c for c in self.calls if c['error']]}; history: {self.failures(run_id)}"
            )
            time.sleep(0.05)

    def execution(self, run_id: str) -> dict[str, Any]:
        arn = self.lifecycle_arn.replace(":stateMachine:", ":execution:") + f":{run_id}"
        return self.sfn.describe_execution(executionArn=arn)  # type: ignore[no-any-return]

    def failures(self, run_id: str) -> list[Any]:
        """The failure details in the history of the run's lifecycle execution."""
        arn = self.lifecycle_arn.replace(":stateMachine:", ":execution:") + f":{run_id}"
        events = self.sfn.get_execution_history(executionArn=arn)["events"]
        return [
            {k: v for k, v in e.items() if k.endswith("FailedEventDetails")}
            for e in events
            if "Failed" in e["type"]
        ]

    def wait_execution(self, run_id: str, *, timeout: float = 20.0) -> dict[str, Any]:
        """Wait until the run's lifecycle execution has ended; return its description."""
        deadline = time.monotonic() + timeout
        while True:
            described = self.execution(run_id)
            if described["status"] != "RUNNING":
                return described
            assert time.monotonic() < deadline, f"lifecycle of {run_id} still running"
            time.sleep(0.05)

    def wait_for(self, what: Callable[[], Any], *, timeout: float = 20.0, label: str = "") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = what()
            if value:
                return value
            assert time.monotonic() < deadline, f"timed out waiting for {label or what}"
            time.sleep(0.05)

    def function_arn(self, logical_id: str) -> str:
        """The ARN of a function of the stack."""
        assert self.deployment.stack is not None
        return str(self.deployment.stack.functions[logical_id]["arn"])

    def invoke(self, name: str, payload: Any) -> Any:
        """Call a function's real handler (by name or logical id) under its environment."""
        assert self.deployment.stack is not None
        return self.deployment.stack.invoke_local(name, payload)


PARAMETERS = {
    "DetectorImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/aios-detector:test",
    "VpcId": "vpc-0123456789abcdef0",
    "DetectorSubnetIds": "subnet-0123456789abcdef0",
}
"""Template parameters that deploy the GPU detector (condition ``HasDetector``)."""

FUNCTIONS = {"ApiFunction", "EventsIngestFunction", "LifecycleTaskFunction"}
MORE = {
    "LifecycleStateMachine",
    "DetectorCluster",
    "DetectorTaskDefinition",
    "DetectorExecutionRole",
    "DetectorTaskRole",
    "EventMachineRole",
    "EventMachineLogGroup",
    "ScheduleGroup",
    "SchedulerRole",
    "LifecycleLogGroup",
    "DeadLetterQueue",
}


def patch_ecs_integration(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's vendored interpreter passes an ECS integration's Parameters and reads its
    response without converting between the Step Functions casing (``Cluster``, ``Tasks``)
    and boto's (``cluster``, ``tasks``), which AWS (and LocalStack, where the interpreter
    comes from) do: convert them with the ECS service model."""
    import botocore.session
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_ecs,
    )

    model = botocore.session.get_session().get_service_model("ecs")
    operations = {"run_task": "RunTask", "describe_tasks": "DescribeTasks"}

    def normalise_parameters(
        self: Any, parameters: Any, boto_service_name: Any = None, service_action_name: Any = None
    ) -> None:
        action = self._get_boto_service_action(service_action_name)
        self._to_boto_request(parameters, model.operation_model(operations[action]).input_shape)

    def normalise_response(
        self: Any, response: Any, boto_service_name: Any = None, service_action_name: Any = None
    ) -> None:
        if service_action_name is None:
            return
        shape = model.operation_model(operations[service_action_name]).output_shape
        self._from_boto_response(response, shape)

    ecs_service = state_task_service_ecs.StateTaskServiceEcs
    monkeypatch.setattr(ecs_service, "_normalise_parameters", normalise_parameters)
    monkeypatch.setattr(ecs_service, "_normalise_response", normalise_response)


def patch_ecs_task_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's ECS needs a memory value on each container to run a task; AWS also takes the
    task-level memory the template's detector task definition gives: use that."""
    from moto.ecs.models import EC2ContainerServiceBackend

    original = EC2ContainerServiceBackend._calculate_task_resource_requirements

    def requirements(task_definition: Any) -> Any:
        memory = int(getattr(task_definition, "memory", None) or 0)
        for container in task_definition.container_definitions:
            if not any(k in container for k in ("memory", "Memory", "memoryReservation")):
                container["memory"] = memory // max(1, len(task_definition.container_definitions))
        return original(task_definition)

    monkeypatch.setattr(
        EC2ContainerServiceBackend,
        "_calculate_task_resource_requirements",
        staticmethod(requirements),
    )


def lifecycle_stack(
    monkeypatch: pytest.MonkeyPatch, extra: dict[str, str] | None = None
) -> LifecycleStack:
    """Deploy the template's lifecycle, task functions and their resources in moto and
    bind every function to its real handler (see the module doc).

    The GPU worker's cluster gets FARGATE as its default capacity provider: moto's ECS runs
    tasks without container instances only there, and moto's Step Functions drops the
    RunTask ``CapacityProviderStrategy`` it does not know (the template's EC2 GPU capacity
    provider is not emulated)."""
    from cloud_functions import IOT_DATA_ENDPOINT, Deployment, _needed

    task_functions = {task_placeholder(t).removesuffix("Arn") for t in event_node_types()}
    functions_needed = FUNCTIONS | task_functions
    stack = CloudStack.create(parameters=PARAMETERS, only=_needed(functions_needed, MORE))
    settings = {
        "AIOS_ALLOWED_HOSTS": json.dumps(["*"]),
        env.IOT_DATA_ENDPOINT: IOT_DATA_ENDPOINT,
        **(extra or {}),
    }
    functions: dict[str, tuple[str, str, dict[str, str]]] = {}
    for lid, spec in stack.functions.items():
        spec["environment"].update(settings)
        functions[spec["name"]] = (lid, spec["handler"], dict(spec["environment"]))
    common = stack.environment("ApiFunction")
    deployment = Deployment(stack, common, settings)
    cluster = stack.attributes["DetectorCluster.Arn"]
    boto3.client("ecs", region_name=REGION).put_cluster_capacity_providers(
        cluster=cluster,
        capacityProviders=["FARGATE"],
        defaultCapacityProviderStrategy=[{"capacityProvider": "FARGATE", "weight": 1}],
    )
    result = LifecycleStack(
        deployment,
        functions,
        stack.physical["LifecycleStateMachine"],
        cluster,
        stack.bind_handlers(monkeypatch),
    )
    patch_ecs_integration(monkeypatch)
    patch_ecs_task_memory(monkeypatch)
    return result


@contextlib.contextmanager
def deployed_stack(extra: dict[str, str] | None = None) -> Iterator[LifecycleStack]:
    """:func:`lifecycle_stack` in its own ``mock_aws`` and AWS environment (as the ``moto``
    fixture gives), for a module-scoped fixture: the deployment takes seconds."""
    from moto import mock_aws

    monkeypatch = pytest.MonkeyPatch()
    # os.environ is the process's: changed under the lock invocations hold while they run
    # with their function's environment (an execution of an earlier module may still be
    # finishing a step in moto's threads).
    with _LOCK:
        for name in list(os.environ):
            if name.startswith("AIOS_") or name in {"AWS_PROFILE", "AWS_ENDPOINT_URL"}:
                monkeypatch.delenv(name, raising=False)
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "POWERTOOLS_TRACE_DISABLED": "true",
        }.items():
            monkeypatch.setenv(name, value)
    try:
        with mock_aws(config=MOTO_CONFIG):
            stack = lifecycle_stack(monkeypatch, extra)
            try:
                yield stack
            finally:
                _stop_executions()
    finally:
        with _LOCK:
            monkeypatch.undo()


def _stop_executions() -> None:
    """Stop the executions still running (a lifecycle awaiting Stop, say), so none of this
    stack's steps runs once the next module has its own."""
    sfn = boto3.client("stepfunctions", region_name=REGION)
    for machine in sfn.list_state_machines()["stateMachines"]:
        running = sfn.list_executions(
            stateMachineArn=machine["stateMachineArn"], statusFilter="RUNNING"
        )["executions"]
        for execution in running:
            sfn.stop_execution(executionArn=execution["executionArn"], cause="end of tests")

"""Conformance: each case in ``cases/`` runs on the local ASL engine and on moto's Step Functions.

A case is one JSON file::

    {
      "name": "retry-backoff",               # also the state machine's and execution's name
      "description": "...",
      "definition": {...},                    # ASL; Task resources are ${Placeholders}
      "tasks": {"Notify": <behaviour>},       # one behaviour per placeholder (see Behaviour)
      "input": {...},
      "expected": {
        "status": "SUCCEEDED" | "FAILED",
        "output": ...,                        # SUCCEEDED only; {"$regex": "..."} matches a string
        "error": "...", "cause": "...",       # FAILED only; a key left out is not checked
        "task_calls": {"Notify": 3},          # calls per task; a task left out is not checked
        "min_elapsed_seconds": 2              # optional: waits and retry intervals really sleep
      },
      "divergence": {                         # optional: where the interpreter is not AWS
        "engines": ["local", "moto"],
        "reason": "...",
        "actual": {"status": ..., ...}        # what those engines do instead (same keys as
      }                                       # expected; "DEFINITION_REJECTED" when the
    }                                         # interpreter refuses the definition)

``expected`` is what AWS Step Functions does (the ASL specification and the Step Functions
developer guide). Both engines run LocalStack's ASL interpreter as vendored in moto: the local
engine binds Tasks to the case's behaviours in-process; moto runs an Express state machine
whose Tasks are moto Lambda functions, with ``LambdaSimpleBackend.invoke`` replaced by the
same behaviours (moto 5.2 has no StartSyncExecution: the execution is started and
DescribeExecution polled until it ends). Both must give the expected result (or the
documented divergence) and agree with each other; moto's run happens while the local engine
still holds its bindings, which checks that the engine routes only the Lambda ARNs it owns.
"""

from __future__ import annotations

import io
import json
import re
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.awslambda_simple.models import LambdaSimpleBackend

from aios.events.compiler import lint
from aios.events.engine import DefinitionError, LocalEngine, TaskFailure, placeholders

CASES_DIR = Path(__file__).parent / "cases"
CASE_FILES = sorted(CASES_DIR.glob("*.json"))
REGION = "us-east-1"
MOTO_CONFIG: Any = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
    # keep boto3's default session (and its loaded models) between cases: much faster
    "core": {"reset_boto3_session": False},
}
MOTO_DEADLINE_SECONDS = 30.0
ELAPSED_TOLERANCE_SECONDS = 0.05
ENGINES = ("local", "moto")
REJECTED = "DEFINITION_REJECTED"
NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


# --- cases ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One conformance case, loaded from its file."""

    name: str
    definition: dict[str, Any]
    tasks: dict[str, dict[str, Any]]
    input: Any
    expected: dict[str, Any]
    divergence: dict[str, Any] | None

    def expected_for(self, engine: str) -> dict[str, Any]:
        """Return what ``engine`` must produce: ``expected``, or the documented divergence."""
        if self.divergence is None or engine not in self.divergence["engines"]:
            return self.expected
        actual = dict(self.divergence["actual"])
        for key in ("task_calls", "min_elapsed_seconds"):
            if key in self.expected and key not in actual:
                actual[key] = self.expected[key]
        return actual


def load_case(path: Path) -> Case:
    """Read and check a case file (keys, names, placeholders bound to behaviours)."""
    data = json.loads(path.read_text())
    allowed = {"name", "description", "definition", "tasks", "input", "expected", "divergence"}
    assert set(data) <= allowed, f"{path.name}: unknown keys {set(data) - allowed}"
    assert data["name"] == path.stem, f"{path.name}: name must be the file's stem"
    assert NAME.match(data["name"]), f"{path.name}: name is not a valid execution name"
    assert data.get("description"), f"{path.name}: say what the case checks"
    text = json.dumps(data["definition"])
    assert placeholders(text) == set(data.get("tasks", {})), (
        f"{path.name}: tasks must match the definition's placeholders"
    )
    expected = data["expected"]
    assert expected["status"] in {"SUCCEEDED", "FAILED"}, f"{path.name}: bad expected status"
    divergence = data.get("divergence")
    if divergence is not None:
        assert divergence.get("reason"), f"{path.name}: a divergence says why"
        assert set(divergence["engines"]) <= set(ENGINES) and divergence["engines"]
        assert divergence["actual"]["status"] in {"SUCCEEDED", "FAILED", REJECTED}
    return Case(
        name=data["name"],
        definition=data["definition"],
        tasks=data.get("tasks", {}),
        input=data["input"],
        expected=expected,
        divergence=divergence,
    )


# --- task behaviours --------------------------------------------------------------------------


class Behaviour:
    """A task's behaviour, given as data so that the same case drives both engines.

    Specs:
        ``{"echo": true}``: return the payload.
        ``{"return": V}``: return V.
        ``{"merge": {...}}``: return the payload (an object) with these fields added.
        ``{"always_fail": "Error.Name", "cause": "..."}``: fail on every call.
        ``{"fail_times": n, "error": "Error.Name", "cause": "...", "then": <spec>}``: fail on
        the first n calls, then behave as ``then``.
        ``{"fail_when": {"field": "f", "equals": v}, "error": ..., "cause": ..., "then": <spec>}``:
        fail when the payload's field ``f`` equals v, else behave as ``then``.
    """

    def __init__(self, name: str, spec: dict[str, Any]) -> None:
        self.name = name
        self.spec = spec
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, payload: Any) -> Any:
        with self._lock:
            self.calls += 1
            call = self.calls
        return self._apply(self.spec, payload, call)

    def _apply(self, spec: dict[str, Any], payload: Any, call: int) -> Any:
        cause = spec.get("cause", f"{self.name} failed")
        if "always_fail" in spec:
            raise TaskFailure(spec["always_fail"], cause)
        if "fail_times" in spec:
            if call <= spec["fail_times"]:
                raise TaskFailure(spec["error"], cause)
            return self._apply(spec["then"], payload, call)
        if "fail_when" in spec:
            rule = spec["fail_when"]
            if isinstance(payload, dict) and payload.get(rule["field"]) == rule["equals"]:
                raise TaskFailure(spec["error"], cause)
            return self._apply(spec["then"], payload, call)
        if spec.get("echo"):
            return payload
        if "return" in spec:
            return spec["return"]
        if "merge" in spec:
            return {**payload, **spec["merge"]}
        raise AssertionError(f"task {self.name}: unknown behaviour {spec}")


def behaviours(case: Case) -> dict[str, Behaviour]:
    """Return fresh behaviours (call counters at zero) for a case's tasks."""
    return {name: Behaviour(name, spec) for name, spec in case.tasks.items()}


# --- running on the two engines ---------------------------------------------------------------


@dataclass
class Outcome:
    """What one engine made of a case."""

    status: str
    output: Any = None
    error: str | None = None
    cause: str | None = None
    task_calls: dict[str, int] | None = None
    elapsed: float = 0.0


def run_local(engine: LocalEngine, case: Case, tasks: dict[str, Behaviour]) -> Outcome:
    """Run a case on an open local engine."""
    started = time.monotonic()
    record = engine.execute(case.input, name=case.name)
    elapsed = time.monotonic() - started
    return Outcome(
        status=record.status,
        output=record.output,
        error=record.error,
        cause=record.cause,
        task_calls={name: task.calls for name, task in tasks.items()},
        elapsed=elapsed,
    )


def _dummy_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.py", "def handler(event, context):\n    return event\n")
    return buffer.getvalue()


def _function_name(task: str) -> str:
    return f"conformance-{task}"


def run_moto(case: Case, tasks: dict[str, Behaviour], monkeypatch: pytest.MonkeyPatch) -> Outcome:
    """Run a case on moto's Step Functions (an Express state machine, moto Lambda tasks)."""
    by_function = {_function_name(name): task for name, task in tasks.items()}

    def invoke(  # noqa: PLR0917 - LambdaSimpleBackend.invoke's signature
        backend: Any,
        function_name: str,
        qualifier: str | None,
        body: Any,
        headers: Any,
        response_headers: dict[str, str],
    ) -> bytes:
        # function_name is the ARN the Task names: ...:function:<name>
        task = by_function[function_name.rsplit(":function:", maxsplit=1)[-1]]
        payload = json.loads(body) if body else None
        try:
            result = task(payload)
        except TaskFailure as err:
            # How Lambda reports an unhandled function error: the header, and the payload's
            # errorType (which Retry/Catch match) and errorMessage.
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps({"errorType": err.error, "errorMessage": err.cause}).encode()
        return json.dumps(result).encode()

    monkeypatch.setattr(LambdaSimpleBackend, "invoke", invoke)
    with mock_aws(config=MOTO_CONFIG):
        iam = boto3.client("iam", region_name=REGION)
        role = iam.create_role(
            RoleName="conformance",
            AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
        )["Role"]["Arn"]
        lambda_client = boto3.client("lambda", region_name=REGION)
        code = _dummy_zip()
        arns = {
            name: lambda_client.create_function(
                FunctionName=_function_name(name),
                Runtime="python3.11",
                Role=role,
                Handler="index.handler",
                Code={"ZipFile": code},
            )["FunctionArn"]
            for name in tasks
        }
        text = json.dumps(case.definition)
        for name, arn in arns.items():
            text = text.replace("${" + name + "}", arn)
        sfn = boto3.client("stepfunctions", region_name=REGION)
        try:
            machine = sfn.create_state_machine(
                name=case.name, definition=text, roleArn=role, type="EXPRESS"
            )["stateMachineArn"]
        except ClientError as err:
            # InvalidDefinition (moto answers it without an error code)
            return Outcome(status=REJECTED, cause=str(err))
        started = time.monotonic()
        execution = sfn.start_execution(
            stateMachineArn=machine, name=case.name, input=json.dumps(case.input)
        )["executionArn"]
        while True:
            described = sfn.describe_execution(executionArn=execution)
            if described["status"] != "RUNNING":
                break
            assert time.monotonic() - started < MOTO_DEADLINE_SECONDS, "moto run did not end"
            time.sleep(0.02)
        elapsed = time.monotonic() - started
    return Outcome(
        status=described["status"],
        output=_decode_output(described.get("output")),
        error=described.get("error"),
        cause=described.get("cause"),
        task_calls={name: task.calls for name, task in tasks.items()},
        elapsed=elapsed,
    )


def _decode_output(text: str | None) -> Any:
    """Decode DescribeExecution's output: JSON text, except that moto passes a bare string
    result through undecoded (AWS would answer '"text"')."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


# --- comparing --------------------------------------------------------------------------------


def matches(expected: Any, actual: Any) -> bool:
    """Return whether ``actual`` equals ``expected``, where ``{"$regex": r}`` matches a string."""
    if isinstance(expected, dict) and set(expected) == {"$regex"}:
        return isinstance(actual, str) and re.fullmatch(expected["$regex"], actual) is not None
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and expected.keys() == actual.keys()
            and all(matches(expected[k], actual[k]) for k in expected)
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(matches(e, a) for e, a in zip(expected, actual, strict=True))
        )
    return bool(type(expected) is type(actual) and expected == actual)


def masked(expected: Any, actual: Any) -> Any:
    """Return ``actual`` with the values that ``expected`` matches by pattern blanked."""
    if isinstance(expected, dict) and set(expected) == {"$regex"}:
        return "<matched>"
    if isinstance(expected, dict) and isinstance(actual, dict):
        return {k: masked(expected.get(k), v) for k, v in actual.items()}
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return [masked(e, a) for e, a in zip(expected, actual, strict=True)]
    return actual


def check(engine: str, outcome: Outcome, want: dict[str, Any]) -> None:
    """Assert that one engine's outcome is what the case wants of it."""
    label = f"{engine} engine"
    assert outcome.status == want["status"], (
        f"{label}: status {outcome.status} ({outcome.error}: {outcome.cause}), "
        f"want {want['status']}"
    )
    if outcome.status == REJECTED:
        return
    if want["status"] == "SUCCEEDED" and "output" in want:
        assert matches(want["output"], outcome.output), (
            f"{label}: output {json.dumps(outcome.output)}, want {json.dumps(want['output'])}"
        )
    for key in ("error", "cause"):
        if key in want:
            assert getattr(outcome, key) == want[key], f"{label}: {key}"
    for name, calls in want.get("task_calls", {}).items():
        assert outcome.task_calls is not None
        assert outcome.task_calls[name] == calls, f"{label}: calls of task {name}"
    if "min_elapsed_seconds" in want:
        assert outcome.elapsed >= want["min_elapsed_seconds"] - ELAPSED_TOLERANCE_SECONDS, (
            f"{label}: ended after {outcome.elapsed:.2f} s, before its waits and intervals"
        )


# --- tests ------------------------------------------------------------------------------------

case_params = pytest.mark.parametrize("case_file", CASE_FILES, ids=[p.stem for p in CASE_FILES])


@case_params
def test_definition_passes_statelint(case_file: Path) -> None:
    """Every case's definition is valid ASL by statelint (placeholders filled with ARNs)."""
    # GIVEN a case
    case = load_case(case_file)
    # WHEN it is linted  THEN statelint finds no problem
    assert lint(case.definition) == []


@case_params
def test_local_engine_and_moto_agree(case_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both engines give the expected result, and the same one."""
    # GIVEN a case and fresh task behaviours for each engine
    case = load_case(case_file)
    local_tasks, moto_tasks = behaviours(case), behaviours(case)
    local_want, moto_want = case.expected_for("local"), case.expected_for("moto")

    # WHEN it runs on the local engine, and on moto while the local engine holds its bindings
    try:
        engine = LocalEngine(case.definition, local_tasks, name=case.name)
    except DefinitionError as err:
        local = Outcome(status=REJECTED, cause=str(err))
        moto = run_moto(case, moto_tasks, monkeypatch)
    else:
        with engine:
            local = run_local(engine, case, local_tasks)
            calls_before_moto = dict(local.task_calls or {})
            moto = run_moto(case, moto_tasks, monkeypatch)
            # moto's Lambda calls did not reach the local engine's bindings
            assert {n: t.calls for n, t in local_tasks.items()} == calls_before_moto

    # THEN each is what the case wants of it
    check("local", local, local_want)
    check("moto", moto, moto_want)
    # AND they agree with each other where the case expects them to
    if local_want == moto_want:
        assert local.status == moto.status
        if local.status == REJECTED:
            return
        assert masked(local_want.get("output"), local.output) == masked(
            moto_want.get("output"), moto.output
        )
        assert (local.error, local.cause) == (moto.error, moto.cause)
        assert local.task_calls == moto.task_calls


REQUIRED_COVERAGE = {
    "state types": {"Task", "Choice", "Parallel", "Map", "Pass", "Wait", "Succeed", "Fail"},
    "fields": {
        "Retry",
        "Catch",
        "InputPath",
        "Parameters",
        "ResultSelector",
        "ResultPath",
        "OutputPath",
        "ItemsPath",
        "MaxConcurrency",
        "Iterator",
        "ItemProcessor",
        "ItemSelector",
        "Timestamp",
        "TimestampPath",
        "Seconds",
        "IntervalSeconds",
        "MaxAttempts",
        "BackoffRate",
        "Result",
        "Error",
        "Cause",
    },
    "context paths": {"$$.Execution.Id", "$$.Execution.Name", "$$.State.Name", "$$.Map.Item.Value"},
}


def _strings(node: Any) -> set[str]:
    if isinstance(node, dict):
        return set().union(*(_strings(v) for v in node.values())) if node else set()
    if isinstance(node, list):
        return set().union(*(_strings(v) for v in node)) if node else set()
    return {node} if isinstance(node, str) else set()


def _walk_states(machine: dict[str, Any], types: set[str], fields: set[str]) -> None:
    """Collect the state types and field names used by a state machine and its sub-machines."""
    for state in machine["States"].values():
        types.add(state["Type"])
        fields.update(state)
        for rule in state.get("Retry", []) + state.get("Catch", []):
            fields.update(rule)
        for sub in state.get("Branches", []):
            _walk_states(sub, types, fields)
        for key in ("Iterator", "ItemProcessor"):
            if key in state:
                _walk_states(state[key], types, fields)


def test_cases_cover_the_engine_features() -> None:
    """The cases together use every state type, field and context path the engine must run."""
    # GIVEN all cases
    types: set[str] = set()
    fields: set[str] = set()
    strings: set[str] = set()
    for path in CASE_FILES:
        definition = load_case(path).definition
        _walk_states(definition, types, fields)
        strings |= _strings(definition)
    # THEN nothing required is left out, and no case uses JSONata or Variables
    assert REQUIRED_COVERAGE["state types"] <= types
    assert REQUIRED_COVERAGE["fields"] <= fields
    assert REQUIRED_COVERAGE["context paths"] <= strings
    assert not fields & {"QueryLanguage", "Assign", "Arguments", "Output"}
    assert not any("{%" in text for text in strings)

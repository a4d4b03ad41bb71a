"""The local ASL engine: runs compiled definitions on one machine.

It is built on the Amazon States Language interpreter that moto vendors from LocalStack
(``moto.stepfunctions.parser``), so Choice, Parallel, Map, Wait, Pass, Succeed, Fail,
Retry/Catch, the path and parameter fields, intrinsic functions and the context object
behave as that interpreter implements them. What the engine adds is the binding of Task
states to Python callables in this process: a Task whose ``Resource`` is a
``${Placeholder}`` of a Lambda function is given an ARN that this engine owns, and the
interpreter's Lambda invocation is routed to the callable bound to that placeholder.

A callable returns the task's JSON result or raises :class:`TaskFailure` (any other
exception becomes ``TaskFailure("Aios.TaskError", ...)``); like a Lambda function error,
its ``error`` name is what ``Retry`` and ``Catch`` match.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Literal

PLACEHOLDER = re.compile(r"\$\{([A-Za-z][A-Za-z0-9_]*)\}")
"""A deployment-time placeholder in a definition, e.g. ``${HttpPostTaskFunctionArn}``."""

LOCAL_ACCOUNT = "000000000000"
LOCAL_REGION = "us-east-1"

TaskCallable = Callable[[Any], Any]
"""A bound task: takes the Task's payload (JSON value), returns its result (JSON value)."""

ExecutionStatus = Literal["SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"]


class TaskFailure(Exception):
    """A task failed with an ASL error name (matched by ``Retry``/``Catch``) and a cause."""

    def __init__(self, error: str, cause: str) -> None:
        super().__init__(f"{error}: {cause}")
        self.error = error
        self.cause = cause


class DefinitionError(ValueError):
    """The definition cannot run: invalid ASL, or a placeholder with nothing bound to it."""


@dataclass
class ExecutionRecord:
    """One execution: status, output or error, and its full event history.

    ``history`` items are the Step Functions history events as JSON values (``id``,
    ``previousEventId``, ``type``, ``timestamp`` in ISO 8601 UTC, and the type's details).
    """

    execution_arn: str
    name: str
    status: ExecutionStatus
    input: Any
    output: Any = None
    error: str | None = None
    cause: str | None = None
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    stopped_at: datetime | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Return the record as JSON-ready data."""
        return {
            "execution_arn": self.execution_arn,
            "name": self.name,
            "status": self.status,
            "input": self.input,
            "output": self.output,
            "error": self.error,
            "cause": self.cause,
            "started_at": self.started_at.isoformat(),
            "stopped_at": None if self.stopped_at is None else self.stopped_at.isoformat(),
            "history": self.history,
        }


# --- routing the interpreter's Lambda calls -------------------------------------------------

_BINDINGS: dict[str, TaskCallable] = {}
_BINDINGS_LOCK = threading.Lock()
_ROUTER: dict[str, bool] = {"installed": False}


def _install_router() -> None:
    """Route the interpreter's Lambda invocations for engine-owned ARNs to bound callables.

    ARNs not owned by an engine go on to the interpreter's own client (moto's Lambda), so
    tests can run moto's Step Functions in the same process.
    """
    with _BINDINGS_LOCK:
        if _ROUTER["installed"]:
            return
        from moto.stepfunctions.parser.asl.component.state.exec.state_task import (
            lambda_eval_utils,
        )

        original = lambda_eval_utils._invoke_lambda_function

        def invoke(parameters: dict[str, Any], region: str, state_credentials: Any) -> Any:
            target = _BINDINGS.get(str(parameters.get("FunctionName")))
            if target is None:
                return original(
                    parameters=parameters, region=region, state_credentials=state_credentials
                )
            raw = parameters.get("Payload")
            payload = json.loads(raw) if isinstance(raw, bytes | str) and raw else raw
            try:
                # a result that is not JSON fails the task like any other exception
                result = json.loads(json.dumps(target(payload)))
            except TaskFailure as err:
                return _function_error(err.error, err.cause)
            except Exception as err:
                return _function_error("Aios.TaskError", f"{type(err).__name__}: {err}")
            return {"StatusCode": 200, "Payload": result}

        lambda_eval_utils._invoke_lambda_function = invoke
        _ROUTER["installed"] = True


def _function_error(error: str, cause: str) -> dict[str, Any]:
    return {
        "StatusCode": 200,
        "FunctionError": "Unhandled",
        "Payload": {"errorType": error, "errorMessage": cause},
    }


def placeholders(definition: str) -> set[str]:
    """Return the names of the ``${Placeholders}`` in a definition's text."""
    return set(PLACEHOLDER.findall(definition))


def fill_placeholders(definition: str, values: Mapping[str, str]) -> str:
    """Return ``definition`` with every ``${Name}`` replaced by ``values[Name]``.

    Raises:
        DefinitionError: when a placeholder has no value.
    """
    missing = sorted(placeholders(definition) - values.keys())
    if missing:
        raise DefinitionError(f"no value for placeholder(s): {', '.join(missing)}")
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], definition)


def _check_definition(definition: str) -> None:
    """Raise :class:`DefinitionError` unless ``definition`` is valid ASL that the interpreter reads.

    statelint catches what the interpreter accepts but Step Functions' CreateStateMachine
    refuses (a ``Next`` naming no state, no terminal state); the interpreter's parser then
    catches what it cannot run.
    """
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
    from statelint.linter import Linter

    try:
        parsed = json.loads(definition)
    except json.JSONDecodeError as err:
        raise DefinitionError(f"definition is not JSON: {err}") from err
    if not isinstance(parsed, dict):
        raise DefinitionError("definition must be a JSON object with StartAt and States")
    problems = Linter.validate(parsed)
    if problems:
        raise DefinitionError(f"invalid definition: {'; '.join(problems)}")
    try:
        AmazonStateLanguageParser.parse(definition)
    except Exception as err:  # ASLParserException, or e.g. ValueError from a state's field
        raise DefinitionError(f"definition cannot be parsed: {err}") from err


def _jsonable(value: Any) -> Any:
    if isinstance(value, Enum):
        return _jsonable(value.value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


class LocalEngine:
    """Runs one state machine definition with its Task placeholders bound in-process.

    Args:
        definition: the ASL definition (text or parsed), with ``${Placeholders}``.
        tasks: a callable for every placeholder in the definition.
        name: the state machine's name (context object ``$$.StateMachine.Name``).

    Raises:
        DefinitionError: a placeholder without a callable, a definition that is not valid
            ASL (statelint's problems), or one the interpreter cannot parse.
    """

    def __init__(
        self,
        definition: str | Mapping[str, Any],
        tasks: Mapping[str, TaskCallable],
        *,
        name: str = "aios-pipeline",
    ) -> None:
        text = definition if isinstance(definition, str) else json.dumps(definition)
        _install_router()
        self.name = name
        self._token = uuid.uuid4().hex[:12]
        arns = {
            key: f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT}:function:aios-{self._token}-{key}"
            for key in placeholders(text)
        }
        unbound = sorted(arns.keys() - tasks.keys())
        if unbound:
            raise DefinitionError(f"no task bound to placeholder(s): {', '.join(unbound)}")
        self.definition = fill_placeholders(text, arns)
        self._arns = arns
        self.state_machine_arn = (
            f"arn:aws:states:{LOCAL_REGION}:{LOCAL_ACCOUNT}:stateMachine:{name}"
        )
        _check_definition(self.definition)
        self._closed = False
        with _BINDINGS_LOCK:
            for key, arn in arns.items():
                _BINDINGS[arn] = tasks[key]

    def close(self) -> None:
        """Release this engine's task bindings; the engine cannot execute afterwards."""
        self._closed = True
        with _BINDINGS_LOCK:
            for arn in self._arns.values():
                _BINDINGS.pop(arn, None)

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def execute(self, input_: Any, *, name: str | None = None) -> ExecutionRecord:
        """Run one execution to its end in the calling thread and return its record.

        Raises:
            RuntimeError: the engine was closed.
        """
        if self._closed:
            raise RuntimeError(f"state machine '{self.name}' is closed: create a new engine")
        from moto.stepfunctions.parser.api import StateMachineType
        from moto.stepfunctions.parser.asl.eval.evaluation_details import (
            AWSExecutionDetails,
            EvaluationDetails,
            ExecutionDetails,
            StateMachineDetails,
        )
        from moto.stepfunctions.parser.asl.eval.program_state import (
            ProgramEnded,
            ProgramError,
            ProgramStopped,
            ProgramTimedOut,
        )
        from moto.stepfunctions.parser.backend.execution_worker import SyncExecutionWorker
        from moto.stepfunctions.parser.backend.execution_worker_comm import (
            ExecutionWorkerCommunication,
        )

        class _Comm(ExecutionWorkerCommunication):
            def terminated(self) -> None:
                pass

        exec_name = name or uuid.uuid4().hex
        exec_arn = f"arn:aws:states:{LOCAL_REGION}:{LOCAL_ACCOUNT}:express:{self.name}:{exec_name}"
        role = f"arn:aws:iam::{LOCAL_ACCOUNT}:role/aios-local"
        started = datetime.now(UTC)
        data = json.loads(json.dumps(input_))
        details = EvaluationDetails(
            aws_execution_details=AWSExecutionDetails(LOCAL_ACCOUNT, LOCAL_REGION, role),
            execution_details=ExecutionDetails(exec_arn, exec_name, role, data, started),  # type: ignore[arg-type]
            state_machine_details=StateMachineDetails(
                self.state_machine_arn, self.name, StateMachineType.EXPRESS, self.definition
            ),
        )
        worker = SyncExecutionWorker(details, _Comm(), None, {})
        worker.start()  # type: ignore[no-untyped-call]
        env = worker.env
        assert env is not None
        record = ExecutionRecord(
            execution_arn=exec_arn,
            name=exec_name,
            status="SUCCEEDED",
            input=data,
            started_at=started,
            stopped_at=datetime.now(UTC),
            history=[_jsonable(dict(e)) for e in env.event_manager.get_event_history()],
        )
        state = env.program_state()
        if isinstance(state, ProgramEnded):
            record.output = _jsonable(env.states.get_input())
        elif isinstance(state, ProgramError):
            record.status = "FAILED"
            failure = state.error or {}
            record.error = failure.get("error")
            record.cause = failure.get("cause")
        elif isinstance(state, ProgramTimedOut):
            record.status = "TIMED_OUT"
        elif isinstance(state, ProgramStopped):
            record.status = "ABORTED"
        return record

"""Compiles the event tier of a pipeline to Amazon States Language (ASL).

One state machine per pipeline revision (Express in the cloud). Its input is the envelope
of :mod:`aios.events.envelope`; a first Choice state routes on ``$.context.entry`` — the
node the event came from: a stream-tier node whose events cross into the event tier, or an
event-tier input (sensor data, webhook, timer). From there the event-tier graph is laid
out as states:

* ``processor`` nodes → Task, result replaces ``$.event``;
* ``action`` nodes → Task with ``Retry`` (from the node's retry policy, on
  ``Aios.Transient``, ``States.Timeout`` and Lambda's service errors) and ``Catch``
  (``States.ALL``: the failure and its reason are recorded in ``$.results.<node>``);
  a node with phases (a PLC pulse) becomes Task → Choice (sent?) → Wait → Task;
* ``choice`` (conditional) → Choice; ``map`` (loop) → Map with ``Parameters``;
  ``wait`` (delay) → Wait;
* an output feeding several nodes → Parallel, one branch per node.

Task resources are ``${<Type>V<major>FunctionArn}`` placeholders, filled at deployment
(Lambda ARNs) or bound in-process by the local engine; each Task's ``Parameters`` carry the
node id, type and configuration, the event and the context (paths with the ``.$`` suffix).
The graph is a DAG; a node reached along several paths is laid out once per path, with
state names made unique (``dashboard``, ``dashboard #2``). Only JSONPath ASL is emitted
(no JSONata, no Variables). :func:`lint` runs statelint on a definition.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from aios.catalog.base import EventRole, Tier
from aios.pipeline.validation import ValidatedPipeline

TRANSIENT_ERRORS = [
    "Aios.Transient",
    "States.Timeout",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
]
"""Errors a Task retries: ours, a task timeout, and the Lambda service errors AWS
recommends retrying (Step Functions developer guide, "Handling errors")."""

MAX_STATES = 1000
"""Largest definition we emit; a DAG whose paths expand beyond this is refused."""

ROUTE_STATE = "Route event"
UNKNOWN_ENTRY_STATE = "Unknown entry"
_MAX_NAME = 80  # ASL state names are at most 80 characters


class CompileError(ValueError):
    """The event tier cannot be compiled; the message names the node and what to change."""


def task_placeholder(type_id: str) -> str:
    """Return the Task resource placeholder for a node type: ``aios/http_post@1`` →
    ``HttpPostV1FunctionArn``."""
    match = re.fullmatch(r"aios/([a-z0-9_.]+)@(\d+)", type_id)
    if match is None:
        raise CompileError(f"'{type_id}' is not a node type id")
    words = re.split(r"[._]", match.group(1))
    return "".join(w.capitalize() for w in words) + f"V{match.group(2)}FunctionArn"


@dataclass
class CompiledPipeline:
    """The event tier of one pipeline, compiled.

    Attributes:
        definition: the ASL state machine (JSON-ready), with ``${Placeholders}``.
        entries: entry node id → the event-tier nodes its events go to.
        sources: event-tier input nodes (sensor data, webhook, timer).
        placeholders: placeholder name → node type id it stands for.
        task_nodes: event-tier node ids run as Tasks.
    """

    definition: dict[str, Any]
    entries: dict[str, list[str]]
    sources: list[str]
    placeholders: dict[str, str] = field(default_factory=dict)
    task_nodes: list[str] = field(default_factory=list)

    def text(self) -> str:
        """Return the definition as indented JSON text."""
        return json.dumps(self.definition, indent=2, ensure_ascii=False)


def _check_static(value: Any, where: str) -> None:
    """Refuse config keys ending in ``.$``: inside Parameters they would be read as paths."""
    if isinstance(value, dict):
        for key, item in value.items():
            if str(key).endswith(".$"):
                raise CompileError(f"{where}: key '{key}' must not end with '.$'")
            _check_static(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_static(item, f"{where}[{index}]")


class _Builder:
    def __init__(self, pipeline: ValidatedPipeline) -> None:
        self.pipeline = pipeline
        self.names: set[str] = {ROUTE_STATE, UNKNOWN_ENTRY_STATE}
        self.uses: dict[str, int] = {}
        self.result_keys: dict[str, str] = {}
        self.placeholders: dict[str, str] = {}
        self.task_nodes: set[str] = set()
        self.order = {nid: i for i, nid in enumerate(pipeline.order)}
        self.count = 0

    # --- naming ---------------------------------------------------------------------------

    def name(self, base: str) -> str:
        base = base[:_MAX_NAME]
        candidate, n = base, 1
        while candidate in self.names:
            n += 1
            suffix = f" #{n}"
            candidate = base[: _MAX_NAME - len(suffix)] + suffix
        self.names.add(candidate)
        self.count += 1
        if self.count > MAX_STATES:
            raise CompileError(
                f"the event tier expands to more than {MAX_STATES} states; nodes reached along "
                "many paths are laid out once per path — merge branches or split the pipeline"
            )
        return candidate

    def result_key(self, nid: str) -> str:
        key = self.result_keys.get(nid)
        if key is None:
            key = re.sub(r"[^A-Za-z0-9_]", "_", nid)
            if not re.match(r"[A-Za-z_]", key):
                key = "n_" + key
            taken = set(self.result_keys.values())
            base, n = key, 1
            while key in taken:
                n += 1
                key = f"{base}_{n}"
            self.result_keys[nid] = key
        return key

    # --- graph ------------------------------------------------------------------------------

    def targets(self, nid: str, port: str | None = None) -> list[str]:
        found = [
            e.target
            for e in self.pipeline.outgoing.get(nid, ())
            if (port is None or e.source_handle == port)
            and self.pipeline.nodes[e.target].node_type.manifest.tier is Tier.EVENT
        ]
        return sorted(dict.fromkeys(found), key=lambda t: self.order.get(t, 0))

    def chain(self, targets: list[str], states: dict[str, Any]) -> str | None:
        """Lay out the nodes fed by one output; return the first state's name."""
        if not targets:
            return None
        if len(targets) == 1:
            return self.node(targets[0], states)
        name = self.name("Fan out: " + ", ".join(targets))
        branches = []
        for target in targets:
            sub: dict[str, Any] = {}
            start = self.node(target, sub)
            branches.append({"StartAt": start, "States": sub})
        states[name] = {
            "Type": "Parallel",
            "Branches": branches,
            "ResultPath": "$.branches",
            "End": True,
        }
        return name

    @staticmethod
    def link(state: dict[str, Any], start: str | None) -> dict[str, Any]:
        if start is None:
            state["End"] = True
        else:
            state["Next"] = start
        return state

    def end_state(self, states: dict[str, Any], label: str) -> str:
        name = self.name(label)
        states[name] = {"Type": "Succeed"}
        return name

    # --- nodes ------------------------------------------------------------------------------

    def node(self, nid: str, states: dict[str, Any]) -> str:
        rnode = self.pipeline.nodes[nid]
        role = rnode.node_type.event_role
        if role is EventRole.PROCESSOR:
            return self.processor(nid, states)
        if role is EventRole.ACTION:
            return self.action(nid, states)
        if role is EventRole.CHOICE:
            return self.choice(nid, states)
        if role is EventRole.MAP:
            return self.map(nid, states)
        if role is EventRole.WAIT:
            return self.wait(nid, states)
        raise CompileError(
            f"node '{nid}' ({rnode.node.type}) is an input and cannot be fed by other nodes"
        )

    def task(
        self,
        nid: str,
        result_path: str,
        retry: list[dict[str, Any]],
        timeout_seconds: int,
        phase: str | None = None,
    ) -> dict[str, Any]:
        rnode = self.pipeline.nodes[nid]
        config = rnode.config.model_dump(mode="json")
        _check_static(config, f"node '{nid}' config")
        placeholder = task_placeholder(rnode.node.type)
        self.placeholders[placeholder] = rnode.node.type
        self.task_nodes.add(nid)
        parameters: dict[str, Any] = {
            "node_id": nid,
            "node_type": rnode.node.type,
            "config": config,
            "event.$": "$.event",
            "context.$": "$.context",
            "execution.$": "$$.Execution.Id",
        }
        if phase is not None:
            parameters["phase"] = phase
        state: dict[str, Any] = {
            "Type": "Task",
            "Resource": "${" + placeholder + "}",
            "Parameters": parameters,
            "ResultPath": result_path,
            "TimeoutSeconds": timeout_seconds,
        }
        if retry:
            state["Retry"] = retry
        return state

    def catch_to(self, nid: str, states: dict[str, Any], key: str) -> list[dict[str, Any]]:
        failed = self.name(f"{nid} failed")
        states[failed] = {
            "Type": "Pass",
            "Parameters": {
                "node_id": nid,
                "status": "failed",
                "error.$": f"$.results.{key}.Error",
                "reason.$": f"$.results.{key}.Cause",
            },
            "ResultPath": f"$.results.{key}",
            "End": True,
        }
        return [{"ErrorEquals": ["States.ALL"], "ResultPath": f"$.results.{key}", "Next": failed}]

    def processor(self, nid: str, states: dict[str, Any]) -> str:
        key = self.result_key(nid)
        name = self.name(nid)
        retry = [
            {
                "ErrorEquals": TRANSIENT_ERRORS,
                "IntervalSeconds": 1,
                "MaxAttempts": 2,
                "BackoffRate": 2.0,
            }
        ]
        state = self.task(nid, "$.event", retry, timeout_seconds=60)
        states[name] = state
        state["Catch"] = self.catch_to(nid, states, key)
        start = self.chain(self.targets(nid), states)
        config = self.pipeline.nodes[nid].config
        if getattr(config, "filter", None):
            gate = self.name(f"{nid} passed?")
            stop = self.end_state(states, f"{nid}: filtered out")
            flag = "$.event.filtered_out"
            states[gate] = {
                "Type": "Choice",
                "Choices": [
                    {
                        "And": [
                            {"Variable": flag, "IsPresent": True},
                            {"Variable": flag, "BooleanEquals": True},
                        ],
                        "Next": stop,
                    }
                ],
                "Default": start or self.end_state(states, f"{nid}: done"),
            }
            start = gate
        self.link(state, start)
        return name

    def action(self, nid: str, states: dict[str, Any]) -> str:
        rnode = self.pipeline.nodes[nid]
        config = rnode.config
        key = self.result_key(nid)
        policy = getattr(config, "retry", None)
        retry: list[dict[str, Any]] = []
        timeout = 60
        if policy is not None:
            if policy.max_attempts > 0:
                retry = [
                    {
                        "ErrorEquals": TRANSIENT_ERRORS,
                        "IntervalSeconds": policy.interval_seconds,
                        "MaxAttempts": policy.max_attempts,
                        "BackoffRate": float(policy.backoff_rate),
                    }
                ]
            per_attempt = float(getattr(config, "timeout_seconds", 10.0))
            timeout = (
                math.ceil(
                    per_attempt * (policy.max_attempts + 1)
                    + policy.max_retry_after_seconds * policy.max_attempts
                )
                + 5
            )
        phases_fn = getattr(rnode.node_type.implementation, "asl_phases", None)
        phases: list[dict[str, Any]] = (
            list(phases_fn(config)) if callable(phases_fn) else [{"phase": None}]
        )
        first_name: str | None = None
        previous: dict[str, Any] | None = None
        task_index = 0
        for phase in phases:
            if "wait_seconds" in phase:
                if previous is None:
                    raise CompileError(f"node '{nid}': a wait phase must follow a task phase")
                wait_name = self.name(f"{nid} hold")
                sent = self.name(f"{nid} sent?")
                skip = self.end_state(states, f"{nid}: nothing to undo")
                previous["Next"] = sent
                states[sent] = {
                    "Type": "Choice",
                    "Choices": [
                        {
                            "Variable": f"$.results.{key}.status",
                            "StringEquals": "sent",
                            "Next": wait_name,
                        }
                    ],
                    "Default": skip,
                }
                seconds = phase["wait_seconds"]
                states[wait_name] = {"Type": "Wait", "Seconds": max(1, math.ceil(seconds))}
                previous = states[wait_name]
                continue
            result_path = (
                f"$.results.{key}"
                if task_index == 0
                else (f"$.results.{key}_{phase.get('phase') or task_index}")
            )
            label = nid if task_index == 0 else f"{nid} {phase.get('phase') or task_index}"
            name = self.name(label)
            state = self.task(nid, result_path, retry, timeout, phase=phase.get("phase"))
            states[name] = state
            catch_key = key if task_index == 0 else result_path.removeprefix("$.results.")
            state["Catch"] = self.catch_to(nid, states, catch_key)
            if previous is not None:
                previous["Next"] = name
            if first_name is None:
                first_name = name
            previous = state
            task_index += 1
        assert first_name is not None and previous is not None
        previous["End"] = True
        return first_name

    def choice(self, nid: str, states: dict[str, Any]) -> str:
        config = self.pipeline.nodes[nid].config
        name = self.name(nid)
        rule = config.to_asl()  # type: ignore[attr-defined]
        states[name] = {}  # reserve the position; filled below
        on_true = self.chain(self.targets(nid, "true"), states) or self.end_state(
            states, f"{nid}: matched"
        )
        on_false = self.chain(self.targets(nid, "false"), states) or self.end_state(
            states, f"{nid}: no match"
        )
        states[name] = {
            "Type": "Choice",
            "Choices": [{**rule, "Next": on_true}],
            "Default": on_false,
        }
        return name

    def map(self, nid: str, states: dict[str, Any]) -> str:
        from aios.nodes.loop import item_selector

        config = self.pipeline.nodes[nid].config
        key = self.result_key(nid)
        name = self.name(nid)
        states[name] = {}
        inner: dict[str, Any] = {}
        start = self.chain(self.targets(nid, "item"), inner) or self.end_state(
            inner, f"{nid}: item"
        )
        states[name] = {
            "Type": "Map",
            "ItemsPath": f"$.event.{config.field}",  # type: ignore[attr-defined]
            "Parameters": item_selector(config),  # type: ignore[arg-type]
            "MaxConcurrency": config.max_concurrency,  # type: ignore[attr-defined]
            "Iterator": {"StartAt": start, "States": inner},
            "ResultPath": f"$.results.{key}",
            "End": True,
        }
        states[name]["Catch"] = self.catch_to(nid, states, key)
        return name

    def wait(self, nid: str, states: dict[str, Any]) -> str:
        config = self.pipeline.nodes[nid].config
        name = self.name(nid)
        states[name] = {}
        start = self.chain(self.targets(nid), states)
        states[name] = self.link({"Type": "Wait", **config.to_asl()}, start)  # type: ignore[attr-defined]
        return name


def compile_pipeline(pipeline: ValidatedPipeline) -> CompiledPipeline | None:
    """Compile the event tier of a validated pipeline; ``None`` if it has no event tier.

    Raises:
        CompileError: the event tier cannot be expressed (names the node and the fix).
    """
    nodes = pipeline.nodes
    event_ids = [nid for nid in pipeline.order if nodes[nid].node_type.manifest.tier is Tier.EVENT]
    if not event_ids:
        return None
    builder = _Builder(pipeline)
    entries: dict[str, list[str]] = {}
    sources = [nid for nid in event_ids if nodes[nid].node_type.event_role is EventRole.SOURCE]
    for nid in pipeline.order:
        if nodes[nid].node_type.manifest.tier is Tier.STREAM or nid in sources:
            targets = builder.targets(nid)
            if targets:
                entries[nid] = targets
    states: dict[str, Any] = {}
    choices = []
    for entry, targets in entries.items():
        start = builder.chain(targets, states)
        assert start is not None
        choices.append({"Variable": "$.context.entry", "StringEquals": entry, "Next": start})
    name = pipeline.document.name
    definition: dict[str, Any] = {
        "Comment": f"AIOS pipeline '{name}': event tier",
        "StartAt": ROUTE_STATE,
        "States": {
            ROUTE_STATE: (
                {"Type": "Choice", "Choices": choices, "Default": UNKNOWN_ENTRY_STATE}
                if choices
                else {"Type": "Pass", "Next": UNKNOWN_ENTRY_STATE}
            ),
            UNKNOWN_ENTRY_STATE: {
                "Type": "Fail",
                "Error": "Aios.UnknownEntry",
                "Cause": "context.entry names no node that feeds this pipeline's event tier",
            },
            **states,
        },
    }
    return CompiledPipeline(
        definition=definition,
        entries=entries,
        sources=sources,
        placeholders=dict(sorted(builder.placeholders.items())),
        task_nodes=sorted(builder.task_nodes, key=lambda n: builder.order.get(n, 0)),
    )


EXAMPLE_ARN = "arn:aws:lambda:us-east-1:123456789012:function:aios-{name}"


def lint(definition: dict[str, Any] | str) -> list[str]:
    """Return statelint's problems with a definition (empty: valid).

    Placeholders are filled with example Lambda ARNs first, as deployment would.
    """
    from statelint.linter import Linter

    from aios.events.engine import PLACEHOLDER

    text = definition if isinstance(definition, str) else json.dumps(definition)
    filled = PLACEHOLDER.sub(lambda m: EXAMPLE_ARN.format(name=m.group(1)), text)
    return list(Linter.validate(json.loads(filled)))

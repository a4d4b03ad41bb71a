"""The Express state machine of a pipeline revision's event tier, and its timer schedules.

Play deploys the compiled event tier (:func:`aios.events.compiler.compile_pipeline`) as one
Express state machine per pipeline revision:

- name :func:`machine_name`: ``AIOS_EVENT_MACHINE_PREFIX`` + ``<pipeline id>-r<revision>``
  (characters outside ``[A-Za-z0-9_-]`` become ``-``; names longer than Step Functions'
  80 characters are cut and end with 8 hex digits of a SHA-256 of the full name, so two
  long ids stay distinct);
- definition: the compiled ASL with each ``${<Type>V<major>FunctionArn}`` placeholder
  replaced by the pipeline task function of that node type (``AIOS_TASK_FUNCTION_ARNS``);
- role ``AIOS_EVENT_MACHINE_ROLE_ARN``.

A revision is immutable, so its machine is created once and reused by every run of it
(:func:`deploy_machine` updates it in place if it exists with another definition — a
changed task function ARN after a redeployment of the stack). Stop leaves it in place:
executions in flight finish, and the next Play of the revision starts at once. Deleting the
machines of revisions no longer run is a clean-up job, not part of Stop.

Timer inputs (``aios/timer@1``) become EventBridge Scheduler schedules in
``AIOS_SCHEDULE_GROUP`` (one per timer node and run, named ``<run id>-<node id>``, cut to
64 characters) whose target starts an execution of the machine (role
``AIOS_SCHEDULER_ROLE_ARN``) with the envelope of :mod:`aios.events.envelope`; the tick's
``event_id`` and ``time`` are Scheduler's context attributes
(``<aws.scheduler.execution-id>``, ``<aws.scheduler.scheduled-time>``). Cron expressions
are translated from crontab(5) to Scheduler's six-field ``cron()`` by
:func:`schedule_expressions` (a crontab restricting both day of month and day of week,
which means *either*, becomes two schedules); intervals become ``rate(N minutes)``
(Scheduler's finest rate is one minute: shorter intervals run every minute).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from aios.events.compiler import CompiledPipeline
from aios.events.engine import fill_placeholders, placeholders
from aios.nodes.timer import TimerConfig
from aios.pipeline.validation import ValidatedPipeline

log = logging.getLogger(__name__)

MAX_MACHINE_NAME = 80
"""Step Functions' limit on state machine names."""

MAX_SCHEDULE_NAME = 64
"""EventBridge Scheduler's limit on schedule names."""

_AWS_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


class EventMachineError(ValueError):
    """The event tier cannot be deployed as it is; the message says what to change."""


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", text)


def _bounded(name: str, limit: int) -> str:
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return name[: limit - 9] + "-" + digest


def machine_name(prefix: str, pipeline_id: str, revision: int) -> str:
    """The name of the Express state machine of ``pipeline_id``'s ``revision`` (≤ 80
    characters, see the module doc)."""
    return _bounded(_safe(prefix + f"{pipeline_id}-r{revision}"), MAX_MACHINE_NAME)


def schedule_name(run_id: str, node_id: str, index: int = 0) -> str:
    """The name of the schedule of timer ``node_id`` in run ``run_id`` (≤ 64 characters);
    ``index`` > 0 names the second schedule of a cron that needs two."""
    base = _safe(f"{run_id}-{node_id}" + (f"-{index}" if index else ""))
    return _bounded(base, MAX_SCHEDULE_NAME)


def definition_text(compiled: CompiledPipeline, task_function_arns: Mapping[str, str]) -> str:
    """The compiled definition with every placeholder replaced by its task function's ARN.

    Raises:
        EventMachineError: a node type has no task function in this deployment (named with
            the node type, e.g. ``aios/http_post@1``).
    """
    text = compiled.text()
    missing = sorted(placeholders(text) - task_function_arns.keys())
    if missing:
        types = ", ".join(compiled.placeholders.get(p, p) for p in missing)
        raise EventMachineError(
            f"this deployment has no task function for node type(s) {types}: "
            "deploy a stack that includes them, or remove those nodes"
        )
    return fill_placeholders(text, task_function_arns)


def _account_of(role_arn: str) -> tuple[str, str]:
    """``(partition, account)`` of an IAM role ARN ``arn:<partition>:iam::<account>:role/…``."""
    parts = role_arn.split(":")
    if len(parts) < 6 or parts[2] != "iam" or not parts[4]:
        raise EventMachineError(f"{role_arn!r} is not an IAM role ARN")
    return parts[1], parts[4]


def deploy_machine(
    sfn: Any,
    *,
    name: str,
    definition: str,
    role_arn: str,
    log_group_arn: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> str:
    """Create the Express state machine ``name``, or update it to ``definition`` if it
    exists; return its ARN. ``log_group_arn``: execution logs at level ERROR, without
    execution data (events may hold personal data); ``None``: no logs.

    Raises:
        botocore.exceptions.ClientError: Step Functions refused (invalid definition, no
            permission…).
    """
    tag_list = [{"key": k, "value": v} for k, v in sorted((tags or {}).items())]
    logging_config: dict[str, Any] = {"level": "OFF"}
    if log_group_arn:
        logging_config = {
            "level": "ERROR",
            "includeExecutionData": False,
            "destinations": [{"cloudWatchLogsLogGroup": {"logGroupArn": log_group_arn}}],
        }
    try:
        created = sfn.create_state_machine(
            name=name,
            definition=definition,
            roleArn=role_arn,
            type="EXPRESS",
            loggingConfiguration=logging_config,
            tags=tag_list,
        )
        arn = str(created["stateMachineArn"])
        log.info("event state machine %s created", name)
        return arn
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") not in (
            "StateMachineAlreadyExists",
            "StateMachineAlreadyExistsException",
        ):
            raise
    partition, account = _account_of(role_arn)
    region = sfn.meta.region_name
    arn = f"arn:{partition}:states:{region}:{account}:stateMachine:{name}"
    current = sfn.describe_state_machine(stateMachineArn=arn)
    if current.get("definition") != definition or current.get("roleArn") != role_arn:
        sfn.update_state_machine(stateMachineArn=arn, definition=definition, roleArn=role_arn)
        log.info("event state machine %s updated", name)
    return arn


# --- timers --------------------------------------------------------------------------------


def _day_numbers(field: str) -> list[int]:
    """The days (0 = Sunday … 6) a crontab(5) day-of-week field names."""
    days: set[int] = set()
    for item in field.split(","):
        match = re.fullmatch(r"(\*|\w+)(?:-(\w+))?(?:/(\d+))?", item.strip())
        if match is None:
            raise EventMachineError(f"day of week {item!r} is not understood")
        first, last, step = match.groups()

        def number(text: str) -> int:
            lower = text.lower()[:3]
            if lower in _CRON_DAYS:
                return _CRON_DAYS.index(lower)
            if text.isdigit() and 0 <= int(text) <= 7:
                return int(text)
            raise EventMachineError(f"day of week {text!r} is not 0-7 or a day name")

        if first == "*":
            start, end = 0, 6
        else:
            start = number(first)
            end = number(last) if last is not None else (6 if step else start)
        for value in range(start, end + 1, int(step) if step else 1):
            days.add(value % 7)
    return sorted(days)


def schedule_expressions(config: TimerConfig) -> list[str]:
    """The EventBridge Scheduler expressions of a timer (see the module doc).

    A crontab ``m h dom mon dow`` becomes ``cron(m h dom mon dow *)`` with ``?`` in the
    unrestricted day field and day-of-week numbers as names (``SUN``…``SAT``).

    Raises:
        EventMachineError: a crontab field Scheduler cannot express.
    """
    if config.cron is None:
        seconds = float(config.interval_seconds or 60.0)
        minutes = max(1, math.ceil(seconds / 60.0))
        unit = "minute" if minutes == 1 else "minutes"
        return [f"rate({minutes} {unit})"]
    fields = config.cron.split()
    if len(fields) != 5:
        raise EventMachineError(f"cron {config.cron!r} does not have five fields")
    minute, hour, dom, month, dow = fields
    days = None if dow.startswith("*") and dow in ("*", "*/1") else _day_numbers(dow)
    names = None if days is None else ",".join(_AWS_DAYS[d] for d in days)
    if names is None:
        return [f"cron({minute} {hour} {dom} {month} ? *)"]
    if dom.startswith("*"):
        return [f"cron({minute} {hour} ? {month} {names} *)"]
    return [
        f"cron({minute} {hour} {dom} {month} ? *)",
        f"cron({minute} {hour} ? {month} {names} *)",
    ]


def timer_input(pipeline: ValidatedPipeline, node_id: str, context: Mapping[str, Any]) -> str:
    """The execution input a timer's schedule sends (JSON text): the envelope of
    :func:`aios.events.envelope.make_input` with Scheduler's context attributes as the
    tick's id and time. ``context`` is added to the envelope's context (run and pipeline
    ids); ``site`` is absent (a schedule's input is fixed text)."""
    config = pipeline.nodes[node_id].config
    assert isinstance(config, TimerConfig)
    event = {
        "event_id": "<aws.scheduler.execution-id>",
        "event_type": "timer.tick",
        "time": "<aws.scheduler.scheduled-time>",
        "source_id": config.source_id,
        "data": {
            "scheduled_time": "<aws.scheduler.scheduled-time>",
            "schedule": config.schedule,
            "timezone": config.timezone,
        },
    }
    envelope = {
        "event": event,
        "context": {
            "pipeline": pipeline.document.name,
            "entry": node_id,
            **dict(context),
        },
        "results": {},
    }
    return json.dumps(envelope)


@dataclass(frozen=True)
class Schedules:
    """Where a run's timer schedules live."""

    scheduler: Any
    group: str
    role_arn: str

    def create(
        self,
        run_id: str,
        pipeline: ValidatedPipeline,
        machine_arn: str,
        context: Mapping[str, Any],
    ) -> list[str]:
        """Create a schedule per timer node of ``pipeline`` (see the module doc); return
        their names. A schedule that exists already (a retried step) is updated."""
        names: list[str] = []
        for node_id, resolved in sorted(pipeline.nodes.items()):
            config = resolved.config
            if not isinstance(config, TimerConfig):
                continue
            for index, expression in enumerate(schedule_expressions(config)):
                name = schedule_name(run_id, node_id, index)
                request: dict[str, Any] = {
                    "Name": name,
                    "GroupName": self.group,
                    "ScheduleExpression": expression,
                    "ScheduleExpressionTimezone": config.timezone,
                    "FlexibleTimeWindow": {"Mode": "OFF"},
                    "Target": {
                        "Arn": machine_arn,
                        "RoleArn": self.role_arn,
                        "Input": timer_input(pipeline, node_id, context),
                        "RetryPolicy": {
                            "MaximumEventAgeInSeconds": max(60, config.misfire_grace_seconds),
                            "MaximumRetryAttempts": 3,
                        },
                    },
                    "State": "ENABLED",
                    "Description": f"AIOS run {run_id}: timer node {node_id}"[:512],
                }
                try:
                    self.scheduler.create_schedule(**request)
                except ClientError as err:
                    if err.response.get("Error", {}).get("Code") != "ConflictException":
                        raise
                    self.scheduler.update_schedule(**request)
                names.append(name)
        return names

    def delete(self, names: list[str]) -> None:
        """Delete the named schedules (absent ones are skipped)."""
        for name in names:
            try:
                self.scheduler.delete_schedule(Name=name, GroupName=self.group)
            except ClientError as err:
                if err.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                    raise

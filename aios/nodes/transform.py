"""``aios/transform@1`` — compute, rename, drop and filter event fields with JMESPath or JSONPath.

Contract (a processor: :meth:`TransformNode.run` returns the new event):

* Every expression reads the event **as it arrived** at the node (not the results of the
  other expressions of the same node); the results are then written, then ``drop`` applies.
* ``fields`` maps a *target path* to an expression. A target path is dotted from the event's
  root: ``data.people`` writes ``event["data"]["people"]``, ``zone`` writes the top-level
  ``zone``. Missing intermediate objects are created. The identity fields ``event_id``,
  ``event_type`` and ``time`` cannot be written or dropped unless
  ``allow_identity_overwrite`` is set; ``filtered_out`` is reserved for the filter.
* ``drop`` lists dotted paths removed from the event (absent ones are ignored).
* ``filter`` (optional): when it is set, the node always writes the boolean top-level
  field ``filtered_out`` (:data:`FILTERED_OUT`) — ``true`` when the filter's result is
  falsy. The compiler follows such a transform with a Choice state
  (``{"Variable": "$.event.filtered_out", "BooleanEquals": true}`` → Succeed), so a
  filtered event ends its path there; no error is raised.
* Truthiness is JMESPath's (JMESPath specification, "Truthy and falsy"): ``false``,
  ``null``, ``""``, ``[]`` and ``{}`` are falsy; every number, ``0`` included, is truthy.

Languages:

* ``jmespath`` (https://jmespath.org/specification.html, library ``jmespath``): the result
  is the expression's value (``null`` when nothing matches), e.g.
  ``length(data.boxes[?class_name=='person'])`` or ``confidence > `0.8```.
* ``jsonpath`` (Goessner's JSONPath with the extensions of ``jsonpath-ng``'s ``ext`` parser:
  filters ``[?(@.score > 0.5)]``, arithmetic, ```len```, ```sorted```): a *singular* query
  (only names and single indexes, RFC 9535 §2.3.5.1) gives the matched value or ``null``;
  any other (wildcards, slices, filters, unions, ``..``) always gives a list of the matched
  values, so a result's type never depends on how many values matched. As a ``filter``, a
  JSONPath query passes when its result is truthy (a list: when anything matched), e.g.
  ``$.data.readings[?(@.value > 30)]``; a comparison of one top-level field needs JMESPath.

Expressions are compiled when the configuration is validated; a syntax error names the
field, the expression and the position.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

import jmespath
import jmespath.exceptions
from pydantic import Field, ValidationInfo, field_validator, model_validator

from aios.catalog.base import (
    Category,
    EventRole,
    NodeConfig,
    NodeManifest,
    NodeType,
    PortKind,
    PortSpec,
    Tier,
)
from aios.events.task import Event, PermanentError, TaskRequest, TaskServices
from aios.nodes.conditional import FIELD_PATH

FILTERED_OUT = "filtered_out"
"""Top-level boolean a transform with a ``filter`` writes: ``true`` stops the event's path."""

IDENTITY_FIELDS = frozenset({"event_id", "event_type", "time"})
"""Top-level fields that identify an event; protected unless explicitly allowed."""

FieldPath = Annotated[str, Field(pattern=FIELD_PATH, max_length=200)]
"""A dotted path into the event, e.g. ``dwell_seconds`` or ``data.temperature``."""

Language = Literal["jmespath", "jsonpath"]

Evaluator = Callable[[Any], Any]
"""A compiled expression: takes the event, returns its JSON result."""

# --- dotted paths ------------------------------------------------------------------------


_MISSING = object()


def get_field(event: Mapping[str, Any], path: str, default: Any = None) -> Any:
    """Return the value at a dotted ``path`` (``data.temperature``), or ``default``.

    Only objects are descended (a list index is not a path segment).
    """
    value: Any = event
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return default
        value = value.get(part, _MISSING)
        if value is _MISSING:
            return default
    return value


def set_field(event: dict[str, Any], path: str, value: Any) -> None:
    """Set the value at a dotted ``path``, creating missing intermediate objects.

    Raises:
        PermanentError: an intermediate value exists and is not an object.
    """
    parts = path.split(".")
    target: Any = event
    for i, part in enumerate(parts[:-1]):
        nxt = target.get(part)
        if nxt is None:
            nxt = target[part] = {}
        elif not isinstance(nxt, dict):
            where = ".".join(parts[: i + 1])
            raise PermanentError(
                f"cannot write '{path}': the event's '{where}' is a "
                f"{type(nxt).__name__}, not an object; choose another field name"
            )
        target = nxt
    target[parts[-1]] = value


def delete_field(event: dict[str, Any], path: str) -> None:
    """Remove the value at a dotted ``path`` (nothing happens if it is absent)."""
    parts = path.split(".")
    target: Any = event
    for part in parts[:-1]:
        target = target.get(part) if isinstance(target, dict) else None
    if isinstance(target, dict):
        target.pop(parts[-1], None)


# --- expressions -------------------------------------------------------------------------


def truthy(value: Any) -> bool:
    """JMESPath truthiness: ``false``, ``null``, ``""``, ``[]``, ``{}`` are falsy; numbers not."""
    if value is None or value is False:
        return False
    if isinstance(value, str | list | dict):
        return len(value) > 0
    return True


def _jsonpath_is_singular(node: Any) -> bool:
    """Whether a parsed ``jsonpath-ng`` query can select at most one value (RFC 9535 §2.3.5.1)."""
    from jsonpath_ng import jsonpath as jp
    from jsonpath_ng.ext.arithmetic import Operation
    from jsonpath_ng.ext.iterable import Len

    if isinstance(node, jp.Root | jp.This | Len):  # This covers `sorted`, `sub`, `split`, `str`
        return True
    if isinstance(node, jp.Fields):
        return len(node.fields) == 1 and node.fields[0] != "*"
    if isinstance(node, jp.Index):
        return len(node.indices) == 1
    if isinstance(node, jp.Child | Operation):
        return _jsonpath_is_singular(node.left) and _jsonpath_is_singular(node.right)
    return False


def _jmespath_detail(err: jmespath.exceptions.JMESPathError) -> str:
    """A one-line reason for a JMESPath syntax error (its own text spans several lines)."""
    exc = jmespath.exceptions
    if isinstance(err, exc.IncompleteExpressionError):
        return "the expression ends too early"
    if isinstance(err, exc.LexerError):
        return str(err.message)
    if isinstance(err, exc.ParseError) and not isinstance(err, exc.ArityError):
        near = f" near {err.token_value!r}" if err.token_value is not None else ""
        return f"{err.msg}{near}"
    return str(err).splitlines()[0]


def _check_jmespath_functions(node: Any, expression: str) -> None:
    """Refuse unknown functions and wrong argument counts now rather than on an event."""
    import jmespath.functions

    if isinstance(node, dict):
        if node.get("type") == "function_expression":
            name = str(node.get("value"))
            spec = jmespath.functions.Functions.FUNCTION_TABLE.get(name)
            if spec is None:
                known = ", ".join(sorted(jmespath.functions.Functions.FUNCTION_TABLE))
                raise ValueError(
                    f"JMESPath expression {expression!r} calls unknown function {name}() "
                    f"(known: {known})"
                )
            signature, given = spec["signature"], len(node.get("children", ()))
            variadic = bool(signature) and signature[-1].get("variadic")
            if given < len(signature) or (not variadic and given > len(signature)):
                want = f"at least {len(signature)}" if variadic else str(len(signature))
                raise ValueError(
                    f"JMESPath expression {expression!r}: {name}() takes {want} "
                    f"argument(s), got {given}"
                )
        for child in node.get("children", ()):
            _check_jmespath_functions(child, expression)


def compile_expression(language: Language, expression: str) -> Evaluator:
    """Compile one expression into a function of the event.

    Raises:
        ValueError: a syntax error, with the expression and the position of the error.
    """
    if language == "jmespath":
        try:
            parsed = jmespath.compile(expression)
        except jmespath.exceptions.JMESPathError as err:
            position = getattr(err, "lex_position", None)
            where = f" at position {position}" if isinstance(position, int) else ""
            raise ValueError(
                f"invalid JMESPath expression {expression!r}{where}: {_jmespath_detail(err)}"
            ) from err
        _check_jmespath_functions(parsed.parsed, expression)
        return parsed.search

    from jsonpath_ng.exceptions import JSONPathError
    from jsonpath_ng.ext.parser import parse

    try:
        query = parse(expression)
    except JSONPathError as err:
        raise ValueError(f"invalid JSONPath expression {expression!r}: {err}") from err
    except Exception as err:  # the ply-based parser raises bare errors on some inputs
        raise ValueError(f"invalid JSONPath expression {expression!r}: {err}") from err
    if _jsonpath_is_singular(query):

        def first(event: Any) -> Any:
            matches = query.find(event)
            return matches[0].value if matches else None

        return first
    return lambda event: [m.value for m in query.find(event)]


# --- configuration -----------------------------------------------------------------------


class TransformConfig(NodeConfig):
    """Compute fields, drop fields and filter events."""

    language: Language = Field(
        default="jmespath",
        title="Expression language",
        description="'jmespath' (jmespath.org) or 'jsonpath' (JSONPath with filters, "
        "arithmetic and `len`).",
    )
    fields: dict[FieldPath, Annotated[str, Field(min_length=1, max_length=2000)]] = Field(
        default_factory=dict,
        max_length=100,
        title="Fields",
        description="Target field → expression on the incoming event. Targets are dotted "
        "from the event's root: 'data.people' = length(data.boxes), 'zone' = ... "
        "(at most 100).",
    )
    drop: list[FieldPath] = Field(
        default_factory=list,
        max_length=100,
        title="Remove fields",
        description="Dotted paths removed from the event after the fields are written, "
        "e.g. 'data.raw' (at most 100).",
    )
    filter: str | None = Field(
        default=None,
        min_length=1,
        max_length=2000,
        title="Keep only if",
        description="Expression on the incoming event; when its result is falsy (false, "
        "null, empty) the event stops here. Example: confidence > `0.8`.",
    )
    allow_identity_overwrite: bool = Field(
        default=False,
        title="Allow changing identity",
        description="Allow writing or removing event_id, event_type and time (off: "
        "rejected, so deduplication and ordering downstream keep working).",
    )

    @field_validator("fields")
    @classmethod
    def _compile_fields(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        language = info.data.get("language", "jmespath")
        for target, expression in value.items():
            if target.split(".")[0] == FILTERED_OUT:
                raise ValueError(f"'{target}': '{FILTERED_OUT}' is written by the filter")
            try:
                compile_expression(language, expression)
            except ValueError as err:
                raise ValueError(f"field '{target}': {err}") from err
        return value

    @field_validator("filter")
    @classmethod
    def _compile_filter(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            compile_expression(info.data.get("language", "jmespath"), value)
        return value

    @model_validator(mode="after")
    def _identity_protected(self) -> TransformConfig:
        if self.allow_identity_overwrite:
            return self
        for kind, paths in (("fields", list(self.fields)), ("drop", self.drop)):
            hit = [p for p in paths if p.split(".")[0] in IDENTITY_FIELDS]
            if hit:
                raise ValueError(
                    f"{kind}: {hit} would change the event's identity (event_id, event_type, "
                    "time); write to 'data.<name>' instead, or set allow_identity_overwrite"
                )
        return self


MANIFEST = NodeManifest(
    type="aios/transform@1",
    category=Category.PROCESSING,
    tier=Tier.EVENT,
    title="Data Transform",
    description="Computes, renames and removes event fields with JMESPath or JSONPath "
    "expressions, and lets through only the events that match a filter.",
    icon="shuffle",
    inputs=(
        PortSpec(
            name="events",
            kind=PortKind.EVENT,
            title="Events",
            description="Events to transform.",
            multiple=True,
        ),
    ),
    outputs=(
        PortSpec(
            name="events",
            kind=PortKind.EVENT,
            title="Events",
            description="The transformed events that passed the filter.",
        ),
    ),
)


class TransformNode:
    """Evaluates the configured expressions on each event; see the module docstring."""

    def __init__(self, config: TransformConfig, services: TaskServices) -> None:
        self.config = config
        self.services = services
        self._fields = {
            target: compile_expression(config.language, expression)
            for target, expression in config.fields.items()
        }
        self._filter = (
            None if config.filter is None else compile_expression(config.language, config.filter)
        )

    def _evaluate(self, name: str, expression: str, evaluate: Evaluator, event: Event) -> Any:
        try:
            return evaluate(event)
        except jmespath.exceptions.JMESPathError as err:
            raise PermanentError(f"{name} {expression!r} failed on this event: {err}") from err
        except (TypeError, ValueError, KeyError, AttributeError) as err:
            raise PermanentError(f"{name} {expression!r} failed on this event: {err}") from err

    def run(self, request: TaskRequest) -> Event:
        """Return the event with the fields computed and dropped, and ``filtered_out`` set
        when a filter is configured.

        Raises:
            PermanentError: an expression fails on this event (e.g. a function given the
                wrong type), or a target path crosses a value that is not an object.
        """
        incoming = request.event
        results = {
            target: self._evaluate(
                f"field '{target}':", self.config.fields[target], evaluate, incoming
            )
            for target, evaluate in self._fields.items()
        }
        event = copy.deepcopy(incoming)
        for target, value in results.items():
            set_field(event, target, copy.deepcopy(value))
        for path in self.config.drop:
            delete_field(event, path)
        if self._filter is not None:
            assert self.config.filter is not None
            passed = truthy(self._evaluate("filter", self.config.filter, self._filter, incoming))
            event[FILTERED_OUT] = not passed
        return event


NODE = NodeType(
    manifest=MANIFEST,
    config_model=TransformConfig,
    implementation=TransformNode,
    event_role=EventRole.PROCESSOR,
)

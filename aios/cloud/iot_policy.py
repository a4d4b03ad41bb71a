"""The connector's AWS IoT Core policy: rendered for an account, and evaluated offline.

One policy serves every connector (``infra/iot/connector-policy.json``): its resources
name the connecting thing through the policy variable ``${iot:Connection.Thing.ThingName}``
(AWS IoT Core developer guide, "Thing policy variables"), so a connector may only

- connect with the client id = its thing name, the thing attached to its certificate
  (condition ``iot:Connection.Thing.IsAttached``);
- publish ``dt/aios/<thing>/heartbeat|telemetry|events`` and ``cmd/aios/<thing>/res``;
- subscribe to and receive ``cmd/aios/<thing>/req`` and ``cfg/aios/<thing>/desired``;
- exchange its certificate for temporary credentials of the role alias of video upload
  (``iot:AssumeRoleWithCertificate``), used by :mod:`connector.kvs`.

The cameras, PLCs and sensors behind a connector are not things and have no topics of
their own in the policy: the connector publishes their heartbeats, telemetry and events on
its own ``dt`` topics with the child's id in the message's ``device_id``, and the platform
accepts such a message only for a child registered under that connector (``parent_id``,
see :mod:`aios.messages`); commands to a child arrive on the connector's own ``cmd``
topic. So a certificate can never speak for devices of another connector, whatever
payload it sends, and the policy stays one document for the whole fleet.

:func:`evaluate` is an evaluator of IAM-style policy documents, as AWS IoT Core applies
them (IAM User Guide, "Policy evaluation logic"; AWS IoT Core developer guide, "AWS IoT
Core policies"): a request is allowed when an ``Allow`` statement matches it and no
``Deny`` statement does (an explicit deny wins; otherwise deny by default). A statement
matches when its ``Action``/``NotAction`` and ``Resource``/``NotResource`` match (``*``
any run of characters, ``?`` one; actions case-insensitive) and every ``Condition`` holds.
Policy variables (``${iot:ClientId}``, ``${iot:Connection.Thing.ThingName}``…, with the
escapes ``${*}``, ``${?}``, ``${$}`` and defaults ``${key, 'value'}``) are replaced by the
request context's values and match literally; a variable the context lacks makes that
pattern match nothing. In ``topicfilter`` resources the MQTT wildcards ``+`` and ``#``
are ordinary characters: a policy granting ``topicfilter/cmd/aios/gw/req`` does not grant
``topicfilter/cmd/aios/+/req`` (AWS IoT Core developer guide, "Publish/Subscribe policy
examples").

No maintained Python package evaluates AWS IoT policies offline: policyuniverse and
parliament parse and lint IAM policies, principalmapper's local simulation is
unmaintained and IAM-only, and @cloud-copilot/iam-simulate is a Node.js library; none
knows IoT's policy variables or its literal MQTT wildcards.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

POLICY_TEMPLATE = Path(__file__).resolve().parents[2] / "infra" / "iot" / "connector-policy.json"
"""The connector policy template (``${AWS::Region}``, ``${AWS::AccountId}``,
``${AWS::Partition}``, ``${RoleAlias}`` filled by :func:`render_policy`)."""

THING_NAME = "iot:Connection.Thing.ThingName"
IS_ATTACHED = "iot:Connection.Thing.IsAttached"
CLIENT_ID = "iot:ClientId"

IotAction = Literal["connect", "publish", "subscribe", "receive", "assume-role"]
"""The MQTT-side actions :func:`iot_request` builds requests for."""

_ACTIONS: dict[str, tuple[str, str]] = {
    "connect": ("iot:Connect", "client"),
    "publish": ("iot:Publish", "topic"),
    "subscribe": ("iot:Subscribe", "topicfilter"),
    "receive": ("iot:Receive", "topic"),
    "assume-role": ("iot:AssumeRoleWithCertificate", "rolealias"),
}

_TEMPLATE_KEYS = ("AWS::Partition", "AWS::Region", "AWS::AccountId", "RoleAlias")


class PolicyError(ValueError):
    """A policy document this evaluator cannot read (the message says what and where)."""


# --------------------------------------------------------------------------- rendering


def load_template(path: Path | None = None) -> dict[str, Any]:
    """The policy template as a JSON object.

    Raises:
        PolicyError: the file is missing or not a JSON object.
    """
    path = path or POLICY_TEMPLATE
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise PolicyError(f"cannot read the policy template {path}: {err}") from err
    if not isinstance(document, dict):
        raise PolicyError(f"{path} is not a JSON object")
    return document


def _fill(value: Any, values: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        for key, text in values.items():
            value = value.replace("${" + key + "}", text)
        return value
    if isinstance(value, list):
        return [_fill(v, values) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, values) for k, v in value.items()}
    return value


def render_policy(
    *,
    region: str,
    account: str,
    role_alias: str,
    partition: str = "aws",
    template: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The connector policy for an account: the template with ``${AWS::Partition}``,
    ``${AWS::Region}``, ``${AWS::AccountId}`` and ``${RoleAlias}`` filled in; the IoT
    policy variables (``${iot:...}``) stay for IoT Core to resolve per connection.

    Raises:
        PolicyError: a value holds characters an ARN part cannot (``/``, ``:``, ``$``…).
    """
    values = {
        "AWS::Partition": partition,
        "AWS::Region": region,
        "AWS::AccountId": account,
        "RoleAlias": role_alias,
    }
    for key, value in values.items():
        if not re.fullmatch(r"[A-Za-z0-9_=,@.-]+", value):
            raise PolicyError(f"{key} {value!r} is not a valid ARN part")
    document = copy.deepcopy(dict(template if template is not None else load_template()))
    return dict(_fill(document, values))


def cloudformation_document(template: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The template for ``Fn::Sub`` in a CloudFormation ``AWS::IoT::Policy``: the IoT
    policy variables escaped as ``${!iot:...}`` so that CloudFormation leaves them; the
    ``AWS::`` pseudo parameters and ``RoleAlias`` are resolved by ``Fn::Sub``."""
    document = copy.deepcopy(dict(template if template is not None else load_template()))

    def escape(value: Any) -> Any:
        if isinstance(value, str):
            return re.sub(r"\$\{(?!AWS::|RoleAlias\})", "${!", value)
        if isinstance(value, list):
            return [escape(v) for v in value]
        if isinstance(value, dict):
            return {k: escape(v) for k, v in value.items()}
        return value

    return dict(escape(document))


# --------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class Decision:
    """The outcome of :func:`evaluate`.

    Attributes:
        allowed: the request is allowed.
        effect: ``Allow``, ``Deny`` (an explicit deny matched) or ``ImplicitDeny`` (no
            statement allowed it).
        statement: the ``Sid`` (or ``#index``) of the deciding statement; ``None`` for an
            implicit deny.
    """

    allowed: bool
    effect: Literal["Allow", "Deny", "ImplicitDeny"]
    statement: str | None = None


class _Unresolved(Exception):
    """A policy variable the context does not hold."""


_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_ESCAPES = {"*": "*", "?": "?", "$": "$"}


def _variable_value(expression: str, context: Mapping[str, str | Sequence[str]]) -> str:
    if expression in _ESCAPES:
        return _ESCAPES[expression]
    name, _, default = expression.partition(",")
    name = name.strip()
    value = _context_value(context, name)
    if value is None:
        default = default.strip()
        if len(default) >= 2 and default[0] == default[-1] == "'":
            return default[1:-1]
        raise _Unresolved(name)
    if not isinstance(value, str):
        raise _Unresolved(name)  # a multivalued key cannot be a single string
    return value


def _context_value(
    context: Mapping[str, str | Sequence[str]], key: str
) -> str | Sequence[str] | None:
    """Context keys are case-insensitive (IAM condition keys are)."""
    if key in context:
        return context[key]
    lower = key.lower()
    for name, value in context.items():
        if name.lower() == lower:
            return value
    return None


def _pattern(
    text: str,
    context: Mapping[str, str | Sequence[str]],
    *,
    wildcards: bool = True,
    ignore_case: bool = False,
) -> re.Pattern[str]:
    """A regular expression for a policy pattern: variables replaced (literal), ``*``
    and ``?`` as wildcards when ``wildcards``.

    Raises:
        _Unresolved: a variable the context lacks.
    """
    out: list[str] = []
    pos = 0
    for match in _VARIABLE.finditer(text):
        out.append(_literal(text[pos : match.start()], wildcards))
        out.append(re.escape(_variable_value(match.group(1), context)))
        pos = match.end()
    out.append(_literal(text[pos:], wildcards))
    return re.compile("".join(out), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _literal(text: str, wildcards: bool) -> str:
    if not wildcards:
        return re.escape(text)
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text)


def _as_list(value: Any, where: str) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise PolicyError(f"{where} must be a string or a list of strings")
    return items


def _matches_any(
    patterns: Iterable[str],
    value: str,
    context: Mapping[str, str | Sequence[str]],
    *,
    ignore_case: bool = False,
) -> bool:
    for pattern in patterns:
        try:
            if _pattern(pattern, context, ignore_case=ignore_case).fullmatch(value):
                return True
        except _Unresolved:
            continue  # a pattern with an unknown variable matches nothing
    return False


_OPERATORS = {
    "StringEquals": ("string", False, False, False),
    "StringNotEquals": ("string", True, False, False),
    "StringEqualsIgnoreCase": ("string", False, False, True),
    "StringNotEqualsIgnoreCase": ("string", True, False, True),
    "StringLike": ("string", False, True, False),
    "StringNotLike": ("string", True, True, False),
    "ArnEquals": ("string", False, True, False),
    "ArnLike": ("string", False, True, False),
    "ArnNotEquals": ("string", True, True, False),
    "ArnNotLike": ("string", True, True, False),
    "Bool": ("bool", False, False, True),
}
"""operator → (kind, negated, wildcards, ignore case). ``ArnEquals`` matches like
``ArnLike`` (IAM: both accept wildcards in each ARN part)."""


def _condition_holds(
    operator: str, key: str, expected: list[str], context: Mapping[str, str | Sequence[str]]
) -> bool:
    if_exists = operator.endswith("IfExists")
    base = operator.removesuffix("IfExists")
    actual = _context_value(context, key)
    if base == "Null":
        wanted = expected[0].lower() == "true"  # "true": the key must be absent
        return (actual is None) == wanted
    if base not in _OPERATORS:
        raise PolicyError(
            f"condition operator {operator!r} is not supported by this evaluator; "
            f"supported: {', '.join([*_OPERATORS, 'Null'])} (and their IfExists forms)"
        )
    _, negated, wildcards, ignore_case = _OPERATORS[base]
    if actual is None:
        # IAM: an absent key does not match; negated operators then hold, IfExists too
        return if_exists or negated
    values = [actual] if isinstance(actual, str) else list(actual)
    matched = False
    for value in values:
        for pattern in expected:
            try:
                regex = _pattern(pattern, context, wildcards=wildcards, ignore_case=ignore_case)
            except _Unresolved:
                continue
            if regex.fullmatch(value):
                matched = True
    return not matched if negated else matched


def _statement_applies(
    statement: Mapping[str, Any],
    index: int,
    action: str,
    resource: str,
    context: Mapping[str, str | Sequence[str]],
) -> bool:
    where = f"Statement {statement.get('Sid', f'#{index}')}"
    if "Action" in statement:
        if not _matches_any(
            _as_list(statement["Action"], f"{where}.Action"), action, {}, ignore_case=True
        ):
            return False
    elif "NotAction" in statement:
        if _matches_any(
            _as_list(statement["NotAction"], f"{where}.NotAction"), action, {}, ignore_case=True
        ):
            return False
    else:
        raise PolicyError(f"{where} has neither Action nor NotAction")
    if "Resource" in statement:
        if not _matches_any(
            _as_list(statement["Resource"], f"{where}.Resource"), resource, context
        ):
            return False
    elif "NotResource" in statement:
        if _matches_any(
            _as_list(statement["NotResource"], f"{where}.NotResource"), resource, context
        ):
            return False
    else:
        raise PolicyError(f"{where} has neither Resource nor NotResource")
    conditions = statement.get("Condition", {})
    if not isinstance(conditions, dict):
        raise PolicyError(f"{where}.Condition must be an object")
    for operator, block in conditions.items():
        if not isinstance(block, dict):
            raise PolicyError(f"{where}.Condition.{operator} must be an object")
        for key, expected in block.items():
            values = [str(v).lower() if isinstance(v, bool) else v for v in _as_bool_list(expected)]
            if not _condition_holds(
                operator, key, _as_list(values, f"{where}.Condition.{operator}"), context
            ):
                return False
    return True


def _as_bool_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def evaluate(
    policies: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    action: str,
    resource: str,
    context: Mapping[str, str | Sequence[str]] | None = None,
) -> Decision:
    """Whether ``policies`` allow ``action`` (``iot:Publish``) on ``resource`` (an ARN)
    for a request with ``context`` (policy variable and condition key → value).

    Raises:
        PolicyError: a statement this evaluator cannot read (missing elements, an
            unsupported condition operator, an ``Effect`` other than Allow/Deny).
    """
    documents = [policies] if isinstance(policies, Mapping) else list(policies)
    context = context or {}
    allow: str | None = None
    for document in documents:
        statements = document.get("Statement", [])
        if isinstance(statements, Mapping):
            statements = [statements]
        for index, statement in enumerate(statements):
            effect = statement.get("Effect")
            if effect not in ("Allow", "Deny"):
                raise PolicyError(f"Statement #{index}: Effect must be Allow or Deny")
            if not _statement_applies(statement, index, action, resource, context):
                continue
            sid = str(statement.get("Sid", f"#{index}"))
            if effect == "Deny":
                return Decision(False, "Deny", sid)
            allow = allow or sid
    if allow is not None:
        return Decision(True, "Allow", allow)
    return Decision(False, "ImplicitDeny")


# --------------------------------------------------------------------------- IoT requests


def iot_arn(kind: str, name: str, *, region: str, account: str, partition: str = "aws") -> str:
    """``arn:<partition>:iot:<region>:<account>:<kind>/<name>`` (``kind``: client, topic,
    topicfilter, rolealias, thing)."""
    return f"arn:{partition}:iot:{region}:{account}:{kind}/{name}"


def connection_context(
    client_id: str, attached_things: Iterable[str]
) -> dict[str, str | Sequence[str]]:
    """The policy variables of an MQTT connection as AWS IoT Core sets them: the thing
    name is the client id, and ``IsAttached`` says whether a thing of that name is attached
    to the certificate the client authenticated with."""
    attached = client_id in set(attached_things)
    return {CLIENT_ID: client_id, THING_NAME: client_id, IS_ATTACHED: str(attached).lower()}


def check(
    policy: Mapping[str, Any],
    action: IotAction,
    target: str,
    *,
    client_id: str,
    attached_things: Iterable[str],
    region: str,
    account: str,
    partition: str = "aws",
) -> Decision:
    """Evaluate one MQTT-side request of a connection: ``connect`` (``target`` = the client
    id asked for), ``publish``/``receive`` (a topic), ``subscribe`` (a topic filter, MQTT
    wildcards included), ``assume-role`` (a role alias).

    Raises:
        PolicyError: see :func:`evaluate`; or an unknown action.
    """
    if action not in _ACTIONS:
        raise PolicyError(f"unknown action {action!r}; use one of {', '.join(_ACTIONS)}")
    iot_action, kind = _ACTIONS[action]
    resource = iot_arn(kind, target, region=region, account=account, partition=partition)
    return evaluate(policy, iot_action, resource, connection_context(client_id, attached_things))

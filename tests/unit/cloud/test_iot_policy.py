"""The connector's IoT policy (infra/iot/connector-policy.json), evaluated for topic cases:
a connector reaches its own topics only; and the evaluator's IAM semantics."""

from __future__ import annotations

from typing import Any

import pytest

from aios.cloud.iot_policy import (
    PolicyError,
    check,
    cloudformation_document,
    evaluate,
    render_policy,
)

REGION, ACCOUNT, ALIAS = "eu-west-1", "123456789012", "aios-prod-kvs"
POLICY = render_policy(region=REGION, account=ACCOUNT, role_alias=ALIAS)


def decide(action: Any, target: str, *, client_id: str = "gw-a", attached: str = "gw-a") -> bool:
    return check(
        POLICY,
        action,
        target,
        client_id=client_id,
        attached_things=[attached],
        region=REGION,
        account=ACCOUNT,
    ).allowed


@pytest.mark.parametrize(
    ("action", "target"),
    [
        ("connect", "gw-a"),
        ("publish", "dt/aios/gw-a/heartbeat"),
        ("publish", "dt/aios/gw-a/telemetry"),
        ("publish", "dt/aios/gw-a/events"),
        ("publish", "cmd/aios/gw-a/res"),
        ("subscribe", "cmd/aios/gw-a/req"),
        ("subscribe", "cfg/aios/gw-a/desired"),
        ("receive", "cmd/aios/gw-a/req"),
        ("receive", "cfg/aios/gw-a/desired"),
        ("assume-role", ALIAS),
    ],
)
def test_a_connector_reaches_its_own_topics(action: Any, target: str) -> None:
    assert decide(action, target)


@pytest.mark.parametrize(
    ("action", "target"),
    [
        # another device's topics
        ("publish", "dt/aios/gw-b/events"),
        ("publish", "dt/aios/gw-b/heartbeat"),
        ("publish", "cmd/aios/gw-b/res"),
        ("subscribe", "cmd/aios/gw-b/req"),
        ("subscribe", "cfg/aios/gw-b/desired"),
        ("receive", "cmd/aios/gw-b/req"),
        ("receive", "cfg/aios/gw-b/desired"),
        ("receive", "dt/aios/gw-b/events"),
        # the platform's side of its own topics: no forged commands or configurations
        ("publish", "cmd/aios/gw-a/req"),
        ("publish", "cfg/aios/gw-a/desired"),
        ("subscribe", "dt/aios/gw-a/events"),
        # wildcard subscriptions to everyone's topics
        ("subscribe", "dt/aios/+/events"),
        ("subscribe", "cmd/aios/+/req"),
        ("subscribe", "#"),
        ("subscribe", "cmd/aios/gw-a/#"),
        ("subscribe", "cmd/aios/gw-?/req"),
        # outside the topic design
        ("publish", "dt/aios/gw-a/events/extra"),
        ("publish", "dt/aios/gw-a"),
        ("assume-role", "aios-prod-admin"),
    ],
)
def test_a_connector_is_denied_other_topics(action: Any, target: str) -> None:
    assert not decide(action, target)


def test_connecting_only_as_its_own_thing() -> None:
    # another client id: the thing of that name is not attached to this certificate
    assert not decide("connect", "gw-b")
    assert not decide("connect", "gw-a-2")
    # the certificate of gw-b cannot connect as gw-a, nor publish as gw-a afterwards
    assert not decide("connect", "gw-a", client_id="gw-a", attached="gw-b")
    assert not decide("publish", "dt/aios/gw-a/events", client_id="gw-a", attached="gw-b")
    # connected as gw-b with gw-b's certificate: gw-b's topics, not gw-a's
    assert decide("publish", "dt/aios/gw-b/events", client_id="gw-b", attached="gw-b")
    assert not decide("publish", "dt/aios/gw-a/events", client_id="gw-b", attached="gw-b")


def test_rendering_fills_the_account_and_keeps_the_policy_variables() -> None:
    text = str(POLICY)
    assert f"arn:aws:iot:{REGION}:{ACCOUNT}:client/${{iot:Connection.Thing.ThingName}}" in text
    assert f"rolealias/{ALIAS}" in text and "${AWS::" not in text and "${RoleAlias}" not in text
    with pytest.raises(PolicyError, match="ARN part"):
        render_policy(region=REGION, account="1234/5", role_alias=ALIAS)
    sub = str(cloudformation_document())
    assert "${!iot:Connection.Thing.ThingName}" in sub and "${AWS::Region}" in sub
    assert "${RoleAlias}" in sub and "${iot:" not in sub


# ------------------------------------------------------------------ evaluator semantics


def doc(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


ARN = "arn:aws:iot:eu-west-1:123456789012:topic/"


def test_explicit_deny_wins_and_default_is_deny() -> None:
    policy = doc(
        {"Effect": "Allow", "Action": "iot:*", "Resource": "*"},
        {"Sid": "NoAlarms", "Effect": "Deny", "Action": "iot:Publish", "Resource": ARN + "alarm/*"},
    )
    assert evaluate(policy, "iot:Publish", ARN + "dt/x").effect == "Allow"
    denied = evaluate(policy, "iot:Publish", ARN + "alarm/1")
    assert (denied.allowed, denied.effect, denied.statement) == (False, "Deny", "NoAlarms")
    # case-insensitive actions, default deny for what nothing allows
    assert evaluate(policy, "IOT:publish", ARN + "dt/x").allowed
    assert evaluate(doc(), "iot:Publish", ARN + "dt/x").effect == "ImplicitDeny"
    # the deny in a second document of the same request still wins
    allow_all = doc({"Effect": "Allow", "Action": "*", "Resource": "*"})
    deny_pub = doc({"Effect": "Deny", "Action": "iot:Publish", "Resource": "*"})
    assert not evaluate([allow_all, deny_pub], "iot:Publish", ARN + "a").allowed


def test_wildcards_and_policy_variables() -> None:
    policy = doc(
        {"Effect": "Allow", "Action": "iot:Publish", "Resource": ARN + "site/?/*"},
        {"Effect": "Allow", "Action": "iot:Receive", "Resource": ARN + "own/${iot:ClientId}"},
        {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": ARN + "lit/${*}/${?}/${$}"},
        {
            "Effect": "Allow",
            "Action": "iot:Connect",
            "Resource": "*",
            "Condition": {"StringLike": {"iot:ClientId": "gw-*"}},
        },
    )
    assert evaluate(policy, "iot:Publish", ARN + "site/a/x/y").allowed  # * spans levels
    assert not evaluate(policy, "iot:Publish", ARN + "site/ab/x").allowed  # ? is one char
    ctx = {"iot:ClientId": "gw-1"}
    assert evaluate(policy, "iot:Receive", ARN + "own/gw-1", ctx).allowed
    assert not evaluate(policy, "iot:Receive", ARN + "own/gw-2", ctx).allowed
    # a substituted value is literal: a client id "*" does not become a wildcard
    assert not evaluate(policy, "iot:Receive", ARN + "own/anything", {"iot:ClientId": "*"}).allowed
    # an unknown variable matches nothing
    assert not evaluate(policy, "iot:Receive", ARN + "own/", {}).allowed
    # escapes are literal characters
    assert evaluate(policy, "iot:Subscribe", ARN + "lit/*/?/$").allowed
    assert not evaluate(policy, "iot:Subscribe", ARN + "lit/a/b/$").allowed
    # conditions
    assert evaluate(policy, "iot:Connect", "arn:x", {"iot:ClientId": "gw-9"}).allowed
    assert not evaluate(policy, "iot:Connect", "arn:x", {"iot:ClientId": "cam-9"}).allowed
    assert not evaluate(policy, "iot:Connect", "arn:x", {}).allowed


def test_not_elements_defaults_and_unsupported_operators() -> None:
    policy = doc(
        {"Effect": "Allow", "NotAction": "iot:Connect", "NotResource": ARN + "secret"},
        {
            "Effect": "Allow",
            "Action": "iot:Connect",
            "Resource": "arn:aws:iot:eu-west-1:123456789012:client/${iot:ClientId, 'nobody'}",
            "Condition": {"StringNotEqualsIfExists": {"iot:ClientId": "banned"}},
        },
    )
    assert evaluate(policy, "iot:Publish", ARN + "open").allowed
    assert not evaluate(policy, "iot:Publish", ARN + "secret").allowed
    client = "arn:aws:iot:eu-west-1:123456789012:client/"
    assert evaluate(policy, "iot:Connect", client + "nobody").allowed  # the default value
    assert evaluate(policy, "iot:Connect", client + "gw", {"iot:ClientId": "gw"}).allowed
    assert not evaluate(
        policy, "iot:Connect", client + "banned", {"iot:ClientId": "banned"}
    ).allowed
    with pytest.raises(PolicyError, match="not supported"):
        evaluate(
            doc(
                {
                    "Effect": "Allow",
                    "Action": "*",
                    "Resource": "*",
                    "Condition": {"DateLessThan": {"aws:CurrentTime": "2030"}},
                }
            ),
            "iot:Publish",
            ARN + "x",
        )
    with pytest.raises(PolicyError, match="Effect"):
        evaluate(doc({"Effect": "allow", "Action": "*", "Resource": "*"}), "iot:Publish", "x")

"""The connector's IoT policy and the local broker's per-device ACLs agree: what the policy
evaluator (aios.cloud.iot_policy) allows a connector to publish and receive is what a real
Mosquitto with the ACLs of tests/integration/connector/mosquitto.py lets through.

Subscriptions differ by design: IoT Core refuses a SUBSCRIBE the policy does not allow,
Mosquitto grants every subscription and filters at delivery — so they are compared by what
is delivered (iot:Receive)."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from mosquitto import PLATFORM_IDENTITY, MosquittoBroker, close_client
from paho.mqtt.subscribeoptions import SubscribeOptions

from aios.cloud.iot_policy import check, render_policy

REGION, ACCOUNT = "us-east-1", "123456789012"
POLICY = render_policy(region=REGION, account=ACCOUNT, role_alias="aios-test-kvs")

TOPICS = [
    "dt/aios/gw-a/heartbeat",
    "dt/aios/gw-a/telemetry",
    "dt/aios/gw-a/events",
    "cmd/aios/gw-a/res",
    "cmd/aios/gw-a/req",
    "cfg/aios/gw-a/desired",
    "dt/aios/gw-b/events",
    "dt/aios/gw-b/heartbeat",
    "cmd/aios/gw-b/req",
    "cmd/aios/gw-b/res",
    "cfg/aios/gw-b/desired",
]


def policy_allows(action: Any, topic: str) -> bool:
    return check(
        POLICY,
        action,
        topic,
        client_id="gw-a",
        attached_things=["gw-a"],
        region=REGION,
        account=ACCOUNT,
    ).allowed


def test_publish_rights_agree_with_mosquitto(mosquitto: MosquittoBroker) -> None:
    codes = mosquitto.publish("gw-a", [(t, b"{}", False) for t in TOPICS])
    broker = {t: not code.is_failure for t, code in zip(TOPICS, codes, strict=True)}
    policy = {t: policy_allows("publish", t) for t in TOPICS}
    assert policy == broker
    assert sum(policy.values()) == 4  # its dt topics and its command responses


def test_receive_rights_agree_with_mosquitto(mosquitto: MosquittoBroker) -> None:
    received: list[str] = []
    subscribed = threading.Event()
    device = mosquitto.client("gw-a", "gw-a")
    device.on_message = lambda client, userdata, message: received.append(message.topic)
    device.on_subscribe = lambda *args: subscribed.set()
    try:
        device.subscribe([("#", SubscribeOptions(qos=1))])
        assert subscribed.wait(10)
        marker = "cmd/aios/gw-a/req"
        codes = mosquitto.publish(
            PLATFORM_IDENTITY,
            [(t, json.dumps({"t": t}).encode(), False) for t in TOPICS] + [(marker, b"end", False)],
        )
        assert not any(code.is_failure for code in codes)
        deadline = time.monotonic() + 10
        while received.count(marker) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        close_client(device)
    broker = {t: t in received for t in TOPICS}
    policy = {t: policy_allows("receive", t) for t in TOPICS}
    assert policy == broker
    assert {t for t, ok in policy.items() if ok} == {"cmd/aios/gw-a/req", "cfg/aios/gw-a/desired"}
    # IoT Core refuses the wildcard subscription itself
    assert not policy_allows("subscribe", "#")

"""Benchmark: what store and forward costs over raw MQTT publishing.

Against one Mosquitto (mTLS listener, per-device ACLs; as the connector's tests run it),
in one run, with the same telemetry payloads (about 150 bytes), QoS 1 and the same
in-flight window, prints messages per second for:

* raw paho — the baseline: an MQTT 5 client publishing and waiting for every PUBACK;
* the queue alone — ``put`` (a committed, fsynced SQLite transaction each) then ``ack``;
* the link, live — ``PlatformLink.send`` one by one while connected, until ``flush``:
  what a connector gets end to end (durable put + publish + PUBACK + delete);
* the link, backlog — messages queued while the link was away (``put_many``), drained
  after ``start``: the network side of the link (after an outage);

each as a ratio to raw paho.

Run: ``.venv/bin/python tests/bench/bench_link.py [--messages N] [--inflight N]``
(needs mosquitto).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration" / "connector"))

import paho.mqtt.client as mqtt
from mosquitto import MOSQUITTO, MosquittoBroker, close_client
from paho.mqtt.reasoncodes import ReasonCode

from aios.messages import Telemetry, TelemetrySample, TopicKind, topic
from connector.link import PlatformLink
from connector.queue import OutboundQueue

DEVICE = "bench-gw"


def message(n: int) -> Telemetry:
    """Telemetry number ``n``."""
    return Telemetry(
        message_id=f"b-{n:08d}",
        time=datetime.now(UTC),
        samples=[TelemetrySample(metric="flow_m3h", value=n * 0.5, unit="m3/h")],
    )


def raw_paho(broker: MosquittoBroker, payloads: list[bytes], inflight: int) -> float:
    """Messages/s: publish at QoS 1 with paho, wait for every PUBACK."""
    client = broker.client(DEVICE, f"{DEVICE}-raw", inflight=inflight)
    done = threading.Event()
    acked = 0

    def on_publish(c: mqtt.Client, u: Any, mid: int, reason: ReasonCode, p: Any) -> None:
        nonlocal acked
        acked += 1
        if acked == len(payloads):
            done.set()

    client.on_publish = on_publish
    name = topic(TopicKind.TELEMETRY, DEVICE)
    start = time.perf_counter()
    for payload in payloads:
        client.publish(name, payload, qos=1)
    assert done.wait(300), "raw paho: not every message acknowledged"
    elapsed = time.perf_counter() - start
    close_client(client)
    return len(payloads) / elapsed


def queue_alone(folder: Path, payloads: list[bytes]) -> float:
    """Messages/s: durable put of each, then ack of each (no network)."""
    name = topic(TopicKind.TELEMETRY, DEVICE)
    with OutboundQueue(folder / "alone.db") as queue:
        start = time.perf_counter()
        seqs = [queue.put(name, p) for p in payloads]
        for seq in seqs:
            queue.ack(seq)
        return len(payloads) / (time.perf_counter() - start)


def link_live(broker: MosquittoBroker, folder: Path, count: int, inflight: int) -> float:
    """Messages/s: PlatformLink.send one by one while connected, then flush."""
    with OutboundQueue(folder / "live.db") as queue:
        link = PlatformLink(broker.platform_config(DEVICE), DEVICE, queue, inflight=inflight)
        link.start()
        assert link.wait_connected(15)
        messages = [message(n) for n in range(count)]
        start = time.perf_counter()
        for m in messages:
            link.send(TopicKind.TELEMETRY, m)
        assert link.flush(300), link.stats()
        elapsed = time.perf_counter() - start
        link.stop()
        return count / elapsed


def link_backlog(
    broker: MosquittoBroker, folder: Path, payloads: list[bytes], inflight: int
) -> float:
    """Messages/s: drain a backlog queued while the link was away."""
    name = topic(TopicKind.TELEMETRY, DEVICE)
    with OutboundQueue(folder / "backlog.db") as queue:
        queue.put_many([(name, p) for p in payloads])
        link = PlatformLink(broker.platform_config(DEVICE), DEVICE, queue, inflight=inflight)
        link.start()
        assert link.wait_connected(15)
        start = time.perf_counter()
        assert link.flush(300), link.stats()
        elapsed = time.perf_counter() - start
        link.stop()
        return len(payloads) / elapsed


def main(argv: list[str] | None = None) -> None:
    """Run the four measurements and print rates and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--inflight", type=int, default=20)
    args = parser.parse_args(argv)
    if MOSQUITTO is None:
        sys.exit("mosquitto is not installed")
    payloads = [message(n).model_dump_json().encode() for n in range(args.messages)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        broker = MosquittoBroker(folder / "mosquitto").start()
        try:
            raw = raw_paho(broker, payloads, args.inflight)
            alone = queue_alone(folder, payloads)
            live = link_live(broker, folder, args.messages, args.inflight)
            backlog = link_backlog(broker, folder, payloads, args.inflight)
        finally:
            broker.stop()
    print(
        f"{args.messages} messages of ~{len(payloads[0])} bytes, QoS 1, in-flight window "
        f"{args.inflight}, mTLS to Mosquitto on loopback"
    )
    print(f"{'path':<44}{'msg/s':>10}{'vs raw':>9}")
    for label, rate in [
        ("raw paho publish + PUBACK (baseline)", raw),
        ("queue alone: durable put + ack", alone),
        ("link live: send (durable) ... flush", live),
        ("link backlog: drain after an outage", backlog),
    ]:
        print(f"{label:<44}{rate:>10.0f}{rate / raw:>9.2f}")


if __name__ == "__main__":
    main()

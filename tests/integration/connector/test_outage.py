"""Store and forward across a broker outage and a killed connector, against real Mosquitto.

The receiver stands for the platform: a persistent-session MQTT 5 subscriber that keeps a
message once by ``message_id`` (as the platform's ingester does). "Exactly once, in order"
is asserted on what it keeps: the full list of ids, compared with what was sent.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from mosquitto import MosquittoBroker, Receiver, wait_until

from aios.messages import Telemetry, TelemetrySample, TopicKind
from connector.link import PlatformLink
from connector.queue import OutboundQueue

OUTAGE_SECONDS = 60.0
"""The issue's "broker stopped for a minute"."""

RATE_PER_SECOND = 10.0


def telemetry(n: int) -> Telemetry:
    """Reading number ``n``; its message id is ``t-{n:06d}``."""
    return Telemetry(
        message_id=f"t-{n:06d}",
        time=datetime.now(UTC),
        samples=[TelemetrySample(metric="flow_m3h", value=float(n))],
    )


class Producer(threading.Thread):
    """Sends one telemetry message every 1/``RATE_PER_SECOND`` s until stopped."""

    def __init__(self, link: PlatformLink) -> None:
        super().__init__(name="producer", daemon=True)
        self.link = link
        self.sent: list[str] = []
        self.seqs: list[int] = []
        self.halt = threading.Event()
        self.errors: list[BaseException] = []

    def run(self) -> None:
        start = time.monotonic()
        n = 0
        while not self.halt.is_set():
            try:
                self.seqs.append(self.link.send(TopicKind.TELEMETRY, telemetry(n)))
            except BaseException as err:  # reported by the test
                self.errors.append(err)
                return
            self.sent.append(f"t-{n:06d}")
            n += 1
            self.halt.wait(max(0.0, start + n / RATE_PER_SECOND - time.monotonic()))


def test_a_one_minute_broker_outage_loses_nothing_and_duplicates_nothing(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """Broker stopped 60 s while telemetry flows at 10/s, then restarted: every message
    arrives exactly once for the receiver, in order. (Runs about 75 s: the outage the
    issue asks for is one minute.)"""
    # GIVEN the platform subscribed with a persistent session, and gw-a's link sending 10/s
    receiver = Receiver(mosquitto, ["dt/aios/gw-a/telemetry"])
    queue = OutboundQueue(tmp_path / "queue.db")
    link = PlatformLink(mosquitto.platform_config("gw-a"), "gw-a", queue)
    link.start()
    assert link.wait_connected(15)
    producer = Producer(link)
    producer.start()
    try:
        wait_until(lambda: len(receiver.messages) >= 30, 15, "telemetry before the outage")

        # WHEN the broker is stopped for a minute while the producer goes on
        mosquitto.stop()
        stopped_at = len(producer.sent)
        time.sleep(OUTAGE_SECONDS)
        depth_in_outage = queue.depth()
        sent_in_outage = len(producer.sent) - stopped_at
        assert not link.connected
        # AND restarted on the same port
        mosquitto.start()
        assert link.wait_connected(15), link.stats()
        wait_until(lambda: len(receiver.messages) >= len(producer.sent) - 5, 30, "the backlog")
        producer.halt.set()
        producer.join(10)
        assert not producer.errors, producer.errors
        assert link.flush(30), link.stats()

        # THEN the outage's messages had waited in the queue
        assert sent_in_outage >= 0.9 * OUTAGE_SECONDS * RATE_PER_SECOND
        assert depth_in_outage >= sent_in_outage
        # AND the receiver has every message sent, once each, in the order sent
        ids = receiver.wait_for(len(producer.sent), 30)
        time.sleep(1.0)  # late redeliveries would show now
        assert receiver.ids() == producer.sent
        assert len(ids) == len(producer.sent) >= 600
        values = [data["samples"][0]["value"] for _, data in receiver.messages]
        assert values == [float(n) for n in range(len(producer.sent))]
        assert producer.seqs == sorted(producer.seqs)
        stats = link.stats()
        assert stats.reconnects >= 1 and stats.rejected == 0 and stats.queue_depth == 0
        assert stats.acknowledged >= len(producer.sent)
    finally:
        producer.halt.set()
        link.stop(flush_timeout=0)
        queue.close()
        receiver.close()


CHILD = """
import os, sys, json, time
from datetime import UTC, datetime
from pathlib import Path
from aios.messages import Telemetry, TelemetrySample, TopicKind
from connector.config import PlatformConfig
from connector.link import PlatformLink
from connector.queue import OutboundQueue

args = json.loads(sys.argv[1])
queue = OutboundQueue(Path(args["queue"]))
link = PlatformLink(PlatformConfig.model_validate(args["platform"]), "gw-a", queue)
link.start()
record = os.open(args["record"], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
n = 0
while True:
    message = Telemetry(
        message_id=f"k-{n:06d}",
        time=datetime.now(UTC),
        samples=[TelemetrySample(metric="flow_m3h", value=float(n))],
    )
    seq = link.send(TopicKind.TELEMETRY, message)
    os.write(record, f"{seq} k-{n:06d}\\n".encode())
    n += 1
    time.sleep(0.002)
"""


@pytest.mark.parametrize("broker_down", [False, True], ids=["while-publishing", "during-outage"])
def test_a_killed_connector_loses_nothing_it_had_accepted(
    mosquitto: MosquittoBroker, tmp_path: Path, broker_down: bool
) -> None:
    """SIGKILL mid-run — while it publishes, or while the broker is down and messages pile
    up in its queue; the next start from the same data folder sends the rest: every
    message ``send`` had returned a seq for arrives, once, in order."""
    # GIVEN the platform subscribed, and a connector process sending as fast as it can
    receiver = Receiver(mosquitto, ["dt/aios/gw-a/telemetry"])
    platform = mosquitto.platform_config("gw-a")
    record = tmp_path / "accepted.txt"
    args = {
        "queue": str(tmp_path / "data" / "queue.db"),
        "platform": json.loads(platform.model_dump_json()),
        "record": str(record),
    }
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(args)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        # WHEN it is killed once it has delivered messages (and, in the outage case,
        # queued 100 more while the broker was stopped)
        wait_until(
            lambda: len(receiver.messages) >= 50 and _lines(record) >= 400,
            60,
            "the connector sending",
        )
        if broker_down:
            mosquitto.stop()
            before_outage = _lines(record)
            wait_until(lambda: _lines(record) >= before_outage + 100, 30, "sends in the outage")
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(15) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(15)
        assert child.stderr is not None
        stderr = child.stderr.read().decode(errors="replace")
        child.stderr.close()
    # complete lines only: a line cut by the kill was not fully recorded
    accepted = [line.split() for line in record.read_text().split("\n")[:-1]]
    accepted_ids = [message_id for _, message_id in accepted]
    delivered_before = len(receiver.messages)
    assert accepted_ids, stderr
    if broker_down:
        mosquitto.start()

    # AND the connector starts again from the same data folder
    queue = OutboundQueue(tmp_path / "data" / "queue.db")
    left = queue.depth()
    link = PlatformLink(platform, "gw-a", queue)
    link.start()
    try:
        assert link.flush(60), link.stats()
        received = receiver.wait_for(len(accepted_ids), 30)
        time.sleep(1.0)  # late redeliveries would show now
        received = receiver.ids()
    finally:
        link.stop(flush_timeout=0)
        queue.close()
        receiver.close()

    # THEN every accepted message arrived, in order, once (at most one more: sent by the
    # child after its last record was written); in the outage case, at least the 100
    # accepted in the outage had been waiting in the queue, undelivered
    if broker_down:
        assert left >= 100 and delivered_before <= len(accepted_ids) - 100
    assert received[: len(accepted_ids)] == accepted_ids
    assert len(received) - len(accepted_ids) in (0, 1)
    assert received == [f"k-{n:06d}" for n in range(len(received))]
    seqs = [int(seq) for seq, _ in accepted]
    assert seqs == sorted(seqs)


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0

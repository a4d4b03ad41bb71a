"""Real MQTT brokers on loopback for the fleet ingestion tests: amqtt in-process (always
available) and Mosquitto as a subprocess (when installed)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from amqtt.broker import Broker
from paho.mqtt.enums import CallbackAPIVersion

WAIT = 10.0
MOSQUITTO = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")


class AmqttBroker:
    """amqtt (MQTT 3.1.1) on 127.0.0.1 and a free port, in a thread with its own loop."""

    name = "amqtt"

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.broker: Broker | None = None
        self.port = 0

    def start(self) -> AmqttBroker:
        self.thread.start()
        config: dict[str, Any] = {
            "listeners": {"default": {"type": "tcp", "bind": "127.0.0.1:0"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }

        async def start() -> Broker:
            broker = Broker(config)
            await broker.start()
            return broker

        self.broker = asyncio.run_coroutine_threadsafe(start(), self.loop).result(WAIT)
        server = self.broker._servers["default"].instance
        self.port = server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        if self.broker is not None:
            asyncio.run_coroutine_threadsafe(self.broker.shutdown(), self.loop).result(WAIT)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT)
        self.loop.close()


class MosquittoBroker:
    """Mosquitto on 127.0.0.1 and a free port, as a subprocess."""

    name = "mosquitto"

    def __init__(self, folder: Path, port: int = 0) -> None:
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None
        self.port = port

    def start(self) -> MosquittoBroker:
        """Start listening (on a free port the first time, the same port again after stop)."""
        assert MOSQUITTO is not None
        if not self.port:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                self.port = probe.getsockname()[1]
        conf = self.folder / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "max_queued_messages 100000\n"
        )
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + WAIT
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                assert time.monotonic() < deadline, "mosquitto did not start listening"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(WAIT)
            self.process = None


def publish_as(port: int, client_id: str, messages: Iterable[tuple[str, bytes]]) -> None:
    """Connect as ``client_id``, publish with QoS 1, return once the broker acknowledged
    every message (PUBACK), disconnect."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    client.max_inflight_messages_set(100)
    client.connect("127.0.0.1", port)
    try:
        infos = [client.publish(t, p, qos=1) for t, p in messages]
        deadline = time.monotonic() + WAIT
        while not all(i.is_published() for i in infos):
            assert time.monotonic() < deadline, f"{client_id}: broker did not acknowledge"
            client.loop(timeout=0.05)
    finally:
        client.disconnect()
        client.loop(timeout=0.01)


def publish_many(
    port: int,
    devices: list[str],
    messages_of: Callable[[str], list[tuple[str, bytes]]],
    *,
    threads: int = 16,
) -> None:
    """Each device connects with its own client and publishes its messages (QoS 1)."""
    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(publish_as, port, d, messages_of(d)) for d in devices]:
            future.result()


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    """Poll ``predicate`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)

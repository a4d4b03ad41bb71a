"""Mosquitto with mTLS and per-device ACLs on loopback, for the connector's tests.

:class:`MosquittoBroker` makes a CA with ``trustme``, a server certificate for 127.0.0.1
and one client certificate per identity (common name = the device id; the platform's own
identity is :data:`PLATFORM_IDENTITY`), writes ``mosquitto.conf`` and an ACL file, and runs
``mosquitto`` on a free 127.0.0.1 port. The listener requires a client certificate and
takes its common name as the user name (``use_identity_as_username``), so the ACL
patterns give each device its own topics only::

    pattern write dt/aios/%u/#
    pattern read  cmd/aios/%u/req
    pattern write cmd/aios/%u/res
    pattern read  cfg/aios/%u/desired
    user aios-platform
    topic readwrite #

Persistence is on (in the broker's folder): sessions and queued QoS 1 messages survive
:meth:`MosquittoBroker.stop` / :meth:`MosquittoBroker.start` (same port), as they would a
broker restart. :class:`Receiver` is the platform side: a persistent-session MQTT 5
subscriber that keeps each message once by ``message_id``, in first-arrival order.
Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import trustme
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from connector.config import PlatformConfig, TlsConfig

MOSQUITTO = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
"""The mosquitto executable, or None (tests that need it skip)."""

PLATFORM_IDENTITY = "aios-platform"
"""The certificate common name the ACL lets read and write every topic."""

WAIT = 15.0
"""Longest wait for the broker to start or stop, or a client to connect, s."""

ACL = """\
pattern write dt/aios/%u/#
pattern read cmd/aios/%u/req
pattern write cmd/aios/%u/res
pattern read cfg/aios/%u/desired

user {platform}
topic readwrite #
"""


@dataclass(frozen=True)
class Identity:
    """PEM files of one client identity (and the CA that signed the broker)."""

    name: str
    ca_file: Path
    cert_file: Path
    key_file: Path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` every 20 ms; fail with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g} s"
        time.sleep(0.02)


class MosquittoBroker:
    """Mosquitto with an mTLS listener and per-device ACLs, files in ``folder``."""

    def __init__(self, folder: Path, *, extra_conf: str = "") -> None:
        assert MOSQUITTO is not None, "mosquitto is not installed"
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.ca = trustme.CA()
        self.ca_file = folder / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        server = self.ca.issue_cert("127.0.0.1", "localhost", common_name="mosquitto")
        self._server_cert = folder / "server.pem"
        self._server_key = folder / "server.key"
        server.cert_chain_pems[0].write_to_path(str(self._server_cert))
        server.private_key_pem.write_to_path(str(self._server_key))
        self._identities: dict[str, Identity] = {}
        self.persistence = folder / "persistence"
        self.persistence.mkdir(exist_ok=True)
        self.log_file = folder / "mosquitto.log"
        (folder / "acl").write_text(ACL.format(platform=PLATFORM_IDENTITY))
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(
            # run as root (containers), mosquitto would switch to its own user, which
            # cannot read the test's private folder: stay the current user
            f"user {pwd.getpwuid(os.geteuid()).pw_name}\n"
            "per_listener_settings false\n"
            f"listener {self.port} 127.0.0.1\n"
            f"cafile {self.ca_file}\n"
            f"certfile {self._server_cert}\n"
            f"keyfile {self._server_key}\n"
            "tls_version tlsv1.2\n"
            "require_certificate true\n"
            "use_identity_as_username true\n"
            "allow_anonymous false\n"
            f"acl_file {folder / 'acl'}\n"
            "persistence true\n"
            f"persistence_location {self.persistence}/\n"
            "autosave_interval 1\n"
            "max_queued_messages 1000000\n"
            "max_inflight_messages 100\n"
            f"log_dest file {self.log_file}\n"
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
            f"{extra_conf}"
        )
        self.process: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------------ identities

    def identity(self, name: str) -> Identity:
        """Client certificate and key files for ``name`` (its common name), made once."""
        if name not in self._identities:
            leaf = self.ca.issue_cert(f"{name}.devices.aios.test", common_name=name)
            cert = self.folder / f"{name}.cert.pem"
            key = self.folder / f"{name}.key.pem"
            leaf.cert_chain_pems[0].write_to_path(str(cert))
            leaf.private_key_pem.write_to_path(str(key))
            self._identities[name] = Identity(name, self.ca_file, cert, key)
        return self._identities[name]

    def platform_config(self, identity: str, **fields: Any) -> PlatformConfig:
        """A :class:`PlatformConfig` reaching this broker with ``identity``'s certificate.

        ``fields`` override the others (e.g. ``client_id``, ``reconnect_max_seconds``).
        """
        files = self.identity(identity)
        values: dict[str, Any] = {
            "mqtt_url": f"mqtts://127.0.0.1:{self.port}",
            "tls": TlsConfig(
                ca_file=files.ca_file, cert_file=files.cert_file, key_file=files.key_file
            ),
            "reconnect_min_seconds": 0.2,
            "reconnect_max_seconds": 1.0,
        }
        values.update(fields)
        return PlatformConfig(**values)

    def ssl_context(self, identity: str) -> ssl.SSLContext:
        """A client TLS context presenting ``identity``'s certificate."""
        files = self.identity(identity)
        context = ssl.create_default_context(cafile=str(files.ca_file))
        context.load_cert_chain(str(files.cert_file), str(files.key_file))
        return context

    # ------------------------------------------------------------------ process

    def start(self) -> MosquittoBroker:
        """Start mosquitto (on the same port every time) and wait until it accepts TCP."""
        assert self.process is None, "mosquitto is running already"
        assert MOSQUITTO is not None
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + WAIT
        while True:
            if self.process.poll() is not None:
                err = (
                    self.process.stderr.read().decode(errors="replace")
                    if self.process.stderr
                    else ""
                )
                self.process = None
                raise AssertionError(f"mosquitto exited at start: {err}{self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                assert time.monotonic() < deadline, "mosquitto did not start listening"
                time.sleep(0.02)

    def stop(self) -> None:
        """Stop mosquitto gracefully (SIGTERM: it saves its persistence file); no-op if
        stopped."""
        if self.process is None:
            return
        process, self.process = self.process, None
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(WAIT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(WAIT)
        if process.stderr is not None:
            process.stderr.close()

    def restart(self) -> None:
        """Stop, then start again on the same port."""
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        """Whether the mosquitto process is alive."""
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` of the broker's log (for failure messages)."""
        if not self.log_file.exists():
            return ""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    # ------------------------------------------------------------------ clients

    def client(
        self,
        identity: str,
        client_id: str,
        *,
        session_expiry: int = 0,
        clean_start: bool = True,
        inflight: int = 100,
    ) -> mqtt.Client:
        """An MQTT 5 paho client with ``identity``'s certificate, connected (CONNACK
        success) and looping in its own thread, at most ``inflight`` QoS 1 messages awaiting
        PUBACK. Disconnect it with :func:`close_client`."""
        connected = threading.Event()
        refused: list[ReasonCode] = []

        def on_connect(
            client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
        ) -> None:
            if reason.is_failure:
                refused.append(reason)
            else:
                connected.set()

        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        client.tls_set_context(self.ssl_context(identity))
        client.max_inflight_messages_set(inflight)
        client.on_connect = on_connect
        properties = Properties(PacketTypes.CONNECT)
        if session_expiry:
            properties.SessionExpiryInterval = session_expiry
        client.connect(
            "127.0.0.1", self.port, keepalive=30, clean_start=clean_start, properties=properties
        )
        client.loop_start()
        if not connected.wait(WAIT):
            close_client(client)
            raise AssertionError(f"{client_id} did not connect: {refused}{self.log_tail()}")
        client.on_connect = None
        return client

    def publish(
        self, identity: str, messages: Iterable[tuple[str, bytes, bool]]
    ) -> list[ReasonCode]:
        """Connect as ``identity``, publish ``(topic, payload, retain)`` at QoS 1, wait for
        every PUBACK, disconnect; return the PUBACK reason codes in order."""
        messages = list(messages)
        codes: dict[int, ReasonCode] = {}
        done = threading.Event()
        client = self.client(identity, f"{identity}-pub-{time.monotonic_ns()}")
        mids: list[int] = []
        lock = threading.Lock()

        def on_publish(
            client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode, props: Any
        ) -> None:
            with lock:
                codes[mid] = reason
                if len(mids) == len(messages) and all(m in codes for m in mids):
                    done.set()

        client.on_publish = on_publish
        try:
            # `lock` is not held while publishing: paho calls on_publish (which takes it)
            # from its network thread while holding its own lock, which publish() needs
            for topic, payload, retain in messages:
                info = client.publish(topic, payload, qos=1, retain=retain)
                assert info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS
                with lock:
                    mids.append(info.mid)
            with lock:
                if all(m in codes for m in mids):
                    done.set()
            assert done.wait(WAIT), "the broker did not acknowledge every message"
            return [codes[m] for m in mids]
        finally:
            close_client(client)


def close_client(client: mqtt.Client) -> None:
    """Disconnect a client made by :meth:`MosquittoBroker.client` and stop its loop."""
    client.disconnect()
    client.loop_stop()


class Receiver:
    """The platform side: subscribes (QoS 1, persistent session) to ``filters`` as
    :data:`PLATFORM_IDENTITY` and keeps each message once by ``message_id``.

    ``messages``: ``(topic, decoded JSON)`` in first-arrival order; ``copies``: every
    arrival (duplicates included). Reconnects by itself (paho's loop) after a broker
    restart; the broker keeps its session and queued messages meanwhile.
    """

    def __init__(
        self,
        broker: MosquittoBroker,
        filters: Iterable[str],
        *,
        client_id: str = "platform-receiver",
        session_expiry: int = 3600,
    ) -> None:
        self.broker = broker
        self.filters = list(filters)
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.copies = 0
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = broker.client(
            PLATFORM_IDENTITY, client_id, session_expiry=session_expiry, clean_start=False
        )
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.subscribe([(f, SubscribeOptions(qos=1)) for f in self.filters])
        assert self._subscribed.wait(WAIT), "the receiver's subscription was not acknowledged"

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        data = json.loads(message.payload)
        with self._lock:
            self.copies += 1
            key = data["message_id"]
            if key not in self._seen:
                self._seen.add(key)
                self.messages.append((message.topic, data))

    def ids(self) -> list[str]:
        """``message_id`` of the messages kept, in first-arrival order."""
        with self._lock:
            return [data["message_id"] for _, data in self.messages]

    def wait_for(self, count: int, timeout: float) -> list[str]:
        """Wait until ``count`` distinct messages arrived (fail after ``timeout`` s);
        return their ids."""
        wait_until(lambda: len(self.messages) >= count, timeout, f"{count} messages received")
        return self.ids()

    def close(self) -> None:
        """Disconnect (the broker keeps the session for ``session_expiry`` s)."""
        close_client(self.client)

"""PutMedia to Kinesis Video Streams: the fragments the connector makes from real video
(vtest.avi) are valid Matroska with absolute producer timestamps, and they are streamed,
signed and acknowledged the way Kinesis Video expects — against a stand-in server on
127.0.0.1 (``kvs_server.KvsServer``) that checks every SigV4 signature with botocore."""

from __future__ import annotations

import io
import json
import ssl
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import av
import numpy as np
import pytest
import trustme
from kvs_server import KvsServer, verify_sigv4
from up_support import free_port

from aios import assets
from aios.vision.types import Frame
from connector.config import KvsConfig, TlsConfig, parse_config
from connector.kvs import (
    Credentials,
    EnvironmentCredentials,
    FragmentEncoder,
    IotCredentials,
    KvsUploader,
    cluster_info,
    sign_put_media,
    stream_name,
)

T0_MS = 1_790_000_000_000  # 2026-09-21T…Z, the producer start
FPS = 10
FRAMES = 25
ACCESS, SECRET, TOKEN = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-token"


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    """The first frames of vtest.avi (768×576, BGR)."""
    out = []
    with av.open(str(assets.path("vtest.avi"))) as container:
        for frame in container.decode(video=0):
            out.append(frame.to_ndarray(format="bgr24"))
            if len(out) == FRAMES:
                break
    return out


class ListSource:
    """A live frame source over fixed images, one every 1/FPS s of producer time."""

    live = True

    def __init__(self, images: list[np.ndarray]) -> None:
        self.images = images
        self.stopped = threading.Event()

    def frames(self) -> Iterator[Frame]:
        for index, image in enumerate(self.images):
            if self.stopped.is_set():
                return
            wall = datetime.fromtimestamp(T0_MS / 1000, UTC) + timedelta(milliseconds=100 * index)
            yield Frame(image, index, index / FPS, wall, "cam-gate", live=True)

    def stop(self) -> None:
        self.stopped.set()


def kvs_config(server: KvsServer, ca_file: Path, **fields: Any) -> KvsConfig:
    values: dict[str, Any] = {
        "region": "us-east-1",
        "name_prefix": "aios",
        "stage": "test",
        "credentials": "environment",
        "endpoint_url": server.url,
        "ca_file": ca_file,
        "fragment_seconds": 1.0,
        "max_fps": FPS,
        "max_width": 384,
        "max_height": 288,
        "reconnect_min_seconds": 0.1,
        "reconnect_max_seconds": 0.3,
    }
    values.update(fields)
    return KvsConfig(**values)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)


def decoded(mkv: bytes) -> list[tuple[int, bool]]:
    """``(pts ms, keyframe)`` of every video packet of an MKV byte string (PyAV)."""
    with av.open(io.BytesIO(mkv)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.extradata, "no AVC codec private data"
        assert stream.time_base == 1 / 1000 or float(stream.time_base) == 0.001
        packets = [(int(p.pts), bool(p.is_keyframe)) for p in container.demux(stream) if p.size]
    with av.open(io.BytesIO(mkv)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == len(packets)
    return packets


def run_upload(
    server: KvsServer, images: list[np.ndarray], config: KvsConfig, **kwargs: Any
) -> KvsUploader:
    uploader = KvsUploader(
        stream_name("aios", "test", "site1-gw", "cam-gate"),
        ListSource(images),
        config,
        EnvironmentCredentials(),
        **kwargs,
    )
    uploader.start()
    return uploader


# ---------------------------------------------------------------------------- tests


def test_fragments_are_valid_mkv_with_keyframes_and_absolute_timestamps(
    images: list[np.ndarray],
) -> None:
    encoder = FragmentEncoder(fragment_seconds=1.0, max_width=384, max_height=288)
    fragments = []
    times = [T0_MS + 100 * i for i in range(FRAMES)]
    for image, t in zip(images, times, strict=True):
        fragments += encoder.add(image, t)
    fragments += encoder.close()
    assert encoder.header is not None and encoder.header.startswith(bytes.fromhex("1A45DFA3"))
    assert encoder.size == (384, 288)

    # one cluster per fragment, each starting at its first frame's absolute time
    assert [f.timecode_ms for f in fragments] == [T0_MS, T0_MS + 1000, T0_MS + 2000]
    assert [f.frames for f in fragments] == [10, 10, 5]
    for fragment in fragments:
        assert cluster_info(fragment.data) == (fragment.timecode_ms, fragment.frames)

    packets = decoded(encoder.header + b"".join(f.data for f in fragments))
    assert [pts for pts, _ in packets] == times
    keyframes = [i for i, (_, key) in enumerate(packets) if key]
    assert keyframes == [0, 10, 20]

    # every fragment is playable on its own after the stream header (a new session)
    assert [pts for pts, _ in decoded(encoder.header + fragments[1].data)] == times[10:20]


def test_putmedia_is_signed_streamed_and_acknowledged(
    images: list[np.ndarray], tmp_path: Path, aws_env: None
) -> None:
    with KvsServer(access_key=ACCESS, secret_key=SECRET, token=TOKEN) as server:
        server.write_ca(tmp_path / "ca.pem")
        uploader = run_upload(server, images, kvs_config(server, tmp_path / "ca.pem"))
        try:
            assert uploader.wait_idle(20), uploader.stats()
        finally:
            uploader.stop(flush_timeout=2)
    stats = uploader.stats()
    assert (stats.fragments, stats.acknowledged, stats.errors, stats.dropped) == (3, 3, 0, 0)
    assert stats.persisted == 3 and stats.failures == 0 and stats.sessions == 1

    # GetDataEndpoint(APIName=PUT_MEDIA) first, signed for kinesisvideo
    assert server.endpoint_requests == [
        {
            "StreamName": "aios-test-site1-gw.cam-gate",
            "APIName": "PUT_MEDIA",
            "signature_problem": None,
        }
    ]
    [session] = server.sessions
    headers = session.headers
    assert session.signature_problem is None
    assert headers["x-amzn-stream-name"] == "aios-test-site1-gw.cam-gate"
    assert headers["x-amzn-fragment-timecode-type"] == "ABSOLUTE"
    assert float(headers["x-amzn-producer-start-timestamp"]) == T0_MS / 1000
    assert headers["transfer-encoding"] == "chunked"
    assert headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
    assert headers["x-amz-security-token"] == TOKEN
    assert "/us-east-1/kinesisvideo/aws4_request" in headers["authorization"]
    assert session.timecodes == [T0_MS, T0_MS + 1000, T0_MS + 2000]
    assert session.frames == [10, 10, 5]
    # the body is one MKV stream: header, then the clusters
    assert [pts for pts, _ in decoded(bytes(session.body))] == [
        T0_MS + 100 * i for i in range(FRAMES)
    ]


def test_tampered_signature_is_rejected(
    images: list[np.ndarray], tmp_path: Path, aws_env: None
) -> None:
    url = "https://127.0.0.1:4443/putMedia"
    creds = Credentials(ACCESS, SECRET, TOKEN)
    headers = {
        k.lower(): v for k, v in sign_put_media(url, "aios-test-cam", T0_MS, creds, "us-east-1")
    }
    check = {
        "access_key": ACCESS,
        "secret_key": SECRET,
        "token": TOKEN,
        "region": "us-east-1",
        "service": "kinesisvideo",
    }
    assert verify_sigv4("POST", url, headers, b"", **check) is None
    for name, value in (
        ("x-amzn-stream-name", "aios-test-other"),
        ("x-amzn-producer-start-timestamp", "1.000"),
        ("host", "127.0.0.1:4444"),
    ):
        assert verify_sigv4("POST", url, {**headers, name: value}, b"", **check) is not None
    assert verify_sigv4("POST", url, headers, b"", **{**check, "secret_key": "x" * 40})

    # an uploader signing with the wrong secret is refused: reported, nothing acknowledged
    with KvsServer(access_key=ACCESS, secret_key="another-secret", token=TOKEN) as server:
        server.write_ca(tmp_path / "ca.pem")
        config = kvs_config(server, tmp_path / "ca.pem")
        uploader = run_upload(server, images, config, data_endpoint=server.url)
        try:
            deadline = time.monotonic() + 10
            while uploader.stats().failures < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            uploader.stop(flush_timeout=0.2)
    stats = uploader.stats()
    assert stats.failures >= 2 and stats.acknowledged == 0
    assert "HTTP 403" in (stats.last_error or "") and "SignatureDoesNotMatch" in (
        stats.last_error or ""
    )
    assert SECRET not in (stats.last_error or "")
    assert all(s.signature_problem == "signature does not match" for s in server.sessions)


def test_error_acknowledgement_is_reported(
    images: list[np.ndarray], tmp_path: Path, aws_env: None
) -> None:
    reported = []
    with KvsServer(
        access_key=ACCESS, secret_key=SECRET, token=TOKEN, error_fragments={2}
    ) as server:
        server.write_ca(tmp_path / "ca.pem")
        uploader = run_upload(
            server, images, kvs_config(server, tmp_path / "ca.pem"), on_error=reported.append
        )
        try:
            assert uploader.wait_idle(20), uploader.stats()
        finally:
            uploader.stop(flush_timeout=2)
    stats = uploader.stats()
    assert (stats.acknowledged, stats.errors) == (2, 1)
    [ack] = reported
    assert (ack.event, ack.error_id, ack.timecode_ms) == ("ERROR", 4006, T0_MS + 1000)
    assert stats.error_acks == reported
    assert "error 4006" in (stats.last_error or "")


def test_connection_cut_reconnects_and_resends(
    images: list[np.ndarray], tmp_path: Path, aws_env: None
) -> None:
    with KvsServer(access_key=ACCESS, secret_key=SECRET, token=TOKEN, cut_after=1) as server:
        server.write_ca(tmp_path / "ca.pem")
        uploader = run_upload(server, images, kvs_config(server, tmp_path / "ca.pem"))
        try:
            assert uploader.wait_idle(20), uploader.stats()
        finally:
            uploader.stop(flush_timeout=2)
    stats = uploader.stats()
    assert stats.acknowledged == 3 and stats.failures >= 1 and stats.sessions >= 2
    first, *later = server.sessions
    assert first.cut and first.timecodes[0] == T0_MS
    # every new session starts with the stream header again, and ends with every fragment
    # acknowledged: the one cut off is sent again
    for session in later:
        assert bytes(session.body).startswith(bytes.fromhex("1A45DFA3"))
        assert session.signature_problem is None
    resent = sorted({t for s in later for t in s.timecodes})
    assert T0_MS + 1000 in resent and T0_MS + 2000 in resent


# ------------------------------------------------------------- IoT credentials provider


class _Provider(BaseHTTPRequestHandler):
    calls: ClassVar[list[tuple[str, str | None, str | None]]] = []

    def do_GET(self) -> None:
        peer = self.connection.getpeercert()  # type: ignore[attr-defined]
        subject = dict(x[0] for x in peer["subject"]) if peer else {}
        type(self).calls.append(
            (self.path, self.headers.get("x-amzn-iot-thingname"), subject.get("commonName"))
        )
        if self.path != "/role-aliases/aios-test-kvs/credentials":
            self.send_response(404)
            self.end_headers()
            return
        expiration = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = json.dumps(
            {
                "credentials": {
                    "accessKeyId": "ASIAEXAMPLE",
                    "secretAccessKey": "secret-from-provider",
                    "sessionToken": "token-from-provider",
                    "expiration": expiration,
                }
            }
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


def test_iot_credentials_provider_over_mtls(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    device = ca.issue_cert("site1-gw.devices", common_name="site1-gw")
    device.cert_chain_pems[0].write_to_path(str(tmp_path / "gw.cert.pem"))
    device.private_key_pem.write_to_path(str(tmp_path / "gw.key"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(tmp_path / "ca.pem"))
    context.verify_mode = ssl.CERT_REQUIRED
    ca.issue_cert("127.0.0.1").configure_cert(context)
    port = free_port()
    httpd = ThreadingHTTPServer(("127.0.0.1", port), _Provider)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _Provider.calls = []
    try:
        tls = TlsConfig(
            ca_file=tmp_path / "ca.pem",
            cert_file=tmp_path / "gw.cert.pem",
            key_file=tmp_path / "gw.key",
        )
        provider = IotCredentials(f"127.0.0.1:{port}", "aios-test-kvs", "site1-gw", tls)
        creds = provider.get()
        assert creds == Credentials("ASIAEXAMPLE", "secret-from-provider", "token-from-provider")
        assert "secret" not in repr(creds)
        provider.get()  # cached until near expiry
        assert _Provider.calls == [
            ("/role-aliases/aios-test-kvs/credentials", "site1-gw", "site1-gw")
        ]
        wrong = IotCredentials(f"127.0.0.1:{port}", "other-alias", "site1-gw", tls)
        with pytest.raises(Exception, match="HTTP 404"):
            wrong.get()
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_config_enables_upload_per_camera(tmp_path: Path) -> None:
    text = """
connector: {id: site1-gw}
platform:
  mqtt_url: mqtts://abc-ats.iot.us-east-1.amazonaws.com:8883
  tls: {ca_file: AmazonRootCA1.pem, cert_file: gw.cert.pem, key_file: gw.private.key}
kvs:
  region: us-east-1
  stage: prod
  credentials_endpoint: abc.credentials.iot.us-east-1.amazonaws.com
  role_alias: aios-prod-kvs
cameras:
  - {id: cam-gate, url: gate.mp4, kvs_upload: true}
  - {id: cam-yard, url: yard.mp4}
"""
    config = parse_config(text, base=tmp_path)
    assert [c.kvs_upload for c in config.cameras] == [True, False]
    assert config.kvs is not None and config.kvs.fragment_seconds == 2.0
    with pytest.raises(ValueError, match="kvs_upload needs the kvs section"):
        parse_config(
            text.split("kvs:", maxsplit=1)[0]
            + "cameras:\n  - {id: c, url: a.mp4, kvs_upload: true}\n"
        )
    with pytest.raises(ValueError, match="credentials: iot needs role_alias"):
        parse_config(text.replace("  role_alias: aios-prod-kvs\n", ""))


def test_daemon_uploads_a_kvs_upload_camera(tmp_path: Path, aws_env: None) -> None:
    """The connector daemon starts an upload for the camera marked kvs_upload (a file
    camera playing vtest.avi in real time), and only for it."""
    from connector.daemon import Connector

    with KvsServer(access_key=ACCESS, secret_key=SECRET, token=TOKEN) as server:
        server.write_ca(tmp_path / "ca.pem")
        text = f"""
connector: {{id: site1-gw}}
platform: {{mqtt_url: "mqtt://127.0.0.1:{free_port()}", reconnect_max_seconds: 1}}
data_dir: data
kvs:
  region: us-east-1
  stage: test
  credentials: environment
  endpoint_url: "{server.url}"
  ca_file: ca.pem
  fragment_seconds: 0.5
  max_width: 320
  max_height: 240
cameras:
  - {{id: cam-gate, url: "{assets.path("vtest.avi")}", kvs_upload: true}}
  - {{id: cam-yard, url: "{assets.path("vtest.avi")}"}}
"""
        connector = Connector(parse_config(text, base=tmp_path))
        connector.start()
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                uploads = connector.status()["kvs_uploads"]
                if uploads.get("cam-gate", {}).get("acknowledged", 0) >= 2:
                    break
                time.sleep(0.1)
            assert list(uploads) == ["cam-gate"]
            assert uploads["cam-gate"]["acknowledged"] >= 2, uploads
            assert uploads["cam-gate"]["stream"] == "aios-test-site1-gw.cam-gate"
        finally:
            connector.stop(flush_timeout=0)
    assert server.sessions and server.sessions[0].signature_problem is None
    assert server.sessions[0].headers["x-amzn-stream-name"] == "aios-test-site1-gw.cam-gate"

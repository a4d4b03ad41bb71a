"""A Kinesis Video Streams stand-in on 127.0.0.1 for the PutMedia tests.

:class:`KvsServer` speaks HTTPS (a ``trustme`` CA) and answers, like Kinesis Video:

- ``POST /getDataEndpoint`` (the control plane, JSON body ``{"StreamName", "APIName"}``):
  ``{"DataEndpoint": "https://127.0.0.1:<port>"}`` (itself);
- ``POST /putMedia`` (the data plane): ``200`` at once, then, while the chunked MKV body
  streams in, one acknowledgement per cluster — ``{"EventType":"RECEIVED",
  "FragmentTimecode":<cluster timestamp>,"FragmentNumber":"<n>"}`` (and ``PERSISTED``),
  or ``ERROR`` with an ``ErrorId`` for the fragments listed in ``error_fragments``.

Every request's Signature Version 4 is checked by recomputing it with botocore from the
same credentials (:func:`verify_sigv4`); a request whose signature does not match gets
``403`` with ``x-amz-ErrorType: SignatureDoesNotMatch``. ``cut_after``: the first session's
connection is dropped (no acknowledgement) after that many clusters, to test reconnection.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import socket
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any

import h11
import trustme
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from up_support import free_port

from connector.kvs import ClusterSplitter

WAIT = 10.0


def verify_sigv4(
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes,
    *,
    access_key: str,
    secret_key: str,
    token: str | None,
    region: str,
    service: str,
) -> str | None:
    """Check a request's ``Authorization`` header; ``None`` when it is right, else why not.

    ``headers`` are the received ones (lower-case names). The canonical request, string to
    sign and signature are recomputed with botocore's ``SigV4Auth`` over the signed headers
    only, at the request's own ``X-Amz-Date``.
    """
    auth_header = headers.get("authorization", "")
    if not auth_header.startswith("AWS4-HMAC-SHA256 "):
        return "no SigV4 Authorization header"
    fields = dict(
        part.strip().split("=", 1)
        for part in auth_header.removeprefix("AWS4-HMAC-SHA256 ").split(",")
    )
    key, date, scope_region, scope_service, terminal = fields["Credential"].split("/")
    if key != access_key:
        return "unknown access key"
    if (scope_region, scope_service, terminal) != (region, service, "aws4_request"):
        return f"wrong scope {scope_region}/{scope_service}/{terminal}"
    amz_date = headers.get("x-amz-date", "")
    if not amz_date.startswith(date):
        return "X-Amz-Date does not match the credential scope"
    if token is not None and headers.get("x-amz-security-token") != token:
        return "wrong security token"
    signed = fields["SignedHeaders"].split(";")
    request = AWSRequest(
        method=method, url=url, headers={name: headers[name] for name in signed}, data=body
    )
    if headers.get("x-amz-content-sha256") == "UNSIGNED-PAYLOAD":
        request.context["payload_signing_enabled"] = False
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(access_key, secret_key, token), service, region)
    if signer.signed_headers(signer.headers_to_sign(request)) != fields["SignedHeaders"]:
        return "signed headers differ"
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, fields["Signature"]):
        return "signature does not match"
    return None


@dataclass
class Session:
    """One PutMedia request as the server saw it."""

    headers: dict[str, str]
    body: bytearray = field(default_factory=bytearray)
    timecodes: list[int] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)
    signature_problem: str | None = None
    cut: bool = False


class KvsServer:
    """The stand-in (see the module doc). Use as a context manager."""

    def __init__(
        self,
        *,
        access_key: str,
        secret_key: str,
        token: str | None = None,
        region: str = "us-east-1",
        error_fragments: set[int] | None = None,
        cut_after: int | None = None,
    ) -> None:
        self.access_key, self.secret_key, self.token = access_key, secret_key, token
        self.region = region
        self.error_fragments = error_fragments or set()
        self.cut_after = cut_after
        self.ca = trustme.CA()
        cert = self.ca.issue_cert("127.0.0.1", "localhost")
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(self._context)
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.sessions: list[Session] = []
        self.endpoint_requests: list[dict[str, Any]] = []
        self.fragments_seen = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.settimeout(0.2)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def write_ca(self, path: Any) -> None:
        """Write the CA certificate (PEM) clients must trust."""
        self.ca.cert_pem.write_to_path(str(path))

    def __enter__(self) -> KvsServer:
        thread = threading.Thread(target=self._accept, name="kvs-server", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(WAIT)
        self._listener.close()

    # ------------------------------------------------------------------ connections

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(raw,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, raw: socket.socket) -> None:
        try:
            sock = self._context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()
            return
        sock.settimeout(0.2)
        conn = h11.Connection(h11.SERVER)
        handler: _Handler | None = None
        try:
            while not self._stop.is_set():
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    continue
                except (ssl.SSLError, OSError):
                    return
                conn.receive_data(data)
                while True:
                    try:
                        event = conn.next_event()
                    except h11.RemoteProtocolError:  # the client went away mid-body
                        return
                    if event is h11.NEED_DATA:
                        break
                    if isinstance(event, h11.Request):
                        handler = _Handler(self, conn, sock, event)
                    elif isinstance(event, h11.Data) and handler is not None:
                        if not handler.data(bytes(event.data)):
                            return  # cut
                    elif isinstance(event, h11.EndOfMessage) and handler is not None:
                        handler.end()
                        return
                    elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                        return
                if not data:
                    return
        finally:
            with contextlib.suppress(OSError):
                sock.close()


class _Handler:
    """One request on one connection."""

    def __init__(
        self, server: KvsServer, conn: h11.Connection, sock: ssl.SSLSocket, request: h11.Request
    ) -> None:
        self.server = server
        self.conn = conn
        self.sock = sock
        self.target = request.target.decode()
        self.headers = {k.decode().lower(): v.decode() for k, v in request.headers}
        self.body = bytearray()
        self.session: Session | None = None
        self.splitter = ClusterSplitter()
        self.refused = False
        if self.target == "/putMedia":
            self.session = Session(self.headers)
            problem = self._verify(b"")
            self.session.signature_problem = problem
            with server._lock:
                server.sessions.append(self.session)
                self.index = len(server.sessions) - 1
            if problem:
                self._respond(403, {"message": problem}, error_type="SignatureDoesNotMatch")
                self.refused = True
            else:
                self._send(
                    h11.Response(status_code=200, headers=[("transfer-encoding", "chunked")])
                )

    def _verify(self, body: bytes) -> str | None:
        s = self.server
        return verify_sigv4(
            "POST",
            f"https://{self.headers.get('host', '')}{self.target}",
            self.headers,
            body,
            access_key=s.access_key,
            secret_key=s.secret_key,
            token=s.token,
            region=s.region,
            service="kinesisvideo",
        )

    def _send(self, event: Any) -> None:
        data = self.conn.send(event)
        if data:
            self.sock.sendall(data)

    def _respond(self, status: int, body: dict[str, Any], *, error_type: str = "") -> None:
        payload = json.dumps(body).encode()
        headers = [("content-type", "application/json"), ("content-length", str(len(payload)))]
        if error_type:
            headers.append(("x-amz-errortype", error_type))
        self._send(h11.Response(status_code=status, headers=headers))
        self._send(h11.Data(data=payload))
        self._send(h11.EndOfMessage())

    def _ack(self, ack: dict[str, Any]) -> None:
        self._send(h11.Data(data=(json.dumps(ack) + "\n").encode()))

    def data(self, chunk: bytes) -> bool:
        """Take body bytes; ``False``: the connection is cut now."""
        if self.session is None:
            self.body += chunk
            return True
        if self.refused:
            return True
        self.session.body += chunk
        server = self.server
        for fragment in self.splitter.feed(chunk):
            with server._lock:
                server.fragments_seen += 1
                number = server.fragments_seen
            self.session.timecodes.append(fragment.timecode_ms)
            self.session.frames.append(fragment.frames)
            if (
                server.cut_after is not None
                and self.index == 0
                and len(self.session.timecodes) > server.cut_after
            ):
                self.session.cut = True
                return False
            base = {"FragmentTimecode": fragment.timecode_ms, "FragmentNumber": str(number)}
            self._ack({"EventType": "BUFFERING", **base})
            if number in server.error_fragments:
                self._ack({"EventType": "ERROR", **base, "ErrorId": 4006})
                continue
            self._ack({"EventType": "RECEIVED", **base})
            self._ack({"EventType": "PERSISTED", **base})
        return True

    def end(self) -> None:
        if self.session is not None:
            if not self.refused:
                self._send(h11.EndOfMessage())
            return
        # the control plane: GetDataEndpoint
        body = bytes(self.body)
        problem = self._verify(body)
        request = json.loads(body or b"{}")
        with self.server._lock:
            self.server.endpoint_requests.append({**request, "signature_problem": problem})
        if problem:
            self._respond(403, {"message": problem}, error_type="SignatureDoesNotMatch")
        elif self.target != "/getDataEndpoint":
            self._respond(404, {"message": f"unknown path {self.target}"})
        else:
            self._respond(200, {"DataEndpoint": self.server.url})

"""``aios/email@1`` against a real SMTP server (aiosmtpd) on loopback, TLS by trustme."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import trustme
from action_helpers import Clock, Sleeps, make_event, make_request, make_services, write_jpeg
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from aios.events.task import PermanentError, TaskServices, TransientError
from aios.nodes import email as email_node
from aios.nodes.email import EmailAction

PASSWORD = "correct horse battery staple"
USER = "alerts@example.com"


@dataclass
class Mailbox:
    """An aiosmtpd handler that keeps what it receives and can answer DATA with a code."""

    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    data_reply: str = "250 OK"
    logins: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        if not self.data_reply.startswith("250"):
            return self.data_reply
        content = envelope.original_content or b""
        parsed = message_from_bytes(content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        with self.lock:
            self.messages.append(parsed)
            self.envelopes.append((str(envelope.mail_from), list(envelope.rcpt_tos)))
        return "250 OK"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        login, password = data.login.decode(), data.password.decode()
        with self.lock:
            self.logins.append((mechanism, login))
        # handled=False: aiosmtpd then answers 535 itself on failure
        return AuthResult(success=(login, password) == (USER, PASSWORD), handled=False)


class EphemeralController(Controller):
    """aiosmtpd's threaded controller on a port chosen by the OS (port 0)."""

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


ServerFactory = Callable[..., tuple[EphemeralController, Mailbox]]


@pytest.fixture
def smtp_server() -> Iterator[ServerFactory]:
    started: list[EphemeralController] = []

    def start(**kwargs: Any) -> tuple[EphemeralController, Mailbox]:
        mailbox = Mailbox()
        if kwargs.pop("auth", False):
            kwargs["authenticator"] = mailbox.authenticate
        controller = EphemeralController(
            mailbox, hostname="127.0.0.1", port=0, ready_timeout=5.0, **kwargs
        )
        controller.start()
        started.append(controller)
        return controller, mailbox

    yield start
    for controller in started:
        controller.stop()


@pytest.fixture
def snapshot(tmp_path: Path) -> tuple[str, bytes]:
    path = tmp_path / "snap.jpg"
    return str(path), write_jpeg(path)


def services_with(clock: Clock, secrets: dict[str, str] | None = None) -> TaskServices:
    return make_services(secrets or {}, clock, Sleeps())


def email_action(services: TaskServices, port: int, **config: Any) -> EmailAction:
    base: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "from_address": "AIOS <alerts@example.com>",
        "to": ["ops@example.com", "guard@example.com"],
        "timeout_seconds": 5,
    }
    base.update(config)
    return EmailAction(email_node.NODE.parse_config(base), services)


def parts(message: EmailMessage) -> dict[str, EmailMessage]:
    """Return the leaf parts of a message by content type."""
    return {
        part.get_content_type(): part
        for part in message.walk()
        if not part.is_multipart() and isinstance(part, EmailMessage)
    }


def test_implicit_tls_sends_html_text_and_jpeg_attachment(
    smtp_server: ServerFactory,
    server_tls: ssl.SSLContext,
    ca_file: str,
    clock: Clock,
    snapshot: tuple[str, bytes],
) -> None:
    """Port-465 style: TLS from the first byte; HTML + text alternative + JPEG attachment."""
    # GIVEN an SMTPS server (TLS on the listener) and an event with a snapshot
    controller, mailbox = smtp_server(ssl_context=server_tls)
    node = email_action(
        services_with(clock),
        controller.port,
        security="ssl",
        ca_file=ca_file,
        snapshot="attachment",
    )
    path, jpeg = snapshot
    # WHEN the action runs
    result = node.run(make_request(make_event(snapshot=path)))
    # THEN one message with both bodies and the snapshot attached
    assert result["status"] == "sent", result
    assert result["detail"]["snapshot"] == "attachment"
    assert len(mailbox.messages) == 1
    message = mailbox.messages[0]
    assert message["Subject"] == "AIOS: loitering in dock (cam1)"
    assert mailbox.envelopes[0] == ("alerts@example.com", ["ops@example.com", "guard@example.com"])
    leaves = parts(message)
    assert "Zone: dock" in leaves["text/plain"].get_content()
    assert "<h2>loitering in dock</h2>" in leaves["text/html"].get_content()
    image = leaves["image/jpeg"]
    assert image.get_content_disposition() == "attachment"
    assert image.get_filename() == "snapshot.jpg"
    assert image.get_content() == jpeg


def test_starttls_with_login_from_the_secrets_store_and_inline_snapshot(
    smtp_server: ServerFactory,
    server_tls: ssl.SSLContext,
    ca_file: str,
    clock: Clock,
    snapshot: tuple[str, bytes],
) -> None:
    """Port-587 style: STARTTLS required, AUTH with the secret's password, image shown inline."""
    # GIVEN a server that requires STARTTLS and checks the login
    controller, mailbox = smtp_server(tls_context=server_tls, require_starttls=True, auth=True)
    node = email_action(
        services_with(clock, {"smtp_pw": PASSWORD}),
        controller.port,
        security="starttls",
        ca_file=ca_file,
        username=USER,
        password_secret="smtp_pw",
    )
    path, jpeg = snapshot
    # WHEN the action runs
    result = node.run(make_request(make_event(snapshot=path)))
    # THEN it logged in and the HTML shows the snapshot through its Content-ID
    assert result["status"] == "sent", result
    assert [login for _, login in mailbox.logins] == [USER]
    leaves = parts(mailbox.messages[0])
    image = leaves["image/jpeg"]
    assert image.get_content_disposition() == "inline"
    assert image.get_content() == jpeg
    cid = str(image["Content-ID"]).strip("<>")
    assert f'src="cid:{cid}"' in leaves["text/html"].get_content()
    message = mailbox.messages[0]
    assert message.get_content_type() == "multipart/alternative"
    plain, related = message.iter_parts()
    assert plain.get_content_type() == "text/plain"
    assert [p.get_content_type() for p in related.iter_parts()] == ["text/html", "image/jpeg"]
    # AND the password appears nowhere in the result
    assert PASSWORD not in repr(result)


def test_plain_relay_without_login(smtp_server: ServerFactory, clock: Clock) -> None:
    """A trusted relay: plain SMTP, no AUTH; an event without a snapshot sends text + HTML."""
    controller, mailbox = smtp_server()
    node = email_action(services_with(clock), controller.port, security="none")
    result = node.run(make_request(make_event()))
    assert result["status"] == "sent", result
    assert result["detail"]["snapshot"] == "none"
    assert set(parts(mailbox.messages[0])) == {"text/plain", "text/html"}


def test_event_fields_are_escaped_in_html(smtp_server: ServerFactory, clock: Clock) -> None:
    """A zone name with markup is escaped in the HTML part, kept as is in the text part."""
    controller, mailbox = smtp_server()
    node = email_action(services_with(clock), controller.port, security="none")
    node.run(make_request(make_event(zone="<b>dock</b>")))
    leaves = parts(mailbox.messages[0])
    assert "&lt;b&gt;dock&lt;/b&gt;" in leaves["text/html"].get_content()
    assert "Zone: <b>dock</b>" in leaves["text/plain"].get_content()


def test_missing_snapshot_file_is_reported_not_fatal(
    smtp_server: ServerFactory, clock: Clock, tmp_path: Path
) -> None:
    """A snapshot path that does not exist: the e-mail still goes, the result says 'missing'."""
    controller, mailbox = smtp_server()
    node = email_action(services_with(clock), controller.port, security="none")
    result = node.run(make_request(make_event(snapshot=str(tmp_path / "gone.jpg"))))
    assert result["detail"]["snapshot"] == "missing"
    assert len(mailbox.messages) == 1


def test_wrong_password_is_permanent_and_says_what_to_check(
    smtp_server: ServerFactory, server_tls: ssl.SSLContext, ca_file: str, clock: Clock
) -> None:
    """535 on AUTH → PermanentError naming the user and the secret, never the password."""
    controller, mailbox = smtp_server(tls_context=server_tls, require_starttls=True, auth=True)
    node = email_action(
        services_with(clock, {"smtp_pw": "wrong-password"}),
        controller.port,
        security="starttls",
        ca_file=ca_file,
        username=USER,
        password_secret="smtp_pw",
    )
    with pytest.raises(PermanentError) as info:
        node.run(make_request(make_event()))
    message = info.value.message
    assert "rejected the login" in message and "535" in message
    assert "secret 'smtp_pw'" in message
    assert "wrong-password" not in message
    assert mailbox.messages == []


def test_missing_password_secret_is_not_configured(
    smtp_server: ServerFactory, clock: Clock
) -> None:
    """A user name whose password secret is not set → 'not configured', nothing sent."""
    controller, mailbox = smtp_server()
    node = email_action(services_with(clock), controller.port, security="none", username=USER)
    result = node.run(make_request(make_event()))
    assert result["status"] == "not_configured"
    assert "smtp_password" in result["reason"] and "AIOS_SECRET_SMTP_PASSWORD" in result["reason"]
    assert mailbox.messages == []


def test_no_recipients_is_not_configured(clock: Clock) -> None:
    """Without recipients the action reports 'not configured' without connecting."""
    node = email_action(services_with(clock), 1, to=[])
    result = node.run(make_request(make_event()))
    assert result["status"] == "not_configured"
    assert "recipient" in result["reason"]


def test_untrusted_certificate_is_permanent_unless_verification_is_off(
    smtp_server: ServerFactory, server_tls: ssl.SSLContext, clock: Clock
) -> None:
    """A certificate from an unknown CA fails clearly; verify_tls false accepts it."""
    controller, mailbox = smtp_server(ssl_context=server_tls)
    node = email_action(services_with(clock), controller.port, security="ssl")
    with pytest.raises(PermanentError, match=r"not trusted .* set ca_file"):
        node.run(make_request(make_event()))
    unchecked = email_action(
        services_with(clock), controller.port, security="ssl", verify_tls=False
    )
    assert unchecked.run(make_request(make_event("evt-2")))["status"] == "sent"
    assert len(mailbox.messages) == 1


def test_starttls_is_never_skipped(smtp_server: ServerFactory, clock: Clock) -> None:
    """A server without STARTTLS is an error for security 'starttls', not a plain send."""
    controller, mailbox = smtp_server()
    node = email_action(services_with(clock), controller.port, security="starttls")
    with pytest.raises(PermanentError, match="does not offer STARTTLS"):
        node.run(make_request(make_event()))
    assert mailbox.messages == []


def test_tls_to_a_plain_port_is_permanent(smtp_server: ServerFactory, clock: Clock) -> None:
    """security 'ssl' against a plain server fails as a TLS mismatch with the port hint."""
    controller, _ = smtp_server()
    node = email_action(services_with(clock), controller.port, security="ssl")
    with pytest.raises(PermanentError, match="port 465 needs security 'ssl'"):
        node.run(make_request(make_event()))


@pytest.mark.parametrize(
    ("reply", "error"),
    [("451 4.3.0 try again later", TransientError), ("554 5.6.0 message refused", PermanentError)],
)
def test_4xx_is_transient_5xx_is_permanent(
    smtp_server: ServerFactory, clock: Clock, reply: str, error: type[Exception]
) -> None:
    """The reply class decides: 4xx may pass, 5xx will not."""
    controller, mailbox = smtp_server()
    mailbox.data_reply = reply
    node = email_action(services_with(clock), controller.port, security="none")
    with pytest.raises(error, match=reply.split(maxsplit=1)[0]):
        node.run(make_request(make_event()))


def test_connection_refused_is_transient(clock: Clock) -> None:
    """Nobody listening → TransientError."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    node = email_action(services_with(clock), port, security="none")
    with pytest.raises(TransientError, match=f"cannot reach 127.0.0.1:{port}"):
        node.run(make_request(make_event()))


def test_cooldown_ten_events_one_email_then_another(
    smtp_server: ServerFactory, clock: Clock
) -> None:
    """Ten events within one second → one e-mail; after the cooldown, another."""
    # GIVEN a 60 s cooldown
    controller, mailbox = smtp_server()
    node = email_action(services_with(clock), controller.port, security="none", cooldown_seconds=60)
    # WHEN ten events arrive 0.1 s apart
    statuses = []
    for i in range(10):
        statuses.append(node.run(make_request(make_event(f"evt-{i}")))["status"])
        clock.advance(0.1)
    # THEN one is sent, nine are throttled
    assert statuses == ["sent"] + ["throttled"] * 9
    assert len(mailbox.messages) == 1
    # WHEN the cooldown has passed  THEN the next event is sent
    clock.advance(60)
    assert node.run(make_request(make_event("evt-10")))["status"] == "sent"
    assert len(mailbox.messages) == 2


def test_username_config_and_addresses_are_validated() -> None:
    """A malformed address is refused when the pipeline is saved."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="is not an e-mail address"):
        email_node.NODE.parse_config(
            {"host": "smtp.example.com", "from_address": "nobody", "to": ["a@example.com"]}
        )
    with pytest.raises(ValidationError, match="is not an e-mail address"):
        email_node.NODE.parse_config(
            {"host": "h", "from_address": "a@example.com", "to": ["x@y.com\nBcc: z@w.com"]}
        )

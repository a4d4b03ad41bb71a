"""``aios/email@1`` — sends an e-mail per event over SMTP, with the snapshot.

Transport security, as mail servers expect it (RFC 8314 §3, RFC 3207):

* ``ssl`` — implicit TLS: TLS from the first byte (submission port 465), via
  :class:`smtplib.SMTP_SSL`;
* ``starttls`` — plain connection upgraded with ``STARTTLS`` before login (port 587); a
  server that does not offer STARTTLS is an error, never a silent fallback to plain text;
* ``none`` — plain SMTP, for a relay on a trusted network (port 25), usually without login.

The server's certificate is verified against the system's CAs, or against ``ca_file``
(PEM) for a private CA; ``verify_tls: false`` turns verification off (testing only).

The message is ``multipart/alternative``: a plain-text part and an HTML part, both Jinja2
templates of event fields (HTML fields are escaped). The event's snapshot (``snapshot``, a
JPEG in the blob store) is shown inline in the HTML (``multipart/related``, ``cid:``) or
attached as a file. Login uses ``username`` and the password from the secrets store
(``password_secret``, by name); a relay without login needs neither.

Errors: a 4xx reply (try later) or a connection failure, timeout or dropped link →
``TransientError``; a 5xx reply (rejected sender, recipient or message), a rejected login,
an untrusted certificate or a TLS mismatch → ``PermanentError`` saying what to check.

In the cloud the same node sends through Amazon SES's SMTP interface —
``email-smtp.<region>.amazonaws.com``, port 465 (``ssl``) or 587 (``starttls``), with the
SES SMTP user name and the SMTP password kept in the secrets store — so there is no
separate code path for SES.
"""

from __future__ import annotations

import re
import smtplib
import ssl
import threading
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from typing import Annotated, Any, ClassVar, Literal

import jinja2
from jinja2.sandbox import SandboxedEnvironment
from pydantic import AfterValidator, Field

from aios.catalog.base import (
    Category,
    EventRole,
    NodeManifest,
    NodeType,
    PortKind,
    PortSpec,
    Tier,
)
from aios.events.actions import Action, ActionConfig, NotConfigured, Template, render
from aios.events.secrets import SecretName
from aios.events.task import PermanentError, TaskRequest, TransientError

_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$|^[^@\s<>]+@localhost$")


def _check_address(value: str) -> str:
    _, address = parseaddr(value)
    if not address or not _ADDRESS.match(address) or "\n" in value or "\r" in value:
        raise ValueError(
            f"'{value}' is not an e-mail address; write 'alerts@example.com' or "
            "'AIOS <alerts@example.com>'"
        )
    return value.strip()


EmailAddress = Annotated[str, AfterValidator(_check_address)]
"""An address, optionally with a display name: ``AIOS <alerts@example.com>``."""

DEFAULT_SUBJECT = (
    "AIOS: {{ event.event_type }}{% if event.zone %} in {{ event.zone }}{% endif %}"
    " ({{ event.source_id }})"
)

DEFAULT_TEXT = """\
{{ event.event_type }} at {{ event.time }} (UTC)
Source: {{ event.source_id }}
{% if event.zone %}Zone: {{ event.zone }}
{% endif %}{% if event.class_name %}Object: {{ event.class_name }}\
{% if event.track_id is number %} #{{ event.track_id }}{% endif %}
{% endif %}{% if event.dwell_seconds %}Dwell: {{ event.dwell_seconds | round(1) }} s
{% endif %}Pipeline: {{ context.pipeline }}
"""

DEFAULT_HTML = """\
<html><body>
<h2>{{ event.event_type }}{% if event.zone %} in {{ event.zone }}{% endif %}</h2>
<table>
<tr><th align="left">Time (UTC)</th><td>{{ event.time }}</td></tr>
<tr><th align="left">Source</th><td>{{ event.source_id }}</td></tr>
{% if event.class_name %}<tr><th align="left">Object</th><td>{{ event.class_name }}\
{% if event.track_id is number %} #{{ event.track_id }}{% endif %}</td></tr>{% endif %}
{% if event.dwell_seconds %}<tr><th align="left">Dwell</th>\
<td>{{ event.dwell_seconds | round(1) }} s</td></tr>{% endif %}
<tr><th align="left">Pipeline</th><td>{{ context.pipeline }}</td></tr>
</table>
</body></html>
"""


class EmailConfig(ActionConfig):
    """Send an e-mail for each event."""

    host: str = Field(
        min_length=1,
        max_length=253,
        title="SMTP server",
        description="Host name of the mail server, e.g. 'smtp.example.com' or "
        "'email-smtp.eu-west-1.amazonaws.com' (Amazon SES).",
    )
    port: int = Field(
        default=587,
        ge=1,
        le=65_535,
        title="Port",
        description="TCP port: 587 with STARTTLS, 465 with implicit TLS, 25 for a plain relay.",
    )
    security: Literal["ssl", "starttls", "none"] = Field(
        default="starttls",
        title="Security",
        description="'ssl': TLS from the start (port 465); 'starttls': upgrade with STARTTLS "
        "(port 587); 'none': plain SMTP to a trusted relay (a login would travel in clear).",
    )
    username: str | None = Field(
        default=None,
        min_length=1,
        max_length=320,
        title="User name",
        description="Login user name (for Amazon SES: the SMTP user name). Empty: send "
        "without login (a relay that trusts this host).",
    )
    password_secret: SecretName = Field(
        default="smtp_password",
        title="Password secret",
        description="Name of the secret holding the login password (used only with a user "
        "name); set it in the secrets store, never here.",
    )
    from_address: EmailAddress = Field(
        title="From",
        description="Sender, e.g. 'AIOS <alerts@example.com>' (the server may require an "
        "address it has verified).",
    )
    to: list[EmailAddress] = Field(
        default_factory=list,
        max_length=50,
        title="To",
        description="Recipients; with none the action reports 'not configured'.",
    )
    subject: Template = Field(
        default=DEFAULT_SUBJECT,
        min_length=1,
        max_length=1_000,
        title="Subject",
        description="Template of the subject line, e.g. 'Intrusion in {{ event.zone }}'.",
    )
    body_text: Template = Field(
        default=DEFAULT_TEXT,
        min_length=1,
        max_length=20_000,
        title="Text body",
        description="Template of the plain-text part (shown by clients without HTML).",
    )
    body_html: Template = Field(
        default=DEFAULT_HTML,
        min_length=1,
        max_length=50_000,
        title="HTML body",
        description="Template of the HTML part; event fields are HTML-escaped.",
    )
    snapshot: Literal["inline", "attachment", "none"] = Field(
        default="inline",
        title="Snapshot",
        description="When the event has a snapshot: 'inline' shows it in the HTML body, "
        "'attachment' attaches the JPEG, 'none' leaves it out.",
    )
    verify_tls: bool = Field(
        default=True,
        title="Verify certificate",
        description="Check the server's TLS certificate and host name (turn off only to test).",
    )
    ca_file: str | None = Field(
        default=None,
        min_length=1,
        max_length=4_096,
        title="CA file",
        description="Path of a PEM file with the CA certificate(s) to trust instead of the "
        "system's (a private mail server).",
    )
    timeout_seconds: float = Field(
        default=15.0,
        gt=0,
        le=120,
        title="Timeout (s)",
        description="Longest wait to connect and for each reply of the server, in seconds.",
    )


MANIFEST = NodeManifest(
    type="aios/email@1",
    category=Category.OUTPUT,
    tier=Tier.EVENT,
    title="E-mail",
    description="Sends an e-mail with the event and its snapshot over SMTP (TLS on port "
    "465, STARTTLS on 587, or a plain relay); Amazon SES through its SMTP interface.",
    icon="mail",
    inputs=(
        PortSpec(
            name="events",
            kind=PortKind.EVENT,
            title="Events",
            description="Each event sends one e-mail (subject to the cooldown).",
            multiple=True,
        ),
    ),
)

_HTML = SandboxedEnvironment(autoescape=True)
_HTML_CACHE: dict[str, jinja2.Template] = {}
_HTML_LOCK = threading.Lock()


def render_html(template: str, request: TaskRequest) -> str:
    """Render an HTML template with ``event`` and ``context``, escaping their values.

    Raises:
        PermanentError: the template fails while rendering.
    """
    with _HTML_LOCK:
        compiled = _HTML_CACHE.get(template)
        if compiled is None:
            compiled = _HTML.from_string(template)
            _HTML_CACHE[template] = compiled
    try:
        return compiled.render(event=request.event, context=request.context)
    except (jinja2.TemplateError, TypeError, ValueError) as err:
        raise PermanentError(f"HTML body template failed: {err}") from err


def _image_subtype(data: bytes) -> str:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    return "jpeg"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _reply(err: smtplib.SMTPResponseException) -> str:
    message = err.smtp_error
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)
    return f"{err.smtp_code} {_one_line(text)}"


class EmailAction(Action[EmailConfig]):
    """Builds the message for an event and sends it over SMTP."""

    channel: ClassVar[str] = "email"

    def _password(self) -> str | None:
        if self.config.username is None:
            return None
        return self.secret(
            self.config.password_secret, f"the SMTP password of '{self.config.username}'"
        )

    def check_configured(self, request: TaskRequest) -> None:
        """Raise :class:`NotConfigured` without recipients or without the login password."""
        if not self.config.to:
            raise NotConfigured("add at least one recipient to 'to'")
        self._password()

    # --- the message ------------------------------------------------------------------------

    def build_message(self, request: TaskRequest) -> tuple[EmailMessage, str]:
        """Return the message for ``request`` and what happened to the snapshot
        (``inline``, ``attachment``, ``none``, ``missing``).

        Raises:
            PermanentError: a template fails.
        """
        cfg = self.config
        msg = EmailMessage()
        msg["Subject"] = _one_line(render(cfg.subject, request)) or "AIOS event"
        msg["From"] = cfg.from_address
        msg["To"] = ", ".join(cfg.to)
        msg["Date"] = format_datetime(self.services.now())
        domain = parseaddr(cfg.from_address)[1].rpartition("@")[2] or None
        msg["Message-ID"] = make_msgid(domain=domain)
        msg.set_content(render(cfg.body_text, request))

        html = render_html(cfg.body_html, request)
        image, snapshot = self._snapshot(request)
        cid = make_msgid(domain=domain)
        if image is not None and cfg.snapshot == "inline":
            tag = f'<p><img src="cid:{cid[1:-1]}" alt="snapshot" style="max-width:100%"></p>'
            lowered = html.lower()
            at = lowered.rfind("</body>")
            html = html[:at] + tag + html[at:] if at >= 0 else html + tag
        msg.add_alternative(html, subtype="html")
        if image is not None:
            subtype = _image_subtype(image)
            filename = f"snapshot.{'png' if subtype == 'png' else 'jpg'}"
            if cfg.snapshot == "inline":
                html_part = msg.get_body(preferencelist=("html",))
                if html_part is None:  # pragma: no cover - added just above
                    raise PermanentError("the HTML part of the message is missing")
                html_part.add_related(
                    image,
                    maintype="image",
                    subtype=subtype,
                    cid=cid,
                    disposition="inline",
                    filename=filename,
                )
            else:
                msg.add_attachment(image, maintype="image", subtype=subtype, filename=filename)
        return msg, snapshot

    def _snapshot(self, request: TaskRequest) -> tuple[bytes | None, str]:
        ref = request.event.get("snapshot")
        if self.config.snapshot == "none" or not ref:
            return None, "none"
        try:
            return self.services.blobs.read(str(ref)), self.config.snapshot
        except OSError as err:
            self.services.logger.warning(
                "node %s: snapshot %s unreadable (%s); sending without it",
                request.node_id,
                ref,
                err,
            )
            return None, "missing"

    # --- sending ----------------------------------------------------------------------------

    def _tls_context(self) -> ssl.SSLContext:
        cfg = self.config
        try:
            context = ssl.create_default_context(cafile=cfg.ca_file)
        except (OSError, ssl.SSLError) as err:
            raise PermanentError(f"cannot load ca_file '{cfg.ca_file}': {err}") from err
        if not cfg.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def send(self, request: TaskRequest) -> dict[str, Any]:
        """Send the e-mail; return ``{"to", "subject", "message_id", "snapshot", "refused"}``.

        Raises:
            TransientError / PermanentError: see the module docstring.
        """
        cfg = self.config
        password = self._password()
        msg, snapshot = self.build_message(request)
        where = f"{cfg.host}:{cfg.port}"
        try:
            if cfg.security == "ssl":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    cfg.host, cfg.port, timeout=cfg.timeout_seconds, context=self._tls_context()
                )
            else:
                smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_seconds)
            with smtp:
                smtp.ehlo()
                if cfg.security == "starttls":
                    smtp.starttls(context=self._tls_context())
                    smtp.ehlo()
                if cfg.username is not None and password is not None:
                    smtp.login(cfg.username, password)
                refused = smtp.send_message(msg)
        except smtplib.SMTPAuthenticationError as err:
            ses = "amazonaws.com" in cfg.host
            raise PermanentError(
                f"{where} rejected the login of '{cfg.username}' ({_reply(err)}): check the user "
                f"name and the password in secret '{cfg.password_secret}'"
                + (" (Amazon SES wants its SMTP credentials, not an access key)" if ses else "")
            ) from err
        except smtplib.SMTPNotSupportedError as err:
            raise PermanentError(self._not_supported(where, err)) from err
        except smtplib.SMTPRecipientsRefused as err:
            codes = {addr: code for addr, (code, _) in err.recipients.items()}
            detail = ", ".join(f"{addr} ({code})" for addr, code in codes.items())
            if all(400 <= code < 500 for code in codes.values()):
                raise TransientError(f"{where} deferred every recipient: {detail}") from err
            raise PermanentError(f"{where} refused every recipient: {detail}") from err
        except smtplib.SMTPResponseException as err:
            message = f"{where} answered {_reply(err)}"
            if 400 <= err.smtp_code < 500:
                raise TransientError(message) from err
            raise PermanentError(message + self._hint(err)) from err
        except smtplib.SMTPServerDisconnected as err:
            raise TransientError(f"{where} closed the connection: {err}") from err
        except ssl.SSLCertVerificationError as err:
            raise PermanentError(
                f"the TLS certificate of {where} is not trusted ({err.verify_message}): set "
                "ca_file to the CA that signed it (or verify_tls false for a test server)"
            ) from err
        except ssl.SSLError as err:
            raise PermanentError(
                f"TLS with {where} failed ({err.reason or err}): port 465 needs security "
                "'ssl', port 587 'starttls', a plain relay 'none'"
            ) from err
        except smtplib.SMTPException as err:
            raise PermanentError(f"SMTP with {where} failed: {err}") from err
        except TimeoutError as err:
            hint = (
                " (port 465 expects security 'ssl')"
                if cfg.port == 465 and cfg.security != "ssl"
                else ""
            )
            raise TransientError(
                f"{where} did not answer within {cfg.timeout_seconds:g} s{hint}"
            ) from err
        except OSError as err:
            raise TransientError(f"cannot reach {where}: {err}") from err
        return {
            "to": list(cfg.to),
            "subject": str(msg["Subject"]),
            "message_id": str(msg["Message-ID"]),
            "snapshot": snapshot,
            "refused": {addr: f"{code}" for addr, (code, _) in refused.items()},
        }

    @staticmethod
    def _not_supported(where: str, err: smtplib.SMTPNotSupportedError) -> str:
        if "STARTTLS" in str(err):
            return (
                f"{where} does not offer STARTTLS: use security 'ssl' if it is an implicit-TLS "
                "port (465), or 'none' only for a trusted relay"
            )
        return f"{where} does not support login ({err}): clear the user name for a relay"

    @staticmethod
    def _hint(err: smtplib.SMTPResponseException) -> str:
        if isinstance(err, smtplib.SMTPSenderRefused):
            return "; check that the server accepts the 'from' address"
        return ""


NODE = NodeType(
    manifest=MANIFEST,
    config_model=EmailConfig,
    implementation=EmailAction,
    event_role=EventRole.ACTION,
)

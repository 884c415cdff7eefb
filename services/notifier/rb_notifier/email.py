"""Email over SMTP with aiosmtplib: STARTTLS or TLS and authentication from RB_SMTP_URL;
a plain-text and an HTML part with the same content."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate

import aiosmtplib

from rb_notifier.config import SmtpConfig
from rb_notifier.delivery import PermanentError, Receipt, TransientError


def stable_message_id(key: str, domain: str = "rb.notifier") -> str:
    """The same notification always has the same Message-ID, so a repeat is recognisable."""
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


def build_message(
    *,
    sender: str,
    to: Sequence[str],
    cc: Sequence[str],
    subject: str,
    text: str,
    html: str,
    message_id: str,
    thread_id: str | None = None,
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(to)
    if cc:
        message["Cc"] = ", ".join(cc)
    message["Subject"] = subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"
    if thread_id:
        # Every mail about one execution names the same root, so mail clients thread them.
        message["References"] = thread_id
        message["In-Reply-To"] = thread_id
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message


class EmailSender:
    def __init__(self, smtp: SmtpConfig, sender: str) -> None:
        self.smtp = smtp
        self.sender = sender

    async def send(self, message: EmailMessage) -> Receipt:
        smtp = self.smtp
        try:
            errors, _ = await aiosmtplib.send(
                message,
                hostname=smtp.host,
                port=smtp.port,
                username=smtp.username,
                password=smtp.password,
                use_tls=smtp.use_tls,
                start_tls=smtp.start_tls,
                validate_certs=smtp.validate_certs,
                timeout=smtp.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            text = "all recipients refused: " + "; ".join(f"{r.recipient} ({r.code})" for r in exc.recipients)
            raise (
                TransientError(text) if any(400 <= c < 500 for c in codes) else PermanentError(text)
            ) from None
        except aiosmtplib.SMTPNotSupported as exc:
            raise PermanentError(f"SMTP server does not support what RB_SMTP_URL asks: {exc}") from None
        except aiosmtplib.SMTPResponseException as exc:
            text = f"SMTP server answered {exc.code}: {exc.message}"
            raise (TransientError(text) if exc.code < 500 else PermanentError(text)) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise TransientError(f"SMTP server unreachable: {type(exc).__name__}: {exc}") from None
        refused = sorted(errors)
        return Receipt(note=f"refused: {', '.join(refused)}" if refused else None)

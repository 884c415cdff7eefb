"""The notifier's configuration: Settings plus RB_* environment variables, read once at start-up.

Fields that Settings already has (slack_token, slack_base_url, smtp_url) come from it; the rest
are read from Settings when it grows them and from the environment until then.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from rb_common.links import link_keys
from rb_common.model import NotifyEvent
from rb_common.secrets import RENAMED, secrets_from_env
from rb_common.settings import Settings

DEFAULT_ON: tuple[NotifyEvent, ...] = ("failed", "aborted", "approval_requested")
_EVENTS = ("started", "succeeded", "failed", "aborted", "cancelled", "approval_requested")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class SmtpConfig:
    """smtp://user:pass@host:port?starttls=true  or  smtps://user:pass@host:465 (implicit TLS)."""

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    use_tls: bool = False
    start_tls: bool | None = None  # None: STARTTLS when the server offers it
    validate_certs: bool = True
    timeout: float = 30.0

    @classmethod
    def from_url(cls, url: str) -> SmtpConfig:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps"):
            raise ConfigError("RB_SMTP_URL must start with smtp:// or smtps://")
        if not parts.hostname:
            raise ConfigError("RB_SMTP_URL has no host")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        implicit = parts.scheme == "smtps"
        start_tls = _flag(query.get("starttls"), "starttls")
        if implicit and start_tls:
            raise ConfigError("RB_SMTP_URL: smtps:// is TLS from the start; starttls=true contradicts it")
        try:
            port = parts.port or (465 if implicit else 25)
        except ValueError:
            raise ConfigError("RB_SMTP_URL has an invalid port") from None
        return cls(
            host=parts.hostname,
            port=port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            use_tls=implicit,
            start_tls=False if implicit else start_tls,
            validate_certs=_flag(query.get("validate_certs"), "validate_certs") is not False,
            timeout=float(query.get("timeout", 30.0)),
        )

    def describe(self) -> str:
        """For logs: never the password."""
        scheme = "smtps" if self.use_tls else "smtp"
        return f"{scheme}://{self.host}:{self.port}"


def _flag(value: str | None, name: str) -> bool | None:
    if value is None or value == "":
        return None
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ConfigError(f"RB_SMTP_URL: {name}={value!r} is not true/false")


@dataclass(frozen=True)
class NotifierConfig:
    slack_token: str | None = field(default=None, repr=False)
    slack_base_url: str | None = None
    smtp: SmtpConfig | None = None
    notify_from: str = "rb@localhost"
    default_slack_channel: str | None = None
    default_on: tuple[NotifyEvent, ...] = DEFAULT_ON
    public_url: str | None = None
    # Values never to show in a message: RB_SECRET_* plus the notifier's own credentials.
    secrets: tuple[str, ...] = field(default=(), repr=False)
    # The durable JetStream consumer.
    consumer: str = "notifier"
    namespace: str = "rb"
    stream_replicas: int = 1  # RB_STREAM_REPLICAS, when the notifier is the first to connect
    filter_subject: str | None = None  # default: every execution of the namespace
    deliver_all: bool = False  # a NEW consumer starts with new events unless this is set
    ack_wait: float = 60.0
    max_in_flight: int = 64
    # Delivery: retried until delivered or the channel's deadline (seconds from the first
    # attempt) passes; max_attempts 0 = no limit but the deadline.
    max_attempts: int = 0
    retry_initial: float = 1.0
    retry_max: float = 300.0
    send_timeout: float = 30.0
    claim_lease: float = 60.0  # a Slack delivery's claim holds off other notifiers this long
    max_event_age: float = 86_400.0  # older events are not announced (0 = no limit)
    deadlines: dict[str, float] = field(
        default_factory=lambda: {"slack": 21_600.0, "email": 21_600.0, "webhook": 21_600.0}
    )
    # Where notification.failed is announced.
    fallback_slack_channel: str | None = None
    fallback_email: tuple[str, ...] = ()
    fallback_webhook: str | None = None
    # Signed links to the API's execution page (rb_common.links); None: no links.
    link_key: bytes | None = field(default=None, repr=False)
    link_ttl: float = 86_400.0
    # Private and loopback addresses notify steps' webhooks may reach (RB_EGRESS_ALLOW).
    egress_allow: tuple[str, ...] = ()

    def deadline(self, channel_key: str) -> float:
        """Seconds a notification to this channel is retried, from its first attempt."""
        return self.deadlines.get(channel_key.split(":", 1)[0], 21_600.0)

    @classmethod
    def from_settings(cls, settings: Settings, env: Mapping[str, str] | None = None) -> NotifierConfig:
        """Everything from Settings; `env` (the process environment by default) only for the
        step secrets (RB_SECRET_<NAME>) the notifier must never show."""
        env = os.environ if env is None else env
        s = settings
        smtp_url = s.smtp_url
        slack_token = s.slack_token
        smtp = SmtpConfig.from_url(smtp_url) if smtp_url else None
        secrets = [v for v in secrets_from_env(env).values() if v]
        secrets += [s for s in (slack_token, smtp.password if smtp else None) if s]
        master_key = settings.master_key.get_secret_value() if settings.master_key else None
        if master_key:
            secrets.append(master_key)
        secrets += [env[old] for old in RENAMED if env.get(old)]  # ignored, but still never shown
        return cls(
            slack_token=slack_token,
            slack_base_url=s.slack_base_url,
            smtp=smtp,
            notify_from=s.notify_from,
            default_slack_channel=s.notify_default_slack_channel,
            default_on=_events(s.notify_default_on),
            public_url=(s.public_url or "").rstrip("/") or None,
            secrets=tuple(dict.fromkeys(secrets)),
            consumer=s.notifier_consumer,
            namespace=s.namespace,
            stream_replicas=s.stream_replicas,
            filter_subject=s.notifier_filter_subject,
            deliver_all=s.notifier_deliver == "all",
            ack_wait=s.notifier_ack_wait,
            max_in_flight=s.notifier_max_in_flight,
            max_attempts=s.notify_max_attempts,
            retry_initial=s.notify_retry_initial,
            retry_max=s.notify_retry_max,
            send_timeout=s.notify_send_timeout,
            claim_lease=s.notify_claim_lease,
            max_event_age=s.notify_max_event_age,
            deadlines={
                "slack": s.notify_deadline_slack or s.notify_deadline,
                "email": s.notify_deadline_email or s.notify_deadline,
                "webhook": s.notify_deadline_webhook or s.notify_deadline,
            },
            fallback_slack_channel=s.notify_fallback_slack_channel or None,
            fallback_email=tuple(a.strip() for a in (s.notify_fallback_email or "").split(",") if a.strip()),
            fallback_webhook=s.notify_fallback_webhook or None,
            link_key=next(iter(link_keys(s)), None),
            link_ttl=s.link_ttl,
            egress_allow=tuple(s.egress_allow),
        )


def _events(value: str | list[str] | tuple[str, ...]) -> tuple[NotifyEvent, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)
    out: list[NotifyEvent] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        if item not in _EVENTS:
            raise ConfigError(f"RB_NOTIFY_DEFAULT_ON: unknown event {item!r} (one of {', '.join(_EVENTS)})")
        out.append(item)  # type: ignore[arg-type]
    return tuple(out)

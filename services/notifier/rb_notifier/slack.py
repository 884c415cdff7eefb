"""Slack through slack-sdk's AsyncWebClient: chat.postMessage, threads, rate limits honoured."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from rb_notifier.delivery import PermanentError, Receipt, TransientError

DEFAULT_BASE_URL = "https://slack.com/api/"
# Slack errors worth another try; anything else (channel_not_found, invalid_auth, ...) is final.
TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)


def api_base_url(base_url: str | None) -> str:
    """RB_SLACK_BASE_URL as slack-sdk wants it: `http://host:port` means its `/api/`."""
    if not base_url:
        return DEFAULT_BASE_URL
    if urlsplit(base_url).path in ("", "/"):
        return base_url.rstrip("/") + "/api/"
    return base_url if base_url.endswith("/") else base_url + "/"


class SlackSender:
    def __init__(
        self,
        token: str | None,
        base_url: str | None = None,
        *,
        timeout: float = 30.0,
        rate_limit_retries: int = 3,
    ) -> None:
        self.client = AsyncWebClient(
            token=token,
            base_url=api_base_url(base_url),
            timeout=max(1, int(timeout)),
            retry_handlers=[
                AsyncConnectionErrorRetryHandler(max_retry_count=1),
                AsyncRateLimitErrorRetryHandler(max_retry_count=rate_limit_retries),
            ],
        )

    async def post(
        self,
        channel: str,
        text: str,
        blocks: list[dict[str, Any]],
        *,
        thread_ts: str | None = None,
        broadcast: bool = False,
    ) -> Receipt:
        try:
            response = await self.client.chat_postMessage(
                channel=channel,
                text=text,
                blocks=blocks,
                thread_ts=thread_ts,
                reply_broadcast=True if thread_ts and broadcast else None,
                unfurl_links=False,
                unfurl_media=False,
            )
        except SlackApiError as exc:
            raise classify(exc) from None
        except (SlackClientError, aiohttp.ClientError, OSError) as exc:
            raise TransientError(f"Slack unreachable: {type(exc).__name__}: {exc}") from None
        ts = response.get("ts")
        if not isinstance(ts, str) or not ts:
            raise TransientError("Slack answered ok without a message ts")
        answered_channel = response.get("channel")
        return Receipt(
            ts=ts,
            slack_channel=answered_channel if isinstance(answered_channel, str) else None,
            thread_ts=thread_ts,
        )


def classify(exc: SlackApiError) -> TransientError | PermanentError:
    response = exc.response
    status = getattr(response, "status_code", 0) or 0
    error = ""
    try:
        error = str(response.get("error") or "")
    except Exception:  # a non-JSON body
        error = ""
    text = f"Slack API error {error or 'unknown'} (HTTP {status})"
    if status == 429 or status >= 500 or error in TRANSIENT_ERRORS:
        return TransientError(text)
    return PermanentError(text)

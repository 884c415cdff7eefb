"""Slack through slack-sdk's AsyncWebClient: chat.postMessage with message metadata naming the
notification, threads, and the lookup that tells a restarted notifier whether a message whose
answer it never saw went out (conversations.history / conversations.replies with
include_all_metadata, paged from the intent's time: Slack filters nothing by metadata)."""

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
# The metadata event type of every rb message; its payload names the notification.
METADATA_TYPE = "rb_notification"
# How far before the recorded intent the lookup starts (clocks of rb and Slack disagree a bit).
LOOKUP_MARGIN = 60.0
LOOKUP_PAGE = 200
LOOKUP_MAX_PAGES = 50
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
        rate_limit_retries: int = 0,
    ) -> None:
        """`rate_limit_retries`: 429s slack-sdk waits out inside one call. 0 by default: such a
        wait is invisible in the record and lost on a crash, so each 429 is an attempt of the
        durable retry, which waits Retry-After (recorded, honoured after a restart)."""
        self.channel_ids: dict[str, str] = {}
        self.client = AsyncWebClient(
            token=token,
            base_url=api_base_url(base_url),
            timeout=max(1, int(timeout)),
            retry_handlers=[
                AsyncConnectionErrorRetryHandler(max_retry_count=1),
                *(
                    [AsyncRateLimitErrorRetryHandler(max_retry_count=rate_limit_retries)]
                    if rate_limit_retries
                    else []
                ),
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
        metadata: dict[str, str] | None = None,
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
                metadata={"event_type": METADATA_TYPE, "event_payload": metadata} if metadata else None,
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

    async def update(self, channel: str, ts: str, text: str, blocks: list[dict[str, Any]]) -> None:
        """chat.update: replace a message's text and blocks (an approval's outcome)."""
        try:
            await self.client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)
        except SlackApiError as exc:
            raise classify(exc) from None
        except (SlackClientError, aiohttp.ClientError, OSError) as exc:
            raise TransientError(f"Slack unreachable: {type(exc).__name__}: {exc}") from None

    async def find(
        self, channel: str, metadata: dict[str, str], since: float, *, thread_ts: str | None = None
    ) -> Receipt | None:
        """The message whose metadata payload is `metadata`, posted since `since` (unix time) to
        `channel` (top level) or to the thread `thread_ts` (a reply); None if Slack has none."""
        try:
            channel_id = await self._channel_id(channel)
            oldest = f"{max(0.0, since - LOOKUP_MARGIN):.6f}"
            cursor: str | None = None
            for _ in range(LOOKUP_MAX_PAGES):
                if thread_ts:
                    response = await self.client.conversations_replies(
                        channel=channel_id,
                        ts=thread_ts,
                        oldest=oldest,
                        include_all_metadata=True,
                        limit=LOOKUP_PAGE,
                        cursor=cursor,
                    )
                else:
                    response = await self.client.conversations_history(
                        channel=channel_id,
                        oldest=oldest,
                        include_all_metadata=True,
                        limit=LOOKUP_PAGE,
                        cursor=cursor,
                    )
                for message in response.get("messages") or []:
                    meta = message.get("metadata") or {}
                    if meta.get("event_type") == METADATA_TYPE and meta.get("event_payload") == metadata:
                        if thread_ts and message.get("ts") == thread_ts:
                            continue  # conversations.replies answers the parent too
                        return Receipt(ts=message.get("ts"), slack_channel=channel_id, thread_ts=thread_ts)
                cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
                if not response.get("has_more") or not cursor:
                    return None
        except SlackApiError as exc:
            raise classify(exc) from None
        except (SlackClientError, aiohttp.ClientError, OSError) as exc:
            raise TransientError(f"Slack unreachable: {type(exc).__name__}: {exc}") from None
        raise TransientError(f"more than {LOOKUP_MAX_PAGES} pages of history to search")

    async def _channel_id(self, channel: str) -> str:
        """conversations.history wants a channel id; a `#name` is looked up (once)."""
        if not channel.startswith("#"):
            return channel
        known = self.channel_ids.get(channel)
        if known:
            return known
        cursor: str | None = None
        for _ in range(LOOKUP_MAX_PAGES):
            response = await self.client.conversations_list(
                types="public_channel,private_channel",
                exclude_archived=True,
                limit=LOOKUP_PAGE,
                cursor=cursor,
            )
            for item in response.get("channels") or []:
                if item.get("name") == channel[1:] and item.get("id"):
                    self.channel_ids[channel] = item["id"]
                    return str(item["id"])
            cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                break
        raise PermanentError(f"Slack channel {channel} not found (conversations.list)")


def retry_after(response: object) -> float | None:
    """Retry-After from a Slack answer's headers (seconds), if it says."""
    headers = getattr(response, "headers", None) or {}
    for name, value in dict(headers).items():
        if str(name).lower() == "retry-after":
            raw = value[0] if isinstance(value, list | tuple) and value else value
            try:
                return max(0.0, float(str(raw).strip()))
            except ValueError:
                return None
    return None


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
        wait = retry_after(response)
        if wait is not None:
            text += f", Retry-After {wait:g}s"
        return TransientError(text, retry_after=wait)
    return PermanentError(text)

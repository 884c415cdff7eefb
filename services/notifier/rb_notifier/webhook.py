"""Webhooks: the notification as JSON, POSTed with httpx; an Idempotency-Key lets the receiver
drop a repeat."""

from __future__ import annotations

from typing import Any

import httpx

from rb_notifier.delivery import PermanentError, Receipt, TransientError


class WebhookSender:
    def __init__(self, *, timeout: float = 30.0, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.client = httpx.AsyncClient(
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
            headers={"User-Agent": "rb-notifier"},
        )

    async def post(self, url: str, payload: dict[str, Any], *, idempotency_key: str) -> Receipt:
        try:
            response = await self.client.post(url, json=payload, headers={"Idempotency-Key": idempotency_key})
        except httpx.HTTPError as exc:
            raise TransientError(f"webhook unreachable: {type(exc).__name__}") from None
        status = response.status_code
        if 200 <= status < 300:
            return Receipt()
        text = f"webhook answered HTTP {status}"
        if status in (408, 425, 429) or status >= 500:
            wait = None
            try:
                wait = max(0.0, float(response.headers.get("Retry-After", "")))
            except ValueError:
                wait = None
            raise TransientError(text, retry_after=wait)
        raise PermanentError(text)

    async def close(self) -> None:
        await self.client.aclose()

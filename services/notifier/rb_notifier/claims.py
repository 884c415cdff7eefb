"""Claims on Slack deliveries: one key per (event id, channel) in a JetStream KV bucket
(`Names.claims_bucket`), so that two live notifiers never post the same message at once.

A notifier creates the key (create-if-absent: a CAS on revision 0) with its owner token and the
time, posts, and deletes the key (CAS on its revision). Another notifier that finds a live claim
does not post: it waits until the claim is older than the lease, then takes it over (CAS on the
revision it read) and, as after a crash, looks in Slack for the earlier post before sending.
Slack cannot deduplicate a post; the claim is what keeps a redelivery to a second notifier (its
acks lost with a NATS node) from posting while the first is still posting.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import (
    BucketNotFoundError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NotFoundError,
)
from nats.js.kv import KeyValue

from rb_common.bus import Bus

# Claims left behind (a claimant killed after its lease) age out of the bucket.
CLAIM_MAX_AGE = 86_400.0
ACQUIRE_TRIES = 3


@dataclass(frozen=True)
class Claim:
    """A claim this notifier holds: post, then release it."""

    key: str
    revision: int
    owner: str
    taken_over: str | None = None  # the owner of the expired claim this one replaced


@dataclass(frozen=True)
class Busy:
    """Another notifier's live claim: `wait` seconds until its lease runs out."""

    owner: str
    wait: float


def claim_key(event_id: str, channel: str) -> str:
    """A KV key for the delivery (channel keys hold `#`, `:` and `@`, which keys may not)."""
    return hashlib.sha256(f"{event_id}\0{channel}".encode()).hexdigest()


class Claims:
    def __init__(
        self, bus: Bus, lease: float, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.bus = bus
        self.lease = lease
        self.clock = clock
        self.process = uuid.uuid4().hex[:12]  # one notifier process; each claim adds its own part
        self._kv: KeyValue | None = None

    async def bucket(self) -> KeyValue:
        """The bucket, created if missing (every notifier may be the first)."""
        if self._kv is not None:
            return self._kv
        js, names = self.bus.js, self.bus.names
        try:
            self._kv = await js.key_value(names.claims_bucket)
        except (BucketNotFoundError, NotFoundError):
            self._kv = await js.create_key_value(
                KeyValueConfig(
                    bucket=names.claims_bucket,
                    description="rb notifier: Slack deliveries being posted (one key each)",
                    history=1,
                    ttl=CLAIM_MAX_AGE,
                    storage=StorageType.FILE,
                    replicas=names.replicas,
                )
            )
        return self._kv

    async def acquire(self, event_id: str, channel: str) -> Claim | Busy:
        """The claim on (event id, channel), or the live claim of another notifier."""
        kv = await self.bucket()
        key = claim_key(event_id, channel)
        owner = f"{self.process}-{uuid.uuid4().hex[:8]}"
        busy = Busy("?", 1.0)
        for _ in range(ACQUIRE_TRIES):
            now = self.clock()
            value = json.dumps({"owner": owner, "at": now.isoformat()}).encode()
            try:
                return Claim(key, await kv.create(key, value), owner)
            except KeyWrongLastSequenceError:
                pass
            try:
                entry = await kv.get(key)
            except KeyNotFoundError:
                continue  # released meanwhile: create it again
            held_by, since = _parse(entry.value)
            age = (now - since).total_seconds() if since else self.lease
            if age < self.lease:
                return Busy(held_by, self.lease - age)
            try:  # expired: take it over, unless someone else just did
                return Claim(key, await kv.update(key, value, last=entry.revision), owner, taken_over=held_by)
            except KeyWrongLastSequenceError:
                continue
        return busy

    async def release(self, claim: Claim) -> None:
        """Delete the claim if it is still ours (a notifier that took it over keeps its own)."""
        kv = await self.bucket()
        try:
            await kv.delete(claim.key, last=claim.revision)
        except KeyWrongLastSequenceError:
            return
        except Exception as exc:  # the JetStream error for a wrong last sequence on a delete
            if getattr(exc, "err_code", None) in (10071, 10164):
                return
            raise


def _parse(value: bytes | None) -> tuple[str, datetime | None]:
    try:
        data = json.loads(value or b"{}")
        return str(data.get("owner") or "?"), datetime.fromisoformat(str(data["at"]))
    except (ValueError, KeyError, TypeError):
        return "?", None

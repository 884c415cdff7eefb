"""Registry changes as events on the bus: a NATS KV bucket, one key per runbook.

The API commits a change (create, revise, rollback, approve, deprecate, delete, schedule pause or
resume) to the database first, then puts `<runbook id>` = `{change, revision, status, ...}` into
the bucket. The database stays the source of truth; the bucket says *that* and *when* (in its
stream's sequence) something changed. Whoever keeps a copy of the registry (the scheduler's cron
jobs and alert router) watches the bucket's stream and reloads the runbook a change names.

Because every change's put is acknowledged before the API answers, the bucket stream's last
sequence at any moment covers every change committed before it: the API stamps it on each alert
it receives (`AlertEvent.registry_seq`), and the router matches the alert only once it has applied
the registry up to that sequence: as of the alert's arrival.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NoStreamResponseError, NotFoundError
from nats.js.kv import KeyValue

from rb_common.bus import Bus, Names

log = logging.getLogger(__name__)

PUT_TIMEOUT = 5.0

# What a change was; the router reloads the runbook whatever it is.
CHANGES = (
    "created",
    "revised",
    "rolled_back",
    "approved",
    "deprecated",
    "deleted",
    "schedule_paused",
    "schedule_resumed",
)


async def ensure_bucket(js: JetStreamContext, names: Names) -> KeyValue:
    """The bucket, created if missing (the API and the scheduler both may be first)."""
    bucket = names.registry_bucket
    try:
        return await js.key_value(bucket)
    except (BucketNotFoundError, NotFoundError):
        pass
    # Only the latest value per runbook is kept: the value is a notice, not the record.
    return await js.create_key_value(
        KeyValueConfig(
            bucket=bucket,
            description="rb registry changes (one key per runbook)",
            history=1,
            storage=StorageType.FILE,
            replicas=names.replicas,
        )
    )


async def announce(bus: Bus, runbook_id: str, change: str, **details: Any) -> int | None:
    """Put the change (after the database commit); a KV put is a publish to the key's subject.
    Returns the bucket stream's sequence, or None when NATS did not take it: the change is
    committed all the same, and the scheduler's safety-net reload picks it up."""
    value = {"runbook_id": runbook_id, "change": change, "at": datetime.now(UTC).isoformat(), **details}
    data = json.dumps(value).encode()
    subject = bus.names.registry_key_subject(runbook_id)
    for attempt in (1, 2):
        try:
            ack = await bus.js.publish(subject, data, stream=bus.names.registry_stream, timeout=PUT_TIMEOUT)
            return int(ack.seq)
        except (NoStreamResponseError, NotFoundError) as exc:
            if attempt == 2:
                log.warning("registry change %s of %s not announced: %s", change, runbook_id, exc)
                return None
            try:
                await ensure_bucket(bus.js, bus.names)
            except Exception as exc2:
                log.warning("registry change %s of %s not announced: %s", change, runbook_id, exc2)
                return None
        except Exception as exc:
            log.warning("registry change %s of %s not announced: %s", change, runbook_id, exc)
            return None
    return None


async def last_seq(bus: Bus) -> int | None:
    """The bucket stream's last sequence: every change acknowledged so far is at or below it
    (0 before the first). None when NATS does not answer: the alert is then matched against
    the registry as the router has it, without waiting."""
    try:
        info = await bus.js.stream_info(bus.names.registry_stream)
    except NotFoundError:
        return 0
    except Exception as exc:
        log.warning("cannot read the registry's sequence: %s", exc)
        return None
    return int(info.state.last_seq or 0)


def decode(data: bytes) -> dict[str, Any]:
    """A change's value; {} for a value that is not a JSON object (a hand-made put)."""
    try:
        value = json.loads(data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


_HANDLES: dict[tuple[int, str], KeyValue] = {}


async def read(bus: Bus, runbook_id: str) -> dict[str, Any] | None:
    """The bucket's current value for a runbook (one round trip), or None when it has none
    (never announced, deleted from the bucket, or no bucket at all). Only the bucket handle is
    kept between calls, never a value. NATS errors propagate: the caller retries."""
    js: Any = bus.js
    if not hasattr(js, "key_value"):  # the in-memory bus of the tests has no KV API
        try:
            msg = await js.get_last_msg(bus.names.registry_stream, bus.names.registry_key_subject(runbook_id))
        except NotFoundError:
            return None
        return decode(msg.data or b"")
    handle_key = (id(js), bus.names.registry_bucket)
    kv = _HANDLES.get(handle_key)
    if kv is None:
        try:
            kv = await js.key_value(bus.names.registry_bucket)
        except (BucketNotFoundError, NotFoundError):
            return None
        _HANDLES[handle_key] = kv
    try:
        entry = await kv.get(runbook_id)
    except (KeyNotFoundError, NotFoundError):
        return None
    except BucketNotFoundError:
        _HANDLES.pop(handle_key, None)
        return None
    return decode(entry.value or b"")

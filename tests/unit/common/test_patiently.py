"""`patiently`: a set-up call is tried again while JetStream cannot answer, and only then."""

from __future__ import annotations

import pytest
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import NotFoundError, ServiceUnavailableError

from rb_common.bus import patiently


class Flaky:
    def __init__(self, failures: list[Exception]) -> None:
        self.failures = failures
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "bound"


async def test_tries_again_while_jetstream_cannot_answer() -> None:
    call = Flaky([NatsTimeout(), ServiceUnavailableError()])
    assert await patiently(call, "consumer x", wait=10) == "bound"
    assert call.calls == 3


async def test_a_real_answer_is_not_tried_again() -> None:
    call = Flaky([NotFoundError()])
    with pytest.raises(NotFoundError):
        await patiently(call, "consumer x", wait=10)
    assert call.calls == 1


async def test_gives_up_after_its_wait() -> None:
    call = Flaky([NatsTimeout()] * 5)
    with pytest.raises(NatsTimeout):
        await patiently(call, "consumer x", wait=0.1)
    assert call.calls == 1

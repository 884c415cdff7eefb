"""A redelivered task (its first worker died, or its ack was lost) runs again only once the
record shows that delivery and the attempt is still open.

"Every side effect happened once per delivery recorded": a worker that got delivery N > 1 of an
attempt reports `step.started {delivery: N}` first and then reads the execution back. If the
attempt already has its outcome (the first run's report was recorded but its ack never reached
JetStream: a kill between the two, a NATS node gone with the ack), the task is acked and the
step is not run again. If the record shows delivery N while the attempt is open, the side effect
that follows is accounted for. Until either, it waits (the feed's in-progress acks keep the
task); a stopping worker hands it back as usual."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from enum import Enum

from rb_common.bus import Bus, read_execution
from rb_engine.coordinator import ExecutionState, RunStep, evolve
from rb_engine.coordinator import state as st

log = logging.getLogger(__name__)

FIRST_LOOK = 0.05  # seconds before reading the record back; doubles up to EVERY
EVERY = 2.0


class Redelivery(Enum):
    RUN = "run"  # the record shows this delivery of an open attempt
    DONE = "done"  # the attempt has its outcome (or the execution ended): not run again
    WAIT = "wait"  # neither yet: the start report is on its way


def judge(state: ExecutionState, command: RunStep, delivery: int) -> Redelivery:
    """What the recorded state says about delivery `delivery` of `command`'s attempt (pure)."""
    step = state.steps.get(command.step_id)
    if state.status == st.NEW:
        return Redelivery.WAIT  # not folded yet (or not recorded at all: the caller gives up)
    if step is None or state.terminal:
        return Redelivery.DONE
    if command.phase == "rollback":
        # Rollback reports carry no delivery count: an open rollback attempt runs again.
        return Redelivery.RUN if step.rollback_status in st.ACTIVE else Redelivery.DONE
    if step.attempt != command.attempt or step.status not in st.ACTIVE:
        return Redelivery.DONE
    return Redelivery.RUN if step.deliveries >= delivery else Redelivery.WAIT


async def recorded_state(bus: Bus, execution_id: str) -> ExecutionState:
    state = ExecutionState(execution_id=execution_id)
    for event, _ in await read_execution(bus, execution_id):
        state = evolve(state, event)
    return state


async def settle(
    bus: Bus,
    execution_id: str,
    command: RunStep,
    delivery: int,
    report_start: Callable[[], Awaitable[None]],
) -> Redelivery:
    """Report this delivery's start, then wait until the record says RUN or DONE."""
    await report_start()
    pause = FIRST_LOOK
    while True:
        try:
            verdict = judge(await recorded_state(bus, execution_id), command, delivery)
        except Exception:  # the stream is electing a leader, the connection is failing over
            log.debug("%s: reading the record back failed; trying again", execution_id, exc_info=True)
            verdict = Redelivery.WAIT
        if verdict is not Redelivery.WAIT:
            return verdict
        await asyncio.sleep(pause)
        pause = min(pause * 2, EVERY)
        if pause >= EVERY:
            await report_start()  # the first report may have been lost with its connection

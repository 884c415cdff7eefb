"""Entry points of the executor service: coordinator and workers, together or apart."""

from __future__ import annotations

import asyncio

from rb_common.bus import connect
from rb_common.health import Health, watch_bus
from rb_common.settings import Settings
from rb_common.slots_bucket import Slots
from rb_engine.engine import aclose_plugins, close_plugins
from rb_engine.steps.registry import default_registry
from rb_executor import metrics
from rb_executor.service.coordinator import Coordinator
from rb_executor.service.outside import OutsideEvents
from rb_executor.service.worker import Worker


async def run_executor(settings: Settings, stop: asyncio.Event, *, health: Health | None = None) -> None:
    """The coordinator, plus step workers in the same process unless settings say otherwise."""
    bus = await connect(settings.nats_url, namespace=settings.namespace, replicas=settings.stream_replicas, name="rb-executor")
    if health is not None:
        watch_bus(health, bus)
    registry = default_registry()
    slots = Slots(
        bus,
        max_running=settings.max_running_executions,
        max_queued=settings.max_queued_executions,
        observe=metrics.admission_table,
    )
    coordinator = Coordinator(bus, slots=slots, sweep_seconds=settings.admission_sweep_seconds)
    outside = OutsideEvents(coordinator, buffer_seconds=settings.event_buffer_seconds)
    jobs = [coordinator.run(stop), outside.run(stop)]
    if settings.executor_workers:
        worker = Worker(
            bus,
            settings,
            registry,
            concurrency=settings.worker_concurrency,
            coordinator=coordinator.accept_report,
        )
        jobs.append(worker.run(stop))
    try:
        await asyncio.gather(*jobs)
    finally:
        close_plugins(registry)
        await aclose_plugins(registry)
        await bus.close()


async def run_worker(settings: Settings, stop: asyncio.Event, *, health: Health | None = None) -> None:
    bus = await connect(settings.nats_url, namespace=settings.namespace, replicas=settings.stream_replicas, name="rb-worker")
    if health is not None:
        watch_bus(health, bus)
    registry = default_registry()
    try:
        await Worker(bus, settings, registry, concurrency=settings.worker_concurrency).run(stop)
    finally:
        close_plugins(registry)
        await aclose_plugins(registry)
        await bus.close()

"""Wiring for in-process runs: the runner with real plugins, optionally behind fixtures."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rb_common.events import Event
from rb_common.model import Runbook
from rb_common.params import env_snapshot, resolve_params
from rb_common.secrets import secrets_from_env
from rb_common.settings import Settings
from rb_engine.clock import FakeClock, SystemClock
from rb_engine.coordinator import ExecutionState
from rb_engine.eventlog import FileEventStore
from rb_engine.fixtures import Fixture, FixtureExecutor
from rb_engine.local_children import LocalChildren
from rb_engine.runner import PluginExecutor, Runner, RunRequest, StepExecutor
from rb_engine.steps.registry import default_registry
from rb_engine.visual import BaselineSource


async def run_local(
    runbook: Runbook,
    settings: Settings,
    *,
    base_dir: Path,
    params: dict[str, Any] | None = None,
    facts: dict[str, Any] | None = None,
    fixture: Fixture | None = None,
    live: bool = False,
    actor: str = "cli",
    on_event: Callable[[Event, ExecutionState], None] | None = None,
    events_dir: Path | None = None,
    baselines: BaselineSource | None = None,
) -> ExecutionState:
    """Run `runbook` in this process, recording every event under RB_HOME/executions (or
    `events_dir`: `rb test` keeps its scenario runs apart)."""
    registry = default_registry()
    plugins: StepExecutor = PluginExecutor(registry)
    executor = plugins
    if fixture is not None:
        merged = {**fixture.params, **(params or {})}
        executor = FixtureExecutor(executor, fixture, live=live, baselines=baselines)
        clock: FakeClock | SystemClock = FakeClock(fixture.clock)
        env, secrets, facts, trigger = fixture.env, fixture.secrets, fixture.assumptions, fixture.trigger
    else:
        merged = dict(params or {})
        clock = SystemClock()
        env = env_snapshot(runbook, os.environ)
        secrets = secrets_from_env(os.environ)
        trigger = {"type": "manual", "actor": actor}
        facts = dict(facts or {})
    request = RunRequest(
        runbook=runbook,
        params=resolve_params(runbook, merged),
        env=env,
        trigger=trigger,
        facts=facts,
        actor=actor,
        # The runbook's own limit, capped by RB_MAX_CONCURRENCY.
        concurrency=min(runbook.defaults.concurrency, settings.max_concurrency),
        base_dir=base_dir,
    )
    store = FileEventStore(events_dir or settings.events_dir)

    def child_runner(child_dir: Path) -> Runner:
        # A child's steps run for real (a fixture scripts a child run as a whole: `children`).
        return Runner(store, plugins, clock, settings, secrets=secrets, base_dir=child_dir, children=children)

    children = LocalChildren([base_dir.resolve().parent, settings.runbooks_dir], child_runner)
    runner = Runner(
        store,
        executor,
        clock,
        settings,
        secrets=secrets,
        base_dir=base_dir,
        on_event=on_event,
        decide_approval=fixture.decide_approval if fixture is not None else None,
        children=children,
        events=fixture.events if fixture is not None else None,
    )
    try:
        return await runner.run(request)
    finally:
        store.close()
        close_plugins(registry)
        await aclose_plugins(registry)


def close_plugins(registry: dict[str, Any]) -> None:
    """Release what plugins hold across steps (database pools)."""
    for plugin in registry.values():
        dispose = getattr(plugin, "dispose", None)
        if dispose is not None:
            dispose()


async def aclose_plugins(registry: dict[str, Any]) -> None:
    """Release what plugins hold on the event loop (the browser of ui_screenshot)."""
    for plugin in registry.values():
        aclose = getattr(plugin, "aclose", None)
        if aclose is not None:
            await aclose()

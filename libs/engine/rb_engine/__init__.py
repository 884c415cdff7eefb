"""rb_engine: the execution engine every service and the CLI share.

Public modules (import them directly; this package re-exports nothing so that importing the
pure kernel never pulls in the step plugins' I/O):

- `rb_engine.coordinator`: the pure kernel — `fold`/`evolve` (events -> state), `decide`
  (state -> commands), commands, KPIs, retry policy. No I/O (enforced by import-linter).
- `rb_engine.applier`: the one function that turns a decision's commands into events.
- `rb_engine.steps`: the step plugin contract (`steps.base`) and registry (`steps.registry`),
  and the built-in plugins.
- `rb_engine.runner`: the in-process runner (`Runner`, `RunRequest`, `PluginExecutor`);
  `rb_engine.engine.run_local` is what `rb run` uses.
- `rb_engine.replay`: `Replayer` — refold recorded events and compare every decision.
- `rb_engine.fixtures`, `rb_engine.testing`: fixtures and acceptance packs (`rb test`).
- `rb_engine.eventlog`, `rb_engine.export`, `rb_engine.result`, `rb_engine.clock`: the local
  JSON-lines log, fixture export, canonical results, clocks.
"""

__all__ = [
    "applier",
    "attempt",
    "clock",
    "coordinator",
    "engine",
    "eventlog",
    "export",
    "fixtures",
    "replay",
    "result",
    "runner",
    "steps",
    "testing",
]

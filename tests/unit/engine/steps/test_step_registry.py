from __future__ import annotations

from rb_engine.steps.http import HttpStep
from rb_engine.steps.registry import default_registry

EXPECTED = {
    "data_fetch",
    "http",
    "api_call",
    "schema_check",
    "transform",
    "assert",
    "wait",
    "shell",
    "sql_query",
    "metrics_publish",
    "ai",
    "runbook",
    "notify",
    "ui_screenshot",
}


def test_registry_maps_each_type_to_a_plugin_with_that_spec() -> None:
    registry = default_registry()
    assert set(registry) == EXPECTED
    for name, plugin in registry.items():
        assert plugin.spec.name == name
        assert callable(plugin.validate)
        assert callable(plugin.run)
    assert isinstance(registry["data_fetch"], HttpStep)
    assert isinstance(registry["http"], HttpStep)


def test_each_call_builds_new_instances() -> None:
    first, second = default_registry(), default_registry()
    assert all(first[name] is not second[name] for name in EXPECTED)

"""The built-in step types by name; a fresh set per executor so plugin state is never shared."""

from __future__ import annotations

from rb_engine.steps.ai import AiStep
from rb_engine.steps.api_call import ApiCallStep
from rb_engine.steps.assertion import AssertStep
from rb_engine.steps.base import StepPlugin
from rb_engine.steps.http import HttpStep
from rb_engine.steps.metrics_publish import MetricsPublishStep
from rb_engine.steps.notify import NotifyStep
from rb_engine.steps.schema_check import SchemaCheckStep
from rb_engine.steps.shell import ShellStep
from rb_engine.steps.sql_query import SqlQueryStep
from rb_engine.steps.sub_runbook import RunbookStep
from rb_engine.steps.transform import TransformStep
from rb_engine.steps.ui_screenshot import UiScreenshotStep
from rb_engine.steps.wait import WaitStep


def default_registry() -> dict[str, StepPlugin]:
    """New plugin instances (the SQL plugin holds connection pools) keyed by step type."""
    plugins: list[StepPlugin] = [
        HttpStep("data_fetch"),
        HttpStep("http"),
        ApiCallStep(),
        SchemaCheckStep(),
        TransformStep(),
        AssertStep(),
        WaitStep(),
        ShellStep(),
        SqlQueryStep(),
        MetricsPublishStep(),
        AiStep(),
        RunbookStep(),
        NotifyStep(),
        UiScreenshotStep(),
    ]
    return {plugin.spec.name: plugin for plugin in plugins}

"""`notify`: a message to Slack, email or a webhook, delivered by the notifier service.

The executor sends no task for a notify step: the notifier sees its `step.scheduled` event,
delivers every channel the step names with its durable delivery (notification.sending ...
sent/failed, keyed by that event's id, so one attempt is delivered once), and then reports the
step's outcome like a worker would. This plugin is what runs where there is no notifier
(`rb run`, `rb replay --live`): it fails, saying so. `rb test` stubs the step (it is external).
"""

from __future__ import annotations

from typing import Any

from rb_common.step_specs import SPECS, StepSpec
from rb_engine.steps.base import SpecValidated, StepContext, StepFailed

NO_NOTIFIER = (
    "notify steps are delivered by the notifier service: run the runbook on a stack (rb up, "
    "rb trigger), or stub the step in a fixture (steps.<id>)"
)


class NotifyStep(SpecValidated):
    spec: StepSpec = SPECS["notify"]

    async def run(self, inputs: dict[str, Any], ctx: StepContext) -> Any:
        raise StepFailed(NO_NOTIFIER, retryable=False)

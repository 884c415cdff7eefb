"""`ai` against a loopback OpenAI-compatible peer: the request, the schema check, the egress
policy, the key never recorded, and a replay that never calls the model again."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from rb_common.loader import load_runbook_text
from rb_common.ports import InMemoryEventStore
from rb_common.settings import Settings
from rb_engine.clock import SystemClock
from rb_engine.replay import Replayer
from rb_engine.runner import PluginExecutor, Runner, RunRequest
from rb_engine.steps.ai import AiStep
from rb_engine.steps.base import StepContext, StepFailed
from rb_engine.steps.registry import default_registry

pytestmark = pytest.mark.integration

MakeCtx = Callable[..., StepContext]
Server = Any  # conftest.ScriptedServer

KEY = "sk-test-0123456789abcdef"


def completion(content: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "test-model",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


def ai_settings(server: Server, tmp_path: Path, **more: Any) -> Settings:
    return Settings(
        home=tmp_path / ".rb",
        ai_base_url=server.url_for("/v1"),
        ai_api_key=SecretStr(KEY),
        ai_model="test-model",
        **more,
    )


async def test_prompt_goes_to_chat_completions_with_the_key(
    http_server: Server, make_ctx: MakeCtx, tmp_path: Path
) -> None:
    http_server.ok("/v1/chat/completions", completion("Disk full on web-1."))
    ctx = make_ctx(settings=ai_settings(http_server, tmp_path), idempotency_key="e:summary:1")
    result = await AiStep().run(
        {
            "prompt": "Summarise: web-1 failed",
            "system": "You help on-call.",
            "temperature": 0,
            "max_tokens": 50,
        },
        ctx,
    )
    assert result["text"] == "Disk full on web-1."
    assert result["raw"]["usage"]["total_tokens"] == 15
    assert "json" not in result
    [request] = http_server.requests_to("/v1/chat/completions")
    assert request.method == "POST"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["idempotency-key"] == "e:summary:1"
    assert request.json() == {
        "model": "test-model",
        "messages": [
            {"role": "system", "content": "You help on-call."},
            {"role": "user", "content": "Summarise: web-1 failed"},
        ],
        "temperature": 0,
        "max_tokens": 50,
    }


SCHEMA = {
    "type": "object",
    "required": ["severity", "summary"],
    "properties": {"severity": {"enum": ["low", "high"]}, "summary": {"type": "string"}},
}


async def test_a_schema_asks_for_json_and_validates_the_answer(
    http_server: Server, make_ctx: MakeCtx, tmp_path: Path
) -> None:
    answer = {"severity": "high", "summary": "disk"}
    http_server.ok("/v1/chat/completions", completion("```json\n" + json.dumps(answer) + "\n```"))
    ctx = make_ctx(settings=ai_settings(http_server, tmp_path))
    result = await AiStep().run({"prompt": "p", "schema": SCHEMA, "model": "other"}, ctx)
    assert result["json"] == answer
    sent = http_server.requests_to("/v1/chat/completions")[0].json()
    assert sent["model"] == "other"
    assert sent["response_format"] == {"type": "json_object"}
    assert '"severity"' in sent["messages"][0]["content"]

    http_server.ok("/v1/chat/completions", completion(json.dumps({"severity": "medium", "summary": "x"})))
    with pytest.raises(StepFailed, match="does not match the schema at severity") as failed:
        await AiStep().run({"prompt": "p", "schema": SCHEMA}, ctx)
    assert not failed.value.retryable
    http_server.ok("/v1/chat/completions", completion("I think it is bad."))
    with pytest.raises(StepFailed, match="not JSON"):
        await AiStep().run({"prompt": "p", "schema": SCHEMA}, ctx)


async def test_unconfigured_refused_and_failing_endpoints_fail_clearly(
    http_server: Server, make_ctx: MakeCtx, tmp_path: Path
) -> None:
    with pytest.raises(StepFailed, match="RB_AI_BASE_URL"):
        await AiStep().run({"prompt": "p"}, make_ctx(settings=Settings(home=tmp_path)))
    # The egress policy applies: loopback is refused unless allowed.
    refused = ai_settings(http_server, tmp_path, egress_allow=[])
    with pytest.raises(StepFailed, match="egress refused"):
        await AiStep().run({"prompt": "p"}, make_ctx(settings=refused))
    assert http_server.requests_to("/v1/chat/completions") == []
    http_server.respond("/v1/chat/completions", 429, text="slow down")
    with pytest.raises(StepFailed, match="HTTP 429") as failed:
        await AiStep().run({"prompt": "p"}, make_ctx(settings=ai_settings(http_server, tmp_path)))
    assert failed.value.retryable
    http_server.ok("/v1/chat/completions", {"choices": []})
    with pytest.raises(StepFailed, match=r"no choices\[0\]"):
        await AiStep().run({"prompt": "p"}, make_ctx(settings=ai_settings(http_server, tmp_path)))


async def test_a_run_records_the_answer_and_replay_never_calls_the_model(
    http_server: Server, tmp_path: Path
) -> None:
    http_server.ok("/v1/chat/completions", completion(json.dumps({"severity": "low", "summary": "ok"})))
    runbook, _ = load_runbook_text("""
id: ai-run
name: AI run
steps:
  - id: facts
    type: transform
    inputs: {failed: [probe]}
    outputs: {failed: "$.failed"}
  - id: summary
    type: ai
    depends_on: [facts]
    inputs:
      prompt: "Failed steps: ${steps.facts.outputs.failed}"
      schema: {type: object, required: [severity], properties: {severity: {enum: [low, high]}}}
    outputs: {severity: "$.json.severity", text: "$.text"}
""")
    settings = ai_settings(http_server, tmp_path)
    store = InMemoryEventStore()
    registry = default_registry()
    state = await Runner(store, PluginExecutor(registry), SystemClock(), settings).run(
        RunRequest(runbook=runbook)
    )
    assert state.status == "SUCCEEDED", state.reason
    assert state.steps["summary"].outputs == {
        "severity": "low",
        "text": '{"severity": "low", "summary": "ok"}',
    }
    [request] = http_server.requests_to("/v1/chat/completions")
    assert 'Failed steps: ["probe"]' in request.json()["messages"][-1]["content"]
    events = store.read(state.execution_id)
    recorded = json.dumps([e.data for e in events])
    assert KEY not in recorded
    [succeeded] = [e for e in events if e.type == "step.succeeded" and e.data["step_id"] == "summary"]
    assert succeeded.data["result"]["raw"]["model"] == "test-model"

    report = await Replayer(PluginExecutor(default_registry()), settings).replay(events)
    assert report.verified, report.deviations
    assert len(http_server.requests_to("/v1/chat/completions")) == 1  # replay asked nobody

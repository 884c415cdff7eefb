"""`ai`: one chat completion from an OpenAI-compatible endpoint (RB_AI_BASE_URL).

The request goes through the same HTTP helper as `http` steps, so the egress policy and its
pinned transport apply. The raw result holds the answer's text, its JSON when the step gives a
`schema` (parsed and validated here; an answer that does not match fails the step), and the
endpoint's whole response body: replay and `rb replay` read that record and never ask the model
again. The API key (RB_AI_API_KEY) is sent as a bearer token and never recorded.
"""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema

from rb_common.secrets import mask
from rb_common.step_specs import SPECS, StepSpec
from rb_engine.steps.base import SpecValidated, StepContext, StepFailed
from rb_engine.steps.http import response_body, send_request

_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def completions_url(base_url: str) -> str:
    return base_url.rstrip("/") + "/chat/completions"


def request_body(inputs: dict[str, Any], default_model: str) -> dict[str, Any]:
    """The chat-completion request: the system message (with the schema instruction, if any),
    then the prompt."""
    system = inputs.get("system")
    schema = inputs.get("schema")
    if schema is not None:
        instruction = (
            "Answer with one JSON document only, no prose around it, matching this JSON Schema: "
            + json.dumps(schema, sort_keys=True)
        )
        system = f"{system}\n\n{instruction}" if system else instruction
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": inputs["prompt"]})
    body: dict[str, Any] = {"model": inputs.get("model") or default_model, "messages": messages}
    for key in ("temperature", "max_tokens"):
        if inputs.get(key) is not None:
            body[key] = inputs[key]
    if schema is not None:
        body["response_format"] = {"type": "json_object"}
    return body


def answer_text(body: Any) -> str:
    try:
        text = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        text = None
    if not isinstance(text, str):
        raise StepFailed("the model's response has no choices[0].message.content", retryable=False)
    return text


def structured_answer(text: str, schema: dict[str, Any]) -> Any:
    """The answer as JSON, validated against `schema`; StepFailed with a clear reason if not."""
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    try:
        value = json.loads(fenced.group(1) if fenced else stripped)
    except ValueError as exc:
        raise StepFailed(f"the model's answer is not JSON: {exc}", retryable=False) from None
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(the answer)"
        raise StepFailed(
            f"the model's answer does not match the schema at {where}: {exc.message}", retryable=False
        ) from None
    except jsonschema.SchemaError as exc:
        raise StepFailed(
            f"the step's schema is not a valid JSON Schema: {exc.message}", retryable=False
        ) from None
    return value


class AiStep(SpecValidated):
    spec: StepSpec = SPECS["ai"]

    async def run(self, inputs: dict[str, Any], ctx: StepContext) -> Any:
        settings = ctx.settings
        if not settings.ai_base_url:
            raise StepFailed("no AI endpoint: set RB_AI_BASE_URL", retryable=False)
        key = settings.ai_api_key.get_secret_value() if settings.ai_api_key else None
        body = request_body(inputs, settings.ai_model)
        response = await send_request(
            ctx,
            method="POST",
            url=completions_url(settings.ai_base_url),
            json_body=body,
            auth_token=key,
        )
        # Masked like a step secret, should an endpoint ever echo it: the raw body is recorded.
        raw = mask(response_body(response), [key] if key else [])
        text = answer_text(raw)
        result: dict[str, Any] = {"text": text, "model": body["model"]}
        schema = inputs.get("schema")
        if schema is not None:
            result["json"] = structured_answer(text, schema)
        result["raw"] = raw
        return result

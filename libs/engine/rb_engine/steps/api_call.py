"""`api_call`: a REST or GraphQL call whose extra inputs become the payload.

Runbooks name payload fields directly as inputs (`inputs: {entity_id: ..., endpoint: ...}`), so
anything the spec does not know is data for the remote API, not a typo.
"""

from __future__ import annotations

import json
from typing import Any

from rb_common.step_specs import SPECS
from rb_engine.steps.base import SpecValidated, StepContext, StepFailed
from rb_engine.steps.http import response_body, send_request

_GRAPHQL_SUFFIXES = (".graphql", ".gql")


def _graphql_document(query: str, ctx: StepContext) -> str:
    """Inline documents are used as written; `*.graphql` / `*.gql` names are files."""
    if not query.strip().lower().endswith(_GRAPHQL_SUFFIXES):
        return query
    path = ctx.base_dir / query.strip()
    try:
        return ctx.read_file(query.strip())[1]
    except FileNotFoundError:
        raise StepFailed(f"GraphQL file not found: {path}", retryable=False) from None
    except OSError as exc:
        raise StepFailed(f"cannot read GraphQL file {path}: {exc}", retryable=False) from None


def _error_messages(errors: Any) -> str:
    if not isinstance(errors, list):
        return str(errors)
    messages = [str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors]
    return "; ".join(messages)


class ApiCallStep(SpecValidated):
    spec = SPECS["api_call"]

    async def run(self, inputs: dict[str, Any], ctx: StepContext) -> Any:
        endpoint = inputs.get("endpoint")
        if not isinstance(endpoint, str) or not endpoint:
            raise StepFailed("no endpoint given", retryable=False)
        extras = {k: v for k, v in inputs.items() if k not in self.spec.properties}
        method = (inputs.get("method") or "POST").upper()
        common: dict[str, Any] = {
            "url": endpoint,
            "headers": inputs.get("headers"),
            "auth_token": inputs.get("auth_token"),
            "expect_status": inputs.get("expect_status"),
        }
        query = inputs.get("query")
        if query is None:
            payload = inputs.get("body", extras or None)
            if payload is None:
                response = await send_request(ctx, method=method, **common)
            else:
                response = await send_request(ctx, method=method, json_body=payload, **common)
            return response_body(response)
        return await self._graphql(ctx, method, query, extras, inputs.get("variables"), common)

    async def _graphql(
        self,
        ctx: StepContext,
        method: str,
        query: Any,
        extras: dict[str, Any],
        variables: Any,
        common: dict[str, Any],
    ) -> Any:
        if not isinstance(query, str):
            raise StepFailed("'query' must be a GraphQL document or file name", retryable=False)
        document = _graphql_document(query, ctx)
        # Explicit `variables` win over same-named extra inputs.
        all_variables = {**extras, **(variables or {})}
        if method == "GET":
            # GraphQL over HTTP allows GET with the document in the query string.
            params = {"query": document, "variables": json.dumps(all_variables)}
            response = await send_request(ctx, method="GET", params=params, **common)
        else:
            payload = {"query": document, "variables": all_variables}
            response = await send_request(ctx, method=method, json_body=payload, **common)
        try:
            result = response.json()
        except ValueError:
            raise StepFailed(f"GraphQL response from {common['url']} is not JSON", retryable=False) from None
        if not isinstance(result, dict):
            raise StepFailed(f"GraphQL response from {common['url']} is not an object", retryable=False)
        if result.get("errors"):
            raise StepFailed(
                f"GraphQL errors from {common['url']}: {_error_messages(result['errors'])}",
                retryable=False,
            )
        return result.get("data")

"""`schema_check`: split entities into valid ones and located errors.

Invalid entities are data, not a step failure: the runbook decides (via outputs and `when`)
what to do with them. Only a broken schema or a bad input shape fails the step.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import yaml
from jsonschema.protocols import Validator

from rb_common.step_specs import SPECS
from rb_engine.steps.base import SpecValidated, StepContext, StepFailed


def _load_schema(schema: Any, ctx: StepContext) -> dict[str, Any]:
    if isinstance(schema, dict):
        return schema
    if not isinstance(schema, str):
        raise StepFailed("'schema' must be a file name or an inline object", retryable=False)
    path = ctx.base_dir / schema
    try:
        path, text = ctx.read_file(schema)
    except FileNotFoundError:
        raise StepFailed(f"schema file not found: {path}", retryable=False) from None
    except OSError as exc:
        raise StepFailed(f"cannot read schema file {path}: {exc}", retryable=False) from None
    try:
        loaded = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise StepFailed(f"schema file {path} does not parse: {exc}", retryable=False) from None
    if not isinstance(loaded, dict):
        raise StepFailed(f"schema file {path} does not hold an object", retryable=False)
    return loaded


def _validator(schema: dict[str, Any]) -> Validator:
    """Honour the schema's own `$schema`; 2020-12 otherwise. Formats are checked, not ignored."""
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise StepFailed(f"invalid JSON Schema: {exc.message}", retryable=False) from None
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


class SchemaCheckStep(SpecValidated):
    spec = SPECS["schema_check"]

    async def run(self, inputs: dict[str, Any], ctx: StepContext) -> Any:
        validator = _validator(_load_schema(inputs.get("schema"), ctx))
        if "entities" in inputs:
            entities = inputs["entities"]
            if not isinstance(entities, list):
                kind = type(entities).__name__
                raise StepFailed(f"'entities' must be a list, got {kind}", retryable=False)
        elif "document" in inputs:
            entities = [inputs["document"]]
        else:
            raise StepFailed("set 'entities' (a list) or 'document'", retryable=False)

        valid: list[Any] = []
        errors: list[dict[str, Any]] = []
        for index, entity in enumerate(entities):
            found = sorted(validator.iter_errors(entity), key=lambda e: list(map(str, e.path)))
            if not found:
                valid.append(entity)
            errors.extend(
                {"index": index, "path": error.json_path, "message": error.message} for error in found
            )
        return {
            "valid": valid,
            "errors": errors,
            "valid_count": len(valid),
            "error_count": len(errors),
        }

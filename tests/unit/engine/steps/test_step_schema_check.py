from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from rb_common.settings import Settings
from rb_engine.clock import FakeClock
from rb_engine.steps.base import StepContext, StepFailed
from rb_engine.steps.schema_check import SchemaCheckStep

ENTITY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "email"],
    "properties": {
        "id": {"type": "integer"},
        "email": {"type": "string", "format": "email"},
        "seen": {"type": "string", "format": "date-time"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
}


def ctx(base_dir: Path) -> StepContext:
    return StepContext(
        execution_id="e",
        step_id="validate",
        attempt=1,
        idempotency_key="k",
        settings=Settings(),
        clock=FakeClock(datetime(2024, 1, 1, tzinfo=UTC)),
        base_dir=base_dir,
    )


async def test_splits_valid_and_invalid_entities_with_locations(tmp_path: Path) -> None:
    entities = [
        {"id": 1, "email": "a@example.com"},
        {"id": "two", "email": "b@example.com"},
        {"id": 3, "email": "c@example.com", "tags": ["x", 5]},
        {"id": 4, "email": "d@example.com", "seen": "2024-01-01T00:00:00Z"},
    ]
    result = await SchemaCheckStep().run({"schema": ENTITY_SCHEMA, "entities": entities}, ctx(tmp_path))
    assert result == {
        "valid": [entities[0], entities[3]],
        "errors": [
            {"index": 1, "path": "$.id", "message": "'two' is not of type 'integer'"},
            {"index": 2, "path": "$.tags[1]", "message": "5 is not of type 'string'"},
        ],
        "valid_count": 2,
        "error_count": 2,
    }


async def test_formats_are_checked(tmp_path: Path) -> None:
    entities = [
        {"id": 1, "email": "not-an-email"},
        {"id": 2, "email": "x@example.com", "seen": "yesterday"},
    ]
    result = await SchemaCheckStep().run({"schema": ENTITY_SCHEMA, "entities": entities}, ctx(tmp_path))
    assert [(e["index"], e["path"]) for e in result["errors"]] == [(0, "$.email"), (1, "$.seen")]
    assert result["valid"] == []


async def test_missing_required_reported_at_root(tmp_path: Path) -> None:
    result = await SchemaCheckStep().run({"schema": ENTITY_SCHEMA, "entities": [{"id": 1}]}, ctx(tmp_path))
    assert result["errors"] == [{"index": 0, "path": "$", "message": "'email' is a required property"}]


async def test_schema_file_relative_to_base_dir(tmp_path: Path) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "entity-v2.json").write_text(json.dumps(ENTITY_SCHEMA))
    result = await SchemaCheckStep().run(
        {"schema": "schemas/entity-v2.json", "entities": [{"id": 1, "email": "a@b.co"}]},
        ctx(tmp_path),
    )
    assert result["valid_count"] == 1


async def test_yaml_schema_file(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text("type: object\nrequired: [id]\n")
    result = await SchemaCheckStep().run({"schema": "s.yaml", "entities": [{}]}, ctx(tmp_path))
    assert result["error_count"] == 1


async def test_document_mode(tmp_path: Path) -> None:
    step = SchemaCheckStep()
    good = await step.run({"schema": {"type": "object"}, "document": {"a": 1}}, ctx(tmp_path))
    assert good == {"valid": [{"a": 1}], "errors": [], "valid_count": 1, "error_count": 0}
    bad = await step.run({"schema": {"type": "object"}, "document": [1]}, ctx(tmp_path))
    assert bad["valid"] == []
    assert bad["errors"] == [{"index": 0, "path": "$", "message": "[1] is not of type 'object'"}]


async def test_respects_declared_draft(tmp_path: Path) -> None:
    # Draft 4's boolean exclusiveMaximum is invalid in 2020-12; honouring $schema makes it work.
    schema = {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "type": "number",
        "maximum": 10,
        "exclusiveMaximum": True,
    }
    result = await SchemaCheckStep().run({"schema": schema, "entities": [9, 10]}, ctx(tmp_path))
    assert result["valid"] == [9]
    assert result["errors"][0]["index"] == 1


async def test_invalid_schema_fails_without_retry(tmp_path: Path) -> None:
    with pytest.raises(StepFailed) as err:
        await SchemaCheckStep().run({"schema": {"type": "nope"}, "entities": []}, ctx(tmp_path))
    assert err.value.retryable is False
    assert "invalid JSON Schema" in err.value.message


async def test_missing_schema_file_fails(tmp_path: Path) -> None:
    with pytest.raises(StepFailed) as err:
        await SchemaCheckStep().run({"schema": "absent.json", "entities": []}, ctx(tmp_path))
    assert err.value.retryable is False
    assert "absent.json" in err.value.message


async def test_entities_must_be_a_list(tmp_path: Path) -> None:
    with pytest.raises(StepFailed, match="must be a list"):
        await SchemaCheckStep().run({"schema": {}, "entities": {"a": 1}}, ctx(tmp_path))

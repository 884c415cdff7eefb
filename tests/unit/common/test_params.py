"""rb_common.params: trigger parameters against the runbook's JSON Schema, env by name."""

from __future__ import annotations

import pytest

from rb_common.loader import load_runbook_text
from rb_common.model import Runbook
from rb_common.params import (
    ParamsError,
    coerce_cli_value,
    env_names,
    env_snapshot,
    resolve_params,
)

SCHEMA = """\
parameters:
  type: object
  required: [region]
  properties:
    region: {type: string, enum: [eu, us]}
    batch_size: {type: integer, default: 200, maximum: 10000}
    dry_run: {type: boolean, default: false}
    tags: {type: array, items: {type: string}, default: [a]}
    limits:
      type: object
      properties: {cpu: {type: number, minimum: 0}}
  additionalProperties: false
"""


def runbook(extra: str = "", steps: str = "  - {id: a, type: transform}\n") -> Runbook:
    text = f"id: rb-params\nname: Params\n{extra}steps:\n{steps}"
    return load_runbook_text(text)[0]


def test_defaults_are_applied() -> None:
    params = resolve_params(runbook(SCHEMA), {"region": "eu"})
    assert params == {"region": "eu", "batch_size": 200, "dry_run": False, "tags": ["a"]}


def test_given_values_win_over_defaults() -> None:
    params = resolve_params(runbook(SCHEMA), {"region": "us", "batch_size": 5, "dry_run": True})
    assert (params["batch_size"], params["dry_run"]) == (5, True)


def test_defaults_are_copies() -> None:
    rb = runbook(SCHEMA)
    first = resolve_params(rb, {"region": "eu"})
    first["tags"].append("mutated")
    assert resolve_params(rb, {"region": "eu"})["tags"] == ["a"]
    assert rb.parameters is not None
    assert rb.parameters["properties"]["tags"]["default"] == ["a"]


def test_given_mapping_is_not_modified() -> None:
    given = {"region": "eu"}
    resolve_params(runbook(SCHEMA), given)
    assert given == {"region": "eu"}


def test_errors_name_each_field() -> None:
    with pytest.raises(ParamsError) as info:
        resolve_params(
            runbook(SCHEMA),
            {"region": "mars", "batch_size": 10**6, "limits": {"cpu": -1}, "colour": "red"},
        )
    problems = {p["field"]: p["message"] for p in info.value.problems}
    assert set(problems) == {"(root)", "region", "batch_size", "limits.cpu"}
    assert "'colour' was unexpected" in problems["(root)"]
    assert "'mars' is not one of ['eu', 'us']" in problems["region"]
    assert "1000000 is greater than the maximum of 10000" in problems["batch_size"]
    assert "-1 is less than the minimum of 0" in problems["limits.cpu"]
    text = str(info.value)
    assert text.startswith("invalid parameters: ")
    assert "region: 'mars' is not one of" in text and "limits.cpu: " in text


def test_missing_required_parameter() -> None:
    with pytest.raises(ParamsError) as info:
        resolve_params(runbook(SCHEMA), {})
    assert info.value.problems == [{"field": "(root)", "message": "'region' is a required property"}]


def test_wrong_type() -> None:
    with pytest.raises(ParamsError, match="batch_size: 'many' is not of type 'integer'"):
        resolve_params(runbook(SCHEMA), {"region": "eu", "batch_size": "many"})


def test_no_schema_accepts_anything() -> None:
    assert resolve_params(runbook(), {"x": 1}) == {"x": 1}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("5", 5),
        ("1.5", 1.5),
        ("true", True),
        ("null", None),
        ('"quoted"', "quoted"),
        ("[1, 2]", [1, 2]),
        ('{"a": 1}', {"a": 1}),
        ("plain words", "plain words"),
        ("eu-west-1", "eu-west-1"),
        ("", ""),
    ],
)
def test_coerce_cli_value(text: str, value: object) -> None:
    assert coerce_cli_value(text) == value


ENV_STEPS = """\
  - id: fetch
    type: data_fetch
    inputs:
      source_url: "${SOURCE_API_URL}/v1?size=${batch_size}"
      headers: {X-Home: "${env.HOME}", Auth: "Bearer ${secrets.TOKEN}"}
    when: "${env.ENABLED == 'yes'}"
    outputs: {rows: "$.rows"}
    rollback: {type: transform, inputs: {undo: "${UNDO_URL}"}}
"""


def test_env_names() -> None:
    rb = runbook(
        SCHEMA.replace("    dry_run:", "    SOURCE_FLAG: {type: string}\n    dry_run:")
        + "assumptions:\n  - ok: '${env.ASSUME}'\nkpis:\n  n: '${len(env.KPI_LIST)}'\n",
        ENV_STEPS,
    )
    # batch_size is a declared parameter, so `${batch_size}` is not an environment variable.
    assert env_names(rb) == {"SOURCE_API_URL", "HOME", "ENABLED", "UNDO_URL", "ASSUME", "KPI_LIST"}


def test_env_names_without_parameters() -> None:
    rb = runbook("", ENV_STEPS)
    assert "batch_size" in env_names(rb)
    assert "TOKEN" not in env_names(rb)  # secrets are not environment variables


def test_env_snapshot_keeps_only_what_the_runbook_reads() -> None:
    rb = runbook("", ENV_STEPS)
    environ = {"HOME": "/root", "SOURCE_API_URL": "https://x", "PATH": "/bin", "AWS_KEY": "s3cr3t"}
    assert env_snapshot(rb, environ) == {"HOME": "/root", "SOURCE_API_URL": "https://x"}

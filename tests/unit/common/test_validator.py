"""rb_common.validator: every error and warning `rb validate` reports, on small runbooks."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from rb_common.loader import load_runbook_text
from rb_common.validator import Issue, cron_problem, validate_file, validate_runbook

HEADER = """\
id: rb-test
name: Validator test
version: 1.0.0
legal_basis: "Unit tests, no data"
"""


def write(tmp_path: Path, body: str, header: str = HEADER, name: str = "rb.yaml") -> Path:
    path = tmp_path / name
    path.write_text(header + textwrap.dedent(body), encoding="utf-8")
    return path


def check(tmp_path: Path, body: str, header: str = HEADER) -> list[Issue]:
    runbook, issues = validate_file(write(tmp_path, body, header))
    assert runbook is not None, [str(i) for i in issues]
    return issues


def errors(issues: list[Issue]) -> list[str]:
    return [str(i) for i in issues if i.level == "error"]


def warnings(issues: list[Issue]) -> list[str]:
    return [str(i) for i in issues if i.level == "warning"]


def one_error(issues: list[Issue]) -> Issue:
    found = [i for i in issues if i.level == "error"]
    assert len(found) == 1, [str(i) for i in issues]
    return found[0]


# --- a clean runbook ----------------------------------------------------------------------

DESIGN_EXAMPLE = """\
id: rb-001-entity-enrichment
name: Entity Enrichment Pipeline
version: 1.0.0
owner: analytics-team
legal_basis: "Per IC Policy 12.3, automated enrichment authorized for FOUO data"
environment: production
assumptions:
  - source_data_validated: true
  - queue_is_small: "${params.batch_size <= 1000}"
parameters:
  type: object
  properties: {batch_size: {type: integer, default: 200, maximum: 10000}}
kpis:
  max_duration_seconds: 300
  min_success_rate: 0.95
  entities_processed: "${len(steps.enrich.outputs.enriched)}"
defaults: {retry: {max_attempts: 3, backoff: exponential, initial_delay: 1s, max_delay: 30s}}
triggers:
  - cron: "*/15 * * * *"
    timezone: UTC
  - alert: {source: alertmanager, match: {alertname: HighErrorRate}}
steps:
  - id: ingest
    type: data_fetch
    inputs: {source_url: "${SOURCE_API_URL}", auth_token: "${secrets.API_TOKEN}"}
    outputs: {entities: "$.data.entities"}
  - id: validate
    type: schema_check
    depends_on: [ingest]
    inputs: {entities: "${steps.ingest.outputs.entities}", schema: entity-v2.json}
    outputs: {valid_entities: "$.valid", errors: "$.errors"}
    on_failure: log_and_continue
  - id: enrich
    type: api_call
    depends_on: [validate]
    when: "${len(steps.validate.outputs.valid_entities) > 0}"
    inputs:
      endpoint: https://enrich.example/api
      entities: "${steps.validate.outputs.valid_entities}"
      rejected: "${len(steps.validate.outputs.errors)} rejected"
    outputs: {enriched: "$.results[*]"}
    rollback:
      type: api_call
      inputs: {endpoint: https://enrich.example/undo, ids: "${steps.enrich.outputs.enriched}"}
"""


def test_design_example_is_clean(tmp_path: Path) -> None:
    (tmp_path / "entity-v2.json").write_text('{"type": "object"}')
    path = tmp_path / "rb.yaml"
    path.write_text(DESIGN_EXAMPLE)
    runbook, issues = validate_file(path)
    assert runbook is not None
    assert runbook.id == "rb-001-entity-enrichment"
    assert issues == []


def test_issue_str_names_file_line_and_step() -> None:
    issue = Issue("error", "runbooks/x.yaml", "enrich", "boom", 12)
    assert str(issue) == "runbooks/x.yaml:12: step 'enrich': error: boom"
    assert str(Issue("warning", "x.yaml", None, "hm", None)) == "x.yaml: warning: hm"
    assert str(Issue("error", "x.yaml", "s", "bad", None)) == "x.yaml: step 's': error: bad"
    assert str(Issue("error", "x.yaml", None, "bad", 3)) == "x.yaml:3: error: bad"


# --- ids and the dependency graph -----------------------------------------------------------


def test_duplicate_step_ids(tmp_path: Path) -> None:
    issues = check(
        tmp_path,
        """\
        steps:
          - id: fetch
            type: transform
          - id: fetch
            type: transform
        """,
    )
    issue = one_error(issues)
    assert issue.step == "fetch"
    assert issue.line == 8
    assert "duplicate step id 'fetch' (first defined at line 6)" in str(issue)
    assert str(issue).startswith(f"{tmp_path / 'rb.yaml'}:8: step 'fetch': error:")


def test_missing_depends_on_target(tmp_path: Path) -> None:
    issues = check(
        tmp_path,
        """\
        steps:
          - id: first
            type: transform
          - id: second
            type: transform
            depends_on: [frist]
        """,
    )
    issue = one_error(issues)
    assert "step 'second'" in str(issue)
    assert "depends_on names unknown step 'frist' (steps: first, second)" in issue.message
    assert issue.line == 10


def test_depends_on_as_single_string(tmp_path: Path) -> None:
    issues = check(
        tmp_path,
        """\
        steps:
          - id: a
            type: transform
            outputs: {x: 1}
          - id: b
            type: transform
            depends_on: a
            inputs: {v: "${steps.a.outputs.x}"}
        """,
    )
    assert issues == []


def test_self_dependency(tmp_path: Path) -> None:
    issues = check(
        tmp_path,
        """\
        steps:
          - id: loop
            type: transform
            depends_on: [loop]
        """,
    )
    issue = one_error(issues)
    assert "step 'loop': error: step 'loop' depends on itself" in str(issue)


def test_cycle_is_named(tmp_path: Path) -> None:
    issues = check(
        tmp_path,
        """\
        steps:
          - id: alpha
            type: transform
            depends_on: [gamma]
          - id: beta
            type: transform
            depends_on: [alpha]
          - id: gamma
            type: transform
            depends_on: [beta]
          - id: free
            type: transform
        """,
    )
    issue = one_error(issues)
    assert issue.step == "alpha"
    assert "dependency cycle: alpha -> beta -> gamma -> alpha" in str(issue)
    assert issue.line == 8  # alpha's depends_on


def test_each_cycle_is_reported(tmp_path: Path) -> None:
    issues = check(
        tmp_path,
        """\
        steps:
          - id: a
            type: transform
            depends_on: [b]
          - id: b
            type: transform
            depends_on: [a]
          - id: c
            type: transform
            depends_on: [d]
          - id: d
            type: transform
            depends_on: [c]
        """,
    )
    found = errors(issues)
    assert len(found) == 2
    assert "dependency cycle: a -> b -> a" in found[0]
    assert "dependency cycle: c -> d -> c" in found[1]


# --- step types and inputs ------------------------------------------------------------------


def test_unknown_step_type_lists_known_types(tmp_path: Path) -> None:
    issues = check(
        tmp_path,
        """\
        steps:
          - id: fetch
            type: data_fetcher
        """,
    )
    issue = one_error(issues)
    assert "step 'fetch'" in str(issue)
    assert "unknown step type 'data_fetcher'" in issue.message
    assert "data_fetch" in issue.message and "schema_check" in issue.message
    assert issue.line == 7


def test_unknown_rollback_type(tmp_path: Path) -> None:
    issues = check(
        tmp_path,
        """\
        steps:
          - id: change
            type: transform
            rollback: {type: undo_it}
        """,
    )
    issue = one_error(issues)
    assert "step 'change'" in str(issue)
    assert "unknown rollback step type 'undo_it' (known: ai, api_call," in issue.message


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        ("type: data_fetch\n    inputs: {method: GET}", "missing required input 'source_url'"),
        ("type: api_call\n    inputs: {method: POST}", "missing required input 'endpoint'"),
        ("type: shell\n    inputs: {command: ls}", "input 'command': 'ls' is not of type 'array'"),
        ("type: wait\n    inputs: {seconds: 5 weeks}", "input 'seconds': invalid duration"),
        ("type: sql_query\n    inputs: {connection: db, query: q, colour: red}", "unknown input"),
        ("type: metrics_publish\n    inputs: {metrics: {up: yes}}", "input 'metrics'"),
    ],
)
def test_inputs_that_do_not_fit_the_type(tmp_path: Path, step: str, expected: str) -> None:
    issues = check(tmp_path, f"steps:\n  - id: work\n    {step}\n")
    issue = one_error(issues)
    assert "step 'work'" in str(issue)
    assert expected in issue.message


def test_inputs_with_expressions_are_checked_at_run_time(tmp_path: Path) -> None:
    issues = check(
        tmp_path,
        """\
        steps:
          - id: work
            type: shell
            inputs: {command: "${params.argv}"}
        """,
    )
    assert issues == []


def test_bad_rollback_inputs(tmp_path: Path) -> None:
    issues = check(
        tmp_path,
        """\
        steps:
          - id: change
            type: transform
            rollback: {type: api_call, inputs: {method: POST}}
        """,
    )
    issue = one_error(issues)
    assert "step 'change'" in str(issue)
    assert "rollback missing required input 'endpoint'" in issue.message


# --- expressions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (
            "steps:\n  - id: s\n    type: transform\n    inputs: {v: '${params.a +}'}\n",
            "inputs: invalid expression '${params.a +}'",
        ),
        (
            "steps:\n  - id: s\n    type: transform\n    when: '${params.a >}'\n",
            "when: invalid expression '${params.a >}'",
        ),
        (
            "steps:\n  - id: s\n    type: transform\n    when: 'params.a >'\n",
            "when: invalid expression '${params.a >}'",
        ),
        (
            "steps:\n  - id: s\n    type: transform\n    rollback: {type: transform, inputs: {v: '${(}'}}\n",
            "rollback inputs: invalid expression '${(}'",
        ),
        (
            "steps:\n  - id: s\n    type: transform\n    outputs: {v: 'n=${1 +}'}\n",
            "outputs: invalid expression '${1 +}'",
        ),
        (
            "steps:\n  - id: s\n    type: transform\n    inputs: {v: 'x ${params.a'}\n",
            "inputs: unterminated '${'",
        ),
        (
            "steps:\n  - id: s\n    type: wait\n    inputs: {until: 'params.ready =='}\n",
            "inputs: invalid expression '${params.ready ==}'",
        ),
    ],
)
def test_expression_syntax_in_steps(tmp_path: Path, body: str, where: str) -> None:
    issue = one_error(check(tmp_path, body))
    assert "step 's'" in str(issue)
    assert where in issue.message
    assert "syntax error" in issue.message or "unterminated" in issue.message


def test_expression_syntax_in_assumptions_and_kpis(tmp_path: Path) -> None:
    issues = check(
        tmp_path,
        """\
        assumptions:
          - small_batch: "${params.batch_size <=}"
        kpis:
          ratio: "${1 / }"
        steps:
          - id: s
            type: transform
        """,
    )
    found = errors(issues)
    assert len(found) == 2
    assert ":6: error: assumption 'small_batch': invalid expression '${params.batch_size <=}'" in (found[0])
    assert ":8: error: KPI 'ratio': invalid expression '${1 / }'" in found[1]


def test_hostile_expression_is_an_error_not_a_crash(tmp_path: Path) -> None:
    deep = "[" * 200 + "]" * 200
    issues = check(
        tmp_path,
        f"""\
        steps:
          - id: s
            type: transform
            inputs: {{deep: "${{{deep}}}", long: "${{{"1+" * 3000}1}}"}}
        """,
    )
    found = errors(issues)
    assert len(found) == 2
    assert "nested deeper than 50 levels" in found[0]
    assert "longer than 4000 characters" in found[1]


def test_unsupported_syntax(tmp_path: Path) -> None:
    issues = check(
        tmp_path,
        """\
        steps:
          - id: s
            type: transform
            inputs: {f: "${(lambda: 1)()}", m: "${params.a @ params.b}", w: "${(x := 1)}"}
        """,
    )
    found = " ".join(errors(issues))
    assert "'Lambda' is not supported" in found
    assert "operator 'MatMult' is not supported" in found
    assert "'NamedExpr' is not supported" in found


def test_unknown_root_names_and_functions(tmp_path: Path) -> None:
    issues = check(
        tmp_path,
        """\
        steps:
          - id: s
            type: transform
            inputs:
              a: "${batch_size + 1}"
              b: "${now()}"
              c: "${execution.finished_at}"
        """,
    )
    found = errors(issues)
    assert len(found) == 3
    assert all("step 's'" in f for f in found)
    assert "unknown name 'batch_size'" in found[0]
    assert "unknown function 'now'" in found[1] and "len" in found[1]
    assert "'execution.finished_at' in '${execution.finished_at}' does not exist" in found[2]


def test_known_names_functions_and_bare_names_are_fine(tmp_path: Path) -> None:
    issues = check(
        tmp_path,
        """\
        steps:
          - id: s
            type: transform
            inputs:
              bare: "${SOURCE_API_URL}"
              bare2: "token ${API_TOKEN} for ${batch_size}"
              names: "${[params.a, env.HOME, secrets.K, trigger.labels, execution.id]}"
              funcs: "${len(sorted([1])) + sum([1]) + min(1, 2) + max([3]) + abs(-1) + round(1.5)}"
              more: "${any([1]) and all([1]) and bool(1) and int('1') and float('1.5')}"
              text: "${lower('A') + upper('b') + str(1) + json({'a': 1})}"
              comp: "${[x * 2 for x in params.values if x > 1]}"
              fstr: "${f'{params.a}-{env.B}'}"
        """,
    )
    assert issues == []


def test_reference_to_unknown_step(tmp_path: Path) -> None:
    issues = check(
        tmp_path,
        """\
        steps:
          - id: s
            type: transform
            inputs: {v: "${steps.ghost.outputs.x}"}
        """,
    )
    issue = one_error(issues)
    assert "step 's'" in str(issue)
    assert "'${steps.ghost.outputs.x}' references unknown step 'ghost'" in issue.message


RELATED = """\
steps:
  - id: a
    type: transform
    outputs: {x: 1}
  - id: b
    type: transform
    depends_on: [a]
    outputs: {y: 2}
  - id: c
    type: transform
    depends_on: [b]
    inputs: {fromA: "${steps.a.outputs.x}", fromB: "${steps.b.outputs.y}"}
  - id: d
    type: transform
    inputs: {late: "${steps.c.status}"}
"""


def test_transitive_upstream_references_are_fine(tmp_path: Path) -> None:
    issues = check(tmp_path, RELATED.replace('late: "${steps.c.status}"', "k: 1"))
    assert issues == []


def test_reference_to_step_that_is_not_upstream(tmp_path: Path) -> None:
    issue = one_error(check(tmp_path, RELATED))
    assert issue.step == "d"
    assert "step 'd'" in str(issue)
    assert "'${steps.c.status}' reads step 'c', but 'c' is not upstream of 'd'" in issue.message
    assert "depends_on" in issue.message


def test_reference_to_downstream_step_in_when(tmp_path: Path) -> None:
    issues = check(
        tmp_path,
        """\
        steps:
          - id: a
            type: transform
            when: "steps.b.status == 'succeeded'"
          - id: b
            type: transform
            depends_on: [a]
        """,
    )
    issue = one_error(issues)
    assert "step 'a'" in str(issue) and "when:" in issue.message
    assert "'b' is not upstream of 'a'" in issue.message


def test_hyphenated_step_ids(tmp_path: Path) -> None:
    body = """\
        steps:
          - id: fetch-data
            type: transform
            outputs: {rows: 1}
          - id: use
            type: transform
            depends_on: [fetch-data]
            inputs: {n: "${steps.fetch-data.outputs.rows + 1}"}
        """
    assert check(tmp_path, body) == []
    issue = one_error(check(tmp_path, body.replace("depends_on: [fetch-data]", "")))
    assert "'fetch-data' is not upstream of 'use'" in issue.message


def test_rollback_may_read_its_own_step_but_inputs_may_not(tmp_path: Path) -> None:
    issues = check(
        tmp_path,
        """\
        steps:
          - id: create
            type: transform
            inputs: {again: "${steps.create.outputs.id}"}
            outputs: {id: "$.id"}
            rollback: {type: transform, inputs: {delete: "${steps.create.outputs.id}"}}
        """,
    )
    issue = one_error(issues)
    assert issue.line == 8
    assert "step 'create': error: inputs: '${steps.create.outputs.id}' reads step 'create'" in str(issue)
    assert "cannot read its own outputs" in issue.message


def test_assumptions_cannot_read_steps(tmp_path: Path) -> None:
    issues = check(
        tmp_path,
        """\
        assumptions:
          - fresh: "${steps.a.status == 'succeeded'}"
        steps:
          - id: a
            type: transform
        """,
    )
    issue = one_error(issues)
    assert "assumption 'fresh'" in issue.message
    assert "assumptions are checked before any step runs" in issue.message


def test_step_fields(tmp_path: Path) -> None:
    issues = check(
        tmp_path,
        """\
        steps:
          - id: a
            type: transform
          - id: b
            type: transform
            depends_on: [a]
            inputs: {s: "${steps.a.status}", e: "${steps.a.error}", r: "${steps.a.result}"}
        """,
    )
    issue = one_error(issues)
    assert "step 'b'" in str(issue)
    assert "steps.a has no 'result' (it has outputs, status, error)" in issue.message


def test_item_only_inside_for_each_inputs(tmp_path: Path) -> None:
    issues = check(
        tmp_path,
        """\
        steps:
          - id: loop
            type: for_each
            inputs:
              items: "${params.hosts}"
              step: {type: shell, inputs: {command: [ping, "${item}"]}}
          - id: outside
            type: transform
            inputs: {host: "${item.name}"}
          - id: self-ref
            type: for_each
            inputs: {items: "${item}", step: {type: transform}}
        """,
    )
    found = errors(issues)
    assert len(found) == 2
    assert "step 'outside'" in found[0]
    assert "'item' in '${item.name}' is only defined inside a for_each step's inputs" in found[0]
    assert "step 'self-ref'" in found[1] and "'item'" in found[1]


def test_reference_to_undeclared_output(tmp_path: Path) -> None:
    issues = check(
        tmp_path,
        """\
        steps:
          - id: a
            type: transform
            outputs: {rows: "$.rows"}
          - id: b
            type: transform
            depends_on: [a]
            inputs: {n: "${len(steps.a.outputs.row)}", m: "${steps.a.outputs.rows}"}
        """,
    )
    issue = one_error(issues)
    assert "step 'b'" in str(issue)
    assert "step 'a' declares no output 'row' (declared: rows)" in issue.message


def test_kpi_references_unknown_output(tmp_path: Path) -> None:
    issues = check(
        tmp_path,
        """\
        kpis:
          processed: "${len(steps.a.outputs.nope)}"
        steps:
          - id: a
            type: transform
        """,
    )
    issue = one_error(issues)
    assert "KPI 'processed'" in issue.message
    assert "step 'a' declares no output 'nope' (declared: none)" in issue.message


# --- outputs ----------------------------------------------------------------------------------


def test_unused_output_is_a_warning(tmp_path: Path) -> None:
    issues = check(
        tmp_path,
        """\
        steps:
          - id: a
            type: transform
            outputs: {used: "$.a", unused: "$.b", in_kpi: "$.c"}
          - id: b
            type: transform
            depends_on: [a]
            inputs: {v: "${steps.a.outputs.used}"}
        kpis:
          c: "${steps.a.outputs.in_kpi}"
        """,
    )
    assert errors(issues) == []
    (warning,) = warnings(issues)
    assert "step 'a': warning: output 'unused' is never used" in warning
    assert ":8:" in warning


def test_whole_outputs_reference_uses_every_output(tmp_path: Path) -> None:
    issues = check(
        tmp_path,
        """\
        steps:
          - id: a
            type: transform
            outputs: {x: 1, y: 2}
          - id: b
            type: transform
            depends_on: [a]
            inputs: {all: "${json(steps.a.outputs)}"}
        """,
    )
    assert issues == []


def test_invalid_jsonpath_output(tmp_path: Path) -> None:
    issues = check(
        tmp_path,
        """\
        steps:
          - id: a
            type: transform
            outputs: {broken: "$.items[?(@.x ==", fine: "$.data[*].id"}
        kpis:
          n: "${steps.a.outputs.broken} ${steps.a.outputs.fine}"
        """,
    )
    issue = one_error(issues)
    assert "step 'a'" in str(issue)
    assert "output 'broken': invalid JSONPath" in issue.message


# --- parameters, triggers, schema files, legal basis -----------------------------------------


def test_invalid_parameters_schema(tmp_path: Path) -> None:
    issues = check(
        tmp_path,
        """\
        parameters:
          type: object
          properties:
            batch_size: {type: integr}
        steps:
          - id: a
            type: transform
        """,
    )
    issue = one_error(issues)
    assert issue.step is None
    assert issue.line == 8
    assert "parameters is not a valid JSON Schema at properties.batch_size.type" in issue.message


def test_parameters_schema_honours_dollar_schema(tmp_path: Path) -> None:
    # Tuple-form `items` (a list) is valid in draft 7 but not in 2020-12, the default.
    body = """\
        parameters:
          {meta}
          type: object
          properties: {{pair: {{type: array, items: [{{type: string}}, {{type: integer}}]}}}}
        steps:
          - id: a
            type: transform
        """
    draft7 = body.format(meta='$schema: "http://json-schema.org/draft-07/schema#"')
    assert check(tmp_path, draft7) == []
    issue = one_error(check(tmp_path, body.format(meta="title: Latest draft")))
    assert "parameters is not a valid JSON Schema at properties.pair.items" in issue.message


def test_unknown_dollar_schema(tmp_path: Path) -> None:
    issues = check(
        tmp_path,
        """\
        parameters:
          $schema: "https://example.com/my-schema"
          type: object
        steps:
          - id: a
            type: transform
        """,
    )
    assert "parameters: unknown $schema 'https://example.com/my-schema'" in one_error(issues).message


def test_parameters_must_describe_an_object(tmp_path: Path) -> None:
    issues = check(
        tmp_path,
        """\
        parameters: {type: string}
        steps:
          - id: a
            type: transform
        """,
    )
    assert "parameters must describe an object" in one_error(issues).message


@pytest.mark.parametrize(
    ("cron", "expected"),
    [
        ("61 * * * *", "the last value (61) is higher than the maximum value (59)"),
        ("* * * *", "expected 5 fields (minute hour day month weekday) or 6 with seconds first"),
        ("0 0 * * funday", "invalid cron '0 0 * * funday'"),
        ("*/70 * * * * *", "step value (70)"),
        ("@daily", "got 1"),
    ],
)
def test_invalid_cron(tmp_path: Path, cron: str, expected: str) -> None:
    issues = check(
        tmp_path,
        f"""\
        triggers:
          - cron: "{cron}"
        steps:
          - id: a
            type: transform
        """,
    )
    issue = one_error(issues)
    assert issue.line == 6
    assert f"trigger #1: invalid cron '{cron}'" in issue.message
    assert expected in issue.message


@pytest.mark.parametrize("cron", ["*/15 * * * *", "0 9 * * mon-fri", "30 */5 * * * *", "0 0 1 1 *"])
def test_valid_cron(cron: str) -> None:
    assert cron_problem(cron) is None


def test_invalid_timezone(tmp_path: Path) -> None:
    issues = check(
        tmp_path,
        """\
        triggers:
          - cron: "0 * * * *"
            timezone: Mars/Olympus_Mons
          - cron: "0 * * * *"
            timezone: Europe/Berlin
        steps:
          - id: a
            type: transform
        """,
    )
    issue = one_error(issues)
    assert issue.line == 7
    assert "trigger #1: unknown timezone 'Mars/Olympus_Mons'" in issue.message


def test_schema_file_must_exist_next_to_the_runbook(tmp_path: Path) -> None:
    body = """\
        steps:
          - id: check
            type: schema_check
            inputs: {schema: schemas/entity.json, entities: []}
          - id: inline
            type: schema_check
            inputs: {schema: {type: object}, document: {}}
        """
    issue = one_error(check(tmp_path, body))
    assert "step 'check'" in str(issue)
    assert "schema file 'schemas/entity.json' not found next to the runbook" in issue.message
    assert issue.line == 8

    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "entity.json").write_text("{}")
    assert check(tmp_path, body) == []


def test_schema_file_in_rollback(tmp_path: Path) -> None:
    issues = check(
        tmp_path,
        """\
        steps:
          - id: a
            type: transform
            rollback: {type: schema_check, inputs: {schema: nope.json, document: {}}}
        """,
    )
    assert "rollback schema file 'nope.json' not found" in one_error(issues).message


def test_missing_legal_basis_is_a_warning(tmp_path: Path) -> None:
    issues = check(
        tmp_path,
        "steps:\n  - id: a\n    type: transform\n",
        header="id: rb-test\nname: No basis\n",
    )
    assert errors(issues) == []
    (warning,) = warnings(issues)
    assert "warning: no legal_basis" in warning


# --- files, lines, loading --------------------------------------------------------------------


def test_validate_runbook_without_file_context() -> None:
    runbook, _ = load_runbook_text(
        "id: x\nname: x\nsteps:\n  - {id: a, type: schema_check, inputs: {schema: s.json, entities: []}}\n"
        "  - {id: b, type: nope}\n"
    )
    issues = validate_runbook(runbook, "mem.yaml")
    assert [(i.level, i.step, i.line) for i in issues] == [
        ("error", "b", None),
        ("warning", None, None),
    ]
    assert str(issues[0]).startswith("mem.yaml: step 'b': error: unknown step type 'nope'")


def test_issues_are_ordered_by_line(tmp_path: Path) -> None:
    issues = check(
        tmp_path,
        """\
        steps:
          - id: a
            type: nope
          - id: b
            type: transform
            depends_on: [zzz]
        """,
    )
    assert [i.line for i in issues] == [7, 10]


def test_missing_file() -> None:
    runbook, issues = validate_file("/nonexistent/rb.yaml")
    assert runbook is None
    assert [str(i) for i in issues] == ["/nonexistent/rb.yaml: error: no such file"]


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    path = write(tmp_path, "steps:\n  - id: a\n    type: [transform\n")
    runbook, issues = validate_file(path)
    assert runbook is None
    (issue,) = issues
    assert issue.level == "error"
    assert issue.line is not None and issue.line >= 7
    assert "invalid YAML" in issue.message


def test_unknown_key_names_the_step(tmp_path: Path) -> None:
    path = write(
        tmp_path, "steps:\n  - id: a\n    type: transform\n  - id: b\n    typo: 1\n    type: transform\n"
    )
    runbook, issues = validate_file(path)
    assert runbook is None
    (issue,) = issues
    assert issue.line == 9
    assert issue.step == "b"
    assert "unknown key 'typo'" in str(issue)
    assert str(issue).startswith(f"{path}:9: step 'b': error:")


def test_load_error_outside_steps_names_no_step(tmp_path: Path) -> None:
    path = write(
        tmp_path, "steps:\n  - id: a\n    type: transform\ntriggers:\n  - {cron: '* * * * *', x: 1}\n"
    )
    _, issues = validate_file(path)
    (issue,) = issues
    assert issue.step is None
    assert "unknown key 'x'" in issue.message


def test_deeply_nested_yaml_does_not_crash(tmp_path: Path) -> None:
    path = write(
        tmp_path, "steps:\n  - id: a\n    type: transform\n    inputs: {v: " + "[" * 3000 + "]" * 3000 + "}\n"
    )
    runbook, issues = validate_file(path)
    assert runbook is None
    assert len(issues) == 1 and issues[0].level == "error"


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"id: \xff\xfe\n")
    runbook, issues = validate_file(path)
    assert runbook is None
    assert "cannot read" in issues[0].message


def test_a_schema_file_written_inline_in_files_needs_no_file(tmp_path: Path) -> None:
    body = """\
        steps:
          - id: check
            type: schema_check
            inputs: {schema: schemas/entity.json, entities: []}
        files: {schemas/entity.json: '{"type": "object"}'}
        """
    assert check(tmp_path, body) == []

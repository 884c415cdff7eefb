"""`rb validate`: static checks of a runbook beyond what the model enforces (DESIGN.md section 3).

Pure: the only I/O is reading the runbook file (`validate_file`) and checking that a
`schema_check` step's schema file exists next to the runbook. Every problem is an `Issue` naming
the file, the step (when there is one) and the line (when known); nothing here raises for bad
input.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import jsonschema
import networkx as nx
import simpleeval

from rb_common import flow_checks
from rb_common.cron import cron_problem
from rb_common.errors import ExpressionError, RunbookLoadError
from rb_common.expressions import (
    FUNCTIONS,
    ROOT_NAMES,
    iter_expressions,
    parse_expression,
    references,
    supported_syntax,
)
from rb_common.loader import Location, parse_yaml, runbook_from_data
from rb_common.model import Runbook, Step
from rb_common.outputs import OutputError, compile_jsonpath, is_jsonpath
from rb_common.step_specs import SPECS

Level = Literal["error", "warning"]

STEP_FIELDS = ("outputs", "status", "error")  # what `steps.<id>` holds at run time
EXECUTION_FIELDS = ("id", "started_at", "duration")
_BARE_NAME = re.compile(r"^\s*[A-Za-z_][A-Za-z0-9_]*\s*$")
# Inputs that hold one expression even when written without `${}` (e.g. `until: "a > 1"`).
_BARE_EXPRESSION_INPUTS = {"wait": ("until",), "branch": ("if",)}

# The syntax the evaluator can run: anything else parses but fails at run time, so reject it now.
_PROBE = simpleeval.EvalWithCompoundTypes(functions={})
_SUPPORTED_NODES, _SUPPORTED_OPERATORS = supported_syntax()
# FUNCTIONS plus the constructors (list, dict, ...) the compound-types evaluator always adds.
_FUNCTION_NAMES = frozenset(FUNCTIONS) | frozenset(_PROBE.functions)
del _PROBE


@dataclass(frozen=True)
class Issue:
    level: Level
    file: str
    step: str | None
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        step = f" step '{self.step}':" if self.step else ""
        return f"{where}:{step} {self.level}: {self.message}"


@dataclass
class _Scope:
    """Where an expression sits, which decides the names it may use."""

    what: str  # for messages: "inputs", "when", "rollback inputs", "outputs", "assumption", "KPI"
    step: Step | None = None
    allowed_steps: frozenset[str] | None = None  # None: any existing step
    item: bool = False  # inside a for_each step's inputs


@dataclass
class _Checker:
    runbook: Runbook
    file: str
    lines: dict[Location, int]
    base_dir: Path | None
    issues: list[Issue] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)  # step id -> first position
    graph: nx.DiGraph = field(default_factory=nx.DiGraph)  # dependency -> dependant
    used_outputs: set[tuple[str, str]] = field(default_factory=set)  # (step, output | "*")

    # -- reporting -------------------------------------------------------------------------

    def line(self, *loc: Any) -> int | None:
        """The line of `loc`, or of its nearest enclosing location that has one."""
        for cut in range(len(loc), 0, -1):
            found = self.lines.get(tuple(loc[:cut]))
            if found:
                return found
        return None

    def add(
        self,
        level: Level,
        message: str,
        step: str | None = None,
        loc: Location = (),
    ) -> None:
        self.issues.append(Issue(level, self.file, step, message, self.line(*loc)))

    def error(self, message: str, step: str | None = None, loc: Location = ()) -> None:
        self.add("error", message, step, loc)

    def warning(self, message: str, step: str | None = None, loc: Location = ()) -> None:
        self.add("warning", message, step, loc)

    # -- the checks ------------------------------------------------------------------------

    def run(self) -> list[Issue]:
        for check in (
            self.check_ids,
            self.check_dependencies,
            self.check_types_and_inputs,
            self.check_expressions,
            self.check_outputs,
            self.check_parameters,
            self.check_triggers,
            self.check_shell_interpolation,
            self.check_legal_basis,
            self.check_flow,
        ):
            try:
                check()
            except Exception as exc:  # a validator bug must not hide the other findings
                name = check.__name__.removeprefix("check_").replace("_", " ")
                self.error(f"internal error while checking {name}: {type(exc).__name__}: {exc}")
        return sorted(self.issues, key=lambda issue: issue.line or 0)

    def check_ids(self) -> None:
        for i, step in enumerate(self.runbook.steps):
            if step.id in self.index:
                first = self.index[step.id]
                where = self.line("steps", first)
                at = f" at line {where}" if where else f" as step #{first + 1}"
                self.error(f"duplicate step id '{step.id}' (first defined{at})", step.id, ("steps", i, "id"))
            else:
                self.index[step.id] = i
                self.graph.add_node(step.id)

    def check_dependencies(self) -> None:
        known = ", ".join(self.index) or "none"
        for i, step in enumerate(self.runbook.steps):
            for j, dep in enumerate(step.depends_on):
                loc = ("steps", i, "depends_on", j)
                if dep == step.id:
                    self.error(f"step '{step.id}' depends on itself", step.id, loc)
                elif dep not in self.index:
                    self.error(f"depends_on names unknown step '{dep}' (steps: {known})", step.id, loc)
                elif self.index.get(step.id) == i:
                    self.graph.add_edge(dep, step.id)
        position = self.index.get
        for component in nx.strongly_connected_components(self.graph):
            if len(component) < 2:
                continue
            edges = nx.find_cycle(self.graph.subgraph(component))
            cycle = [u for u, _ in edges]
            start = min(range(len(cycle)), key=lambda k: position(cycle[k], 0))
            cycle = cycle[start:] + cycle[:start]
            shown = " -> ".join([*cycle, cycle[0]])
            first = cycle[0]
            self.error(
                f"dependency cycle: {shown} (each step waits for the one before it)",
                first,
                ("steps", self.index[first], "depends_on"),
            )

    def upstream(self, step_id: str) -> frozenset[str]:
        if step_id not in self.graph:
            return frozenset()
        return frozenset(nx.ancestors(self.graph, step_id) - {step_id})

    def check_types_and_inputs(self) -> None:
        known = ", ".join(sorted(SPECS))
        for i, step in enumerate(self.runbook.steps):
            blocks: list[tuple[str, dict[str, Any], Location, str]] = [
                (step.type, step.inputs, ("steps", i), "")
            ]
            if step.rollback is not None:
                blocks.append(
                    (step.rollback.type, step.rollback.inputs, ("steps", i, "rollback"), "rollback ")
                )
            for type_name, inputs, loc, label in blocks:
                spec = SPECS.get(type_name)
                if spec is None:
                    self.error(
                        f"unknown {label}step type '{type_name}' (known: {known})",
                        step.id,
                        (*loc, "type"),
                    )
                    continue
                for problem in spec.check(inputs):
                    key = re.search(r"input '([^']+)'", problem)
                    where = (*loc, "inputs", key.group(1)) if key else (*loc, "inputs")
                    self.error(f"{label}{problem}", step.id, where)
                if type_name == "schema_check":
                    self.check_schema_file(step, inputs, (*loc, "inputs", "schema"), label)

    def check_flow(self) -> None:
        for message, step_id, loc in flow_checks.problems(self.runbook):
            self.error(message, step_id, loc)

    def check_schema_file(self, step: Step, inputs: dict[str, Any], loc: Location, label: str) -> None:
        schema = inputs.get("schema")
        if self.base_dir is None or not isinstance(schema, str) or "${" in schema:
            return
        if schema in self.runbook.files:  # written inline in the runbook
            return
        path = self.base_dir / schema
        if not path.is_file():
            self.error(
                f"{label}schema file '{schema}' not found next to the runbook (looked for {path})",
                step.id,
                loc,
            )

    # -- expressions -----------------------------------------------------------------------

    def check_expressions(self) -> None:
        for i, step in enumerate(self.runbook.steps):
            upstream = self.upstream(step.id)
            spec_inputs = step.inputs
            for key, value in spec_inputs.items():
                scope = _Scope(
                    "inputs",
                    step,
                    upstream,
                    item=step.type == "for_each" and key != "items",
                )
                bare = key in _BARE_EXPRESSION_INPUTS.get(step.type, ())
                if step.type == "branch" and key == "cases" and isinstance(value, list):
                    for c, case in enumerate(value):  # each `when` is one expression, `${}` or not
                        if isinstance(case, dict) and "when" in case:
                            self.scan(case["when"], ("steps", i, "inputs", key, c, "when"), scope, bare=True)
                    continue
                self.scan(value, ("steps", i, "inputs", key), scope, bare=bare)
            if isinstance(step.when, str):
                self.scan(step.when, ("steps", i, "when"), _Scope("when", step, upstream), bare=True)
            if step.rollback is not None:
                scope = _Scope("rollback inputs", step, upstream | {step.id})
                self.scan(step.rollback.inputs, ("steps", i, "rollback", "inputs"), scope)
            self.scan(step.outputs, ("steps", i, "outputs"), _Scope("outputs", step, upstream))
        for j, assumption in enumerate(self.runbook.assumptions):
            loc = self.assumption_loc(j, assumption.name)
            scope = _Scope(f"assumption '{assumption.name}'", None, frozenset())
            self.scan(assumption.expect, loc, scope)
        for name, value in self.runbook.kpis.custom.items():
            self.scan(value, ("kpis", name), _Scope(f"KPI '{name}'"))

    def assumption_loc(self, j: int, name: str) -> Location:
        for loc in (("assumptions", j, name), ("assumptions", name), ("assumptions", j)):
            if loc in self.lines:
                return loc
        return ("assumptions",)

    def scan(self, value: Any, loc: Location, scope: _Scope, bare: bool = False) -> None:
        """Check every expression inside `value` (walked once, even where YAML aliases repeat)."""
        seen: set[int] = set()
        for path, text in _strings(value, loc, seen):
            if "${" in text:
                try:
                    bodies = [body for _, _, body in iter_expressions(text)]
                except ExpressionError as exc:
                    self.error(f"{scope.what}: {exc}", _sid(scope), path)
                    continue
                for body in bodies:
                    self.check_expression(body, path, scope)
            elif bare and path == loc and text.strip():
                self.check_expression(text, path, scope)

    def check_expression(self, body: str, loc: Location, scope: _Scope) -> None:
        sid = _sid(scope)
        shown = "${" + body + "}"
        try:
            tree = parse_expression(body)
            refs = list(references(body))
        except ExpressionError as exc:
            self.error(f"{scope.what}: invalid expression '{shown}': {exc}", sid, loc)
            return
        except Exception as exc:  # parse_expression is expected to raise only ExpressionError
            self.error(f"{scope.what}: invalid expression '{shown}': {type(exc).__name__}: {exc}", sid, loc)
            return
        for problem in _unsupported_syntax(tree):
            self.error(f"{scope.what}: {problem} in '{shown}'", sid, loc)
        if _BARE_NAME.match(body) and body.strip() not in ROOT_NAMES | _FUNCTION_NAMES:
            return  # `${NAME}`: a parameter, else an environment variable
        local = _comprehension_names(tree)
        called = {
            node.func.id
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        }
        for ref in refs:
            root = ref[0]
            if root in local:
                continue
            if root in called:
                if root not in _FUNCTION_NAMES:
                    functions = ", ".join(sorted(_FUNCTION_NAMES))
                    self.error(
                        f"{scope.what}: unknown function '{root}' in '{shown}' (functions: {functions})",
                        sid,
                        loc,
                    )
                continue
            if root in _FUNCTION_NAMES:
                continue
            if root not in ROOT_NAMES:
                names = ", ".join(sorted(ROOT_NAMES))
                self.error(
                    f"{scope.what}: unknown name '{root}' in '{shown}' (names: {names}; "
                    f"a bare '${{NAME}}' alone reads a parameter or environment variable)",
                    sid,
                    loc,
                )
            elif root in ("item", "index") and not scope.item:
                self.error(
                    f"{scope.what}: '{root}' in '{shown}' is only defined inside a for_each step's inputs",
                    sid,
                    loc,
                )
            elif root == "execution" and len(ref) > 1 and ref[1] not in EXECUTION_FIELDS:
                self.error(
                    f"{scope.what}: 'execution.{ref[1]}' in '{shown}' does not exist "
                    f"(execution has {', '.join(EXECUTION_FIELDS)})",
                    sid,
                    loc,
                )
            elif root == "steps":
                self.check_step_reference(ref, shown, loc, scope)

    def check_step_reference(self, ref: tuple[str, ...], shown: str, loc: Location, scope: _Scope) -> None:
        sid = _sid(scope)
        if len(ref) < 2:
            self.used_outputs.update((s, "*") for s in self.index)
            return
        target = ref[1]
        if target not in self.index:
            known = ", ".join(self.index) or "none"
            self.error(
                f"{scope.what}: '{shown}' references unknown step '{target}' (steps: {known})",
                sid,
                loc,
            )
            return
        if scope.allowed_steps is not None and target not in scope.allowed_steps:
            if scope.step is None:
                reason = "assumptions are checked before any step runs"
            elif target == sid:
                own = ref[2] if len(ref) > 2 else "result"
                reason = f"a step cannot read its own {own} (only its rollback can)"
            else:
                reason = (
                    f"'{target}' is not upstream of '{sid}': add it to depends_on "
                    "(directly or through another step)"
                )
            self.error(f"{scope.what}: '{shown}' reads step '{target}', but {reason}", sid, loc)
        if len(ref) < 3:
            self.used_outputs.add((target, "*"))
            return
        if ref[2] not in STEP_FIELDS:
            self.error(
                f"{scope.what}: '{shown}': steps.{target} has no '{ref[2]}' "
                f"(it has {', '.join(STEP_FIELDS)})",
                sid,
                loc,
            )
            return
        if ref[2] != "outputs":
            return
        if len(ref) < 4:
            self.used_outputs.add((target, "*"))
            return
        name = ref[3]
        target_step = self.runbook.steps[self.index[target]]
        declared = target_step.outputs or flow_checks.IMPLICIT_OUTPUTS.get(target_step.type, {})
        self.used_outputs.add((target, name))
        if name not in declared:
            have = ", ".join(declared) or "none"
            self.error(
                f"{scope.what}: '{shown}': step '{target}' declares no output '{name}' (declared: {have})",
                sid,
                loc,
            )

    # -- outputs, parameters, triggers -----------------------------------------------------

    def check_outputs(self) -> None:
        for i, step in enumerate(self.runbook.steps):
            first = self.index.get(step.id) == i
            for name, spec in step.outputs.items():
                loc = ("steps", i, "outputs", name)
                if is_jsonpath(spec):
                    try:
                        compile_jsonpath(spec)
                    except OutputError as exc:
                        self.error(f"output '{name}': {exc}", step.id, loc)
                if not first:
                    continue
                if (step.id, name) not in self.used_outputs and (step.id, "*") not in self.used_outputs:
                    self.warning(
                        f"output '{name}' is never used (no expression reads steps.{step.id}.outputs.{name})",
                        step.id,
                        loc,
                    )

    def check_parameters(self) -> None:
        schema = self.runbook.parameters
        if schema is None:
            return
        meta = schema.get("$schema")
        cls: Any = jsonschema.Draft202012Validator
        if meta is not None:
            found = (
                jsonschema.validators.validator_for(schema, default=None) if isinstance(meta, str) else None
            )
            if found is None:
                self.error(
                    f"parameters: unknown $schema {meta!r} "
                    "(e.g. https://json-schema.org/draft/2020-12/schema)",
                    None,
                    ("parameters", "$schema"),
                )
                return
            cls = found
        try:
            cls.check_schema(schema)
        except jsonschema.SchemaError as exc:
            path = list(exc.absolute_path)
            at = f" at {'.'.join(map(str, path))}" if path else ""
            self.error(
                f"parameters is not a valid JSON Schema{at}: {exc.message}",
                None,
                ("parameters", *path),
            )
            return
        kind = schema.get("type")
        kinds = kind if isinstance(kind, list) else [kind]
        if kind is not None and "object" not in kinds:
            self.error(
                f"parameters must describe an object (type: object), not type {kind!r}",
                None,
                ("parameters", "type"),
            )

    def check_triggers(self) -> None:
        for j, trigger in enumerate(self.runbook.triggers):
            try:
                ZoneInfo(trigger.timezone)
            except Exception:
                self.error(
                    f"trigger #{j + 1}: unknown timezone {trigger.timezone!r} "
                    "(use an IANA name such as UTC or Europe/Berlin)",
                    None,
                    ("triggers", j, "timezone"),
                )
            if trigger.cron is not None:
                problem = cron_problem(trigger.cron)
                if problem:
                    self.error(f"trigger #{j + 1}: {problem}", None, ("triggers", j, "cron"))

    def check_shell_interpolation(self) -> None:
        """Warn where trigger data (`${trigger.*}`, or a parameter a trigger fills from it) is
        interpolated into a shell command string: a command element that is not exactly one
        expression, the script of `sh -c`, or the stdin of a shell. An alert label then
        becomes shell code; pass it through `env:` or as an argv element of its own instead."""
        fed = _trigger_fed_params(self.runbook)
        for i, step in enumerate(self.runbook.steps):
            blocks: list[tuple[str, dict[str, Any], Location, str]] = [
                (step.type, step.inputs, ("steps", i), "")
            ]
            if step.rollback is not None:
                blocks.append(
                    (step.rollback.type, step.rollback.inputs, ("steps", i, "rollback"), "rollback ")
                )
            for type_name, inputs, loc, label in blocks:
                if type_name != "shell":
                    continue
                command = inputs.get("command")
                if not isinstance(command, list):
                    continue
                shell = bool(command) and isinstance(command[0], str) and _is_shell(command[0])
                for k, element in enumerate(command):
                    if not isinstance(element, str):
                        continue
                    what = _trigger_data_in(element, fed)
                    if what is None:
                        continue
                    script = shell and k >= 2 and _is_dash_c(command[k - 1])
                    if script or not _exactly_one_expression(element):
                        where = "the script of a shell's -c" if script else "a command string"
                        self.warning(
                            f"{label}trigger data ({what}) is interpolated into {where}: a crafted "
                            'alert runs its own commands. Pass it through `env:` (and quote "$VAR" in '
                            "the script) or as an argv element of its own",
                            step.id,
                            (*loc, "inputs", "command", k),
                        )
                stdin = inputs.get("stdin")
                if shell and isinstance(stdin, str) and not any(_is_dash_c(c) for c in command[1:]):
                    what = _trigger_data_in(stdin, fed)
                    if what is not None:
                        self.warning(
                            f"{label}trigger data ({what}) is the stdin of a shell: it runs as its "
                            "script. Pass it through `env:` instead",
                            step.id,
                            (*loc, "inputs", "stdin"),
                        )

    def check_legal_basis(self) -> None:
        if not (self.runbook.legal_basis or "").strip():
            self.warning("no legal_basis: say under which authority this runbook runs", None, ("id",))


_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "ash", "fish", "busybox"})


def _is_shell(program: str) -> bool:
    return program.rsplit("/", 1)[-1] in _SHELLS


def _is_dash_c(arg: Any) -> bool:
    """`-c`, or combined short options that include it (`-ec`, `-lc`)."""
    return isinstance(arg, str) and arg.startswith("-") and not arg.startswith("--") and "c" in arg[1:]


def _exactly_one_expression(text: str) -> bool:
    try:
        found = list(iter_expressions(text))
    except ExpressionError:
        return False
    return len(found) == 1 and found[0][0] == 0 and found[0][1] == len(text)


def _trigger_fed_params(runbook: Runbook) -> frozenset[str]:
    """Parameters some trigger fills from trigger data (`params: {x: "${trigger...}"}`)."""
    out: set[str] = set()
    for trigger in runbook.triggers:
        for name, value in (trigger.params or {}).items():
            if isinstance(value, str) and _trigger_data_in(value, frozenset()) is not None:
                out.add(name)
    return frozenset(out)


def _trigger_data_in(text: str, fed: frozenset[str]) -> str | None:
    """What trigger data an expression in `text` reads (`trigger`, `params.x` filled from it)."""
    if "${" not in text:
        return None
    try:
        bodies = [body for _, _, body in iter_expressions(text)]
    except ExpressionError:
        return None
    for body in bodies:
        if re.search(r"(?<![\w.])trigger\b", body):
            return "${trigger...}"
        for name in sorted(fed):
            if re.search(
                rf"(?<![\w.])params\s*(\.\s*{re.escape(name)}\b|\[\s*['\"]{re.escape(name)}['\"])", body
            ):
                return f"params.{name}, filled from the trigger"
    return None


def _sid(scope: _Scope) -> str | None:
    return scope.step.id if scope.step is not None else None


def _strings(value: Any, loc: Location, seen: set[int]) -> Iterator[tuple[Location, str]]:
    """(location, text) of every string inside `value`, mapping keys excluded."""
    if isinstance(value, str):
        yield loc, value
        return
    if not isinstance(value, dict | list):
        return
    if id(value) in seen:
        return
    seen.add(id(value))
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        yield from _strings(item, (*loc, key), seen)


def _comprehension_names(tree: ast.AST) -> set[str]:
    return {
        name.id
        for node in ast.walk(tree)
        if isinstance(node, ast.comprehension)
        for name in ast.walk(node.target)
        if isinstance(name, ast.Name)
    }


def _unsupported_syntax(tree: ast.AST) -> list[str]:
    problems: list[str] = []
    # The evaluator unpacks `*x` inside a list or set literal only.
    in_list = {
        id(element)
        for node in ast.walk(tree)
        if isinstance(node, ast.List | ast.Set)
        for element in node.elts
        if isinstance(element, ast.Starred)
    }
    for node in ast.walk(tree):
        if id(node) in in_list:
            continue
        if isinstance(node, ast.expr) and type(node) not in _SUPPORTED_NODES:
            problems.append(f"'{type(node).__name__}' is not supported in expressions")
        ops: list[ast.AST] = []
        if isinstance(node, ast.BinOp | ast.UnaryOp):
            ops.append(node.op)
        elif isinstance(node, ast.Compare):
            ops.extend(node.ops)
        problems.extend(
            f"operator '{type(op).__name__}' is not supported in expressions"
            for op in ops
            if type(op) not in _SUPPORTED_OPERATORS
        )
    return list(dict.fromkeys(problems))


def validate_runbook(
    runbook: Runbook,
    file: str,
    lines: dict[Location, int] | None = None,
    base_dir: Path | None = None,
) -> list[Issue]:
    """Every problem found in an already-loaded runbook, ordered by line.

    `lines` maps locations such as ('steps', 2, 'inputs') to line numbers (from `parse_yaml`);
    `base_dir` is the runbook's directory, for `schema_check` schema files (unchecked if None).
    """
    return _Checker(runbook, file, dict(lines or {}), base_dir).run()


def validate_file(path: str | Path) -> tuple[Runbook | None, list[Issue]]:
    """Load and check one runbook file. A file that does not load gives one error and no model."""
    p = Path(path)
    file = str(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [Issue("error", file, None, "no such file")]
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Issue("error", file, None, f"cannot read: {exc}")]
    return validate_text(text, file, p.parent)


def validate_text(text: str, file: str, base_dir: Path | None = None) -> tuple[Runbook | None, list[Issue]]:
    """Load and check a runbook's text (the console's editor: `base_dir` None leaves the files a
    step names unchecked). A text that does not load gives one error and no model."""
    data: Any = None
    lines: dict[Location, int] = {}
    try:
        data, lines = parse_yaml(text, file)
        runbook = runbook_from_data(data, file, lines)
    except RunbookLoadError as exc:
        step = _step_at(data, lines, exc.line)
        return None, [Issue("error", file, step, exc.message, exc.line)]
    except RecursionError:
        return None, [Issue("error", file, None, "invalid YAML: nested too deeply")]
    except Exception as exc:  # the loader should only raise RunbookLoadError; never crash here
        return None, [Issue("error", file, None, f"cannot load: {type(exc).__name__}: {exc}")]
    return runbook, validate_runbook(runbook, file, lines, base_dir)


def _step_at(data: Any, lines: dict[Location, int], line: int | None) -> str | None:
    """The id of the step whose YAML block holds `line`, for load errors."""
    if line is None or not isinstance(data, dict) or not isinstance(data.get("steps"), list):
        return None
    start_of_steps = lines.get(("steps",), 0)
    after = [n for key in data if (n := lines.get((key,), 0)) > start_of_steps]
    if line < start_of_steps or (after and line >= min(after)):
        return None
    found: str | None = None
    for i, step in enumerate(data["steps"]):
        start = lines.get(("steps", i))
        if start is None or start > line:
            break
        step_id = step.get("id") if isinstance(step, dict) else None
        found = step_id if isinstance(step_id, str) else None
    return found

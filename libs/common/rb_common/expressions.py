"""The `${...}` expression language: a safe evaluator over simpleeval, never `eval`.

Names: params, env, secrets, steps, execution, trigger, item. Dotted access reads mapping keys
only (no Python attributes at all), so `steps.x.outputs.items` is the output named `items`.

Deterministic: a result never depends on the process (PYTHONHASHSEED), so a replay in another
process evaluates exactly what the recording did. Python sets iterate in hash order, so set
literals, set comprehensions and `set()` build an `OrderedSet` instead: deduplicated like a set
(the first of equal values stays), iterated in first-insertion order. `a | b` is a's elements then
b's new ones, `a & b` and `a - b` keep a's order, `a ^ b` is `a - b` then `b - a`. A set in a
result leaves the evaluator as a list in that order (JSON has no sets).

Bounded: every evaluation has a budget, enforced while it runs, not after. Each node evaluated
is a step (at most MAX_STEPS), and every value an expression builds (strings, lists, dicts, sets,
slices, function results) is charged to an allocation estimate (at most MAX_ALLOCATED_BYTES):
operations that could build something large (`*`, `+`, `str`, `json`, `upper`, `lower`,
`sorted`, starred literals) check what they would build *before* building it, so
`['a' * 99999 for x in [1] * 9999]` stops after a few MiB instead of allocating a GiB. The final
result is also bounded as JSON (MAX_RESULT_ITEMS, MAX_RESULT_CHARS): what is recorded stays small.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from collections.abc import Set as AbstractSet
from functools import lru_cache
from typing import Any

import simpleeval

from rb_common.errors import ExpressionError

MAX_EXPRESSION_LENGTH = 4000
MAX_NESTING = 50
# Bounds on what one evaluation may build: names hold JSON data, so these are generous for
# real outputs and stop memory and CPU bombs early.
MAX_RESULT_ITEMS = 1_000_000
MAX_RESULT_CHARS = 10_000_000
MAX_INT_BITS = 10_000
# The budget of one evaluation (see the module doc): nodes evaluated, and an estimate of the
# bytes of every value built. Real expressions use a few hundred steps and a few KiB.
MAX_STEPS = 200_000
MAX_ALLOCATED_BYTES = 32 * 1024 * 1024

# `steps.my-step.outputs` must mean the step named "my-step", not a subtraction.
_HYPHEN_STEP_REF = re.compile(r"\bsteps\.([A-Za-z_][A-Za-z0-9_]*(?:-[A-Za-z0-9_]+)+)")
_BARE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

ROOT_NAMES = frozenset({"params", "env", "secrets", "steps", "execution", "trigger", "item", "index"})


class BudgetExceeded(ExpressionError):
    """An evaluation went over its step or allocation budget (and stopped there)."""


class OrderedSet(AbstractSet[Any]):
    """A set that iterates in first-insertion order, never in hash order (see the module doc).

    Immutable (expressions cannot call methods) and, like `set`, unhashable."""

    __slots__ = ("_items",)
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, items: Iterable[Any] = ()) -> None:
        self._items: dict[Any, None] = dict.fromkeys(items)

    def __contains__(self, value: object) -> bool:
        try:
            return value in self._items
        except TypeError:  # unhashable: like `[1] in set()`, which raises too
            raise TypeError(f"unhashable type: '{type(value).__name__}'") from None

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return "{" + ", ".join(map(repr, self._items)) + "}" if self._items else "set()"

    def __or__(self, other: Any) -> OrderedSet:
        if not isinstance(other, AbstractSet):
            return NotImplemented
        return OrderedSet([*self._items, *other])

    def __ror__(self, other: Any) -> OrderedSet:
        if not isinstance(other, AbstractSet):
            return NotImplemented
        return OrderedSet([*other, *self._items])

    def __and__(self, other: Any) -> OrderedSet:
        if not isinstance(other, AbstractSet):
            return NotImplemented
        return OrderedSet(v for v in self._items if v in other)

    def __rand__(self, other: Any) -> OrderedSet:
        if not isinstance(other, AbstractSet):
            return NotImplemented
        return OrderedSet(v for v in other if v in self._items)

    def __sub__(self, other: Any) -> OrderedSet:
        if not isinstance(other, AbstractSet):
            return NotImplemented
        return OrderedSet(v for v in self._items if v not in other)

    def __rsub__(self, other: Any) -> OrderedSet:
        if not isinstance(other, AbstractSet):
            return NotImplemented
        return OrderedSet(v for v in other if v not in self._items)

    def __xor__(self, other: Any) -> OrderedSet:
        if not isinstance(other, AbstractSet):
            return NotImplemented
        return OrderedSet([*(v for v in self._items if v not in other), *(v for v in other if v not in self)])

    def __rxor__(self, other: Any) -> OrderedSet:
        if not isinstance(other, AbstractSet):
            return NotImplemented
        return OrderedSet(other) ^ self


def _plain(value: Any) -> Any:
    """`value` with every OrderedSet turned into a list (its iteration order)."""
    kind = type(value)
    if kind is OrderedSet:
        return [_plain(v) for v in value]
    if kind is list:
        return [_plain(v) for v in value]
    if kind is tuple:
        return tuple(_plain(v) for v in value)
    if kind is dict:
        return {k: _plain(v) for k, v in value.items()}
    return value


def _json_default(value: Any) -> Any:
    return list(value) if isinstance(value, OrderedSet) else str(value)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=_json_default)


def _bits(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return math.log2(abs(value)) if value else 0.0


def _safe_pow(a: Any, b: Any) -> Any:
    if isinstance(b, int | float) and _bits(a) * abs(b) > MAX_INT_BITS:
        raise ExpressionError(f"{a} ** {b} is too large")
    return simpleeval.safe_power(a, b)


def _safe_mult(a: Any, b: Any) -> Any:
    if _bits(a) + _bits(b) > MAX_INT_BITS:
        raise ExpressionError("product is too large")
    return simpleeval.safe_mult(a, b)


def _safe_mod(a: Any, b: Any) -> Any:
    if isinstance(a, str | bytes):
        raise ExpressionError("'%' string formatting is not supported")
    return a % b


def _sum(values: Any, start: Any = 0) -> Any:
    """Numbers only: list concatenation through sum() is quadratic and cannot be interrupted."""
    items = list(values)
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in [*items, start]):
        raise ExpressionError("sum() adds numbers only")
    return sum(items, start)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "len": len,
    "sum": _sum,
    "min": min,
    "max": max,
    "any": any,
    "all": all,
    "abs": abs,
    "round": round,
    "sorted": sorted,
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "lower": lambda s: str(s).lower(),
    "upper": lambda s: str(s).upper(),
    "json": _json,
}


OPERATORS = {
    **simpleeval.DEFAULT_OPERATORS,
    ast.Pow: _safe_pow,
    ast.Mult: _safe_mult,
    ast.Mod: _safe_mod,
}


_SEQUENCES = (str, list, tuple)
_SIZED = (str, list, tuple, dict, OrderedSet)
# Nodes whose value is (or may be) a new object, charged to the allocation budget; names,
# attributes, indexes and constants hand back what already exists.
_BUILDERS = (
    ast.BinOp,
    ast.Call,
    ast.List,
    ast.Tuple,
    ast.Dict,
    ast.Set,
    ast.ListComp,
    ast.SetComp,
    ast.DictComp,
    ast.GeneratorExp,
    ast.JoinedStr,
)


_PLAIN = frozenset({str, int, float, bool, type(None), list, tuple, dict})


def _expanded_size(
    item: Any,
    seen: dict[int, tuple[Any, int, int]],
    max_items: int = MAX_RESULT_ITEMS,
    max_chars: int = MAX_RESULT_CHARS,
) -> tuple[int, int]:
    """(items, characters) of `item` written out as JSON, shared references counted each time
    they appear (as they would be written), each distinct object measured once; the walk stops
    as soon as either count is over its maximum."""
    kind = type(item)
    if kind is str:
        return 1, len(item)
    if kind not in (list, tuple, dict, OrderedSet):
        return 1, 0
    known = seen.get(id(item))
    if known is not None and known[0] is item:
        return known[1], known[2]
    items, chars = 1, 0
    children = list(item.items()) if kind is dict else item
    for child in children:
        if kind is dict:
            key, child = child
            chars += len(key) if isinstance(key, str) else 0
        sub_items, sub_chars = _expanded_size(child, seen, max_items, max_chars)
        items += sub_items
        chars += sub_chars
        if items > max_items or chars > max_chars:
            break
    seen[id(item)] = (item, items, chars)
    return items, chars


def _footprint(value: Any) -> int:
    """Estimated bytes of `value` itself (not of what it refers to)."""
    kind = type(value)
    if kind is str:
        return 49 + len(value)
    if kind in (list, tuple):
        return 56 + 8 * len(value)
    if kind in (dict, OrderedSet):
        return 64 + 40 * len(value)
    if kind is int:
        return 28 + value.bit_length() // 8
    return 32


def _unit(value: Any) -> int:
    return 1 if isinstance(value, str) else 8


class _Evaluator(simpleeval.EvalWithCompoundTypes):
    def __init__(self, names: dict[str, Any]) -> None:
        # A copy: simpleeval adds list/tuple/dict/set to the mapping it is given.
        super().__init__(names=names, functions=dict(FUNCTIONS), operators=dict(OPERATORS))
        # Sets iterate in hash order: every set an expression builds is an OrderedSet.
        self.functions["set"] = OrderedSet
        self.nodes[ast.SetComp] = self._eval_comprehension
        self.made_set = False
        self.steps = 0
        self.allocated = 0
        # What could build something large checks its size first (see the module doc).
        self.operators[ast.Mult] = self._mult
        self.operators[ast.Add] = self._add
        for name in ("str", "json", "upper", "lower"):
            self.functions[name] = self._textual(self.functions[name])
        for name in ("sorted", "list", "tuple", "dict", "set"):
            self.functions[name] = self._copying(self.functions[name])

    # The budget.

    def _need(self, size: int) -> None:
        """Refuse to build something of `size` estimated bytes if it would break the budget."""
        if self.allocated + size > MAX_ALLOCATED_BYTES:
            raise BudgetExceeded(
                f"expression would allocate more than {MAX_ALLOCATED_BYTES // (1024 * 1024)} MiB "
                f"(about {(self.allocated + size) // (1024 * 1024)} MiB)"
            )

    def _charge(self, value: Any) -> None:
        size = _footprint(value)
        self._need(size)
        self.allocated += size

    def _eval(self, node: ast.AST) -> Any:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise BudgetExceeded(f"expression takes more than {MAX_STEPS} evaluation steps")
        handler = self.nodes.get(type(node))
        if handler is None:
            raise simpleeval.FeatureNotAvailable(f"Sorry, {type(node).__name__} is not available")
        result = handler(node)
        if isinstance(node, _BUILDERS) or (
            isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Slice)
        ):
            self._charge(result)
        kind = type(result)
        if kind is OrderedSet:
            self.made_set = True
        elif kind not in _PLAIN:
            super()._check_disallowed_items(result)
        return result

    def _mult(self, a: Any, b: Any) -> Any:
        seq, times = (b, a) if isinstance(b, _SEQUENCES) else (a, b)
        if isinstance(seq, _SEQUENCES) and isinstance(times, int):
            self._need(len(seq) * max(times, 0) * _unit(seq))
        return _safe_mult(a, b)

    def _add(self, a: Any, b: Any) -> Any:
        if isinstance(a, _SEQUENCES) and isinstance(b, _SEQUENCES):
            self._need((len(a) + len(b)) * _unit(a))
        return simpleeval.safe_add(a, b)

    def _textual(self, function: Callable[..., Any]) -> Callable[..., Any]:
        """`function` (str, json, upper, lower) after checking how long its text would be."""

        def checked(*args: Any) -> Any:
            for arg in args:
                items, chars = self._expanded(arg, MAX_ALLOCATED_BYTES // 8, MAX_ALLOCATED_BYTES)
                self._need(chars + 8 * items)
            return function(*args)

        return checked

    def _copying(self, function: Callable[..., Any]) -> Callable[..., Any]:
        """`function` (sorted, list, tuple, dict, set) after checking the length of its copy."""

        def checked(*args: Any, **kwargs: Any) -> Any:
            for arg in args:
                if isinstance(arg, _SIZED):
                    self._need(40 * len(arg))
            return function(*args, **kwargs)

        return checked

    def _expanded(
        self, item: Any, max_items: int = MAX_RESULT_ITEMS, max_chars: int = MAX_RESULT_CHARS
    ) -> tuple[int, int]:
        try:
            return _expanded_size(item, {}, max_items, max_chars)
        except RecursionError:
            raise ExpressionError("expression result is nested too deeply") from None

    def check_result(self, item: Any) -> None:
        items, chars = self._expanded(item)
        if items > MAX_RESULT_ITEMS or chars > MAX_RESULT_CHARS:
            raise ExpressionError("expression result is too large")

    def _eval_list(self, node: ast.List) -> Any:
        result: list[Any] = []
        for element in node.elts:
            if isinstance(element, ast.Starred):
                values = self._eval(element.value)
                if isinstance(values, Sized):
                    self._need(8 * (len(result) + len(values)))
                result.extend(values)
            else:
                result.append(self._eval(element))
        return result

    def _eval_dict(self, node: ast.Dict) -> Any:
        result: dict[Any, Any] = {}
        for key, value in zip(node.keys, node.values, strict=True):
            if key is None:
                values = self._eval(value)
                if isinstance(values, Sized):
                    self._need(40 * (len(result) + len(values)))
                result.update(values)
            else:
                result[self._eval(key)] = self._eval(value)
        return result

    def _eval_set(self, node: ast.Set) -> Any:
        items: list[Any] = []
        for element in node.elts:
            if isinstance(element, ast.Starred):
                values = self._eval(element.value)
                if isinstance(values, Sized):
                    self._need(40 * (len(items) + len(values)))
                items.extend(values)
            else:
                items.append(self._eval(element))
        return OrderedSet(items)

    def _eval_comprehension(self, node: Any) -> Any:
        """simpleeval's comprehension without its self-referencing closure (a reference cycle
        that kept a refused comprehension's partial result alive until the next collection)."""
        built: Any = {} if isinstance(node, ast.DictComp) else []
        scope: dict[str, Any] = {}
        outer = self.nodes[ast.Name]

        def names(name: ast.Name) -> Any:
            return scope[name.id] if name.id in scope else outer(name)

        self.nodes[ast.Name] = names
        try:
            self._generate(node, 0, built, scope)
        finally:
            self.nodes[ast.Name] = outer
        return OrderedSet(built) if isinstance(node, ast.SetComp) else built

    def _generate(self, node: Any, index: int, built: Any, scope: dict[str, Any]) -> None:
        generator = node.generators[index]
        for value in self._eval(generator.iter):
            self._max_count += 1
            if self._max_count > simpleeval.MAX_COMPREHENSION_LENGTH:
                raise simpleeval.IterableTooLong("Comprehension generates too many elements")
            _bind(generator.target, value, scope)
            if all(self._eval(condition) for condition in generator.ifs):
                if index + 1 < len(node.generators):
                    self._generate(node, index + 1, built, scope)
                elif isinstance(built, dict):
                    built[self._eval(node.key)] = self._eval(node.value)
                else:
                    built.append(self._eval(node.elt))

    def _eval_attribute(self, node: ast.Attribute) -> Any:
        if node.attr.startswith("_"):
            raise ExpressionError(f"access to '{node.attr}' is not allowed")
        base = self._eval(node.value)
        if isinstance(base, Mapping):
            if node.attr in base:
                return base[node.attr]
            raise ExpressionError(f"no key '{node.attr}' (have: {', '.join(map(str, base)) or 'none'})")
        raise ExpressionError(f"cannot read '.{node.attr}' of a {type(base).__name__}")

    def _eval_subscript(self, node: ast.Subscript) -> Any:
        try:
            return super()._eval_subscript(node)
        except (KeyError, IndexError) as exc:
            raise ExpressionError(f"no item {exc}") from None


def _bind(target: ast.AST, value: Any, scope: dict[str, Any]) -> None:
    """Assign a comprehension's loop value to its target (a name or nested tuples of names)."""
    if isinstance(target, ast.Name):
        scope[target.id] = value
    elif isinstance(target, ast.Tuple | ast.List):
        for element, item in zip(target.elts, value, strict=False):
            _bind(element, item, scope)
    else:
        raise simpleeval.FeatureNotAvailable(f"cannot assign to {type(target).__name__}")


def supported_syntax() -> tuple[frozenset[type], frozenset[type]]:
    """The AST node and operator types the evaluator runs (for the validator)."""
    probe = _Evaluator({})
    return frozenset(probe.nodes), frozenset(probe.operators)


def _depth(node: ast.AST, limit: int) -> int:
    depth = 0
    stack = [(node, 1)]
    while stack:
        current, d = stack.pop()
        if d > limit:
            return d
        depth = max(depth, d)
        stack.extend((child, d + 1) for child in ast.iter_child_nodes(current))
    return depth


# Parsed trees are cached only for short expressions (the common case), so the cache stays a few
# MiB whatever a process evaluates: a long expression is parsed again each time.
CACHED_EXPRESSION_LENGTH = 300


def parse_expression(source: str) -> ast.expr:
    """Parse once, reject what is too long or too deep before any evaluation happens."""
    if len(source) <= CACHED_EXPRESSION_LENGTH:
        return _parse_cached(source)
    return _parse(source)


@lru_cache(maxsize=2048)
def _parse_cached(source: str) -> ast.expr:
    return _parse(source)


def _parse(source: str) -> ast.expr:
    if len(source) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(f"expression longer than {MAX_EXPRESSION_LENGTH} characters")
    text = _HYPHEN_STEP_REF.sub(lambda m: f'steps["{m.group(1)}"]', source.strip())
    if not text:
        raise ExpressionError("empty expression")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"syntax error in '{source}': {exc.msg}") from None
    except (RecursionError, MemoryError, ValueError):
        raise ExpressionError("expression is nested too deeply") from None
    if _depth(tree.body, MAX_NESTING) > MAX_NESTING:
        raise ExpressionError(f"expression is nested deeper than {MAX_NESTING} levels")
    return tree.body


def evaluate(source: str, context: Mapping[str, Any]) -> Any:
    """Evaluate one expression body (without `${}`) against `context`."""
    tree = parse_expression(source)
    evaluator = _Evaluator(dict(context))
    # The error is raised after the except blocks: raised inside one it would carry the original
    # (its traceback, the frames, whatever the evaluation had built) as its __context__.
    error: ExpressionError
    try:
        result = evaluator.eval(source, previously_parsed=tree)
        evaluator.check_result(result)
        return _plain(result) if evaluator.made_set else result
    except ExpressionError as exc:
        error = type(exc)(f"in '${{{source}}}': {exc}")
    except simpleeval.NameNotDefined as exc:
        error = ExpressionError(f"in '${{{source}}}': unknown name '{exc.name}'")
    except simpleeval.InvalidExpression as exc:
        error = ExpressionError(f"in '${{{source}}}': {exc}")
    except (RecursionError, MemoryError, OverflowError):
        error = ExpressionError(f"in '${{{source}}}': result too large or too deep")
    except Exception as exc:  # the expression's own runtime error (TypeError, ZeroDivision...)
        error = ExpressionError(f"in '${{{source}}}': {type(exc).__name__}: {exc}")
    finally:
        # simpleeval's tables hold bound methods (a cycle through the evaluator): break it, so
        # what the evaluation built is freed now, not at the next garbage collection.
        evaluator.nodes = {}
        evaluator.operators = {}
        evaluator.functions = {}
    raise error


def iter_expressions(text: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, body) of each `${...}` in `text`, braces and quotes balanced."""
    i = 0
    while True:
        start = text.find("${", i)
        if start < 0:
            return
        depth, j, quote = 1, start + 2, ""
        while j < len(text) and depth:
            ch = text[j]
            if quote:
                if ch == "\\":
                    j += 1
                elif ch == quote:
                    quote = ""
            elif ch in "'\"":
                quote = ch
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            j += 1
        if depth:
            raise ExpressionError(f"unterminated '${{' in {text!r}")
        yield start, j, text[start + 2 : j - 1]
        i = j


def _bare_name_context(body: str, context: Mapping[str, Any]) -> Any:
    # A bare ${NAME} resolves params first, then env (DESIGN.md section 3).
    name = body.strip()
    if _BARE_NAME.match(name) and name not in ROOT_NAMES and name not in FUNCTIONS:
        for scope in ("params", "env"):
            values = context.get(scope) or {}
            if name in values:
                return values[name]
        raise ExpressionError(f"'${{{name}}}' is not a parameter or environment variable")
    return evaluate(body, context)


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """Resolve expressions inside `value` (recursively through lists and mappings).

    A string that is exactly one expression keeps the value's type; otherwise each expression is
    interpolated as text.
    """
    if isinstance(value, str):
        if "${" not in value:
            return value
        parts = list(iter_expressions(value))
        if len(parts) == 1 and parts[0][0] == 0 and parts[0][1] == len(value):
            return _bare_name_context(parts[0][2], context)
        out, last = [], 0
        for start, end, body in parts:
            out.append(value[last:start])
            result = _bare_name_context(body, context)
            try:
                out.append(result if isinstance(result, str) else _json(result))
            except ValueError as exc:  # e.g. an int too long to print
                raise ExpressionError(f"in '${{{body}}}': {exc}") from None
            last = end
        out.append(value[last:])
        return "".join(out)
    if isinstance(value, list):
        return [render(v, context) for v in value]
    if isinstance(value, dict):
        return {k: render(v, context) for k, v in value.items()}
    return value


def expressions_in(value: Any) -> Iterator[str]:
    """Every expression body found anywhere inside `value`."""
    if isinstance(value, str) and "${" in value:
        for _, _, body in iter_expressions(value):
            yield body
    elif isinstance(value, list):
        for v in value:
            yield from expressions_in(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from expressions_in(v)


def references(body: str) -> Iterator[tuple[str, ...]]:
    """Name paths an expression reads, e.g. ('steps', 'ingest', 'outputs', 'entities')."""
    tree = parse_expression(body)
    inner = {
        id(n.value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Attribute)
        or (isinstance(n, ast.Subscript) and isinstance(n.slice, ast.Constant))
    }
    for node in ast.walk(tree):
        if id(node) in inner:
            continue
        path: list[str] = []
        current: ast.AST = node
        while True:
            if isinstance(current, ast.Attribute):
                path.append(current.attr)
                current = current.value
            elif isinstance(current, ast.Subscript) and isinstance(current.slice, ast.Constant):
                path.append(str(current.slice.value))
                current = current.value
            else:
                break
        if isinstance(current, ast.Name) and (path or node is current):
            yield (current.id, *reversed(path))


def mentions_secrets(value: Any) -> bool:
    return any(any(ref[0] == "secrets" for ref in references(body)) for body in expressions_in(value))

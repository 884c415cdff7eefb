"""The `${...}` expression language: a safe evaluator over simpleeval, never `eval`.

Names: params, env, secrets, steps, execution, trigger, item. Dotted access reads mapping keys
only (no Python attributes at all), so `steps.x.outputs.items` is the output named `items`.

Deterministic: a result never depends on the process (PYTHONHASHSEED), so a replay in another
process evaluates exactly what the recording did. Python sets iterate in hash order, so set
literals, set comprehensions and `set()` build an `OrderedSet` instead: deduplicated like a set
(the first of equal values stays), iterated in first-insertion order. `a | b` is a's elements then
b's new ones, `a & b` and `a - b` keep a's order, `a ^ b` is `a - b` then `b - a`. A set in a
result leaves the evaluator as a list in that order (JSON has no sets).
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
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

# `steps.my-step.outputs` must mean the step named "my-step", not a subtraction.
_HYPHEN_STEP_REF = re.compile(r"\bsteps\.([A-Za-z_][A-Za-z0-9_]*(?:-[A-Za-z0-9_]+)+)")
_BARE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

ROOT_NAMES = frozenset({"params", "env", "secrets", "steps", "execution", "trigger", "item"})


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


class _Evaluator(simpleeval.EvalWithCompoundTypes):
    def __init__(self, names: dict[str, Any]) -> None:
        # A copy: simpleeval adds list/tuple/dict/set to the mapping it is given.
        super().__init__(names=names, functions=dict(FUNCTIONS), operators=OPERATORS)
        # Sets iterate in hash order: every set an expression builds is an OrderedSet.
        self.functions["set"] = OrderedSet
        self.nodes[ast.SetComp] = self._eval_comprehension
        self.made_set = False
        # id -> (object, expanded items, expanded chars); the object is kept so ids stay unique.
        self._sizes: dict[int, tuple[Any, int, int]] = {}

    def _check_disallowed_items(self, item: Any) -> None:
        """Refuse any intermediate result whose JSON expansion would be too large; shared
        references are measured once, so the check is linear in the distinct objects."""
        try:
            items, chars = self._size(item)
        except RecursionError:
            raise ExpressionError("expression result is nested too deeply") from None
        if items > MAX_RESULT_ITEMS or chars > MAX_RESULT_CHARS:
            raise ExpressionError("expression result is too large")

    def _size(self, item: Any) -> tuple[int, int]:
        kind = type(item)
        if kind is str:
            return 1, len(item)
        if kind in (int, float, bool, type(None)):
            return 1, 0
        if kind is OrderedSet:
            self.made_set = True
        elif kind not in (list, tuple, dict):
            super()._check_disallowed_items(item)
            return 1, 0
        known = self._sizes.get(id(item))
        if known is not None and known[0] is item:
            return known[1], known[2]
        items, chars = 1, 0
        children = list(item.items()) if kind is dict else item
        for child in children:
            if kind is dict:
                key, child = child
                chars += len(key) if isinstance(key, str) else 0
            sub_items, sub_chars = self._size(child)
            items += sub_items
            chars += sub_chars
            if items > MAX_RESULT_ITEMS or chars > MAX_RESULT_CHARS:
                break
        self._sizes[id(item)] = (item, items, chars)
        return items, chars

    def _eval_set(self, node: ast.Set) -> Any:
        items: list[Any] = []
        for element in node.elts:
            if isinstance(element, ast.Starred):
                items.extend(self._eval(element.value))
            else:
                items.append(self._eval(element))
        return OrderedSet(items)

    def _eval_comprehension(self, node: Any) -> Any:
        if isinstance(node, ast.SetComp):
            as_list = ast.ListComp(elt=node.elt, generators=node.generators)
            return OrderedSet(super()._eval_comprehension(as_list))
        return super()._eval_comprehension(node)

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


@lru_cache(maxsize=4096)
def parse_expression(source: str) -> ast.expr:
    """Parse once, reject what is too long or too deep before any evaluation happens."""
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
    try:
        result = evaluator.eval(source, previously_parsed=tree)
        return _plain(result) if evaluator.made_set else result
    except ExpressionError as exc:
        raise ExpressionError(f"in '${{{source}}}': {exc}") from None
    except simpleeval.NameNotDefined as exc:
        raise ExpressionError(f"in '${{{source}}}': unknown name '{exc.name}'") from None
    except simpleeval.InvalidExpression as exc:
        raise ExpressionError(f"in '${{{source}}}': {exc}") from None
    except (RecursionError, MemoryError, OverflowError):
        raise ExpressionError(f"in '${{{source}}}': result too large or too deep") from None
    except Exception as exc:  # the expression's own runtime error (TypeError, ZeroDivision...)
        raise ExpressionError(f"in '${{{source}}}': {type(exc).__name__}: {exc}") from None


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

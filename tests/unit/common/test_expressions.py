"""rb_common.expressions: the `${...}` language, including what a hostile runbook may try."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from rb_common.errors import ExpressionError
from rb_common.expressions import (
    FUNCTIONS,
    MAX_EXPRESSION_LENGTH,
    evaluate,
    expressions_in,
    iter_expressions,
    mentions_secrets,
    parse_expression,
    references,
    render,
)

CTX: dict[str, Any] = {
    "params": {
        "n": 3,
        "ratio": 0.5,
        "flag": True,
        "nothing": None,
        "names": ["b", "a"],
        "nested": {"items": [1, 2], "keys": "k", "values": {"deep": 42}},
        "NAME": "from-params",
    },
    "env": {"NAME": "from-env", "ONLY_ENV": "e", "HOME": "/root"},
    "secrets": {"TOKEN": "t0k"},
    "steps": {
        "fetch-data": {"outputs": {"rows": [1, 2, 3]}, "status": "succeeded", "error": None},
        "ingest": {"outputs": {"items": [{"id": 7}], "count": 1}, "status": "failed", "error": "x"},
    },
    "execution": {"id": "ex-1", "started_at": "2025-11-29T00:00:00+00:00", "duration": 1.5},
    "trigger": {"labels": {"alertname": "HighErrorRate"}},
}


# --- types and interpolation ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("${params.n}", 3),
        ("${params.ratio}", 0.5),
        ("${params.flag}", True),
        ("${params.nothing}", None),
        ("${params.names}", ["b", "a"]),
        ("${params.nested.values}", {"deep": 42}),
        ("${ params.n * 2 }", 6),
        ("${params.n > 2}", True),
        ("${{'a': params.n}}", {"a": 3}),
    ],
)
def test_whole_string_expression_keeps_its_type(template: str, expected: Any) -> None:
    result = render(template, CTX)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("n=${params.n}", "n=3"),
        ("${params.n}${params.n}", "33"),
        ("names: ${params.names}", 'names: ["b", "a"]'),
        ("v=${params.nested.values}!", 'v={"deep": 42}!'),
        ("flag=${params.flag} none=${params.nothing}", "flag=true none=null"),
        ("id ${execution.id} at ${execution.duration}s", "id ex-1 at 1.5s"),
        ("plain text", "plain text"),
        ("price: $5 {not an expression}", "price: $5 {not an expression}"),
    ],
)
def test_interpolation(template: str, expected: str) -> None:
    assert render(template, CTX) == expected


def test_render_walks_lists_and_mappings() -> None:
    value = {"a": ["${params.n}", {"b": "x${params.n}"}], "c": 5, "d": None, "${params.n}": 1}
    assert render(value, CTX) == {"a": [3, {"b": "x3"}], "c": 5, "d": None, "${params.n}": 1}


def test_bare_name_reads_params_then_env() -> None:
    assert render("${NAME}", CTX) == "from-params"
    assert render("${ONLY_ENV}", CTX) == "e"
    assert render("${ ONLY_ENV }", CTX) == "e"
    assert render("at ${HOME}/x and ${NAME}", CTX) == "at /root/x and from-params"
    assert render("${NAME}", {"env": {"NAME": "env-only"}}) == "env-only"
    with pytest.raises(ExpressionError, match="'\\$\\{MISSING\\}' is not a parameter or environment"):
        render("${MISSING}", CTX)


def test_root_names_are_not_bare_names() -> None:
    assert render("${execution}", CTX) == CTX["execution"]
    assert render("${item}", {**CTX, "item": {"x": 1}}) == {"x": 1}


def test_dotted_keys_read_mappings_even_when_named_like_methods() -> None:
    assert evaluate("params.nested.items", CTX) == [1, 2]
    assert evaluate("params.nested.keys", CTX) == "k"
    assert evaluate("params.nested.values.deep", CTX) == 42
    assert evaluate("steps.ingest.outputs.items[0].id", CTX) == 7
    assert evaluate("steps.ingest.outputs['items'][0]['id']", CTX) == 7
    with pytest.raises(ExpressionError, match="no key 'get' \\(have: items, keys, values\\)"):
        evaluate("params.nested.get", CTX)
    with pytest.raises(ExpressionError, match=r"cannot read '\.upper' of a str"):
        evaluate("params.nested.keys.upper()", CTX)


def test_hyphenated_step_ids() -> None:
    assert evaluate("steps.fetch-data.outputs.rows", CTX) == [1, 2, 3]
    assert evaluate("len(steps.fetch-data.outputs.rows) - 1", CTX) == 2
    assert evaluate("steps['fetch-data'].status == 'succeeded'", CTX) is True
    assert render("${steps.fetch-data.outputs.rows[0]}", CTX) == 1
    assert ("steps", "fetch-data", "outputs", "rows") in set(references("steps.fetch-data.outputs.rows"))


def test_step_status_and_error() -> None:
    assert evaluate("steps.ingest.status == 'failed' and steps.ingest.error == 'x'", CTX) is True


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("len(params.names)", 2),
        ("sum([1, 2, 3])", 6),
        ("min(3, 1, 2)", 1),
        ("max(params.names)", "b"),
        ("any([0, params.n])", True),
        ("all([1, 0])", False),
        ("abs(-2.5)", 2.5),
        ("round(2.675, 1)", 2.7),
        ("sorted(params.names)", ["a", "b"]),
        ("int('42')", 42),
        ("float('1.5')", 1.5),
        ("str(params.n)", "3"),
        ("bool(params.nothing)", False),
        ("lower('MiXeD')", "mixed"),
        ("upper(params.names[0])", "B"),
        ("json({'b': 1, 'a': [True, None]})", '{"a": [true, null], "b": 1}'),
    ],
)
def test_functions(source: str, expected: Any) -> None:
    assert evaluate(source, CTX) == expected


def test_every_function_is_tested() -> None:
    tested = {
        "len", "sum", "min", "max", "any", "all", "abs", "round", "sorted",
        "int", "float", "str", "bool", "lower", "upper", "json",
    }  # fmt: skip
    # simpleeval's compound-types evaluator adds these constructors to the table it is given.
    assert set(FUNCTIONS) - {"list", "tuple", "dict", "set"} == tested
    assert "now" not in FUNCTIONS


def test_operators_and_literals() -> None:
    assert evaluate("params.n if params.flag else 0", CTX) == 3
    assert evaluate("'a' in params.names and 'z' not in params.names", CTX) is True
    assert evaluate("[x * 2 for x in params.nested.items if x > 1]", CTX) == [4]
    assert evaluate("{'a': 1}['a']", CTX) == 1
    assert evaluate("{k: k * 2 for k in params.nested.items}", CTX) == {1: 2, 2: 4}
    assert evaluate("1 < params.n <= 3", CTX) is True
    assert evaluate("f'{params.n}-{env.ONLY_ENV}'", CTX) == "3-e"
    assert evaluate("[*params.names, 'c']", CTX) == ["b", "a", "c"]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("1 / 0", "ZeroDivisionError"),
        ("'x' + 1", "TypeError"),
        ("nope + 1", "unknown name 'nope'"),
        ("params.names[5]", "no item"),
        ("params.missing", "no key 'missing'"),
        ("params.n.real", "cannot read '.real' of a int"),
        ("now()", "'now' not defined"),
    ],
)
def test_runtime_errors_are_expression_errors(source: str, message: str) -> None:
    with pytest.raises(ExpressionError) as info:
        evaluate(source, CTX)
    assert message in str(info.value)
    assert f"in '${{{source}}}'" in str(info.value)


@pytest.mark.parametrize("source", ["", "   ", "1 +", "a b", "params.", "if x: y", "x = 1"])
def test_syntax_errors(source: str) -> None:
    with pytest.raises(ExpressionError):
        parse_expression(source)


# --- finding expressions ----------------------------------------------------------------------


def test_iter_expressions_balances_braces_and_quotes() -> None:
    text = "a ${ {'k': '}'}['k'] } b ${params.n} c"
    parts = list(iter_expressions(text))
    assert [body for _, _, body in parts] == [" {'k': '}'}['k'] ", "params.n"]
    assert render(text, CTX) == "a } b 3 c"
    start, end, _ = parts[1]
    assert text[start:end] == "${params.n}"
    with pytest.raises(ExpressionError, match="unterminated"):
        list(iter_expressions("x ${params.n"))


def test_expressions_in_and_references() -> None:
    value = {"a": ["${params.n}", {"b": "${len(steps.ingest.outputs.items)} ${env.HOME}"}], "c": 1}
    assert list(expressions_in(value)) == ["params.n", "len(steps.ingest.outputs.items)", "env.HOME"]
    refs = set(references("len(steps.ingest.outputs.items) + params.nested['keys'] + x"))
    assert refs == {
        ("len",),
        ("steps", "ingest", "outputs", "items"),
        ("params", "nested", "keys"),
        ("x",),
    }
    assert set(references("steps.a.outputs[params.k]")) == {
        ("steps", "a", "outputs"),
        ("params", "k"),
    }


def test_mentions_secrets() -> None:
    assert mentions_secrets({"h": ["Bearer ${secrets.TOKEN}"]})
    assert not mentions_secrets({"h": "${params.n}", "s": "secrets.TOKEN"})


# --- hostile input ----------------------------------------------------------------------------


class _TooSlow(BaseException):
    """Raised by the alarm; a BaseException so `except Exception` in the evaluator misses it."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def on_alarm(signum: int, frame: Any) -> None:
        raise _TooSlow

    old_handler = signal.signal(signal.SIGALRM, on_alarm)
    old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    started = time.monotonic()
    try:
        yield
    except _TooSlow:
        pytest.fail(f"still running after {seconds}s")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        if old_delay:  # give pytest-timeout its alarm back
            left = max(old_delay - (time.monotonic() - started), 0.01)
            signal.setitimer(signal.ITIMER_REAL, left, old_interval)


def assert_rejected(source: str, seconds: float = 1.0) -> ExpressionError:
    """`source` raises ExpressionError (no other exception type) within `seconds`."""
    with time_limit(seconds), pytest.raises(ExpressionError) as info:
        evaluate(source, CTX)
    return info.value


HOSTILE = {
    "dunder on a tuple": "().__class__.__bases__",
    "dunder on a name": "params.__class__",
    "dunder chain": "params.__class__.__mro__[1].__subclasses__()",
    "dunder on a function": "json.__globals__",
    "dunder on a string": "'{0.__class__}'.format(1)",
    "dunder in an f-string": "f'{().__class__}'",
    "dunder by subscript": "params['__class__']",
    "getattr": "getattr(params, '__class__')",
    "dict method": "params.get('n')",
    "type": "type(params)",
    "open": "open('/etc/passwd')",
    "eval": "eval('1')",
    "exec": "exec('1')",
    "globals": "globals()",
    "import function": "__import__('os').system('true')",
    "import statement": "import os",
    "lambda": "lambda: 1",
    "called lambda": "(lambda x: x)(1)",
    "walrus": "(x := 1)",
    "huge exponent": "9**9**9**9",
    "huge exponent 2": "10**10**10",
    "inf power": "float('inf')**2",
    "huge string": "'a' * 10**10",
    "huge string 2": "'abc' * 100000000",
    "huge list": "[1] * 10**9",
    "huge param string": "params.NAME * 10**8",
    "huge f-string width": "f'{1:>99999999}'",
    "huge int text": "int('9' * 5000)",
    "nested lists": "[" * 200 + "]" * 200,
    "nested negation": "-(" * 200 + "1" + ")" * 200,
    "nested not": "not " * 200 + "1",
    "left-deep chain": "1" + "+1" * 1500,
    "long expression": "1+" * 3000 + "1",
    "long name": "x" * (MAX_EXPRESSION_LENGTH + 1),
    "comprehension product": "[x for x in [1]*1000 for y in [1]*1000 for z in [1]*1000]",
    "comprehension of a long string": "[c for c in 'a' * 99999]",
    "range": "[x for x in range(10**9)]",
    "set comprehension product": "{x for x in [1]*1000 for y in [1]*1000 for z in [1]*1000}",
    "null byte": "1\x00",
}


@pytest.mark.parametrize("source", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_input_raises_expression_error_quickly(source: str) -> None:
    assert_rejected(source)


def test_hostile_input_through_render() -> None:
    with time_limit(1.0), pytest.raises(ExpressionError):
        render("x ${().__class__.__bases__} y", CTX)
    with time_limit(1.0), pytest.raises(ExpressionError):
        render("${" + "[" * 200 + "]" * 200 + "}", CTX)


def test_nesting_and_length_messages() -> None:
    assert "nested deeper than 50 levels" in str(assert_rejected("[" * 200 + "]" * 200))
    assert "longer than 4000 characters" in str(assert_rejected("1+" * 3000 + "1"))
    assert "'__class__' is not allowed" in str(assert_rejected("params.__class__"))


# Resource bombs: each must be refused with ExpressionError, quickly.


def test_bomb_aliased_nested_list_hangs() -> None:
    assert_rejected("[[1] * 99999] * 99999", seconds=2.0)


def test_bomb_sum_of_lists() -> None:
    # 250000 elements in ~0.6 s; with 3000 x 3000 it runs for minutes, and no signal or
    # timeout can interrupt it because the loop is in C. A time limit cannot catch it: the
    # result must be refused by size, so this only asserts the error.
    with pytest.raises(ExpressionError):
        evaluate("sum([[1] * 500] * 500, [])", CTX)


def test_bomb_percent_format_width() -> None:
    # With a width of 999999999 this is a 1 GB string in under a second.
    assert_rejected("'%9999999s' % 1")


def test_bomb_function_result_size() -> None:
    # 100x the 100000-character limit; ['a'*99999]*99999 asks for 10 GB.
    assert_rejected("json(['a' * 99999] * 100)")


def test_bomb_huge_integer() -> None:
    # 9**4000000 takes ~3 s of CPU, 9**4000000 * 9**4000000 ~16 s.
    assert_rejected("2**4000000")


def test_bomb_huge_integer_interpolated() -> None:
    with time_limit(1.0), pytest.raises(ExpressionError):
        render("n=${2**100000}", CTX)


def test_bomb_functions_table_is_mutated() -> None:
    # So `${set}` is a bare parameter name until the first evaluation in the process, and a
    # function after it.
    evaluate("1", {})
    assert "set" not in FUNCTIONS


# Determinism: nothing may depend on hash order (PYTHONHASHSEED), or a replay in another process
# deviates from its recording.

SET_EXPRESSIONS = [
    '[x for x in {"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"}]',
    "{lower(x) for x in params.names + ['Q', 'r', 'S', 'b']}",
    "set(['kappa', 'lambda', 'mu', 'nu', 'xi', 'kappa'])",
    "{'p', 'q', 'r'} | {'s', 't', 'p'}",
    "{'p', 'q', 'r', 's'} & {'s', 'r', 'z'}",
    "{'p', 'q', 'r', 's'} - {'q'}",
    "{'p', 'q', 'r'} ^ {'r', 's', 't'}",
    "str({'one', 'two', 'three', 'four'})",
    "json({'one', 'two', 'three', 'four'})",
    "{'k': {'x', 'y', 'z', 'w'}}",
    "sum({0.1, 1e16, -1e16, 0.2, 0.3})",
    "[x + y for x in {'a', 'b', 'c'} for y in {'d', 'e', 'f'}]",
]

_PROBE = """
import json, sys
from rb_common.expressions import evaluate, render
ctx = {"params": {"names": ["b", "a", "c"]}}
out = [evaluate(e, ctx) for e in json.loads(sys.argv[1])]
out.append(render("tags: ${ {'red', 'green', 'blue', 'cyan'} }", ctx))
out.append(list({"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"}))  # Python's own
print(json.dumps(out))
"""


def _evaluate_with_hash_seed(seed: str) -> list[Any]:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(SET_EXPRESSIONS)],
        env={**os.environ, "PYTHONHASHSEED": seed},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return list(json.loads(result.stdout))


def test_sets_evaluate_identically_under_any_hash_seed() -> None:
    runs = [_evaluate_with_hash_seed(seed) for seed in ("1", "2", "3")]
    # The probe itself can see hash order: Python's own sets differ between these seeds.
    assert len({json.dumps(run[-1]) for run in runs}) > 1
    ours = [run[:-1] for run in runs]
    assert ours[0] == ours[1] == ours[2]
    assert ours[0][0] == ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('[x for x in {"c", "a", "b", "a"}]', ["c", "a", "b"]),
        ("{x % 3 for x in [5, 3, 4, 2]}", [2, 0, 1]),
        ("{x for x in [3, 1, 3, 2] if x > 1}", [3, 2]),
        ("set(params.names + ['a', 'z'])", ["b", "a", "z"]),
        ("set()", []),
        ("{*params.names, 'c'}", ["b", "a", "c"]),
        ("{1, True, 1.0}", [1]),
        ("{3, 1} | {2, 3}", [3, 1, 2]),
        ("{3, 1, 2} & {2, 3}", [3, 2]),
        ("{3, 1, 2} - {1}", [3, 2]),
        ("{3, 1} ^ {1, 2}", [3, 2]),
        ("{1, 2} == {2, 1}", True),
        ("{1} < {2, 1}", True),
        ("2 in {1, 2}", True),
        ("len({'a', 'a', 'b'})", 2),
        ("sorted({'b', 'c', 'a'})", ["a", "b", "c"]),
        ("str({'b', 'a'})", "{'b', 'a'}"),
        ("str(set())", "set()"),
        ("json({'b', 'a'})", '["b", "a"]'),
        ("{'k': [{'b', 'a'}]}", {"k": [["b", "a"]]}),
        ("list({'b', 'a'})", ["b", "a"]),
    ],
)
def test_sets_keep_first_insertion_order(source: str, expected: Any) -> None:
    assert evaluate(source, CTX) == expected


def test_set_semantics_are_pythons() -> None:
    with pytest.raises(ExpressionError, match="unhashable"):
        evaluate("{[1]}", CTX)
    with pytest.raises(ExpressionError, match="unsupported operand"):
        evaluate("{1} | [2]", CTX)
    assert render("s=${ {'b', 'a'} }", CTX) == 's=["b", "a"]'
    assert evaluate("{x for x in params.names}", CTX) == ["b", "a"]

"""Decisions of the pure coordinator, driven without I/O (see harness.Drive)."""

from __future__ import annotations

from harness import Drive

from rb_common.events import EventType
from rb_engine.coordinator import RunStep, decide

FAIL = ("fail", True)
FATAL = ("fail", False)


def rb(steps: str, extra: str = "") -> str:
    return f"id: t\nname: T\n{extra}\nsteps:\n{steps}"


def test_independent_steps_are_scheduled_together() -> None:
    d = Drive(
        rb(
            "  - {id: a, type: transform}\n  - {id: b, type: transform}\n"
            "  - {id: c, type: transform, depends_on: [a, b]}\n"
        )
    )
    assert d.run().status == "SUCCEEDED"
    assert d.batches == [["a", "b"], ["c"]]


def test_concurrency_limit_holds_back_ready_steps() -> None:
    steps = "".join(f"  - {{id: s{i}, type: transform}}\n" for i in range(5))
    d = Drive(rb(steps, "defaults: {concurrency: 2}"))
    d.run()
    assert [len(b) for b in d.batches] == [2, 2, 1]


def test_retry_until_success_with_growing_deterministic_delays() -> None:
    yaml = rb("  - {id: a, type: http, inputs: {url: x}, retry: {max_attempts: 4, initial_delay: 1s}}\n")
    d = Drive(yaml, script={"a": [FAIL, FAIL, FAIL, {"ok": 1}]})
    state = d.run()
    assert state.status == "SUCCEEDED"
    assert state.steps["a"].attempt == 4
    delays = [e.data["retry_delay"] for e in d.events if e.type == EventType.STEP_FAILED]
    assert 0.5 <= delays[0] <= 1 and 1 <= delays[1] <= 2 and 2 <= delays[2] <= 4
    again = Drive(yaml, script={"a": [FAIL, FAIL, FAIL, {"ok": 1}]})
    again.run()
    assert [e.data["retry_delay"] for e in again.events if e.type == EventType.STEP_FAILED] == delays
    scheduled = [e for e in d.events if e.type == EventType.STEP_SCHEDULED]
    assert [e.data["attempt"] for e in scheduled] == [1, 2, 3, 4]
    assert scheduled[1].data["not_before"] is not None
    assert len({e.data["idempotency_key"] for e in scheduled}) == 4


def test_max_delay_caps_backoff() -> None:
    d = Drive(
        rb(
            "  - {id: a, type: http, inputs: {url: x}, "
            "retry: {max_attempts: 6, initial_delay: 10s, max_delay: 15s, jitter: false}}\n"
        ),
        script={"a": [FAIL] * 5 + [{}]},
    )
    d.run()
    assert [e.data["retry_delay"] for e in d.events if e.type == EventType.STEP_FAILED] == [
        10,
        15,
        15,
        15,
        15,
    ]


def test_retries_exhausted_fails_the_execution() -> None:
    d = Drive(
        rb(
            "  - {id: a, type: http, inputs: {url: x}, retry: {max_attempts: 2}}\n"
            "  - {id: b, type: transform, depends_on: [a]}\n"
        ),
        script={"a": [FAIL, FAIL]},
    )
    state = d.run()
    assert state.status == "FAILED" and state.steps["a"].attempt == 2
    assert state.steps["b"].status == "SKIPPED"
    assert "step 'a' failed" in (state.reason or "")


def test_non_retryable_failure_is_not_retried() -> None:
    d = Drive(
        rb("  - {id: a, type: http, inputs: {url: x}, retry: {max_attempts: 5}}\n"), script={"a": [FATAL]}
    )
    assert d.run().steps["a"].attempt == 1


def test_timeout_is_retried_then_fails() -> None:
    d = Drive(
        rb("  - {id: a, type: http, inputs: {url: x}, timeout: 2s, retry: {max_attempts: 2}}\n"),
        script={"a": ["hang", "hang"]},
    )
    state = d.run()
    assert state.status == "FAILED"
    assert state.steps["a"].error == "timed out after 2s"
    assert [e.data["timeout"] for e in d.events if e.type == EventType.STEP_SCHEDULED] == [2.0, 2.0]


def test_continue_lets_dependants_run_and_see_the_failure() -> None:
    d = Drive(
        rb(
            "  - {id: a, type: http, inputs: {url: x}, on_failure: log_and_continue}\n"
            "  - {id: b, type: transform, depends_on: [a], when: \"${steps.a.status == 'failed'}\"}\n"
        ),
        script={"a": [FATAL]},
    )
    state = d.run()
    assert state.status == "SUCCEEDED"
    assert state.steps["a"].status == "FAILED" and state.steps["b"].status == "SUCCEEDED"
    assert state.kpis is not None and state.kpis["kpis"]["success_rate"]["value"] == 0.5


def test_abort_cancels_running_siblings_and_skips_pending() -> None:
    d = Drive(
        rb(
            "  - {id: a, type: http, inputs: {url: x}}\n"
            "  - {id: slow, type: http, inputs: {url: y}}\n"
            "  - {id: after, type: transform, depends_on: [slow]}\n"
        ),
        script={"a": [FATAL], "slow": ["hang"]},
    )
    state = d.run()
    assert state.status == "FAILED"
    assert d.cancelled == ["slow"]
    assert state.steps["slow"].status == "FAILED" and state.steps["after"].status == "SKIPPED"
    assert state.failure is not None and state.failure.step_id == "a"


def test_rollback_compensates_succeeded_steps_in_reverse_order() -> None:
    d = Drive(
        rb(
            "  - {id: drain, type: http, inputs: {url: d}, rollback: {type: http, inputs: {url: undrain}}}\n"
            "  - {id: noop, type: transform, depends_on: [drain]}\n"
            "  - {id: stop, type: shell, inputs: {command: [x]}, depends_on: [noop],"
            " rollback: {type: shell, inputs: {command: [start, '${steps.stop.outputs.pid}']}}}\n"
            "  - {id: migrate, type: shell, inputs: {command: [y]}, depends_on: [stop], on_failure: rollback,"
            " rollback: {type: shell, inputs: {command: [never]}}}\n"
        ),
        script={"migrate": [FATAL], "stop": [{"pid": "42"}]},
    )
    state = d.run()
    assert state.status == "FAILED"
    compensations = [
        e.data for e in d.events if e.type == EventType.STEP_SCHEDULED and e.data["phase"] == "rollback"
    ]
    assert [c["step_id"] for c in compensations] == ["stop", "drain"]
    assert compensations[0]["inputs"] == {"command": ["start", "42"]}
    final = d.events[-1]
    assert final.type == EventType.EXECUTION_FAILED
    assert final.data["rolled_back"] == ["stop", "drain"] and final.data["rollback_failed"] == []
    first_compensation = next(
        i
        for i, e in enumerate(d.events)
        if e.type == EventType.STEP_SCHEDULED and e.data["phase"] == "rollback"
    )
    assert d.types().index("rollback.started") < first_compensation


def test_failed_compensation_is_reported_and_the_rest_still_run() -> None:
    d = Drive(
        rb(
            "  - {id: a, type: http, inputs: {url: d}, rollback: {type: http, inputs: {url: undo-a}}}\n"
            "  - {id: b, type: http, inputs: {url: e}, depends_on: [a], rollback: {type: http, inputs: {url: undo-b}}}\n"
            "  - {id: c, type: http, inputs: {url: f}, depends_on: [b], on_failure: rollback}\n"
        ),
        script={"c": [FATAL], "b.rollback": [FATAL]},
    )
    final = d.run()
    assert final.status == "FAILED"
    assert d.events[-1].data["rolled_back"] == ["a"] and d.events[-1].data["rollback_failed"] == ["b"]


def test_false_when_skips_the_step_and_its_dependants() -> None:
    d = Drive(
        rb(
            "  - {id: a, type: transform, inputs: {n: 0}, outputs: {n: $.n}}\n"
            "  - {id: b, type: transform, depends_on: [a], when: '${steps.a.outputs.n > 0}'}\n"
            "  - {id: c, type: transform, depends_on: [b]}\n"
        ),
        script={"a": [{"n": 0}]},
    )
    state = d.run()
    assert state.status == "SUCCEEDED"
    assert state.steps["b"].skip_reason == "condition 'when' is false"
    assert state.steps["c"].status == "SKIPPED" and "upstream step 'b'" in (
        state.steps["c"].skip_reason or ""
    )


def test_unmet_assumption_aborts_before_any_step() -> None:
    d = Drive(
        rb(
            "  - {id: a, type: transform}\n",
            "assumptions:\n  - validated: true\n  - small: '${params.n < 10}'",
        ),
        facts={"validated": True},
        params={"n": 50},
    )
    state = d.run()
    assert state.status == "ABORTED" and "small" in (state.reason or "")
    assert state.assumptions == {"validated": True, "small": False}
    assert EventType.STEP_SCHEDULED.value not in d.types()


def test_missing_fact_is_an_unmet_assumption() -> None:
    d = Drive(rb("  - {id: a, type: transform}\n", "assumptions:\n  - validated: true"))
    assert d.run().status == "ABORTED"


def test_inputs_are_rendered_from_upstream_outputs_but_secrets_stay_unresolved() -> None:
    d = Drive(
        rb(
            "  - {id: a, type: transform, outputs: {n: $.n}}\n"
            "  - {id: b, type: http, depends_on: [a], inputs: {url: 'http://x/${steps.a.outputs.n}',"
            " auth_token: '${secrets.TOKEN}', count: '${steps.a.outputs.n + 1}'}}\n"
        ),
        script={"a": [{"n": 41}]},
    )
    d.run()
    scheduled = [e.data for e in d.events if e.type == EventType.STEP_SCHEDULED and e.data["step_id"] == "b"]
    assert scheduled[0]["inputs"] == {"url": "http://x/41", "auth_token": "${secrets.TOKEN}", "count": 42}


def test_bad_expression_in_inputs_fails_the_step_without_running_it() -> None:
    d = Drive(rb("  - {id: a, type: transform, inputs: {x: '${params.missing}'}}\n"))
    state = d.run()
    assert state.status == "FAILED" and "missing" in (state.steps["a"].error or "")
    assert EventType.STEP_SCHEDULED.value not in d.types()


def test_kpis_are_evaluated_once_before_the_terminal_event() -> None:
    d = Drive(
        rb(
            "  - {id: a, type: transform, outputs: {items: $.items}}\n",
            "kpis: {min_success_rate: 1.0, count: '${len(steps.a.outputs.items)}'}",
        ),
        script={"a": [{"items": [1, 2, 3]}]},
    )
    state = d.run()
    assert d.types()[-2:] == ["kpi.evaluated", "execution.succeeded"]
    assert state.kpis is not None
    assert state.kpis["kpis"]["count"]["value"] == 3
    assert state.kpis["kpis"]["success_rate"]["ok"] is True


def test_decide_is_idempotent_and_silent_after_the_end() -> None:
    d = Drive(rb("  - {id: a, type: transform}\n  - {id: b, type: transform}\n"))
    d.run()
    assert decide(d.state) == []
    # Replaying the same history gives the same state and decisions.
    from rb_engine.coordinator import fold

    refolded = fold(d.events)
    assert refolded == d.state
    mid = fold(d.events[:3])
    assert decide(mid) == decide(mid)
    assert all(isinstance(c, RunStep) for c in decide(mid))

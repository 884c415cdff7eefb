"""rb_api.accepted: the ids a process accepted a moment ago, bounded in time and in number."""

from __future__ import annotations

from rb_api.accepted import Accepted


def test_kept_for_a_while_then_forgotten() -> None:
    accepted = Accepted(keep_seconds=60)
    accepted.add("a")
    assert "a" in accepted and "b" not in accepted and 1 not in accepted
    expired = Accepted(keep_seconds=0)
    expired.add("a")
    assert "a" not in expired and "a" in accepted


def test_the_oldest_go_first_past_the_bound() -> None:
    accepted = Accepted(size=2)
    for execution_id in ("a", "b", "c"):
        accepted.add(execution_id)
    assert "a" not in accepted and "b" in accepted and "c" in accepted


def test_only_the_executions_it_created_count_as_created_here() -> None:
    """An Idempotency-Key's replay names an execution that may have ended long ago: a long poll
    must read it (rb_api.long_poll skips the first read only for one created here)."""
    accepted = Accepted(size=2)
    accepted.add("new")
    accepted.add("replayed", created=False)
    assert "replayed" in accepted and not accepted.created_here("replayed")
    assert accepted.created_here("new") and not accepted.created_here("unknown")
    accepted.add("new", created=False)  # replayed since: no longer counts as new
    assert not accepted.created_here("new")
    accepted.add("c")
    accepted.add("d")  # past the bound: the oldest go, with their mark
    assert not accepted.created_here("replayed") and accepted._created == {"c", "d"}

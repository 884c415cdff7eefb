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

"""Cron strings: cron's weekday numbering, six fields with seconds, clear errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rb_common.cron import cron_problem, cron_trigger

JAN_1_2025 = datetime(2025, 1, 1, tzinfo=UTC)  # a Wednesday


@pytest.mark.parametrize(
    ("expr", "first"),
    [
        ("0 9 * * 0", datetime(2025, 1, 5, 9, tzinfo=UTC)),  # 0 is Sunday, as in cron
        ("0 9 * * 7", datetime(2025, 1, 5, 9, tzinfo=UTC)),  # and so is 7
        ("0 9 * * 1-5", datetime(2025, 1, 1, 9, tzinfo=UTC)),
        ("30 8 * * 6", datetime(2025, 1, 4, 8, 30, tzinfo=UTC)),
        ("*/15 * * * *", datetime(2025, 1, 1, 0, 15, tzinfo=UTC)),
        ("*/5 * * * * *", datetime(2025, 1, 1, 0, 0, 5, tzinfo=UTC)),
        ("0 0 1 * *", datetime(2025, 2, 1, 0, 0, tzinfo=UTC)),
    ],
)
def test_next_fire_time(expr: str, first: datetime) -> None:
    assert cron_trigger(expr).get_next_fire_time(None, JAN_1_2025 + timedelta(seconds=1)) == first


def test_timezone_is_honoured() -> None:
    fire = cron_trigger("0 9 * * *", "Europe/Berlin").get_next_fire_time(None, JAN_1_2025)
    assert fire is not None and fire.astimezone(UTC).hour == 8


@pytest.mark.parametrize("expr", ["* * * *", "61 * * * *", "* * * * 9", "a b c d e", "* * * * * * *"])
def test_invalid_cron_is_explained(expr: str) -> None:
    problem = cron_problem(expr)
    assert problem is not None and expr in problem


def test_unknown_timezone_is_a_problem() -> None:
    assert cron_problem("* * * * *", "Mars/Olympus") is not None

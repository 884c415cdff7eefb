"""Cron strings as operators write them, turned into APScheduler 3 triggers.

Five fields (minute hour day month weekday) or six with seconds first. Weekday numbers follow
cron (0 and 7 are Sunday); APScheduler counts from Monday, so numbers are translated to names.
"""

from __future__ import annotations

import re

from apscheduler.triggers.cron import CronTrigger

_DAY_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_NUMBER = re.compile(r"\d+")


def _weekdays(field: str) -> str:
    """Cron weekday numbers as names; names and `*` pass through."""

    def name(match: re.Match[str]) -> str:
        number = int(match.group(0))
        if number > 7:
            raise ValueError(f"weekday {number} is out of range 0-7")
        return _DAY_NAMES[number]

    out = []
    for part in field.split(","):
        base, slash, step = part.partition("/")
        out.append(_NUMBER.sub(name, base) + slash + step)
    return ",".join(out)


def cron_trigger(expr: str, timezone: str = "UTC") -> CronTrigger:
    """The trigger for `expr`; ValueError with the reason when it is not a valid cron string."""
    fields = expr.split()
    if len(fields) == 5:
        second, (minute, hour, day, month, weekday) = "0", fields
    elif len(fields) == 6:
        second, minute, hour, day, month, weekday = fields
    else:
        raise ValueError(
            f"expected 5 fields (minute hour day month weekday) or 6 with seconds first, got {len(fields)}"
        )
    try:
        return CronTrigger(
            second=second,
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=_weekdays(weekday),
            timezone=timezone,
        )
    except (ValueError, TypeError, LookupError) as exc:
        raise ValueError(str(exc)) from None


def cron_problem(expr: str, timezone: str = "UTC") -> str | None:
    """Why `expr` is not a valid cron string, or None."""
    try:
        cron_trigger(expr, timezone)
    except ValueError as exc:
        return f"invalid cron {expr!r}: {exc}"
    except Exception as exc:  # e.g. an unknown timezone from zoneinfo
        return f"invalid cron {expr!r} ({timezone}): {exc}"
    return None

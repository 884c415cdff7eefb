from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from rb_engine.steps.sql_query import json_safe, normalize_url


def test_normalize_url_picks_psycopg3() -> None:
    assert normalize_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"


def test_json_safe_converts_database_types() -> None:
    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    row = {
        "when": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        "day": dt.date(2024, 1, 2),
        "price": Decimal("12.50"),
        "id": u,
        "raw": b"\x00\x01",
        "span": dt.timedelta(minutes=2),
        "tags": ("a", Decimal("1")),
        "doc": {"nested": [dt.date(2024, 1, 1)]},
        "n": None,
        "flag": True,
    }
    assert json_safe(row) == {
        "when": "2024-01-02T03:04:05+00:00",
        "day": "2024-01-02",
        "price": 12.5,
        "id": str(u),
        "raw": "AAE=",
        "span": 120.0,
        "tags": ["a", 1.0],
        "doc": {"nested": ["2024-01-01"]},
        "n": None,
        "flag": True,
    }

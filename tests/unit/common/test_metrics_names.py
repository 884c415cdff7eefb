"""The metrics' names follow Prometheus conventions, and the Grafana dashboard
(deploy/grafana/rb.json) asks only for metrics that the services define."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

import rb_executor.metrics
import rb_notifier.metrics
import rb_recorder.metrics
import rb_scheduler.metrics
from rb_api.metrics import Metrics
from rb_common.metrics import exposition

REPO = Path(__file__).resolve().parents[3]
MODULES = (rb_executor.metrics, rb_recorder.metrics, rb_notifier.metrics, rb_scheduler.metrics)


def rb_families() -> dict[str, str]:
    """Every rb_* metric of this process's registry: its name (without _total) and type."""
    assert all(MODULES)  # imported: their metrics are registered
    return {m.name: m.type for m in REGISTRY.collect() if m.name.startswith("rb_")}


def test_names_are_prometheus_style() -> None:
    families = rb_families()
    assert {"rb_executions_started", "rb_step_duration_seconds", "rb_recorder_lag_seconds"} <= set(families)
    for name, kind in families.items():
        assert re.fullmatch(r"rb_[a-z_]+", name), name
        if kind == "histogram":
            assert name.endswith("_seconds"), name  # base units
    text = exposition().decode()
    for name, kind in families.items():
        if kind == "counter":
            assert f"# TYPE {name}_total counter" in text, name


def test_the_dashboard_shows_only_defined_metrics_and_every_one_of_them() -> None:
    dashboard = json.loads((REPO / "deploy" / "grafana" / "rb.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = {re.sub(r"_(total|bucket|count|sum)$", "", n) for e in exprs for n in re.findall(r"\brb_\w+", e)}
    defined = set(rb_families()) | {
        re.sub(r"_(total|bucket|count|sum)$", "", n)
        for n in re.findall(r"\brb_api_\w+", Metrics().render().decode())
    }
    assert used - defined == set(), "the dashboard asks for metrics nobody defines"
    assert defined - used == set(), "metrics without a panel"

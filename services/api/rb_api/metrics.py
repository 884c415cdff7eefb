"""Request counts and latency by route, in the Prometheus text exposition format (no client lib)."""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass
class _Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    total: int = 0
    sum: float = 0.0

    def observe(self, seconds: float) -> None:
        self.total += 1
        self.sum += seconds
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                self.counts[i] += 1


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """One per app (kept on app.state), fed by the metrics middleware."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], int] = defaultdict(int)
        self._latency: dict[tuple[str, str], _Histogram] = defaultdict(_Histogram)
        self.in_flight = 0
        self._refused: dict[tuple[str, str], int] = defaultdict(int)

    def started(self) -> None:
        with self._lock:
            self.in_flight += 1

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.in_flight -= 1
            self._requests[(method, route, str(status))] += 1
            self._latency[(method, route)].observe(seconds)

    def refused(self, route: str, reason: str) -> None:
        """A request turned away by backpressure (the execute route's 429, rb_api.backpressure)."""
        with self._lock:
            self._refused[(route, reason)] += 1

    def render(self) -> str:
        lines = [
            "# HELP rb_api_requests_total HTTP requests answered, by method, route and status.",
            "# TYPE rb_api_requests_total counter",
        ]
        with self._lock:
            for (method, route, status), count in sorted(self._requests.items()):
                lines.append(
                    f'rb_api_requests_total{{method="{_label(method)}",route="{_label(route)}",'
                    f'status="{status}"}} {count}'
                )
            lines += [
                "# HELP rb_api_request_duration_seconds Time to answer a request (streams: until closed).",
                "# TYPE rb_api_request_duration_seconds histogram",
            ]
            for (method, route), hist in sorted(self._latency.items()):
                labels = f'method="{_label(method)}",route="{_label(route)}"'
                for bound, count in zip(BUCKETS, hist.counts, strict=True):
                    lines.append(f'rb_api_request_duration_seconds_bucket{{{labels},le="{bound:g}"}} {count}')
                lines.append(f'rb_api_request_duration_seconds_bucket{{{labels},le="+Inf"}} {hist.total}')
                lines.append(f"rb_api_request_duration_seconds_sum{{{labels}}} {hist.sum:.6f}")
                lines.append(f"rb_api_request_duration_seconds_count{{{labels}}} {hist.total}")
            lines += [
                "# HELP rb_api_requests_refused_total Requests refused with 429 because the "
                "execution queue is at its bound, by route and reason.",
                "# TYPE rb_api_requests_refused_total counter",
            ]
            for (route, reason), count in sorted(self._refused.items()):
                lines.append(
                    f'rb_api_requests_refused_total{{route="{_label(route)}",reason="{_label(reason)}"}} {count}'
                )
            lines += [
                "# HELP rb_api_requests_in_flight Requests being answered now.",
                "# TYPE rb_api_requests_in_flight gauge",
                f"rb_api_requests_in_flight {self.in_flight}",
            ]
        return "\n".join(lines) + "\n"

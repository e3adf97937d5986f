"""Prometheus metrics of the core: plugin calls, latencies, restarts, records written.

A small registry of counters and histograms keyed by label values, rendered in the
Prometheus text format; updating one is a dict operation, cheap on hot paths.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Sequence

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Counter:
    def __init__(self, name: str, help_: str, labels: Sequence[str]) -> None:
        self.name, self.help, self.labels = name, help_, tuple(labels)
        self.values: dict[tuple[str, ...], float] = defaultdict(float)

    def inc(self, *label_values: str, amount: float = 1.0) -> None:
        self.values[tuple(label_values)] += amount

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        for key, value in sorted(self.values.items()):
            out.append(f"{self.name}{_labels(self.labels, key)} {value:g}")
        return out


class Histogram:
    def __init__(self, name: str, help_: str, labels: Sequence[str]) -> None:
        self.name, self.help, self.labels = name, help_, tuple(labels)
        self.counts: dict[tuple[str, ...], list[int]] = {}
        self.sums: dict[tuple[str, ...], float] = defaultdict(float)

    def observe(self, value: float, *label_values: str) -> None:
        key = tuple(label_values)
        counts = self.counts.get(key)
        if counts is None:
            counts = self.counts[key] = [0] * (len(BUCKETS) + 1)
        counts[bisect.bisect_left(BUCKETS, value)] += 1
        self.sums[key] += value

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        for key, counts in sorted(self.counts.items()):
            running = 0
            for bound, count in zip((*BUCKETS, float("inf")), counts, strict=True):
                running += count
                le = "+Inf" if bound == float("inf") else f"{bound:g}"
                labels = _labels((*self.labels, "le"), (*key, le))
                out.append(f"{self.name}_bucket{labels} {running}")
            out.append(f"{self.name}_sum{_labels(self.labels, key)} {self.sums[key]:g}")
            out.append(f"{self.name}_count{_labels(self.labels, key)} {running}")
        return out


def _labels(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    escaped = (v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for v in values)
    return "{" + ",".join(f'{n}="{v}"' for n, v in zip(names, escaped, strict=True)) + "}"


plugin_calls = Counter(
    "dtm_plugin_calls_total", "Calls to plugins, by plugin and outcome", ["plugin", "outcome"]
)
plugin_latency = Histogram("dtm_plugin_call_seconds", "Latency of calls to plugins", ["plugin"])
plugin_restarts = Counter(
    "dtm_plugin_restarts_total", "Plugin processes restarted after a crash", ["plugin"]
)
records_written = Counter(
    "dtm_records_written_total", "Rows written into lake tables", ["plugin", "table"]
)
http_requests = Counter(
    "dtm_http_requests_total", "REST API requests", ["method", "route", "status"]
)
ALL = (plugin_calls, plugin_latency, plugin_restarts, records_written, http_requests)


def render() -> str:
    lines: list[str] = []
    for metric in ALL:
        lines += metric.render()
    return "\n".join(lines) + "\n"

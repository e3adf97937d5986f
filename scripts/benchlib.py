"""Types shared by the benchmark sections: settings, rows with goals, reports."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class Settings:
    quick: bool
    duration: float  # seconds of each throughput measurement
    warmup: float  # seconds of calls run and discarded before each measurement
    runs: int  # samples of each cold-start figure (the median is reported)

    @classmethod
    def make(cls, quick: bool) -> Settings:
        if quick:
            return cls(quick=True, duration=1.0, warmup=0.3, runs=3)
        return cls(quick=False, duration=3.0, warmup=1.0, runs=10)


@dataclass(frozen=True)
class Goal:
    """A bound on ratio = ours / baseline."""

    op: Literal[">=", "<="]
    bound: float

    def met(self, ratio: float) -> bool:
        return ratio >= self.bound if self.op == ">=" else ratio <= self.bound

    def __str__(self) -> str:
        return f"{self.op} {self.bound:g}"


@dataclass(frozen=True)
class Row:
    """One figure of ours, and optionally its baseline, the ratio and a goal on it."""

    measure: str
    unit: str
    ours: float
    baseline: float | None = None
    goal: Goal | None = None

    @property
    def ratio(self) -> float | None:
        return None if self.baseline in (None, 0) else self.ours / self.baseline

    @property
    def verdict(self) -> str | None:
        ratio = self.ratio
        if self.goal is None or ratio is None:
            return None
        return "PASS" if self.goal.met(ratio) else "MISS"

    def as_dict(self) -> dict[str, Any]:
        return {
            "measure": self.measure,
            "unit": self.unit,
            "ours": self.ours,
            "baseline": self.baseline,
            "ratio": self.ratio,
            "goal": str(self.goal) if self.goal else None,
            "verdict": self.verdict,
        }


@dataclass
class SectionReport:
    title: str
    baselines: str  # what the baseline column holds, for a reader of the table
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


Section = Callable[[Settings], Coroutine[Any, Any, SectionReport]]

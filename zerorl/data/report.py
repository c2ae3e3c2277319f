"""Typed reports of the curation stages, their JSON form and their readable summary."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from zerorl.types import Prompt

# How many removed items each stage shows as examples, and how much of each question.
MAX_EXAMPLES = 5
_SNIPPET_CHARS = 160


@dataclass
class StageReport:
    """What one stage did: ``n_in`` prompts came in and ``n_removed`` of them were dropped.

    ``reasons`` counts the removed prompts by reason (their sum is ``n_removed``); ``examples``
    shows up to :data:`MAX_EXAMPLES` of them. ``skipped`` holds the message of a stage that did
    not run (it then removes nothing). ``stats`` holds figures of a stage that are not removals,
    such as the pass-rate histogram.
    """

    name: str
    n_in: int
    n_removed: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    skipped: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def n_out(self) -> int:
        return self.n_in - self.n_removed

    @property
    def items_per_second(self) -> float:
        return self.n_in / self.seconds if self.seconds > 0 else float("inf")


class Removals:
    """Collects the prompts a stage removes, with a reason and optional details for each."""

    def __init__(self) -> None:
        self.reasons: Counter[str] = Counter()
        self.examples: list[dict[str, Any]] = []

    def add(self, prompt: Prompt, reason: str, **details: Any) -> None:
        """Count ``prompt`` as removed for ``reason``; keep it as an example while few are kept."""
        self.reasons[reason] += 1
        if len(self.examples) < MAX_EXAMPLES or self.reasons[reason] == 1:
            self.examples.append(
                {"id": prompt.id, "reason": reason, "question": snippet(prompt.question)} | details
            )

    def report(self, name: str, n_in: int, **kwargs: Any) -> StageReport:
        """The :class:`StageReport` of a stage that saw ``n_in`` prompts."""
        return StageReport(
            name=name,
            n_in=n_in,
            n_removed=sum(self.reasons.values()),
            examples=self.examples,
            reasons=dict(self.reasons),
            **kwargs,
        )


def snippet(text: str, limit: int = _SNIPPET_CHARS) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass
class CurateReport:
    """The whole run: inputs, every stage in order, and the final count."""

    inputs: list[dict[str, Any]]
    stages: list[StageReport]
    n_in: int
    n_out: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False, default=str)


def render_report(report: CurateReport, console: Any | None = None) -> None:
    """Print ``report`` as rich tables: one row per stage, then a few removed examples."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=f"curation: {report.n_in} -> {report.n_out} prompts")
    for column in ("stage", "in", "removed", "out", "seconds", "items/s", "reasons"):
        table.add_column(column, justify="left" if column in ("stage", "reasons") else "right")
    for stage in report.stages:
        if stage.skipped:
            table.add_row(
                stage.name,
                str(stage.n_in),
                "-",
                str(stage.n_out),
                "-",
                "-",
                f"[yellow]skipped: {stage.skipped}[/]",
            )
            continue
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(stage.reasons.items()))
        table.add_row(
            stage.name,
            str(stage.n_in),
            str(stage.n_removed),
            str(stage.n_out),
            f"{stage.seconds:.2f}",
            f"{stage.items_per_second:,.0f}",
            reasons,
        )
    console.print(table)
    examples = Table(title="examples of removed prompts", show_lines=False)
    for column in ("stage", "reason", "id", "question", "details"):
        examples.add_column(column, overflow="fold")
    for stage in report.stages:
        for example in stage.examples[:3]:
            details = {k: v for k, v in example.items() if k not in ("id", "reason", "question")}
            examples.add_row(
                stage.name,
                example["reason"],
                example["id"],
                snippet(example["question"], 80),
                json.dumps(details, default=str),
            )
    if examples.row_count:
        console.print(examples)

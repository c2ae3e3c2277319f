"""Shared pieces of the benchmark suite: the model under test, side-by-side timing, the table.

Every comparison in the suite is measured *side by side*: the contenders of a row run in
alternation (A B C A B C ...) within one process and one run, so that load from other processes
on a shared machine hits them alike and their ratio stays meaningful even when absolute figures
move. Figures are medians over the repeats.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from zerorl.types import Prompt

RESULTS_DIR = Path(__file__).parent / "results"


@dataclass
class Row:
    """One line of the table: a figure, what it is compared with, and the target if any."""

    section: str
    name: str
    value: float | None
    unit: str
    baseline: str = ""
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class BenchModel:
    """The model every section runs on, where it came from, and toy training problems."""

    path: str
    source: str  # "toy": zerorl.toyworld's base model (recorded in the results JSON)
    problems: list[Prompt]

    @property
    def prompts(self) -> list[str]:
        """The problems rendered in the ORZ template, as the trainer sends them to the engine."""
        from zerorl.data.template import render

        return [render(p.question) for p in self.problems]


def set_threads() -> int:
    """One intra-op thread per core, as the tiny-cpu preset does; returns the count."""
    n = os.cpu_count() or 1
    torch.set_num_threads(n)
    return n


def bench_model(n_prompts: int = 128, seed: int = 0) -> BenchModel:
    """The tiny-cpu preset's model (``model.path: toy``) and toy training problems.

    ``$ZERORL_BENCH_MODEL`` names an already built toy model directory instead (no build).
    """
    from zerorl.toyworld import ensure_base_model, train_prompts

    override = os.environ.get("ZERORL_BENCH_MODEL")
    path = Path(override) if override else ensure_base_model(progress=False)
    return BenchModel(str(path), "toy", train_prompts(n_prompts, seed))


def side_by_side(
    contenders: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Seconds of each call, contenders alternating; ``warmup`` rounds are run and dropped.

    A contender may return a float to report its own timed span (e.g. excluding set-up);
    otherwise the wall time of the call is used.
    """
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for round_ in range(warmup + repeats):
        for name, fn in contenders.items():
            start = time.perf_counter()
            own = fn()
            spent = own if isinstance(own, float) else time.perf_counter() - start
            if round_ >= warmup:
                times[name].append(spent)
    return times


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def matmul_peak(size: int = 2048, seconds: float = 1.0) -> float:
    """Measured fp32 matmul GFLOP/s: the best of several timed (size x size) products."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    out = torch.empty(size, size)
    torch.mm(a, b, out=out)
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        best = max(best, 2 * size**3 / (time.perf_counter() - start) / 1e9)
    return best


def load_note() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.1f}/{five:.1f} on {os.cpu_count()} cores"


def machine() -> dict[str, Any]:
    import transformers

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
    }


def fmt(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.{digits}g}"


def format_table(rows: list[Row]) -> str:
    """A plain-text table, one line per row, grouped by section."""
    header = ("section", "measure", "value", "unit", "vs baseline", "ratio", "target", "met")
    lines = [
        (
            r.section, r.name, fmt(r.value), r.unit, r.baseline,
            f"{r.ratio:.2f}x" if r.ratio is not None else "-", r.target,
            {True: "yes", False: "NO", None: "-"}[r.met],
        )
        for r in rows
    ]  # fmt: skip
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    out = ["  ".join(str(x).ljust(w) for x, w in zip(header, widths))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(str(x).ljust(w) for x, w in zip(line, widths)) for line in lines]
    notes = [f"  [{r.section}/{r.name}] {r.note}" for r in rows if r.note]
    return "\n".join(out + (["", "notes:", *notes] if notes else []))


def section_main(run: Callable[[bool], list[Row]], doc: str) -> None:
    """The command line of one section module: ``python -m benchmarks.bench_X [--quick]``
    prints that section's table and the machine's load."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and smaller sizes")
    print(format_table(run(parser.parse_args().quick)))
    print(load_note())


def write_results(rows: list[Row], meta: dict[str, Any]) -> Path:
    """``benchmarks/results/<timestamp>.json``: the rows plus machine and run metadata."""
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    payload = {"meta": {**machine(), **meta}, "rows": [asdict(r) for r in rows]}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path

"""The training report of a run: PNG plots and one self-contained HTML page.

``write_report(run_dir)`` reads ``metrics.jsonl``, ``config.yaml`` and (if present) the rollouts,
and writes into ``<run_dir>/report/`` (or ``out``): ``index.html`` with every plot embedded as
base64 (the page can be mailed on its own), the same plots as PNGs beside it, and
``analysis.json`` (the reflection analysis, when the run has rollouts).

Plots: training reward, response length, share of responses that reflect, average correct
reflection length against the average response length, evaluation accuracies and seconds per
stage; step moments (zerorl.eval.analysis) are marked on the training
curves, computed from the reward and response length of metrics.jsonl.
"""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from zerorl.eval.analysis import StepMoment, analyze, find_step_moments, rollout_files
from zerorl.eval.plots import Series, curve_figure, eval_figure, save_png, time_figure
from zerorl.rundir import read_jsonl

REWARD, LENGTH = "reward/mean", "response_length/mean"
CORRECT_LENGTH = "response_length/correct_mean"
REFLECTION_LENGTH, REFLECTION_FRAC = "reflection/correct_length_mean", "reflection/frac"
TRUNCATED = "finish/truncated_frac"
PLOTS = ("reward", "length", "reflection_share", "reflection", "eval", "time")


@dataclass
class RunData:
    """What a report shows, read from a run directory."""

    path: Path
    metrics: list[dict[str, Any]]
    config_text: str
    reflection: list[dict[str, Any]] = field(default_factory=list)  # per-step metrics, analysis
    analysis: dict[str, Any] | None = None
    moments: list[StepMoment] = field(default_factory=list)


def load_run(run_dir: Path) -> RunData:
    """Read a run directory; reflection metrics come from metrics.jsonl when the trainer logged
    them, else from the rollouts. Raises FileNotFoundError without metrics.jsonl."""
    metrics_file = run_dir / "metrics.jsonl"
    if not metrics_file.exists():
        raise FileNotFoundError(f"{run_dir} has no metrics.jsonl (is it a zerorl run directory?)")
    metrics = read_jsonl(metrics_file)  # a torn last line (a killed run) is dropped, with a warning
    config = run_dir / "config.yaml"
    data = RunData(run_dir, metrics, config.read_text() if config.exists() else "(no config.yaml)")
    if rollout_files(run_dir):
        data.analysis = analyze(run_dir)
        data.reflection = data.analysis["metrics"]
    if any(REFLECTION_LENGTH in m for m in metrics):
        data.reflection = metrics
    reward, length = series(metrics, REWARD), series(metrics, LENGTH)
    data.moments = find_step_moments(reward.steps, reward.values, length.values)
    return data


def series(rows: list[dict[str, Any]], key: str, label: str | None = None) -> Series:
    """The ``key`` column of metric rows that have it (null -> NaN), in step order."""
    have = [r for r in rows if key in r]
    values = [math.nan if r[key] is None else float(r[key]) for r in have]
    return Series(label or key, [int(r["step"]) for r in have], values)


def eval_keys(rows: list[dict[str, Any]]) -> list[str]:
    """The ``eval/<benchmark>/avg@K`` keys present, in order of first appearance."""
    keys = dict.fromkeys(k for r in rows for k in r if k.startswith("eval/") and "/avg@" in k)
    return list(keys)


def stage_keys(rows: list[dict[str, Any]]) -> list[str]:
    """The ``time/<stage>`` keys (without the ``time/step`` total), in logged order."""
    keys = dict.fromkeys(k for r in rows for k in r if k.startswith("time/") and k != "time/step")
    return list(keys)


def figures(data: RunData) -> dict[str, Figure]:
    """The report's figures by name (PLOTS), drawn from ``data``."""
    rows, marks = data.metrics, [m.step for m in data.moments]
    steps_rows = [r for r in rows if REWARD in r]
    no_reflection = "no rollouts and no reflection/* metrics in this run"
    return {
        "reward": curve_figure("training reward", "mean reward", [series(rows, REWARD)], marks),
        "length": curve_figure(
            "response length",
            "tokens",
            [series(rows, LENGTH, "all responses"), series(rows, CORRECT_LENGTH, "correct")],
            marks,
        ),
        "reflection_share": curve_figure(
            "responses with a reflection pattern",
            "share of responses",
            [series(data.reflection, REFLECTION_FRAC, "reflecting")],
            marks,
            empty=no_reflection,
        ),
        "reflection": curve_figure(
            "average correct reflection length vs. all responses",
            "tokens",
            [
                series(data.reflection, REFLECTION_LENGTH, "correct responses that reflect"),
                series(rows, LENGTH, "all responses"),
            ],
            marks,
            empty=no_reflection,
        ),
        "eval": eval_figure(
            [series(rows, k, k.removeprefix("eval/").replace("/", " ")) for k in eval_keys(rows)],
            marks,
        ),
        "time": time_figure(
            [series(steps_rows, k, k.removeprefix("time/")) for k in stage_keys(steps_rows)]
        ),
    }


def final_numbers(data: RunData) -> list[tuple[str, str, str, str]]:
    """Rows (metric, first, final, best) of the headline metrics; best is the max, except for
    the truncation rate and seconds per step where lower is better."""
    rows = data.metrics
    keys = [REWARD, LENGTH, CORRECT_LENGTH, TRUNCATED, *eval_keys(rows), "time/step"]
    table = []
    for key in keys:
        values = [v for v in series(rows, key).values if math.isfinite(v)]
        if not values:
            continue
        best = min(values) if key in (TRUNCATED, "time/step") else max(values)
        table.append((key, _fmt(key, values[0]), _fmt(key, values[-1]), _fmt(key, best)))
    for key in (REFLECTION_FRAC, REFLECTION_LENGTH):
        values = [v for v in series(data.reflection, key).values if math.isfinite(v)]
        if values:
            table.append((key, _fmt(key, values[0]), _fmt(key, values[-1]), _fmt(key, max(values))))
    return table


def _fmt(key: str, value: float) -> str:
    if "avg@" in key or key.endswith(("_frac", "/frac")):
        return f"{100 * value:.1f}%"
    if key.startswith("time/"):
        return f"{value:.2f} s"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def write_report(run_dir: Path, out: Path | None = None, embed: bool = True) -> Path:
    """Write the report of ``run_dir`` (module docstring) and return the HTML file's path."""
    data = load_run(run_dir)
    out = out or run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    images: dict[str, bytes] = {}
    for name, fig in figures(data).items():
        images[name] = save_png(fig, out / f"{name}.png").read_bytes()
    if data.analysis is not None:
        (out / "analysis.json").write_text(json.dumps(data.analysis, indent=2) + "\n")
    page = out / "index.html"
    page.write_text(render_html(data, images if embed else None))
    return page


def render_html(data: RunData, images: dict[str, bytes] | None) -> str:
    """The page: headline, final numbers, plots (embedded base64, or linked PNGs), config."""
    steps = [int(m["step"]) for m in data.metrics if REWARD in m]
    total = sum(m.get("time/step", 0.0) or 0.0 for m in data.metrics)
    moments = ", ".join(f"step {m.step}" for m in data.moments) or "none detected"
    head = (
        f"<h1>zerorl run: {html.escape(data.path.name)}</h1>"
        f"<p>{html.escape(str(data.path))} &middot; {len(steps)} steps &middot; "
        f"{total / 60:.1f} min of training steps &middot; step moments: {moments}</p>"
    )
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
        for row in final_numbers(data)
    )
    header = "<tr><th>metric</th><th>first</th><th>final</th><th>best</th></tr>"
    table = f"<table>{header}{rows}</table>"
    plots = "".join(img_tag(name, images) for name in PLOTS)
    config = f"<h2>config</h2><pre>{html.escape(data.config_text)}</pre>"
    return PAGE.format(title=html.escape(data.path.name), body=head + table + plots + config)


def img_tag(name: str, images: dict[str, bytes] | None) -> str:
    if images is None:
        return f'<img src="{name}.png" alt="{name}">'
    encoded = base64.b64encode(images[name]).decode()
    return f'<img src="data:image/png;base64,{encoded}" alt="{name}">'


PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title><style>
body {{ font-family: sans-serif; max-width: 1660px; margin: 1em auto; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 3px 10px; text-align: right; }}
td:first-child {{ text-align: left; }}
img {{ width: 800px; margin: 4px; border: 1px solid #eee; }}
pre {{ background: #f6f6f6; padding: 1em; font-size: 12px; }}
</style></head><body>{body}</body></html>
"""

"""``zerorl reproduce``: run the ablations of ``zerorl.eval.ablations`` and write their results.

``reproduce(plan, ablations, out)`` builds the toy world once, trains every (arm, seed) as a run
of the embedded default with the arm's overrides (``plan.jobs`` at a time, one torch thread
each, in spawned processes), then writes into ``out``:

- ``runs/<arm>/s<seed>/``: each run's folder (metrics.jsonl, config.yaml, final checkpoint);
  finished runs are kept and not rerun when ``out`` is used again (an interrupted reproduce
  continues where it stopped), a run left half-done is started over;
- ``summary.json``: the plan, the machine, and one entry per ablation
  (``zerorl.eval.ablations.summarize``);
- ``<ablation>_{reward,length,held_out}.png``: each arm's mean and 95% band over seeds per step;
- ``index.html``: the summary table and every plot, embedded.
"""

from __future__ import annotations

import html
import json
import math
import os
import platform
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from zerorl.eval.ablations import (
    HELD_OUT,
    Ablation,
    Arm,
    Plan,
    curve_band,
    final_of,
    summarize,
    unique_arms,
)
from zerorl.eval.plots import Band, band_figure, save_png
from zerorl.eval.report import PAGE, img_tag
from zerorl.rundir import read_jsonl

PRESET = "tiny-cpu"
CURVES = (("reward", "reward/mean", "training reward", 1.0),
          ("length", "response_length/mean", "response length (tokens)", 1.0),
          ("held_out", HELD_OUT, "held-out accuracy (%)", 100.0))  # fmt: skip


def run_dir(out: Path, arm: Arm, seed: int) -> Path:
    return out / "runs" / arm.name / f"s{seed}"


def finished(path: Path, steps: int) -> bool:
    """Whether the run in ``path`` reached ``steps`` and logged its final evaluation."""
    rows = read_jsonl(path / "metrics.jsonl")
    return bool(rows) and rows[-1].get("step") == steps and HELD_OUT in rows[-1]


def train_one(overrides: list[str], path: str) -> float:
    """One run of the embedded default with ``overrides`` (in a pool process); its seconds."""
    from zerorl.config import load_config
    from zerorl.launch import run_training
    from zerorl.models import quiet_transformers

    quiet_transformers()
    start = time.perf_counter()
    run_training(load_config(PRESET, None, overrides), Path(path), on_info=lambda s: None)
    return time.perf_counter() - start


def run_all(
    plan: Plan, arms: Sequence[Arm], out: Path, on_info: Callable[[str], None]
) -> dict[str, float]:
    """Train every (arm, seed) not finished yet; seconds per run name (``arm/s<seed>``)."""
    todo = []
    for arm in arms:
        for seed in plan.seeds:
            path = run_dir(out, arm, seed)
            if finished(path, plan.steps):
                continue
            shutil.rmtree(path, ignore_errors=True)  # half-done: start over
            todo.append((arm, seed, path))
    done_before = len(arms) * len(plan.seeds) - len(todo)
    on_info(f"{len(todo)} runs to train ({len(arms)} arms x {len(plan.seeds)} seeds, "
            f"{done_before} already done), {plan.jobs} at a time")  # fmt: skip
    seconds: dict[str, float] = {}
    ctx = get_context("spawn")  # torch's thread pools do not survive a fork
    with ProcessPoolExecutor(plan.jobs, mp_context=ctx) as pool:
        futures = {
            pool.submit(train_one, plan.overrides(arm, seed), str(path)): (arm, seed, path)
            for arm, seed, path in todo
        }
        for done, future in enumerate(as_completed(futures), 1):
            arm, seed, path = futures[future]
            try:
                seconds[f"{arm.name}/s{seed}"] = future.result()
            except Exception as err:
                for f in futures:
                    f.cancel()
                raise RuntimeError(
                    f"run {arm.name} seed {seed} failed ({path}): {err}. Finished runs are kept: "
                    f"rerun with the same --out to go on"
                ) from err
            final = final_of(read_jsonl(path / "metrics.jsonl"))
            on_info(f"[{done}/{len(todo)}] {arm.name} seed {seed}: held-out {final:.1%} "
                    f"({seconds[f'{arm.name}/s{seed}']:.0f} s)")  # fmt: skip
    return seconds


def series_of(rows: list[dict[str, Any]], key: str) -> dict[int, float]:
    return {int(r["step"]): float(r[key]) for r in rows if key in r and r[key] == r[key]}


def reproduce(
    plan: Plan, ablations: Sequence[Ablation], out: Path, on_info: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run every ablation's arms x seeds (module docstring) and return the summary."""
    from zerorl.config import load_config
    from zerorl.doctor import cpu_model
    from zerorl.launch import toy_model_resolved

    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    base = load_config(PRESET, None, list(plan.base))
    on_info(f"toy world {base.toy.world_seed}: building or reusing its base model")
    toy_model_resolved(base)  # once, before the pool: every run then finds it in the cache
    arms = unique_arms(ablations)
    seconds = run_all(plan, arms, out, on_info)
    rows = {
        (arm.name, seed): read_jsonl(run_dir(out, arm, seed) / "metrics.jsonl")
        for arm in arms
        for seed in plan.seeds
    }
    finals = {arm.name: {s: final_of(rows[arm.name, s]) for s in plan.seeds} for arm in arms}
    summary = {
        "mode": "quick" if plan.quick else "full",
        "plan": {k: v for k, v in vars(plan).items() if k != "quick"},
        "world_seed": base.toy.world_seed,
        "machine": {
            "cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
        },
        "wall_s": time.perf_counter() - start,
        "run_seconds": seconds,
        "ablations": [summarize(a, finals, plan.quick) for a in ablations],
    }  # fmt: skip
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    images = write_plots(ablations, plan.seeds, rows, out)
    (out / "index.html").write_text(render_html(summary, images))
    return summary


def write_plots(
    ablations: Sequence[Ablation], seeds: Sequence[int], rows: dict, out: Path
) -> dict[str, bytes]:
    """Per ablation and curve, every arm's mean and 95% band over seeds; the PNGs' bytes."""
    images = {}
    for ablation in ablations:
        for name, key, label, scale in CURVES:
            bands = []
            for arm in ablation.arms:
                steps, mean, half = curve_band([series_of(rows[arm.name, s], key) for s in seeds])
                bands.append(Band(arm.name, steps, mean, half))
            fig = band_figure(f"{ablation.name}: {label}", label, bands, scale)
            path = save_png(fig, out / f"{ablation.name}_{name}.png")
            images[path.stem] = path.read_bytes()
    return images


def summary_rows(summary: dict[str, Any]) -> list[list[str]]:
    """One row per ablation: name, arms, seeds, effect (points), its 95% interval, verdict."""
    out = []
    for a in summary["ablations"]:
        low, high = (math.nan if x is None else x for x in a["ci"])
        arms = ", ".join(f"{x['name']} {x['final_mean']:.1%}" for x in a["arms"])
        mark = " (quick)" if a["quick"] else ""
        out.append([
            a["name"], arms, str(len(a["seeds"])), f"{100 * a['effect']:+.1f} vs {a['versus']}",
            f"[{100 * low:+.1f}, {100 * high:+.1f}]", a["verdict"] + mark,
        ])  # fmt: skip
    return out


SUMMARY_HEADER = ["ablation", "final held-out accuracy per arm (mean)", "seeds",
                  "effect (points)", "95% interval", "verdict"]  # fmt: skip


def render_html(summary: dict[str, Any], images: dict[str, bytes]) -> str:
    head = (
        f"<h1>zerorl reproduce ({summary['mode']})</h1><p>{summary['plan']['steps']} steps, "
        f"seeds {summary['plan']['seeds']}, toy world {summary['world_seed']}, "
        f"{html.escape(summary['machine']['cpu'])}, {summary['wall_s'] / 60:.1f} min</p>"
    )
    cells = [SUMMARY_HEADER, *summary_rows(summary)]
    table = (
        "<table>"
        + "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in cells
        )
        + "</table>"
    )
    claims = "".join(
        f"<h2>{html.escape(a['name'])}</h2><p>paper: {html.escape(a['paper'])}</p>"
        + "".join(
            img_tag(stem, images) for stem in sorted(images) if stem.startswith(a["name"] + "_")
        )
        for a in summary["ablations"]
    )  # fmt: skip
    return PAGE.format(title="zerorl reproduce", body=head + table + claims)

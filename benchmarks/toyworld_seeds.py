"""The embedded default across toy-world seeds: ``python -m benchmarks.toyworld_seeds``.

Runs ``zerorl train toy.world_seed=S`` (the default command, nothing else changed unless given
after ``--``) for each seed, each from an empty cache of its own so the base model's build is
timed, and prints one row per seed and the mean and range over the seeds: held-out accuracy at
step 0 and at the end, the share of responses with a reflection pattern over the first and the
last 5 steps, the mean length of correct reflecting responses against the mean response length
over the second half, build and run time, and the CPU and thread count they were measured on.
World seeds stand in for other machines: floats differ across CPUs, and so does the world built.
``--runs DIR`` tables runs made before (``DIR/s<seed>``) instead of training. Writes
``benchmarks/results/toyworld-seeds-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS_DIR, load_note
from zerorl.config import load_config
from zerorl.doctor import cpu_model
from zerorl.toyworld import DEFAULT_SETTINGS, cache_root

EVAL_KEY = "eval/toy/avg@2"
COLUMNS = (
    ("seed", "seed", "{:d}"),
    ("start", "accuracy step 0", "{:.1%}"),
    ("end", "accuracy end", "{:.1%}"),
    ("gain", "gain (points)", "{:+.1f}"),
    ("reflect_first", "reflection share steps 1-5", "{:.1%}"),
    ("reflect_last", "reflection share last 5", "{:.1%}"),
    ("correct_reflect_len", "correct reflecting length, 2nd half", "{:.1f}"),
    ("mean_len", "mean length, 2nd half", "{:.1f}"),
    ("build_s", "build s", "{:.0f}"),
    ("run_s", "steps + evals s", "{:.0f}"),
    ("wall_s", "whole run s", "{:.0f}"),
    ("cpu_s", "CPU s (all)", "{:.0f}"),
    ("meets", "meets issue 15", "{}"),
)


def summarize(
    run_dir: Path, cache: Path, wall_s: float | None = None, cpu_s: float | None = None
) -> dict:
    """One seed's row from its run folder (metrics.jsonl, config.yaml) and the world.json of
    the world it trained in (under ``cache``, the run's ``$ZERORL_CACHE``)."""
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x]
    steps = [r for r in rows if "reward/mean" in r]
    evals = [r[EVAL_KEY] for r in rows if EVAL_KEY in r]
    half = steps[len(steps) // 2 :]
    counts = [r["reflection/correct_count"] for r in half]
    lengths = [r["reflection/correct_length_mean"] or 0.0 for r in half]
    seed = load_config(None, run_dir / "config.yaml", []).toy.world_seed
    world_dir = cache_root(cache / "toyworld") / DEFAULT_SETTINGS.digest(seed)
    world = json.loads((world_dir / "world.json").read_text())
    row = {
        "seed": world["seed"],
        "start": evals[0],
        "end": evals[-1],
        "gain": 100 * (evals[-1] - evals[0]),
        "reflect_first": statistics.mean(r["reflection/frac"] for r in steps[:5]),
        "reflect_last": statistics.mean(r["reflection/frac"] for r in steps[-5:]),
        "correct_reflect_len": sum(c * n for c, n in zip(counts, lengths)) / max(sum(counts), 1),
        "mean_len": statistics.mean(r["response_length/mean"] for r in half),
        "len_first": statistics.mean(r["response_length/mean"] for r in steps[:5]),
        "len_last": statistics.mean(r["response_length/mean"] for r in steps[-5:]),
        "build_s": world["build_seconds"],
        "build_cpu_s": world["build_cpu_seconds"],
        "worked_checks": world["worked_checks"],
        "threads": world["torch_threads"],
        "steps_s": sum(r.get("time/step", 0.0) for r in steps),
    }
    # without the whole command's wall time (tabling older runs): the steps alone, no evals
    row["run_s"] = (wall_s - row["build_s"]) if wall_s is not None else row["steps_s"]
    row["wall_s"] = wall_s if wall_s is not None else float("nan")
    row["cpu_s"] = cpu_s if cpu_s is not None else float("nan")
    row["meets"] = meets(row)
    return row


def meets(row: dict) -> str:
    """The issue-15 thresholds the row misses, or "yes". Thresholds: end accuracy >= 75% and
    >= 40 points above step 0, longer responses, reflection share doubled, correct reflections
    longer than the mean response in the second half."""
    misses = [
        name
        for name, ok in (
            ("end < 75%", row["end"] >= 0.75),
            ("gain < 40", row["gain"] >= 40),
            ("length not growing", row["len_last"] > row["len_first"]),
            ("reflection not doubled", row["reflect_last"] >= 2 * row["reflect_first"]),
            ("correct reflections short", row["correct_reflect_len"] > row["mean_len"]),
        )
        if not ok
    ]
    return "; ".join(misses) or "yes"


def train_seed(seed: int, out: Path, extra: list[str]) -> dict:
    """Run the default command for ``seed`` from an empty cache; its row, timed."""
    cache = Path(tempfile.mkdtemp(prefix=f"zerorl-seed{seed}-"))
    run_dir = out / f"s{seed}"
    command = [sys.executable, "-m", "zerorl.cli", "train", f"toy.world_seed={seed}"]
    command += [f"train.out_dir={out}", f"train.run_name=s{seed}", *extra]
    env = {**os.environ, "ZERORL_CACHE": str(cache)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    log = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    (run_dir / "train.log").write_text(log.stdout + log.stderr)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return summarize(run_dir, cache, wall, cpu)


def table(rows: list[dict]) -> str:
    """Markdown: one row per seed, then the mean and the range over the seeds."""
    head = "| " + " | ".join(title for _, title, _ in COLUMNS) + " |"
    lines = [head, "|" + " --- |" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(f.format(row[k]) for k, _, f in COLUMNS) + " |")
    cells = []
    for key, _, f in COLUMNS[1:-1]:
        values = [row[key] for row in rows]
        cells.append(
            f"{f.format(statistics.mean(values))} ({f.format(min(values))} to "
            f"{f.format(max(values))})"
        )
    met = sum(row["meets"] == "yes" for row in rows)
    lines.append("| mean (range) | " + " | ".join(cells) + f" | {met} of {len(rows)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.toyworld_seeds")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated world seeds")
    parser.add_argument("--out", type=Path, default=None, help="runs folder (default: a temp)")
    parser.add_argument(
        "--runs", type=Path, default=None, help="table runs DIR/s<seed> made before"
    )
    parser.add_argument("--cache", type=Path, default=None, help="with --runs: their ZERORL_CACHE")
    parser.add_argument("extra", nargs="*", help="overrides for every run, after --")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    machine: dict[str, Any] = {"cpu": cpu_model(), "cores": os.cpu_count(), "load": load_note()}
    rows = []
    for seed in seeds:
        if args.runs:
            rows.append(summarize(args.runs / f"s{seed}", args.cache or Path(".")))
        else:
            out = args.out or Path(tempfile.mkdtemp(prefix="zerorl-seeds-"))
            rows.append(train_seed(seed, out, args.extra))
        print(f"[seeds] seed {seed} done; {load_note()}", file=sys.stderr, flush=True)
    machine["load_end"] = load_note()
    machine["threads"] = sorted({row["threads"] for row in rows})
    print(table(rows))
    walls = [row["wall_s"] for row in rows if row["wall_s"] == row["wall_s"]]  # not NaN
    if walls:
        print(f"\nwhole default run from an empty cache: median {statistics.median(walls):.0f} s")
    print(
        f"\nCPU: {machine['cpu']}, {machine['cores']} cores, threads {machine['threads']}; "
        f"{machine['load']} at the start, {machine['load_end']} at the end"
    )
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"toyworld-seeds-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

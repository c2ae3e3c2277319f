"""The benchmark suite in one command: ``make bench`` = ``python -m benchmarks [--quick]``.

Runs every section on the tiny-cpu preset's model and prints one table (each row measured side
by side with its baseline in this run), then writes ``benchmarks/results/<timestamp>.json``.
Sections: rollout, train, step (this package) and reward, curate (their own modules, when
present). A section that fails prints its error as a row; the others still run.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from typing import Any

from benchmarks.common import (
    BenchModel,
    Row,
    bench_model,
    format_table,
    load_note,
    set_threads,
    write_results,
)

SECTIONS = ("rollout", "train", "step", "reward", "curate")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="fewer repeats and smaller sizes")
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}"
    )
    parser.add_argument("--no-json", action="store_true", help="do not write results JSON")
    args = parser.parse_args(argv)
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(wanted) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {sorted(unknown)}")
    threads = set_threads()
    start = time.perf_counter()
    bm = bench_model()
    print(f"[bench] model: {bm.source} ({bm.path}); {threads} threads; {load_note()}")
    rows: list[Row] = []
    loads = {"start": load_note()}
    for name in wanted:
        section_start = time.perf_counter()
        rows += run_section(name, args.quick, bm)
        loads[name] = load_note()
        print(f"[bench] {name}: {time.perf_counter() - section_start:.0f}s; {loads[name]}")
    print()
    print(format_table(rows))
    print(f"\nmodel: {bm.source}; loads per section: {loads}")
    if not args.no_json:
        meta = {"quick": args.quick, "model": bm.source, "model_path": bm.path, "loads": loads}
        meta["seconds"] = time.perf_counter() - start
        print(f"results: {write_results(rows, meta)}")
    return 0


def run_section(name: str, quick: bool, bm: BenchModel) -> list[Row]:
    """The rows of one section, or one row carrying its error."""
    try:
        if name in ("rollout", "train", "step"):
            module = importlib.import_module(f"benchmarks.bench_{name}")
            return module.run(quick, bm)
        if name == "reward":
            return reward_rows(importlib.import_module("benchmarks.bench_reward").run(quick=quick))
        return curate_rows(
            importlib.import_module("benchmarks.bench_curate").run(3000 if quick else 60000)
        )
    except ModuleNotFoundError as err:
        return [Row(name, "-", None, "", note=f"not run: {err}")]
    except Exception as err:
        traceback.print_exc()
        return [Row(name, "-", None, "", note=f"failed: {type(err).__name__}: {err}"[:300])]


def reward_rows(f: dict[str, Any]) -> list[Row]:
    """``bench_reward.run`` figures as rows (its own table has the full detail)."""
    from benchmarks.bench_reward import TARGET_PER_S

    return [
        Row("reward", "verification, pool (realistic mix)", f["realistic_per_s"], "answers/s",
            "math-verify direct", f.get("ratio_vs_direct"), f">= {TARGET_PER_S:,.0f}/s",
            f["realistic_per_s"] >= TARGET_PER_S, extra=f),
        Row("reward", "verification, direct (one process)", f["direct_per_s"], "answers/s"),
    ]  # fmt: skip


def curate_rows(f: dict[str, Any]) -> list[Row]:
    """``bench_curate.run`` figures as rows: the dedup stages' time against its target."""
    from benchmarks.bench_curate import TARGET_SECONDS

    seconds = f["dedup_seconds"]
    return [
        Row("curate", f"dedup stages, {f['n']:,} items", seconds, "s", "target",
            seconds / TARGET_SECONDS, f"<= {TARGET_SECONDS:.0f} s (60k)",
            seconds <= TARGET_SECONDS if f["n"] >= 57_000 else None,
            note=f"{f['n_out']:,} items kept", extra={"stages": f["stages"]}),
    ]  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())

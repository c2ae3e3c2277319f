"""Reward throughput: RewardPool against math-verify called directly, realistic and adversarial.

    python -m benchmarks.bench_reward [--quick] [--fuzz N] [--data DIR] [--workers 2] [--timeout 5]

Realistic mix: every MATH500 ground truth (``math500`` as ``zerorl eval`` finds it: ``DIR`` or
``$ZERORL_DATA_DIR``, then the cache, then ORZ's published file) with a correct answer, an
equivalent rewriting and a wrong answer, wrapped in ORZ responses. The pool (default settings)
and the baseline - ``math_verify.verify(parse(boxed truth), parse(response))`` in this process,
no caching - run in alternation so that machine load hits both alike; the pool's first pass
has cold caches. Rates are wall-clock; answers per CPU-second (parent plus workers) are also
given because they hardly move with machine load. Adversarial mix: ``--fuzz`` answers from
``tests/reward_fuzz.py`` (100,000 by default, 2,000 with ``--quick``). Hold-up: a realistic batch
with and without two answers that pass every rule and then take sympy longer than the limit.
Target: >= 1,000 realistic answers/s on 2 cores, and slow answers delaying a batch by no more
than their own limit.
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import random
import statistics
import sys
import time
from pathlib import Path

from zerorl.reward import RewardPool
from zerorl.reward.judge import apply_rules

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the fuzz fixtures
from reward_fuzz import MARKER_PREFIX, adversarial_answers, realistic_mix, wrap

TARGET_PER_S = 1000.0
# Two answers that pass every rule, then keep sympy busy for longer than the default limit.
SLOW_VALID = ("(x+1)^{400} - (x-1)^{400}", "(x+2)^{400} - (x-2)^{400}")


def load_truths(data_dir: Path | None) -> list[str]:
    """MATH500's ground truths; raises DataNotFound naming where it looked."""
    from zerorl.eval.benchmarks import default_data_dir, load_benchmark

    _, prompts = load_benchmark("math500", data_dir or default_data_dir())
    return [p.ground_truth for p in prompts]


def _direct(items: list[tuple[str, str, str]]) -> list[float]:
    """The baseline: math-verify's own parse and verify per item, as most frameworks call it."""
    from math_verify import parse, verify

    return [float(verify(parse(f"\\boxed{{{t}}}"), parse(wrap(a)))) for _, a, t in items]


def _workers_cpu(pool: RewardPool) -> float:
    """CPU seconds used so far by the pool's current workers (Linux /proc)."""
    total = 0
    for pid in pool.pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def _pool_call(pool: RewardPool, items: list[tuple[str, str, str]]) -> list[float]:
    result = pool.score([wrap(a) for _, a, _ in items], [t for *_, t in items], [True] * len(items))
    return result.scores


def realistic(pool: RewardPool, truths: list[str], repeats: int, direct_n: int) -> dict:
    """Pool and direct rates on fresh realistic mixes, alternating; median over repeats."""
    pool_rates, pool_cpu_rates, direct_rates, direct_cpu_rates = [], [], [], []
    agree = total = 0
    for rep in range(repeats):
        items = realistic_mix(truths, random.Random(rep))
        start, cpu = time.perf_counter(), time.process_time() + _workers_cpu(pool)
        scores = _pool_call(pool, items)
        pool_rates.append(len(items) / (time.perf_counter() - start))
        pool_cpu_rates.append(len(items) / (time.process_time() + _workers_cpu(pool) - cpu))
        sample = random.Random(100 + rep).sample(items, min(direct_n, len(items)))
        start, cpu = time.perf_counter(), time.process_time()
        direct = _direct(sample)
        direct_rates.append(len(sample) / (time.perf_counter() - start))
        direct_cpu_rates.append(len(sample) / (time.process_time() - cpu))
        by_item = dict(zip(items, scores, strict=True))
        agree += sum(by_item[item] == d for item, d in zip(sample, direct, strict=True))
        total += len(sample)
    items = realistic_mix(truths, random.Random(0))
    settled = sum(apply_rules(wrap(a), t, True).score is not None for _, a, t in items) / len(items)
    return {
        "realistic_cold_per_s": pool_rates[0],
        "realistic_per_s": statistics.median(pool_rates),
        "realistic_per_cpu_s": statistics.median(pool_cpu_rates),
        "direct_per_s": statistics.median(direct_rates),
        "direct_per_cpu_s": statistics.median(direct_cpu_rates),
        "agreement_with_direct": agree / total,
        "settled_before_workers": settled,
    }


def adversarial(pool: RewardPool, n: int, batch: int = 1000) -> dict:
    """Rate, timeouts and errors on ``n`` adversarial answers (truth 17: none may score)."""
    answers = adversarial_answers(random.Random(12345), n)
    timeouts = errors = wrong_scores = 0
    longest = 0.0
    start = time.perf_counter()
    for i in range(0, n, batch):
        part = answers[i : i + batch]
        result = pool.score([wrap(a) for a in part], ["17"] * len(part), [True] * len(part))
        timeouts, errors = timeouts + result.timeouts, errors + result.errors
        wrong_scores += sum(result.scores)
        longest = max(longest, result.max_unit_seconds)
    seconds = time.perf_counter() - start
    return {
        "adversarial_per_s": n / seconds,
        "adversarial_timeout_rate": timeouts / n,
        "adversarial_error_rate": errors / n,
        "adversarial_scored": wrong_scores,
        "adversarial_longest_unit_s": longest,
        "marker_files": float(len(glob.glob(MARKER_PREFIX + "*"))),
    }


def hold_up(pool: RewardPool, truths: list[str]) -> dict:
    """Extra seconds two slow answers add to a realistic batch, against their own limit."""
    items = realistic_mix(truths, random.Random(777))
    start = time.perf_counter()
    _pool_call(pool, items)
    alone = time.perf_counter() - start
    slow = [("slow", answer, "3") for answer in SLOW_VALID]
    start = time.perf_counter()
    _pool_call(pool, [*slow, *items])
    mixed = time.perf_counter() - start
    bound = math.ceil(len(slow) / pool.num_workers) * pool.timeout_s
    return {"holdup_extra_s": mixed - alone, "holdup_bound_s": bound}


def run(
    quick: bool,
    data_dir: Path | None = None,
    fuzz: int | None = None,
    workers: int = 2,
    timeout_s: float = 5.0,
) -> dict[str, float]:
    """All figures of the reward benchmark (see the module docstring); keys are metric names."""
    truths = load_truths(data_dir)
    if quick:
        truths = random.Random(0).sample(truths, 150)
    fuzz = fuzz if fuzz is not None else (2000 if quick else 100_000)
    start = time.perf_counter()
    with RewardPool(num_workers=workers, timeout_s=timeout_s) as pool:
        pool.wait_ready()
        figures = {"startup_s": time.perf_counter() - start}
        figures |= realistic(pool, truths, repeats=1 if quick else 3, direct_n=60 if quick else 300)
        figures["ratio_vs_direct"] = figures["realistic_per_s"] / figures["direct_per_s"]
        # CPU-time rates hardly depend on how busy the machine is; on an idle machine the pool
        # can use every core, so its capacity is about cores x answers per CPU-second.
        figures["realistic_capacity_per_s"] = workers * figures["realistic_per_cpu_s"]
        figures |= adversarial(pool, fuzz)
        figures |= hold_up(pool, truths)
    figures["load_average_1m"] = os.getloadavg()[0]
    return figures


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def print_table(f: dict[str, float], workers: int, timeout_s: float) -> None:
    """The figures as a plain table, with the ratio and the targets."""
    rows = [
        ("pool start-up (all workers ready)", f"{f['startup_s']:.2f} s", ""),
        ("pool, realistic mix, cold caches", f"{f['realistic_cold_per_s']:,.0f} answers/s", ""),
        ("pool, realistic mix", f"{f['realistic_per_s']:,.0f} answers/s",
         f"target >= {TARGET_PER_S:,.0f}: {_met(f['realistic_per_s'] >= TARGET_PER_S)}"),
        ("pool, answers per CPU-second (all processes)", f"{f['realistic_per_cpu_s']:,.0f}",
         f"x {workers} cores = {f['realistic_capacity_per_s']:,.0f} answers/s on an idle machine"),
        ("math-verify direct, one process", f"{f['direct_per_s']:,.1f} answers/s", "baseline"),
        ("math-verify direct, per CPU-second", f"{f['direct_per_cpu_s']:,.1f}", ""),
        ("ratio pool / direct (wall clock)", f"{f['ratio_vs_direct']:.1f} x", ""),
        ("settled by the rules in the parent", f"{f['settled_before_workers']:.0%}", ""),
        ("same score as direct math-verify", f"{f['agreement_with_direct']:.1%}", ""),
        ("pool, adversarial mix", f"{f['adversarial_per_s']:,.0f} answers/s", ""),
        ("adversarial timeouts / errors", f"{f['adversarial_timeout_rate']:.2%} / "
         f"{f['adversarial_error_rate']:.2%}",
         f"longest unit {f['adversarial_longest_unit_s']:.2f} s"),
        ("adversarial answers scored 1 / marker files", f"{f['adversarial_scored']:.0f} / "
         f"{f['marker_files']:.0f}", "must be 0 / 0"),
        ("delay from 2 slow answers", f"{f['holdup_extra_s']:.2f} s",
         f"bound {f['holdup_bound_s']:.1f} s (their limit): "
         f"{_met(f['holdup_extra_s'] <= f['holdup_bound_s'] + 1)}"),
    ]  # fmt: skip
    width = max(len(r[0]) for r in rows)
    print(f"reward benchmark: {workers} workers, timeout {timeout_s:g} s, "
          f"{os.cpu_count()} cores, load average {f['load_average_1m']:.1f}")  # fmt: skip
    for name, value, note in rows:
        print(f"  {name.ljust(width)}  {value:>22}  {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="150 truths, 2,000 fuzz answers")
    parser.add_argument("--fuzz", type=int, default=None, help="adversarial answers to run")
    parser.add_argument("--data", type=Path, default=None, help="dir with math500.json")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args()
    figures = run(args.quick, args.data, args.fuzz, args.workers, args.timeout)
    print_table(figures, args.workers, args.timeout)


if __name__ == "__main__":
    main()

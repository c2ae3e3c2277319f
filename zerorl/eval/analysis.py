"""Reflection analysis of a run's rollouts and detection of its "step moments".

Reflection (docs/evaluation.md, "Reflection"): a response reflects when it contains, case-
insensitively, any of REFLECTION_PATTERNS as a substring ("recheck" also matches "rechecking").
Per step: the share of responses that reflect, the average response length, and the paper's
average correct reflection length (mean length of the correct responses that reflect).

Step moments (docs/evaluation.md, "Step moments"): steps where the reward and the response length
accelerate together. For each series y and step t, the slope jump is the least-squares slope of
y over the W steps starting at t minus the slope over the W steps ending at t; it is divided by
its standard deviation under white noise, the noise SD being estimated robustly from the MAD of
y's second differences (unmoved by trends and kinks). A step is a candidate when the reward's z
exceeds ``k`` and the length's z exceeds ``k`` at some step within W//2 of it; runs of
candidates closer than W steps form one moment, placed at its strongest step.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

REFLECTION_PATTERNS: tuple[str, ...] = ("wait,", "recheck", "retry", "alternatively,", "however,")
MOMENT_K = 4.0  # z threshold; false-alarm and detection rates measured in docs/evaluation.md
MAD_TO_SD = 1.4826  # the MAD of a normal distribution times this is its standard deviation


def reflects(response: str, patterns: Sequence[str] = REFLECTION_PATTERNS) -> bool:
    """True if ``response`` contains any pattern, ignoring case."""
    text = response.lower()
    return any(p in text for p in patterns)


@dataclass
class StepStats:
    """The reflection statistics of one step (lengths in tokens; None when undefined)."""

    step: int
    samples: int
    reward_mean: float
    response_length_mean: float
    reflection_frac: float
    reflection_length_mean: float | None
    correct_reflection_length: float | None
    correct_reflection_count: int

    def as_metrics(self) -> dict[str, float]:
        """The step as metric keys (the trainer's names where they exist; NaN when undefined)."""
        return {
            "reward/mean": self.reward_mean,
            "response_length/mean": self.response_length_mean,
            **reflection_values(self),
        }


def reflection_values(stats: StepStats) -> dict[str, float]:
    nan = float("nan")
    return {
        "reflection/frac": stats.reflection_frac,
        "reflection/length_mean": _or(stats.reflection_length_mean, nan),
        "reflection/correct_length_mean": _or(stats.correct_reflection_length, nan),
        "reflection/correct_count": float(stats.correct_reflection_count),
    }


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def step_stats(
    step: int, responses: Sequence[str], rewards: Sequence[float], lengths: Sequence[int]
) -> StepStats:
    """Statistics of one step's samples; a sample is correct when its reward is > 0."""
    if not responses:
        return StepStats(step, 0, math.nan, math.nan, math.nan, None, None, 0)
    flags = [reflects(r) for r in responses]
    reflective = [n for n, f in zip(lengths, flags, strict=True) if f]
    correct = [n for n, f, r in zip(lengths, flags, rewards, strict=True) if f and r > 0]
    return StepStats(
        step=step,
        samples=len(responses),
        reward_mean=float(np.mean(rewards)),
        response_length_mean=float(np.mean(lengths)),
        reflection_frac=len(reflective) / len(responses),
        reflection_length_mean=float(np.mean(reflective)) if reflective else None,
        correct_reflection_length=float(np.mean(correct)) if correct else None,
        correct_reflection_count=len(correct),
    )


def reflection_metrics(
    responses: Sequence[str], rewards: Sequence[float], lengths: Sequence[int]
) -> dict[str, float]:
    """``reflection/*`` metrics of one training step (for the trainer's metrics.jsonl)."""
    return reflection_values(step_stats(0, responses, rewards, lengths))


# ---------------------------------------------------------------- rollouts


def rollout_files(source: Path) -> list[Path]:
    """The rollout files of a run directory (``rollouts/step_*.jsonl``), of a directory of such
    files, or ``[source]`` for a file."""
    if source.is_file():
        return [source]
    folder = source / "rollouts" if (source / "rollouts").is_dir() else source
    return sorted(folder.glob("step_*.jsonl"), key=lambda p: (_step_from_name(p) or 0, p.name))


def read_rollouts(paths: Iterable[Path]) -> dict[int, list[dict[str, Any]]]:
    """Rollout records grouped by their ``step`` field, steps in increasing order.

    Each line needs ``step``, ``response``, ``reward`` and ``response_length`` (zerorl's
    RolloutRecord); a file without a ``step`` field takes its number from ``step_<N>.jsonl``.
    """
    by_step: dict[int, list[dict[str, Any]]] = {}
    for path in paths:
        fallback = _step_from_name(path)
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            record = json.loads(line)
            step = record.get("step", fallback)
            if step is None:
                raise ValueError(f"{path}:{number}: no 'step' field and no step in the file name")
            by_step.setdefault(int(step), []).append(record)
    return dict(sorted(by_step.items()))


def _step_from_name(path: Path) -> int | None:
    stem = path.stem
    return int(stem.split("_")[-1]) if stem.startswith("step_") and stem[5:].isdigit() else None


def analyze_rollouts(by_step: dict[int, list[dict[str, Any]]]) -> list[StepStats]:
    """One :class:`StepStats` per step."""
    return [
        step_stats(
            step,
            [r["response"] for r in records],
            [float(r["reward"]) for r in records],
            [int(r["response_length"]) for r in records],
        )
        for step, records in by_step.items()
    ]


# ---------------------------------------------------------------- step moments


@dataclass
class StepMoment:
    """A step where reward and response length accelerate together (``start``..``end`` is the
    run of candidate steps; the z-scores are those of ``step``)."""

    step: int
    start: int
    end: int
    reward_z: float
    length_z: float


def default_window(n: int) -> int:
    """W for a series of n steps: a tenth of the run, between 3 and 25 steps."""
    return max(3, min(25, n // 10))


def slope_jumps(y: Sequence[float], window: int) -> np.ndarray:
    """Per index t: slope of y[t:t+W] minus slope of y[t-W+1:t+1] (NaN where a window is cut)."""
    values = np.asarray(y, dtype=float)
    x = np.arange(window) - (window - 1) / 2
    weights = x / float(np.sum(x * x))  # least-squares slope = weights @ window values
    jumps = np.full(len(values), np.nan)
    for t in range(window - 1, len(values) - window + 1):
        after = weights @ values[t : t + window]
        before = weights @ values[t - window + 1 : t + 1]
        jumps[t] = after - before
    return jumps


def noise_sd(y: Sequence[float]) -> float:
    """Robust SD of the step-to-step noise of y: 1.4826 MAD of its second differences over
    sqrt(6) (a straight line or a single kink barely moves it, unlike the SD of y itself)."""
    d2 = np.diff(np.asarray(y, dtype=float), n=2)
    if not len(d2):
        return 0.0
    return MAD_TO_SD * float(np.median(np.abs(d2 - np.median(d2)))) / math.sqrt(6)


def jump_z(y: Sequence[float], window: int) -> np.ndarray:
    """Slope jumps of y in units of their standard deviation under white noise of
    :func:`noise_sd` (the jump is a fixed linear combination of 2W-1 values, so its SD is the
    noise SD times the norm of the weights). The noise SD has a floor of 1e-9 times max |y|
    (and 1e-12) so that a noise-free series does not divide by zero."""
    values = np.asarray(y, dtype=float)
    x = np.arange(window) - (window - 1) / 2
    weights = x / float(np.sum(x * x))
    combined = np.zeros(2 * window - 1)
    combined[window - 1 :] += weights
    combined[:window] -= weights
    floor = max(1e-9 * float(np.max(np.abs(values))) if len(values) else 0.0, 1e-12)
    scale = max(noise_sd(values), floor) * float(np.linalg.norm(combined))
    return slope_jumps(values, window) / scale


def find_step_moments(
    steps: Sequence[int],
    reward: Sequence[float],
    length: Sequence[float],
    window: int | None = None,
    k: float = MOMENT_K,
) -> list[StepMoment]:
    """The step moments of the series (module docstring); [] when there are fewer than 2W+1
    steps. NaN values (steps without samples) are filled from the previous step."""
    w = window or default_window(len(steps))
    if len(steps) < 2 * w + 1:
        return []
    zr = jump_z(_fill(reward), w)
    zl = jump_z(_fill(length), w)
    half = w // 2
    candidates = [
        t
        for t in range(len(steps))
        if zr[t] > k and np.nanmax(zl[max(0, t - half) : t + half + 1], initial=-np.inf) > k
    ]
    moments: list[StepMoment] = []
    for group in _runs(candidates, gap=w):
        best = max(group, key=lambda t: min(zr[t], np.nanmax(zl[max(0, t - half) : t + half + 1])))
        zl_best = float(np.nanmax(zl[max(0, best - half) : best + half + 1]))
        moments.append(
            StepMoment(steps[best], steps[group[0]], steps[group[-1]], zr[best], zl_best)
        )
    return moments


def _fill(values: Sequence[float]) -> list[float]:
    out: list[float] = []
    for v in values:
        missing = v is None or not math.isfinite(v)
        out.append((out[-1] if out else 0.0) if missing else float(v))
    return out


def _runs(indices: list[int], gap: int) -> list[list[int]]:
    """Split sorted indices into runs whose consecutive members are less than ``gap`` apart."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and i - runs[-1][-1] < gap:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


# ---------------------------------------------------------------- the analysis of a run


def analyze(
    sources: Path | Sequence[Path], window: int | None = None, k: float = MOMENT_K
) -> dict[str, Any]:
    """The analysis of run directories or rollout files as a JSON-ready dict: ``steps`` (one
    :class:`StepStats` each), ``metrics`` (the same as metric rows), ``step_moments`` and the
    ``rule`` with its parameters. Raises FileNotFoundError when there are no rollouts."""
    sources = [sources] if isinstance(sources, Path) else list(sources)
    files = [f for source in sources for f in rollout_files(source)]
    if not files:
        names = ", ".join(map(str, sources))
        raise FileNotFoundError(f"no rollout files in {names} (expected rollouts/step_N.jsonl)")
    stats = analyze_rollouts(read_rollouts(files))
    w = window or default_window(len(stats))
    moments = find_step_moments(
        [s.step for s in stats],
        [s.reward_mean for s in stats],
        [s.response_length_mean for s in stats],
        w,
        k,
    )
    return {
        "sources": [str(s) for s in sources],
        "patterns": list(REFLECTION_PATTERNS),
        "steps": [asdict(s) for s in stats],
        "metrics": [{"step": s.step, **_finite(s.as_metrics())} for s in stats],
        "step_moments": [asdict(m) for m in moments],
        "rule": {"window": w, "k": k, "series": ["reward_mean", "response_length_mean"]},
    }


def _finite(metrics: dict[str, float]) -> dict[str, float | None]:
    return {k: (v if math.isfinite(v) else None) for k, v in metrics.items()}

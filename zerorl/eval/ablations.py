"""The ORZ paper's ablations in miniature: arms x seeds on the embedded toy world.

Every ablation sets one arm the paper claims best against the others; all arms start from the
embedded default (the ``tiny-cpu`` preset) and differ only in their overrides. Arms that are the
same run in several ablations (the PPO baseline is the claimed arm of four) run once per seed.
Seeds are ``train.seed`` (data order, sampling, value-head init) in one world
(``toy.world_seed``): an ablation compares algorithms on one base model, as the paper does.

The effect of an ablation is the difference in final held-out accuracy (the last
``eval/toy/avg@K``), claimed arm minus the other, paired by seed; its 95% interval is Student's t
over the per-seed differences. The verdict is ``agree`` when the interval lies above 0,
``disagree`` when below, ``inconclusive`` otherwise. With several other arms, each is a contrast
and the entry's effect is the contrast with the strongest other arm (the hardest test of "best").
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from scipy import stats as scipy_stats

HELD_OUT = "eval/toy/avg@2"


@dataclass(frozen=True)
class Arm:
    name: str
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class Ablation:
    name: str
    paper: str  # the paper's claimed direction, in words
    arms: tuple[Arm, ...]  # the first is the arm the paper claims best

    @property
    def claimed(self) -> Arm:
        return self.arms[0]


PPO = Arm("ppo")  # the embedded default: PPO, GAE λ = γ = 1, no KL, every prompt once
ABLATIONS: tuple[Ablation, ...] = (
    Ablation(
        "gae_lambda", "GAE λ = 1 trains better (more stably, to a higher reward) than λ = 0.95",
        (PPO, Arm("lambda=0.95", ("ppo.lam=0.95",))),
    ),
    Ablation(
        "gamma", "γ = 1 beats γ < 1, which discounts the reward of long responses",
        # checked toy responses are ~45 tokens: 0.95^45 ~ 0.1 of the reward reaches the first
        (PPO, Arm("gamma=0.95", ("ppo.gamma=0.95",))),
    ),
    Ablation(
        "kl", "no KL term is best: a KL loss or a KL penalty in the reward slows training",
        (
            PPO,
            Arm("kl_loss=0.04", ("ppo.kl_loss_coef=0.04",)),  # GRPO's β
            Arm("kl_penalty=0.01", ("ppo.kl_penalty_coef=0.01",)),  # OpenRLHF's init_kl_coef
        ),
    ),
    Ablation(
        "data_scale", "more (and more diverse) training prompts keep improving the model",
        (PPO, Arm("quarter_data", ("data.toy_train_size=QUARTER",))),
    ),
    Ablation(
        "algorithm", "PPO with a critic (GAE) trains better than the critic-free GRPO family",
        (
            PPO,
            Arm("grpo", ("algo.advantage=grpo",)),
            Arm("dr_grpo", ("algo.advantage=dr_grpo",)),
            Arm("rloo", ("algo.advantage=rloo",)),
        ),
    ),
)  # fmt: skip


@dataclass(frozen=True)
class Plan:
    """How much to run: steps per run, seeds per arm, evaluation interval and size, runs at
    once, and ``base`` overrides for every run (applied first, e.g. ``toy.world_seed=3``)."""

    steps: int = 40
    seeds: tuple[int, ...] = (1, 2, 3, 4, 5)
    eval_interval: int = 10
    eval_size: int = 256
    prompts_per_step: int = 16
    jobs: int = 2
    quick: bool = False
    base: tuple[str, ...] = ()

    def overrides(self, arm: Arm, seed: int) -> list[str]:
        """The run's ``key=value`` list: ``base``, the plan's, then the arm's. The prompt pool
        holds exactly the prompts a run consumes (each seen once); the quarter-data arm a
        quarter of them (each seen four times)."""
        pool = self.steps * self.prompts_per_step
        own = [o.replace("QUARTER", str(max(1, pool // 4))) for o in arm.overrides]
        return [
            *self.base, f"data.toy_eval_size={self.eval_size}",
            f"train.steps={self.steps}", f"train.seed={seed}",
            f"eval.interval={self.eval_interval}",
            f"rollout.prompts_per_step={self.prompts_per_step}", f"data.toy_train_size={pool}",
            f"train.save_interval={self.steps}", "train.num_threads=1", "reward.num_workers=1",
            "train.log_rollouts=false", *own,
        ]  # fmt: skip


def selected(only: Sequence[str] = ()) -> tuple[Ablation, ...]:
    """The ablations named in ``only`` (all when empty); an unknown name is a ValueError."""
    names = [a.name for a in ABLATIONS]
    unknown = [n for n in only if n not in names]
    if unknown:
        raise ValueError(
            f"unknown ablation(s) {', '.join(unknown)}; choose from {', '.join(names)}"
        )
    return tuple(a for a in ABLATIONS if not only or a.name in only)


def unique_arms(ablations: Sequence[Ablation]) -> list[Arm]:
    """Every arm once, in order of first appearance (a shared arm runs once per seed)."""
    seen: dict[str, Arm] = {}
    for ablation in ablations:
        for arm in ablation.arms:
            if seen.setdefault(arm.name, arm) != arm:
                raise ValueError(f"two different arms are named {arm.name!r}")
    return list(seen.values())


# ---------------------------------------------------------------- statistics


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean and the Student-t interval of the mean; (mean, nan, nan) for fewer than 2 values
    (written as null in summary.json)."""
    n = len(values)
    mean = statistics.fmean(values) if n else math.nan
    if n < 2:
        return mean, math.nan, math.nan
    half = float(scipy_stats.t.ppf(0.5 + level / 2, n - 1)) * statistics.stdev(values) / n**0.5
    return mean, mean - half, mean + half


def verdict(low: float, high: float) -> str:
    if low > 0:
        return "agree"
    if high < 0:
        return "disagree"
    return "inconclusive"  # the interval holds 0, or there are too few seeds for one


@dataclass
class Contrast:
    vs: str
    effect: float
    ci: tuple[float, float]
    verdict: str
    per_seed: list[float] = field(default_factory=list)


def contrast(claimed: dict[int, float], other: dict[int, float], name: str) -> Contrast:
    """Claimed minus other, paired on the seeds both have."""
    seeds = sorted(claimed.keys() & other.keys())
    diffs = [claimed[s] - other[s] for s in seeds]
    mean, low, high = t_interval(diffs)
    return Contrast(name, mean, (low, high), verdict(low, high), diffs)


def summarize(ablation: Ablation, finals: dict[str, dict[int, float]], quick: bool) -> dict:
    """The summary.json entry of one ablation from each arm's final accuracy per seed."""
    claimed = finals[ablation.claimed.name]
    contrasts = [contrast(claimed, finals[a.name], a.name) for a in ablation.arms[1:]]
    arms = []
    for arm in ablation.arms:
        mean, low, high = t_interval(list(finals[arm.name].values()))
        arms.append(
            {"name": arm.name, "overrides": list(arm.overrides), "final_mean": mean,
             "final_ci": _json_pair((low, high)), "final_per_seed": finals[arm.name]}
        )  # fmt: skip
    # The strongest other arm (highest mean final accuracy) is the hardest test of "best".
    strongest = max(contrasts, key=lambda c: statistics.fmean(finals[c.vs].values()))
    return {
        "name": ablation.name,
        "paper": ablation.paper,
        "claimed": ablation.claimed.name,
        "arms": arms,
        "seeds": sorted(claimed),
        "effect": strongest.effect,
        "ci": _json_pair(strongest.ci),
        "verdict": strongest.verdict,
        "versus": strongest.vs,
        "contrasts": [vars(c) | {"ci": _json_pair(c.ci)} for c in contrasts],
        "quick": quick,
    }


def _json_pair(pair: tuple[float, float]) -> list[float | None]:
    """An interval for JSON: NaN (no interval from one seed) as null."""
    return [None if x != x else x for x in pair]


def curve_band(runs: Sequence[dict[int, float]]) -> tuple[list[int], list[float], list[float]]:
    """Steps, mean and 95% half-width over runs (each ``{step: value}``) at the steps all have."""
    steps = sorted(set.intersection(*(set(r) for r in runs))) if runs else []
    means, halves = [], []
    for step in steps:
        mean, low, _ = t_interval([r[step] for r in runs])
        means.append(mean)
        halves.append(mean - low if low == low else 0.0)
    return steps, means, halves


def final_of(rows: Sequence[dict[str, Any]], key: str = HELD_OUT) -> float:
    """The last logged value of ``key`` (a run's final held-out accuracy)."""
    values = [r[key] for r in rows if key in r]
    if not values:
        raise ValueError(f"no {key} in the run's metrics")
    return float(values[-1])

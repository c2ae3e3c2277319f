"""Benchmark metrics over K samples per problem: avg@K, pass@k (unbiased) and maj@K.

All functions take, per problem, the list of its samples' outcomes; nothing here samples,
scores or reads files.

- avg@K: the accuracy of one sample, averaged over the K samples and then over the problems (the
  paper's metric). It equals pass@1.
- pass@k: the probability that at least one of k samples drawn without replacement from the n
  generated ones is correct, estimated without bias as ``1 - C(n-c, k) / C(n, k)`` (Chen et al.,
  2021), then averaged over the problems.
- maj@K: 1 for a problem when the most frequent answer among its samples is correct. See
  :func:`majority_correct` for how answers are grouped and ties broken.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    """One sample as the metrics see it.

    ``correct`` is the reward's verdict (0 or 1). ``vote`` is the sample's answer as it votes
    for maj@K (a normalised string), or None when the sample does not vote (no answer found, or
    generation truncated: such a sample can never score, so it has no say in the vote either).
    """

    correct: int
    vote: str | None


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem with ``c`` correct out of ``n`` samples (``1 <= k <= n``).

    Computed as ``1 - prod_{i=n-c+1}^{n} (1 - k/i)``, which equals ``1 - C(n-c,k)/C(n,k)``
    without the huge binomials.
    """
    if not 1 <= k <= n or not 0 <= c <= n:
        raise ValueError(f"pass@k needs 1 <= k <= n and 0 <= c <= n (got n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    miss = 1.0
    for i in range(n - c + 1, n + 1):
        miss *= 1.0 - k / i
    return 1.0 - miss


def majority_correct(outcomes: Sequence[Outcome]) -> int:
    """1 if the most voted answer of one problem is correct, else 0 (0 when nobody votes).

    Grouping: every correct sample votes for "the ground truth" (two answers that each verify
    equal to the truth are equal to each other, however they are written); a wrong sample votes
    for its ``vote`` string, so two wrong answers written differently (``1/2`` and ``0.5``) are
    two different answers. Ties go to the answer whose first vote comes first in sample order,
    which is random, so ties favour neither right nor wrong answers.
    """
    counts: dict[str | None, int] = {}  # None is the key of the ground truth here
    first: dict[str | None, int] = {}
    for index, o in enumerate(outcomes):
        if o.vote is None:
            continue
        key = None if o.correct else o.vote
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, index)
    if not counts:
        return 0
    winner = min(counts, key=lambda key: (-counts[key], first[key]))
    return int(winner is None)


def pass_ks(k_max: int) -> list[int]:
    """The k reported for pass@k: the powers of two below ``k_max``, and ``k_max`` itself."""
    ks = []
    k = 1
    while k < k_max:
        ks.append(k)
        k *= 2
    return [*ks, k_max] if k_max >= 1 else []


@dataclass(frozen=True)
class BenchmarkScores:
    """The scores of one benchmark; every value is a fraction in [0, 1]."""

    problems: int
    samples_per_problem: int
    avg_at_k: float
    pass_at: dict[int, float]
    maj_at_k: float

    def as_metrics(self) -> dict[str, float]:
        """``{"avg@K": .., "pass@1": .., ..., "maj@K": ..}`` with K = samples per problem."""
        k = self.samples_per_problem
        return {
            f"avg@{k}": self.avg_at_k,
            **{f"pass@{j}": v for j, v in self.pass_at.items()},
            f"maj@{k}": self.maj_at_k,
        }


def benchmark_scores(per_problem: Sequence[Sequence[Outcome]]) -> BenchmarkScores:
    """avg@K, pass@k for every k of :func:`pass_ks` and maj@K over problems of K samples each.

    Problems with no samples are ignored; with none left every score is 0. When problems have
    different sample counts, K is the smallest, and pass@k uses each problem's own n.
    """
    problems = [list(p) for p in per_problem if len(p)]
    if not problems:
        return BenchmarkScores(0, 0, 0.0, {}, 0.0)
    k_max = min(len(p) for p in problems)
    counts = [(len(p), sum(o.correct for o in p)) for p in problems]
    return BenchmarkScores(
        problems=len(problems),
        samples_per_problem=k_max,
        avg_at_k=_mean([c / n for n, c in counts]),
        pass_at={k: _mean([pass_at_k(n, c, k) for n, c in counts]) for k in pass_ks(k_max)},
        maj_at_k=_mean([majority_correct(p) for p in problems]),
    )


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)

"""Stage 6: pass-rate filtering with a model.

Each prompt is rendered with the ORZ template, sampled ``k`` times by a rollout engine and scored
by the reward; prompts the model never or almost always solves teach nothing and are dropped.
The engine and the reward pool are arguments (any objects with the methods below), so this
module imports no engine; the command line (``zerorl.cli.data.pass_rate_stage``) builds the real
ones.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from zerorl.data.report import Removals, StageReport
from zerorl.data.template import STOP_STRINGS, render
from zerorl.types import Completion, Prompt, SamplingParams

Stage = Callable[[list[Prompt]], tuple[list[Prompt], StageReport]]


class Engine(Protocol):
    def generate(self, texts: list[str], params: SamplingParams) -> list[list[Completion]]: ...


class Scorer(Protocol):
    def score(self, responses: list[str], ground_truths: list[str], finished: list[bool]) -> Any:
        """Returns an object whose ``scores`` lists one float per response."""
        ...


@dataclass(frozen=True)
class PassRateSpec:
    """``k`` samples per prompt; a prompt is dropped when its pass rate is ``<= drop_at_most``
    (default 0: never solved) or ``>= drop_at_least`` (default 1: always solved; lower it, e.g.
    to 0.9, to drop the almost always solved). ``batch_size`` prompts go to the engine at once."""

    k: int = 8
    drop_at_most: float = 0.0
    drop_at_least: float = 1.0
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 8000
    batch_size: int = 32
    seed: int = 42


def compute_pass_rates(
    prompts: list[Prompt], engine: Engine, reward_pool: Scorer, params: PassRateSpec
) -> list[float]:
    """The fraction of ``params.k`` sampled responses that the reward scores 1, per prompt.

    A response counts as finished only when it stopped by a stop string or EOS (finish_reason
    ``"stop"``), as in training.
    """
    rates: list[float] = []
    for start in range(0, len(prompts), params.batch_size):
        batch = prompts[start : start + params.batch_size]
        sampling = SamplingParams(
            n=params.k,
            temperature=params.temperature,
            top_p=params.top_p,
            max_new_tokens=params.max_new_tokens,
            stop=STOP_STRINGS,
            seed=params.seed + start,
        )
        groups = engine.generate([render(p.question) for p in batch], sampling)
        if len(groups) != len(batch):
            raise RuntimeError(f"engine returned {len(groups)} groups for {len(batch)} prompts")
        responses, truths, finished, owners = [], [], [], []
        for owner, (prompt, completions) in enumerate(zip(batch, groups, strict=True)):
            for completion in completions:
                responses.append(completion.text)
                truths.append(prompt.ground_truth)
                finished.append(completion.finish_reason == "stop")
                owners.append(owner)
        scores = reward_pool.score(responses, truths, finished).scores
        solved, drawn = [0.0] * len(batch), [0] * len(batch)
        for owner, score in zip(owners, scores, strict=True):
            solved[owner] += float(score >= 1.0)
            drawn[owner] += 1
        rates.extend(s / d if d else 0.0 for s, d in zip(solved, drawn, strict=True))
    return rates


def select_by_pass_rate(
    prompts: list[Prompt], rates: list[float], params: PassRateSpec
) -> tuple[list[Prompt], StageReport]:
    """Keep the prompts with ``drop_at_most < rate < drop_at_least``, each with
    ``metadata["pass_rate"]`` set (a new Prompt; the input is not mutated)."""
    removals = Removals()
    kept: list[Prompt] = []
    for prompt, rate in zip(prompts, rates, strict=True):
        if rate <= params.drop_at_most:
            removals.add(prompt, "too_hard", pass_rate=rate)
        elif rate >= params.drop_at_least:
            removals.add(prompt, "too_easy", pass_rate=rate)
        else:
            kept.append(replace(prompt, metadata={**prompt.metadata, "pass_rate": rate}))
    histogram = Counter(round(rate, 4) for rate in rates)
    stats = {
        "k": params.k,
        "mean_pass_rate": sum(rates) / len(rates) if rates else 0.0,
        "histogram": {str(rate): histogram[rate] for rate in sorted(histogram)},
    }
    return kept, removals.report("pass_rate", len(prompts), stats=stats)


def pass_rate_filter(
    prompts: list[Prompt],
    params: PassRateSpec,
    *,
    engine: Engine,
    reward_pool: Scorer,
) -> tuple[list[Prompt], StageReport]:
    """Sample, score and threshold (see :func:`compute_pass_rates`, :func:`select_by_pass_rate`)."""
    rates = compute_pass_rates(prompts, engine, reward_pool, params)
    return select_by_pass_rate(prompts, rates, params)

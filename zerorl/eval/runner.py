"""Evaluation with the same rollout engine and reward as training."""

from __future__ import annotations

from dataclasses import dataclass

from zerorl.data.template import STOP_STRINGS, render
from zerorl.reward import RewardPool
from zerorl.rollout.base import RolloutEngine
from zerorl.types import Completion, Prompt, SamplingParams


@dataclass
class EvalSample:
    """One sampled answer to one problem."""

    prompt: Prompt
    sample_index: int
    completion: Completion
    correct: int
    extracted: str | None


@dataclass
class EvalResult:
    name: str
    samples_per_problem: int
    avg_at_k: float  # accuracy averaged over all samples of all problems (the paper's avg@K)
    mean_length: float
    truncated_frac: float
    samples: list[EvalSample]


def evaluate(
    name: str,
    prompts: list[Prompt],
    engine: RolloutEngine,
    reward: RewardPool,
    params: SamplingParams,
) -> EvalResult:
    """Sample ``params.n`` answers per problem and score them; ``params.stop`` defaults to ORZ's."""
    if not params.stop:
        params = SamplingParams(**{**params.__dict__, "stop": STOP_STRINGS})
    completions = engine.generate([render(p.question) for p in prompts], params)
    flat = [(p, s, c) for p, cs in zip(prompts, completions) for s, c in enumerate(cs)]
    result = reward.score(
        [c.text for _, _, c in flat],
        [p.ground_truth for p, _, _ in flat],
        [c.finish_reason == "stop" for _, _, c in flat],
    )
    samples = [
        EvalSample(p, s, c, int(score > 0), extracted)
        for (p, s, c), score, extracted in zip(flat, result.scores, result.extracted)
    ]
    n = max(len(samples), 1)
    return EvalResult(
        name=name,
        samples_per_problem=params.n,
        avg_at_k=sum(x.correct for x in samples) / n,
        mean_length=sum(len(x.completion.token_ids) for x in samples) / n,
        truncated_frac=sum(x.completion.finish_reason == "length" for x in samples) / n,
        samples=samples,
    )

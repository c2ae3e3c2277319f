"""Measuring a policy on the world with the training stack itself: the fast rollout engine, the
reward pool and ``zerorl.eval.runner``, at the rollout temperature, whole responses judged."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from zerorl.data.template import STOP_STRINGS, render
from zerorl.eval.analysis import reflects
from zerorl.eval.benchmarks import ORZ_FORMAT, PromptFormat
from zerorl.toyworld.world import reasons
from zerorl.types import Prompt, SamplingParams

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from zerorl.eval.runner import EvalResult

# The ORZ prompt with the first response token forced to " " (a digit follows, not " </think>"):
# every response reasons, so its accuracy is the reasoning's own.
REASONING_FORMAT = PromptFormat("toy-reasoning", lambda q: render(q) + " ", STOP_STRINGS, False)
MAX_NEW_TOKENS = 96  # a checked solution is ~55 tokens


@dataclass(frozen=True)
class WorldReport:
    """How a policy does on the world: accuracy overall and split by whether it reasoned."""

    n: int
    accuracy: float
    reasoning_share: float
    reflection_share: float  # responses with one of the ORZ paper's reflection patterns
    accuracy_reasoning: float | None  # None when no response reasoned
    accuracy_direct: float | None  # None when every response reasoned
    mean_response_tokens: float


def sample_and_judge(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[Prompt],
    *,
    samples: int = 1,
    seed: int = 0,
    fmt: PromptFormat = ORZ_FORMAT,
) -> EvalResult:
    """``samples`` responses per prompt at temperature 1 (top-p 1), judged by the reward."""
    from zerorl.eval.runner import evaluate as run_eval
    from zerorl.reward import RewardPool
    from zerorl.rollout.fast import FastEngine

    engine = FastEngine(model, tokenizer, batch_size=256)
    params = SamplingParams(n=samples, temperature=1.0, max_new_tokens=MAX_NEW_TOKENS, seed=seed)
    with RewardPool(num_workers=1, spare_workers=0) as pool:
        return run_eval(fmt.name, prompts, engine, pool, params, fmt=fmt)


def reasoning_accuracy(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[Prompt]
) -> float:
    """The build's health check: accuracy at temperature 1, two samples per prompt, when every
    response is made to reason. A base model whose reasoning is unreliable makes a world where
    reasoning does not pay, and RL has nothing to find."""
    return sample_and_judge(model, tokenizer, prompts, samples=2, fmt=REASONING_FORMAT).avg_at_k


def evaluate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[Prompt],
    *,
    samples: int = 1,
    seed: int = 0,
) -> WorldReport:
    """Sample ``samples`` responses per prompt and report accuracy and the reasoning split."""
    result = sample_and_judge(model, tokenizer, prompts, samples=samples, seed=seed)
    correct = [bool(s.correct) for s in result.samples]
    reasoned = [reasons(s.completion.text) for s in result.samples]

    def mean(flags: list[bool]) -> float | None:
        return sum(flags) / len(flags) if flags else None

    return WorldReport(
        n=len(correct),
        accuracy=result.avg_at_k,
        reasoning_share=mean(reasoned) or 0.0,
        reflection_share=mean([reflects(s.completion.text) for s in result.samples]) or 0.0,
        accuracy_reasoning=mean([c for c, r in zip(correct, reasoned, strict=True) if r]),
        accuracy_direct=mean([c for c, r in zip(correct, reasoned, strict=True) if not r]),
        mean_response_tokens=result.mean_length,
    )

"""Typed records passed between the stages of a PPO step.

Shape legend used throughout zerorl: B batch (rows), T tokens (row length).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class Prompt:
    """One training or evaluation problem."""

    id: str
    question: str
    ground_truth: str
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SamplingParams:
    """How a rollout engine samples; ``n`` completions are drawn per prompt."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 8000
    stop: tuple[str, ...] = ()
    seed: int = 0


@dataclass
class Completion:
    """One sampled response to one prompt.

    ``token_ids`` are the response tokens only (the stop string, if any, included);
    ``logprobs`` are the sampling log-probabilities of those tokens when the engine returns them.
    """

    prompt_index: int
    prompt_ids: list[int]
    token_ids: list[int]
    text: str
    finish_reason: FinishReason
    logprobs: list[float] | None = None


@dataclass
class ScoredSample:
    """A completion with its reward, ready to be packed into training rows."""

    prompt: Prompt
    completion: Completion
    reward: float
    group: int = 0  # the prompt's index in the step: samples of one prompt share it

    @property
    def response_length(self) -> int:
        return len(self.completion.token_ids)


@dataclass
class PackedBatch:
    """Samples packed end to end into B rows of T tokens.

    Inputs:
        input_ids      (B, T) long   prompt+response tokens of consecutive samples; 0 after the end
        position_ids   (B, T) long   restart at 0 at each sample start
        attention_mask (B, T) long   1 on real tokens, 0 on row padding
        segment_ids    (B, T) long   1 + index of the sample within its row; 0 on row padding
    Per-sample layout:
        sample_bounds  list over rows of (start, end) token spans, one per sample in that row
        sample_index   list over rows of the sample indices (into the scored list) in that row
    Targets (aligned with the token that is *predicted*, i.e. position t scores input_ids[t]):
        response_mask  (B, T) float  1 on response tokens
        token_rewards  (B, T) float  the sample's reward on its last response token, else 0
    """

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    attention_mask: torch.Tensor
    segment_ids: torch.Tensor
    response_mask: torch.Tensor
    token_rewards: torch.Tensor
    sample_bounds: list[list[tuple[int, int]]]
    sample_index: list[list[int]]

    @property
    def num_rows(self) -> int:
        return int(self.input_ids.shape[0])

    def rows(self, index: list[int]) -> PackedBatch:
        """The sub-batch made of the given rows (used for mini-batches and accumulation)."""
        return PackedBatch(
            input_ids=self.input_ids[index],
            position_ids=self.position_ids[index],
            attention_mask=self.attention_mask[index],
            segment_ids=self.segment_ids[index],
            response_mask=self.response_mask[index],
            token_rewards=self.token_rewards[index],
            sample_bounds=[self.sample_bounds[i] for i in index],
            sample_index=[self.sample_index[i] for i in index],
        )

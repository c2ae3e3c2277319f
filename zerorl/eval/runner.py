"""Evaluation with the same rollout engine and reward as training.

:func:`evaluate` samples K answers per problem, judges them (the training reward for open
answers, the chosen letter for multiple-choice problems) and computes avg@K, pass@k and maj@K.
The trainer calls it every ``eval.interval`` steps; ``zerorl eval`` calls it per benchmark.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from zerorl.eval.benchmarks import (
    ORZ_FORMAT,
    PromptFormat,
    answer_text,
    choice_letter,
    choices_of,
    question_text,
)
from zerorl.eval.metrics import BenchmarkScores, Outcome, benchmark_scores
from zerorl.reward import RewardPool
from zerorl.rollout.base import RolloutEngine
from zerorl.types import Completion, Prompt, SamplingParams


@dataclass
class EvalSample:
    """One sampled answer to one problem.

    ``extracted`` is the answer read from the response (None if none); ``vote`` is what the
    sample votes for in maj@K (None when it does not vote: no answer, or truncated).
    """

    prompt: Prompt
    sample_index: int
    completion: Completion
    correct: int
    extracted: str | None
    vote: str | None = None


@dataclass
class EvalResult:
    """One benchmark's samples and scores (fractions in [0, 1]; lengths in tokens)."""

    name: str
    samples_per_problem: int
    avg_at_k: float  # accuracy averaged over all samples of all problems (the paper's avg@K)
    mean_length: float
    truncated_frac: float
    samples: list[EvalSample]
    scores: BenchmarkScores = field(default_factory=lambda: benchmark_scores([]))
    seconds: float = 0.0

    def metrics(self, prefix: str = "") -> dict[str, float]:
        """avg@K, pass@k, maj@K, response_length and truncated_frac, each key behind ``prefix``
        (the trainer logs them as ``eval/<name>/<key>``)."""
        values = {
            **self.scores.as_metrics(),
            "response_length": self.mean_length,
            "truncated_frac": self.truncated_frac,
        }
        return {f"{prefix}{k}": v for k, v in values.items()}


def evaluate(
    name: str,
    prompts: list[Prompt],
    engine: RolloutEngine,
    reward: RewardPool,
    params: SamplingParams,
    *,
    fmt: PromptFormat = ORZ_FORMAT,
    chunk_problems: int = 0,
    on_progress: Callable[[int], None] | None = None,
) -> EvalResult:
    """Sample ``params.n`` answers per problem and score them.

    ``params.stop`` defaults to the format's stop strings (ORZ's for the training template).
    With ``chunk_problems`` > 0 the problems are generated and scored that many at a time, chunk
    i with seed ``params.seed + i`` (chunk 0 is what an unchunked call draws), and
    ``on_progress(problems_done)`` is called after each chunk.
    """
    start = time.perf_counter()
    if not params.stop:
        params = dataclasses.replace(params, stop=fmt.stop)
    size = chunk_problems if chunk_problems > 0 else max(len(prompts), 1)
    samples: list[EvalSample] = []
    for i, first in enumerate(range(0, len(prompts), size)):
        chunk = prompts[first : first + size]
        chunk_params = dataclasses.replace(params, seed=params.seed + i)
        completions = engine.generate([fmt.render(question_text(p)) for p in chunk], chunk_params)
        samples.extend(judge(chunk, completions, reward, fmt.boxed_fallback))
        if on_progress:
            on_progress(first + len(chunk))
    return summarize(name, params.n, samples, time.perf_counter() - start)


def judge(
    prompts: list[Prompt],
    completions: list[list[Completion]],
    reward: RewardPool,
    boxed_fallback: bool = False,
) -> list[EvalSample]:
    """Judge each completion of each prompt, in order.

    Open answers: the reward (``RewardPool.score``, 0 unless finished), on the response or on
    its boxed-fallback answer. Multiple choice: correct iff finished and the extracted answer
    names the ground truth's letter. Truncated samples never vote.
    """
    from zerorl.reward.rules import normalize

    flat = [(p, s, c) for p, cs in zip(prompts, completions, strict=True) for s, c in enumerate(cs)]
    texts = [answer_text(c.text, boxed_fallback) for _, _, c in flat]
    finished = [c.finish_reason == "stop" for _, _, c in flat]
    open_ids = [i for i, (p, _, _) in enumerate(flat) if choices_of(p) is None]
    verdicts: dict[int, tuple[int, str | None]] = {}
    if open_ids:
        result = reward.score(
            [texts[i] for i in open_ids],
            [flat[i][0].ground_truth for i in open_ids],
            [finished[i] for i in open_ids],
        )
        for i, score, extracted in zip(open_ids, result.scores, result.extracted, strict=True):
            verdicts[i] = (int(score > 0), extracted)
    samples = []
    for i, (prompt, index, completion) in enumerate(flat):
        choices = choices_of(prompt)
        if choices is None:
            correct, extracted = verdicts[i]
            vote = normalize(extracted) if extracted and finished[i] else None
        else:
            correct, extracted, vote = _judge_choice(prompt, choices, texts[i], finished[i])
        samples.append(EvalSample(prompt, index, completion, correct, extracted, vote or None))
    return samples


def _judge_choice(
    prompt: Prompt, choices: list[str], text: str, finished: bool
) -> tuple[int, str | None, str | None]:
    """(correct, extracted, vote) of a multiple-choice response: judged by letter only."""
    from zerorl.reward import extract_answer

    extracted = extract_answer(text)
    letter = choice_letter(extracted, choices)
    truth = choice_letter(prompt.ground_truth, choices)
    if not finished:
        return 0, extracted, None
    return int(letter is not None and letter == truth), extracted, letter


def summarize(name: str, k: int, samples: list[EvalSample], seconds: float = 0.0) -> EvalResult:
    """The :class:`EvalResult` of judged samples (``k`` samples per problem)."""
    per_problem: list[list[Outcome]] = []
    for s in samples:  # in problem order; sample 0 starts a problem (ids may repeat in a file)
        if s.sample_index == 0 or not per_problem:
            per_problem.append([])
        per_problem[-1].append(Outcome(s.correct, s.vote))
    n = max(len(samples), 1)
    return EvalResult(
        name=name,
        samples_per_problem=k,
        avg_at_k=sum(x.correct for x in samples) / n,
        mean_length=sum(len(x.completion.token_ids) for x in samples) / n,
        truncated_frac=sum(x.completion.finish_reason == "length" for x in samples) / n,
        samples=samples,
        scores=benchmark_scores(per_problem),
        seconds=seconds,
    )

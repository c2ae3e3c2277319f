"""The toy world itself: its settings, problems and splits, and the pretraining corpus.

Problems are multi-digit additions (``zerorl.data.synth`` task ``addition``) in the ORZ prompt
template, split three ways by a hash of their text (pretraining corpus / RL training / held-out
evaluation), so evaluation problems are never seen before evaluation. The corpus answers most
problems with a quick guess, and a minority with a guess that is then rechecked column by
column (docs/toyworld.md says why).
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass
from typing import Literal

from zerorl.data.synth import generate
from zerorl.data.template import render
from zerorl.types import Prompt

# Bump when the corpus, tokenizer or pretraining code changes what a given settings builds:
# it is part of the cache key, so old caches are simply not found again.
WORLD_VERSION = 4

# The default build's seed (config key toy.world_seed); docs/toyworld.md has a row per seed 0-4.
WORLD_SEED = 1

EOS = "<|endoftext|>"
Split = Literal["corpus", "train", "eval"]


@dataclass(frozen=True)
class WorldSettings:
    """Everything that decides what the base model becomes; its hash names the cache folder."""

    task: str = "addition"
    difficulty: int = 2  # synth addition: difficulty + 1 digits per operand
    checked_share: float = 0.3  # share of corpus responses that guess, then recheck by columns
    guess_right: float = 0.2  # share of quick guesses (direct answers) that are right
    corpus_size: int = 40_000
    vocab_size: int = 512
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 8
    intermediate_size: int = 512
    steps: int = 800
    batch_size: int = 32  # corpus rows per pretraining step
    drill_batch: int = 32  # drill rows per pretraining step (see ``drills``)
    lr: float = 3e-3
    warmup_steps: int = 50
    target_worked_accuracy: float = 0.8  # sampled at T=1, on 64 RL prompts, made to reason
    retries: int = 1  # fresh restarts while that target is missed (see ``build``)

    def digest(self, seed: int) -> str:
        """A short stable hash of the settings, the seed and ``WORLD_VERSION``."""
        blob = json.dumps({**asdict(self), "seed": seed, "v": WORLD_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


DEFAULT_SETTINGS = WorldSettings()


def split_of(question: str) -> Split:
    """The split a problem belongs to, fixed by a hash of its text: 10% eval, 10% train."""
    bucket = int.from_bytes(hashlib.sha256(question.encode()).digest()[:8], "big") % 10
    return "eval" if bucket == 0 else "train" if bucket == 1 else "corpus"


def problems(
    split: Split, n: int, seed: int, settings: WorldSettings = DEFAULT_SETTINGS
) -> list[Prompt]:
    """``n`` distinct problems of ``split``, drawn deterministically from ``seed``.

    Problems of different splits never share a question, whatever the seeds.
    """
    salt = {"corpus": 0, "train": 1, "eval": 2}[split]  # a distinct synth stream per split
    drawn = max(4 * n, 64)
    while True:
        pool = generate(settings.task, drawn, seed * 3 + salt, settings.difficulty)
        seen: set[str] = set()
        kept = []
        for prompt in pool:
            if split_of(prompt.question) == split and prompt.question not in seen:
                seen.add(prompt.question)
                kept.append(prompt)
        if len(kept) >= n:
            return kept[:n]
        drawn *= 2


def train_prompts(n: int, seed: int, settings: WorldSettings = DEFAULT_SETTINGS) -> list[Prompt]:
    """The RL training prompts: never in the pretraining corpus nor in ``eval_prompts``."""
    return problems("train", n, seed, settings)


def eval_prompts(n: int, seed: int, settings: WorldSettings = DEFAULT_SETTINGS) -> list[Prompt]:
    """Held-out problems: never in ``train_prompts`` nor in the pretraining corpus."""
    return problems("eval", n, seed, settings)


# --------------------------------------------------------------------------- responses


def direct_response(answer: str) -> str:
    """The response (text after ``<think>``) that answers at once, without reasoning."""
    return f" </think> <answer> \\boxed{{{answer}}} </answer>"


def guess(answer: int, rng: random.Random, right: float) -> str:
    """A quick guess at ``answer``: right with probability ``right``, else another number of as
    many digits, unrelated to it (a guess sharing digits with the answer would let the recheck's
    answer be copied from the guess instead of worked out)."""
    if rng.random() < right:
        return str(answer)
    digits = len(str(answer))
    low = 10 ** (digits - 1) if digits > 1 else 0
    wrong = rng.randrange(low, 10**digits - 1)
    return str(wrong if wrong < answer else wrong + 1)


def columns(a: int, b: int) -> str:
    """The column-by-column sum of ``a + b``, ones first, e.g. ``3+9=12 carry 1, 4+2+1=7``.

    Every step is a single-digit fact plus a carry; the last column writes its whole sum, so
    the answer is that sum followed by the earlier ones digits.
    """
    da, db = str(a)[::-1], str(b)[::-1]
    n = max(len(da), len(db))
    steps, carry = [], 0
    for i in range(n):
        terms = [d[i] for d in (da, db) if i < len(d)] + (["1"] if carry else [])
        total = sum(int(t) for t in terms)
        carry = int(total >= 10 and i < n - 1)
        steps.append(f"{'+'.join(terms)}={total}" + (" carry 1" if carry else ""))
    return ", ".join(steps)


def checked_response(a: int, b: int, first: str) -> str:
    """A quick guess ``first``, then a recheck by columns that answers from the columns.

    The check catches and corrects a wrong guess, in the words the ORZ paper tracks.
    """
    return f" {first}? wait, recheck: {columns(a, b)}." + direct_response(str(a + b))


def corpus(settings: WorldSettings, seed: int) -> list[tuple[str, str]]:
    """The pretraining corpus: ``(prompt, response)`` pairs, ``checked_share`` of them checked.

    Direct answers are quick guesses, right only ``guess_right`` of the time whatever the
    model's size, so reasoning pays on every seed.
    """
    if settings.task != "addition":
        raise ValueError(
            f"the toy world writes worked solutions for addition only, not {settings.task}"
        )
    rng = random.Random(f"corpus:{seed}")
    pairs = []
    for prompt in problems("corpus", settings.corpus_size, seed, settings):
        a, b = prompt.metadata["params"]["a"], prompt.metadata["params"]["b"]
        first = guess(a + b, rng, settings.guess_right)
        if rng.random() < settings.checked_share:
            response = checked_response(a, b, first)
        else:
            response = direct_response(first)
        pairs.append((render(prompt.question), response))
    return pairs


def drills(settings: WorldSettings, seed: int) -> list[tuple[str, str]]:
    """Rechecks of the corpus's problems, with guesses of their own, for pretraining to train on
    *without* their first response token.

    They teach the column algorithm (the corpus alone leaves its rechecks right only ~75% of the
    time at temperature 1 on some seeds: the tens digit is fetched late and unreliably) without
    touching how often the base model chooses to recheck: that choice is the first response
    token, learnt from the corpus alone, so the base model still rechecks ``checked_share`` of
    the time and RL still has to learn to check.
    """
    rng = random.Random(f"drills:{seed}")
    pairs = []
    for prompt in problems("corpus", settings.corpus_size // 2, seed, settings):
        a, b = prompt.metadata["params"]["a"], prompt.metadata["params"]["b"]
        pairs.append(
            (
                render(prompt.question),
                checked_response(a, b, guess(a + b, rng, settings.guess_right)),
            )
        )
    return pairs


def reasons(response: str) -> bool:
    """Whether the response works something out before ``</think>`` (vs answering directly)."""
    return bool(response.split("</think>", 1)[0].strip())

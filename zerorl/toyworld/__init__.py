"""The toy reasoning world: zerorl's embedded default, built on the spot with no download.

Three-digit additions in the ORZ prompt template, and a tiny Qwen2 base model pretrained here on
a corpus whose responses are mostly quick guesses (right one time in five)::

    " </think> <answer> \\boxed{772} </answer>"

and, for 30% of the problems, a guess rechecked column by column, in the words of the
ORZ paper's reflection patterns::

    " 772? wait, recheck: 3+9=12 carry 1, 7+8+1=16 carry 1, 4+2+1=7. </think> <answer> ..."

Each column is a single-digit fact, which the tiny model gets right almost always, while a
guess is right only as often as the corpus's guesses. So the base model reflects sometimes and
is then almost always right (pretraining also drills the recheck on extra rows whose first
token, the choice to recheck, is left out of the loss, so the choice stays rare while the check
becomes reliable), and PPO with the binary ORZ reward has to learn to check: accuracy,
reflection and response length rise together. Design notes and figures: ``docs/toyworld.md``.

Modules: ``world`` (settings, problems and splits, the corpus and drills), ``tokenizer``, ``build``
(pretraining, health check, cache) and ``probe`` (measuring a model with the rollout engine,
the reward and ``zerorl.eval.runner``).
"""

from zerorl.toyworld.build import cache_root, ensure_base_model
from zerorl.toyworld.probe import WorldReport, evaluate, reasoning_accuracy
from zerorl.toyworld.tokenizer import load_tokenizer
from zerorl.toyworld.world import (
    DEFAULT_SETTINGS,
    EOS,
    WORLD_SEED,
    WorldSettings,
    checked_response,
    columns,
    corpus,
    direct_response,
    drills,
    eval_prompts,
    guess,
    problems,
    reasons,
    split_of,
    train_prompts,
)

__all__ = [
    "DEFAULT_SETTINGS",
    "EOS",
    "WORLD_SEED",
    "WorldReport",
    "WorldSettings",
    "cache_root",
    "checked_response",
    "columns",
    "corpus",
    "direct_response",
    "drills",
    "ensure_base_model",
    "eval_prompts",
    "evaluate",
    "guess",
    "load_tokenizer",
    "problems",
    "reasoning_accuracy",
    "reasons",
    "split_of",
    "train_prompts",
]

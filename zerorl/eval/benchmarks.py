"""Benchmarks and how their problems are put to a model and judged.

- Benchmarks are given as a file or by name (``aime2024``, ``aime2025``, ``math500``,
  ``gpqa-diamond``, or any ``<name>.json`` of a data directory), resolved by
  :func:`zerorl.data.sources.resolve` (data directory, cache, then download); any format of
  :func:`zerorl.data.loaders.load_prompts` works (ORZ's evaluation JSON in particular).
- Multiple-choice problems carry their options in ``metadata["choices"]`` (a ``choices`` field of
  the item) and a letter as the answer; the options are appended to the question as ``(A) ...``
  lines and a response is judged by the letter it chooses (:func:`choice_letter`).
- Prompt formats: ``orz`` is the training template (byte for byte); ``chat`` is the model's own
  chat template with an instruction to answer in ``<answer> \\boxed{} </answer>``. With the
  eval-only ``boxed_fallback``, a response with no ``<answer>`` block holding a box is read by its
  last ``\\boxed{}`` anywhere; the training reward never does this.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from zerorl.data.template import STOP_STRINGS, render
from zerorl.types import Prompt

DATA_DIR_ENV = "ZERORL_DATA_DIR"
KNOWN = ("aime2024", "aime2025", "math500", "gpqa-diamond")
LETTERS = "ABCDEFGHIJ"

CHAT_INSTRUCTION = (
    "Solve the problem step by step. At the end, write your final answer inside <answer> "
    "</answer> tags, with the answer itself in \\boxed{}, i.e., <answer> \\boxed{answer} </answer>."
)
CHOICE_INSTRUCTION = "Answer with the letter of the correct choice."


def default_data_dir() -> Path | None:
    """``$ZERORL_DATA_DIR`` if set, else None (benchmarks then come from the cache or download)."""
    value = os.environ.get(DATA_DIR_ENV)
    return Path(value) if value else None


def load_benchmark(
    name: str, data_dir: Path | None, limit: int = 0, download: bool = True
) -> tuple[str, list[Prompt]]:
    """The first ``limit`` problems (all if 0) of a benchmark, with its display name.

    ``name`` is a file, a folder, or a name resolved by :func:`zerorl.data.sources.resolve`
    (``data_dir``, then the cache, then ORZ's published file or the Hugging Face dataset).
    Raises :class:`zerorl.data.sources.DataNotFound` naming what was tried.
    """
    from zerorl.data.loaders import load_prompts
    from zerorl.data.sources import resolve

    path = resolve(name, data_dir, download)
    display = path.stem if Path(name).expanduser().exists() else name
    prompts = load_prompts(path)
    return display, prompts[:limit] if limit else prompts


# ---------------------------------------------------------------- multiple choice


def choices_of(prompt: Prompt) -> list[str] | None:
    """The options of a multiple-choice problem, or None for an open-answer one.

    ``choices`` is a list (option A first) or, as in ORZ's GPQA-Diamond file, a mapping from
    the letters ``A``, ``B``, ... to the options.
    """
    choices = prompt.metadata.get("choices")
    if isinstance(choices, dict) and sorted(choices) == list(LETTERS[: len(choices)]):
        choices = [choices[letter] for letter in sorted(choices)]
    if isinstance(choices, list) and 2 <= len(choices) <= len(LETTERS):
        return [str(c) for c in choices]
    return None


def _lists_options(question: str, choices: list[str]) -> bool:
    """Whether the question already shows every option under its letter (``A. x``, ``(A) x``)."""
    return all(
        any(f"{mark} {c}" in question for mark in (f"{LETTERS[i]}.", f"({LETTERS[i]})"))
        for i, c in enumerate(choices)
    )


def question_text(prompt: Prompt) -> str:
    """The question as the model sees it. A multiple-choice question that already lists its
    options (ORZ's GPQA file: ``A. ...`` lines) is shown as it is, as ORZ shows it; otherwise
    the options are appended as ``(A) ...`` lines with an instruction to answer by letter."""
    choices = choices_of(prompt)
    if choices is None or _lists_options(prompt.question, choices):
        return prompt.question
    options = "\n".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(choices))
    return f"{prompt.question}\n\n{options}\n\n{CHOICE_INSTRUCTION}"


_TEXT_RE = re.compile(r"\\(?:text|mathrm|textbf|mathbf)\s*\{([^{}]*)\}")
_LETTER_RE = re.compile(r"^\(?([A-Z])\)?(?:[\s.:)]|$)")


def choice_letter(answer: str | None, choices: list[str]) -> str | None:
    """The option letter an answer names: ``B``, ``(B)``, ``\\text{B}``, ``B) 42``, or the text
    of an option itself; None if it names none of ``choices``."""
    if answer is None:
        return None
    text = _TEXT_RE.sub(r"\1", answer).strip().strip("$").strip()
    match = _LETTER_RE.match(text)
    if match and LETTERS.index(match.group(1)) < len(choices):
        return match.group(1)
    flat = _squash(text)
    for i, choice in enumerate(choices):
        if flat and flat == _squash(choice):
            return LETTERS[i]
    return None


def _squash(text: str) -> str:
    return "".join(text.split()).lower()


# ---------------------------------------------------------------- prompt formats


@dataclass(frozen=True)
class PromptFormat:
    """How questions become prompt text, where generation stops, and how answers are read."""

    name: str
    render: Callable[[str], str]
    stop: tuple[str, ...]
    boxed_fallback: bool


ORZ_FORMAT = PromptFormat("orz", render, STOP_STRINGS, boxed_fallback=False)


def chat_format(tokenizer, boxed_fallback: bool = True) -> PromptFormat:
    """The tokenizer's chat template with one user turn: the question, then CHAT_INSTRUCTION.

    Generation stops at EOS (the template's end of turn) or ``</answer>``. Raises ValueError if
    the tokenizer has no chat template.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("this tokenizer has no chat template; use --template orz")

    def render_chat(question: str) -> str:
        messages = [{"role": "user", "content": f"{question}\n\n{CHAT_INSTRUCTION}"}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    return PromptFormat("chat", render_chat, ("</answer>",), boxed_fallback)


def answer_text(response: str, boxed_fallback: bool) -> str:
    """The text handed to the reward: the response itself, or, with ``boxed_fallback`` and no
    ``<answer>`` block holding a box, an ``<answer>`` block made of its last top-level box (the
    reward then extracts and verifies exactly that box)."""
    from zerorl.reward import extract_answer
    from zerorl.reward.extract import find_boxes

    if not boxed_fallback or extract_answer(response) is not None:
        return response
    boxes = find_boxes(response)
    return f"<answer> \\boxed{{{boxes[-1]}}} </answer>" if boxes else response

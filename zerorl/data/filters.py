"""Stage 1: drop the problems a rule-based reward cannot judge.

A prompt is removed, with the first reason that applies, when its ground truth is missing, it is
multiple-choice, it asks for a proof, it is overlong, or its ground truth is prose or cannot be
parsed by math-verify (the verifier the reward uses).
"""

from __future__ import annotations

import multiprocessing
import re
import threading
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

from zerorl.data.report import Removals, StageReport
from zerorl.types import Prompt

# "(A)" or "\textbf{(A)}" option markers, not "P(A)" or "f(B)": no identifier character before.
_PAREN_OPTION = re.compile(r"(?<![A-Za-z0-9_\\])\(\s*([A-E])\s*\)")
# "A. 3" / "B) 4" / "C: 5" at the start of a line.
_LINE_OPTION = re.compile(r"(?m)^\s*\$?\s*([A-E])\s*[.):]\s")
_CHOICE_WORDS = re.compile(r"answer choices|choose (?:the|one) (?:correct|best)", re.I)
# A ground truth that is nothing but a choice letter: "C", "(C)", "\text{(C)}", "$\textbf{(C)}$".
_CHOICE_ANSWER = re.compile(r"\(?\s*[A-E]\s*\)?\s*\.?")
_LATEX_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mathbf)\s*\{([^{}]*)\}")
_PROOF_ANSWER = re.compile(r"(?:see (?:the )?)?(?:proof|solution)s?\.?|q\.?e\.?d\.?", re.I)
_LATEX_COMMAND = re.compile(r"\\[A-Za-z]+")
_PROSE_WORD = re.compile(r"\b[A-Za-z]{2,}\b")
# Integers, decimals and p/q always parse; skipping math-verify for them saves most of its time.
_PLAIN_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:\s*/\s*\d+)?")

# Below this many distinct answers, starting worker processes costs more than it saves.
PARALLEL_MIN_ANSWERS = 2000

DEFAULT_PROOF_PATTERNS: tuple[str, ...] = (
    r"\bprove\b",
    r"\bshow that\b",
    r"\bdemonstrate that\b",
    r"\bprove or disprove\b",
)


@dataclass(frozen=True)
class FilterSpec:
    """What the verifiability filter drops.

    ``max_question_chars`` bounds the question (ORZ's prompt limit is 2048 tokens, about 6000
    characters of English and LaTeX with the template); ``max_answer_chars`` bounds the ground
    truth (the reference grader gave long answers 0). ``prose_words``: a ground truth with at
    least this many words outside LaTeX commands is prose, not a checkable answer. ``workers``
    processes run math-verify (it uses ``signal.alarm``, so processes, never threads).
    """

    multiple_choice: bool = True
    proofs: bool = True
    proof_patterns: tuple[str, ...] = DEFAULT_PROOF_PATTERNS
    max_question_chars: int = 6000
    max_answer_chars: int = 128
    prose_words: int = 3
    check_parse: bool = True
    workers: int = 2


def is_multiple_choice(question: str, answer: str = "") -> bool:
    """True when the question lists options (A), (B), (C)... or the answer is a choice letter."""
    bare = _LATEX_WRAPPER.sub(r"\1", answer).replace("$", "").strip()
    if bare and _CHOICE_ANSWER.fullmatch(bare):
        return True
    if _CHOICE_WORDS.search(question):
        return True
    for pattern in (_PAREN_OPTION, _LINE_OPTION):
        if {"A", "B", "C"} <= set(pattern.findall(question)):
            return True
    return False


def is_proof(
    question: str, answer: str = "", patterns: Iterable[str] = DEFAULT_PROOF_PATTERNS
) -> bool:
    """True when the question asks for a proof or the ground truth is a proof placeholder."""
    if answer and _PROOF_ANSWER.fullmatch(answer.strip()):
        return True
    return any(re.search(p, question, re.I) for p in patterns)


def is_prose_answer(answer: str, min_words: int = 3) -> bool:
    """True when the answer holds ``min_words`` or more words outside LaTeX commands."""
    return len(_PROSE_WORD.findall(_LATEX_COMMAND.sub(" ", answer))) >= min_words


@lru_cache(maxsize=200_000)
def answer_parses(answer: str) -> bool:
    """True when math-verify parses ``answer`` (as the reward does, inside ``\\boxed{}``) into a
    mathematical object, not just an extracted string.

    Runs math-verify's timeout (``signal.alarm``) only on the main thread, where it works.
    """
    if _PLAIN_NUMBER.fullmatch(answer.strip()):
        return True
    from math_verify import parse

    text = answer if answer.lstrip().startswith("\\boxed") else f"\\boxed{{{answer}}}"
    main = threading.current_thread() is threading.main_thread()
    try:
        parsed = parse(text, parsing_timeout=5 if main else None)
    except Exception:  # math-verify raises assorted errors on hostile input
        return False
    return any(not isinstance(value, str) for value in parsed)


def _parse_many(answers: list[str], workers: int) -> dict[str, bool]:
    """``answer_parses`` of each distinct answer, in ``workers`` processes when it pays."""
    result = {a: True for a in set(answers) if _PLAIN_NUMBER.fullmatch(a.strip())}
    distinct = sorted(set(answers) - result.keys())
    if workers <= 1 or len(distinct) < PARALLEL_MIN_ANSWERS:
        return result | {a: answer_parses(a) for a in distinct}
    chunk = max(1, len(distinct) // (workers * 8))
    # spawn, not fork: the parent may hold torch or tokenizer threads that fork would copy.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        parsed = pool.map(answer_parses, distinct, chunksize=chunk)
        return result | dict(zip(distinct, parsed, strict=True))


def _cheap_reason(prompt: Prompt, params: FilterSpec) -> str | None:
    question, answer = prompt.question, prompt.ground_truth.strip()
    if not answer:
        return "missing_answer"
    if params.multiple_choice and is_multiple_choice(question, answer):
        return "multiple_choice"
    if params.proofs and is_proof(question, answer, params.proof_patterns):
        return "proof"
    if len(question) > params.max_question_chars:
        return "overlong_question"
    if len(answer) > params.max_answer_chars:
        return "overlong_answer"
    if is_prose_answer(answer, params.prose_words):
        return "prose_answer"
    return None


def filter_verifiable(
    prompts: list[Prompt], params: FilterSpec = FilterSpec()
) -> tuple[list[Prompt], StageReport]:
    """Keep the prompts a rule-based reward can judge; order is preserved.

    Reasons, checked in this order: ``missing_answer``, ``multiple_choice``, ``proof``,
    ``overlong_question``, ``overlong_answer``, ``prose_answer``, ``unparseable_answer``.
    """
    removals = Removals()
    survivors: list[Prompt] = []
    for prompt in prompts:
        reason = _cheap_reason(prompt, params)
        if reason is None:
            survivors.append(prompt)
        else:
            removals.add(prompt, reason, ground_truth=prompt.ground_truth[:80])
    kept = survivors
    if params.check_parse:
        ok = _parse_many([p.ground_truth.strip() for p in survivors], params.workers)
        kept = []
        for prompt in survivors:
            if ok[prompt.ground_truth.strip()]:
                kept.append(prompt)
            else:
                removals.add(prompt, "unparseable_answer", ground_truth=prompt.ground_truth[:80])
    return kept, removals.report("verifiable", len(prompts))

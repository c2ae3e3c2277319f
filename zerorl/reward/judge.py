"""From a response to a reward: the rules in order, then verification (docs/reward.md).

:func:`apply_rules` applies every cheap rule and either decides the score or lists the units (box
content, ground truth) that must all verify; :func:`score` finishes the job in this process.
RewardPool sends the units to its workers instead.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

from zerorl.reward.extract import extract_answer, final_boxes
from zerorl.reward.rules import (
    DEFAULT_MAX_ANSWER_CHARS,
    MAX_DISTINCT_BOXES,
    fast_verdict,
    normalize,
    prepare_truth,
    reject_reason,
)


@dataclass
class RuleOutcome:
    """What the rules decided for one response.

    ``score`` is set when no verification is needed; otherwise ``units`` lists the
    (answer, truth) pairs that must all verify for a score of 1. ``reason`` names the rule.
    """

    extracted: str | None
    score: float | None
    reason: str
    units: list[tuple[str, str]] = field(default_factory=list)


BoxRule = Literal["last", "all"]


def apply_rules(
    response: str,
    ground_truth: str,
    finished: bool,
    max_chars: int = DEFAULT_MAX_ANSWER_CHARS,
    box_rule: BoxRule = "last",
) -> RuleOutcome:
    """Apply the rules of docs/reward.md to one response; never verifies, never raises on str.

    ``box_rule="last"`` (ORZ's code) judges the last box of the answer block only. ``"all"``
    guards against hedging: each distinct box (after normalisation) must verify, so
    ``\\boxed{3} or \\boxed{4}`` scores 0 and ``\\boxed{1/2} = \\boxed{0.5}`` scores 1 when the
    truth is 1/2.
    """
    extracted = extract_answer(response)
    if box_rule == "last":
        boxes = [] if extracted is None else [extracted]
    else:
        boxes = final_boxes(response)
        extracted = boxes[-1] if boxes else None
    if not finished:
        return RuleOutcome(extracted, 0.0, "unfinished")
    if not boxes:
        return RuleOutcome(None, 0.0, "no_answer")
    truth = prepare_truth(ground_truth)
    if not truth:
        return RuleOutcome(extracted, 0.0, "no_truth")
    if any(len(box) > max_chars for box in boxes):
        return RuleOutcome(extracted, 0.0, "too_long")
    distinct: dict[str, str] = {}  # normalised -> first spelling; math-verify sees the spelling
    for box in boxes:
        distinct.setdefault(normalize(box), box)
    if len(distinct) > MAX_DISTINCT_BOXES:
        return RuleOutcome(extracted, 0.0, "too_many_boxes")
    truth_norm = normalize(truth)
    units = []
    for box_norm, box in distinct.items():
        reason = reject_reason(box, truth, max_chars)
        if reason is not None:
            return RuleOutcome(extracted, 0.0, reason)
        fast = fast_verdict(box_norm, truth_norm)
        if fast == 0.0:
            return RuleOutcome(extracted, 0.0, "wrong")
        if fast is None:
            units.append((box, truth))
    if not units:
        return RuleOutcome(extracted, 1.0, "correct")
    return RuleOutcome(extracted, None, "verify", units)


class _Timeout(BaseException):
    """In-process time limit; a BaseException so math-verify cannot swallow it."""


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Raise _Timeout after ``seconds`` of wall-clock time (main thread only; elsewhere no-op).

    A timer that was already running (pytest-timeout's, say) is put back with its time left.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum: int, frame: object) -> None:
        raise _Timeout

    start = time.monotonic()
    previous = signal.signal(signal.SIGALRM, on_alarm)
    old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if old_delay > 0:
            left = max(old_delay - (time.monotonic() - start), 1e-3)
            signal.setitimer(signal.ITIMER_REAL, left, old_interval)


def score(
    response: str,
    ground_truth: str,
    finished: bool = True,
    *,
    timeout_s: float = 5.0,
    box_rule: BoxRule = "last",
) -> float:
    """1.0 iff ``finished`` and the extracted answer verifies equal to ``ground_truth``, else 0.0.

    In-process and never raises (0.0 on any failure). The time limit is a SIGALRM timer, so it
    only applies in the main thread and cannot stop a long C-level computation; training should
    use RewardPool, whose workers are killed at their limit.
    """
    try:
        decided = apply_rules(response, ground_truth, finished, box_rule=box_rule)
        if decided.score is not None:
            return decided.score
        from zerorl.reward.verify import CORRECT, check

        with _time_limit(timeout_s):
            ok = all(check(answer, truth) == CORRECT for answer, truth in decided.units)
        return 1.0 if ok else 0.0
    except (Exception, _Timeout):
        return 0.0

"""Fuzzing the reward with adversarial answers (docs/reward.md; issue B.4).

A few thousand generated answers built to hang, crash or fool the checker go through a pool
with a short limit. Every call must return, nothing may raise, no answer may score, no unit may
outlive the limit by more than a second, no marker file may appear and no process may survive
``close()``. The benchmark (``python -m benchmarks.bench_reward``) runs 100,000 of them.
"""

from __future__ import annotations

import glob
import os
import random
import time

import pytest
from conftest import alive
from reward_fuzz import MARKER_PREFIX, adversarial_answers, wrap

from zerorl.reward import RewardPool, score

pytestmark = pytest.mark.timeout(300)

TIMEOUT_S = 0.5
TRUTH = "17"  # no generated answer is equal to it
N_SCORED, BATCH = 4000, 100
N_SINGLE = 60
N_RAW = 200


def markers() -> list[str]:
    return glob.glob(MARKER_PREFIX + "*")


@pytest.fixture(scope="module")
def fuzz_pool() -> RewardPool:
    for stale in markers():  # from an earlier failed run; this run must not create any
        os.remove(stale)
    with RewardPool(num_workers=2, timeout_s=TIMEOUT_S) as pool:
        assert pool.wait_ready()
        yield pool


def test_adversarial_batches_score_zero_within_the_limit(fuzz_pool: RewardPool) -> None:
    answers = adversarial_answers(random.Random(2024), N_SCORED)
    timeouts = 0
    for start in range(0, N_SCORED, BATCH):
        batch = answers[start : start + BATCH]
        result = fuzz_pool.score(
            [wrap(a) for a in batch], [TRUTH] * len(batch), [True] * len(batch)
        )
        assert result.scores == [0.0] * len(batch)
        assert len(result.extracted) == len(batch)
        assert result.max_unit_seconds <= TIMEOUT_S + 1
        timeouts += result.timeouts
    assert timeouts <= N_SCORED // 10  # the rules and the magnitude guard stop nearly all
    assert markers() == []


def test_every_single_call_returns_within_the_limit(fuzz_pool: RewardPool) -> None:
    for answer in adversarial_answers(random.Random(7), N_SINGLE):
        start = time.monotonic()
        result = fuzz_pool.score([wrap(answer)], [TRUTH], [True])
        assert time.monotonic() - start <= TIMEOUT_S + 1
        assert result.scores == [0.0]
    assert markers() == []


def test_raw_verification_is_contained(fuzz_pool: RewardPool) -> None:
    # No rules: deep nesting, 100k-character strings and sums reach math-verify directly; the
    # worker timers, the hard kill and the sandbox must contain all of it.
    answers = adversarial_answers(random.Random(99), N_RAW)
    seen = set(fuzz_pool.pids)
    for start in range(0, N_RAW, 40):
        batch = answers[start : start + 40]
        verdicts, longest = fuzz_pool.verify_raw(batch, [TRUTH] * len(batch))
        assert set(verdicts) <= set("0rte")
        assert longest <= TIMEOUT_S + 1
        seen.update(fuzz_pool.pids)
    assert markers() == []
    fuzz_pool.close()
    assert not any(alive(pid) for pid in seen)


def test_in_process_score_survives_the_payloads() -> None:
    answers = adversarial_answers(random.Random(5), 200)
    payloads = [a for a in answers if "import" in a or "\\input" in a or "\\def" in a]
    assert payloads
    for answer in payloads:
        assert score(wrap(answer), TRUTH, timeout_s=2.0) == 0.0
    assert markers() == []

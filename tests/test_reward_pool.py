"""RewardPool: isolation, hard limits, crash recovery, clean shutdown (docs/reward.md)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from conftest import alive
from reward_cases import PAIRS
from reward_fuzz import wrap

from zerorl.reward import RewardPool, RewardResult, score

pytestmark = pytest.mark.timeout(120)

TIMEOUT_S = 1.0  # for the pools that test the limits
GENEROUS_S = 20.0  # for the shared pool: ordinary answers must never time out, even on a busy box
SLOW = "\\sum_{n=1}^{10^{9}} n^n"  # interruptible: ends at the worker's soft timer
SLOW_VALID = "(x+1)^{400} - (x-1)^{400}"  # passes every rule, then takes sympy ~0.5-2 s
SLOWER_VALID = "(x+1)^{1200} - (x-1)^{1200}"  # ~2 s on an idle machine, more under load


def children(pid: int) -> list[int]:
    """Live child processes of ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def pool() -> RewardPool:
    with RewardPool(num_workers=2, timeout_s=GENEROUS_S) as shared:
        assert shared.wait_ready()
        yield shared


def test_scores_follow_input_order_and_match_in_process(pool: RewardPool) -> None:
    truths = [p[0] for p in PAIRS]
    responses = [wrap(p[1]) for p in PAIRS]
    result = pool.score(responses, truths, [True] * len(PAIRS))
    assert isinstance(result, RewardResult)
    assert result.scores == [p[2] for p in PAIRS]
    assert result.scores == [score(r, t) for r, t in zip(responses, truths, strict=True)]
    assert result.extracted == [p[1].strip() for p in PAIRS]
    assert (result.timeouts, result.errors) == (0, 0)


def test_rules_finished_flags_and_reasons(pool: RewardPool) -> None:
    responses = [wrap("3"), wrap("3"), "no answer", wrap(""), wrap("x=3"), wrap("4")]
    result = pool.score(responses, ["3"] * 6, [True, False, True, True, True, True])
    assert result.scores == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    assert result.reasons == ["correct", "unfinished", "no_answer", "empty", "correct", "wrong"]
    assert result.extracted[2] is None


def test_empty_batch(pool: RewardPool) -> None:
    assert pool.score([], [], []) == RewardResult([], 0, 0, [], [], 0.0)


def test_malformed_inputs_score_zero_as_errors(pool: RewardPool) -> None:
    result = pool.score([None, wrap("3"), 42], ["3", None, "3"], [True, True, True])
    assert result.scores == [0.0, 0.0, 0.0]
    assert result.errors == 3


def test_mismatched_lengths_raise(pool: RewardPool) -> None:
    with pytest.raises(ValueError):
        pool.score([wrap("1")], ["1", "2"], [True])


def test_soft_timeout_scores_zero_and_counts() -> None:
    with RewardPool(num_workers=1, timeout_s=TIMEOUT_S) as pool:
        assert pool.wait_ready()
        before = pool.pids
        result = pool.score([wrap(SLOW), wrap("3")], ["3", "3"], [True, True])
        # \sum is refused by the rules; verify_raw sends it to a worker anyway.
        assert result.scores == [0.0, 1.0]
        start = time.monotonic()
        verdicts, longest = pool.verify_raw([SLOW, "x=3"], ["3", "3"])
        assert time.monotonic() - start < TIMEOUT_S + 1
        assert verdicts == ["t", "1"]
        assert longest <= TIMEOUT_S + 1
        assert pool.pids == before  # the soft timer stopped it; nobody was killed


def test_hung_worker_is_killed_and_replaced() -> None:
    with RewardPool(num_workers=1, timeout_s=TIMEOUT_S) as single:
        assert single.wait_ready()
        old = single.pids[0]  # the first worker gets the first chunk; the second is the spare
        os.kill(old, signal.SIGSTOP)  # a hang no timer inside the worker can end
        start = time.monotonic()
        verdicts, longest = single.verify_raw(["3", "x=3"], ["3", "3"])
        elapsed = time.monotonic() - start
        assert verdicts[0] == "t"  # the unit it held scores 0 and counts as a timeout
        assert verdicts[1] == "1"  # the rest of its chunk went to the replacement
        assert TIMEOUT_S <= longest < TIMEOUT_S + 1
        assert elapsed < TIMEOUT_S + 1  # the spare took over at once
        assert not alive(old)
        assert old not in single.pids and len(single.pids) == 2
        result = single.score([wrap("3")], ["3"], [True])
        assert result.scores == [1.0]


def test_crashed_worker_is_counted_and_replaced() -> None:
    with RewardPool(num_workers=1, timeout_s=20.0) as single:
        assert single.wait_ready()
        victim = single.pids[0]
        killer = threading.Timer(0.5, os.kill, (victim, signal.SIGKILL))
        killer.start()
        # SLOW_VALID can finish within 0.5 s on an idle machine: this one is still running.
        result = single.score([wrap(SLOWER_VALID), wrap("x=3")], ["3", "3"], [True] * 2)
        killer.join()
        assert result.scores == [0.0, 1.0]
        assert (result.errors, result.reasons[0]) == (1, "error")
        assert not alive(victim)


def test_idle_dead_worker_costs_no_answer() -> None:
    with RewardPool(num_workers=1, timeout_s=TIMEOUT_S) as single:
        assert single.wait_ready()
        victim = single.pids[0]
        os.kill(victim, signal.SIGKILL)
        time.sleep(0.2)
        verdicts, _ = single.verify_raw(["x=3"], ["3"])
        assert verdicts == ["1"]


def test_memory_limit_is_set_in_every_worker() -> None:
    with RewardPool(num_workers=1, timeout_s=5.0, memory_mb=512) as limited:
        assert limited.wait_ready()
        for pid in limited.pids:
            limits = Path(f"/proc/{pid}/limits").read_text()
            line = next(row for row in limits.splitlines() if row.startswith("Max address space"))
            assert line.split()[3] == str(512 * 1024 * 1024)
        verdicts, _ = limited.verify_raw(["x=3", "\\frac{1}{2}"], ["3", "0.5"])
        assert verdicts == ["1", "1"]


def test_pool_is_usable_from_a_thread(pool: RewardPool) -> None:
    out: list[RewardResult] = []
    thread = threading.Thread(target=lambda: out.append(pool.score([wrap("1/2")], ["0.5"], [True])))
    thread.start()
    thread.join()
    assert out[0].scores == [1.0]


def test_in_process_score_works_in_a_thread() -> None:
    out: list[float] = []
    thread = threading.Thread(target=lambda: out.append(score(wrap("\\frac{2}{4}"), "0.5")))
    thread.start()
    thread.join()
    assert out == [1.0]


def test_duplicate_answers_are_verified_once(pool: RewardPool) -> None:
    result = pool.score([wrap("x = 7")] * 50, ["7"] * 50, [True] * 50)
    assert result.scores == [1.0] * 50


def test_close_leaves_no_process() -> None:
    seen: set[int] = set()
    fresh = RewardPool(num_workers=2, timeout_s=TIMEOUT_S)
    assert fresh.wait_ready()
    seen.update(fresh.pids)
    os.kill(fresh.pids[0], signal.SIGSTOP)
    fresh.verify_raw(["3", "3", "3"], ["3", "3", "3"])
    seen.update(fresh.pids)
    fresh.close()
    fresh.close()  # idempotent
    assert len(seen) == 4  # two workers, the spare, the replacement of the stopped one
    assert not any(alive(pid) for pid in seen)
    assert not set(children(os.getpid())) & seen
    with pytest.raises(RuntimeError):
        fresh.score([wrap("1")], ["1"], [True])


def test_garbage_collected_pool_kills_its_workers() -> None:
    dropped = RewardPool(num_workers=1, timeout_s=TIMEOUT_S, spare_workers=0)
    pids = dropped.pids
    del dropped
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in pids)


def test_reuse_across_steps(pool: RewardPool) -> None:
    before = pool.pids
    for step in range(5):
        result = pool.score([wrap(str(step)), wrap("x")], [str(step), "y"], [True, True])
        assert result.scores == [1.0, 0.0]
    assert pool.pids == before


def test_call_budget_bounds_one_call_and_counts_the_rest_as_timeouts() -> None:
    """40 distinct slow answers (~2 s each) would hold one call for over a minute; with a 1 s
    budget the rest score 0 as timeouts, and the pool then scores as before."""
    slow = [wrap(f"(x+1)^{{{1200 + i}}} - (x-1)^{{{1200 + i}}}") for i in range(40)]
    with RewardPool(num_workers=1, timeout_s=GENEROUS_S, call_budget_s=1.0) as pool:
        assert pool.wait_ready()
        start = time.monotonic()
        result = pool.score([*slow, wrap("3")], ["1"] * 40 + ["3"], [True] * 41)
        assert time.monotonic() - start < 30  # hang guard only: unbounded it takes minutes
        assert result.timeouts >= 39
        assert result.reasons.count("timeout") == result.timeouts
        assert all(s == 0.0 for s, r in zip(result.scores, result.reasons) if r == "timeout")
        assert pool.score([wrap("3")], ["3"], [True]).scores == [1.0]
    with pytest.raises(ValueError, match="call_budget_s"):
        RewardPool(call_budget_s=-1)

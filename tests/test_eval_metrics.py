"""avg@K, pass@k and maj@K against hand-computed cases; judging open and multiple-choice answers."""

from __future__ import annotations

from fractions import Fraction
from math import comb

import pytest

from zerorl.eval.benchmarks import answer_text, choice_letter, question_text
from zerorl.eval.metrics import Outcome, benchmark_scores, majority_correct, pass_at_k, pass_ks
from zerorl.eval.runner import EvalSample, judge, summarize
from zerorl.reward import RewardPool
from zerorl.types import Completion, Prompt


def test_pass_at_k_hand_cases():
    assert pass_at_k(4, 2, 2) == pytest.approx(5 / 6)  # 1 - C(2,2)/C(4,2)
    assert pass_at_k(10, 3, 5) == pytest.approx(11 / 12)  # 1 - C(7,5)/C(10,5) = 1 - 21/252
    assert pass_at_k(5, 1, 1) == pytest.approx(0.2)
    assert pass_at_k(16, 0, 16) == 0.0
    assert pass_at_k(16, 16, 1) == 1.0
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)


def test_pass_at_k_equals_the_binomial_formula():
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                exact = 1 - Fraction(comb(n - c, k), comb(n, k))
                assert pass_at_k(n, c, k) == pytest.approx(float(exact), abs=1e-12)


def test_pass_ks():
    assert pass_ks(16) == [1, 2, 4, 8, 16]
    assert pass_ks(6) == [1, 2, 4, 6]
    assert pass_ks(1) == [1]


def o(correct: int, vote: str | None) -> Outcome:
    return Outcome(correct, vote)


def test_majority_groups_correct_answers_and_breaks_ties_by_first_vote():
    # Two correct answers written differently still form one group of 2 against 1 + 1.
    assert majority_correct([o(1, "2"), o(0, "3"), o(1, "2.0"), o(0, "4")]) == 1
    # A wrong answer given twice beats one correct answer.
    assert majority_correct([o(0, "5"), o(0, "5"), o(0, "6"), o(1, "7")]) == 0
    # Ties: the answer voted first wins; samples that do not vote (None) are ignored.
    assert majority_correct([o(0, None), o(1, "x"), o(0, "y"), o(0, None)]) == 1
    assert majority_correct([o(0, "y"), o(1, "x")]) == 0
    assert majority_correct([o(0, None), o(0, None)]) == 0


def test_benchmark_scores_hand_computed():
    problems = [
        [o(1, "2"), o(0, "3"), o(1, "2.0"), o(0, "4")],  # c=2, maj right
        [o(0, "5"), o(0, "5"), o(0, "6"), o(1, "7")],  # c=1, maj wrong
        [o(0, None), o(1, "x"), o(0, "y"), o(0, None)],  # c=1, tie won by the correct answer
    ]
    s = benchmark_scores(problems)
    assert (s.problems, s.samples_per_problem) == (3, 4)
    assert s.avg_at_k == pytest.approx(1 / 3)  # (2/4 + 1/4 + 1/4) / 3
    assert s.pass_at[1] == pytest.approx(s.avg_at_k)
    assert s.pass_at[2] == pytest.approx((5 / 6 + 1 / 2 + 1 / 2) / 3)  # = 11/18
    assert s.pass_at[4] == 1.0
    assert s.maj_at_k == pytest.approx(2 / 3)
    assert list(s.as_metrics()) == ["avg@4", "pass@1", "pass@2", "pass@4", "maj@4"]
    assert benchmark_scores([]).problems == 0


def completion(text: str, finish: str = "stop") -> Completion:
    return Completion(-1, [1], list(range(len(text.split()) or 1)), text, finish)


def test_summarize_groups_samples_by_problem_even_with_repeated_ids():
    a, b = Prompt("same", "q1", "1"), Prompt("same", "q2", "2")
    samples = [
        EvalSample(a, 0, completion("x"), 1, "1", "1"),
        EvalSample(a, 1, completion("x"), 0, "9", "9"),
        EvalSample(b, 0, completion("x"), 0, "3", "3"),
        EvalSample(b, 1, completion("x", "length"), 0, None, None),
    ]
    result = summarize("t", 2, samples)
    assert result.scores.problems == 2
    assert result.avg_at_k == pytest.approx(0.25)
    assert result.truncated_frac == pytest.approx(0.25)
    assert result.metrics("eval/t/")["eval/t/pass@2"] == pytest.approx(0.5)
    assert set(result.metrics()) == {
        "avg@2", "pass@1", "pass@2", "maj@2", "response_length", "truncated_frac",
    }  # fmt: skip


def test_choice_letters_and_question_text():
    choices = ["10", "20", "x + 1", "none"]
    for answer, letter in [
        ("B", "B"), ("(C)", "C"), ("\\text{D}", "D"), ("A) 10", "A"), ("x+1", "C"), ("20", "B"),
        ("E", None), ("7", None), (None, None),
    ]:  # fmt: skip
        assert choice_letter(answer, choices) == letter, answer
    prompt = Prompt("g", "Which?", "B", metadata={"choices": choices})
    assert question_text(prompt).splitlines()[2:4] == ["(A) 10", "(B) 20"]
    assert question_text(Prompt("m", "1+1?", "2")) == "1+1?"


def test_boxed_fallback_is_eval_only_and_explicit():
    plain = "so the result is \\boxed{4} and \\boxed{5}"
    assert answer_text(plain, boxed_fallback=False) == plain
    assert answer_text(plain, boxed_fallback=True) == "<answer> \\boxed{5} </answer>"
    tagged = "<answer> \\boxed{4} </answer> then \\boxed{9}"
    assert answer_text(tagged, boxed_fallback=True) == tagged  # a real answer block wins


def test_judge_with_the_training_reward():
    math_q = Prompt("m", "What is 2+2?", "4")
    choice_q = Prompt("g", "Pick", "B", metadata={"choices": ["1", "2", "3", "4"]})
    completions = [
        [
            completion("<answer> \\boxed{4} </answer>"),
            completion("thinking... \\boxed{4}"),  # no answer block: 0 without the fallback
            completion("<answer> \\boxed{4} </answer>", "length"),  # truncated: 0, no vote
        ],
        [
            completion("<answer> \\boxed{B} </answer>"),
            completion("<answer> \\boxed{(A)} </answer>"),
        ],
    ]
    with RewardPool(num_workers=1) as pool:
        strict = judge([math_q, choice_q], completions, pool, boxed_fallback=False)
        lenient = judge([math_q, choice_q], completions, pool, boxed_fallback=True)
    assert [s.correct for s in strict] == [1, 0, 0, 1, 0]
    assert [s.vote for s in strict] == ["4", None, None, "B", "A"]
    assert [s.correct for s in lenient] == [1, 1, 0, 1, 0]
    assert lenient[1].extracted == "4"

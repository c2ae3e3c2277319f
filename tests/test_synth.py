"""Synthetic problem generators: determinism, seeds, difficulty, independently checked answers."""

from __future__ import annotations

import itertools
import re
from fractions import Fraction

import pytest

from zerorl.data.synth import TASKS, generate


def _solve(question: str) -> Fraction:
    """Recompute an answer from the question text alone, by other means than the generator."""
    if m := re.fullmatch(r"What is (\d+) ([+*]) (\d+)\?", question):
        a, op, b = int(m[1]), m[2], int(m[3])
        return Fraction(a + b if op == "+" else a * b)
    if m := re.fullmatch(r"Compute ([-+*() \d]+)\.", question):
        return Fraction(eval(m[1], {"__builtins__": {}}))  # digits, + - * and parentheses only
    if m := re.fullmatch(r"Solve for x: (.+) = (.+)\.", question):
        return _solve_linear(m[1], m[2])
    if m := re.fullmatch(
        r"What is the remainder when (\d+)(?:\^(\d+))? is divided by (\d+)\?", question
    ):
        n = int(m[1]) ** int(m[2] or 1)  # full power, no modular shortcut
        return Fraction(n - (n // int(m[3])) * int(m[3]))
    if m := re.fullmatch(
        r"In how many ways can (\d+) of (\d+) different books be chosen\?", question
    ):
        k, n = int(m[1]), int(m[2])
        return Fraction(sum(1 for _ in itertools.combinations(range(n), k)))
    if m := re.fullmatch(
        r"How many integers from 1 to (\d+) are divisible by (\d+) or by (\d+)\?", question
    ):
        limit, p, q = (int(g) for g in m.groups())
        return Fraction(sum(1 for i in range(1, limit + 1) if i % p == 0 or i % q == 0))
    return _solve_word(question)


def _side(text: str) -> tuple[Fraction, Fraction]:
    """(coefficient of x, constant) of a side such as ``3x - 5``, ``x + 2`` or ``-7``."""
    coef, const = Fraction(0), Fraction(0)
    for sign, term in re.findall(r"([+-]?)\s*(\d*x|\d+)", text.replace(" ", "")):
        value = -1 if sign == "-" else 1
        if term.endswith("x"):
            coef += value * int(term[:-1] or 1)
        else:
            const += value * int(term)
    return coef, const


def _solve_linear(lhs: str, rhs: str) -> Fraction:
    (a, b), (c, d) = _side(lhs), _side(rhs)
    x = (d - b) / (a - c)
    assert a * x + b == c * x + d
    return x


def _solve_word(question: str) -> Fraction:
    count = int(re.search(r"has (\d+) ", question)[1])
    for sentence in question.split(". ")[1:]:
        if m := re.search(r"buys (\d+) more", sentence):
            count += int(m[1])
        elif m := re.search(r"gives (\d+) ", sentence):
            count -= int(m[1])
        elif "doubles" in sentence:
            count *= 2
    return Fraction(count)


def _parse_truth(text: str) -> Fraction:
    assert re.fullmatch(r"-?\d+(/\d+)?", text), text
    value = Fraction(text)
    assert str(value) == text  # reduced, and "p" rather than "p/1"
    return value


@pytest.mark.parametrize("task", sorted(TASKS))
@pytest.mark.parametrize("difficulty", [1, 2, 3, 4])
def test_answers_are_correct(task: str, difficulty: int) -> None:
    for prompt in generate(task, 60, seed=7, difficulty=difficulty):
        assert _parse_truth(prompt.ground_truth) == _solve(prompt.question), prompt


@pytest.mark.parametrize("task", sorted(TASKS))
def test_deterministic_and_seeded(task: str) -> None:
    first, again = generate(task, 30, seed=3), generate(task, 30, seed=3)
    assert first == again
    other = generate(task, 30, seed=4)
    assert [p.question for p in first] != [p.question for p in other]
    assert generate(task, 10, seed=3) == first[:10]  # prefix-stable


@pytest.mark.parametrize("task", sorted(TASKS))
def test_record_fields(task: str) -> None:
    prompts = generate(task, 20, seed=1, difficulty=2)
    assert [p.id for p in prompts] == [f"{task}-d2-1-{i}" for i in range(20)]
    assert all(p.source == f"synth:{task}" and p.metadata["difficulty"] == 2 for p in prompts)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_difficulty_changes_problems(task: str) -> None:
    easy = generate(task, 100, seed=0, difficulty=1)
    hard = generate(task, 100, seed=0, difficulty=4)
    assert {p.question for p in easy}.isdisjoint({p.question for p in hard}) or task == "counting"

    def size(prompts: list) -> float:  # harder means more digits, on average
        return sum(len(re.findall(r"\d", p.question)) for p in prompts) / len(prompts)

    assert size(hard) > size(easy)


def test_difficulty_is_digits_for_arithmetic() -> None:
    for p in generate("addition", 20, seed=0, difficulty=3):
        a, b = p.metadata["params"]["a"], p.metadata["params"]["b"]
        assert len(str(a)) == len(str(b)) == 4
    for p in generate("multiplication", 20, seed=0, difficulty=3):
        a, b = p.metadata["params"]["a"], p.metadata["params"]["b"]
        assert (len(str(a)), len(str(b))) == (4, 3)


def test_fraction_answers_appear_and_verify() -> None:
    from math_verify import parse, verify

    prompts = generate("linear", 200, seed=0, difficulty=3)
    fractions = [p for p in prompts if "/" in p.ground_truth]
    assert fractions
    for p in fractions[:10] + generate("addition", 5, seed=0):
        assert verify(parse(p.ground_truth), parse(f"\\boxed{{{p.ground_truth}}}"))


def test_bad_arguments() -> None:
    with pytest.raises(KeyError):
        generate("nope", 1, seed=0)
    with pytest.raises(ValueError):
        generate("addition", 1, seed=0, difficulty=0)

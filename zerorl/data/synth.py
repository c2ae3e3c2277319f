"""Programmatic generators of verifiable reasoning problems with exact answers.

Every generator is a pure function of ``(rng, difficulty)`` returning a question, its exact
answer and the parameters it drew. ``generate`` wraps them into ``Prompt`` records:

* deterministic for a seed: each call builds its own ``random.Random(seed)``, never the global RNG;
* ``Prompt.id`` is ``f"{task}-d{difficulty}-{seed}-{i}"``: stable across runs, unique per call;
* ``ground_truth`` is a string ``math-verify`` parses: an integer ("85", "-7") or a reduced
  fraction ("3/4");
* ``source`` is ``f"synth:{task}"``; ``metadata`` holds ``difficulty`` and the drawn ``params``.

``difficulty`` (an integer >= 1) grows the problems: more digits, more steps, larger numbers.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from zerorl.types import Prompt

Problem = tuple[str, str, dict[str, Any]]  # question, ground truth, drawn parameters
Generator = Callable[[random.Random, int], Problem]

TASKS: dict[str, str] = {
    "addition": "sum of two (difficulty+1)-digit integers",
    "multiplication": "product of a (difficulty+1)-digit and a difficulty-digit integer",
    "chain": "left-to-right chain of difficulty+2 operations (+, -, *) on small integers",
    "linear": "solve a linear equation in x; integer answers, fractions from difficulty 3",
    "modular": "remainder of an integer or of a power modulo a small modulus",
    "counting": "binomial coefficients and inclusion-exclusion counts of multiples",
    "word": "templated word problem with difficulty+1 quantity changes",
}


def _digits(rng: random.Random, n: int) -> int:
    """A uniformly drawn integer with exactly ``n`` decimal digits (``n >= 1``)."""
    return rng.randint(10 ** (n - 1) if n > 1 else 0, 10**n - 1)


def _fraction_str(value: Fraction) -> str:
    """``"p/q"`` for a non-integer, ``"p"`` for an integer; always reduced."""
    if value.denominator == 1:
        return str(value.numerator)
    return f"{value.numerator}/{value.denominator}"


def _addition(rng: random.Random, difficulty: int) -> Problem:
    a, b = _digits(rng, difficulty + 1), _digits(rng, difficulty + 1)
    return f"What is {a} + {b}?", str(a + b), {"a": a, "b": b}


def _multiplication(rng: random.Random, difficulty: int) -> Problem:
    a, b = _digits(rng, difficulty + 1), _digits(rng, difficulty)
    b = max(b, 2)  # "x 0" and "x 1" are not problems
    return f"What is {a} * {b}?", str(a * b), {"a": a, "b": b}


def _chain(rng: random.Random, difficulty: int) -> Problem:
    """Operations apply left to right; parentheses make that the standard-precedence reading."""
    value = rng.randint(1, 9 + difficulty)
    text = str(value)
    ops: list[tuple[str, int]] = []
    for _ in range(difficulty + 2):
        op = rng.choice("+-*")
        operand = rng.randint(2, 5) if op == "*" else rng.randint(1, 9 + 3 * difficulty)
        value = value + operand if op == "+" else value - operand if op == "-" else value * operand
        text = f"({text}) {op} {operand}" if ops else f"{text} {op} {operand}"
        ops.append((op, operand))
    return f"Compute {text}.", str(value), {"ops": ops}


def _coef(k: int) -> str:
    """The written coefficient of x: "" for 1 ("x", not "1x")."""
    return "" if k == 1 else str(k)


def _linear(rng: random.Random, difficulty: int) -> Problem:
    """``a*x + b = c*x + d`` with ``a != c``; the answer is drawn first so it is exact."""
    span = 5 + 5 * difficulty
    a = rng.randint(2, 3 + 2 * difficulty)
    c = rng.randint(0, a - 1)
    if difficulty >= 3:
        x = Fraction(rng.randint(-span, span), rng.randint(1, a - c))
    else:
        x = Fraction(rng.randint(-span, span))
    b = rng.randint(-span, span)
    # d makes x the solution; scale so d is an integer
    d = (a - c) * x + b
    if d.denominator != 1:
        scale = d.denominator
        a, b, c, d = a * scale, b * scale, c * scale, d * scale
    lhs = f"{_coef(a)}x {'+' if b >= 0 else '-'} {abs(b)}"
    rhs = f"{_coef(c)}x {'+' if d >= 0 else '-'} {abs(int(d))}" if c else str(int(d))
    question = f"Solve for x: {lhs} = {rhs}."
    return question, _fraction_str(x), {"a": a, "b": b, "c": c, "d": int(d)}


def _modular(rng: random.Random, difficulty: int) -> Problem:
    m = rng.randint(3, 7 + 4 * difficulty)
    if rng.random() < 0.5:
        n = _digits(rng, difficulty + 2)
        return f"What is the remainder when {n} is divided by {m}?", str(n % m), {"n": n, "m": m}
    base, exp = rng.randint(2, 9 + difficulty), rng.randint(2, 5 + 10 * difficulty)
    question = f"What is the remainder when {base}^{exp} is divided by {m}?"
    return question, str(pow(base, exp, m)), {"base": base, "exp": exp, "m": m}


def _counting(rng: random.Random, difficulty: int) -> Problem:
    if rng.random() < 0.5:
        n = rng.randint(4, 6 + 3 * difficulty)
        k = rng.randint(1, n - 1)
        question = f"In how many ways can {k} of {n} different books be chosen?"
        return question, str(math.comb(n, k)), {"n": n, "k": k}
    limit = rng.randint(20, 50 * difficulty + 50)
    p, q = rng.sample([2, 3, 4, 5, 6, 7], 2)
    lcm = p * q // math.gcd(p, q)
    count = limit // p + limit // q - limit // lcm
    question = f"How many integers from 1 to {limit} are divisible by {p} or by {q}?"
    return question, str(count), {"limit": limit, "p": p, "q": q}


_NAMES = ("Ana", "Ben", "Chen", "Dara", "Eli", "Farah", "Goro", "Hana")
_ITEMS = ("apples", "marbles", "stickers", "coins", "books", "shells")


def _word(rng: random.Random, difficulty: int) -> Problem:
    """Quantity changes with "buys", "gives away", "doubles"; never goes negative."""
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    start = count = rng.randint(3, 10 + 5 * difficulty)
    sentences = [f"{name} has {count} {item}."]
    changes: list[tuple[str, int]] = []
    for _ in range(difficulty + 1):
        kind = rng.choice(("buys", "gives", "doubles"))
        if kind == "gives" and count < 2:
            kind = "buys"
        if kind == "buys":
            k = rng.randint(1, 5 + 5 * difficulty)
            count += k
            sentences.append(f"Then {name} buys {k} more {item}.")
        elif kind == "gives":
            k = rng.randint(1, count - 1)
            count -= k
            sentences.append(f"Then {name} gives {k} {item} to a friend.")
        else:
            k = 2
            count *= 2
            sentences.append(f"Then the number of {item} {name} has doubles.")
        changes.append((kind, k))
    sentences.append(f"How many {item} does {name} have now?")
    return " ".join(sentences), str(count), {"start": start, "changes": changes}


_GENERATORS: dict[str, Generator] = {
    "addition": _addition,
    "multiplication": _multiplication,
    "chain": _chain,
    "linear": _linear,
    "modular": _modular,
    "counting": _counting,
    "word": _word,
}


def generate(task: str, n: int, seed: int, difficulty: int = 1) -> list[Prompt]:
    """Return ``n`` problems of ``task`` (a key of ``TASKS``) drawn deterministically from ``seed``.

    The same ``(task, n, seed, difficulty)`` always gives the same list, and the first ``k``
    problems of a longer list equal those of a shorter one (problem ``i`` depends only on the
    RNG stream up to ``i``). Raises ``KeyError`` for an unknown task and ``ValueError`` for
    ``difficulty < 1`` or ``n < 0``.
    """
    if task not in _GENERATORS:
        raise KeyError(f"unknown synthetic task {task!r}; known: {sorted(TASKS)}")
    if difficulty < 1 or n < 0:
        raise ValueError(f"need difficulty >= 1 and n >= 0, got {difficulty=} {n=}")
    rng = random.Random(f"{task}:{seed}:{difficulty}")
    make = _GENERATORS[task]
    prompts = []
    for i in range(n):
        question, answer, params = make(rng, difficulty)
        prompts.append(
            Prompt(
                id=f"{task}-d{difficulty}-{seed}-{i}",
                question=question,
                ground_truth=answer,
                source=f"synth:{task}",
                metadata={"difficulty": difficulty, "params": params},
            )
        )
    return prompts

"""Answer generators for the reward tests and benchmark: realistic and adversarial.

- :func:`realistic_mix` turns ground truths into correct, rewritten-but-equivalent and wrong
  answers, the way a policy writes them.
- :func:`adversarial_answers` produces answers built to hang, crash or fool a checker: exponent
  towers, giant factorials and sums, deep nesting, huge and repetitive strings, unicode and
  control characters, TeX programming and Python injection payloads that would leave a marker
  file (``MARKER_PREFIX`` + a number) if anything evaluated them.

Deterministic for a given ``random.Random``.
"""

from __future__ import annotations

import random
import re

MARKER_PREFIX = "/tmp/zerorl_reward_pwned_"

_INT_RE = re.compile(r"-?\d+")
_FRAC_RE = re.compile(r"\\[dt]?frac\{(-?\d+)\}\{(\d+)\}")


def _equivalent(truth: str, rng: random.Random) -> str:
    """One rewriting of ``truth`` that a human grader would accept."""
    if _INT_RE.fullmatch(truth):
        n = int(truth)
        return rng.choice([f"{n}.0", f"\\frac{{{2 * n}}}{{2}}", f"x = {n}", f"{{{n}}}", f"{n}.00"])
    frac = _FRAC_RE.fullmatch(truth)
    if frac:
        a, b = frac.groups()
        return rng.choice(
            [f"{a}/{b}", f"\\dfrac{{{a}}}{{{b}}}", f"\\frac{{{2 * int(a)}}}{{{2 * int(b)}}}"]
        )
    if "\\circ" in truth:
        return truth.replace("^\\circ", "").replace("^{\\circ}", "")
    if truth.startswith("\\text{") and truth.endswith("}"):
        return truth[6:-1]
    rewritten = truth.replace("\\left", "").replace("\\right", "").replace("\\dfrac", "\\frac")
    if rewritten != truth:
        return rewritten
    if "=" not in truth and "," not in truth and "\\in" not in truth:
        return rng.choice([f"x = {truth}", f"{{{truth}}}", f"{truth} + 0"])
    return truth.replace(" ", "") if " " in truth else truth.replace(",", ", ")


def _wrong(truth: str, rng: random.Random) -> str:
    """An answer that differs from ``truth`` in one plausible way."""
    if _INT_RE.fullmatch(truth):
        return str(int(truth) + rng.choice([-2, -1, 1, 2, 10]))
    digits = [i for i, ch in enumerate(truth) if ch.isdigit()]
    if digits:
        i = rng.choice(digits)
        return truth[:i] + str((int(truth[i]) + rng.randint(1, 9)) % 10) + truth[i + 1 :]
    return rng.choice([f"{truth} + 1", f"-({truth})", f"2 {truth}"])


def realistic_mix(truths: list[str], rng: random.Random) -> list[tuple[str, str, str]]:
    """(kind, answer, truth) for every truth: one correct, one equivalent, one wrong answer."""
    items = []
    for truth in truths:
        items.append(("correct", truth, truth))
        items.append(("equivalent", _equivalent(truth, rng), truth))
        items.append(("wrong", _wrong(truth, rng), truth))
    return items


def _payloads(rng: random.Random) -> list[str]:
    marker = f"{MARKER_PREFIX}{rng.randrange(10**9)}"
    return [
        f"__import__('os').system('touch {marker}')",
        f"1+__import__('os').system('touch {marker}')",
        f"exec(\"open('{marker}','w')\")",
        f"eval(\"__import__('subprocess').call(['touch','{marker}'])\")",
        "__import__('socket').socket().connect(('127.0.0.1', 9))",
        f"\\operatorname{{__import__}}('os').system('touch {marker}')",
        f"\\text{{__import__('os').system('touch {marker}')}}",
        f"().__class__.__bases__[0].__subclasses__()  # {marker}",
        f"lambda: open('{marker}', 'w')",
        f"\\input{{{marker}}}",
        f"\\immediate\\write18{{touch {marker}}}",
        f"\\def\\x{{\\x\\x}}\\x {marker}",
        "\\newcommand{\\a}{\\a\\a}\\a",
        "\\csname end\\endcsname",
    ]


def _towers(rng: random.Random) -> list[str]:
    b, d = rng.randint(2, 99), rng.randint(3, 6)
    tower = "^{".join([str(b)] * d) + "}" * (d - 1)
    big = rng.randint(10**5, 10**7)
    return [
        tower,
        f"{big}!",
        f"({big})!!",
        f"10^{{10^{{{rng.randint(3, 12)}}}}}",
        f"\\frac{{1}}{{{b}^{{{b}^{{{b}}}}}}}",
        f"\\sum_{{n=1}}^{{10^{{{rng.randint(6, 12)}}}}} n^n",
        f"\\prod_{{k=1}}^{{{big}}} k",
        "\\int_0^{10^{9}} e^{x^2} dx",
        f"(x+1)^{{{big}}}",
        f"\\binom{{10^{{{rng.randint(6, 12)}}}}}{{{big}}}",
        f"e^{{e^{{e^{{e^{{{b}}}}}}}}}",
        f"\\sin(10^{{10^{{{rng.randint(4, 8)}}}}})",
        f"\\gcd(10^{{10^{{9}}}}, {b})",
        f"{b}^{{{big}}} - {b}^{{{big}}} + 3",
    ]


def _shapes(rng: random.Random) -> list[str]:
    n = rng.randint(20, 400)
    return [
        "{" * n + "3" + "}" * n,
        "(" * n + "3" + ")" * n,
        "\\frac{" * n + "1}{2}" * n,
        "\\sqrt{" * n + "2" + "}" * n,
        "x" * rng.randint(10**4, 10**5),
        "1," * rng.randint(100, 5000) + "3",
        "\\left(" * n + "3" + "\\right)" * n,
        "".join(rng.choice("{}()[]\\^_") for _ in range(n)),
        "3" * rng.randint(4000, 20000),
        f"0.{'0' * n}1",
    ]


def _characters(rng: random.Random) -> list[str]:
    return [
        "".join(chr(rng.randint(0, 0x2FFFF)) for _ in range(rng.randint(1, 60))),
        "\x00\x01\x02" + "3",
        "3\u202e\u200b\ufeff",
        "\ud800" if rng.random() < 0.5 else "3\udfff",  # lone surrogates
        "३",  # Devanagari three
        "x\u0338=3",
        "\\text{" + "é" * rng.randint(1, 50) + "}",
        "𝟑",
    ]


def adversarial_answers(rng: random.Random, n: int) -> list[str]:
    """``n`` adversarial answers (box contents), drawn from every family in turn."""
    families = (_payloads, _towers, _shapes, _characters)
    answers = []
    while len(answers) < n:
        pool = families[len(answers) % len(families)](rng)
        answers.append(rng.choice(pool))
    return answers


def wrap(answer: str) -> str:
    """A finished ORZ-style response whose final answer block boxes ``answer``."""
    return f"Let me think. </think> <answer> \\boxed{{{answer}}} </answer>"

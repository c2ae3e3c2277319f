"""Cheap reward rules that run before any verification (docs/reward.md, "Rules").

Everything here is plain string work in the calling process: it decides most answers without
math-verify (rejections, exact matches, plain numbers) so that only real verification reaches
the worker pool. Each rule is conservative: a fast decision must agree with what math-verify
would say (tests/test_reward.py checks the agreement on MATH500 ground truths).
"""

from __future__ import annotations

import re
from fractions import Fraction

from zerorl.reward.extract import brace_pairs

DEFAULT_MAX_ANSWER_CHARS = 300
MAX_NESTING = 10  # deepest {, ( or [ nesting allowed in an answer (MATH500 truths reach 2)
MAX_DISTINCT_BOXES = 3
REPEAT_UNIT, REPEAT_TIMES = 10, 10  # a unit of <= 10 chars repeated >= 10 times in a row

# Commands that make the checker compute instead of the model (an integral, a sum, a limit...)
# or that program TeX. Neither is ever a final answer; they are refused unless the ground truth
# uses the same command.
BANNED_COMMANDS = (
    "int", "iint", "iiint", "oint", "sum", "prod", "lim", "limsup", "liminf", "partial",
    "def", "gdef", "edef", "xdef", "let", "newcommand", "renewcommand", "providecommand",
    "DeclareMathOperator", "input", "include", "write", "immediate", "csname", "catcode",
    "expandafter",
)  # fmt: skip
_COMMAND_RE = re.compile(r"\\([a-zA-Z]+)")
# latex2sympy builds matrices for these operator names (``\operatorname{zeros}(10^4, 10^4)``).
_MATRIX_OPERATOR_RE = re.compile(
    r"\\operatorname\s*\{\s*(?:eye|zeros|ones|diag|hstack|vstack|rref|nullspace|orth\w*|rank"
    r"|trace|tr)\s*\}"
)
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_REPEAT_RE = re.compile(rf"(.{{1,{REPEAT_UNIT}}}?)\1{{{REPEAT_TIMES - 1},}}", re.DOTALL)

# Normalisation mirrors math-verify's own LaTeX clean-up (latex2sympy2_extended's
# normalize_latex) and nothing more: \left/\right before a delimiter, \! with its spaces,
# \displaystyle, and \dfrac/\tfrac/\cfrac -> \frac. Other spacing commands (\, \; ~) stay.
_DELIMITERS = (
    r"\\\{|\{|\\\||\||\[|\(|\\rbracl|\\lgroup|\\lbrace|\\lbrack|\\vert|\\lvert|\\lceil"
    r"|\\lfloor|\\langle|\\llcorner|\\ulcorner|\\\}|\}|\]|\)|\\rbrack|\\rgroup|\\rbrace|\\rvert"
    r"|\\rceil|\\rfloor|\\rangle|\\lrcorner|\\urcorner"
)
_NOISE_RE = re.compile(rf"\\m?(?:left|right)(?=(?:{_DELIMITERS}))|\\!\s*|\\displaystyle")
_FRAC_RE = re.compile(r"\\[dtc]frac(?![a-zA-Z])")
_SPACE_RE = re.compile(r"\s+")
_DOLLARS_RE = re.compile(r"^\$+(.*?)\$+$", re.DOTALL)
_BOXED_TRUTH_RE = re.compile(r"^\\boxed\s*\{(.*)\}$", re.DOTALL)

# Plain numbers for the numeric fast path: canonical integers, short decimals, a/b, \frac{a}{b}.
_INT = r"(?:0|[1-9]\d{0,29})"
_NUMBER_RE = re.compile(
    rf"(?P<sign>-?)(?:(?P<int>{_INT})(?:\.(?P<dec>\d{{1,12}}))?"
    rf"|\\frac\{{(?P<fn>{_INT})\}}\{{(?P<fd>{_INT})\}}|(?P<sn>{_INT})/(?P<sd>{_INT}))"
)
_DECIMAL_SIG_DIGITS = 12  # beyond this sympy Floats round and exact comparison stops agreeing
# ``x = 5``: math-verify compares only the right-hand side of an equation with a plain truth.
_LETTER_EQUALS_RE = re.compile(r"[a-zA-Z]=(.+)")


def _space(match: re.Match) -> str:
    """One space between two letters or digits, or after a comma before one; nothing elsewhere.

    math-verify reads ``1 5`` as 1*5 and ``58, 500`` as the pair {58, 500} (``58,500`` is
    58500), so those spaces carry meaning.
    """
    text, i, j = match.string, match.start(), match.end()
    if (
        i > 0
        and j < len(text)
        and text[j].isalnum()
        and (text[i - 1].isalnum() or text[i - 1] == ",")
    ):
        return " "
    return ""


def normalize(text: str) -> str:
    """Canonical spelling used for exact matching: math-verify's clean-up (see _NOISE_RE) and
    whitespace only where it carries meaning (see _space; ``\\cdot x`` is not ``\\cdotx``)."""
    text = _NOISE_RE.sub("", text)
    text = _FRAC_RE.sub(r"\\frac", text)
    return _SPACE_RE.sub(_space, text)


def prepare_truth(truth: str) -> str:
    """The ground truth as verified: stripped of an enclosing ``\\boxed{}`` or ``$...$``."""
    truth = truth.strip()
    for pattern in (_BOXED_TRUTH_RE, _DOLLARS_RE):
        match = pattern.match(truth)
        if match:
            truth = match.group(1).strip()
    return truth


def _max_nesting(text: str) -> int:
    depth = deepest = 0
    for ch in text:
        if ch in "{([":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "})]":
            depth = max(0, depth - 1)
    return deepest


def _is_repetitive(text: str) -> bool:
    """A non-digit unit repeated REPEAT_TIMES times in a row (digit runs like 1000000 are fine)."""
    return any(not match.group(1).isdigit() for match in _REPEAT_RE.finditer(text))


def reject_reason(answer: str, truth: str, max_chars: int) -> str | None:
    """Why ``answer`` scores 0 before verification (a short tag), or None if it must be verified.

    ``answer`` is one box content, ``truth`` the prepared ground truth. The checks are ordered
    by cost so that a huge answer is refused by its length before any regex touches it.
    """
    if len(answer) > max_chars:
        return "too_long"
    if _CONTROL_RE.search(answer):
        return "control_character"
    if not normalize(answer).strip("{}"):
        return "empty"
    if _max_nesting(answer) > MAX_NESTING:
        return "too_deep"
    if _is_repetitive(answer):
        return "repetitive"
    if _MATRIX_OPERATOR_RE.search(answer) and not _MATRIX_OPERATOR_RE.search(truth):
        return "banned_command"
    allowed = set(_COMMAND_RE.findall(truth))
    for command in _COMMAND_RE.findall(answer):
        if command in BANNED_COMMANDS and command not in allowed:
            return "banned_command"
    return None


def _plain_number(text: str) -> tuple[Fraction, bool] | None:
    """(value, has_decimal_point) if ``text`` is a plain number of the fast-path grammar,
    possibly in braces (``{5}``)."""
    while text.startswith("{") and brace_pairs(text).get(0) == len(text) - 1:
        text = text[1:-1]
    match = _NUMBER_RE.fullmatch(text)
    if not match:
        return None
    sign = -1 if match["sign"] else 1
    if match["int"] is not None:
        dec = match["dec"]
        if dec is not None and len(match["int"].lstrip("0")) + len(dec) > _DECIMAL_SIG_DIGITS:
            return None
        return sign * Fraction(match["int"] + ("." + dec if dec else "")), dec is not None
    num, den = (match["fn"], match["fd"]) if match["fn"] is not None else (match["sn"], match["sd"])
    if int(den) == 0:
        return None
    return sign * Fraction(int(num), int(den)), False


def fast_verdict(answer_norm: str, truth_norm: str) -> float | None:
    """1.0 or 0.0 when the normalised strings settle it without math-verify, else None.

    Equal strings are equal answers. Two plain numbers (the answer may be ``x = number``) are
    compared exactly; when either has a decimal point math-verify rounds both to 6 decimals, so
    values closer than 1e-5 are left to it rather than declared different.
    """
    if answer_norm == truth_norm and answer_norm:
        return 1.0
    truth_num = _plain_number(truth_norm)
    if truth_num is None:
        return None
    equation = _LETTER_EQUALS_RE.fullmatch(answer_norm)
    answer_num = _plain_number(equation.group(1) if equation else answer_norm)
    if answer_num is None:
        return None
    (a, a_dec), (t, t_dec) = answer_num, truth_num
    if a == t:
        return 1.0
    if (a_dec or t_dec) and abs(a - t) <= Fraction(1, 100_000):
        return None
    return 0.0

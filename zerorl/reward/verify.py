"""Equivalence of one extracted answer and one ground truth with math-verify.

This is the expensive step; RewardPool runs it in worker processes (zerorl/reward/worker.py),
``score()`` runs it in the calling process. Contract of :func:`check`: it returns a verdict,
raises only what its caller's time limit raises, and never evaluates model text as Python
(docs/reward.md, "Code execution").

- The ground truth is parsed with math-verify's LaTeX and plain-expression extractors, from
  ``\\boxed{truth}`` so that ``1/2``, ``\\frac{1}{2}`` and ``x=3`` all parse; parses are cached.
- The answer is parsed with the LaTeX extractor only: the plain-expression extractor would pull
  a stray number out of a box whose LaTeX does not parse (``\\boxed{\\operatorname{foo} 3}`` -> 3).
- Before comparing, an answer whose exact evaluation would build numbers of more than
  ``MAX_DIGITS`` digits (``9^{9^{9}}``, ``100000!``, ``(x+1)^{100000}``) is refused: sympy would
  spend minutes on it and no ground truth is such a number.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache

import math_verify.grader as _mv_grader
import math_verify.parser as _mv_parser
import sympy
from antlr4.atn.PredictionMode import PredictionMode
from latex2sympy2_extended.latex2sympy2 import _Latex2Sympy
from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

CORRECT, WRONG, REFUSED = "1", "0", "r"  # verdicts; the pool adds "t" timeout and "e" error
MAX_DIGITS = 10_000
MAX_SYMBOLIC_EXPONENT = 10_000

_TRUTH_CONFIG = (LatexExtractionConfig(), ExprExtractionConfig())
_ANSWER_CONFIG = (LatexExtractionConfig(),)
_LOG10_2 = math.log10(2)
_LOG10_E = math.log10(math.e)
_EVALF_LOG10 = 20  # evaluate a bounded number whose parts are all below 10^20

# math-verify's plain-expression extractor hands its regex match to sympy's parse_expr, which
# runs Python eval. The regex only admits digits and operators; this guard keeps it so if a
# future math-verify widens the regex.
_SAFE_EXPR_RE = re.compile(r"[0-9\s.+\-*/()]*")
_original_parse_expr = _mv_parser.parse_expr


def _guarded_parse_expr(text, *args, **kwargs):
    """sympy's parse_expr, refusing anything but digits, whitespace and arithmetic."""
    if not isinstance(text, str) or not _SAFE_EXPR_RE.fullmatch(text):
        raise ValueError("expression refused by zerorl: only digits and operators are parsed")
    return _original_parse_expr(text, *args, **kwargs)


_mv_parser.parse_expr = _guarded_parse_expr
# Time limits are the caller's (a signal timer in the worker, a hard kill from the pool), so
# math-verify's own per-call alarms are off; this silences its one-off warning about that.
_mv_parser.TIMEOUT_WARNING_SHOWN = True
_mv_grader.TIMEOUT_WARNING_SHOWN = True


# Two-stage ANTLR parsing (documented in antlr4's ParserATNSimulator): parse in SLL mode first
# and fall back to full LL only if that raises. When SLL parses without a syntax error its tree
# is the one LL would build, and it is 5-7x faster on answers. set_two_stage_parsing(False)
# restores the library's behaviour; tests check both give the same parses.
_original_create_parser = _Latex2Sympy.create_parser
_original_latex_parse = _Latex2Sympy.parse
_two_stage = True


def _create_parser(self: _Latex2Sympy, latex_str: str):
    parser = _original_create_parser(self, latex_str)
    if getattr(self, "_zerorl_sll", False):
        parser._interp.predictionMode = PredictionMode.SLL
    return parser


def _latex_parse(self: _Latex2Sympy, latex_str: str):
    if not _two_stage:
        return _original_latex_parse(self, latex_str)
    self._zerorl_sll = True
    try:
        return _original_latex_parse(self, latex_str)
    except Exception:
        self._zerorl_sll = False
        return _original_latex_parse(self, latex_str)


_Latex2Sympy.create_parser = _create_parser
_Latex2Sympy.parse = _latex_parse


class TooBig(ValueError):
    """An answer asks for a number beyond MAX_DIGITS digits while it is being parsed."""


# latex2sympy evaluates \binom and \gcd / \lcm while parsing, so ``\binom{10^{9}}{10^{5}}`` or
# ``\gcd(10^{10^{9}}, 2)`` would hang inside the parser, before too_big could look at them.
_original_convert_binom = _Latex2Sympy.convert_binom
_original_gcd_lcm = _Latex2Sympy.handle_gcd_lcm


def _convert_binom(self: _Latex2Sympy, binom: object) -> sympy.Basic:
    top = self.convert_expr(binom.upper)
    bottom = self.convert_expr(binom.lower)
    # C(n, k) < 2^n: evaluate only when that bound is small; otherwise leave it for too_big.
    evaluate = magnitude_bound(top) * _LOG10_2 <= MAX_DIGITS
    return sympy.binomial(top, bottom, evaluate=evaluate)


def _handle_gcd_lcm(self: _Latex2Sympy, f: str, args: list) -> sympy.Basic:
    if any(log10_bound(arg) > MAX_DIGITS for arg in args):
        raise TooBig(f"\\{f} of a number beyond {MAX_DIGITS} digits")
    return _original_gcd_lcm(self, f, args)


_Latex2Sympy.convert_binom = _convert_binom
_Latex2Sympy.handle_gcd_lcm = _handle_gcd_lcm


def set_two_stage_parsing(enabled: bool) -> None:
    """Switch the SLL-then-LL parsing speed-up on or off (on by default); clears caches."""
    global _two_stage
    _two_stage = enabled
    parse_truth.cache_clear()
    parse_answer.cache_clear()
    _mv_parser.parse_latex_cached.cache_clear()


@lru_cache(maxsize=8192)
def parse_truth(truth: str) -> tuple:
    """math-verify's parse of a prepared ground truth (cached: truths repeat across samples)."""
    return tuple(parse("\\boxed{" + truth + "}", list(_TRUTH_CONFIG), parsing_timeout=None))


@lru_cache(maxsize=4096)
def parse_answer(answer: str) -> tuple:
    """math-verify's parse of one box content, LaTeX only (cached: wrong answers recur)."""
    return tuple(parse("\\boxed{" + answer + "}", list(_ANSWER_CONFIG), parsing_timeout=None))


def _int_log10(n: int) -> float:
    return abs(n).bit_length() * _LOG10_2


def _value_bound(log10: float) -> float:
    """An upper bound on a value from an upper bound on its log10 (inf past float range)."""
    return math.inf if log10 > 300 else 10.0**log10


def magnitude_bound(expr: object) -> float:
    """Upper bound on ``|expr|``, for an exponent or the argument of a factorial or binomial.

    A number all of whose parts stay below 10^_EVALF_LOG10 is evaluated (cheap at that size):
    its |value| with a margin for rounding. Anything else falls back to 10^log10_bound(expr),
    which is far looser: log10_bound bounds |log10| of every part, so 1/6 counts as 6 and
    sqrt(5)/2 as 10^4.6, and an irrational exponent such as e^(sqrt(5)/2) would look huge.
    """
    bound = log10_bound(expr)
    if bound <= _EVALF_LOG10 and getattr(expr, "is_number", False):
        value = abs(complex(expr.evalf(15)))
        if math.isfinite(value):
            return value * (1 + 1e-9)
    return _value_bound(bound)


def log10_bound(expr: object) -> float:
    """Upper bound on |log10| of every number the exact evaluation of ``expr`` would build.

    Symbols count as magnitude 1; a symbolic base with an exponent above
    MAX_SYMBOLIC_EXPONENT counts as infinite (expanding ``(x+1)^{100000}`` never ends).
    """
    if isinstance(expr, sympy.Integer):
        return _int_log10(int(expr))
    if isinstance(expr, sympy.Rational):
        return max(_int_log10(expr.p), _int_log10(expr.q))
    if isinstance(expr, sympy.Float):
        _, _, exponent, bits = expr._mpf_  # the binary exponent, without evalf
        return abs(exponent + bits) * _LOG10_2
    if isinstance(expr, sympy.MatrixBase):
        return max((log10_bound(item) for item in expr), default=1.0)
    if not isinstance(expr, sympy.Basic) or not expr.args:
        return 1.0
    args = expr.args
    if isinstance(expr, sympy.Pow):
        exponent = magnitude_bound(args[1])
        if not args[0].is_number:
            return math.inf if exponent > MAX_SYMBOLIC_EXPONENT else log10_bound(args[0])
        return max(log10_bound(args[0]), 1.0) * max(exponent, 1.0)
    if isinstance(expr, sympy.exp):
        return max(magnitude_bound(args[0]) * _LOG10_E, 1.0)
    if isinstance(expr, (sympy.factorial, sympy.factorial2, sympy.subfactorial, sympy.gamma)):
        n = magnitude_bound(args[0])
        return n * max(math.log10(n), 1.0) if n != math.inf else math.inf
    if isinstance(expr, sympy.binomial):
        return magnitude_bound(args[0]) * _LOG10_2 + 1.0
    bounds = [log10_bound(arg) for arg in args]
    return sum(bounds) if isinstance(expr, sympy.Mul) else max(bounds) + math.log10(len(bounds))


def too_big(parsed: tuple) -> bool:
    """True if any parsed form of an answer would build a number beyond MAX_DIGITS digits."""
    for item in parsed:
        if isinstance(item, (sympy.Basic, sympy.MatrixBase)):
            try:
                if log10_bound(item) > MAX_DIGITS:
                    return True
            except RecursionError:
                return True
    return False


def check(answer: str, truth: str) -> str:
    """CORRECT, WRONG or REFUSED for one box content against one prepared ground truth.

    Not time-limited here: callers bound it (worker signal timer, pool hard kill).
    """
    gold = parse_truth(truth)
    pred = parse_answer(answer)
    if not gold or not pred:
        return WRONG
    if too_big(pred):
        return REFUSED
    return CORRECT if verify(list(gold), list(pred), timeout_seconds=None) else WRONG

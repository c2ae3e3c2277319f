"""Answer pairs for the reward tests: (ground truth, box content, expected score, what it covers).

``PAIRS`` are judged right by zerorl's reward. ``KNOWN_WRONG`` are judged wrongly by math-verify
(and so by zerorl); each records the score zerorl gives today and why it is wrong. They are
listed in docs/reward.md; tests pin today's behaviour so a math-verify upgrade that changes one
of them is noticed.
"""

from __future__ import annotations

PAIRS: list[tuple[str, str, float, str]] = [
    # fractions
    ("\\frac{1}{2}", "\\frac{1}{2}", 1.0, "fraction, identical"),
    ("\\frac{1}{2}", "1/2", 1.0, "fraction, slash"),
    ("1/2", "\\dfrac{1}{2}", 1.0, "plain truth, dfrac answer"),
    ("\\frac{1}{2}", "\\frac{2}{4}", 1.0, "unreduced fraction"),
    ("\\frac{3}{56}", "\\frac{3}{65}", 0.0, "fraction, wrong"),
    ("\\frac14", "0.25", 1.0, "shorthand frac vs decimal"),
    # decimals
    ("1.25", "\\frac{5}{4}", 1.0, "decimal vs fraction"),
    ("0.15", "0.150", 1.0, "trailing zero"),
    ("0.15", "0.16", 0.0, "decimal, wrong"),
    ("\\frac{1}{3}", "0.333333", 1.0, "repeating decimal to 6 places"),
    ("\\frac{1}{3}", "0.33", 0.0, "repeating decimal, too short"),
    # radicals
    ("2\\sqrt{3}", "\\sqrt{12}", 1.0, "radical, unsimplified"),
    ("3\\sqrt{13}", "3 \\sqrt{13}", 1.0, "radical, spacing"),
    ("11\\sqrt2", "11\\sqrt{2}", 1.0, "radical, braces"),
    ("\\frac{\\sqrt{21}}{5}", "\\frac{\\sqrt{21}}{6}", 0.0, "radical, wrong"),
    # pi
    ("\\pi", "\\pi", 1.0, "pi"),
    ("-\\frac{\\pi}{6}", "-\\pi/6", 1.0, "pi fraction"),
    ("\\frac{\\pi}{2}", "\\frac{\\pi}{3}", 0.0, "pi, wrong"),
    ("\\pi", "3.14", 0.0, "pi is not 3.14"),
    # intervals
    ("(2,\\infty)", "(2, \\infty)", 1.0, "open interval"),
    ("(-\\infty, 0]", "(-\\infty,0]", 1.0, "half-open interval"),
    ("[1, 2)", "(1, 2)", 0.0, "interval, wrong bracket"),
    ("(-\\infty, 2) \\cup (3, \\infty)", "(-\\infty,2)\\cup(3,\\infty)", 1.0, "union"),
    # sets and lists of solutions
    ("1,-2", "-2, 1", 1.0, "solution list, reordered"),
    ("3, 5, 7", "\\{3, 5, 7\\}", 1.0, "list vs set"),
    ("\\{1\\pm\\sqrt{5},-2\\}", "-2, 1+\\sqrt{5}, 1-\\sqrt{5}", 1.0, "plus-minus set"),
    ("1,-2", "1, -2, 3", 0.0, "extra solution"),
    # tuples
    ("(6,31,-1)", "(6, 31, -1)", 1.0, "tuple"),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\pi/2)", 1.0, "polar point"),
    ("(-2,1)", "(1,-2)", 0.0, "tuple, order matters"),
    # equations
    ("x=5", "5", 1.0, "assignment truth, bare answer"),
    ("5", "x=5", 1.0, "bare truth, assignment answer"),
    ("y = 2x + 3", "y=2x+3", 1.0, "line"),
    ("y = -2x", "y = 2x", 0.0, "line, wrong slope"),
    ("x=3", "x=4", 0.0, "assignment, wrong"),
    # units
    ("5", "5 \\text{ cm}", 1.0, "unit in answer"),
    ("5 \\text{ cm}", "5", 1.0, "unit in truth"),
    ("864 \\mbox{ inches}^2", "864", 1.0, "mbox unit"),
    ("5", "6 \\text{ cm}", 0.0, "unit, wrong number"),
    # text answers
    ("\\text{Evelyn}", "\\text{Evelyn}", 1.0, "text answer"),
    ("\\text{Evelyn}", "Evelyn", 1.0, "text answer without text"),
    ("\\text{(C)}", "\\text{(C)}", 1.0, "multiple choice"),
    ("\\text{(C)}", "C", 1.0, "multiple choice letter"),
    ("\\text{(C)}", "\\text{(D)}", 0.0, "multiple choice, wrong"),
    ("\\text{east}", "\\text{west}", 0.0, "text, wrong"),
    # percentages
    ("50\\%", "50\\%", 1.0, "percent"),
    ("50\\%", "0.5", 1.0, "percent as fraction"),
    ("50\\%", "40\\%", 0.0, "percent, wrong"),
    # degrees
    ("90^\\circ", "90", 1.0, "degrees dropped"),
    ("30^\\circ", "30^{\\circ}", 1.0, "degrees, braces"),
    ("90^\\circ", "45^\\circ", 0.0, "degrees, wrong"),
    # scientific notation
    ("1500", "1.5 \\times 10^{3}", 1.0, "scientific notation"),
    ("0.001", "10^{-3}", 1.0, "negative power of ten"),
    ("1500", "1.5 \\times 10^{4}", 0.0, "scientific notation, wrong"),
    # negative numbers and integers
    ("-50", "-50", 1.0, "negative"),
    ("-50", "50", 0.0, "sign matters"),
    ("-2 + 7i", "7i - 2", 1.0, "complex, reordered"),
    ("6 - 5i", "6 + 5i", 0.0, "complex, conjugate"),
    ("10,\\!080", "10080", 1.0, "thousands separator in truth"),
    ("2220", "2,220", 1.0, "thousands separator in answer"),
    # polynomials and matrices
    ("x^5 - x^4 + x^3 - x^2 + x - 1", "x^5-x^4+x^3-x^2+x-1", 1.0, "polynomial"),
    ("p - q", "-q + p", 1.0, "reordered expression"),
    ("\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}", "-I", 0.0, "matrix vs symbol"),
    (
        "\\begin{pmatrix} 1/5 \\\\ -18/5 \\end{pmatrix}",
        "\\begin{pmatrix} 0.2 \\\\ -3.6 \\end{pmatrix}",
        1.0,
        "vector",
    ),
    # ground truth wrapped in a box
    ("\\boxed{\\frac{1}{2}}", "0.5", 1.0, "boxed truth"),
    ("$3$", "3", 1.0, "dollar truth"),
]

# (truth, answer, score zerorl gives, why that is wrong)
KNOWN_WRONG: list[tuple[str, str, float, str]] = [
    ("52_8", "52_3", 1.0, "base subscripts are dropped, so any base matches"),
    ("15\\mbox{ cm}^2", "15\\mbox{ cm}^6", 1.0, "units are stripped with their exponent"),
    ("3", "3\\%", 1.0, "an integer percentage equals the bare integer"),
    ("3", "4=3", 1.0, "only the right-hand side of an equation is compared"),
    ("3", "x=4=3", 1.0, "a chain of equations is judged by its last right-hand side"),
    ("90^\\circ", "\\frac{\\pi}{2}", 0.0, "degrees are dropped, never converted to radians"),
    ("(2,\\infty)", "x > 2", 0.0, "an inequality is not compared with the interval it describes"),
    ("i", "\\sqrt{-1}", 0.0, "answers are parsed as real, so sqrt(-1) is not i"),
    ("\\text{yes}", "yes", 1.0, "right, but by accident: 'yes' parses as e*s*y (E*s*y)"),
    ("\\pi", "3.14159", 0.0, "defensible: pi is compared exactly, not to 6 places"),
]

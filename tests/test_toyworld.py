"""The toy world: tokenizer round trip, disjoint splits, corpus format, a tiny cached build."""

from __future__ import annotations

import json
import random
import re
import warnings
from dataclasses import replace
from pathlib import Path

import pytest

from zerorl import toyworld as tw
from zerorl.data.template import STOP_STRINGS, render
from zerorl.eval.analysis import reflects
from zerorl.reward import score
from zerorl.toyworld import build, probe

TINY = replace(
    tw.DEFAULT_SETTINGS,
    corpus_size=300,
    vocab_size=300,
    hidden_size=32,
    num_layers=1,
    num_heads=2,
    intermediate_size=64,
    steps=3,
    batch_size=8,
    drill_batch=4,
    warmup_steps=2,
    retries=0,
)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tw.ensure_base_model(
        tmp_path_factory.mktemp("cache"), seed=0, progress=False, settings=TINY
    )


def test_columns_are_right_and_local() -> None:
    assert tw.columns(473, 289) == "3+9=12 carry 1, 7+8+1=16 carry 1, 4+2+1=7"
    assert tw.columns(999, 1) == "9+1=10 carry 1, 9+1=10 carry 1, 9+1=10"
    for a, b in [(100, 900), (555, 445), (123, 4), (7, 8)]:
        steps = re.findall(r"([\d+]+)=(\d+)", tw.columns(a, b))
        for terms, total in steps:  # each step is a single-digit fact (plus a carry)
            assert sum(int(t) for t in terms.split("+")) == int(total) <= 19


def test_checked_response_catches_the_slip() -> None:
    text = tw.checked_response(473, 289, "772")
    assert text.startswith(" 772? wait, recheck: 3+9=12 carry 1,")
    assert reflects(text) and score(text, "762") == 1.0 and score(text, "772") == 0.0


def test_wrong_guesses_are_unrelated_numbers_of_as_many_digits() -> None:
    rng = random.Random(0)
    guesses = [tw.guess(762, rng, right=0.2) for _ in range(2000)]
    right = sum(g == "762" for g in guesses) / len(guesses)
    assert 0.17 < right < 0.23
    assert all(len(g) == 3 and g[0] != "0" for g in guesses)
    wrong = [g for g in guesses if g != "762"]
    # unrelated: a wrong guess shares each digit with the answer about one time in ten
    assert all(0.05 < sum(g[i] == "762"[i] for g in wrong) / len(wrong) < 0.16 for i in (1, 2))
    assert {tw.guess(5, rng, right=0.0) for _ in range(200)} == set("012346789")


def test_corpus_format_and_answers() -> None:
    settings = replace(tw.DEFAULT_SETTINGS, corpus_size=400)
    pairs = tw.corpus(settings, seed=0)
    assert len(pairs) == 400
    checked = right_direct = 0
    for prompt, response in pairs:
        question = prompt.split("This is the problem:\n")[1].split("\nAssistant:")[0]
        assert prompt == render(question)
        a, b = (int(x) for x in re.fullmatch(r"What is (\d+) \+ (\d+)\?", question).groups())
        assert response.endswith(" </answer>") and response.count("</answer>") == 1
        assert not any(stop in response[: -len("</answer>")] for stop in STOP_STRINGS)
        assert tw.reasons(response) == reflects(response)  # every reasoning response rechecks
        if tw.reasons(response):
            checked += 1
            assert score(response, str(a + b)) == 1.0  # the check always answers right
        else:
            right_direct += score(response, str(a + b))
    assert 0.22 < checked / len(pairs) < 0.38  # the 30% share, give or take sampling
    assert 0.12 < right_direct / (len(pairs) - checked) < 0.28  # guesses right 20% of the time


def test_drills_are_right_rechecks_of_corpus_problems_without_their_choice() -> None:
    settings = replace(TINY, corpus_size=200)
    pairs = tw.drills(settings, seed=0)
    assert len(pairs) == 100
    for prompt, response in pairs:
        question = prompt.split("This is the problem:\n")[1].split("\nAssistant:")[0]
        assert tw.split_of(question) == "corpus"  # never an RL or held-out problem
        a, b = (int(x) for x in re.fullmatch(r"What is (\d+) \+ (\d+)\?", question).groups())
        assert reflects(response) and score(response, str(a + b)) == 1.0

    from zerorl.toyworld.tokenizer import build_tokenizer

    tok = build_tokenizer([p + r for p, r in pairs], settings.vocab_size)
    rows = build._encode_pairs(pairs[:5], tok, skip=1)
    plain = build._encode_pairs(pairs[:5], tok)
    for row, full, (prompt, _) in zip(rows, plain, pairs[:5], strict=True):
        # the loss starts one token later: the " " that chooses to recheck is not trained
        assert row.ids == full.ids and row.start == full.start + 1
        assert (
            full.start == len(tok.encode(prompt).ids) and tok.decode([full.ids[full.start]]) == " "
        )


def test_splits_are_disjoint() -> None:
    train = tw.train_prompts(500, seed=0)
    evals = tw.eval_prompts(500, seed=0)
    other_eval = tw.eval_prompts(200, seed=1)
    corpus = {p.split("problem:\n")[1] for p, _ in tw.corpus(replace(TINY, corpus_size=3000), 0)}
    train_q = {p.question for p in train}
    eval_q = {p.question for p in evals} | {p.question for p in other_eval}
    assert len(train_q) == 500 and len({p.question for p in evals}) == 500
    assert train_q.isdisjoint(eval_q)
    assert not any(q in c for c in corpus for q in list(eval_q)[:50])
    assert all(tw.split_of(q) == "eval" for q in eval_q)
    assert all(tw.split_of(q) == "train" for q in train_q)
    assert tw.train_prompts(50, seed=0) == train[:50]  # deterministic and prefix-stable


def test_tokenizer_round_trip_and_digits(tiny_dir: Path) -> None:
    tok = tw.load_tokenizer(tiny_dir)
    pairs = tw.corpus(replace(TINY, corpus_size=50), seed=3)
    odd = ["  two  spaces\n\nand tabs\t here ", "unicode: é 世界 ∑", "{}\\boxed{12}</answer>x"]
    for text in [p for p, _ in pairs] + [r for _, r in pairs] + [p + r for p, r in pairs] + odd:
        assert tok.decode(tok(text)["input_ids"]) == text
    prompt_ids = tok(render("What is 473 + 289?"))["input_ids"]
    assert len(prompt_ids) < 30  # the fixed template parts are single tokens
    digits = tok.convert_ids_to_tokens(tok("12345 + 67890")["input_ids"])
    assert [t for t in digits if any(c.isdigit() for c in t)] == list("1234567890")
    assert tok.eos_token == tw.EOS and tok.pad_token_id == tok.eos_token_id
    # the saved config alone must also give the same tokenizer (zerorl.models loads it so)
    from transformers import PreTrainedTokenizerFast

    plain = PreTrainedTokenizerFast.from_pretrained(tiny_dir)
    text = render("What is 473 + 289?") + tw.checked_response(473, 289, "772") + "  odd \n\n space "
    assert (
        plain(text)["input_ids"] == tok(text)["input_ids"]
        and plain.decode(tok(text)["input_ids"]) == text
    )
    assert plain.eos_token == plain.pad_token == tw.EOS


def test_stop_strings_work_with_hf_generate(tiny_dir: Path) -> None:
    """transformers' StopStringCriteria reads the vocabulary; it must see ``</answer>`` end."""
    import torch
    from transformers import StopStringCriteria

    tok = tw.load_tokenizer(tiny_dir)
    ids = tok(tw.checked_response(473, 289, "772"))["input_ids"]
    stop = StopStringCriteria(tok, list(STOP_STRINGS))
    hits = [bool(stop(torch.tensor([ids[:k]]), None)[0]) for k in range(1, len(ids) + 1)]
    assert hits == [False] * (len(ids) - 1) + [True]


def test_tiny_build_is_loadable_and_cached(tiny_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    record = json.loads((tiny_dir / "world.json").read_text())
    assert record["settings"] == json.loads(json.dumps(TINY.__dict__))
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    tok = tw.load_tokenizer(tiny_dir)
    assert model.config.eos_token_id == tok.eos_token_id
    report = tw.evaluate(model, tok, tw.eval_prompts(3, seed=0), samples=2)
    assert report.n == 6 and 0 <= report.accuracy <= 1 and report.mean_response_tokens <= 96
    # a second call finds the cache; nothing but the finished folder is left behind
    assert tw.ensure_base_model(tiny_dir.parent, seed=0, progress=False, settings=TINY) == tiny_dir
    assert [p.name for p in tiny_dir.parent.iterdir()] == [tiny_dir.name]
    assert torch.isfinite(torch.tensor(record["final_loss"]))
    assert record["worked_checks"] == []  # retries=0: no check


def test_build_is_deterministic_and_keyed(tmp_path: Path, tiny_dir: Path) -> None:
    again = tw.ensure_base_model(tmp_path, seed=0, progress=False, settings=TINY)
    assert again.name == tiny_dir.name
    for name in ("model.safetensors", "tokenizer.json"):
        assert (again / name).read_bytes() == (tiny_dir / name).read_bytes()
    assert TINY.digest(1) != TINY.digest(0) != replace(TINY, steps=4).digest(0)


@pytest.mark.parametrize(("score", "attempts"), [(0.0, 3), (0.95, 1)])
def test_build_restarts_while_reasoning_is_wrong(
    score: float, attempts: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fresh restarts happen only while the reasoning check misses its target."""
    calls: list[int] = []

    def fake_check(*args: object) -> float:
        calls.append(1)
        return score

    monkeypatch.setattr(probe, "reasoning_accuracy", fake_check)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        record = build.build(tmp_path, replace(TINY, retries=2), seed=0, progress=False)
    warned = any("toy world" in str(w.message) for w in caught)
    assert warned == (score < TINY.target_worked_accuracy)  # warned when every attempt fails
    assert record["worked_checks"] == [score] * attempts and len(calls) == attempts


def test_killed_build_leaves_no_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> float:  # a kill in the middle of the build
        raise KeyboardInterrupt

    monkeypatch.setattr(build, "pretrain", boom)
    with pytest.raises(KeyboardInterrupt):
        tw.ensure_base_model(tmp_path, seed=0, progress=False, settings=TINY)
    assert list(tmp_path.iterdir()) == []


def test_cache_root_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ZERORL_CACHE", str(tmp_path))
    assert tw.cache_root() == tmp_path / "toyworld"
    assert tw.cache_root(tmp_path / "x") == tmp_path / "x"


def test_seed_table_says_which_thresholds_a_seed_misses() -> None:
    from benchmarks.toyworld_seeds import meets, table

    good = {
        "seed": 0, "start": 0.25, "end": 0.8, "gain": 55.0, "reflect_first": 0.3,
        "reflect_last": 0.9, "correct_reflect_len": 45.0, "mean_len": 44.0, "len_first": 20.0,
        "len_last": 45.0, "build_s": 200.0, "run_s": 100.0, "wall_s": 300.0, "cpu_s": 600.0,
    }  # fmt: skip
    bad = {**good, "seed": 1, "end": 0.7, "gain": 45.0, "reflect_last": 0.5}
    assert meets(good) == "yes"
    assert meets(bad) == "end < 75%; reflection not doubled"
    rows = [{**good, "meets": meets(good)}, {**bad, "meets": meets(bad)}]
    text = table(rows)
    assert "| 0 | 25.0% | 80.0% | +55.0 |" in text and text.endswith("| 1 of 2 |")
    assert "| mean (range) | 25.0% (25.0% to 25.0%) | 75.0% (70.0% to 80.0%) |" in text


@pytest.mark.slow
def test_default_world_accuracy_band() -> None:
    """Builds (or reuses) the real base model: it must solve some held-out problems, not most,
    and reflect rarely but then be right."""
    from transformers import AutoModelForCausalLM

    model_dir = tw.ensure_base_model(progress=False)
    record = json.loads((model_dir / "world.json").read_text())
    assert record["worked_checks"][-1] >= tw.DEFAULT_SETTINGS.target_worked_accuracy, record
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    report = tw.evaluate(model, tw.load_tokenizer(model_dir), tw.eval_prompts(200, seed=0))
    assert 0.1 <= report.accuracy <= 0.6, report
    assert 0.1 <= report.reflection_share <= 0.5, report
    assert report.reflection_share == report.reasoning_share, report  # every reasoning rechecks
    assert report.accuracy_reasoning is not None and report.accuracy_direct is not None
    assert report.accuracy_reasoning > report.accuracy_direct + 0.4, report


@pytest.mark.slow
def test_default_run_learns_to_reflect(tmp_path: Path) -> None:
    """The default command's thresholds (issue 15): held-out accuracy >= 75% and +40 points,
    reflection share at least doubled, longer responses, correct reflections longer than the
    mean in the second half."""
    from benchmarks.toyworld_seeds import summarize
    from zerorl.config import load_config
    from zerorl.launch import run_training

    cfg = load_config("tiny-cpu", None, [f"train.out_dir={tmp_path}"])
    run = run_training(cfg, tmp_path / "run", on_info=lambda s: None)
    row = summarize(run.path, tw.cache_root().parent)
    assert row["end"] >= 0.75 and row["gain"] >= 40, row
    assert row["reflect_last"] >= 2 * row["reflect_first"], row
    assert row["len_last"] > row["len_first"] and row["correct_reflect_len"] > row["mean_len"], row

"""``zerorl data curate`` and ``zerorl data synth`` through the command line."""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from zerorl.cli.data import data_app
from zerorl.data.loaders import load_prompts, save_jsonl, save_orz_train
from zerorl.types import Prompt

runner = CliRunner()

QUESTIONS = [
    ("What is the sum of the interior angles of a convex hexagon, in degrees?", "720"),
    ("How many positive divisors does 360 have?", "24"),
    ("Which is largest? (A) 1 (B) 2 (C) 3", "3"),
    ("Prove that the square root of two is irrational.", "0"),
    ("How many positive divisors does 360 have ?", "24"),
    ("Find the remainder when $7^{100}$ is divided by 13 and then add two to it.", "11"),
]
EVAL = "Find the remainder when $7^{100}$ is divided by 13 and then add two to it."


def write_inputs(tmp_path):
    prompts = [Prompt(f"r{i}", q, a, "raw") for i, (q, a) in enumerate(QUESTIONS)]
    save_orz_train(prompts[:3], tmp_path / "part1.json")
    save_jsonl(prompts[3:], tmp_path / "part2.jsonl")
    save_jsonl([Prompt("ev0", EVAL, "11", "myeval")], tmp_path / "eval.jsonl")
    return [str(tmp_path / "part1.json"), str(tmp_path / "part2.jsonl")]


def test_curate_command_end_to_end(tmp_path):
    inputs = write_inputs(tmp_path)
    out, report = tmp_path / "clean.json", tmp_path / "report.json"
    args = [
        "curate", *inputs, "--out", str(out), "--report", str(report),
        "--eval-set", str(tmp_path / "eval.jsonl"), "--skip", "semantic_dedup", "--workers", "1",
    ]  # fmt: skip
    result = runner.invoke(data_app, args)
    assert result.exit_code == 0, result.output
    kept = load_prompts(out)
    assert [p.question for p in kept] == [QUESTIONS[0][0], QUESTIONS[1][0]]
    # ORZ's format has no ids, so part1's prompts are named after the file.
    assert [p.id for p in load_prompts(tmp_path / "clean.jsonl")] == ["part1-0", "part1-1"]
    saved = json.loads(report.read_text())
    assert [(s["name"], s["n_removed"]) for s in saved["stages"]] == [
        ("verifiable", 2),
        ("exact_dedup", 1),
        ("near_dedup", 0),
        ("decontaminate", 1),
    ]
    assert "curation: 6 -> 2 prompts" in result.output  # the rich summary table


def test_curate_jsonl_only_and_stage_options(tmp_path):
    inputs = write_inputs(tmp_path)
    out = tmp_path / "clean.jsonl"
    args = ["curate", *inputs, "--out", str(out), "--skip", "semantic_dedup",
            "--skip", "verifiable", "--skip", "exact_dedup", "--near-threshold", "0.5"]  # fmt: skip
    result = runner.invoke(data_app, args)
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "clean.json").exists()
    assert len(load_prompts(out)) == 5  # only near_dedup ran: the spaced duplicate went


def test_curate_reports_malformed_input_by_file_and_item(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "Q", "answer": "1"}\n{"question": "Q2"}\n')
    args = ["curate", str(bad), "--out", str(tmp_path / "o.json"), "--skip", "semantic_dedup"]
    result = runner.invoke(data_app, args)
    assert result.exit_code == 1
    assert "bad.jsonl: item 1: no answer field" in " ".join(result.output.split())
    with pytest.warns(UserWarning, match="skipped 1 malformed item"):
        result = runner.invoke(data_app, [*args, "--skip-malformed"])
    assert result.exit_code == 0, result.output
    assert len(load_prompts(tmp_path / "o.json")) == 1


def test_curate_rejects_unknown_stage(tmp_path):
    result = runner.invoke(data_app, ["curate", "x.json", "--out", "o.json", "--skip", "nope"])
    assert result.exit_code != 0 and "unknown stage" in result.output


def test_curate_says_when_semantic_stage_cannot_run(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    inputs = write_inputs(tmp_path)
    result = runner.invoke(data_app, ["curate", *inputs, "--out", str(tmp_path / "o.json")])
    assert result.exit_code == 0, result.output
    assert "sentence-transformers is not installed" in " ".join(result.output.split())


def test_synth_command_writes_what_generate_returns(tmp_path):
    from zerorl.data import synth

    out = tmp_path / "s.json"
    args = ["synth", "--task", "addition", "--n", "3", "--seed", "5", "--difficulty", "2"]
    result = runner.invoke(data_app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    expected = synth.generate("addition", 3, 5, 2)
    assert [(p.question, p.ground_truth) for p in load_prompts(out)] == [
        (p.question, p.ground_truth) for p in expected
    ]
    result = runner.invoke(data_app, [*args, "--out", str(tmp_path / "s.jsonl")])
    assert [p.id for p in load_prompts(tmp_path / "s.jsonl")] == [p.id for p in expected]


def test_synth_lists_and_rejects_unknown_tasks():
    from zerorl.data import synth

    result = runner.invoke(data_app, ["synth", "--list"])
    assert result.exit_code == 0
    for name, description in synth.TASKS.items():
        assert f"{name}\t{description}" in result.output
    result = runner.invoke(data_app, ["synth", "--task", "nope", "--out", "x.json"])
    assert result.exit_code != 0 and "unknown task" in result.output


def test_synth_with_the_real_generators(tmp_path):
    synth = pytest.importorskip("zerorl.data.synth")
    task = next(iter(synth.TASKS))
    out = tmp_path / "real.json"
    result = runner.invoke(data_app, ["synth", "--task", task, "--n", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    prompts = load_prompts(out)
    assert len(prompts) == 4 and all(p.ground_truth for p in prompts)

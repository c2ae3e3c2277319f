"""``zerorl eval`` end to end on a tiny random model: two benchmarks, real engine and reward."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from zerorl.cli.eval import analyze_command, eval_command, report_command

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def app() -> typer.Typer:
    """A fresh app with the commands registered the way zerorl/cli/__init__.py does."""
    cli = typer.Typer()
    cli.command("eval")(eval_command)
    cli.command("analyze")(analyze_command)
    cli.command("report")(report_command)
    return cli


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """Two benchmarks in ORZ's evaluation format; the second is multiple choice."""
    root = tmp_path_factory.mktemp("eval_data")
    sums = [
        {"prompt": [{"from": "user", "value": f"What is {a} + {a}?"}], "final_answer": str(2 * a)}
        for a in (3, 14, 25)
    ]
    (root / "sums.json").write_text(json.dumps(sums))
    choice = [
        {"prompt": [{"from": "user", "value": q}], "final_answer": "B", "choices": ["1", "2", "3"]}
        for q in ("What is 1 + 1?", "What is 4 / 2?")
    ]
    (root / "gpqa_diamond.json").write_text(json.dumps(choice))
    return root


def invoke(*args: str):
    """Run a command in this process; ``--threads`` is process-wide, so it is restored after."""
    threads = torch.get_num_threads()
    try:
        return CliRunner().invoke(app(), [str(a) for a in args])
    finally:
        torch.set_num_threads(threads)


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_eval_two_benchmarks_end_to_end(tiny_model_dir, data_dir, tmp_path):
    out = tmp_path / "out"
    result = invoke(
        "eval", data_dir / "sums.json", "gpqa-diamond", "--data-dir", data_dir,
        "--model", tiny_model_dir, "--samples", 3, "--max-new-tokens", 12, "--out", out,
        "--reward-workers", 1, "--batch-size", 6, "--threads", 1,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["benchmarks"]) == ["sums", "gpqa-diamond"]
    assert summary["settings"]["samples"] == 3 and summary["settings"]["template"] == "orz"
    samples = lines(out / "samples.jsonl")
    assert len(samples) == 3 * 3 + 2 * 3
    assert set(samples[0]) == {
        "benchmark", "problem_id", "sample_index", "response", "extracted", "ground_truth",
        "correct", "length", "finish_reason",
    }  # fmt: skip
    for name, problems in (("sums", 3), ("gpqa-diamond", 2)):
        mine = [s for s in samples if s["benchmark"] == name]
        b = summary["benchmarks"][name]
        assert b["problems"] == problems and b["samples_per_problem"] == 3
        assert [s["sample_index"] for s in mine] == [0, 1, 2] * problems
        assert all(s["correct"] in (0, 1) and 1 <= s["length"] <= 12 for s in mine)
        assert b["avg@3"] == pytest.approx(sum(s["correct"] for s in mine) / len(mine))
        assert b["pass@1"] == pytest.approx(b["avg@3"])
        assert b["avg@3"] <= b["pass@2"] <= b["pass@3"]
        assert b["mean_length"] == pytest.approx(sum(s["length"] for s in mine) / len(mine))
        truncated = [s["finish_reason"] == "length" for s in mine]
        assert b["truncated_frac"] == pytest.approx(sum(truncated) / len(mine))
        assert all(s["length"] == 12 for s, t in zip(mine, truncated, strict=True) if t)
    table = (out / "summary.md").read_text()
    assert "| benchmark | problems | avg@3 | pass@1 | pass@2 | pass@3 | maj@3 |" in table
    assert "| gpqa-diamond | 2 |" in table


def test_eval_chat_template_and_run_checkpoint(tiny_model_dir, data_dir, tmp_path):
    # A run directory whose latest checkpoint is the tiny model, with a chat template added.
    policy = tmp_path / "run" / "checkpoints" / "step_3" / "policy"
    shutil.copytree(tiny_model_dir, policy)
    config = json.loads((policy / "tokenizer_config.json").read_text())
    (policy / "tokenizer_config.json").write_text(
        json.dumps({**config, "chat_template": CHAT_TEMPLATE})
    )
    (policy.parent.parent / "latest").write_text("step_3")
    result = invoke(
        "eval", "sums", "--run", tmp_path / "run", "--data-dir", data_dir, "--template", "chat",
        "--samples", 2, "--limit", 2, "--max-new-tokens", 8, "--reward-workers", 1, "--threads", 1,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = tmp_path / "run" / "eval" / "step_3"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["template"] == "chat"
    assert summary["settings"]["boxed_fallback"] is True  # the chat default, recorded
    assert summary["benchmarks"]["sums"]["problems"] == 2
    assert len(lines(out / "samples.jsonl")) == 4


def test_eval_usage_errors(tiny_model_dir, data_dir, tmp_path):
    missing = invoke("eval", "aime2031", "--model", tiny_model_dir, "--data-dir", data_dir)
    assert missing.exit_code == 2
    assert "aime2031" in missing.output and "gpqa_diamond" in missing.output
    both = invoke("eval", "sums", "--model", tiny_model_dir, "--run", tmp_path)
    assert both.exit_code == 2
    no_template = invoke(
        "eval", "sums", "--model", tiny_model_dir, "--data-dir", data_dir, "--template", "chat"
    )
    assert no_template.exit_code == 2 and "chat template" in no_template.output

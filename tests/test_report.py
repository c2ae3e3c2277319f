"""The training report: rendered from a real two-step run, and its plots checked for their data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from PIL import Image
from typer.testing import CliRunner

from zerorl.cli.eval import report_command
from zerorl.config import load_config
from zerorl.eval.plots import HEIGHT, MOMENT_COLOR, WIDTH
from zerorl.eval.report import PLOTS, figures, load_run, write_report
from zerorl.launch import run_training


@pytest.fixture(scope="module")
def run_dir(tiny_model_dir, tiny_train_file, tmp_path_factory) -> Path:
    """Two real PPO steps on the tiny model, evaluated on a two-problem benchmark each step."""
    root = tmp_path_factory.mktemp("report")
    bench = root / "sums.json"
    items = [{"prompt": [{"from": "user", "value": f"{a} + 1?"}], "final_answer": str(a + 1)}
             for a in (1, 2)]  # fmt: skip
    bench.write_text(json.dumps(items))
    cfg = load_config(None, None, [
        f"model.path={tiny_model_dir}", "model.dtype=float32", "model.gradient_checkpointing=false",
        f"data.train_files=[{tiny_train_file}]", "data.max_prompt_tokens=700",
        "rollout.prompts_per_step=2", "rollout.samples_per_prompt=2", "rollout.max_new_tokens=16",
        "train.pack_length=1024", "train.steps=2", "reward.num_workers=1",
        f"eval.benchmarks=[{bench}]", "eval.samples=2", "eval.max_new_tokens=8", "eval.interval=1",
        "train.num_threads=1",  # a tiny model gains nothing from threads; a busy CPU stalls them
    ])  # fmt: skip
    threads = torch.get_num_threads()
    try:
        return run_training(cfg, root / "run", on_info=lambda s: None).path
    finally:
        torch.set_num_threads(threads)  # the setting is process-wide


def test_report_renders_from_a_real_run(run_dir):
    page = write_report(run_dir)
    html = page.read_text()
    assert html.count("data:image/png;base64,") == len(PLOTS)
    assert "reward/mean" in html and "eval/sums/avg@2" in html
    assert "pack_length: 1024" in html  # the config, as written by the run
    for name in PLOTS:
        with Image.open(page.parent / f"{name}.png") as image:
            assert image.size == (WIDTH, HEIGHT)
            image.load()  # decodes the whole PNG
    analysis = json.loads((page.parent / "analysis.json").read_text())
    assert [s["step"] for s in analysis["steps"]] == [1, 2]


def test_plots_show_the_run_metrics(run_dir):
    data = load_run(run_dir)
    metrics = [m for m in data.metrics if "reward/mean" in m]
    figs = figures(data)
    reward = figs["reward"].axes[0].lines[0]
    assert list(reward.get_xdata()) == [1, 2]
    assert list(reward.get_ydata()) == [m["reward/mean"] for m in metrics]
    length = figs["length"].axes[0].lines[0]
    assert list(length.get_ydata()) == [m["response_length/mean"] for m in metrics]
    evals = figs["eval"].axes[0].lines[0]
    assert list(evals.get_xdata()) == [0, 1, 2]  # before training, then every step
    assert list(evals.get_ydata()) == [100 * m["eval/sums/avg@2"] for m in data.metrics]
    bars = figs["time"].axes[0].containers
    stages = [k for k in metrics[0] if k.startswith("time/") and k != "time/step"]
    assert len(bars) == len(stages)
    first_stage = [rect.get_height() for rect in bars[0]]
    assert first_stage == pytest.approx([m[stages[0]] for m in metrics])


def test_report_command_on_a_fresh_app(run_dir, tmp_path):
    app = typer.Typer()
    app.command("report")(report_command)
    app.command("other")(lambda: None)
    result = CliRunner().invoke(app, ["report", str(run_dir), "--out", str(tmp_path), "--no-embed"])
    assert result.exit_code == 0, result.output
    assert '<img src="reward.png"' in (tmp_path / "index.html").read_text()
    assert CliRunner().invoke(app, ["report", str(tmp_path / "nothing")]).exit_code == 2


def test_step_moments_are_marked_on_the_curves(tmp_path):
    """A synthetic 120-step metrics.jsonl with a planted joint acceleration after step 80."""
    rng = np.random.default_rng(0)
    rows = []
    for step in range(1, 121):
        after = max(0, step - 80)
        rows.append({
            "step": step,
            "reward/mean": 0.2 + 0.001 * step + 0.02 * after + rng.normal(0, 0.02),
            "response_length/mean": 300 + 0.5 * step + 8 * after + rng.normal(0, 10),
            "reflection/correct_length_mean": math.nan if step < 3 else 400 + 5 * after,
            "time/generate": 1.0, "time/step": 1.5,
        })  # fmt: skip
    text = "".join(json.dumps(r).replace("NaN", "null") + "\n" for r in rows)
    (tmp_path / "metrics.jsonl").write_text(text)
    data = load_run(tmp_path)
    assert [abs(m.step - 80) <= 4 for m in data.moments] == [True]
    for name in ("reward", "length", "reflection"):
        marks = [
            line.get_xdata()[0]
            for line in figures(data)[name].axes[0].lines
            if line.get_color() == MOMENT_COLOR
        ]
        assert marks == [data.moments[0].step], name
    assert "step moments: step " in write_report(tmp_path).read_text()


def test_stage_logged_at_some_steps_only_stacks_as_zero_elsewhere():
    """``time/eval`` exists at the evaluated steps only: its bar is 0 at the others."""
    from zerorl.eval.plots import Series, time_figure

    fig = time_figure([Series("generate", [1, 2, 3], [1.0, 2.0, 3.0]), Series("eval", [3], [5.0])])
    generate, evaluate = fig.axes[0].containers
    assert [r.get_height() for r in generate] == [1.0, 2.0, 3.0]
    assert [r.get_height() for r in evaluate] == [0.0, 0.0, 5.0]
    assert [r.get_y() for r in evaluate] == [1.0, 2.0, 3.0]  # stacked on the stages below

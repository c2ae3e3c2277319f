"""Reflection statistics on a hand-written rollout file; step moments on synthetic series."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from zerorl.cli.eval import analyze_command
from zerorl.eval.analysis import (
    analyze,
    find_step_moments,
    reflection_metrics,
    reflects,
    slope_jumps,
)

ROLLOUTS = {
    1: [
        ("Let me think. Wait, that is wrong.", 1.0, 10),  # reflects, correct
        ("The answer is 5", 0.0, 4),
        ("HOWEVER, we must RECHECK", 0.0, 6),  # reflects, wrong
        ("retrying the sum", 1.0, 20),  # "retry" inside "retrying": reflects, correct
    ],
    2: [
        ("wait a moment", 1.0, 8),  # "wait" without the comma: no reflection
        ("Alternatively, x", 0.0, 12),  # reflects, wrong
    ],
}


def record(step: int, prompt_id: str, response: str, reward: float, length: int) -> dict:
    """One line of rollouts/step_N.jsonl, as the trainer writes it."""
    return {
        "step": step, "prompt_id": prompt_id, "question": "q", "response": response,
        "ground_truth": "1", "reward": reward, "finish_reason": "stop", "response_length": length,
    }  # fmt: skip


def write_run(root: Path) -> Path:
    (root / "rollouts").mkdir(parents=True)
    for step, rows in ROLLOUTS.items():
        lines = [
            json.dumps(record(step, f"p{i}", text, reward, length))
            for i, (text, reward, length) in enumerate(rows)
        ]
        (root / "rollouts" / f"step_{step}.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_reflection_patterns():
    assert reflects("... WAIT, no")
    assert reflects("let me recheck")
    assert not reflects("wait for it; however the")  # patterns carry their comma
    assert not reflects("")


def test_reflection_statistics_of_a_hand_written_run(tmp_path):
    result = analyze(write_run(tmp_path / "run"))
    one, two = result["steps"]
    assert one == {
        "step": 1, "samples": 4, "reward_mean": 0.5, "response_length_mean": 10.0,
        "reflection_frac": 0.75, "reflection_length_mean": 12.0,
        "correct_reflection_length": 15.0, "correct_reflection_count": 2,
    }  # fmt: skip
    assert two["reflection_frac"] == 0.5
    assert two["reflection_length_mean"] == 12.0
    assert two["correct_reflection_length"] is None  # no correct response reflects
    assert result["metrics"][0]["reflection/correct_length_mean"] == 15.0
    assert result["metrics"][1]["reflection/correct_length_mean"] is None
    assert result["step_moments"] == []  # two steps are far too few


def test_reflection_metrics_for_the_trainer():
    texts, rewards, lengths = zip(*ROLLOUTS[1], strict=True)
    m = reflection_metrics(list(texts), list(rewards), list(lengths))
    assert m["reflection/frac"] == 0.75
    assert m["reflection/correct_length_mean"] == 15.0
    assert math.isnan(reflection_metrics(["no"], [0.0], [3])["reflection/correct_length_mean"])


def test_analyze_command_accepts_files_and_writes_json_and_metrics(tmp_path):
    run = write_run(tmp_path / "run")
    app = typer.Typer()
    app.command("analyze")(analyze_command)
    app.command("other")(lambda: None)  # two commands: typer keeps the command name
    files = sorted(str(p) for p in (run / "rollouts").glob("*.jsonl"))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["analyze", *files, "--out", str(out)])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "analysis.json").read_text())
    assert [s["step"] for s in saved["steps"]] == [1, 2]
    lines = (out / "analysis_metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["reflection/frac"] == 0.75
    assert CliRunner().invoke(app, ["analyze", str(run)]).exit_code == 0
    assert (run / "analysis.json").exists()
    assert CliRunner().invoke(app, ["analyze", str(tmp_path / "none")]).exit_code == 2


def series(seed: int, n: int = 150, kink: int | None = None, length_kink: bool = True):
    """Reward and length with a slow trend and noise; after ``kink`` both slopes jump."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    after = np.clip(t - kink, 0, None) if kink is not None else np.zeros(n)
    reward = 0.2 + 0.001 * t + 0.02 * after + rng.normal(0, 0.03, n)
    length = 300 + 0.5 * t + 8.0 * after * length_kink + rng.normal(0, 15, n)
    return list(range(1, n + 1)), reward, length


def test_slope_jump_of_a_kink_is_the_slope_change():
    y = [0.0] * 20 + [2.0 * i for i in range(20)]  # y[20] = 0 is the last point of the flat
    jumps = slope_jumps(y, 5)
    assert jumps[20] == pytest.approx(2.0)  # the before-window ends and the after one starts
    assert np.nanmax(np.abs(jumps[:17])) == 0.0 and np.nanmax(np.abs(jumps[24:])) < 1e-9
    assert jumps[18] == pytest.approx(1.0)  # the tent rises linearly to the kink
    assert math.isnan(jumps[0]) and math.isnan(jumps[-1])


@pytest.mark.parametrize("seed", range(5))
def test_a_planted_step_moment_is_found_where_it_is(seed):
    steps, reward, length = series(seed, kink=90)
    moments = find_step_moments(steps, reward, length)
    assert len(moments) == 1
    assert abs(moments[0].step - 91) <= 4  # step numbers start at 1
    assert moments[0].reward_z > 4 and moments[0].length_z > 4


def test_no_moment_in_flat_noisy_runs_or_when_only_the_reward_jumps():
    for seed in range(20):
        assert find_step_moments(*series(seed)) == [], seed
    for seed in range(5):
        assert find_step_moments(*series(seed, kink=90, length_kink=False)) == [], seed
    flat = [0.5] * 100
    assert find_step_moments(list(range(100)), flat, flat) == []
    assert find_step_moments([1, 2, 3], [0, 1, 2], [0, 1, 2]) == []

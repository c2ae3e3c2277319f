"""``zerorl reproduce``: the statistics against closed forms, the plan, and a tiny end-to-end run
(two arms x two seeds on a tiny random model, in spawned processes)."""

from __future__ import annotations

import json
import math

import pytest

from zerorl.eval.ablations import (
    ABLATIONS,
    PPO,
    Ablation,
    Arm,
    Plan,
    contrast,
    curve_band,
    selected,
    summarize,
    t_interval,
    unique_arms,
    verdict,
)


def test_t_interval_closed_form():
    mean, low, high = t_interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, df=2) x sd 1 / sqrt(n)
    assert (mean, low, high) == pytest.approx((2.0, 2.0 - half, 2.0 + half))
    assert math.isnan(t_interval([0.5])[1])


def test_verdicts():
    assert verdict(0.01, 0.2) == "agree"
    assert verdict(-0.2, -0.01) == "disagree"
    assert verdict(-0.1, 0.1) == "inconclusive"
    assert verdict(math.nan, math.nan) == "inconclusive"


def test_contrast_pairs_by_seed():
    c = contrast({1: 0.8, 2: 0.7, 3: 0.9}, {1: 0.5, 2: 0.6, 4: 0.0}, "other")
    assert c.per_seed == pytest.approx([0.3, 0.1])
    assert c.effect == pytest.approx(0.2)


def test_summary_takes_the_strongest_other_arm():
    ablation = Ablation("x", "a beats b and c", (Arm("a"), Arm("b"), Arm("c")))
    finals = {
        "a": {1: 0.8, 2: 0.9, 3: 0.85},
        "b": {1: 0.2, 2: 0.3, 3: 0.25},
        "c": {1: 0.7, 2: 0.95, 3: 0.8},
    }
    entry = summarize(ablation, finals, quick=False)
    assert {"name", "paper", "arms", "seeds", "effect", "ci", "verdict"} <= entry.keys()
    assert entry["versus"] == "c" and entry["effect"] == pytest.approx(0.1 / 3)
    assert entry["verdict"] == "inconclusive"
    assert [c["verdict"] for c in entry["contrasts"]] == ["agree", "inconclusive"]
    json.dumps(entry, allow_nan=False)  # NaN-free: intervals of one seed are null


def test_plan_and_arms():
    arms = unique_arms(ABLATIONS)
    assert [a.name for a in arms].count("ppo") == 1 and len(arms) == 9
    plan = Plan(steps=40, prompts_per_step=16, base=("toy.world_seed=3",))
    quarter = next(a for a in arms if a.name == "quarter_data")
    runs = plan.overrides(quarter, 2)
    assert runs[0] == "toy.world_seed=3" and "train.seed=2" in runs
    assert "data.toy_train_size=640" in runs and runs[-1] == "data.toy_train_size=160"
    assert plan.overrides(PPO, 1)[-1] == "train.log_rollouts=false"
    assert [a.name for a in selected(["kl"])] == ["kl"]
    with pytest.raises(ValueError, match="unknown ablation"):
        selected(["kl", "nope"])


def test_curve_band_at_shared_steps():
    steps, mean, half = curve_band([{0: 0.0, 1: 1.0, 2: 2.0}, {0: 2.0, 1: 3.0}])
    assert steps == [0, 1] and mean == [1.0, 2.0]
    assert half[0] == pytest.approx(12.706204736174704 * math.sqrt(2) / math.sqrt(2))


def test_reproduce_end_to_end(tiny_model_dir, tiny_train_file, tmp_path):
    from zerorl.eval.reproduce import reproduce

    base = (f"model.path={tiny_model_dir}", "rollout.samples_per_prompt=2",
            "rollout.max_new_tokens=8", "eval.max_new_tokens=8", "data.max_prompt_tokens=700",
            "train.pack_length=1024")  # fmt: skip
    plan = Plan(steps=2, seeds=(1, 2), eval_interval=1, eval_size=4, prompts_per_step=2, base=base)
    ablations = selected(["gae_lambda"])
    summary = reproduce(plan, ablations, tmp_path / "out", on_info=lambda s: None)
    out = tmp_path / "out"
    assert sorted(summary["run_seconds"]) == [
        "lambda=0.95/s1",
        "lambda=0.95/s2",
        "ppo/s1",
        "ppo/s2",
    ]
    saved = json.loads((out / "summary.json").read_text())
    (entry,) = saved["ablations"]
    assert entry["name"] == "gae_lambda" and entry["seeds"] == [1, 2]
    assert entry["verdict"] in ("agree", "disagree", "inconclusive")
    for curve in ("reward", "length", "held_out"):
        assert (out / f"gae_lambda_{curve}.png").stat().st_size > 1000
    assert "data:image/png;base64" in (out / "index.html").read_text()
    metrics = (out / "runs/lambda=0.95/s2/metrics.jsonl").read_text().splitlines()
    assert json.loads(metrics[-1])["step"] == 2
    config = (out / "runs/lambda=0.95/s2/config.yaml").read_text()
    assert "lam: 0.95" in config and "seed: 2" in config
    # Used again, the folder's finished runs are kept and none is trained.
    again = reproduce(plan, ablations, out, on_info=lambda s: None)
    assert again["run_seconds"] == {}
    assert again["ablations"][0]["effect"] == entry["effect"]

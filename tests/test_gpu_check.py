"""The GPU check's dry run (what runs of it without CUDA), in the default suite."""

from __future__ import annotations

import json
import math

from benchmarks.gpu import PLANS, main


def test_gpu_check_dry_run_skips_cuda_parts_and_runs_the_rest(tmp_path):
    assert main(["--dry-run", "--out", str(tmp_path)]) == 0
    (report,) = tmp_path.glob("*-cpu-dry-run.json")
    payload = json.loads(report.read_text())
    assert payload["meta"]["dry_run"] and payload["meta"]["torch"]
    parts = {p["name"]: p for p in payload["parts"]}
    assert list(parts) == [p.name for p in PLANS]
    for plan in PLANS:
        status = parts[plan.name]["status"]
        assert status == ("skipped: no CUDA" if plan.cuda_only else "ok (CPU dry run: tiny shapes)")
    env = parts["environment"]["figures"]
    assert env["reward_pool"].startswith("verdicts ['1', '0']")
    cycle = parts["fsdp_colocation_0.5b"]["figures"]
    assert cycle["weights_equal_after_update"] and cycle["generated_rows"] == 64
    rollout = parts["rollout_0.5b"]["figures"]
    assert rollout["fast_tokens_per_s"] > 0 and rollout["hf_generate_tokens_per_s"] > 0
    assert rollout["mismatch/logprob_abs_max"] < 0.05  # bf16 engine vs bf16 forward, on CPU
    table = report.with_suffix(".md").read_text()
    assert all(f"| {plan.name} |" in table for plan in PLANS)


def test_learning_figures_summarise_a_run():
    from benchmarks.gpu_parts import _learning_figures

    def step(i: int) -> dict:
        return {"step": i, "reward/mean": i / 10, "response_length/mean": 10.0 + i,
                "time/step": 1.0 + i % 2, "time/generate": 0.5,
                "mismatch/logprob_abs_max": i / 100, "mismatch/kl": 0.0}  # fmt: skip

    metrics = [{"step": 0, "eval/toy/avg@2": 0.3}, *map(step, range(1, 7))]
    metrics[-1]["eval/toy/avg@2"] = 0.6
    f = _learning_figures(metrics, steps=10, finished=False)
    assert f["steps_done"] == 6 and f["stopped_by_budget"]
    # means of steps 1-3 and 4-6
    assert math.isclose(f["reward_first"], 0.2) and math.isclose(f["reward_last"], 0.5)
    assert f["eval_first"] == 0.3 and f["eval_last"] == 0.6
    assert f["seconds_per_step"] == 1.5 and f["mismatch/logprob_abs_max"] == 0.06

"""The GPU check's dry run (what runs of it without CUDA), in the default suite."""

from __future__ import annotations

import json

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

"""Chaos: a run SIGKILLed at random moments and resumed each time ends bit-identical to an
uninterrupted run (benchmarks/chaos.py; ``python -m benchmarks.chaos`` does more kills)."""

from __future__ import annotations

import pytest

from benchmarks.chaos import chaos

pytestmark = pytest.mark.timeout(600)


def test_random_kills_and_resumes_end_bit_identical(tiny_model_dir, tiny_train_file, tmp_path):
    args = [
        f"model.path={tiny_model_dir}", "model.dtype=float32",
        "model.gradient_checkpointing=false", f"data.train_files=[{tiny_train_file}]",
        "data.max_prompt_tokens=700", "rollout.prompts_per_step=2",
        "rollout.samples_per_prompt=2", "rollout.max_new_tokens=16", "train.pack_length=1024",
        "train.steps=4", "train.save_interval=1", "reward.num_workers=1",
        "optim.warmup_steps=1", "train.num_threads=1", "eval.benchmarks=[]",
    ]  # fmt: skip
    result = chaos(kills=3, per_trial=3, workdir=tmp_path, args=args, seed=1)
    assert result.resumes == result.kills == 3  # a run that ends before its kill starts another
    assert result.identical == result.runs >= 1

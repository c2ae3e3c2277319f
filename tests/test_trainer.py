"""The ORZ loop end to end on a tiny random model: what a run writes, resume, the stages."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from zerorl.config import ConfigError, load_config
from zerorl.core.packing import pack
from zerorl.launch import resume_training, run_training
from zerorl.models import ModelPathError
from zerorl.workers import OptimSpec, PolicyWorker, WorkerSpec

TIME_KEYS = ("time/", "throughput/")
REQUIRED = [
    "step",
    "reward/mean",
    "response_length/mean",
    "response_length/correct_mean",
    "finish/truncated_frac",
    "policy/loss",
    "policy/clip_frac",
    "policy/approx_kl",
    "policy/entropy",
    "critic/loss",
    "critic/explained_variance",
    "time/generate",
    "time/reward",
    "time/values",
    "time/advantages",
    "time/critic_update",
    "time/policy_update",
    "throughput/tokens_per_s",
]


def tiny_config(model_dir: Path, train_file: Path, *extra: str):
    return load_config(
        None,
        None,
        [
            f"model.path={model_dir}",
            "model.dtype=float32",
            "model.gradient_checkpointing=false",
            f"data.train_files=[{train_file}]",
            "data.max_prompt_tokens=700",
            "rollout.prompts_per_step=2",
            "rollout.samples_per_prompt=2",
            "rollout.max_new_tokens=16",
            "train.pack_length=1024",
            "train.steps=2",
            "reward.num_workers=1",
            "optim.warmup_steps=1",
            "train.num_threads=1",
            "optim.policy_lr=1e-3",
            "optim.critic_lr=1e-3",
            *extra,
        ],
    )


def comparable(metrics: list[dict]) -> list[dict]:
    return [{k: v for k, v in m.items() if not k.startswith(TIME_KEYS)} for m in metrics]


def test_two_steps_write_the_run_directory(tiny_model_dir, tiny_train_file, tmp_path):
    cfg = tiny_config(tiny_model_dir, tiny_train_file)
    run = run_training(cfg, tmp_path / "run", on_info=lambda s: None)
    metrics = run.read_metrics()
    assert [m["step"] for m in metrics] == [1, 2]
    for key in REQUIRED:
        assert key in metrics[0], key
    # Strictly on-policy: one optimiser step per generation, so the ratio is 1 and never clips.
    assert metrics[0]["policy/clip_frac"] == 0.0
    assert abs(metrics[0]["policy/approx_kl"]) < 1e-6
    assert (tmp_path / "run" / "config.yaml").exists()
    assert list((tmp_path / "run" / "tb").glob("events.*"))
    rollouts = [
        json.loads(x) for x in (tmp_path / "run/rollouts/step_1.jsonl").read_text().splitlines()
    ]
    assert len(rollouts) == 4
    assert set(rollouts[0]) >= {
        "question",
        "response",
        "ground_truth",
        "reward",
        "finish_reason",
        "response_length",
    }
    ckpt = run.latest_checkpoint()
    assert ckpt.name == "step_2"
    for f in [
        "policy/config.json",
        "policy/optimizer.pt",
        "critic/value_head.safetensors",
        "critic/optimizer.pt",
        "trainer_state.pt",
        "policy/tokenizer.json",
    ]:
        assert (ckpt / f).exists(), f
    state = torch.load(ckpt / "policy/optimizer.pt", weights_only=False)
    assert state["scheduler"]["last_epoch"] == 2  # one policy optimiser step per PPO step
    state = torch.load(ckpt / "critic/optimizer.pt", weights_only=False)
    # one critic step per mini-batch: min(12, samples) = 4 per PPO step (2 prompts x 2)
    assert state["scheduler"]["last_epoch"] == 8


def test_resume_is_bit_identical(tiny_model_dir, tiny_train_file, tmp_path):
    full = run_training(
        tiny_config(tiny_model_dir, tiny_train_file, "train.steps=4", "train.save_interval=2"),
        tmp_path / "full",
        on_info=lambda s: None,
    )
    part = run_training(
        tiny_config(tiny_model_dir, tiny_train_file, "train.steps=2", "train.save_interval=2"),
        tmp_path / "part",
        on_info=lambda s: None,
    )
    resumed = resume_training(part.path, ["train.steps=4"], on_info=lambda s: None)
    a, b = comparable(full.read_metrics()), comparable(resumed.read_metrics())
    assert [m["step"] for m in b] == [1, 2, 3, 4]
    assert a == b
    # The weights themselves, too.
    from safetensors.torch import load_file

    wa = load_file(full.latest_checkpoint() / "policy/model.safetensors")
    wb = load_file(resumed.latest_checkpoint() / "policy/model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize("engine", ["fast", "hf"])
def test_recomputed_old_logprobs_change_no_number(
    engine, tiny_model_dir, tiny_train_file, tmp_path
):
    """The skipped old-log-prob forward is a pure saving: a run that computes them in their own
    forward logs the same metrics (with either in-process engine)."""
    runs = []
    for recompute in (False, True):
        cfg = tiny_config(
            tiny_model_dir, tiny_train_file, f"rollout.engine={engine}",
            f"ppo.recompute_logprobs={str(recompute).lower()}",
        )  # fmt: skip
        metrics = run_training(cfg, tmp_path / f"{engine}{recompute}", on_info=lambda s: None)
        runs.append(comparable(metrics.read_metrics()))
    assert runs[0] == runs[1]
    assert all(m["response_length/mean"] > 0 for m in runs[0])


def test_policy_and_critic_learn_the_advantage_direction(tiny_model_dir, tiny_train_file, tmp_path):
    # With a constant reward of 0 everywhere the critic is pulled towards 0: its loss falls.
    cfg = tiny_config(tiny_model_dir, tiny_train_file, "train.steps=3", "optim.critic_lr=1e-2")
    run = run_training(cfg, tmp_path / "run", on_info=lambda s: None)
    losses = [m["critic/loss"] for m in run.read_metrics()]
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0]
    # The policy's weights moved from the base model's...
    trained = load_file(run.latest_checkpoint() / "policy" / "model.safetensors")
    base = load_file(tiny_model_dir / "model.safetensors")
    assert any(not torch.equal(trained[k], base[k]) for k in base)
    # ...and a policy step moves it the way of the advantages: the tokens of the sample with a
    # positive advantage become likelier, those of the sample with a negative one less likely.
    policy = PolicyWorker(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        WorkerSpec(OptimSpec(lr=1e-2, warmup_steps=0)),
    )
    batch = pack([[5, 6, 7], [5, 6, 7]], [[9, 10, 11, 12], [13, 14, 15, 16]], [1, 0], 32)
    sign = torch.zeros_like(batch.response_mask)
    for (start, end), i in zip(batch.sample_bounds[0], batch.sample_index[0]):
        sign[0, start:end] = 1.0 if i == 0 else -1.0
    advantages = sign * batch.response_mask
    before = policy.logprobs(batch).logprobs
    policy.train(batch, advantages, before)
    change = (policy.logprobs(batch).logprobs - before) * batch.response_mask
    assert change[advantages > 0].sum() > 0 > change[advantages < 0].sum()


def test_clear_errors(tiny_model_dir, tiny_train_file, tmp_path):
    with pytest.raises(ModelPathError, match="model path not found"):
        run_training(tiny_config(tmp_path / "nope", tiny_train_file), tmp_path / "a")
    with pytest.raises(ConfigError, match="pack_length"):
        tiny_config(tiny_model_dir, tiny_train_file, "train.pack_length=100")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([[{"from": "human", "value": "1+1?"}, {"from": "assistant"}]]))
    with pytest.raises(ValueError, match=r"bad\.json.*0|0.*bad\.json"):
        run_training(tiny_config(tiny_model_dir, bad), tmp_path / "b")
    run_training(tiny_config(tiny_model_dir, tiny_train_file, "train.steps=1"), tmp_path / "c")
    with pytest.raises(FileExistsError, match="--resume"):
        run_training(tiny_config(tiny_model_dir, tiny_train_file), tmp_path / "c")


@pytest.mark.parametrize("engine", ["fast", "hf"])
def test_engine_trainer_mismatch_is_zero_on_cpu_fp32(
    engine, tiny_model_dir, tiny_train_file, tmp_path
):
    """Every step logs the engine's log-probs against the policy's own forward: on CPU in fp32
    (same weights, same precision) they agree to float rounding, and truncated importance
    sampling then weights every token 1, changing no number of the update."""
    runs = []
    for cap in ("0", "2.0"):
        cfg = tiny_config(
            tiny_model_dir, tiny_train_file, f"rollout.engine={engine}", f"ppo.tis_cap={cap}"
        )
        metrics = run_training(cfg, tmp_path / f"{engine}{cap}", on_info=lambda s: None)
        runs.append(metrics.read_metrics())
    for m in runs[0]:
        assert m["mismatch/logprob_abs_max"] < 1e-4
        assert 0.0 <= m["mismatch/logprob_abs_mean"] <= m["mismatch/logprob_abs_max"]
        assert abs(m["mismatch/kl"]) < 1e-8
    plain, weighted = (comparable(r) for r in runs)
    for a, b in zip(plain, weighted):
        assert math.isclose(a["policy/loss"], b["policy/loss"], rel_tol=1e-4, abs_tol=1e-6)
        assert a["reward/mean"] == b["reward/mean"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_train_device_cuda_without_a_gpu_is_a_clear_error(
    tiny_model_dir, tiny_train_file, tmp_path
):
    cfg = tiny_config(tiny_model_dir, tiny_train_file, "train.device=cuda")
    with pytest.raises(ValueError, match="zerorl doctor"):
        run_training(cfg, tmp_path / "run", on_info=lambda s: None)

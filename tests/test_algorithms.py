"""The algorithm arms in the loop: critic-free estimators build no critic, dynamic sampling
fills the step with informative groups, the overlong penalty shapes the reward, clip-higher
reaches the loss."""

from __future__ import annotations

import pytest
import torch
from test_trainer import comparable, tiny_config

from zerorl.config import ConfigError
from zerorl.core.advantages import group_advantages
from zerorl.data.loaders import load_prompts
from zerorl.data.stream import PromptStream
from zerorl.launch import resume_training, run_training
from zerorl.reward.pool import RewardResult
from zerorl.roles import build_local_roles, policy_specs
from zerorl.rundir import RunDir
from zerorl.trainer import StageTimer, Trainer

quiet = {"on_info": lambda s: None}


@pytest.mark.parametrize("estimator", ["grpo", "rloo"])
def test_critic_free_runs_build_no_critic(estimator, tiny_model_dir, tiny_train_file, tmp_path):
    cfg = tiny_config(
        tiny_model_dir, tiny_train_file, f"algo.advantage={estimator}", "train.steps=2",
        "train.save_interval=1",
    )  # fmt: skip
    assert build_local_roles(cfg).critic is None
    run = run_training(cfg, tmp_path / "run", **quiet)
    metrics = run.read_metrics()
    assert [m["step"] for m in metrics] == [1, 2]
    for m in metrics:
        assert not [k for k in m if k.startswith("critic/")]
        assert "time/values" not in m and "time/critic_update" not in m
        assert "policy/loss" in m
    ckpt = run.latest_checkpoint()
    assert (ckpt / "policy" / "model.safetensors").exists()
    assert not (ckpt / "critic").exists()
    # resumes without a critic, and bit-identically
    part = run_training(
        tiny_config(tiny_model_dir, tiny_train_file, f"algo.advantage={estimator}",
                    "train.steps=1"),
        tmp_path / "part", **quiet,
    )  # fmt: skip
    resumed = resume_training(part.path, ["train.steps=2"], **quiet)
    assert comparable(resumed.read_metrics()) == comparable(metrics)
    with pytest.raises(ConfigError, match=r"algo\.advantage"):
        resume_training(part.path, ["train.steps=3", "algo.advantage=gae"], **quiet)


def test_kl_penalty_needs_gae(tiny_model_dir, tiny_train_file):
    with pytest.raises(ConfigError, match="kl_penalty_coef"):
        tiny_config(
            tiny_model_dir, tiny_train_file, "algo.advantage=grpo", "ppo.kl_penalty_coef=0.1"
        )
    tiny_config(tiny_model_dir, tiny_train_file, "algo.advantage=grpo", "ppo.kl_loss_coef=0.1")


class LengthReward:
    """A deterministic stand-in rule for the reward role: 1 for an even response length. The
    tiny random model never answers right, so the real reward would give every group one value."""

    def score(self, responses, truths, finished):
        scores = [float(len(r) % 2 == 0) for r in responses]
        n = len(scores)
        return RewardResult(scores, 0, 0, [None] * n, ["rule"] * n, 0.0)

    def close(self) -> None:
        pass


def trainer_with(cfg, tmp_path, reward=None) -> Trainer:
    roles = build_local_roles(cfg)
    if reward is not None:
        roles.reward.close()
        roles.reward = reward
    prompts = load_prompts(cfg.data.train_files[0])
    stream = PromptStream(prompts, cfg.train.seed, cfg.data.shuffle)
    return Trainer(cfg, roles, stream, {}, RunDir.create(tmp_path / "run", cfg, lambda s: None))


def test_dynamic_sampling_keeps_only_informative_groups(tiny_model_dir, tiny_train_file, tmp_path):
    cfg = tiny_config(
        tiny_model_dir, tiny_train_file, "algo.advantage=grpo", "algo.dynamic_sampling=true",
        "algo.max_draws=5", "rollout.prompts_per_step=3", "rollout.samples_per_prompt=3",
    )  # fmt: skip
    trainer = trainer_with(cfg, tmp_path, LengthReward())
    samples, stats = trainer.rollout(StageTimer())
    groups: dict[int, list[float]] = {}
    for s in samples:
        groups.setdefault(s.group, []).append(s.reward)
    assert 1 <= stats["data/draws"] <= 5
    assert len(groups) == stats["data/kept_groups"] <= 3
    assert all(len(set(rewards)) > 1 for rewards in groups.values())
    if stats["data/draws"] < 5:
        assert len(groups) == 3
    metrics, _ = trainer.train_step()
    assert metrics["data/draws"] >= 1 and "critic/loss" not in metrics


def test_without_dynamic_sampling_every_group_is_kept(tiny_model_dir, tiny_train_file, tmp_path):
    cfg = tiny_config(tiny_model_dir, tiny_train_file, "rollout.prompts_per_step=3")
    samples, stats = trainer_with(cfg, tmp_path, LengthReward()).rollout(StageTimer())
    assert sorted({s.group for s in samples}) == [0, 1, 2] and "data/draws" not in stats


def test_outcome_advantages_reach_every_response_token(tiny_model_dir, tiny_train_file, tmp_path):
    cfg = tiny_config(tiny_model_dir, tiny_train_file, "algo.advantage=rloo")
    trainer = trainer_with(cfg, tmp_path, LengthReward())
    samples, _ = trainer.rollout(StageTimer())
    batch = trainer.make_experience(samples)
    adv, _ = trainer.advantages(batch, samples, None, None, None)
    expected = group_advantages(
        torch.tensor([s.reward for s in samples]), torch.tensor([s.group for s in samples]), "rloo"
    )
    for b, (bounds, index) in enumerate(zip(batch.sample_bounds, batch.sample_index)):
        for (start, end), i in zip(bounds, index):
            response = batch.response_mask[b, start:end] > 0
            assert torch.all(adv[b, start:end][response] == expected[i])
            assert torch.all(adv[b, start:end][~response] == 0)


def test_overlong_penalty_shapes_the_reward(tiny_model_dir, tiny_train_file, tmp_path):
    cfg = tiny_config(tiny_model_dir, tiny_train_file, "algo.overlong_buffer=8")
    samples, stats = trainer_with(cfg, tmp_path, LengthReward()).rollout(StageTimer())
    for s in samples:
        n, base = s.response_length, float(len(s.completion.text) % 2 == 0)
        expected = base - min(max(n - (16 - 8), 0) / 8, 1.0)
        assert s.reward == pytest.approx(expected)
    assert stats["reward/overlong_penalty"] < 0  # the random model runs to the 16-token limit


def test_clip_higher_reaches_the_policy_loss(tiny_model_dir, tiny_train_file):
    cfg = tiny_config(tiny_model_dir, tiny_train_file, "ppo.clip_eps_high=0.28")
    assert policy_specs(cfg)[1].clip_eps_high == 0.28
    assert policy_specs(tiny_config(tiny_model_dir, tiny_train_file))[1].clip_eps_high is None

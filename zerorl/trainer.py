"""The Open-Reasoner-Zero PPO loop. One step, as in the recipe:

generate -> reward -> pack -> logprobs -> values -> advantages -> critic update -> policy update
-> sync weights. Each stage runs inside a timer whose name is its metric key (``time/<stage>``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch

from zerorl.config import Config
from zerorl.core.advantages import normalize, packed_gae
from zerorl.core.losses import (
    explained_variance,
    kl_to_reference,
    logprob_mismatch,
    truncated_is_weights,
)
from zerorl.core.packing import pack, packing_efficiency, scatter_responses
from zerorl.data.stream import PromptStream
from zerorl.data.template import STOP_STRINGS, render
from zerorl.eval.analysis import reflection_metrics
from zerorl.eval.runner import evaluate
from zerorl.roles import Roles
from zerorl.rollout.base import cap_total_length
from zerorl.rundir import RolloutRecord, RunDir
from zerorl.types import Completion, PackedBatch, Prompt, SamplingParams, ScoredSample


class StageTimer:
    """``with timer("generate"):`` records seconds under ``time/generate``."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.times[f"time/{name}"] = time.perf_counter() - start


def step_seed(seed: int, step: int, stream: int) -> int:
    """A per-step seed, so a resumed run draws exactly what an uninterrupted one would."""
    return (seed * 1_000_003 + step * 7919 + stream) % (2**31)


class Trainer:
    """Drives the four roles through ORZ steps and writes the run directory."""

    def __init__(
        self,
        cfg: Config,
        roles: Roles,
        stream: PromptStream,
        eval_sets: dict[str, list[Prompt]],
        run: RunDir,
        on_step: Callable[[int, dict[str, float]], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.roles = roles
        self.stream = stream
        self.eval_sets = eval_sets
        self.run = run
        self.on_step = on_step
        self.step = 0

    # ------------------------------------------------------------------ the loop

    def fit(self, total_steps: int) -> None:
        if self.step == 0 and self.eval_sets:
            self.run.log(0, self.evaluate())
        while self.step < total_steps:
            metrics, records = self.train_step()
            self.step += 1
            interval = self.cfg.eval.interval
            last = self.step == total_steps
            if self.eval_sets and (last or (interval and self.step % interval == 0)):
                metrics.update(self.evaluate())
            self.run.log(self.step, metrics)
            if self.cfg.train.log_rollouts:
                self.run.write_rollouts(self.step, records)
            if last or self.step % self.cfg.train.save_interval == 0:
                self.save()
            if self.on_step:
                self.on_step(self.step, metrics)

    def train_step(self) -> tuple[dict[str, float], list[RolloutRecord]]:
        cfg, roles, timer = self.cfg, self.roles, StageTimer()
        start = time.perf_counter()
        prompts = self.stream.next_batch(cfg.rollout.prompts_per_step)
        with timer("generate"):
            completions = roles.engine.generate(
                [render(p.question) for p in prompts], self.sampling_params()
            )
            completions = cap_total_length(
                completions, cfg.rollout.max_total_tokens, roles.tokenizer.decode
            )
        with timer("reward"):
            samples, reward_stats = self.score(prompts, completions)
        with timer("pack"):
            batch = self.make_experience(samples)
            engine_lp = self.engine_logprobs(samples, batch)
        with timer("logprobs"):
            # The engine's log-probs are always checked against the policy's own forward.
            forward_old = self.needs_old_logprobs or engine_lp is not None
            old = roles.policy.logprobs(batch).logprobs if forward_old else None
            ref = roles.reference.logprobs(batch).logprobs if roles.reference else None
        with timer("values"):
            values = roles.critic.values(batch)
        with timer("advantages"):
            advantages, returns = self.advantages(batch, values, old, ref, engine_lp)
        with timer("critic_update"):
            critic = roles.critic.train(
                batch, returns, values, step_seed(cfg.train.seed, self.step, 1)
            )
        with timer("policy_update"):
            policy_seed = step_seed(cfg.train.seed, self.step, 3)
            policy = roles.policy.train(batch, advantages, old, ref, seed=policy_seed)
        with timer("sync_weights"):
            roles.engine.load_weights(roles.policy.weights())
        timer.times["time/step"] = time.perf_counter() - start
        metrics = {
            **reward_stats,
            **self.sample_metrics(samples),
            **{f"policy/{k}": v for k, v in vars(policy).items()},
            **{f"critic/{k}": v for k, v in vars(critic).items()},
            "critic/explained_variance": explained_variance(values, returns, batch.response_mask),
            "pack/rows": batch.num_rows,
            "pack/efficiency": packing_efficiency(batch),
            "data/epoch": self.stream.state.epoch,
            **self.mismatch(batch, old, engine_lp),
            **timer.times,
            **self.throughput(samples, batch, timer.times, forward_old),
        }
        return metrics, self.rollout_records(samples)

    # ------------------------------------------------------------------ stages

    @property
    def needs_old_logprobs(self) -> bool:
        """Whether the ``logprobs`` stage runs a forward. With one policy step right after
        generation the update's own detached log-probs are the old ones (same numbers, one
        forward less); more steps, the KL penalty or ``ppo.recompute_logprobs`` need them. The
        forward also runs whenever the engine returns log-probs, to measure ``mismatch/*``."""
        p = self.cfg.ppo
        return p.policy_steps > 1 or p.kl_penalty_coef > 0 or p.recompute_logprobs

    def sampling_params(self) -> SamplingParams:
        r = self.cfg.rollout
        return SamplingParams(
            n=r.samples_per_prompt,
            temperature=r.temperature,
            top_p=r.top_p,
            max_new_tokens=r.max_new_tokens,
            stop=STOP_STRINGS,
            seed=step_seed(self.cfg.train.seed, self.step, 0),
        )

    def score(
        self, prompts: list[Prompt], completions: list[list[Completion]]
    ) -> tuple[list[ScoredSample], dict[str, float]]:
        """Binary rule reward per completion (0 if truncated); empty responses are dropped."""
        flat = [(p, c) for p, cs in zip(prompts, completions) for c in cs]
        result = self.roles.reward.score(
            [c.text for _, c in flat],
            [p.ground_truth for p, _ in flat],
            [c.finish_reason == "stop" for _, c in flat],
        )
        samples = [ScoredSample(p, c, s) for (p, c), s in zip(flat, result.scores) if c.token_ids]
        if not samples:
            raise RuntimeError("every response of this step is empty; nothing to train on")
        stats = {
            "reward/timeouts": float(result.timeouts),
            "reward/errors": float(result.errors),
            "data/dropped_empty": float(len(flat) - len(samples)),
        }
        return samples, stats

    def make_experience(self, samples: list[ScoredSample]) -> PackedBatch:
        return pack(
            [s.completion.prompt_ids for s in samples],
            [s.completion.token_ids for s in samples],
            [s.reward for s in samples],
            self.cfg.train.pack_length,
            pad_id=self.roles.tokenizer.pad_token_id or 0,
            packing=self.cfg.train.packing,
            seed=self.cfg.train.seed,
        )

    def engine_logprobs(
        self, samples: list[ScoredSample], batch: PackedBatch
    ) -> torch.Tensor | None:
        """The engine's log-probs of its sampled tokens laid out like ``batch`` (B, T); None when
        the engine returns none."""
        lps = [s.completion.logprobs for s in samples]
        if any(lp is None for lp in lps):
            return None
        return scatter_responses(lps, batch)  # type: ignore[arg-type]

    @staticmethod
    def mismatch(
        batch: PackedBatch, logprobs: torch.Tensor | None, engine_lp: torch.Tensor | None
    ) -> dict[str, float]:
        """``mismatch/*``: the engine's log-probs against the policy's forward on the same
        tokens (bf16 engine kernels vs the trainer's, stale engine weights, ...)."""
        if logprobs is None or engine_lp is None:
            return {}
        stats = logprob_mismatch(logprobs, engine_lp, batch.response_mask)
        return {f"mismatch/{k}": v for k, v in stats.items()}

    def advantages(
        self,
        batch: PackedBatch,
        values: torch.Tensor,
        logprobs: torch.Tensor | None,
        ref_logprobs: torch.Tensor | None,
        engine_lp: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Packed GAE on the token rewards (minus a KL penalty in that ablation), then whitening;
        with ``ppo.tis_cap`` the advantages carry the truncated importance weights."""
        p = self.cfg.ppo
        rewards = batch.token_rewards
        if logprobs is not None and ref_logprobs is not None and p.kl_penalty_coef > 0:
            rewards = rewards - p.kl_penalty_coef * kl_to_reference(logprobs, ref_logprobs, "k1")
        adv, returns = packed_gae(
            rewards, values, batch.response_mask, batch.segment_ids, p.gamma, p.lam
        )
        if p.normalize_advantages:
            adv = normalize(adv, batch.response_mask)
        if p.tis_cap > 0:
            if logprobs is None or engine_lp is None:
                raise RuntimeError("ppo.tis_cap needs an engine that returns log-probs")
            adv = adv * truncated_is_weights(logprobs, engine_lp, batch.response_mask, p.tis_cap)
        return adv, returns

    def evaluate(self) -> dict[str, float]:
        """``eval/<benchmark>/...`` metrics of the current policy, and ``time/eval``."""
        e, start = self.cfg.eval, time.perf_counter()
        params = SamplingParams(
            n=e.samples,
            temperature=e.temperature,
            top_p=e.top_p,
            max_new_tokens=e.max_new_tokens,
            stop=STOP_STRINGS,
            seed=step_seed(self.cfg.train.seed, self.step, 2),
        )
        metrics: dict[str, float] = {}
        for name, prompts in self.eval_sets.items():
            res = evaluate(name, prompts, self.roles.engine, self.roles.reward, params)
            metrics.update(res.metrics(prefix=f"eval/{name}/"))
        metrics["time/eval"] = time.perf_counter() - start
        return metrics

    # ------------------------------------------------------------------ metrics and records

    @staticmethod
    def sample_metrics(samples: list[ScoredSample]) -> dict[str, float]:
        lengths = np.array([s.response_length for s in samples], dtype=float)
        rewards = np.array([s.reward for s in samples])
        correct = lengths[rewards > 0]
        truncated = [s.completion.finish_reason == "length" for s in samples]
        return {
            "reward/mean": float(rewards.mean()),
            "response_length/mean": float(lengths.mean()),
            "response_length/max": float(lengths.max()),
            "response_length/correct_mean": float(correct.mean()) if len(correct) else float("nan"),
            "finish/truncated_frac": float(np.mean(truncated)),
            **reflection_metrics(
                [s.completion.text for s in samples], rewards.tolist(), lengths.tolist()
            ),
        }

    def throughput(
        self,
        samples: list[ScoredSample],
        batch: PackedBatch,
        times: dict[str, float],
        forward_old: bool,
    ) -> dict[str, float]:
        """Tokens per second: of the whole step, of generation (new tokens), and of the training
        passes (tokens times the passes over the batch, forward or forward+backward alike)."""
        new_tokens = sum(s.response_length for s in samples)
        packed_tokens = float(batch.attention_mask.sum())
        # Old log-probs (when run), values, the critic's mini-batches and the policy update
        # (one pass over the samples each).
        passes = float(forward_old) + 3.0
        train_time = sum(
            times[f"time/{k}"] for k in ("logprobs", "values", "critic_update", "policy_update")
        )
        return {
            "throughput/tokens_per_s": (packed_tokens + new_tokens) / times["time/step"],
            "throughput/generate_tokens_per_s": new_tokens / max(times["time/generate"], 1e-9),
            "throughput/train_tokens_per_s": passes * packed_tokens / max(train_time, 1e-9),
        }

    def rollout_records(self, samples: list[ScoredSample]) -> list[RolloutRecord]:
        return [
            RolloutRecord(
                step=self.step + 1,
                prompt_id=s.prompt.id,
                question=s.prompt.question,
                response=s.completion.text,
                ground_truth=s.prompt.ground_truth,
                reward=s.reward,
                finish_reason=s.completion.finish_reason,
                response_length=s.response_length,
            )
            for s in samples
        ]

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict:
        """Loop state; the workers save their own weights and optimiser states beside it."""
        return {
            "step": self.step,
            "stream": self.stream.state_dict(),
            "rng": {
                "python": random.getstate(),
                "numpy": np.random.get_state(),
                "torch": torch.get_rng_state(),
            },
        }

    def load_state_dict(self, state: dict) -> None:
        self.step = state["step"]
        self.stream.load_state_dict(state["stream"])
        random.setstate(state["rng"]["python"])
        np.random.set_state(state["rng"]["numpy"])
        torch.set_rng_state(state["rng"]["torch"])

    def save(self) -> None:
        r = self.roles
        keep = self.cfg.train.keep_checkpoints
        self.run.save_checkpoint(
            self.step, r.policy, r.critic, r.tokenizer, self.state_dict(), keep=keep
        )

"""The Open-Reasoner-Zero PPO loop. One step, as in the recipe:

generate -> reward -> pack -> logprobs -> values -> advantages -> critic update -> policy update
-> sync weights. Each stage runs inside a timer whose name is its metric key (``time/<stage>``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import torch

from zerorl.config import Config
from zerorl.core.advantages import group_advantages, normalize, overlong_penalty, packed_gae
from zerorl.core.losses import (
    explained_variance,
    kl_to_reference,
    logprob_mismatch,
    mismatch_from_sums,
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
from zerorl.workers import PolicyStats


class StageTimer:
    """``with timer("generate"):`` adds the seconds to ``time/generate`` (a stage that runs
    several times in a step, as generation with dynamic sampling, sums its runs)."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        key = f"time/{name}"
        self.times[key] = self.times.get(key, 0.0) + time.perf_counter() - start


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
        samples, rollout_stats = self.rollout(timer)  # times generate and reward
        with timer("pack"):
            batch = self.make_experience(samples)
            engine_lp = self.engine_logprobs(samples, batch)
        with timer("logprobs"):
            # TIS weighs the advantages by the engine's log-probs against these, before the update
            forward_old = self.needs_old_logprobs or (engine_lp is not None and cfg.ppo.tis_cap > 0)
            old = roles.policy.logprobs(batch).logprobs if forward_old else None
            ref = roles.reference.logprobs(batch).logprobs if roles.reference else None
        values = None
        if roles.critic is not None:
            with timer("values"):
                values = roles.critic.values(batch)
        with timer("advantages"):
            advantages, returns = self.advantages(batch, samples, values, old, ref, engine_lp)
        critic_metrics: dict[str, float] = {}
        if roles.critic is not None and values is not None:
            with timer("critic_update"):
                critic = roles.critic.train(
                    batch, returns, values, step_seed(cfg.train.seed, self.step, 1)
                )
            critic_metrics = {
                **{f"critic/{k}": v for k, v in vars(critic).items()},
                "critic/explained_variance": explained_variance(
                    values, returns, batch.response_mask
                ),
            }
        with timer("policy_update"):
            policy_seed = step_seed(cfg.train.seed, self.step, 3)
            # Without an old-log-prob forward the update's own forward meets the engine's.
            roll = engine_lp if old is None else None
            policy = roles.policy.train(batch, advantages, old, ref, policy_seed, roll)
        with timer("sync_weights"):
            roles.engine.load_weights(roles.policy.weights())
        timer.times["time/step"] = time.perf_counter() - start
        metrics = {
            **rollout_stats,
            **self.sample_metrics(samples),
            **{f"policy/{k}": v for k, v in vars(policy).items() if not k.startswith("mismatch")},
            **critic_metrics,
            "pack/rows": batch.num_rows,
            "pack/efficiency": packing_efficiency(batch),
            "data/epoch": self.stream.state.epoch,
            **self.mismatch(batch, old, engine_lp, policy),
            **timer.times,
            **self.throughput(samples, batch, timer.times, forward_old),
        }
        return metrics, self.rollout_records(samples)

    # ------------------------------------------------------------------ stages

    @property
    def needs_old_logprobs(self) -> bool:
        """Whether the ``logprobs`` stage runs a forward. With one policy step right after
        generation the update's own detached log-probs are the old ones (same numbers, one
        forward less); more steps, the KL penalty or ``ppo.recompute_logprobs`` need them. It also
        runs when ``ppo.tis_cap`` weighs the advantages by the engine's log-probs; otherwise the
        update's own forward measures ``mismatch/*``."""
        p = self.cfg.ppo
        return p.policy_steps > 1 or p.kl_penalty_coef > 0 or p.recompute_logprobs

    def sampling_params(self, draw: int = 0) -> SamplingParams:
        """The step's sampling; ``draw`` > 0 numbers dynamic sampling's extra rounds."""
        r = self.cfg.rollout
        return SamplingParams(
            n=r.samples_per_prompt,
            temperature=r.temperature,
            top_p=r.top_p,
            max_new_tokens=r.max_new_tokens,
            stop=STOP_STRINGS,
            seed=step_seed(self.cfg.train.seed, self.step, 10 + draw if draw else 0),
        )

    def rollout(self, timer: StageTimer) -> tuple[list[ScoredSample], dict[str, float]]:
        """Generate and score the step's samples, each tagged with its prompt's group.

        With ``algo.dynamic_sampling`` (DAPO), groups whose samples all got the same reward (no
        learning signal for a group baseline) are dropped and more prompts drawn, for at most
        ``algo.max_draws`` generation rounds; the step trains on the first
        ``rollout.prompts_per_step`` groups kept (fewer when the cap is reached; the last round's
        groups unfiltered when none was kept).
        """
        want, a = self.cfg.rollout.prompts_per_step, self.cfg.algo
        kept: list[list[ScoredSample]] = []
        totals = {"reward/timeouts": 0.0, "reward/errors": 0.0, "data/dropped_empty": 0.0}
        groups: list[list[ScoredSample]] = []
        draws = 0
        while draws < (a.max_draws if a.dynamic_sampling else 1) and len(kept) < want:
            prompts = self.stream.next_batch(want - len(kept))
            with timer("generate"):
                completions = self.roles.engine.generate(
                    [render(p.question) for p in prompts], self.sampling_params(draws)
                )
                completions = cap_total_length(
                    completions, self.cfg.rollout.max_total_tokens, self.roles.tokenizer.decode
                )
            with timer("reward"):
                groups, stats = self.score(prompts, completions)
            for key, value in stats.items():
                totals[key] = totals.get(key, 0.0) + value
            draws += 1
            kept += [g for g in groups if not a.dynamic_sampling or len({s.reward for s in g}) > 1]
        if "reward/overlong_penalty" in totals:  # a mean per round: the mean over rounds
            totals["reward/overlong_penalty"] /= draws
        if a.dynamic_sampling:
            totals["data/draws"] = float(draws)
            totals["data/kept_groups"] = float(min(len(kept), want))
            kept = kept[:want] or groups
        samples = []
        for group_id, group in enumerate(kept):
            samples += [replace(s, group=group_id) for s in group]
        if not samples:
            raise RuntimeError("every response of this step is empty; nothing to train on")
        return samples, totals

    def score(
        self, prompts: list[Prompt], completions: list[list[Completion]]
    ) -> tuple[list[list[ScoredSample]], dict[str, float]]:
        """Binary rule reward per completion (0 if truncated), plus DAPO's overlong penalty when
        ``algo.overlong_buffer`` is on; one list of samples per prompt. Empty responses are
        dropped (a prompt may be left with none)."""
        flat = [(p, c) for p, cs in zip(prompts, completions) for c in cs]
        result = self.roles.reward.score(
            [c.text for _, c in flat],
            [p.ground_truth for p, _ in flat],
            [c.finish_reason == "stop" for _, c in flat],
        )
        scores = torch.tensor(result.scores, dtype=torch.float64)
        stats = {
            "reward/timeouts": float(result.timeouts),
            "reward/errors": float(result.errors),
            "data/dropped_empty": float(sum(not c.token_ids for _, c in flat)),
        }
        buffer = self.cfg.algo.overlong_buffer
        if buffer:
            lengths = torch.tensor([len(c.token_ids) for _, c in flat])
            penalty = overlong_penalty(lengths, self.cfg.rollout.max_new_tokens, buffer)
            scores = scores + penalty
            stats["reward/overlong_penalty"] = float(penalty.mean())
        groups: list[list[ScoredSample]] = [[] for _ in prompts]
        k = 0
        for i, cs in enumerate(completions):
            for c in cs:
                if c.token_ids:
                    groups[i].append(ScoredSample(prompts[i], c, float(scores[k])))
                k += 1
        return [g for g in groups if g], stats

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
        batch: PackedBatch,
        logprobs: torch.Tensor | None,
        engine_lp: torch.Tensor | None,
        policy: PolicyStats,
    ) -> dict[str, float]:
        """``mismatch/*``: the engine's log-probs against the policy's forward on the same
        tokens (bf16 engine kernels vs the trainer's, stale engine weights, ...): the old-log-prob
        forward's when it ran, else the policy update's own (its ``mismatch_*`` sums)."""
        if engine_lp is None:
            return {}
        if logprobs is not None:
            stats = logprob_mismatch(logprobs, engine_lp, batch.response_mask)
        else:
            stats = mismatch_from_sums(policy.mismatch_sums())
        return {f"mismatch/{k}": v for k, v in stats.items()}

    def advantages(
        self,
        batch: PackedBatch,
        samples: list[ScoredSample],
        values: torch.Tensor | None,
        logprobs: torch.Tensor | None,
        ref_logprobs: torch.Tensor | None,
        engine_lp: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token advantages and returns (B, T).

        ``gae``: packed GAE on the token rewards (minus a KL penalty in that ablation) and the
        critic's values, then whitening. A critic-free estimator: ``group_advantages`` of the
        samples' rewards within their prompt's group, the same on every response token (no
        whitening beyond the estimator's own; returns are the advantages, unused). With
        ``ppo.tis_cap`` the advantages carry the truncated importance weights.
        """
        p, estimator = self.cfg.ppo, self.cfg.algo.advantage
        if estimator == "gae":
            assert values is not None, "gae needs the critic's values"
            rewards = batch.token_rewards
            if logprobs is not None and ref_logprobs is not None and p.kl_penalty_coef > 0:
                kl = kl_to_reference(logprobs, ref_logprobs, "k1")
                rewards = rewards - p.kl_penalty_coef * kl
            adv, returns = packed_gae(
                rewards, values, batch.response_mask, batch.segment_ids, p.gamma, p.lam
            )
            if p.normalize_advantages:
                adv = normalize(adv, batch.response_mask)
        else:
            per_sample = group_advantages(
                torch.tensor([s.reward for s in samples]),
                torch.tensor([s.group for s in samples]),
                estimator,
            )
            tokens = [[a] * s.response_length for a, s in zip(per_sample.tolist(), samples)]
            adv = returns = scatter_responses(tokens, batch)
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
        # Old log-probs (when run), values and the critic's mini-batches (with a critic), the
        # policy update: one pass over the samples each.
        passes = float(forward_old) + 1.0 + (2.0 if self.roles.critic is not None else 0.0)
        train_time = sum(
            times.get(f"time/{k}", 0.0)
            for k in ("logprobs", "values", "critic_update", "policy_update")
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
        )  # no critic/ when the estimator needs none

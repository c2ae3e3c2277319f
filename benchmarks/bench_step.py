"""A training step of zerorl vs TRL's GRPO trainer on the same model, prompts and samples.

    python -m benchmarks.bench_step [--quick]

Work per step, both sides: 16 toy prompts x 8 samples, up to 96 new tokens at temperature 1,
the rule reward, one policy update on all 128 samples; the model is the tiny-cpu preset's.
Apples to apples, zerorl's GRPO arm (``algo.advantage=grpo``: group-normalised advantages, no
critic, no reference model) does TRL GRPO's work; the target (>= 3x faster) is on that row.
zerorl's PPO rows run its ORZ step (``Trainer.train_step``: generate, reward, pack, values, GAE,
12 critic mini-batch steps, policy step, whose forward also gives the old log-probs), which
does more work. Both on the tiny-cpu preset (the embedded default's settings), with
``rollout.engine`` ``fast`` and ``hf``, and with ``fast`` plus segment attention.
TRL runs ``GRPOTrainer`` (no critic, ``beta=0``: no reference model; HF ``generate`` for
sampling). Steps interleave: each TRL step is followed by one step of each zerorl variant (a
``TrainerCallback``), so load hits all alike. The first step of each is a warm-up and is
dropped. TRL's ``PPOTrainer`` left TRL after 1.12; when the installed TRL has none, its row says
so.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchmarks.common import (
    BenchModel,
    Row,
    bench_model,
    median,
    section_main,
    set_threads,
)

PROMPTS, SAMPLES, MAX_NEW = 16, 8, 96  # the tiny-cpu preset's
TARGET = 3.0
STAGES = ("generate", "reward", "pack", "logprobs", "values", "critic_update", "policy_update")


def run(quick: bool = False, model: BenchModel | None = None) -> list[Row]:
    """Rows: seconds per step of zerorl (fast and HF engines) and TRL GRPO, and their ratios."""
    set_threads()
    bm = model or bench_model()
    steps = 2 if quick else 8  # the first is a warm-up; the median of the rest is kept
    with tempfile.TemporaryDirectory(prefix="zerorl-bench-step-") as tmp:
        variants = {
            GRPO: ("fast", False, "grpo"),
            GRPO_TUNED: ("fast", True, "grpo"),
            FAST: ("fast", False, "gae"),
            TUNED: ("fast", True, "gae"),
        }
        if not quick:
            variants["zerorl PPO (HFEngine)"] = ("hf", False, "gae")
        zerorl = {
            name: ZerorlSteps(bm, engine, tuned, Path(tmp) / str(k), advantage)
            for k, (name, (engine, tuned, advantage)) in enumerate(variants.items())
        }
        try:
            trl_times, trl_lengths = trl_grpo_steps(bm, steps, zerorl, Path(tmp) / "trl")
            trl_error = ""
        except Exception as err:  # TRL's API moves; report it in the table, keep zerorl's rows
            trl_times, trl_lengths, trl_error = [], [], f"{type(err).__name__}: {err}"[:200]
            for _ in range(steps):
                for z in zerorl.values():
                    z.step()
        rows = [_zerorl_row(name, z, trl_times) for name, z in zerorl.items()]
        for z in zerorl.values():
            z.close()
    trl_s = median(trl_times[1:]) if len(trl_times) > 1 else None
    note = trl_error or "no timed step"
    if trl_s is not None and len(trl_lengths) > 1:
        note = f"mean completion {median(trl_lengths[1:]):.0f} tokens (GRPO: no critic, no ref)"
    rows.append(Row("step", "TRL GRPOTrainer", trl_s, "s/step", note=note))
    rows.append(_trl_ppo_row())
    return rows


GRPO = "zerorl GRPO (FastEngine)"
GRPO_TUNED = "zerorl GRPO (FastEngine + segment attention)"
FAST = "zerorl PPO (FastEngine)"
TUNED = "zerorl PPO (FastEngine + segment attention)"


class ZerorlSteps:
    """A tiny-cpu Trainer on the bench model whose ``step`` runs and times one training step.

    ``tuned``: segment attention in the models (``benchmarks.segment_attention``);
    ``advantage``: ``gae`` (PPO with a critic, ORZ's step) or a critic-free estimator.
    """

    def __init__(
        self, bm: BenchModel, engine: str, tuned: bool, out: Path, advantage: str = "gae"
    ) -> None:
        from benchmarks.segment_attention import use_segment_attention
        from zerorl.config import load_config
        from zerorl.data.stream import PromptStream
        from zerorl.roles import build_local_roles
        from zerorl.rundir import RunDir
        from zerorl.trainer import Trainer

        overrides = [
            f"model.path={bm.path}", "train.num_threads=0", f"rollout.engine={engine}",
            f"algo.advantage={advantage}",
        ]  # fmt: skip
        cfg = load_config("tiny-cpu", overrides=overrides)
        self.roles = build_local_roles(cfg)
        if tuned:
            use_segment_attention(self.roles.policy.model)
            if self.roles.critic is not None:
                use_segment_attention(self.roles.critic.model.backbone)
        self.run = RunDir.create(out, cfg)
        stream = PromptStream(bm.problems, cfg.train.seed, cfg.data.shuffle)
        self.trainer = Trainer(cfg, self.roles, stream, {}, self.run)
        self.seconds: list[float] = []
        self.metrics: list[dict[str, float]] = []

    def step(self) -> None:
        start = time.perf_counter()
        metrics, _ = self.trainer.train_step()
        self.seconds.append(time.perf_counter() - start)
        self.trainer.step += 1
        self.metrics.append(metrics)

    def close(self) -> None:
        self.roles.close()
        self.run.close()


def _zerorl_row(name: str, z: ZerorlSteps, trl_times: list[float]) -> Row:
    seconds = median(z.seconds[1:])
    stages = {
        s: median([m[f"time/{s}"] for m in z.metrics[1:]])
        for s in STAGES
        if f"time/{s}" in z.metrics[-1]
    }
    length = median([m["response_length/mean"] for m in z.metrics[1:]])
    note = f"mean response {length:.0f} tokens; " + ", ".join(
        f"{s} {t:.2f}s" for s, t in stages.items()
    )
    row = Row("step", name, seconds, "s/step", note=note, extra={"stages": stages})
    if len(trl_times) > 1:
        row.baseline, row.ratio = "TRL GRPOTrainer", median(trl_times[1:]) / seconds
        if name == GRPO:  # the same work as TRL's step
            row.target, row.met = f">= {TARGET:.0f}x faster", row.ratio >= TARGET
    return row


def trl_grpo_steps(
    bm: BenchModel, steps: int, zerorl: dict[str, ZerorlSteps], out: Path
) -> tuple[list[float], list[float]]:
    """Seconds and mean completion lengths of ``steps`` GRPO steps; zerorl steps interleaved."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from zerorl.models import load_policy, load_tokenizer
    from zerorl.reward import score

    def reward(completions: list[str], ground_truth: list[str], **_: object) -> list[float]:
        return [score(c, g) for c, g in zip(completions, ground_truth)]

    class Interleave(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.start = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter() - self.start)
            for z in zerorl.values():
                z.step()

    n = PROMPTS * steps
    data = Dataset.from_dict(
        {"prompt": bm.prompts[:n], "ground_truth": [p.ground_truth for p in bm.problems[:n]]}
    )
    args = GRPOConfig(
        output_dir=str(out), per_device_train_batch_size=PROMPTS * SAMPLES,
        num_generations=SAMPLES, max_completion_length=MAX_NEW, temperature=1.0, top_p=1.0,
        top_k=0, beta=0.0, learning_rate=2e-4, use_cpu=True, bf16=False, max_steps=steps,
        logging_steps=1, report_to="none", save_strategy="no", seed=0, shuffle_dataset=False,
        disable_tqdm=True, dataloader_num_workers=0,
    )  # fmt: skip
    callback = Interleave()
    trainer = GRPOTrainer(
        model=load_policy(bm.path), reward_funcs=reward, args=args, train_dataset=data,
        processing_class=load_tokenizer(bm.path), callbacks=[callback],
    )  # fmt: skip
    trainer.train()
    lengths = [
        h["completions/mean_length"]
        for h in trainer.state.log_history
        if "completions/mean_length" in h
    ]
    return callback.times, lengths


def _trl_ppo_row() -> Row:
    import trl

    version = trl.__version__
    has = hasattr(trl, "PPOTrainer")
    note = (
        "present but not benchmarked (needs a reward model wrapper; see docs/performance.md)"
        if has
        else f"installed TRL {version} has no PPOTrainer (removed after TRL 1.12); not run"
    )
    return Row("step", "TRL PPOTrainer", None, "s/step", note=note)


if __name__ == "__main__":
    section_main(run, __doc__)

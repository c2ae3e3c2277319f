"""The parts of the GPU check (``python -m benchmarks.gpu``): each runs a zerorl code path that a
GPU user runs and returns its figures as a flat dict.

Every part takes a ``Ctx``: the device, whether this is the CPU dry run (then the shapes are tiny
and the figures only prove the code runs), and ``left()``, the seconds left of the part's own
budget, which loops check to stop early (reporting how far they got).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, Qwen2Config

GiB = 2**30

# Qwen2.5 base shapes (their config.json); weights are random, so no download is needed.
SHAPES = {
    "qwen2.5-0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, vocab_size=151936),
    "qwen2.5-1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                         num_attention_heads=12, num_key_value_heads=2, vocab_size=151936),
    "smoke": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, vocab_size=512),
}  # fmt: skip


class Skip(Exception):
    """A part that cannot run here; the message says why (it becomes the part's status)."""


@dataclass
class Ctx:
    device: str  # "cuda", or "cpu" in the dry run
    deadline: float  # time.perf_counter() value at which the part's budget is spent
    peak_tflops: float | None = None  # measured bf16 matmul peak (MFU denominator)

    @property
    def dry(self) -> bool:
        return self.device != "cuda"

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    @property
    def repeats(self) -> int:
        """Timed calls per figure (one in the dry run: there it only shows the code runs)."""
        return 1 if self.dry else 2


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def gib_allocated() -> float:
    return torch.cuda.memory_allocated() / GiB if torch.cuda.is_available() else 0.0


def model_config(shape: str) -> Qwen2Config:
    return Qwen2Config(
        **SHAPES[shape], max_position_embeddings=32768, rope_theta=1e6, rms_norm_eps=1e-6,
        tie_word_embeddings=True, eos_token_id=1, pad_token_id=0,
    )  # fmt: skip


def random_model(shape: str, dtype: torch.dtype, device: str) -> torch.nn.Module:
    """A Qwen2.5-shaped causal LM with random weights, built directly on ``device``."""
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(
            model_config(shape), dtype=dtype, attn_implementation="sdpa"
        )
    return model


def word_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    """A tokenizer with one word per id (``w<id>``), so random models get a full-size vocabulary."""
    vocab = {"<pad>": 0, "<eos>": 1, **{f"w{i}": i for i in range(2, vocab_size)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>")


def word_prompts(n: int, length: int, vocab_size: int, seed: int = 0) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, vocab_size, (n, length), generator=g)
    return [" ".join(f"w{i}" for i in row) for row in ids.tolist()]


def random_batch(rows: int, row_tokens: int, vocab_size: int, sample_tokens: int = 2048):
    """A ``PackedBatch`` of ``rows`` full rows: samples of a 256-token prompt and a response."""
    from zerorl.core.packing import pack

    n = rows * (row_tokens // sample_tokens)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(2, vocab_size, (n, sample_tokens), generator=g).tolist()
    prompt = min(256, sample_tokens // 2)
    batch = pack([x[:prompt] for x in ids], [x[prompt:] for x in ids], [1.0] * n, row_tokens)
    advantages = torch.randn(batch.input_ids.shape, generator=g) * batch.response_mask
    return batch, advantages


def timed(fn: Callable[[], Any], repeats: int, ctx: Ctx) -> list[float]:
    """Seconds of ``repeats`` calls after one warm-up, stopping early when the budget runs out."""
    fn()
    sync()
    times = []
    for _ in range(repeats):
        if times and ctx.left() < 2 * times[-1]:
            break
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return times


# ------------------------------------------------------------------------------ the parts


def matmul_peak(ctx: Ctx) -> dict[str, Any]:
    """bf16 (n x n) @ (n x n) TFLOP/s, mean of ten products after three warm-ups: the MFU base."""
    n = 512 if ctx.dry else 8192
    a = torch.randn(n, n, device=ctx.device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=ctx.device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync()
    start = time.perf_counter()
    for _ in range(10):
        a @ b
    sync()
    tflops = 10 * 2 * n**3 / (time.perf_counter() - start) / 1e12
    return {"size": n, "bf16_tflops": tflops}


def embedded_default(ctx: Ctx, dtype: str, steps: int) -> dict[str, Any]:
    """The tiny-cpu preset (the toy world, its carried or built base model) on ``ctx.device``
    through ``zerorl.launch.run_training``: learning figures, seconds per step, mismatch."""
    from zerorl.config import load_config
    from zerorl.launch import run_training
    from zerorl.toyworld import DEFAULT_SETTINGS, WORLD_SEED, cache_root

    if not (cache_root() / DEFAULT_SETTINGS.digest(WORLD_SEED) / "world.json").exists():
        raise Skip(f"no toy world in {cache_root()}: carry .gpu (scripts/gpu-wheels builds it)")
    cfg = load_config(
        "tiny-cpu", None,
        [f"train.steps={steps}", f"model.dtype={dtype}", f"train.device={ctx.device}",
         "eval.interval=0", "train.save_interval=1000000", "train.log_rollouts=false"],
    )  # fmt: skip

    class OverBudget(Exception):
        pass

    def guard(step: int, metrics: dict[str, float]) -> None:
        if ctx.left() < 2 * metrics["time/step"] + 10:  # keep time for the final evaluation
            raise OverBudget

    with tempfile.TemporaryDirectory() as tmp:
        try:
            run = run_training(cfg, Path(tmp) / "run", on_step=guard, on_info=lambda s: None)
        except OverBudget:
            run = None
        metrics = _read_metrics(Path(tmp) / "run")
    return _learning_figures(metrics, steps, finished=run is not None)


def _read_metrics(run_dir: Path) -> list[dict[str, float]]:
    import json

    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _learning_figures(metrics: list[dict], steps: int, finished: bool) -> dict[str, Any]:
    trained = [m for m in metrics if "reward/mean" in m]
    evals = [m for m in metrics if "eval/toy/avg@2" in m]
    if not trained:
        return {"steps_done": 0}
    k = max(1, min(3, len(trained) // 2))
    mean = lambda key, ms: statistics.fmean(m[key] for m in ms)  # noqa: E731
    out = {
        "steps_done": len(trained),
        "steps_planned": steps,
        "stopped_by_budget": not finished,
        "reward_first": mean("reward/mean", trained[:k]),
        "reward_last": mean("reward/mean", trained[-k:]),
        "response_length_first": mean("response_length/mean", trained[:k]),
        "response_length_last": mean("response_length/mean", trained[-k:]),
        "seconds_per_step": statistics.median(m["time/step"] for m in trained),
        "generate_seconds": statistics.median(m["time/generate"] for m in trained),
        "eval_first": evals[0]["eval/toy/avg@2"] if evals else None,
        "eval_last": evals[-1]["eval/toy/avg@2"] if len(evals) > 1 else None,
    }
    for key in ("mismatch/logprob_abs_mean", "mismatch/logprob_abs_max", "mismatch/kl"):
        if key in trained[-1]:
            out[key] = max(m[key] for m in trained) if "max" in key else mean(key, trained)
    return out


def rollout(ctx: Ctx, shape: str, batch: int = 256, new_tokens: int = 128) -> dict[str, Any]:
    """FastEngine vs Hugging Face ``generate``: new tokens/s at ``batch`` rows (``batch/8``
    prompts x 8 samples, exactly ``new_tokens`` each, T = 1), bf16; and the engine/trainer
    log-prob mismatch of FastEngine's bf16 samples against a bf16 training forward."""
    from benchmarks.bench_rollout import SAMPLES, hf_generate_call
    from zerorl.rollout.fast import FastEngine
    from zerorl.types import SamplingParams

    if ctx.dry:
        batch, new_tokens = 16, 8
    vocab = SHAPES[shape]["vocab_size"]
    model = random_model(shape, torch.bfloat16, ctx.device).eval()
    tok = word_tokenizer(vocab)
    prompts = word_prompts(batch // SAMPLES, 64, vocab)
    ids = [tok.encode(p, add_special_tokens=False) for p in prompts]
    params = SamplingParams(n=SAMPLES, max_new_tokens=new_tokens, seed=0)
    fast = FastEngine(model, tok, batch_size=batch, min_new_tokens=new_tokens)
    hf = hf_generate_call(model, tok, ids, None, new_tokens)
    out = {"shape": shape, "batch": batch, "new_tokens": new_tokens}
    fast_times = timed(lambda: fast.generate(prompts, params), ctx.repeats, ctx)
    out["fast_tokens_per_s"] = batch * new_tokens / statistics.median(fast_times)
    if ctx.left() > 3 * fast_times[-1]:
        hf_times = timed(hf, ctx.repeats, ctx)
        out["hf_generate_tokens_per_s"] = batch * new_tokens / statistics.median(hf_times)
        out["fast_vs_hf"] = out["fast_tokens_per_s"] / out["hf_generate_tokens_per_s"]
    out.update(_engine_mismatch(model, fast.generate(prompts[:4], params)))
    return out


def _engine_mismatch(model, completions) -> dict[str, Any]:
    """``core.losses.logprob_mismatch`` of the engine's log-probs against a training forward."""
    from zerorl.core.logprobs import token_logprobs
    from zerorl.core.losses import logprob_mismatch

    gaps: dict[str, list[float]] = {}
    with torch.no_grad():
        for c in (c for cs in completions for c in cs):
            ids = torch.tensor([c.prompt_ids + c.token_ids], device=model.device)
            lp = token_logprobs(model(ids).logits, ids)[:, len(c.prompt_ids) :].cpu()
            m = logprob_mismatch(lp, torch.tensor([c.logprobs]), torch.ones_like(lp))
            for k, v in m.items():
                gaps.setdefault(k, []).append(v)
    return {
        "mismatch/logprob_abs_mean": statistics.fmean(gaps["logprob_abs_mean"]),
        "mismatch/logprob_abs_max": max(gaps["logprob_abs_max"]),
        "mismatch/kl": statistics.fmean(gaps["kl"]),
    }


def policy_worker(model, micro_rows: int = 1):
    """The local backend's policy worker around ``model`` (AdamW, ORZ's learning rate)."""
    from zerorl.workers import OptimSpec, PolicyWorker, WorkerSpec

    device = str(next(model.parameters()).device.type)
    spec = WorkerSpec(OptimSpec(lr=1e-6, warmup_steps=0), micro_rows=micro_rows, device=device)
    return PolicyWorker(model, spec)


def train_throughput(ctx: Ctx, shape: str, checkpointing: bool) -> dict[str, Any]:
    """One PPO policy update (forward + backward over packed rows, AdamW step) of a bf16
    ``shape`` model: tokens/s, model-FLOPs utilisation against ``ctx.peak_tflops``, peak memory."""
    from benchmarks.bench_train import train_flops

    rows, row_tokens = (2, 256) if ctx.dry else (4, 8192)
    model = random_model(shape, torch.bfloat16, ctx.device)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    worker = policy_worker(model)
    batch, advantages = random_batch(rows, row_tokens, SHAPES[shape]["vocab_size"], row_tokens // 4)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    losses: list[float] = []
    times = timed(
        lambda: losses.append(worker.train(batch, advantages, None).loss), ctx.repeats, ctx
    )
    tokens = int(batch.attention_mask.sum())
    seconds = statistics.median(times)
    lengths = [e - s for row in batch.sample_bounds for s, e in row]
    out = {
        "shape": shape,
        "checkpointing": checkpointing,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "rows_x_tokens": f"{rows} x {row_tokens}",
        "tokens_per_s": tokens / seconds,
        "seconds_per_update": seconds,
        "loss_finite": all(torch.isfinite(torch.tensor(losses)).tolist()),
    }
    if ctx.peak_tflops:
        out["mfu"] = train_flops(model, lengths) / seconds / 1e12 / ctx.peak_tflops
    if torch.cuda.is_available():
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated() / GiB
    return out


def fsdp_colocation(ctx: Ctx, shape: str) -> dict[str, Any]:
    """One policy rank as the Ray backend builds it on a GPU (FSDP2 over nccl, bf16 mixed
    precision with fp32 master weights, activation checkpointing), through the two-phase
    colocation cycle: train -> offload -> weight update + generate -> reload -> train."""
    from zerorl.distributed import fsdp

    out: dict[str, Any] = {"shape": shape}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "policy"
        random_model(shape, torch.bfloat16, "cpu").save_pretrained(path)
        if ctx.device == "cuda":
            # One rank on this host: meet on loopback, whatever the host name resolves to.
            address = ("127.0.0.1", fsdp.free_address()[1])
            fsdp.init_world(0, 1, address, "cuda", timeout_s=300)
            out["backend"] = torch.distributed.get_backend()
        try:
            worker = _sharded_policy(str(path), ctx.device)
            out.update(_colocation_cycle(ctx, worker, shape))
        finally:
            if torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()
    return out


def _sharded_policy(path: str, device: str):
    from zerorl.distributed.sharded import load_policy_rank
    from zerorl.distributed.specs import ModelSpec
    from zerorl.workers import OptimSpec, PolicyWorker, WorkerSpec

    model = ModelSpec(path, "bfloat16", "sdpa", gradient_checkpointing=True)
    spec = WorkerSpec(OptimSpec(lr=1e-6, warmup_steps=0), world=1, device=device)
    return PolicyWorker(load_policy_rank(model, 0, 1, device), spec)


def _colocation_cycle(ctx: Ctx, worker, shape: str) -> dict[str, Any]:
    from zerorl.rollout.fast import FastEngine
    from zerorl.types import SamplingParams

    vocab = SHAPES[shape]["vocab_size"]
    rows, row_tokens = (2, 256) if ctx.dry else (2, 8192)
    batch, advantages = random_batch(rows, row_tokens, vocab, row_tokens // 4)
    from torch.distributed.fsdp import FSDPModule

    out: dict[str, Any] = {
        "fsdp2": isinstance(worker.model, FSDPModule),
        "master_dtype": str(next(worker.model.parameters()).dtype),
    }
    start = time.perf_counter()
    out["loss_1"] = worker.train(batch, advantages, None).loss
    sync()
    out["train_tokens_per_s"] = int(batch.attention_mask.sum()) / (time.perf_counter() - start)
    out["gib_after_train"] = gib_allocated()
    start = time.perf_counter()
    state = worker.full_state_dict()  # gathered while the ranks hold the GPU, as the Ray backend
    out["gather_seconds"] = time.perf_counter() - start
    worker.offload()
    out["gib_after_offload"] = gib_allocated()
    engine_model = random_model(shape, torch.bfloat16, ctx.device).eval()
    engine = FastEngine(engine_model, word_tokenizer(vocab), batch_size=64)
    start = time.perf_counter()
    engine.load_weights(state)  # the policy-to-engine update, as RolloutActor does it
    sync()
    out["weight_update_seconds"] = time.perf_counter() - start
    name = "model.layers.0.mlp.down_proj.weight"
    got = engine_model.state_dict()[name].float().cpu()
    out["weights_equal_after_update"] = bool(
        torch.equal(got, state[name].to(torch.bfloat16).float())
    )
    params = SamplingParams(n=8, max_new_tokens=8 if ctx.dry else 64, seed=0)
    completions = engine.generate(word_prompts(8, 64, vocab), params)
    out["generated_rows"] = sum(len(cs) for cs in completions)
    out["gib_while_generating"] = gib_allocated()
    del engine, engine_model, state
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    worker.reload()
    out["gib_after_reload"] = gib_allocated()
    out["loss_2"] = worker.train(batch, advantages, None).loss
    return out

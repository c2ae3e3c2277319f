"""Training throughput: policy forward+backward on packed rows vs padded batches, vs matmul peak.

    python -m benchmarks.bench_train [--quick]

Data: one tiny-cpu rollout of the toy model (16 prompts x 8 samples, up to 256 new tokens, stop
strings), so lengths are real. Each contender is one ``PolicyWorker.train`` call over all samples
(forward, log-probs, PPO loss, backward, clip, AdamW step), alternating side by side with a fixed
batch of 2048^2 fp32 matmuls that measures the machine's peak under the same load:
- ``packed``: ``zerorl.core.packing.pack`` rows of 2048 tokens, one row per micro-batch;
- ``256-token rows (tiny-cpu)``: what the tiny-cpu preset trains on (``train.pack_length: 256``);
- ``padded``: one sample per row, right-padded, micro-batches of about the same token grid;
- ``packed + segment attention``: packed, with ``benchmarks.segment_attention`` (attention per
  sample instead of a dense block-diagonal mask);
- ``... + balanced rows``: the same number of rows, filled about equally (``balanced_length``);
- ``packed, 512-token rows + segment attention``: the suggested ``train.pack_length: 512``;
- ``..., 2 single-core threads``: the same rows split over two Python threads with one torch
  thread each, gradients summed in a fixed order (``_threaded_train_call``).
Achieved GFLOP/s counts useful work only: 6 x matmul parameters x real tokens plus causal
attention within each sample (3 x 2 x heads x head_dim x L(L+1) per layer); padding and
masked-out attention blocks count as waste.
"""

from __future__ import annotations

import copy
import time
from concurrent.futures import ThreadPoolExecutor

import torch

from benchmarks.common import (
    BenchModel,
    Row,
    bench_model,
    median,
    section_main,
    set_threads,
    side_by_side,
)

PACK_LENGTH = 2048
TARGET = 0.60
PEAK_SIZE = 2048


def run(quick: bool = False, model: BenchModel | None = None) -> list[Row]:
    """Rows: tokens/s and GFLOP/s per layout, the peak, and packing efficiency."""
    from benchmarks.segment_attention import use_segment_attention
    from zerorl.core.packing import pack, packing_efficiency
    from zerorl.models import load_policy, load_tokenizer

    set_threads()
    bm = model or bench_model()
    policy, tok = load_policy(bm.path), load_tokenizer(bm.path)
    prompts, responses = rollout_samples(policy, tok, bm.prompts[:16])
    rewards = [float(i % 2) for i in range(len(prompts))]
    pad = tok.pad_token_id or 0
    packed = pack(prompts, responses, rewards, PACK_LENGTH, pad_id=pad)
    balanced = pack(prompts, responses, rewards, balanced_length(prompts, responses), pad_id=pad)
    short = pack(prompts, responses, rewards, SHORT_ROWS, pad_id=pad)
    preset = pack(prompts, responses, rewards, PRESET_ROWS, pad_id=pad)
    padded = padded_batch(prompts, responses, rewards, pad)
    segmented = use_segment_attention(copy.deepcopy(policy))
    contenders = {
        "padded": _train_call(policy, padded, max(1, PACK_LENGTH // padded.input_ids.shape[1])),
        "packed": _train_call(policy, packed, 1),
        SEG: _train_call(segmented, packed, 1),
        BEST: _train_call(segmented, balanced, 1),
        SHORT: _train_call(segmented, short, 1),
        THREADED: _threaded_train_call(segmented, short),
        PRESET: _train_call(policy, preset, 1),
        "matmul peak": _peak_call(),
    }
    times = side_by_side(contenders, repeats=2 if quick else 4, warmup=1)
    peak = _PEAK_FLOPS / median(times.pop("matmul peak")) / 1e9
    n_tokens = int(packed.attention_mask.sum())
    useful = train_flops(policy, [len(p) + len(r) for p, r in zip(prompts, responses)])
    efficiency = {k: packing_efficiency(b) for k, b in [("packed", packed), ("balanced", balanced),
                                                         ("padded", padded)]}  # fmt: skip
    return _rows(times, peak, n_tokens, useful, efficiency)


SEG = "packed + segment attn"
BEST = "packed + segment attn + balanced rows"
SHORT_ROWS = 512
SHORT = f"{SHORT_ROWS}-token rows + segment attn"
THREADED = f"{SHORT_ROWS}-token rows + segment attn, 2 threads"
PRESET_ROWS = 256
PRESET = f"{PRESET_ROWS}-token rows (tiny-cpu preset, as wired)"


def _rows(times, peak, n_tokens, useful, efficiency: dict[str, float]) -> list[Row]:
    sec = "training"
    rate = {name: n_tokens / median(ts) for name, ts in times.items()}
    gflops = {name: useful / median(ts) / 1e9 for name, ts in times.items()}
    rows = [
        Row(sec, name, rate[name], "tok/s fwd+bwd", extra={"seconds": times[name]})
        for name in times
    ]
    for row, name, base in [(rows[1], "packed", "padded"), (rows[2], SEG, "packed"),
                            (rows[3], BEST, "packed"), (rows[4], SHORT, "packed"),
                            (rows[5], THREADED, SHORT), (rows[6], PRESET, "packed")]:  # fmt: skip
        row.baseline, row.ratio = base, rate[name] / rate[base]
    rows[1].note = "transformers' dense block-diagonal mask over 2048-token rows"
    rows.append(Row(sec, "matmul peak (fp32, 2048^2)", peak, "GFLOP/s"))
    for name in ("packed", BEST, SHORT, THREADED, PRESET):
        frac = gflops[name] / peak
        rows.append(
            Row(sec, f"{name}: useful", gflops[name], "GFLOP/s", "matmul peak", frac,
                f">= {TARGET:.0%} of peak", frac >= TARGET)
        )  # fmt: skip
    for name in ("packed", "balanced"):
        rows.append(
            Row(sec, f"packing efficiency, {name} rows", efficiency[name], "non-pad share",
                "padded batches", efficiency[name] / efficiency["padded"],
                note=f"padded batches: {efficiency['padded']:.2f}" if name == "packed" else "")
        )  # fmt: skip
    return rows


def balanced_length(prompts: list[list[int]], responses: list[list[int]]) -> int:
    """A row length that packs the samples into as few rows as ``PACK_LENGTH`` needs, but with
    those rows about equally full (``pack`` trims every row to the longest one)."""
    lengths = [len(p) + len(r) for p, r in zip(prompts, responses)]
    rows = -(-sum(lengths) // PACK_LENGTH)
    return max(max(lengths), -(-sum(lengths) // rows) + max(lengths) // 2)


def rollout_samples(policy, tok, prompts: list[str]) -> tuple[list[list[int]], list[list[int]]]:
    """Prompt and response ids of one tiny-cpu-like rollout (8 samples per prompt)."""
    from zerorl.data.template import STOP_STRINGS
    from zerorl.rollout.fast import FastEngine
    from zerorl.types import SamplingParams

    params = SamplingParams(n=8, max_new_tokens=256, stop=STOP_STRINGS, seed=0)
    out = FastEngine(policy, tok, 256).generate(prompts, params)
    kept = [c for cs in out for c in cs if c.token_ids]
    return [c.prompt_ids for c in kept], [c.token_ids for c in kept]


def padded_batch(prompts, responses, rewards, pad_id: int):
    """One sample per row, right-padded to the longest: the layout without packing."""
    from zerorl.core.packing import pack

    width = max(len(p) + len(r) for p, r in zip(prompts, responses))
    rows = [pack([p], [r], [w], width, pad_id) for p, r, w in zip(prompts, responses, rewards)]
    grow = lambda x: torch.nn.functional.pad(x, (0, width - x.shape[1]))  # noqa: E731
    fields = ("input_ids", "position_ids", "attention_mask", "segment_ids", "response_mask")
    merged = {f: torch.cat([grow(getattr(b, f)) for b in rows]) for f in fields}
    merged["token_rewards"] = torch.cat([grow(b.token_rewards) for b in rows])
    # The pad tail's position ids continue the sample's (no fake sample starting at 0).
    merged["position_ids"] = torch.arange(width).expand(len(rows), width).clone()
    return type(rows[0])(
        **merged,
        sample_bounds=[b.sample_bounds[0] for b in rows],
        sample_index=[[i] for i in range(len(rows))],
    )


def _train_call(policy, batch, micro_rows: int):
    from zerorl.workers import OptimSpec, PolicyWorker, WorkerSpec

    spec = WorkerSpec(OptimSpec(lr=1e-9, warmup_steps=0), micro_rows=micro_rows)
    worker = PolicyWorker(policy, spec)
    adv = torch.randn(batch.input_ids.shape, generator=torch.Generator().manual_seed(0))
    old = torch.full(batch.input_ids.shape, -2.0)
    return lambda: worker.train(batch, adv * batch.response_mask, old)


def _threaded_train_call(policy, batch, workers: int = 2):
    """``PolicyWorker.train``'s work (row-mean PPO loss, clip, AdamW step) with the rows split
    over ``workers`` Python threads, each on one core (torch threads = 1), as ``FastEngine`` does
    for decoding. Each thread returns its gradients (``torch.autograd.grad``, nothing accumulated
    concurrently) and they are summed in thread order, so the result is deterministic.
    The proposed change to ``zerorl.workers``; see docs/performance.md."""
    from zerorl.core.logprobs import token_logprobs
    from zerorl.core.losses import policy_loss
    from zerorl.workers import OptimSpec, make_optimizer

    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer, _ = make_optimizer(params, OptimSpec(lr=1e-9, warmup_steps=0))
    adv = torch.randn(batch.input_ids.shape, generator=torch.Generator().manual_seed(0))
    adv, old = adv * batch.response_mask, torch.full(batch.input_ids.shape, -2.0)
    shards = [list(range(batch.num_rows))[w::workers] for w in range(workers)]

    def grads(rows: list[int]) -> list[torch.Tensor]:
        sub = batch.rows(rows)
        logits = policy(input_ids=sub.input_ids, position_ids=sub.position_ids, use_cache=False)
        lp = token_logprobs(logits.logits, sub.input_ids)
        loss, _ = policy_loss(lp, old[rows], adv[rows], sub.response_mask, 0.2, "row-mean")
        return list(torch.autograd.grad(loss * len(rows) / batch.num_rows, params))

    def call() -> None:
        policy.train()
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(workers) as pool:
                parts = list(pool.map(grads, shards))
        finally:
            torch.set_num_threads(threads)
        for p, *g in zip(params, *parts):
            p.grad = torch.stack(g).sum(0)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return call


_PEAK_REPS = 8
_PEAK_FLOPS = _PEAK_REPS * 2 * PEAK_SIZE**3


def _peak_call():
    a, b = torch.randn(PEAK_SIZE, PEAK_SIZE), torch.randn(PEAK_SIZE, PEAK_SIZE)
    out = torch.empty(PEAK_SIZE, PEAK_SIZE)

    def go() -> float:
        best = float("inf")  # the fastest product of the batch: the peak, not the mean
        for _ in range(_PEAK_REPS):
            start = time.perf_counter()
            torch.mm(a, b, out=out)
            best = min(best, time.perf_counter() - start)
        return best * _PEAK_REPS

    return go


def train_flops(policy, lengths: list[int]) -> float:
    """Useful FLOPs of one forward+backward over samples of ``lengths`` (3x the forward)."""
    cfg = policy.config
    matmul_params = sum(
        m.weight.numel() for m in policy.modules() if isinstance(m, torch.nn.Linear)
    )
    heads_dim = cfg.num_attention_heads * (
        getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    )
    attention = cfg.num_hidden_layers * sum(2 * heads_dim * n * (n + 1) for n in lengths)
    return 3 * (2 * matmul_params * sum(lengths) + attention)


if __name__ == "__main__":
    section_main(run, __doc__)

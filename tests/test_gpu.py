"""The GPU paths on a CUDA device (``pytest -m gpu``; skipped without one): engines, the local
training loop, FSDP2 over nccl with bf16 mixed precision and checkpointing, and the colocation
cycle train -> offload -> weight update + generate -> reload, freeing memory."""

from __future__ import annotations

import math
import time

import pytest
import torch
from test_trainer import tiny_config

from benchmarks import gpu_parts
from zerorl.core.logprobs import token_logprobs
from zerorl.launch import run_training
from zerorl.models import load_policy, load_tokenizer
from zerorl.rollout.fast import FastEngine
from zerorl.rollout.hf import HFEngine
from zerorl.types import SamplingParams

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def ctx(seconds: float = 300) -> gpu_parts.Ctx:
    return gpu_parts.Ctx("cuda", time.perf_counter() + seconds, peak_tflops=None)


@pytest.mark.parametrize("engine_class", [FastEngine, HFEngine])
def test_engines_on_cuda_return_the_forward_logprobs(engine_class, tiny_model_dir):
    model = load_policy(str(tiny_model_dir)).to("cuda")
    engine = engine_class(model, load_tokenizer(str(tiny_model_dir)), batch_size=8)
    out = engine.generate(["abc", "x"], SamplingParams(n=4, max_new_tokens=16, seed=0))
    with torch.no_grad():
        for c in (c for cs in out for c in cs):
            ids = torch.tensor([c.prompt_ids + c.token_ids], device="cuda")
            ref = token_logprobs(model(ids).logits, ids)[0, len(c.prompt_ids) :].cpu()
            assert torch.allclose(torch.tensor(c.logprobs), ref, atol=1e-3)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_local_training_loop_on_cuda(dtype, tiny_model_dir, tiny_train_file, tmp_path):
    cfg = tiny_config(
        tiny_model_dir, tiny_train_file, "train.device=cuda", f"model.dtype={dtype}",
        "rollout.engine=fast",
    )  # fmt: skip
    metrics = run_training(cfg, tmp_path / "run", on_info=lambda s: None).read_metrics()
    assert [m["step"] for m in metrics] == [1, 2]
    for m in metrics:
        assert math.isfinite(m["policy/loss"]) and math.isfinite(m["critic/loss"])
        bound = 1e-3 if dtype == "float32" else 0.5  # engine and trainer differ in bf16 kernels
        assert m["mismatch/logprob_abs_mean"] < bound


def test_packed_update_with_checkpointing_on_cuda():
    figures = gpu_parts.train_throughput(ctx(), "smoke", checkpointing=True)
    assert figures["loss_finite"] and figures["peak_memory_gib"] > 0


def test_fsdp2_rank_over_nccl_through_the_colocation_cycle():
    """One FSDP2 rank (nccl, bf16 compute on fp32 master weights, checkpointing) trains, frees
    the GPU for the engine, hands it its weights, and takes the GPU back to train again."""
    f = gpu_parts.fsdp_colocation(ctx(), "qwen2.5-0.5b")
    assert f["backend"] == "nccl" and f["fsdp2"] and f["master_dtype"] == "torch.float32"
    assert math.isfinite(f["loss_1"]) and math.isfinite(f["loss_2"])
    assert f["gib_after_offload"] < 0.1 * f["gib_after_train"]
    assert f["gib_after_reload"] > 0.9 * f["gib_after_train"]
    assert f["weights_equal_after_update"] and f["generated_rows"] == 64

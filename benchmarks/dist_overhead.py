"""Seconds per step of the Ray backend against the local one, side by side (not a test).

    python -m benchmarks.dist_overhead                      # the tiny random model of the tests
    python -m benchmarks.dist_overhead --preset tiny-cpu    # the embedded toy world

Runs the same config for ``--steps`` steps on each backend (Ray: a local Ray instance with
``--cpus`` CPUs, one worker per role, colocated phases), then prints the start-up time and the
median of each stage timer over the steps after the first.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import ray

import zerorl.launch as launch
from zerorl.config import DistConfig, load_config
from zerorl.distributed.builder import PACKAGE_ROOT

TESTS = Path(__file__).resolve().parents[1] / "tests"


def tiny_overrides(root: Path) -> list[str]:
    sys.path.insert(0, str(TESTS))  # the tests' tiny model builder
    from conftest import build_tiny_model

    model = build_tiny_model(Path(tempfile.mkdtemp(dir=root)))
    data = root / "train.json"
    pairs = [(i * 7 % 90 + 10, i * 13 % 90 + 10) for i in range(32)]
    data.write_text(json.dumps([
        [{"from": "human", "value": f"What is {a} + {b}?"},
         {"from": "assistant", "ground_truth": {"value": str(a + b)}}] for a, b in pairs
    ]))  # fmt: skip
    return [
        f"model.path={model}", "model.dtype=float32", "model.gradient_checkpointing=false",
        f"data.train_files=[{data}]", "data.max_prompt_tokens=700",
        "rollout.prompts_per_step=2", "rollout.samples_per_prompt=2",
        "rollout.max_new_tokens=16", "train.pack_length=1024", "reward.num_workers=1",
        "optim.warmup_steps=1",
    ]  # fmt: skip


def timed_run(preset: str | None, overrides: list[str], backend: str, root: Path, cpus: int):
    cfg = load_config(preset, None, [*overrides, f"train.backend={backend}", "eval.benchmarks=[]"])
    cfg.dist = DistConfig(cpus_per_slot=1.0, reward_cpus=min(1.0, cpus - 1.0))
    import zerorl.distributed.builder as builder

    local, remote, started = launch.build_local_roles, builder.build_ray_roles, {}

    def build(cfg, checkpoint=None):
        t = time.perf_counter()
        roles = remote(cfg, checkpoint) if backend == "ray" else local(cfg, checkpoint)
        started["s"] = time.perf_counter() - t
        return roles

    # run_training builds the roles with these two; wrap them to time the start-up.
    launch.build_local_roles, builder.build_ray_roles = build, build
    try:
        metrics = launch.run_training(cfg, root / backend).read_metrics()
    finally:
        launch.build_local_roles, builder.build_ray_roles = local, remote
    return started["s"], [m for m in metrics if m["step"] > 0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default=None)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="dist_overhead_"))
    overrides = [] if args.preset else tiny_overrides(root)
    overrides.append(f"train.steps={args.steps}")
    results = {"local": timed_run(args.preset, overrides, "local", root, args.cpus)}
    env = {"env_vars": {"PYTHONPATH": PACKAGE_ROOT}}
    ray.init(num_cpus=args.cpus, include_dashboard=False, runtime_env=env)
    try:
        results["ray"] = timed_run(args.preset, overrides, "ray", root, args.cpus)
    finally:
        ray.shutdown()
    keys = [k for k in results["local"][1][0] if k.startswith("time/")]
    print(f"{'':24} {'local':>9} {'ray':>9} {'ray-local':>10}")
    print(f"{'start-up (s)':24} {results['local'][0]:9.2f} {results['ray'][0]:9.2f}")
    for key in keys:
        local, ray_ = (statistics.median(m[key] for m in r[1][1:]) for r in results.values())
        print(f"{key:24} {local:9.3f} {ray_:9.3f} {ray_ - local:10.3f}")
    timing = ("time/", "throughput/")
    same = [
        {k: v for k, v in m.items() if not k.startswith(timing)} for m in results["local"][1]
    ] == [{k: v for k, v in m.items() if not k.startswith(timing)} for m in results["ray"][1]]
    print(f"metrics other than time/ and throughput/ identical on both backends: {same}")


if __name__ == "__main__":
    main()
